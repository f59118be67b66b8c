/*
 * fuzz_page.c - fuzz target for api/page.h: pagination envelopes and next links.
 *
 * Input: "LINK\nBODY". The first byte's low bit picks the fixed base URL
 * (https://api.bitbucket.org/2.0 or http://127.0.0.1:8080/2.0); LINK is the
 * rest of the first line, a hostile "next" link; BODY is one page for
 * page_parse(). Without a newline the whole input after the first byte is LINK.
 *
 * Checked beyond memory errors:
 *   - page_parse: on 0, values is an array of objects and next NULL or a
 *     string; on failure nothing is handed out;
 *   - page_walk_next: a URL it hands out is on the base's origin as libcurl
 *     itself reads the URL when it sends the request (so the bearer token
 *     goes nowhere else); the same link a second time is a loop (-EIO);
 *     the page limit holds;
 *   - page_url_for: the answer is the link with "page=2" replaced.
 *
 *   build/fuzz/fuzz_page -max_total_time=60 build/fuzz/corpus/fuzz_page tests/fuzz/corpus/fuzz_page
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "api/page.h"
#include "tests/fuzz/fuzz.h"

static const char *const bases[] = {"https://api.bitbucket.org/2.0", "http://127.0.0.1:8080/2.0"};
static const char *const hosts[] = {"api.bitbucket.org", "127.0.0.1"};
static const char *const schemes[] = {"https", "http"};
static const char *const ports[] = {"443", "8080"};

/*
 * Whether libcurl, parsing url the way curl_easy_perform does (a missing
 * scheme guessed, any scheme accepted), would connect to base b's origin.
 * A URL curl refuses is harmless: no request is sent.
 */
static int curl_same_origin(int b, const char *url)
{
    char *scheme = NULL, *host = NULL, *port = NULL;
    CURLU *h = curl_url();
    int ok = 1;

    if (!h)
        return 1;
    if (curl_url_set(h, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) ==
        CURLUE_OK) {
        ok = curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
             curl_url_get(h, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
             curl_url_get(h, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
             strcasecmp(scheme, schemes[b]) == 0 && strcasecmp(host, hosts[b]) == 0 &&
             strcmp(port, ports[b]) == 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(h);
    return ok;
}

static void check_followed(int b, struct page_walk *w, const char *link)
{
    char *url = NULL, *again = NULL;
    int rc;

    rc = page_walk_next(w, link, &url);
    fuzz_check(rc == 0 || rc == -EIO || rc == -ENOMEM);
    if (rc < 0 || !url) {
        fuzz_check(!url);
        return;
    }
    fuzz_check(curl_same_origin(b, url));
    fuzz_check(w->pages <= w->max_pages);
    /* the same link again: already seen */
    fuzz_check(page_walk_next(w, link, &again) == -EIO && !again);
    free(url);
}

static void run_walk(int b, const char *link)
{
    struct page_walk w;
    char *url = NULL;

    if (page_walk_init(&w, bases[b], "https://first.invalid/", 3) < 0)
        return;
    fuzz_check(page_walk_next(&w, NULL, &url) == 0 && !url);
    check_followed(b, &w, link);
    page_walk_release(&w);

    /* one page allowed: the first one is already handed out */
    if (page_walk_init(&w, bases[b], bases[b], 1) < 0)
        return;
    fuzz_check(page_walk_next(&w, link, &url) < 0 && !url);
    page_walk_release(&w);
}

static void run_url_for(const char *link)
{
    char *out = NULL;
    const char *p;
    size_t i;
    int rc;

    rc = page_url_for(link, 12345, &out);
    if (rc < 0) {
        fuzz_check(!out && (rc == -ENOENT || rc == -ENOMEM));
        return;
    }
    /* "page=2" became "page=12345" and nothing else changed */
    fuzz_check(strlen(out) == strlen(link) + 4);
    for (i = 0; link[i] == out[i]; i++)
        ;
    p = link + i;
    fuzz_check(i >= 5 && strncmp(out + i - 5, "page=12345", 10) == 0);
    fuzz_check(strncmp(link + i - 5, "page=2", 6) == 0 && strcmp(p + 1, out + i + 5) == 0);
    free(out);
}

static void run_parse(const char *body, size_t len)
{
    json_t *root, *values;
    const char *next;
    size_t i;

    if (page_parse("https://api.bitbucket.org/2.0/repositories/acme?page=1", body, len, &root,
                   &values, &next) < 0) {
        fuzz_check(!root && !values && !next);
        return;
    }
    fuzz_check(json_is_object(root) && json_is_array(values));
    for (i = 0; i < json_array_size(values); i++)
        fuzz_check(json_is_object(json_array_get(values, i)));
    if (next) {
        struct page_walk w;
        char *url = NULL;

        if (page_walk_init(&w, bases[0], "https://api.bitbucket.org/2.0/x", 10) == 0) {
            if (page_walk_next(&w, next, &url) == 0 && url)
                fuzz_check(curl_same_origin(0, url));
            free(url);
            page_walk_release(&w);
        }
    }
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *rest, *nl;
    char *link;
    size_t len, link_len;
    int b;

    if (size == 0)
        return 0;
    b = data[0] & 1;
    rest = (const char *)data + 1;
    len = size - 1;
    nl = memchr(rest, '\n', len);
    link_len = nl ? (size_t)(nl - rest) : len;
    link = strndup(rest, link_len);
    if (!link)
        return 0;
    run_walk(b, link);
    run_url_for(link);
    if (nl)
        run_parse(nl + 1, len - link_len - 1);
    else
        run_parse(NULL, 0);
    free(link);
    return 0;
}

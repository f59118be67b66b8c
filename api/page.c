/*
 * page.c - pagination envelope checks and the next-link policy of page.h.
 */
#include "api/page.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/log.h"
#include "api/parse.h"
#include "api/url.h"

/* FNV-1a: a cheap first comparison before strcmp in the loop check. */
static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* 1 when url was already seen, else remembers it; -ENOMEM. */
static int seen_check_add(struct page_walk *w, const char *url)
{
    uint64_t h = hash_str(url);
    struct page_seen *grown;
    size_t i, alloc;

    for (i = 0; i < w->nseen; i++) {
        if (w->seen[i].hash == h && strcmp(w->seen[i].url, url) == 0)
            return 1;
    }
    if (w->nseen == w->seen_alloc) {
        alloc = w->seen_alloc ? w->seen_alloc * 2 : 16;
        grown = realloc(w->seen, alloc * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        w->seen = grown;
        w->seen_alloc = alloc;
    }
    w->seen[w->nseen].url = strdup(url);
    if (!w->seen[w->nseen].url)
        return -ENOMEM;
    w->seen[w->nseen++].hash = h;
    return 0;
}

void page_walk_release(struct page_walk *w)
{
    size_t i;

    if (!w)
        return;
    for (i = 0; i < w->nseen; i++)
        free(w->seen[i].url);
    free(w->seen);
    free(w->base);
    memset(w, 0, sizeof(*w));
}

int page_walk_init(struct page_walk *w, const char *base, const char *first_url, size_t max_pages)
{
    int rc;

    memset(w, 0, sizeof(*w));
    w->max_pages = max_pages;
    w->pages = 1;
    w->base = strdup(base);
    if (!w->base)
        return -ENOMEM;
    rc = seen_check_add(w, first_url);
    if (rc < 0) {
        page_walk_release(w);
        return rc;
    }
    return 0;
}

/* Logs why next is refused, without its query (which may be long or hostile). */
static int refuse(const char *why, const char *link)
{
    char shown[256];

    log_warn("pagination stopped: %s (next link '%s')", why,
             url_for_log(link, shown, sizeof(shown)));
    return -EIO;
}

int page_walk_next(struct page_walk *w, const char *next, char **url)
{
    char *link = NULL;
    int rc;

    *url = NULL;
    if (!next)
        return 0;
    if (strlen(next) > URL_MAX)
        return refuse("link too long", next);
    rc = url_rewrite_api_alias(w->base, next, &link);
    if (rc < 0)
        return rc == -ENOMEM ? rc : refuse("link too long", next);
    if (!url_same_origin(w->base, link)) {
        rc = refuse("the link is not on the API URL's scheme, host and port; the token "
                    "goes nowhere else",
                    link);
        goto out;
    }
    rc = seen_check_add(w, link);
    if (rc > 0) {
        rc = refuse("the link loops back to a page already read", link);
        goto out;
    }
    if (rc < 0)
        goto out;
    if (w->pages >= w->max_pages) {
        rc = refuse("too many pages", link);
        goto out;
    }
    w->pages++;
    *url = link;
    link = NULL;
out:
    free(link);
    return rc;
}

int page_url_for(const char *second_url, size_t page, char **out)
{
    const char *query = strchr(second_url, '?'), *p;
    *out = NULL;
    if (!query)
        return -ENOENT;
    for (p = query; (p = strstr(p + 1, "page=2")) != NULL;) {
        char after = p[strlen("page=2")];
        if ((p[-1] == '?' || p[-1] == '&') && (after == '\0' || after == '&' || after == '#'))
            break;
    }
    if (!p)
        return -ENOENT;
    if (asprintf(out, "%.*spage=%zu%s", (int)(p - second_url), second_url, page,
                 p + strlen("page=2")) < 0) {
        *out = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* The log key of a listing's malformed pages: its pages share it, so a walk says it once. */
static void bad_page_key(const char *url, char *key, size_t len)
{
    char shown[256];

    snprintf(key, len, "page:%s", url_for_log(url ? url : "?", shown, sizeof(shown)));
}

static int bad_page(const char *what, const char *why)
{
    char shown[256], key[300];

    bad_page_key(what, key, sizeof(key));
    log_once(LOG_LEVEL_WARN, key, "malformed page from %s: %s",
             url_for_log(what ? what : "?", shown, sizeof(shown)), why);
    return -EIO;
}

void page_forget_failure(const char *url)
{
    char key[300];

    bad_page_key(url, key, sizeof(key));
    log_forget(key);
}

int page_parse(const char *what, const char *body, size_t len, json_t **root, json_t **values,
               const char **next)
{
    json_error_t jerr;
    json_t *doc, *vals, *nxt, *item;
    size_t i;
    int rc;

    *root = NULL;
    *values = NULL;
    *next = NULL;
    doc = json_loadb(body ? body : "", len, PARSE_JSON_FLAGS, &jerr);
    if (!doc)
        return bad_page(what, "not JSON");
    if (!json_is_object(doc)) {
        rc = bad_page(what, "not a JSON object");
        goto fail;
    }
    vals = json_object_get(doc, "values");
    if (!json_is_array(vals)) {
        rc = bad_page(what, vals ? "\"values\" is not an array" : "no \"values\" array");
        goto fail;
    }
    for (i = 0; i < json_array_size(vals); i++) {
        item = json_array_get(vals, i);
        if (!json_is_object(item)) {
            rc = bad_page(what, "an entry of \"values\" is not an object");
            goto fail;
        }
    }
    nxt = json_object_get(doc, "next");
    if (nxt && !json_is_null(nxt) && !json_is_string(nxt)) {
        rc = bad_page(what, "\"next\" is not a string");
        goto fail;
    }
    *root = doc;
    *values = vals;
    *next = json_is_string(nxt) ? json_string_value(nxt) : NULL;
    return 0;
fail:
    json_decref(doc);
    return rc;
}

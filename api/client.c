/*
 * client.c - the api_client (see client.h): set-up, statistics, the URLs
 * the calls build, requests counted by kind, single JSON objects through
 * the stored answers, and downloads.
 */
#include "api/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/log.h"
#include "api/parse.h"
#include "api/url.h"

#define DEFAULT_BASE_URL "https://api.bitbucket.org/2.0"
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_TIMEOUT_MS 10000

int client_is_immutable(enum api_kind kind)
{
    return kind == API_KIND_COMMIT || kind == API_KIND_TREE || kind == API_KIND_FILE ||
           kind == API_KIND_DIFF;
}

const char *api_kind_name(enum api_kind kind)
{
    static const char *const names[API_KIND_COUNT] = {
        [API_KIND_ACCESS] = "access",     [API_KIND_WORKSPACE] = "workspace",
        [API_KIND_PROJECT] = "project",   [API_KIND_REPOS] = "repos",
        [API_KIND_BRANCHES] = "branches", [API_KIND_TAGS] = "tags",
        [API_KIND_COMMITS] = "commits",   [API_KIND_COMMIT] = "commit",
        [API_KIND_TREE] = "tree",         [API_KIND_FILE] = "file",
        [API_KIND_DIFF] = "diff",         [API_KIND_PULLREQUESTS] = "pullrequests",
        [API_KIND_COMMENTS] = "comments",
    };
    return (unsigned)kind < API_KIND_COUNT ? names[kind] : "other";
}

void client_count(uint64_t *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

int api_global_init(void)
{
    json_object_seed(0); /* before threads exist: jansson seeds lazily otherwise */
    return http_global_init();
}

void api_global_cleanup(void)
{
    http_global_cleanup();
}

void api_client_free(struct api_client *client)
{
    if (!client)
        return;
    http_client_free(client->http);
    free(client->base);
    free(client);
}

int api_client_new(const struct api_config *cfg, struct api_client **out, char *errbuf,
                   size_t errlen)
{
    struct http_options opts;
    struct api_client *c = NULL;
    const char *p;
    int rc;

    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cfg || !cfg->token) {
        log_format_line(errbuf, errlen, "no token given");
        return -EINVAL;
    }
    for (p = cfg->token; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            log_format_line(errbuf, errlen, "the token contains control characters");
            return -EINVAL;
        }
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        log_format_line(errbuf, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = url_check_base(cfg->base_url ? cfg->base_url : DEFAULT_BASE_URL, &c->base, errbuf, errlen);
    if (rc < 0)
        goto out;
    opts.token = cfg->token;
    opts.ca_file = cfg->ca_file;
    opts.timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    opts.connect_timeout_ms =
        cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    rc = http_client_new(&opts, &c->http);
    if (rc < 0) {
        log_format_line(errbuf, errlen, "cannot set up the HTTP client: %s", strerror(-rc));
        goto out;
    }
    c->stored.ttl = cfg->ttl > 0 ? cfg->ttl : 0;
    c->offline = cfg->offline;
    *out = c;
    c = NULL;
out:
    api_client_free(c);
    return rc;
}

static uint64_t load_counter(const uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

void api_get_stats(struct api_client *client, struct api_stats *out)
{
    struct http_stats s;

    memset(out, 0, sizeof(*out));
    http_get_stats(client->http, &s);
    out->requests = s.requests;
    out->retries = s.retries;
    out->failures = s.failures;
    out->ratelimit_limit = s.ratelimit_limit;
    out->ratelimit_near = s.ratelimit_near;
    out->ratelimit_near_count = s.ratelimit_near_count;
    out->requests_last_hour = s.requests_last_hour;
    out->bytes = s.bytes;
    out->failed_network = s.failed_network;
    out->failed_auth = s.failed_auth;
    out->failed_not_found = s.failed_not_found;
    out->failed_rate_limited = s.failed_rate_limited;
    out->failed_server = s.failed_server;
    out->failed_other = s.failed_other;
    for (size_t i = 0; i < API_KIND_COUNT; i++)
        out->by_kind[i] = load_counter(&client->by_kind[i]);
    out->stored = load_counter(&client->stored.used);
    out->not_modified = load_counter(&client->stored.not_modified);
    out->stale = load_counter(&client->stored.stale);
    out->bad_answers = load_counter(&client->bad_answers);
}

void client_url_repo(struct buf *u, struct api_client *c, const char *workspace, const char *repo)
{
    url_init(u, c->base);
    url_add_segment(u, "repositories");
    url_add_segment(u, workspace);
    if (repo)
        url_add_segment(u, repo);
}

void client_url_at(struct buf *u, struct api_client *c, const char *workspace, const char *repo,
                   const char *what, const char *rev)
{
    client_url_repo(u, c, workspace, repo);
    url_add_segment(u, what);
    url_add_segment(u, rev);
}

char *client_url_finish(struct buf *u, int *rc)
{
    char *url = buf_take(u, NULL);

    *rc = url ? 0 : (u->err == -ENOMEM ? -ENOMEM : -EINVAL);
    buf_release(u);
    return url;
}

void client_log_bad_json(const char *url, const char *why)
{
    char shown[512];

    log_warn("unexpected answer from %s: %s", url_for_log(url, shown, sizeof(shown)), why);
}

int client_refuse_offline(struct api_client *c, const char *url)
{
    char shown[512];

    if (!c->offline)
        return 0;
    log_once(LOG_LEVEL_WARN, "api:offline", "offline: %s (and maybe more) not cached",
             url_for_log(url, shown, sizeof(shown)));
    return -EIO;
}

/*
 * Whether a request for url may go out: -EIO offline (logged), -EWOULDBLOCK
 * on a thread that may not wait for it.
 */
static int begin_request(struct api_client *c, const char *url, struct http_response *resp)
{
    int rc;

    memset(resp, 0, sizeof(*resp));
    rc = client_refuse_offline(c, url);
    if (rc == 0 && api_nowait())
        rc = -EWOULDBLOCK;
    return rc;
}

/* Counts a call as kind when it went to the network (a paused one did not). */
static void count_request(struct api_client *c, enum api_kind kind,
                          const struct http_response *resp)
{
    if (!resp->paused)
        client_count(&c->by_kind[kind]);
}

int client_fetch(struct api_client *c, enum api_kind kind, const char *url, const char *etag,
                 unsigned flags, struct http_response *resp)
{
    int rc = begin_request(c, url, resp);

    if (rc < 0)
        return rc;
    rc = http_get(c->http, url, etag, HTTP_MAX_JSON, flags | HTTP_JSON, resp);
    count_request(c, kind, resp);
    return rc;
}

int client_download(struct api_client *c, enum api_kind kind, struct buf *u,
                    const struct api_sink *sink, unsigned flags, struct http_response *resp,
                    uint64_t *size)
{
    int rc;
    char *url = client_url_finish(u, &rc);

    memset(resp, 0, sizeof(*resp));
    if (!url)
        return rc;
    rc = begin_request(c, url, resp);
    if (rc == 0) {
        rc = http_download(c->http, url, sink, flags, resp, size);
        count_request(c, kind, resp);
    }
    free(url);
    return rc;
}

/* ---- single objects ---- */

struct object_check {
    struct api_client *c;
    const char *url;
    object_fn fn;
    void *ctx;
};

/* An answer_check_fn: the body is one JSON object that fn takes. */
static int check_object(const struct http_response *resp, int from_store, void *arg)
{
    struct object_check *o = arg;
    json_error_t jerr;
    json_t *root = json_loadb(resp->body, resp->len, PARSE_JSON_FLAGS, &jerr);
    int rc = -EIO;

    if (json_is_object(root)) {
        rc = o->fn(root, o->ctx);
    } else if (!from_store) {
        client_log_bad_json(o->url, root ? "not a JSON object" : "not JSON");
        client_count(&o->c->bad_answers);
    }
    json_decref(root);
    return rc;
}

int client_get_object(struct api_client *c, enum api_kind kind, const char *url, object_fn fn,
                      void *ctx, int64_t *fetched_at)
{
    struct object_check check = {c, url, fn, ctx};
    struct http_response resp;
    int rc, from_store;

    rc = stored_get_checked(c, kind, url, 0, check_object, &check, &resp, &from_store);
    if (rc == 0 && !from_store)
        stored_keep(c, kind, url, &resp);
    if (rc == 0 && fetched_at)
        *fetched_at = resp.fetched_at;
    http_response_release(&resp);
    return rc;
}

static int doc_from(json_t *root, void *ctx)
{
    return parse_doc(root, ctx);
}

int client_get_doc(struct api_client *c, enum api_kind kind, char *url, struct api_doc *out)
{
    return client_get_object(c, kind, url, doc_from, out, &out->fetched_at);
}

void *client_grow_array(void *items, size_t *alloc, size_t count, size_t elem)
{
    size_t n;
    void *grown;

    if (count < *alloc)
        return items;
    n = *alloc ? *alloc * 2 : 16;
    if (n > ((size_t)-1) / elem)
        return NULL;
    grown = realloc(items, n * elem);
    if (grown)
        *alloc = n;
    return grown;
}

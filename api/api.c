/*
 * api.c - the Bitbucket Cloud calls of api.h, on top of http.c (requests),
 * url.c (building them), page.c (following pagination safely) and parse.c
 * (JSON to structs).
 *
 * Listings are gathered completely before anything is handed out: any
 * failure on any page frees what was collected and returns the error, so the
 * filesystem never sees half a directory. File contents and diffs are not
 * JSON: http_download() streams them into the caller's file.
 */
#include "api/api.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/buf.h"
#include "api/http.h"
#include "api/log.h"
#include "api/page.h"
#include "api/parse.h"
#include "api/url.h"

#define DEFAULT_BASE_URL "https://api.bitbucket.org/2.0"
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define PAGELEN_MAX 100
/* After the API could not be reached, stored answers are served this long without trying again. */
#define STALE_RETRY_SECONDS 10

struct api_client {
    char *base; /* normalised, without a trailing '/' */
    struct http_client *http;
    struct api_response_cache responses; /* all NULL when none was set */
    long ttl;                            /* seconds a stored mutable answer is fresh */
    int offline;                         /* no requests at all */
    int64_t expired_at; /* stored answers fetched up to this second are stale (atomic) */
    int64_t down_until; /* the API could not be reached: stale answers until then (atomic) */
    /* counters of api_stats kept here, not by http.c (atomic) */
    uint64_t by_kind[API_KIND_COUNT];
    uint64_t stored, not_modified, stale, bad_answers;
};

/* Whether an answer can never change (it is addressed by a full commit hash). */
static int is_immutable(enum api_kind kind)
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

static void count(uint64_t *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/* Called for each entry of each page: 0 to go on, 1 to stop after it, or -errno. */
typedef int (*item_fn)(json_t *item, void *ctx);

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
    c->ttl = cfg->ttl > 0 ? cfg->ttl : 0;
    c->offline = cfg->offline;
    *out = c;
    c = NULL;
out:
    api_client_free(c);
    return rc;
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
        out->by_kind[i] = __atomic_load_n(&client->by_kind[i], __ATOMIC_RELAXED);
    out->stored = __atomic_load_n(&client->stored, __ATOMIC_RELAXED);
    out->not_modified = __atomic_load_n(&client->not_modified, __ATOMIC_RELAXED);
    out->stale = __atomic_load_n(&client->stale, __ATOMIC_RELAXED);
    out->bad_answers = __atomic_load_n(&client->bad_answers, __ATOMIC_RELAXED);
}

/* "/repositories/{ws}/{repo}" (repo may be NULL) appended to the base URL. */
static void url_repo(struct buf *u, struct api_client *c, const char *workspace, const char *repo)
{
    url_init(u, c->base);
    url_add_segment(u, "repositories");
    url_add_segment(u, workspace);
    if (repo)
        url_add_segment(u, repo);
}

/* The built URL, or NULL with *rc set (-EINVAL for a bad name, -ENOMEM). */
static char *url_finish(struct buf *u, int *rc)
{
    char *url = buf_take(u, NULL);

    *rc = url ? 0 : (u->err == -ENOMEM ? -ENOMEM : -EINVAL);
    buf_release(u);
    return url;
}

static void log_bad_json(const char *url, const char *why)
{
    char *shown = url_for_log(url);
    char clean[512];

    log_sanitize(clean, sizeof(clean), shown ? shown : "?");
    log_warn("unexpected answer from %s: %s", clean, why);
    free(shown);
}

void api_set_response_cache(struct api_client *client, const struct api_response_cache *cache)
{
    client->responses = *cache;
}

void api_expire(struct api_client *client)
{
    __atomic_store_n(&client->expired_at, (int64_t)time(NULL), __ATOMIC_RELAXED);
}

/* Whether a stored answer fetched at fetched may be used without asking the API. */
static int is_fresh(struct api_client *c, int64_t fetched, int64_t now)
{
    return fetched <= now && now - fetched < c->ttl &&
           fetched > __atomic_load_n(&c->expired_at, __ATOMIC_RELAXED);
}

/* url as it may be logged (no query, sanitised), into clean. */
static void url_shown(const char *url, char *clean, size_t len)
{
    char *shown = url_for_log(url);

    log_sanitize(clean, len, shown ? shown : "?");
    free(shown);
}

/* -EIO (logged once) when offline: the caller may not make a request. */
static int refuse_offline(struct api_client *c, const char *url)
{
    char clean[512];

    if (!c->offline)
        return 0;
    url_shown(url, clean, sizeof(clean));
    log_once(LOG_LEVEL_WARN, "api:offline", "offline: %s (and maybe more) not cached", clean);
    return -EIO;
}

/* A request that failed for want of the API (not an answer about the URL). */
static int api_unreachable(int rc, const struct http_response *resp)
{
    return rc == -EIO && (resp->transport || resp->status == 429 || resp->status >= 500);
}

/* Makes resp hold a stored answer (taking body and etag) as if it were a 200. */
static void use_stored(struct http_response *resp, char *body, size_t len, char *etag)
{
    http_response_release(resp);
    memset(resp, 0, sizeof(*resp));
    resp->status = 200;
    resp->body = body;
    resp->len = len;
    resp->etag = etag;
}

/*
 * GET a mutable URL's body through the stored answer, if any: fresh, it is
 * used as it is; stale, it is revalidated (a 304 refreshes its time) or
 * served when the API cannot be reached; offline, it is all there is.
 */
static int get_mutable(struct api_client *c, enum api_kind kind, const char *url,
                       struct http_response *resp, int *cached)
{
    char *body = NULL, *etag = NULL;
    int64_t fetched = 0, now = (int64_t)time(NULL);
    char clean[512];
    size_t len = 0;
    int rc, have;

    have = c->responses.load_mutable &&
           c->responses.load_mutable(c->responses.ctx, url, &body, &len, &etag, &fetched) == 0;
    if (have && (c->offline || is_fresh(c, fetched, now))) {
        count(&c->stored);
        use_stored(resp, body, len, etag);
        *cached = 1;
        return 0;
    }
    rc = refuse_offline(c, url);
    if (rc < 0)
        goto out;
    if (have && now < __atomic_load_n(&c->down_until, __ATOMIC_RELAXED))
        goto stale;
    count(&c->by_kind[kind]);
    rc = http_get(c->http, url, have ? etag : NULL, HTTP_MAX_JSON, 0, resp);
    if (api_unreachable(rc, resp))
        __atomic_store_n(&c->down_until, (int64_t)time(NULL) + STALE_RETRY_SECONDS,
                         __ATOMIC_RELAXED);
    else if (__atomic_exchange_n(&c->down_until, 0, __ATOMIC_RELAXED) != 0)
        log_forget("api:stale"); /* back: the next outage is logged again */
    if (rc == 0 && resp->status == 304 && have) {
        count(&c->not_modified);
        if (c->responses.save_mutable)
            c->responses.save_mutable(c->responses.ctx, url, body, len, etag, now);
        use_stored(resp, body, len, etag);
        *cached = 1;
        return 0;
    }
    if (have && api_unreachable(rc, resp))
        goto stale;
out:
    free(body);
    free(etag);
    return rc;
stale:
    count(&c->stale);
    url_shown(url, clean, sizeof(clean));
    log_once(LOG_LEVEL_WARN, "api:stale",
             "cannot reach the API: serving stored, maybe stale, data for %s (and maybe more)",
             clean);
    use_stored(resp, body, len, etag);
    *cached = 1;
    return 0;
}

/*
 * GETs a JSON body, from the response cache when it holds one that may be
 * used (*cached says so); resp is the caller's to release either way.
 */
static int get_body(struct api_client *c, enum api_kind kind, const char *url,
                    struct http_response *resp, int *cached)
{
    memset(resp, 0, sizeof(*resp));
    *cached = 0;
    if (!is_immutable(kind))
        return get_mutable(c, kind, url, resp, cached);
    if (c->responses.load &&
        c->responses.load(c->responses.ctx, url, &resp->body, &resp->len) == 0) {
        count(&c->stored);
        *cached = 1;
        resp->status = 200;
        return 0;
    }
    int rc = refuse_offline(c, url);
    if (rc < 0)
        return rc;
    count(&c->by_kind[kind]);
    return http_get(c->http, url, NULL, HTTP_MAX_JSON, 0, resp);
}

/* GET url again, bypassing a stored answer that turned out damaged. */
static int refetch(struct api_client *c, enum api_kind kind, const char *url,
                   struct http_response *resp)
{
    http_response_release(resp);
    memset(resp, 0, sizeof(*resp));
    int rc = refuse_offline(c, url);
    if (rc < 0)
        return rc;
    count(&c->by_kind[kind]);
    return http_get(c->http, url, NULL, HTTP_MAX_JSON, 0, resp);
}

/* Keeps a body that parsed well and came from the network. */
static void keep_body(struct api_client *c, enum api_kind kind, const char *url, int cached,
                      const struct http_response *resp)
{
    int immutable = is_immutable(kind);

    if (cached)
        return;
    if (immutable && c->responses.save)
        c->responses.save(c->responses.ctx, url, resp->body, resp->len);
    else if (!immutable && c->responses.save_mutable)
        c->responses.save_mutable(c->responses.ctx, url, resp->body, resp->len, resp->etag,
                                  (int64_t)time(NULL));
}

/* Turns an answer's JSON object into the caller's struct: 0, or -errno (nothing left behind). */
typedef int (*object_fn)(json_t *root, void *ctx);

/*
 * GET url, parse its body as one JSON object and hand it to fn. The answer
 * is kept only when fn took it, and a stored one that fn refuses (damaged, or
 * kept by an older bbfs) is fetched again.
 */
static int get_object(struct api_client *c, enum api_kind kind, const char *url, object_fn fn,
                      void *ctx)
{
    struct http_response resp;
    json_error_t jerr;
    json_t *root;
    int rc, cached;

    rc = get_body(c, kind, url, &resp, &cached);
    for (;;) {
        if (rc < 0)
            break;
        root = json_loadb(resp.body, resp.len, PARSE_JSON_FLAGS, &jerr);
        if (json_is_object(root)) {
            rc = fn(root, ctx);
        } else {
            if (!cached) {
                log_bad_json(url, root ? "not a JSON object" : "not JSON");
                count(&c->bad_answers);
            }
            rc = -EIO;
        }
        json_decref(root);
        if (rc == 0)
            keep_body(c, kind, url, cached, &resp);
        if (rc == 0 || !cached || rc == -ENOMEM)
            break;
        /* A damaged or unusable cache entry: ask the API instead. */
        cached = 0;
        rc = refetch(c, kind, url, &resp);
    }
    http_response_release(&resp);
    return rc;
}

static int doc_from(json_t *root, void *ctx)
{
    return parse_doc(root, ctx);
}

static int get_doc(struct api_client *c, enum api_kind kind, char *url, struct api_doc *out)
{
    return get_object(c, kind, url, doc_from, out);
}

/*
 * Parses a page GET url answered into resp (see page_parse); a stored page
 * that does not parse is damaged, and is asked of the API again.
 */
static int parse_page(struct api_client *c, enum api_kind kind, const char *url,
                      struct http_response *resp, int *cached, json_t **root, json_t **values,
                      const char **next)
{
    int rc = page_parse(url, resp->body, resp->len, root, values, next);
    if (rc < 0 && *cached) {
        *cached = 0;
        rc = refetch(c, kind, url, resp);
        if (rc == 0)
            rc = page_parse(url, resp->body, resp->len, root, values, next);
    }
    if (rc == -EIO && !*cached)
        count(&c->bad_answers);
    return rc;
}

/* ---- the pages after the first, at once ---- */

/* Requests in flight for one listing: enough to hide latency, few enough to be polite. */
#define PAGE_WORKERS 6

/* Pages 2..n of a list-based collection, fetched by PAGE_WORKERS threads. */
struct page_batch {
    struct api_client *c;
    enum api_kind kind;
    size_t count; /* pages 2..n: count = n - 1 */
    char **urls;
    struct http_response *resps;
    json_t **roots;
    int *rcs, *cached;
    size_t next_index; /* atomic: the next page a worker takes */
};

static void *page_worker(void *arg)
{
    struct page_batch *b = arg;
    size_t i;

    while ((i = __atomic_fetch_add(&b->next_index, 1, __ATOMIC_RELAXED)) < b->count)
        b->rcs[i] = get_body(b->c, b->kind, b->urls[i], &b->resps[i], &b->cached[i]);
    return NULL;
}

static void page_batch_release(struct page_batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        if (b->urls)
            free(b->urls[i]);
        if (b->resps)
            http_response_release(&b->resps[i]);
        if (b->roots)
            json_decref(b->roots[i]);
    }
    free(b->urls);
    free(b->resps);
    free(b->roots);
    free(b->rcs);
    free(b->cached);
}

/*
 * Whether the API said the token's hourly budget is nearly spent: then pages
 * are asked for one at a time, so that other users of the token get a share.
 */
static int near_rate_limit(struct api_client *c)
{
    struct http_stats s;
    http_get_stats(c->http, &s);
    return s.ratelimit_near;
}

/*
 * How many pages a list-based collection has, from its first page: 0 when
 * the envelope does not say (iterator-based, no size) or looks odd.
 */
static size_t page_count(json_t *first)
{
    json_int_t size, pagelen, page;
    if (json_unpack(first, "{s:I, s:I, s:I}", "size", &size, "pagelen", &pagelen, "page", &page) !=
            0 ||
        page != 1 || pagelen <= 0 || size <= 0 || size > (json_int_t)PAGE_MAX_PAGES * pagelen)
        return 0;
    return (size_t)((size + pagelen - 1) / pagelen);
}

/*
 * Checks the fetched pages 2..n against the first page's promise: full
 * pages, a last page with what is left and no next. A collection that
 * changed while it was read fails this, and is read again link by link.
 */
static int batch_is_consistent(const struct page_batch *b, json_t *first)
{
    json_int_t size = json_integer_value(json_object_get(first, "size"));
    json_int_t pagelen = json_integer_value(json_object_get(first, "pagelen"));

    for (size_t i = 0; i < b->count; i++) {
        json_t *values = json_object_get(b->roots[i], "values");
        json_t *next = json_object_get(b->roots[i], "next");
        int last = i + 1 == b->count;
        json_int_t want = last ? size - pagelen * (json_int_t)(b->count) : pagelen;
        if ((json_int_t)json_array_size(values) != want || last != (next == NULL || json_is_null(next)))
            return 0;
    }
    return 1;
}

/*
 * Fetches pages 2..npages concurrently (second_url is page 2's link, already
 * checked) and hands their entries to fn in order. *done is 0 when the pages
 * did not add up: nothing was handed to fn, and the caller walks the links.
 */
static int walk_rest_at_once(struct api_client *c, const char *second_url, size_t npages,
                             json_t *first, enum api_kind kind, item_fn fn, void *ctx, int *done)
{
    struct page_batch b = {.c = c, .kind = kind, .count = npages - 1};
    pthread_t threads[PAGE_WORKERS];
    size_t nthreads = 0, i, j;
    int rc = 0;

    *done = 0;
    b.urls = calloc(b.count, sizeof(*b.urls));
    b.resps = calloc(b.count, sizeof(*b.resps));
    b.roots = calloc(b.count, sizeof(*b.roots));
    b.rcs = calloc(b.count, sizeof(*b.rcs));
    b.cached = calloc(b.count, sizeof(*b.cached));
    if (!b.urls || !b.resps || !b.roots || !b.rcs || !b.cached) {
        rc = -ENOMEM;
        goto out;
    }
    for (i = 0; i < b.count; i++) {
        rc = page_url_for(second_url, i + 2, &b.urls[i]);
        if (rc == -ENOENT) {
            rc = 0; /* not list-based after all */
            goto out;
        }
        if (rc < 0)
            goto out;
    }
    for (; nthreads < PAGE_WORKERS && nthreads < b.count; nthreads++)
        if (pthread_create(&threads[nthreads], NULL, page_worker, &b) != 0)
            break;
    page_worker(&b); /* this thread works too, and alone if no thread could start */
    for (i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);

    for (i = 0; i < b.count; i++) {
        json_t *values;
        const char *next;
        rc = b.rcs[i];
        if (rc == 0)
            rc = parse_page(c, kind, b.urls[i], &b.resps[i], &b.cached[i], &b.roots[i], &values,
                            &next);
        if (rc < 0)
            goto out;
    }
    if (!batch_is_consistent(&b, first)) {
        log_debug("a listing changed while its pages were read at once; reading it again");
        goto out;
    }
    for (i = 0; i < b.count; i++) {
        json_t *values = json_object_get(b.roots[i], "values");
        for (j = 0; j < json_array_size(values); j++) {
            rc = fn(json_array_get(values, j), ctx);
            if (rc < 0)
                goto out;
        }
        keep_body(c, kind, b.urls[i], b.cached[i], &b.resps[i]);
    }
    rc = 0;
    *done = 1;
out:
    page_batch_release(&b);
    return rc;
}

/*
 * GET first_url and every page after it, handing each entry to fn. Stops
 * early when fn returns 1. Any failure fails the whole walk. When the first
 * page says how many there are, the rest are fetched at once.
 */
static int walk_pages_capped(struct api_client *c, enum api_kind kind, const char *first_url,
                             size_t max_pages, item_fn fn, void *ctx);

static int walk_pages(struct api_client *c, enum api_kind kind, const char *first_url, item_fn fn,
                      void *ctx)
{
    return walk_pages_capped(c, kind, first_url, PAGE_MAX_PAGES, fn, ctx);
}

/*
 * walk_pages for at most max_pages pages: -EFBIG, before any later page is
 * asked for, when the first says there are more.
 */
static int walk_pages_capped(struct api_client *c, enum api_kind kind, const char *first_url,
                             size_t max_pages, item_fn fn, void *ctx)
{
    struct http_response resp;
    struct page_walk walk;
    json_t *root = NULL, *values, *item;
    const char *next;
    char *url = NULL;
    size_t i;
    int rc, cached, stop = 0;

    memset(&resp, 0, sizeof(resp));
    rc = page_walk_init(&walk, c->base, first_url, max_pages);
    if (rc < 0)
        return rc;
    url = strdup(first_url);
    if (!url) {
        rc = -ENOMEM;
        goto out;
    }
    while (url) {
        rc = get_body(c, kind, url, &resp, &cached);
        if (rc == 0)
            rc = parse_page(c, kind, url, &resp, &cached, &root, &values, &next);
        if (rc < 0)
            goto out;
        for (i = 0; i < json_array_size(values); i++) {
            item = json_array_get(values, i);
            rc = fn(item, ctx);
            if (rc < 0)
                goto out;
            if (rc > 0) {
                stop = 1;
                break;
            }
        }
        /* Kept only now that its entries were all taken: never a page fn refused. */
        keep_body(c, kind, url, cached, &resp);
        http_response_release(&resp);
        free(url);
        url = NULL;
        rc = stop ? 0 : page_walk_next(&walk, next, &url);
        size_t npages = walk.pages == 2 && url ? page_count(root) : 0;
        if (rc == 0 && npages > max_pages)
            rc = -EFBIG;
        else if (rc == 0 && npages > 2 && !near_rate_limit(c)) {
            int done;
            rc = walk_rest_at_once(c, url, npages, root, kind, fn, ctx, &done);
            if (rc < 0 || done) {
                free(url);
                url = NULL;
            }
        }
        json_decref(root); /* next was borrowed from root: used above, dead now */
        root = NULL;
        if (rc < 0)
            goto out;
    }
    rc = 0;
out:
    json_decref(root);
    http_response_release(&resp);
    free(url);
    page_walk_release(&walk);
    return rc;
}

/*
 * Makes room for one more element in an array of count elements of elem
 * bytes with *alloc allocated. Returns the (maybe moved) array, NULL when
 * out of memory (the old array is then still valid).
 */
static void *grow_array(void *items, size_t *alloc, size_t count, size_t elem)
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

/* ---- workspace, project, access check ---- */

int api_get_workspace(struct api_client *client, const char *workspace, struct api_doc *out)
{
    struct buf u;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    url_init(&u, client->base);
    url_add_segment(&u, "workspaces");
    url_add_segment(&u, workspace);
    url = url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = get_doc(client, API_KIND_WORKSPACE, url, out);
    free(url);
    return rc;
}

static char *project_url(struct api_client *c, const char *workspace, const char *key, int *rc)
{
    struct buf u;

    url_init(&u, c->base);
    url_add_segment(&u, "workspaces");
    url_add_segment(&u, workspace);
    url_add_segment(&u, "projects");
    url_add_segment(&u, key);
    return url_finish(&u, rc);
}

int api_get_project(struct api_client *client, const char *workspace, const char *project_key,
                    struct api_doc *out)
{
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    url = project_url(client, workspace, project_key, &rc);
    if (!url)
        return rc;
    rc = get_doc(client, API_KIND_PROJECT, url, out);
    free(url);
    return rc;
}

/*
 * 1 when a successful check answer looks like the Bitbucket API's (an
 * object; a page with a values array for a repository listing), so that a
 * wrong api_url fails here rather than on every later call. Silent: the
 * caller writes the one error line.
 */
static int looks_like_api(const char *body, size_t len, int project)
{
    json_error_t jerr;
    json_t *root;
    int ok;

    root = json_loadb(body ? body : "", len, PARSE_JSON_FLAGS, &jerr);
    ok = json_is_object(root) && (project || json_is_array(json_object_get(root, "values")));
    json_decref(root);
    return ok;
}

int api_check_access(struct api_client *client, const char *workspace, const char *project_key,
                     char *errbuf, size_t errlen)
{
    struct http_response resp;
    struct buf u;
    char *url = NULL;
    const char *sep;
    int rc;

    memset(&resp, 0, sizeof(resp));
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!workspace || !*workspace) {
        log_format_line(errbuf, errlen, "no workspace given");
        return -EINVAL;
    }
    if (project_key) {
        url = project_url(client, workspace, project_key, &rc);
    } else {
        url_repo(&u, client, workspace, NULL);
        url_add_query(&u, "pagelen", "1");
        url = url_finish(&u, &rc);
    }
    if (!url) {
        if (rc == -EINVAL && project_key)
            log_format_line(errbuf, errlen, "invalid workspace '%s' or project '%s'", workspace,
                            project_key);
        else if (rc == -EINVAL)
            log_format_line(errbuf, errlen, "invalid workspace '%s'", workspace);
        else
            log_format_line(errbuf, errlen, "out of memory");
        return rc;
    }
    count(&client->by_kind[API_KIND_ACCESS]);
    rc = http_get(client->http, url, NULL, HTTP_MAX_JSON, HTTP_QUIET, &resp);
    sep = resp.message[0] ? ": " : "";
    if (rc == 0 && !looks_like_api(resp.body, resp.len, project_key != NULL)) {
        log_format_line(errbuf, errlen, "unexpected answer from %s: not the Bitbucket API",
                        client->base);
        rc = -EIO;
    } else if (rc == 0) {
        /* fine */
    } else if (resp.transport || resp.status == 0) {
        log_format_line(errbuf, errlen, "cannot reach %s: %s", client->base, resp.message);
    } else if (resp.status == 401) {
        log_format_line(errbuf, errlen, "token rejected by %s (HTTP 401)%s%s", client->base, sep,
                        resp.message);
    } else if (rc == -EACCES) {
        log_format_line(errbuf, errlen, "access to workspace '%s'%s%s%s denied (HTTP %ld)%s%s",
                        workspace, project_key ? " or project '" : "",
                        project_key ? project_key : "", project_key ? "'" : "", resp.status, sep,
                        resp.message);
    } else if (rc == -ENOENT && project_key) {
        log_format_line(errbuf, errlen, "workspace '%s' or project '%s' not found (HTTP %ld)",
                        workspace, project_key, resp.status);
    } else if (rc == -ENOENT) {
        log_format_line(errbuf, errlen, "workspace '%s' not found (HTTP %ld)", workspace,
                        resp.status);
    } else {
        log_format_line(errbuf, errlen, "unexpected answer from %s (HTTP %ld)%s%s", client->base,
                        resp.status, sep, resp.message);
    }
    http_response_release(&resp);
    free(url);
    return rc;
}

/* ---- repositories ---- */

void api_repo_list_release(struct api_repo_list *list)
{
    size_t i;

    if (!list)
        return;
    for (i = 0; i < list->count; i++)
        parse_repo_release(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

struct repo_acc {
    struct api_repo_list *list;
    size_t alloc;
};

static int add_repo(json_t *item, void *ctx)
{
    struct repo_acc *acc = ctx;
    struct api_repo_list *list = acc->list;
    struct api_repo *items;
    int rc;

    items = grow_array(list->items, &acc->alloc, list->count, sizeof(*list->items));
    if (!items)
        return -ENOMEM;
    list->items = items;
    rc = parse_repo(item, &list->items[list->count]);
    if (rc == -EINVAL) {
        log_once(LOG_LEVEL_WARN, "api:repo-without-slug",
                 "ignoring a repository entry without a usable slug");
        return 0;
    }
    if (rc < 0)
        return rc;
    list->count++;
    return 0;
}

/* Sort keys for de-duplication: entries remember where they came from. */
struct repo_key {
    const char *uuid;
    size_t index;
};

static int cmp_repo_key(const void *a, const void *b)
{
    const struct repo_key *x = a, *y = b;
    int c = strcmp(x->uuid, y->uuid);

    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int cmp_repo_slug(const void *a, const void *b)
{
    const struct api_repo *x = a, *y = b;
    int c = strcmp(x->slug, y->slug);

    return c ? c : strcmp(x->uuid, y->uuid);
}

/*
 * Pages of an unstable order can repeat an entry: keep the first of each
 * uuid, then sort by slug, and keep the first of two entries with one slug
 * (a rename between two pages) so that names stay unique.
 */
static int repos_dedupe_sort(struct api_repo_list *list)
{
    struct repo_key *keys;
    unsigned char *drop;
    size_t i, n = list->count, kept;

    if (n == 0)
        return 0;
    keys = calloc(n, sizeof(*keys));
    drop = calloc(n, 1);
    if (!keys || !drop) {
        free(keys);
        free(drop);
        return -ENOMEM;
    }
    for (i = 0; i < n; i++) {
        keys[i].uuid = list->items[i].uuid;
        keys[i].index = i;
    }
    qsort(keys, n, sizeof(*keys), cmp_repo_key);
    for (i = 1; i < n; i++) {
        if (keys[i].uuid[0] && strcmp(keys[i].uuid, keys[i - 1].uuid) == 0)
            drop[keys[i].index] = 1;
    }
    for (i = 0, kept = 0; i < n; i++) {
        if (drop[i])
            parse_repo_release(&list->items[i]);
        else
            list->items[kept++] = list->items[i];
    }
    free(keys);
    free(drop);
    qsort(list->items, kept, sizeof(*list->items), cmp_repo_slug);
    n = kept;
    for (i = 1, kept = n ? 1 : 0; i < n; i++) {
        if (strcmp(list->items[i].slug, list->items[kept - 1].slug) == 0) {
            log_once(LOG_LEVEL_WARN, "api:repo-duplicate-slug",
                     "duplicate repository slug with another uuid; keeping the first");
            parse_repo_release(&list->items[i]);
        } else {
            list->items[kept++] = list->items[i];
        }
    }
    list->count = kept;
    return 0;
}

int api_list_repos(struct api_client *client, const char *workspace, const char *project_key,
                   struct api_repo_list *out)
{
    struct repo_acc acc = {.list = out};
    struct buf u, qb;
    char *url, *q = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    url_repo(&u, client, workspace, NULL);
    url_add_query(&u, "pagelen", "100");
    url_add_query(&u, "sort", "slug");
    if (project_key) {
        /* BBQL string literal: a key never holds '"' or '\', refuse one that does */
        if (strpbrk(project_key, "\"\\")) {
            buf_release(&u);
            return -EINVAL;
        }
        buf_init(&qb, 4096);
        buf_appends(&qb, "project.key=\"");
        buf_appends(&qb, project_key);
        buf_appends(&qb, "\"");
        q = buf_take(&qb, NULL);
        if (!q) {
            buf_release(&u);
            return qb.err == -ENOMEM ? -ENOMEM : -EINVAL;
        }
        url_add_query(&u, "q", q);
        free(q);
    }
    url = url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = walk_pages(client, API_KIND_REPOS, url, add_repo, &acc);
    if (rc == 0)
        rc = repos_dedupe_sort(out);
    if (rc < 0)
        api_repo_list_release(out);
    free(url);
    return rc;
}

/* ---- branches and tags ---- */

void api_ref_list_release(struct api_ref_list *list)
{
    size_t i;

    if (!list)
        return;
    for (i = 0; i < list->count; i++)
        parse_ref_release(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

struct ref_acc {
    struct api_ref_list *list;
    size_t alloc;
};

static int add_ref(json_t *item, void *ctx)
{
    struct ref_acc *acc = ctx;
    struct api_ref_list *list = acc->list;
    struct api_ref *items;
    int rc;

    items = grow_array(list->items, &acc->alloc, list->count, sizeof(*list->items));
    if (!items)
        return -ENOMEM;
    list->items = items;
    rc = parse_ref(item, &list->items[list->count]);
    if (rc == -EINVAL) {
        log_once(LOG_LEVEL_WARN, "api:ref-without-hash",
                 "ignoring a branch or tag without a name or a full commit hash");
        return 0;
    }
    if (rc < 0)
        return rc;
    list->count++;
    return 0;
}

static int cmp_ref_name(const void *a, const void *b)
{
    const struct api_ref *x = a, *y = b;

    return strcmp(x->name, y->name);
}

static int list_refs(struct api_client *c, const char *workspace, const char *repo,
                     enum api_kind kind, struct api_ref_list *out)
{
    struct ref_acc acc = {.list = out};
    struct buf u;
    size_t i, kept;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    url_repo(&u, c, workspace, repo);
    url_add_segment(&u, "refs");
    url_add_segment(&u, kind == API_KIND_TAGS ? "tags" : "branches");
    url_add_query(&u, "pagelen", "100");
    url_add_query(&u, "sort", "name");
    /* include-only mode: next must be named or the pagination link is dropped */
    url_add_query(&u, "fields", "size,page,pagelen,next,values.name,values.target.hash,values.target.date");
    url = url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = walk_pages(c, kind, url, add_ref, &acc);
    free(url);
    if (rc < 0) {
        api_ref_list_release(out);
        return rc;
    }
    /* The API sorts "naturally" (1.10 after 1.9); callers get plain byte order, no repeats. */
    if (out->count > 1)
        qsort(out->items, out->count, sizeof(*out->items), cmp_ref_name);
    for (i = 1, kept = out->count ? 1 : 0; i < out->count; i++) {
        if (strcmp(out->items[i].name, out->items[kept - 1].name) == 0)
            parse_ref_release(&out->items[i]);
        else
            out->items[kept++] = out->items[i];
    }
    out->count = kept;
    return 0;
}

int api_list_branches(struct api_client *client, const char *workspace, const char *repo,
                      struct api_ref_list *out)
{
    return list_refs(client, workspace, repo, API_KIND_BRANCHES, out);
}

int api_list_tags(struct api_client *client, const char *workspace, const char *repo,
                  struct api_ref_list *out)
{
    return list_refs(client, workspace, repo, API_KIND_TAGS, out);
}

/* ---- commits ---- */

void api_commit_list_release(struct api_commit_list *list)
{
    if (!list)
        return;
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

struct commit_acc {
    struct api_commit_list *list;
    size_t alloc;
    size_t limit;
};

static int add_commit(json_t *item, void *ctx)
{
    struct commit_acc *acc = ctx;
    struct api_commit_list *list = acc->list;
    struct api_commit_summary *items;

    items = grow_array(list->items, &acc->alloc, list->count, sizeof(*list->items));
    if (!items)
        return -ENOMEM;
    list->items = items;
    if (parse_commit_summary(item, &list->items[list->count]) < 0) {
        log_once(LOG_LEVEL_WARN, "api:commit-without-hash",
                 "ignoring a commit entry without a full hash");
        return 0;
    }
    list->count++;
    return list->count >= acc->limit ? 1 : 0;
}

int api_list_commits(struct api_client *client, const char *workspace, const char *repo,
                     const char *revision, size_t limit, struct api_commit_list *out)
{
    struct commit_acc acc = {.list = out, .limit = limit};
    char pagelen[24];
    struct buf u;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!revision || !*revision)
        return -EINVAL;
    if (limit == 0)
        return 0;
    snprintf(pagelen, sizeof(pagelen), "%zu", limit < PAGELEN_MAX ? limit : (size_t)PAGELEN_MAX);
    url_repo(&u, client, workspace, repo);
    url_add_segment(&u, "commits");
    url_add_path(&u, revision); /* feature/x stays feature/x: the API takes it so */
    url_add_query(&u, "pagelen", pagelen);
    url_add_query(&u, "fields", "next,values.hash,values.date");
    url = url_finish(&u, &rc);
    if (!url) {
        api_commit_list_release(out);
        return rc;
    }
    rc = walk_pages(client, API_KIND_COMMITS, url, add_commit, &acc);
    free(url);
    if (rc < 0)
        api_commit_list_release(out);
    return rc;
}

struct commit_args {
    const char *url;
    const char *hash;
    struct api_commit *out;
};

/* The commit object, if it is the one asked for. */
static int commit_from(json_t *root, void *ctx)
{
    struct commit_args *a = ctx;
    int rc = parse_commit(root, a->out);

    if (rc == -EINVAL || (rc == 0 && strcmp(a->out->hash, a->hash) != 0)) {
        log_bad_json(a->url, "not the commit asked for");
        api_commit_release(a->out);
        rc = -EIO;
    }
    return rc;
}

int api_get_commit(struct api_client *client, const char *workspace, const char *repo,
                   const char *hash, struct api_commit *out)
{
    struct buf u;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!api_is_full_hash(hash))
        return -EINVAL;
    url_repo(&u, client, workspace, repo);
    url_add_segment(&u, "commit");
    url_add_segment(&u, hash);
    url = url_finish(&u, &rc);
    if (!url)
        return rc;
    struct commit_args args = {url, hash, out};
    rc = get_object(client, API_KIND_COMMIT, url, commit_from, &args);
    free(url);
    return rc;
}

/* ---- directory listings ---- */

void api_entry_list_release(struct api_entry_list *list)
{
    size_t i;

    if (!list)
        return;
    for (i = 0; i < list->count; i++)
        parse_entry_release(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

struct entry_acc {
    struct api_entry_list *list;
    size_t alloc;
    const char *dir;
};

static int add_entry(json_t *item, void *ctx)
{
    struct entry_acc *acc = ctx;
    struct api_entry_list *list = acc->list;
    struct api_entry *items;
    char clean[256];
    int rc;

    items = grow_array(list->items, &acc->alloc, list->count, sizeof(*list->items));
    if (!items)
        return -ENOMEM;
    list->items = items;
    rc = parse_entry(item, acc->dir, &list->items[list->count]);
    if (rc == -EINVAL) {
        log_once(LOG_LEVEL_WARN, "api:entry-unusable",
                 "ignoring a directory entry whose path is not a name in the directory listed, "
                 "or whose type is unknown");
        if (log_debug_enabled()) {
            log_sanitize(clean, sizeof(clean), parse_get_string(item, "path"));
            log_debug("ignored entry '%s' listing '%s'", clean, acc->dir);
        }
        return 0;
    }
    if (rc < 0)
        return rc;
    list->count++;
    return 0;
}

/* Sort keys: entries remember their place in the listing. */
struct entry_key {
    struct api_entry entry;
    size_t index;
};

static int cmp_entry_key(const void *a, const void *b)
{
    const struct entry_key *x = a, *y = b;
    int c = strcmp(x->entry.name, y->entry.name);

    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Byte order, one entry per name (the first the API sent), so that names stay unique. */
static int entries_sort_dedupe(struct api_entry_list *list)
{
    struct entry_key *keys;
    size_t i, n = list->count, kept;

    if (n < 2)
        return 0;
    keys = calloc(n, sizeof(*keys));
    if (!keys)
        return -ENOMEM;
    for (i = 0; i < n; i++) {
        keys[i].entry = list->items[i];
        keys[i].index = i;
    }
    qsort(keys, n, sizeof(*keys), cmp_entry_key);
    for (i = 0, kept = 0; i < n; i++) {
        if (kept > 0 && strcmp(keys[i].entry.name, list->items[kept - 1].name) == 0) {
            log_once(LOG_LEVEL_WARN, "api:entry-duplicate",
                     "a directory listing names an entry twice; keeping the first");
            parse_entry_release(&keys[i].entry);
        } else {
            list->items[kept++] = keys[i].entry;
        }
    }
    list->count = kept;
    free(keys);
    return 0;
}

int api_list_dir(struct api_client *client, const char *workspace, const char *repo,
                 const char *hash, const char *dir, struct api_entry_list *out)
{
    struct entry_acc acc = {.list = out, .dir = dir};
    struct buf u;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!api_is_full_hash(hash) || !dir)
        return -EINVAL;
    url_repo(&u, client, workspace, repo);
    url_add_segment(&u, "src");
    url_add_segment(&u, hash);
    url_add_dir(&u, dir); /* the root needs its trailing '/': /src/{hash}/ */
    url_add_query(&u, "pagelen", "100");
    /* include-only mode: next must be named or the pagination link is dropped */
    url_add_query(&u, "fields", "size,page,pagelen,next,values.path,values.type,values.size,values.attributes");
    url = url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = walk_pages(client, API_KIND_TREE, url, add_entry, &acc);
    free(url);
    if (rc < 0) {
        api_entry_list_release(out);
        return rc;
    }
    rc = entries_sort_dedupe(out);
    if (rc < 0)
        api_entry_list_release(out);
    return rc;
}

/* ---- a directory and those below it, in one listing ---- */

void api_subtree_release(struct api_subtree *tree)
{
    if (!tree)
        return;
    for (size_t i = 0; i < tree->count; i++) {
        free(tree->dirs[i].path);
        api_entry_list_release(&tree->dirs[i].entries);
    }
    free(tree->dirs);
    memset(tree, 0, sizeof(*tree));
}

/* One entry of a recursive listing, with the directory it is in. */
struct subtree_item {
    char *parent;
    size_t depth; /* of parent below the directory listed: 0 for the directory itself */
    size_t index; /* place in the listing */
    struct api_entry entry;
};

struct subtree_acc {
    const char *dir;
    unsigned max_depth;
    struct subtree_item *items;
    size_t count, alloc;
};

static void subtree_items_release(struct subtree_acc *acc)
{
    for (size_t i = 0; i < acc->count; i++) {
        free(acc->items[i].parent);
        parse_entry_release(&acc->items[i].entry);
    }
    free(acc->items);
}

/* The depth of path below dir (0 when equal), or -1 when it is not dir or below it. */
static long depth_below(const char *dir, const char *path)
{
    size_t dirlen = strlen(dir);
    long depth = 0;
    const char *rest = path;

    if (dirlen > 0) {
        if (strncmp(path, dir, dirlen) != 0 || (path[dirlen] != '\0' && path[dirlen] != '/'))
            return -1;
        rest = path + dirlen;
    } else if (*path) {
        depth = 1;
    }
    for (; *rest; rest++)
        depth += *rest == '/';
    return depth;
}

static int add_subtree_item(json_t *item, void *ctx)
{
    struct subtree_acc *acc = ctx;
    const char *path = parse_get_ident(item, "path"), *slash;
    struct subtree_item *it, *items;
    long depth;
    int rc;

    slash = path ? strrchr(path, '/') : NULL;
    char *parent = path ? strndup(path, slash ? (size_t)(slash - path) : 0) : NULL;
    if (path && !parent)
        return -ENOMEM;
    depth = parent ? depth_below(acc->dir, parent) : -1;
    if (depth < 0 || depth >= (long)acc->max_depth) {
        free(parent);
        log_once(LOG_LEVEL_WARN, "api:subtree-entry",
                 "ignoring an entry of a recursive listing outside the directory listed");
        return 0;
    }
    items = grow_array(acc->items, &acc->alloc, acc->count, sizeof(*acc->items));
    if (!items) {
        free(parent);
        return -ENOMEM;
    }
    acc->items = items;
    it = &acc->items[acc->count];
    rc = parse_entry(item, parent, &it->entry);
    if (rc < 0) {
        free(parent);
        if (rc == -EINVAL)
            log_once(LOG_LEVEL_WARN, "api:entry-unusable",
                     "ignoring a directory entry whose path is not a name in the directory "
                     "listed, or whose type is unknown");
        return rc == -EINVAL ? 0 : rc;
    }
    it->parent = parent;
    it->depth = (size_t)depth;
    it->index = acc->count++;
    return 0;
}

static int cmp_subtree_item(const void *a, const void *b)
{
    const struct subtree_item *x = a, *y = b;
    int c = strcmp(x->parent, y->parent);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Adds the complete directory path, with its entries in listing order, to out. */
static int add_subtree_dir(struct api_subtree *out, size_t *alloc, const char *path,
                           struct subtree_item *items, size_t count)
{
    struct api_subtree_dir *dirs, *d;
    size_t lo = 0, hi = count;

    dirs = grow_array(out->dirs, alloc, out->count, sizeof(*out->dirs));
    if (!dirs)
        return -ENOMEM;
    out->dirs = dirs;
    d = &out->dirs[out->count];
    memset(d, 0, sizeof(*d));
    d->path = strdup(path);
    if (!d->path)
        return -ENOMEM;
    out->count++;
    while (lo < hi) { /* the first item of path */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(items[mid].parent, path) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (hi = lo; hi < count && strcmp(items[hi].parent, path) == 0; hi++)
        ;
    if (hi > lo) {
        d->entries.items = calloc(hi - lo, sizeof(*d->entries.items));
        if (!d->entries.items)
            return -ENOMEM;
        for (size_t i = lo; i < hi; i++) { /* moved: the items no longer own them */
            d->entries.items[d->entries.count++] = items[i].entry;
            memset(&items[i].entry, 0, sizeof(items[i].entry));
        }
    }
    return entries_sort_dedupe(&d->entries);
}

int api_list_subtree(struct api_client *client, const char *workspace, const char *repo,
                     const char *hash, const char *dir, unsigned max_depth, size_t max_entries,
                     struct api_subtree *out)
{
    struct subtree_acc acc = {.dir = dir, .max_depth = max_depth};
    size_t alloc = 0, i, ncomplete = 0;
    char depth[16], **complete = NULL;
    struct buf u;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!api_is_full_hash(hash) || !dir || max_depth == 0)
        return -EINVAL;
    snprintf(depth, sizeof(depth), "%u", max_depth);
    url_repo(&u, client, workspace, repo);
    url_add_segment(&u, "src");
    url_add_segment(&u, hash);
    url_add_dir(&u, dir);
    url_add_query(&u, "pagelen", "100");
    url_add_query(&u, "max_depth", depth);
    url_add_query(&u, "fields",
                  "size,page,pagelen,next,values.path,values.type,values.size,values.attributes");
    url = url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = walk_pages_capped(client, API_KIND_TREE, url, (max_entries + 99) / 100, add_subtree_item,
                           &acc);
    free(url);
    if (rc < 0)
        goto out;
    /*
     * Grouped by directory; a directory is complete when its own entries were
     * within reach. The complete ones are named first: grouping moves entries.
     */
    if (acc.count > 1)
        qsort(acc.items, acc.count, sizeof(*acc.items), cmp_subtree_item);
    complete = calloc(acc.count + 1, sizeof(*complete));
    if (!complete || !(complete[ncomplete++] = strdup(dir))) {
        rc = -ENOMEM;
        goto out;
    }
    for (i = 0; i < acc.count; i++) {
        const struct subtree_item *it = &acc.items[i];
        if (it->entry.type != API_ENTRY_DIR || it->depth + 1 >= max_depth)
            continue;
        if (asprintf(&complete[ncomplete], "%s%s%s", it->parent, *it->parent ? "/" : "",
                     it->entry.name) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        ncomplete++;
    }
    for (i = 0; i < ncomplete && rc == 0; i++)
        rc = add_subtree_dir(out, &alloc, complete[i], acc.items, acc.count);
out:
    for (i = 0; i < ncomplete; i++)
        free(complete[i]);
    free(complete);
    subtree_items_release(&acc);
    if (rc < 0)
        api_subtree_release(out);
    return rc;
}

/* ---- file and diff downloads ---- */

int api_get_file(struct api_client *client, const char *workspace, const char *repo,
                 const char *hash, const char *path, int fd, uint64_t *size)
{
    struct http_response resp;
    struct buf u;
    char *url;
    int rc;

    if (size)
        *size = 0;
    if (!api_is_full_hash(hash) || fd < 0)
        return -EINVAL;
    url_repo(&u, client, workspace, repo);
    url_add_segment(&u, "src");
    url_add_segment(&u, hash);
    url_add_path(&u, path);
    url = url_finish(&u, &rc);
    if (!url)
        return rc;
    memset(&resp, 0, sizeof(resp));
    rc = refuse_offline(client, url);
    if (rc == 0) {
        count(&client->by_kind[API_KIND_FILE]);
        rc = http_download(client->http, url, fd, 0, &resp, size);
    }
    http_response_release(&resp);
    free(url);
    return rc;
}

int api_get_diff(struct api_client *client, const char *workspace, const char *repo,
                 const char *hash, int fd, uint64_t *size)
{
    struct http_response resp;
    char key[128 + API_HASH_LEN];
    struct buf u;
    char *url;
    int rc;

    if (size)
        *size = 0;
    if (!api_is_full_hash(hash) || fd < 0)
        return -EINVAL;
    url_repo(&u, client, workspace, repo);
    url_add_segment(&u, "diff");
    url_add_segment(&u, hash); /* one hash: against the first parent */
    url = url_finish(&u, &rc);
    if (!url)
        return rc;
    memset(&resp, 0, sizeof(resp));
    rc = refuse_offline(client, url);
    if (rc == 0) {
        count(&client->by_kind[API_KIND_DIFF]);
        rc = http_download(client->http, url, fd, HTTP_QUIET_555, &resp, size);
    }
    if (rc < 0 && resp.status == 555) {
        snprintf(key, sizeof(key), "api:diff-555 %s", hash);
        log_once(LOG_LEVEL_WARN, key,
                 "the diff of commit %s in '%s/%s' is too large for the API (HTTP 555)", hash,
                 workspace, repo);
    }
    http_response_release(&resp);
    free(url);
    return rc;
}

/* ---- pull requests ---- */

/* Pages of pull requests are at most this long: the API refuses more (HTTP 400). */
#define PR_PAGELEN "50"

void api_pullrequest_list_release(struct api_pullrequest_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        api_pullrequest_release(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof(*list));
}

struct pr_acc {
    struct api_pullrequest_list *list;
    size_t alloc;
};

static int add_pullrequest(json_t *item, void *ctx)
{
    struct pr_acc *acc = ctx;
    struct api_pullrequest_list *list = acc->list;
    struct api_pullrequest *items;
    int rc;

    items = grow_array(list->items, &acc->alloc, list->count, sizeof(*list->items));
    if (!items)
        return -ENOMEM;
    list->items = items;
    rc = parse_pullrequest(item, &list->items[list->count]);
    if (rc == -EINVAL) {
        log_once(LOG_LEVEL_WARN, "api:pr-without-id", "ignoring a pull request without an id");
        return 0;
    }
    if (rc < 0)
        return rc;
    list->count++;
    return 0;
}

static int cmp_pr_id(const void *a, const void *b)
{
    const struct api_pullrequest *x = a, *y = b;

    return (x->id > y->id) - (x->id < y->id);
}

/* Starts u as .../{repo}/pullrequests[/{id}[/{tail}]] (id 0: none); url_finish ends it. */
static void pullrequest_url(struct api_client *c, const char *workspace, const char *repo,
                            uint64_t id, const char *tail, struct buf *u)
{
    char number[24];

    url_repo(u, c, workspace, repo);
    url_add_segment(u, "pullrequests");
    if (id) {
        snprintf(number, sizeof(number), "%" PRIu64, id);
        url_add_segment(u, number);
    }
    if (tail)
        url_add_segment(u, tail);
}

int api_list_pullrequests(struct api_client *client, const char *workspace, const char *repo,
                          struct api_pullrequest_list *out)
{
    struct pr_acc acc = {.list = out};
    struct buf u;
    size_t kept = 0;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    pullrequest_url(client, workspace, repo, 0, NULL, &u);
    url_add_query(&u, "state", "OPEN");
    url_add_query(&u, "pagelen", PR_PAGELEN);
    url = url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = walk_pages(client, API_KIND_PULLREQUESTS, url, add_pullrequest, &acc);
    free(url);
    if (rc < 0) {
        api_pullrequest_list_release(out);
        return rc;
    }
    /* Sorted by id, and an id the pages gave twice (a list changing under us) kept once. */
    if (out->count > 1)
        qsort(out->items, out->count, sizeof(*out->items), cmp_pr_id);
    for (size_t i = 0; i < out->count; i++) {
        if (kept > 0 && out->items[kept - 1].id == out->items[i].id) {
            api_pullrequest_release(&out->items[i]);
            continue;
        }
        out->items[kept++] = out->items[i];
    }
    out->count = kept;
    return 0;
}

struct pr_args {
    uint64_t id;
    struct api_pullrequest *out;
};

/* The pull request object, if it is the one asked for. */
static int pullrequest_from(json_t *root, void *ctx)
{
    struct pr_args *args = ctx;
    int rc = parse_pullrequest(root, args->out);

    if (rc == 0 && args->out->id != args->id) {
        api_pullrequest_release(args->out);
        rc = -EINVAL;
    }
    return rc == -EINVAL ? -EIO : rc;
}

int api_get_pullrequest(struct api_client *client, const char *workspace, const char *repo,
                        uint64_t id, struct api_pullrequest *out)
{
    struct pr_args args = {id, out};
    struct buf u;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    if (id == 0)
        return -EINVAL;
    pullrequest_url(client, workspace, repo, id, NULL, &u);
    url = url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = get_object(client, API_KIND_PULLREQUESTS, url, pullrequest_from, &args);
    free(url);
    return rc;
}

static int add_to_array(json_t *item, void *ctx)
{
    return json_array_append(ctx, item) == 0 ? 0 : -ENOMEM;
}

int api_get_pullrequest_comments(struct api_client *client, const char *workspace,
                                 const char *repo, uint64_t id, struct api_doc *out)
{
    json_t *all = json_array();
    struct buf u;
    char *url = NULL;
    int rc = -ENOMEM;

    memset(out, 0, sizeof(*out));
    if (!all)
        goto out;
    pullrequest_url(client, workspace, repo, id, "comments", &u);
    url_add_query(&u, "pagelen", "100");
    url = url_finish(&u, &rc);
    if (!url)
        goto out;
    rc = walk_pages(client, API_KIND_COMMENTS, url, add_to_array, all);
    if (rc == 0)
        rc = parse_doc(all, out);
out:
    free(url);
    json_decref(all);
    return rc;
}

int api_get_pullrequest_diff(struct api_client *client, const char *workspace, const char *repo,
                             uint64_t id, int fd, uint64_t *size)
{
    struct http_response resp;
    struct buf u;
    char *url;
    int rc;

    if (size)
        *size = 0;
    if (id == 0 || fd < 0)
        return -EINVAL;
    pullrequest_url(client, workspace, repo, id, "diff", &u);
    url = url_finish(&u, &rc);
    if (!url)
        return rc;
    memset(&resp, 0, sizeof(resp));
    rc = refuse_offline(client, url);
    if (rc == 0) {
        count(&client->by_kind[API_KIND_DIFF]);
        rc = http_download(client->http, url, fd, 0, &resp, size);
    }
    http_response_release(&resp);
    free(url);
    return rc;
}

struct hash_args {
    const char *abbrev;
    char *full;
};

/* The commit's full hash, if it starts with the abbreviation asked about. */
static int hash_from(json_t *root, void *ctx)
{
    struct hash_args *args = ctx;
    const char *hash = parse_get_ident(root, "hash");

    if (!hash || !api_is_full_hash(hash) || strncmp(hash, args->abbrev, strlen(args->abbrev)) != 0)
        return -EIO;
    memcpy(args->full, hash, API_HASH_LEN + 1);
    return 0;
}

int api_expand_hash(struct api_client *client, const char *workspace, const char *repo,
                    const char *abbrev, char full[API_HASH_LEN + 1])
{
    struct hash_args args = {abbrev, full};
    size_t n = strspn(abbrev, "0123456789abcdef");
    struct buf u;
    char *url;
    int rc;

    if (n < 7 || n > API_HASH_LEN || abbrev[n] != '\0')
        return -EINVAL;
    if (n == API_HASH_LEN) {
        memcpy(full, abbrev, API_HASH_LEN + 1);
        return 0;
    }
    url_repo(&u, client, workspace, repo);
    url_add_segment(&u, "commit");
    url_add_segment(&u, abbrev);
    url_add_query(&u, "fields", "hash");
    url = url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = get_object(client, API_KIND_COMMIT, url, hash_from, &args);
    free(url);
    return rc;
}

/*
 * client.c - the api_client and how every call of api.h reaches the API
 * (see client.h).
 *
 * Answers go through the response cache: a stored immutable answer is used
 * as it is, a stored mutable one while it is fresh, then revalidated with its
 * ETag, and served stale when the API cannot be reached. Listings are
 * gathered completely before anything is handed out: any failure on any page
 * fails the whole listing, so the filesystem never sees half a directory.
 * When a first page tells how many follow, the rest are fetched at once.
 */
#include "api/client.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/log.h"
#include "api/page.h"
#include "api/parse.h"
#include "api/url.h"
#define DEFAULT_BASE_URL "https://api.bitbucket.org/2.0"
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_TIMEOUT_MS 10000
/* After the API could not be reached, stored answers are served this long without trying again. */
#define STALE_RETRY_SECONDS 10

/* Whether an answer can never change (it is addressed by a full commit hash). */
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
void client_url_repo(struct buf *u, struct api_client *c, const char *workspace, const char *repo)
{
    url_init(u, c->base);
    url_add_segment(u, "repositories");
    url_add_segment(u, workspace);
    if (repo)
        url_add_segment(u, repo);
}

/* The built URL, or NULL with *rc set (-EINVAL for a bad name, -ENOMEM). */
char *client_url_finish(struct buf *u, int *rc)
{
    char *url = buf_take(u, NULL);

    *rc = url ? 0 : (u->err == -ENOMEM ? -ENOMEM : -EINVAL);
    buf_release(u);
    return url;
}

void client_log_bad_json(const char *url, const char *why)
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
int client_refuse_offline(struct api_client *c, const char *url)
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

int client_is_stored(struct api_client *c, const char *url)
{
    char *body = NULL, *etag = NULL;
    int64_t fetched = 0;
    size_t len = 0;
    int have = c->responses.load_mutable &&
               c->responses.load_mutable(c->responses.ctx, url, &body, &len, &etag, &fetched) == 0;
    free(body);
    free(etag);
    return have && (c->offline || is_fresh(c, fetched, (int64_t)time(NULL)));
}

/*
 * GET a mutable URL's body through the stored answer, if any: fresh, it is
 * used as it is; stale, it is revalidated (a 304 refreshes its time) or
 * served when the API cannot be reached; offline, it is all there is.
 */
static int get_mutable(struct api_client *c, enum api_kind kind, const char *url,
                       struct http_response *resp, int *cached, int64_t *fetched_at)
{
    char *body = NULL, *etag = NULL;
    int64_t fetched = 0, now = (int64_t)time(NULL);
    char clean[512];
    size_t len = 0;
    int rc, have;

    have = c->responses.load_mutable &&
           c->responses.load_mutable(c->responses.ctx, url, &body, &len, &etag, &fetched) == 0;
    *fetched_at = now; /* a 304 confirms the stored answer now */
    if (have && (c->offline || is_fresh(c, fetched, now))) {
        *fetched_at = fetched;
        client_count(&c->stored);
        use_stored(resp, body, len, etag);
        *cached = 1;
        return 0;
    }
    rc = client_refuse_offline(c, url);
    if (rc < 0)
        goto out;
    if (have && now < __atomic_load_n(&c->down_until, __ATOMIC_RELAXED))
        goto stale;
    client_count(&c->by_kind[kind]);
    rc = http_get(c->http, url, have ? etag : NULL, HTTP_MAX_JSON, 0, resp);
    if (api_unreachable(rc, resp))
        __atomic_store_n(&c->down_until, (int64_t)time(NULL) + STALE_RETRY_SECONDS,
                         __ATOMIC_RELAXED);
    else if (__atomic_exchange_n(&c->down_until, 0, __ATOMIC_RELAXED) != 0)
        log_forget("api:stale"); /* back: the next outage is logged again */
    if (rc == 0 && resp->status == 304 && have) {
        client_count(&c->not_modified);
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
    *fetched_at = fetched;
    client_count(&c->stale);
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
 * used (*cached says so, and *fetched_at when the stored answer was fetched
 * or confirmed); resp is the caller's to release either way.
 */
static int get_body(struct api_client *c, enum api_kind kind, const char *url,
                    struct http_response *resp, int *cached, int64_t *fetched_at)
{
    memset(resp, 0, sizeof(*resp));
    *cached = 0;
    *fetched_at = 0;
    if (!client_is_immutable(kind))
        return get_mutable(c, kind, url, resp, cached, fetched_at);
    if (c->responses.load &&
        c->responses.load(c->responses.ctx, url, &resp->body, &resp->len) == 0) {
        client_count(&c->stored);
        *cached = 1;
        resp->status = 200;
        return 0;
    }
    int rc = client_refuse_offline(c, url);
    if (rc < 0)
        return rc;
    client_count(&c->by_kind[kind]);
    return http_get(c->http, url, NULL, HTTP_MAX_JSON, 0, resp);
}

/* GET url again, bypassing a stored answer that turned out damaged. */
static int refetch(struct api_client *c, enum api_kind kind, const char *url,
                   struct http_response *resp)
{
    http_response_release(resp);
    memset(resp, 0, sizeof(*resp));
    int rc = client_refuse_offline(c, url);
    if (rc < 0)
        return rc;
    client_count(&c->by_kind[kind]);
    return http_get(c->http, url, NULL, HTTP_MAX_JSON, 0, resp);
}

/* Keeps a body that parsed well and came from the network. */
static void keep_body(struct api_client *c, enum api_kind kind, const char *url, int cached,
                      const struct http_response *resp)
{
    int immutable = client_is_immutable(kind);

    if (cached)
        return;
    if (immutable && c->responses.save)
        c->responses.save(c->responses.ctx, url, resp->body, resp->len);
    else if (!immutable && c->responses.save_mutable)
        c->responses.save_mutable(c->responses.ctx, url, resp->body, resp->len, resp->etag,
                                  (int64_t)time(NULL));
}

/*
 * GET url, parse its body as one JSON object and hand it to fn. The answer
 * is kept only when fn took it, and a stored one that fn refuses (damaged, or
 * kept by an older bbfs) is fetched again.
 */
int client_get_object(struct api_client *c, enum api_kind kind, const char *url, object_fn fn,
                      void *ctx, int64_t *fetched_at)
{
    struct http_response resp;
    json_error_t jerr;
    json_t *root;
    int64_t fetched;
    int rc, cached;

    rc = get_body(c, kind, url, &resp, &cached, &fetched);
    for (;;) {
        if (rc < 0)
            break;
        root = json_loadb(resp.body, resp.len, PARSE_JSON_FLAGS, &jerr);
        if (json_is_object(root)) {
            rc = fn(root, ctx);
        } else {
            if (!cached) {
                client_log_bad_json(url, root ? "not a JSON object" : "not JSON");
                client_count(&c->bad_answers);
            }
            rc = -EIO;
        }
        json_decref(root);
        if (rc == 0)
            keep_body(c, kind, url, cached, &resp);
        if (rc == 0 && fetched_at)
            *fetched_at = cached ? fetched : (int64_t)time(NULL);
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

int client_get_doc(struct api_client *c, enum api_kind kind, char *url, struct api_doc *out)
{
    int64_t fetched_at = 0;
    int rc = client_get_object(c, kind, url, doc_from, out, &fetched_at);
    out->fetched_at = fetched_at;
    return rc;
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
        client_count(&c->bad_answers);
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
    int64_t *fetched;  /* of the stored answers */
    size_t next_index; /* atomic: the next page a worker takes */
};

static void *page_worker(void *arg)
{
    struct page_batch *b = arg;
    size_t i;

    while ((i = __atomic_fetch_add(&b->next_index, 1, __ATOMIC_RELAXED)) < b->count)
        b->rcs[i] =
            get_body(b->c, b->kind, b->urls[i], &b->resps[i], &b->cached[i], &b->fetched[i]);
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
    free(b->fetched);
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
/* The older of *oldest and when an answer was fetched (now, unless it was stored). */
static void note_fetched(int64_t *oldest, int cached, int64_t fetched)
{
    int64_t at = cached ? fetched : (int64_t)time(NULL);
    if (*oldest == 0 || at < *oldest)
        *oldest = at;
}

static int walk_rest_at_once(struct api_client *c, const char *second_url, size_t npages,
                             json_t *first, enum api_kind kind, item_fn fn, void *ctx, int *done,
                             int64_t *oldest)
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
    b.fetched = calloc(b.count, sizeof(*b.fetched));
    if (!b.urls || !b.resps || !b.roots || !b.rcs || !b.cached || !b.fetched) {
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
        note_fetched(oldest, b.cached[i], b.fetched[i]);
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
/* A page that came from the network, waiting for the rest of its listing. */
struct fetched_page {
    char *url;
    struct http_response resp;
};

static int walk_pages(struct api_client *c, enum api_kind kind, const char *first_url,
                      size_t max_pages, item_fn fn, void *ctx, int64_t *fetched_at);

int client_walk_pages(struct api_client *c, enum api_kind kind, const char *first_url, item_fn fn,
                      void *ctx, int64_t *fetched_at)
{
    int64_t unused;
    return walk_pages(c, kind, first_url, PAGE_MAX_PAGES, fn, ctx,
                      fetched_at ? fetched_at : &unused);
}

int client_walk_pages_capped(struct api_client *c, enum api_kind kind, const char *first_url,
                             size_t max_pages, item_fn fn, void *ctx)
{
    int64_t fetched_at;
    return walk_pages(c, kind, first_url, max_pages, fn, ctx, &fetched_at);
}

/*
 * walk_pages for at most max_pages pages: -EFBIG, before any later page is
 * asked for, when the first says there are more. *fetched_at gets when the
 * oldest page was fetched.
 */
static int walk_pages(struct api_client *c, enum api_kind kind, const char *first_url,
                      size_t max_pages, item_fn fn, void *ctx, int64_t *fetched_at)
{
    struct http_response resp;
    struct page_walk walk;
    json_t *root = NULL, *values, *item;
    const char *next;
    char *url = NULL, *next_url = NULL;
    struct fetched_page *pending = NULL;
    size_t i, npending = 0, pending_alloc = 0;
    int64_t fetched;
    int rc, cached, stop = 0;

    memset(&resp, 0, sizeof(resp));
    *fetched_at = 0;
    rc = page_walk_init(&walk, c->base, first_url, max_pages);
    if (rc < 0)
        return rc;
    url = strdup(first_url);
    if (!url) {
        rc = -ENOMEM;
        goto out;
    }
    while (url) {
        rc = get_body(c, kind, url, &resp, &cached, &fetched);
        if (rc == 0)
            rc = parse_page(c, kind, url, &resp, &cached, &root, &values, &next);
        if (rc < 0)
            goto out;
        note_fetched(fetched_at, cached, fetched);
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
        rc = stop ? 0 : page_walk_next(&walk, next, &next_url);
        if (rc == 0 && !cached) {
            /* Kept when the whole walk succeeds: pages of a broken chain would be replayed. */
            struct fetched_page *grown =
                client_grow_array(pending, &pending_alloc, npending, sizeof(*pending));
            if (!grown) {
                rc = -ENOMEM;
            } else {
                pending = grown;
                pending[npending].url = url;
                pending[npending++].resp = resp;
                memset(&resp, 0, sizeof(resp));
                url = NULL;
            }
        }
        http_response_release(&resp);
        free(url);
        url = next_url;
        next_url = NULL;
        size_t npages = walk.pages == 2 && url ? page_count(root) : 0;
        if (rc == 0 && npages > max_pages)
            rc = -EFBIG;
        else if (rc == 0 && npages > 2 && !near_rate_limit(c)) {
            int done;
            rc = walk_rest_at_once(c, url, npages, root, kind, fn, ctx, &done, fetched_at);
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
    for (i = 0; i < npending; i++) {
        if (rc == 0)
            keep_body(c, kind, pending[i].url, 0, &pending[i].resp);
        http_response_release(&pending[i].resp);
        free(pending[i].url);
    }
    free(pending);
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

int client_collect(json_t *item, void *collector)
{
    struct collector *c = collector;
    char *items = client_grow_array(c->items, &c->alloc, c->count, c->elem);
    int rc;

    if (!items)
        return -ENOMEM;
    c->items = items;
    memset(items + c->count * c->elem, 0, c->elem);
    rc = c->parse(item, items + c->count * c->elem, c->arg);
    if (rc == -EINVAL) {
        log_once(LOG_LEVEL_WARN, c->skip_key, "%s", c->skip_message);
        if (log_debug_enabled()) {
            char *text = json_dumps(item, JSON_COMPACT), clean[256];
            log_sanitize(clean, sizeof(clean), text ? text : "?");
            log_debug("ignored entry %s", clean);
            free(text);
        }
        return 0;
    }
    if (rc < 0)
        return rc;
    c->count++;
    return c->limit && c->count >= c->limit ? 1 : 0;
}

int client_download(struct api_client *c, enum api_kind kind, const char *url, int fd,
                    unsigned flags, struct http_response *resp, uint64_t *size)
{
    int rc;

    memset(resp, 0, sizeof(*resp));
    rc = client_refuse_offline(c, url);
    if (rc < 0)
        return rc;
    client_count(&c->by_kind[kind]);
    return http_download(c->http, url, fd, flags, resp, size);
}

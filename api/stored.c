/*
 * stored.c - when a stored answer stands in for a request (see stored.h):
 * freshness, revalidation with If-None-Match, stale answers while the API
 * cannot be reached (said once per outage, with its cause), offline use,
 * and the second chance a damaged stored body gets from the API.
 */
#include "api/stored.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/client.h"
#include "api/log.h"
#include "api/url.h"

/* A stored mutable answer, as load_mutable hands it over. */
struct stored_answer {
    char *body;
    size_t len;
    char *etag;
    int64_t fetched_at;
};

void api_set_response_cache(struct api_client *client, const struct api_response_cache *cache)
{
    client->stored.cache = *cache;
}

void api_expire(struct api_client *client)
{
    __atomic_store_n(&client->stored.expired_at, (int64_t)time(NULL), __ATOMIC_RELAXED);
}

/* Loads the stored answer for url into a: 1, or 0 when there is none. peek: no request follows. */
static int load_mutable(struct api_client *c, const char *url, int peek, struct stored_answer *a)
{
    const struct api_response_cache *cache = &c->stored.cache;
    int (*load)(void *, const char *, char **, size_t *, char **, int64_t *) =
        peek && cache->peek_mutable ? cache->peek_mutable : cache->load_mutable;

    memset(a, 0, sizeof(*a));
    return load && load(cache->ctx, url, &a->body, &a->len, &a->etag, &a->fetched_at) == 0;
}

static void stored_answer_release(struct stored_answer *a)
{
    free(a->body);
    free(a->etag);
    memset(a, 0, sizeof(*a));
}

/* Whether a stored answer fetched at fetched_at may be used without asking the API. */
static int is_fresh(struct api_client *c, int64_t fetched_at, int64_t now)
{
    return fetched_at <= now && now - fetched_at < c->stored.ttl &&
           fetched_at > __atomic_load_n(&c->stored.expired_at, __ATOMIC_RELAXED);
}

int stored_is_usable(struct api_client *c, const char *url, int any_age)
{
    struct stored_answer a;
    int usable = load_mutable(c, url, 1, &a) &&
                 (any_age || c->offline || is_fresh(c, a.fetched_at, (int64_t)time(NULL)));

    stored_answer_release(&a);
    return usable;
}

/* Makes resp hold the stored answer (taking its body and etag) as if it were a 200. */
static void use_stored(struct http_response *resp, struct stored_answer *a)
{
    http_response_release(resp);
    resp->status = 200;
    resp->body = a->body;
    resp->len = a->len;
    resp->etag = a->etag;
    resp->fetched_at = a->fetched_at;
    memset(a, 0, sizeof(*a));
}

/*
 * Serves the stored answer a in place of resp, a failed request that says
 * the API cannot be reached: the outage's one line (http.h) says so, with
 * its cause.
 */
static void serve_stale(struct api_client *c, const char *url, struct http_response *resp,
                        struct stored_answer *a)
{
    char shown[512], cause[320];

    client_count(&c->stored.stale);
    http_describe_failure(resp, cause, sizeof(cause));
    log_once(LOG_LEVEL_WARN, HTTP_LOG_KEY_OUTAGE,
             "cannot reach the API (%s): serving stored, maybe stale, data for %s (and maybe more)",
             cause, url_for_log(url, shown, sizeof(shown)));
    use_stored(resp, a);
}

/*
 * GET a mutable URL's body through its stored answer, if any: fresh, it is
 * used as it is; stale, it is revalidated (a 304 refreshes its time) or
 * served when the API cannot be reached (at once while the client is paused
 * by an outage); offline, it is all there is.
 */
static int get_mutable(struct api_client *c, enum api_kind kind, const char *url, unsigned flags,
                       struct http_response *resp, int *from_store)
{
    int64_t now = (int64_t)time(NULL);
    struct stored_answer a;
    int rc, have = load_mutable(c, url, 0, &a);

    *from_store = have;
    if (have && (c->offline || is_fresh(c, a.fetched_at, now))) {
        client_count(&c->stored.used);
        use_stored(resp, &a);
        return 0;
    }
    rc = client_fetch(c, kind, url, have ? a.etag : NULL, flags | (have ? HTTP_QUIET_OUTAGE : 0),
                      resp);
    if (rc == -EWOULDBLOCK || rc == -EINTR) {
        /* not sent, or given up on: nothing learnt about the API */
        *from_store = 0;
        stored_answer_release(&a);
        return rc;
    }
    if (have && rc == 0 && resp->status == 304) {
        client_count(&c->stored.not_modified);
        if (c->stored.cache.save_mutable)
            c->stored.cache.save_mutable(c->stored.cache.ctx, url, a.body, a.len, a.etag, now);
        a.fetched_at = now; /* confirmed just now */
        use_stored(resp, &a);
        return 0;
    }
    if (have && http_is_outage(rc, resp)) {
        serve_stale(c, url, resp, &a);
        return 0;
    }
    *from_store = 0;
    stored_answer_release(&a);
    resp->fetched_at = now;
    return rc;
}

/* GET url's body, from the store when it holds one that may be used (*from_store says so). */
static int get_body(struct api_client *c, enum api_kind kind, const char *url, unsigned flags,
                    struct http_response *resp, int *from_store)
{
    const struct api_response_cache *cache = &c->stored.cache;

    memset(resp, 0, sizeof(*resp));
    if (!client_is_immutable(kind))
        return get_mutable(c, kind, url, flags, resp, from_store);
    *from_store = cache->load && cache->load(cache->ctx, url, &resp->body, &resp->len) == 0;
    if (!*from_store)
        return client_fetch(c, kind, url, NULL, flags, resp);
    client_count(&c->stored.used);
    resp->status = 200;
    return 0;
}

int stored_get_checked(struct api_client *c, enum api_kind kind, const char *url, unsigned flags,
                       answer_check_fn check, void *ctx, struct http_response *resp,
                       int *from_store)
{
    int rc = get_body(c, kind, url, flags, resp, from_store);

    if (rc == 0)
        rc = check(resp, *from_store, ctx);
    if (rc < 0 && rc != -ENOMEM && *from_store) {
        /* A damaged or unusable stored answer: ask the API instead. */
        *from_store = 0;
        http_response_release(resp);
        rc = client_fetch(c, kind, url, NULL, flags, resp);
        if (rc == 0)
            rc = check(resp, 0, ctx);
    }
    return rc;
}

void stored_keep(struct api_client *c, enum api_kind kind, const char *url,
                 const struct http_response *resp)
{
    const struct api_response_cache *cache = &c->stored.cache;

    if (client_is_immutable(kind) && cache->save)
        cache->save(cache->ctx, url, resp->body, resp->len);
    else if (!client_is_immutable(kind) && cache->save_mutable)
        cache->save_mutable(cache->ctx, url, resp->body, resp->len, resp->etag,
                            (int64_t)time(NULL));
}

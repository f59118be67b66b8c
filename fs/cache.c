/*
 * cache.c - single-flight, TTL-honouring object cache (see cache.h).
 *
 * One mutex guards the table; fetches run without it so that lookups of
 * other keys go on while the network is slow. A per-entry generation counter
 * lets waiters take the outcome of the fetch they waited for instead of
 * starting one of their own after it failed.
 */
#include "fs/cache.h"

#include "api/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* After a failed refresh, serve the stale value this long before retrying. */
#define STALE_RETRY_SECONDS 10

struct cache_ref {
    unsigned refs; /* guarded by the owning cache's lock */
    void *value;
    cache_free_fn free_fn;
    struct cache *cache;
};

struct cache_entry {
    struct cache_entry *next;
    char *key;
    struct cache_ref *ref; /* current value or NULL */
    int negative;          /* last fetch said -ENOENT */
    time_t fetched_at;     /* monotonic seconds */
    time_t fresh_for;      /* seconds, or CACHE_FOREVER */
    int expired;           /* cache_expire_all() was called since the fetch */
    int fetching;
    unsigned generation; /* bumped when a fetch ends */
    int last_error;
};

struct cache {
    pthread_mutex_t lock;
    pthread_cond_t fetched;
    struct cache_entry **buckets;
    size_t nbuckets;
    size_t count;
    uint64_t hits, misses;
};

static time_t now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static uint64_t hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

struct cache *cache_new(void)
{
    struct cache *cache = calloc(1, sizeof(*cache));
    if (!cache)
        return NULL;
    cache->nbuckets = 256;
    cache->buckets = calloc(cache->nbuckets, sizeof(*cache->buckets));
    if (!cache->buckets) {
        free(cache);
        return NULL;
    }
    pthread_mutex_init(&cache->lock, NULL);
    pthread_cond_init(&cache->fetched, NULL);
    return cache;
}

/* Called with the lock held; frees the value when the last reference goes. */
static void ref_put_locked(struct cache_ref *ref)
{
    if (--ref->refs > 0)
        return;
    if (ref->free_fn)
        ref->free_fn(ref->value);
    free(ref);
}

void cache_free(struct cache *cache)
{
    if (!cache)
        return;
    for (size_t i = 0; i < cache->nbuckets; i++) {
        struct cache_entry *e = cache->buckets[i];
        while (e) {
            struct cache_entry *next = e->next;
            if (e->ref)
                ref_put_locked(e->ref);
            free(e->key);
            free(e);
            e = next;
        }
    }
    free(cache->buckets);
    pthread_cond_destroy(&cache->fetched);
    pthread_mutex_destroy(&cache->lock);
    free(cache);
}

static void grow_locked(struct cache *cache)
{
    size_t nbuckets = cache->nbuckets * 2;
    struct cache_entry **buckets = calloc(nbuckets, sizeof(*buckets));
    if (!buckets)
        return; /* keep the longer chains; still correct */
    for (size_t i = 0; i < cache->nbuckets; i++) {
        struct cache_entry *e = cache->buckets[i];
        while (e) {
            struct cache_entry *next = e->next;
            size_t b = hash_key(e->key) & (nbuckets - 1);
            e->next = buckets[b];
            buckets[b] = e;
            e = next;
        }
    }
    free(cache->buckets);
    cache->buckets = buckets;
    cache->nbuckets = nbuckets;
}

static struct cache_entry *find_or_add_locked(struct cache *cache, const char *key)
{
    size_t b = hash_key(key) & (cache->nbuckets - 1);
    for (struct cache_entry *e = cache->buckets[b]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;

    struct cache_entry *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->key = strdup(key);
    if (!e->key) {
        free(e);
        return NULL;
    }
    e->next = cache->buckets[b];
    cache->buckets[b] = e;
    if (++cache->count > cache->nbuckets * 2)
        grow_locked(cache);
    return e;
}

static int is_fresh(const struct cache_entry *e, time_t now)
{
    if ((!e->ref && !e->negative) || e->expired)
        return 0;
    if (e->fresh_for == CACHE_FOREVER)
        return 1;
    return now - e->fetched_at < e->fresh_for;
}

static int serve_locked(struct cache_entry *e, struct cache_ref **out)
{
    if (e->negative)
        return -ENOENT;
    e->ref->refs++;
    *out = e->ref;
    return 0;
}

static int store_result_locked(struct cache *cache, struct cache_entry *e, int rc, void *value,
                               cache_free_fn free_fn, time_t max_age, struct cache_ref **out)
{
    time_t now = now_seconds();

    e->expired = 0;
    if (rc == 0) {
        struct cache_ref *ref = calloc(1, sizeof(*ref));
        if (!ref) {
            if (free_fn)
                free_fn(value);
            return -ENOMEM;
        }
        ref->refs = 1;
        ref->value = value;
        ref->free_fn = free_fn;
        ref->cache = cache;
        if (e->ref)
            ref_put_locked(e->ref);
        e->ref = ref;
        e->negative = 0;
        e->fetched_at = now;
        e->fresh_for = max_age;
        return serve_locked(e, out);
    }
    if (rc == -ENOENT) {
        if (e->ref)
            ref_put_locked(e->ref);
        e->ref = NULL;
        e->negative = 1;
        e->fetched_at = now;
        /* A missing object may appear later, even under an immutable key. */
        e->fresh_for = max_age == CACHE_FOREVER ? 3600 : max_age;
        return -ENOENT;
    }
    if (e->ref && !e->negative) {
        char safe[128];
        log_sanitize(safe, sizeof(safe), e->key);
        log_once(LOG_LEVEL_WARN, e->key, "refresh of '%s' failed (%s); serving cached data", safe,
                 strerror(-rc));
        /* Stale but served: consider it fresh again for a short while. */
        e->fetched_at = now;
        e->fresh_for = STALE_RETRY_SECONDS;
        return serve_locked(e, out);
    }
    return rc;
}

int cache_get(struct cache *cache, const char *key, time_t max_age, cache_fetch_fn fetch,
              cache_free_fn free_fn, void *arg, struct cache_ref **out)
{
    int rc;

    *out = NULL;
    pthread_mutex_lock(&cache->lock);
    struct cache_entry *e = find_or_add_locked(cache, key);
    if (!e) {
        rc = -ENOMEM;
        goto out;
    }
    /* A hit is served at once; waiting for another caller's fetch is a miss too. */
    int waited = 0;
    for (;;) {
        if (is_fresh(e, now_seconds())) {
            if (waited)
                cache->misses++;
            else
                cache->hits++;
            rc = serve_locked(e, out);
            goto out;
        }
        if (!e->fetching)
            break;
        waited = 1;
        unsigned seen = e->generation;
        while (e->fetching && e->generation == seen)
            pthread_cond_wait(&cache->fetched, &cache->lock);
        if (e->generation != seen && e->last_error && !e->ref && !e->negative) {
            /* The fetch we waited for failed with nothing to fall back on. */
            cache->misses++;
            rc = e->last_error;
            goto out;
        }
    }

    cache->misses++;
    e->fetching = 1;
    struct cache_ref *previous = e->ref;
    if (previous)
        previous->refs++;
    pthread_mutex_unlock(&cache->lock);
    void *value = NULL;
    int fetched = fetch(arg, previous ? previous->value : NULL, &value);
    pthread_mutex_lock(&cache->lock);
    if (previous)
        ref_put_locked(previous);
    e->fetching = 0;
    e->generation++;
    e->last_error = fetched;
    rc = store_result_locked(cache, e, fetched, value, free_fn, max_age, out);
    if (fetched == 0 || fetched == -ENOENT)
        log_forget(e->key);
    pthread_cond_broadcast(&cache->fetched);
out:
    pthread_mutex_unlock(&cache->lock);
    return rc;
}

int cache_peek(struct cache *cache, const char *key, struct cache_ref **out)
{
    int rc = -EAGAIN;

    *out = NULL;
    pthread_mutex_lock(&cache->lock);
    size_t b = hash_key(key) & (cache->nbuckets - 1);
    for (struct cache_entry *e = cache->buckets[b]; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            if (is_fresh(e, now_seconds())) {
                cache->hits++;
                rc = serve_locked(e, out);
            }
            break;
        }
    pthread_mutex_unlock(&cache->lock);
    return rc;
}

int cache_put(struct cache *cache, const char *key, time_t max_age, void *value,
              cache_free_fn free_fn)
{
    struct cache_ref *unused = NULL;
    int rc = -EEXIST;

    pthread_mutex_lock(&cache->lock);
    struct cache_entry *e = find_or_add_locked(cache, key);
    if (!e) {
        rc = -ENOMEM;
    } else if (!e->ref && !e->fetching) {
        rc = store_result_locked(cache, e, 0, value, free_fn, max_age, &unused);
        if (unused)
            ref_put_locked(unused);
        value = NULL; /* store_result_locked owns it now, even when it failed */
    }
    pthread_mutex_unlock(&cache->lock);
    if (value && free_fn)
        free_fn(value);
    return rc;
}

void *cache_ref_value(const struct cache_ref *ref)
{
    return ref->value;
}

void cache_ref_put(struct cache_ref *ref)
{
    if (!ref)
        return;
    struct cache *cache = ref->cache;
    pthread_mutex_lock(&cache->lock);
    ref_put_locked(ref);
    pthread_mutex_unlock(&cache->lock);
}

void cache_counts(struct cache *cache, uint64_t *hits, uint64_t *misses)
{
    pthread_mutex_lock(&cache->lock);
    *hits = cache->hits;
    *misses = cache->misses;
    pthread_mutex_unlock(&cache->lock);
}

void cache_expire_all(struct cache *cache)
{
    pthread_mutex_lock(&cache->lock);
    for (size_t i = 0; i < cache->nbuckets; i++)
        for (struct cache_entry *e = cache->buckets[i]; e; e = e->next)
            if (e->fresh_for != CACHE_FOREVER)
                e->expired = 1;
    pthread_mutex_unlock(&cache->lock);
}

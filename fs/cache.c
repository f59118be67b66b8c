/*
 * cache.c - single-flight, TTL-honouring, size-bounded object cache (see
 * cache.h).
 *
 * One mutex guards the table; fetches run without it so that lookups of
 * other keys go on while the network is slow. A per-entry generation counter
 * lets waiters take the outcome of the fetch they waited for instead of
 * starting one of their own after it failed. Waits are those of waits.h: a
 * FUSE thread does not wait at all, a request's thread until it is
 * interrupted. Entries sit on a list in order
 * of use, so the least recently used is found at its tail; an entry that a
 * fetch or a waiter still needs is passed over, as is one whose value a
 * reader holds (dropping it would free nothing yet).
 */
#include "fs/cache.h"

#include "api/log.h"
#include "fs/waits.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* After a failed refresh, serve the stale value this long before retrying. */
#define STALE_RETRY_SECONDS 10
/*
 * A value is fresh at least this long (ms) after its fetch, whatever max_age
 * says: with max_age 0 ("revalidate at each use") the uses of one operation
 * (ls -l: a readdir, then a look-up per name) share one fetch.
 */
#define MIN_FRESH_MS 1000

struct cache_ref {
    unsigned refs; /* guarded by the owning cache's lock */
    void *value;
    size_t size;
    cache_free_fn free_fn;
    struct cache *cache;
};

struct cache_entry {
    struct cache_entry *next;          /* in its bucket */
    struct cache_entry *newer, *older; /* in order of use */
    char *key;
    size_t bytes;          /* what it counts against the bound */
    struct cache_ref *ref; /* current value or NULL */
    int negative;          /* last fetch said -ENOENT */
    int64_t fetched_at;    /* monotonic milliseconds */
    time_t fresh_for;      /* seconds, or CACHE_FOREVER */
    int expired;           /* cache_expire_all() was called since the fetch */
    int fetching;
    unsigned waiters;    /* callers waiting for its fetch: it must stay */
    unsigned generation; /* bumped when a fetch ends */
    int last_error;
};

struct cache {
    pthread_mutex_t lock;
    pthread_cond_t fetched;
    struct cache_entry **buckets;
    size_t nbuckets;
    size_t count;
    struct cache_entry *newest, *oldest;
    size_t bytes, max_bytes;
    uint64_t hits, misses;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

struct cache *cache_new(size_t max_bytes)
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
    cache->max_bytes = max_bytes;
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

/* ---- order of use and the bound ------------------------------------------ */

static void unlink_use_locked(struct cache *cache, struct cache_entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        cache->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        cache->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void mark_used_locked(struct cache *cache, struct cache_entry *e)
{
    if (cache->newest == e)
        return;
    if (e->newer || e->older || cache->oldest == e)
        unlink_use_locked(cache, e);
    e->older = cache->newest;
    if (cache->newest)
        cache->newest->newer = e;
    cache->newest = e;
    if (!cache->oldest)
        cache->oldest = e;
}

/* Sets what e counts against the bound: itself, its key and its value. */
static void recount_locked(struct cache *cache, struct cache_entry *e)
{
    size_t bytes = sizeof(*e) + strlen(e->key) + 1;
    if (e->ref)
        bytes += sizeof(*e->ref) + e->ref->size;
    cache->bytes = cache->bytes - e->bytes + bytes;
    e->bytes = bytes;
}

static void remove_locked(struct cache *cache, struct cache_entry *e)
{
    struct cache_entry **link = &cache->buckets[hash_key(e->key) & (cache->nbuckets - 1)];
    while (*link != e)
        link = &(*link)->next;
    *link = e->next;
    unlink_use_locked(cache, e);
    cache->bytes -= e->bytes;
    cache->count--;
    if (e->ref)
        ref_put_locked(e->ref);
    free(e->key);
    free(e);
}

/* Drops the least recently used entries that can go until the bound holds. */
static void evict_locked(struct cache *cache)
{
    struct cache_entry *e = cache->oldest;
    while (e && cache->bytes > cache->max_bytes) {
        struct cache_entry *newer = e->newer;
        if (!e->fetching && e->waiters == 0 && (!e->ref || e->ref->refs == 1))
            remove_locked(cache, e);
        e = newer;
    }
}

static struct cache_entry *find_locked(struct cache *cache, const char *key)
{
    size_t b = hash_key(key) & (cache->nbuckets - 1);
    for (struct cache_entry *e = cache->buckets[b]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static struct cache_entry *find_or_add_locked(struct cache *cache, const char *key)
{
    struct cache_entry *e = find_locked(cache, key);
    if (e)
        return e;
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->key = strdup(key);
    if (!e->key) {
        free(e);
        return NULL;
    }
    size_t b = hash_key(key) & (cache->nbuckets - 1);
    e->next = cache->buckets[b];
    cache->buckets[b] = e;
    mark_used_locked(cache, e);
    recount_locked(cache, e);
    if (++cache->count > cache->nbuckets * 2)
        grow_locked(cache);
    return e;
}

/* ---- values -------------------------------------------------------------- */

static int is_fresh(const struct cache_entry *e, int64_t now)
{
    if ((!e->ref && !e->negative) || e->expired)
        return 0;
    if (e->fresh_for == CACHE_FOREVER)
        return 1;
    int64_t window = (int64_t)e->fresh_for * 1000;
    return now - e->fetched_at < (window > MIN_FRESH_MS ? window : MIN_FRESH_MS);
}

static int serve_locked(struct cache *cache, struct cache_entry *e, struct cache_ref **out)
{
    mark_used_locked(cache, e);
    if (e->negative)
        return -ENOENT;
    e->ref->refs++;
    *out = e->ref;
    return 0;
}

/* Makes value e's, fresh for max_age from when its data was fetched. */
static int take_value_locked(struct cache *cache, struct cache_entry *e,
                             const struct cache_value *v, cache_free_fn free_fn, time_t max_age)
{
    int64_t now = now_ms();
    struct cache_ref *ref = calloc(1, sizeof(*ref));
    if (!ref) {
        if (free_fn)
            free_fn(v->value);
        return -ENOMEM;
    }
    ref->refs = 1;
    ref->value = v->value;
    ref->size = v->size;
    ref->free_fn = free_fn;
    ref->cache = cache;
    if (e->ref)
        ref_put_locked(e->ref);
    e->ref = ref;
    e->negative = 0;
    e->fetched_at = now - (int64_t)(v->age > 0 ? v->age : 0) * 1000;
    e->fresh_for = max_age;
    if (max_age != CACHE_FOREVER && v->age > 0 && v->age >= max_age) {
        /* Already as old as max_age (kept elsewhere, served stale): like a stale value. */
        e->fetched_at = now;
        e->fresh_for = STALE_RETRY_SECONDS;
    }
    recount_locked(cache, e);
    return 0;
}

static int store_result_locked(struct cache *cache, struct cache_entry *e, int rc,
                               const struct cache_value *v, cache_free_fn free_fn, time_t max_age,
                               struct cache_ref **out)
{
    e->expired = 0;
    if (rc == 0) {
        rc = take_value_locked(cache, e, v, free_fn, max_age);
        return rc ? rc : serve_locked(cache, e, out);
    }
    if (rc == -ENOENT) {
        if (e->ref)
            ref_put_locked(e->ref);
        e->ref = NULL;
        e->negative = 1;
        e->fetched_at = now_ms();
        /* A missing object may appear later, even under an immutable key. */
        e->fresh_for = max_age == CACHE_FOREVER ? 3600 : max_age;
        recount_locked(cache, e);
        return -ENOENT;
    }
    if (e->ref && !e->negative) {
        char safe[128];
        log_sanitize(safe, sizeof(safe), e->key);
        log_once(LOG_LEVEL_WARN, e->key, "refresh of '%s' failed (%s); serving cached data", safe,
                 strerror(-rc));
        /* Stale but served: consider it fresh again for a short while. */
        e->fetched_at = now_ms();
        e->fresh_for = STALE_RETRY_SECONDS;
        return serve_locked(cache, e, out);
    }
    return rc;
}

/*
 * Waits for the fetch of e under way: 0 when it ended (*failed when it failed
 * with nothing to fall back on) or was abandoned, -EWOULDBLOCK in nowait
 * mode, -EINTR when the caller's request was interrupted.
 */
static int wait_for_fetch_locked(struct cache *cache, struct cache_entry *e, int *failed)
{
    unsigned seen = e->generation;
    int rc = 0;

    e->waiters++;
    while (rc == 0 && e->fetching && e->generation == seen)
        rc = waits_cond(&cache->fetched, &cache->lock);
    e->waiters--;
    *failed = rc == 0 && e->generation != seen && e->last_error && !e->ref && !e->negative;
    return rc;
}

/*
 * A fetch that could not wait (nowait mode) or whose caller gave up
 * (interrupted) has no outcome: nothing is counted or remembered, and
 * whoever waited for it fetches anew.
 */
static int abandoned(int rc)
{
    return rc == -EWOULDBLOCK || rc == -EINTR;
}

int cache_get(struct cache *cache, const char *key, time_t max_age, cache_fetch_fn fetch,
              cache_free_fn free_fn, void *arg, struct cache_ref **out)
{
    int rc, failed;

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
        if (is_fresh(e, now_ms())) {
            if (waited)
                cache->misses++;
            else
                cache->hits++;
            rc = serve_locked(cache, e, out);
            goto out;
        }
        if (!e->fetching)
            break;
        rc = wait_for_fetch_locked(cache, e, &failed);
        if (rc)
            goto out;
        waited = 1;
        if (failed) {
            cache->misses++;
            rc = e->last_error;
            goto out;
        }
    }

    e->fetching = 1;
    struct cache_ref *previous = e->ref;
    if (previous)
        previous->refs++;
    pthread_mutex_unlock(&cache->lock);
    struct cache_value value = {0};
    int fetched = fetch(arg, previous ? previous->value : NULL, &value);
    pthread_mutex_lock(&cache->lock);
    if (previous)
        ref_put_locked(previous);
    e->fetching = 0;
    pthread_cond_broadcast(&cache->fetched);
    if (abandoned(fetched)) {
        rc = fetched;
        goto out;
    }
    cache->misses++;
    e->generation++;
    e->last_error = fetched;
    rc = store_result_locked(cache, e, fetched, &value, free_fn, max_age, out);
    if (fetched == 0 || fetched == -ENOENT)
        log_forget(e->key);
    evict_locked(cache);
out:
    pthread_mutex_unlock(&cache->lock);
    return rc;
}

int cache_peek(struct cache *cache, const char *key, struct cache_ref **out)
{
    int rc = -EAGAIN;

    *out = NULL;
    pthread_mutex_lock(&cache->lock);
    struct cache_entry *e = find_locked(cache, key);
    if (e && is_fresh(e, now_ms())) {
        cache->hits++;
        rc = serve_locked(cache, e, out);
    }
    pthread_mutex_unlock(&cache->lock);
    return rc;
}

int cache_put(struct cache *cache, const char *key, time_t max_age, const struct cache_value *value,
              cache_free_fn free_fn)
{
    int rc = -EEXIST, taken = 0;

    pthread_mutex_lock(&cache->lock);
    struct cache_entry *e = find_or_add_locked(cache, key);
    if (!e) {
        rc = -ENOMEM;
    } else if (!e->ref && !e->fetching) {
        e->expired = 0;
        rc = take_value_locked(cache, e, value, free_fn, max_age);
        taken = 1; /* take_value_locked owns it now, even when it failed */
        evict_locked(cache);
    }
    pthread_mutex_unlock(&cache->lock);
    if (!taken && free_fn)
        free_fn(value->value);
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

size_t cache_bytes(struct cache *cache)
{
    pthread_mutex_lock(&cache->lock);
    size_t bytes = cache->bytes;
    pthread_mutex_unlock(&cache->lock);
    return bytes;
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

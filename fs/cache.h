/*
 * cache.h - an in-memory map from string keys to fetched objects.
 *
 * The filesystem asks the cache, and the cache asks a fetch function on a
 * miss. Values are reference-counted so that a refresh can replace an entry
 * while other threads still read the old value. Guarantees:
 *
 *   - one fetch in flight per key: concurrent callers wait for it and share
 *     its result (value or error);
 *   - a value younger than max_age seconds is served without fetching
 *     (max_age CACHE_FOREVER: never refetched); its age counts from when the
 *     data was fetched, which may be before it reached the cache (a stored
 *     answer): a value already max_age old is kept only briefly, like a
 *     stale one. Whatever max_age, a value is fresh for a second after its
 *     fetch, so that max_age 0 ("revalidate at each use") costs one fetch
 *     for all the uses of that second, concurrent or back to back;
 *   - -ENOENT is remembered for max_age too (an unknown hash probed twice
 *     costs one request), other errors are never remembered;
 *   - when a refresh fails and an older value exists, the older value is
 *     served (stale beats nothing), logged once, and retried a few seconds
 *     later rather than on every call;
 *   - the entries' sizes stay within the bound given to cache_new: the least
 *     recently used entries go first. A value goes from memory only when no
 *     reader holds a reference to it (cache_ref_put of the last one frees it);
 *   - waiting for another caller's fetch is a wait of waits.h: in nowait mode
 *     cache_get answers -EWOULDBLOCK instead, and -EINTR once the caller's
 *     request is interrupted. A fetch that answers either of those (it would
 *     have had to wait, or its caller gave up) leaves no trace: nothing is
 *     remembered or counted, no stale value is served for it, and callers
 *     that waited for it fetch anew.
 */
#ifndef BBFS_CACHE_H
#define BBFS_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define CACHE_FOREVER ((time_t)-1)

struct cache;
struct cache_ref;

/* What a fetch produced. */
struct cache_value {
    void *value;
    size_t size; /* about how many bytes it holds, for the bound */
    time_t age;  /* seconds since its data was fetched (0: just now) */
};

/*
 * Produces a value for a key; returns 0 and fills *out, or a negative errno.
 * previous is the value being replaced (NULL on a first fetch), so that a
 * refresh can tell what changed; it stays valid during the call.
 */
typedef int (*cache_fetch_fn)(void *arg, const void *previous, struct cache_value *out);
typedef void (*cache_free_fn)(void *value);

/* max_bytes bounds the entries' sizes (values, keys and bookkeeping). */
struct cache *cache_new(size_t max_bytes);
void cache_free(struct cache *cache);

/*
 * On success *out holds a reference the caller must cache_ref_put(). free_fn
 * releases values produced by fetch when the last reference goes.
 */
int cache_get(struct cache *cache, const char *key, time_t max_age, cache_fetch_fn fetch,
              cache_free_fn free_fn, void *arg, struct cache_ref **out);
/*
 * Like cache_get, but without fetching: 0 with a fresh value, -ENOENT for a
 * fresh "not found", -EAGAIN when nothing fresh is there.
 */
int cache_peek(struct cache *cache, const char *key, struct cache_ref **out);

/*
 * Offers a value for key, as if a fetch had produced it (a fetch that yields
 * neighbours' values too, e.g. a recursive listing). Taken (0) only when the
 * key has no value and no fetch in flight; otherwise the value is freed and
 * -EEXIST returned.
 */
int cache_put(struct cache *cache, const char *key, time_t max_age, const struct cache_value *value,
              cache_free_fn free_fn);

void *cache_ref_value(const struct cache_ref *ref);
void cache_ref_put(struct cache_ref *ref);

/* Gets answered from memory, and gets that had to fetch (or wait for a fetch). */
void cache_counts(struct cache *cache, uint64_t *hits, uint64_t *misses);
/* The entries' sizes now, in bytes. */
size_t cache_bytes(struct cache *cache);

/* Marks every entry that can expire as expired (the next get refetches). */
void cache_expire_all(struct cache *cache);

#endif

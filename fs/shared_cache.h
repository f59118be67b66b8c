/*
 * shared_cache.h - the cache a fleet of machines shares in Redis (issue 17):
 * the third place a look-up tries, after memory and the on-disk store and
 * before the API. This is fs/'s policy over api/redis.h: which answers are
 * shared under which keys, how long a shared mutable answer is trusted, and
 * one fetch across machines for what many miss at once.
 *
 *   - Data addressed by a full commit hash (commit objects, listings at a
 *     commit, file contents, diffs) is shared by every machine under keys
 *     made of the API origin, workspace, repository, kind, hash and path,
 *     never of the token: a machine reaches it only through paths that its
 *     own token's listings show.
 *   - Mutable answers (repository listings and objects, refs, commit and
 *     pull request listings) are shared only among holders of the same token
 *     (keys and checks are HMACs under a secret derived from it), with their
 *     fetch time and ETag, and trusted for what is left of ttl, as the
 *     on-disk store trusts its own.
 *   - A machine about to fetch what Redis lacks takes a lease; the others
 *     wait for its answer, at most SHARED_WAIT_MAX_MS and a quarter of the
 *     request timeout, then fetch themselves.
 *   - Answers fetched are written to Redis by a writer thread, off the
 *     reader's path; what comes from Redis goes into the on-disk store too
 *     (responses.c and blobs.c do that).
 *   - Redis down, slow or failing costs speed only: every call here then
 *     answers "not shared" at once (api/redis.h says for how long).
 *
 * Every function takes sc NULL (no shared cache) and then shares nothing.
 * Every function may be called from any thread.
 */
#ifndef BBFS_SHARED_CACHE_H
#define BBFS_SHARED_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The longest a look-up waits for another machine's fetch. */
#define SHARED_WAIT_MAX_MS 5000
/* How long hash-addressed values live in Redis (maxmemory's LRU may drop them sooner). */
#define SHARED_BY_HASH_EXPIRE_MS (7L * 24 * 3600 * 1000)
/* Mutable values: a day, or twice ttl if longer (old ones still serve a revalidation). */
#define SHARED_MUTABLE_EXPIRE_MIN_MS (24L * 3600 * 1000)
/* A fetch time up to this far ahead of our clock is taken as now; further, as unknown. */
#define SHARED_CLOCK_SKEW_MAX 5

struct api_sink;
struct shared_cache;

struct shared_cache_config {
    const char *url;       /* shared_cache= */
    const char *auth_file; /* shared_cache_auth=, or NULL */
    const char *token;     /* derives the secret of mutable keys; not kept */
    const char *api_url;   /* the API origin, part of every hash-addressed key */
    const char *workspace;
    long ttl;        /* seconds a mutable answer is trusted after its fetch */
    long timeout_ms; /* the request timeout: waits for another machine stay well under it */
};

/*
 * Reads the credential from auth_file (refused like token_file when group-
 * or world-readable) and parses the URL; no network yet. 0, or -errno with
 * one line in err, which never holds the credential.
 */
int shared_cache_open(const struct shared_cache_config *cfg, struct shared_cache **out, char *err,
                      size_t errlen);
/*
 * Connects now, so that an unreachable Redis or a wrong password is logged
 * while start-up messages still reach the terminal; the mount goes on
 * without Redis until it answers again.
 */
void shared_cache_check(struct shared_cache *sc);
/* After every thread that uses it stopped: writes what is queued (briefly), frees. */
void shared_cache_free(struct shared_cache *sc);

/*
 * ---- the API's answers (responses.c) ----
 *
 * On a thread in nowait mode (api_nowait: a FUSE thread, whose request runs
 * again where it may wait) a look-up only reads: it claims no fetch and
 * waits for no other machine's, and a miss is not counted.
 */

/*
 * The answer of url, addressed by a full commit hash: 0 and a malloc'd,
 * NUL-terminated body, or -ENOENT when the caller must fetch it. Waits
 * while another machine fetches it; claims the fetch when nobody does
 * (shared_cache_save then hands the claim on with the answer).
 */
int shared_cache_load(struct shared_cache *sc, const char *url, char **body, size_t *len);
void shared_cache_save(struct shared_cache *sc, const char *url, const char *body, size_t len);

/* A mutable answer, as api_response_cache's load_mutable hands it over. */
struct shared_answer {
    char *body; /* malloc'd and NUL-terminated; NULL: none */
    size_t len;
    char *etag; /* malloc'd, or NULL */
    int64_t fetched_at;
};
void shared_answer_release(struct shared_answer *a);

/*
 * Makes *a (the local answer, body NULL when none) the newest answer there
 * is: when it is not fresh, Redis's if that is newer. When neither is fresh,
 * waits for another machine's fetch or claims it, unless peek (only looking:
 * no fetch follows). 1 when *a came from Redis (keep it locally), else 0.
 */
int shared_cache_load_mutable(struct shared_cache *sc, const char *url, int peek,
                              struct shared_answer *a);
void shared_cache_save_mutable(struct shared_cache *sc, const char *url, const char *body,
                               size_t len, const char *etag, int64_t fetched_at);

/* ---- contents (blobs.c) ---- */

/* What names a content, as blobs.h's struct blob does. */
struct shared_content {
    const char *kind; /* "file", "diff", "prdiff" */
    const char *repo;
    const char *hash;
    const char *path; /* "" for none */
};

/* Fetches a content through sink (see api_get_file): 0 and *size, or -errno. */
typedef int (*shared_fetch_fn)(void *arg, const struct api_sink *sink, uint64_t *size);

/*
 * Writes the content through sink: from Redis when it is there (or another
 * machine fetching it brings it in time), else through fetch, whose bytes
 * are then shared (a copy is kept in memory while the fetch runs, up to
 * Redis's cap on a value). 0 and *size, or an error of fetch or of sink.
 */
int shared_cache_content(struct shared_cache *sc, const struct shared_content *what,
                         const struct api_sink *sink, uint64_t *size, shared_fetch_fn fetch,
                         void *arg);

/* The rows of .bbfs/stats ("shared_cache off" and zeros without one). */
void shared_cache_print_stats(struct shared_cache *sc, FILE *f);

#endif

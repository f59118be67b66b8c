/*
 * redis.h - the client of the cache a fleet of machines shares in Redis
 * (issue 17), on hiredis. Plain C: no hiredis type crosses this header.
 *
 * Faults cost only speed. Each read or write on a socket is bounded by
 * REDIS_OP_TIMEOUT_MS and a new connection by REDIS_CONNECT_TIMEOUT_MS, so a
 * call meeting a fault returns within about their sum (a call finding every
 * connection taken waits at most REDIS_OP_TIMEOUT_MS, then misses). Any
 * failure (refused, timed out, reset, a wrong password, an error reply such
 * as LOADING or OOM) marks Redis down for down_pause_ms: it is logged once
 * with its cause and counted, and meanwhile every call answers "miss" or
 * "not written" without touching the network. After the pause the next call
 * tries again (one at a time); its success is logged and Redis is up. No
 * call ever returns anything a caller must handle beyond "miss".
 *
 * Connections: a pool of at most REDIS_POOL_MAX, taken by one call and given
 * back, so any number of threads may call at once. Every new connection
 * authenticates (AUTH password, or AUTH user password for an ACL user) and
 * SELECTs the database. The credential is copied and wiped on free; it is
 * written to the socket from a buffer of bbfs's own, wiped after use, and
 * never logged. A connection whose idle socket the server closed is replaced
 * once before anything counts as a failure.
 *
 * Values are checked on every read (shared.h): a damaged one is a miss,
 * counted and deleted. A body over max_value is neither written nor read.
 *
 * Keys all start with "bbfs:". An ACL user needs "~bbfs:* +auth +select +ping
 * +getrange +exists +set +del +eval +get" (get inside the lease's script).
 *
 * Writes off the reader's path: redis_put_async() queues the write for a
 * writer thread (started by the first such call, so open before fork(),
 * write after). A full queue drops the write, counted.
 *
 * The process must ignore SIGPIPE (libfuse's fuse_set_signal_handlers does):
 * hiredis writes with write(2), and a Redis that dies mid-write would
 * otherwise kill bbfs. redis_client_new ignores it if nobody handles it yet.
 *
 * A host name is resolved by hiredis (getaddrinfo) for every new connection,
 * outside the connect timeout: use an address or a unix socket where DNS may
 * be slow.
 */
#ifndef BBFS_API_REDIS_H
#define BBFS_API_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "api/shared.h"

#define REDIS_CONNECT_TIMEOUT_MS 200
#define REDIS_OP_TIMEOUT_MS 500
#define REDIS_DOWN_PAUSE_MS 10000
#define REDIS_DEFAULT_MAX_VALUE ((size_t)32 << 20)
#define REDIS_POOL_MAX 8
/* A tree brought by git is a burst of thousands of small writes; bytes bound the memory. */
#define REDIS_QUEUE_MAX_JOBS 16384
#define REDIS_QUEUE_MAX_BYTES ((size_t)128 << 20)
/* How long redis_client_free goes on writing what is queued. */
#define REDIS_CLOSE_FLUSH_MS 2000

struct redis_client;

struct redis_options {
    /* redis://HOST[:PORT][/DB] (port 6379, db 0) or redis+unix:///PATH[?db=N] */
    const char *url;
    /* "password" or "user:password" (the first ':' separates), or NULL; copied */
    const char *credential;
    /* derives the secret of mutable keys and values (shared.h), not kept; NULL: none */
    const char *token;
    size_t max_value;   /* the cap on a body; 0: REDIS_DEFAULT_MAX_VALUE */
    size_t queue_bytes; /* the bound on values waiting to be written; 0: REDIS_QUEUE_MAX_BYTES */
    long down_pause_ms; /* 0: REDIS_DOWN_PAUSE_MS */
};

/*
 * Parses and copies; no network yet. 0; -EINVAL with one line in errbuf for
 * a URL that is not one of the two forms (a password in it, a bad port or
 * db, a relative or too long socket path), or a credential with control
 * characters or an empty password; -ENOMEM.
 */
int redis_client_new(const struct redis_options *opts, struct redis_client **out, char *errbuf,
                     size_t errlen);
/*
 * Writes what is queued for up to REDIS_CLOSE_FLUSH_MS, drops the rest, closes.
 * No other call may be running. NULL is fine.
 */
void redis_client_free(struct redis_client *c);

/* "redis://host:port/db" or "redis+unix:///path?db=N", for messages: never a credential. */
const char *redis_where(const struct redis_client *c);

/*
 * Connects now (AUTH, SELECT, PING), e.g. to report a wrong password on the
 * terminal before daemonizing: 0, or -EAGAIN (logged and marked down like
 * any failure). The connection stays in the pool.
 */
int redis_check(struct redis_client *c);

/* The key of a mutable answer, under this client's secret: 0, -EINVAL without a token, -EIO. */
int redis_key_mutable(struct redis_client *c, const char *request, struct shared_key *out);

/* A value read: the caller owns it (redis_value_release). */
struct redis_value {
    char *body; /* len bytes and a NUL */
    size_t len;
    char *etag; /* NUL-terminated, or NULL */
    int64_t fetched_at;
};
void redis_value_release(struct redis_value *v);

/* What to write; etag (or NULL) is a NUL-terminated string. */
struct redis_entry {
    const void *body;
    size_t len;
    const char *etag;
    int64_t fetched_at;
};

/*
 * 0 and *out on a hit. Otherwise a miss: -ENOENT (absent, damaged, or over
 * max_value), -EAGAIN (Redis down, busy or failing), -ENOMEM.
 */
int redis_get(struct redis_client *c, const struct shared_key *key, struct redis_value *out);

/*
 * Writes entry under key now; expire_ms > 0 sets an expiry. 0; -EFBIG over
 * max_value; -EINVAL (a bad ETag, or a mutable key without a token);
 * -EAGAIN (not written: Redis down or failing); -ENOMEM.
 */
int redis_put(struct redis_client *c, const struct shared_key *key, const struct redis_entry *entry,
              long expire_ms);

/*
 * A lease: "I am fetching this; wait for my answer". The holder puts the
 * value and then releases; the others wait with redis_wait().
 */
struct redis_lease {
    char name[SHARED_KEY_SIZE];
    char token[33]; /* random, so that only its holder releases it */
    int held;
};

/*
 * Takes the lease on key for ttl_ms (SET NX PX): 1, taken (lease->held);
 * 0, another holds it; -EAGAIN, Redis unavailable (fetch without a lease).
 */
int redis_lease_take(struct redis_client *c, const struct shared_key *key, long ttl_ms,
                     struct redis_lease *lease);
/* Releases a held lease if it is still ours (it may have expired); no-op otherwise. */
void redis_lease_release(struct redis_client *c, struct redis_lease *lease);

/* For redis_wait: any value will do. */
#define REDIS_ANY_VALUE INT64_MIN

/*
 * Polls for the value of key while another machine holds its lease: 0 and
 * *out as soon as it is there; -ENOENT when the lease is gone without a
 * value (its holder failed or died: fetch now); -ETIMEDOUT after wait_ms;
 * -EAGAIN when Redis is unavailable. Holds no connection while sleeping.
 * A value fetched at or before newer_than is not the one awaited (a
 * mutable answer being refreshed while the old one is still there):
 * REDIS_ANY_VALUE for any.
 */
int redis_wait(struct redis_client *c, const struct shared_key *key, int64_t newer_than,
               long wait_ms, struct redis_value *out);

/*
 * Queues redis_put(key, entry, expire_ms) for the writer thread, then the
 * release of lease (NULL: none; it is released even when the write is
 * dropped). The body is copied; the caller keeps entry. 0 queued; -EFBIG,
 * -EINVAL as redis_put; -ENOSPC dropped (queue full, counted); -EAGAIN
 * (Redis down: not queued); -ENOMEM.
 */
int redis_put_async(struct redis_client *c, const struct shared_key *key,
                    const struct redis_entry *entry, long expire_ms, struct redis_lease *lease);
/* Waits until the writes queued so far are done: 0, or -ETIMEDOUT after timeout_ms. */
int redis_flush(struct redis_client *c, long timeout_ms);

/* For .bbfs/stats. */
struct redis_stats {
    uint64_t hits;          /* redis_get/redis_wait answered with a good value */
    uint64_t misses;        /* ... without one, for whatever reason */
    uint64_t writes;        /* values stored */
    uint64_t errors;        /* failures of Redis (each marks it down) */
    uint64_t bytes_read;    /* raw values read */
    uint64_t bytes_written; /* raw values written */
    uint64_t damaged;       /* values that failed their check (deleted) */
    uint64_t dropped;       /* asynchronous writes dropped (queue full, or at close) */
    uint64_t oversized;     /* values not written or read for max_value */
    uint64_t skipped;       /* calls answered without the network because Redis was down */
    uint64_t connections;   /* connections opened */
    int down;               /* Redis is considered down now */
};
void redis_get_stats(struct redis_client *c, struct redis_stats *out);

#endif

/*
 * redis_pool.h - connections to one Redis and what its faults cost
 * (internal to api/; used by redis.c, which gives the public contract in
 * redis.h). The only file that sees hiredis is redis_pool.c.
 *
 * At most REDIS_POOL_MAX connections, each used by one call at a time. Every
 * new one authenticates and SELECTs its database. Any failure marks Redis
 * down for the pause (logged once, counted, idle connections closed); until
 * it ends every call answers -EAGAIN without the network, then one call at a
 * time tries again. A reused connection that the server had closed is
 * replaced once before that counts as a failure. A connection that read a
 * reply over POOL_KEEP_REPLY bytes is closed after use rather than kept:
 * hiredis keeps its read buffer as big as the biggest reply until the next.
 *
 * Every function answers -EAGAIN when Redis is down, busy (every connection
 * taken for REDIS_OP_TIMEOUT_MS) or failed.
 */
#ifndef BBFS_API_REDIS_POOL_H
#define BBFS_API_REDIS_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "api/redis_url.h"

#define POOL_KEEP_REPLY ((size_t)1 << 20)

struct redis_pool;

/* Takes the target over (also on failure). 0 or -ENOMEM. No connection yet. */
int pool_new(struct redis_target *target, long down_pause_ms, struct redis_pool **out);
void pool_free(struct redis_pool *p);
const char *pool_where(const struct redis_pool *p);

/*
 * 1 while Redis is down and its pause lasts (counted as skipped, like a call
 * answered -EAGAIN at once), so a caller need not prepare a write for nothing.
 */
int pool_skip(struct redis_pool *p);

/* PING. */
int pool_ping(struct redis_pool *p);

/* A string read from Redis; data stays valid until pool_reply_release. */
struct pool_reply {
    const char *data;
    size_t len; /* 0 when the key is absent */
    void *handle;
};
void pool_reply_release(struct pool_reply *r);
/*
 * Hands over bytes [offset, offset + len) of the reply as a NUL-terminated
 * buffer the caller frees (moved within the reply's own, not copied: a big
 * value is not held twice), and releases the reply. NULL for a bad range.
 */
char *pool_reply_take(struct pool_reply *r, size_t offset, size_t len);

/*
 * Reads at most bound bytes of name's value (GETRANGE) and, when lease_name
 * is not NULL, whether that key exists, in one round trip. 0; -EBADMSG when
 * name holds no string (WRONGTYPE); -EAGAIN.
 */
int pool_read(struct redis_pool *p, const char *name, size_t bound, const char *lease_name,
              struct pool_reply *out, int *lease_exists);

/*
 * SET name value, with PX expire_ms when above 0, and NX when only_new.
 * 1 written; 0 not written because name exists (only_new); -EAGAIN.
 */
int pool_write(struct redis_pool *p, const char *name, const void *value, size_t len,
               long expire_ms, int only_new);

/* Deletes name if its value is still token (a small Lua script). 0 or -EAGAIN. */
int pool_release(struct redis_pool *p, const char *name, const char *token);

/* DEL. */
int pool_del(struct redis_pool *p, const char *name);

struct pool_stats {
    uint64_t errors;      /* failures, each marking Redis down */
    uint64_t skipped;     /* calls answered at once because Redis was down */
    uint64_t connections; /* connections opened (authenticated, on their database) */
    int down;
};
void pool_get_stats(struct redis_pool *p, struct pool_stats *out);

#endif

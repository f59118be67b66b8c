/*
 * redis.c - the shared cache's client (redis.h): checked values, leases and
 * asynchronous writes on top of the connection pool (redis_pool.h, the only
 * part that sees hiredis) and the value format (shared.h).
 *
 * The token passes through redis_client_new only: the secret derived from it
 * is what stays, and it is wiped on free.
 */
#include "api/redis.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "api/log.h"
#include "api/redis_pool.h"
#include "api/redis_url.h"
#include "api/redis_writer.h"

#define WAIT_FIRST_POLL_MS 10
#define WAIT_MAX_POLL_MS 100

struct redis_client {
    struct redis_pool *pool;
    struct shared_secret secret;
    int has_secret;
    size_t max_value;
    struct writer *writer;
    struct redis_stats stats; /* this file's counters, updated with atomics */
};

/* A write queued for the writer thread, and the lease to release after it. */
struct put_job {
    struct writer_job base;
    struct shared_key key;
    char *value; /* built, sealed on the writer's thread; NULL: only the release */
    size_t len;
    long expire_ms;
    struct redis_lease lease;
};

#define count(c, field, n) __atomic_add_fetch(&(c)->stats.field, (n), __ATOMIC_RELAXED)

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void redis_value_release(struct redis_value *v)
{
    if (!v)
        return;
    free(v->body);
    free(v->etag);
    memset(v, 0, sizeof(*v));
}

/*
 * Turns a value read from Redis into *out, taking raw's bytes over: 0;
 * -ENOENT when absent, over the cap, or damaged (then counted and deleted);
 * -ENOMEM.
 */
static int accept_value(struct redis_client *c, const struct shared_key *key,
                        struct pool_reply *raw, struct redis_value *out)
{
    struct shared_entry e;
    int rc;

    if (raw->len == 0)
        return -ENOENT;
    count(c, bytes_read, raw->len);
    rc = shared_value_open(key, &c->secret, raw->data, raw->len, c->max_value, &e);
    if (rc == -EFBIG) {
        count(c, oversized, 1);
        return -ENOENT;
    }
    if (rc < 0) {
        count(c, damaged, 1);
        log_once(LOG_LEVEL_WARN, "redis:damaged",
                 "shared cache %s: a damaged value was deleted (more are only counted)",
                 pool_where(c->pool));
        pool_del(c->pool, key->name);
        return -ENOENT;
    }
    out->etag = e.etag_len ? strndup(e.etag, e.etag_len) : NULL;
    if (e.etag_len && !out->etag)
        return -ENOMEM;
    out->fetched_at = e.fetched_at;
    out->len = e.len;
    out->body = pool_reply_take(raw, (size_t)(e.body - raw->data), e.len);
    if (!out->body) { /* e points into raw: cannot happen */
        redis_value_release(out);
        return -ENOENT;
    }
    return 0;
}

/* The value of key (and whether lease_name exists): 0, -ENOENT, -EAGAIN, -ENOMEM. */
static int read_value(struct redis_client *c, const struct shared_key *key, const char *lease_name,
                      struct redis_value *out, int *lease_exists)
{
    struct pool_reply raw;
    int rc;

    memset(out, 0, sizeof(*out));
    if (key->kind == SHARED_MUTABLE && !c->has_secret)
        return -ENOENT; /* not a key this client could have written */
    rc = pool_read(c->pool, key->name, SHARED_HEADER_LEN + SHARED_ETAG_MAX + c->max_value,
                   lease_name, &raw, lease_exists);
    if (rc == -EBADMSG) { /* not even a string */
        count(c, damaged, 1);
        pool_del(c->pool, key->name);
        return -ENOENT;
    }
    if (rc < 0)
        return rc;
    rc = accept_value(c, key, &raw, out);
    pool_reply_release(&raw);
    return rc;
}

int redis_get(struct redis_client *c, const struct shared_key *key, struct redis_value *out)
{
    int rc = read_value(c, key, NULL, out, NULL);

    count(c, hits, rc == 0);
    count(c, misses, rc != 0);
    return rc;
}

/* Lays out entry's value before any network: as redis_put. */
static int build_value(struct redis_client *c, const struct shared_key *key,
                       const struct redis_entry *entry, char **value, size_t *len)
{
    const struct shared_entry e = {.body = entry->body,
                                   .len = entry->len,
                                   .etag = entry->etag,
                                   .etag_len = entry->etag ? strlen(entry->etag) : 0,
                                   .fetched_at = entry->fetched_at};
    int rc;

    if (key->kind == SHARED_MUTABLE && !c->has_secret)
        return -EINVAL;
    rc = shared_value_build(&e, c->max_value, value, len);
    if (rc == -EFBIG)
        count(c, oversized, 1);
    return rc;
}

/* Seals a built value and writes it: as redis_put. */
static int write_value(struct redis_client *c, const struct shared_key *key, char *value,
                       size_t len, long expire_ms)
{
    int rc = shared_value_seal(key, &c->secret, value, len);

    if (rc == 0)
        rc = pool_write(c->pool, key->name, value, len, expire_ms, 0);
    if (rc < 0)
        return rc;
    count(c, writes, 1);
    count(c, bytes_written, len);
    return 0;
}

int redis_put(struct redis_client *c, const struct shared_key *key, const struct redis_entry *entry,
              long expire_ms)
{
    char *value;
    size_t len;
    int rc;

    if (pool_skip(c->pool))
        return -EAGAIN;
    rc = build_value(c, key, entry, &value, &len);
    if (rc < 0)
        return rc;
    rc = write_value(c, key, value, len, expire_ms);
    free(value);
    return rc;
}

int redis_lease_take(struct redis_client *c, const struct shared_key *key, long ttl_ms,
                     struct redis_lease *lease)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char random[16];
    int rc;

    memset(lease, 0, sizeof(*lease));
    if (ttl_ms <= 0)
        return -EINVAL;
    /* Never blocks (an fstab mount at boot): without randomness, no lease, the caller fetches. */
    if (getrandom(random, sizeof(random), GRND_NONBLOCK) != (ssize_t)sizeof(random))
        return -EAGAIN;
    for (size_t i = 0; i < sizeof(random); i++) {
        lease->token[2 * i] = hex[random[i] >> 4];
        lease->token[2 * i + 1] = hex[random[i] & 0xf];
    }
    shared_lease_name(key, lease->name);
    rc = pool_write(c->pool, lease->name, lease->token, strlen(lease->token), ttl_ms, 1);
    lease->held = rc == 1;
    return rc;
}

void redis_lease_release(struct redis_client *c, struct redis_lease *lease)
{
    if (!lease || !lease->held)
        return;
    pool_release(c->pool, lease->name, lease->token);
    lease->held = 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL); /* a signal only shortens one poll */
}

/* read_value, where a value fetched at or before newer_than counts as absent. */
static int read_newer(struct redis_client *c, const struct shared_key *key, int64_t newer_than,
                      const char *lease_name, struct redis_value *out, int *lease_exists)
{
    int rc = read_value(c, key, lease_name, out, lease_exists);

    if (rc == 0 && out->fetched_at <= newer_than) {
        redis_value_release(out);
        rc = -ENOENT;
    }
    return rc;
}

int redis_wait(struct redis_client *c, const struct shared_key *key, int64_t newer_than,
               long wait_ms, struct redis_value *out)
{
    char lease_name[SHARED_KEY_SIZE];
    int64_t deadline = now_ms() + wait_ms, left;
    long poll = WAIT_FIRST_POLL_MS;
    int rc, lease_exists = 0;

    shared_lease_name(key, lease_name);
    for (;;) {
        rc = read_newer(c, key, newer_than, lease_name, out, &lease_exists);
        if (rc != -ENOENT)
            break; /* a value, or a failure */
        if (!lease_exists) {
            /* Nobody fetching any more; the value may have come just between the two reads. */
            rc = read_newer(c, key, newer_than, NULL, out, NULL);
            break;
        }
        left = deadline - now_ms();
        if (left <= 0) {
            rc = -ETIMEDOUT;
            break;
        }
        sleep_ms(poll < left ? poll : (long)left);
        poll = poll * 2 < WAIT_MAX_POLL_MS ? poll * 2 : WAIT_MAX_POLL_MS;
    }
    count(c, hits, rc == 0);
    count(c, misses, rc != 0);
    return rc;
}

static void free_job(struct put_job *job)
{
    free(job->value);
    free(job);
}

static void run_job(void *ctx, struct writer_job *base)
{
    struct redis_client *c = ctx;
    struct put_job *job = (struct put_job *)base;

    if (job->value)
        write_value(c, &job->key, job->value, job->len, job->expire_ms);
    redis_lease_release(c, &job->lease);
    free_job(job);
}

static void drop_job(void *ctx, struct writer_job *base)
{
    struct redis_client *c = ctx;
    struct put_job *job = (struct put_job *)base;

    if (job->value)
        count(c, dropped, 1);
    free_job(job);
}

int redis_put_async(struct redis_client *c, const struct shared_key *key,
                    const struct redis_entry *entry, long expire_ms, struct redis_lease *lease)
{
    struct put_job *job = calloc(1, sizeof(*job));
    int rc;

    if (!job) {
        redis_lease_release(c, lease);
        return -ENOMEM;
    }
    job->key = *key;
    job->expire_ms = expire_ms;
    if (lease) {
        job->lease = *lease;
        lease->held = 0; /* the job releases it now */
    }
    if (pool_skip(c->pool)) {
        free_job(job); /* and the lease expires: Redis cannot be told anything now */
        return -EAGAIN;
    }
    rc = build_value(c, key, entry, &job->value, &job->len);
    if (rc == 0) {
        job->base.bytes = job->len;
        rc = writer_push(c->writer, &job->base, 0);
        if (rc == 0)
            return 0;
        if (rc == -ENOSPC)
            count(c, dropped, 1);
        free(job->value);
        job->value = NULL;
        job->base.bytes = 0;
    }
    /* No write, but the lease still goes, so that whoever waits for it fetches now. */
    if (job->lease.held && rc != -EAGAIN && writer_push(c->writer, &job->base, 1) == 0)
        return rc;
    free_job(job);
    return rc;
}

int redis_flush(struct redis_client *c, long timeout_ms)
{
    return writer_wait_idle(c->writer, timeout_ms);
}

int redis_client_new(const struct redis_options *opts, struct redis_client **out, char *errbuf,
                     size_t errlen)
{
    static const struct writer_ops ops = {.run = run_job, .drop = drop_job};
    struct redis_target target;
    struct redis_client *c;
    struct sigaction sa;
    int rc;

    *out = NULL;
    rc = redis_target_parse(opts->url, opts->credential, &target, errbuf, errlen);
    if (rc < 0) {
        redis_target_release(&target);
        return rc;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        redis_target_release(&target);
        return -ENOMEM;
    }
    c->max_value = opts->max_value ? opts->max_value : REDIS_DEFAULT_MAX_VALUE;
    rc = pool_new(&target, opts->down_pause_ms > 0 ? opts->down_pause_ms : REDIS_DOWN_PAUSE_MS,
                  &c->pool);
    if (rc == 0 && opts->token) {
        rc = shared_secret_derive(opts->token, &c->secret);
        c->has_secret = rc == 0;
    }
    if (rc == 0)
        rc = writer_new(&ops, c, REDIS_QUEUE_MAX_JOBS,
                        opts->queue_bytes ? opts->queue_bytes : REDIS_QUEUE_MAX_BYTES, &c->writer);
    if (rc < 0) {
        log_format_line(errbuf, errlen, "cannot set up the shared cache: %s", strerror(-rc));
        redis_client_free(c);
        return rc;
    }
    /* hiredis writes with write(2): a Redis dying mid-write must not kill bbfs. */
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
        sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    *out = c;
    return 0;
}

void redis_client_free(struct redis_client *c)
{
    if (!c)
        return;
    writer_free(c->writer, REDIS_CLOSE_FLUSH_MS);
    pool_free(c->pool);
    shared_secret_wipe(&c->secret);
    free(c);
}

const char *redis_where(const struct redis_client *c)
{
    return pool_where(c->pool);
}

int redis_check(struct redis_client *c)
{
    return pool_ping(c->pool);
}

int redis_key_mutable(struct redis_client *c, const char *request, struct shared_key *out)
{
    if (!c->has_secret)
        return -EINVAL;
    return shared_key_mutable(&c->secret, request, out);
}

void redis_get_stats(struct redis_client *c, struct redis_stats *out)
{
    struct pool_stats pool;

    pool_get_stats(c->pool, &pool);
    out->hits = __atomic_load_n(&c->stats.hits, __ATOMIC_RELAXED);
    out->misses = __atomic_load_n(&c->stats.misses, __ATOMIC_RELAXED);
    out->writes = __atomic_load_n(&c->stats.writes, __ATOMIC_RELAXED);
    out->bytes_read = __atomic_load_n(&c->stats.bytes_read, __ATOMIC_RELAXED);
    out->bytes_written = __atomic_load_n(&c->stats.bytes_written, __ATOMIC_RELAXED);
    out->damaged = __atomic_load_n(&c->stats.damaged, __ATOMIC_RELAXED);
    out->dropped = __atomic_load_n(&c->stats.dropped, __ATOMIC_RELAXED);
    out->oversized = __atomic_load_n(&c->stats.oversized, __ATOMIC_RELAXED);
    out->errors = pool.errors;
    out->skipped = pool.skipped;
    out->connections = pool.connections;
    out->down = pool.down;
}

/*
 * redis_pool.c - connections to one Redis and its faults (redis_pool.h), on
 * hiredis's blocking API: one context per pooled connection, never two
 * threads on one.
 *
 * Every command goes through run(): take a connection (or answer at once
 * while Redis is down), run an operation on it, give it back. An operation's
 * -EIO means Redis failed: the connection is closed and Redis marked down,
 * which closes the idle connections too, and a "generation" counter tells
 * the ones in use to close when they come back.
 */
#include "api/redis_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "api/log.h"
#include "api/redis.h"

/*
 * Compares the lease's holder and deletes it in one step, so that a lease
 * which expired and was taken by another machine is not released by the
 * first.
 */
static const char release_script[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end "
    "return 0";

struct redis_pool {
    struct redis_target target;
    long down_pause_ms;
    struct pool_stats stats; /* counters updated with atomics; .down under lock */

    pthread_mutex_t lock;
    pthread_cond_t returned; /* a connection came back */
    redisContext *idle[REDIS_POOL_MAX];
    size_t n_idle;
    size_t n_open;       /* idle and in use */
    unsigned generation; /* bumped when Redis is marked down */
    int probing;         /* a call is trying Redis again after the pause */
    int64_t down_until;  /* CLOCK_MONOTONIC, ms */
};

struct conn {
    redisContext *ctx;
    unsigned generation;
    int probe;  /* tries Redis again after a pause */
    int reused; /* came from the pool: its server may have closed it meanwhile */
};

/* One operation on one connection. */
struct call {
    redisContext *ctx;
    int closed;      /* the server closed the connection (EOF, reset) */
    int retire;      /* close it after use: it read a big reply */
    char cause[200]; /* why it failed, for the one log line */
};

#define count(p, field, n) __atomic_add_fetch(&(p)->stats.field, (n), __ATOMIC_RELAXED)

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval ms_to_timeval(long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

    return tv;
}

/* The reply of a command: 0; -EIO with call->cause when Redis failed; -EBADMSG for WRONGTYPE. */
static int take_reply(struct call *call, redisReply *r, redisReply **out)
{
    int err = errno, rc = -EIO;

    *out = NULL;
    if (!r) {
        call->closed = call->ctx->err == REDIS_ERR_EOF ||
                       (call->ctx->err == REDIS_ERR_IO && (err == ECONNRESET || err == EPIPE));
        if (call->ctx->err == REDIS_ERR_IO && (err == EAGAIN || err == EWOULDBLOCK))
            snprintf(call->cause, sizeof(call->cause), "no answer within %d ms",
                     REDIS_OP_TIMEOUT_MS);
        else
            snprintf(call->cause, sizeof(call->cause), "%s",
                     call->ctx->errstr[0] ? call->ctx->errstr : "no answer");
        return -EIO;
    }
    if (r->type != REDIS_REPLY_ERROR) {
        *out = r;
        return 0;
    }
    /* Not a string where a value of ours should be: damaged, not a failure of Redis. */
    if (r->str && strncmp(r->str, "WRONGTYPE", 9) == 0)
        rc = -EBADMSG;
    snprintf(call->cause, sizeof(call->cause), "%s", r->str ? r->str : "error");
    freeReplyObject(r);
    return rc;
}

static int command(struct call *call, redisReply **out, int argc, const char **argv,
                   const size_t *lens)
{
    return take_reply(call, redisCommandArgv(call->ctx, argc, argv, lens), out);
}

static int expect_status(struct call *call, redisReply *r, const char *status)
{
    int ok = r->type == REDIS_REPLY_STATUS && r->str && strcmp(r->str, status) == 0;

    if (!ok)
        snprintf(call->cause, sizeof(call->cause), "unexpected answer (type %d)", r->type);
    freeReplyObject(r);
    return ok ? 0 : -EIO;
}

/* Puts what failed before the cause. */
static void explain(struct call *call, const char *what)
{
    char why[sizeof(call->cause)];

    memcpy(why, call->cause, sizeof(why));
    log_format_line(call->cause, sizeof(call->cause), "%s: %s", what, why);
}

/*
 * AUTH from a buffer of our own, written directly and wiped: hiredis would
 * leave the password in its output buffer's freed memory.
 */
static int authenticate(struct call *call, const struct redis_target *t)
{
    const char *argv[] = {"AUTH", t->user ? t->user : t->password, t->password};
    size_t lens[] = {4, strlen(argv[1]), strlen(t->password)};
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, t->user ? 3 : 2, argv, lens), rc = 0;
    redisReply *r = NULL;
    ssize_t n;

    if (len < 0) {
        snprintf(call->cause, sizeof(call->cause), "out of memory");
        return -EIO;
    }
    for (int done = 0; done < len; done += (int)n) {
        n = send(call->ctx->fd, cmd + done, (size_t)(len - done), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            n = 0;
        } else if (n <= 0) {
            snprintf(call->cause, sizeof(call->cause), "cannot send AUTH: %s", strerror(errno));
            rc = -EIO;
            break;
        }
    }
    explicit_bzero(cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (rc == 0 && redisGetReply(call->ctx, (void **)&r) != REDIS_OK)
        r = NULL;
    if (rc == 0 && (rc = take_reply(call, r, &r)) == 0)
        rc = expect_status(call, r, "OK");
    if (rc < 0) {
        explain(call, "authentication failed");
        return -EIO;
    }
    return 0;
}

static int select_db(struct call *call, int db)
{
    char num[16];
    const char *argv[] = {"SELECT", num};
    size_t lens[] = {6, (size_t)snprintf(num, sizeof(num), "%d", db)};
    redisReply *r;
    int rc = command(call, &r, 2, argv, lens);

    if (rc == 0)
        rc = expect_status(call, r, "OK");
    if (rc < 0) {
        explain(call, "SELECT failed");
        return -EIO;
    }
    return 0;
}

/* A new connection, authenticated and on its database: 0, or -EIO with call->cause. */
static int conn_open(struct redis_pool *p, struct call *call)
{
    const struct redis_target *t = &p->target;
    struct timeval connect_tv = ms_to_timeval(REDIS_CONNECT_TIMEOUT_MS);
    redisContext *ctx;
    int rc = -EIO;

    ctx = t->socket_path ? redisConnectUnixWithTimeout(t->socket_path, connect_tv)
                         : redisConnectWithTimeout(t->host, t->port, connect_tv);
    call->ctx = ctx;
    if (!ctx) {
        snprintf(call->cause, sizeof(call->cause), "out of memory");
        goto out;
    }
    if (ctx->err) {
        snprintf(call->cause, sizeof(call->cause), "cannot connect: %s", ctx->errstr);
        goto out;
    }
    if (redisSetTimeout(ctx, ms_to_timeval(REDIS_OP_TIMEOUT_MS)) != REDIS_OK) {
        snprintf(call->cause, sizeof(call->cause), "cannot set a timeout: %s", ctx->errstr);
        goto out;
    }
    if (t->password && authenticate(call, t) < 0)
        goto out;
    if (select_db(call, t->db) < 0)
        goto out;
    count(p, connections, 1);
    rc = 0;
out:
    if (rc < 0) {
        redisFree(ctx);
        call->ctx = NULL;
    }
    return rc;
}

/* With the lock held: Redis is down from now for the pause; logs the first failure. */
static void mark_down(struct redis_pool *p, const char *cause, redisContext **closing,
                      size_t *n_closing)
{
    count(p, errors, 1);
    if (!p->stats.down)
        log_warn("shared cache %s unavailable: %s; not used for %ld ms", p->target.where, cause,
                 p->down_pause_ms);
    else
        log_debug("shared cache %s still unavailable: %s", p->target.where, cause);
    p->stats.down = 1;
    p->probing = 0;
    p->down_until = now_ms() + p->down_pause_ms;
    p->generation++;
    while (p->n_idle) {
        closing[(*n_closing)++] = p->idle[--p->n_idle];
        p->n_open--;
    }
}

/*
 * Gives a connection back; cause is NULL on success, else why Redis failed.
 * retire: close it even so.
 */
static void conn_give(struct redis_pool *p, struct conn *conn, const char *cause, int retire)
{
    redisContext *closing[REDIS_POOL_MAX + 1];
    size_t n_closing = 0;

    pthread_mutex_lock(&p->lock);
    if (cause) {
        mark_down(p, cause, closing, &n_closing);
    } else if (conn->probe) {
        log_info("shared cache %s is available again", p->target.where);
        p->stats.down = 0;
        p->probing = 0;
    }
    if (conn->ctx && !cause && !retire && !p->stats.down && conn->generation == p->generation &&
        p->n_idle < REDIS_POOL_MAX) {
        p->idle[p->n_idle++] = conn->ctx;
    } else {
        if (conn->ctx)
            closing[n_closing++] = conn->ctx;
        p->n_open--;
    }
    pthread_cond_signal(&p->returned);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < n_closing; i++)
        redisFree(closing[i]);
    conn->ctx = NULL;
}

/* A connection for one operation: 0; -EAGAIN when Redis is down, busy or failing. */
static int conn_take(struct redis_pool *p, struct conn *conn, struct call *call)
{
    struct timespec deadline;

    memset(conn, 0, sizeof(*conn));
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += REDIS_OP_TIMEOUT_MS / 1000;
    deadline.tv_nsec += (REDIS_OP_TIMEOUT_MS % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->stats.down) {
            if (p->probing || now_ms() < p->down_until) {
                pthread_mutex_unlock(&p->lock);
                count(p, skipped, 1);
                return -EAGAIN;
            }
            p->probing = conn->probe = 1;
            break;
        }
        if (p->n_idle) {
            conn->ctx = p->idle[--p->n_idle];
            conn->reused = 1;
            conn->generation = p->generation;
            pthread_mutex_unlock(&p->lock);
            return 0;
        }
        if (p->n_open < REDIS_POOL_MAX)
            break;
        if (pthread_cond_timedwait(&p->returned, &p->lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&p->lock);
            return -EAGAIN; /* every connection busy: a miss, not a failure */
        }
    }
    p->n_open++;
    conn->generation = p->generation;
    pthread_mutex_unlock(&p->lock);
    if (conn_open(p, call) < 0) {
        conn_give(p, conn, call->cause, 0);
        return -EAGAIN;
    }
    conn->ctx = call->ctx;
    return 0;
}

/*
 * Runs op on a pooled connection. op returns -EIO (with call->cause) when
 * Redis failed, and then must have consumed or abandoned every reply: the
 * connection is closed. Returns op's answer, -EAGAIN for -EIO.
 */
static int run(struct redis_pool *p, int (*op)(struct call *, void *), void *arg)
{
    struct call call = {0};
    struct conn conn;
    int rc = conn_take(p, &conn, &call);

    if (rc < 0)
        return rc;
    call.ctx = conn.ctx;
    rc = op(&call, arg);
    if (rc == -EIO && conn.reused && call.closed) {
        /* The server closed it while it was idle (a restart, its timeout): one new one. */
        redisFree(conn.ctx);
        conn.ctx = NULL;
        conn.reused = 0;
        call.closed = 0;
        rc = conn_open(p, &call);
        if (rc == 0) {
            conn.ctx = call.ctx;
            rc = op(&call, arg);
        }
    }
    conn_give(p, &conn, rc == -EIO ? call.cause : NULL, call.retire);
    return rc == -EIO ? -EAGAIN : rc;
}

static int ping_op(struct call *call, void *arg)
{
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    redisReply *r;
    int rc = command(call, &r, 1, argv, lens);

    (void)arg;
    return rc < 0 ? rc : expect_status(call, r, "PONG");
}

int pool_ping(struct redis_pool *p)
{
    return run(p, ping_op, NULL);
}

struct read_args {
    const char *name;
    size_t bound;
    const char *lease_name;
    redisReply *value;
    int lease_exists;
};

static int read_op(struct call *call, void *arg)
{
    struct read_args *a = arg;
    char end[24];
    const char *get[] = {"GETRANGE", a->name, "0", end};
    size_t get_lens[] = {8, strlen(a->name), 1,
                         (size_t)snprintf(end, sizeof(end), "%zu", a->bound - 1)};
    const char *exists[] = {"EXISTS", a->lease_name};
    size_t exists_lens[] = {6, a->lease_name ? strlen(a->lease_name) : 0};
    redisReply *r = NULL, *lease = NULL;
    int rc;

    if (redisAppendCommandArgv(call->ctx, 4, get, get_lens) != REDIS_OK ||
        (a->lease_name && redisAppendCommandArgv(call->ctx, 2, exists, exists_lens) != REDIS_OK)) {
        snprintf(call->cause, sizeof(call->cause), "out of memory");
        return -EIO;
    }
    if (redisGetReply(call->ctx, (void **)&r) != REDIS_OK)
        r = NULL;
    rc = take_reply(call, r, &r);
    /* Both replies are read whatever the first was, or the next command would get the second. */
    if (rc != -EIO && a->lease_name) {
        if (redisGetReply(call->ctx, (void **)&lease) != REDIS_OK)
            lease = NULL;
        if (take_reply(call, lease, &lease) < 0 || lease->type != REDIS_REPLY_INTEGER)
            rc = -EIO;
        else
            a->lease_exists = lease->integer > 0;
        freeReplyObject(lease);
    }
    if (rc == 0 && r->type != REDIS_REPLY_STRING) {
        snprintf(call->cause, sizeof(call->cause), "unexpected answer (type %d)", r->type);
        rc = -EIO;
    }
    if (rc < 0) {
        freeReplyObject(r);
        return rc;
    }
    call->retire = r->len > POOL_KEEP_REPLY;
    a->value = r;
    return 0;
}

int pool_read(struct redis_pool *p, const char *name, size_t bound, const char *lease_name,
              struct pool_reply *out, int *lease_exists)
{
    struct read_args a = {.name = name, .bound = bound ? bound : 1, .lease_name = lease_name};
    int rc = run(p, read_op, &a);

    memset(out, 0, sizeof(*out));
    if (lease_exists)
        *lease_exists = a.lease_exists;
    if (rc < 0)
        return rc;
    out->data = a.value->str;
    out->len = a.value->len;
    out->handle = a.value;
    return 0;
}

void pool_reply_release(struct pool_reply *r)
{
    if (r && r->handle)
        freeReplyObject(r->handle);
    if (r)
        memset(r, 0, sizeof(*r));
}

char *pool_reply_take(struct pool_reply *r, size_t offset, size_t len)
{
    redisReply *reply = r->handle;
    char *bytes;

    if (!reply || offset > reply->len || len > reply->len - offset)
        return NULL;
    /* hiredis 0.14 allocates a reply's string with malloc(3) and frees it with free(3). */
    bytes = reply->str;
    memmove(bytes, bytes + offset, len);
    bytes[len] = '\0';
    reply->str = NULL;
    pool_reply_release(r);
    return bytes;
}

struct write_args {
    const char *name;
    const void *value;
    size_t len;
    long expire_ms;
    int only_new;
    int written;
};

static int write_op(struct call *call, void *arg)
{
    struct write_args *a = arg;
    char px[24];
    const char *argv[6] = {"SET", a->name, a->value};
    size_t lens[6] = {3, strlen(a->name), a->len};
    int argc = 3, rc;
    redisReply *r;

    if (a->expire_ms > 0) {
        argv[argc] = "PX";
        lens[argc++] = 2;
        argv[argc] = px;
        lens[argc++] = (size_t)snprintf(px, sizeof(px), "%ld", a->expire_ms);
    }
    if (a->only_new) {
        argv[argc] = "NX";
        lens[argc++] = 2;
    }
    rc = command(call, &r, argc, argv, lens);
    if (rc < 0)
        return rc;
    if (a->only_new && r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return 0;
    }
    rc = expect_status(call, r, "OK");
    a->written = rc == 0;
    return rc;
}

int pool_write(struct redis_pool *p, const char *name, const void *value, size_t len,
               long expire_ms, int only_new)
{
    struct write_args a = {
        .name = name, .value = value, .len = len, .expire_ms = expire_ms, .only_new = only_new};
    int rc = run(p, write_op, &a);

    return rc < 0 ? rc : a.written;
}

struct release_args {
    const char *name;
    const char *token;
};

static int release_op(struct call *call, void *arg)
{
    struct release_args *a = arg;
    const char *argv[] = {"EVAL", release_script, "1", a->name, a->token};
    size_t lens[] = {4, sizeof(release_script) - 1, 1, strlen(a->name), strlen(a->token)};
    redisReply *r;
    int rc = command(call, &r, 5, argv, lens);

    if (rc == 0)
        freeReplyObject(r);
    return rc;
}

int pool_release(struct redis_pool *p, const char *name, const char *token)
{
    struct release_args a = {.name = name, .token = token};

    return run(p, release_op, &a);
}

static int del_op(struct call *call, void *arg)
{
    const char *argv[] = {"DEL", arg};
    size_t lens[] = {3, strlen(arg)};
    redisReply *r;
    int rc = command(call, &r, 2, argv, lens);

    if (rc == 0)
        freeReplyObject(r);
    return rc;
}

int pool_del(struct redis_pool *p, const char *name)
{
    return run(p, del_op, (void *)name);
}

int pool_new(struct redis_target *target, long down_pause_ms, struct redis_pool **out)
{
    pthread_condattr_t attr;
    struct redis_pool *p;

    *out = NULL;
    p = calloc(1, sizeof(*p));
    if (!p) {
        redis_target_release(target);
        return -ENOMEM;
    }
    p->target = *target;
    memset(target, 0, sizeof(*target));
    p->down_pause_ms = down_pause_ms;
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->returned, &attr);
    pthread_condattr_destroy(&attr);
    *out = p;
    return 0;
}

void pool_free(struct redis_pool *p)
{
    if (!p)
        return;
    while (p->n_idle)
        redisFree(p->idle[--p->n_idle]);
    pthread_cond_destroy(&p->returned);
    pthread_mutex_destroy(&p->lock);
    redis_target_release(&p->target);
    free(p);
}

int pool_skip(struct redis_pool *p)
{
    int paused;

    pthread_mutex_lock(&p->lock);
    paused = p->stats.down && (p->probing || now_ms() < p->down_until);
    pthread_mutex_unlock(&p->lock);
    if (paused)
        count(p, skipped, 1);
    return paused;
}

const char *pool_where(const struct redis_pool *p)
{
    return p->target.where;
}

void pool_get_stats(struct redis_pool *p, struct pool_stats *out)
{
    out->errors = __atomic_load_n(&p->stats.errors, __ATOMIC_RELAXED);
    out->skipped = __atomic_load_n(&p->stats.skipped, __ATOMIC_RELAXED);
    out->connections = __atomic_load_n(&p->stats.connections, __ATOMIC_RELAXED);
    pthread_mutex_lock(&p->lock);
    out->down = p->stats.down;
    pthread_mutex_unlock(&p->lock);
}

/*
 * test_redis_faults.c - the shared cache's Redis client when things go
 * wrong or get busy, against a real redis-server per test (redis_test.h):
 * Redis killed mid-use and back, an idle connection closed by the server, a
 * server that never answers, leases between machines (one wins, waiters get
 * the value, a holder that gives up or dies), many threads at once, and the
 * writer (close flushes, a full queue drops). Durations are only hang guards.
 */
#include "redis_test.h"

#include <pthread.h>

/* ---- faults ---- */

/*
 * Redis killed while the client holds a pooled connection: the next call
 * fails within the timeout, Redis is down (one line), calls meanwhile are
 * skipped; back after the pause once Redis is.
 */
static void test_killed_mid_use(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *c = tcp_client(s, NULL, 1500);
    struct shared_key key = key_for("killed");
    struct redis_lease lease;
    struct redis_value v;
    struct redis_stats st;
    long long started;
    char *log;
    int lines, rc;

    put_text(c, &key, "before");
    capture_begin();
    redis_server_kill(s);
    started = mono_ms();
    assert_int_equal(redis_get(c, &key, &v), -EAGAIN);
    assert_true(mono_ms() - started < FAULT_GUARD_MS); /* hang guard */
    redis_get_stats(c, &st);
    assert_int_equal(st.down, 1);
    assert_int_equal(st.errors, 1);
    assert_int_equal(redis_get(c, &key, &v), -EAGAIN);
    assert_int_equal(redis_lease_take(c, &key, 1000, &lease), -EAGAIN);
    assert_int_equal(
        redis_put_async(c, &key, &(struct redis_entry){.body = "z", .len = 1}, 0, NULL), -EAGAIN);
    redis_get_stats(c, &st);
    assert_int_equal(st.errors, 1); /* the network was not tried again */
    assert_int_equal(st.skipped, 3);

    assert_int_equal(redis_server_spawn(s, NULL), 0);
    started = mono_ms();
    while ((rc = redis_get(c, &key, &v)) == -EAGAIN && mono_ms() - started < 60000)
        pause_ms(50);
    log = capture_end(&lines);
    assert_int_equal(rc, -ENOENT); /* Redis is back, empty: it kept nothing */
    assert_int_equal(lines, 2);
    assert_non_null(strstr(log, "unavailable"));
    assert_non_null(strstr(log, "available again"));
    free(log);
    put_text(c, &key, "after");
    assert_text(c, &key, "after");
    redis_get_stats(c, &st);
    assert_int_equal(st.down, 0);
    redis_client_free(c);
}

/*
 * An error reply from a live Redis (a write refused for maxmemory) is a
 * failure like any other: logged with its cause, down, then used again.
 */
static void test_error_reply_marks_down(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *c = tcp_client(s, NULL, 300);
    struct shared_key key = key_for("refused");
    struct redis_stats st;
    redisContext *raw = redis_raw(s);
    long long started;
    char *log;
    int lines, rc;

    freeReplyObject(redisCommand(raw, "CONFIG SET maxmemory-policy noeviction"));
    freeReplyObject(redisCommand(raw, "CONFIG SET maxmemory 1"));
    capture_begin();
    assert_int_equal(redis_put(c, &key, &(struct redis_entry){.body = "x", .len = 1}, 0), -EAGAIN);
    log = capture_end(&lines);
    assert_int_equal(lines, 1);
    assert_non_null(strstr(log, "OOM"));
    free(log);
    redis_get_stats(c, &st);
    assert_int_equal(st.down, 1);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.writes, 0);

    freeReplyObject(redisCommand(raw, "CONFIG SET maxmemory 0"));
    started = mono_ms();
    while ((rc = redis_put(c, &key, &(struct redis_entry){.body = "x", .len = 1}, 0)) == -EAGAIN &&
           mono_ms() - started < 60000) /* hang guard */
        pause_ms(50);
    assert_int_equal(rc, 0);
    assert_text(c, &key, "x");
    redisFree(raw);
    redis_client_free(c);
}

/* A pooled connection the server closed while idle is replaced: no failure. */
static void test_idle_connection_closed_by_server(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *c = tcp_client(s, NULL, 60000);
    struct shared_key key = key_for("idle");
    struct redis_stats st;
    redisContext *raw = redis_raw(s);

    put_text(c, &key, "kept");
    freeReplyObject(redisCommand(raw, "CLIENT KILL TYPE normal"));
    assert_text(c, &key, "kept");
    redis_get_stats(c, &st);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.down, 0);
    assert_int_equal(st.connections, 2);
    redisFree(raw);
    redis_client_free(c);
}

/* A server that accepts and never answers: bounded by the operation timeout, then skipped. */
static void test_silent_server(void **state)
{
    int port = 0, fd = silent_listener(&port);
    char url[64];
    struct redis_client *c;
    struct shared_key key = key_for("silent");
    struct redis_value v;
    struct redis_stats st;
    long long started;
    char *log;
    int lines;

    (void)state;
    assert_true(fd >= 0);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    c = open_client(url, NULL, TOKEN, 0, 60000);
    capture_begin();
    started = mono_ms();
    assert_int_equal(redis_get(c, &key, &v), -EAGAIN);
    assert_true(mono_ms() - started < FAULT_GUARD_MS); /* hang guard */
    assert_int_equal(redis_get(c, &key, &v), -EAGAIN);
    log = capture_end(&lines);
    assert_int_equal(lines, 1);
    assert_non_null(strstr(log, "no answer within"));
    free(log);
    redis_get_stats(c, &st);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(st.down, 1);
    redis_client_free(c);
    close(fd);
}

/* Closing while the writer is stuck on a silent server ends, dropping what it cannot write. */
static void test_close_with_silent_server(void **state)
{
    int port = 0, fd = silent_listener(&port);
    char url[64];
    struct redis_client *c;
    struct shared_key key = key_for("silent write");
    long long started;

    (void)state;
    assert_true(fd >= 0);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    c = open_client(url, NULL, TOKEN, 0, 60000);
    for (int i = 0; i < 5; i++)
        assert_int_equal(
            redis_put_async(c, &key, &(struct redis_entry){.body = "w", .len = 1}, 0, NULL), 0);
    assert_int_equal(redis_flush(c, 50), -ETIMEDOUT);
    started = mono_ms();
    redis_client_free(c);
    assert_true(mono_ms() - started < REDIS_CLOSE_FLUSH_MS + FAULT_GUARD_MS); /* hang guard */
    close(fd);
}

/* ---- leases: one fetch across machines ---- */

struct waiter {
    struct redis_client *c;
    struct shared_key key;
    int64_t newer_than;
    long wait_ms;
    int rc;
    struct redis_value value;
    pthread_t thread;
};

static void *wait_main(void *arg)
{
    struct waiter *w = arg;

    w->rc = redis_wait(w->c, &w->key, w->newer_than, w->wait_ms, &w->value);
    return NULL;
}

static void start_waiter(struct waiter *w, struct redis_client *c, const struct shared_key *key,
                         int64_t newer_than, long wait_ms)
{
    memset(w, 0, sizeof(*w));
    w->c = c;
    w->key = *key;
    w->newer_than = newer_than;
    w->wait_ms = wait_ms;
    assert_int_equal(pthread_create(&w->thread, NULL, wait_main, w), 0);
}

static struct redis_client *machine(const struct redis_server *s)
{
    return tcp_client(s, NULL, 0);
}

static void test_lease_one_taker_wins(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *a = machine(s), *b = machine(s), *c = machine(s);
    struct shared_key key = key_for("contended");
    struct redis_lease la, lb, lc;
    char lease_name[SHARED_KEY_SIZE];
    redisContext *raw = redis_raw(s);
    redisReply *r;

    assert_int_equal(redis_lease_take(a, &key, 60000, &la), 1);
    assert_int_equal(redis_lease_take(b, &key, 60000, &lb), 0);
    assert_int_equal(redis_lease_take(c, &key, 60000, &lc), 0);
    assert_true(la.held);
    assert_false(lb.held);
    shared_lease_name(&key, lease_name);
    r = redisCommand(raw, "GET %s", lease_name);
    assert_string_equal(r->str, la.token);
    freeReplyObject(r);
    redis_lease_release(b, &lb); /* not held: nothing happens */
    assert_int_equal(exists(raw, lease_name), 1);
    redis_lease_release(a, &la);
    assert_int_equal(exists(raw, lease_name), 0);
    assert_int_equal(redis_lease_take(b, &key, 60000, &lb), 1);
    redis_lease_release(b, &lb);
    redisFree(raw);
    redis_client_free(a);
    redis_client_free(b);
    redis_client_free(c);
}

/* The waiter gets the holder's value once it is written, and the lease is gone after. */
static void test_wait_returns_the_value(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *holder = machine(s), *other = machine(s);
    struct shared_key key = key_for("awaited");
    struct redis_lease lease;
    struct waiter w;
    char lease_name[SHARED_KEY_SIZE];
    redisContext *raw = redis_raw(s);
    struct redis_stats st;

    assert_int_equal(redis_lease_take(holder, &key, 60000, &lease), 1);
    start_waiter(&w, other, &key, REDIS_ANY_VALUE, 60000); /* hang guard */
    pause_ms(100);                                         /* lets it poll a few times first */
    assert_int_equal(redis_put_async(holder, &key,
                                     &(struct redis_entry){.body = "fetched once", .len = 12}, 0,
                                     &lease),
                     0);
    assert_false(lease.held); /* the writer releases it now */
    pthread_join(w.thread, NULL);
    assert_int_equal(w.rc, 0);
    assert_string_equal(w.value.body, "fetched once");
    redis_value_release(&w.value);
    assert_int_equal(redis_flush(holder, 60000), 0);
    shared_lease_name(&key, lease_name);
    assert_int_equal(exists(raw, lease_name), 0);
    redis_get_stats(other, &st);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 0);
    redisFree(raw);
    redis_client_free(holder);
    redis_client_free(other);
}

/*
 * A mutable answer being refreshed: the old value is there all along, and the
 * waiter wants one fetched later; without a lease, the old one is no answer.
 */
static void test_wait_for_a_newer_value(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *holder = machine(s), *other = machine(s);
    struct shared_key key = key_for("refreshed");
    struct redis_lease lease;
    struct redis_value v;
    struct waiter w;

    assert_int_equal(redis_put(holder, &key,
                               &(struct redis_entry){.body = "old", .len = 3, .fetched_at = 100},
                               0),
                     0);
    assert_int_equal(redis_wait(other, &key, 100, 60000, &v), -ENOENT); /* nobody refreshing */
    assert_int_equal(redis_wait(other, &key, 99, 60000, &v), 0);
    assert_string_equal(v.body, "old");
    redis_value_release(&v);

    assert_int_equal(redis_lease_take(holder, &key, 60000, &lease), 1);
    start_waiter(&w, other, &key, 100, 60000); /* hang guard */
    pause_ms(100);                             /* it sees the old value a few times */
    assert_int_equal(
        redis_put_async(holder, &key,
                        &(struct redis_entry){.body = "new", .len = 3, .fetched_at = 200}, 0,
                        &lease),
        0);
    pthread_join(w.thread, NULL);
    assert_int_equal(w.rc, 0);
    assert_string_equal(w.value.body, "new");
    assert_int_equal(w.value.fetched_at, 200);
    redis_value_release(&w.value);
    redis_client_free(holder);
    redis_client_free(other);
}

/* The holder gives up without a value (its fetch failed): the waiter learns at once. */
static void test_wait_ends_when_lease_released(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *holder = machine(s), *other = machine(s);
    struct shared_key key = key_for("given up");
    struct redis_lease lease;
    struct waiter w;

    assert_int_equal(redis_lease_take(holder, &key, 60000, &lease), 1);
    start_waiter(&w, other, &key, REDIS_ANY_VALUE, 60000); /* hang guard */
    pause_ms(50);
    redis_lease_release(holder, &lease);
    pthread_join(w.thread, NULL);
    assert_int_equal(w.rc, -ENOENT);
    redis_client_free(holder);
    redis_client_free(other);
}

/* The holder dies: the wait ends when its lease expires, or at the waiter's deadline. */
static void test_holder_dies(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *holder = machine(s), *other = machine(s);
    struct shared_key key = key_for("orphaned"), key2 = key_for("orphaned 2");
    struct redis_lease lease, lease2;
    struct redis_value v;
    long long started = mono_ms();

    assert_int_equal(redis_lease_take(holder, &key, 300, &lease), 1);
    redis_client_free(holder); /* dies without releasing */
    assert_int_equal(redis_wait(other, &key, REDIS_ANY_VALUE, 60000, &v), -ENOENT);
    assert_true(mono_ms() - started < 60000); /* hang guard: ended by the expiry */

    holder = machine(s);
    assert_int_equal(redis_lease_take(holder, &key2, 600000, &lease2), 1);
    assert_int_equal(redis_wait(other, &key2, REDIS_ANY_VALUE, 200, &v), -ETIMEDOUT);
    redis_lease_release(holder, &lease2);
    redis_client_free(holder);
    redis_client_free(other);
}

/* A lease that expired and was taken by another is not released by its first holder. */
static void test_release_only_if_ours(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *a = machine(s), *b = machine(s);
    struct shared_key key = key_for("expired lease");
    struct redis_lease la, lb;
    char lease_name[SHARED_KEY_SIZE];
    redisContext *raw = redis_raw(s);
    long long started = mono_ms();
    redisReply *r;

    shared_lease_name(&key, lease_name);
    assert_int_equal(redis_lease_take(a, &key, 100, &la), 1);
    while (exists(raw, lease_name) && mono_ms() - started < 60000) /* hang guard */
        pause_ms(20);
    assert_int_equal(redis_lease_take(b, &key, 60000, &lb), 1);
    redis_lease_release(a, &la);
    r = redisCommand(raw, "GET %s", lease_name);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, lb.token);
    freeReplyObject(r);
    redis_lease_release(b, &lb);
    assert_int_equal(exists(raw, lease_name), 0);
    redisFree(raw);
    redis_client_free(a);
    redis_client_free(b);
}

/* ---- many threads, and the writer ---- */

#define THREADS 12
#define ROUNDS 40

struct worker {
    struct redis_client *c;
    int id;
    int failures;
    pthread_t thread;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    struct shared_key shared = key_for("shared");
    char path[64], body[128];
    struct redis_value v;

    for (int i = 0; i < ROUNDS; i++) {
        struct shared_key key, async_key;
        struct redis_entry e = {.body = body};

        snprintf(path, sizeof(path), "thread %d round %d", w->id, i);
        e.len = (size_t)snprintf(body, sizeof(body), "body of %s", path);
        key = key_for(path);
        strcat(path, " async");
        async_key = key_for(path);
        w->failures += redis_put(w->c, &key, &e, 0) != 0;
        w->failures += redis_put_async(w->c, &async_key, &e, 0, NULL) != 0;
        if (redis_get(w->c, &key, &v) != 0 || v.len != e.len || memcmp(v.body, body, e.len))
            w->failures++;
        redis_value_release(&v);
        if (redis_get(w->c, &shared, &v) != 0 || strcmp(v.body, "for everyone") != 0)
            w->failures++;
        redis_value_release(&v);
    }
    return NULL;
}

static void test_many_threads(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *c = machine(s);
    struct shared_key shared = key_for("shared");
    struct worker workers[THREADS];
    struct redis_stats st;
    redisContext *raw = redis_raw(s);
    char path[64];

    put_text(c, &shared, "for everyone");
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (struct worker){.c = c, .id = i};
        assert_int_equal(pthread_create(&workers[i].thread, NULL, work, &workers[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(workers[i].thread, NULL);
        assert_int_equal(workers[i].failures, 0);
    }
    assert_true(redis_info(raw, "connected_clients") <= REDIS_POOL_MAX + 1);
    assert_int_equal(redis_flush(c, 60000), 0); /* hang guard */
    for (int i = 0; i < THREADS; i++) {
        for (int j = 0; j < ROUNDS; j++) {
            struct shared_key key;
            char body[128];

            snprintf(path, sizeof(path), "thread %d round %d async", i, j);
            key = key_for(path);
            snprintf(body, sizeof(body), "body of thread %d round %d", i, j);
            assert_text(c, &key, body);
        }
    }
    redis_get_stats(c, &st);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.writes, 1 + 2 * THREADS * ROUNDS);
    assert_int_equal(st.hits, 2 * THREADS * ROUNDS + THREADS * ROUNDS);
    assert_true(st.connections <= REDIS_POOL_MAX);
    redisFree(raw);
    redis_client_free(c);
}

/* What is queued when the client closes is written before it returns. */
static void test_close_flushes(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *c = machine(s);
    char path[32];

    for (int i = 0; i < 50; i++) {
        struct shared_key key;

        snprintf(path, sizeof(path), "flushed %d", i);
        key = key_for(path);
        assert_int_equal(redis_put_async(c, &key,
                                         &(struct redis_entry){.body = path, .len = strlen(path)},
                                         0, NULL),
                         0);
    }
    redis_client_free(c);
    c = machine(s);
    for (int i = 0; i < 50; i++) {
        struct shared_key key;

        snprintf(path, sizeof(path), "flushed %d", i);
        key = key_for(path);
        assert_text(c, &key, path);
    }
    redis_client_free(c);
}

/* A full queue drops the write (counted), and the lease it carried is released all the same. */
static void test_full_queue_drops(void **state)
{
    struct redis_server *s = *state;
    char url[64];
    const struct redis_options o = {.url = url, .token = TOKEN, .queue_bytes = 1};
    struct redis_client *c, *other = machine(s);
    struct shared_key key = key_for("dropped");
    struct redis_lease lease;
    struct redis_stats st;
    struct redis_value v;
    char err[256], lease_name[SHARED_KEY_SIZE];
    redisContext *raw = redis_raw(s);

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", s->port);
    assert_int_equal(redis_client_new(&o, &c, err, sizeof(err)), 0);
    assert_int_equal(redis_lease_take(c, &key, 60000, &lease), 1);
    assert_int_equal(
        redis_put_async(c, &key, &(struct redis_entry){.body = "lost", .len = 4}, 0, &lease),
        -ENOSPC);
    assert_int_equal(redis_flush(c, 60000), 0); /* hang guard */
    shared_lease_name(&key, lease_name);
    assert_int_equal(exists(raw, lease_name), 0);
    assert_int_equal(exists(raw, key.name), 0);
    assert_int_equal(redis_wait(other, &key, REDIS_ANY_VALUE, 60000, &v), -ENOENT);
    redis_get_stats(c, &st);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.writes, 0);
    redisFree(raw);
    redis_client_free(c);
    redis_client_free(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        WITH_SERVER(test_killed_mid_use),
        WITH_SERVER(test_error_reply_marks_down),
        WITH_SERVER(test_idle_connection_closed_by_server),
        cmocka_unit_test_teardown(test_silent_server, teardown_capture),
        cmocka_unit_test_teardown(test_close_with_silent_server, teardown_capture),
        WITH_SERVER(test_lease_one_taker_wins),
        WITH_SERVER(test_wait_returns_the_value),
        WITH_SERVER(test_wait_for_a_newer_value),
        WITH_SERVER(test_wait_ends_when_lease_released),
        WITH_SERVER(test_holder_dies),
        WITH_SERVER(test_release_only_if_ours),
        WITH_SERVER(test_many_threads),
        WITH_SERVER(test_close_flushes),
        WITH_SERVER(test_full_queue_drops),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * redis_test.h - what test_redis.c and test_redis_faults.c share: a
 * redis-server per test (cmocka setup and teardown), clients on it, keys, and
 * looks at the server through a connection of the test's own (header-only).
 */
#ifndef BBFS_TESTS_REDIS_TEST_H
#define BBFS_TESTS_REDIS_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/redis.h"
#include "redis_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "ATCTT3xFfGN0-the-fleet-token"
/* Hang guard for one call that meets a fault: REDIS_OP_TIMEOUT_MS is what it should take. */
#define FAULT_GUARD_MS 5000

static const struct shared_address readme = {
    .origin = "https://api.bitbucket.org/2.0",
    .workspace = "acme",
    .repo = "api",
    .kind = "src",
    .hash = "0123456789abcdef0123456789abcdef01234567",
    .path = "README.md",
};

static inline struct shared_key key_for(const char *path)
{
    struct shared_address a = readme;
    struct shared_key key;

    a.path = path;
    assert_int_equal(shared_key_by_hash(&a, &key), 0);
    return key;
}

static inline int setup_server(void **state)
{
    struct redis_server *s = calloc(1, sizeof(*s));

    if (!s || redis_server_start(s, NULL, NULL) != 0) {
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static inline int teardown_server(void **state)
{
    struct redis_server *s = *state;

    capture_abandon();
    if (s) {
        redis_server_stop(s);
        free(s);
    }
    return 0;
}

static inline struct redis_client *open_client(const char *url, const char *credential,
                                               const char *token, size_t max_value, long pause_ms)
{
    const struct redis_options o = {.url = url,
                                    .credential = credential,
                                    .token = token,
                                    .max_value = max_value,
                                    .down_pause_ms = pause_ms};
    struct redis_client *c = NULL;
    char err[256];

    assert_int_equal(redis_client_new(&o, &c, err, sizeof(err)), 0);
    return c;
}

static inline struct redis_client *tcp_client(const struct redis_server *s, const char *credential,
                                              long pause_ms)
{
    char url[64];

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", s->port);
    return open_client(url, credential, TOKEN, 0, pause_ms);
}

static inline long long exists(redisContext *raw, const char *name)
{
    redisReply *r = redisCommand(raw, "EXISTS %s", name);
    long long n;

    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    n = r->integer;
    freeReplyObject(r);
    return n;
}

static inline void put_text(struct redis_client *c, const struct shared_key *key, const char *text)
{
    const struct redis_entry e = {.body = text, .len = strlen(text)};

    assert_int_equal(redis_put(c, key, &e, 0), 0);
}

static inline void assert_text(struct redis_client *c, const struct shared_key *key,
                               const char *text)
{
    struct redis_value v;

    assert_int_equal(redis_get(c, key, &v), 0);
    assert_int_equal(v.len, strlen(text));
    assert_string_equal(v.body, text);
    redis_value_release(&v);
}

static inline int teardown_capture(void **state)
{
    (void)state;
    capture_abandon();
    return 0;
}

#define WITH_SERVER(t) cmocka_unit_test_setup_teardown(t, setup_server, teardown_server)

#endif

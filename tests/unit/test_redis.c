/*
 * test_redis.c - the shared cache's Redis client (api/redis.c, with the
 * pool, URL and writer under it): URLs and credentials, then against a real
 * redis-server that each test starts on a free port and a unix socket and
 * stops in its teardown (redis_test.h): values small and big and the cap,
 * damaged values, the token in no key or value, databases, passwords and ACL
 * users. Faults, leases and concurrency are in test_redis_faults.c.
 *
 * What a test expects comes from the server, read over a connection of the
 * test's own: what is stored under which key, INFO's connection counts (a
 * call that must not touch the network opens no connection), SCAN of every
 * key. Durations are only hang guards, generous and marked as such.
 */
#include "redis_test.h"

/* ---- URLs and credentials (no server) ---- */

static void test_urls(void **state)
{
    static const struct {
        const char *url;
        const char *where; /* NULL: refused */
    } cases[] = {
        {"redis://127.0.0.1", "redis://127.0.0.1:6379/0"},
        {"redis://cache.internal:7000/3", "redis://cache.internal:7000/3"},
        {"redis://cache:7000/", "redis://cache:7000/0"},
        {"redis://[::1]:6380/1", "redis://[::1]:6380/1"},
        {"redis+unix:///run/redis/redis.sock", "redis+unix:///run/redis/redis.sock?db=0"},
        {"redis+unix:///run/redis.sock?db=4", "redis+unix:///run/redis.sock?db=4"},
        {"redis://host:0", NULL},
        {"redis://host:65536", NULL},
        {"redis://host:-1", NULL},
        {"redis://host:", NULL},
        {"redis://host:6379/x", NULL},
        {"redis://host:6379/1/2", NULL},
        {"redis://host:6379/-1", NULL},
        {"redis://host:6379/1234567890", NULL},
        {"redis://host?db=1", NULL},
        {"redis://", NULL},
        {"redis://ho st", NULL},
        {"redis://[::1", NULL},
        {"redis+unix://run/redis.sock", NULL},
        {"redis+unix:///", NULL},
        {"redis+unix:///run/redis.sock?db=", NULL},
        {"redis+unix:///run/redis.sock?database=1", NULL},
        {"rediss://host", NULL},
        {"http://host:6379", NULL},
        {"", NULL},
    };
    struct redis_options o = {0};
    struct redis_client *c;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        o.url = cases[i].url;
        err[0] = '\0';
        if (cases[i].where) {
            assert_int_equal(redis_client_new(&o, &c, err, sizeof(err)), 0);
            assert_string_equal(redis_where(c), cases[i].where);
            redis_client_free(c);
        } else {
            assert_int_equal(redis_client_new(&o, &c, err, sizeof(err)), -EINVAL);
            assert_null(c);
            assert_true(strlen(err) > 10);
            assert_null(strchr(err, '\n'));
        }
    }
    /* A socket path longer than sun_path. */
    {
        char url[200] = "redis+unix:///";

        memset(url + strlen(url), 'p', 150);
        o.url = url;
        assert_int_equal(redis_client_new(&o, &c, err, sizeof(err)), -EINVAL);
    }
}

/* A credential in the URL is refused, and the message does not repeat it. */
static void test_no_credential_in_url(void **state)
{
    const struct redis_options o = {.url = "redis://fleet:Pw-in-URL@cache:6379"};
    struct redis_client *c;
    char err[256];

    (void)state;
    assert_int_equal(redis_client_new(&o, &c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "shared_cache_auth"));
    assert_null(strstr(err, "Pw-in-URL"));
}

static void test_credentials(void **state)
{
    static const struct {
        const char *credential;
        int rc;
    } cases[] = {
        {"s3cret", 0},        {"fleet:s3cret", 0}, {"default:pa:ss", 0},  {"", -EINVAL},
        {":s3cret", -EINVAL}, {"fleet:", -EINVAL}, {"s3cret\n", -EINVAL}, {"a\tb", -EINVAL},
    };
    struct redis_options o = {.url = "redis://127.0.0.1"};
    struct redis_client *c;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        o.credential = cases[i].credential;
        assert_int_equal(redis_client_new(&o, &c, err, sizeof(err)), cases[i].rc);
        if (cases[i].rc == 0)
            redis_client_free(c);
        else if (cases[i].credential[0] && strcmp(cases[i].credential, ":s3cret") != 0)
            assert_null(strstr(err, "s3cret"));
    }
    redis_client_free(NULL);
}

/* ---- against a real redis-server ---- */

static void test_round_trip_small(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *c = tcp_client(s, NULL, 0);
    struct shared_key key = key_for("small"), mutable_key;
    const struct redis_entry e = {
        .body = "{\"values\":[]}", .len = 13, .etag = "\"e-1\"", .fetched_at = 1700000000};
    struct redis_value v;
    struct redis_stats st;
    redisContext *raw = redis_raw(s);

    (void)state;
    assert_non_null(raw);
    assert_int_equal(redis_get(c, &key, &v), -ENOENT);
    assert_null(v.body);
    assert_int_equal(redis_put(c, &key, &e, 0), 0);
    assert_int_equal(exists(raw, key.name), 1);
    assert_int_equal(redis_get(c, &key, &v), 0);
    assert_int_equal(v.len, 13);
    assert_string_equal(v.body, "{\"values\":[]}");
    assert_string_equal(v.etag, "\"e-1\"");
    assert_int_equal(v.fetched_at, 1700000000);
    redis_value_release(&v);

    assert_int_equal(redis_key_mutable(c, "https://api/repositories/acme", &mutable_key), 0);
    assert_int_equal(redis_put(c, &mutable_key, &e, 60000), 0);
    {
        redisReply *r = redisCommand(raw, "PTTL %s", mutable_key.name);

        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        assert_true(r->integer > 0 && r->integer <= 60000);
        freeReplyObject(r);
    }
    assert_int_equal(redis_get(c, &mutable_key, &v), 0);
    assert_string_equal(v.body, "{\"values\":[]}");
    redis_value_release(&v);

    redis_get_stats(c, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.writes, 2);
    assert_int_equal(st.bytes_written, 2 * (SHARED_HEADER_LEN + 5 + 13));
    assert_int_equal(st.bytes_read, 2 * (SHARED_HEADER_LEN + 5 + 13));
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.connections, 1); /* one connection, reused */
    assert_int_equal(st.down, 0);
    redisFree(raw);
    redis_client_free(c);
}

/* Another machine with the same token reads the mutable answers; one with another token can't
 * even name them. */
static void test_same_token_shares(void **state)
{
    struct redis_server *s = *state;
    char url[64];
    struct redis_client *a, *b, *other;
    struct shared_key ka, kb, kother;
    struct redis_value v;

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", s->port);
    a = open_client(url, NULL, TOKEN, 0, 0);
    b = open_client(url, NULL, TOKEN, 0, 0);
    other = open_client(url, NULL, "another project's token", 0, 0);
    assert_int_equal(redis_key_mutable(a, "https://api/refs", &ka), 0);
    assert_int_equal(redis_key_mutable(b, "https://api/refs", &kb), 0);
    assert_int_equal(redis_key_mutable(other, "https://api/refs", &kother), 0);
    assert_string_equal(ka.name, kb.name);
    assert_string_not_equal(ka.name, kother.name);
    put_text(a, &ka, "[\"main\"]");
    assert_text(b, &kb, "[\"main\"]");
    assert_int_equal(redis_get(other, &kother, &v), -ENOENT);
    redis_client_free(a);
    redis_client_free(b);
    redis_client_free(other);
}

static char *pattern(size_t len, unsigned seed)
{
    char *p = malloc(len);

    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (char)((i * 2654435761u + seed) >> 13);
    return p;
}

/* Big values over the unix socket, up to exactly the cap; one byte more is not written. */
static void test_round_trip_big(void **state)
{
    struct redis_server *s = *state;
    const size_t cap = (size_t)12 << 20;
    char url[200], *body = pattern(cap + 1, 7);
    struct redis_client *c;
    struct shared_key key = key_for("big");
    struct redis_entry e = {.body = body, .len = cap};
    struct redis_value v;
    struct redis_stats st;
    redisContext *raw = redis_raw(s);

    snprintf(url, sizeof(url), "redis+unix://%s", s->socket);
    c = open_client(url, NULL, TOKEN, cap, 0);
    assert_int_equal(redis_put(c, &key, &e, 0), 0);
    assert_int_equal(redis_get(c, &key, &v), 0);
    assert_int_equal(v.len, cap);
    assert_memory_equal(v.body, body, cap);
    redis_value_release(&v);
    /* The connection that read it is not kept: only the test's own is left. */
    for (long long t = mono_ms(); redis_info(raw, "connected_clients") != 1;) {
        assert_true(mono_ms() - t < 10000); /* hang guard */
        pause_ms(10);
    }

    e.len = cap + 1;
    key = key_for("too big");
    assert_int_equal(redis_put(c, &key, &e, 0), -EFBIG);
    assert_int_equal(redis_put_async(c, &key, &e, 0, NULL), -EFBIG);
    assert_int_equal(exists(raw, key.name), 0);
    redis_get_stats(c, &st);
    assert_int_equal(st.oversized, 2);
    assert_int_equal(st.writes, 1);
    redisFree(raw);
    redis_client_free(c);
    free(body);
}

/* A value from a machine with a higher cap is a miss here, but not damage: it stays. */
static void test_value_over_my_cap_is_left_alone(void **state)
{
    struct redis_server *s = *state;
    char url[64], *body = pattern(200000, 3);
    struct redis_client *big, *small;
    struct shared_key key = key_for("200k");
    const struct redis_entry e = {.body = body, .len = 200000};
    struct redis_value v;
    struct redis_stats st;
    redisContext *raw = redis_raw(s);

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", s->port);
    big = open_client(url, NULL, TOKEN, 1 << 20, 0);
    small = open_client(url, NULL, TOKEN, 100000, 0);
    assert_int_equal(redis_put(big, &key, &e, 0), 0);
    assert_int_equal(redis_get(small, &key, &v), -ENOENT);
    redis_get_stats(small, &st);
    assert_int_equal(st.oversized, 1);
    assert_int_equal(st.damaged, 0);
    assert_true(st.bytes_read < 200000); /* only the beginning was read */
    assert_int_equal(exists(raw, key.name), 1);
    assert_int_equal(redis_get(big, &key, &v), 0);
    redis_value_release(&v);
    redisFree(raw);
    redis_client_free(big);
    redis_client_free(small);
    free(body);
}

/* Values changed by hand: a flipped byte, garbage, another type. Each is a miss, counted,
 * deleted, and the next put replaces it. */
static void test_damaged_values_replaced(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *c = tcp_client(s, NULL, 0);
    struct shared_key key = key_for("damaged");
    const char *text = "the body of a file";
    struct redis_value v;
    struct redis_stats st;
    redisContext *raw = redis_raw(s);
    redisReply *r;

    assert_non_null(raw);
    put_text(c, &key, text);
    /* The body's last byte: the value is the header, no ETag, the body. */
    r = redisCommand(raw, "SETRANGE %s %d %s", key.name,
                     (int)(SHARED_HEADER_LEN + strlen(text) - 1), "X");
    freeReplyObject(r);
    assert_int_equal(redis_get(c, &key, &v), -ENOENT);
    assert_int_equal(exists(raw, key.name), 0);
    put_text(c, &key, text);
    assert_text(c, &key, text);

    freeReplyObject(redisCommand(raw, "SET %s %s", key.name, "not a value of bbfs"));
    assert_int_equal(redis_get(c, &key, &v), -ENOENT);
    assert_int_equal(exists(raw, key.name), 0);

    freeReplyObject(redisCommand(raw, "HSET %s f v", key.name));
    assert_int_equal(redis_get(c, &key, &v), -ENOENT);
    assert_int_equal(exists(raw, key.name), 0);
    put_text(c, &key, text);
    assert_text(c, &key, text);

    redis_get_stats(c, &st);
    assert_int_equal(st.damaged, 3);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.down, 0);
    redisFree(raw);
    redis_client_free(c);
}

/* Every key and value the client writes, read back with SCAN: no token, no secret. */
static void test_token_never_stored(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *c = tcp_client(s, NULL, 0);
    struct shared_key key = key_for("file"), leased = key_for("leased"), mkey;
    struct shared_secret secret;
    struct redis_lease lease;
    const struct redis_entry e = {.body = "body", .len = 4, .etag = "\"x\"", .fetched_at = 5};
    char secret_hex[2 * SHARED_SECRET_LEN + 1], cursor[32] = "0";
    redisContext *raw = redis_raw(s);
    int keys = 0;

    assert_int_equal(shared_secret_derive(TOKEN, &secret), 0);
    for (size_t i = 0; i < SHARED_SECRET_LEN; i++)
        sprintf(secret_hex + 2 * i, "%02x", secret.bytes[i]);
    assert_int_equal(redis_put(c, &key, &e, 0), 0);
    assert_int_equal(redis_key_mutable(c, "https://api/repositories/acme?token=" TOKEN, &mkey), 0);
    assert_int_equal(redis_put(c, &mkey, &e, 0), 0);
    assert_int_equal(redis_lease_take(c, &leased, 60000, &lease), 1);
    do {
        redisReply *r = redisCommand(raw, "SCAN %s COUNT 100", cursor);

        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            redisReply *name = r->element[1]->element[i];
            redisReply *value = redisCommand(raw, "GET %b", name->str, name->len);

            keys++;
            assert_int_equal(strncmp(name->str, "bbfs:1:", 7), 0);
            assert_null(memmem(name->str, name->len, TOKEN, strlen(TOKEN)));
            assert_int_equal(value->type, REDIS_REPLY_STRING);
            assert_null(memmem(value->str, value->len, TOKEN, strlen(TOKEN)));
            assert_null(memmem(value->str, value->len, secret.bytes, SHARED_SECRET_LEN));
            assert_null(memmem(value->str, value->len, secret_hex, strlen(secret_hex)));
            freeReplyObject(value);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    assert_int_equal(keys, 3);
    redis_lease_release(c, &lease);
    redisFree(raw);
    redis_client_free(c);
}

/* The database of the URL, over TCP and the unix socket. */
static void test_select_db(void **state)
{
    struct redis_server *s = *state;
    char url[200];
    struct redis_client *c;
    struct shared_key key = key_for("db");
    redisContext *raw = redis_raw(s);

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", s->port);
    c = open_client(url, NULL, TOKEN, 0, 0);
    put_text(c, &key, "in db 3");
    redis_client_free(c);
    snprintf(url, sizeof(url), "redis+unix://%s?db=5", s->socket);
    c = open_client(url, NULL, TOKEN, 0, 0);
    put_text(c, &key, "in db 5");
    assert_text(c, &key, "in db 5");
    redis_client_free(c);

    assert_int_equal(exists(raw, key.name), 0);
    freeReplyObject(redisCommand(raw, "SELECT 3"));
    assert_int_equal(exists(raw, key.name), 1);
    freeReplyObject(redisCommand(raw, "SELECT 5"));
    assert_int_equal(exists(raw, key.name), 1);
    redisFree(raw);
}

/* ---- passwords and ACL users ---- */

static int setup_server_with_password(void **state)
{
    struct redis_server *s = calloc(1, sizeof(*s));

    if (!s || redis_server_start(s, "Right-pw-41", NULL) != 0) {
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void test_requirepass(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *c = tcp_client(s, "Right-pw-41", 0);
    struct shared_key key = key_for("auth");

    assert_int_equal(redis_check(c), 0);
    put_text(c, &key, "behind a password");
    assert_text(c, &key, "behind a password");
    redis_client_free(c);
}

/*
 * A wrong password: one clear line (without the password), then every call
 * a miss at once, without a connection (the server's count says so).
 */
static void test_wrong_password(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *c = tcp_client(s, "Wrong-pw-97", 60000);
    struct shared_key key = key_for("auth");
    struct redis_value v;
    struct redis_stats st;
    struct redis_lease lease;
    redisContext *raw = redis_raw(s);
    long long connections, started = mono_ms();
    char *log;
    int lines;

    connections = redis_info(raw, "total_connections_received");
    assert_true(connections > 0);
    capture_begin();
    assert_int_equal(redis_check(c), -EAGAIN);
    for (int i = 0; i < 10; i++)
        assert_int_equal(redis_get(c, &key, &v), -EAGAIN);
    assert_int_equal(redis_put(c, &key, &(struct redis_entry){.body = "x", .len = 1}, 0), -EAGAIN);
    assert_int_equal(redis_lease_take(c, &key, 1000, &lease), -EAGAIN);
    assert_int_equal(redis_wait(c, &key, REDIS_ANY_VALUE, 1000, &v), -EAGAIN);
    log = capture_end(&lines);
    assert_true(mono_ms() - started < FAULT_GUARD_MS); /* hang guard */
    assert_int_equal(lines, 1);
    assert_non_null(strstr(log, "authentication failed"));
    assert_non_null(strstr(log, "WRONGPASS"));
    assert_non_null(strstr(log, redis_where(c)));
    assert_null(strstr(log, "Wrong-pw-97"));
    free(log);
    assert_int_equal(redis_info(raw, "total_connections_received"), connections + 1);
    redis_get_stats(c, &st);
    assert_int_equal(st.down, 1);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.skipped, 13);
    assert_int_equal(st.misses, 11);
    assert_int_equal(st.connections, 0);
    redisFree(raw);
    redis_client_free(c);
}

static void test_missing_password(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *c = tcp_client(s, NULL, 60000);
    char *log;
    int lines;

    capture_begin();
    assert_int_equal(redis_check(c), -EAGAIN);
    log = capture_end(&lines);
    assert_int_equal(lines, 1);
    assert_non_null(strstr(log, "NOAUTH"));
    free(log);
    redis_client_free(c);
}

/*
 * An ACL user with only the keys "bbfs:*" and only the commands the client
 * needs (this list is what the documentation can give): every call works.
 */
static void test_acl_user(void **state)
{
    struct redis_server *s = *state;
    struct redis_client *c, *bad;
    struct shared_key key = key_for("acl"), other = key_for("acl 2");
    struct redis_lease lease;
    struct redis_value v;
    struct redis_stats st;
    char lease_name[SHARED_KEY_SIZE];
    redisContext *raw = redis_raw(s);
    redisReply *r =
        redisCommand(raw, "ACL SETUSER fleet on >Fleet-pw-5 ~bbfs:* resetchannels -@all "
                          "+auth +select +ping +getrange +exists +set +del +eval +get");

    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    c = tcp_client(s, "fleet:Fleet-pw-5", 0);
    assert_int_equal(redis_check(c), 0);
    put_text(c, &key, "for the fleet");
    assert_text(c, &key, "for the fleet");
    assert_int_equal(redis_lease_take(c, &other, 60000, &lease), 1);
    assert_int_equal(redis_wait(c, &other, REDIS_ANY_VALUE, 50, &v), -ETIMEDOUT);
    assert_int_equal(
        redis_put_async(c, &other, &(struct redis_entry){.body = "y", .len = 1}, 0, &lease), 0);
    assert_int_equal(redis_flush(c, 60000), 0); /* hang guard */
    assert_text(c, &other, "y");
    shared_lease_name(&other, lease_name);
    assert_int_equal(exists(raw, lease_name), 0); /* released by the script */
    redis_get_stats(c, &st);
    assert_int_equal(st.errors, 0);

    bad = tcp_client(s, "fleet:not-it", 60000);
    assert_int_equal(redis_check(bad), -EAGAIN);
    redis_get_stats(bad, &st);
    assert_int_equal(st.down, 1);
    redis_client_free(bad);
    redis_client_free(c);
    redisFree(raw);
}

#define WITH_PASSWORD(t)                                                                           \
    cmocka_unit_test_setup_teardown(t, setup_server_with_password, teardown_server)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_no_credential_in_url),
        cmocka_unit_test(test_credentials),
        WITH_SERVER(test_round_trip_small),
        WITH_SERVER(test_same_token_shares),
        WITH_SERVER(test_round_trip_big),
        WITH_SERVER(test_value_over_my_cap_is_left_alone),
        WITH_SERVER(test_damaged_values_replaced),
        WITH_SERVER(test_token_never_stored),
        WITH_SERVER(test_select_db),
        WITH_PASSWORD(test_requirepass),
        WITH_PASSWORD(test_wrong_password),
        WITH_PASSWORD(test_missing_password),
        WITH_SERVER(test_acl_user),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

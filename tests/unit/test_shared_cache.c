/*
 * test_shared_cache.c - the policy of the cache a fleet shares (fs/shared_cache.h)
 * against a real redis-server started per test (redis_server.h): answers
 * addressed by a hash are shared whatever the token, mutable ones only with
 * the same token and trusted for what is left of ttl, one fetch across
 * machines (a waiter gets the holder's answer; a peek claims nothing),
 * contents, the cap, a failed fetch, Redis down, the password file.
 * Each "machine" is a shared_cache of its own on the one server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api.h"
#include "api/buf.h"
#include "api/redis.h"
#include "fs/shared_cache.h"
#include "redis_server.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN "fleet-token-1"
#define OTHER_TOKEN "another-project-token"
#define HASH "0123456789abcdef0123456789abcdef01234567"
#define ORIGIN "https://api.example/2.0"
#define REPO_URL ORIGIN "/repositories/acme/api"
/* Hang guard for a call that meets a fault or waits for another machine. */
#define GUARD_MS 15000

static const char commit_url[] = REPO_URL "/commit/" HASH;
static const char listing_url[] = REPO_URL "/src/" HASH "/docs/?pagelen=100";
static const char repos_url[] = ORIGIN "/repositories/acme?pagelen=100&q=project.key%3D%22PLAT%22";

static int setup_server(void **state)
{
    struct redis_server *s = calloc(1, sizeof(*s));

    if (!s || redis_server_start(s, NULL, NULL) != 0) {
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static int teardown_server(void **state)
{
    struct redis_server *s = *state;

    capture_abandon();
    redis_server_stop(s);
    free(s);
    return 0;
}

static struct shared_cache *open_machine(const struct redis_server *s, const char *token, long ttl,
                                         const char *auth_file)
{
    char url[64], err[256] = "";
    struct shared_cache *sc = NULL;

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", s->port);
    const struct shared_cache_config cfg = {.url = url,
                                            .auth_file = auth_file,
                                            .token = token,
                                            .api_url = ORIGIN "/",
                                            .workspace = "acme",
                                            .ttl = ttl,
                                            .timeout_ms = 20000};
    assert_int_equal(shared_cache_open(&cfg, &sc, err, sizeof(err)), 0);
    return sc;
}

static struct shared_cache *machine(const struct redis_server *s, const char *token)
{
    return open_machine(s, token, 60, NULL);
}

/* A row of .bbfs/stats. */
static long long stat_of(struct shared_cache *sc, const char *name)
{
    char *text = NULL, *at;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    long long value = -1;
    size_t n = strlen(name);

    shared_cache_print_stats(sc, f);
    fclose(f);
    for (at = text; at && *at; at = strchr(at, '\n') ? strchr(at, '\n') + 1 : NULL)
        if (strncmp(at, name, n) == 0 && at[n] == ' ')
            value = atoll(at + n + 1);
    free(text);
    return value;
}

static long long count_keys(const struct redis_server *s, const char *pattern)
{
    redisContext *raw = redis_raw(s);
    redisReply *r =
        redisCommand(raw, "EVAL %s 0 %s", "return #redis.call('keys', ARGV[1])", pattern);
    long long n;

    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    n = r->integer;
    freeReplyObject(r);
    redisFree(raw);
    return n;
}

static void assert_loads(struct shared_cache *sc, const char *url, const char *text)
{
    char *body = NULL;
    size_t len = 0;

    assert_int_equal(shared_cache_load(sc, url, &body, &len), 0);
    assert_int_equal(len, strlen(text));
    assert_string_equal(body, text);
    free(body);
}

static void assert_misses(struct shared_cache *sc, const char *url)
{
    char *body = NULL;
    size_t len = 0;

    assert_int_equal(shared_cache_load(sc, url, &body, &len), -ENOENT);
    assert_null(body);
}

/* ---- answers addressed by a hash ---- */

static void test_answers_by_hash_for_every_token(void **state)
{
    struct redis_server *s = *state;
    struct shared_cache *a = machine(s, TOKEN), *b = machine(s, OTHER_TOKEN);
    static const char abbreviated[] = REPO_URL "/commit/0123456";

    assert_misses(a, commit_url);
    shared_cache_save(a, commit_url, "{\"hash\": 1}", 11);
    assert_misses(a, listing_url);
    shared_cache_save(a, listing_url, "{\"values\": []}", 14);
    /* Not addressed by a full hash: never shared, no key written. */
    assert_misses(a, abbreviated);
    shared_cache_save(a, abbreviated, "{\"hash\": 2}", 11);
    assert_misses(a, repos_url); /* mutable: not through this call */
    shared_cache_save(a, repos_url, "{}", 2);
    shared_cache_free(a); /* writes what is queued */

    assert_loads(b, commit_url, "{\"hash\": 1}");
    assert_loads(b, listing_url, "{\"values\": []}");
    assert_int_equal(count_keys(s, "bbfs:1:h:*[0-9a-f]"), 2);
    assert_int_equal(count_keys(s, "*"), 2); /* the leases went with the writes */
    assert_int_equal(stat_of(b, "shared_hits"), 2);
    assert_int_equal(stat_of(b, "shared_misses"), 0);
    shared_cache_free(b);
}

/* Another page, another directory, another origin: another key. */
static void test_keys_keep_every_part(void **state)
{
    struct redis_server *s = *state;
    struct shared_cache *a = machine(s, TOKEN), *b = machine(s, TOKEN);
    static const char *const others[] = {
        REPO_URL "/src/" HASH "/docs/?pagelen=100&page=2",
        REPO_URL "/src/" HASH "/doc/?pagelen=100",
        ORIGIN "/repositories/acme/web/src/" HASH "/docs/?pagelen=100",
        "https://other.example/2.0/repositories/acme/api/src/" HASH "/docs/?pagelen=100",
    };

    assert_misses(a, listing_url);
    shared_cache_save(a, listing_url, "{}", 2);
    shared_cache_free(a);
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        assert_misses(b, others[i]);
    assert_loads(b, listing_url, "{}");
    shared_cache_free(b);
}

/* ---- mutable answers ---- */

static void test_mutable_only_with_the_same_token(void **state)
{
    struct redis_server *s = *state;
    struct shared_cache *a = machine(s, TOKEN), *b = machine(s, TOKEN),
                        *other = machine(s, OTHER_TOKEN);
    int64_t now = (int64_t)time(NULL);
    struct shared_answer ans = {0};

    shared_cache_save_mutable(a, repos_url, "[\"api\"]", 7, "\"etag-1\"", now - 10);
    shared_cache_free(a);

    assert_int_equal(shared_cache_load_mutable(other, repos_url, 1, &ans), 0);
    assert_null(ans.body);
    assert_int_equal(stat_of(other, "shared_hits"), 0);

    assert_int_equal(shared_cache_load_mutable(b, repos_url, 1, &ans), 1);
    assert_string_equal(ans.body, "[\"api\"]");
    assert_int_equal(ans.len, 7);
    assert_string_equal(ans.etag, "\"etag-1\"");
    assert_int_equal(ans.fetched_at, now - 10);
    shared_answer_release(&ans);
    assert_int_equal(count_keys(s, "bbfs:1:m:*[0-9a-f]"), 1);
    shared_cache_free(b);
    shared_cache_free(other);
}

/*
 * A fresh local answer is used without asking Redis; a stale one gives way
 * to a newer shared one, not to an older.
 */
static void test_the_newer_answer_wins(void **state)
{
    struct redis_server *s = *state;
    struct shared_cache *a = machine(s, TOKEN), *b = machine(s, TOKEN);
    int64_t now = (int64_t)time(NULL);
    struct shared_answer ans;

    shared_cache_save_mutable(a, repos_url, "shared", 6, NULL, now - 30);
    shared_cache_free(a);

    ans = (struct shared_answer){.body = strdup("local"), .len = 5, .fetched_at = now};
    assert_int_equal(shared_cache_load_mutable(b, repos_url, 0, &ans), 0);
    assert_string_equal(ans.body, "local");
    assert_int_equal(stat_of(b, "shared_hits") + stat_of(b, "shared_misses"), 0); /* not asked */
    shared_answer_release(&ans);

    ans = (struct shared_answer){.body = strdup("local"), .len = 5, .fetched_at = now - 100};
    assert_int_equal(shared_cache_load_mutable(b, repos_url, 0, &ans), 1);
    assert_string_equal(ans.body, "shared");
    assert_null(ans.etag);
    shared_answer_release(&ans);
    shared_cache_free(b);

    b = open_machine(s, TOKEN, 20, NULL); /* now neither is fresh */
    ans = (struct shared_answer){.body = strdup("local"), .len = 5, .fetched_at = now - 25};
    assert_int_equal(shared_cache_load_mutable(b, repos_url, 0, &ans), 0);
    assert_string_equal(ans.body, "local");
    assert_int_equal(ans.fetched_at, now - 25);
    shared_answer_release(&ans);
    assert_int_equal(count_keys(s, "*:lease"), 1); /* so it claimed the fetch */
    shared_cache_free(b);
}

/* A fetch time a little ahead is a clock a little ahead: now; far ahead, unknown (stale). */
static void test_clock_skew(void **state)
{
    struct redis_server *s = *state;
    struct shared_cache *a = machine(s, TOKEN), *b = machine(s, TOKEN);
    static const char far_url[] = ORIGIN "/repositories/acme?page=2";
    int64_t before = (int64_t)time(NULL), after;
    struct shared_answer ans = {0};

    shared_cache_save_mutable(a, repos_url, "near", 4, NULL, before + SHARED_CLOCK_SKEW_MAX - 2);
    shared_cache_save_mutable(a, far_url, "far", 3, NULL, before + 3600);
    shared_cache_free(a);
    assert_int_equal(shared_cache_load_mutable(b, repos_url, 1, &ans), 1);
    after = (int64_t)time(NULL);
    assert_true(ans.fetched_at >= before && ans.fetched_at <= after);
    shared_answer_release(&ans);
    assert_int_equal(shared_cache_load_mutable(b, far_url, 1, &ans), 1);
    assert_string_equal(ans.body, "far");
    assert_int_equal(ans.fetched_at, 0);
    shared_answer_release(&ans);
    shared_cache_free(b);
}

/* ---- one fetch across machines ---- */

struct waiter {
    struct shared_cache *sc;
    const char *url;
    int mutable_answer;
    int rc;
    struct shared_answer ans;
    pthread_t thread;
};

static void *wait_main(void *arg)
{
    struct waiter *w = arg;

    if (w->mutable_answer)
        w->rc = shared_cache_load_mutable(w->sc, w->url, 0, &w->ans);
    else
        w->rc = shared_cache_load(w->sc, w->url, &w->ans.body, &w->ans.len);
    return NULL;
}

static void start_waiter(struct waiter *w, struct shared_cache *sc, const char *url,
                         int mutable_answer)
{
    memset(w, 0, sizeof(*w));
    w->sc = sc;
    w->url = url;
    w->mutable_answer = mutable_answer;
    assert_int_equal(pthread_create(&w->thread, NULL, wait_main, w), 0);
}

static void test_one_fetch_across_machines(void **state)
{
    struct redis_server *s = *state;
    struct shared_cache *a = machine(s, TOKEN), *b = machine(s, OTHER_TOKEN);
    long long started = mono_ms();
    struct waiter w;

    assert_misses(a, commit_url); /* a fetches it: the lease is a's */
    assert_int_equal(count_keys(s, "*:lease"), 1);
    start_waiter(&w, b, commit_url, 0);
    pause_ms(100); /* b polls a few times */
    shared_cache_save(a, commit_url, "{\"once\": 1}", 11);
    pthread_join(w.thread, NULL);
    assert_true(mono_ms() - started < GUARD_MS); /* hang guard */
    assert_int_equal(w.rc, 0);
    assert_string_equal(w.ans.body, "{\"once\": 1}");
    shared_answer_release(&w.ans);
    assert_int_equal(stat_of(b, "shared_waits"), 1);
    assert_int_equal(stat_of(b, "shared_hits"), 1);
    shared_cache_free(a);
    assert_int_equal(count_keys(s, "*:lease"), 0);
    shared_cache_free(b);
}

/* Refreshing a stale listing: the old one is there all along; the waiter gets the new one. */
static void test_refresh_waits_for_the_newer(void **state)
{
    struct redis_server *s = *state;
    struct shared_cache *seed = machine(s, TOKEN), *a, *b;
    int64_t now = (int64_t)time(NULL);
    struct shared_answer ans = {0};
    struct waiter w;

    shared_cache_save_mutable(seed, repos_url, "old", 3, "\"1\"", now - 100);
    shared_cache_free(seed);
    a = machine(s, TOKEN);
    b = machine(s, TOKEN);
    assert_int_equal(shared_cache_load_mutable(a, repos_url, 0, &ans), 1); /* stale: a claims */
    assert_string_equal(ans.body, "old");
    shared_answer_release(&ans);
    start_waiter(&w, b, repos_url, 1);
    pause_ms(100);
    shared_cache_save_mutable(a, repos_url, "new", 3, "\"2\"", now);
    pthread_join(w.thread, NULL);
    assert_int_equal(w.rc, 1);
    assert_string_equal(w.ans.body, "new");
    assert_string_equal(w.ans.etag, "\"2\"");
    assert_int_equal(w.ans.fetched_at, now);
    shared_answer_release(&w.ans);
    shared_cache_free(a);
    shared_cache_free(b);
}

/* Only looking (is the listing stored?) claims nothing, so nobody waits for a fetch that never
 * comes. */
static void test_a_peek_claims_nothing(void **state)
{
    struct redis_server *s = *state;
    struct shared_cache *a = machine(s, TOKEN);
    struct shared_answer ans = {0};

    assert_int_equal(shared_cache_load_mutable(a, repos_url, 1, &ans), 0);
    assert_null(ans.body);
    assert_int_equal(count_keys(s, "*"), 0);
    assert_int_equal(shared_cache_load_mutable(a, repos_url, 0, &ans), 0);
    assert_int_equal(count_keys(s, "*:lease"), 1);
    shared_cache_free(a);
}

/* ---- contents ---- */

struct fetcher {
    const char *text;
    uint64_t size; /* when text is NULL: this many zeros */
    int rc;
    int calls;
};

static int fetch_content(void *arg, const struct api_sink *sink, uint64_t *size)
{
    static const char zeros[64 << 10];
    struct fetcher *f = arg;

    f->calls++;
    if (f->rc)
        return f->rc;
    if (f->text) {
        *size = strlen(f->text);
        assert_int_equal(sink->write(sink->ctx, f->text, (size_t)*size), 0);
        return 0;
    }
    *size = f->size;
    for (uint64_t left = f->size; left > 0;) {
        size_t n = left < sizeof(zeros) ? (size_t)left : sizeof(zeros);
        assert_int_equal(sink->write(sink->ctx, zeros, n), 0);
        left -= n;
    }
    return 0;
}

/* A sink into a growing buffer, as stream.c's download gives one. */
static int to_buf(void *ctx, const void *data, size_t len)
{
    return buf_append(ctx, data, len);
}

/* The content's bytes through a sink (NUL-terminated). */
static char *content_of(struct shared_cache *sc, const struct shared_content *what,
                        struct fetcher *f, int *rc)
{
    struct buf got;
    const struct api_sink sink = {to_buf, NULL, &got};
    uint64_t size = 0;
    char *data;

    buf_init(&got, (size_t)REDIS_DEFAULT_MAX_VALUE * 2);
    *rc = shared_cache_content(sc, what, &sink, &size, fetch_content, f);
    assert_int_equal(got.err, 0);
    if (*rc == 0)
        assert_int_equal(got.len, size);
    data = buf_take(&got, NULL);
    buf_release(&got);
    assert_non_null(data);
    return data;
}

static void test_contents(void **state)
{
    struct redis_server *s = *state;
    struct shared_cache *a = machine(s, TOKEN), *b = machine(s, OTHER_TOKEN);
    const struct shared_content readme = {"file", "api", HASH, "README.md"};
    const struct shared_content diff = {"diff", "api", HASH, ""};
    struct fetcher first = {.text = "# api\n"}, second = {.text = "changed?"};
    char *data;
    int rc;

    data = content_of(a, &readme, &first, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(first.calls, 1);
    assert_string_equal(data, "# api\n");
    free(data);
    shared_cache_free(a);

    data = content_of(b, &readme, &second, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(second.calls, 0);
    assert_string_equal(data, "# api\n");
    free(data);
    data = content_of(b, &diff, &second, &rc); /* another kind of content */
    assert_int_equal(second.calls, 1);
    assert_string_equal(data, "changed?");
    free(data);
    assert_int_equal(stat_of(b, "shared_hits"), 1);
    shared_cache_free(b);
}

/* Over the cap a content stays local, and a failed fetch shares nothing; both let the lease go. */
static void test_too_big_or_failed(void **state)
{
    struct redis_server *s = *state;
    struct shared_cache *a = machine(s, TOKEN), *b = machine(s, TOKEN);
    const struct shared_content big = {"file", "api", HASH, "big.bin"};
    const struct shared_content broken = {"file", "api", HASH, "broken"};
    struct fetcher huge = {.size = REDIS_DEFAULT_MAX_VALUE + 1}, failing = {.rc = -EIO};
    char *data;
    int rc;

    free(content_of(a, &big, &huge, &rc));
    assert_int_equal(rc, 0);
    data = content_of(a, &broken, &failing, &rc);
    assert_int_equal(rc, -EIO);
    free(data);
    assert_int_equal(count_keys(s, "*"), 0); /* nothing written, no lease left */
    shared_cache_free(a);
    free(content_of(b, &big, &huge, &rc));
    assert_int_equal(huge.calls, 2);
    shared_cache_free(b);
}

/* ---- faults ---- */

/* Redis gone: every call answers at once, the content comes through its fetch, said once. */
static void test_redis_down(void **state)
{
    struct redis_server *s = *state;
    struct shared_cache *a = machine(s, TOKEN);
    const struct shared_content readme = {"file", "api", HASH, "README.md"};
    struct fetcher f = {.text = "still here"};
    struct shared_answer ans = {0};
    long long started;
    char *data, *log;
    int rc, lines;

    redis_server_kill(s);
    started = mono_ms();
    capture_begin();
    for (int i = 0; i < 3; i++) {
        assert_misses(a, commit_url);
        shared_cache_save(a, commit_url, "{}", 2);
        assert_int_equal(shared_cache_load_mutable(a, repos_url, 0, &ans), 0);
        data = content_of(a, &readme, &f, &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(data, "still here");
        free(data);
    }
    log = capture_end(&lines);
    assert_true(mono_ms() - started < GUARD_MS); /* hang guard */
    assert_int_equal(lines, 1);
    assert_non_null(strstr(log, "unavailable"));
    free(log);
    assert_int_equal(f.calls, 3);
    assert_int_equal(stat_of(a, "shared_errors"), 1);
    assert_int_equal(stat_of(a, "shared_hits"), 0);
    capture_begin();
    shared_cache_free(a);
    free(capture_end(&lines));
}

static char *write_file(const char *text, mode_t mode)
{
    char *path = strdup("/tmp/bbfs-shared-auth-XXXXXX");
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
    return path;
}

/* The password file: refused when others may read it; a wrong password is one log line. */
static void test_password_file(void **state)
{
    struct redis_server *s = *state;
    struct shared_cache *sc = NULL;
    char url[64], err[256] = "", *log;
    char *readable = write_file("Fleet pass 7\n", 0644),
         *right = write_file("Fleet pass 7\n", 0600), *wrong = write_file("not it\n", 0600);
    int lines;

    redis_server_stop(s);
    assert_int_equal(redis_server_start(s, "Fleet pass 7", NULL), 0);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", s->port);
    struct shared_cache_config cfg = {
        .url = url, .auth_file = readable, .token = TOKEN, .api_url = ORIGIN, .workspace = "acme"};
    assert_int_equal(shared_cache_open(&cfg, &sc, err, sizeof(err)), -EPERM);
    assert_null(sc);
    assert_non_null(strstr(err, "shared_cache_auth file"));
    assert_null(strstr(err, "Fleet"));

    sc = open_machine(s, TOKEN, 60, right);
    shared_cache_check(sc);
    assert_string_equal(stat_of(sc, "shared_errors") == 0 ? "ok" : "failed", "ok");
    shared_cache_free(sc);

    sc = open_machine(s, TOKEN, 60, wrong);
    capture_begin();
    shared_cache_check(sc);
    assert_misses(sc, commit_url);
    log = capture_end(&lines);
    assert_int_equal(lines, 1);
    assert_non_null(strstr(log, "authentication failed"));
    assert_null(strstr(log, "not it"));
    free(log);
    shared_cache_free(sc);
    for (char **p = (char *[]){readable, right, wrong, NULL}; *p; p++) {
        unlink(*p);
        free(*p);
    }
}

/* Without a shared cache everything goes to the fetch, and the stats say so. */
static void test_none(void **state)
{
    const struct shared_content readme = {"file", "api", HASH, "README.md"};
    struct fetcher f = {.text = "fetched"};
    struct shared_answer ans = {0};
    char *data;
    int rc;
    (void)state;

    assert_misses(NULL, commit_url);
    shared_cache_save(NULL, commit_url, "{}", 2);
    assert_int_equal(shared_cache_load_mutable(NULL, repos_url, 0, &ans), 0);
    shared_cache_save_mutable(NULL, repos_url, "{}", 2, NULL, 0);
    data = content_of(NULL, &readme, &f, &rc);
    assert_string_equal(data, "fetched");
    free(data);
    assert_int_equal(f.calls, 1);
    assert_int_equal(stat_of(NULL, "shared_hits"), 0);
    shared_cache_check(NULL);
    shared_cache_free(NULL);
}

#define WITH_SERVER(t) cmocka_unit_test_setup_teardown(t, setup_server, teardown_server)

int main(void)
{
    const struct CMUnitTest tests[] = {
        WITH_SERVER(test_answers_by_hash_for_every_token),
        WITH_SERVER(test_keys_keep_every_part),
        WITH_SERVER(test_mutable_only_with_the_same_token),
        WITH_SERVER(test_the_newer_answer_wins),
        WITH_SERVER(test_clock_skew),
        WITH_SERVER(test_one_fetch_across_machines),
        WITH_SERVER(test_refresh_waits_for_the_newer),
        WITH_SERVER(test_a_peek_claims_nothing),
        WITH_SERVER(test_contents),
        WITH_SERVER(test_too_big_or_failed),
        WITH_SERVER(test_redis_down),
        WITH_SERVER(test_password_file),
        cmocka_unit_test(test_none),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

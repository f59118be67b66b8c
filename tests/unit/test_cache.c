/*
 * test_cache.c - the object cache: freshness, single flight, negative and
 * stale answers, waits that honour nowait and interrupts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api.h"
#include "fs/cache.h"
#include "fs/waits.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct source {
    pthread_mutex_t lock;
    int calls;
    int result;   /* what the next fetch returns */
    int value;    /* the value a successful fetch produces */
    int delay_ms; /* how long a fetch takes */
    int previous; /* the value the last fetch was shown as replaced, or -1 */
    size_t size;  /* what a value says it holds (0: an int's size) */
    time_t age;   /* how old a fetched value already is */
};

static int fetch_int(void *arg, const void *previous, struct cache_value *out)
{
    struct source *src = arg;
    pthread_mutex_lock(&src->lock);
    src->calls++;
    src->previous = previous ? *(const int *)previous : -1;
    int result = src->result, v = src->value;
    pthread_mutex_unlock(&src->lock);
    if (src->delay_ms)
        usleep((useconds_t)src->delay_ms * 1000);
    if (result)
        return result;
    int *p = malloc(sizeof(*p));
    *p = v;
    out->value = p;
    out->size = src->size ? src->size : sizeof(*p);
    out->age = src->age;
    return 0;
}

static int get_int(struct cache *c, struct source *src, time_t max_age, int *out)
{
    struct cache_ref *ref;
    int rc = cache_get(c, "k", max_age, fetch_int, free, src, &ref);
    if (rc == 0) {
        *out = *(int *)cache_ref_value(ref);
        cache_ref_put(ref);
    }
    return rc;
}

static void test_fresh_value_is_reused(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .value = 7};
    int v;
    (void)state;
    assert_int_equal(get_int(c, &src, 60, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(get_int(c, &src, 60, &v), 0);
    assert_int_equal(src.calls, 1);
    cache_free(c);
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_expired_value_is_refetched(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .value = 1};
    int v;
    (void)state;
    /* max_age 0: revalidated at each use, but the uses of one second share a fetch */
    double t0 = seconds_now();
    assert_int_equal(get_int(c, &src, 0, &v), 0);
    src.value = 2;
    assert_int_equal(get_int(c, &src, 0, &v), 0);
    if (seconds_now() - t0 < 1.0) { /* (a machine that stalled a second proves nothing) */
        assert_int_equal(v, 1);
        assert_int_equal(src.calls, 1);
    }
    usleep(1100 * 1000);
    assert_int_equal(get_int(c, &src, 0, &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(src.calls, 2);

    /* cache_expire_all forces a refetch of a long-lived entry, not of a forever one. */
    cache_expire_all(c);
    assert_int_equal(get_int(c, &src, 3600, &v), 0);
    assert_int_equal(src.calls, 3);
    cache_expire_all(c);
    src.value = 3;
    assert_int_equal(get_int(c, &src, 3600, &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(src.calls, 4);
    cache_free(c);
}

static void test_refresh_sees_the_value_it_replaces(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .value = 1};
    int v;
    (void)state;
    assert_int_equal(get_int(c, &src, 0, &v), 0);
    assert_int_equal(src.previous, -1);
    src.value = 2;
    cache_expire_all(c);
    assert_int_equal(get_int(c, &src, 0, &v), 0);
    assert_int_equal(src.previous, 1);
    cache_expire_all(c);
    assert_int_equal(get_int(c, &src, 0, &v), 0);
    assert_int_equal(src.previous, 2);
    cache_free(c);
}

static void test_put_offers_a_value_without_fetching(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .value = 1};
    int *offered = malloc(sizeof(*offered)), *again = malloc(sizeof(*again)), v;
    (void)state;
    *offered = 42;
    *again = 43;
    struct cache_value v1 = {.value = offered}, v2 = {.value = again};
    assert_int_equal(cache_put(c, "k", 60, &v1, free), 0);
    assert_int_equal(get_int(c, &src, 60, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(src.calls, 0);
    /* a key that has a value keeps it; the offer is freed */
    assert_int_equal(cache_put(c, "k", 60, &v2, free), -EEXIST);
    assert_int_equal(get_int(c, &src, 60, &v), 0);
    assert_int_equal(v, 42);
    cache_free(c);
}

static void test_peek_never_fetches(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .value = 4};
    struct cache_ref *ref;
    int v;
    (void)state;
    assert_int_equal(cache_peek(c, "k", &ref), -EAGAIN);
    assert_int_equal(get_int(c, &src, 60, &v), 0);
    assert_int_equal(cache_peek(c, "k", &ref), 0);
    assert_int_equal(*(int *)cache_ref_value(ref), 4);
    cache_ref_put(ref);
    cache_expire_all(c);
    assert_int_equal(cache_peek(c, "k", &ref), -EAGAIN); /* stale: not fresh */
    src.result = -ENOENT;
    assert_int_equal(get_int(c, &src, 60, &v), -ENOENT);
    assert_int_equal(cache_peek(c, "k", &ref), -ENOENT); /* a remembered "not found" */
    assert_int_equal(src.calls, 2);
    cache_free(c);
}

static void test_negative_is_remembered_errors_are_not(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .result = -ENOENT};
    int v;
    (void)state;
    assert_int_equal(get_int(c, &src, 60, &v), -ENOENT);
    assert_int_equal(get_int(c, &src, 60, &v), -ENOENT);
    assert_int_equal(src.calls, 1);
    cache_free(c);

    c = cache_new(1 << 20);
    src.calls = 0;
    src.result = -EIO;
    assert_int_equal(get_int(c, &src, 60, &v), -EIO);
    assert_int_equal(get_int(c, &src, 60, &v), -EIO);
    assert_int_equal(src.calls, 2);
    /* After the failure clears, the real value arrives: nothing wrong was cached. */
    src.result = 0;
    src.value = 5;
    assert_int_equal(get_int(c, &src, 60, &v), 0);
    assert_int_equal(v, 5);
    cache_free(c);
}

static void test_stale_served_when_refresh_fails(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .value = 9};
    int v = 0;
    (void)state;
    assert_int_equal(get_int(c, &src, 0, &v), 0);
    src.result = -EIO;
    usleep(1100 * 1000); /* past the second that shares a fetch: a refresh is due */
    assert_int_equal(get_int(c, &src, 0, &v), 0);
    assert_int_equal(v, 9);
    assert_int_equal(src.calls, 2);
    /* ... and the failed refresh is not retried on every call. */
    usleep(1100 * 1000);
    assert_int_equal(get_int(c, &src, 0, &v), 0);
    assert_int_equal(src.calls, 2);
    cache_free(c);
}

static int get_key(struct cache *c, struct source *src, const char *key, struct cache_ref **ref)
{
    return cache_get(c, key, CACHE_FOREVER, fetch_int, free, src, ref);
}

static void test_least_recently_used_go_beyond_the_bound(void **state)
{
    const size_t bound = 64 << 10;
    struct cache *c = cache_new(bound);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .value = 7, .size = 1000};
    struct cache_ref *held, *ref;
    char key[32];
    (void)state;
    assert_int_equal(get_key(c, &src, "held", &held), 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(get_key(c, &src, key, &ref), 0);
        cache_ref_put(ref);
        assert_true(cache_bytes(c) <= bound);
        if (i % 10 == 0) { /* k0 is used all along: it stays */
            assert_int_equal(get_key(c, &src, "k0", &ref), 0);
            cache_ref_put(ref);
        }
    }
    assert_int_equal(src.calls, 1001);
    /* a value a reader holds outlives its entry */
    assert_int_equal(*(int *)cache_ref_value(held), 7);
    cache_ref_put(held);
    /* the newest and the one in use are there; the oldest went */
    assert_int_equal(get_key(c, &src, "k999", &ref), 0);
    cache_ref_put(ref);
    assert_int_equal(get_key(c, &src, "k0", &ref), 0);
    cache_ref_put(ref);
    assert_int_equal(src.calls, 1001);
    assert_int_equal(get_key(c, &src, "k1", &ref), 0);
    cache_ref_put(ref);
    assert_int_equal(src.calls, 1002);
    cache_free(c);
}

static void test_age_counts_from_the_fetch_of_the_data(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .value = 1, .age = 58};
    int v;
    (void)state;
    /* stored 58 s before it came: of a max_age of 60, 2 s are left */
    assert_int_equal(get_int(c, &src, 60, &v), 0);
    usleep(2500 * 1000);
    assert_int_equal(get_int(c, &src, 60, &v), 0);
    assert_int_equal(src.calls, 2);
    /* fresh data is trusted for max_age */
    src.age = 0;
    cache_expire_all(c);
    assert_int_equal(get_int(c, &src, 60, &v), 0);
    assert_int_equal(get_int(c, &src, 60, &v), 0);
    assert_int_equal(src.calls, 3);
    cache_free(c);
}

struct worker {
    struct cache *cache;
    struct source *src;
    int rc;
    int value;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->rc = get_int(w->cache, w->src, 60, &w->value);
    return NULL;
}

static void run_concurrently(struct cache *c, struct source *src, struct worker *w, int n)
{
    pthread_t threads[8];
    for (int i = 0; i < n; i++) {
        w[i].cache = c;
        w[i].src = src;
        pthread_create(&threads[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
}

static void test_single_flight(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .value = 42, .delay_ms = 200};
    struct worker w[8];
    (void)state;
    memset(w, 0, sizeof(w));
    run_concurrently(c, &src, w, 8);
    assert_int_equal(src.calls, 1);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(w[i].rc, 0);
        assert_int_equal(w[i].value, 42);
    }
    cache_free(c);
}

static void test_single_flight_failure_is_shared(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .result = -EIO, .delay_ms = 200};
    struct worker w[8];
    (void)state;
    memset(w, 0, sizeof(w));
    run_concurrently(c, &src, w, 8);
    /* Waiters take the failure of the fetch they waited for instead of retrying. */
    assert_int_equal(src.calls, 1);
    for (int i = 0; i < 8; i++)
        assert_int_equal(w[i].rc, -EIO);
    cache_free(c);
}

/* A fetch as api/ makes one: in nowait mode what needs the network answers -EWOULDBLOCK. */
static int fetch_unless_nowait(void *arg, const void *previous, struct cache_value *out)
{
    return api_nowait() ? -EWOULDBLOCK : fetch_int(arg, previous, out);
}

static int get_value(struct cache *c, const char *key, struct source *src, int *out)
{
    struct cache_ref *ref;
    int rc = cache_get(c, key, 60, fetch_unless_nowait, free, src, &ref);
    if (rc == 0) {
        *out = *(int *)cache_ref_value(ref);
        cache_ref_put(ref);
    }
    return rc;
}

struct getter {
    struct cache *cache;
    struct source *src;
    const char *key;
    int rc, value;
};

static void *getter_main(void *arg)
{
    struct getter *g = arg;
    g->rc = get_value(g->cache, g->key, g->src, &g->value);
    return NULL;
}

/* Until src's fetch number n has begun. */
static void wait_for_calls(struct source *src, int n)
{
    for (;;) {
        pthread_mutex_lock(&src->lock);
        int calls = src->calls;
        pthread_mutex_unlock(&src->lock);
        if (calls >= n)
            return;
        usleep(1000);
    }
}

static void test_nowait_serves_what_is_fresh_and_waits_for_nothing(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .value = 5};
    struct getter slow = {c, &src, "slow", 0, 0};
    uint64_t hits, misses;
    pthread_t t;
    int v = 0;
    (void)state;
    api_set_nowait(1);
    assert_int_equal(get_value(c, "k", &src, &v), -EWOULDBLOCK);
    api_set_nowait(0);
    cache_counts(c, &hits, &misses);
    assert_int_equal(hits + misses, 0); /* no trace: neither a miss nor a remembered error */
    assert_int_equal(get_value(c, "k", &src, &v), 0);
    assert_int_equal(v, 5);
    api_set_nowait(1);
    assert_int_equal(get_value(c, "k", &src, &v), 0); /* fresh: at once */
    cache_expire_all(c);
    assert_int_equal(get_value(c, "k", &src, &v), -EWOULDBLOCK); /* not served stale */
    api_set_nowait(0);
    assert_int_equal(src.calls, 1);
    /* a fetch under way is not waited for */
    src.delay_ms = 300;
    pthread_create(&t, NULL, getter_main, &slow);
    wait_for_calls(&src, 2);
    api_set_nowait(1);
    assert_int_equal(get_value(c, "slow", &src, &v), -EWOULDBLOCK);
    api_set_nowait(0);
    pthread_join(t, NULL);
    assert_int_equal(slow.rc, 0);
    assert_int_equal(slow.value, 5);
    cache_free(c);
}

static void test_interrupted_waiter_leaves_the_fetch_to_go_on(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .value = 9, .delay_ms = 300};
    struct getter fetcher = {c, &src, "k", 0, 0};
    struct waiter w = WAITER_INIT;
    uint64_t hits, misses;
    pthread_t t;
    int v = 0;
    (void)state;
    pthread_create(&t, NULL, getter_main, &fetcher);
    wait_for_calls(&src, 1);
    waiter_interrupt(&w);
    waits_enter(&w); /* this thread's request was interrupted: it waits for nothing */
    assert_int_equal(get_value(c, "k", &src, &v), -EINTR);
    waits_leave();
    pthread_join(t, NULL);
    assert_int_equal(fetcher.rc, 0);
    cache_counts(c, &hits, &misses);
    assert_int_equal(misses, 1); /* the fetcher's; the waiter left no trace */
    assert_int_equal(get_value(c, "k", &src, &v), 0);
    assert_int_equal(v, 9);
    assert_int_equal(src.calls, 1);
    cache_free(c);
}

static void test_abandoned_fetch_leaves_no_trace(void **state)
{
    struct cache *c = cache_new(1 << 20);
    struct source src = {.lock = PTHREAD_MUTEX_INITIALIZER, .value = 1};
    struct getter first = {c, &src, "k", 0, 0}, waiter = {c, &src, "k", 0, 0};
    pthread_t t1, t2;
    int v = 0;
    (void)state;
    assert_int_equal(get_value(c, "k", &src, &v), 0);
    cache_expire_all(c);
    /* given up on (its request interrupted): no stale value is served for it */
    src.result = -EINTR;
    assert_int_equal(get_value(c, "k", &src, &v), -EINTR);
    /* and whoever waited for it fetches anew rather than taking its -EINTR */
    src.delay_ms = 300;
    pthread_create(&t1, NULL, getter_main, &first);
    wait_for_calls(&src, 3);
    pthread_mutex_lock(&src.lock);
    src.result = 0;
    src.value = 2;
    pthread_mutex_unlock(&src.lock);
    pthread_create(&t2, NULL, getter_main, &waiter);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(first.rc, -EINTR);
    assert_int_equal(waiter.rc, 0);
    assert_int_equal(waiter.value, 2);
    assert_int_equal(src.calls, 4);
    cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_value_is_reused),
        cmocka_unit_test(test_expired_value_is_refetched),
        cmocka_unit_test(test_refresh_sees_the_value_it_replaces),
        cmocka_unit_test(test_put_offers_a_value_without_fetching),
        cmocka_unit_test(test_peek_never_fetches),
        cmocka_unit_test(test_negative_is_remembered_errors_are_not),
        cmocka_unit_test(test_stale_served_when_refresh_fails),
        cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_single_flight_failure_is_shared),
        cmocka_unit_test(test_least_recently_used_go_beyond_the_bound),
        cmocka_unit_test(test_age_counts_from_the_fetch_of_the_data),
        cmocka_unit_test(test_nowait_serves_what_is_fresh_and_waits_for_nothing),
        cmocka_unit_test(test_interrupted_waiter_leaves_the_fetch_to_go_on),
        cmocka_unit_test(test_abandoned_fetch_leaves_no_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

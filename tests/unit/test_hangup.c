/*
 * test_hangup.c - fs/hangup.c: each SIGHUP runs the callback on the hangup
 * thread; one sent before the thread starts waits for it; once hangup_stop
 * returns no callback runs, even while a storm of SIGHUPs goes on (under
 * ASan a late callback would touch the freed context), and the process
 * lives on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/hangup.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct counter {
    pthread_mutex_t lock;
    int calls;
    int on_caller_thread;
    pthread_t caller;
};

static void count(void *arg)
{
    struct counter *c = arg;

    pthread_mutex_lock(&c->lock);
    c->calls++;
    c->on_caller_thread += pthread_equal(pthread_self(), c->caller) != 0;
    pthread_mutex_unlock(&c->lock);
}

static struct counter *counter_new(void)
{
    struct counter *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    pthread_mutex_init(&c->lock, NULL);
    c->caller = pthread_self();
    return c;
}

static void counter_free(struct counter *c)
{
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int calls_of(struct counter *c)
{
    pthread_mutex_lock(&c->lock);
    int n = c->calls;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* Waits until the callback ran at least n times; the deadline is a hang guard only. */
static int wait_calls(struct counter *c, int n)
{
    const struct timespec pause = {0, 1000000};

    for (int i = 0; i < 10000 && calls_of(c) < n; i++)
        nanosleep(&pause, NULL);
    return calls_of(c) >= n;
}

static void test_each_hangup_calls_back_on_its_thread(void **state)
{
    struct counter *c = counter_new();
    struct hangup *h = NULL;

    (void)state;
    /* sent before the thread starts: pending, not lost, not fatal */
    assert_int_equal(kill(getpid(), SIGHUP), 0);
    assert_int_equal(hangup_start(count, c, &h), 0);
    assert_true(wait_calls(c, 1));
    assert_int_equal(kill(getpid(), SIGHUP), 0);
    assert_true(wait_calls(c, 2));
    hangup_stop(h);
    assert_int_equal(c->on_caller_thread, 0);
    counter_free(c);
    hangup_stop(NULL);
}

static int storming;

static void *storm(void *arg)
{
    (void)arg;
    while (__atomic_load_n(&storming, __ATOMIC_ACQUIRE))
        kill(getpid(), SIGHUP);
    return NULL;
}

static void test_no_callback_after_stop_under_a_storm(void **state)
{
    const struct timespec pause = {0, 5000000};
    pthread_t storm_thread;

    (void)state;
    __atomic_store_n(&storming, 1, __ATOMIC_RELEASE);
    assert_int_equal(pthread_create(&storm_thread, NULL, storm, NULL), 0);
    for (int round = 0; round < 50; round++) {
        struct counter *c = counter_new();
        struct hangup *h = NULL;
        assert_int_equal(hangup_start(count, c, &h), 0);
        assert_true(wait_calls(c, 1));
        hangup_stop(h);
        int at_stop = calls_of(c);
        nanosleep(&pause, NULL);
        assert_int_equal(calls_of(c), at_stop);
        counter_free(c);
    }
    __atomic_store_n(&storming, 0, __ATOMIC_RELEASE);
    pthread_join(storm_thread, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_hangup_calls_back_on_its_thread),
        cmocka_unit_test(test_no_callback_after_stop_under_a_storm),
    };
    /* Before any thread, as bbfs's main does: SIGHUP would otherwise end the test. */
    if (hangup_block() != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_stream.c - contents read as they arrive (fs/stream.c), against a
 * fake download the test lets through piece by piece: reads wait only for
 * their own bytes, readers share one download, a failure fails the reads
 * waiting and a later read starts anew, a download nobody reads stops (but
 * finishes when little is left), nowait mode starts nothing, an interrupt
 * ends a wait, and a complete content is found in the store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api.h"
#include "fs/store.h"
#include "fs/stream.h"
#include "fs/waits.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SIZE 100000

/* A download the test lets through: at most `allowed` bytes, failing at `fail_at`. */
struct fake {
    pthread_mutex_t lock;
    pthread_cond_t moved;
    size_t allowed;
    long fail_at; /* -1: never */
    int fills;    /* downloads started */
    int given_up; /* downloads that saw nobody wanted them */
};

static struct fake fake;
static struct store *store;
static struct streams *streams;
static char store_dir[] = "/tmp/bbfs-test-stream-XXXXXX";

static char byte_at(size_t i)
{
    return (char)(i * 7 + (i >> 8));
}

static void allow(size_t bytes, long fail_at)
{
    pthread_mutex_lock(&fake.lock);
    fake.allowed = bytes;
    fake.fail_at = fail_at;
    pthread_cond_broadcast(&fake.moved);
    pthread_mutex_unlock(&fake.lock);
}

static int counter(int *which)
{
    pthread_mutex_lock(&fake.lock);
    int n = *which;
    pthread_mutex_unlock(&fake.lock);
    return n;
}

/* Waits (a short while at a time) until the download may go on; 1 when nobody wants it. */
static int wait_allowed(size_t at, const struct api_sink *sink)
{
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 10 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (sink->cancelled(sink->ctx)) {
            fake.given_up++;
            return 1;
        }
        if (at < fake.allowed || (fake.fail_at >= 0 && at >= (size_t)fake.fail_at))
            return 0;
        pthread_cond_timedwait(&fake.moved, &fake.lock, &until);
    }
}

static int fake_fill(void *arg, const struct api_sink *sink)
{
    char piece[1000];
    size_t at = 0;
    (void)arg;
    pthread_mutex_lock(&fake.lock);
    fake.fills++;
    while (at < SIZE) {
        if (wait_allowed(at, sink)) {
            pthread_mutex_unlock(&fake.lock);
            return -EINTR;
        }
        if (fake.fail_at >= 0 && at >= (size_t)fake.fail_at) {
            pthread_mutex_unlock(&fake.lock);
            return -EIO;
        }
        size_t n = fake.allowed - at < sizeof(piece) ? fake.allowed - at : sizeof(piece);
        pthread_mutex_unlock(&fake.lock);
        for (size_t i = 0; i < n; i++)
            piece[i] = byte_at(at + i);
        int rc = sink->write(sink->ctx, piece, n);
        if (rc)
            return rc;
        at += n;
        pthread_mutex_lock(&fake.lock);
    }
    pthread_mutex_unlock(&fake.lock);
    return 0;
}

static void *same(const void *arg)
{
    return (void *)arg;
}

static void nothing(void *arg)
{
    (void)arg;
}

static int open_key(const char *key, uint64_t hint, struct stream **st, int *stored)
{
    const struct stream_source source = {fake_fill, same, nothing, &fake, hint};
    return stream_open(streams, key, &source, st, stored);
}

/* Reads [off, off + len) through st and checks the bytes; returns stream_span's answer. */
static int check_span(struct stream *st, uint64_t off, size_t len, size_t want_len)
{
    struct stream_span span;
    int rc = stream_span(st, off, len, &span);
    if (rc)
        return rc;
    assert_int_equal(span.len, want_len);
    char *buf = malloc(span.len + 1);
    assert_int_equal(pread(span.fd, buf, span.len, (off_t)span.pos), (ssize_t)span.len);
    for (size_t i = 0; i < span.len; i++)
        if (buf[i] != byte_at(off + i))
            fail_msg("byte %llu wrong", (unsigned long long)(off + i));
    free(buf);
    stream_span_release(&span);
    return 0;
}

struct reader {
    struct stream *st;
    uint64_t off;
    size_t len, want;
    int rc;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    r->rc = check_span(r->st, r->off, r->len, r->want);
    return NULL;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    char err[256];
    (void)state;
    memset(&fake, 0, sizeof(fake));
    pthread_mutex_init(&fake.lock, NULL);
    pthread_cond_init(&fake.moved, NULL);
    fake.fail_at = -1;
    strcpy(store_dir, "/tmp/bbfs-test-stream-XXXXXX");
    assert_non_null(mkdtemp(store_dir));
    assert_int_equal(store_open(store_dir, 1 << 30, &store, err, sizeof(err)), 0);
    assert_int_equal(streams_new(store, &streams), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    streams_free(streams);
    store_close(store);
    nftw(store_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void test_reads_wait_for_their_own_bytes(void **state)
{
    struct stream *st, *again;
    struct reader late;
    pthread_t t;
    int stored;
    (void)state;
    allow(10000, -1);
    assert_int_equal(open_key("k", 0, &st, &stored), 0); /* once the first bytes came */
    assert_false(stored);
    assert_int_equal(check_span(st, 0, 5000, 5000), 0);
    /* a FUSE thread does not wait for bytes that have not come */
    api_set_nowait(1);
    assert_int_equal(check_span(st, 50000, 100, 100), -EWOULDBLOCK);
    api_set_nowait(0);
    late = (struct reader){st, SIZE - 10, 100, 10, 1}; /* past the end: waits for it */
    pthread_create(&t, NULL, reader_main, &late);
    allow(SIZE, -1);
    pthread_join(t, NULL);
    assert_int_equal(late.rc, 0);
    assert_int_equal(check_span(st, SIZE, 10, 0), 0);
    assert_int_equal(counter(&fake.fills), 1);
    stream_close(st);
    /* complete and checked: in the store */
    assert_int_equal(open_key("k", 0, &again, &stored), 0);
    assert_true(stored);
    assert_int_equal(check_span(again, 12345, 678, 678), 0);
    stream_close(again);
    assert_int_equal(counter(&fake.fills), 1);
}

static void test_readers_share_one_download(void **state)
{
    struct stream *a, *b;
    struct reader ra, rb;
    pthread_t ta, tb;
    int stored;
    (void)state;
    allow(1000, -1);
    assert_int_equal(open_key("k", 0, &a, &stored), 0);
    assert_int_equal(open_key("k", 0, &b, &stored), 0);
    ra = (struct reader){a, SIZE - 5000, 5000, 5000, 1};
    rb = (struct reader){b, 30000, 4000, 4000, 1};
    pthread_create(&ta, NULL, reader_main, &ra);
    pthread_create(&tb, NULL, reader_main, &rb);
    allow(SIZE, -1);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(ra.rc, 0);
    assert_int_equal(rb.rc, 0);
    assert_int_equal(counter(&fake.fills), 1);
    stream_close(a);
    stream_close(b);
}

static void test_a_failure_fails_the_waiting_reads_and_a_later_read_starts_anew(void **state)
{
    struct stream *st;
    struct reader waiting;
    pthread_t t;
    int stored;
    (void)state;
    allow(20000, -1);
    assert_int_equal(open_key("k", 0, &st, &stored), 0);
    waiting = (struct reader){st, 50000, 100, 100, 1};
    pthread_create(&t, NULL, reader_main, &waiting);
    /* Every download fails there from now on: the read gets EIO (having waited for the
     * first download, or, when that failed before the read came, for one more). */
    allow(20000, 20000);
    pthread_join(t, NULL);
    assert_int_equal(waiting.rc, -EIO);
    int fills = counter(&fake.fills);
    assert_int_equal(check_span(st, 0, 100, 100), 0); /* what came before is right */
    assert_int_equal(counter(&fake.fills), fills);    /* and needs no download */
    /* a later read of the same open content: a download of its own */
    allow(SIZE, -1);
    assert_int_equal(check_span(st, 50000, 100, 100), 0);
    assert_int_equal(counter(&fake.fills), fills + 1);
    stream_close(st);
}

static void test_a_download_nobody_reads_stops_unless_nearly_done(void **state)
{
    struct stream *st;
    int stored;
    (void)state;
    /* big (its size unknown): it stops, and nothing is stored */
    allow(1000, -1);
    assert_int_equal(open_key("big", 0, &st, &stored), 0);
    stream_close(st);
    for (int i = 0; i < 500 && counter(&fake.given_up) == 0; i++)
        usleep(10000); /* a hang guard: the download looks at least every 10 ms */
    assert_int_equal(counter(&fake.given_up), 1);
    allow(SIZE, -1);
    assert_int_equal(open_key("big", 0, &st, &stored), 0);
    assert_false(stored);
    assert_int_equal(check_span(st, SIZE - 1, 1, 1), 0);
    stream_close(st);
    assert_int_equal(counter(&fake.fills), 2);
    /* small and flowing: it goes on, and the next open finds it stored */
    allow(1000, -1);
    assert_int_equal(open_key("small", SIZE, &st, &stored), 0);
    stream_close(st);
    allow(SIZE, -1);
    for (int i = 0; i < 500; i++) {
        assert_int_equal(open_key("small", SIZE, &st, &stored), 0);
        stream_close(st);
        if (stored)
            break;
        usleep(10000);
    }
    assert_true(stored);
    assert_int_equal(counter(&fake.fills), 3);
    assert_int_equal(counter(&fake.given_up), 1);
}

static void test_nowait_starts_nothing_and_an_interrupt_ends_a_wait(void **state)
{
    struct waiter w = WAITER_INIT;
    struct stream *st;
    int stored;
    (void)state;
    api_set_nowait(1);
    assert_int_equal(open_key("k", 0, &st, &stored), -EWOULDBLOCK);
    api_set_nowait(0);
    assert_int_equal(counter(&fake.fills), 0);
    allow(1000, -1);
    assert_int_equal(open_key("k", 0, &st, &stored), 0);
    waiter_interrupt(&w);
    waits_enter(&w);
    assert_int_equal(check_span(st, 50000, 10, 10), -EINTR);
    waits_leave();
    stream_close(st);
    waiter_destroy(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reads_wait_for_their_own_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readers_share_one_download, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_failure_fails_the_waiting_reads_and_a_later_read_starts_anew, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_download_nobody_reads_stops_unless_nearly_done,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_nowait_starts_nothing_and_an_interrupt_ends_a_wait,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_redis_writer.c - the shared cache's write queue (api/redis_writer.c),
 * made deterministic with a job that blocks on a gate the test opens: no
 * thread before the first job, order, the bounds in jobs and bytes, force,
 * waiting for idle, and writer_free running or dropping every job exactly
 * once (ASan checks nothing leaks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/redis_writer.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct job {
    struct writer_job base;
    int id;
    int blocks; /* waits for the gate */
};

struct log {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int gate_open;
    int started; /* a blocking job has begun */
    int ran[256], n_ran;
    int dropped[256], n_dropped;
};

static void run(void *ctx, struct writer_job *base)
{
    struct log *log = ctx;
    struct job *job = (struct job *)base;

    pthread_mutex_lock(&log->lock);
    if (job->blocks) {
        log->started = 1;
        pthread_cond_broadcast(&log->changed);
        while (!log->gate_open)
            pthread_cond_wait(&log->changed, &log->lock);
    }
    log->ran[log->n_ran++] = job->id;
    pthread_mutex_unlock(&log->lock);
    free(job);
}

static void drop(void *ctx, struct writer_job *base)
{
    struct log *log = ctx;
    struct job *job = (struct job *)base;

    pthread_mutex_lock(&log->lock);
    log->dropped[log->n_dropped++] = job->id;
    pthread_mutex_unlock(&log->lock);
    free(job);
}

static const struct writer_ops ops = {.run = run, .drop = drop};

static struct job *new_job(int id, size_t bytes, int blocks)
{
    struct job *job = calloc(1, sizeof(*job));

    assert_non_null(job);
    job->id = id;
    job->base.bytes = bytes;
    job->blocks = blocks;
    return job;
}

static void init_log(struct log *log)
{
    memset(log, 0, sizeof(*log));
    pthread_mutex_init(&log->lock, NULL);
    pthread_cond_init(&log->changed, NULL);
}

static void wait_started(struct log *log)
{
    pthread_mutex_lock(&log->lock);
    while (!log->started)
        pthread_cond_wait(&log->changed, &log->lock);
    pthread_mutex_unlock(&log->lock);
}

static void open_gate(struct log *log)
{
    pthread_mutex_lock(&log->lock);
    log->gate_open = 1;
    pthread_cond_broadcast(&log->changed);
    pthread_mutex_unlock(&log->lock);
}

static int threads(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* bbfs forks after opening things: no thread may exist before the first job. */
static void test_thread_starts_with_first_job(void **state)
{
    struct writer *w;
    struct log log;
    int before = threads();

    (void)state;
    init_log(&log);
    log.gate_open = 1;
    assert_int_equal(writer_new(&ops, &log, 10, 1000, &w), 0);
    assert_int_equal(threads(), before);
    assert_int_equal(writer_push(w, &new_job(1, 10, 0)->base, 0), 0);
    assert_int_equal(threads(), before + 1);
    writer_free(w, 1000);
    assert_int_equal(threads(), before);
    assert_int_equal(log.n_ran, 1);
}

static void test_order_and_idle(void **state)
{
    struct writer *w;
    struct log log;

    (void)state;
    init_log(&log);
    assert_int_equal(writer_new(&ops, &log, 10, 1000, &w), 0);
    assert_int_equal(writer_push(w, &new_job(0, 1, 1)->base, 0), 0);
    for (int i = 1; i < 5; i++)
        assert_int_equal(writer_push(w, &new_job(i, 1, 0)->base, 0), 0);
    assert_int_equal(writer_wait_idle(w, 50), -ETIMEDOUT); /* job 0 waits for the gate */
    open_gate(&log);
    assert_int_equal(writer_wait_idle(w, 60000), 0); /* hang guard */
    assert_int_equal(log.n_ran, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(log.ran[i], i);
    writer_free(w, 1000);
    assert_int_equal(log.n_dropped, 0);
}

static void test_bounds_and_force(void **state)
{
    struct writer *w;
    struct log log;
    struct job *refused;

    (void)state;
    init_log(&log);
    assert_int_equal(writer_new(&ops, &log, 2, 100, &w), 0);
    assert_int_equal(writer_push(w, &new_job(0, 1, 1)->base, 0), 0);
    wait_started(&log); /* job 0 has left the queue and runs */

    assert_int_equal(writer_push(w, &new_job(1, 60, 0)->base, 0), 0);
    refused = new_job(2, 50, 0); /* 110 bytes */
    assert_int_equal(writer_push(w, &refused->base, 0), -ENOSPC);
    assert_int_equal(writer_push(w, &new_job(3, 40, 0)->base, 0), 0);
    refused->base.bytes = 0; /* a third job */
    assert_int_equal(writer_push(w, &refused->base, 0), -ENOSPC);
    assert_int_equal(writer_push(w, &refused->base, 1), 0); /* forced past both bounds */

    open_gate(&log);
    writer_free(w, 60000);
    assert_int_equal(log.n_ran, 4);
    assert_int_equal(log.ran[1], 1);
    assert_int_equal(log.ran[2], 3);
    assert_int_equal(log.ran[3], 2);
    assert_int_equal(log.n_dropped, 0);
}

struct freeing {
    struct writer *w;
    long flush_ms;
};

static void *free_writer(void *arg)
{
    struct freeing *f = arg;

    writer_free(f->w, f->flush_ms);
    return NULL;
}

/*
 * Jobs queued behind a running one when the flush time is over are dropped,
 * each once. "Stopping" is seen through writer_push answering -EAGAIN.
 */
static void test_free_drops_what_it_cannot_flush(void **state)
{
    struct freeing f = {.flush_ms = 0};
    struct log log;
    pthread_t thread;
    int pushed = 3, rc;

    (void)state;
    init_log(&log);
    assert_int_equal(writer_new(&ops, &log, 100, 1000, &f.w), 0);
    assert_int_equal(writer_push(f.w, &new_job(0, 1, 1)->base, 0), 0);
    wait_started(&log);
    assert_int_equal(writer_push(f.w, &new_job(1, 1, 0)->base, 0), 0);
    assert_int_equal(writer_push(f.w, &new_job(2, 1, 0)->base, 0), 0);
    assert_int_equal(pthread_create(&thread, NULL, free_writer, &f), 0);
    for (;;) {
        struct job *probe = new_job(pushed, 1, 0);

        rc = writer_push(f.w, &probe->base, 0);
        if (rc < 0)
            free(probe); /* -ENOSPC: the queue is full before free() began */
        if (rc == -EAGAIN)
            break;
        if (rc == 0)
            pushed++;
    }
    open_gate(&log);
    pthread_join(thread, NULL);
    assert_int_equal(log.n_ran, 1);
    assert_int_equal(log.ran[0], 0);
    assert_int_equal(log.n_dropped, pushed - 1);
}

static void test_free_without_jobs(void **state)
{
    struct writer *w;
    struct log log;

    (void)state;
    init_log(&log);
    assert_int_equal(writer_new(&ops, &log, 1, 1, &w), 0);
    writer_free(w, 0);
    writer_free(NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_starts_with_first_job),
        cmocka_unit_test(test_order_and_idle),
        cmocka_unit_test(test_bounds_and_force),
        cmocka_unit_test(test_free_drops_what_it_cannot_flush),
        cmocka_unit_test(test_free_without_jobs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

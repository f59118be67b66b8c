/*
 * redis_writer.c - the bounded job queue and its lazily started thread
 * (redis_writer.h). One mutex guards the queue; "changed" wakes the thread
 * when a job arrives or it must stop, and wakes writer_wait_idle() when a
 * job is done. Deadlines are on CLOCK_MONOTONIC.
 */
#include "api/redis_writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "api/log.h"

struct writer {
    struct writer_ops ops;
    void *ctx;
    size_t max_jobs, max_bytes;

    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct writer_job *head, *tail;
    size_t jobs, bytes;
    int running;  /* a job is being run, outside the lock */
    int started;  /* the thread exists */
    int stopping; /* writer_free was called */
    struct timespec flush_deadline;
    pthread_t thread;
};

static void deadline_after(long ms, struct timespec *out)
{
    clock_gettime(CLOCK_MONOTONIC, out);
    out->tv_sec += ms / 1000;
    out->tv_nsec += (ms % 1000) * 1000000L;
    if (out->tv_nsec >= 1000000000L) {
        out->tv_sec++;
        out->tv_nsec -= 1000000000L;
    }
}

static int passed(const struct timespec *deadline)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* With the lock held. */
static struct writer_job *pop(struct writer *w)
{
    struct writer_job *job = w->head;

    w->head = job->next;
    if (!w->head)
        w->tail = NULL;
    job->next = NULL;
    w->jobs--;
    w->bytes -= job->bytes;
    return job;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct writer_job *job;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->changed, &w->lock);
        if (!w->head || (w->stopping && passed(&w->flush_deadline)))
            break;
        job = pop(w);
        w->running = 1;
        pthread_mutex_unlock(&w->lock);
        w->ops.run(w->ctx, job);
        pthread_mutex_lock(&w->lock);
        w->running = 0;
        pthread_cond_broadcast(&w->changed);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int writer_new(const struct writer_ops *ops, void *ctx, size_t max_jobs, size_t max_bytes,
               struct writer **out)
{
    pthread_condattr_t attr;
    struct writer *w;

    *out = NULL;
    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->ops = *ops;
    w->ctx = ctx;
    w->max_jobs = max_jobs;
    w->max_bytes = max_bytes;
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->changed, &attr);
    pthread_condattr_destroy(&attr);
    *out = w;
    return 0;
}

int writer_push(struct writer *w, struct writer_job *job, int force)
{
    int rc = 0;

    pthread_mutex_lock(&w->lock);
    if (w->stopping) {
        rc = -EAGAIN;
        goto out;
    }
    if (!force && (w->jobs + 1 > w->max_jobs || w->bytes + job->bytes > w->max_bytes)) {
        rc = -ENOSPC;
        goto out;
    }
    if (!w->started) {
        rc = -pthread_create(&w->thread, NULL, writer_main, w);
        if (rc < 0) {
            log_once(LOG_LEVEL_WARN, "redis:writer", "cannot start the shared cache's writer");
            rc = -EAGAIN;
            goto out;
        }
        w->started = 1;
    }
    job->next = NULL;
    if (w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    w->jobs++;
    w->bytes += job->bytes;
    pthread_cond_broadcast(&w->changed);
out:
    pthread_mutex_unlock(&w->lock);
    return rc;
}

int writer_wait_idle(struct writer *w, long timeout_ms)
{
    struct timespec deadline;
    int rc = 0;

    deadline_after(timeout_ms, &deadline);
    pthread_mutex_lock(&w->lock);
    while ((w->head || w->running) && rc == 0)
        rc = -pthread_cond_timedwait(&w->changed, &w->lock, &deadline);
    if (!w->head && !w->running)
        rc = 0;
    pthread_mutex_unlock(&w->lock);
    return rc;
}

void writer_free(struct writer *w, long flush_ms)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    deadline_after(flush_ms, &w->flush_deadline);
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->lock);
    if (w->started)
        pthread_join(w->thread, NULL);
    while (w->head)
        w->ops.drop(w->ctx, pop(w));
    pthread_cond_destroy(&w->changed);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

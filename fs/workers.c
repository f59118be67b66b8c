/*
 * workers.c - a pool of threads started on demand (see workers.h).
 */
#include "fs/workers.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

struct job {
    struct job *next;
    job_fn run;
    job_free_fn release;
    void *arg;
};

struct workers {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct job *head, **tail;
    size_t queued, max_queued;
    pthread_t *threads;
    size_t nthreads, max_threads;
    size_t idle; /* threads waiting for a job */
    int stopping;
};

static void job_end(struct job *j)
{
    if (j->release)
        j->release(j->arg);
    free(j);
}

static void *worker(void *arg)
{
    struct workers *w = arg;
    sigset_t all;

    /* Signals are for the session loop and the SIGHUP waiter. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&w->lock);
    for (;;) {
        w->idle++;
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->wake, &w->lock);
        w->idle--;
        if (w->stopping)
            break;
        struct job *j = w->head;
        w->head = j->next;
        if (!w->head)
            w->tail = &w->head;
        w->queued--;
        pthread_mutex_unlock(&w->lock);
        j->run(j->arg);
        job_end(j);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int workers_new(size_t max_threads, size_t max_queued, struct workers **out)
{
    struct workers *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    w->tail = &w->head;
    w->max_queued = max_queued;
    w->max_threads = max_threads;
    w->threads = calloc(max_threads, sizeof(*w->threads));
    if (!w->threads) {
        workers_free(w);
        return -ENOMEM;
    }
    *out = w;
    return 0;
}

void workers_free(struct workers *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    for (size_t i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    while (w->head) {
        struct job *j = w->head;
        w->head = j->next;
        job_end(j);
    }
    free(w->threads);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

int workers_submit(struct workers *w, job_fn run, job_free_fn release, void *arg)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        if (release)
            release(arg);
        return -EAGAIN;
    }
    j->run = run;
    j->release = release;
    j->arg = arg;
    pthread_mutex_lock(&w->lock);
    /* One more thread when the idle ones are all spoken for by the jobs queued already. */
    if (!w->stopping && w->idle <= w->queued && w->nthreads < w->max_threads &&
        pthread_create(&w->threads[w->nthreads], NULL, worker, w) == 0)
        w->nthreads++;
    if (w->stopping || w->queued >= w->max_queued || w->nthreads == 0) {
        pthread_mutex_unlock(&w->lock);
        job_end(j);
        return -EAGAIN;
    }
    *w->tail = j;
    w->tail = &j->next;
    w->queued++;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

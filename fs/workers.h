/*
 * workers.h - a pool of threads running queued jobs.
 *
 * Threads start when jobs need them (one more whenever a job is queued and
 * none is idle), up to the pool's bound, so that an idle pool costs nothing
 * and a pool made before bbfs goes to the background (fork) works after it.
 * Jobs go into a bounded queue; when it is full a job is dropped rather than
 * blocking the caller. Freeing the pool drops what is queued and waits for
 * the jobs running.
 */
#ifndef BBFS_WORKERS_H
#define BBFS_WORKERS_H

#include <stddef.h>

struct workers;

typedef void (*job_fn)(void *arg);
typedef void (*job_free_fn)(void *arg);

/* At most max_threads threads and max_queued jobs waiting. */
int workers_new(size_t max_threads, size_t max_queued, struct workers **out);
void workers_free(struct workers *w);

/*
 * Queues run(arg); release(arg) follows it, or comes at once when the job
 * is dropped (queue full, no thread, pool stopping): 0 when queued, -EAGAIN
 * when not.
 */
int workers_submit(struct workers *w, job_fn run, job_free_fn release, void *arg);

#endif

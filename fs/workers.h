/*
 * workers.h - a few threads for work nobody waits for (reading ahead).
 *
 * Jobs go into a bounded queue; when it is full a job is dropped rather than
 * blocking the caller, since the work is an optimisation. Freeing the pool
 * drops what is queued and waits for the jobs running.
 */
#ifndef BBFS_WORKERS_H
#define BBFS_WORKERS_H

#include <stddef.h>

struct workers;

typedef void (*job_fn)(void *arg);
typedef void (*job_free_fn)(void *arg);

/* nthreads threads (started at once), at most max_queued jobs waiting. */
int workers_new(size_t nthreads, size_t max_queued, struct workers **out);
void workers_free(struct workers *w);

/*
 * Queues run(arg); release(arg) follows it, or comes at once when the job
 * is dropped (queue full, pool stopping): 0 when queued, -EAGAIN when not.
 */
int workers_submit(struct workers *w, job_fn run, job_free_fn release, void *arg);

#endif

/*
 * redis_writer.h - one background thread running queued jobs in order: the
 * writes of the shared cache, off the reader's path (internal to api/; used
 * by redis.c).
 *
 * The thread starts with the first job, not with the queue: bbfs forks into
 * the background after opening things, and threads do not survive a fork.
 * The queue is bounded in jobs and in bytes; a job that does not fit is
 * refused (the caller counts it dropped), unless pushed with force (tiny and
 * must not be lost: the release of a lease). Freeing runs what is queued
 * until a deadline, hands the rest to the drop function, and joins the
 * thread. Every call may come from any thread.
 */
#ifndef BBFS_API_REDIS_WRITER_H
#define BBFS_API_REDIS_WRITER_H

#include <stddef.h>

/* Embedded at the start of the caller's job struct. */
struct writer_job {
    struct writer_job *next;
    size_t bytes; /* counted against the byte bound */
};

/* Both take the job over (and free it); run is called on the writer's thread. */
struct writer_ops {
    void (*run)(void *ctx, struct writer_job *job);
    void (*drop)(void *ctx, struct writer_job *job);
};

struct writer;

/* 0 or -ENOMEM. No thread yet. */
int writer_new(const struct writer_ops *ops, void *ctx, size_t max_jobs, size_t max_bytes,
               struct writer **out);

/*
 * Queues job (the writer owns it on success): 0; -ENOSPC when it does not
 * fit; -EAGAIN when the thread cannot start or the writer is stopping. On
 * failure the job stays the caller's.
 */
int writer_push(struct writer *w, struct writer_job *job, int force);

/* Waits until every job queued so far has run (0) or timeout_ms passes (-ETIMEDOUT). */
int writer_wait_idle(struct writer *w, long timeout_ms);

/* Runs the queued jobs for at most flush_ms, drops the rest, stops, frees. NULL is fine. */
void writer_free(struct writer *w, long flush_ms);

#endif

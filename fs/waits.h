/*
 * waits.h - how long a thread of fs/ may wait, and for whom (internal to
 * fs/; knows nothing of FUSE).
 *
 * Three kinds of thread wait for what the network brings (a fetch under way,
 * the bytes of a download):
 *   - a FUSE thread may not wait at all: it runs in nowait mode
 *     (api_set_nowait), and every wait answers -EWOULDBLOCK at once;
 *   - a thread answering a request for the kernel (park.h) waits until its
 *     request is interrupted: waits_enter names the request's waiter, and
 *     every wait then ends with -EINTR within a fraction of a second of
 *     waiter_interrupt (requests to the API made meanwhile are abandoned too);
 *   - any other thread (reading ahead) waits as long as it takes.
 */
#ifndef BBFS_WAITS_H
#define BBFS_WAITS_H

#include <pthread.h>

/* What a thread waits on behalf of: interrupted from any thread. */
struct waiter {
    int interrupted; /* atomic */
    pthread_mutex_t guard;
    pthread_cond_t *waiting_on; /* under guard: what its thread waits on now, or NULL */
};
#define WAITER_INIT                                                                                \
    {                                                                                              \
        0, PTHREAD_MUTEX_INITIALIZER, NULL                                                         \
    }
void waiter_init(struct waiter *w);
void waiter_destroy(struct waiter *w);

/* From now on the calling thread works for w (NULL: for nobody). */
void waits_enter(struct waiter *w);
void waits_leave(void);

/* Marks w interrupted: the waits of the thread working for it end, at once. */
void waiter_interrupt(struct waiter *w);

/* Whether the calling thread works for a request that was interrupted. */
int waits_interrupted(void);

/*
 * One wait on cond (lock held, as for pthread_cond_wait): 0 after a wake-up
 * or a short while, after which the caller checks its condition again;
 * -EINTR when the calling thread's request was interrupted; -EWOULDBLOCK,
 * without waiting, in nowait mode.
 */
int waits_cond(pthread_cond_t *cond, pthread_mutex_t *lock);

#endif

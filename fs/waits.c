/*
 * waits.c - waits that end when their request is interrupted (see waits.h).
 *
 * A waiting thread does not know which condition variable an interrupt
 * should wake, so it wakes by itself every WAIT_SLICE_MS to look: an
 * interrupt is noticed within that, and an idle waiter costs a few
 * wake-ups a second.
 */
#include "fs/waits.h"

#include "api/api.h"

#include <errno.h>
#include <stddef.h>
#include <time.h>

#define WAIT_SLICE_MS 200

static __thread struct waiter *current;

static int is_interrupted(void *ctx)
{
    return __atomic_load_n(&((struct waiter *)ctx)->interrupted, __ATOMIC_ACQUIRE);
}

void waits_enter(struct waiter *w)
{
    current = w;
    api_set_cancel(w ? is_interrupted : NULL, w);
}

void waits_leave(void)
{
    waits_enter(NULL);
}

void waiter_interrupt(struct waiter *w)
{
    __atomic_store_n(&w->interrupted, 1, __ATOMIC_RELEASE);
}

int waits_interrupted(void)
{
    return current && is_interrupted(current);
}

int waits_cond(pthread_cond_t *cond, pthread_mutex_t *lock)
{
    struct timespec until;

    if (api_nowait())
        return -EWOULDBLOCK;
    if (!current) {
        pthread_cond_wait(cond, lock);
        return 0;
    }
    if (is_interrupted(current))
        return -EINTR;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += WAIT_SLICE_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cond, lock, &until);
    return is_interrupted(current) ? -EINTR : 0;
}

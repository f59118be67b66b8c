/*
 * waits.c - waits that end when their request is interrupted (see waits.h).
 *
 * A waiting thread says which condition variable it waits on, and an
 * interrupt wakes it through that at once (the thread holds a reference to
 * whatever the variable belongs to while it waits, so the variable lives).
 * The wake-up is sent without the waiter's mutex, which the interrupt may
 * not take (the waiter holds it while it takes the guard): one sent just
 * before the waiter sleeps is lost, so a waiter also wakes by itself every
 * WAIT_SLICE_MS to look.
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

void waiter_init(struct waiter *w)
{
    w->interrupted = 0;
    w->waiting_on = NULL;
    pthread_mutex_init(&w->guard, NULL);
}

void waiter_destroy(struct waiter *w)
{
    pthread_mutex_destroy(&w->guard);
}

void waiter_interrupt(struct waiter *w)
{
    pthread_mutex_lock(&w->guard);
    __atomic_store_n(&w->interrupted, 1, __ATOMIC_RELEASE);
    if (w->waiting_on)
        pthread_cond_broadcast(w->waiting_on);
    pthread_mutex_unlock(&w->guard);
}

/* Says what current waits on (NULL: nothing): 0, or -EINTR when it was interrupted already. */
static int waiting_on(pthread_cond_t *cond)
{
    int rc = 0;

    pthread_mutex_lock(&current->guard);
    current->waiting_on = cond;
    if (cond && is_interrupted(current))
        rc = -EINTR;
    pthread_mutex_unlock(&current->guard);
    return rc;
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
    if (waiting_on(cond))
        return -EINTR;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += WAIT_SLICE_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cond, lock, &until);
    waiting_on(NULL);
    return is_interrupted(current) ? -EINTR : 0;
}

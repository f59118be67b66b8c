/*
 * hangup.c - the SIGHUP thread (see hangup.h).
 *
 * Stopping it sends the thread a SIGHUP of its own after setting a flag:
 * sigwait returns, the thread sees the flag and ends instead of calling back.
 * A storm of SIGHUPs meanwhile changes nothing: the flag is read after every
 * sigwait, and the signals that come after the thread ended stay pending.
 */
#include "fs/hangup.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

struct hangup {
    pthread_t thread;
    hangup_fn on_hangup;
    void *ctx;
    int stopping;
};

static void hangup_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGHUP);
}

int hangup_block(void)
{
    sigset_t set;

    hangup_set(&set);
    return -pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void *wait_for_hangups(void *arg)
{
    struct hangup *h = arg;
    sigset_t set;
    int sig;

    hangup_set(&set);
    while (sigwait(&set, &sig) == 0 && !__atomic_load_n(&h->stopping, __ATOMIC_ACQUIRE))
        h->on_hangup(h->ctx);
    return NULL;
}

int hangup_start(hangup_fn on_hangup, void *ctx, struct hangup **out)
{
    struct hangup *h = calloc(1, sizeof(*h));
    int rc;

    if (!h)
        return -ENOMEM;
    h->on_hangup = on_hangup;
    h->ctx = ctx;
    rc = pthread_create(&h->thread, NULL, wait_for_hangups, h);
    if (rc != 0) {
        free(h);
        return -rc;
    }
    *out = h;
    return 0;
}

void hangup_stop(struct hangup *h)
{
    if (!h)
        return;
    __atomic_store_n(&h->stopping, 1, __ATOMIC_RELEASE);
    pthread_kill(h->thread, SIGHUP);
    pthread_join(h->thread, NULL);
    free(h);
}

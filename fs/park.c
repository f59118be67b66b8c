/*
 * park.c - parked requests and their one answer (see park.h).
 *
 * A parked request is shared by the network thread running it and the
 * kernel's interrupt, which libfuse delivers on whichever thread reads it,
 * through the callback registered with fuse_req_interrupt_func. Whoever
 * claims the request first (an atomic flag) answers it. The network thread,
 * before answering, unregisters the callback: libfuse runs a callback
 * holding the request's lock, which fuse_req_interrupt_func takes too, so
 * that once it returns no callback runs or will run, and what the callback
 * uses may go. A callback that claims the request answers EINTR itself, and
 * the network thread then answers nothing; but not while the callback is
 * being registered: for a request interrupted already, libfuse calls it from
 * fuse_req_interrupt_func, which then unlocks the request an answer would
 * have freed. park() answers such a request once the registration is done.
 * Two references keep a parked request: its job's, and the registered
 * callback's, given up by whoever claims it.
 */
#include "fs/park.h"

#include "api/api.h"
#include "fs/waits.h"
#include "fs/workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

/* Requests waiting for the network at once (more wait in the queue), and how many may queue. */
#define PARK_THREADS 64
#define PARK_QUEUE 65536

struct park_req {
    struct park_req *prev, *next; /* among the parked, for park_free */
    fuse_req_t req;
    struct park *park;
    park_fn fn;
    void *args;
    void (*free_args)(void *args);
    int parked;      /* on a network thread, its interrupt callback registered */
    int registering; /* atomic: its callback is being registered */
    int claimed;     /* atomic: answered, or being answered */
    unsigned refs;   /* atomic */
    int ran;
    struct waiter waiter;
};

struct park {
    struct workers *threads;
    pthread_mutex_t lock;
    struct park_req *parked;
    int stopping;
};

int park_new(struct park **out)
{
    struct park *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    if (workers_new(PARK_THREADS, PARK_QUEUE, &p->threads) != 0) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        return -ENOMEM;
    }
    *out = p;
    return 0;
}

static void req_put(struct park_req *r)
{
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    r->free_args(r->args);
    waiter_destroy(&r->waiter);
    free(r);
}

/* Whether the caller may answer r: only the first to ask. */
static int claim(struct park_req *r)
{
    if (!r->parked)
        return 1; /* still on its FUSE thread: nobody else knows it */
    if (__atomic_exchange_n(&r->claimed, 1, __ATOMIC_ACQ_REL))
        return 0;
    fuse_req_interrupt_func(r->req, NULL, NULL); /* waits for a callback under way */
    req_put(r);                                  /* the callback's reference */
    return 1;
}

static void on_interrupt(fuse_req_t req, void *data)
{
    struct park_req *r = data;

    waiter_interrupt(&r->waiter);
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* against park()'s: one of us answers */
    if (__atomic_load_n(&r->registering, __ATOMIC_SEQ_CST))
        return; /* park() answers once fuse_req_interrupt_func returned */
    if (__atomic_exchange_n(&r->claimed, 1, __ATOMIC_ACQ_REL))
        return; /* being answered: its claimer gives up our reference */
    fuse_reply_err(req, EINTR);
    req_put(r);
}

static void run_parked(void *arg)
{
    struct park_req *r = arg;
    int rc;

    r->ran = 1;
    if (__atomic_load_n(&r->claimed, __ATOMIC_ACQUIRE))
        return; /* interrupted while it waited for a thread */
    waits_enter(&r->waiter);
    rc = r->fn(r, r->args);
    waits_leave();
    if (rc)
        park_reply_err(r, rc == -EWOULDBLOCK ? EIO : -rc);
}

/* After the job ran, or instead of it (the pool full or stopping). */
static void end_parked(void *arg)
{
    struct park_req *r = arg;
    struct park *p = r->park;

    if (!r->ran)
        park_reply_err(r, EINTR);
    pthread_mutex_lock(&p->lock);
    if (r->prev)
        r->prev->next = r->next;
    else
        p->parked = r->next;
    if (r->next)
        r->next->prev = r->prev;
    pthread_mutex_unlock(&p->lock);
    req_put(r);
}

static void park(struct park *p, const struct park_req *first)
{
    struct park_req *r = malloc(sizeof(*r));

    if (!r) {
        fuse_reply_err(first->req, ENOMEM);
        first->free_args(first->args);
        return;
    }
    *r = *first;
    waiter_init(&r->waiter);
    r->parked = 1;
    r->refs = 2; /* its job, its interrupt callback */
    pthread_mutex_lock(&p->lock);
    r->prev = NULL;
    r->next = p->parked;
    if (r->next)
        r->next->prev = r;
    p->parked = r;
    pthread_mutex_unlock(&p->lock);
    __atomic_store_n(&r->registering, 1, __ATOMIC_SEQ_CST);
    fuse_req_interrupt_func(r->req, on_interrupt, r);
    __atomic_store_n(&r->registering, 0, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    /* Interrupted already, or while registering: the callback left the answer to us. */
    if (__atomic_load_n(&r->waiter.interrupted, __ATOMIC_SEQ_CST))
        park_reply_err(r, EINTR);
    if (__atomic_load_n(&p->stopping, __ATOMIC_ACQUIRE))
        end_parked(r);
    else
        workers_submit(p->threads, run_parked, end_parked, r);
}

void park_run(struct park *p, fuse_req_t req, park_fn fn, void *args, void (*free_args)(void *args))
{
    struct park_req first = {.req = req, .park = p, .fn = fn, .args = args, .free_args = free_args};
    int rc;

    api_set_nowait(1);
    rc = fn(&first, args);
    api_set_nowait(0);
    if (rc == -EWOULDBLOCK) {
        park(p, &first);
        return;
    }
    if (rc)
        fuse_reply_err(req, -rc);
    free_args(args);
}

void park_free(struct park *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    __atomic_store_n(&p->stopping, 1, __ATOMIC_RELEASE);
    for (struct park_req *r = p->parked; r; r = r->next) {
        waiter_interrupt(&r->waiter);
        if (claim(r))
            fuse_reply_err(r->req, EINTR);
    }
    pthread_mutex_unlock(&p->lock);
    workers_free(p->threads);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void *park_userdata(struct park_req *r)
{
    return fuse_req_userdata(r->req);
}

int park_reply_err(struct park_req *r, int err)
{
    return claim(r) ? fuse_reply_err(r->req, err) : -EINTR;
}

int park_reply_entry(struct park_req *r, const struct fuse_entry_param *e)
{
    return claim(r) ? fuse_reply_entry(r->req, e) : -EINTR;
}

int park_reply_attr(struct park_req *r, const struct stat *attr, double timeout)
{
    return claim(r) ? fuse_reply_attr(r->req, attr, timeout) : -EINTR;
}

int park_reply_readlink(struct park_req *r, const char *link)
{
    return claim(r) ? fuse_reply_readlink(r->req, link) : -EINTR;
}

int park_reply_open(struct park_req *r, const struct fuse_file_info *fi)
{
    return claim(r) ? fuse_reply_open(r->req, fi) : -EINTR;
}

int park_reply_buf(struct park_req *r, const char *buf, size_t size)
{
    return claim(r) ? fuse_reply_buf(r->req, buf, size) : -EINTR;
}

int park_reply_data(struct park_req *r, struct fuse_bufvec *bufv)
{
    return claim(r) ? fuse_reply_data(r->req, bufv, FUSE_BUF_SPLICE_MOVE) : -EINTR;
}

int park_reply_xattr(struct park_req *r, size_t count)
{
    return claim(r) ? fuse_reply_xattr(r->req, count) : -EINTR;
}

/*
 * notify.c - queued kernel invalidations (see notify.h).
 */
#include "fs/notify.h"

#include "api/log.h"
#include "fs/inode.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A listing of thousands of new names is better re-read than queued name by name. */
#define MAX_QUEUED 4096

struct pending {
    struct pending *next;
    char *dir;
    char *name;
};

struct notify {
    struct fuse_session *se;
    struct inode_table *inodes;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct pending *head, **tail;
    size_t queued;
    int started;
    int stopping;
};

static void pending_free(struct pending *p)
{
    free(p->dir);
    free(p->name);
    free(p);
}

static void invalidate(struct notify *n, const struct pending *p)
{
    /* A directory the kernel never looked up has no cached names to drop. */
    uint64_t parent = inode_find(n->inodes, p->dir);
    if (parent == 0)
        return;
    int rc = fuse_lowlevel_notify_inval_entry(n->se, parent, p->name, strlen(p->name));
    if (rc != 0 && rc != -ENOENT)
        log_debug("cannot invalidate a changed name: %s", strerror(-rc));
}

static void *notify_thread(void *arg)
{
    struct notify *n = arg;
    sigset_t all;

    /* Signals are for the session loop and the SIGHUP waiter, never this thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&n->lock);
    for (;;) {
        while (!n->head && !n->stopping)
            pthread_cond_wait(&n->wake, &n->lock);
        if (n->stopping)
            break;
        struct pending *p = n->head;
        n->head = p->next;
        if (!n->head)
            n->tail = &n->head;
        n->queued--;
        pthread_mutex_unlock(&n->lock);
        invalidate(n, p);
        pending_free(p);
        pthread_mutex_lock(&n->lock);
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

int notify_new(struct inode_table *inodes, struct notify **out)
{
    struct notify *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->inodes = inodes;
    n->tail = &n->head;
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->wake, NULL);
    *out = n;
    return 0;
}

int notify_start(struct notify *n, struct fuse_session *se)
{
    n->se = se;
    int rc = -pthread_create(&n->thread, NULL, notify_thread, n);
    n->started = rc == 0;
    return rc;
}

void notify_free(struct notify *n)
{
    if (!n)
        return;
    if (n->started) {
        pthread_mutex_lock(&n->lock);
        n->stopping = 1;
        pthread_cond_signal(&n->wake);
        pthread_mutex_unlock(&n->lock);
        pthread_join(n->thread, NULL);
    }
    while (n->head) {
        struct pending *p = n->head;
        n->head = p->next;
        pending_free(p);
    }
    pthread_cond_destroy(&n->wake);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

void notify_changed(void *ctx, const char *dir, const char *name)
{
    struct notify *n = ctx;
    struct pending *p = calloc(1, sizeof(*p));
    if (!p || !(p->dir = strdup(dir)) || !(p->name = strdup(name))) {
        if (p)
            pending_free(p);
        return;
    }
    pthread_mutex_lock(&n->lock);
    if (n->queued >= MAX_QUEUED || n->stopping) {
        pthread_mutex_unlock(&n->lock);
        log_once(LOG_LEVEL_INFO, "notify:full",
                 "many names changed at once; the kernel forgets the rest after ttl");
        pending_free(p);
        return;
    }
    *n->tail = p;
    n->tail = &p->next;
    n->queued++;
    pthread_cond_signal(&n->wake);
    pthread_mutex_unlock(&n->lock);
}

/*
 * notify.c - queued kernel invalidations (see notify.h), on one worker of
 * fs/workers.c: its bounded queue drops names rather than block a request.
 */
#include "fs/notify.h"

#include "api/log.h"
#include "fs/inode.h"
#include "fs/workers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A listing of thousands of new names is better re-read than queued name by name. */
#define MAX_QUEUED 4096

struct notify {
    struct fuse_session *se;
    struct inode_table *inodes;
    struct workers *worker; /* NULL until notify_start */
};

/* A name that changed in dir, or (name NULL) the symlink at dir that moved. */
struct pending {
    struct notify *n;
    char *dir;
    char *name;
};

static void pending_free(void *arg)
{
    struct pending *p = arg;
    free(p->dir);
    free(p->name);
    free(p);
}

static void invalidate(void *arg)
{
    const struct pending *p = arg;
    /* A directory (a link) the kernel never looked up has nothing cached to drop. */
    uint64_t ino = inode_find(p->n->inodes, p->dir);
    int rc;

    if (ino == 0)
        return;
    if (p->name)
        rc = fuse_lowlevel_notify_inval_entry(p->n->se, ino, p->name, strlen(p->name));
    else
        rc = fuse_lowlevel_notify_inval_inode(p->n->se, ino, 0, 0);
    if (rc != 0 && rc != -ENOENT)
        log_debug("cannot invalidate a changed name: %s", strerror(-rc));
}

int notify_new(struct inode_table *inodes, struct notify **out)
{
    struct notify *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->inodes = inodes;
    *out = n;
    return 0;
}

int notify_start(struct notify *n, struct fuse_session *se)
{
    n->se = se;
    return workers_new(1, MAX_QUEUED, &n->worker);
}

void notify_free(struct notify *n)
{
    if (!n)
        return;
    workers_free(n->worker);
    free(n);
}

static void queue(struct notify *n, const char *dir, const char *name)
{
    struct pending *p;

    if (!n->worker)
        return;
    p = calloc(1, sizeof(*p));
    if (!p || !(p->dir = strdup(dir)) || (name && !(p->name = strdup(name)))) {
        if (p)
            pending_free(p);
        return;
    }
    p->n = n;
    if (workers_submit(n->worker, invalidate, pending_free, p) != 0)
        log_once(LOG_LEVEL_INFO, "notify:full",
                 "many names changed at once; the kernel forgets the rest after ttl");
}

void notify_changed(void *ctx, const char *dir, const char *name)
{
    queue(ctx, dir, name);
}

void notify_moved(void *ctx, const char *path)
{
    queue(ctx, path, NULL);
}

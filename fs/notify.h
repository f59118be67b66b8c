/*
 * notify.h - tells the kernel to forget names whose listings changed, and
 * the targets of symlinks that moved.
 *
 * The kernel keeps looked-up names (and "no such name" answers) for their
 * entry timeout, and symlink targets (FUSE_CAP_CACHE_SYMLINKS) for as long
 * as it keeps their inodes. When a refreshed listing drops a branch or gains
 * one, or finds that a branch moved, the kernel's copy is stale at once;
 * notify invalidates it. The kernel must not
 * be told from inside the request that caused the refresh (it may hold the
 * directory's lock while waiting for that very request), so names are queued
 * and a thread of their own passes them on.
 */
#ifndef BBFS_NOTIFY_H
#define BBFS_NOTIFY_H

#include <fuse_lowlevel.h>

struct inode_table;
struct notify;

/* inodes is borrowed. Names that change before notify_start are not passed on (nothing is mounted).
 */
int notify_new(struct inode_table *inodes, struct notify **out);

/* Starts passing names on to the kernel through se (borrowed): after fuse_daemonize. */
int notify_start(struct notify *n, struct fuse_session *se);

/* Stops the thread if it runs (dropping what is still queued) and frees n. */
void notify_free(struct notify *n);

/*
 * Queues "the entry name of directory dir changed" (dir is a tree path, ""
 * for the root). Never blocks on the kernel; a tree_changed_fn.
 */
void notify_changed(void *n, const char *dir, const char *name);

/*
 * Queues "the symlink at path points elsewhere now": the kernel drops its
 * inode's cached target and attributes. A tree_moved_fn, like notify_changed.
 */
void notify_moved(void *n, const char *path);

#endif

/*
 * ops.h - the FUSE low-level operations of bbfs.
 *
 * The low-level interface is used (not the path-based one) because bbfs
 * decides per entry how long the kernel may cache it: hash-addressed paths
 * are immutable and cached for a day, everything else for ttl seconds;
 * because it invalidates inodes when listings change; and because a request
 * may be answered from another thread than the one it came on: no FUSE
 * thread ever waits for the network (park.h).
 */
#ifndef BBFS_OPS_H
#define BBFS_OPS_H

#include <fuse_lowlevel.h>

#include <pthread.h>

struct inode_table;
struct ops_handle;
struct park;
struct tree;

struct ops_context {
    struct tree *tree;
    struct inode_table *inodes;
    double ttl; /* kernel cache timeout for mutable entries, seconds */
    /* open files and directories the kernel has not released (it may never, when the
     * session ends under a reader): freed by ops_context_release */
    pthread_mutex_t handles_lock;
    struct ops_handle *handles;
    struct park *park; /* the requests that wait for the network */
};

/* The operations table; fuse_session_new's userdata must be a struct ops_context. */
const struct fuse_lowlevel_ops *ops_table(void);

/* Before the session: the handle list, the network threads (started when needed). */
int ops_context_init(struct ops_context *ctx);
/* After the session loop, before unmounting: answers the requests still waiting. */
void ops_context_stop(struct ops_context *ctx);
/* After unmounting: frees what the kernel left open. */
void ops_context_release(struct ops_context *ctx);

#endif

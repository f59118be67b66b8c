/*
 * ops.h - the FUSE low-level operations of bbfs.
 *
 * The low-level interface is used (not the path-based one) because bbfs
 * decides per entry how long the kernel may cache it: hash-addressed paths
 * are immutable and cached for a day, everything else for ttl seconds; and
 * because a later issue needs inode-level invalidation when listings change.
 */
#ifndef BBFS_OPS_H
#define BBFS_OPS_H

#include <fuse_lowlevel.h>

struct tree;
struct inode_table;

struct ops_context {
    struct tree *tree;
    struct inode_table *inodes;
    double ttl; /* kernel cache timeout for mutable entries, seconds */
};

/* The operations table; fuse_session_new's userdata must be a struct ops_context. */
const struct fuse_lowlevel_ops *ops_table(void);

#endif

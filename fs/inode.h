/*
 * inode.h - stable inode numbers for the FUSE low-level interface.
 *
 * Every node of the tree is named by its path below the mountpoint ("" is
 * the root). An inode number is a 64-bit hash of that path, so the same path
 * gets the same number across lookups and remounts (tools such as find and
 * tar rely on that); the rare collision is resolved by probing. The table
 * holds only what the kernel currently remembers: lookup counts rise with
 * every reply that hands the kernel an inode and fall with forget.
 */
#ifndef BBFS_INODE_H
#define BBFS_INODE_H

#include <stdint.h>

#define INODE_ROOT 1

struct inode_table;

struct inode_table *inode_table_new(void);
void inode_table_free(struct inode_table *table);

/*
 * Returns the inode number for path and adds one kernel reference, or 0 when
 * all probe slots are taken or memory runs out. The root path "" is always
 * INODE_ROOT.
 */
uint64_t inode_ref(struct inode_table *table, const char *path);

/*
 * The number path has, or would get from inode_ref now, without taking a
 * reference (for readdir, whose entries the kernel does not remember).
 */
uint64_t inode_peek(struct inode_table *table, const char *path);

/* The number the kernel currently holds for path, or 0 when it holds none. */
uint64_t inode_find(struct inode_table *table, const char *path);

/* Drops n kernel references; the entry goes when none are left. */
void inode_forget(struct inode_table *table, uint64_t ino, uint64_t n);

/*
 * Copies the path of ino into a new string the caller frees, or returns NULL
 * when the inode is unknown (the kernel forgot it) or memory runs out.
 */
char *inode_path(struct inode_table *table, uint64_t ino);

#endif

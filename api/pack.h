/*
 * pack.h - the pack of one commit (git.h's depth-1 fetch) read with
 * libgit2: indexed once into a directory, then opened as an object database
 * of its own, from which directories are listed as struct api_entry_list
 * (so the filesystem layer uses them like the API's listings) and files are
 * written into a caller's fd.
 *
 * libgit2 does every inflate and delta; nothing here decodes objects. Its
 * memory is bounded by pack_global_init(): small mmap windows over packs,
 * a small object cache. libgit2 1.5 cannot read a packed object as a stream
 * (its pack backend has no readstream: git_odb_open_rstream fails for it),
 * so a blob is read whole: one over PACK_MAX_BLOB is refused with -EFBIG
 * before any of it is read, and the caller serves that file another way
 * (the API's streaming download).
 *
 * Paths are '/'-separated below the commit's tree, "" for the root; commits
 * are 40 lowercase hex digits. Errors: -ENOENT (no such commit in the pack,
 * no such path, or the path is not what the call needs), -EPROTO (a pack
 * that does not index: broken, cut short, thin), -EFBIG (a blob over
 * PACK_MAX_BLOB, a subtree over max_entries), -EIO (a damaged pack, the
 * disk), -EINVAL, -ENOMEM.
 *
 * Threads: every call may be made from several threads at once, on one
 * struct pack or on several (a mutex per pack guards libgit2's repository
 * object; object database reads run outside it).
 */
#ifndef BBFS_API_PACK_H
#define BBFS_API_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

/* The biggest blob read into memory. */
#define PACK_MAX_BLOB ((uint64_t)8 << 20)
/* The name of a pack: the hex SHA-1 of its contents, as git names pack files. */
#define PACK_NAME_LEN 40

struct pack;

/*
 * libgit2's process-wide set-up (git_libgit2_init and the memory limits);
 * call once before threads start, next to api_global_init(). -EIO when
 * libgit2 was built without threads.
 */
int pack_global_init(void);
void pack_global_cleanup(void);

/*
 * Starts a helper process that pack_index() hands its work to, so that
 * libgit2's indexer runs outside this process: it maps every object of the
 * pack whole while it checksums it (see packindex.c), so a 200 MiB blob
 * would otherwise take 200 MiB of this process's resident memory, and a
 * pack that crashes libgit2 would take the filesystem with it. Call it once
 * while the process has a single thread (after pack_global_init(), before
 * any thread starts); without it, pack_index() indexes in this process.
 * pack_indexer_stop() (also single-threaded) ends the helper.
 */
int pack_indexer_start(void);
void pack_indexer_stop(void);

/*
 * Indexes the pack held by fd (read from its start; it is not changed) into
 * dir: dir/pack-NAME.pack and dir/pack-NAME.idx, NAME into name. The pack is
 * checked whole (every object's hash, the trailer): -EPROTO, and nothing
 * left in dir, when it does not index; -EIO when the helper is gone.
 */
int pack_index(const char *dir, int fd, char name[PACK_NAME_LEN + 1]);

/* Opens the pack NAME that pack_index() wrote into dir. */
int pack_open(const char *dir, const char *name, struct pack **out);
void pack_close(struct pack *p);

/* The tree of commit (40 hex digits) into tree. */
int pack_commit_tree(struct pack *p, const char *commit, char tree[API_HASH_LEN + 1]);

/*
 * When commit was written: its author's time (seconds since the epoch), the
 * date the API gives a commit.
 */
int pack_commit_date(struct pack *p, const char *commit, int64_t *date);

/*
 * The entries of directory dir at commit, in git's order. A file's size
 * comes from its object's header (the content is not read), except that a
 * blob the size of a Git LFS pointer is read to tell whether it is one
 * (lfs = 1; size is then the one the pointer gives for the object it
 * stands for, which is what reading the file through LFS gives).
 */
int pack_list_dir(struct pack *p, const char *commit, const char *dir, struct api_entry_list *out);

/*
 * Directory dir and those below it, down to max_depth levels (1: dir
 * alone), like api_list_subtree(): -EFBIG when they hold more than
 * max_entries entries in all.
 */
int pack_list_subtree(struct pack *p, const char *commit, const char *dir, unsigned max_depth,
                      size_t max_entries, struct api_subtree *out);

/*
 * The content of the file (or the target of the symlink) at path into fd,
 * which must be seekable: truncated first, so that after a return of 0 it
 * holds exactly the content (*size bytes), and nothing after a failure.
 * -EFBIG, before reading any of it, for a blob over PACK_MAX_BLOB; -ENOENT
 * for a directory or a submodule.
 */
int pack_read_file(struct pack *p, const char *commit, const char *path, int fd, uint64_t *size);

#endif

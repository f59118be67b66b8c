/*
 * unpack.h - one commit's whole tree through git (internal to fs/): its pack
 * fetched at depth 1 into a private work directory, indexed (api/pack.h),
 * and what it brings written where the API's answers would go: every file
 * content under the key blobs.c reads it by, every directory's entries and
 * the commit's record (gitstore.h), the directories also offered to memory.
 * The pack itself is removed at the end: the store keeps what it brought,
 * each entry counted and evicted on its own like any other.
 *
 * Not written, and so read through the API as before: blobs over
 * PACK_MAX_BLOB (libgit2 1.5 reads a blob whole), Git LFS pointers (their
 * content is the LFS object), and files once max_content bytes were written.
 */
#ifndef BBFS_UNPACK_H
#define BBFS_UNPACK_H

#include "api/git.h"

#include <stdint.h>

struct tree;

struct unpack_job {
    struct git_client *git;
    const struct git_remote *remote;
    const char *repo; /* the slug */
    const char *hash; /* the commit, 40 hex digits */
    const char *work_dir;
    uint64_t max_pack;    /* the pack's cap: -EFBIG (GIT_CAUSE_TOO_BIG) past it */
    uint64_t max_content; /* the most bytes of file contents written */
    const int *cancel;    /* non-zero stops the fetch (-EINTR) */
};

struct unpack_result {
    int64_t date;          /* the commit's, as the API gives it */
    uint64_t files, bytes; /* contents written into the store */
};

/*
 * 0 when the whole tree is in the store (the commit's record written last);
 * otherwise -errno with err's cause set: git's (git.h), GIT_CAUSE_BROKEN for
 * a pack that does not index or read, GIT_CAUSE_TOO_BIG for a tree of more
 * entries than one unpack takes, GIT_CAUSE_OTHER for the disk. What a failed
 * unpack wrote is correct as far as it goes; the commit's record is not.
 */
int unpack_commit(struct tree *tree, const struct unpack_job *job, struct unpack_result *out,
                  struct git_error *err);

/* Removes what unpacks left in work_dir (a bbfs that was killed). */
void unpack_clean(const char *work_dir);

#endif

/*
 * blobs.h - contents kept in the on-disk store (internal to fs/): a file at a
 * commit, a commit's diff, a pull request's diff.
 *
 * A content is downloaded once into the store and read from there ever
 * after, also across remounts; concurrent readers of one content share one
 * download. What the store evicted is downloaded again on the next open. A
 * failed download leaves nothing behind: the next open tries again.
 */
#ifndef BBFS_BLOBS_H
#define BBFS_BLOBS_H

#include <stddef.h>
#include <stdint.h>

struct api_pullrequest;
struct tree;

enum blob_kind { BLOB_FILE, BLOB_DIFF, BLOB_PR_DIFF };

/* What names a content. */
struct blob {
    enum blob_kind kind;
    const char *repo;
    const char *hash; /* the commit (BLOB_PR_DIFF: the pull request's id in decimal) */
    const char *path; /* BLOB_FILE: below the tree root; BLOB_PR_DIFF: "source..destination" */
};

/* The store's key of a content (malloc'd, NULL without memory): what a pack's contents go under. */
char *blob_key(const struct blob *blob);

/* Opens the content read-only into *fd, its size into *size, downloading it first if needed. */
int blob_open(struct tree *tree, const struct blob *blob, int *fd, uint64_t *size);

/*
 * A small content whole (a symlink's target): malloc'd and NUL-terminated;
 * -ENAMETOOLONG when it is over max bytes.
 */
int blob_read(struct tree *tree, const struct blob *blob, size_t max, char **data, size_t *len);

/*
 * Opens a pull request's diff, kept under its id and the two commits it is
 * between: when the source moves on, the diff is a new content.
 */
int blob_open_pr_diff(struct tree *tree, const char *repo, const struct api_pullrequest *pr,
                      int *fd, uint64_t *size);

#endif

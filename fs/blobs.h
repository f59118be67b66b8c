/*
 * blobs.h - contents kept in the on-disk store (internal to fs/): a file at a
 * commit, a commit's diff, a pull request's diff.
 *
 * A content is downloaded once into the store and read from there ever
 * after, also across remounts. It is read as it arrives (stream.h): an open
 * waits for its first bytes only, and every reader of a content shares one
 * download. What the store evicted is downloaded again on the next open. A
 * failed download leaves nothing behind: the next read tries again.
 */
#ifndef BBFS_BLOBS_H
#define BBFS_BLOBS_H

#include <stddef.h>
#include <stdint.h>

struct api_pullrequest;
struct stream;
struct tree;

enum blob_kind { BLOB_FILE, BLOB_DIFF, BLOB_PR_DIFF };

/* What names a content. */
struct blob {
    enum blob_kind kind;
    const char *repo;
    const char *hash; /* the commit (BLOB_PR_DIFF: the pull request's id in decimal) */
    const char *path; /* BLOB_FILE: below the tree root; BLOB_PR_DIFF: "source..destination" */
    uint64_t size;    /* what it is expected to weigh, 0 when not known */
};

/* The store's key of a content (malloc'd, NULL without memory): what a pack's contents go under. */
char *blob_key(const struct blob *blob);

/*
 * Opens the content for reading as it arrives (stream.h): 0 once its first
 * bytes are there, downloading it when it is not stored. In nowait mode
 * (api_nowait): -EWOULDBLOCK where that would mean waiting.
 */
int blob_open(struct tree *tree, const struct blob *blob, struct stream **out);

/* Has the whole content stored (reading ahead), waiting for it. */
int blob_fetch(struct tree *tree, const struct blob *blob);

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
                      struct stream **out);

#endif

/*
 * tree.h - the shape of the bbfs tree: what exists at a path, its
 * attributes, directory listings, file contents and link targets.
 *
 * Paths are relative to the mountpoint, without leading slash ("" is the
 * root, "acme/api/branches/main"). The tree asks the cache, which asks the
 * API on a miss; it knows nothing of FUSE and nothing of HTTP. All functions
 * return 0 or a negative errno (-ENOENT for names that do not exist) and are
 * safe to call from several threads. On a thread in nowait mode (api.h's
 * api_set_nowait) they answer -EWOULDBLOCK instead of waiting for the network.
 */
#ifndef BBFS_TREE_H
#define BBFS_TREE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct api_client;
struct shared_cache;
struct packs;
struct store;
struct stream;
struct tree;

/*
 * Called when a refreshed listing no longer has, or newly has, the entry name
 * of directory dir (a path as above), so that whoever cached the old answer
 * can drop it. Called from inside tree calls: it must not call back into the
 * tree, nor wait for anything a tree call may hold.
 */
typedef void (*tree_changed_fn)(void *ctx, const char *dir, const char *name);
/*
 * Called when a refresh finds that the symlink at path (a branch, a tag,
 * HEAD) points elsewhere now, so that whoever cached its target can drop it;
 * under the same rules as tree_changed_fn.
 */
typedef void (*tree_moved_fn)(void *ctx, const char *path);

struct tree_config {
    struct store *store;         /* on-disk content cache; borrowed */
    struct shared_cache *shared; /* the cache a fleet shares, or NULL; borrowed */
    const char *workspace;
    const char *project; /* NULL: the whole workspace */
    time_t ttl;          /* seconds mutable data is trusted */
    size_t commit_limit;
    int offline;             /* never touch the network */
    tree_changed_fn changed; /* optional */
    tree_moved_fn moved;     /* optional */
    void *changed_ctx;       /* of both */
    struct packs *packs;     /* whole trees through git (packs.h), or NULL; borrowed */
};

struct tree_stat {
    mode_t mode; /* S_IFDIR|0555, S_IFREG|0444 or S_IFLNK|0777 */
    off_t size;
    time_t mtime;
    int immutable; /* addressed by a commit hash: never changes */
    int live;      /* changes all the time (.bbfs/stats): size is a snapshot, read anew */
    /* a symlink that moves (a branch, a tag, HEAD): different for each target, else 0 */
    uint64_t generation;
};

/* In a listing, st.mode is always right; size and mtime are where they cost nothing. */
struct tree_dirent {
    char *name;
    struct tree_stat st;
};

struct tree_dir {
    struct tree_dirent *entries;
    size_t count;
    int immutable; /* the directory is addressed by a commit hash: it never changes */
};

/* api is borrowed and must outlive the tree. */
int tree_new(const struct tree_config *cfg, struct api_client *api, struct tree **out);
void tree_free(struct tree *tree);

int tree_stat(struct tree *tree, const char *path, struct tree_stat *out);

/* Lists a directory (without "." and ".."); release with tree_dir_release. */
int tree_list(struct tree *tree, const char *path, struct tree_dir *out);
void tree_dir_release(struct tree_dir *dir);

/*
 * An open file: either kept in the store (content: read it with
 * tree_file_span, also while it still arrives) or generated in memory
 * (content NULL: data and len); st is its attributes as opened, st.size
 * the bytes to read (of a content: where known without it, else 0).
 */
struct tree_file {
    struct stream *content;
    char *data;
    size_t len;
    struct tree_stat st;
};

/*
 * Opens a regular file, fetching its content first when it is not cached:
 * the path is resolved once, and a generated file built once. A content not
 * stored is opened as soon as its first bytes are there.
 */
int tree_open(struct tree *tree, const char *path, struct tree_file *out);
void tree_file_release(struct tree_file *file);

/* Bytes of an open file to hand over: len bytes at data, or at pos of fd (fd >= 0). */
struct tree_span {
    const char *data;
    int fd;
    off_t pos;
    size_t len; /* fewer than asked at the file's end, 0 past it */
    void *hold; /* keeps fd open until tree_span_release */
};
/*
 * Where bytes [off, off + size) of an open file are, waiting while they
 * arrive (in nowait mode: -EWOULDBLOCK instead; waits.h).
 */
int tree_file_span(struct tree_file *file, off_t off, size_t size, struct tree_span *out);
void tree_span_release(struct tree_span *span);

/* The target of a symlink; *target is malloc'd and owned by the caller. */
int tree_readlink(struct tree *tree, const char *path, char **target);

/*
 * Extended attributes: "user.bitbucket.html_url" (the web page) on
 * repositories and commits. tree_listxattr gives the names, each followed by
 * a NUL as listxattr(2) wants them; tree_getxattr one value (no NUL), or
 * -ENODATA. Both malloc *out for the caller.
 */
int tree_listxattr(struct tree *tree, const char *path, char **out, size_t *len);
/* Whether name is an attribute some node may have (ls -l asks every file for ACLs). */
int tree_xattr_known(const char *name);
int tree_getxattr(struct tree *tree, const char *path, const char *name, char **out, size_t *len);

/* Forget every mutable answer so the next look asks the API again. */
void tree_expire(struct tree *tree);

#endif

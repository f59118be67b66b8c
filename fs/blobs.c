/*
 * blobs.c - contents downloaded into the store (see blobs.h).
 *
 * A content's store key says what it is ("file", "diff" or "prdiff", the
 * repository, the commit, the path), so an entry outlives the mount. Opening
 * looks in the store first: a content read before costs one open of its
 * entry and nothing else. A missing one is downloaded by one caller while
 * the others wait for it (cache_run_once); nothing of a download is kept in
 * memory, so a failure is final only for the readers that waited for it.
 * A download first asks the cache a fleet shares (shared_cache.h), which
 * also gets what is downloaded.
 */
#include "fs/blobs.h"

#include "api/api.h"
#include "fs/cache.h"
#include "fs/node.h"
#include "fs/shared_cache.h"
#include "fs/packs.h"
#include "fs/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *const blob_kinds[] = {
    [BLOB_FILE] = "file", [BLOB_DIFF] = "diff", [BLOB_PR_DIFF] = "prdiff"};

char *blob_key(const struct blob *blob)
{
    char *key;
    if (asprintf(&key, "%s\n%s\n%s\n%s", blob_kinds[blob->kind], blob->repo, blob->hash,
                 blob->path ? blob->path : "") < 0)
        return NULL;
    return key;
}

static int download_into(struct tree *tree, const struct blob *blob, int fd, uint64_t *size)
{
    switch (blob->kind) {
    case BLOB_DIFF:
        return api_get_diff(tree->api, tree->workspace, blob->repo, blob->hash, fd, size);
    case BLOB_PR_DIFF:
        return api_get_pullrequest_diff(tree->api, tree->workspace, blob->repo,
                                        strtoull(blob->hash, NULL, 10), fd, size);
    default:
        return api_get_file(tree->api, tree->workspace, blob->repo, blob->hash, blob->path, fd,
                            size);
    }
}

struct download {
    struct tree *tree;
    const struct blob *blob;
    const char *key;
};

/* A shared_fetch_fn: the download itself, when the shared cache has not got it. */
static int fetch_blob(void *arg, int fd, uint64_t *size)
{
    const struct download *d = arg;

    return download_into(d->tree, d->blob, fd, size);
}

/* Puts the content in the store (a cache_run_once job: one at a time per key). */
static int download(void *arg)
{
    const struct download *d = arg;
    struct tree *tree = d->tree;
    struct store_writer w;
    uint64_t size;
    int fd, rc;

    /* A pack of its commit on its way brings it, or a download that ended just before this one. */
    if (d->blob->kind == BLOB_FILE)
        packs_settle(tree, d->blob->repo, d->blob->hash);
    if (store_lookup(tree->store, d->key, &fd, &size) == 0) {
        close(fd);
        __atomic_fetch_add(&tree->files_stored, 1, __ATOMIC_RELAXED);
        return 0;
    }
    if ((rc = tree_refuse_offline(tree)))
        return rc;
    if ((rc = store_begin(tree->store, &w)))
        return rc;
    const struct shared_content what = {blob_kinds[d->blob->kind], d->blob->repo, d->blob->hash,
                                        d->blob->path ? d->blob->path : ""};
    rc = shared_cache_content(tree->shared, &what, w.fd, &size, fetch_blob, (void *)d);
    if (rc) {
        store_abort(&w);
        return rc;
    }
    if ((rc = store_commit(tree->store, &w, d->key)))
        return rc;
    __atomic_fetch_add(&tree->files_downloaded, 1, __ATOMIC_RELAXED);
    return 0;
}

int blob_open(struct tree *tree, const struct blob *blob, int *fd, uint64_t *size)
{
    char *key = blob_key(blob);
    if (!key)
        return -ENOMEM;
    struct download d = {tree, blob, key};
    int rc = store_lookup(tree->store, key, fd, size), attempts = 0;
    if (rc == 0)
        __atomic_fetch_add(&tree->files_stored, 1, __ATOMIC_RELAXED);
    /* Twice: an entry evicted between its download and this open is downloaded again. */
    while (rc == -ENOENT && attempts++ < 2) {
        int fetched = cache_run_once(tree->cache, key, download, &d);
        if (fetched) {
            rc = fetched;
            goto out;
        }
        rc = store_lookup(tree->store, key, fd, size);
    }
    if (rc == -ENOENT)
        rc = -EIO;
out:
    free(key);
    return rc;
}

int blob_read(struct tree *tree, const struct blob *blob, size_t max, char **data, size_t *len)
{
    uint64_t size;
    int fd, rc = blob_open(tree, blob, &fd, &size);
    if (rc == 0)
        rc = store_read_all(fd, size, max, data, len);
    return rc == -EFBIG ? -ENAMETOOLONG : rc;
}

int blob_open_pr_diff(struct tree *tree, const char *repo, const struct api_pullrequest *pr,
                      int *fd, uint64_t *size)
{
    char id[24], *between;
    snprintf(id, sizeof(id), "%" PRIu64, pr->id);
    if (asprintf(&between, "%s..%s", pr->source, pr->destination) < 0)
        return -ENOMEM;
    struct blob blob = {BLOB_PR_DIFF, repo, id, between};
    int rc = blob_open(tree, &blob, fd, size);
    free(between);
    return rc;
}

/*
 * blobs.c - contents downloaded into the store (see blobs.h).
 *
 * A content's store key says what it is ("file", "diff" or "prdiff", the
 * repository, the commit, the path), so an entry outlives the mount. The
 * store and the downloads under way are stream.c's; this file says which
 * API call fills a content, and counts where contents came from. A download
 * first waits for a pack of its commit on its way (packs.h), then asks the
 * cache a fleet shares (shared_cache.h), which also gets what is downloaded.
 */
#include "fs/blobs.h"

#include "api/api.h"
#include "fs/node.h"
#include "fs/packs.h"
#include "fs/shared_cache.h"
#include "fs/store.h"
#include "fs/stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int download_into(struct tree *tree, const struct blob *blob, const struct api_sink *sink,
                         uint64_t *size)
{
    switch (blob->kind) {
    case BLOB_DIFF:
        return api_get_diff(tree->api, tree->workspace, blob->repo, blob->hash, sink, size);
    case BLOB_PR_DIFF:
        return api_get_pullrequest_diff(tree->api, tree->workspace, blob->repo,
                                        strtoull(blob->hash, NULL, 10), sink, size);
    default:
        return api_get_file(tree->api, tree->workspace, blob->repo, blob->hash, blob->path, sink,
                            size);
    }
}

/* A blob and its tree, as a download needs them (a stream_source's arg). */
struct blob_job {
    struct tree *tree;
    struct blob blob;
};

/* A shared_fetch_fn: the download itself, when the shared cache has not got it. */
static int fetch_blob(void *arg, const struct api_sink *sink, uint64_t *size)
{
    const struct blob_job *job = arg;

    return download_into(job->tree, &job->blob, sink, size);
}

/* The stored content into sink: 0, or -ENOENT when the store has not got it. */
static int copy_stored(struct tree *tree, const struct blob *blob, const struct api_sink *sink)
{
    char *key = blob_key(blob), chunk[64 << 10];
    uint64_t size, off = 0;
    int fd = -1, rc = key ? store_lookup(tree->store, key, &fd, &size) : -ENOMEM;

    while (rc == 0 && off < size) {
        ssize_t n = pread(fd, chunk, sizeof(chunk), (off_t)off);
        if (n <= 0)
            rc = n < 0 && errno == EINTR ? 0 : -EIO;
        else if ((rc = sink->write(sink->ctx, chunk, (size_t)n)) == 0)
            off += (uint64_t)n;
    }
    if (fd >= 0)
        close(fd);
    free(key);
    return rc;
}

static void job_free(void *arg)
{
    struct blob_job *job = arg;
    free((char *)job->blob.repo);
    free((char *)job->blob.hash);
    free((char *)job->blob.path);
    free(job);
}

static void *job_copy(const void *arg)
{
    const struct blob_job *from = arg;
    struct blob_job *job = calloc(1, sizeof(*job));
    if (!job)
        return NULL;
    *job = *from;
    job->blob.repo = strdup(from->blob.repo);
    job->blob.hash = strdup(from->blob.hash);
    job->blob.path = from->blob.path ? strdup(from->blob.path) : NULL;
    if (!job->blob.repo || !job->blob.hash || (from->blob.path && !job->blob.path)) {
        job_free(job);
        return NULL;
    }
    return job;
}

/* A download of the content (on a download thread). */
static int job_fill(void *arg, const struct api_sink *sink)
{
    const struct blob_job *job = arg;
    struct tree *tree = job->tree;
    const struct blob *blob = &job->blob;
    uint64_t size;
    int rc;

    /* A pack of its commit that was on its way may have brought it. */
    if (blob->kind == BLOB_FILE && packs_settle(tree, blob->repo, blob->hash) &&
        (rc = copy_stored(tree, blob, sink)) != -ENOENT) {
        if (rc == 0)
            __atomic_fetch_add(&tree->files_stored, 1, __ATOMIC_RELAXED);
        return rc;
    }
    if ((rc = tree_refuse_offline(tree)))
        return rc;
    const struct shared_content what = {blob_kinds[blob->kind], blob->repo, blob->hash,
                                        blob->path ? blob->path : ""};
    rc = shared_cache_content(tree->shared, &what, sink, &size, fetch_blob, (void *)job);
    if (rc == 0)
        __atomic_fetch_add(&tree->files_downloaded, 1, __ATOMIC_RELAXED);
    return rc;
}

int blob_open(struct tree *tree, const struct blob *blob, struct stream **out)
{
    struct blob_job job = {tree, *blob};
    const struct stream_source source = {job_fill, job_copy, job_free, &job, blob->size};
    char *key = blob_key(blob);
    int rc, stored;

    if (!key)
        return -ENOMEM;
    rc = stream_open(tree->streams, key, &source, out, &stored);
    if (rc == 0 && stored)
        __atomic_fetch_add(&tree->files_stored, 1, __ATOMIC_RELAXED);
    free(key);
    return rc;
}

int blob_fetch(struct tree *tree, const struct blob *blob)
{
    struct stream *st;
    uint64_t size;
    int rc = blob_open(tree, blob, &st);

    if (rc == 0) {
        rc = stream_size(st, &size);
        stream_close(st);
    }
    return rc;
}

int blob_read(struct tree *tree, const struct blob *blob, size_t max, char **data, size_t *len)
{
    struct stream_span all;
    struct stream *st;
    int rc = blob_open(tree, blob, &st);

    if (rc)
        return rc;
    rc = stream_span(st, 0, SIZE_MAX, &all);
    if (rc == 0 && all.len > max)
        rc = -ENAMETOOLONG;
    if (rc == 0 && !(*data = malloc(all.len + 1)))
        rc = -ENOMEM;
    if (rc == 0 && pread(all.fd, *data, all.len, 0) != (ssize_t)all.len) {
        free(*data);
        rc = -EIO;
    }
    if (rc == 0) {
        (*data)[all.len] = '\0';
        *len = all.len;
    }
    stream_span_release(&all);
    stream_close(st);
    return rc;
}

int blob_open_pr_diff(struct tree *tree, const char *repo, const struct api_pullrequest *pr,
                      struct stream **out)
{
    char id[24], *between;
    snprintf(id, sizeof(id), "%" PRIu64, pr->id);
    if (asprintf(&between, "%s..%s", pr->source, pr->destination) < 0)
        return -ENOMEM;
    struct blob blob = {BLOB_PR_DIFF, repo, id, between, 0};
    int rc = blob_open(tree, &blob, out);
    free(between);
    return rc;
}

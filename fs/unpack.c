/*
 * unpack.c - one commit's pack into the store (see unpack.h).
 *
 * Each fetch has a directory of its own below the work directory (two
 * repositories may hold the same commit, and so the same pack name): the
 * received pack goes to an unlinked file there, the indexing helper writes
 * pack-NAME.pack and .idx beside it, and the directory goes when the pack
 * has been read. Contents are written by a few threads at once: creating
 * thousands of small files is bound by the file system's latency.
 */
#include "fs/unpack.h"

#include "api/log.h"
#include "api/pack.h"
#include "fs/blobs.h"
#include "fs/gitstore.h"
#include "fs/node.h"
#include "fs/objects.h"
#include "fs/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The deepest and the biggest tree one unpack takes (its listing is held in memory). */
#define UNPACK_MAX_DEPTH 1024
#define UNPACK_MAX_ENTRIES 100000
/* Threads writing contents, one more for every this many files, up to the most. */
#define UNPACK_THREADS 4
#define UNPACK_PER_THREAD 64
/* Blobs over this are read one at a time: several threads' blobs together stay small. */
#define UNPACK_BIG ((uint64_t)1 << 20)

/* Removes dir and the files in it (a fetch's directory holds no directories). */
static void remove_fetch_dir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (d) {
        while ((de = readdir(d)) != NULL)
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

void unpack_clean(const char *work_dir)
{
    DIR *d = opendir(work_dir);
    struct dirent *de;
    char *dir;

    if (!d)
        return;
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, "fetch-", 6) == 0 &&
            asprintf(&dir, "%s/%s", work_dir, de->d_name) >= 0)
            remove_fetch_dir(dir);
    closedir(d);
}

/* A fresh directory for one fetch, and the unlinked file its pack is received into. */
static int make_fetch_dir(const char *work_dir, char **dir, int *fd)
{
    char *incoming = NULL;
    int rc = 0;

    *fd = -1;
    if (asprintf(dir, "%s/fetch-XXXXXX", work_dir) < 0) {
        *dir = NULL;
        return -ENOMEM;
    }
    if (!mkdtemp(*dir)) {
        rc = -errno;
        free(*dir);
        *dir = NULL;
        return rc;
    }
    if (asprintf(&incoming, "%s/incoming", *dir) < 0)
        return -ENOMEM;
    *fd = open(incoming, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (*fd < 0)
        rc = -errno;
    else
        unlink(incoming);
    free(incoming);
    return rc;
}

/* Whether an entry's content is written from the pack (else the API serves it). */
static int is_written(const struct api_entry *e)
{
    return (e->type == API_ENTRY_FILE && !e->lfs) || e->type == API_ENTRY_LINK;
}

/* The content of the file at path into the store: 0 with *size, or -errno. */
static int write_content(struct tree *tree, const struct unpack_job *job, struct pack *p,
                         const char *path, uint64_t *size)
{
    struct blob blob = {BLOB_FILE, job->repo, job->hash, path, 0};
    struct store_writer w;
    char *key = blob_key(&blob);
    int rc;

    if (!key)
        return -ENOMEM;
    rc = store_begin(tree->store, &w);
    if (rc == 0 && (rc = pack_read_file(p, job->hash, path, w.fd, size)) != 0)
        store_abort(&w);
    if (rc == 0)
        rc = store_commit(tree->store, &w, key);
    free(key);
    return rc;
}

/* A file to write, and the writers sharing the list of them. */
struct content {
    const char *dir;
    const struct api_entry *entry;
};

struct writers {
    struct tree *tree;
    const struct unpack_job *job;
    struct pack *p;
    struct content *files;
    size_t count;
    size_t next;             /* the next file to take (atomic) */
    int rc;                  /* the first failure (atomic) */
    uint64_t written, bytes; /* atomic */
    pthread_mutex_t big;     /* one blob over UNPACK_BIG in memory at a time */
};

static void *writer_run(void *arg)
{
    struct writers *w = arg;
    size_t i;

    while ((i = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED)) < w->count &&
           !__atomic_load_n(&w->rc, __ATOMIC_RELAXED)) {
        if (w->job->cancel && __atomic_load_n(w->job->cancel, __ATOMIC_RELAXED)) {
            __atomic_store_n(&w->rc, -EINTR, __ATOMIC_RELAXED);
            break;
        }
        const struct content *c = &w->files[i];
        int big = c->entry->size > UNPACK_BIG, rc = -ENOMEM, none = 0;
        uint64_t size = 0;
        char *path;
        if (asprintf(&path, "%s%s%s", c->dir, *c->dir ? "/" : "", c->entry->name) >= 0) {
            if (big)
                pthread_mutex_lock(&w->big);
            rc = write_content(w->tree, w->job, w->p, path, &size);
            if (big)
                pthread_mutex_unlock(&w->big);
            free(path);
        }
        if (rc) {
            __atomic_compare_exchange_n(&w->rc, &none, rc, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
        } else {
            __atomic_fetch_add(&w->written, 1, __ATOMIC_RELAXED);
            __atomic_fetch_add(&w->bytes, size, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

/* Every file of sub whose content can come from the pack, within the budget. */
static int write_contents(struct tree *tree, const struct unpack_job *job, struct pack *p,
                          const struct api_subtree *sub, struct unpack_result *out)
{
    struct writers w = {.tree = tree, .job = job, .p = p};
    pthread_t threads[UNPACK_THREADS]; /* the caller is one of the writers */
    size_t started = 0, entries = 0;
    uint64_t planned = 0;

    for (size_t i = 0; i < sub->count; i++)
        entries += sub->dirs[i].entries.count;
    w.files = calloc(entries ? entries : 1, sizeof(*w.files));
    if (!w.files)
        return -ENOMEM;
    for (size_t i = 0; i < sub->count; i++)
        for (size_t j = 0; j < sub->dirs[i].entries.count; j++) {
            const struct api_entry *e = &sub->dirs[i].entries.items[j];
            if (!is_written(e) || e->size > PACK_MAX_BLOB || planned + e->size > job->max_content)
                continue;
            planned += e->size;
            w.files[w.count++] = (struct content){sub->dirs[i].path, e};
        }
    pthread_mutex_init(&w.big, NULL);
    while (started + 1 < UNPACK_THREADS && w.count > (started + 1) * UNPACK_PER_THREAD &&
           pthread_create(&threads[started], NULL, writer_run, &w) == 0)
        started++;
    writer_run(&w);
    while (started > 0)
        pthread_join(threads[--started], NULL);
    pthread_mutex_destroy(&w.big);
    free(w.files);
    out->files = w.written;
    out->bytes = w.bytes;
    return w.rc;
}

/* The tree of the pack's commit into the store: contents, directories, the record last. */
static int unpack_tree(struct tree *tree, const struct unpack_job *job, struct pack *p,
                       struct unpack_result *out, struct git_error *err)
{
    struct api_subtree sub;
    int rc = pack_list_subtree(p, job->hash, "", UNPACK_MAX_DEPTH, UNPACK_MAX_ENTRIES, &sub);

    if (rc == -EFBIG) {
        git_set_error(err, GIT_CAUSE_TOO_BIG, 0, "the tree has more than %d entries",
                      UNPACK_MAX_ENTRIES);
        return rc;
    }
    if (rc == 0)
        rc = pack_commit_date(p, job->hash, &out->date);
    if (rc == 0)
        rc = write_contents(tree, job, p, &sub, out);
    for (size_t i = 0; i < sub.count && rc == 0; i++)
        rc = gitstore_put_dir(tree->store, job->repo, job->hash, sub.dirs[i].path,
                              &sub.dirs[i].entries);
    if (rc == 0)
        rc = gitstore_put_commit(tree->store, job->repo, job->hash, out->date);
    for (size_t i = 0; i < sub.count && rc == 0; i++) {
        struct object_id id = {.repo = job->repo, .revision = job->hash, .path = sub.dirs[i].path};
        object_offer_dir(tree, &id, &sub.dirs[i].entries);
    }
    api_subtree_release(&sub);
    if (rc == -EINTR)
        git_set_error(err, GIT_CAUSE_CANCELLED, 0, "cancelled");
    else if (rc)
        git_set_error(err, rc == -EIO || rc == -ENOENT ? GIT_CAUSE_BROKEN : GIT_CAUSE_OTHER, 0,
                      "cannot unpack the pack: %s", strerror(-rc));
    return rc;
}

int unpack_commit(struct tree *tree, const struct unpack_job *job, struct unpack_result *out,
                  struct git_error *err)
{
    struct git_fetch_options opts = {.max_bytes = job->max_pack, .cancel = job->cancel};
    char name[PACK_NAME_LEN + 1], *dir = NULL;
    struct pack *p = NULL;
    uint64_t size;
    int fd = -1, rc;

    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    rc = make_fetch_dir(job->work_dir, &dir, &fd);
    if (rc) {
        git_set_error(err, GIT_CAUSE_OTHER, 0, "cannot make a file for the pack: %s",
                      strerror(-rc));
        goto out;
    }
    rc = git_remote_fetch(job->git, job->remote, job->hash, fd, &opts, &size, err);
    if (rc)
        goto out;
    rc = pack_index(dir, fd, name);
    if (rc) {
        git_set_error(err, rc == -EPROTO ? GIT_CAUSE_BROKEN : GIT_CAUSE_OTHER, 0,
                      "the pack does not index: %s", strerror(-rc));
        goto out;
    }
    close(fd);
    fd = -1;
    rc = pack_open(dir, name, &p);
    if (rc) {
        git_set_error(err, GIT_CAUSE_BROKEN, 0, "cannot open the pack: %s", strerror(-rc));
        goto out;
    }
    log_debug("git: %s at %s: %llu bytes of pack", job->repo, job->hash, (unsigned long long)size);
    rc = unpack_tree(tree, job, p, out, err);
out:
    pack_close(p);
    if (fd >= 0)
        close(fd);
    if (dir)
        remove_fetch_dir(dir);
    return rc;
}

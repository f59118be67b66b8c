/*
 * pack.c - the packs of git.c's fetches read with libgit2 (pack.h): an
 * object database with the one pack as its only backend, and a repository
 * wrapped around it for commits and trees. (Indexing: packindex.c.)
 */
#include "api/pack.h"

#include <errno.h>
#include <git2.h>
#include <git2/sys/odb_backend.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/log.h"

/*
 * libgit2's defaults suit a git client with the machine to itself (1 GiB
 * windows, 8 GiB mapped, a 256 MiB object cache); bbfs keeps its resident
 * memory small whatever the packs hold.
 */
#define PACK_WINDOW ((size_t)1 << 20)
#define PACK_MAPPED_LIMIT ((size_t)16 << 20)
#define PACK_CACHE ((ssize_t)8 << 20)
/* Deeper trees than this are not walked by pack_list_subtree (recursion bound). */
#define PACK_MAX_DEPTH 1024
/* A Git LFS pointer file (git-lfs spec v1): at most 1024 bytes, starting so. */
#define LFS_SPEC "version https://git-lfs.github.com/spec/v1\n"
#define LFS_POINTER_MAX 1024

struct pack {
    pthread_mutex_t lock; /* over repo: libgit2 objects are for one thread at a time */
    git_odb *odb;         /* thread-safe by itself (libgit2's docs/threading.md) */
    git_repository *repo; /* wraps odb, for commits and trees */
};

/* libgit2's error as an errno, its message at debug level. */
static int git2_errno(int error, const char *what)
{
    const git_error *e = git_error_last();

    if (error == GIT_ENOTFOUND)
        return -ENOENT;
    log_debug("libgit2: %s: %s", what, e && e->message ? e->message : "unknown error");
    if (e && e->klass == GIT_ERROR_NOMEMORY)
        return -ENOMEM;
    return -EIO;
}

int pack_global_init(void)
{
    if (git_libgit2_init() < 0)
        return -EIO;
    if (!(git_libgit2_features() & GIT_FEATURE_THREADS) ||
        git_libgit2_opts(GIT_OPT_SET_MWINDOW_SIZE, PACK_WINDOW) < 0 ||
        git_libgit2_opts(GIT_OPT_SET_MWINDOW_MAPPED_LIMIT, PACK_MAPPED_LIMIT) < 0 ||
        git_libgit2_opts(GIT_OPT_SET_CACHE_MAX_SIZE, PACK_CACHE) < 0) {
        git_libgit2_shutdown();
        return -EIO;
    }
    return 0;
}

void pack_global_cleanup(void)
{
    pack_indexer_stop();
    git_libgit2_shutdown();
}

static int is_name(const char *s)
{
    size_t i;

    for (i = 0; i < PACK_NAME_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[i] == '\0';
}

void pack_close(struct pack *p)
{
    if (!p)
        return;
    git_repository_free(p->repo);
    git_odb_free(p->odb);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int pack_open(const char *dir, const char *name, struct pack **out)
{
    git_odb_backend *backend = NULL;
    struct pack *p;
    char path[4096];
    int rc;

    *out = NULL;
    if (!name || !is_name(name) ||
        snprintf(path, sizeof(path), "%s/pack-%s.idx", dir, name) >= (int)sizeof(path))
        return -EINVAL;
    if (access(path, R_OK) < 0)
        return -errno;
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    rc = git_odb_new(&p->odb);
    if (rc == 0)
        rc = git_odb_backend_one_pack(&backend, path);
    if (rc == 0) {
        rc = git_odb_add_backend(p->odb, backend, 1);
        if (rc < 0)
            backend->free(backend);
    }
    if (rc == 0)
        rc = git_repository_wrap_odb(&p->repo, p->odb);
    if (rc < 0) {
        rc = git2_errno(rc, "cannot open a pack");
        pack_close(p);
        return rc == -ENOENT ? -EIO : rc;
    }
    *out = p;
    return 0;
}

/* ---- lookups (the caller holds p->lock) ---- */

/* An object a tree names is not in the pack: the pack is damaged, not the path wrong. */
static int missing(int error, const char *what)
{
    return error == GIT_ENOTFOUND ? -EIO : git2_errno(error, what);
}

static int commit_root(struct pack *p, const char *commit, git_tree **root)
{
    git_commit *c = NULL;
    git_oid oid;
    int rc;

    *root = NULL;
    if (!commit || !api_is_full_hash(commit) || git_oid_fromstr(&oid, commit) < 0)
        return -EINVAL;
    rc = git_commit_lookup(&c, p->repo, &oid);
    if (rc < 0)
        return git2_errno(rc, "cannot read a commit");
    rc = git_commit_tree(root, c);
    git_commit_free(c);
    return rc < 0 ? missing(rc, "cannot read a commit's tree") : 0;
}

/* The tree at path ("" for the root) below commit. */
static int lookup_tree(struct pack *p, const char *commit, const char *path, git_tree **out)
{
    git_tree_entry *entry = NULL;
    git_tree *root;
    int rc;

    *out = NULL;
    if (!path)
        return -EINVAL;
    rc = commit_root(p, commit, &root);
    if (rc < 0 || !*path) {
        *out = root;
        return rc;
    }
    rc = git_tree_entry_bypath(&entry, root, path);
    if (rc == 0 && git_tree_entry_type(entry) != GIT_OBJECT_TREE)
        rc = GIT_ENOTFOUND;
    if (rc < 0) {
        rc = git2_errno(rc, "cannot find a directory");
    } else {
        rc = git_tree_lookup(out, p->repo, git_tree_entry_id(entry));
        rc = rc < 0 ? missing(rc, "cannot read a tree") : 0;
    }
    git_tree_entry_free(entry);
    git_tree_free(root);
    return rc;
}

/* The content size a pointer's "size N" line gives (data holds len bytes), or -1. */
static int64_t lfs_content_size(const char *data, size_t len)
{
    const char *line = memmem(data, len, "\nsize ", 6), *end = data + len;
    int64_t n = 0;
    int digits = 0;

    if (!line)
        return -1;
    for (line += 6; line < end && *line >= '0' && *line <= '9' && digits < 18; line++, digits++)
        n = n * 10 + (*line - '0');
    return digits > 0 && line < end && *line == '\n' ? n : -1;
}

/*
 * Whether blob id (of size bytes) is a Git LFS pointer: 1 with *content the
 * size of the object it stands for, 0, or -errno.
 */
static int is_lfs_pointer(struct pack *p, const git_oid *id, size_t size, uint64_t *content)
{
    git_odb_object *obj = NULL;
    const char *data;
    int64_t stands_for;
    size_t len;
    int rc;

    if (size < strlen(LFS_SPEC) || size > LFS_POINTER_MAX)
        return 0;
    rc = git_odb_read(&obj, p->odb, id);
    if (rc < 0)
        return missing(rc, "cannot read a blob");
    data = git_odb_object_data(obj);
    len = git_odb_object_size(obj);
    stands_for = lfs_content_size(data, len);
    rc = len >= strlen(LFS_SPEC) && memcmp(data, LFS_SPEC, strlen(LFS_SPEC)) == 0 &&
         memmem(data, len, "\noid sha256:", 12) && stands_for >= 0;
    if (rc)
        *content = (uint64_t)stands_for;
    git_odb_object_free(obj);
    return rc;
}

static int fill_entry(struct pack *p, const git_tree_entry *te, struct api_entry *out)
{
    git_object_t type;
    size_t size = 0;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    switch (git_tree_entry_filemode(te)) {
    case GIT_FILEMODE_TREE:
        out->type = API_ENTRY_DIR;
        break;
    case GIT_FILEMODE_LINK:
        out->type = API_ENTRY_LINK;
        break;
    case GIT_FILEMODE_COMMIT:
        out->type = API_ENTRY_SUBMODULE;
        break;
    case GIT_FILEMODE_BLOB_EXECUTABLE:
        out->executable = 1;
        /* fall through */
    default:
        out->type = API_ENTRY_FILE;
        break;
    }
    if (out->type == API_ENTRY_FILE || out->type == API_ENTRY_LINK) {
        rc = git_odb_read_header(&size, &type, p->odb, git_tree_entry_id(te));
        if (rc < 0)
            return missing(rc, "cannot read an object's header");
        out->size = size;
    }
    if (out->type == API_ENTRY_FILE) {
        rc = is_lfs_pointer(p, git_tree_entry_id(te), size, &out->size);
        if (rc < 0)
            return rc;
        out->lfs = rc;
    }
    out->name = strdup(git_tree_entry_name(te));
    return out->name ? 0 : -ENOMEM;
}

static int list_tree(struct pack *p, const git_tree *tree, struct api_entry_list *out)
{
    size_t i, n = git_tree_entrycount(tree);
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (n == 0)
        return 0;
    out->items = calloc(n, sizeof(*out->items));
    if (!out->items)
        return -ENOMEM;
    for (i = 0; i < n && rc == 0; i++) {
        rc = fill_entry(p, git_tree_entry_byindex(tree, i), &out->items[i]);
        if (rc == 0)
            out->count++;
    }
    if (rc < 0)
        api_entry_list_release(out);
    return rc;
}

/* ---- the calls ---- */

int pack_commit_tree(struct pack *p, const char *commit, char tree[API_HASH_LEN + 1])
{
    git_tree *root;
    int rc;

    tree[0] = '\0';
    pthread_mutex_lock(&p->lock);
    rc = commit_root(p, commit, &root);
    if (rc == 0)
        git_oid_tostr(tree, API_HASH_LEN + 1, git_tree_id(root));
    git_tree_free(root);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int pack_commit_date(struct pack *p, const char *commit, int64_t *date)
{
    git_commit *c = NULL;
    git_oid oid;
    int rc;

    *date = 0;
    if (!commit || !api_is_full_hash(commit) || git_oid_fromstr(&oid, commit) < 0)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    rc = git_commit_lookup(&c, p->repo, &oid);
    if (rc < 0)
        rc = git2_errno(rc, "cannot read a commit");
    else
        *date = (int64_t)git_commit_author(c)->when.time;
    git_commit_free(c);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int pack_list_dir(struct pack *p, const char *commit, const char *dir, struct api_entry_list *out)
{
    git_tree *tree;
    int rc;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&p->lock);
    rc = lookup_tree(p, commit, dir, &tree);
    if (rc == 0)
        rc = list_tree(p, tree, out);
    git_tree_free(tree);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* Room for one more directory in out. */
static struct api_subtree_dir *add_dir(struct api_subtree *out, size_t *alloc)
{
    struct api_subtree_dir *grown;
    size_t n;

    if (out->count == *alloc) {
        n = *alloc ? *alloc * 2 : 16;
        grown = realloc(out->dirs, n * sizeof(*grown));
        if (!grown)
            return NULL;
        out->dirs = grown;
        *alloc = n;
    }
    memset(&out->dirs[out->count], 0, sizeof(out->dirs[0]));
    return &out->dirs[out->count];
}

struct walk {
    struct pack *p;
    size_t max_entries, entries, alloc;
    struct api_subtree *out;
};

/* tree (at path) and, levels > 1, the directories below it into w->out. */
static int walk_tree(struct walk *w, const git_tree *tree, const char *path, unsigned levels)
{
    struct api_subtree_dir *d = add_dir(w->out, &w->alloc);
    git_tree *sub = NULL;
    size_t i, index;
    char *child;
    int rc;

    if (!d)
        return -ENOMEM;
    d->path = strdup(path);
    if (!d->path)
        return -ENOMEM;
    index = w->out->count++;
    rc = list_tree(w->p, tree, &w->out->dirs[index].entries);
    if (rc < 0)
        return rc;
    w->entries += w->out->dirs[index].entries.count;
    if (w->entries > w->max_entries)
        return -EFBIG;
    for (i = 0; levels > 1 && i < git_tree_entrycount(tree) && rc == 0; i++) {
        const git_tree_entry *te = git_tree_entry_byindex(tree, i);

        if (git_tree_entry_filemode(te) != GIT_FILEMODE_TREE)
            continue;
        if (asprintf(&child, "%s%s%s", path, *path ? "/" : "", git_tree_entry_name(te)) < 0)
            return -ENOMEM;
        rc = git_tree_lookup(&sub, w->p->repo, git_tree_entry_id(te));
        if (rc < 0)
            rc = missing(rc, "cannot read a tree");
        else
            rc = walk_tree(w, sub, child, levels - 1);
        git_tree_free(sub);
        sub = NULL;
        free(child);
    }
    return rc;
}

int pack_list_subtree(struct pack *p, const char *commit, const char *dir, unsigned max_depth,
                      size_t max_entries, struct api_subtree *out)
{
    struct walk w = {.p = p, .max_entries = max_entries, .out = out};
    git_tree *tree;
    int rc;

    memset(out, 0, sizeof(*out));
    if (max_depth < 1)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    rc = lookup_tree(p, commit, dir, &tree);
    if (rc == 0)
        rc = walk_tree(&w, tree, dir, max_depth < PACK_MAX_DEPTH ? max_depth : PACK_MAX_DEPTH);
    git_tree_free(tree);
    pthread_mutex_unlock(&p->lock);
    if (rc < 0)
        api_subtree_release(out);
    return rc;
}

/* The blob at path below commit: its id and size, or -ENOENT for anything else. */
static int lookup_blob(struct pack *p, const char *commit, const char *path, git_oid *id,
                       size_t *size)
{
    git_tree_entry *entry = NULL;
    git_object_t type;
    git_tree *root;
    int rc;

    if (!path || !*path)
        return -ENOENT;
    pthread_mutex_lock(&p->lock);
    rc = commit_root(p, commit, &root);
    if (rc == 0) {
        rc = git_tree_entry_bypath(&entry, root, path);
        if (rc == 0 && git_tree_entry_type(entry) != GIT_OBJECT_BLOB)
            rc = GIT_ENOTFOUND;
        if (rc < 0) {
            rc = git2_errno(rc, "cannot find a file");
        } else {
            git_oid_cpy(id, git_tree_entry_id(entry));
            rc = git_odb_read_header(size, &type, p->odb, id);
            rc = rc < 0 ? missing(rc, "cannot read an object's header") : 0;
        }
    }
    git_tree_entry_free(entry);
    git_tree_free(root);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

static int write_all(int fd, const char *data, size_t len)
{
    ssize_t n;

    while (len > 0) {
        n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int pack_read_file(struct pack *p, const char *commit, const char *path, int fd, uint64_t *size)
{
    git_odb_object *obj = NULL;
    size_t len;
    git_oid id;
    int rc;

    *size = 0;
    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
        return -errno;
    rc = lookup_blob(p, commit, path, &id, &len);
    if (rc < 0)
        return rc;
    if (len > PACK_MAX_BLOB)
        return -EFBIG;
    rc = git_odb_read(&obj, p->odb, &id); /* the object database needs no lock */
    if (rc < 0)
        return missing(rc, "cannot read a blob");
    rc = write_all(fd, git_odb_object_data(obj), git_odb_object_size(obj));
    if (rc == 0)
        *size = git_odb_object_size(obj);
    else if (ftruncate(fd, 0) == 0)
        lseek(fd, 0, SEEK_SET);
    git_odb_object_free(obj);
    return rc;
}

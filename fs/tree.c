/*
 * tree.c - the bbfs tree (see tree.h and ../shared/DESIGN.md "The tree"):
 * the public calls, resolving a path by its first parts, and the dispatch
 * from a node's kind to the part of the tree that owns it.
 *
 * A path is resolved into a struct node (node.h). Attributes, listings,
 * contents and link targets are all computed from a resolved node through
 * its kind's row of operations, so a file's st_size always matches the bytes
 * a read returns. Lookups that miss (a shell probing .git, an unknown branch)
 * are answered from listings already in memory.
 */
#include "fs/tree.h"

#include "api/api.h"
#include "api/log.h"
#include "fs/cache.h"
#include "fs/node.h"
#include "fs/readahead.h"
#include "fs/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * What the in-memory cache of parsed answers may hold. Everything in it is
 * also in the on-disk store (or is cheap to ask for again), so the bound
 * costs disk reads, not requests, and keeps a mount that goes through
 * thousands of commits at a flat size.
 */
#define TREE_MEMORY_BYTES ((size_t)12 << 20)

/* The rows of the parts, asked in turn for the one that owns a kind. */
static const struct node_ops *ops_of(enum node_kind kind)
{
    static const struct node_ops *(*const parts[])(enum node_kind) = {
        workspace_ops, refs_ops, commits_ops, source_ops, pullrequests_ops, stats_ops,
    };
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        const struct node_ops *ops = parts[i](kind);
        if (ops)
            return ops;
    }
    return NULL;
}

static void node_release(struct node *n)
{
    struct cache_ref *const held[] = {n->doc_ref,    n->repos_ref, n->repo_ref, n->refs_ref,
                                      n->commit_ref, n->dir_ref,   n->pr_ref,   n->comments_ref};
    for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++)
        cache_ref_put(held[i]);
    free(n->tree_path);
    free(n->ref_prefix);
    free(n->scratch);
    free(n->buf);
    memset(n, 0, sizeof(*n));
}

/* What a repository directory holds, each resolved by the part that owns it. */
static const struct {
    const char *name;
    int (*resolve)(struct tree *tree, struct node *n);
} repo_parts[] = {
    {"repository.json", workspace_resolve_file},
    {"description", workspace_resolve_file},
    {"clone-url", workspace_resolve_file},
    {"HEAD", refs_resolve},
    {"branches", refs_resolve},
    {"tags", refs_resolve},
    {"commits", commits_resolve},
    {"pullrequests", pullrequests_resolve},
};

static int resolve(struct tree *tree, const char *path, struct node *n)
{
    memset(n, 0, sizeof(*n));
    n->buf = strdup(path);
    if (!n->buf)
        return -ENOMEM;
    n->nparts = names_split(n->buf, n->parts, NAMES_MAX_DEPTH);
    if (n->nparts < 0)
        return -ENOENT;
    n->mtime = tree->mount_time;
    if (n->nparts == 0) {
        n->kind = NODE_ROOT;
        return 0;
    }
    if (strcmp(n->parts[0], BBFS_DIR) == 0 && strcmp(tree->workspace, BBFS_DIR) != 0)
        return stats_resolve(tree, n);
    if (strcmp(n->parts[0], tree->workspace) != 0)
        return -ENOENT;
    int rc = workspace_resolve(tree, n);
    if (rc || n->nparts < 3)
        return rc;
    for (size_t i = 0; i < sizeof(repo_parts) / sizeof(repo_parts[0]); i++)
        if (strcmp(n->parts[2], repo_parts[i].name) == 0)
            return repo_parts[i].resolve(tree, n);
    return -ENOENT;
}

/* The attributes of n that need nothing fetched: all but a file's size. */
static void node_attrs(const struct node *n, const struct node_ops *ops, struct tree_stat *st)
{
    memset(st, 0, sizeof(*st));
    st->mode = ops->mode;
    st->mtime = n->mtime;
    st->immutable = n->kind >= NODE_COMMIT;
    st->live = ops->live;
}

uint64_t node_generation(const char *what)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)what; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h ? h : 1; /* 0 is for what never moves */
}

static int node_stat(struct tree *tree, struct node *n, struct tree_stat *st)
{
    const struct node_ops *ops = ops_of(n->kind);
    struct stream *content;
    const char *data;
    uint64_t size;
    size_t len;
    int rc = 0;

    node_attrs(n, ops, st);
    if (S_ISDIR(st->mode))
        return 0;
    st->size = ops->size ? ops->size(n) : -1;
    if (st->size >= 0) {
        /* known without the content */
    } else if (ops->open) {
        /* The exact size needs the content itself: all of it, in the store. */
        rc = ops->open(tree, n, &content);
        if (rc == 0) {
            rc = stream_size(content, &size);
            stream_close(content);
            st->size = (off_t)size;
        }
    } else {
        rc = ops->content(tree, n, &data, &len);
        st->size = (off_t)len;
    }
    if (ops->generation)
        st->generation = ops->generation(n);
    return rc;
}

/* ---- public API -------------------------------------------------------- */

int tree_new(const struct tree_config *cfg, struct api_client *api, struct tree **out)
{
    struct tree *tree = calloc(1, sizeof(*tree));
    if (!tree)
        return -ENOMEM;
    tree->workspace = strdup(cfg->workspace);
    tree->project = cfg->project ? strdup(cfg->project) : NULL;
    tree->cache = cache_new(TREE_MEMORY_BYTES);
    if (!tree->workspace || (cfg->project && !tree->project) || !tree->cache ||
        readahead_new(&tree->readahead) != 0 || streams_new(cfg->store, &tree->streams) != 0) {
        tree_free(tree);
        return -ENOMEM;
    }
    tree->ttl = cfg->ttl;
    tree->commit_limit = cfg->commit_limit;
    tree->offline = cfg->offline;
    tree->mount_time = time(NULL);
    tree->api = api;
    tree->store = cfg->store;
    tree->shared = cfg->shared;
    tree->changed = cfg->changed;
    tree->moved = cfg->moved;
    tree->changed_ctx = cfg->changed_ctx;
    tree->packs = cfg->packs;
    *out = tree;
    return 0;
}

void tree_free(struct tree *tree)
{
    if (!tree)
        return;
    streams_stop(tree->streams);     /* what reading ahead waits for ends now */
    readahead_free(tree->readahead); /* its downloads use the cache and streams: first */
    streams_free(tree->streams);
    cache_free(tree->cache);
    free(tree->workspace);
    free(tree->project);
    free(tree);
}

void tree_expire(struct tree *tree)
{
    cache_expire_all(tree->cache);
}

int tree_stat(struct tree *tree, const char *path, struct tree_stat *out)
{
    struct node n;
    int rc = resolve(tree, path, &n);
    if (rc == 0)
        rc = node_stat(tree, &n, out);
    node_release(&n);
    return rc;
}

int tree_open(struct tree *tree, const char *path, struct tree_file *out)
{
    const struct node_ops *ops;
    const char *content = NULL;
    struct node n;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = resolve(tree, path, &n);
    if (rc)
        goto out;
    ops = ops_of(n.kind);
    if (S_ISLNK(ops->mode) || S_ISDIR(ops->mode)) {
        rc = S_ISLNK(ops->mode) ? -ELOOP : -EISDIR;
        goto out;
    }
    node_attrs(&n, ops, &out->st);
    if (ops->open) {
        rc = ops->open(tree, &n, &out->content);
        if (rc == 0 && ops->size)
            out->st.size = ops->size(&n);
        goto out;
    }
    /* Built once, for the size and the bytes alike. */
    rc = ops->content(tree, &n, &content, &out->len);
    if (rc)
        goto out;
    out->st.size = (off_t)out->len;
    out->data = malloc(out->len ? out->len : 1);
    if (!out->data) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(out->data, content, out->len);
out:
    node_release(&n);
    return rc;
}

void tree_file_release(struct tree_file *file)
{
    stream_close(file->content);
    free(file->data);
    memset(file, 0, sizeof(*file));
}

int tree_file_span(struct tree_file *file, off_t off, size_t size, struct tree_span *out)
{
    struct stream_span span;
    int rc;

    memset(out, 0, sizeof(*out));
    out->fd = -1;
    out->pos = off;
    if (off < 0)
        return -EINVAL;
    if (!file->content) {
        out->data = (size_t)off < file->len ? file->data + off : NULL;
        out->len = (size_t)off < file->len ? file->len - (size_t)off : 0;
        out->len = out->len < size ? out->len : size;
        return 0;
    }
    rc = stream_span(file->content, (uint64_t)off, size, &span);
    if (rc)
        return rc;
    out->fd = span.fd;
    out->len = span.len;
    out->hold = span.hold;
    return 0;
}

void tree_span_release(struct tree_span *span)
{
    struct stream_span held = {.fd = span->fd, .hold = span->hold};
    stream_span_release(&held);
    span->hold = NULL;
    span->fd = -1;
}

int tree_readlink(struct tree *tree, const char *path, char **target)
{
    struct node n;
    const char *content;
    size_t len;
    int rc = resolve(tree, path, &n);
    if (rc)
        goto out;
    const struct node_ops *ops = ops_of(n.kind);
    if (!S_ISLNK(ops->mode)) {
        rc = -EINVAL;
        goto out;
    }
    rc = ops->content(tree, &n, &content, &len);
    if (rc)
        goto out;
    *target = strndup(content, len);
    if (!*target)
        rc = -ENOMEM;
out:
    node_release(&n);
    return rc;
}

/* ---- extended attributes ----------------------------------------------- */

static const char HTML_URL_XATTR[] = "user.bitbucket.html_url";

int tree_xattr_known(const char *name)
{
    return strcmp(name, HTML_URL_XATTR) == 0;
}

int tree_listxattr(struct tree *tree, const char *path, char **out, size_t *len)
{
    struct node n;
    int rc = resolve(tree, path, &n);

    *out = NULL;
    *len = 0;
    if (rc == 0 && ops_of(n.kind)->html_url) {
        *out = malloc(sizeof(HTML_URL_XATTR));
        if (*out) {
            memcpy(*out, HTML_URL_XATTR, sizeof(HTML_URL_XATTR));
            *len = sizeof(HTML_URL_XATTR);
        } else {
            rc = -ENOMEM;
        }
    }
    node_release(&n);
    return rc;
}

int tree_getxattr(struct tree *tree, const char *path, const char *name, char **out, size_t *len)
{
    struct node n;
    int rc = resolve(tree, path, &n);

    *out = NULL;
    if (rc == 0 && strcmp(name, HTML_URL_XATTR) == 0 && ops_of(n.kind)->html_url) {
        *out = ops_of(n.kind)->html_url(tree, &n);
        rc = *out ? 0 : -ENOMEM;
        *len = *out ? strlen(*out) : 0;
    } else if (rc == 0) {
        rc = -ENODATA;
    }
    node_release(&n);
    return rc;
}

/* ---- listings ---------------------------------------------------------- */

int listing_add(struct listing *l, const char *name, size_t namelen, const struct tree_stat *st)
{
    struct tree_dir *dir = l->dir;
    if (dir->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct tree_dirent *entries = realloc(dir->entries, cap * sizeof(*entries));
        if (!entries)
            return -ENOMEM;
        dir->entries = entries;
        l->cap = cap;
    }
    char *copy = strndup(name, namelen);
    if (!copy)
        return -ENOMEM;
    dir->entries[dir->count].name = copy;
    dir->entries[dir->count].st = *st;
    dir->count++;
    return 0;
}

int listing_add_child(struct tree *tree, struct listing *l, const char *dirpath, const char *name)
{
    char *path;
    struct tree_stat st;
    if (asprintf(&path, "%s%s%s", dirpath, *dirpath ? "/" : "", name) < 0)
        return -ENOMEM;
    int rc = tree_stat(tree, path, &st);
    free(path);
    if (rc == -ENOENT)
        return 0; /* e.g. HEAD of an empty repository */
    if (rc)
        return rc;
    return listing_add(l, name, strlen(name), &st);
}

int listing_add_fixed(struct listing *l, const struct fixed_child *children, size_t count,
                      const struct tree_stat *st)
{
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        struct tree_stat child = *st;
        child.mode = children[i].mode;
        rc = listing_add(l, children[i].name, strlen(children[i].name), &child);
    }
    return rc;
}

int tree_list(struct tree *tree, const char *path, struct tree_dir *out)
{
    struct node n;
    struct listing l = {.dir = out};
    memset(out, 0, sizeof(*out));
    int rc = resolve(tree, path, &n);
    if (rc == 0) {
        const struct node_ops *ops = ops_of(n.kind);
        rc = ops->list ? ops->list(tree, &n, &l, path) : -ENOTDIR;
    }
    out->immutable = rc == 0 && n.kind >= NODE_COMMIT;
    node_release(&n);
    if (rc)
        tree_dir_release(out);
    return rc;
}

void tree_dir_release(struct tree_dir *dir)
{
    for (size_t i = 0; i < dir->count; i++)
        free(dir->entries[i].name);
    free(dir->entries);
    dir->entries = NULL;
    dir->count = 0;
}

/* ---- shared by the parts ------------------------------------------------ */

int node_kind_named(struct node *n, const struct named_kind *table, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(name, table[i].name) == 0) {
            n->kind = table[i].kind;
            return 0;
        }
    return -ENOENT;
}

int node_doc(const struct api_doc *doc, const char **data, size_t *len)
{
    *data = doc->text ? doc->text : "";
    *len = doc->text ? doc->len : 0;
    return 0;
}

int node_printed(struct node *n, int printed, const char **data, size_t *len)
{
    if (printed < 0) {
        n->scratch = NULL;
        return -ENOMEM;
    }
    *data = n->scratch;
    *len = strlen(n->scratch);
    return 0;
}

void tree_report_changed(struct tree *tree, const char *dir, const char *name)
{
    char *path;
    size_t dirlen = strlen(dir);
    if (!tree->changed || asprintf(&path, "%s/%s", dir, name) < 0)
        return;
    for (char *slash = strrchr(path, '/'); slash && slash >= path + dirlen;
         slash = strrchr(path, '/')) {
        *slash = '\0';
        tree->changed(tree->changed_ctx, path, slash + 1);
        if (slash == path + dirlen)
            break;
    }
    free(path);
}

void tree_report_moved(struct tree *tree, const char *path)
{
    if (tree->moved)
        tree->moved(tree->changed_ctx, path);
}

int tree_refuse_offline(const struct tree *tree)
{
    if (!tree->offline)
        return 0;
    log_once(LOG_LEVEL_INFO, "offline",
             "offline: not downloading files or diffs that are not cached");
    return -EIO;
}

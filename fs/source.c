/*
 * source.c - a commit's tree/: the repository's files at that commit.
 * Directories come from the API's listings (kept forever: a commit never
 * changes), and every attribute of an entry from its parent's listing, so
 * ls -l costs no request per file. Symlinks are symlinks, submodules empty
 * directories, contents kept in the store (blobs.c).
 *
 * A walk (ls -R, find, grep -r, diff -r) lists one directory after another;
 * once readahead.c sees one, a recursive listing answers them all, in as
 * many requests as it has pages of 100 entries, and the directories it holds
 * go to the cache for the walk to find. It is given up on when it would be
 * bigger than WALK_MAX_ENTRIES. Where git serves (packs.h), the walk brings
 * the commit's pack instead, and its listings come from what that stored.
 */
#include "api/api.h"
#include "api/log.h"
#include "fs/blobs.h"
#include "fs/cache.h"
#include "fs/node.h"
#include "fs/objects.h"
#include "fs/packs.h"
#include "fs/readahead.h"
#include "fs/stream.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define WALK_MAX_ENTRIES 20000
#define WALK_MAX_DEPTH 64

/*
 * Lists root recursively and offers every complete directory but dir to the
 * cache; dir's own entries go to *list. 1 when it did, 0 when the walk is
 * better served directory by directory, -EWOULDBLOCK in nowait mode when the
 * listing is not stored (or -EINTR).
 */
static int list_walk(struct tree *tree, const char *repo, const char *hash, const char *dir,
                     const char *root, struct api_entry_list *list)
{
    struct api_subtree sub;
    int found = 0;
    int rc = api_list_subtree(tree->api, tree->workspace, repo, hash, root, WALK_MAX_DEPTH,
                              WALK_MAX_ENTRIES, &sub);
    if (rc == -EWOULDBLOCK || rc == -EINTR)
        return rc;
    if (rc) {
        log_debug("no recursive listing for a walk (%s): listing directories one by one",
                  strerror(-rc));
        return 0;
    }
    for (size_t i = 0; i < sub.count; i++) {
        struct api_subtree_dir *d = &sub.dirs[i];
        if (strcmp(d->path, dir) == 0 && !found) {
            *list = d->entries;
            memset(&d->entries, 0, sizeof(d->entries));
            found = 1;
            continue;
        }
        struct object_id id = {.repo = repo, .revision = hash, .path = d->path};
        object_offer_dir(tree, &id, &d->entries);
    }
    api_subtree_release(&sub);
    return found;
}

/* dir's listing when it needs no request (the store, the shared cache): 0, else -EWOULDBLOCK. */
static int list_at_hand(struct tree *tree, const char *repo, const char *hash, const char *dir,
                        struct api_entry_list *out)
{
    int nowait = api_nowait(), rc;

    api_set_nowait(1);
    rc = api_list_dir(tree->api, tree->workspace, repo, hash, dir, out);
    api_set_nowait(nowait);
    return rc;
}

int source_list_dir(struct tree *tree, const char *repo, const char *hash, const char *dir,
                    struct api_entry_list *out)
{
    char *root = tree->offline ? NULL : readahead_walk_root(tree->readahead, repo, hash, dir);
    /* What a pack brought, or the pack itself once a walk is seen (packs.h). */
    int rc = packs_list_dir(tree, repo, hash, dir, root != NULL, out);

    /* A walk through listings at hand (another machine's walk, through Redis) asks for nothing:
     * it is taken up again at the first directory that needs a request. */
    if (rc == -ENODATA && root && list_at_hand(tree, repo, hash, dir, out) == 0) {
        readahead_walk_again(tree->readahead, repo, hash);
        rc = 0;
    } else if (rc == -ENODATA) {
        rc = root ? list_walk(tree, repo, hash, dir, root, out) : 0;
        if (rc == 0)
            rc = api_list_dir(tree->api, tree->workspace, repo, hash, dir, out);
    }
    if (rc == -EWOULDBLOCK && root)
        readahead_walk_again(tree->readahead, repo, hash); /* asked again, waiting */
    free(root);
    return rc < 0 ? rc : 0;
}

static int get_dir(struct tree *tree, const struct node *n, const char *dir, struct cache_ref **ref)
{
    struct object_id id = {.repo = n->repo->slug, .revision = n->hash, .path = dir};
    return object_get(tree, OBJECT_DIR, &id, ref);
}

/*
 * Whether the directory holding n's entry can hold anything, from its own
 * entry in its parent's listing when memory has that (the kernel looked it
 * up just before): a submodule or a file holds nothing, and asking the API
 * to list it would cost a request for a certain "no such file".
 */
static int holder_may_list(struct tree *tree, const struct node *n)
{
    struct cache_ref *ref;
    if (n->nparts < 7)
        return 1; /* held by tree/ itself */
    char *grandparent = names_join(n->parts, 5, n->nparts - 2);
    struct object_id id = {.repo = n->repo->slug, .revision = n->hash, .path = grandparent};
    int rc = grandparent ? object_peek(tree, OBJECT_DIR, &id, &ref) : -ENOMEM;
    free(grandparent);
    if (rc)
        return 1; /* not at hand: the listing asked for says */
    const struct dir_index *listing = cache_ref_value(ref);
    const struct api_entry *holder =
        index_find(&listing->index, n->parts[n->nparts - 2], entry_name);
    int may = holder && holder->type == API_ENTRY_DIR;
    cache_ref_put(ref);
    return may;
}

int source_resolve(struct tree *tree, struct node *n)
{
    if (packs_look(tree, n->repo, n->hash) == -EWOULDBLOCK)
        return -EWOULDBLOCK;
    n->tree_path = names_join(n->parts, 5, n->nparts);
    if (!n->tree_path)
        return -ENOMEM;
    n->kind = NODE_TREE_DIR;
    if (n->nparts == 5)
        return 0;
    if (!holder_may_list(tree, n))
        return -ENOENT;

    char *dir = names_join(n->parts, 5, n->nparts - 1);
    if (!dir)
        return -ENOMEM;
    int rc = get_dir(tree, n, dir, &n->dir_ref);
    free(dir);
    if (rc)
        return rc;
    const struct dir_index *listing = cache_ref_value(n->dir_ref);
    n->entry = index_find(&listing->index, n->parts[n->nparts - 1], entry_name);
    if (!n->entry)
        return -ENOENT;
    switch (n->entry->type) {
    case API_ENTRY_DIR:
        n->kind = NODE_TREE_DIR;
        break;
    case API_ENTRY_LINK:
        n->kind = NODE_TREE_LINK;
        break;
    case API_ENTRY_SUBMODULE:
        n->kind = NODE_TREE_SUBMODULE;
        break;
    default:
        n->kind = n->entry->executable ? NODE_TREE_EXEC : NODE_TREE_FILE;
        break;
    }
    return 0;
}

static int list_dir(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    struct cache_ref *ref;
    (void)path;
    int rc = get_dir(tree, n, n->tree_path, &ref);
    if (rc)
        return rc;
    const struct dir_index *listing = cache_ref_value(ref);
    for (size_t i = 0; i < listing->index.count && rc == 0; i++) {
        const struct api_entry *e = listing->index.items[i];
        struct tree_stat st = {
            .mode = MODE_FILE, .size = (off_t)e->size, .mtime = n->mtime, .immutable = 1};
        if (e->type == API_ENTRY_DIR || e->type == API_ENTRY_SUBMODULE) {
            st.mode = MODE_DIR;
            st.size = 0;
        } else if (e->type == API_ENTRY_LINK) {
            st.mode = MODE_LINK;
        } else if (e->executable) {
            st.mode = MODE_EXEC;
        }
        rc = listing_add(l, e->name, strlen(e->name), &st);
    }
    cache_ref_put(ref);
    return rc;
}

static int list_submodule(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    (void)tree, (void)n, (void)l, (void)path;
    return 0;
}

/*
 * From the listing: a stat fetches nothing. Except for a file kept in LFS,
 * whose listed size may be the pointer's: its size is the content's, known
 * once the content is in the store.
 */
static off_t entry_size(const struct node *n)
{
    return n->entry->lfs ? -1 : (off_t)n->entry->size;
}

static int open_file(struct tree *tree, struct node *n, struct stream **out)
{
    struct blob blob = {BLOB_FILE, n->repo->slug, n->hash, n->tree_path, n->entry->size};
    int rc = blob_open(tree, &blob, out);

    /* A reader going through files not stored (in nowait mode: before waiting for this one). */
    if (rc == -EWOULDBLOCK || (rc == 0 && !stream_stored(*out)))
        readahead_opened(tree, n);
    return rc;
}

/* A symlink in the repository: its target is the content of its blob. */
static int link_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    struct blob blob = {BLOB_FILE, n->repo->slug, n->hash, n->tree_path, n->entry->size};
    int rc = blob_read(tree, &blob, PATH_MAX, &n->scratch, len);
    *data = n->scratch;
    return rc;
}

static const struct node_ops ops[NODE_KIND_COUNT] = {
    [NODE_TREE_DIR] = {.mode = MODE_DIR, .list = list_dir},
    [NODE_TREE_FILE] = {.mode = MODE_FILE, .open = open_file, .size = entry_size},
    [NODE_TREE_EXEC] = {.mode = MODE_EXEC, .open = open_file, .size = entry_size},
    [NODE_TREE_LINK] = {.mode = MODE_LINK, .content = link_content, .size = entry_size},
    [NODE_TREE_SUBMODULE] = {.mode = MODE_DIR, .list = list_submodule},
};

const struct node_ops *source_ops(enum node_kind kind)
{
    return ops[kind].mode ? &ops[kind] : NULL;
}

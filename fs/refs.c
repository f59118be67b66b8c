/*
 * refs.c - a repository's branches/ and tags/ (a ref name with slashes,
 * feature/x, is nested directories, each ref a symlink into commits/) and
 * HEAD, the symlink to the main branch.
 *
 * The kernel keeps symlink targets (FUSE_CAP_CACHE_SYMLINKS), and a ref or
 * HEAD moves: each link's generation names its target, so that a look-up
 * after the move gives the kernel a new inode, and a refresh that finds a
 * link moved says so (tree_report_moved), so that the kernel drops the
 * target it keeps at once.
 */
#include "api/api.h"
#include "fs/cache.h"
#include "fs/node.h"
#include "fs/objects.h"
#include "fs/packs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int get_refs(struct tree *tree, struct node *n)
{
    struct object_id id = {.repo = n->repo->slug};
    if (n->refs_ref)
        return 0;
    return object_get(tree, n->ref_kind == REF_BRANCHES ? OBJECT_BRANCHES : OBJECT_TAGS, &id,
                      &n->refs_ref);
}

/*
 * For one name, git's advertisement (packs.h) will do while the API's listing
 * is not in memory: a walk through HEAD/ then costs no API request.
 */
static int get_refs_for_name(struct tree *tree, struct node *n)
{
    struct object_id id = {.repo = n->repo->slug};
    enum object_kind kind = n->ref_kind == REF_BRANCHES ? OBJECT_BRANCHES : OBJECT_TAGS;
    if (object_peek(tree, kind, &id, &n->refs_ref) == 0)
        return 0;
    int rc = packs_refs(tree, n->repo, n->ref_kind == REF_TAGS, &n->refs_ref);
    return rc == 0 || rc == -EWOULDBLOCK ? rc : get_refs(tree, n);
}

static int has_prefix(const struct api_ref *ref, const char *prefix, size_t len)
{
    return strncmp(ref->name, prefix, len) == 0;
}

int refs_resolve(struct tree *tree, struct node *n)
{
    const char *name = n->parts[2];
    if (strcmp(name, "HEAD") == 0) {
        if (n->nparts != 3 || !n->repo->mainbranch || !names_ref_is_valid(n->repo->mainbranch))
            return -ENOENT;
        n->kind = NODE_HEAD;
        return 0;
    }
    n->ref_kind = name[0] == 'b' ? REF_BRANCHES : REF_TAGS;
    n->ref_prefix = names_join(n->parts, 3, n->nparts);
    if (!n->ref_prefix)
        return -ENOMEM;
    n->kind = NODE_REFS;
    /* branches/ and tags/ themselves exist without asking for their contents. */
    if (n->nparts == 3)
        return 0;
    int rc = get_refs_for_name(tree, n);
    if (rc)
        return rc;
    const struct ref_index *refs = cache_ref_value(n->refs_ref);

    size_t at = index_lower_bound(&refs->index, n->ref_prefix, ref_name);
    const struct api_ref *const *items = (const struct api_ref *const *)refs->index.items;
    if (at < refs->index.count && strcmp(items[at]->name, n->ref_prefix) == 0) {
        n->kind = NODE_REF_LINK;
        n->ref = items[at];
        /* git's refs carry no date */
        n->mtime = (time_t)(n->ref->date ? n->ref->date : n->repo->updated_on);
        return 0;
    }
    /* A directory when some ref name continues with "prefix/". */
    size_t len = strlen(n->ref_prefix);
    for (; at < refs->index.count && has_prefix(items[at], n->ref_prefix, len); at++)
        if (items[at]->name[len] == '/')
            return 0;
    return -ENOENT;
}

/* One "../" per name part climbs back to the repository directory. */
static char *ref_target(const struct api_ref *ref)
{
    size_t depth = 1;
    for (const char *p = ref->name; *p; p++)
        depth += *p == '/';
    char *target = malloc(depth * 3 + sizeof("commits/") + API_HASH_LEN);
    if (!target)
        return NULL;
    char *w = target;
    for (size_t i = 0; i < depth; i++, w += 3)
        memcpy(w, "../", 3);
    sprintf(w, "commits/%s", ref->target);
    return target;
}

static uint64_t ref_link_generation(const struct node *n)
{
    return node_generation(n->ref->target);
}

static uint64_t head_generation(const struct node *n)
{
    return node_generation(n->repo->mainbranch);
}

static int ref_link_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    (void)tree;
    n->scratch = ref_target(n->ref);
    return node_printed(n, n->scratch ? 0 : -1, data, len);
}

static int head_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    (void)tree;
    return node_printed(n, asprintf(&n->scratch, "branches/%s", n->repo->mainbranch), data, len);
}

/* The names one level below ref_prefix: links, and directories for longer names. */
static int list_refs(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    (void)path;
    int rc = get_refs(tree, n);
    if (rc)
        return rc;
    const struct ref_index *refs = cache_ref_value(n->refs_ref);
    size_t plen = strlen(n->ref_prefix), at = 0, last_dir_len = 0;
    const char *last_dir = NULL;

    if (plen) {
        /* Names below "prefix/": a contiguous run in strcmp order. */
        char *key;
        if (asprintf(&key, "%s/", n->ref_prefix) < 0)
            return -ENOMEM;
        at = index_lower_bound(&refs->index, key, ref_name);
        free(key);
        plen++;
    }
    for (; at < refs->index.count; at++) {
        const struct api_ref *ref = refs->index.items[at];
        if (plen &&
            (strncmp(ref->name, n->ref_prefix, plen - 1) != 0 || ref->name[plen - 1] != '/'))
            break;
        const char *rest = ref->name + plen, *slash = strchr(rest, '/');
        size_t len = slash ? (size_t)(slash - rest) : strlen(rest);
        struct tree_stat st = {.mode = MODE_DIR, .mtime = (time_t)n->repo->updated_on};
        if (slash) {
            if (last_dir && last_dir_len == len && strncmp(last_dir, rest, len) == 0)
                continue;
            last_dir = rest;
            last_dir_len = len;
        } else {
            char *target = ref_target(ref);
            if (!target)
                return -ENOMEM;
            st.mode = MODE_LINK;
            st.size = (off_t)strlen(target);
            st.mtime = (time_t)ref->date;
            free(target);
        }
        if ((rc = listing_add(l, rest, len, &st)))
            return rc;
    }
    return 0;
}

static const struct node_ops ops[NODE_KIND_COUNT] = {
    [NODE_HEAD] = {.mode = MODE_LINK, .content = head_content, .generation = head_generation},
    [NODE_REFS] = {.mode = MODE_DIR, .list = list_refs},
    [NODE_REF_LINK] = {.mode = MODE_LINK,
                       .content = ref_link_content,
                       .generation = ref_link_generation},
};

/* ---- what a refresh moved --------------------------------------------------- */

static void report_path(struct tree *tree, const char *repo, const char *what, const char *name)
{
    char *path;
    if (asprintf(&path, "%s/%s/%s%s%s", tree->workspace, repo, what, name ? "/" : "",
                 name ? name : "") < 0)
        return;
    tree_report_moved(tree, path);
    free(path);
}

void refs_report_moved(struct tree *tree, const char *repo, const char *what,
                       const struct name_index *before, const struct name_index *after)
{
    size_t i = 0, j = 0;

    /* both in strcmp order of their names: one pass finds the names in both */
    while (i < before->count && j < after->count) {
        const struct api_ref *b = before->items[i], *a = after->items[j];
        int c = strcmp(b->name, a->name);
        if (c == 0 && strcmp(b->target, a->target) != 0)
            report_path(tree, repo, what, a->name);
        i += c <= 0;
        j += c >= 0;
    }
}

static int same_branch(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

void refs_report_head(struct tree *tree, const struct api_repo *before,
                      const struct api_repo *after)
{
    if (!same_branch(before->mainbranch, after->mainbranch))
        report_path(tree, after->slug, "HEAD", NULL);
}

void refs_report_heads(struct tree *tree, const struct name_index *before,
                       const struct name_index *after)
{
    size_t i = 0, j = 0;

    while (i < before->count && j < after->count) {
        const struct api_repo *b = before->items[i], *a = after->items[j];
        int c = strcmp(b->slug, a->slug);
        if (c == 0)
            refs_report_head(tree, b, a);
        i += c <= 0;
        j += c >= 0;
    }
}

const struct node_ops *refs_ops(enum node_kind kind)
{
    return ops[kind].mode ? &ops[kind] : NULL;
}

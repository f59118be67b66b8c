/*
 * commits.c - a repository's commits/: the newest commits of its main
 * branch, any other one by its full hash, and in each commit's directory
 * commit.json, message, parents/ (links to the parents), diff (against the
 * first parent, kept in the store) and tree/ (source.c).
 */
#include "api/api.h"
#include "fs/blobs.h"
#include "fs/cache.h"
#include "fs/node.h"
#include "fs/objects.h"
#include "fs/packs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct api_commit *node_commit(const struct node *n)
{
    return cache_ref_value(n->commit_ref);
}

/* Whether hash is among the listed commits, and then its date. */
static int is_listed(struct tree *tree, const struct node *n, time_t *date)
{
    struct object_id id = {.repo = n->repo->slug, .revision = n->repo->mainbranch};
    struct cache_ref *ref;
    int listed = 0;
    if (!n->repo->mainbranch || object_get(tree, OBJECT_COMMITS, &id, &ref) != 0)
        return 0;
    const struct api_commit_list *list = cache_ref_value(ref);
    for (size_t i = 0; i < list->count && !listed; i++)
        if (strcmp(list->items[i].hash, n->hash) == 0) {
            *date = (time_t)list->items[i].date;
            listed = 1;
        }
    cache_ref_put(ref);
    return listed;
}

/* HASH/NAME and HASH/parents/PARENT, with the commit at hand. */
static int resolve_child(struct tree *tree, struct node *n)
{
    static const struct named_kind files[] = {
        {"diff", NODE_DIFF},
        {"commit.json", NODE_COMMIT_JSON},
        {"message", NODE_MESSAGE},
        {"parents", NODE_PARENTS},
    };
    const struct api_commit *commit = node_commit(n);
    const char *name = n->parts[4];
    if (strcmp(name, "tree") == 0)
        return source_resolve(tree, n);
    if (n->nparts == 5)
        return node_kind_named(n, files, sizeof(files) / sizeof(files[0]), name);
    if (n->nparts == 6 && strcmp(name, "parents") == 0) {
        for (size_t i = 0; i < commit->parent_count; i++)
            if (strcmp(commit->parents[i], n->parts[5]) == 0) {
                n->kind = NODE_PARENT_LINK;
                n->parent = n->parts[5];
                return 0;
            }
    }
    return -ENOENT;
}

int commits_resolve(struct tree *tree, struct node *n)
{
    n->kind = NODE_COMMITS;
    if (n->nparts == 3)
        return 0;
    n->hash = n->parts[3];
    if (!api_is_full_hash(n->hash))
        return -ENOENT;
    n->kind = NODE_COMMIT;
    /* A commit whose tree git brought needs no request for its date, nor its tree/. */
    int64_t date;
    int rc = n->nparts == 4 || strcmp(n->parts[4], "tree") == 0
                 ? packs_commit_date(tree, n->repo, n->hash, &date)
                 : -ENODATA;
    if (rc == -EWOULDBLOCK)
        return rc;
    if (rc == 0) {
        n->mtime = (time_t)date;
        return n->nparts == 4 ? 0 : source_resolve(tree, n);
    }
    /* The directory itself: a listed commit needs no request of its own. */
    if (n->nparts == 4 && is_listed(tree, n, &n->mtime))
        return 0;
    struct object_id id = {.repo = n->repo->slug, .revision = n->hash};
    rc = object_get(tree, OBJECT_COMMIT, &id, &n->commit_ref);
    if (rc)
        return rc;
    n->mtime = (time_t)node_commit(n)->date;
    return n->nparts == 4 ? 0 : resolve_child(tree, n);
}

static int list_commits(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    struct object_id id = {.repo = n->repo->slug, .revision = n->repo->mainbranch};
    struct cache_ref *ref;
    (void)path;
    if (!n->repo->mainbranch)
        return 0;
    int rc = object_get(tree, OBJECT_COMMITS, &id, &ref);
    if (rc == -ENOENT)
        return 0; /* the main branch is gone: nothing to list */
    if (rc)
        return rc;
    const struct api_commit_list *list = cache_ref_value(ref);
    for (size_t i = 0; i < list->count && rc == 0; i++) {
        struct tree_stat st = {
            .mode = MODE_DIR, .mtime = (time_t)list->items[i].date, .immutable = 1};
        rc = listing_add(l, list->items[i].hash, strlen(list->items[i].hash), &st);
    }
    cache_ref_put(ref);
    return rc;
}

/* Fixed modes: a plain ls of a commit must not fetch its diff for a size. */
static int list_commit(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    static const struct fixed_child children[] = {
        {"commit.json", MODE_FILE}, {"message", MODE_FILE}, {"parents", MODE_DIR},
        {"diff", MODE_FILE},        {"tree", MODE_DIR},
    };
    const struct tree_stat st = {.immutable = 1};
    (void)tree, (void)n, (void)path;
    return listing_add_fixed(l, children, sizeof(children) / sizeof(children[0]), &st);
}

static int list_parents(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    const struct api_commit *commit = node_commit(n);
    int rc = 0;
    for (size_t i = 0; i < commit->parent_count && rc == 0; i++)
        rc = listing_add_child(tree, l, path, commit->parents[i]);
    return rc;
}

static int commit_json_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    (void)tree;
    return node_doc(&node_commit(n)->doc, data, len);
}

static int message_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    (void)tree;
    *data = node_commit(n)->message ? node_commit(n)->message : "";
    *len = strlen(*data);
    return 0;
}

static int parent_link_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    (void)tree;
    return node_printed(n, asprintf(&n->scratch, "../../%s", n->parent), data, len);
}

static int open_diff(struct tree *tree, struct node *n, struct stream **out)
{
    struct blob blob = {BLOB_DIFF, n->repo->slug, n->hash, NULL, 0};
    return blob_open(tree, &blob, out);
}

static char *commit_html_url(const struct tree *tree, const struct node *n)
{
    char *repo_url = workspace_repo_url(tree, n->repo), *url;
    if (!repo_url)
        return NULL;
    if (asprintf(&url, "%s/commits/%s", repo_url, n->hash) < 0)
        url = NULL;
    free(repo_url);
    return url;
}

static const struct node_ops ops[NODE_KIND_COUNT] = {
    [NODE_COMMITS] = {.mode = MODE_DIR, .list = list_commits},
    [NODE_COMMIT] = {.mode = MODE_DIR, .list = list_commit, .html_url = commit_html_url},
    [NODE_COMMIT_JSON] = {.mode = MODE_FILE, .content = commit_json_content},
    [NODE_MESSAGE] = {.mode = MODE_FILE, .content = message_content},
    [NODE_PARENTS] = {.mode = MODE_DIR, .list = list_parents},
    [NODE_PARENT_LINK] = {.mode = MODE_LINK, .content = parent_link_content},
    [NODE_DIFF] = {.mode = MODE_FILE, .open = open_diff},
};

const struct node_ops *commits_ops(enum node_kind kind)
{
    return ops[kind].mode ? &ops[kind] : NULL;
}

/*
 * pullrequests.c - a repository's pullrequests/: the open pull requests from
 * the listing, any other one by its id, each a directory of pullrequest.json,
 * title, description, state, source and destination (links into commits/),
 * diff (kept in the store) and comments.json.
 */
#include "api/api.h"
#include "fs/blobs.h"
#include "fs/cache.h"
#include "fs/node.h"
#include "fs/objects.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a pull request's source and destination links hold, before the full hash. */
#define PR_LINK_PREFIX "../../commits/"

/* A pull request id as a name: decimal digits, no leading zero, at most 19 of them. */
static int is_pr_id(const char *s)
{
    size_t n = strspn(s, "0123456789");
    return n > 0 && n <= 19 && s[n] == '\0' && s[0] != '0';
}

static const struct api_pullrequest *find_pr(const struct api_pullrequest_list *list, uint64_t id)
{
    size_t lo = 0, hi = list->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (list->items[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < list->count && list->items[lo].id == id ? &list->items[lo] : NULL;
}

/* An open one from the listing, any other asked for alone. */
static int find_pullrequest(struct tree *tree, struct node *n, uint64_t number)
{
    struct object_id id = {.repo = n->repo->slug, .number = number};
    int rc = object_get(tree, OBJECT_PULLREQUESTS, &id, &n->pr_ref);
    if (rc)
        return rc;
    n->pr = find_pr(cache_ref_value(n->pr_ref), number);
    if (n->pr)
        return 0;
    cache_ref_put(n->pr_ref);
    n->pr_ref = NULL;
    rc = object_get(tree, OBJECT_PULLREQUEST, &id, &n->pr_ref);
    n->pr = rc ? NULL : cache_ref_value(n->pr_ref);
    return rc;
}

/* REPO/pullrequests[/ID[/CHILD]] */
int pullrequests_resolve(struct tree *tree, struct node *n)
{
    static const struct named_kind children[] = {
        {"pullrequest.json", NODE_PR_JSON},
        {"title", NODE_PR_TITLE},
        {"description", NODE_PR_DESCRIPTION},
        {"state", NODE_PR_STATE},
        {"source", NODE_PR_LINK},
        {"destination", NODE_PR_LINK},
        {"diff", NODE_PR_DIFF},
        {"comments.json", NODE_PR_COMMENTS},
    };
    n->kind = NODE_PRS;
    if (n->nparts == 3)
        return 0;
    const char *id = n->parts[3];
    if (n->nparts > 5 || !is_pr_id(id))
        return -ENOENT;
    int rc = find_pullrequest(tree, n, strtoull(id, NULL, 10));
    if (rc)
        return rc;
    n->kind = NODE_PR;
    n->mtime = (time_t)n->pr->updated_on;
    if (n->nparts == 4)
        return 0;
    rc = node_kind_named(n, children, sizeof(children) / sizeof(children[0]), n->parts[4]);
    if (rc || n->kind != NODE_PR_LINK)
        return rc;
    n->pr_hash = n->parts[4][0] == 's' ? n->pr->source : n->pr->destination;
    return n->pr_hash[0] ? 0 : -ENOENT; /* the API did not say */
}

static int list_pullrequests(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    struct object_id id = {.repo = n->repo->slug};
    struct cache_ref *ref;
    (void)path;
    int rc = object_get(tree, OBJECT_PULLREQUESTS, &id, &ref);
    if (rc)
        return rc;
    const struct api_pullrequest_list *list = cache_ref_value(ref);
    for (size_t i = 0; i < list->count && rc == 0; i++) {
        char number[24];
        struct tree_stat st = {.mode = MODE_DIR, .mtime = (time_t)list->items[i].updated_on};
        int len = snprintf(number, sizeof(number), "%" PRIu64, list->items[i].id);
        rc = listing_add(l, number, (size_t)len, &st);
    }
    cache_ref_put(ref);
    return rc;
}

/* Fixed modes: a plain ls of a pull request must not fetch its diff or comments. */
static int list_pullrequest(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    static const struct fixed_child children[] = {
        {"pullrequest.json", MODE_FILE},
        {"title", MODE_FILE},
        {"description", MODE_FILE},
        {"state", MODE_FILE},
        {"source", MODE_LINK},
        {"destination", MODE_LINK},
        {"diff", MODE_FILE},
        {"comments.json", MODE_FILE},
    };
    const struct tree_stat st = {.mtime = (time_t)n->pr->updated_on};
    int rc = 0;
    (void)tree, (void)path;
    for (size_t i = 0; i < sizeof(children) / sizeof(children[0]) && rc == 0; i++) {
        const char *name = children[i].name;
        if ((strcmp(name, "source") == 0 && !n->pr->source[0]) ||
            (strcmp(name, "destination") == 0 && !n->pr->destination[0]))
            continue;
        rc = listing_add_fixed(l, &children[i], 1, &st);
    }
    return rc;
}

static int json_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    (void)tree;
    return node_doc(&n->pr->doc, data, len);
}

/* title, description, state: the API's string and a newline. */
static int text_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    const char *text = n->kind == NODE_PR_TITLE         ? n->pr->title
                       : n->kind == NODE_PR_DESCRIPTION ? n->pr->description
                                                        : n->pr->state;
    (void)tree;
    return node_printed(n, asprintf(&n->scratch, "%s\n", text), data, len);
}

/* The API abbreviates the hashes: the link's target has the full one. */
static int link_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    struct object_id id = {.repo = n->repo->slug, .revision = n->pr_hash};
    struct cache_ref *full;
    int rc = object_get(tree, OBJECT_FULL_HASH, &id, &full);
    if (rc)
        return rc;
    int printed =
        asprintf(&n->scratch, "%s%s", PR_LINK_PREFIX, (const char *)cache_ref_value(full));
    cache_ref_put(full);
    return node_printed(n, printed, data, len);
}

/* Its length is known before the abbreviated hash is expanded. */
static off_t link_size(const struct node *n)
{
    (void)n;
    return (off_t)(strlen(PR_LINK_PREFIX) + API_HASH_LEN);
}

/* A pull request's source or destination moves: the kernel keeps link targets (refs.c). */
static uint64_t link_generation(const struct node *n)
{
    return node_generation(n->pr_hash);
}

static int open_diff(struct tree *tree, struct node *n, struct stream **out)
{
    return blob_open_pr_diff(tree, n->repo->slug, n->pr, out);
}

static int comments_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    struct object_id id = {.repo = n->repo->slug, .number = n->pr->id};
    int rc = object_get(tree, OBJECT_COMMENTS, &id, &n->comments_ref);
    return rc ? rc : node_doc(cache_ref_value(n->comments_ref), data, len);
}

static const struct node_ops ops[NODE_KIND_COUNT] = {
    [NODE_PRS] = {.mode = MODE_DIR, .list = list_pullrequests},
    [NODE_PR] = {.mode = MODE_DIR, .list = list_pullrequest},
    [NODE_PR_JSON] = {.mode = MODE_FILE, .content = json_content},
    [NODE_PR_TITLE] = {.mode = MODE_FILE, .content = text_content},
    [NODE_PR_DESCRIPTION] = {.mode = MODE_FILE, .content = text_content},
    [NODE_PR_STATE] = {.mode = MODE_FILE, .content = text_content},
    [NODE_PR_LINK] = {.mode = MODE_LINK,
                      .content = link_content,
                      .size = link_size,
                      .generation = link_generation},
    [NODE_PR_DIFF] = {.mode = MODE_FILE, .open = open_diff},
    [NODE_PR_COMMENTS] = {.mode = MODE_FILE, .content = comments_content},
};

const struct node_ops *pullrequests_ops(enum node_kind kind)
{
    return ops[kind].mode ? &ops[kind] : NULL;
}

/*
 * workspace.c - the root, the workspace directory and what it holds:
 * workspace.json and project.json, the repositories (found in the listing,
 * or asked for alone), each repository's directory with its generated files
 * (repository.json, description, clone-url) and its web page as the
 * user.bitbucket.html_url attribute.
 */
#include "api/api.h"
#include "fs/cache.h"
#include "fs/node.h"
#include "fs/objects.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The repository called name in the listing of the mount's repositories. */
static int find_in_listing(struct tree *tree, struct node *n, const char *name)
{
    const struct object_id none = {0};
    int rc = n->repos_ref ? 0 : object_get(tree, OBJECT_REPOS, &none, &n->repos_ref);
    if (rc)
        return rc;
    const struct repo_index *repos = cache_ref_value(n->repos_ref);
    n->repo = index_find(&repos->index, name, repo_slug);
    return n->repo ? 0 : -ENOENT;
}

/*
 * The repository called name: from the listing when it is at hand (in
 * memory, or stored and fresh; offline, stored at all), else asked for
 * alone. In a workspace of thousands of repositories, going straight to one
 * costs one request rather than every page of the listing; a name that is
 * not there (a shell probing .git) costs one request, then is remembered for
 * ttl. Two exceptions: with ttl=0 a stored listing is revalidated instead
 * (once for every look-up of the same second, where asking for each
 * repository alone would cost a request per name), and when the repository
 * cannot be had alone (the API is down, or offline it was never asked for
 * alone) the listing serves what it holds, stale or not.
 */
static int find_repo(struct tree *tree, struct node *n, const char *name)
{
    struct object_id id = {.repo = name};
    /*
     * Every request resolves its path anew: what is in memory is asked first,
     * so that looking at the stored listing (a read of the disk) is done only
     * when a repository is first reached.
     */
    int rc = object_peek(tree, OBJECT_REPO, &id, &n->repo_ref);
    if (rc == 0)
        n->repo = cache_ref_value(n->repo_ref);
    if (rc != -EAGAIN)
        return rc; /* known, or known not to be there */
    if (object_peek(tree, OBJECT_REPOS, &id, &n->repos_ref) == 0 ||
        api_repos_are_stored(tree->api, tree->workspace, tree->project, tree->ttl == 0))
        return find_in_listing(tree, n, name);
    rc = object_get(tree, OBJECT_REPO, &id, &n->repo_ref);
    if (rc == -EIO && api_repos_are_stored(tree->api, tree->workspace, tree->project, 1))
        return find_in_listing(tree, n, name);
    if (rc)
        return rc;
    n->repo = cache_ref_value(n->repo_ref);
    return 0;
}

int workspace_resolve(struct tree *tree, struct node *n)
{
    const struct object_id none = {0};
    if (n->nparts == 1) {
        n->kind = NODE_WORKSPACE;
        return 0;
    }
    const char *name = n->parts[1];
    if (n->nparts == 2 &&
        (strcmp(name, WORKSPACE_JSON) == 0 || (tree->project && strcmp(name, PROJECT_JSON) == 0))) {
        n->kind = NODE_DOC;
        return object_get(tree, name[0] == 'w' ? OBJECT_WORKSPACE : OBJECT_PROJECT, &none,
                          &n->doc_ref);
    }
    int rc = find_repo(tree, n, name);
    if (rc)
        return rc;
    n->kind = NODE_REPO;
    n->mtime = (time_t)n->repo->updated_on;
    return 0;
}

int workspace_resolve_file(struct tree *tree, struct node *n)
{
    static const struct named_kind files[] = {
        {"repository.json", NODE_REPO_JSON},
        {"description", NODE_DESCRIPTION},
        {"clone-url", NODE_CLONE_URL},
    };
    (void)tree;
    if (n->nparts != 3)
        return -ENOENT;
    return node_kind_named(n, files, sizeof(files) / sizeof(files[0]), n->parts[2]);
}

char *workspace_repo_url(const struct tree *tree, const struct api_repo *repo)
{
    char *url;
    if (repo->html_url && strncmp(repo->html_url, "https://", 8) == 0)
        return strdup(repo->html_url);
    if (asprintf(&url, "https://bitbucket.org/%s/%s", tree->workspace, repo->slug) < 0)
        return NULL;
    return url;
}

static char *repo_html_url(const struct tree *tree, const struct node *n)
{
    return workspace_repo_url(tree, n->repo);
}

/* ---- listings ---------------------------------------------------------- */

static int list_root(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    (void)n;
    int rc = listing_add_child(tree, l, path, tree->workspace);
    return rc ? rc : listing_add_child(tree, l, path, BBFS_DIR);
}

static int list_workspace(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    static const struct {
        const char *name;
        enum object_kind kind;
    } docs[] = {{WORKSPACE_JSON, OBJECT_WORKSPACE}, {PROJECT_JSON, OBJECT_PROJECT}};
    const struct object_id none = {0};
    /* The repositories first: when the API is down, one timeout, not three. */
    int rc = object_get(tree, OBJECT_REPOS, &none, &n->repos_ref);
    if (rc)
        return rc;
    /* The documents are optional: a token may not read them. */
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        struct cache_ref *doc;
        if (docs[i].kind == OBJECT_PROJECT && !tree->project)
            continue;
        rc = object_get(tree, docs[i].kind, &none, &doc);
        if (rc == -EWOULDBLOCK || rc == -EINTR)
            return rc; /* asked again where it may wait */
        if (rc)
            continue;
        cache_ref_put(doc);
        if ((rc = listing_add_child(tree, l, path, docs[i].name)))
            return rc;
    }
    const struct repo_index *repos = cache_ref_value(n->repos_ref);
    for (size_t i = 0; i < repos->index.count; i++) {
        const struct api_repo *repo = repos->index.items[i];
        struct tree_stat st = {.mode = MODE_DIR, .mtime = (time_t)repo->updated_on};
        if ((rc = listing_add(l, repo->slug, strlen(repo->slug), &st)))
            return rc;
    }
    return 0;
}

static int list_repo(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    static const char *const children[] = {
        "repository.json", "description", "clone-url", "HEAD",
        "branches",        "tags",        "commits",   "pullrequests"};
    int rc = 0;
    (void)n;
    for (size_t i = 0; i < sizeof(children) / sizeof(children[0]) && rc == 0; i++)
        rc = listing_add_child(tree, l, path, children[i]);
    return rc;
}

/* ---- contents ----------------------------------------------------------- */

static int doc_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    (void)tree;
    return node_doc(cache_ref_value(n->doc_ref), data, len);
}

static int repo_json_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    (void)tree;
    return node_doc(&n->repo->doc, data, len);
}

static int description_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    (void)tree;
    const char *text = n->repo->description ? n->repo->description : "";
    return node_printed(n, asprintf(&n->scratch, "%s\n", text), data, len);
}

static int clone_url_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    return node_printed(n,
                        asprintf(&n->scratch, "https://x-token-auth@bitbucket.org/%s/%s.git\n",
                                 tree->workspace, n->repo->slug),
                        data, len);
}

static const struct node_ops ops[NODE_KIND_COUNT] = {
    [NODE_ROOT] = {.mode = MODE_DIR, .list = list_root},
    [NODE_WORKSPACE] = {.mode = MODE_DIR, .list = list_workspace},
    [NODE_DOC] = {.mode = MODE_FILE, .content = doc_content},
    [NODE_REPO] = {.mode = MODE_DIR, .list = list_repo, .html_url = repo_html_url},
    [NODE_REPO_JSON] = {.mode = MODE_FILE, .content = repo_json_content},
    [NODE_DESCRIPTION] = {.mode = MODE_FILE, .content = description_content},
    [NODE_CLONE_URL] = {.mode = MODE_FILE, .content = clone_url_content},
};

const struct node_ops *workspace_ops(enum node_kind kind)
{
    return ops[kind].mode ? &ops[kind] : NULL;
}

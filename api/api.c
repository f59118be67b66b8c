/*
 * api.c - the workspace, project, repository, ref and commit calls of api.h
 * (the client and its requests: client.c; listings: walk.c).
 */
#include "api/api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/client.h"
#include "api/log.h"
#include "api/parse.h"
#include "api/stored.h"
#include "api/url.h"
#include "api/walk.h"

/* ---- workspace, project, access check ---- */

int api_get_workspace(struct api_client *client, const char *workspace, struct api_doc *out)
{
    struct buf u;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    url_init(&u, client->base);
    url_add_segment(&u, "workspaces");
    url_add_segment(&u, workspace);
    url = client_url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = client_get_doc(client, API_KIND_WORKSPACE, url, out);
    free(url);
    return rc;
}

static char *project_url(struct api_client *c, const char *workspace, const char *key, int *rc)
{
    struct buf u;

    url_init(&u, c->base);
    url_add_segment(&u, "workspaces");
    url_add_segment(&u, workspace);
    url_add_segment(&u, "projects");
    url_add_segment(&u, key);
    return client_url_finish(&u, rc);
}

int api_get_project(struct api_client *client, const char *workspace, const char *project_key,
                    struct api_doc *out)
{
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    url = project_url(client, workspace, project_key, &rc);
    if (!url)
        return rc;
    rc = client_get_doc(client, API_KIND_PROJECT, url, out);
    free(url);
    return rc;
}

/*
 * 1 when a successful check answer looks like the Bitbucket API's (an
 * object; a page with a values array for a repository listing), so that a
 * wrong api_url fails here rather than on every later call. Silent: the
 * caller writes the one error line.
 */
static int looks_like_api(const char *body, size_t len, int project)
{
    json_error_t jerr;
    json_t *root;
    int ok;

    root = json_loadb(body ? body : "", len, PARSE_JSON_FLAGS, &jerr);
    ok = json_is_object(root) && (project || json_is_array(json_object_get(root, "values")));
    json_decref(root);
    return ok;
}

int api_check_access(struct api_client *client, const char *workspace, const char *project_key,
                     char *errbuf, size_t errlen)
{
    struct http_response resp;
    struct buf u;
    char *url = NULL;
    const char *sep;
    int rc;

    memset(&resp, 0, sizeof(resp));
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!workspace || !*workspace) {
        log_format_line(errbuf, errlen, "no workspace given");
        return -EINVAL;
    }
    if (project_key) {
        url = project_url(client, workspace, project_key, &rc);
    } else {
        client_url_repo(&u, client, workspace, NULL);
        url_add_query(&u, "pagelen", "1");
        url = client_url_finish(&u, &rc);
    }
    if (!url) {
        if (rc == -EINVAL && project_key)
            log_format_line(errbuf, errlen, "invalid workspace '%s' or project '%s'", workspace,
                            project_key);
        else if (rc == -EINVAL)
            log_format_line(errbuf, errlen, "invalid workspace '%s'", workspace);
        else
            log_format_line(errbuf, errlen, "out of memory");
        return rc;
    }
    client_count(&client->by_kind[API_KIND_ACCESS]);
    rc = http_get(client->http, url, NULL, HTTP_MAX_JSON, HTTP_QUIET, &resp);
    sep = resp.message[0] ? ": " : "";
    if (rc == 0 && !looks_like_api(resp.body, resp.len, project_key != NULL)) {
        log_format_line(errbuf, errlen, "unexpected answer from %s: not the Bitbucket API",
                        client->base);
        rc = -EIO;
    } else if (rc == 0) {
        /* fine */
    } else if (resp.transport || resp.status == 0) {
        log_format_line(errbuf, errlen, "cannot reach %s: %s", client->base, resp.message);
    } else if (resp.status == 401) {
        log_format_line(errbuf, errlen, "token rejected by %s (HTTP 401)%s%s", client->base, sep,
                        resp.message);
    } else if (rc == -EACCES) {
        log_format_line(errbuf, errlen, "access to workspace '%s'%s%s%s denied (HTTP %ld)%s%s",
                        workspace, project_key ? " or project '" : "",
                        project_key ? project_key : "", project_key ? "'" : "", resp.status, sep,
                        resp.message);
    } else if (rc == -ENOENT && project_key) {
        log_format_line(errbuf, errlen, "workspace '%s' or project '%s' not found (HTTP %ld)",
                        workspace, project_key, resp.status);
    } else if (rc == -ENOENT) {
        log_format_line(errbuf, errlen, "workspace '%s' not found (HTTP %ld)", workspace,
                        resp.status);
    } else {
        log_format_line(errbuf, errlen, "unexpected answer from %s (HTTP %ld)%s%s", client->base,
                        resp.status, sep, resp.message);
    }
    http_response_release(&resp);
    free(url);
    return rc;
}

/* ---- repositories ---- */

void api_repo_list_release(struct api_repo_list *list)
{
    size_t i;

    if (!list)
        return;
    for (i = 0; i < list->count; i++)
        parse_repo_release(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static int repo_from(json_t *item, void *out, const void *arg)
{
    (void)arg;
    return parse_repo(item, out);
}

/* Sort keys for de-duplication: entries remember where they came from. */
struct repo_key {
    const char *uuid;
    size_t index;
};

static int cmp_repo_key(const void *a, const void *b)
{
    const struct repo_key *x = a, *y = b;
    int c = strcmp(x->uuid, y->uuid);

    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int cmp_repo_slug(const void *a, const void *b)
{
    const struct api_repo *x = a, *y = b;
    int c = strcmp(x->slug, y->slug);

    return c ? c : strcmp(x->uuid, y->uuid);
}

/*
 * Pages of an unstable order can repeat an entry: keep the first of each
 * uuid, then sort by slug, and keep the first of two entries with one slug
 * (a rename between two pages) so that names stay unique.
 */
static int repos_dedupe_sort(struct api_repo_list *list)
{
    struct repo_key *keys;
    unsigned char *drop;
    size_t i, n = list->count, kept;

    if (n == 0)
        return 0;
    keys = calloc(n, sizeof(*keys));
    drop = calloc(n, 1);
    if (!keys || !drop) {
        free(keys);
        free(drop);
        return -ENOMEM;
    }
    for (i = 0; i < n; i++) {
        keys[i].uuid = list->items[i].uuid;
        keys[i].index = i;
    }
    qsort(keys, n, sizeof(*keys), cmp_repo_key);
    for (i = 1; i < n; i++) {
        if (keys[i].uuid[0] && strcmp(keys[i].uuid, keys[i - 1].uuid) == 0)
            drop[keys[i].index] = 1;
    }
    for (i = 0, kept = 0; i < n; i++) {
        if (drop[i])
            parse_repo_release(&list->items[i]);
        else
            list->items[kept++] = list->items[i];
    }
    free(keys);
    free(drop);
    qsort(list->items, kept, sizeof(*list->items), cmp_repo_slug);
    n = kept;
    for (i = 1, kept = n ? 1 : 0; i < n; i++) {
        if (strcmp(list->items[i].slug, list->items[kept - 1].slug) == 0) {
            log_once(LOG_LEVEL_WARN, "api:repo-duplicate-slug",
                     "duplicate repository slug with another uuid; keeping the first");
            parse_repo_release(&list->items[i]);
        } else {
            list->items[kept++] = list->items[i];
        }
    }
    list->count = kept;
    return 0;
}

/* The first page's URL of the repositories of workspace (in project_key when not NULL). */
static char *repos_url(struct api_client *client, const char *workspace, const char *project_key,
                       int *rc)
{
    struct buf u, qb;
    char *q = NULL;

    client_url_repo(&u, client, workspace, NULL);
    url_add_query(&u, "pagelen", "100");
    url_add_query(&u, "sort", "slug");
    if (project_key) {
        /* BBQL string literal: a key never holds '"' or '\', refuse one that does */
        if (strpbrk(project_key, "\"\\")) {
            buf_release(&u);
            *rc = -EINVAL;
            return NULL;
        }
        buf_init(&qb, 4096);
        buf_appends(&qb, "project.key=\"");
        buf_appends(&qb, project_key);
        buf_appends(&qb, "\"");
        q = buf_take(&qb, NULL);
        if (!q) {
            buf_release(&u);
            *rc = qb.err == -ENOMEM ? -ENOMEM : -EINVAL;
            return NULL;
        }
        url_add_query(&u, "q", q);
        free(q);
    }
    return client_url_finish(&u, rc);
}

int api_repos_are_stored(struct api_client *client, const char *workspace, const char *project_key,
                         int any_age)
{
    int rc;
    char *url = repos_url(client, workspace, project_key, &rc);
    int stored = url && stored_is_usable(client, url, any_age);
    free(url);
    return stored;
}

struct repo_args {
    const char *url;
    struct api_repo *out;
};

/*
 * The repository object. One without a usable slug is a bad answer (-EIO),
 * and like any failure of parse_repo (-ENOMEM) leaves nothing to keep.
 */
static int repo_object_from(json_t *root, void *ctx)
{
    struct repo_args *args = ctx;
    int rc = parse_repo(root, args->out);

    if (rc == -EINVAL) {
        client_log_bad_json(args->url, "a repository without a usable slug");
        rc = -EIO;
    }
    return rc;
}

int api_get_repo(struct api_client *client, const char *workspace, const char *slug,
                 struct api_repo *out)
{
    struct repo_args args = {NULL, out};
    struct buf u;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    client_url_repo(&u, client, workspace, slug);
    url = client_url_finish(&u, &rc);
    if (!url)
        return rc;
    args.url = url;
    rc = client_get_object(client, API_KIND_REPOS, url, repo_object_from, &args,
                           &out->doc.fetched_at);
    free(url);
    if (rc == 0 && strcmp(out->slug, slug) != 0) {
        /* an answer about another repository (a rename redirects) is not this one */
        api_repo_release(out);
        rc = -ENOENT;
    }
    return rc;
}

void api_repo_release(struct api_repo *repo)
{
    parse_repo_release(repo);
}

int api_list_repos(struct api_client *client, const char *workspace, const char *project_key,
                   struct api_repo_list *out)
{
    struct collector acc = {.parse = repo_from,
                            .elem = sizeof(*out->items),
                            .skip_key = "api:repo-without-slug",
                            .skip_message = "ignoring a repository entry without a usable slug"};
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    url = repos_url(client, workspace, project_key, &rc);
    if (!url)
        return rc;
    rc = walk_pages(client, API_KIND_REPOS, url, walk_collect, &acc, &out->fetched_at);
    out->items = acc.items;
    out->count = acc.count;
    if (rc == 0)
        rc = repos_dedupe_sort(out);
    if (rc < 0)
        api_repo_list_release(out);
    free(url);
    return rc;
}

/* ---- branches and tags ---- */

void api_ref_list_release(struct api_ref_list *list)
{
    size_t i;

    if (!list)
        return;
    for (i = 0; i < list->count; i++)
        parse_ref_release(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static int ref_from(json_t *item, void *out, const void *arg)
{
    (void)arg;
    return parse_ref(item, out);
}

static int cmp_ref_name(const void *a, const void *b)
{
    const struct api_ref *x = a, *y = b;

    return strcmp(x->name, y->name);
}

static int list_refs(struct api_client *c, const char *workspace, const char *repo,
                     enum api_kind kind, struct api_ref_list *out)
{
    struct collector acc = {.parse = ref_from,
                            .elem = sizeof(*out->items),
                            .skip_key = "api:ref-without-hash",
                            .skip_message =
                                "ignoring a branch or tag without a name or a full commit hash"};
    struct buf u;
    size_t i, kept;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    client_url_repo(&u, c, workspace, repo);
    url_add_segment(&u, "refs");
    url_add_segment(&u, kind == API_KIND_TAGS ? "tags" : "branches");
    url_add_query(&u, "pagelen", "100");
    url_add_query(&u, "sort", "name");
    /* include-only mode: next must be named or the pagination link is dropped */
    url_add_query(&u, "fields",
                  "size,page,pagelen,next,values.name,values.target.hash,values.target.date");
    url = client_url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = walk_pages(c, kind, url, walk_collect, &acc, &out->fetched_at);
    out->items = acc.items;
    out->count = acc.count;
    free(url);
    if (rc < 0) {
        api_ref_list_release(out);
        return rc;
    }
    /* The API sorts "naturally" (1.10 after 1.9); callers get plain byte order, no repeats. */
    if (out->count > 1)
        qsort(out->items, out->count, sizeof(*out->items), cmp_ref_name);
    for (i = 1, kept = out->count ? 1 : 0; i < out->count; i++) {
        if (strcmp(out->items[i].name, out->items[kept - 1].name) == 0)
            parse_ref_release(&out->items[i]);
        else
            out->items[kept++] = out->items[i];
    }
    out->count = kept;
    return 0;
}

int api_list_branches(struct api_client *client, const char *workspace, const char *repo,
                      struct api_ref_list *out)
{
    return list_refs(client, workspace, repo, API_KIND_BRANCHES, out);
}

int api_list_tags(struct api_client *client, const char *workspace, const char *repo,
                  struct api_ref_list *out)
{
    return list_refs(client, workspace, repo, API_KIND_TAGS, out);
}

/* ---- commits ---- */

void api_commit_list_release(struct api_commit_list *list)
{
    if (!list)
        return;
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static int commit_summary_from(json_t *item, void *out, const void *arg)
{
    (void)arg;
    return parse_commit_summary(item, out) < 0 ? -EINVAL : 0;
}

int api_list_commits(struct api_client *client, const char *workspace, const char *repo,
                     const char *revision, size_t limit, struct api_commit_list *out)
{
    struct collector acc = {.parse = commit_summary_from,
                            .elem = sizeof(*out->items),
                            .limit = limit,
                            .skip_key = "api:commit-without-hash",
                            .skip_message = "ignoring a commit entry without a full hash"};
    char pagelen[24];
    struct buf u;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!revision || !*revision)
        return -EINVAL;
    if (limit == 0)
        return 0;
    snprintf(pagelen, sizeof(pagelen), "%zu", limit < PAGELEN_MAX ? limit : (size_t)PAGELEN_MAX);
    client_url_repo(&u, client, workspace, repo);
    url_add_segment(&u, "commits");
    url_add_path(&u, revision); /* feature/x stays feature/x: the API takes it so */
    url_add_query(&u, "pagelen", pagelen);
    url_add_query(&u, "fields", "next,values.hash,values.date");
    url = client_url_finish(&u, &rc);
    if (!url) {
        api_commit_list_release(out);
        return rc;
    }
    rc = walk_pages(client, API_KIND_COMMITS, url, walk_collect, &acc, &out->fetched_at);
    out->items = acc.items;
    out->count = acc.count;
    free(url);
    if (rc < 0)
        api_commit_list_release(out);
    return rc;
}

struct commit_args {
    const char *url;
    const char *hash;
    struct api_commit *out;
};

/* The commit object, if it is the one asked for. */
static int commit_from(json_t *root, void *ctx)
{
    struct commit_args *a = ctx;
    int rc = parse_commit(root, a->out);

    if (rc == -EINVAL || (rc == 0 && strcmp(a->out->hash, a->hash) != 0)) {
        client_log_bad_json(a->url, "not the commit asked for");
        api_commit_release(a->out);
        rc = -EIO;
    }
    return rc;
}

int api_get_commit(struct api_client *client, const char *workspace, const char *repo,
                   const char *hash, struct api_commit *out)
{
    struct buf u;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!api_is_full_hash(hash))
        return -EINVAL;
    client_url_at(&u, client, workspace, repo, "commit", hash);
    url = client_url_finish(&u, &rc);
    if (!url)
        return rc;
    struct commit_args args = {url, hash, out};
    rc = client_get_object(client, API_KIND_COMMIT, url, commit_from, &args, NULL);
    free(url);
    return rc;
}

/*
 * objects.c - the API's objects through the cache (see objects.h): one table
 * row per kind of object, one generic fetch.
 */
#include "fs/objects.h"

#include "api/log.h"
#include "fs/cache.h"
#include "fs/node.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a 401 or 403 (-EACCES) means for a kind of object. */
enum on_denied {
    DENIED_EACCES, /* the contract's EACCES (the default) */
    DENIED_ABSENT, /* not there for this mount: ENOENT */
    DENIED_EMPTY,  /* an empty object (listing), said once */
};

/* The fields of an object_id a key is made of, in this order. */
enum { KEY_REPO = 1, KEY_REVISION = 2, KEY_PATH = 4, KEY_NUMBER = 8 };

struct object_type {
    const char *key; /* the key's start; the fields of key_fields follow, each after separator */
    unsigned key_fields;
    char separator; /* 0: '/' */
    int forever;    /* addressed by a commit hash: never refetched (else trusted for ttl) */
    size_t value_size;
    /* the API call(s) filling the zeroed value; on failure the value is released as it is */
    int (*fetch)(struct tree *tree, const struct object_id *id, void *value);
    void (*release)(void *value);
    size_t index_at; /* offset of the value's struct name_index, or 0: none */
    size_t (*size)(const void *value);
    size_t fetched_at; /* offset of the value's int64_t fetched_at (kinds not forever) */
    int einval_absent; /* -EINVAL (the API's "not a hash") means there is no such object */
    enum on_denied denied;
    const char *denied_message; /* DENIED_EMPTY: what is logged once */
    /* a refresh replaced before by after: report the names that came and went */
    void (*changed)(struct tree *tree, const struct object_id *id, const void *before,
                    const void *after);
};

/* ---- names and indexes ---------------------------------------------------- */

const char *repo_slug(const void *repo)
{
    return ((const struct api_repo *)repo)->slug;
}

const char *ref_name(const void *ref)
{
    return ((const struct api_ref *)ref)->name;
}

const char *entry_name(const void *entry)
{
    return ((const struct api_entry *)entry)->name;
}

/* workspace.json and project.json share the workspace directory with the repositories. */
static int repo_slug_usable(const char *slug)
{
    return names_is_valid(slug) && strcmp(slug, WORKSPACE_JSON) != 0 &&
           strcmp(slug, PROJECT_JSON) != 0;
}

static const struct index_spec repo_spec = {repo_slug, repo_slug_usable, "repository", 0};
static const struct index_spec branch_spec = {ref_name, names_ref_is_valid, "branch", 1};
static const struct index_spec tag_spec = {ref_name, names_ref_is_valid, "tag", 1};
static const struct index_spec entry_spec = {entry_name, names_is_valid, "file", 0};

/* ---- sizes, for the cache's bound ------------------------------------------- */

static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static size_t repo_bytes(const struct api_repo *r)
{
    return sizeof(*r) + str_size(r->slug) + str_size(r->uuid) + str_size(r->full_name) +
           str_size(r->description) + str_size(r->mainbranch) + str_size(r->html_url) +
           str_size(r->project_key) + r->doc.len;
}

static size_t pr_bytes(const struct api_pullrequest *pr)
{
    return sizeof(*pr) + str_size(pr->title) + str_size(pr->description) + str_size(pr->state) +
           pr->doc.len;
}

static size_t repos_size(const void *value)
{
    const struct repo_index *ri = value;
    size_t bytes = sizeof(*ri) + ri->index.count * sizeof(void *);
    for (size_t i = 0; i < ri->list.count; i++)
        bytes += repo_bytes(&ri->list.items[i]);
    return bytes;
}

static size_t repo_size(const void *value)
{
    return repo_bytes(value);
}

static size_t refs_size(const void *value)
{
    const struct ref_index *ri = value;
    return sizeof(*ri) + index_bytes(&ri->index, sizeof(struct api_ref), ref_name);
}

static size_t commits_size(const void *value)
{
    const struct api_commit_list *list = value;
    return sizeof(*list) + list->count * sizeof(*list->items);
}

static size_t commit_size(const void *value)
{
    const struct api_commit *c = value;
    return sizeof(*c) + str_size(c->message) + c->parent_count * sizeof(*c->parents) +
           str_size(c->html_url) + c->doc.len;
}

static size_t doc_size(const void *value)
{
    return sizeof(struct api_doc) + ((const struct api_doc *)value)->len;
}

static size_t dir_size(const void *value)
{
    const struct dir_index *di = value;
    return sizeof(*di) + index_bytes(&di->index, sizeof(struct api_entry), entry_name);
}

static size_t prs_size(const void *value)
{
    const struct api_pullrequest_list *list = value;
    size_t bytes = sizeof(*list);
    for (size_t i = 0; i < list->count; i++)
        bytes += pr_bytes(&list->items[i]);
    return bytes;
}

static size_t pr_size(const void *value)
{
    return pr_bytes(value);
}

static size_t hash_size(const void *value)
{
    (void)value;
    return API_HASH_LEN + 1;
}

/* ---- releasing (the value itself is freed by object_free) ------------------- */

static void release_repos(void *value)
{
    api_repo_list_release(&((struct repo_index *)value)->list);
}

static void release_refs(void *value)
{
    api_ref_list_release(&((struct ref_index *)value)->list);
}

static void release_dir(void *value)
{
    api_entry_list_release(&((struct dir_index *)value)->list);
}

static void release_repo(void *value)
{
    api_repo_release(value);
}

static void release_commits(void *value)
{
    api_commit_list_release(value);
}

static void release_commit(void *value)
{
    api_commit_release(value);
}

static void release_doc(void *value)
{
    api_doc_release(value);
}

static void release_prs(void *value)
{
    api_pullrequest_list_release(value);
}

static void release_pr(void *value)
{
    api_pullrequest_release(value);
}

static void release_nothing(void *value)
{
    (void)value;
}

/* ---- the API calls --------------------------------------------------------- */

static int fetch_repos(struct tree *tree, const struct object_id *id, void *value)
{
    struct repo_index *ri = value;
    (void)id;
    int rc = api_list_repos(tree->api, tree->workspace, tree->project, &ri->list);
    return rc ? rc
              : index_build(&ri->index, ri->list.items, ri->list.count, sizeof(*ri->list.items),
                            &repo_spec);
}

/* Outside the mounted project, a repository is not there. */
static int fetch_repo(struct tree *tree, const struct object_id *id, void *value)
{
    struct api_repo *repo = value;
    int rc = api_get_repo(tree->api, tree->workspace, id->repo, repo);
    if (rc == 0 && tree->project &&
        (!repo->project_key || strcmp(repo->project_key, tree->project) != 0))
        rc = -ENOENT;
    return rc;
}

static int index_refs(struct ref_index *ri, int rc, const struct index_spec *spec)
{
    return rc ? rc
              : index_build(&ri->index, ri->list.items, ri->list.count, sizeof(*ri->list.items),
                            spec);
}

static int fetch_branches(struct tree *tree, const struct object_id *id, void *value)
{
    struct ref_index *ri = value;
    return index_refs(ri, api_list_branches(tree->api, tree->workspace, id->repo, &ri->list),
                      &branch_spec);
}

static int fetch_tags(struct tree *tree, const struct object_id *id, void *value)
{
    struct ref_index *ri = value;
    return index_refs(ri, api_list_tags(tree->api, tree->workspace, id->repo, &ri->list),
                      &tag_spec);
}

static int fetch_commits(struct tree *tree, const struct object_id *id, void *value)
{
    return api_list_commits(tree->api, tree->workspace, id->repo, id->revision, tree->commit_limit,
                            value);
}

static int fetch_commit(struct tree *tree, const struct object_id *id, void *value)
{
    return api_get_commit(tree->api, tree->workspace, id->repo, id->revision, value);
}

static int fetch_workspace(struct tree *tree, const struct object_id *id, void *value)
{
    (void)id;
    return api_get_workspace(tree->api, tree->workspace, value);
}

static int fetch_project(struct tree *tree, const struct object_id *id, void *value)
{
    (void)id;
    return api_get_project(tree->api, tree->workspace, tree->project, value);
}

static int fetch_dir(struct tree *tree, const struct object_id *id, void *value)
{
    struct dir_index *di = value;
    int rc = source_list_dir(tree, id->repo, id->revision, id->path, &di->list);
    return rc ? rc
              : index_build(&di->index, di->list.items, di->list.count, sizeof(*di->list.items),
                            &entry_spec);
}

static int fetch_pullrequests(struct tree *tree, const struct object_id *id, void *value)
{
    return api_list_pullrequests(tree->api, tree->workspace, id->repo, value);
}

static int fetch_pullrequest(struct tree *tree, const struct object_id *id, void *value)
{
    return api_get_pullrequest(tree->api, tree->workspace, id->repo, id->number, value);
}

static int fetch_comments(struct tree *tree, const struct object_id *id, void *value)
{
    return api_get_pullrequest_comments(tree->api, tree->workspace, id->repo, id->number, value);
}

static int fetch_full_hash(struct tree *tree, const struct object_id *id, void *value)
{
    return api_expand_hash(tree->api, tree->workspace, id->repo, id->revision, value);
}

/* ---- names that came and went ----------------------------------------------- */

struct report {
    struct tree *tree;
    const char *dir;
};

static void report_name(void *ctx, const char *name)
{
    const struct report *r = ctx;
    tree_report_changed(r->tree, r->dir, name);
}

static void repos_changed(struct tree *tree, const struct object_id *id, const void *before,
                          const void *after)
{
    const struct repo_index *b = before, *a = after;
    struct report r = {tree, tree->workspace};
    (void)id;
    index_diff(&b->index, &a->index, repo_slug, report_name, &r);
    refs_report_heads(tree, &b->index, &a->index);
}

static void repo_changed(struct tree *tree, const struct object_id *id, const void *before,
                         const void *after)
{
    (void)id;
    refs_report_head(tree, before, after);
}

static void refs_changed(struct tree *tree, const struct object_id *id, const void *before,
                         const void *after, const char *what)
{
    const struct ref_index *b = before, *a = after;
    char *dir;
    if (asprintf(&dir, "%s/%s/%s", tree->workspace, id->repo, what) < 0)
        return;
    struct report r = {tree, dir};
    index_diff(&b->index, &a->index, ref_name, report_name, &r);
    refs_report_moved(tree, id->repo, what, &b->index, &a->index);
    free(dir);
}

static void branches_changed(struct tree *tree, const struct object_id *id, const void *before,
                             const void *after)
{
    refs_changed(tree, id, before, after, "branches");
}

static void tags_changed(struct tree *tree, const struct object_id *id, const void *before,
                         const void *after)
{
    refs_changed(tree, id, before, after, "tags");
}

/* ---- the table ------------------------------------------------------------ */

static const struct object_type types[OBJECT_KIND_COUNT] = {
    [OBJECT_REPOS] = {.key = "repos",
                      .value_size = sizeof(struct repo_index),
                      .fetch = fetch_repos,
                      .release = release_repos,
                      .index_at = offsetof(struct repo_index, index),
                      .size = repos_size,
                      .fetched_at = offsetof(struct repo_index, list.fetched_at),
                      .changed = repos_changed},
    [OBJECT_REPO] = {.key = "repo",
                     .key_fields = KEY_REPO,
                     .value_size = sizeof(struct api_repo),
                     .fetch = fetch_repo,
                     .release = release_repo,
                     .size = repo_size,
                     .fetched_at = offsetof(struct api_repo, doc.fetched_at),
                     .denied = DENIED_ABSENT,
                     .changed = repo_changed},
    [OBJECT_BRANCHES] = {.key = "branches",
                         .key_fields = KEY_REPO,
                         .value_size = sizeof(struct ref_index),
                         .fetch = fetch_branches,
                         .release = release_refs,
                         .index_at = offsetof(struct ref_index, index),
                         .size = refs_size,
                         .fetched_at = offsetof(struct ref_index, list.fetched_at),
                         .changed = branches_changed},
    [OBJECT_TAGS] = {.key = "tags",
                     .key_fields = KEY_REPO,
                     .value_size = sizeof(struct ref_index),
                     .fetch = fetch_tags,
                     .release = release_refs,
                     .index_at = offsetof(struct ref_index, index),
                     .size = refs_size,
                     .fetched_at = offsetof(struct ref_index, list.fetched_at),
                     .changed = tags_changed},
    [OBJECT_COMMITS] = {.key = "commits",
                        .key_fields = KEY_REPO,
                        .value_size = sizeof(struct api_commit_list),
                        .fetch = fetch_commits,
                        .release = release_commits,
                        .size = commits_size,
                        .fetched_at = offsetof(struct api_commit_list, fetched_at)},
    [OBJECT_COMMIT] = {.key = "commit",
                       .key_fields = KEY_REPO | KEY_REVISION,
                       .forever = 1,
                       .value_size = sizeof(struct api_commit),
                       .fetch = fetch_commit,
                       .release = release_commit,
                       .size = commit_size,
                       .einval_absent = 1},
    [OBJECT_WORKSPACE] = {.key = WORKSPACE_JSON,
                          .value_size = sizeof(struct api_doc),
                          .fetch = fetch_workspace,
                          .release = release_doc,
                          .size = doc_size,
                          .fetched_at = offsetof(struct api_doc, fetched_at),
                          .denied = DENIED_ABSENT},
    [OBJECT_PROJECT] = {.key = PROJECT_JSON,
                        .value_size = sizeof(struct api_doc),
                        .fetch = fetch_project,
                        .release = release_doc,
                        .size = doc_size,
                        .fetched_at = offsetof(struct api_doc, fetched_at),
                        .denied = DENIED_ABSENT},
    [OBJECT_DIR] = {.key = "src",
                    .key_fields = KEY_REPO | KEY_REVISION | KEY_PATH,
                    .separator = '\n',
                    .forever = 1,
                    .value_size = sizeof(struct dir_index),
                    .fetch = fetch_dir,
                    .release = release_dir,
                    .index_at = offsetof(struct dir_index, index),
                    .size = dir_size},
    [OBJECT_PULLREQUESTS] = {.key = "prs",
                             .key_fields = KEY_REPO,
                             .value_size = sizeof(struct api_pullrequest_list),
                             .fetch = fetch_pullrequests,
                             .release = release_prs,
                             .size = prs_size,
                             .fetched_at = offsetof(struct api_pullrequest_list, fetched_at),
                             .denied = DENIED_EMPTY,
                             .denied_message =
                                 "the token may not read pull requests (it lacks the pullrequest "
                                 "scope): pullrequests/ stays empty"},
    [OBJECT_PULLREQUEST] = {.key = "pr",
                            .key_fields = KEY_REPO | KEY_NUMBER,
                            .value_size = sizeof(struct api_pullrequest),
                            .fetch = fetch_pullrequest,
                            .release = release_pr,
                            .size = pr_size,
                            .fetched_at = offsetof(struct api_pullrequest, doc.fetched_at),
                            .denied = DENIED_ABSENT},
    [OBJECT_COMMENTS] = {.key = "comments",
                         .key_fields = KEY_REPO | KEY_NUMBER,
                         .value_size = sizeof(struct api_doc),
                         .fetch = fetch_comments,
                         .release = release_doc,
                         .size = doc_size,
                         .fetched_at = offsetof(struct api_doc, fetched_at)},
    [OBJECT_FULL_HASH] = {.key = "hash",
                          .key_fields = KEY_REPO | KEY_REVISION,
                          .forever = 1,
                          .value_size = sizeof(char[API_HASH_LEN + 1]),
                          .fetch = fetch_full_hash,
                          .release = release_nothing,
                          .size = hash_size,
                          .einval_absent = 1},
};

/* ---- the generic part ------------------------------------------------------- */

static char *object_key(const struct object_type *t, const struct object_id *id)
{
    char number[24], *key = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&key, &len);
    if (!f)
        return NULL;
    snprintf(number, sizeof(number), "%" PRIu64, id->number);
    fputs(t->key, f);
    const char *fields[] = {id->repo, id->revision, id->path, number};
    for (unsigned i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (t->key_fields & (1u << i))
            fprintf(f, "%c%s", t->separator ? t->separator : '/', fields[i] ? fields[i] : "");
    if (fclose(f) != 0) {
        free(key);
        return NULL;
    }
    return key;
}

/* What the API's error means for this kind of object. */
static int remap_error(const struct object_type *t, int rc)
{
    if (rc == -EINVAL && t->einval_absent)
        return -ENOENT;
    if (rc != -EACCES || t->denied == DENIED_EACCES)
        return rc;
    if (t->denied == DENIED_ABSENT)
        return -ENOENT;
    log_once(LOG_LEVEL_WARN, t->denied_message, "%s", t->denied_message);
    return 0;
}

/* Seconds since a wall-clock fetched_at; 0 when it is not known (or in the future). */
static time_t age_of(int64_t fetched_at)
{
    int64_t now = (int64_t)time(NULL);
    return fetched_at > 0 && fetched_at < now ? (time_t)(now - fetched_at) : 0;
}

/*
 * Every value sits in a box that says its type, so that one function frees
 * any of them (a cache_free_fn gets nothing but the value).
 */
struct box {
    const struct object_type *type;
    max_align_t value[];
};

static void *box_new(const struct object_type *t)
{
    struct box *box = calloc(1, sizeof(*box) + t->value_size);
    if (!box)
        return NULL;
    box->type = t;
    return box->value;
}

static void object_free(void *value)
{
    struct box *box = (struct box *)((char *)value - offsetof(struct box, value));
    box->type->release(value);
    if (box->type->index_at)
        index_release((struct name_index *)((char *)value + box->type->index_at));
    free(box);
}

struct fetch_call {
    struct tree *tree;
    const struct object_type *type;
    const struct object_id *id;
};

static int fetch_object(void *arg, const void *previous, struct cache_value *out)
{
    const struct fetch_call *call = arg;
    const struct object_type *t = call->type;
    void *value = box_new(t);
    if (!value)
        return -ENOMEM;
    int rc = remap_error(t, t->fetch(call->tree, call->id, value));
    if (rc) {
        object_free(value);
        return rc;
    }
    if (previous && t->changed && call->tree->changed)
        t->changed(call->tree, call->id, previous, value);
    out->value = value;
    out->size = t->size(value);
    if (!t->forever)
        out->age = age_of(*(const int64_t *)((const char *)value + t->fetched_at));
    return 0;
}

int object_get(struct tree *tree, enum object_kind kind, const struct object_id *id,
               struct cache_ref **ref)
{
    const struct object_type *t = &types[kind];
    struct fetch_call call = {tree, t, id};
    char *key = object_key(t, id);
    if (!key)
        return -ENOMEM;
    int rc = cache_get(tree->cache, key, t->forever ? CACHE_FOREVER : tree->ttl, fetch_object,
                       object_free, &call, ref);
    free(key);
    return rc;
}

int object_peek(struct tree *tree, enum object_kind kind, const struct object_id *id,
                struct cache_ref **ref)
{
    char *key = object_key(&types[kind], id);
    if (!key)
        return -ENOMEM;
    int rc = cache_peek(tree->cache, key, ref);
    free(key);
    return rc;
}

void object_offer_dir(struct tree *tree, const struct object_id *id, struct api_entry_list *entries)
{
    const struct object_type *t = &types[OBJECT_DIR];
    struct dir_index *di = box_new(t);
    char *key = object_key(t, id);

    if (!di || !key) {
        api_entry_list_release(entries);
        goto out;
    }
    di->list = *entries;
    memset(entries, 0, sizeof(*entries));
    if (index_build(&di->index, di->list.items, di->list.count, sizeof(*di->list.items),
                    &entry_spec) == 0) {
        struct cache_value v = {.value = di, .size = dir_size(di)};
        cache_put(tree->cache, key, CACHE_FOREVER, &v, object_free);
        di = NULL;
    }
out:
    if (di)
        object_free(di);
    free(key);
}

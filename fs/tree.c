/*
 * tree.c - the bbfs tree (see tree.h and ../shared/DESIGN.md "The tree").
 *
 * A path is resolved into a struct node: its kind plus references to the
 * cached API objects it is made of. Attributes, listings, contents and link
 * targets are all computed from a resolved node, so a file's st_size always
 * matches the bytes a read returns. Lookups that miss (a shell probing .git,
 * an unknown branch) are answered from listings already in memory.
 */
#include "fs/tree.h"

#include "api/api.h"
#include "api/log.h"
#include "fs/cache.h"
#include "fs/names.h"
#include "fs/store.h"
#include "fs/workers.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reading ahead the files of a directory: see read_ahead. */
#define READAHEAD_THREADS 4
#define READAHEAD_MAX 64
#define READAHEAD_MAX_SIZE ((uint64_t)16 << 20)
#define READAHEAD_SECONDS 2

#define MODE_DIR (S_IFDIR | 0555)
#define MODE_FILE (S_IFREG | 0444)
#define MODE_LINK (S_IFLNK | 0777)

static const char WORKSPACE_JSON[] = "workspace.json";
static const char PROJECT_JSON[] = "project.json";
static const char BBFS_DIR[] = ".bbfs";
static const char STATS_FILE[] = "stats";
/* What a pull request's source and destination links hold, before the full hash. */
#define PR_LINK_PREFIX "../../commits/"

struct tree {
    char *workspace;
    char *project;
    time_t ttl;
    size_t commit_limit;
    int offline;
    time_t mount_time;
    struct api_client *api;
    struct cache *cache;
    struct store *store;
    tree_changed_fn changed;
    void *changed_ctx;
    uint64_t files_stored, files_downloaded; /* contents and diffs: from the store or not (atomic) */
    /* the commit whose directories were listed last, for walk_root */
    pthread_mutex_t walk_lock;
    char walk_commit[300];
    char *walk_ancestor; /* of the directories listed in this burst */
    time_t walk_last;
    int walk_misses;
    int walk_taken; /* a recursive listing was tried for walk_commit */
    /* reading ahead (under walk_lock): the directory whose files were opened last */
    struct workers *readahead; /* NULL until first needed */
    char *readahead_dir;
    char readahead_name[NAME_MAX + 1];
    time_t readahead_last;
    int readahead_opens;
};

/* ---- cached objects ---------------------------------------------------- */

/* The repository listing with the repositories whose slugs can be names. */
struct repo_index {
    struct api_repo_list list;
    const struct api_repo **exposed; /* sorted by slug (strcmp) */
    size_t count;
};

enum ref_kind { REF_BRANCHES, REF_TAGS };

struct ref_index {
    struct api_ref_list list;
    const struct api_ref **exposed; /* sorted by name (strcmp) */
    size_t count;
};

enum blob_kind;

/* What a fetch function needs; which fields it reads depends on the function. */
struct fetch_args {
    struct tree *tree;
    const char *repo;
    const char *revision; /* a branch, a hash, or the document's file name */
    const char *path;     /* below the tree root */
    const char *key;      /* the store's key for a blob */
    enum ref_kind kind;
    int blob; /* enum blob_kind */
};

/*
 * Offline, a file or diff that is not in the store cannot be had. (Listings,
 * commits and documents go to the API layer, which answers them from its
 * stored responses offline.)
 */
static int refuse_offline(const struct tree *tree)
{
    if (!tree->offline)
        return 0;
    log_once(LOG_LEVEL_INFO, "offline",
             "offline: not downloading files or diffs that are not cached");
    return -EIO;
}

static const char *entry_name(const void *item)
{
    return ((const struct api_entry *)item)->name;
}

static const char *repo_slug(const void *item)
{
    return ((const struct api_repo *)item)->slug;
}

static const char *ref_name(const void *item)
{
    return ((const struct api_ref *)item)->name;
}

/*
 * Reports the entry name of directory dir as changed. A ref "a/b" is the
 * entry b of dir/a, and dir/a is itself an entry of dir: both are reported.
 */
static void report_changed_name(struct tree *tree, const char *dir, const char *name)
{
    char *path;
    size_t dirlen = strlen(dir);
    if (asprintf(&path, "%s/%s", dir, name) < 0)
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

/* Names in one of two name-sorted listings of dir and not in the other are reported. */
static void report_changes(struct tree *tree, const char *dir, const void *const *before,
                           size_t nbefore, const void *const *after, size_t nafter,
                           const char *(*name_of)(const void *))
{
    size_t i = 0, j = 0;
    if (!tree->changed)
        return;
    while (i < nbefore || j < nafter) {
        int cmp = i == nbefore  ? 1
                  : j == nafter ? -1
                                : strcmp(name_of(before[i]), name_of(after[j]));
        if (cmp == 0) {
            i++;
            j++;
            continue;
        }
        report_changed_name(tree, dir, cmp < 0 ? name_of(before[i++]) : name_of(after[j++]));
    }
}

static int compare_repo_slugs(const void *a, const void *b)
{
    const struct api_repo *const *ra = a, *const *rb = b;
    return strcmp((*ra)->slug, (*rb)->slug);
}

static int compare_ref_names(const void *a, const void *b)
{
    const struct api_ref *const *ra = a, *const *rb = b;
    return strcmp((*ra)->name, (*rb)->name);
}

static void log_skipped_name(const char *what, const char *name)
{
    char safe[128];
    log_sanitize(safe, sizeof(safe), name);
    char key[160];
    snprintf(key, sizeof(key), "skip:%s:%s", what, safe);
    log_once(LOG_LEVEL_WARN, key, "skipping %s '%s': not usable as a file name", what, safe);
}

static void repo_index_free(void *value)
{
    struct repo_index *index = value;
    if (!index)
        return;
    api_repo_list_release(&index->list);
    free(index->exposed);
    free(index);
}

static int fetch_repos(void *arg, const void *previous, void **value)
{
    struct fetch_args *fa = arg;
    struct tree *tree = fa->tree;
    int rc;

    struct repo_index *index = calloc(1, sizeof(*index));
    if (!index)
        return -ENOMEM;
    rc = api_list_repos(tree->api, tree->workspace, tree->project, &index->list);
    if (rc)
        goto out;
    index->exposed = calloc(index->list.count + 1, sizeof(*index->exposed));
    if (!index->exposed) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < index->list.count; i++) {
        const struct api_repo *repo = &index->list.items[i];
        if (!repo->slug || !names_is_valid(repo->slug) || strcmp(repo->slug, WORKSPACE_JSON) == 0 ||
            strcmp(repo->slug, PROJECT_JSON) == 0) {
            log_skipped_name("repository", repo->slug ? repo->slug : "");
            continue;
        }
        index->exposed[index->count++] = repo;
    }
    qsort(index->exposed, index->count, sizeof(*index->exposed), compare_repo_slugs);
    if (previous) {
        const struct repo_index *before = previous;
        report_changes(tree, tree->workspace, (const void *const *)before->exposed, before->count,
                       (const void *const *)index->exposed, index->count, repo_slug);
    }
out:
    if (rc) {
        repo_index_free(index);
        return rc;
    }
    *value = index;
    return 0;
}

static void ref_index_free(void *value)
{
    struct ref_index *index = value;
    if (!index)
        return;
    api_ref_list_release(&index->list);
    free(index->exposed);
    free(index);
}

/* Index of the first item whose name (strcmp order) is >= key in a sorted index. */
static size_t lower_bound(const void *const *items, size_t count, const char *key,
                          const char *(*name_of)(const void *))
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(name_of(items[mid]), key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static size_t ref_lower_bound(const struct ref_index *index, const char *key);

/*
 * Git forbids refs "a" and "a/b" side by side, but the API's names are not to
 * be trusted: where both come, "a" is a directory and the ref "a" is skipped.
 */
static int drop_shadowed_refs(struct ref_index *index, const char *what)
{
    size_t kept = 0;
    for (size_t i = 0; i < index->count; i++) {
        const struct api_ref *ref = index->exposed[i];
        char *dir;
        if (asprintf(&dir, "%s/", ref->name) < 0)
            return -ENOMEM;
        size_t at = ref_lower_bound(index, dir);
        int shadowed =
            at < index->count && strncmp(index->exposed[at]->name, dir, strlen(dir)) == 0;
        free(dir);
        if (shadowed)
            log_skipped_name(what, ref->name);
        else
            index->exposed[kept++] = ref;
    }
    index->count = kept;
    return 0;
}

static int fetch_refs(void *arg, const void *previous, void **value)
{
    struct fetch_args *fa = arg;
    struct tree *tree = fa->tree;
    int rc;

    struct ref_index *index = calloc(1, sizeof(*index));
    if (!index)
        return -ENOMEM;
    if (fa->kind == REF_BRANCHES)
        rc = api_list_branches(tree->api, tree->workspace, fa->repo, &index->list);
    else
        rc = api_list_tags(tree->api, tree->workspace, fa->repo, &index->list);
    if (rc)
        goto out;
    index->exposed = calloc(index->list.count + 1, sizeof(*index->exposed));
    if (!index->exposed) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < index->list.count; i++) {
        const struct api_ref *ref = &index->list.items[i];
        if (!ref->name || !names_ref_is_valid(ref->name)) {
            log_skipped_name(fa->kind == REF_BRANCHES ? "branch" : "tag",
                             ref->name ? ref->name : "");
            continue;
        }
        index->exposed[index->count++] = ref;
    }
    qsort(index->exposed, index->count, sizeof(*index->exposed), compare_ref_names);
    rc = drop_shadowed_refs(index, fa->kind == REF_BRANCHES ? "branch" : "tag");
    if (rc == 0 && previous) {
        const struct ref_index *before = previous;
        char *dir;
        if (asprintf(&dir, "%s/%s/%s", tree->workspace, fa->repo,
                     fa->kind == REF_BRANCHES ? "branches" : "tags") < 0) {
            rc = -ENOMEM;
            goto out;
        }
        report_changes(tree, dir, (const void *const *)before->exposed, before->count,
                       (const void *const *)index->exposed, index->count, ref_name);
        free(dir);
    }
out:
    if (rc) {
        ref_index_free(index);
        return rc;
    }
    *value = index;
    return 0;
}

static void commit_list_free(void *value)
{
    api_commit_list_release(value);
    free(value);
}

static int fetch_commit_list(void *arg, const void *previous, void **value)
{
    (void)previous; /* any commit can be looked up, listed or not: no name goes away */
    struct fetch_args *fa = arg;
    int rc;
    struct api_commit_list *list = calloc(1, sizeof(*list));
    if (!list)
        return -ENOMEM;
    rc = api_list_commits(fa->tree->api, fa->tree->workspace, fa->repo, fa->revision,
                          fa->tree->commit_limit, list);
    if (rc) {
        commit_list_free(list);
        return rc;
    }
    *value = list;
    return 0;
}

static void commit_free(void *value)
{
    api_commit_release(value);
    free(value);
}

static int fetch_commit(void *arg, const void *previous, void **value)
{
    (void)previous; /* hash-addressed: never changes */
    struct fetch_args *fa = arg;
    int rc;
    struct api_commit *commit = calloc(1, sizeof(*commit));
    if (!commit)
        return -ENOMEM;
    rc = api_get_commit(fa->tree->api, fa->tree->workspace, fa->repo, fa->revision, commit);
    if (rc) {
        commit_free(commit);
        return rc == -EINVAL ? -ENOENT : rc;
    }
    *value = commit;
    return 0;
}

static void doc_free(void *value)
{
    api_doc_release(value);
    free(value);
}

/* workspace.json or project.json (fa->revision names which). */
static int fetch_doc(void *arg, const void *previous, void **value)
{
    (void)previous; /* a file, not a listing: no name comes or goes */
    struct fetch_args *fa = arg;
    struct tree *tree = fa->tree;
    int rc;
    struct api_doc *doc = calloc(1, sizeof(*doc));
    if (!doc)
        return -ENOMEM;
    if (strcmp(fa->revision, WORKSPACE_JSON) == 0)
        rc = api_get_workspace(tree->api, tree->workspace, doc);
    else
        rc = api_get_project(tree->api, tree->workspace, tree->project, doc);
    /* A Project Access Token may not read the workspace: the file is absent. */
    if (rc == -EACCES)
        rc = -ENOENT;
    if (rc) {
        doc_free(doc);
        return rc;
    }
    *value = doc;
    return 0;
}

/* A directory at a commit, with the entries whose names can be file names. */
struct dir_index {
    struct api_entry_list list;
    const struct api_entry **exposed; /* sorted by name (strcmp) */
    size_t count;
};

static int compare_entry_names(const void *a, const void *b)
{
    const struct api_entry *const *ea = a, *const *eb = b;
    return strcmp((*ea)->name, (*eb)->name);
}

static void dir_index_free(void *value)
{
    struct dir_index *index = value;
    if (!index)
        return;
    api_entry_list_release(&index->list);
    free(index->exposed);
    free(index);
}

/* Indexes list, which it takes over (list is left empty). */
static int dir_index_new(struct api_entry_list *list, struct dir_index **out)
{
    int rc = 0;
    struct dir_index *index = calloc(1, sizeof(*index));
    if (!index)
        return -ENOMEM;
    index->list = *list;
    memset(list, 0, sizeof(*list));
    index->exposed = calloc(index->list.count + 1, sizeof(*index->exposed));
    if (!index->exposed) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < index->list.count; i++) {
        const struct api_entry *entry = &index->list.items[i];
        if (!entry->name || !names_is_valid(entry->name)) {
            log_skipped_name("file", entry->name ? entry->name : "");
            continue;
        }
        index->exposed[index->count++] = entry;
    }
    qsort(index->exposed, index->count, sizeof(*index->exposed), compare_entry_names);
out:
    if (rc) {
        dir_index_free(index);
        return rc;
    }
    *out = index;
    return 0;
}

static char *dir_key(const char *repo, const char *hash, const char *dir)
{
    char *key;
    if (asprintf(&key, "src\n%s\n%s\n%s", repo, hash, dir) < 0)
        return NULL;
    return key;
}

/*
 * A walk (ls -R, find, grep -r, diff -r) lists one directory after another;
 * one recursive listing then answers them all, in as many requests as it has
 * pages of 100 entries instead of one or more per directory. It is taken once
 * per commit, when WALK_MISSES directories of it were listed within
 * WALK_SECONDS of each other (faster than anyone types), from the deepest
 * directory holding them all, and given up on when it would be bigger than
 * WALK_MAX_ENTRIES.
 */
#define WALK_MISSES 3
#define WALK_SECONDS 2
#define WALK_MAX_ENTRIES 20000
#define WALK_MAX_DEPTH 64

/* Cuts *ancestor (malloc'd) back to the deepest directory holding both it and dir. */
static void common_ancestor(char *ancestor, const char *dir)
{
    size_t n = 0, cut = 0;
    while (ancestor[n] && ancestor[n] == dir[n]) {
        n++;
        if (ancestor[n] == '/' || (ancestor[n] == '\0' && (dir[n] == '/' || dir[n] == '\0')))
            cut = n;
    }
    if (ancestor[n] == '\0' && (dir[n] == '/' || dir[n] == '\0'))
        cut = n;
    ancestor[cut] = '\0';
}

/*
 * Counts a listing of dir of repo at hash; when it completes a walk's
 * pattern, returns the directory to list recursively (malloc'd), else NULL.
 */
static char *walk_root(struct tree *tree, const char *repo, const char *hash, const char *dir)
{
    char commit[300], *root = NULL;
    time_t now = time(NULL);

    snprintf(commit, sizeof(commit), "%s\n%s", repo, hash);
    pthread_mutex_lock(&tree->walk_lock);
    if (strcmp(tree->walk_commit, commit) != 0) {
        snprintf(tree->walk_commit, sizeof(tree->walk_commit), "%s", commit);
        tree->walk_taken = 0;
        tree->walk_misses = 0;
    }
    if (tree->walk_misses == 0 || now - tree->walk_last > WALK_SECONDS) {
        free(tree->walk_ancestor);
        tree->walk_ancestor = strdup(dir);
        tree->walk_misses = 0;
    } else if (tree->walk_ancestor) {
        common_ancestor(tree->walk_ancestor, dir);
    }
    tree->walk_last = now;
    if (++tree->walk_misses >= WALK_MISSES && !tree->walk_taken && tree->walk_ancestor) {
        tree->walk_taken = 1;
        root = strdup(tree->walk_ancestor);
    }
    pthread_mutex_unlock(&tree->walk_lock);
    return root;
}

/*
 * Lists root recursively and offers every complete directory but fa->path
 * to the cache; fa->path's own entries go to *list. 1 when it did, 0 when
 * the walk is better served directory by directory.
 */
static int list_walk(struct fetch_args *fa, const char *root, struct api_entry_list *list)
{
    struct tree *tree = fa->tree;
    struct api_subtree sub;
    int found = 0;
    int rc = api_list_subtree(tree->api, tree->workspace, fa->repo, fa->revision, root,
                              WALK_MAX_DEPTH, WALK_MAX_ENTRIES, &sub);
    if (rc) {
        log_debug("no recursive listing for a walk (%s): listing directories one by one",
                  strerror(-rc));
        return 0;
    }
    for (size_t i = 0; i < sub.count; i++) {
        struct api_subtree_dir *d = &sub.dirs[i];
        if (strcmp(d->path, fa->path) == 0 && !found) {
            *list = d->entries;
            memset(&d->entries, 0, sizeof(d->entries));
            found = 1;
            continue;
        }
        struct dir_index *index;
        char *key = dir_key(fa->repo, fa->revision, d->path);
        if (key && dir_index_new(&d->entries, &index) == 0)
            cache_put(tree->cache, key, CACHE_FOREVER, index, dir_index_free);
        free(key);
    }
    api_subtree_release(&sub);
    return found;
}

/* fa->revision is the commit hash, fa->path the directory below the tree root. */
static int fetch_dir(void *arg, const void *previous, void **value)
{
    (void)previous; /* hash-addressed: never changes */
    struct fetch_args *fa = arg;
    struct api_entry_list list = {0};
    struct dir_index *index;
    int rc = 0;

    char *root = fa->tree->offline ? NULL : walk_root(fa->tree, fa->repo, fa->revision, fa->path);
    if (!(root && list_walk(fa, root, &list)))
        rc = api_list_dir(fa->tree->api, fa->tree->workspace, fa->repo, fa->revision, fa->path,
                          &list);
    free(root);
    if (rc == 0)
        rc = dir_index_new(&list, &index);
    api_entry_list_release(&list);
    if (rc)
        return rc;
    *value = index;
    return 0;
}

/* BLOB_PR_DIFF: the revision is the pull request's id, the path its "source..destination". */
enum blob_kind { BLOB_FILE, BLOB_DIFF, BLOB_PR_DIFF };

/*
 * Makes sure the content named by fa is in the store: nothing to do when it
 * is there already (also across remounts), else one download into it. The
 * cached value carries nothing; callers open the store entry afterwards.
 */
static int fetch_blob(void *arg, const void *previous, void **value)
{
    (void)previous; /* hash-addressed: never changes */
    struct fetch_args *fa = arg;
    struct tree *tree = fa->tree;
    struct store_writer w;
    uint64_t size;
    int fd, rc;

    if (store_lookup(tree->store, fa->key, &fd, &size) == 0) {
        close(fd);
        __atomic_fetch_add(&tree->files_stored, 1, __ATOMIC_RELAXED);
        goto done;
    }
    if ((rc = refuse_offline(tree)))
        return rc;
    if ((rc = store_begin(tree->store, &w)))
        return rc;
    if (fa->blob == BLOB_DIFF)
        rc = api_get_diff(tree->api, tree->workspace, fa->repo, fa->revision, w.fd, &size);
    else if (fa->blob == BLOB_PR_DIFF)
        rc = api_get_pullrequest_diff(tree->api, tree->workspace, fa->repo,
                                      strtoull(fa->revision, NULL, 10), w.fd, &size);
    else
        rc =
            api_get_file(tree->api, tree->workspace, fa->repo, fa->revision, fa->path, w.fd, &size);
    if (rc) {
        store_abort(&w);
        return rc;
    }
    if ((rc = store_commit(tree->store, &w, fa->key)))
        return rc;
    __atomic_fetch_add(&tree->files_downloaded, 1, __ATOMIC_RELAXED);
done:
    *value = NULL;
    return 0;
}

static void repo_free(void *value)
{
    api_repo_release(value);
    free(value);
}

/* One repository (fa->repo), asked for alone; absent when outside the mounted project. */
static int fetch_repo(void *arg, const void *previous, void **value)
{
    (void)previous; /* one repository, not a listing */
    struct fetch_args *fa = arg;
    struct tree *tree = fa->tree;
    struct api_repo *repo = calloc(1, sizeof(*repo));
    int rc;
    if (!repo)
        return -ENOMEM;
    rc = api_get_repo(tree->api, tree->workspace, fa->repo, repo);
    if (rc == -EACCES)
        rc = -ENOENT; /* a token that may not see it: for this mount it is not there */
    if (rc == 0 && tree->project &&
        (!repo->project_key || strcmp(repo->project_key, tree->project) != 0))
        rc = -ENOENT;
    if (rc) {
        repo_free(repo);
        return rc;
    }
    *value = repo;
    return 0;
}

/* The open pull requests of a repository, sorted by id. */
static void pr_list_free(void *value)
{
    api_pullrequest_list_release(value);
    free(value);
}

static int fetch_prs(void *arg, const void *previous, void **value)
{
    (void)previous; /* any pull request can be looked up, listed or not: no name goes away */
    struct fetch_args *fa = arg;
    struct api_pullrequest_list *list = calloc(1, sizeof(*list));
    int rc;
    if (!list)
        return -ENOMEM;
    rc = api_list_pullrequests(fa->tree->api, fa->tree->workspace, fa->repo, list);
    if (rc == -EACCES) {
        /* A token without the pullrequest scope: an empty directory, said once. */
        log_once(LOG_LEVEL_WARN, "tree:pr-scope",
                 "the token may not read pull requests (it lacks the pullrequest scope): "
                 "pullrequests/ stays empty");
        rc = 0;
    }
    if (rc) {
        pr_list_free(list);
        return rc;
    }
    *value = list;
    return 0;
}

static void pr_free(void *value)
{
    api_pullrequest_release(value);
    free(value);
}

/* One pull request (fa->revision holds its id in decimal). */
static int fetch_pr(void *arg, const void *previous, void **value)
{
    (void)previous; /* a file, not a listing: no name comes or goes */
    struct fetch_args *fa = arg;
    struct api_pullrequest *pr = calloc(1, sizeof(*pr));
    int rc;
    if (!pr)
        return -ENOMEM;
    rc = api_get_pullrequest(fa->tree->api, fa->tree->workspace, fa->repo,
                             strtoull(fa->revision, NULL, 10), pr);
    if (rc == -EACCES)
        rc = -ENOENT; /* no pullrequest scope: there is nothing to show */
    if (rc) {
        pr_free(pr);
        return rc;
    }
    *value = pr;
    return 0;
}

/* comments.json of pull request fa->revision. */
static int fetch_comments(void *arg, const void *previous, void **value)
{
    (void)previous; /* a file, not a listing: no name comes or goes */
    struct fetch_args *fa = arg;
    struct api_doc *doc = calloc(1, sizeof(*doc));
    int rc;
    if (!doc)
        return -ENOMEM;
    rc = api_get_pullrequest_comments(fa->tree->api, fa->tree->workspace, fa->repo,
                                      strtoull(fa->revision, NULL, 10), doc);
    if (rc) {
        doc_free(doc);
        return rc;
    }
    *value = doc;
    return 0;
}

/* The full hash of fa->revision, an abbreviated one. */
static int fetch_full_hash(void *arg, const void *previous, void **value)
{
    (void)previous; /* hash-addressed: never changes */
    struct fetch_args *fa = arg;
    char *full = malloc(API_HASH_LEN + 1);
    int rc;
    if (!full)
        return -ENOMEM;
    rc = api_expand_hash(fa->tree->api, fa->tree->workspace, fa->repo, fa->revision, full);
    if (rc == -EINVAL)
        rc = -ENOENT;
    if (rc) {
        free(full);
        return rc;
    }
    *value = full;
    return 0;
}

/* ---- cache access ------------------------------------------------------ */

static int get_repos(struct tree *tree, struct cache_ref **ref)
{
    struct fetch_args fa = {.tree = tree};
    return cache_get(tree->cache, "repos", tree->ttl, fetch_repos, repo_index_free, &fa, ref);
}

static int get_refs(struct tree *tree, const char *repo, enum ref_kind kind, struct cache_ref **ref)
{
    char key[300];
    snprintf(key, sizeof(key), "%s/%s", kind == REF_BRANCHES ? "branches" : "tags", repo);
    struct fetch_args fa = {.tree = tree, .repo = repo, .kind = kind};
    return cache_get(tree->cache, key, tree->ttl, fetch_refs, ref_index_free, &fa, ref);
}

static int get_commit_list(struct tree *tree, const struct api_repo *repo, struct cache_ref **ref)
{
    char key[300];
    snprintf(key, sizeof(key), "commits/%s", repo->slug);
    struct fetch_args fa = {.tree = tree, .repo = repo->slug, .revision = repo->mainbranch};
    return cache_get(tree->cache, key, tree->ttl, fetch_commit_list, commit_list_free, &fa, ref);
}

static int get_repo(struct tree *tree, const char *slug, struct cache_ref **ref)
{
    char key[300];
    snprintf(key, sizeof(key), "repo/%s", slug);
    struct fetch_args fa = {.tree = tree, .repo = slug};
    return cache_get(tree->cache, key, tree->ttl, fetch_repo, repo_free, &fa, ref);
}

static int get_prs(struct tree *tree, const char *repo, struct cache_ref **ref)
{
    char key[300];
    snprintf(key, sizeof(key), "prs/%s", repo);
    struct fetch_args fa = {.tree = tree, .repo = repo};
    return cache_get(tree->cache, key, tree->ttl, fetch_prs, pr_list_free, &fa, ref);
}

static int get_pr(struct tree *tree, const char *repo, const char *id, struct cache_ref **ref)
{
    char key[330];
    snprintf(key, sizeof(key), "pr/%s/%s", repo, id);
    struct fetch_args fa = {.tree = tree, .repo = repo, .revision = id};
    return cache_get(tree->cache, key, tree->ttl, fetch_pr, pr_free, &fa, ref);
}

static int get_comments(struct tree *tree, const char *repo, uint64_t id, struct cache_ref **ref)
{
    char key[330], number[24];
    snprintf(number, sizeof(number), "%" PRIu64, id);
    snprintf(key, sizeof(key), "comments/%s/%s", repo, number);
    struct fetch_args fa = {.tree = tree, .repo = repo, .revision = number};
    return cache_get(tree->cache, key, tree->ttl, fetch_comments, doc_free, &fa, ref);
}

static int get_full_hash(struct tree *tree, const char *repo, const char *abbrev,
                         struct cache_ref **ref)
{
    char key[330];
    snprintf(key, sizeof(key), "hash/%s/%s", repo, abbrev);
    struct fetch_args fa = {.tree = tree, .repo = repo, .revision = abbrev};
    return cache_get(tree->cache, key, CACHE_FOREVER, fetch_full_hash, free, &fa, ref);
}

static int get_commit(struct tree *tree, const char *repo, const char *hash, struct cache_ref **ref)
{
    char key[320];
    snprintf(key, sizeof(key), "commit/%s/%s", repo, hash);
    struct fetch_args fa = {.tree = tree, .repo = repo, .revision = hash};
    /* Hash-addressed: never changes, so never refetched. */
    return cache_get(tree->cache, key, CACHE_FOREVER, fetch_commit, commit_free, &fa, ref);
}

static int get_doc(struct tree *tree, const char *name, struct cache_ref **ref)
{
    struct fetch_args fa = {.tree = tree, .revision = name};
    return cache_get(tree->cache, name, tree->ttl, fetch_doc, doc_free, &fa, ref);
}

static int get_dir(struct tree *tree, const char *repo, const char *hash, const char *dir,
                   struct cache_ref **ref)
{
    char *key = dir_key(repo, hash, dir);
    if (!key)
        return -ENOMEM;
    struct fetch_args fa = {.tree = tree, .repo = repo, .revision = hash, .path = dir};
    int rc = cache_get(tree->cache, key, CACHE_FOREVER, fetch_dir, dir_index_free, &fa, ref);
    free(key);
    return rc;
}

/*
 * Opens a file's content or a commit's diff from the store, downloading it
 * first when absent. Concurrent callers share one download: the cache entry
 * (max_age 0) serialises them, and the ones that waited find it on disk.
 */
static int open_blob(struct tree *tree, enum blob_kind kind, const char *repo, const char *hash,
                     const char *path, int *fd, uint64_t *size)
{
    char *key;
    int rc = -EIO;
    static const char *const prefixes[] = {
        [BLOB_FILE] = "file", [BLOB_DIFF] = "diff", [BLOB_PR_DIFF] = "prdiff"};
    if (asprintf(&key, "%s\n%s\n%s\n%s", prefixes[kind], repo, hash,
                 path ? path : "") < 0)
        return -ENOMEM;
    struct fetch_args fa = {
        .tree = tree, .repo = repo, .revision = hash, .path = path, .key = key, .blob = kind};
    /* Twice: an entry removed between the download and the open is fetched again. */
    for (int attempt = 0; attempt < 2 && rc == -EIO; attempt++) {
        struct cache_ref *ref;
        rc = cache_get(tree->cache, key, 0, fetch_blob, NULL, &fa, &ref);
        if (rc)
            break;
        cache_ref_put(ref);
        rc = store_lookup(tree->store, key, fd, size);
        if (rc == -ENOENT)
            rc = -EIO;
    }
    free(key);
    return rc;
}

/*
 * A pull request's diff, kept under its id and the two commits it is
 * between: when the source moves on, the diff is a new entry.
 */
static int open_pr_diff(struct tree *tree, const char *repo, const struct api_pullrequest *pr,
                        int *fd, uint64_t *size)
{
    char id[24], *between;
    snprintf(id, sizeof(id), "%" PRIu64, pr->id);
    if (asprintf(&between, "%s..%s", pr->source, pr->destination) < 0)
        return -ENOMEM;
    int rc = open_blob(tree, BLOB_PR_DIFF, repo, id, between, fd, size);
    free(between);
    return rc;
}

/* The exact match for key in a name-sorted index, or NULL. */
static const void *find_named(const void *const *items, size_t count, const char *key,
                              const char *(*name_of)(const void *))
{
    size_t at = lower_bound(items, count, key, name_of);
    return at < count && strcmp(name_of(items[at]), key) == 0 ? items[at] : NULL;
}

static size_t ref_lower_bound(const struct ref_index *index, const char *key)
{
    return lower_bound((const void *const *)index->exposed, index->count, key, ref_name);
}

static int ref_has_prefix(const struct api_ref *ref, const char *prefix, size_t len)
{
    return strncmp(ref->name, prefix, len) == 0;
}

static int is_listed_commit(const struct api_commit_list *list, const char *hash, time_t *date)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i].hash, hash) == 0) {
            *date = (time_t)list->items[i].date;
            return 1;
        }
    return 0;
}

/* ---- nodes ------------------------------------------------------------- */

/* Kinds from NODE_COMMIT on are addressed by a commit hash: immutable. */
enum node_kind {
    NODE_ROOT,
    NODE_BBFS,  /* .bbfs/: about the mount itself */
    NODE_STATS, /* .bbfs/stats */
    NODE_WORKSPACE,
    NODE_DOC, /* workspace.json, project.json */
    NODE_REPO,
    NODE_REPO_JSON,
    NODE_DESCRIPTION,
    NODE_CLONE_URL,
    NODE_HEAD,
    NODE_REFS, /* branches/, tags/, or a directory made of ref-name parts */
    NODE_REF_LINK,
    NODE_COMMITS,
    NODE_PRS,            /* pullrequests/ */
    NODE_PR,             /* pullrequests/ID */
    NODE_PR_JSON,        /* pullrequest.json */
    NODE_PR_TITLE,
    NODE_PR_DESCRIPTION,
    NODE_PR_STATE,
    NODE_PR_LINK,        /* source, destination */
    NODE_PR_DIFF,
    NODE_PR_COMMENTS,    /* comments.json */
    NODE_COMMIT,
    NODE_COMMIT_JSON,
    NODE_MESSAGE,
    NODE_PARENTS,
    NODE_PARENT_LINK,
    NODE_DIFF,
    NODE_TREE_DIR, /* tree/ or a directory below it */
    NODE_TREE_FILE,
    NODE_TREE_LINK,
    NODE_TREE_SUBMODULE, /* shown as an empty directory */
};

struct node {
    enum node_kind kind;
    char *buf; /* the split copy of the path */
    char *parts[NAMES_MAX_DEPTH];
    int nparts;

    struct cache_ref *doc_ref;
    struct cache_ref *repos_ref;
    struct cache_ref *repo_ref; /* the repository asked for alone, when the listing was not at hand */
    const struct api_repo *repo;
    enum ref_kind ref_kind;
    struct cache_ref *refs_ref;
    char *ref_prefix;          /* NODE_REFS: "" or "feature"; NODE_REF_LINK: the name */
    const struct api_ref *ref; /* NODE_REF_LINK */
    const char *hash;          /* NODE_COMMIT and below */
    time_t commit_date;
    struct cache_ref *commit_ref; /* the full commit, when it was needed */
    const char *parent;           /* NODE_PARENT_LINK */
    char *tree_path;              /* NODE_TREE_*: the path below tree/, "" for tree/ itself */
    struct cache_ref *dir_ref;    /* NODE_TREE_* below tree/: the parent directory */
    const struct api_entry *entry;
    struct cache_ref *pr_ref;       /* NODE_PR and below: the listing or the one pull request */
    const struct api_pullrequest *pr;
    const char *pr_hash;            /* NODE_PR_LINK: the abbreviated hash it points to */
    struct cache_ref *comments_ref; /* NODE_PR_COMMENTS, once read */
    char *scratch; /* generated content or link target */
};

static void node_release(struct node *n)
{
    cache_ref_put(n->doc_ref);
    cache_ref_put(n->repos_ref);
    cache_ref_put(n->repo_ref);
    cache_ref_put(n->refs_ref);
    cache_ref_put(n->commit_ref);
    cache_ref_put(n->dir_ref);
    cache_ref_put(n->pr_ref);
    cache_ref_put(n->comments_ref);
    free(n->tree_path);
    free(n->ref_prefix);
    free(n->scratch);
    free(n->buf);
    memset(n, 0, sizeof(*n));
}

static const struct api_commit *node_commit(const struct node *n)
{
    return n->commit_ref ? cache_ref_value(n->commit_ref) : NULL;
}

static int resolve_refs(struct tree *tree, struct node *n)
{
    n->ref_prefix = names_join(n->parts, 3, n->nparts);
    if (!n->ref_prefix)
        return -ENOMEM;
    n->kind = NODE_REFS;
    /* branches/ and tags/ themselves exist without asking for their contents. */
    if (n->nparts == 3)
        return 0;
    int rc = get_refs(tree, n->repo->slug, n->ref_kind, &n->refs_ref);
    if (rc)
        return rc;
    const struct ref_index *index = cache_ref_value(n->refs_ref);

    size_t at = ref_lower_bound(index, n->ref_prefix);
    if (at < index->count && strcmp(index->exposed[at]->name, n->ref_prefix) == 0) {
        n->kind = NODE_REF_LINK;
        n->ref = index->exposed[at];
        return 0;
    }
    /* A directory when some ref name continues with "prefix/". */
    size_t len = strlen(n->ref_prefix);
    for (; at < index->count && ref_has_prefix(index->exposed[at], n->ref_prefix, len); at++)
        if (index->exposed[at]->name[len] == '/')
            return 0;
    return -ENOENT;
}

static int resolve_tree(struct tree *tree, struct node *n)
{
    n->tree_path = names_join(n->parts, 5, n->nparts);
    if (!n->tree_path)
        return -ENOMEM;
    n->kind = NODE_TREE_DIR;
    if (n->nparts == 5)
        return 0;

    char *dir = names_join(n->parts, 5, n->nparts - 1);
    if (!dir)
        return -ENOMEM;
    int rc = get_dir(tree, n->repo->slug, n->hash, dir, &n->dir_ref);
    free(dir);
    if (rc)
        return rc;
    const struct dir_index *dir_index = cache_ref_value(n->dir_ref);
    n->entry = find_named((const void *const *)dir_index->exposed, dir_index->count,
                          n->parts[n->nparts - 1], entry_name);
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
        n->kind = NODE_TREE_FILE;
        break;
    }
    return 0;
}

static int resolve_commit(struct tree *tree, struct node *n)
{
    int rc;
    n->hash = n->parts[3];
    if (!api_is_full_hash(n->hash))
        return -ENOENT;
    n->kind = NODE_COMMIT;

    /* The directory itself: a listed commit needs no request of its own. */
    if (n->nparts == 4 && n->repo->mainbranch) {
        struct cache_ref *list_ref;
        rc = get_commit_list(tree, n->repo, &list_ref);
        if (rc == 0) {
            int listed = is_listed_commit(cache_ref_value(list_ref), n->hash, &n->commit_date);
            cache_ref_put(list_ref);
            if (listed)
                return 0;
        }
    }
    rc = get_commit(tree, n->repo->slug, n->hash, &n->commit_ref);
    if (rc)
        return rc;
    const struct api_commit *commit = node_commit(n);
    n->commit_date = (time_t)commit->date;
    if (n->nparts == 4)
        return 0;

    const char *name = n->parts[4];
    if (strcmp(name, "tree") == 0)
        return resolve_tree(tree, n);
    if (n->nparts == 5) {
        if (strcmp(name, "diff") == 0)
            n->kind = NODE_DIFF;
        else if (strcmp(name, "commit.json") == 0)
            n->kind = NODE_COMMIT_JSON;
        else if (strcmp(name, "message") == 0)
            n->kind = NODE_MESSAGE;
        else if (strcmp(name, "parents") == 0)
            n->kind = NODE_PARENTS;
        else
            return -ENOENT;
        return 0;
    }
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

/* REPO/pullrequests[/ID[/CHILD]]: an open one from the listing, any other asked for alone. */
static int resolve_pullrequest(struct tree *tree, struct node *n)
{
    static const struct {
        const char *name;
        enum node_kind kind;
    } children[] = {
        {"pullrequest.json", NODE_PR_JSON}, {"title", NODE_PR_TITLE},
        {"description", NODE_PR_DESCRIPTION}, {"state", NODE_PR_STATE},
        {"source", NODE_PR_LINK}, {"destination", NODE_PR_LINK},
        {"diff", NODE_PR_DIFF}, {"comments.json", NODE_PR_COMMENTS},
    };
    n->kind = NODE_PRS;
    if (n->nparts == 3)
        return 0;
    const char *id = n->parts[3];
    if (n->nparts > 5 || !is_pr_id(id))
        return -ENOENT;
    int rc = get_prs(tree, n->repo->slug, &n->pr_ref);
    if (rc)
        return rc;
    n->pr = find_pr(cache_ref_value(n->pr_ref), strtoull(id, NULL, 10));
    if (!n->pr) {
        cache_ref_put(n->pr_ref);
        n->pr_ref = NULL;
        rc = get_pr(tree, n->repo->slug, id, &n->pr_ref);
        if (rc)
            return rc;
        n->pr = cache_ref_value(n->pr_ref);
    }
    n->kind = NODE_PR;
    if (n->nparts == 4)
        return 0;
    for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++) {
        if (strcmp(n->parts[4], children[i].name) != 0)
            continue;
        n->kind = children[i].kind;
        if (n->kind == NODE_PR_LINK) {
            n->pr_hash = n->parts[4][0] == 's' ? n->pr->source : n->pr->destination;
            if (!n->pr_hash[0])
                return -ENOENT; /* the API did not say */
        }
        return 0;
    }
    return -ENOENT;
}

static int resolve_repo_child(struct tree *tree, struct node *n)
{
    const char *name = n->parts[2];
    if (n->nparts == 3) {
        static const struct {
            const char *name;
            enum node_kind kind;
        } fixed[] = {
            {"repository.json", NODE_REPO_JSON},
            {"description", NODE_DESCRIPTION},
            {"clone-url", NODE_CLONE_URL},
            {"commits", NODE_COMMITS},
        };
        for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
            if (strcmp(name, fixed[i].name) == 0) {
                n->kind = fixed[i].kind;
                return 0;
            }
        if (strcmp(name, "HEAD") == 0) {
            if (!n->repo->mainbranch || !names_ref_is_valid(n->repo->mainbranch))
                return -ENOENT;
            n->kind = NODE_HEAD;
            return 0;
        }
    }
    if (strcmp(name, "branches") == 0 || strcmp(name, "tags") == 0) {
        n->ref_kind = name[0] == 'b' ? REF_BRANCHES : REF_TAGS;
        return resolve_refs(tree, n);
    }
    if (strcmp(name, "commits") == 0)
        return resolve_commit(tree, n);
    if (strcmp(name, "pullrequests") == 0)
        return resolve_pullrequest(tree, n);
    return -ENOENT;
}

/*
 * The repository called name: from the listing when it is at hand (in
 * memory, or stored and fresh), else asked for alone. In a workspace of
 * thousands of repositories, going straight to one costs one request rather
 * than every page of the listing; a name that is not there (a shell probing
 * .git) costs one request, then is remembered for ttl.
 */
static int find_repo(struct tree *tree, struct node *n, const char *name)
{
    char key[300];
    int rc = 0;
    /*
     * Every request resolves its path anew: what is in memory is asked first,
     * so that looking at the stored listing (a read of the disk) is done only
     * when a repository is first reached.
     */
    snprintf(key, sizeof(key), "repo/%s", name);
    rc = cache_peek(tree->cache, key, &n->repo_ref);
    if (rc == 0)
        n->repo = cache_ref_value(n->repo_ref);
    if (rc != -EAGAIN)
        return rc; /* known, or known not to be there */
    rc = 0;
    if (cache_peek(tree->cache, "repos", &n->repos_ref) == 0 || tree->offline ||
        api_repos_are_stored(tree->api, tree->workspace, tree->project)) {
        if (!n->repos_ref)
            rc = get_repos(tree, &n->repos_ref);
        if (rc)
            return rc;
        const struct repo_index *repos = cache_ref_value(n->repos_ref);
        n->repo = find_named((const void *const *)repos->exposed, repos->count, name, repo_slug);
        return n->repo ? 0 : -ENOENT;
    }
    rc = get_repo(tree, name, &n->repo_ref);
    if (rc)
        return rc;
    n->repo = cache_ref_value(n->repo_ref);
    return 0;
}

static int resolve(struct tree *tree, const char *path, struct node *n)
{
    int rc;
    memset(n, 0, sizeof(*n));
    n->buf = strdup(path);
    if (!n->buf)
        return -ENOMEM;
    n->nparts = names_split(n->buf, n->parts, NAMES_MAX_DEPTH);
    if (n->nparts < 0)
        return -ENOENT;
    if (n->nparts == 0) {
        n->kind = NODE_ROOT;
        return 0;
    }
    if (strcmp(n->parts[0], BBFS_DIR) == 0 && strcmp(tree->workspace, BBFS_DIR) != 0) {
        n->kind = n->nparts == 1 ? NODE_BBFS : NODE_STATS;
        return n->nparts == 1 || (n->nparts == 2 && strcmp(n->parts[1], STATS_FILE) == 0)
                   ? 0
                   : -ENOENT;
    }
    if (strcmp(n->parts[0], tree->workspace) != 0)
        return -ENOENT;
    if (n->nparts == 1) {
        n->kind = NODE_WORKSPACE;
        return 0;
    }

    const char *name = n->parts[1];
    if (n->nparts == 2 &&
        (strcmp(name, WORKSPACE_JSON) == 0 || (tree->project && strcmp(name, PROJECT_JSON) == 0))) {
        n->kind = NODE_DOC;
        return get_doc(tree, name, &n->doc_ref);
    }
    rc = find_repo(tree, n, name);
    if (rc)
        return rc;
    if (n->nparts == 2) {
        n->kind = NODE_REPO;
        return 0;
    }
    return resolve_repo_child(tree, n);
}

/* A symlink in the repository: its target is the content of its blob. */
static int read_link_blob(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    uint64_t size;
    int fd;
    int rc = open_blob(tree, BLOB_FILE, n->repo->slug, n->hash, n->tree_path, &fd, &size);
    if (rc)
        return rc;
    if (size > PATH_MAX) {
        close(fd);
        return -ENAMETOOLONG;
    }
    n->scratch = malloc(size + 1);
    ssize_t got = n->scratch ? pread(fd, n->scratch, size, 0) : -1;
    close(fd);
    if (got != (ssize_t)size)
        return n->scratch ? -EIO : -ENOMEM;
    n->scratch[size] = '\0';
    *data = n->scratch;
    *len = size;
    return 0;
}

/*
 * .bbfs/stats: one "name value" line per counter, for grep and awk. A
 * malloc'd string, or NULL.
 */
static char *format_stats(struct tree *tree)
{
    struct api_stats a;
    uint64_t hits, misses;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    if (!f)
        return NULL;
    api_get_stats(tree->api, &a);
    cache_counts(tree->cache, &hits, &misses);
    fprintf(f, "requests %" PRIu64 "\n", a.requests);
    fprintf(f, "requests_last_hour %" PRIu64 "\n", a.requests_last_hour);
    for (int k = 0; k < API_KIND_COUNT; k++)
        fprintf(f, "requests_%s %" PRIu64 "\n", api_kind_name((enum api_kind)k), a.by_kind[k]);
    fprintf(f, "retries %" PRIu64 "\n", a.retries);
    fprintf(f, "bytes_fetched %" PRIu64 "\n", a.bytes);
    fprintf(f, "memory_hits %" PRIu64 "\n", hits);
    fprintf(f, "memory_misses %" PRIu64 "\n", misses);
    fprintf(f, "stored_answers %" PRIu64 "\n", a.stored);
    fprintf(f, "revalidated_304 %" PRIu64 "\n", a.not_modified);
    fprintf(f, "stale_answers %" PRIu64 "\n", a.stale);
    fprintf(f, "files_from_cache %" PRIu64 "\n",
            __atomic_load_n(&tree->files_stored, __ATOMIC_RELAXED));
    fprintf(f, "files_downloaded %" PRIu64 "\n",
            __atomic_load_n(&tree->files_downloaded, __ATOMIC_RELAXED));
    fprintf(f, "errors %" PRIu64 "\n", a.failures + a.bad_answers);
    fprintf(f, "errors_network %" PRIu64 "\n", a.failed_network);
    fprintf(f, "errors_auth %" PRIu64 "\n", a.failed_auth);
    fprintf(f, "errors_not_found %" PRIu64 "\n", a.failed_not_found);
    fprintf(f, "errors_rate_limited %" PRIu64 "\n", a.failed_rate_limited);
    fprintf(f, "errors_server %" PRIu64 "\n", a.failed_server);
    fprintf(f, "errors_bad_answer %" PRIu64 "\n", a.bad_answers);
    fprintf(f, "errors_other %" PRIu64 "\n", a.failed_other);
    if (a.ratelimit_limit >= 0)
        fprintf(f, "ratelimit_limit %ld\n", a.ratelimit_limit);
    else
        fprintf(f, "ratelimit_limit unknown\n");
    fprintf(f, "ratelimit_near_limit %s\n", a.ratelimit_near ? "true" : "false");
    fprintf(f, "ratelimit_near_limit_answers %" PRIu64 "\n", a.ratelimit_near_count);
    fprintf(f, "offline %s\n", tree->offline ? "true" : "false");
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* Contents of generated files; link targets of symlinks. Borrowed from n. */
static int node_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    const struct api_doc *doc = NULL;
    int printed = 0;

    switch (n->kind) {
    case NODE_DOC:
        doc = cache_ref_value(n->doc_ref);
        break;
    case NODE_REPO_JSON:
        doc = &n->repo->doc;
        break;
    case NODE_COMMIT_JSON:
        doc = &node_commit(n)->doc;
        break;
    case NODE_MESSAGE:
        *data = node_commit(n)->message ? node_commit(n)->message : "";
        *len = strlen(*data);
        return 0;
    case NODE_DESCRIPTION:
        printed = asprintf(&n->scratch, "%s\n", n->repo->description ? n->repo->description : "");
        break;
    case NODE_CLONE_URL:
        printed = asprintf(&n->scratch, "https://x-token-auth@bitbucket.org/%s/%s.git\n",
                           tree->workspace, n->repo->slug);
        break;
    case NODE_HEAD:
        printed = asprintf(&n->scratch, "branches/%s", n->repo->mainbranch);
        break;
    case NODE_REF_LINK: {
        /* One "../" per name part climbs back to the repository directory. */
        size_t depth = 1;
        for (const char *p = n->ref->name; *p; p++)
            depth += *p == '/';
        n->scratch = malloc(depth * 3 + sizeof("commits/") + API_HASH_LEN);
        if (!n->scratch)
            return -ENOMEM;
        char *w = n->scratch;
        for (size_t i = 0; i < depth; i++, w += 3)
            memcpy(w, "../", 3);
        sprintf(w, "commits/%s", n->ref->target);
        break;
    }
    case NODE_PARENT_LINK:
        printed = asprintf(&n->scratch, "../../%s", n->parent);
        break;
    case NODE_TREE_LINK:
        return read_link_blob(tree, n, data, len);
    case NODE_STATS:
        n->scratch = format_stats(tree);
        printed = n->scratch ? 0 : -1;
        break;
    case NODE_PR_JSON:
        doc = &n->pr->doc;
        break;
    case NODE_PR_TITLE:
        printed = asprintf(&n->scratch, "%s\n", n->pr->title);
        break;
    case NODE_PR_DESCRIPTION:
        printed = asprintf(&n->scratch, "%s\n", n->pr->description);
        break;
    case NODE_PR_STATE:
        printed = asprintf(&n->scratch, "%s\n", n->pr->state);
        break;
    case NODE_PR_LINK: {
        struct cache_ref *full;
        int rc = get_full_hash(tree, n->repo->slug, n->pr_hash, &full);
        if (rc)
            return rc;
        printed = asprintf(&n->scratch, "%s%s", PR_LINK_PREFIX, (char *)cache_ref_value(full));
        cache_ref_put(full);
        break;
    }
    case NODE_PR_COMMENTS: {
        int rc = get_comments(tree, n->repo->slug, n->pr->id, &n->comments_ref);
        if (rc)
            return rc;
        doc = cache_ref_value(n->comments_ref);
        break;
    }
    default:
        return -EISDIR;
    }
    if (doc) {
        *data = doc->text ? doc->text : "";
        *len = doc->text ? doc->len : 0;
        return 0;
    }
    if (printed < 0) {
        n->scratch = NULL;
        return -ENOMEM;
    }
    *data = n->scratch;
    *len = strlen(n->scratch);
    return 0;
}

static time_t node_mtime(const struct tree *tree, const struct node *n)
{
    if (n->kind >= NODE_COMMIT)
        return n->commit_date;
    switch (n->kind) {
    case NODE_STATS:
        return time(NULL);
    case NODE_ROOT:
    case NODE_BBFS:
    case NODE_WORKSPACE:
    case NODE_DOC:
        return tree->mount_time;
    case NODE_REF_LINK:
        return (time_t)n->ref->date;
    case NODE_PRS:
        return (time_t)n->repo->updated_on;
    default:
        return n->pr ? (time_t)n->pr->updated_on : (time_t)n->repo->updated_on;
    }
}

static int node_stat(struct tree *tree, struct node *n, struct tree_stat *st)
{
    memset(st, 0, sizeof(*st));
    st->mtime = node_mtime(tree, n);
    st->immutable = n->kind >= NODE_COMMIT;
    st->live = n->kind == NODE_STATS;
    switch (n->kind) {
    case NODE_ROOT:
    case NODE_BBFS:
    case NODE_WORKSPACE:
    case NODE_REPO:
    case NODE_REFS:
    case NODE_COMMITS:
    case NODE_PRS:
    case NODE_PR:
    case NODE_COMMIT:
    case NODE_PARENTS:
    case NODE_TREE_DIR:
    case NODE_TREE_SUBMODULE:
        st->mode = MODE_DIR;
        return 0;
    case NODE_PR_LINK:
        /* Its length is known before the abbreviated hash is expanded. */
        st->mode = MODE_LINK;
        st->size = (off_t)(strlen(PR_LINK_PREFIX) + API_HASH_LEN);
        return 0;
    case NODE_PR_DIFF: {
        uint64_t size;
        int fd;
        int rc = open_pr_diff(tree, n->repo->slug, n->pr, &fd, &size);
        if (rc)
            return rc;
        close(fd);
        st->mode = MODE_FILE;
        st->size = (off_t)size;
        return 0;
    }
    case NODE_TREE_FILE:
        st->mode = n->entry->executable ? (S_IFREG | 0555) : MODE_FILE;
        st->size = (off_t)n->entry->size;
        return 0;
    case NODE_TREE_LINK:
        /* From the listing: readlink alone fetches the target. */
        st->mode = MODE_LINK;
        st->size = (off_t)n->entry->size;
        return 0;
    case NODE_DIFF: {
        /* The exact size needs the diff itself: stat fetches it into the store. */
        uint64_t size;
        int fd;
        int rc = open_blob(tree, BLOB_DIFF, n->repo->slug, n->hash, NULL, &fd, &size);
        if (rc)
            return rc;
        close(fd);
        st->mode = MODE_FILE;
        st->size = (off_t)size;
        return 0;
    }
    case NODE_HEAD:
    case NODE_REF_LINK:
    case NODE_PARENT_LINK:
        st->mode = MODE_LINK;
        break;
    default:
        st->mode = MODE_FILE;
        break;
    }
    const char *data;
    size_t len;
    int rc = node_content(tree, n, &data, &len);
    if (rc)
        return rc;
    st->size = (off_t)len;
    free(n->scratch);
    n->scratch = NULL;
    return 0;
}

/* ---- public API -------------------------------------------------------- */

int tree_new(const struct tree_config *cfg, struct api_client *api, struct tree **out)
{
    struct tree *tree = calloc(1, sizeof(*tree));
    if (!tree)
        return -ENOMEM;
    tree->workspace = strdup(cfg->workspace);
    tree->project = cfg->project ? strdup(cfg->project) : NULL;
    tree->cache = cache_new();
    pthread_mutex_init(&tree->walk_lock, NULL);
    if (!tree->workspace || (cfg->project && !tree->project) || !tree->cache) {
        tree_free(tree);
        return -ENOMEM;
    }
    tree->ttl = cfg->ttl;
    tree->commit_limit = cfg->commit_limit;
    tree->offline = cfg->offline;
    tree->mount_time = time(NULL);
    tree->api = api;
    tree->store = cfg->store;
    tree->changed = cfg->changed;
    tree->changed_ctx = cfg->changed_ctx;
    *out = tree;
    return 0;
}

void tree_free(struct tree *tree)
{
    if (!tree)
        return;
    workers_free(tree->readahead); /* its jobs use the cache: first */
    cache_free(tree->cache);
    pthread_mutex_destroy(&tree->walk_lock);
    free(tree->walk_ancestor);
    free(tree->readahead_dir);
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

/*
 * Reading ahead: a reader going through the files of a directory (grep -r,
 * cat *, tar) opens one after the other, each a round trip to the API.
 * When a second file of a directory is opened within READAHEAD_SECONDS of
 * the first, the files after it in the listing (at most READAHEAD_MAX, none
 * over READAHEAD_MAX_SIZE) are downloaded by the workers while the reader works;
 * its own opens then wait for those downloads or find them stored. Never
 * offline, and not while the API says the rate limit is nearly used up
 * (READAHEAD_* are defined at the top).
 */
struct readahead_job {
    struct tree *tree;
    char *repo;
    char *hash;
    char *path;
};

static void readahead_run(void *arg)
{
    struct readahead_job *job = arg;
    uint64_t size;
    int fd;
    if (open_blob(job->tree, BLOB_FILE, job->repo, job->hash, job->path, &fd, &size) == 0)
        close(fd);
}

static void readahead_free(void *arg)
{
    struct readahead_job *job = arg;
    free(job->repo);
    free(job->hash);
    free(job->path);
    free(job);
}

/*
 * Whether opening file name of dir (repo\nhash\ndir) should read ahead: it
 * is the second file of dir opened within READAHEAD_SECONDS of another, or
 * the reader is half-way through the files read ahead last.
 */
static int reading_through(struct tree *tree, const char *dir, const char *name)
{
    time_t now = time(NULL);
    int ahead = 0;
    pthread_mutex_lock(&tree->walk_lock);
    if (tree->readahead_dir && strcmp(tree->readahead_dir, dir) == 0 &&
        now - tree->readahead_last <= READAHEAD_SECONDS) {
        /* the same file again (cat then cat) is not reading through */
        if (strcmp(tree->readahead_name, name) != 0) {
            int opens = ++tree->readahead_opens;
            /* the second, then every half window, so reading never outruns it */
            ahead = opens >= 2 && (opens - 2) % (READAHEAD_MAX / 2) == 0;
        }
    } else {
        free(tree->readahead_dir);
        tree->readahead_dir = strdup(dir);
        tree->readahead_opens = 1;
    }
    snprintf(tree->readahead_name, sizeof(tree->readahead_name), "%s", name);
    tree->readahead_last = now;
    pthread_mutex_unlock(&tree->walk_lock);
    return ahead;
}

static void read_ahead(struct tree *tree, const struct node *n)
{
    struct api_stats stats;
    const char *slash = strrchr(n->tree_path, '/');
    size_t dirlen = slash ? (size_t)(slash - n->tree_path) : 0;
    char *key;

    if (tree->offline || !n->dir_ref)
        return;
    if (asprintf(&key, "%s\n%s\n%.*s", n->repo->slug, n->hash, (int)dirlen, n->tree_path) < 0)
        return;
    int ahead = reading_through(tree, key, n->entry->name);
    free(key);
    if (!ahead)
        return;
    api_get_stats(tree->api, &stats);
    if (stats.ratelimit_near)
        return;
    /*
     * The threads start at the first need, not with the tree: bbfs goes to
     * the background (fork) after the tree is made, and threads do not survive that.
     */
    pthread_mutex_lock(&tree->walk_lock);
    if (!tree->readahead && workers_new(READAHEAD_THREADS, 2 * READAHEAD_MAX, &tree->readahead))
        tree->readahead = NULL;
    struct workers *pool = tree->readahead;
    pthread_mutex_unlock(&tree->walk_lock);
    if (!pool)
        return; /* reading ahead is an optimisation */
    /* The files after this one in listing order, as readdir hands them to the reader. */
    const struct dir_index *index = cache_ref_value(n->dir_ref);
    size_t from = 0;
    while (from < index->count && index->exposed[from] != n->entry)
        from++;
    for (size_t i = from + 1, queued = 0; i < index->count && queued < READAHEAD_MAX; i++) {
        const struct api_entry *e = index->exposed[i];
        if (e->type != API_ENTRY_FILE || e->size > READAHEAD_MAX_SIZE)
            continue;
        struct readahead_job *job = calloc(1, sizeof(*job));
        if (!job)
            return;
        job->tree = tree;
        job->repo = strdup(n->repo->slug);
        job->hash = strdup(n->hash);
        if (asprintf(&job->path, "%.*s%s%s", (int)dirlen, n->tree_path, dirlen ? "/" : "",
                     e->name) < 0)
            job->path = NULL;
        if (!job->repo || !job->hash || !job->path) {
            readahead_free(job);
            return;
        }
        if (workers_submit(pool, readahead_run, readahead_free, job) != 0)
            return;
        queued++;
    }
}

int tree_open(struct tree *tree, const char *path, struct tree_file *out)
{
    struct node n;
    const char *content;
    uint64_t size;
    int rc;

    memset(out, 0, sizeof(*out));
    out->fd = -1;
    rc = resolve(tree, path, &n);
    if (rc)
        goto out;
    switch (n.kind) {
    case NODE_TREE_FILE:
        read_ahead(tree, &n);
        rc = open_blob(tree, BLOB_FILE, n.repo->slug, n.hash, n.tree_path, &out->fd, &size);
        goto out;
    case NODE_DIFF:
        rc = open_blob(tree, BLOB_DIFF, n.repo->slug, n.hash, NULL, &out->fd, &size);
        goto out;
    case NODE_PR_DIFF:
        rc = open_pr_diff(tree, n.repo->slug, n.pr, &out->fd, &size);
        goto out;
    case NODE_HEAD:
    case NODE_REF_LINK:
    case NODE_PARENT_LINK:
    case NODE_TREE_LINK:
    case NODE_PR_LINK:
        rc = -ELOOP;
        goto out;
    default:
        break;
    }
    rc = node_content(tree, &n, &content, &out->len);
    if (rc)
        goto out;
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
    if (file->fd >= 0)
        close(file->fd);
    free(file->data);
    memset(file, 0, sizeof(*file));
    file->fd = -1;
}

int tree_readlink(struct tree *tree, const char *path, char **target)
{
    struct node n;
    const char *content;
    size_t len;
    int rc = resolve(tree, path, &n);
    if (rc)
        goto out;
    if (n.kind != NODE_HEAD && n.kind != NODE_REF_LINK && n.kind != NODE_PARENT_LINK &&
        n.kind != NODE_TREE_LINK && n.kind != NODE_PR_LINK) {
        rc = -EINVAL;
        goto out;
    }
    rc = node_content(tree, &n, &content, &len);
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

/*
 * The web page of a repository or commit node, malloc'd; NULL for other nodes
 * or no memory. The repository's own link when the API gave one.
 */
static char *html_url(const struct tree *tree, const struct node *n)
{
    char *url = NULL, *repo_url = NULL;
    int printed = -1;
    if (n->repo->html_url && strncmp(n->repo->html_url, "https://", 8) == 0)
        repo_url = strdup(n->repo->html_url);
    else if (asprintf(&repo_url, "https://bitbucket.org/%s/%s", tree->workspace, n->repo->slug) < 0)
        repo_url = NULL;
    if (!repo_url)
        return NULL;
    if (n->kind == NODE_REPO)
        return repo_url;
    if (n->kind == NODE_COMMIT)
        printed = asprintf(&url, "%s/commits/%s", repo_url, n->hash);
    free(repo_url);
    return printed < 0 ? NULL : url;
}

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
    if (rc == 0 && (n.kind == NODE_REPO || n.kind == NODE_COMMIT)) {
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
    if (rc == 0 && strcmp(name, HTML_URL_XATTR) == 0 &&
        (n.kind == NODE_REPO || n.kind == NODE_COMMIT)) {
        *out = html_url(tree, &n);
        rc = *out ? 0 : -ENOMEM;
        *len = *out ? strlen(*out) : 0;
    } else if (rc == 0) {
        rc = -ENODATA;
    }
    node_release(&n);
    return rc;
}

/* ---- listings ---------------------------------------------------------- */

struct listing {
    struct tree_dir *dir;
    size_t cap;
};

static int add_entry(struct listing *l, const char *name, size_t namelen,
                     const struct tree_stat *st)
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

/* Adds the child called name of the directory at dirpath, with its attributes. */
static int add_child(struct tree *tree, struct listing *l, const char *dirpath, const char *name)
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
    return add_entry(l, name, strlen(name), &st);
}

static int list_workspace(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    /* The repositories first: when the API is down, one timeout, not three. */
    int rc = get_repos(tree, &n->repos_ref);
    if (rc)
        return rc;
    /* The documents are optional: a token may not read them. */
    static const char *const docs[] = {WORKSPACE_JSON, PROJECT_JSON};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        struct cache_ref *doc;
        if (docs[i] == PROJECT_JSON && !tree->project)
            continue;
        if (get_doc(tree, docs[i], &doc) != 0)
            continue;
        cache_ref_put(doc);
        if ((rc = add_child(tree, l, path, docs[i])))
            return rc;
    }
    const struct repo_index *index = cache_ref_value(n->repos_ref);
    for (size_t i = 0; i < index->count; i++) {
        const struct api_repo *repo = index->exposed[i];
        struct tree_stat st = {.mode = MODE_DIR, .mtime = (time_t)repo->updated_on};
        if ((rc = add_entry(l, repo->slug, strlen(repo->slug), &st)))
            return rc;
    }
    return 0;
}

static int list_refs(struct tree *tree, struct node *n, struct listing *l)
{
    if (!n->refs_ref) {
        int rc = get_refs(tree, n->repo->slug, n->ref_kind, &n->refs_ref);
        if (rc)
            return rc;
    }
    const struct ref_index *index = cache_ref_value(n->refs_ref);
    size_t plen = strlen(n->ref_prefix);
    size_t at = 0;
    const char *last_dir = NULL;
    size_t last_dir_len = 0;

    if (plen) {
        /* Names below "prefix/": a contiguous run in strcmp order. */
        char *key;
        if (asprintf(&key, "%s/", n->ref_prefix) < 0)
            return -ENOMEM;
        at = ref_lower_bound(index, key);
        free(key);
        plen++;
    }
    for (; at < index->count; at++) {
        const struct api_ref *ref = index->exposed[at];
        if (plen &&
            (strncmp(ref->name, n->ref_prefix, plen - 1) != 0 || ref->name[plen - 1] != '/'))
            break;
        const char *rest = ref->name + plen;
        const char *slash = strchr(rest, '/');
        size_t len = slash ? (size_t)(slash - rest) : strlen(rest);
        struct tree_stat st = {.mtime = (time_t)n->repo->updated_on};
        int rc;
        if (slash) {
            if (last_dir && last_dir_len == len && strncmp(last_dir, rest, len) == 0)
                continue;
            last_dir = rest;
            last_dir_len = len;
            st.mode = MODE_DIR;
        } else {
            struct node link = {.kind = NODE_REF_LINK, .ref = ref};
            const char *target;
            size_t tlen;
            if ((rc = node_content(NULL, &link, &target, &tlen)))
                return rc;
            free(link.scratch);
            st.mode = MODE_LINK;
            st.size = (off_t)tlen;
            st.mtime = (time_t)ref->date;
        }
        if ((rc = add_entry(l, rest, len, &st)))
            return rc;
    }
    return 0;
}

static int list_commits(struct tree *tree, struct node *n, struct listing *l)
{
    if (!n->repo->mainbranch)
        return 0;
    struct cache_ref *list_ref;
    int rc = get_commit_list(tree, n->repo, &list_ref);
    if (rc == -ENOENT)
        return 0; /* the main branch is gone: nothing to list */
    if (rc)
        return rc;
    const struct api_commit_list *list = cache_ref_value(list_ref);
    for (size_t i = 0; i < list->count && rc == 0; i++) {
        struct tree_stat st = {
            .mode = MODE_DIR, .mtime = (time_t)list->items[i].date, .immutable = 1};
        rc = add_entry(l, list->items[i].hash, strlen(list->items[i].hash), &st);
    }
    cache_ref_put(list_ref);
    return rc;
}

static int list_pullrequests(struct tree *tree, struct node *n, struct listing *l)
{
    struct cache_ref *ref;
    int rc = get_prs(tree, n->repo->slug, &ref);
    if (rc)
        return rc;
    const struct api_pullrequest_list *list = cache_ref_value(ref);
    for (size_t i = 0; i < list->count && rc == 0; i++) {
        char id[24];
        struct tree_stat st = {.mode = MODE_DIR, .mtime = (time_t)list->items[i].updated_on};
        int len = snprintf(id, sizeof(id), "%" PRIu64, list->items[i].id);
        rc = add_entry(l, id, (size_t)len, &st);
    }
    cache_ref_put(ref);
    return rc;
}

static int list_tree_dir(struct tree *tree, struct node *n, struct listing *l)
{
    struct cache_ref *ref;
    int rc = get_dir(tree, n->repo->slug, n->hash, n->tree_path, &ref);
    if (rc)
        return rc;
    const struct dir_index *index = cache_ref_value(ref);
    for (size_t i = 0; i < index->count && rc == 0; i++) {
        const struct api_entry *e = index->exposed[i];
        struct tree_stat st = {
            .mode = MODE_FILE, .size = (off_t)e->size, .mtime = n->commit_date, .immutable = 1};
        if (e->type == API_ENTRY_DIR || e->type == API_ENTRY_SUBMODULE) {
            st.mode = MODE_DIR;
            st.size = 0;
        } else if (e->type == API_ENTRY_LINK) {
            st.mode = MODE_LINK;
        } else if (e->executable) {
            st.mode = S_IFREG | 0555;
        }
        rc = add_entry(l, e->name, strlen(e->name), &st);
    }
    cache_ref_put(ref);
    return rc;
}

static int list_node(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    static const char *const repo_children[] = {"repository.json", "description", "clone-url",
                                                "HEAD",            "branches",    "tags",
                                                "commits",         "pullrequests"};
    /* Fixed modes: a plain ls of a pull request must not fetch its diff or comments. */
    static const struct {
        const char *name;
        mode_t mode;
    } pr_children[] = {
        {"pullrequest.json", MODE_FILE}, {"title", MODE_FILE}, {"description", MODE_FILE},
        {"state", MODE_FILE},            {"source", MODE_LINK}, {"destination", MODE_LINK},
        {"diff", MODE_FILE},             {"comments.json", MODE_FILE},
    };
    /* Fixed modes: a plain ls of a commit must not fetch its diff for a size. */
    static const struct {
        const char *name;
        mode_t mode;
    } commit_children[] = {
        {"commit.json", MODE_FILE}, {"message", MODE_FILE}, {"parents", MODE_DIR},
        {"diff", MODE_FILE},        {"tree", MODE_DIR},
    };
    int rc = 0;

    switch (n->kind) {
    case NODE_ROOT:
        rc = add_child(tree, l, path, tree->workspace);
        return rc ? rc : add_child(tree, l, path, BBFS_DIR);
    case NODE_BBFS:
        return add_child(tree, l, path, STATS_FILE);
    case NODE_WORKSPACE:
        return list_workspace(tree, n, l, path);
    case NODE_REPO:
        for (size_t i = 0; i < sizeof(repo_children) / sizeof(*repo_children) && !rc; i++)
            rc = add_child(tree, l, path, repo_children[i]);
        return rc;
    case NODE_REFS:
        return list_refs(tree, n, l);
    case NODE_COMMITS:
        return list_commits(tree, n, l);
    case NODE_PRS:
        return list_pullrequests(tree, n, l);
    case NODE_PR:
        for (size_t i = 0; i < sizeof(pr_children) / sizeof(*pr_children) && !rc; i++) {
            const char *name = pr_children[i].name;
            if ((strcmp(name, "source") == 0 && !n->pr->source[0]) ||
                (strcmp(name, "destination") == 0 && !n->pr->destination[0]))
                continue;
            struct tree_stat st = {.mode = pr_children[i].mode,
                                   .mtime = (time_t)n->pr->updated_on};
            rc = add_entry(l, name, strlen(name), &st);
        }
        return rc;
    case NODE_COMMIT:
        for (size_t i = 0; i < sizeof(commit_children) / sizeof(*commit_children) && !rc; i++) {
            struct tree_stat st = {.mode = commit_children[i].mode, .immutable = 1};
            rc = add_entry(l, commit_children[i].name, strlen(commit_children[i].name), &st);
        }
        return rc;
    case NODE_TREE_DIR:
        return list_tree_dir(tree, n, l);
    case NODE_TREE_SUBMODULE:
        return 0;
    case NODE_PARENTS: {
        const struct api_commit *commit = node_commit(n);
        for (size_t i = 0; i < commit->parent_count && !rc; i++)
            rc = add_child(tree, l, path, commit->parents[i]);
        return rc;
    }
    default:
        return -ENOTDIR;
    }
}

int tree_list(struct tree *tree, const char *path, struct tree_dir *out)
{
    struct node n;
    struct listing l = {.dir = out};
    memset(out, 0, sizeof(*out));
    int rc = resolve(tree, path, &n);
    if (rc == 0)
        rc = list_node(tree, &n, &l, path);
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

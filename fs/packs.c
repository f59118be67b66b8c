/*
 * packs.c - whole trees through git (see packs.h): the state of each commit
 * (unknown, being fetched, unpacked, failed) and of each repository (its
 * size, why git is off for it), the remote and its tips through the cache,
 * the triggers, the fallbacks with their one log line, the counters.
 *
 * A repository's remote (git_discover, and ls-refs in protocol v2) is kept
 * in the cache for ttl like any mutable answer. Its fetch never fails: when
 * git does, the value says so (and the failure is recorded here), so that a
 * stale remote is never served in the place of the API.
 */
#include "fs/packs.h"

#include "api/api.h"
#include "api/git.h"
#include "api/log.h"
#include "fs/cache.h"
#include "fs/gitstore.h"
#include "fs/node.h"
#include "fs/objects.h"
#include "fs/unpack.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Commits remembered as merely unknown; past that many, the store is asked each time. */
#define PACKS_MAX_KNOWN 65536

enum commit_state { COMMIT_UNKNOWN, COMMIT_FETCHING, COMMIT_UNPACKED, COMMIT_FAILED };

struct commit {
    char *key; /* "repo\nhash"; first, for tsearch */
    enum commit_state state;
    int64_t date;
};

struct repo {
    char *slug; /* first, for tsearch */
    uint64_t size;
    enum git_cause off; /* why git is not used for it; GIT_CAUSE_NONE while it is */
};

struct packs {
    struct git_client *git;
    char *work_dir;
    uint64_t max_pack, max_content;
    int cancel;
    pthread_mutex_t lock; /* over everything below */
    pthread_cond_t changed;
    void *commits, *repos; /* tsearch trees of struct commit and struct repo */
    size_t known;
    time_t off_until; /* git is off for every repository until then */
    uint64_t generation;
    /* counters, atomic */
    uint64_t fallbacks[GIT_CAUSE_COUNT], trees, files, bytes;
};

/* A repository's remote as the cache keeps it. */
struct remote_value {
    struct git_remote *remote; /* NULL: git failed for it (recorded) */
    struct api_ref_list tips[2];
    uint64_t generation;
};

/* ---- set-up ---- */

int packs_new(const struct packs_config *cfg, struct packs **out)
{
    struct packs *p = calloc(1, sizeof(*p));

    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->changed, NULL);
    p->git = cfg->git;
    p->max_pack = cfg->max_pack < cfg->cache_size / 4 ? cfg->max_pack : cfg->cache_size / 4;
    p->max_content = cfg->cache_size / 2;
    p->work_dir = strdup(cfg->work_dir);
    if (!p->work_dir) {
        packs_free(p);
        return -ENOMEM;
    }
    if ((mkdir(p->work_dir, 0700) != 0 && errno != EEXIST) || chmod(p->work_dir, 0700) != 0) {
        int rc = -errno;
        packs_free(p);
        return rc;
    }
    unpack_clean(p->work_dir);
    *out = p;
    return 0;
}

void packs_cancel(struct packs *packs)
{
    if (packs)
        __atomic_store_n(&packs->cancel, 1, __ATOMIC_RELAXED);
}

static void commit_free(void *item)
{
    struct commit *c = item;
    free(c->key);
    free(c);
}

static void repo_free(void *item)
{
    struct repo *r = item;
    free(r->slug);
    free(r);
}

void packs_free(struct packs *packs)
{
    if (!packs)
        return;
    tdestroy(packs->commits, commit_free);
    tdestroy(packs->repos, repo_free);
    pthread_cond_destroy(&packs->changed);
    pthread_mutex_destroy(&packs->lock);
    free(packs->work_dir);
    free(packs);
}

/* ---- the tables (called with the lock held) ---- */

static int by_key(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void *find_locked(void *const *root, const char *key)
{
    void **found = tfind(&key, root, by_key);
    return found ? *found : NULL;
}

/* The repository called slug; created when asked to (NULL without memory). */
static struct repo *repo_locked(struct packs *p, const char *slug, int create)
{
    struct repo *r = find_locked(&p->repos, slug);

    if (r || !create)
        return r;
    r = calloc(1, sizeof(*r));
    if (r && (r->slug = strdup(slug)) && tsearch(r, &p->repos, by_key))
        return r;
    if (r)
        repo_free(r);
    return NULL;
}

static struct commit *add_commit_locked(struct packs *p, const char *key, enum commit_state state,
                                        int64_t date)
{
    struct commit *c = calloc(1, sizeof(*c));

    if (c && (c->key = strdup(key)) && tsearch(c, &p->commits, by_key)) {
        c->state = state;
        c->date = date;
        p->known++;
        return c;
    }
    if (c)
        commit_free(c);
    return NULL;
}

/* Whether git may be asked about repository r (NULL: one not seen yet). */
static int usable_locked(const struct packs *p, const struct repo *r)
{
    return p->git && !__atomic_load_n(&p->cancel, __ATOMIC_RELAXED) && time(NULL) >= p->off_until &&
           (!r || r->off == GIT_CAUSE_NONE);
}

static int usable(struct packs *p, const char *slug)
{
    pthread_mutex_lock(&p->lock);
    int ok = usable_locked(p, repo_locked(p, slug, 0));
    pthread_mutex_unlock(&p->lock);
    return ok;
}

static void note_size(struct packs *p, const struct api_repo *repo)
{
    pthread_mutex_lock(&p->lock);
    struct repo *r = repo_locked(p, repo->slug, 1);
    if (r)
        r->size = repo->size;
    pthread_mutex_unlock(&p->lock);
}

/* ---- fallbacks ---- */

/*
 * Records why git failed for repo (at hash, or NULL for the repository as
 * a whole) and says it once. Returns 1 when only that commit is given up
 * (it stays with the API), 0 when git went off for more (or was cancelled).
 */
static int record_failure(struct tree *tree, const char *repo, const char *hash,
                          const struct git_error *err)
{
    struct packs *p = tree->packs;
    enum git_cause cause = err->cause != GIT_CAUSE_NONE ? err->cause : GIT_CAUSE_OTHER;
    int everywhere =
        cause == GIT_CAUSE_UNREACHABLE || (cause == GIT_CAUSE_AUTH && err->status == 401);
    int whole_repo =
        !everywhere && (!hash || cause == GIT_CAUSE_AUTH || cause == GIT_CAUSE_NOT_FOUND);
    enum log_level level =
        cause == GIT_CAUSE_REFUSED || cause == GIT_CAUSE_TOO_BIG ? LOG_LEVEL_INFO : LOG_LEVEL_WARN;
    char key[300];

    __atomic_fetch_add(&p->fallbacks[cause], 1, __ATOMIC_RELAXED);
    if (cause == GIT_CAUSE_CANCELLED)
        return 0;
    pthread_mutex_lock(&p->lock);
    if (everywhere) {
        p->off_until = time(NULL) + PACKS_RETRY_SECONDS;
    } else if (whole_repo) {
        struct repo *r = repo_locked(p, repo, 1);
        if (r)
            r->off = cause;
    }
    pthread_mutex_unlock(&p->lock);
    snprintf(key, sizeof(key), "git:%s:%s", everywhere ? "" : repo, git_cause_name(cause));
    if (everywhere)
        log_once(level, key,
                 "git: '%s/%s': %s (%s): every tree comes from the API for the next %d s",
                 tree->workspace, repo, err->message, git_cause_name(cause), PACKS_RETRY_SECONDS);
    else if (whole_repo)
        log_once(level, key, "git: '%s/%s': %s (%s): the API serves its trees", tree->workspace,
                 repo, err->message, git_cause_name(cause));
    else
        log_once(level, key, "git: '%s/%s' at %.12s: %s (%s): the API serves that tree",
                 tree->workspace, repo, hash, err->message, git_cause_name(cause));
    return !everywhere && !whole_repo;
}

/* ---- remotes, through the cache ---- */

static void remote_free(void *value)
{
    struct remote_value *v = value;
    git_remote_free(v->remote);
    api_ref_list_release(&v->tips[0]);
    api_ref_list_release(&v->tips[1]);
    free(v);
}

struct remote_call {
    struct tree *tree;
    const char *repo;
};

/* A cache_fetch_fn: discovery and the tips; git's failure is a value too (see above). */
static int fetch_remote(void *arg, const void *previous, struct cache_value *out)
{
    const struct remote_call *call = arg;
    struct packs *p = call->tree->packs;
    struct remote_value *v = calloc(1, sizeof(*v));
    struct git_error err;
    struct git_tips tips;
    int rc;

    (void)previous;
    if (api_nowait()) {
        free(v);
        return -EWOULDBLOCK; /* a request: the FUSE thread may not wait for it */
    }
    if (!v)
        return -ENOMEM;
    rc = git_discover(p->git, call->tree->workspace, call->repo, &v->remote, &err);
    if (rc == 0 && (rc = git_remote_tips(p->git, v->remote, &tips, &err)) == 0) {
        v->tips[0] = tips.branches;
        v->tips[1] = tips.tags;
        free(tips.head);
    }
    if (rc) {
        git_remote_free(v->remote);
        v->remote = NULL;
        record_failure(call->tree, call->repo, NULL, &err);
    } else {
        v->generation = __atomic_add_fetch(&p->generation, 1, __ATOMIC_RELAXED);
        gitstore_put_tips(call->tree->store, call->repo, v->tips);
    }
    out->value = v;
    out->size = sizeof(*v) + 4096 + (v->tips[0].count + v->tips[1].count) * 128;
    out->age = 0;
    return 0;
}

/*
 * repo's remote, discovered when memory has none younger than ttl: 0,
 * -ENODATA, or -EWOULDBLOCK in nowait mode when it must be discovered.
 */
static int remote_of(struct tree *tree, const char *repo, struct cache_ref **ref)
{
    struct remote_call call = {tree, repo};
    char *key;
    int rc;

    if (asprintf(&key, "gitremote\n%s", repo) < 0)
        return -ENOMEM;
    rc = cache_get(tree->cache, key, tree->ttl, fetch_remote, remote_free, &call, ref);
    free(key);
    if (rc == 0 && !((const struct remote_value *)cache_ref_value(*ref))->remote) {
        cache_ref_put(*ref);
        rc = -ENODATA;
    }
    return rc;
}

/* 1 when hash is a branch's or a tag's tip, 0 when not or unknown, or -EWOULDBLOCK. */
static int is_tip(struct tree *tree, const char *repo, const char *hash)
{
    struct cache_ref *ref;
    int tip = 0, rc = remote_of(tree, repo, &ref);

    if (rc)
        return rc == -EWOULDBLOCK ? rc : 0;
    const struct remote_value *v = cache_ref_value(ref);
    for (int kind = 0; kind < 2 && !tip; kind++)
        for (size_t i = 0; i < v->tips[kind].count && !tip; i++)
            tip = strcmp(v->tips[kind].items[i].target, hash) == 0;
    cache_ref_put(ref);
    return tip;
}

/* ---- fetching a commit ---- */

/* Fetches and unpacks commit c (FETCHING; the lock not held), and sets what came of it. */
static void fetch_commit(struct tree *tree, struct commit *c, const char *repo, const char *hash)
{
    struct packs *p = tree->packs;
    struct git_error err = {.cause = GIT_CAUSE_NONE};
    struct unpack_result res = {0};
    struct cache_ref *ref = NULL;
    enum commit_state after = COMMIT_UNKNOWN;
    uint64_t size;

    pthread_mutex_lock(&p->lock);
    struct repo *r = repo_locked(p, repo, 0);
    size = r ? r->size : 0;
    pthread_mutex_unlock(&p->lock);
    if (size > p->max_pack) {
        git_set_error(&err, GIT_CAUSE_TOO_BIG, 0,
                      "the repository's size, %" PRIu64
                      " bytes, is over the pack's cap of %" PRIu64,
                      size, p->max_pack);
        record_failure(tree, repo, NULL, &err);
    } else if (remote_of(tree, repo, &ref) == 0) {
        const struct remote_value *v = cache_ref_value(ref);
        struct unpack_job job = {p->git,      v->remote,   repo,           hash,
                                 p->work_dir, p->max_pack, p->max_content, &p->cancel};
        int rc = unpack_commit(tree, &job, &res, &err);
        cache_ref_put(ref);
        if (rc == 0)
            after = COMMIT_UNPACKED;
        else if (record_failure(tree, repo, hash, &err))
            after = COMMIT_FAILED;
    }
    if (after == COMMIT_UNPACKED) {
        __atomic_fetch_add(&p->trees, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&p->files, res.files, __ATOMIC_RELAXED);
        __atomic_fetch_add(&p->bytes, res.bytes, __ATOMIC_RELAXED);
        log_debug("git: %s at %.12s: %" PRIu64 " files, %" PRIu64 " bytes from its pack", repo,
                  hash, res.files, res.bytes);
    }
    pthread_mutex_lock(&p->lock);
    c->state = after;
    c->date = res.date;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
}

/*
 * Commit key's entry, with p->lock held on return and no fetch of it under
 * way (but in nowait mode, which does not wait for one); made from the
 * store's record when memory has none. NULL (still locked) when it cannot
 * be remembered: it is then unknown.
 */
static struct commit *commit_locked(struct tree *tree, const char *key, const char *repo,
                                    const char *hash, int fetch)
{
    struct packs *p = tree->packs;
    struct commit *c;
    int64_t date = 0;
    int stored;

    pthread_mutex_lock(&p->lock);
    c = find_locked(&p->commits, key);
    if (!c) {
        pthread_mutex_unlock(&p->lock);
        stored = gitstore_get_commit(tree->store, repo, hash, &date) == 0;
        pthread_mutex_lock(&p->lock);
        c = find_locked(&p->commits, key);
        if (!c && (stored || fetch || p->known < PACKS_MAX_KNOWN))
            c = add_commit_locked(p, key, stored ? COMMIT_UNPACKED : COMMIT_UNKNOWN, date);
    }
    while (c && c->state == COMMIT_FETCHING && !api_nowait())
        pthread_cond_wait(&p->changed, &p->lock);
    return c;
}

/*
 * Whether repo's commit hash is unpacked: 1 with its date. With fetch, an
 * unknown one is fetched first when git may serve it. In nowait mode,
 * -EWOULDBLOCK where that fetch, or one under way, would be waited for.
 */
static int unpacked(struct tree *tree, const char *repo, const char *hash, int fetch, int64_t *date)
{
    struct packs *p = tree->packs;
    struct commit *c;
    char *key;
    int done = 0;

    if (!api_is_full_hash(hash) || asprintf(&key, "%s\n%s", repo, hash) < 0)
        return 0;
    c = commit_locked(tree, key, repo, hash, fetch);
    if (c && c->state == COMMIT_UNKNOWN && fetch && usable_locked(p, repo_locked(p, repo, 0)) &&
        !api_nowait()) {
        c->state = COMMIT_FETCHING;
        pthread_mutex_unlock(&p->lock);
        fetch_commit(tree, c, repo, hash);
        pthread_mutex_lock(&p->lock);
    } else if (c && c->state == COMMIT_UNKNOWN && fetch &&
               usable_locked(p, repo_locked(p, repo, 0))) {
        done = -EWOULDBLOCK; /* a fetch to start */
    }
    if (c && c->state == COMMIT_FETCHING)
        done = -EWOULDBLOCK; /* one under way, not waited for (nowait) */
    if (c && c->state == COMMIT_UNPACKED) {
        *date = c->date;
        done = 1;
    }
    pthread_mutex_unlock(&p->lock);
    free(key);
    return done;
}

/* ---- the hooks ---- */

static int is_small(const struct api_repo *repo)
{
    return repo->size > 0 && repo->size < PACKS_SMALL_REPO;
}

int packs_look(struct tree *tree, const struct api_repo *repo, const char *hash)
{
    int64_t date;

    if (!tree->packs || !tree->packs->git)
        return 0;
    note_size(tree->packs, repo);
    if (is_small(repo) && unpacked(tree, repo->slug, hash, 1, &date) == -EWOULDBLOCK)
        return -EWOULDBLOCK;
    return 0;
}

int packs_list_dir(struct tree *tree, const char *repo, const char *hash, const char *dir,
                   int walking, struct api_entry_list *out)
{
    int64_t date;
    int rc;

    if (!tree->packs)
        return -ENODATA;
    if (gitstore_get_dir(tree->store, repo, hash, dir, out) == 0)
        return 0;
    if (!walking || !tree->packs->git)
        return -ENODATA;
    rc = unpacked(tree, repo, hash, 1, &date);
    if (rc != 1)
        return rc < 0 ? rc : -ENODATA;
    return gitstore_get_dir(tree->store, repo, hash, dir, out) == 0 ? 0 : -ENODATA;
}

int packs_commit_date(struct tree *tree, const struct api_repo *repo, const char *hash,
                      int64_t *date)
{
    struct packs *p = tree->packs;
    int rc;

    if (!p)
        return -ENODATA;
    rc = unpacked(tree, repo->slug, hash, 0, date);
    if (rc)
        return rc < 0 ? rc : 0;
    if (!p->git || !is_small(repo) || !usable(p, repo->slug))
        return -ENODATA;
    note_size(p, repo);
    rc = is_tip(tree, repo->slug, hash);
    if (rc != 1)
        return rc < 0 ? rc : -ENODATA;
    rc = unpacked(tree, repo->slug, hash, 1, date);
    return rc < 0 ? rc : rc ? 0 : -ENODATA;
}

int packs_reading(struct tree *tree, const char *repo, const char *hash)
{
    int64_t date;
    int rc;

    if (!tree->packs || !tree->packs->git)
        return -ENODATA;
    rc = unpacked(tree, repo, hash, 1, &date);
    return rc < 0 ? rc : rc ? 0 : -ENODATA;
}

int packs_settle(struct tree *tree, const char *repo, const char *hash)
{
    struct packs *p = tree->packs;
    struct commit *c;
    char *key;
    int waited = 0;

    if (!p || !p->git || asprintf(&key, "%s\n%s", repo, hash) < 0)
        return 0;
    pthread_mutex_lock(&p->lock);
    c = find_locked(&p->commits, key);
    while (c && c->state == COMMIT_FETCHING) {
        pthread_cond_wait(&p->changed, &p->lock);
        waited = 1;
    }
    pthread_mutex_unlock(&p->lock);
    free(key);
    return waited;
}

/* ---- refs ---- */

static void refs_free(void *value)
{
    struct ref_index *ri = value;
    api_ref_list_release(&ri->list);
    index_release(&ri->index);
    free(ri);
}

static const struct index_spec tip_specs[2] = {
    {ref_name, names_ref_is_valid, "branch", 1},
    {ref_name, names_ref_is_valid, "tag", 1},
};

/* A ref_index of tips (copied; the caller keeps its list) into out. */
static int index_tips(const struct api_ref_list *tips, int tags, struct cache_value *out)
{
    struct ref_index *ri = calloc(1, sizeof(*ri));
    size_t bytes = sizeof(*ri);
    int rc = ri ? 0 : -ENOMEM;

    if (rc == 0 && tips->count && !(ri->list.items = calloc(tips->count, sizeof(struct api_ref))))
        rc = -ENOMEM;
    for (size_t i = 0; i < tips->count && rc == 0; i++) {
        ri->list.items[i] = tips->items[i];
        ri->list.items[i].name = strdup(tips->items[i].name);
        rc = ri->list.items[i].name ? 0 : -ENOMEM;
        ri->list.count += rc == 0;
        bytes += sizeof(struct api_ref) + strlen(tips->items[i].name) + 1;
    }
    if (rc == 0)
        rc = index_build(&ri->index, ri->list.items, ri->list.count, sizeof(struct api_ref),
                         &tip_specs[tags]);
    if (rc) {
        if (ri)
            refs_free(ri);
        return rc;
    }
    out->value = ri;
    out->size = bytes + ri->index.count * sizeof(void *);
    out->age = 0;
    return 0;
}

struct refs_call {
    struct tree *tree;
    const char *repo;
    const struct remote_value *remote; /* NULL: from the store (offline) */
    int tags;
};

static int fetch_refs(void *arg, const void *previous, struct cache_value *out)
{
    const struct refs_call *call = arg;
    struct api_ref_list stored[2];
    int rc;

    (void)previous;
    if (call->remote)
        return index_tips(&call->remote->tips[call->tags], call->tags, out);
    rc = gitstore_get_tips(call->tree->store, call->repo, stored);
    if (rc == 0)
        rc = index_tips(&stored[call->tags], call->tags, out);
    api_ref_list_release(&stored[0]);
    api_ref_list_release(&stored[1]);
    return rc;
}

int packs_refs(struct tree *tree, const struct api_repo *repo, int tags, struct cache_ref **ref)
{
    struct refs_call call = {tree, repo->slug, NULL, tags ? 1 : 0};
    struct cache_ref *remote = NULL;
    char *key = NULL;
    int rc;

    if (!tree->packs || (!tree->offline && !usable(tree->packs, repo->slug)))
        return -ENODATA;
    if (!tree->offline) {
        rc = remote_of(tree, repo->slug, &remote);
        if (rc)
            return rc == -EWOULDBLOCK ? rc : -ENODATA;
        call.remote = cache_ref_value(remote);
    }
    /* A key per remote fetched: a new advertisement is a new value, never a refresh that fails. */
    if (asprintf(&key, "gitrefs\n%d\n%s\n%" PRIu64, call.tags, repo->slug,
                 call.remote ? call.remote->generation : 0) < 0)
        key = NULL;
    rc = key ? cache_get(tree->cache, key, CACHE_FOREVER, fetch_refs, refs_free, &call, ref)
             : -ENOMEM;
    free(key);
    cache_ref_put(remote);
    return rc ? -ENODATA : 0;
}

/* ---- .bbfs/stats ---- */

void packs_print_stats(struct tree *tree, FILE *f)
{
    const struct packs *p = tree->packs;
    struct git_stats g;
    uint64_t total = 0;

    memset(&g, 0, sizeof(g));
    if (p && p->git)
        git_get_stats(p->git, &g);
    fprintf(f, "git_enabled %s\n", p && p->git ? "true" : "false");
    fprintf(f, "git_requests %" PRIu64 "\n", g.requests);
    fprintf(f, "git_fetches %" PRIu64 "\n", g.fetches);
    fprintf(f, "git_bytes %" PRIu64 "\n", g.bytes);
    fprintf(f, "git_pack_bytes %" PRIu64 "\n", g.pack_bytes);
    fprintf(f, "git_trees %" PRIu64 "\n", p ? __atomic_load_n(&p->trees, __ATOMIC_RELAXED) : 0);
    fprintf(f, "git_files %" PRIu64 "\n", p ? __atomic_load_n(&p->files, __ATOMIC_RELAXED) : 0);
    fprintf(f, "git_file_bytes %" PRIu64 "\n",
            p ? __atomic_load_n(&p->bytes, __ATOMIC_RELAXED) : 0);
    for (int c = GIT_CAUSE_NONE + 1; p && c < GIT_CAUSE_COUNT; c++)
        total += __atomic_load_n(&p->fallbacks[c], __ATOMIC_RELAXED);
    fprintf(f, "git_fallbacks %" PRIu64 "\n", total);
    for (int c = GIT_CAUSE_NONE + 1; c < GIT_CAUSE_COUNT; c++)
        fprintf(f, "git_fallbacks_%s %" PRIu64 "\n", git_cause_name((enum git_cause)c),
                p ? __atomic_load_n(&p->fallbacks[c], __ATOMIC_RELAXED) : 0);
}

/*
 * readahead.c - walk detection and reading ahead (see readahead.h).
 *
 * A walk lists directories faster than anyone types: it is taken once per
 * commit, when WALK_MISSES directories of it were listed within WALK_SECONDS
 * of each other, from the deepest directory holding them all.
 *
 * Reading ahead: when a second file of a directory is opened within
 * READAHEAD_SECONDS of the first, the files after it in the listing (at most
 * READAHEAD_MAX, none over READAHEAD_MAX_SIZE) are downloaded by the workers
 * while the reader works; its own opens then wait for those downloads or
 * find them stored. Never offline, and not while the API says the rate limit
 * is nearly used up. Where git serves (packs.h), that commit's pack is
 * fetched instead.
 */
#include "fs/readahead.h"

#include "api/api.h"
#include "fs/blobs.h"
#include "fs/cache.h"
#include "fs/node.h"
#include "fs/objects.h"
#include "fs/packs.h"
#include "fs/workers.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WALK_MISSES 3
#define WALK_SECONDS 2

#define READAHEAD_THREADS 4
#define READAHEAD_MAX 64
#define READAHEAD_MAX_SIZE ((uint64_t)16 << 20)
#define READAHEAD_SECONDS 2

struct readahead {
    pthread_mutex_t lock;
    /* the commit whose directories were listed last */
    char walk_commit[300];
    char *walk_ancestor; /* of the directories listed in this burst */
    char *walk_dir;      /* the last one listed */
    time_t walk_last;
    int walk_misses;
    int walk_taken; /* a recursive listing was tried for walk_commit */
    /* the directory whose files were opened last */
    struct workers *workers; /* NULL until first needed */
    char *dir;
    char name[NAME_MAX + 1];
    time_t last;
    int opens;
};

int readahead_new(struct readahead **out)
{
    struct readahead *ra = calloc(1, sizeof(*ra));
    if (!ra)
        return -ENOMEM;
    pthread_mutex_init(&ra->lock, NULL);
    *out = ra;
    return 0;
}

void readahead_free(struct readahead *ra)
{
    if (!ra)
        return;
    workers_free(ra->workers);
    pthread_mutex_destroy(&ra->lock);
    free(ra->walk_ancestor);
    free(ra->walk_dir);
    free(ra->dir);
    free(ra);
}

/* Cuts ancestor back to the deepest directory holding both it and dir. */
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

char *readahead_walk_root(struct readahead *ra, const char *repo, const char *hash, const char *dir)
{
    char commit[300], *root = NULL;
    time_t now = time(NULL);

    snprintf(commit, sizeof(commit), "%s\n%s", repo, hash);
    pthread_mutex_lock(&ra->lock);
    if (strcmp(ra->walk_commit, commit) != 0) {
        snprintf(ra->walk_commit, sizeof(ra->walk_commit), "%s", commit);
        ra->walk_taken = 0;
        ra->walk_misses = 0;
    }
    if (ra->walk_misses == 0 || now - ra->walk_last > WALK_SECONDS) {
        free(ra->walk_ancestor);
        ra->walk_ancestor = strdup(dir);
        ra->walk_misses = 0;
    } else if (ra->walk_ancestor) {
        common_ancestor(ra->walk_ancestor, dir);
    }
    ra->walk_last = now;
    /* The same directory again (a listing asked again after it had to wait) is no step of a walk.
     */
    if (ra->walk_misses == 0 || !ra->walk_dir || strcmp(ra->walk_dir, dir) != 0) {
        ra->walk_misses++;
        free(ra->walk_dir);
        ra->walk_dir = strdup(dir);
    }
    if (ra->walk_misses >= WALK_MISSES && !ra->walk_taken && ra->walk_ancestor) {
        ra->walk_taken = 1;
        root = strdup(ra->walk_ancestor);
    }
    pthread_mutex_unlock(&ra->lock);
    return root;
}

void readahead_walk_again(struct readahead *ra, const char *repo, const char *hash)
{
    char commit[300];

    snprintf(commit, sizeof(commit), "%s\n%s", repo, hash);
    pthread_mutex_lock(&ra->lock);
    if (strcmp(ra->walk_commit, commit) == 0)
        ra->walk_taken = 0;
    pthread_mutex_unlock(&ra->lock);
}

struct readahead_job {
    struct tree *tree;
    char *repo;
    char *hash;
    char *path;
};

static void job_run(void *arg)
{
    struct readahead_job *job = arg;
    struct blob blob = {BLOB_FILE, job->repo, job->hash, job->path, 0};
    blob_fetch(job->tree, &blob);
}

static void job_free(void *arg)
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
static int reading_through(struct readahead *ra, const char *dir, const char *name)
{
    time_t now = time(NULL);
    int ahead = 0;
    pthread_mutex_lock(&ra->lock);
    if (ra->dir && strcmp(ra->dir, dir) == 0 && now - ra->last <= READAHEAD_SECONDS) {
        /* the same file again (cat then cat) is not reading through */
        if (strcmp(ra->name, name) != 0) {
            int opens = ++ra->opens;
            /* the second, then every half window, so reading never outruns it */
            ahead = opens >= 2 && (opens - 2) % (READAHEAD_MAX / 2) == 0;
        }
    } else {
        free(ra->dir);
        ra->dir = strdup(dir);
        ra->opens = 1;
    }
    snprintf(ra->name, sizeof(ra->name), "%s", name);
    ra->last = now;
    pthread_mutex_unlock(&ra->lock);
    return ahead;
}

/*
 * The threads start at the first need, not with the tree: bbfs goes to the
 * background (fork) after the tree is made, and threads do not survive that.
 */
static struct workers *workers_of(struct readahead *ra)
{
    pthread_mutex_lock(&ra->lock);
    if (!ra->workers && workers_new(READAHEAD_THREADS, 2 * READAHEAD_MAX, &ra->workers))
        ra->workers = NULL;
    struct workers *pool = ra->workers;
    pthread_mutex_unlock(&ra->lock);
    return pool;
}

/* Queues the download of entry e of directory dir (dirlen bytes of the tree path). */
static int queue_file(struct tree *tree, struct workers *pool, const struct node *n, size_t dirlen,
                      const struct api_entry *e)
{
    struct readahead_job *job = calloc(1, sizeof(*job));
    if (!job)
        return -ENOMEM;
    job->tree = tree;
    job->repo = strdup(n->repo->slug);
    job->hash = strdup(n->hash);
    if (asprintf(&job->path, "%.*s%s%s", (int)dirlen, n->tree_path, dirlen ? "/" : "", e->name) < 0)
        job->path = NULL;
    if (!job->repo || !job->hash || !job->path) {
        job_free(job);
        return -ENOMEM;
    }
    return workers_submit(pool, job_run, job_free, job);
}

void readahead_opened(struct tree *tree, const struct node *n)
{
    struct api_stats stats;
    const char *slash = strrchr(n->tree_path, '/');
    size_t dirlen = slash ? (size_t)(slash - n->tree_path) : 0;
    char *key;

    if (tree->offline || !n->dir_ref)
        return;
    if (asprintf(&key, "%s\n%s\n%.*s", n->repo->slug, n->hash, (int)dirlen, n->tree_path) < 0)
        return;
    int rc, ahead = reading_through(tree->readahead, key, n->entry->name);
    free(key);
    if (!ahead)
        return;
    /* Through git, the whole commit comes in one pack instead (packs.h); in nowait mode, its
     * fetch waits for the request's run that may wait. */
    rc = packs_reading(tree, n->repo->slug, n->hash);
    if (rc == 0 || rc == -EWOULDBLOCK)
        return;
    api_get_stats(tree->api, &stats);
    if (stats.ratelimit_near)
        return;
    struct workers *pool = workers_of(tree->readahead);
    if (!pool)
        return; /* reading ahead is an optimisation */
    /* The files after this one in listing order, as readdir hands them to the reader. */
    const struct dir_index *dir = cache_ref_value(n->dir_ref);
    size_t from = 0;
    while (from < dir->index.count && dir->index.items[from] != n->entry)
        from++;
    for (size_t i = from + 1, queued = 0; i < dir->index.count && queued < READAHEAD_MAX; i++) {
        const struct api_entry *e = dir->index.items[i];
        if (e->type != API_ENTRY_FILE || e->size > READAHEAD_MAX_SIZE)
            continue;
        if (queue_file(tree, pool, n, dirlen, e) != 0)
            return;
        queued++;
    }
}

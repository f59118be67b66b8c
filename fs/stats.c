/*
 * stats.c - .bbfs/, about the mount itself, and .bbfs/stats: one "name
 * value" line per counter (requests by kind, cache hits, stored answers,
 * the shared cache, errors by cause, the rate limit), for grep and awk. Its
 * content is a snapshot taken at open, and its size changes between two
 * looks (live).
 */
#include "api/api.h"
#include "fs/cache.h"
#include "fs/node.h"
#include "fs/shared_cache.h"
#include "fs/packs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char STATS_FILE[] = "stats";

int stats_resolve(struct tree *tree, struct node *n)
{
    (void)tree;
    if (n->nparts == 1) {
        n->kind = NODE_BBFS;
        return 0;
    }
    if (n->nparts != 2 || strcmp(n->parts[1], STATS_FILE) != 0)
        return -ENOENT;
    n->kind = NODE_STATS;
    n->mtime = time(NULL);
    return 0;
}

static void print_requests(FILE *f, const struct api_stats *a)
{
    fprintf(f, "requests %" PRIu64 "\n", a->requests);
    fprintf(f, "requests_last_hour %" PRIu64 "\n", a->requests_last_hour);
    for (int k = 0; k < API_KIND_COUNT; k++)
        fprintf(f, "requests_%s %" PRIu64 "\n", api_kind_name((enum api_kind)k), a->by_kind[k]);
    fprintf(f, "retries %" PRIu64 "\n", a->retries);
    fprintf(f, "bytes_fetched %" PRIu64 "\n", a->bytes);
}

static void print_errors(FILE *f, const struct api_stats *a)
{
    fprintf(f, "errors %" PRIu64 "\n", a->failures + a->bad_answers);
    fprintf(f, "errors_network %" PRIu64 "\n", a->failed_network);
    fprintf(f, "errors_auth %" PRIu64 "\n", a->failed_auth);
    fprintf(f, "errors_not_found %" PRIu64 "\n", a->failed_not_found);
    fprintf(f, "errors_rate_limited %" PRIu64 "\n", a->failed_rate_limited);
    fprintf(f, "errors_server %" PRIu64 "\n", a->failed_server);
    fprintf(f, "errors_bad_answer %" PRIu64 "\n", a->bad_answers);
    fprintf(f, "errors_other %" PRIu64 "\n", a->failed_other);
}

/* The counters as text: a malloc'd string, or NULL. */
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
    print_requests(f, &a);
    fprintf(f, "memory_hits %" PRIu64 "\n", hits);
    fprintf(f, "memory_misses %" PRIu64 "\n", misses);
    fprintf(f, "stored_answers %" PRIu64 "\n", a.stored);
    fprintf(f, "revalidated_304 %" PRIu64 "\n", a.not_modified);
    fprintf(f, "stale_answers %" PRIu64 "\n", a.stale);
    fprintf(f, "files_from_cache %" PRIu64 "\n",
            __atomic_load_n(&tree->files_stored, __ATOMIC_RELAXED));
    fprintf(f, "files_downloaded %" PRIu64 "\n",
            __atomic_load_n(&tree->files_downloaded, __ATOMIC_RELAXED));
    shared_cache_print_stats(tree->shared, f);
    print_errors(f, &a);
    packs_print_stats(tree, f);
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

static int stats_content(struct tree *tree, struct node *n, const char **data, size_t *len)
{
    n->scratch = format_stats(tree);
    return node_printed(n, n->scratch ? 0 : -1, data, len);
}

static int list_bbfs(struct tree *tree, struct node *n, struct listing *l, const char *path)
{
    (void)n;
    return listing_add_child(tree, l, path, STATS_FILE);
}

static const struct node_ops ops[NODE_KIND_COUNT] = {
    [NODE_BBFS] = {.mode = MODE_DIR, .list = list_bbfs},
    [NODE_STATS] = {.mode = MODE_FILE, .live = 1, .content = stats_content},
};

const struct node_ops *stats_ops(enum node_kind kind)
{
    return ops[kind].mode ? &ops[kind] : NULL;
}

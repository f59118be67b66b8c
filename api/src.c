/*
 * src.c - directories and files at a commit, and diffs (api.h): listings
 * one directory or a whole subtree at a time, contents streamed to a sink.
 * Each complete directory of a subtree is also kept as the answer a listing
 * of that directory alone would have got, so that later look-ups (after a
 * remount, offline, or once memory let go of it) find it without a request.
 */
#include "api/api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/buf.h"
#include "api/client.h"
#include "api/log.h"
#include "api/parse.h"
#include "api/stored.h"
#include "api/url.h"
#include "api/walk.h"

/* include-only mode: next must be named or the pagination link is dropped */
#define SRC_FIELDS "size,page,pagelen,next,values.path,values.type,values.size,values.attributes"

/* ---- directory listings ---- */

void api_entry_list_release(struct api_entry_list *list)
{
    size_t i;

    if (!list)
        return;
    for (i = 0; i < list->count; i++)
        parse_entry_release(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static int entry_from(json_t *item, void *out, const void *dir)
{
    return parse_entry(item, dir, out);
}

/* Sort keys: entries remember their place in the listing. */
struct entry_key {
    struct api_entry entry;
    size_t index;
};

static int cmp_entry_key(const void *a, const void *b)
{
    const struct entry_key *x = a, *y = b;
    int c = strcmp(x->entry.name, y->entry.name);

    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Byte order, one entry per name (the first the API sent), so that names stay unique. */
static int entries_sort_dedupe(struct api_entry_list *list)
{
    struct entry_key *keys;
    size_t i, n = list->count, kept;

    if (n < 2)
        return 0;
    keys = calloc(n, sizeof(*keys));
    if (!keys)
        return -ENOMEM;
    for (i = 0; i < n; i++) {
        keys[i].entry = list->items[i];
        keys[i].index = i;
    }
    qsort(keys, n, sizeof(*keys), cmp_entry_key);
    for (i = 0, kept = 0; i < n; i++) {
        if (kept > 0 && strcmp(keys[i].entry.name, list->items[kept - 1].name) == 0) {
            log_once(LOG_LEVEL_WARN, "api:entry-duplicate",
                     "a directory listing names an entry twice; keeping the first");
            parse_entry_release(&keys[i].entry);
        } else {
            list->items[kept++] = keys[i].entry;
        }
    }
    list->count = kept;
    free(keys);
    return 0;
}

/* The first page's URL of directory dir at hash, listed max_depth deep (NULL: alone). */
static char *dir_url(struct api_client *client, const char *workspace, const char *repo,
                     const char *hash, const char *dir, const char *max_depth, int *rc)
{
    struct buf u;

    client_url_at(&u, client, workspace, repo, "src", hash);
    url_add_dir(&u, dir); /* the root needs its trailing '/': /src/{hash}/ */
    url_add_query(&u, "pagelen", "100");
    if (max_depth)
        url_add_query(&u, "max_depth", max_depth);
    url_add_query(&u, "fields", SRC_FIELDS);
    return client_url_finish(&u, rc);
}

int api_list_dir(struct api_client *client, const char *workspace, const char *repo,
                 const char *hash, const char *dir, struct api_entry_list *out)
{
    struct collector acc = {.parse = entry_from,
                            .arg = dir,
                            .elem = sizeof(*out->items),
                            .skip_key = "api:entry-unusable",
                            .skip_message =
                                "ignoring a directory entry whose path is not a name in "
                                "the directory listed, or whose type is unknown"};
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!api_is_full_hash(hash) || !dir)
        return -EINVAL;
    url = dir_url(client, workspace, repo, hash, dir, NULL, &rc);
    if (!url)
        return rc;
    rc = walk_pages(client, API_KIND_TREE, url, walk_collect, &acc, NULL);
    out->items = acc.items;
    out->count = acc.count;
    free(url);
    if (rc < 0) {
        api_entry_list_release(out);
        return rc;
    }
    rc = entries_sort_dedupe(out);
    if (rc < 0)
        api_entry_list_release(out);
    return rc;
}

/* ---- a directory and those below it, in one listing ---- */

void api_subtree_release(struct api_subtree *tree)
{
    if (!tree)
        return;
    for (size_t i = 0; i < tree->count; i++) {
        free(tree->dirs[i].path);
        api_entry_list_release(&tree->dirs[i].entries);
    }
    free(tree->dirs);
    memset(tree, 0, sizeof(*tree));
}

/* One entry of a recursive listing, with the directory it is in. */
struct subtree_item {
    char *parent;
    size_t depth; /* of parent below the directory listed: 0 for the directory itself */
    size_t index; /* place in the listing */
    struct api_entry entry;
    char *json; /* the entry as the API sent it (compact), when directories are kept */
};

struct subtree_acc {
    const char *dir;
    unsigned max_depth;
    int keep; /* keep each entry's JSON: complete directories are stored */
    struct subtree_item *items;
    size_t count, alloc;
};

static void subtree_items_release(struct subtree_acc *acc)
{
    for (size_t i = 0; i < acc->count; i++) {
        free(acc->items[i].parent);
        free(acc->items[i].json);
        parse_entry_release(&acc->items[i].entry);
    }
    free(acc->items);
}

/* The depth of path below dir (0 when equal), or -1 when it is not dir or below it. */
static long depth_below(const char *dir, const char *path)
{
    size_t dirlen = strlen(dir);
    long depth = 0;
    const char *rest = path;

    if (dirlen > 0) {
        if (strncmp(path, dir, dirlen) != 0 || (path[dirlen] != '\0' && path[dirlen] != '/'))
            return -1;
        rest = path + dirlen;
    } else if (*path) {
        depth = 1;
    }
    for (; *rest; rest++)
        depth += *rest == '/';
    return depth;
}

static int add_subtree_item(json_t *item, void *ctx)
{
    struct subtree_acc *acc = ctx;
    const char *path = parse_get_ident(item, "path"), *slash;
    struct subtree_item *it, *items;
    long depth;
    int rc;

    slash = path ? strrchr(path, '/') : NULL;
    char *parent = path ? strndup(path, slash ? (size_t)(slash - path) : 0) : NULL;
    if (path && !parent)
        return -ENOMEM;
    depth = parent ? depth_below(acc->dir, parent) : -1;
    if (depth < 0 || depth >= (long)acc->max_depth) {
        free(parent);
        log_once(LOG_LEVEL_WARN, "api:subtree-entry",
                 "ignoring an entry of a recursive listing outside the directory listed");
        return 0;
    }
    items = client_grow_array(acc->items, &acc->alloc, acc->count, sizeof(*acc->items));
    if (!items) {
        free(parent);
        return -ENOMEM;
    }
    acc->items = items;
    it = &acc->items[acc->count];
    rc = parse_entry(item, parent, &it->entry);
    if (rc < 0) {
        free(parent);
        if (rc == -EINVAL)
            log_once(LOG_LEVEL_WARN, "api:entry-unusable",
                     "ignoring a directory entry whose path is not a name in the directory "
                     "listed, or whose type is unknown");
        return rc == -EINVAL ? 0 : rc;
    }
    it->json = acc->keep ? json_dumps(item, JSON_COMPACT) : NULL;
    if (acc->keep && !it->json) {
        parse_entry_release(&it->entry);
        free(parent);
        return -ENOMEM;
    }
    it->parent = parent;
    it->depth = (size_t)depth;
    it->index = acc->count++;
    return 0;
}

static int cmp_subtree_item(const void *a, const void *b)
{
    const struct subtree_item *x = a, *y = b;
    int c = strcmp(x->parent, y->parent);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* The items of directory path: [*lo, *hi) of items (sorted by parent). */
static void dir_items(const struct subtree_item *items, size_t count, const char *path, size_t *lo,
                      size_t *hi)
{
    size_t l = 0, h = count;

    while (l < h) { /* the first item of path */
        size_t mid = l + (h - l) / 2;
        if (strcmp(items[mid].parent, path) < 0)
            l = mid + 1;
        else
            h = mid;
    }
    for (h = l; h < count && strcmp(items[h].parent, path) == 0; h++)
        ;
    *lo = l;
    *hi = h;
}

/*
 * Keeps the complete directory path (its items [lo, hi)) as the one page a
 * listing of it alone would get, unless that is kept already. A failure
 * costs a request later, nothing now.
 */
static void keep_dir_page(struct api_client *client, const char *workspace, const char *repo,
                          const char *hash, const char *path, const struct subtree_item *items,
                          size_t lo, size_t hi)
{
    const struct api_response_cache *cache = &client->stored.cache;
    struct http_response page = {.status = 200};
    char *url, *kept, pagelen[24];
    size_t len;
    struct buf b;
    int rc;

    url = dir_url(client, workspace, repo, hash, path, NULL, &rc);
    if (!url)
        return;
    if (cache->load(cache->ctx, url, &kept, &len) == 0) {
        free(kept);
        free(url);
        return;
    }
    snprintf(pagelen, sizeof(pagelen), "%zu", hi - lo);
    buf_init(&b, HTTP_MAX_JSON);
    buf_appends(&b, "{\"pagelen\":");
    buf_appends(&b, pagelen);
    buf_appends(&b, ",\"values\":[");
    for (size_t i = lo; i < hi; i++) {
        if (i > lo)
            buf_appendc(&b, ',');
        buf_appends(&b, items[i].json);
    }
    buf_appends(&b, "]}");
    page.body = buf_take(&b, &page.len);
    buf_release(&b);
    if (page.body)
        stored_keep(client, API_KIND_TREE, url, &page);
    free(page.body);
    free(url);
}

/* Adds the complete directory path, with its entries in listing order, to out. */
static int add_subtree_dir(struct api_subtree *out, size_t *alloc, const char *path,
                           struct subtree_item *items, size_t count)
{
    struct api_subtree_dir *dirs, *d;
    size_t lo, hi;

    dirs = client_grow_array(out->dirs, alloc, out->count, sizeof(*out->dirs));
    if (!dirs)
        return -ENOMEM;
    out->dirs = dirs;
    d = &out->dirs[out->count];
    memset(d, 0, sizeof(*d));
    d->path = strdup(path);
    if (!d->path)
        return -ENOMEM;
    out->count++;
    dir_items(items, count, path, &lo, &hi);
    if (hi > lo) {
        d->entries.items = calloc(hi - lo, sizeof(*d->entries.items));
        if (!d->entries.items)
            return -ENOMEM;
        for (size_t i = lo; i < hi; i++) { /* moved: the items no longer own them */
            d->entries.items[d->entries.count++] = items[i].entry;
            memset(&items[i].entry, 0, sizeof(items[i].entry));
        }
    }
    return entries_sort_dedupe(&d->entries);
}

int api_list_subtree(struct api_client *client, const char *workspace, const char *repo,
                     const char *hash, const char *dir, unsigned max_depth, size_t max_entries,
                     struct api_subtree *out)
{
    struct subtree_acc acc = {.dir = dir, .max_depth = max_depth};
    size_t alloc = 0, i, ncomplete = 0, lo, hi;
    char depth[16], **complete = NULL;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!api_is_full_hash(hash) || !dir || max_depth == 0)
        return -EINVAL;
    acc.keep = client->stored.cache.load && client->stored.cache.save;
    snprintf(depth, sizeof(depth), "%u", max_depth);
    url = dir_url(client, workspace, repo, hash, dir, depth, &rc);
    if (!url)
        return rc;
    /* the API times out on a listing too big (or answers 555): not an outage */
    rc = walk_pages_capped(client, API_KIND_TREE, url, (max_entries + 99) / 100, HTTP_NOT_OUTAGE,
                           add_subtree_item, &acc);
    free(url);
    if (rc < 0)
        goto out;
    /*
     * Grouped by directory; a directory is complete when its own entries were
     * within reach. The complete ones are named first: grouping moves entries.
     */
    if (acc.count > 1)
        qsort(acc.items, acc.count, sizeof(*acc.items), cmp_subtree_item);
    complete = calloc(acc.count + 1, sizeof(*complete));
    if (!complete || !(complete[ncomplete++] = strdup(dir))) {
        rc = -ENOMEM;
        goto out;
    }
    for (i = 0; i < acc.count; i++) {
        const struct subtree_item *it = &acc.items[i];
        if (it->entry.type != API_ENTRY_DIR || it->depth + 1 >= max_depth)
            continue;
        if (asprintf(&complete[ncomplete], "%s%s%s", it->parent, *it->parent ? "/" : "",
                     it->entry.name) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        ncomplete++;
    }
    for (i = 0; i < ncomplete && acc.keep; i++) {
        dir_items(acc.items, acc.count, complete[i], &lo, &hi);
        keep_dir_page(client, workspace, repo, hash, complete[i], acc.items, lo, hi);
    }
    for (i = 0; i < ncomplete && rc == 0; i++)
        rc = add_subtree_dir(out, &alloc, complete[i], acc.items, acc.count);
out:
    for (i = 0; i < ncomplete; i++)
        free(complete[i]);
    free(complete);
    subtree_items_release(&acc);
    if (rc < 0)
        api_subtree_release(out);
    return rc;
}

/* ---- file and diff downloads ---- */

int api_get_file(struct api_client *client, const char *workspace, const char *repo,
                 const char *hash, const char *path, const struct api_sink *sink, uint64_t *size)
{
    struct http_response resp;
    struct buf u;
    int rc;

    if (size)
        *size = 0;
    if (!api_is_full_hash(hash) || !sink)
        return -EINVAL;
    client_url_at(&u, client, workspace, repo, "src", hash);
    url_add_path(&u, path);
    rc = client_download(client, API_KIND_FILE, &u, sink, 0, &resp, size);
    http_response_release(&resp);
    return rc;
}

int api_get_diff(struct api_client *client, const char *workspace, const char *repo,
                 const char *hash, const struct api_sink *sink, uint64_t *size)
{
    struct http_response resp;
    char key[128 + API_HASH_LEN];
    struct buf u;
    int rc;

    if (size)
        *size = 0;
    if (!api_is_full_hash(hash) || !sink)
        return -EINVAL;
    /* one hash: against the first parent */
    client_url_at(&u, client, workspace, repo, "diff", hash);
    rc = client_download(client, API_KIND_DIFF, &u, sink, HTTP_QUIET_555, &resp, size);
    if (rc < 0 && resp.status == 555) {
        snprintf(key, sizeof(key), "api:diff-555 %s", hash);
        log_once(LOG_LEVEL_WARN, key,
                 "the diff of commit %s in '%s/%s' is too large for the API (HTTP 555)", hash,
                 workspace, repo);
    }
    http_response_release(&resp);
    return rc;
}

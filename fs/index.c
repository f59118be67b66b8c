/*
 * index.c - sorted indexes of names (see index.h).
 */
#include "fs/index.h"

#include "api/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare_names(const void *a, const void *b, void *name_of)
{
    index_name_fn name = (index_name_fn)name_of;
    return strcmp(name(*(const void *const *)a), name(*(const void *const *)b));
}

static void log_skipped(const char *what, const char *name)
{
    char safe[128], key[160];
    log_sanitize(safe, sizeof(safe), name);
    snprintf(key, sizeof(key), "skip:%s:%s", what, safe);
    log_once(LOG_LEVEL_WARN, key, "skipping %s '%s': not usable as a file name", what, safe);
}

size_t index_lower_bound(const struct name_index *index, const char *key, index_name_fn name_of)
{
    size_t lo = 0, hi = index->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(name_of(index->items[mid]), key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const void *index_find(const struct name_index *index, const char *key, index_name_fn name_of)
{
    size_t at = index_lower_bound(index, key, name_of);
    return at < index->count && strcmp(name_of(index->items[at]), key) == 0 ? index->items[at]
                                                                            : NULL;
}

/*
 * Git forbids refs "a" and "a/b" side by side, but the API's names are not to
 * be trusted: where both come, "a" is a directory and the ref "a" is skipped.
 * In strcmp order every "a/..." follows "a" closely (only names "a" + a byte
 * below '/' come between), so a binary search finds it.
 */
static int drop_shadowed(struct name_index *index, const struct index_spec *spec)
{
    size_t kept = 0;
    for (size_t i = 0; i < index->count; i++) {
        const char *name = spec->name_of(index->items[i]);
        char *dir;
        if (asprintf(&dir, "%s/", name) < 0)
            return -ENOMEM;
        size_t at = index_lower_bound(index, dir, spec->name_of);
        int shadowed =
            at < index->count && strncmp(spec->name_of(index->items[at]), dir, strlen(dir)) == 0;
        free(dir);
        if (shadowed)
            log_skipped(spec->what, name);
        else
            index->items[kept++] = index->items[i];
    }
    index->count = kept;
    return 0;
}

int index_build(struct name_index *index, const void *array, size_t count, size_t elem,
                const struct index_spec *spec)
{
    index->count = 0;
    index->items = calloc(count + 1, sizeof(*index->items));
    if (!index->items)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        const void *item = (const char *)array + i * elem;
        const char *name = spec->name_of(item);
        if (!name || !spec->usable(name)) {
            log_skipped(spec->what, name ? name : "");
            continue;
        }
        index->items[index->count++] = item;
    }
    qsort_r(index->items, index->count, sizeof(*index->items), compare_names,
            (void *)spec->name_of);
    if (spec->drop_shadowed && drop_shadowed(index, spec) != 0) {
        index_release(index);
        return -ENOMEM;
    }
    return 0;
}

void index_release(struct name_index *index)
{
    free(index->items);
    index->items = NULL;
    index->count = 0;
}

size_t index_bytes(const struct name_index *index, size_t elem, index_name_fn name_of)
{
    size_t bytes = index->count * (elem + sizeof(*index->items));
    for (size_t i = 0; i < index->count; i++)
        bytes += strlen(name_of(index->items[i])) + 1;
    return bytes;
}

void index_diff(const struct name_index *before, const struct name_index *after,
                index_name_fn name_of, void (*fn)(void *ctx, const char *name), void *ctx)
{
    size_t i = 0, j = 0;
    while (i < before->count || j < after->count) {
        int cmp = i == before->count  ? 1
                  : j == after->count ? -1
                                      : strcmp(name_of(before->items[i]), name_of(after->items[j]));
        if (cmp == 0) {
            i++;
            j++;
            continue;
        }
        fn(ctx, cmp < 0 ? name_of(before->items[i++]) : name_of(after->items[j++]));
    }
}

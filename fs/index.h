/*
 * index.h - a sorted index of names over an array of items that came from
 * the API (repositories, refs, directory entries).
 *
 * Building one filters the items through a validity test (names from the API
 * are hostile: see names.h), logs each skipped name once, and sorts the rest
 * by name in strcmp order, so that a look-up is a binary search and two
 * listings can be compared in one pass. The index points into the caller's
 * array, which must outlive it.
 */
#ifndef BBFS_INDEX_H
#define BBFS_INDEX_H

#include <stddef.h>

typedef const char *(*index_name_fn)(const void *item);

struct name_index {
    const void **items; /* sorted by name */
    size_t count;
};

struct index_spec {
    index_name_fn name_of;           /* NULL names are skipped */
    int (*usable)(const char *name); /* whether a name may be exposed */
    const char *what;                /* "repository", "branch": for the log */
    int drop_shadowed; /* "a" goes when "a/..." is there too: a ref name that is a directory */
};

/* Indexes count items of elem bytes at array. 0 or -ENOMEM. */
int index_build(struct name_index *index, const void *array, size_t count, size_t elem,
                const struct index_spec *spec);
void index_release(struct name_index *index);

/* Position of the first item whose name is >= key. */
size_t index_lower_bound(const struct name_index *index, const char *key, index_name_fn name_of);
/* The item called key, or NULL. */
const void *index_find(const struct name_index *index, const char *key, index_name_fn name_of);

/* About what the indexed items hold: elem bytes each, their names, the index. */
size_t index_bytes(const struct name_index *index, size_t elem, index_name_fn name_of);

/* Calls fn for each name in one of two indexes and not in the other. */
void index_diff(const struct name_index *before, const struct name_index *after,
                index_name_fn name_of, void (*fn)(void *ctx, const char *name), void *ctx);

#endif

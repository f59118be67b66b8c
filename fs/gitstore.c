/*
 * gitstore.c - what packs brought, in the store (see gitstore.h).
 *
 * Each entry starts with a line naming its format and version, then holds
 * records of one header line and, where there is one, a name of the length
 * the header gives, followed by '\n':
 *
 *   directory   "bbfs-gitdir 1"     per entry: "TYPE EXEC LFS SIZE NAMELEN" + name
 *                                   (TYPE f file, d directory, l symlink, s submodule)
 *   commit      "bbfs-gitcommit 1"  one line: the date (seconds since the epoch)
 *   tips        "bbfs-gittips 1"    per ref: "KIND HASH NAMELEN" + name (KIND b or t)
 */
#include "fs/gitstore.h"

#include "api/api.h"
#include "fs/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR_FORMAT "bbfs-gitdir 1\n"
#define COMMIT_FORMAT "bbfs-gitcommit 1\n"
#define TIPS_FORMAT "bbfs-gittips 1\n"
/* A header line is a few numbers: anything longer is damage. */
#define HEADER_MAX 96

static const char entry_types[] = {[API_ENTRY_FILE] = 'f',
                                   [API_ENTRY_DIR] = 'd',
                                   [API_ENTRY_LINK] = 'l',
                                   [API_ENTRY_SUBMODULE] = 's'};

static char *key_of(const char *kind, const char *repo, const char *hash, const char *dir)
{
    char *key;
    if (asprintf(&key, "%s\n%s\n%s%s%s", kind, repo, hash ? hash : "", dir ? "\n" : "",
                 dir ? dir : "") < 0)
        return NULL;
    return key;
}

/* Writes what fill printed into f as key's entry. */
static int put_entry(struct store *store, char *key, int (*fill)(FILE *f, const void *arg),
                     const void *arg)
{
    char *data = NULL;
    size_t len = 0;
    FILE *f = key ? open_memstream(&data, &len) : NULL;
    int rc = f ? fill(f, arg) : -ENOMEM;

    if (f && fclose(f) != 0 && rc == 0)
        rc = -ENOMEM;
    if (rc == 0)
        rc = store_put_bytes(store, key, data, len);
    free(data);
    free(key);
    return rc;
}

/* A stored entry being read: its bytes, and the next record in them. */
struct reader {
    char *data;
    const char *at, *end;
};

/* Reads key's entry (key is freed) if it is of format: 0, or -ENOENT. */
static int read_entry(struct store *store, char *key, const char *format, struct reader *r)
{
    size_t len;
    int rc = key ? store_get_bytes(store, key, &r->data, &len) : -ENOMEM;

    free(key);
    if (rc)
        return rc;
    if (len < strlen(format) || memcmp(r->data, format, strlen(format)) != 0) {
        free(r->data);
        return -ENOENT;
    }
    r->at = r->data + strlen(format);
    r->end = r->data + len;
    return 0;
}

/* The next header line, NUL-terminated in line: 1, 0 at the end, -ENOENT when damaged. */
static int next_header(struct reader *r, char line[HEADER_MAX])
{
    const char *nl;
    size_t n;

    if (r->at == r->end)
        return 0;
    nl = memchr(r->at, '\n', (size_t)(r->end - r->at));
    n = nl ? (size_t)(nl - r->at) : HEADER_MAX;
    if (n >= HEADER_MAX)
        return -ENOENT;
    memcpy(line, r->at, n);
    line[n] = '\0';
    r->at = nl + 1;
    return 1;
}

/* The name of namelen bytes after a header, and its '\n': a malloc'd copy, or NULL. */
static char *next_name(struct reader *r, size_t namelen, int *rc)
{
    char *name;

    *rc = -ENOENT;
    if (namelen == 0 || namelen >= (size_t)(r->end - r->at) || r->at[namelen] != '\n' ||
        memchr(r->at, '\0', namelen))
        return NULL;
    name = strndup(r->at, namelen);
    *rc = name ? 0 : -ENOMEM;
    r->at += namelen + 1;
    return name;
}

/* Room for one more item of elem bytes in *items (count of them, *alloc allocated). */
static int grow(void **items, size_t count, size_t *alloc, size_t elem)
{
    size_t n = *alloc ? *alloc * 2 : 16;
    void *grown;

    if (count < *alloc)
        return 0;
    grown = realloc(*items, n * elem);
    if (!grown)
        return -ENOMEM;
    *items = grown;
    *alloc = n;
    return 0;
}

/* ---- directories ---- */

static int print_dir(FILE *f, const void *arg)
{
    const struct api_entry_list *list = arg;

    fputs(DIR_FORMAT, f);
    for (size_t i = 0; i < list->count; i++) {
        const struct api_entry *e = &list->items[i];
        fprintf(f, "%c %d %d %" PRIu64 " %zu\n%s\n", entry_types[e->type], e->executable ? 1 : 0,
                e->lfs ? 1 : 0, e->size, strlen(e->name), e->name);
    }
    return 0;
}

int gitstore_put_dir(struct store *store, const char *repo, const char *hash, const char *dir,
                     const struct api_entry_list *entries)
{
    return put_entry(store, key_of("gitdir", repo, hash, dir), print_dir, entries);
}

/* One entry's header "TYPE EXEC LFS SIZE NAMELEN" into e (name not set) and *namelen. */
static int parse_entry_header(const char *line, struct api_entry *e, size_t *namelen)
{
    unsigned long long size;
    int exec, lfs, used = 0;
    const char *type;
    char t;

    if (sscanf(line, "%c %d %d %llu %zu%n", &t, &exec, &lfs, &size, namelen, &used) != 5 ||
        line[used] != '\0' || (exec != 0 && exec != 1) || (lfs != 0 && lfs != 1) || t == '\0' ||
        !(type = memchr(entry_types, t, sizeof(entry_types))))
        return -ENOENT;
    memset(e, 0, sizeof(*e));
    e->type = (enum api_entry_type)(type - entry_types);
    e->executable = exec;
    e->lfs = lfs;
    e->size = size;
    return 0;
}

int gitstore_get_dir(struct store *store, const char *repo, const char *hash, const char *dir,
                     struct api_entry_list *out)
{
    char line[HEADER_MAX];
    struct reader r;
    size_t alloc = 0, namelen;
    int rc, more = 0;

    memset(out, 0, sizeof(*out));
    rc = read_entry(store, key_of("gitdir", repo, hash, dir), DIR_FORMAT, &r);
    if (rc)
        return rc;
    while (rc == 0 && (more = next_header(&r, line)) > 0) {
        struct api_entry e;
        rc = parse_entry_header(line, &e, &namelen);
        if (rc == 0)
            rc = grow((void **)&out->items, out->count, &alloc, sizeof(*out->items));
        if (rc == 0 && (e.name = next_name(&r, namelen, &rc)))
            out->items[out->count++] = e;
    }
    if (rc == 0 && more < 0)
        rc = more;
    free(r.data);
    if (rc)
        api_entry_list_release(out);
    return rc;
}

/* ---- commits ---- */

static int print_commit(FILE *f, const void *arg)
{
    fprintf(f, COMMIT_FORMAT "%" PRId64 "\n", *(const int64_t *)arg);
    return 0;
}

int gitstore_put_commit(struct store *store, const char *repo, const char *hash, int64_t date)
{
    return put_entry(store, key_of("gitcommit", repo, hash, NULL), print_commit, &date);
}

int gitstore_get_commit(struct store *store, const char *repo, const char *hash, int64_t *date)
{
    char line[HEADER_MAX];
    struct reader r;
    int used = 0, rc;

    rc = read_entry(store, key_of("gitcommit", repo, hash, NULL), COMMIT_FORMAT, &r);
    if (rc)
        return rc;
    if (next_header(&r, line) != 1 || sscanf(line, "%" SCNd64 "%n", date, &used) != 1 ||
        line[used] != '\0' || r.at != r.end)
        rc = -ENOENT;
    free(r.data);
    return rc;
}

/* ---- tips ---- */

static int print_tips(FILE *f, const void *arg)
{
    const struct api_ref_list *tips = arg;

    fputs(TIPS_FORMAT, f);
    for (int kind = 0; kind < 2; kind++)
        for (size_t i = 0; i < tips[kind].count; i++) {
            const struct api_ref *ref = &tips[kind].items[i];
            fprintf(f, "%c %s %zu\n%s\n", kind ? 't' : 'b', ref->target, strlen(ref->name),
                    ref->name);
        }
    return 0;
}

int gitstore_put_tips(struct store *store, const char *repo, const struct api_ref_list tips[2])
{
    return put_entry(store, key_of("gittips", repo, NULL, NULL), print_tips, tips);
}

/* One ref's header "KIND HASH NAMELEN": its list (0 or 1), ref's target, *namelen. */
static int parse_ref_header(const char *line, struct api_ref *ref, size_t *namelen)
{
    char kind, target[API_HASH_LEN + 1];
    int used = 0;

    if (sscanf(line, "%c %40s %zu%n", &kind, target, namelen, &used) != 3 || line[used] != '\0' ||
        (kind != 'b' && kind != 't') || !api_is_full_hash(target))
        return -ENOENT;
    memset(ref, 0, sizeof(*ref));
    memcpy(ref->target, target, sizeof(target));
    return kind == 't';
}

int gitstore_get_tips(struct store *store, const char *repo, struct api_ref_list tips[2])
{
    char line[HEADER_MAX];
    size_t alloc[2] = {0, 0}, namelen;
    struct reader r;
    int rc, more = 0;

    memset(tips, 0, 2 * sizeof(*tips));
    rc = read_entry(store, key_of("gittips", repo, NULL, NULL), TIPS_FORMAT, &r);
    if (rc)
        return rc;
    while (rc == 0 && (more = next_header(&r, line)) > 0) {
        struct api_ref ref;
        int kind = parse_ref_header(line, &ref, &namelen);
        struct api_ref_list *list = &tips[kind > 0];
        rc = kind < 0 ? kind : grow((void **)&list->items, list->count, &alloc[kind], sizeof(ref));
        if (rc == 0 && (ref.name = next_name(&r, namelen, &rc)))
            list->items[list->count++] = ref;
    }
    if (rc == 0 && more < 0)
        rc = more;
    free(r.data);
    if (rc) {
        api_ref_list_release(&tips[0]);
        api_ref_list_release(&tips[1]);
    }
    return rc;
}

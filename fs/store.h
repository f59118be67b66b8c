/*
 * store.h - the on-disk cache: file bodies and diffs addressed by commit
 * hash, and the API's stored answers (responses.h), kept across mounts.
 *
 * An entry is named by the SHA-256 of its key (never by a string from the
 * API, so no API path can reach outside the store) and lives at
 * ROOT/objects/XX/REST. It is written to ROOT/tmp first and renamed into
 * place only when complete, so a crash never leaves a torn entry behind;
 * leftovers in ROOT/tmp are removed when the store opens. Directories are
 * 0700, files 0600.
 *
 * The entries' sizes are kept under a limit (cache_size=): when a commit takes
 * the total above it, the least recently used entries are unlinked until the
 * total is 90% of the limit. "Used" is the entry's mtime, which a lookup
 * refreshes, so the order survives remounts. The entry just committed is
 * never evicted by its own commit, so one bigger than the limit is still
 * served once. All functions may be called from many threads at once.
 */
#ifndef BBFS_STORE_H
#define BBFS_STORE_H

#include <stddef.h>
#include <stdint.h>

struct store;

/* Creates ROOT (and its parents) when missing. limit_bytes is above 0. */
int store_open(const char *root, uint64_t limit_bytes, struct store **out, char *err,
               size_t errlen);
void store_close(struct store *store);

/*
 * Opens the entry for key read-only into *fd and its size into *size, or
 * -ENOENT, and marks it used.
 */
int store_lookup(struct store *store, const char *key, int *fd, uint64_t *size);

/* A temporary file to fill; store_commit or store_abort ends it. Not logged: see store_cannot_keep.
 */
struct store_writer {
    int fd;
    char *tmp_path;
};
int store_begin(struct store *store, struct store_writer *w);
/*
 * Renames the filled file into place as key's entry (replacing any), then
 * evicts when the store is over its limit.
 */
int store_commit(struct store *store, struct store_writer *w, const char *key);
void store_abort(struct store_writer *w);

/*
 * Unlinks the least recently used entries until the store's file system has
 * bytes available, or none is left: 0 when anything was unlinked, else
 * -ENOSPC.
 */
int store_make_room(struct store *store, uint64_t bytes);

/* Whether err (an errno value) means the store cannot take what it is given. */
int store_is_fault(int err);

/*
 * Says, once per cause err (an errno value), that the store cannot keep what
 * is downloaded, naming its path: what is read is then served without being
 * kept.
 */
void store_cannot_keep(struct store *store, int err);

/*
 * An entry open as fd (of size bytes, from store_lookup) whole: a malloc'd,
 * NUL-terminated copy, or -EFBIG when it is over max bytes. Closes fd.
 */
int store_read_all(int fd, uint64_t size, uint64_t max, char **data, size_t *len);

/* Small entries whole: a malloc'd, NUL-terminated copy, or -ENOENT. */
int store_get_bytes(struct store *store, const char *key, char **data, size_t *len);
int store_put_bytes(struct store *store, const char *key, const void *data, size_t len);

#endif

/*
 * gitstore.h - what packs brought, kept in the on-disk store (internal to
 * fs/), so that it is read offline and after a remount like everything
 * addressed by a hash: a directory's entries at a commit, a commit's record
 * (written when its whole tree was unpacked; it holds the commit's date),
 * and a repository's branch and tag tips as git advertised them (mutable:
 * read only offline). File contents are not here: they are kept under the
 * keys blobs.c reads them by.
 *
 * An entry that is missing, damaged or of another format reads as -ENOENT,
 * so that the caller asks the API instead. Names inside entries are stored
 * with their length: any byte a git tree allows survives.
 */
#ifndef BBFS_GITSTORE_H
#define BBFS_GITSTORE_H

#include "api/api.h"

#include <stdint.h>

struct store;

int gitstore_put_dir(struct store *store, const char *repo, const char *hash, const char *dir,
                     const struct api_entry_list *entries);
int gitstore_get_dir(struct store *store, const char *repo, const char *hash, const char *dir,
                     struct api_entry_list *out);

int gitstore_put_commit(struct store *store, const char *repo, const char *hash, int64_t date);
int gitstore_get_commit(struct store *store, const char *repo, const char *hash, int64_t *date);

/* tips[0] the branches, tips[1] the tags, each sorted by name. */
int gitstore_put_tips(struct store *store, const char *repo, const struct api_ref_list tips[2]);
int gitstore_get_tips(struct store *store, const char *repo, struct api_ref_list tips[2]);

#endif

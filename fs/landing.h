/*
 * landing.h - where a download's bytes land (internal to fs/).
 *
 * In the store's temporary file, which enters the store when the content is
 * complete and its length checked (store.h). When the store cannot take the
 * bytes (full, unwritable: store_is_fault), room is made once by evicting
 * where that can help, and otherwise the bytes written so far and all those
 * to come go to a file outside the store, unlinked from the start ($TMPDIR,
 * else /var/tmp, else /tmp), which lives as long as it is open; that is said
 * once (store_cannot_keep). Used by one thread at a time.
 */
#ifndef BBFS_LANDING_H
#define BBFS_LANDING_H

#include "fs/store.h"

#include <stddef.h>
#include <stdint.h>

struct landing {
    struct store *store;
    uint64_t size_hint; /* what the content is expected to weigh (0: unknown), for room */
    uint64_t written;
    int fd;        /* the file the bytes are in now (landing's own), -1 before */
    int kept;      /* in the store's temporary file: it enters the store */
    int made_room; /* room was made once already */
    struct store_writer w;
};

/*
 * Where key's content lands. *complete when the store holds it already (a
 * download that ended just before this one began): fd is then its entry,
 * written its size, and nothing is to be written or finished.
 */
int landing_begin(struct landing *l, struct store *store, const char *key, uint64_t size_hint,
                  int *complete);
/*
 * Appends len bytes: 0 or -errno (the store's faults are taken care of, so
 * -EIO means nowhere could take them). *moved when they went to another
 * file: l->fd is new, and holds the bytes written before too.
 */
int landing_write(struct landing *l, const void *data, size_t len, int *moved);
/* All written: checked by its length, then entered into the store when kept (else not kept). */
int landing_finish(struct landing *l, const char *key);
/* Removes what did not enter the store, closes l->fd. */
void landing_release(struct landing *l);

#endif

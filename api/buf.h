/*
 * buf.h - a growable byte buffer with a mandatory size cap (internal to api/).
 *
 * Used for HTTP response bodies and for building URLs. The first failure
 * (out of memory, or growing past max) frees the bytes and sticks: later
 * appends are no-ops returning the same error, so a caller may append many
 * times and check once. The contents are always NUL-terminated (the NUL is
 * not counted in len nor in max). buf_take() hands the bytes to the caller.
 *
 *   struct buf b;
 *   buf_init(&b, 1 << 20);
 *   buf_append(&b, "abc", 3);
 *   char *s = buf_take(&b, &len);   // caller frees s; b is empty again
 *   buf_release(&b);                // always safe, also on a zeroed struct
 */
#ifndef BBFS_API_BUF_H
#define BBFS_API_BUF_H

#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t alloc;
    size_t max; /* the cap on len */
    int err;    /* 0, -ENOMEM or -EFBIG once failed */
};

void buf_init(struct buf *b, size_t max);
void buf_release(struct buf *b);
/* 0, -ENOMEM, or -EFBIG when len would exceed max. */
int buf_append(struct buf *b, const void *data, size_t len);
int buf_appends(struct buf *b, const char *s);
int buf_appendc(struct buf *b, char c);
/* Puts b into the failed state err (freeing its bytes); returns err. */
int buf_set_error(struct buf *b, int err);
/* The bytes (NUL-terminated, never NULL unless failed), len into *len when not NULL. */
char *buf_take(struct buf *b, size_t *len);

#endif

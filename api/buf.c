/*
 * buf.c - the capped, self-freeing byte buffer described in buf.h.
 */
#include "api/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void buf_release(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
}

int buf_set_error(struct buf *b, int err)
{
    buf_release(b);
    if (!b->err)
        b->err = err;
    return b->err;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
    size_t need, alloc;
    char *p;

    if (b->err)
        return b->err;
    if (len > b->max || b->len > b->max - len)
        return buf_set_error(b, -EFBIG);
    need = b->len + len + 1;
    if (need > b->alloc) {
        alloc = b->alloc ? b->alloc : 256;
        while (alloc < need)
            alloc = alloc > ((size_t)-1) / 2 ? need : alloc * 2;
        p = realloc(b->data, alloc);
        if (!p)
            return buf_set_error(b, -ENOMEM);
        b->data = p;
        b->alloc = alloc;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int buf_appends(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_appendc(struct buf *b, char c)
{
    return buf_append(b, &c, 1);
}

char *buf_take(struct buf *b, size_t *len)
{
    char *p;

    if (b->err)
        return NULL;
    if (!b->data && buf_append(b, "", 0) < 0) /* an empty buffer still yields "" */
        return NULL;
    p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    return p;
}

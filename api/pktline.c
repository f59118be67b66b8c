/*
 * pktline.c - pkt-line encoding and the chunk-fed decoder (pktline.h).
 */
#include "api/pktline.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void pkt_decoder_init(struct pkt_decoder *d)
{
    d->head_len = 0;
    d->need = 0;
    d->len = 0;
}

int pkt_decoder_idle(const struct pkt_decoder *d)
{
    return d->head_len == 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The packet length of a complete head, or -EPROTO. */
static long head_length(const char head[4])
{
    long v = 0;
    int i, digit;

    for (i = 0; i < 4; i++) {
        digit = hex_digit(head[i]);
        if (digit < 0)
            return -EPROTO;
        v = v * 16 + digit;
    }
    if (v == 3 || v > PKT_MAX)
        return -EPROTO;
    return v;
}

int pkt_decode(struct pkt_decoder *d, const char **data, size_t *len, struct pkt *out)
{
    static const enum pkt_type special[] = {PKT_FLUSH, PKT_DELIM, PKT_RESPONSE_END};
    size_t take;
    long n;

    if (d->head_len < 4) {
        while (d->head_len < 4 && *len > 0) {
            d->head[d->head_len++] = **data;
            (*data)++;
            (*len)--;
        }
        if (d->head_len < 4)
            return 0;
        n = head_length(d->head);
        if (n < 0)
            return (int)n;
        if (n < 4) {
            d->head_len = 0;
            out->type = special[n];
            out->data = NULL;
            out->len = 0;
            return 1;
        }
        d->need = (size_t)n - 4;
        d->len = 0;
    }
    take = d->need - d->len;
    if (take > *len)
        take = *len;
    memcpy(d->data + d->len, *data, take);
    d->len += take;
    *data += take;
    *len -= take;
    if (d->len < d->need)
        return 0;
    d->data[d->len] = '\0';
    d->head_len = 0;
    out->type = PKT_DATA;
    out->data = d->data;
    out->len = d->len;
    return 1;
}

int pkt_append(struct buf *b, const char *data, size_t len)
{
    char head[5];

    if (len == 0 || len > PKT_DATA_MAX)
        return buf_set_error(b, -EINVAL);
    snprintf(head, sizeof(head), "%04zx", len + 4);
    buf_append(b, head, 4);
    return buf_append(b, data, len);
}

int pkt_append_str(struct buf *b, const char *line)
{
    return pkt_append(b, line, strlen(line));
}

int pkt_append_flush(struct buf *b)
{
    return buf_append(b, "0000", 4);
}

int pkt_append_delim(struct buf *b)
{
    return buf_append(b, "0001", 4);
}

/*
 * pktline.h - git's pkt-lines (gitprotocol-common(5)) as pure functions over
 * bytes (internal to api/): a packet is four hex digits of length (its own
 * four included) and a payload; 0000 flushes, 0001 delimits (v2), 0002 ends
 * a response (v2). The decoder is fed chunks of any size, as curl hands them
 * over, and holds at most one packet (PKT_MAX bytes) whatever the
 * server sends.
 */
#ifndef BBFS_API_PKTLINE_H
#define BBFS_API_PKTLINE_H

#include <stddef.h>

#include "api/buf.h"

#define PKT_MAX 65520 /* a pkt-line's most bytes, its 4-byte length included */
#define PKT_DATA_MAX (PKT_MAX - 4)

enum pkt_type {
    PKT_DATA,
    PKT_FLUSH,        /* 0000 */
    PKT_DELIM,        /* 0001 (v2) */
    PKT_RESPONSE_END, /* 0002 (v2) */
};

struct pkt {
    enum pkt_type type;
    const char *data; /* PKT_DATA: the payload, NUL-terminated; valid until the next decode */
    size_t len;
};

struct pkt_decoder {
    char head[4];
    size_t head_len;
    size_t need; /* payload bytes of the packet being read, once its head is complete */
    size_t len;  /* of them, bytes read so far */
    char data[PKT_DATA_MAX + 1];
};

void pkt_decoder_init(struct pkt_decoder *d);
/*
 * Takes bytes from *data (*len of them), advancing both. 1 when a packet is
 * complete (in *out), 0 when every byte was taken and the packet is not yet
 * complete, -EPROTO for a length that is not four hex digits, 3, or above
 * PKT_MAX.
 */
int pkt_decode(struct pkt_decoder *d, const char **data, size_t *len, struct pkt *out);
/* Whether the decoder stands between packets (no partial packet held). */
int pkt_decoder_idle(const struct pkt_decoder *d);

/* Appends one data packet (-EINVAL when len is 0 or over PKT_DATA_MAX). */
int pkt_append(struct buf *b, const char *data, size_t len);
int pkt_append_str(struct buf *b, const char *line);
int pkt_append_flush(struct buf *b);
int pkt_append_delim(struct buf *b);

#endif

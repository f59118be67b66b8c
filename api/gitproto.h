/*
 * gitproto.h - git's fetch protocol over smart HTTP as pure functions over
 * bytes (internal to api/; no I/O: git.c feeds what curl hands over).
 *
 * On pkt-lines (pktline.h): the discovery answer of GET
 * info/refs: a v0 ref advertisement (capabilities after the first ref's NUL,
 * HEAD's symref, peeled tags as NAME^{}) or a v2 capability advertisement.
 * The v2 ls-refs request and answer. The fetch request for one commit at
 * depth 1 (v0 and v2: side-band-64k, ofs-delta, no-progress, never
 * thin-pack), and a parser of its answer that hands the pack's bytes (band
 * 1) to a callback as they arrive, drops progress (band 2), and stops at an
 * error (band 3, or an ERR line).
 *
 * Memory is bounded whatever the server sends: a decoder holds one packet
 * (at most PKT_MAX bytes), a ref list at most GITPROTO_MAX_REFS
 * refs of HEAD, refs/heads/ and refs/tags/ (others are skipped).
 *
 * Errors: -EPROTO for bytes that are not the protocol (a bad length, a line
 * out of place, an answer that ends early), -EREMOTEIO for an error the
 * server sent (its text in the parser's message), -ENOTSUP for a server
 * without what a depth-1 fetch needs (shallow, side-band-64k) or with
 * SHA-256 objects, -EFBIG past a bound, -ENOMEM.
 */
#ifndef BBFS_API_GITPROTO_H
#define BBFS_API_GITPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "api/buf.h"
#include "api/pktline.h"

#define GITPROTO_OID_HEX 40
#define GITPROTO_MAX_REFS 100000
#define GITPROTO_MESSAGE_MAX 256

/* What the server offers, from its advertisement. */
enum {
    GITPROTO_CAP_SHALLOW = 1 << 0, /* deepen: v0 "shallow", v2 fetch=...shallow */
    GITPROTO_CAP_SIDE_BAND_64K = 1 << 1,
    GITPROTO_CAP_OFS_DELTA = 1 << 2,
    GITPROTO_CAP_NO_PROGRESS = 1 << 3,
    GITPROTO_CAP_ALLOW_TIP = 1 << 4,       /* v0 allow-tip-sha1-in-want */
    GITPROTO_CAP_ALLOW_REACHABLE = 1 << 5, /* v0 allow-reachable-sha1-in-want */
    GITPROTO_CAP_LS_REFS = 1 << 6,         /* v2 */
    GITPROTO_CAP_FETCH = 1 << 7,           /* v2 */
    GITPROTO_CAP_AGENT = 1 << 8,           /* the server names itself: so may we */
    GITPROTO_CAP_OBJECT_FORMAT = 1 << 9,   /* object-format=sha1 said explicitly */
    GITPROTO_CAP_SHA256 = 1 << 10,         /* any other object format: not supported */
};

struct gitproto_ref {
    char *name; /* HEAD, refs/heads/..., refs/tags/...; hostile like any server string */
    char oid[GITPROTO_OID_HEX + 1];
    char peeled[GITPROTO_OID_HEX + 1]; /* an annotated tag's object, peeled; "" otherwise */
    char *symref;                      /* the ref HEAD points to, or NULL */
};

struct gitproto_refs {
    struct gitproto_ref *items;
    size_t count, alloc;
};
void gitproto_refs_release(struct gitproto_refs *refs);
/* The ref called name, or NULL. */
const struct gitproto_ref *gitproto_refs_find(const struct gitproto_refs *refs, const char *name);

/*
 * The discovery answer. v0 (and v1) advertisements carry the refs; a v2
 * one only capabilities (the refs come from ls-refs).
 */
struct gitproto_adv {
    int version; /* 0 or 2 */
    unsigned caps;
    struct gitproto_refs refs; /* v0 */
};
void gitproto_adv_release(struct gitproto_adv *adv);

/*
 * A parser of one answer that is a list of lines ended by a flush: the
 * discovery answer, or a v2 ls-refs answer. Feed chunks, then finish.
 */
enum gitproto_list_kind { GITPROTO_DISCOVERY, GITPROTO_LS_REFS };

struct gitproto_list_parser {
    struct pkt_decoder dec;
    enum gitproto_list_kind kind;
    int state;
    struct gitproto_adv *adv;           /* the caller's, filled in (refs only, for ls-refs) */
    char message[GITPROTO_MESSAGE_MAX]; /* an ERR line's text, sanitised */
};

void gitproto_list_init(struct gitproto_list_parser *p, enum gitproto_list_kind kind,
                        struct gitproto_adv *out);
int gitproto_list_feed(struct gitproto_list_parser *p, const char *data, size_t len);
/* 0 when the answer was complete, -EPROTO when it ended early. */
int gitproto_list_finish(struct gitproto_list_parser *p);

/*
 * Requests (the body of a POST to git-upload-pack), appended to b. caps
 * are the server's; agent (or NULL) is sent where the server takes one.
 * want is a 40-hex object name (-EINVAL otherwise).
 */
int gitproto_ls_refs_request(struct buf *b, unsigned caps, const char *agent);
int gitproto_fetch_request(struct buf *b, int version, unsigned caps, const char *agent,
                           const char *want);

/* Receives the pack's bytes; a negative errno stops the parse with it. */
typedef int (*gitproto_pack_fn)(void *ctx, const char *data, size_t len);

struct gitproto_fetch_parser {
    struct pkt_decoder dec;
    int version;
    int state;
    gitproto_pack_fn pack_fn;
    void *ctx;
    uint64_t pack_bytes;
    char message[GITPROTO_MESSAGE_MAX];
};

void gitproto_fetch_init(struct gitproto_fetch_parser *p, int version, gitproto_pack_fn pack_fn,
                         void *ctx);
/* 0, -EPROTO, -EREMOTEIO, or what pack_fn returned. */
int gitproto_fetch_feed(struct gitproto_fetch_parser *p, const char *data, size_t len);
/* 0 when the answer ended after its pack, -EPROTO when it was cut short. */
int gitproto_fetch_finish(struct gitproto_fetch_parser *p);

/* True when s is exactly 40 lowercase hexadecimal digits. */
int gitproto_is_oid(const char *s);

#endif

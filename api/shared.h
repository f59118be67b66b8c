/*
 * shared.h - what the cache shared by a fleet keeps (issue 17): its keys and
 * the format of its values. No network here: redis.h moves them.
 *
 * Keys. Data addressed by a commit hash is shared by every machine whatever
 * its token: its key is the SHA-256 of its address (API origin, workspace,
 * repository, kind, hash, path; each field length-prefixed, so hostile names
 * can neither collide nor break a key, and the token never enters it). A
 * mutable answer is shared only among holders of one token: its key is an
 * HMAC-SHA-256 of the request under a secret derived from the token
 * (HMAC(token, "bbfs shared cache v1")), so nobody without the token can find
 * it. Every key is "bbfs:1:h:" or "bbfs:1:m:" and 64 hex digits; the lease on
 * a key (one fetch across machines) is that key and ":lease".
 *
 * Values. A header of SHARED_HEADER_LEN bytes, the ETag, the body:
 *
 *   offset size
 *    0      4   magic "bbSC"
 *    4      1   format version, 1
 *    5      1   0 (reserved)
 *    6      2   ETag length, big-endian like every number here
 *    8      8   body length
 *   16      8   fetch time, seconds since the epoch (signed; 0 when none)
 *   24     32   check
 *
 * The check covers the key, bytes 0-23, the ETag and the SHA-256 of the body.
 * It is a SHA-256 for hash-addressed values, and an HMAC-SHA-256 under the
 * secret for mutable ones, so that nobody without the token can forge a
 * mutable answer or move one to another key. A value failing any check is
 * damaged.
 */
#ifndef BBFS_API_SHARED_H
#define BBFS_API_SHARED_H

#include <stddef.h>
#include <stdint.h>

#define SHARED_KEY_SIZE 96 /* a key, ":lease" and the NUL fit */
#define SHARED_HEADER_LEN 56
#define SHARED_ETAG_MAX 1024
#define SHARED_SECRET_LEN 32

enum shared_kind { SHARED_BY_HASH, SHARED_MUTABLE };

struct shared_key {
    char name[SHARED_KEY_SIZE];
    enum shared_kind kind;
};

/* Derived from the token; the token itself is never kept. */
struct shared_secret {
    unsigned char bytes[SHARED_SECRET_LEN];
};

/* Where a hash-addressed value comes from; every field is required ("" for none). */
struct shared_address {
    const char *origin; /* the API's base URL, e.g. "https://api.bitbucket.org/2.0" */
    const char *workspace;
    const char *repo;
    const char *kind; /* what the value is, e.g. "commit", "src", "diff" */
    const char *hash; /* the full commit hash */
    const char *path;
};

/*
 * A value's contents. For shared_value_build the caller's; from
 * shared_value_open, pointers into the raw value, alive as long as it is.
 * The ETag is not NUL-terminated (etag_len bytes; etag may be NULL when 0).
 */
struct shared_entry {
    const char *body;
    size_t len;
    const char *etag;
    size_t etag_len;
    int64_t fetched_at;
};

/* 0, -EINVAL (token NULL or empty), -EIO (no HMAC from OpenSSL). */
int shared_secret_derive(const char *token, struct shared_secret *out);
void shared_secret_wipe(struct shared_secret *secret);

/* 0, -EINVAL (a NULL field), -ENOMEM, -EIO. */
int shared_key_by_hash(const struct shared_address *addr, struct shared_key *out);
/* request: what identifies the answer, e.g. its URL. 0, -EINVAL, -EIO. */
int shared_key_mutable(const struct shared_secret *secret, const char *request,
                       struct shared_key *out);
/* The name of the lease on key. */
void shared_lease_name(const struct shared_key *key, char out[SHARED_KEY_SIZE]);

/*
 * Lays out the value of entry in a new buffer (*out, *outlen bytes, the
 * caller frees) with everything but its check, which shared_value_seal adds:
 * the copy and the hashing of a big body may then happen in different
 * threads. 0, -EFBIG (a body over max_body), -EINVAL (an ETag over
 * SHARED_ETAG_MAX or with control characters), -ENOMEM.
 */
int shared_value_build(const struct shared_entry *entry, size_t max_body, char **out,
                       size_t *outlen);
/* Writes the check of a built value as the value of key. 0, -EINVAL, -EIO. */
int shared_value_seal(const struct shared_key *key, const struct shared_secret *secret, char *value,
                      size_t len);

/*
 * Checks raw as the value of key and points entry into it. 0; -EBADMSG when
 * damaged (magic, version, lengths, ETag, check); -EFBIG when its header
 * announces a body over max_body (raw may then be only its beginning: a value
 * from a machine with a higher cap is not damaged); -EINVAL (a mutable key
 * without secret).
 */
int shared_value_open(const struct shared_key *key, const struct shared_secret *secret,
                      const char *raw, size_t rawlen, size_t max_body, struct shared_entry *entry);

#endif

/*
 * shared.c - the keys and the value format of the shared cache (shared.h).
 *
 * Everything is hashed with the one-shot calls of digest.h. The check of a
 * value hashes the body once with SHA-256 and then the small rest (key,
 * header, ETag, body digest) with SHA-256 or HMAC-SHA-256, so a big body is
 * read once whichever the kind of key.
 */
#include "api/shared.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api/digest.h"

#define SHARED_MAGIC "bbSC"
#define SHARED_VERSION 1
#define SHARED_CHECK_AT 24

/* Domain separation: the secret keys both the names and the checks of mutable values. */
static const char secret_label[] = "bbfs shared cache v1";
static const char key_label[] = "bbfs shared key v1";
static const char check_label[] = "bbfs shared value v1";

/* The most a check hashes besides the body: label, key, header, ETag, body digest. */
#define CHECK_INPUT_MAX                                                                            \
    (sizeof(check_label) + 2 + SHARED_KEY_SIZE + SHARED_CHECK_AT + SHARED_ETAG_MAX + DIGEST_LEN)

static void put_be(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

static uint64_t get_be(const unsigned char *p, int bytes)
{
    uint64_t v = 0;

    for (int i = 0; i < bytes; i++)
        v = (v << 8) | p[i];
    return v;
}

static void name_key(const char *prefix, const unsigned char md[DIGEST_LEN], struct shared_key *out,
                     enum shared_kind kind)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(prefix);

    memcpy(out->name, prefix, n);
    for (size_t i = 0; i < DIGEST_LEN; i++) {
        out->name[n + 2 * i] = hex[md[i] >> 4];
        out->name[n + 2 * i + 1] = hex[md[i] & 0xf];
    }
    out->name[n + 2 * DIGEST_LEN] = '\0';
    out->kind = kind;
}

int shared_secret_derive(const char *token, struct shared_secret *out)
{
    if (!token || !*token)
        return -EINVAL;
    return digest_hmac_sha256(token, strlen(token), secret_label, strlen(secret_label), out->bytes);
}

void shared_secret_wipe(struct shared_secret *secret)
{
    if (secret)
        OPENSSL_cleanse(secret->bytes, sizeof(secret->bytes));
}

int shared_key_by_hash(const struct shared_address *addr, struct shared_key *out)
{
    const char *fields[] = {addr->origin, addr->kind, addr->workspace,
                            addr->repo,   addr->hash, addr->path};
    size_t nfields = sizeof(fields) / sizeof(fields[0]), total = sizeof(key_label), at;
    unsigned char md[DIGEST_LEN], *input;
    int rc;

    for (size_t i = 0; i < nfields; i++) {
        if (!fields[i])
            return -EINVAL;
        total += 8 + strlen(fields[i]);
    }
    input = malloc(total);
    if (!input)
        return -ENOMEM;
    memcpy(input, key_label, sizeof(key_label));
    at = sizeof(key_label);
    for (size_t i = 0; i < nfields; i++) {
        size_t len = strlen(fields[i]);

        put_be(input + at, len, 8);
        memcpy(input + at + 8, fields[i], len);
        at += 8 + len;
    }
    rc = digest_sha256(input, total, md);
    free(input);
    if (rc == 0)
        name_key("bbfs:1:h:", md, out, SHARED_BY_HASH);
    return rc;
}

int shared_key_mutable(const struct shared_secret *secret, const char *request,
                       struct shared_key *out)
{
    size_t len = request ? strlen(request) : 0;
    unsigned char md[DIGEST_LEN], *input;
    int rc;

    if (!secret || !request)
        return -EINVAL;
    input = malloc(sizeof(key_label) + len);
    if (!input)
        return -ENOMEM;
    memcpy(input, key_label, sizeof(key_label));
    memcpy(input + sizeof(key_label), request, len);
    rc = digest_hmac_sha256(secret->bytes, sizeof(secret->bytes), input, sizeof(key_label) + len,
                            md);
    free(input);
    if (rc == 0)
        name_key("bbfs:1:m:", md, out, SHARED_MUTABLE);
    return rc;
}

void shared_lease_name(const struct shared_key *key, char out[SHARED_KEY_SIZE])
{
    static const char suffix[] = ":lease";
    size_t len = strnlen(key->name, SHARED_KEY_SIZE - sizeof(suffix));

    memcpy(out, key->name, len);
    memcpy(out + len, suffix, sizeof(suffix));
}

static int etag_is_clean(const char *etag, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)etag[i];

        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

int shared_value_build(const struct shared_entry *entry, size_t max_body, char **out,
                       size_t *outlen)
{
    unsigned char *value;
    size_t len;

    *out = NULL;
    *outlen = 0;
    if (entry->len > max_body)
        return -EFBIG;
    if (entry->etag_len > SHARED_ETAG_MAX || (entry->etag_len && !entry->etag) ||
        !etag_is_clean(entry->etag, entry->etag_len) || (entry->len && !entry->body))
        return -EINVAL;
    len = SHARED_HEADER_LEN + entry->etag_len + entry->len;
    value = malloc(len);
    if (!value)
        return -ENOMEM;
    memcpy(value, SHARED_MAGIC, 4);
    value[4] = SHARED_VERSION;
    value[5] = 0;
    put_be(value + 6, entry->etag_len, 2);
    put_be(value + 8, entry->len, 8);
    put_be(value + 16, (uint64_t)entry->fetched_at, 8);
    memset(value + SHARED_CHECK_AT, 0, DIGEST_LEN);
    if (entry->etag_len)
        memcpy(value + SHARED_HEADER_LEN, entry->etag, entry->etag_len);
    if (entry->len)
        memcpy(value + SHARED_HEADER_LEN + entry->etag_len, entry->body, entry->len);
    *out = (char *)value;
    *outlen = len;
    return 0;
}

/* The check of a value laid out in value (header, ETag, body of the lengths it announces). */
static int compute_check(const struct shared_key *key, const struct shared_secret *secret,
                         const unsigned char *value, unsigned char check[DIGEST_LEN])
{
    size_t etag_len = get_be(value + 6, 2), body_len = get_be(value + 8, 8);
    size_t key_len = strnlen(key->name, SHARED_KEY_SIZE - 1), at;
    unsigned char input[CHECK_INPUT_MAX];
    int rc;

    if (key->kind == SHARED_MUTABLE && !secret)
        return -EINVAL;
    memcpy(input, check_label, sizeof(check_label));
    at = sizeof(check_label);
    put_be(input + at, key_len, 2);
    memcpy(input + at + 2, key->name, key_len);
    at += 2 + key_len;
    memcpy(input + at, value, SHARED_CHECK_AT);
    at += SHARED_CHECK_AT;
    memcpy(input + at, value + SHARED_HEADER_LEN, etag_len);
    at += etag_len;
    rc = digest_sha256(value + SHARED_HEADER_LEN + etag_len, body_len, input + at);
    at += DIGEST_LEN;
    if (rc == 0 && key->kind == SHARED_MUTABLE)
        rc = digest_hmac_sha256(secret->bytes, sizeof(secret->bytes), input, at, check);
    else if (rc == 0)
        rc = digest_sha256(input, at, check);
    return rc;
}

int shared_value_seal(const struct shared_key *key, const struct shared_secret *secret, char *value,
                      size_t len)
{
    unsigned char *v = (unsigned char *)value;

    if (len < SHARED_HEADER_LEN || get_be(v + 6, 2) > SHARED_ETAG_MAX ||
        len - SHARED_HEADER_LEN != get_be(v + 6, 2) + get_be(v + 8, 8))
        return -EINVAL;
    return compute_check(key, secret, v, v + SHARED_CHECK_AT);
}

int shared_value_open(const struct shared_key *key, const struct shared_secret *secret,
                      const char *raw, size_t rawlen, size_t max_body, struct shared_entry *entry)
{
    const unsigned char *v = (const unsigned char *)raw;
    unsigned char check[DIGEST_LEN];
    uint64_t etag_len, body_len;
    int rc;

    memset(entry, 0, sizeof(*entry));
    if (key->kind == SHARED_MUTABLE && !secret)
        return -EINVAL;
    if (rawlen < SHARED_HEADER_LEN || memcmp(v, SHARED_MAGIC, 4) != 0 || v[4] != SHARED_VERSION ||
        v[5] != 0)
        return -EBADMSG;
    etag_len = get_be(v + 6, 2);
    body_len = get_be(v + 8, 8);
    if (body_len > max_body)
        return -EFBIG;
    if (etag_len > SHARED_ETAG_MAX || rawlen - SHARED_HEADER_LEN != etag_len + body_len ||
        !etag_is_clean(raw + SHARED_HEADER_LEN, etag_len))
        return -EBADMSG;
    rc = compute_check(key, secret, v, check);
    if (rc < 0)
        return rc;
    if (CRYPTO_memcmp(check, v + SHARED_CHECK_AT, DIGEST_LEN) != 0)
        return -EBADMSG;
    entry->etag = etag_len ? raw + SHARED_HEADER_LEN : NULL;
    entry->etag_len = etag_len;
    entry->body = raw + SHARED_HEADER_LEN + etag_len;
    entry->len = body_len;
    entry->fetched_at = (int64_t)get_be(v + 16, 8);
    return 0;
}

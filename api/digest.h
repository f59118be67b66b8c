/*
 * digest.h - binary SHA-256 and HMAC-SHA-256 for api/ (internal to api/).
 *
 * The hex names of the on-disk store stay in api.h (api_sha256_hex); these
 * give the raw 32 bytes, for keys and checks that go into binary headers.
 * Both are one-shot, on OpenSSL's one-shot calls, so no hashing context is
 * ever shared between threads.
 */
#ifndef BBFS_API_DIGEST_H
#define BBFS_API_DIGEST_H

#include <stddef.h>

#define DIGEST_LEN 32

/* 0, or -EIO when OpenSSL has no SHA-256 (logged once); out is zeroed then. */
int digest_sha256(const void *data, size_t len, unsigned char out[DIGEST_LEN]);

/* HMAC-SHA-256 of data under key (RFC 2104); 0, -EINVAL (a key over INT_MAX bytes) or -EIO. */
int digest_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                       unsigned char out[DIGEST_LEN]);

#endif

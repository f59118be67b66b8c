/*
 * digest.c - SHA-256 names for on-disk cache entries (api_sha256_hex of
 * api.h), and the binary SHA-256 and HMAC-SHA-256 of digest.h, on OpenSSL's
 * one-shot calls so that fs/ never sees OpenSSL.
 */
#include "api/api.h"
#include "api/digest.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "api/log.h"

void api_sha256_hex(const void *data, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;

    if (EVP_Digest(data ? data : "", data ? len : 0, md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != 32) {
        /* No name rather than a wrong one: two contents must never share a name. */
        log_once(LOG_LEVEL_ERR, "digest:sha256", "SHA-256 is not available from OpenSSL");
        out[0] = '\0';
        return;
    }
    for (i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }
    out[64] = '\0';
}

int digest_sha256(const void *data, size_t len, unsigned char out[DIGEST_LEN])
{
    unsigned int mdlen = 0;

    if (EVP_Digest(data ? data : "", data ? len : 0, out, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != DIGEST_LEN) {
        log_once(LOG_LEVEL_ERR, "digest:sha256", "SHA-256 is not available from OpenSSL");
        memset(out, 0, DIGEST_LEN);
        return -EIO;
    }
    return 0;
}

int digest_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                       unsigned char out[DIGEST_LEN])
{
    unsigned int mdlen = 0;

    memset(out, 0, DIGEST_LEN);
    if (keylen > INT_MAX) /* HMAC() takes the key's length as an int */
        return -EINVAL;
    if (!HMAC(EVP_sha256(), key ? key : "", key ? (int)keylen : 0,
              (const unsigned char *)(data ? data : ""), data ? len : 0, out, &mdlen) ||
        mdlen != DIGEST_LEN) {
        log_once(LOG_LEVEL_ERR, "digest:hmac", "HMAC-SHA-256 is not available from OpenSSL");
        memset(out, 0, DIGEST_LEN);
        return -EIO;
    }
    return 0;
}

/*
 * digest.c - SHA-256 names for on-disk cache entries (api_sha256_hex of
 * api.h), on OpenSSL's EVP interface so that fs/ never sees OpenSSL.
 */
#include "api/api.h"

#include <openssl/evp.h>

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

/*
 * curlshare.c - the libcurl set-up the API client and the git client share
 * (see curlshare.h).
 */
#include "api/curlshare.h"

#include <errno.h>
#include <string.h>

static void share_lock(CURL *handle, curl_lock_data data, curl_lock_access access, void *userp)
{
    struct curlshare *s = userp;

    (void)handle;
    (void)access;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&s->locks[data]);
}

static void share_unlock(CURL *handle, curl_lock_data data, void *userp)
{
    struct curlshare *s = userp;

    (void)handle;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&s->locks[data]);
}

int curlshare_init(struct curlshare *s)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&s->locks[i], NULL);
    s->share = curl_share_init();
    if (!s->share)
        return -ENOMEM;
    if (curl_share_setopt(s->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
        curl_share_setopt(s->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
        curl_share_setopt(s->share, CURLSHOPT_USERDATA, s) != CURLSHE_OK ||
        curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
        curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
        curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
        return -EIO;
    return 0;
}

void curlshare_release(struct curlshare *s)
{
    if (s->share)
        curl_share_cleanup(s->share);
    s->share = NULL;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&s->locks[i]);
}

CURLcode curlshare_setup_easy(CURL *easy, struct curlshare *s, const char *ca_file)
{
    CURLcode cc = CURLE_OK;

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(easy, opt, val);                                                 \
    } while (0)
    SET(CURLOPT_SHARE, s->share);
    SET(CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    /* HTTP/2 where TLS offers it (fewer handshakes, header compression), else 1.1. */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    if (ca_file)
        SET(CURLOPT_CAINFO, ca_file);
#undef SET
    return cc;
}

int curlshare_has_control_chars(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

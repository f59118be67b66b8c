/*
 * curlshare.h - what the API's transfers (transfer.c) and git's requests
 * (gitcurl.c) set up alike on libcurl (internal to api/): a share handle for
 * connections, DNS and TLS sessions with one mutex per kind of shared data,
 * the options every easy handle of bbfs carries (the share, no signals,
 * http and https only, keep-alive, HTTP/2 over TLS, the extra CA bundle),
 * and the check that a secret holds no control characters before it goes
 * into a header.
 *
 * Each client keeps a curlshare of its own; the share handle is the only
 * curl object several threads touch, under the locks set up here.
 */
#ifndef BBFS_API_CURLSHARE_H
#define BBFS_API_CURLSHARE_H

#include <curl/curl.h>
#include <pthread.h>

struct curlshare {
    CURLSH *share;
    pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
};

/* 0, -ENOMEM, or -EIO when libcurl refuses to share; curlshare_release() either way. */
int curlshare_init(struct curlshare *s);
void curlshare_release(struct curlshare *s);

/* The options above on easy; ca_file may be NULL (the system bundle). */
CURLcode curlshare_setup_easy(CURL *easy, struct curlshare *s, const char *ca_file);

/* 1 when s holds a byte below 0x20 or DEL: not something to put in a request. */
int curlshare_has_control_chars(const char *s);

#endif

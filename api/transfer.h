/*
 * transfer.h - one GET on libcurl, attempt by attempt (internal to http.c).
 *
 * A transfer_share is what every request of one http_client shares: a copy
 * of the token (sent only through CURLOPT_XOAUTH2_BEARER, which curl does
 * not send to another host or port on a redirect), the CA file, and a curl
 * share handle for connections, DNS and TLS sessions, guarded by one mutex
 * per kind of shared data, so connections are reused across requests and
 * threads.
 *
 * A transfer is one call's easy handle, set up once by transfer_open() and
 * used by one thread for each of its attempts, so no easy handle is ever
 * seen by two threads. After transfer_attempt() it holds what that attempt
 * got. Whether to try again, and what an answer means, is decided in http.c.
 *
 * In memory mode (no sink) the whole body goes into body, at most max_body
 * bytes (more aborts the attempt with CURLE_WRITE_ERROR and body.err set).
 * In download mode only a 2xx body goes to the sink, each byte once across
 * the attempts (a repeated attempt's first bytes, delivered before, are
 * skipped); body keeps the first HTTP_MAX_ERROR_BODY bytes of an error
 * answer for its message, and a sink that refuses bytes aborts the attempt
 * with sink_error set. Either mode is abandoned (cancelled set) once the
 * sink's or the calling thread's cancel check (waiting.h) says so.
 */
#ifndef BBFS_API_TRANSFER_H
#define BBFS_API_TRANSFER_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "api/buf.h"

struct transfer_share;

/* 0, -EINVAL (token NULL or with control characters), -ENOMEM, -EIO (libcurl refused). */
int transfer_share_new(const char *token, const char *ca_file, long connect_timeout_ms,
                       struct transfer_share **out);
void transfer_share_free(struct transfer_share *share);

struct transfer {
    CURL *easy;
    struct curl_slist *headers;
    const struct api_sink *sink; /* download mode, or NULL: the body into memory */
    size_t max_body;
    uint64_t delivered; /* bytes of the body the sink has, over all attempts */
    long connect_timeout_ms;
    char errbuf[CURL_ERROR_SIZE]; /* curl's detailed message of the last attempt */
    /* what the last attempt got */
    CURLcode result;
    long status;            /* the final HTTP status; 0 unless result is CURLE_OK */
    long receiving;         /* the status of the response being received (callbacks) */
    curl_off_t retry_after; /* seconds the server asked to wait, 0 when it did not */
    struct buf body;
    uint64_t written; /* bytes of this attempt's 2xx body received (download mode) */
    int sink_error;   /* the sink's -errno that aborted the attempt, or 0 */
    int cancelled;    /* a cancel check abandoned the attempt */
    char etag[256];   /* headers of the last response, "" when absent or unusable */
    char content_type[128];
    long ratelimit_limit; /* X-RateLimit-Limit, -1 when absent */
    int ratelimit_near;   /* X-RateLimit-NearLimit is "true": 1, else 0, -1 when absent */
};

/*
 * Sets up t for GET url with If-None-Match: etag (unless NULL), its body to
 * sink (NULL: into memory). 0, -EINVAL (an etag with control characters),
 * -ENOMEM, -EIO (libcurl refused an option). t must be closed with
 * transfer_close() either way.
 */
int transfer_open(struct transfer *t, struct transfer_share *share, const char *url,
                  const char *etag, const struct api_sink *sink, size_t max_body);
/*
 * One attempt that may take remaining_ms (a download: that may stall for
 * remaining_ms, at least two seconds). Its outcome is in t's fields.
 */
void transfer_attempt(struct transfer *t, int64_t remaining_ms);
void transfer_close(struct transfer *t);

/* Whether the sink's or the calling thread's cancel check says to give up. */
int transfer_cancelled(const struct transfer *t);

#endif

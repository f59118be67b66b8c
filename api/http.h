/*
 * http.h - authenticated GET requests with retries, on libcurl (internal to api/).
 *
 * One http_client per api_client. Its transfer_share (transfer.h) holds a
 * copy of the token and a curl share handle (connections, DNS, TLS
 * sessions), so connections are reused across requests and threads. Each
 * http_get() or http_download() uses an easy handle of its own for all its
 * attempts and cleans it up on return, so no easy handle is ever seen by
 * two threads. The token goes only through CURLOPT_XOAUTH2_BEARER, which
 * curl does not send to another host or port on a redirect.
 *
 * Retry policy (http.c): 429, 500, 502, 503, 504, 555, transport failures
 * (refused, reset, timed out, partial or empty reply) and, for HTTP_JSON
 * calls, a 2xx body that does not parse as JSON (cut short with its length
 * right) are retried, at most HTTP_MAX_ATTEMPTS attempts in all, sleeping
 * Retry-After when the server sent one, otherwise a full-jitter exponential
 * backoff (uniform in [0, min(HTTP_BACKOFF_CAP_MS, HTTP_BACKOFF_BASE_MS *
 * 2^n)]). Everything, sleeps included, fits in the client's timeout_ms: a
 * retry that could not finish before the deadline is not started.
 * (Downloads bound how long a transfer may stall rather than how long it may
 * take: see http_download.) A call whose thread's cancel check
 * (api_set_cancel) says to give up ends at once with -EINTR, logged and
 * counted as nothing.
 *
 * Outages: a call that fails for good because the API cannot be reached
 * (http_is_outage: no answer, 429, a 5xx other than 555) pauses the client:
 * for HTTP_OUTAGE_PAUSE_SECONDS every call fails at once, without a request
 * (resp->paused), so that a dead or rate-limited API costs one retry cycle,
 * not one per file. Any answer that is not an outage ends the pause. An
 * outage is logged once (key HTTP_LOG_KEY_OUTAGE, whatever the URL), and
 * forgotten at the next answer that is not one, so that the next outage is
 * logged again.
 */
#ifndef BBFS_API_HTTP_H
#define BBFS_API_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_ATTEMPTS 5
#define HTTP_BACKOFF_BASE_MS 100
#define HTTP_BACKOFF_CAP_MS 2000
/* After an outage, calls fail at once this long. */
#define HTTP_OUTAGE_PAUSE_SECONDS 10
/* The log_once key of an outage's one line: whoever reports an outage logs under it. */
#define HTTP_LOG_KEY_OUTAGE "http:outage"
/* Cap on a JSON response body (after decompression). */
#define HTTP_MAX_JSON ((size_t)64 << 20)
/* What http_download() keeps of an error answer's body, for its message. */
#define HTTP_MAX_ERROR_BODY ((size_t)64 << 10)
/* A download moving slower than this many bytes a second for timeout_ms is aborted. */
#define HTTP_LOW_SPEED_BYTES 1024

struct api_sink;
struct http_client;

struct http_options {
    const char *token; /* copied; wiped on free; "" sends no Authorization at all */
    const char *ca_file;
    long timeout_ms; /* per http_get(), retries and sleeps included */
    long connect_timeout_ms;
};

struct http_stats {
    uint64_t requests;             /* attempts sent, retries included */
    uint64_t retries;              /* attempts that were repeats */
    uint64_t failures;             /* http_get() calls that ended in an error */
    long ratelimit_limit;          /* last X-RateLimit-Limit seen, -1 when never */
    int ratelimit_near;            /* last X-RateLimit-NearLimit was "true" */
    uint64_t ratelimit_near_count; /* responses that said NearLimit: true */
    uint64_t bytes;                /* response bodies received, error answers included */
    uint64_t requests_last_hour;   /* attempts sent in the last 60 minutes */
    /* http_get()/http_download() calls that failed, by the cause of their last attempt */
    uint64_t failed_network;      /* no HTTP answer: refused, reset, timed out */
    uint64_t failed_auth;         /* 401, 403 */
    uint64_t failed_not_found;    /* 404 */
    uint64_t failed_rate_limited; /* 429 */
    uint64_t failed_server;       /* 5xx, 555 */
    uint64_t failed_other;        /* anything else: other statuses, the body cap */
};

/* Flags for http_get(). */
enum {
    HTTP_QUIET = 1 << 0,        /* the caller reports failures itself: log at debug level only */
    HTTP_QUIET_555 = 1 << 1,    /* likewise, for a final status 555 only */
    HTTP_QUIET_OUTAGE = 1 << 2, /* likewise, for an outage only (see http_is_outage) */
    HTTP_JSON = 1 << 3, /* the answer is JSON: a 2xx body that does not parse is transient */
    /* a failure says nothing of the API (a listing too big to answer in time): no outage */
    HTTP_NOT_OUTAGE = 1 << 4,
};

struct http_response {
    long status; /* final HTTP status, 0 when no response arrived */
    char *body;  /* NUL-terminated, owned; NULL after a transport failure */
    size_t len;
    char *etag;    /* the ETag header verbatim, or NULL */
    int transport; /* 1 when the failure was no HTTP answer at all */
    int paused;    /* 1 when no request was made: the API failed a moment ago */
    int spoilt;    /* 1 when the failure was a 2xx body that is not JSON (HTTP_JSON) */
    /* on failure: one sanitised line (API message or curl's; paused: the outage's cause) */
    char message[256];
    /* the wall-clock second the body was fetched or last confirmed by the API: set by the
     * stored answers (stored.h) for mutable answers, 0 elsewhere */
    int64_t fetched_at;
};

int http_global_init(void);
void http_global_cleanup(void);

/* 0, -EINVAL (token NULL or with control characters), -ENOMEM. */
int http_client_new(const struct http_options *opts, struct http_client **out);
void http_client_free(struct http_client *c);

/*
 * GET url. etag (or NULL) is sent as If-None-Match. Returns 0 for a 2xx
 * answer, and for 304 when etag was given (status tells which); otherwise
 * the errno of http_status_errno() for the final status, -EIO for a
 * transport failure, a body over max_body, a body that is not JSON
 * (HTTP_JSON: resp->spoilt) or a paused client (resp->paused), -ENOMEM.
 * resp is filled in either way and must be released with
 * http_response_release().
 */
int http_get(struct http_client *c, const char *url, const char *etag, size_t max_body,
             unsigned flags, struct http_response *resp);
void http_response_release(struct http_response *resp);

/*
 * GET url like http_get(), but a 2xx body is streamed into sink (api.h's
 * struct api_sink): each byte once and in order, across the attempts. An
 * error answer never reaches it; its first HTTP_MAX_ERROR_BODY bytes are in
 * resp->body for the message. There is no cap on the size and no limit on
 * the whole transfer's duration: an attempt is aborted when it moves less
 * than HTTP_LOW_SPEED_BYTES a second for what is left of timeout_ms, but at
 * least two seconds (so a silent server still fails in about timeout_ms),
 * and a body that was flowing renews the budget for a retry. A sink error
 * ends the call with that errno, unlogged and not retried; a cancel
 * (the sink's or the thread's) with -EINTR. *written gets the body's length
 * (0 on failure).
 */
int http_download(struct http_client *c, const char *url, const struct api_sink *sink,
                  unsigned flags, struct http_response *resp, uint64_t *written);

void http_get_stats(struct http_client *c, struct http_stats *out);

/*
 * Whether a failed call (rc, resp) says the API cannot be reached now: no
 * HTTP answer, 429 or a 5xx other than 555 (an answer about the URL: too
 * big or too deep) after retries, or a call paused by such a failure.
 */
int http_is_outage(int rc, const struct http_response *resp);
/* A failure's cause in a few words: "HTTP 429: Rate limit...", "Couldn't connect to server". */
void http_describe_failure(const struct http_response *resp, char *buf, size_t len);

/* The one status -> errno table: 0 for 2xx, -EACCES, -ENOENT, -EIO. */
int http_status_errno(long status);
/* 1 for the statuses worth repeating (429, 500, 502, 503, 504, 555). */
int http_status_retryable(long status);
/* The sleep before retry number attempt+1 (attempt counts from 0), given a random value. */
long http_backoff_ms(unsigned attempt, uint64_t random);

#endif

/*
 * http.c - the policy of the Bitbucket client's requests (see http.h):
 * which failures are worth another attempt and how long to wait before it,
 * the deadline of a whole call, the pause after an outage, the single table
 * that turns HTTP statuses into errno values, what a failure's message says
 * and how it is logged, and the counters of http_stats. Each attempt itself
 * is a transfer (transfer.h).
 *
 * Thread model: an http_client is shared by every thread; its counters and
 * its pause are under one mutex and the transfer_share guards curl's shared
 * data. Each call has a transfer of its own.
 */
#include "api/http.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "api/log.h"
#include "api/parse.h"
#include "api/transfer.h"
#include "api/url.h"

#define LOG_KEY_STATUS "http:status"
#define LOG_KEY_NEARLIMIT "http:nearlimit"

struct http_client {
    struct transfer_share *share;
    long timeout_ms;
    pthread_mutex_t stats_lock; /* also guards the pause */
    struct http_stats stats;
    /* attempts per minute of the last hour: minute_count[m % 60] counts minute m */
    int64_t minute_of[60];
    uint64_t minute_count[60];
    int64_t paused_until;   /* monotonic ms: calls fail at once until then (an outage) */
    char outage_cause[256]; /* what the last outage was, for the calls it pauses */
    int outage;             /* an outage since the last answer: the next answer forgets its line */
    int logged_by_url;      /* a failure was logged under a key of its URL: successes forget */
};

/* What one http_get() or http_download() call asks for. */
struct request {
    const char *url;
    const char *etag;            /* sent as If-None-Match, or NULL */
    size_t max_body;             /* in memory: the cap on the body */
    const struct api_sink *sink; /* a download's, or NULL: the body into memory */
    unsigned flags;
};

int http_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void http_global_cleanup(void)
{
    curl_global_cleanup();
}

/* ---- the policy: statuses, retries, backoff ---- */

int http_status_errno(long status)
{
    if (status >= 200 && status <= 299)
        return 0;
    switch (status) {
    case 401:
    case 403:
        return -EACCES;
    case 404:
    case 410:
        return -ENOENT;
    default:
        /* 400 (our request was wrong: a bug, logged with the API's
         * message), 429 and 5xx after retries, stray 1xx/3xx */
        return -EIO;
    }
}

int http_status_retryable(long status)
{
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504 ||
           status == 555;
}

int http_is_outage(int rc, const struct http_response *resp)
{
    return rc == -EIO && (resp->paused || resp->transport || resp->status == 429 ||
                          (resp->status >= 500 && resp->status != 555));
}

void http_describe_failure(const struct http_response *resp, char *buf, size_t len)
{
    const char *sep = resp->message[0] ? ": " : "";

    if (resp->paused || resp->status == 0)
        snprintf(buf, len, "%s", resp->message);
    else
        snprintf(buf, len, "HTTP %ld%s%s", resp->status, sep, resp->message);
}

/* The transport failures worth another attempt: the server may answer next time. */
static int curl_retryable(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

long http_backoff_ms(unsigned attempt, uint64_t random)
{
    long cap = HTTP_BACKOFF_CAP_MS;

    if (attempt < 16 && ((long)HTTP_BACKOFF_BASE_MS << attempt) < cap)
        cap = (long)HTTP_BACKOFF_BASE_MS << attempt;
    return (long)(random % (uint64_t)(cap + 1));
}

/* A per-thread xorshift64* generator: jitter needs spread, not secrecy. */
static uint64_t random_u64(void)
{
    static __thread uint64_t state;
    struct timespec ts;

    if (state == 0) {
        if (getrandom(&state, sizeof(state), GRND_NONBLOCK) != (ssize_t)sizeof(state)) {
            clock_gettime(CLOCK_MONOTONIC, &ts);
            state = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
        }
        if (state == 0)
            state = 0x9e3779b97f4a7c15ULL;
    }
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ULL;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms, or less when the transfer's caller gives up meanwhile (checked every tenth of a
 * second). */
static void sleep_ms(const struct transfer *t, long ms)
{
    while (ms > 0 && !transfer_cancelled(t)) {
        long slice = ms < 100 ? ms : 100;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = slice * 1000000L};

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        ms -= slice;
    }
}

/* Whether body parses as JSON; if not, why says what jansson found. */
static int parses(const struct buf *body, char *why, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(body->data ? body->data : "", body->len,
                              PARSE_JSON_FLAGS | JSON_DECODE_ANY, &jerr);

    if (!root) {
        log_sanitize(why, len, jerr.text);
        return 0;
    }
    json_decref(root);
    return 1;
}

/*
 * Whether the attempt's answer is a 2xx body that does not parse as JSON
 * although the call wants JSON (a body cut short with its length right):
 * then why says what jansson found. jansson reports some failed allocations
 * as syntax errors: a body is spoilt only when it fails twice.
 */
static int body_is_spoilt(const struct request *req, const struct transfer *t, char *why,
                          size_t len)
{
    if (!(req->flags & HTTP_JSON) || req->sink || t->result != CURLE_OK || t->status < 200 ||
        t->status > 299)
        return 0;
    return !parses(&t->body, why, len) && !parses(&t->body, why, len);
}

/*
 * The sleep before another attempt after attempt number attempt (from 0),
 * or -1 when there is none: the answer was good or cannot get better, no
 * attempt is left, or the next could not finish before *deadline. A body
 * that was flowing renews *deadline first: the server is alive. A spoilt
 * body is transient like a 5xx.
 */
static long retry_pause(const struct http_client *c, const struct transfer *t, int spoilt,
                        unsigned attempt, int64_t *deadline)
{
    long pause;

    if (t->cancelled || t->sink_error || (t->result == CURLE_WRITE_ERROR && t->body.err))
        return -1; /* given up on, the sink's own fault, the body cap: retrying cannot help */
    if (!spoilt &&
        !(t->result == CURLE_OK ? http_status_retryable(t->status) : curl_retryable(t->result)))
        return -1;
    if (attempt + 1 >= HTTP_MAX_ATTEMPTS)
        return -1;
    if (t->written > 0)
        *deadline = now_ms() + c->timeout_ms;
    if (t->retry_after > (curl_off_t)(c->timeout_ms / 1000 + 1))
        pause = c->timeout_ms + 1000; /* certainly past the deadline */
    else if (t->retry_after > 0)
        pause = (long)t->retry_after * 1000;
    else
        pause = http_backoff_ms(attempt, random_u64());
    return now_ms() + pause < *deadline ? pause : -1;
}

/* ---- the client and its counters ---- */

void http_client_free(struct http_client *c)
{
    if (!c)
        return;
    transfer_share_free(c->share);
    pthread_mutex_destroy(&c->stats_lock);
    free(c);
}

int http_client_new(const struct http_options *opts, struct http_client **out)
{
    struct http_client *c;
    int rc;

    *out = NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->stats_lock, NULL);
    c->stats.ratelimit_limit = -1;
    c->timeout_ms = opts->timeout_ms;
    rc = transfer_share_new(opts->token, opts->ca_file, opts->connect_timeout_ms, &c->share);
    if (rc < 0) {
        http_client_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void http_get_stats(struct http_client *c, struct http_stats *out)
{
    int64_t minute = (int64_t)time(NULL) / 60;

    pthread_mutex_lock(&c->stats_lock);
    *out = c->stats;
    out->requests_last_hour = 0;
    for (size_t i = 0; i < 60; i++)
        if (c->minute_of[i] > minute - 60 && c->minute_of[i] <= minute)
            out->requests_last_hour += c->minute_count[i];
    pthread_mutex_unlock(&c->stats_lock);
}

/* Counts an attempt and what its headers said of the rate limit (warned of once). */
static void count_attempt(struct http_client *c, unsigned attempt, const struct transfer *t)
{
    int64_t minute = (int64_t)time(NULL) / 60;
    size_t slot = (size_t)(minute % 60);
    int near = -1;

    pthread_mutex_lock(&c->stats_lock);
    c->stats.requests++;
    if (attempt > 0)
        c->stats.retries++;
    c->stats.bytes += t->body.len + t->written;
    if (c->minute_of[slot] != minute) {
        c->minute_of[slot] = minute;
        c->minute_count[slot] = 0;
    }
    c->minute_count[slot]++;
    if (t->ratelimit_limit >= 0)
        c->stats.ratelimit_limit = t->ratelimit_limit;
    if (t->ratelimit_near >= 0) {
        near = t->ratelimit_near;
        c->stats.ratelimit_near = near;
        if (near)
            c->stats.ratelimit_near_count++;
    }
    pthread_mutex_unlock(&c->stats_lock);
    if (near == 1)
        log_once(LOG_LEVEL_WARN, LOG_KEY_NEARLIMIT,
                 "the API rate limit is nearly used up (X-RateLimit-NearLimit: true, limit %ld "
                 "requests/hour)",
                 t->ratelimit_limit);
    else if (near == 0)
        log_forget(LOG_KEY_NEARLIMIT);
}

/* Counts a call that failed for good, by what its last attempt got. */
static void count_failure(struct http_client *c, const struct http_response *resp)
{
    pthread_mutex_lock(&c->stats_lock);
    c->stats.failures++;
    if (resp->transport)
        c->stats.failed_network++;
    else if (resp->status == 401 || resp->status == 403)
        c->stats.failed_auth++;
    else if (resp->status == 404)
        c->stats.failed_not_found++;
    else if (resp->status == 429)
        c->stats.failed_rate_limited++;
    else if (resp->status >= 500)
        c->stats.failed_server++;
    else
        c->stats.failed_other++;
    pthread_mutex_unlock(&c->stats_lock);
}

/* ---- the pause after an outage ---- */

/* -EIO, with resp saying so, when the client is paused by an outage; else 0. */
static int check_paused(struct http_client *c, struct http_response *resp)
{
    int64_t now = now_ms();

    pthread_mutex_lock(&c->stats_lock);
    if (now < c->paused_until) {
        resp->paused = 1;
        snprintf(resp->message, sizeof(resp->message), "%s", c->outage_cause);
    }
    pthread_mutex_unlock(&c->stats_lock);
    return resp->paused ? -EIO : 0;
}

/* Whether a call with flags that failed as rc, resp was an outage. */
static int call_is_outage(unsigned flags, int rc, const struct http_response *resp)
{
    return !(flags & HTTP_NOT_OUTAGE) && http_is_outage(rc, resp);
}

/*
 * After a call: an outage pauses the client and is remembered; any answer
 * that is not one (the API is there) ends the pause and the outage's line.
 */
static void note_reachability(struct http_client *c, unsigned flags, int rc,
                              const struct http_response *resp)
{
    char cause[sizeof(c->outage_cause)];

    if (call_is_outage(flags, rc, resp)) {
        http_describe_failure(resp, cause, sizeof(cause));
        pthread_mutex_lock(&c->stats_lock);
        c->paused_until = now_ms() + HTTP_OUTAGE_PAUSE_SECONDS * 1000;
        memcpy(c->outage_cause, cause, sizeof(cause));
        pthread_mutex_unlock(&c->stats_lock);
        __atomic_store_n(&c->outage, 1, __ATOMIC_RELAXED);
    } else if (resp->status != 0) {
        pthread_mutex_lock(&c->stats_lock);
        c->paused_until = 0;
        pthread_mutex_unlock(&c->stats_lock);
        if (__atomic_exchange_n(&c->outage, 0, __ATOMIC_RELAXED))
            log_forget(HTTP_LOG_KEY_OUTAGE);
    }
}

/* ---- outcomes: messages and log lines ---- */

/* The one-line reason of a failed HTTP answer: the API's message, else a short text body. */
static void status_message(struct http_response *resp, const char *content_type)
{
    size_t n;
    char line[256];

    if (parse_error_message(resp->body, resp->len, resp->message, sizeof(resp->message)) == 0)
        return;
    if (resp->body && resp->len > 0 && strncasecmp(content_type, "text/plain", 10) == 0) {
        n = strcspn(resp->body, "\r\n");
        if (n >= sizeof(line))
            n = sizeof(line) - 1;
        memcpy(line, resp->body, n);
        line[n] = '\0';
        log_sanitize(resp->message, sizeof(resp->message), line);
    }
}

/*
 * Failures that persist after retries are logged once: an outage (any URL)
 * under HTTP_LOG_KEY_OUTAGE, another transient failure (555, a spoilt body)
 * under a key per URL, so that neither a storm of requests nor an unrelated
 * success in between repeats the line. A success forgets its URL's key (the
 * outage's is forgotten by note_reachability).
 */
static void log_outcome(struct http_client *c, const char *url, unsigned flags, int rc,
                        const struct http_response *resp, unsigned attempts)
{
    char where[512], key[600], cause[320];
    const char *plural = attempts == 1 ? "" : "s";
    int outage = call_is_outage(flags, rc, resp);

    url_for_log(url, where, sizeof(where));
    snprintf(key, sizeof(key), "%s %s", LOG_KEY_STATUS, where);
    if (rc == 0) {
        if (__atomic_load_n(&c->logged_by_url, __ATOMIC_RELAXED))
            log_forget(key);
        return;
    }
    http_describe_failure(resp, cause, sizeof(cause));
    if ((flags & HTTP_QUIET) || ((flags & HTTP_QUIET_555) && resp->status == 555) ||
        ((flags & HTTP_QUIET_OUTAGE) && outage)) {
        log_debug("GET %s: %s (%u attempts)", where, cause, attempts);
        return;
    }
    if (outage) {
        log_once(LOG_LEVEL_WARN, HTTP_LOG_KEY_OUTAGE, "GET %s: %s (%u attempt%s)", where, cause,
                 attempts, plural);
    } else if (resp->spoilt || resp->transport || http_status_retryable(resp->status)) {
        __atomic_store_n(&c->logged_by_url, 1, __ATOMIC_RELAXED);
        log_once(LOG_LEVEL_WARN, key, "GET %s: %s (%u attempt%s)", where, cause, attempts, plural);
    } else if (rc == -ENOENT || rc == -EACCES) {
        log_debug("GET %s: %s", where, cause);
    } else {
        log_warn("GET %s: %s", where, cause);
    }
}

static void log_retry(const char *url, const struct transfer *t, int spoilt, unsigned attempt,
                      long pause)
{
    char where[512], cause[64];

    if (!log_debug_enabled())
        return;
    if (t->errbuf[0])
        log_debug("curl: %s", t->errbuf);
    url_for_log(url, where, sizeof(where));
    if (spoilt)
        snprintf(cause, sizeof(cause), "HTTP %ld with a body that is not JSON", t->status);
    else if (t->result == CURLE_OK)
        snprintf(cause, sizeof(cause), "HTTP %ld", t->status);
    else
        snprintf(cause, sizeof(cause), "%s", curl_easy_strerror(t->result));
    log_debug("GET %s: %s; attempt %u of %d in %ld ms", where, cause, attempt + 2,
              HTTP_MAX_ATTEMPTS, pause);
}

void http_response_release(struct http_response *resp)
{
    if (!resp)
        return;
    free(resp->body);
    free(resp->etag);
    memset(resp, 0, sizeof(*resp));
}

/* ---- one call ---- */

/*
 * What the last attempt's answer means for the call: 0 for a 2xx (and a 304
 * to a request with an ETag), else the errno of the status table, -EIO for
 * no answer, a body over the cap or a spoilt one (why: what was wrong),
 * -ENOMEM. resp gets the status, body, ETag and, on failure, a one-line
 * message.
 */
static int take_answer(struct transfer *t, const struct request *req, const char *spoilt,
                       struct http_response *resp)
{
    int rc;

    resp->status = t->status;
    if (t->result == CURLE_WRITE_ERROR && t->body.err) {
        snprintf(resp->message, sizeof(resp->message), "response larger than %zu bytes",
                 req->max_body);
        return t->body.err == -ENOMEM ? -ENOMEM : -EIO;
    }
    if (t->result != CURLE_OK) {
        resp->transport = 1;
        snprintf(resp->message, sizeof(resp->message), "%s", curl_easy_strerror(t->result));
        if (t->errbuf[0])
            log_debug("curl: %s", t->errbuf);
        return -EIO;
    }
    resp->body = buf_take(&t->body, &resp->len);
    if (!resp->body)
        return -ENOMEM;
    if (t->etag[0]) {
        resp->etag = strdup(t->etag);
        if (!resp->etag)
            return -ENOMEM;
    }
    if (spoilt) {
        resp->spoilt = 1;
        snprintf(resp->message, sizeof(resp->message), "a body that is not JSON (%s)", spoilt);
        return -EIO;
    }
    rc = t->status == 304 && req->etag ? 0 : http_status_errno(t->status);
    if (rc < 0)
        status_message(resp, t->content_type);
    return rc;
}

/*
 * The attempts of one call until one is final or the policy stops: each
 * counted, the pauses between them within the call's deadline; then the
 * outcome, logged and counted (a cancel or a sink's error is neither: the
 * API did nothing wrong). While the client is paused by an outage, nothing
 * is sent.
 */
static int perform(struct http_client *c, const struct request *req, struct http_response *resp,
                   uint64_t *written)
{
    int64_t deadline = now_ms() + c->timeout_ms;
    struct transfer t;
    unsigned attempt = 0;
    long pause;
    int rc, spoilt = 0;
    char why[160] = "";

    memset(resp, 0, sizeof(*resp));
    if (written)
        *written = 0;
    if (check_paused(c, resp) < 0) {
        char where[512];
        log_debug("GET %s: not sent, the API failed a moment ago (%s)",
                  url_for_log(req->url, where, sizeof(where)), resp->message);
        return -EIO;
    }
    rc = transfer_open(&t, c->share, req->url, req->etag, req->sink, req->max_body);
    if (rc < 0)
        goto out;
    for (;; attempt++) {
        transfer_attempt(&t, deadline - now_ms());
        count_attempt(c, attempt, &t);
        spoilt = body_is_spoilt(req, &t, why, sizeof(why));
        pause = retry_pause(c, &t, spoilt, attempt, &deadline);
        if (pause < 0)
            break;
        log_retry(req->url, &t, spoilt, attempt, pause);
        sleep_ms(&t, pause);
        if (transfer_cancelled(&t)) {
            t.cancelled = 1;
            break;
        }
    }
    if (t.cancelled || t.sink_error) {
        rc = t.cancelled ? -EINTR : t.sink_error;
        snprintf(resp->message, sizeof(resp->message), "%s",
                 t.cancelled ? "given up on" : strerror(-rc));
        goto out;
    }
    rc = take_answer(&t, req, spoilt ? why : NULL, resp);
    if (rc == 0 && req->sink && t.written != t.delivered) {
        /* a repeated attempt's body ended before what the sink already has */
        snprintf(resp->message, sizeof(resp->message), "the body changed between attempts");
        rc = -EIO;
    }
    note_reachability(c, req->flags, rc, resp);
    log_outcome(c, req->url, req->flags, rc, resp, attempt + 1);
    if (rc < 0)
        count_failure(c, resp);
    else if (written)
        *written = req->sink ? t.delivered : 0;
out:
    transfer_close(&t);
    return rc;
}

int http_get(struct http_client *c, const char *url, const char *etag, size_t max_body,
             unsigned flags, struct http_response *resp)
{
    const struct request req = {url, etag, max_body, NULL, flags};

    return perform(c, &req, resp, NULL);
}

int http_download(struct http_client *c, const char *url, const struct api_sink *sink,
                  unsigned flags, struct http_response *resp, uint64_t *written)
{
    const struct request req = {url, NULL, 0, sink, flags};

    if (!sink || !sink->write) {
        memset(resp, 0, sizeof(*resp));
        if (written)
            *written = 0;
        return -EINVAL;
    }
    return perform(c, &req, resp, written);
}

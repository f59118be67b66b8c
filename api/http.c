/*
 * http.c - the libcurl side of the Bitbucket client: one authenticated GET
 * with retries, backoff and a deadline, the response captured into a capped
 * buffer or streamed into a file, and the single table that turns HTTP
 * statuses into errno values.
 *
 * Thread model: the share handle is the only curl object used by several
 * threads, under its lock callbacks; easy handles live inside one
 * http_get() call. See http.h for the retry policy.
 */
#include "api/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "api/buf.h"
#include "api/log.h"
#include "api/parse.h"
#include "api/url.h"

#ifndef BBFS_VERSION
#define BBFS_VERSION "unknown"
#endif

#define LOG_KEY_TRANSPORT "http:transport"
#define LOG_KEY_STATUS "http:status"
#define LOG_KEY_NEARLIMIT "http:nearlimit"

struct http_client {
    char *token;
    char *ca_file;
    long timeout_ms;
    long connect_timeout_ms;
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    pthread_mutex_t stats_lock;
    struct http_stats stats;
    /* attempts per minute of the last hour: minute_count[m % 60] counts minute m */
    int64_t minute_of[60];
    uint64_t minute_count[60];
    int outage; /* a failure was logged with log_once: successes must forget keys */
};

/*
 * What one attempt captured from the response headers and body. In memory
 * mode (fd < 0) the whole body goes into body; in download mode only a 2xx
 * body goes to fd, and body keeps the start of an error answer for its
 * message.
 */
struct attempt {
    struct buf body;
    int fd;
    uint64_t written; /* bytes of a 2xx body written to fd */
    int write_errno;  /* the write() failure that aborted the transfer, or 0 */
    long status;      /* of the response being received, from its status line */
    char etag[256];
    char content_type[128];
    long ratelimit_limit; /* -1 when absent */
    int ratelimit_near;   /* -1 when absent */
};

int http_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void http_global_cleanup(void)
{
    curl_global_cleanup();
}

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

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void share_lock(CURL *handle, curl_lock_data data, curl_lock_access access, void *userp)
{
    struct http_client *c = userp;

    (void)handle;
    (void)access;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *handle, curl_lock_data data, void *userp)
{
    struct http_client *c = userp;

    (void)handle;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&c->share_locks[data]);
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void http_client_free(struct http_client *c)
{
    int i;

    if (!c)
        return;
    if (c->share)
        curl_share_cleanup(c->share);
    for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&c->share_locks[i]);
    pthread_mutex_destroy(&c->stats_lock);
    wipe_free(c->token);
    free(c->ca_file);
    free(c);
}

static int has_control_chars(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    }
    return 0;
}

int http_client_new(const struct http_options *opts, struct http_client **out)
{
    struct http_client *c;
    int i, rc = -ENOMEM;

    *out = NULL;
    if (!opts->token || has_control_chars(opts->token))
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&c->share_locks[i], NULL);
    pthread_mutex_init(&c->stats_lock, NULL);
    c->stats.ratelimit_limit = -1;
    c->timeout_ms = opts->timeout_ms;
    c->connect_timeout_ms = opts->connect_timeout_ms;
    c->token = strdup(opts->token);
    if (!c->token)
        goto out;
    if (opts->ca_file) {
        c->ca_file = strdup(opts->ca_file);
        if (!c->ca_file)
            goto out;
    }
    c->share = curl_share_init();
    if (!c->share)
        goto out;
    if (curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_USERDATA, c) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        rc = -EIO;
        goto out;
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    http_client_free(c);
    return rc;
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

/* All of p into fd despite short writes and signals; 0 or an errno value. */
static int write_all(int fd, const char *p, size_t len)
{
    ssize_t n;

    while (len > 0) {
        n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        if (n == 0)
            return EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct attempt *a = userp;
    size_t n = size * nmemb, room;
    int err;

    if (a->fd < 0)
        return buf_append(&a->body, data, n) == 0 ? n : 0; /* 0 aborts the transfer */
    if (a->status >= 200 && a->status <= 299) {
        err = write_all(a->fd, data, n);
        if (err) {
            a->write_errno = err;
            return 0;
        }
        a->written += n;
        return n;
    }
    /* an error answer never reaches fd: keep its start for the message, drop the rest */
    room = a->body.max - a->body.len;
    if (!a->body.err && room > 0)
        buf_append(&a->body, data, n < room ? n : room);
    return n;
}

/* Copies a header value (surrounding blanks and CRLF trimmed) if it fits and is clean. */
static void header_value(char *dst, size_t dstlen, const char *v, size_t len)
{
    while (len > 0 && (*v == ' ' || *v == '\t'))
        v++, len--;
    while (len > 0 &&
           (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    dst[0] = '\0';
    if (len >= dstlen)
        return;
    memcpy(dst, v, len);
    dst[len] = '\0';
    if (has_control_chars(dst))
        dst[0] = '\0';
}

/* The three-digit code of a status line ("HTTP/1.1 200 OK", "HTTP/2 404"), 0 if none. */
static long status_line_code(const char *line, size_t n)
{
    const char *sp = memchr(line, ' ', n);
    size_t i = sp ? (size_t)(sp - line) + 1 : n;
    long code = 0;
    int digits;

    for (digits = 0; i < n && digits < 3 && line[i] >= '0' && line[i] <= '9'; i++, digits++)
        code = code * 10 + (line[i] - '0');
    return digits == 3 ? code : 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct attempt *a = userp;
    size_t n = size * nmemb, name_len;
    const char *colon;
    char value[64];

    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* a new response (after a redirect or a 100): forget the previous one's headers */
        a->status = status_line_code(data, n);
        if (a->fd >= 0)
            buf_release(&a->body); /* keep only the last answer's error body */
        a->etag[0] = '\0';
        a->content_type[0] = '\0';
        a->ratelimit_limit = -1;
        a->ratelimit_near = -1;
        return n;
    }
    colon = memchr(data, ':', n);
    if (!colon)
        return n;
    name_len = (size_t)(colon - data);
    colon++;
#define IS_HEADER(name) (name_len == strlen(name) && strncasecmp(data, name, name_len) == 0)
    if (IS_HEADER("ETag")) {
        header_value(a->etag, sizeof(a->etag), colon, n - name_len - 1);
    } else if (IS_HEADER("Content-Type")) {
        header_value(a->content_type, sizeof(a->content_type), colon, n - name_len - 1);
    } else if (IS_HEADER("X-RateLimit-Limit")) {
        header_value(value, sizeof(value), colon, n - name_len - 1);
        a->ratelimit_limit = value[0] ? strtol(value, NULL, 10) : -1;
    } else if (IS_HEADER("X-RateLimit-NearLimit")) {
        header_value(value, sizeof(value), colon, n - name_len - 1);
        a->ratelimit_near = strcasecmp(value, "true") == 0;
    }
#undef IS_HEADER
    return n;
}

static void count_attempt(struct http_client *c, unsigned attempt, const struct attempt *a)
{
    int near = -1;

    int64_t minute = (int64_t)time(NULL) / 60;
    size_t slot = (size_t)(minute % 60);

    pthread_mutex_lock(&c->stats_lock);
    c->stats.requests++;
    if (attempt > 0)
        c->stats.retries++;
    c->stats.bytes += a->body.len + a->written;
    if (c->minute_of[slot] != minute) {
        c->minute_of[slot] = minute;
        c->minute_count[slot] = 0;
    }
    c->minute_count[slot]++;
    if (a->ratelimit_limit >= 0)
        c->stats.ratelimit_limit = a->ratelimit_limit;
    if (a->ratelimit_near >= 0) {
        near = a->ratelimit_near;
        c->stats.ratelimit_near = near;
        if (near)
            c->stats.ratelimit_near_count++;
    }
    pthread_mutex_unlock(&c->stats_lock);
    if (near == 1)
        log_once(LOG_LEVEL_WARN, LOG_KEY_NEARLIMIT,
                 "the API rate limit is nearly used up (X-RateLimit-NearLimit: true, limit %ld "
                 "requests/hour)",
                 a->ratelimit_limit);
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

/* Options common to every attempt; a failure here means a libcurl without them. */
static int setup_easy(struct http_client *c, CURL *easy, const char *url, struct attempt *a,
                      struct curl_slist *headers, char *errbuf)
{
    CURLcode cc = CURLE_OK;

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(easy, opt, val);                                                 \
    } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_SHARE, c->share);
    SET(CURLOPT_NOSIGNAL, 1L);
    if (c->token[0]) { /* "" means anonymous (e.g. offline mode has no token) */
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        SET(CURLOPT_XOAUTH2_BEARER, c->token);
    }
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, 5L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_ACCEPT_ENCODING, "gzip");
    SET(CURLOPT_USERAGENT, "bbfs/" BBFS_VERSION);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, a);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, a);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    /* HTTP/2 where TLS offers it (fewer handshakes, header compression), else 1.1. */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    if (headers)
        SET(CURLOPT_HTTPHEADER, headers);
    if (c->ca_file)
        SET(CURLOPT_CAINFO, c->ca_file);
#undef SET
    if (cc != CURLE_OK) {
        log_err("libcurl refused a required option: %s", curl_easy_strerror(cc));
        return -EIO;
    }
    return 0;
}

/* The one-line reason of a failed HTTP answer: the API's message, else a short text body. */
static void status_message(struct http_response *resp, const struct attempt *a, const char *body,
                           size_t len)
{
    size_t n;
    char line[256];

    if (parse_error_message(body, len, resp->message, sizeof(resp->message)) == 0)
        return;
    if (body && len > 0 && strncasecmp(a->content_type, "text/plain", 10) == 0) {
        n = strcspn(body, "\r\n");
        if (n >= sizeof(line))
            n = sizeof(line) - 1;
        memcpy(line, body, n);
        line[n] = '\0';
        log_sanitize(resp->message, sizeof(resp->message), line);
    }
}

/*
 * Failures that persist after retries are logged once: a dead network (any
 * URL) under one key, a failing status under a key per URL, so that neither
 * a storm of requests nor an unrelated success in between repeats the line.
 * A success forgets the keys that concern it.
 */
static void log_outcome(struct http_client *c, const char *url, unsigned flags, int rc,
                        const struct http_response *resp, unsigned attempts)
{
    char *shown = url_for_log(url);
    char where[512], key[600];
    const char *sep = resp->message[0] ? ": " : "";

    log_sanitize(where, sizeof(where), shown ? shown : "?");
    free(shown);
    snprintf(key, sizeof(key), "%s %s", LOG_KEY_STATUS, where);
    if (rc == 0) {
        if (__atomic_load_n(&c->outage, __ATOMIC_RELAXED)) {
            log_forget(LOG_KEY_TRANSPORT);
            log_forget(key);
        }
        return;
    }
    if ((flags & HTTP_QUIET) || ((flags & HTTP_QUIET_555) && resp->status == 555)) {
        log_debug("GET %s: HTTP %ld%s%s (%u attempts)", where, resp->status, sep, resp->message,
                  attempts);
        return;
    }
    if (resp->transport) {
        __atomic_store_n(&c->outage, 1, __ATOMIC_RELAXED);
        log_once(LOG_LEVEL_WARN, LOG_KEY_TRANSPORT, "GET %s: %s (%u attempt%s)", where,
                 resp->message, attempts, attempts == 1 ? "" : "s");
    } else if (http_status_retryable(resp->status)) {
        __atomic_store_n(&c->outage, 1, __ATOMIC_RELAXED);
        log_once(LOG_LEVEL_WARN, key, "GET %s: HTTP %ld%s%s (%u attempt%s)", where, resp->status,
                 sep, resp->message, attempts, attempts == 1 ? "" : "s");
    } else if (rc == -ENOENT || rc == -EACCES) {
        log_debug("GET %s: HTTP %ld%s%s", where, resp->status, sep, resp->message);
    } else if (resp->status == 0) {
        log_warn("GET %s: %s", where, resp->message);
    } else {
        log_warn("GET %s: HTTP %ld%s%s", where, resp->status, sep, resp->message);
    }
}

static void log_retry(const char *url, CURLcode cc, long status, unsigned attempt, long pause)
{
    char *shown = url_for_log(url);
    char where[512], cause[64];

    log_sanitize(where, sizeof(where), shown ? shown : "?");
    free(shown);
    if (cc == CURLE_OK)
        snprintf(cause, sizeof(cause), "HTTP %ld", status);
    else
        snprintf(cause, sizeof(cause), "%s", curl_easy_strerror(cc));
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

/* Rewinds fd and cuts it to nothing; 0 or an errno value. */
static int reset_fd(int fd)
{
    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
        return errno ? errno : EIO;
    return 0;
}

/*
 * The time limits of one attempt, remaining_ms being what is left of the
 * call's budget. A JSON answer is small: the whole attempt must fit. A
 * download may legitimately take longer than any fixed budget (a 200 MiB
 * file on a slow link), so it has no total limit; it is aborted instead
 * when it moves less than HTTP_LOW_SPEED_BYTES a second for the rest of
 * the budget, which also ends a server that sends nothing. curl counts
 * that time in whole seconds and measures the speed once a second, so a
 * one-second window could end a healthy transfer whose first bytes came
 * late in its first second: the window is at least two seconds.
 */
static void set_timeouts(struct http_client *c, CURL *easy, int download, int64_t remaining_ms)
{
    long connect =
        c->connect_timeout_ms < remaining_ms ? c->connect_timeout_ms : (long)remaining_ms;

    if (download) {
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 0L);
        curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, (long)HTTP_LOW_SPEED_BYTES);
        curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME,
                         remaining_ms > 2000 ? (long)((remaining_ms + 999) / 1000) : 2L);
    } else {
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)remaining_ms);
    }
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, connect);
}

/* A download that failed on our side (the disk, not the network): logged whatever the flags. */
static void log_write_error(const char *url, int err)
{
    char *shown = url_for_log(url);
    char where[512];

    log_sanitize(where, sizeof(where), shown ? shown : "?");
    free(shown);
    log_warn("cannot store the answer of GET %s: %s", where, strerror(err));
}

/*
 * The request loop shared by http_get() (fd < 0: the body into memory, at
 * most max_body bytes) and http_download() (a 2xx body into fd).
 */
static int perform(struct http_client *c, const char *url, const char *etag, size_t max_body,
                   int fd, unsigned flags, struct http_response *resp, uint64_t *written)
{
    char errbuf[CURL_ERROR_SIZE] = "", *header = NULL;
    struct curl_slist *headers = NULL, *grown;
    struct attempt a;
    CURLcode cc = CURLE_OK;
    curl_off_t retry_after;
    int64_t deadline = now_ms() + c->timeout_ms, remaining;
    unsigned attempt = 0;
    long status = 0, pause;
    struct buf hb;
    CURL *easy = NULL;
    int rc, fd_err = 0;

    memset(resp, 0, sizeof(*resp));
    memset(&a, 0, sizeof(a));
    a.fd = fd;
    if (written)
        *written = 0;
    if (etag) {
        if (has_control_chars(etag))
            return -EINVAL;
        buf_init(&hb, 4096);
        buf_appends(&hb, "If-None-Match: ");
        buf_appends(&hb, etag);
        header = buf_take(&hb, NULL);
        if (!header)
            return hb.err == -ENOMEM ? -ENOMEM : -EINVAL;
        grown = curl_slist_append(headers, header);
        if (!grown) {
            rc = -ENOMEM;
            goto out;
        }
        headers = grown;
    }
    easy = curl_easy_init();
    if (!easy) {
        rc = -ENOMEM;
        goto out;
    }
    rc = setup_easy(c, easy, url, &a, headers, errbuf);
    if (rc < 0)
        goto out;
    for (attempt = 0;; attempt++) {
        remaining = deadline - now_ms();
        if (remaining < 1)
            remaining = 1;
        buf_release(&a.body);
        buf_init(&a.body, fd < 0 ? max_body : HTTP_MAX_ERROR_BODY);
        a.written = 0;
        a.write_errno = 0;
        a.status = 0;
        a.etag[0] = a.content_type[0] = '\0';
        a.ratelimit_limit = a.ratelimit_near = -1;
        errbuf[0] = '\0';
        status = 0;
        if (fd >= 0) {
            fd_err = reset_fd(fd); /* a retry starts from an empty file */
            if (fd_err)
                break;
        }
        set_timeouts(c, easy, fd >= 0, remaining);
        cc = curl_easy_perform(easy);
        count_attempt(c, attempt, &a);
        if (cc == CURLE_OK)
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        if (cc == CURLE_WRITE_ERROR && (a.body.err || a.write_errno))
            break; /* the body cap, memory or the disk: retrying cannot help */
        if (!(cc == CURLE_OK ? http_status_retryable(status) : curl_retryable(cc)))
            break;
        if (attempt + 1 >= HTTP_MAX_ATTEMPTS)
            break;
        if (a.written > 0)
            deadline = now_ms() + c->timeout_ms; /* the body was flowing: a fresh budget */
        retry_after = 0;
        if (cc == CURLE_OK)
            curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &retry_after);
        if (retry_after > 0)
            pause = retry_after > (curl_off_t)(c->timeout_ms / 1000 + 1)
                        ? c->timeout_ms + 1000 /* certainly past the deadline */
                        : (long)retry_after * 1000;
        else
            pause = http_backoff_ms(attempt, random_u64());
        if (now_ms() + pause >= deadline)
            break; /* the retry could not finish in time */
        if (log_debug_enabled() && errbuf[0])
            log_debug("curl: %s", errbuf);
        if (log_debug_enabled())
            log_retry(url, cc, status, attempt, pause);
        sleep_ms(pause);
    }

    resp->status = status;
    if (fd_err && attempt == 0 && (fd_err == EINVAL || fd_err == ESPIPE || fd_err == EBADF)) {
        rc = -EINVAL; /* not a seekable file open for writing: the caller's mistake */
        snprintf(resp->message, sizeof(resp->message), "cannot truncate the file: %s",
                 strerror(fd_err));
        goto out;
    }
    if (fd_err || (cc == CURLE_WRITE_ERROR && a.write_errno)) {
        if (!fd_err)
            fd_err = a.write_errno;
        rc = -EIO;
        resp->status = 0;
        snprintf(resp->message, sizeof(resp->message), "cannot write the answer: %s",
                 strerror(fd_err));
        log_write_error(url, fd_err);
        count_failure(c, resp);
        goto out;
    }
    if (cc == CURLE_WRITE_ERROR && a.body.err) {
        rc = a.body.err == -ENOMEM ? -ENOMEM : -EIO;
        snprintf(resp->message, sizeof(resp->message), "response larger than %zu bytes", max_body);
        goto done;
    }
    if (cc != CURLE_OK) {
        rc = -EIO;
        resp->transport = 1;
        snprintf(resp->message, sizeof(resp->message), "%s", curl_easy_strerror(cc));
        if (errbuf[0])
            log_debug("curl: %s", errbuf);
        goto done;
    }
    resp->body = buf_take(&a.body, &resp->len);
    if (!resp->body) {
        rc = -ENOMEM;
        goto done;
    }
    if (a.etag[0]) {
        resp->etag = strdup(a.etag);
        if (!resp->etag) {
            rc = -ENOMEM;
            goto done;
        }
    }
    if (status == 304 && etag)
        rc = 0;
    else
        rc = http_status_errno(status);
    if (rc < 0)
        status_message(resp, &a, resp->body, resp->len);
    if (rc == 0 && written)
        *written = a.written;
done:
    log_outcome(c, url, flags, rc, resp, attempt + 1);
    if (rc < 0)
        count_failure(c, resp);
out:
    if (rc < 0 && fd >= 0)
        reset_fd(fd); /* a failed download leaves no partial body behind */
    if (easy)
        curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    free(header);
    buf_release(&a.body);
    return rc;
}

int http_get(struct http_client *c, const char *url, const char *etag, size_t max_body,
             unsigned flags, struct http_response *resp)
{
    return perform(c, url, etag, max_body, -1, flags, resp, NULL);
}

int http_download(struct http_client *c, const char *url, int fd, unsigned flags,
                  struct http_response *resp, uint64_t *written)
{
    if (fd < 0) {
        memset(resp, 0, sizeof(*resp));
        if (written)
            *written = 0;
        return -EINVAL;
    }
    return perform(c, url, NULL, 0, fd, flags, resp, written);
}

/*
 * gitcurl.c - the libcurl side of the git client (gitcurl.h): one request
 * with Basic x-token-auth credentials, its answer handed to a parser as
 * curl receives it, and the counters.
 *
 * Thread model as in http.c: a share handle (curlshare.h: connections, DNS,
 * TLS sessions, the options every easy handle carries) is the only curl
 * object several threads touch; each request has an easy handle of its own.
 */
#include "api/gitcurl.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/curlshare.h"
#include "api/http.h"
#include "api/log.h"
#include "api/url.h"

#ifndef BBFS_VERSION
#define BBFS_VERSION "unknown"
#endif

#define GIT_USER "x-token-auth"
/* Servers tell git clients by a "git/" user agent (libgit2 does the same). */
#define GIT_USER_AGENT "git/2.0 (bbfs/" BBFS_VERSION ")"
#define RESULT_TYPE "application/x-git-upload-pack-result"

struct git_client {
    char *base; /* git_url without a trailing '/' */
    char *token;
    char *ca_file;
    long timeout_ms;
    long connect_timeout_ms;
    struct curlshare curl;
    pthread_mutex_t stats_lock;
    struct git_stats stats;
};

const char *git_cause_name(enum git_cause cause)
{
    static const char *const names[GIT_CAUSE_COUNT] = {
        "none",   "unreachable", "auth",      "not_found", "refused",
        "broken", "too_big",     "cancelled", "other",
    };

    return (unsigned)cause < GIT_CAUSE_COUNT ? names[cause] : "other";
}

void git_set_error(struct git_error *err, enum git_cause cause, long status, const char *fmt, ...)
{
    char raw[sizeof(err->message)];
    va_list ap;

    err->cause = cause;
    err->status = status;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    log_sanitize(err->message, sizeof(err->message), raw);
}

const char *gitcurl_base(const struct git_client *c)
{
    return c->base;
}

void gitcurl_count_fetch(struct git_client *c, uint64_t pack_bytes)
{
    pthread_mutex_lock(&c->stats_lock);
    c->stats.fetches++;
    c->stats.pack_bytes += pack_bytes;
    pthread_mutex_unlock(&c->stats_lock);
}

void gitcurl_count_failure(struct git_client *c, enum git_cause cause)
{
    pthread_mutex_lock(&c->stats_lock);
    c->stats.failures[(unsigned)cause < GIT_CAUSE_COUNT ? cause : GIT_CAUSE_OTHER]++;
    pthread_mutex_unlock(&c->stats_lock);
}

void git_get_stats(struct git_client *c, struct git_stats *out)
{
    pthread_mutex_lock(&c->stats_lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->stats_lock);
}

/* ---- the client ---- */

void git_client_free(struct git_client *c)
{
    if (!c)
        return;
    curlshare_release(&c->curl);
    pthread_mutex_destroy(&c->stats_lock);
    if (c->token) {
        explicit_bzero(c->token, strlen(c->token));
        free(c->token);
    }
    free(c->ca_file);
    free(c->base);
    free(c);
}

int git_client_new(const struct git_config *cfg, struct git_client **out, char *errbuf,
                   size_t errlen)
{
    struct git_client *c;
    int rc;

    *out = NULL;
    if (!cfg->token || !*cfg->token || curlshare_has_control_chars(cfg->token)) {
        log_format_line(errbuf, errlen, "no usable token for git");
        return -EINVAL;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->stats_lock, NULL);
    rc = curlshare_init(&c->curl);
    if (rc < 0)
        goto out;
    c->timeout_ms = cfg->timeout_ms;
    c->connect_timeout_ms = cfg->connect_timeout_ms;
    rc = url_check_named_base("git", cfg->base_url, &c->base, errbuf, errlen);
    if (rc < 0)
        goto out;
    rc = -ENOMEM;
    c->token = strdup(cfg->token);
    if (!c->token || (cfg->ca_file && !(c->ca_file = strdup(cfg->ca_file))))
        goto out;
    *out = c;
    c = NULL;
    rc = 0;
out:
    if (rc == -ENOMEM)
        log_format_line(errbuf, errlen, "out of memory");
    git_client_free(c);
    return rc;
}

/* ---- one request ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct git_exchange *ex = userp;
    size_t n = size * nmemb, room;
    int rc;

    if (ex->status < 200 || ex->status > 299) {
        /* an error answer: its start, for the message */
        room = sizeof(ex->error_body) - 1 - ex->error_len;
        memcpy(ex->error_body + ex->error_len, data, n < room ? n : room);
        ex->error_len += n < room ? n : room;
        ex->error_body[ex->error_len] = '\0';
        return n;
    }
    ex->body_bytes += n;
    if (ex->max_body && ex->body_bytes > ex->max_body) {
        ex->feed_err = -EFBIG;
        return 0;
    }
    rc = ex->feed(ex->feed_ctx, data, n);
    if (rc < 0) {
        ex->feed_err = rc;
        return 0; /* aborts the transfer */
    }
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct git_exchange *ex = userp;
    size_t n = size * nmemb, vlen;
    const char *v;

    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* a new response's status line ("HTTP/1.1 200 OK", "HTTP/2 404"): three digits */
        v = memchr(data, ' ', n);
        ex->status = 0;
        for (vlen = v ? (size_t)(v - data) + 1 : n; vlen < n && ex->status < 100; vlen++) {
            if (data[vlen] < '0' || data[vlen] > '9') {
                ex->status = 0;
                break;
            }
            ex->status = ex->status * 10 + (data[vlen] - '0');
        }
        ex->content_type[0] = '\0';
        return n;
    }
    if (n > 13 && strncasecmp(data, "Content-Type:", 13) == 0) {
        v = data + 13;
        vlen = n - 13;
        while (vlen > 0 && (*v == ' ' || *v == '\t'))
            v++, vlen--;
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
            vlen--;
        if (vlen < sizeof(ex->content_type)) {
            memcpy(ex->content_type, v, vlen);
            ex->content_type[vlen] = '\0';
        }
    }
    return n;
}

static int on_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const struct git_exchange *ex = userp;

    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return ex->cancel && __atomic_load_n(ex->cancel, __ATOMIC_RELAXED) ? 1 : 0;
}

/*
 * The options of a request: body NULL for a GET, else a POST of body; a
 * pack (GITCURL_STREAM) has the low-speed limit instead of a total deadline.
 */
static CURLcode setup(struct git_client *c, CURL *easy, const char *url, const struct buf *body,
                      struct curl_slist *headers, unsigned kind, struct git_exchange *ex,
                      char *errbuf)
{
    long low_speed_time = c->timeout_ms > 2000 ? (c->timeout_ms + 999) / 1000 : 2;
    CURLcode cc = CURLE_OK;

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(easy, opt, val);                                                 \
    } while (0)
    cc = curlshare_setup_easy(easy, &c->curl, c->ca_file);
    SET(CURLOPT_URL, url);
    SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    SET(CURLOPT_USERNAME, GIT_USER);
    SET(CURLOPT_PASSWORD, c->token);
    SET(CURLOPT_FOLLOWLOCATION, 0L); /* redirects are checked and followed by git.c */
    SET(CURLOPT_USERAGENT, GIT_USER_AGENT);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, ex);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, ex);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, ex);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_CONNECTTIMEOUT_MS,
        c->connect_timeout_ms < c->timeout_ms ? c->connect_timeout_ms : c->timeout_ms);
    if (kind & GITCURL_STREAM) {
        SET(CURLOPT_LOW_SPEED_LIMIT, (long)HTTP_LOW_SPEED_BYTES);
        SET(CURLOPT_LOW_SPEED_TIME, low_speed_time);
    } else {
        SET(CURLOPT_TIMEOUT_MS, c->timeout_ms);
        SET(CURLOPT_ACCEPT_ENCODING, "gzip");
    }
    if (body) {
        SET(CURLOPT_POSTFIELDS, body->data);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    }
#undef SET
    return cc;
}

/* The request's headers: 0 or -ENOMEM. */
static int build_headers(const struct buf *body, unsigned kind, struct curl_slist **out)
{
    static const char *const get_headers[] = {"Pragma: no-cache", NULL};
    static const char *const post_headers[] = {
        "Content-Type: application/x-git-upload-pack-request", "Accept: " RESULT_TYPE,
        "Expect:", NULL};
    const char *const *list = body ? post_headers : get_headers;
    struct curl_slist *h;

    *out = NULL;
    for (; *list; list++) {
        h = curl_slist_append(*out, *list);
        if (!h)
            return -ENOMEM;
        *out = h;
    }
    if (kind & GITCURL_V2) {
        h = curl_slist_append(*out, "Git-Protocol: version=2");
        if (!h)
            return -ENOMEM;
        *out = h;
    }
    return 0;
}

/* What a finished transfer (cc) amounts to; see gitcurl_request(). */
static int outcome(CURL *easy, CURLcode cc, const char *errbuf, const char *token,
                   struct git_exchange *ex, char **redirect, struct git_error *err)
{
    char *location = NULL;
    int answered = ex->status > 0; /* a status line arrived: the server is there */

    if (cc == CURLE_ABORTED_BY_CALLBACK) {
        git_set_error(err, GIT_CAUSE_CANCELLED, ex->status, "cancelled");
        return -EINTR;
    }
    if (cc == CURLE_WRITE_ERROR && ex->feed_err)
        return ex->feed_err; /* the caller knows why: it fills err */
    if (cc != CURLE_OK) {
        git_set_error(err, answered ? GIT_CAUSE_BROKEN : GIT_CAUSE_UNREACHABLE, ex->status, "%s",
                      errbuf[0] ? errbuf : curl_easy_strerror(cc));
        return cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : answered ? -EPROTO : -EIO;
    }
    if (ex->status >= 200 && ex->status <= 299)
        return 0;
    if (ex->status >= 300 && ex->status <= 399 &&
        curl_easy_getinfo(easy, CURLINFO_REDIRECT_URL, &location) == CURLE_OK && location) {
        *redirect = strdup(location);
        if (!*redirect) {
            git_set_error(err, GIT_CAUSE_OTHER, 0, "out of memory");
            return -ENOMEM;
        }
    }
    ex->error_body[strcspn(ex->error_body, "\r\n")] = '\0';
    if (strstr(ex->error_body, token))
        ex->error_body[0] = '\0'; /* a server that echoes the token: never into a log line */
    git_set_error(err,
                  ex->status == 401 || ex->status == 403 ? GIT_CAUSE_AUTH
                  : ex->status == 404                    ? GIT_CAUSE_NOT_FOUND
                                                         : GIT_CAUSE_OTHER,
                  ex->status, "HTTP %ld%s%s", ex->status, ex->error_body[0] ? ": " : "",
                  ex->error_body);
    return http_status_errno(ex->status);
}

int gitcurl_request(struct git_client *c, const char *url, const struct buf *body, unsigned kind,
                    struct git_exchange *ex, char **redirect, struct git_error *err)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = NULL;
    CURL *easy = NULL;
    CURLcode cc;
    int rc;

    *redirect = NULL;
    rc = build_headers(body, kind, &headers);
    if (rc == 0 && !(easy = curl_easy_init()))
        rc = -ENOMEM;
    if (rc < 0) {
        git_set_error(err, GIT_CAUSE_OTHER, 0, "out of memory");
        goto out;
    }
    if (setup(c, easy, url, body, headers, kind, ex, errbuf) != CURLE_OK) {
        git_set_error(err, GIT_CAUSE_OTHER, 0, "libcurl refused an option");
        rc = -EIO;
        goto out;
    }
    cc = curl_easy_perform(easy);
    pthread_mutex_lock(&c->stats_lock);
    c->stats.requests++;
    c->stats.bytes += ex->body_bytes + ex->error_len;
    pthread_mutex_unlock(&c->stats_lock);
    if (cc != CURLE_OK && errbuf[0])
        log_debug("git: curl: %s", errbuf);
    rc = outcome(easy, cc, errbuf, c->token, ex, redirect, err);
out:
    if (easy)
        curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    return rc;
}

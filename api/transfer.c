/*
 * transfer.c - the libcurl mechanics of transfer.h: the share (curlshare.h,
 * as git's requests have it too), an easy handle's options, the callbacks that capture a
 * response's headers and body (into a capped buffer or a file), and the
 * time limits of one attempt, and the check that abandons it when its
 * caller gave up.
 */
#include "api/transfer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/curlshare.h"
#include "api/http.h"
#include "api/log.h"
#include "api/waiting.h"

/* The receive buffer of a download: the sink gets pieces of up to this many bytes. */
#define DOWNLOAD_BUFFER_SIZE (256L << 10)

#ifndef BBFS_VERSION
#define BBFS_VERSION "unknown"
#endif

struct transfer_share {
    char *token;
    char *ca_file;
    long connect_timeout_ms;
    struct curlshare curl;
};

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void transfer_share_free(struct transfer_share *s)
{
    if (!s)
        return;
    curlshare_release(&s->curl);
    wipe_free(s->token);
    free(s->ca_file);
    free(s);
}

int transfer_share_new(const char *token, const char *ca_file, long connect_timeout_ms,
                       struct transfer_share **out)
{
    struct transfer_share *s;
    int rc;

    *out = NULL;
    if (!token || curlshare_has_control_chars(token))
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    rc = curlshare_init(&s->curl);
    if (rc < 0)
        goto out;
    rc = -ENOMEM;
    s->connect_timeout_ms = connect_timeout_ms;
    s->token = strdup(token);
    if (!s->token)
        goto out;
    if (ca_file) {
        s->ca_file = strdup(ca_file);
        if (!s->ca_file)
            goto out;
    }
    *out = s;
    s = NULL;
    rc = 0;
out:
    transfer_share_free(s);
    return rc;
}

/* A download's 2xx bytes to the sink: those an earlier attempt delivered are skipped. */
static size_t deliver(struct transfer *t, const char *data, size_t n)
{
    uint64_t from = t->written;
    size_t skip;
    int rc;

    t->written += n;
    if (t->written <= t->delivered)
        return n;
    skip = from < t->delivered ? (size_t)(t->delivered - from) : 0;
    rc = t->sink->write(t->sink->ctx, data + skip, n - skip);
    if (rc < 0) {
        t->sink_error = rc;
        return 0; /* aborts the transfer */
    }
    t->delivered = t->written;
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct transfer *t = userp;
    size_t n = size * nmemb, room;

    if (!t->sink)
        return buf_append(&t->body, data, n) == 0 ? n : 0; /* 0 aborts the transfer */
    if (t->receiving >= 200 && t->receiving <= 299)
        return deliver(t, data, n);
    /* an error answer never reaches the sink: keep its start for the message, drop the rest */
    room = t->body.max - t->body.len;
    if (!t->body.err && room > 0)
        buf_append(&t->body, data, n < room ? n : room);
    return n;
}

int transfer_cancelled(const struct transfer *t)
{
    return (t->sink && t->sink->cancelled && t->sink->cancelled(t->sink->ctx)) ||
           waiting_cancelled();
}

/* curl calls it often, also while nothing arrives: the place to notice a cancel. */
static int on_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct transfer *t = userp;

    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    if (!transfer_cancelled(t))
        return 0;
    t->cancelled = 1;
    return 1; /* aborts the transfer */
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
    if (curlshare_has_control_chars(dst))
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

/* Forgets what an earlier response of this attempt said (before a redirect or a 100). */
static void start_response(struct transfer *t, long status)
{
    t->receiving = status;
    if (t->sink)
        buf_release(&t->body); /* keep only the last answer's error body */
    t->etag[0] = '\0';
    t->content_type[0] = '\0';
    t->ratelimit_limit = -1;
    t->ratelimit_near = -1;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct transfer *t = userp;
    size_t n = size * nmemb, name_len;
    const char *colon;
    char value[64];

    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        start_response(t, status_line_code(data, n));
        return n;
    }
    colon = memchr(data, ':', n);
    if (!colon)
        return n;
    name_len = (size_t)(colon - data);
    colon++;
#define IS_HEADER(name) (name_len == strlen(name) && strncasecmp(data, name, name_len) == 0)
    if (IS_HEADER("ETag")) {
        header_value(t->etag, sizeof(t->etag), colon, n - name_len - 1);
    } else if (IS_HEADER("Content-Type")) {
        header_value(t->content_type, sizeof(t->content_type), colon, n - name_len - 1);
    } else if (IS_HEADER("X-RateLimit-Limit")) {
        header_value(value, sizeof(value), colon, n - name_len - 1);
        t->ratelimit_limit = value[0] ? strtol(value, NULL, 10) : -1;
    } else if (IS_HEADER("X-RateLimit-NearLimit")) {
        header_value(value, sizeof(value), colon, n - name_len - 1);
        t->ratelimit_near = strcasecmp(value, "true") == 0;
    }
#undef IS_HEADER
    return n;
}

/* Options common to every attempt; a failure here means a libcurl without them. */
static int setup_easy(struct transfer *t, struct transfer_share *s, const char *url)
{
    CURLcode cc = CURLE_OK;
    CURL *easy = t->easy;

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = curl_easy_setopt(easy, opt, val);                                                 \
    } while (0)
    cc = curlshare_setup_easy(easy, &s->curl, s->ca_file);
    SET(CURLOPT_URL, url);
    if (s->token[0]) { /* "" means anonymous (e.g. offline mode has no token) */
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        SET(CURLOPT_XOAUTH2_BEARER, s->token);
    }
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, 5L);
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_ACCEPT_ENCODING, "gzip");
    SET(CURLOPT_USERAGENT, "bbfs/" BBFS_VERSION);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, t);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, t);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_ERRORBUFFER, t->errbuf);
    if (t->headers)
        SET(CURLOPT_HTTPHEADER, t->headers);
    if (t->sink) /* fewer, bigger pieces for the sink: a download is bulk */
        SET(CURLOPT_BUFFERSIZE, DOWNLOAD_BUFFER_SIZE);
#undef SET
    if (cc != CURLE_OK) {
        log_err("libcurl refused a required option: %s", curl_easy_strerror(cc));
        return -EIO;
    }
    return 0;
}

/* Adds "If-None-Match: etag" to t's request headers. */
static int add_if_none_match(struct transfer *t, const char *etag)
{
    struct curl_slist *grown;
    struct buf line;
    char *header;

    if (curlshare_has_control_chars(etag))
        return -EINVAL;
    buf_init(&line, 4096);
    buf_appends(&line, "If-None-Match: ");
    buf_appends(&line, etag);
    header = buf_take(&line, NULL);
    if (!header)
        return line.err == -ENOMEM ? -ENOMEM : -EINVAL;
    grown = curl_slist_append(t->headers, header); /* copies header */
    free(header);
    if (!grown)
        return -ENOMEM;
    t->headers = grown;
    return 0;
}

int transfer_open(struct transfer *t, struct transfer_share *share, const char *url,
                  const char *etag, const struct api_sink *sink, size_t max_body)
{
    int rc;

    memset(t, 0, sizeof(*t));
    t->sink = sink;
    t->max_body = max_body;
    t->connect_timeout_ms = share->connect_timeout_ms;
    if (etag) {
        rc = add_if_none_match(t, etag);
        if (rc < 0)
            return rc;
    }
    t->easy = curl_easy_init();
    if (!t->easy)
        return -ENOMEM;
    return setup_easy(t, share, url);
}

void transfer_close(struct transfer *t)
{
    if (t->easy)
        curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    buf_release(&t->body);
    memset(t, 0, sizeof(*t));
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
 * late in its first second: the window is at least two seconds. The
 * connection must be made within the budget too.
 */
static void set_timeouts(struct transfer *t, int64_t remaining_ms)
{
    long connect =
        t->connect_timeout_ms < remaining_ms ? t->connect_timeout_ms : (long)remaining_ms;

    if (t->sink) {
        curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, 0L);
        curl_easy_setopt(t->easy, CURLOPT_LOW_SPEED_LIMIT, (long)HTTP_LOW_SPEED_BYTES);
        curl_easy_setopt(t->easy, CURLOPT_LOW_SPEED_TIME,
                         remaining_ms > 2000 ? (long)((remaining_ms + 999) / 1000) : 2L);
    } else {
        curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long)remaining_ms);
    }
    curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, connect);
}

/* Forgets everything the previous attempt got. */
static void start_attempt(struct transfer *t)
{
    buf_release(&t->body);
    buf_init(&t->body, t->sink ? HTTP_MAX_ERROR_BODY : t->max_body);
    t->errbuf[0] = '\0';
    t->result = CURLE_OK;
    t->status = 0;
    t->retry_after = 0;
    t->written = 0;
    t->sink_error = 0;
    t->cancelled = 0;
    start_response(t, 0);
}

void transfer_attempt(struct transfer *t, int64_t remaining_ms)
{
    start_attempt(t);
    if (remaining_ms < 1)
        remaining_ms = 1;
    set_timeouts(t, remaining_ms);
    t->result = curl_easy_perform(t->easy);
    if (t->result == CURLE_OK) {
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
        curl_easy_getinfo(t->easy, CURLINFO_RETRY_AFTER, &t->retry_after);
    }
}

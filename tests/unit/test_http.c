/*
 * test_http.c - api/http.c against a canned HTTP server on 127.0.0.1:
 * the status -> errno table, retries on 429/5xx/empty replies with backoff,
 * Retry-After, the whole-call deadline, the body cap, the bearer token (sent
 * to the API, never to another port after a redirect), ETag/If-None-Match,
 * the rate-limit counters, and downloads (no total time limit, error bodies
 * kept out of the file). Every server is bounded in time and killed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api.h"
#include "api/http.h"
#include "api/log.h"
#include "canned_server.h"
#include "log_capture.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "tok-123.secret"
#define ERR_JSON(msg) "{\"type\":\"error\",\"error\":{\"message\":\"" msg "\"}}"

/* Up to 16 responses built per test, freed by teardown. */
static char *built[16];
static size_t nbuilt;

static const char *reply(const char *status, const char *headers, const char *body)
{
    size_t len = strlen(status) + strlen(headers) + strlen(body) + 128;
    char *r = malloc(len);

    assert_non_null(r);
    snprintf(r, len, "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n%s", status,
             strlen(body), headers, body);
    assert_true(nbuilt < sizeof(built) / sizeof(built[0]));
    built[nbuilt++] = r;
    return r;
}

#define JSON_HDR "Content-Type: application/json\r\n"

static struct http_client *new_client(long timeout_ms)
{
    struct http_options o = {
        .token = TOKEN, .ca_file = NULL, .timeout_ms = timeout_ms, .connect_timeout_ms = 2000};
    struct http_client *c = NULL;

    assert_int_equal(http_client_new(&o, &c), 0);
    return c;
}

static char *url_of(const struct canned_server *s, const char *path)
{
    char *u = malloc(256);

    assert_non_null(u);
    snprintf(u, 256, "http://127.0.0.1:%d%s", s->port, path);
    return u;
}

static struct canned_server srv, srv2;

static int setup(void **state)
{
    (void)state;
    server_init(&srv);
    server_init(&srv2);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    server_release(&srv);
    server_release(&srv2);
    for (size_t i = 0; i < nbuilt; i++)
        free(built[i]);
    nbuilt = 0;
    return 0;
}

/* One GET against srv with the given script; the server is stopped afterwards. */
static int run_get(const struct canned *script, size_t n, long timeout_ms, const char *etag,
                   size_t max_body, struct http_response *resp, struct http_stats *stats)
{
    struct http_client *c;
    char *url;
    int rc;

    assert_int_equal(server_start(&srv, script, n), 0);
    c = new_client(timeout_ms);
    url = url_of(&srv, "/2.0/x?pagelen=100");
    rc = http_get(c, url, etag, max_body, HTTP_QUIET, resp);
    if (stats)
        http_get_stats(c, stats);
    http_client_free(c);
    free(url);
    server_stop(&srv);
    return rc;
}

/*
 * run_get() with debug logging captured, so that the test can read the
 * pauses the client chose (planned_pauses) instead of timing them.
 */
static int run_get_logged(const struct canned *script, size_t n, long timeout_ms,
                          struct http_response *resp, char **logged)
{
    struct capture cap;
    int rc;

    log_set_debug(1);
    capture_start(&cap);
    rc = run_get(script, n, timeout_ms, NULL, HTTP_MAX_JSON, resp, NULL);
    *logged = capture_end(&cap);
    log_set_debug(0);
    return rc;
}

/* The pauses before each retry, in order, as the debug log announced them; how many. */
static size_t planned_pauses(const char *logged, long *pauses, size_t max)
{
    const char *p = logged;
    unsigned attempt;
    size_t n = 0;
    int of;

    while ((p = strstr(p, "; attempt ")) != NULL) {
        assert_true(n < max);
        assert_int_equal(sscanf(p, "; attempt %u of %d in %ld ms", &attempt, &of, &pauses[n]), 3);
        assert_int_equal(attempt, n + 2);
        n++;
        p++;
    }
    return n;
}

static void test_status_table(void **state)
{
    static const struct {
        long status;
        int err;
        int retry;
    } cases[] = {
        {200, 0, 0},    {201, 0, 0},       {204, 0, 0},       {304, -EIO, 0},    {301, -EIO, 0},
        {400, -EIO, 0}, {401, -EACCES, 0}, {403, -EACCES, 0}, {404, -ENOENT, 0}, {405, -EIO, 0},
        {409, -EIO, 0}, {410, -ENOENT, 0}, {429, -EIO, 1},    {500, -EIO, 1},    {501, -EIO, 0},
        {502, -EIO, 1}, {503, -EIO, 1},    {504, -EIO, 1},    {505, -EIO, 0},    {555, -EIO, 1},
        {0, -EIO, 0},   {100, -EIO, 0},    {999, -EIO, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (http_status_errno(cases[i].status) != cases[i].err ||
            http_status_retryable(cases[i].status) != cases[i].retry)
            fail_msg("status %ld", cases[i].status);
    }
}

static void test_backoff(void **state)
{
    (void)state;
    for (unsigned a = 0; a < 40; a++) {
        long cap = a < 5 ? (long)HTTP_BACKOFF_BASE_MS << a : HTTP_BACKOFF_CAP_MS;
        if (cap > HTTP_BACKOFF_CAP_MS)
            cap = HTTP_BACKOFF_CAP_MS;
        assert_int_equal(http_backoff_ms(a, 0), 0); /* full jitter reaches zero */
        assert_int_equal(http_backoff_ms(a, (uint64_t)cap), cap);
        assert_int_equal(http_backoff_ms(a, (uint64_t)cap + 1), 0);
        for (uint64_t r = 1; r < 100000000000ULL; r = r * 7 + 3)
            assert_in_range(http_backoff_ms(a, r), 0, cap);
    }
    assert_int_equal(http_backoff_ms(0, UINT64_MAX), UINT64_MAX % 101);
}

static void test_client_options(void **state)
{
    struct http_options o = {.token = NULL, .timeout_ms = 1000, .connect_timeout_ms = 1000};
    struct http_client *c = (struct http_client *)1;

    (void)state;
    assert_int_equal(http_client_new(&o, &c), -EINVAL);
    assert_null(c);
    o.token = "abc\n";
    assert_int_equal(http_client_new(&o, &c), -EINVAL);
    o.token = "abc\r\nX-Injected: 1";
    assert_int_equal(http_client_new(&o, &c), -EINVAL);
    o.token = "";
    assert_int_equal(http_client_new(&o, &c), 0);
    http_client_free(c);
    http_client_free(NULL);
}

static void test_bearer_headers_and_body(void **state)
{
    struct canned script[] = {
        {CANNED_REPLY,
         reply("200 OK",
               JSON_HDR "ETag: \"d41d8cd98f\"\r\nX-RateLimit-Limit: 1000\r\n"
                        "X-RateLimit-NearLimit: false\r\n",
               "{\"values\": []}"),
         0, 0, 0},
    };
    struct http_response r;
    struct http_stats st;
    char h[256];

    (void)state;
    assert_int_equal(run_get(script, 1, 5000, NULL, HTTP_MAX_JSON, &r, &st), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"values\": []}");
    assert_int_equal(r.len, 14);
    assert_string_equal(r.etag, "\"d41d8cd98f\"");
    assert_string_equal(r.message, "");
    http_response_release(&r);
    http_response_release(&r);

    assert_int_equal(srv.nrequests, 1);
    assert_non_null(strstr(srv.requests[0], "GET /2.0/x?pagelen=100 HTTP/1.1\r\n"));
    assert_string_equal(request_header(srv.requests[0], "Authorization", h, sizeof(h)),
                        "Bearer " TOKEN);
    assert_string_equal(request_header(srv.requests[0], "User-Agent", h, sizeof(h)),
                        "bbfs/" BBFS_VERSION);
    assert_non_null(
        strstr(request_header(srv.requests[0], "Accept-Encoding", h, sizeof(h)), "gzip"));
    assert_string_equal(request_header(srv.requests[0], "If-None-Match", h, sizeof(h)), "");

    assert_int_equal(st.requests, 1);
    assert_int_equal(st.retries, 0);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.ratelimit_limit, 1000);
    assert_int_equal(st.ratelimit_near, 0);
}

static void test_anonymous_sends_no_authorization(void **state)
{
    struct canned script[] = {{CANNED_REPLY, reply("200 OK", JSON_HDR, "{}"), 0, 0, 0}};
    struct http_options o = {.token = "", .timeout_ms = 5000, .connect_timeout_ms = 2000};
    struct http_response r;
    struct http_client *c;
    char h[64], *url;

    (void)state;
    assert_int_equal(server_start(&srv, script, 1), 0);
    assert_int_equal(http_client_new(&o, &c), 0);
    url = url_of(&srv, "/2.0/x");
    assert_int_equal(http_get(c, url, NULL, HTTP_MAX_JSON, 0, &r), 0);
    http_response_release(&r);
    http_client_free(c);
    free(url);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 1);
    assert_string_equal(request_header(srv.requests[0], "Authorization", h, sizeof(h)), "");
}

static void test_retry_5xx_then_ok(void **state)
{
    struct canned script[] = {
        {CANNED_REPLY, reply("503 Service Unavailable", JSON_HDR, ERR_JSON("down")), 0, 0, 0},
        {CANNED_REPLY, reply("502 Bad Gateway", "", "<html>bad gateway</html>"), 0, 0, 0},
        {CANNED_REPLY, reply("555 Timeout", JSON_HDR, ERR_JSON("timeout")), 0, 0, 0},
        {CANNED_REPLY, reply("200 OK", JSON_HDR, "{\"ok\":1}"), 0, 0, 0},
    };
    struct http_response r;
    struct http_stats st;

    (void)state;
    assert_int_equal(run_get(script, 4, 10000, NULL, HTTP_MAX_JSON, &r, &st), 0);
    assert_string_equal(r.body, "{\"ok\":1}");
    http_response_release(&r);
    assert_int_equal(srv.nrequests, 4);
    assert_int_equal(st.requests, 4);
    assert_int_equal(st.retries, 3);
    assert_int_equal(st.failures, 0);
}

static void test_retry_429_honours_retry_after(void **state)
{
    struct canned script[] = {
        {CANNED_REPLY,
         reply("429 Too Many Requests", "Content-Type: text/plain\r\nRetry-After: 1\r\n",
               "Rate limit for this resource has been exceeded"),
         0, 0, 0},
        {CANNED_REPLY, reply("200 OK", JSON_HDR, "{}"), 0, 0, 0},
    };
    struct http_response r;
    struct timespec t0;
    long took;

    (void)state;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(run_get(script, 2, 10000, NULL, HTTP_MAX_JSON, &r, NULL), 0);
    took = elapsed_ms_since(&t0);
    http_response_release(&r);
    assert_int_equal(srv.nrequests, 2);
    assert_in_range(took, 950, 5000);
}

static void test_429_without_retry_after_backs_off(void **state)
{
    const char *rl = reply("429 Too Many Requests", "Content-Type: text/plain\r\n",
                           "Rate limit for this resource has been exceeded");
    struct canned script[] = {
        {CANNED_REPLY, rl, 0, 0, 0},
        {CANNED_REPLY, rl, 0, 0, 0},
        {CANNED_REPLY, reply("200 OK", JSON_HDR, "{}"), 0, 0, 0},
    };
    struct http_response r;
    long pauses[HTTP_MAX_ATTEMPTS];
    char *logged;

    (void)state;
    assert_int_equal(run_get_logged(script, 3, 10000, &r, &logged), 0);
    http_response_release(&r);
    assert_int_equal(srv.nrequests, 3);
    /* the server saw the retries after its 429s, each after the jittered backoff */
    assert_int_equal(planned_pauses(logged, pauses, HTTP_MAX_ATTEMPTS), 2);
    assert_in_range(pauses[0], 0, HTTP_BACKOFF_BASE_MS);
    assert_in_range(pauses[1], 0, 2 * HTTP_BACKOFF_BASE_MS);
    free(logged);
}

static void test_429_persisting_gives_eio_with_message(void **state)
{
    const char *rl = reply("429 Too Many Requests", "Content-Type: text/plain\r\n",
                           "Rate limit for this resource has been exceeded\nsecond line");
    struct canned script[] = {
        {CANNED_REPLY, rl, 0, 0, 0}, {CANNED_REPLY, rl, 0, 0, 0}, {CANNED_REPLY, rl, 0, 0, 0},
        {CANNED_REPLY, rl, 0, 0, 0}, {CANNED_REPLY, rl, 0, 0, 0}, {CANNED_REPLY, rl, 0, 0, 0},
    };
    struct http_response r;
    struct http_stats st;

    (void)state;
    assert_int_equal(run_get(script, 6, 20000, NULL, HTTP_MAX_JSON, &r, &st), -EIO);
    assert_int_equal(r.status, 429);
    assert_int_equal(r.transport, 0);
    assert_string_equal(r.message, "Rate limit for this resource has been exceeded");
    http_response_release(&r);
    assert_int_equal(srv.nrequests, HTTP_MAX_ATTEMPTS);
    assert_int_equal(st.requests, HTTP_MAX_ATTEMPTS);
    assert_int_equal(st.failures, 1);
}

static void test_4xx_not_retried(void **state)
{
    static const struct {
        const char *status;
        const char *body;
        int rc;
        long code;
        const char *message;
    } cases[] = {
        {"404 Not Found", ERR_JSON("Commit not found"), -ENOENT, 404, "Commit not found"},
        {"401 Unauthorized",
         ERR_JSON("Token is invalid, expired, or not supported for this endpoint."), -EACCES, 401,
         "Token is invalid, expired, or not supported for this endpoint."},
        {"403 Forbidden", ERR_JSON("This API is not accessible by this authentication mechanism"),
         -EACCES, 403, "This API is not accessible by this authentication mechanism"},
        {"410 Gone", "", -ENOENT, 410, ""},
        {"400 Bad Request", ERR_JSON("Invalid pagelen"), -EIO, 400, "Invalid pagelen"},
        {"404 Not Found", ERR_JSON("evil\\nline\\u001b[2J"), -ENOENT, 404, "evil?line?[2J"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct canned script[] = {
            {CANNED_REPLY, reply(cases[i].status, JSON_HDR, cases[i].body), 0, 0, 0},
            {CANNED_REPLY, reply("200 OK", JSON_HDR, "{}"), 0, 0, 0},
        };
        struct http_response r;
        assert_int_equal(run_get(script, 2, 5000, NULL, HTTP_MAX_JSON, &r, NULL), cases[i].rc);
        assert_int_equal(r.status, cases[i].code);
        assert_string_equal(r.message, cases[i].message);
        assert_non_null(r.body); /* the error body is kept for the caller */
        http_response_release(&r);
        assert_int_equal(srv.nrequests, 1);
        server_release(&srv);
    }
}

static void test_empty_reply_and_reset_retried(void **state)
{
    struct canned script[] = {
        {CANNED_CLOSE, NULL, 0, 0, 0},
        {CANNED_REPLY, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort",
         0, 0, 0}, /* partial body */
        {CANNED_REPLY, reply("200 OK", JSON_HDR, "{\"third\":true}"), 0, 0, 0},
    };
    struct http_response r;
    struct http_stats st;

    (void)state;
    assert_int_equal(run_get(script, 3, 10000, NULL, HTTP_MAX_JSON, &r, &st), 0);
    assert_string_equal(r.body, "{\"third\":true}");
    http_response_release(&r);
    assert_int_equal(srv.nrequests, 3);
    assert_int_equal(st.retries, 2);
}

static void test_connection_refused(void **state)
{
    struct canned script[] = {{CANNED_REPLY, reply("200 OK", "", ""), 0, 0, 0}};
    struct http_response r;
    struct http_client *c;
    struct http_stats st;
    struct timespec t0;
    char *url;

    (void)state;
    /* a port that was just free: start and kill a server, keep its number */
    assert_int_equal(server_start(&srv, script, 1), 0);
    url = url_of(&srv, "/2.0");
    server_release(&srv);
    c = new_client(5000);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(http_get(c, url, NULL, HTTP_MAX_JSON, HTTP_QUIET, &r), -EIO);
    assert_in_range(elapsed_ms_since(&t0), 0, 3000);
    assert_int_equal(r.transport, 1);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.message, "Couldn't connect to server");
    assert_null(r.body);
    http_response_release(&r);
    http_get_stats(c, &st);
    assert_int_equal(st.requests, HTTP_MAX_ATTEMPTS);
    http_client_free(c);
    free(url);
}

static void test_deadline_on_hang(void **state)
{
    struct canned script[] = {{CANNED_STALL, NULL, 4000, 0, 0}, {CANNED_STALL, NULL, 4000, 0, 0}};
    struct http_response r;
    struct timespec t0;
    long took;

    (void)state;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(run_get(script, 2, 600, NULL, HTTP_MAX_JSON, &r, NULL), -EIO);
    took = elapsed_ms_since(&t0);
    assert_in_range(took, 550, 2500);
    assert_int_equal(r.transport, 1);
    assert_string_equal(r.message, "Timeout was reached");
    http_response_release(&r);
}

static void test_deadline_bounds_retries(void **state)
{
    const char *busy = reply("503 Service Unavailable", JSON_HDR, ERR_JSON("busy"));
    struct canned script[] = {
        {CANNED_REPLY, busy, 0, 0, 0}, {CANNED_REPLY, busy, 0, 0, 0}, {CANNED_REPLY, busy, 0, 0, 0},
        {CANNED_REPLY, busy, 0, 0, 0}, {CANNED_REPLY, busy, 0, 0, 0}, {CANNED_REPLY, busy, 0, 0, 0},
    };
    const char *long_wait = reply("429 Too Many Requests", "Retry-After: 30\r\n", "");
    struct canned script2[] = {{CANNED_REPLY, long_wait, 0, 0, 0},
                               {CANNED_REPLY, long_wait, 0, 0, 0}};
    struct http_response r;
    long pauses[HTTP_MAX_ATTEMPTS], slept = 0;
    struct timespec t0;
    char *logged;
    size_t n;

    (void)state;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(run_get_logged(script, 6, 250, &r, &logged), -EIO);
    /* hang guard only, generous for ASan on a loaded machine: the pauses are checked below */
    assert_in_range(elapsed_ms_since(&t0), 0, 10000);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.message, "busy");
    http_response_release(&r);
    assert_in_range(srv.nrequests, 1, HTTP_MAX_ATTEMPTS);
    /* every retry the server saw was planned, and the pauses all fit in the 250 ms budget */
    n = planned_pauses(logged, pauses, HTTP_MAX_ATTEMPTS);
    assert_int_equal(n, srv.nrequests - 1);
    for (size_t i = 0; i < n; i++)
        slept += pauses[i];
    assert_in_range(slept, 0, 249);
    free(logged);
    server_release(&srv);

    /* a Retry-After beyond the deadline: give up now rather than sleep past it */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(run_get_logged(script2, 2, 2000, &r, &logged), -EIO);
    assert_in_range(elapsed_ms_since(&t0), 0, 10000); /* hang guard: it was asked for 30 s */
    assert_int_equal(r.status, 429);
    http_response_release(&r);
    assert_int_equal(srv.nrequests, 1);
    assert_int_equal(planned_pauses(logged, pauses, HTTP_MAX_ATTEMPTS), 0);
    free(logged);
}

static void test_body_cap(void **state)
{
    char body[1001];
    struct canned script[2];
    struct http_response r;

    (void)state;
    memset(body, 'a', 1000);
    body[1000] = '\0';
    script[0] = (struct canned){CANNED_REPLY, reply("200 OK", JSON_HDR, body), 0, 0, 0};
    script[1] = script[0];
    assert_int_equal(run_get(script, 2, 5000, NULL, 100, &r, NULL), -EIO);
    assert_non_null(strstr(r.message, "larger than 100 bytes"));
    assert_null(r.body);
    http_response_release(&r);
    assert_int_equal(srv.nrequests, 1); /* not retried */
    server_release(&srv);

    /* exactly at the cap is fine */
    script[0] = (struct canned){CANNED_REPLY, reply("200 OK", JSON_HDR, body), 0, 0, 0};
    assert_int_equal(run_get(script, 1, 5000, NULL, 1000, &r, NULL), 0);
    assert_int_equal(r.len, 1000);
    http_response_release(&r);
}

static void test_redirect_to_other_port_drops_token(void **state)
{
    struct canned landing[] = {
        {CANNED_REPLY, reply("200 OK", JSON_HDR, "{\"landed\":1}"), 0, 0, 0}};
    struct canned hop[1];
    struct http_response r;
    struct http_client *c;
    char loc[128], h[128], *url;

    (void)state;
    assert_int_equal(server_start(&srv2, landing, 1), 0);
    snprintf(loc, sizeof(loc), "Location: http://127.0.0.1:%d/landing\r\n", srv2.port);
    hop[0] = (struct canned){CANNED_REPLY, reply("302 Found", loc, ""), 0, 0, 0};
    assert_int_equal(server_start(&srv, hop, 1), 0);
    c = new_client(5000);
    url = url_of(&srv, "/2.0/pullrequests/1/diff");
    assert_int_equal(http_get(c, url, NULL, HTTP_MAX_JSON, HTTP_QUIET, &r), 0);
    assert_string_equal(r.body, "{\"landed\":1}");
    http_response_release(&r);
    http_client_free(c);
    free(url);
    server_stop(&srv);
    server_stop(&srv2);
    assert_int_equal(srv.nrequests, 1);
    assert_int_equal(srv2.nrequests, 1);
    assert_string_equal(request_header(srv.requests[0], "Authorization", h, sizeof(h)),
                        "Bearer " TOKEN);
    assert_string_equal(request_header(srv2.requests[0], "Authorization", h, sizeof(h)), "");
    assert_null(strstr(srv2.requests[0], TOKEN));
}

static void test_redirect_same_origin_keeps_token(void **state)
{
    struct canned script[] = {
        {CANNED_REPLY, reply("301 Moved Permanently", "Location: /2.0/moved\r\n", ""), 0, 0, 0},
        {CANNED_REPLY, reply("200 OK", JSON_HDR, "{}"), 0, 0, 0},
    };
    struct http_response r;
    char h[128];

    (void)state;
    assert_int_equal(run_get(script, 2, 5000, NULL, HTTP_MAX_JSON, &r, NULL), 0);
    http_response_release(&r);
    assert_int_equal(srv.nrequests, 2);
    assert_non_null(strstr(srv.requests[1], "GET /2.0/moved HTTP/1.1"));
    assert_string_equal(request_header(srv.requests[1], "Authorization", h, sizeof(h)),
                        "Bearer " TOKEN);
}

static void test_redirect_limits(void **state)
{
    struct canned ftp[] = {
        {CANNED_REPLY, reply("302 Found", "Location: ftp://127.0.0.1/x\r\n", ""), 0, 0, 0},
        {CANNED_REPLY, reply("200 OK", "", ""), 0, 0, 0},
    };
    const char *loop = reply("302 Found", "Location: /2.0/again\r\n", "");
    struct canned loops[8];
    struct http_response r;

    (void)state;
    assert_int_equal(run_get(ftp, 2, 5000, NULL, HTTP_MAX_JSON, &r, NULL), -EIO);
    http_response_release(&r);
    assert_int_equal(srv.nrequests, 1);
    server_release(&srv);

    for (int i = 0; i < 8; i++)
        loops[i] = (struct canned){CANNED_REPLY, loop, 0, 0, 0};
    assert_int_equal(run_get(loops, 8, 5000, NULL, HTTP_MAX_JSON, &r, NULL), -EIO);
    http_response_release(&r);
    assert_int_equal(srv.nrequests, 6); /* the request and 5 redirects */
}

static void test_if_none_match(void **state)
{
    struct canned script[] = {
        {CANNED_REPLY, "HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\nConnection: close\r\n\r\n", 0,
         0, 0},
    };
    struct http_response r;
    char h[64];

    (void)state;
    assert_int_equal(run_get(script, 1, 5000, "\"abc\"", HTTP_MAX_JSON, &r, NULL), 0);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.len, 0);
    assert_string_equal(r.etag, "\"abc\"");
    http_response_release(&r);
    assert_string_equal(request_header(srv.requests[0], "If-None-Match", h, sizeof(h)), "\"abc\"");
    server_release(&srv);

    /* without a validator a 304 is an error */
    assert_int_equal(run_get(script, 1, 5000, NULL, HTTP_MAX_JSON, &r, NULL), -EIO);
    http_response_release(&r);
    /* a validator that would inject a header is refused before any request */
    struct http_client *c = new_client(1000);
    assert_int_equal(http_get(c, "http://127.0.0.1:1/", "\"a\"\r\nX: y", 10, 0, &r), -EINVAL);
    http_response_release(&r);
    http_client_free(c);
}

static void test_near_limit_counters(void **state)
{
    const char *near = reply(
        "200 OK", JSON_HDR "X-RateLimit-Limit: 2500\r\nX-RateLimit-NearLimit: true\r\n", "{}");
    struct canned script[] = {{CANNED_REPLY, near, 0, 0, 0}, {CANNED_REPLY, near, 0, 0, 0}};
    struct http_response r;
    struct http_client *c;
    struct http_stats st;
    char *url;

    (void)state;
    assert_int_equal(server_start(&srv, script, 2), 0);
    c = new_client(5000);
    url = url_of(&srv, "/2.0/x");
    for (int i = 0; i < 2; i++) {
        assert_int_equal(http_get(c, url, NULL, HTTP_MAX_JSON, 0, &r), 0);
        http_response_release(&r);
    }
    http_get_stats(c, &st);
    assert_int_equal(st.ratelimit_limit, 2500);
    assert_int_equal(st.ratelimit_near, 1);
    assert_int_equal(st.ratelimit_near_count, 2);
    assert_int_equal(st.requests, 2);
    http_client_free(c);
    free(url);
}

struct thread_arg {
    struct http_client *c;
    const char *url;
    int ok;
};

static void *get_thread(void *p)
{
    struct thread_arg *a = p;
    struct http_response r;

    for (int i = 0; i < 3; i++) {
        if (http_get(a->c, a->url, NULL, HTTP_MAX_JSON, 0, &r) == 0 && strcmp(r.body, "{}") == 0)
            a->ok++;
        http_response_release(&r);
    }
    return NULL;
}

static void test_threads_share_one_client(void **state)
{
    struct canned script[12];
    struct thread_arg args[4];
    pthread_t t[4];
    struct http_client *c;
    char *url;

    (void)state;
    for (int i = 0; i < 12; i++)
        script[i] = (struct canned){
            CANNED_REPLY, i == 0 ? reply("200 OK", JSON_HDR, "{}") : script[0].response, 0, 0, 0};
    assert_int_equal(server_start(&srv, script, 12), 0);
    c = new_client(10000);
    url = url_of(&srv, "/2.0/x");
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){c, url, 0};
        assert_int_equal(pthread_create(&t[i], NULL, get_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].ok, 3);
    }
    http_client_free(c);
    free(url);
}

/* An empty unlinked file, for a download's bytes. */
static int body_file(void)
{
    char path[] = "/tmp/bbfs-test-XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

static off_t file_size(int fd)
{
    return lseek(fd, 0, SEEK_END);
}

/* A sink appending to the file descriptor in its context. */
static int fd_write(void *ctx, const void *data, size_t len)
{
    return write((int)(intptr_t)ctx, data, len) == (ssize_t)len ? 0 : -EIO;
}

#define TO_FD(fd) (&(const struct api_sink){fd_write, NULL, (void *)(intptr_t)(fd)})

static void test_download_has_no_total_limit(void **state)
{
    enum { N = 40 * 1024 };
    char *body = malloc(N + 1);
    struct canned script[2];
    struct http_response r;
    struct http_client *c;
    uint64_t written = 1;
    char *url, got[64];
    int fd = body_file();

    (void)state;
    assert_non_null(body);
    memset(body, 'z', N);
    body[N] = '\0';
    /* 4 KiB every 150 ms: about 1.5 s at 27 KiB/s, against a budget of 800 ms */
    script[0] = (struct canned){CANNED_REPLY_PACED, reply("200 OK", "", body), 150, 0, 4096};
    script[1] = script[0];
    assert_int_equal(server_start(&srv, script, 1), 0);
    assert_int_equal(server_start(&srv2, script + 1, 1), 0);
    c = new_client(800);
    url = url_of(&srv, "/2.0/src/file");
    /* a JSON request must fit its budget ... */
    assert_int_equal(http_get(c, url, NULL, HTTP_MAX_JSON, HTTP_QUIET, &r), -EIO);
    assert_string_equal(r.message, "Timeout was reached");
    http_response_release(&r);
    free(url);
    /* ... a download only has to keep moving (a server of its own, not busy with the answer
     * given up on; a client of its own: the timeout, an outage, pauses the first one) */
    http_client_free(c);
    c = new_client(800);
    url = url_of(&srv2, "/2.0/src/file");
    assert_int_equal(http_download(c, url, TO_FD(fd), HTTP_QUIET, &r, &written), 0);
    assert_int_equal(written, N);
    assert_int_equal(r.status, 200);
    http_response_release(&r);
    assert_int_equal(file_size(fd), N);
    assert_int_equal(pread(fd, got, sizeof(got), N - (off_t)sizeof(got)), (ssize_t)sizeof(got));
    assert_int_equal(got[0], 'z');
    http_client_free(c);
    free(url);
    free(body);
    close(fd);
}

static void test_download_error_body_kept_for_message(void **state)
{
    struct canned script[] = {
        {CANNED_REPLY, reply("404 Not Found", JSON_HDR, ERR_JSON("No such file or directory")), 0,
         0, 0},
    };
    struct http_response r;
    struct http_client *c;
    uint64_t written = 9;
    char *url;
    int fd = body_file();

    (void)state;
    assert_int_equal(server_start(&srv, script, 1), 0);
    c = new_client(5000);
    url = url_of(&srv, "/2.0/src/nope");
    assert_int_equal(http_download(c, url, TO_FD(fd), HTTP_QUIET, &r, &written), -ENOENT);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.message, "No such file or directory");
    assert_int_equal(written, 0);
    assert_int_equal(file_size(fd), 0);
    http_response_release(&r);
    assert_int_equal(http_download(c, url, NULL, 0, &r, &written), -EINVAL);
    http_response_release(&r);
    http_client_free(c);
    free(url);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_table),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_client_options),
        cmocka_unit_test_setup_teardown(test_bearer_headers_and_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anonymous_sends_no_authorization, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_5xx_then_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_429_honours_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_429_without_retry_after_backs_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_429_persisting_gives_eio_with_message, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_4xx_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_reply_and_reset_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_on_hang, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_bounds_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_to_other_port_drops_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_same_origin_keeps_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_if_none_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_near_limit_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_share_one_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_download_has_no_total_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_download_error_body_kept_for_message, setup, teardown),
    };
    int rc;

    signal(SIGPIPE, SIG_IGN);
    http_global_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    http_global_cleanup();
    return rc;
}

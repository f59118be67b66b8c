/*
 * test_api.c - the public calls of api/api.h end to end against a canned
 * HTTP server: the URLs they request, pagination across pages (dedupe and
 * sort, early stop at the commit limit, broken or foreign next links failing
 * the whole listing), the one-line errors of api_check_access, and argument
 * checks that must not cost a request.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api.h"
#include "canned_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "tok-api-456"
#define H1 "1111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222"
#define H3 "3333333333333333333333333333333333333333"
#define H4 "4444444444444444444444444444444444444444"
#define H5 "5555555555555555555555555555555555555555"

static char *built[16];
static size_t nbuilt;
static struct canned_server srv;
static struct api_client *client;

static const char *reply(const char *status, const char *body)
{
    size_t len = strlen(status) + strlen(body) + 160;
    char *r = malloc(len);

    assert_non_null(r);
    snprintf(r, len,
             "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s",
             status, strlen(body), body);
    assert_true(nbuilt < sizeof(built) / sizeof(built[0]));
    built[nbuilt++] = r;
    return r;
}

/* A 200 answer whose body has %d standing for the server's port (for next links). */
static const char *page(const char *tmpl)
{
    char body[8192];
    size_t len = 0;

    for (const char *p = tmpl; *p && len + 8 < sizeof(body); p++) {
        if (p[0] == '%' && p[1] == 'd') {
            len += (size_t)snprintf(body + len, sizeof(body) - len, "%d", srv.port);
            p++;
        } else {
            body[len++] = *p;
        }
    }
    body[len] = '\0';
    return reply("200 OK", body);
}

/* Listens first, so that answers can name the port, then plays them. */
static void listen_srv(void)
{
    assert_int_equal(server_listen(&srv), 0);
}

static void run_srv(const struct canned *script, size_t n)
{
    assert_int_equal(server_run(&srv, script, n), 0);
}

/* Creates the client for srv's port. */
static void connect_client(long timeout_ms)
{
    char base[64], err[256];
    struct api_config cfg = {.token = TOKEN, .timeout_ms = timeout_ms, .connect_timeout_ms = 2000};

    snprintf(base, sizeof(base), "http://127.0.0.1:%d/2.0", srv.port);
    cfg.base_url = base;
    assert_int_equal(api_client_new(&cfg, &client, err, sizeof(err)), 0);
}

static int setup(void **state)
{
    (void)state;
    server_init(&srv);
    client = NULL;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    api_client_free(client);
    client = NULL;
    server_release(&srv);
    for (size_t i = 0; i < nbuilt; i++)
        free(built[i]);
    nbuilt = 0;
    return 0;
}

/* The request line's target of request i. */
static const char *target(size_t i, char *dst, size_t len)
{
    const char *sp;
    size_t n;

    assert_true(i < srv.nrequests);
    sp = strchr(srv.requests[i], ' ');
    assert_non_null(sp);
    n = strcspn(sp + 1, " ");
    if (n >= len)
        n = len - 1;
    memcpy(dst, sp + 1, n);
    dst[n] = '\0';
    return dst;
}

static void test_client_new_checks(void **state)
{
    static const struct {
        const char *base;
        const char *token;
        int rc;
        const char *err;
    } cases[] = {
        {"http://example.com/2.0", "t", -EINVAL, "loopback"},
        {"ftp://127.0.0.1/2.0", "t", -EINVAL, "http"},
        {"http://127.0.0.1:1/2.0", "t\n", -EINVAL, "control"},
        {"http://127.0.0.1:1/2.0", NULL, -EINVAL, "token"},
        {"http://[::1]:8080/2.0", "t", 0, ""},
        {NULL, "t", 0, ""}, /* the default, https://api.bitbucket.org/2.0 */
    };
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct api_config cfg = {.base_url = cases[i].base, .token = cases[i].token};
        struct api_client *c = (struct api_client *)1;
        int rc = api_client_new(&cfg, &c, err, sizeof(err));
        assert_int_equal(rc, cases[i].rc);
        assert_non_null(strstr(err, cases[i].err));
        if (rc == 0)
            api_client_free(c);
        else
            assert_null(c);
    }
    assert_int_equal(api_client_new(NULL, &client, err, sizeof(err)), -EINVAL);
    api_client_free(NULL);
}

static void test_release_zeroed(void **state)
{
    struct api_repo_list rl = {0};
    struct api_ref_list fl = {0};
    struct api_commit_list cl = {0};
    struct api_commit c = {0};
    struct api_doc d = {0};

    (void)state;
    api_repo_list_release(&rl);
    api_ref_list_release(&fl);
    api_commit_list_release(&cl);
    api_commit_release(&c);
    api_doc_release(&d);
    api_repo_list_release(NULL);
    api_ref_list_release(NULL);
    api_commit_list_release(NULL);
    api_commit_release(NULL);
    api_doc_release(NULL);
}

static void test_bad_arguments_cost_no_request(void **state)
{
    struct canned script[] = {{CANNED_REPLY, reply("200 OK", "{}"), 0}};
    struct api_commit_list cl;
    struct api_commit c;
    struct api_doc d;
    struct api_stats st;

    (void)state;
    listen_srv();
    run_srv(script, 1);
    connect_client(5000);
    assert_int_equal(api_get_commit(client, "acme", "api", "abc", &c), -EINVAL);
    assert_int_equal(
        api_get_commit(client, "acme", "api", "F7591A13EDA445D9A9167F98EB870319F4B6C2D8", &c),
        -EINVAL);
    assert_int_equal(api_get_commit(client, "acme", "api", NULL, &c), -EINVAL);
    assert_int_equal(api_get_commit(client, "acme", "..", H1, &c), -EINVAL);
    assert_int_equal(api_get_workspace(client, "", &d), -EINVAL);
    assert_int_equal(api_get_project(client, "acme", ".", &d), -EINVAL);
    assert_int_equal(api_list_commits(client, "acme", "api", "a/../b", 10, &cl), -EINVAL);
    assert_int_equal(api_list_commits(client, "acme", "api", "", 10, &cl), -EINVAL);
    assert_int_equal(api_list_commits(client, "acme", "api", "master", 0, &cl), 0);
    assert_int_equal(cl.count, 0);
    api_get_stats(client, &st);
    assert_int_equal(st.requests, 0);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 0);
}

#define REPO(slug, uuid)                                                                           \
    "{\"type\":\"repository\",\"slug\":\"" slug "\",\"uuid\":\"{" uuid                             \
    "}\",\"full_name\":\"acme/" slug                                                               \
    "\",\"updated_on\":\"2020-01-01T00:00:00Z\",\"mainbranch\":{\"name\":\"main\"}}"

static void test_list_repos_pages_dedupe_sort(void **state)
{
    struct canned script[2];
    struct api_repo_list list;
    char t[512];

    (void)state;
    listen_srv();
    script[0] = (struct canned){
        CANNED_REPLY,
        page("{\"pagelen\": 3, \"page\": 1, \"size\": 5, \"values\": [" REPO("zeta", "z") "," REPO(
            "beta",
            "b") "," REPO("beta",
                          "b") "],"
                               "\"next\": "
                               "\"http://127.0.0.1:%d/2.0/repositories/acme?page=2&pagelen=3\"}"),
        0};
    script[1] = (struct canned){CANNED_REPLY,
                                page("{\"pagelen\": 3, \"page\": 2, \"values\": [" REPO(
                                    "alpha", "a") "," REPO("zeta", "z") "]}"),
                                0};
    run_srv(script, 2);
    connect_client(5000);
    assert_int_equal(api_list_repos(client, "acme", "PLAT", &list), 0);
    assert_int_equal(list.count, 3);
    assert_string_equal(list.items[0].slug, "alpha");
    assert_string_equal(list.items[1].slug, "beta");
    assert_string_equal(list.items[2].slug, "zeta");
    assert_string_equal(list.items[2].uuid, "{z}");
    assert_string_equal(list.items[0].mainbranch, "main");
    assert_int_equal(list.items[0].updated_on, 1577836800);
    assert_non_null(strstr(list.items[0].doc.text, "\"slug\": \"alpha\""));
    api_repo_list_release(&list);
    assert_null(list.items);
    assert_int_equal(list.count, 0);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 2);
    assert_string_equal(target(0, t, sizeof(t)),
                        "/2.0/repositories/acme?pagelen=100&sort=slug&q=project.key%3D%22PLAT%22");
    assert_string_equal(target(1, t, sizeof(t)), "/2.0/repositories/acme?page=2&pagelen=3");
}

static void test_list_repos_without_project(void **state)
{
    struct canned script[] = {{CANNED_REPLY, NULL, 0}};
    struct api_repo_list list;
    char t[256];

    (void)state;
    listen_srv();
    script[0].response = page("{\"values\": []}");
    run_srv(script, 1);
    connect_client(5000);
    assert_int_equal(api_list_repos(client, "my ws", NULL, &list), 0);
    assert_int_equal(list.count, 0);
    api_repo_list_release(&list);
    assert_int_equal(api_list_repos(client, "acme", "BAD\"KEY", &list), -EINVAL);
    server_stop(&srv);
    assert_string_equal(target(0, t, sizeof(t)), "/2.0/repositories/my%20ws?pagelen=100&sort=slug");
}

static void test_broken_pages_fail_whole_listing(void **state)
{
    static const char *const second[] = {
        "{\"values\": [" REPO(
            "b", "b") "], \"next\": "
                      "\"http://127.0.0.1:%d/2.0/repositories/acme?page=1&pagelen=100&sort=slug\"}",
        "{\"values\": [" REPO("b", "b") "], \"next\": \"http://127.0.0.1:1/2.0/x?page=3\"}",
        "{\"values\": [" REPO("b", "b") "], \"next\": \"https://evil.example/2.0/x?page=3\"}",
        "{\"values\": [" REPO("b", "b") "], \"next\": 3}",
        "{\"values\": \"oops\"}",
        "{\"values\": [" REPO("b", "b") ", 7]}",
        "{\"values\": [" REPO("b", "b") "]",
        "",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(second) / sizeof(second[0]); i++) {
        struct canned script[3];
        struct api_repo_list list = {(struct api_repo *)1, 99};
        listen_srv();
        script[0] = (struct canned){
            CANNED_REPLY,
            page("{\"values\": [" REPO(
                "a",
                "a") "], \"next\": "
                     "\"http://127.0.0.1:%d/2.0/repositories/acme?page=1&pagelen=100&sort=slug\"}"),
            0};
        script[1] = (struct canned){CANNED_REPLY, page(second[i]), 0};
        script[2] = (struct canned){CANNED_REPLY, page("{\"values\": []}"), 0};
        run_srv(script, 3);
        connect_client(5000);
        if (api_list_repos(client, "acme", NULL, &list) != -EIO)
            fail_msg("case %zu did not fail", i);
        assert_null(list.items);
        assert_int_equal(list.count, 0);
        server_stop(&srv);
        assert_int_equal(srv.nrequests, 2); /* nothing followed past the bad page */
        teardown(NULL);
        setup(NULL);
    }
}

static void test_first_page_errors(void **state)
{
    static const struct {
        const char *status;
        int rc;
    } cases[] = {
        {"404 Not Found", -ENOENT},
        {"403 Forbidden", -EACCES},
        {"401 Unauthorized", -EACCES},
        {"400 Bad Request", -EIO},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct canned script[] = {
            {CANNED_REPLY,
             reply(cases[i].status, "{\"type\":\"error\",\"error\":{\"message\":\"m\"}}"), 0}};
        struct api_ref_list refs;
        listen_srv();
        run_srv(script, 1);
        connect_client(5000);
        assert_int_equal(api_list_branches(client, "acme", "api", &refs), cases[i].rc);
        assert_null(refs.items);
        teardown(NULL);
        setup(NULL);
    }
}

static void test_list_branches(void **state)
{
    struct canned script[2];
    struct api_ref_list refs;
    char t[512];

    (void)state;
    listen_srv();
    script[0] = (struct canned){
        CANNED_REPLY,
        page("{\"values\": ["
             "{\"name\": \"main\", \"target\": {\"hash\": \"" H1
             "\", \"date\": \"2021-04-12T06:44:38+00:00\"}},"
             "{\"name\": \"feature/x\", \"target\": {\"hash\": \"" H2 "\"}},"
             "{\"name\": \"bad\", \"target\": {\"hash\": \"1234567\"}},"
             "{\"name\": \"1.10\", \"target\": {\"hash\": \"" H3 "\"}}],"
             "\"next\": "
             "\"https://bitbucket.org/!api/2.0/repositories/acme/api/refs/branches?page=2\"}"),
        0};
    script[1] = (struct canned){
        CANNED_REPLY,
        page("{\"values\": [{\"name\": \"1.9\", \"target\": {\"hash\": \"" H4 "\"}},"
             "{\"name\": \"main\", \"target\": {\"hash\": \"" H5 "\"}}]}"),
        0};
    run_srv(script, 2);
    /* the !api link above must land on this server: base without /2.0 + /2.0/... */
    connect_client(5000);
    /* a base of http://127.0.0.1:PORT/2.0 makes !api/2.0/... http://127.0.0.1:PORT/2.0/... */
    assert_int_equal(api_list_branches(client, "acme", "api", &refs), 0);
    assert_int_equal(refs.count, 4);
    assert_string_equal(refs.items[0].name, "1.10");
    assert_string_equal(refs.items[1].name, "1.9");
    assert_string_equal(refs.items[2].name, "feature/x");
    assert_string_equal(refs.items[2].target, H2);
    assert_int_equal(refs.items[2].date, 0);
    assert_string_equal(refs.items[3].name, "main");
    assert_string_equal(refs.items[3].target, H1); /* the first of two entries wins */
    assert_int_equal(refs.items[3].date, 1618209878);
    api_ref_list_release(&refs);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 2);
    assert_string_equal(target(0, t, sizeof(t)),
                        "/2.0/repositories/acme/api/refs/branches?pagelen=100&sort=name"
                        "&fields=next%2Cvalues.name%2Cvalues.target.hash%2Cvalues.target.date");
    assert_string_equal(target(1, t, sizeof(t)), "/2.0/repositories/acme/api/refs/branches?page=2");
}

static void test_list_tags_path(void **state)
{
    struct canned script[] = {{CANNED_REPLY, NULL, 0}};
    struct api_ref_list refs;
    char t[512];

    (void)state;
    listen_srv();
    script[0].response =
        page("{\"values\": [{\"name\": \"v1.0\", \"target\": {\"hash\": \"" H1 "\"}}]}");
    run_srv(script, 1);
    connect_client(5000);
    assert_int_equal(api_list_tags(client, "acme", "my-repo", &refs), 0);
    assert_int_equal(refs.count, 1);
    api_ref_list_release(&refs);
    server_stop(&srv);
    assert_non_null(strstr(target(0, t, sizeof(t)), "/2.0/repositories/acme/my-repo/refs/tags?"));
}

static void test_list_commits_stops_at_limit(void **state)
{
    struct canned script[3];
    struct api_commit_list list;
    char t[512];

    (void)state;
    listen_srv();
    script[0] = (struct canned){
        CANNED_REPLY,
        page("{\"values\": [{\"hash\": \"" H1 "\", \"date\": \"2020-01-01T00:00:00Z\"},"
             "{\"hash\": \"" H2 "\"}, {\"hash\": \"bad\"}],"
             "\"next\": "
             "\"http://127.0.0.1:%d/2.0/repositories/acme/api/commits/feature/x?page=dbtR\"}"),
        0};
    script[1] = (struct canned){
        CANNED_REPLY,
        page("{\"values\": [{\"hash\": \"" H3 "\"}, {\"hash\": \"" H4 "\"}, {\"hash\": \"" H5
             "\"}],"
             "\"next\": "
             "\"http://127.0.0.1:%d/2.0/repositories/acme/api/commits/feature/x?page=xyz\"}"),
        0};
    script[2] = (struct canned){CANNED_REPLY, page("{\"values\": []}"), 0};
    run_srv(script, 3);
    connect_client(5000);
    assert_int_equal(api_list_commits(client, "acme", "api", "feature/x", 4, &list), 0);
    assert_int_equal(list.count, 4);
    assert_string_equal(list.items[0].hash, H1);
    assert_int_equal(list.items[0].date, 1577836800);
    assert_string_equal(list.items[1].hash, H2);
    assert_string_equal(list.items[2].hash, H3);
    assert_string_equal(list.items[3].hash, H4);
    api_commit_list_release(&list);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 2); /* the third page was never needed */
    assert_string_equal(target(0, t, sizeof(t)),
                        "/2.0/repositories/acme/api/commits/feature/x?pagelen=4"
                        "&fields=next%2Cvalues.hash%2Cvalues.date");
}

static void test_list_commits_short_history(void **state)
{
    struct canned script[] = {{CANNED_REPLY, NULL, 0}};
    struct api_commit_list list;
    char t[512];

    (void)state;
    listen_srv();
    script[0].response = page("{\"values\": [{\"hash\": \"" H1 "\"}]}");
    run_srv(script, 1);
    connect_client(5000);
    assert_int_equal(api_list_commits(client, "acme", "api", H1, 1000, &list), 0);
    assert_int_equal(list.count, 1);
    api_commit_list_release(&list);
    server_stop(&srv);
    assert_string_equal(target(0, t, sizeof(t)),
                        "/2.0/repositories/acme/api/commits/" H1
                        "?pagelen=100&fields=next%2Cvalues.hash%2Cvalues.date");
}

static void test_get_commit(void **state)
{
    struct canned script[3];
    struct api_commit c;
    char t[512];

    (void)state;
    listen_srv();
    script[0] = (struct canned){
        CANNED_REPLY,
        reply("200 OK",
              "{\"hash\": \"" H1 "\", \"date\": \"2012-07-16T19:37:54+02:00\","
              "\"message\": \"Merge\\n\", \"parents\": [{\"hash\": \"" H2 "\"},"
              "{\"hash\": \"" H3 "\"}], \"links\": {\"html\": {\"href\": \"https://b/c\"}}}"),
        0};
    script[1] = (struct canned){CANNED_REPLY, reply("200 OK", "{\"hash\": \"" H2 "\"}"), 0};
    script[2] = (struct canned){CANNED_REPLY, reply("200 OK", "{\"hash\": \"" H1 "\""), 0};
    run_srv(script, 3);
    connect_client(5000);
    assert_int_equal(api_get_commit(client, "acme", "api", H1, &c), 0);
    assert_string_equal(c.hash, H1);
    assert_int_equal(c.date, 1342460274);
    assert_string_equal(c.message, "Merge\n");
    assert_int_equal(c.parent_count, 2);
    assert_string_equal(c.parents[1], H3);
    assert_string_equal(c.html_url, "https://b/c");
    assert_non_null(strstr(c.doc.text, "\"message\": \"Merge\\n\""));
    api_commit_release(&c);
    /* an answer about another commit, then malformed JSON */
    assert_int_equal(api_get_commit(client, "acme", "api", H1, &c), -EIO);
    assert_null(c.message);
    assert_int_equal(api_get_commit(client, "acme", "api", H1, &c), -EIO);
    server_stop(&srv);
    assert_string_equal(target(0, t, sizeof(t)), "/2.0/repositories/acme/api/commit/" H1);
}

static void test_get_docs(void **state)
{
    struct canned script[] = {
        {CANNED_REPLY, NULL, 0},
        {CANNED_REPLY, NULL, 0},
        {CANNED_REPLY, NULL, 0},
    };
    struct api_doc d;
    char t[512];

    (void)state;
    listen_srv();
    script[0].response =
        reply("200 OK", "{\"type\":\"workspace\",\"slug\":\"acme\",\"name\":\"Ac\\u00e9me\"}");
    script[1].response = reply("200 OK", "{\"type\":\"project\",\"key\":\"PLAT\"}");
    script[2].response =
        reply("404 Not Found", "{\"type\":\"error\",\"error\":{\"message\":\"nope\"}}");
    run_srv(script, 3);
    connect_client(5000);
    assert_int_equal(api_get_workspace(client, "acme", &d), 0);
    assert_string_equal(d.text, "{\n  \"type\": \"workspace\",\n  \"slug\": \"acme\",\n"
                                "  \"name\": \"Acéme\"\n}\n");
    assert_int_equal(d.len, strlen(d.text));
    api_doc_release(&d);
    assert_int_equal(api_get_project(client, "acme", "PLAT", &d), 0);
    api_doc_release(&d);
    assert_int_equal(api_get_project(client, "acme", "NOPE", &d), -ENOENT);
    assert_null(d.text);
    server_stop(&srv);
    assert_string_equal(target(0, t, sizeof(t)), "/2.0/workspaces/acme");
    assert_string_equal(target(1, t, sizeof(t)), "/2.0/workspaces/acme/projects/PLAT");
}

static void test_check_access(void **state)
{
    static const struct {
        const char *status;
        const char *body;
        const char *project;
        int rc;
        const char *target;
        const char *err;
    } cases[] = {
        {"200 OK", "{\"type\":\"project\",\"key\":\"PLAT\"}", "PLAT", 0,
         "/2.0/workspaces/acme/projects/PLAT", ""},
        {"200 OK", "{\"pagelen\":1,\"values\":[]}", NULL, 0, "/2.0/repositories/acme?pagelen=1",
         ""},
        {"401 Unauthorized",
         "{\"type\":\"error\",\"error\":{\"message\":\"Token is invalid, expired, or not supported "
         "for this endpoint.\"}}",
         "PLAT", -EACCES, NULL,
         "(HTTP 401): Token is invalid, expired, or not supported for this endpoint."},
        {"403 Forbidden", "{\"type\":\"error\",\"error\":{\"message\":\"no\\nway\"}}", "PLAT",
         -EACCES, NULL, "denied (HTTP 403): no?way"},
        {"404 Not Found", "{\"type\":\"error\",\"error\":{\"message\":\"Project not found\"}}",
         "PLAT", -ENOENT, NULL, "workspace 'acme' or project 'PLAT' not found (HTTP 404)"},
        {"404 Not Found", "{}", NULL, -ENOENT, NULL, "workspace 'acme' not found (HTTP 404)"},
        {"200 OK", "<html>hello</html>", NULL, -EIO, NULL, "not the Bitbucket API"},
        {"200 OK", "{\"no\":\"values\"}", NULL, -EIO, NULL, "not the Bitbucket API"},
        {"500 Internal Server Error", "{}", "PLAT", -EIO, NULL, "(HTTP 500)"},
    };
    char err[512], t[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct canned script[5];
        for (int k = 0; k < 5; k++)
            script[k] = (struct canned){CANNED_REPLY, reply(cases[i].status, cases[i].body), 0};
        listen_srv();
        run_srv(script, 5);
        connect_client(10000);
        int rc = api_check_access(client, "acme", cases[i].project, err, sizeof(err));
        if (rc != cases[i].rc || !strstr(err, cases[i].err))
            fail_msg("case %zu: rc %d, err '%s'", i, rc, err);
        assert_null(strchr(err, '\n'));
        assert_null(strstr(err, TOKEN));
        server_stop(&srv);
        if (cases[i].status[0] != '5')
            assert_int_equal(srv.nrequests, 1);
        if (cases[i].target)
            assert_string_equal(target(0, t, sizeof(t)), cases[i].target);
        teardown(NULL);
        setup(NULL);
        nbuilt = 0;
    }
}

static void test_check_access_unreachable(void **state)
{
    char err[512], expect[128];

    (void)state;
    listen_srv();
    server_release(&srv); /* the port is closed again: connection refused */
    connect_client(3000);
    assert_int_equal(api_check_access(client, "acme", "PLAT", err, sizeof(err)), -EIO);
    snprintf(expect, sizeof(expect),
             "cannot reach http://127.0.0.1:%d/2.0: Couldn't connect to server", srv.port);
    assert_string_equal(err, expect);
}

static void test_stats(void **state)
{
    struct canned script[] = {{CANNED_REPLY, NULL, 0}, {CANNED_REPLY, NULL, 0}};
    struct api_stats st;
    struct api_doc d;

    (void)state;
    listen_srv();
    script[0].response = reply("503 Service Unavailable", "{}");
    script[1].response = reply("200 OK", "{}");
    run_srv(script, 2);
    connect_client(5000);
    assert_int_equal(api_get_workspace(client, "acme", &d), 0);
    api_doc_release(&d);
    api_get_stats(client, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.ratelimit_limit, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_new_checks),
        cmocka_unit_test(test_release_zeroed),
        cmocka_unit_test_setup_teardown(test_bad_arguments_cost_no_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_repos_pages_dedupe_sort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_repos_without_project, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_pages_fail_whole_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_page_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_branches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_tags_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_commits_stops_at_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_commits_short_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_docs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_access_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
    };
    int rc;

    signal(SIGPIPE, SIG_IGN);
    api_global_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    api_global_cleanup();
    return rc;
}

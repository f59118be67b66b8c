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
#include "api/http.h" /* HTTP_MAX_ATTEMPTS */
#include "canned_server.h"
#include "log_capture.h"

#include <errno.h>
#include <jansson.h> /* json_set_alloc_funcs: allocation failures on demand */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define TOKEN "tok-api-456"
#define H1 "1111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222"
#define H3 "3333333333333333333333333333333333333333"
#define H4 "4444444444444444444444444444444444444444"
#define H5 "5555555555555555555555555555555555555555"

static char *built[32];
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
    struct canned script[] = {{CANNED_REPLY, reply("200 OK", "{}"), 0, 0, 0}};
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
        0, 0, 0};
    script[1] = (struct canned){CANNED_REPLY,
                                page("{\"pagelen\": 3, \"page\": 2, \"values\": [" REPO(
                                    "alpha", "a") "," REPO("zeta", "z") "]}"),
                                0, 0, 0};
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
    struct canned script[] = {{CANNED_REPLY, NULL, 0, 0, 0}};
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
        /* (a body that is not JSON is retried: test_spoilt_page_is_retried) */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(second) / sizeof(second[0]); i++) {
        struct canned script[3];
        struct api_repo_list list = {(struct api_repo *)1, 99, 0};
        listen_srv();
        script[0] = (struct canned){
            CANNED_REPLY,
            page("{\"values\": [" REPO(
                "a",
                "a") "], \"next\": "
                     "\"http://127.0.0.1:%d/2.0/repositories/acme?page=1&pagelen=100&sort=slug\"}"),
            0, 0, 0};
        script[1] = (struct canned){CANNED_REPLY, page(second[i]), 0, 0, 0};
        script[2] = (struct canned){CANNED_REPLY, page("{\"values\": []}"), 0, 0, 0};
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
             reply(cases[i].status, "{\"type\":\"error\",\"error\":{\"message\":\"m\"}}"), 0, 0,
             0}};
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
        0, 0, 0};
    script[1] = (struct canned){
        CANNED_REPLY,
        page("{\"values\": [{\"name\": \"1.9\", \"target\": {\"hash\": \"" H4 "\"}},"
             "{\"name\": \"main\", \"target\": {\"hash\": \"" H5 "\"}}]}"),
        0, 0, 0};
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
                        "&fields=size%2Cpage%2Cpagelen%2Cnext%2Cvalues.name"
                        "%2Cvalues.target.hash%2Cvalues.target.date");
    assert_string_equal(target(1, t, sizeof(t)), "/2.0/repositories/acme/api/refs/branches?page=2");
}

static void test_list_tags_path(void **state)
{
    struct canned script[] = {{CANNED_REPLY, NULL, 0, 0, 0}};
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

static void test_list_pullrequests(void **state)
{
    struct canned script[2];
    struct api_pullrequest_list prs;
    char t[512];

    (void)state;
    listen_srv();
    script[0] = (struct canned){
        CANNED_REPLY,
        page("{\"values\": [{\"id\": 9, \"title\": \"Nine\", \"state\": \"OPEN\","
             "\"source\": {\"commit\": {\"hash\": \"abcdef012345\"}},"
             "\"destination\": {\"commit\": {\"hash\": \"xyz\"}},"
             "\"updated_on\": \"2024-01-02T03:04:05+00:00\"},"
             "{\"title\": \"no id\"},"
             "{\"id\": 3, \"description\": \"Line\\nLine\"}],"
             "\"next\": \"http://127.0.0.1:%d/2.0/repositories/acme/api/pullrequests?page=2\"}"),
        0, 0, 0};
    script[1] = (struct canned){CANNED_REPLY, page("{\"values\": [{\"id\": 9}]}"), 0, 0, 0};
    run_srv(script, 2);
    connect_client(5000);
    assert_int_equal(api_list_pullrequests(client, "acme", "api", &prs), 0);
    assert_int_equal(prs.count, 2); /* sorted, without the one lacking an id, 9 once */
    assert_int_equal(prs.items[0].id, 3);
    assert_string_equal(prs.items[0].title, "");
    assert_string_equal(prs.items[0].description, "Line\nLine");
    assert_string_equal(prs.items[0].source, "");
    assert_int_equal(prs.items[1].id, 9);
    assert_string_equal(prs.items[1].title, "Nine");
    assert_string_equal(prs.items[1].state, "OPEN");
    assert_string_equal(prs.items[1].source, "abcdef012345");
    assert_string_equal(prs.items[1].destination, ""); /* not a hash */
    assert_int_equal(prs.items[1].updated_on, 1704164645);
    assert_non_null(strstr(prs.items[1].doc.text, "\"title\": \"Nine\""));
    api_pullrequest_list_release(&prs);
    server_stop(&srv);
    assert_string_equal(target(0, t, sizeof(t)),
                        "/2.0/repositories/acme/api/pullrequests?state=OPEN&pagelen=50");
}

static void test_pullrequest_comments_and_hashes(void **state)
{
    struct canned script[4];
    struct api_pullrequest pr;
    struct api_doc doc;
    char full[API_HASH_LEN + 1], t[512];

    (void)state;
    listen_srv();
    script[0] = (struct canned){
        CANNED_REPLY,
        page("{\"values\": [{\"id\": 1}], \"next\": "
             "\"http://127.0.0.1:%d/2.0/repositories/acme/api/pullrequests/4/comments?page=2\"}"),
        0, 0, 0};
    script[1] = (struct canned){CANNED_REPLY, page("{\"values\": [{\"id\": 2}]}"), 0, 0, 0};
    script[2] = (struct canned){CANNED_REPLY, page("{\"id\": 5, \"state\": \"MERGED\"}"), 0, 0, 0};
    script[3] = (struct canned){CANNED_REPLY, page("{\"hash\": \"" H1 "\"}"), 0, 0, 0};
    run_srv(script, 4);
    connect_client(5000);
    assert_int_equal(api_get_pullrequest_comments(client, "acme", "api", 4, &doc), 0);
    assert_string_equal(doc.text, "[\n  {\n    \"id\": 1\n  },\n  {\n    \"id\": 2\n  }\n]\n");
    api_doc_release(&doc);
    /* an answer about another pull request is not this one */
    assert_int_equal(api_get_pullrequest(client, "acme", "api", 4, &pr), -EIO);
    assert_int_equal(api_expand_hash(client, "acme", "api", "1111111", full), 0);
    assert_string_equal(full, H1);
    assert_int_equal(api_expand_hash(client, "acme", "api", H2, full), 0); /* no request */
    assert_string_equal(full, H2);
    assert_int_equal(api_expand_hash(client, "acme", "api", "12345", full), -EINVAL);
    assert_int_equal(api_expand_hash(client, "acme", "api", "ABCDEF1", full), -EINVAL);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 4);
    assert_string_equal(target(0, t, sizeof(t)),
                        "/2.0/repositories/acme/api/pullrequests/4/comments?pagelen=100");
    assert_string_equal(target(2, t, sizeof(t)), "/2.0/repositories/acme/api/pullrequests/4");
    assert_string_equal(target(3, t, sizeof(t)),
                        "/2.0/repositories/acme/api/commit/1111111?fields=hash");
}

static void test_list_subtree_groups_complete_directories(void **state)
{
    struct canned script[2];
    struct api_subtree sub;
    char t[512];

    (void)state;
    listen_srv();
    /* src/ listed 2 deep: src/a and src/b are complete, src/a/deep is not */
    script[0] =
        (struct canned){CANNED_REPLY,
                        page("{\"size\": 6, \"page\": 1, \"pagelen\": 100, \"values\": ["
                             "{\"path\": \"src/main.c\", \"type\": \"commit_file\", \"size\": 5},"
                             "{\"path\": \"src/a\", \"type\": \"commit_directory\"},"
                             "{\"path\": \"src/b\", \"type\": \"commit_directory\"},"
                             "{\"path\": \"src/a/deep\", \"type\": \"commit_directory\"},"
                             "{\"path\": \"src/a/x.c\", \"type\": \"commit_file\", \"size\": 1},"
                             "{\"path\": \"elsewhere/y\", \"type\": \"commit_file\"}]}"),
                        0, 0, 0};
    script[1] = (struct canned){
        CANNED_REPLY,
        page("{\"size\": 100000, \"page\": 1, \"pagelen\": 100, \"values\": [], \"next\": "
             "\"http://127.0.0.1:%d/2.0/repositories/acme/api/src/x/?page=2\"}"),
        0, 0, 0};
    run_srv(script, 2);
    connect_client(5000);
    assert_int_equal(api_list_subtree(client, "acme", "api", H1, "src", 2, 1000, &sub), 0);
    assert_int_equal(sub.count, 3);
    assert_string_equal(sub.dirs[0].path, "src");
    assert_int_equal(sub.dirs[0].entries.count, 3);
    assert_string_equal(sub.dirs[0].entries.items[2].name, "main.c"); /* sorted by name */
    assert_string_equal(sub.dirs[1].path, "src/a");
    assert_int_equal(sub.dirs[1].entries.count, 2);
    assert_string_equal(sub.dirs[2].path, "src/b");
    assert_int_equal(sub.dirs[2].entries.count, 0);
    api_subtree_release(&sub);
    /* too big: refused after the first page */
    assert_int_equal(api_list_subtree(client, "acme", "api", H1, "", 64, 20000, &sub), -EFBIG);
    assert_int_equal(sub.count, 0);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 2);
    assert_string_equal(target(0, t, sizeof(t)),
                        "/2.0/repositories/acme/api/src/" H1 "/src/?pagelen=100&max_depth=2"
                        "&fields=size%2Cpage%2Cpagelen%2Cnext%2Cvalues.path%2Cvalues.type%2C"
                        "values.size%2Cvalues.attributes");
}

/* An immutable response cache in memory: what api_list_subtree keeps. */
static struct {
    char url[512];
    char *body;
} kept[8];
static size_t nkept;

static int kept_load(void *ctx, const char *url, char **body, size_t *len)
{
    (void)ctx;
    for (size_t i = 0; i < nkept; i++)
        if (strcmp(kept[i].url, url) == 0) {
            *body = strdup(kept[i].body);
            *len = strlen(kept[i].body);
            return 0;
        }
    return -ENOENT;
}

static void kept_save(void *ctx, const char *url, const char *body, size_t len)
{
    (void)ctx;
    assert_true(nkept < sizeof(kept) / sizeof(kept[0]));
    snprintf(kept[nkept].url, sizeof(kept[nkept].url), "%s", url);
    kept[nkept++].body = strndup(body, len);
}

/*
 * Issue 14: each complete directory of a recursive listing is kept as the
 * answer a listing of it alone gets, so that it is found without a request
 * (offline, after a remount); one that is not complete is not kept.
 */
static void test_list_subtree_keeps_each_complete_directory(void **state)
{
    struct api_response_cache rc = {.load = kept_load, .save = kept_save};
    struct canned script[1];
    struct api_entry_list list;
    struct api_subtree sub;

    (void)state;
    nkept = 0;
    listen_srv();
    script[0] =
        (struct canned){CANNED_REPLY,
                        page("{\"size\": 4, \"page\": 1, \"pagelen\": 100, \"values\": ["
                             "{\"path\": \"src/main.c\", \"type\": \"commit_file\", \"size\": 5,"
                             " \"attributes\": [\"executable\"]},"
                             "{\"path\": \"src/a\", \"type\": \"commit_directory\"},"
                             "{\"path\": \"src/a/deep\", \"type\": \"commit_directory\"},"
                             "{\"path\": \"src/a/x \\u00e9.c\", \"type\": \"commit_file\", "
                             "\"size\": 1}]}"),
                        0, 0, 0};
    run_srv(script, 1);
    connect_client(5000);
    api_set_response_cache(client, &rc);
    assert_int_equal(api_list_subtree(client, "acme", "api", H1, "src", 2, 1000, &sub), 0);
    api_subtree_release(&sub);
    /* the recursive answer itself, src and src/a: not src/a/deep (not within reach) */
    assert_int_equal(nkept, 3);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 1);
    /* a listing of src/a alone, with the server gone, from what was kept */
    assert_int_equal(api_list_dir(client, "acme", "api", H1, "src/a", &list), 0);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].name, "deep");
    assert_int_equal(list.items[0].type, API_ENTRY_DIR);
    assert_string_equal(list.items[1].name, "x \xc3\xa9.c");
    assert_int_equal(list.items[1].size, 1);
    api_entry_list_release(&list);
    assert_int_equal(api_list_dir(client, "acme", "api", H1, "src", &list), 0);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[1].name, "main.c");
    assert_true(list.items[1].executable);
    api_entry_list_release(&list);
    for (size_t i = 0; i < nkept; i++) {
        assert_null(strstr(kept[i].url, "/src/a/deep/"));
        free(kept[i].body);
    }
    nkept = 0;
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
        0, 0, 0};
    script[1] = (struct canned){
        CANNED_REPLY,
        page("{\"values\": [{\"hash\": \"" H3 "\"}, {\"hash\": \"" H4 "\"}, {\"hash\": \"" H5
             "\"}],"
             "\"next\": "
             "\"http://127.0.0.1:%d/2.0/repositories/acme/api/commits/feature/x?page=xyz\"}"),
        0, 0, 0};
    script[2] = (struct canned){CANNED_REPLY, page("{\"values\": []}"), 0, 0, 0};
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
    struct canned script[] = {{CANNED_REPLY, NULL, 0, 0, 0}};
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
        0, 0, 0};
    script[1] = (struct canned){CANNED_REPLY, reply("200 OK", "{\"hash\": \"" H2 "\"}"), 0, 0, 0};
    script[2] = (struct canned){CANNED_REPLY, reply("200 OK", "{\"hash\": \"" H1 "\""), 0, 0, 0};
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
        {CANNED_REPLY, NULL, 0, 0, 0},
        {CANNED_REPLY, NULL, 0, 0, 0},
        {CANNED_REPLY, NULL, 0, 0, 0},
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
            script[k] =
                (struct canned){CANNED_REPLY, reply(cases[i].status, cases[i].body), 0, 0, 0};
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
    struct canned script[] = {{CANNED_REPLY, NULL, 0, 0, 0}, {CANNED_REPLY, NULL, 0, 0, 0}};
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

/* ---- stored mutable answers: freshness, revalidation, stale and offline use ---- */

/* A response cache in memory standing in for the store. */
struct fake_entry {
    char url[256];
    char *body;
    char *etag;
    int64_t fetched_at;
};

static struct fake_entry fake[8];
static size_t nfake, fake_saves;

static struct fake_entry *fake_find(const char *url)
{
    for (size_t i = 0; i < nfake; i++)
        if (strcmp(fake[i].url, url) == 0)
            return &fake[i];
    return NULL;
}

static int fake_load(void *ctx, const char *url, char **body, size_t *len, char **etag,
                     int64_t *fetched_at)
{
    struct fake_entry *e = fake_find(url);

    (void)ctx;
    if (!e)
        return -ENOENT;
    *body = strdup(e->body);
    *len = strlen(e->body);
    *etag = e->etag ? strdup(e->etag) : NULL;
    *fetched_at = e->fetched_at;
    return 0;
}

static void fake_put(const char *url, const char *body, size_t len, const char *etag,
                     int64_t fetched_at)
{
    struct fake_entry *e = fake_find(url);

    if (!e) {
        assert_true(nfake < sizeof(fake) / sizeof(fake[0]));
        e = &fake[nfake++];
        snprintf(e->url, sizeof(e->url), "%s", url);
    }
    free(e->body);
    free(e->etag);
    e->body = strndup(body, len);
    e->etag = etag ? strdup(etag) : NULL;
    e->fetched_at = fetched_at;
}

static void fake_save(void *ctx, const char *url, const char *body, size_t len, const char *etag,
                      int64_t fetched_at)
{
    (void)ctx;
    fake_put(url, body, len, etag, fetched_at);
    fake_saves++;
}

static int fake_teardown(void **state)
{
    for (size_t i = 0; i < nfake; i++) {
        free(fake[i].body);
        free(fake[i].etag);
    }
    memset(fake, 0, sizeof(fake));
    nfake = fake_saves = 0;
    return teardown(state);
}

/* The client for srv's port with a ttl, maybe offline, over the fake cache. */
static void connect_cached(long ttl, int offline)
{
    struct api_response_cache rc = {.load_mutable = fake_load, .save_mutable = fake_save};
    char base[64], err[256];
    struct api_config cfg = {.token = TOKEN,
                             .timeout_ms = 3000,
                             .connect_timeout_ms = 1000,
                             .ttl = ttl,
                             .offline = offline};

    snprintf(base, sizeof(base), "http://127.0.0.1:%d/2.0", srv.port);
    cfg.base_url = base;
    assert_int_equal(api_client_new(&cfg, &client, err, sizeof(err)), 0);
    api_set_response_cache(client, &rc);
}

static const char *ws_url(char *dst, size_t len, const char *ws)
{
    snprintf(dst, len, "http://127.0.0.1:%d/2.0/workspaces/%s", srv.port, ws);
    return dst;
}

static uint64_t requests_sent(void)
{
    struct api_stats st;

    api_get_stats(client, &st);
    return st.requests;
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

/* A sink appending to the file descriptor in its context, as the store's does. */
static int fd_write(void *ctx, const void *data, size_t len)
{
    int fd = (int)(intptr_t)ctx;
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

#define TO_FD(fd) (&(const struct api_sink){fd_write, NULL, (void *)(intptr_t)(fd)})

#define WS_OLD "{\"slug\":\"old\"}"
#define WS_NEW "{\"slug\":\"new\"}"

static void test_fresh_answer_costs_no_request(void **state)
{
    struct canned script[] = {{CANNED_REPLY, NULL, 0, 0, 0}};
    struct api_repo_list list;
    struct api_doc d;
    char url[128];

    (void)state;
    listen_srv();
    script[0].response = reply("500 Internal Server Error", "{}");
    run_srv(script, 1);
    connect_cached(60, 0);
    fake_put(ws_url(url, sizeof(url), "acme"), WS_OLD, strlen(WS_OLD), "\"e1\"", time(NULL) - 5);
    assert_int_equal(api_get_workspace(client, "acme", &d), 0);
    assert_string_equal(d.text, "{\n  \"slug\": \"old\"\n}\n");
    api_doc_release(&d);
    assert_int_equal(requests_sent(), 0);
    assert_int_equal(fake_saves, 0);
    server_release(&srv);

    /* Every page of a listing is kept; within ttl the whole walk is free. */
    struct canned pages[2];
    listen_srv();
    pages[0] =
        (struct canned){CANNED_REPLY,
                        page("{\"values\": [" REPO(
                            "zeta", "z") "], \"next\": "
                                         "\"http://127.0.0.1:%d/2.0/repositories/acme?page=2\"}"),
                        0, 0, 0};
    pages[1] =
        (struct canned){CANNED_REPLY, page("{\"values\": [" REPO("alpha", "a") "]}"), 0, 0, 0};
    run_srv(pages, 2);
    api_client_free(client);
    connect_cached(60, 0);
    assert_int_equal(api_list_repos(client, "acme", NULL, &list), 0);
    assert_int_equal(list.count, 2);
    api_repo_list_release(&list);
    assert_int_equal(fake_saves, 2);
    assert_int_equal(requests_sent(), 2);
    assert_int_equal(api_list_repos(client, "acme", NULL, &list), 0);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].slug, "alpha");
    api_repo_list_release(&list);
    assert_int_equal(requests_sent(), 2);
}

static void test_stale_answer_is_revalidated(void **state)
{
    struct canned script[] = {{CANNED_REPLY, NULL, 0, 0, 0}, {CANNED_REPLY, NULL, 0, 0, 0}};
    struct api_doc d;
    char url[128], h[128];
    int64_t before;

    (void)state;
    listen_srv();
    script[0].response = "HTTP/1.1 304 Not Modified\r\nETag: \"e1\"\r\nConnection: close\r\n\r\n";
    script[1].response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: \"e2\"\r\n"
                         "Content-Length: 14\r\nConnection: close\r\n\r\n" WS_NEW;
    run_srv(script, 2);
    connect_cached(60, 0);
    ws_url(url, sizeof(url), "acme");
    fake_put(url, WS_OLD, strlen(WS_OLD), "\"e1\"", time(NULL) - 1000);
    before = time(NULL);

    /* 304: the stored body, its time refreshed. */
    assert_int_equal(api_get_workspace(client, "acme", &d), 0);
    assert_string_equal(d.text, "{\n  \"slug\": \"old\"\n}\n");
    api_doc_release(&d);
    assert_true(fake_find(url)->fetched_at >= before);
    assert_string_equal(fake_find(url)->body, WS_OLD);
    assert_string_equal(fake_find(url)->etag, "\"e1\"");

    /* Fresh again: no request. Stale again: a 200 replaces the entry. */
    assert_int_equal(api_get_workspace(client, "acme", &d), 0);
    api_doc_release(&d);
    assert_int_equal(requests_sent(), 1);
    fake_find(url)->fetched_at = time(NULL) - 1000;
    assert_int_equal(api_get_workspace(client, "acme", &d), 0);
    assert_string_equal(d.text, "{\n  \"slug\": \"new\"\n}\n");
    api_doc_release(&d);
    assert_string_equal(fake_find(url)->body, WS_NEW);
    assert_string_equal(fake_find(url)->etag, "\"e2\"");
    assert_true(fake_find(url)->fetched_at >= before);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 2);
    assert_string_equal(request_header(srv.requests[0], "If-None-Match", h, sizeof(h)), "\"e1\"");
    assert_string_equal(request_header(srv.requests[1], "If-None-Match", h, sizeof(h)), "\"e1\"");
}

static void test_unreachable_api_serves_stale(void **state)
{
    struct api_doc d;
    char url[128];

    (void)state;
    listen_srv();
    server_release(&srv); /* connection refused */
    connect_cached(60, 0);
    fake_put(ws_url(url, sizeof(url), "acme"), WS_OLD, strlen(WS_OLD), NULL, time(NULL) - 1000);
    assert_int_equal(api_get_workspace(client, "acme", &d), 0);
    assert_string_equal(d.text, "{\n  \"slug\": \"old\"\n}\n");
    api_doc_release(&d);
    assert_int_equal(fake_saves, 0);
    /* The API is down: for a while, stored answers are served without trying again. */
    uint64_t sent = requests_sent();
    assert_true(sent >= 1);
    assert_int_equal(api_get_workspace(client, "acme", &d), 0);
    api_doc_release(&d);
    assert_int_equal(requests_sent(), sent);
    /* Nothing stored: the failure as it is. */
    assert_int_equal(api_get_workspace(client, "other", &d), -EIO);
    assert_null(d.text);
}

static void test_not_found_is_not_served_from_store(void **state)
{
    struct canned script[] = {{CANNED_REPLY, NULL, 0, 0, 0}, {CANNED_REPLY, NULL, 0, 0, 0}};
    struct api_doc d;
    char url[128];

    (void)state;
    listen_srv();
    script[0].response = reply("404 Not Found", "{\"type\":\"error\"}");
    script[1].response = reply("403 Forbidden", "{\"type\":\"error\"}");
    run_srv(script, 2);
    connect_cached(60, 0);
    fake_put(ws_url(url, sizeof(url), "acme"), WS_OLD, strlen(WS_OLD), "\"e1\"", time(NULL) - 1000);
    assert_int_equal(api_get_workspace(client, "acme", &d), -ENOENT);
    assert_null(d.text);
    assert_int_equal(api_get_workspace(client, "acme", &d), -EACCES);
    assert_null(d.text);
    assert_int_equal(fake_saves, 0);
    assert_string_equal(fake_find(url)->body, WS_OLD);
}

/* A FUSE thread's first try (api_set_nowait): what is stored and fresh, and nothing sent. */
static void test_nowait_uses_the_store_and_sends_nothing(void **state)
{
    struct canned script[] = {{CANNED_REPLY, NULL, 0, 0, 0}};
    struct capture cap;
    struct api_stats st;
    struct api_doc d;
    char url[128], *out;
    uint64_t size;

    (void)state;
    listen_srv();
    script[0].response = reply("200 OK", WS_NEW);
    run_srv(script, 1);
    connect_cached(60, 0);
    fake_put(ws_url(url, sizeof(url), "acme"), WS_OLD, strlen(WS_OLD), "\"e1\"", time(NULL) - 5);
    fake_put(ws_url(url, sizeof(url), "stale"), WS_OLD, strlen(WS_OLD), "\"e1\"",
             time(NULL) - 1000);
    api_set_nowait(1);
    capture_start(&cap);
    assert_int_equal(api_get_workspace(client, "acme", &d), 0); /* fresh in the store */
    api_doc_release(&d);
    assert_int_equal(api_get_workspace(client, "other", &d), -EWOULDBLOCK);
    assert_int_equal(api_get_workspace(client, "stale", &d), -EWOULDBLOCK); /* not served stale */
    assert_int_equal(api_get_file(client, "acme", "api", H1, "f", TO_FD(1), &size), -EWOULDBLOCK);
    out = capture_end(&cap);
    api_set_nowait(0);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(requests_sent(), 0);
    api_get_stats(client, &st);
    assert_int_equal(st.stale, 0);
    assert_int_equal(st.failures, 0);
    /* allowed to wait, the same thread asks */
    assert_int_equal(api_get_workspace(client, "other", &d), 0);
    assert_string_equal(d.text, "{\n  \"slug\": \"new\"\n}\n");
    api_doc_release(&d);
    assert_int_equal(requests_sent(), 1);
}

/* A caller that gives up once the server has its request (and holds on to it). */
static int server_has_it(void *ctx)
{
    struct canned_server *server = ctx;
    while (canned_take_record(server, 0) == 0)
        ;
    return server->nrequests > 0;
}

/* A request whose caller gave up (api_set_cancel) is abandoned: -EINTR, nothing said or kept. */
static void test_cancel_check_abandons_a_hung_request(void **state)
{
    struct canned script[] = {{CANNED_STALL, NULL, 15000, 0, 0}};
    struct capture cap;
    struct api_stats st;
    struct api_doc d;
    char *out;

    (void)state;
    listen_srv();
    run_srv(script, 1);
    connect_cached(60, 0);
    api_set_cancel(server_has_it, &srv);
    capture_start(&cap);
    assert_int_equal(api_get_workspace(client, "acme", &d), -EINTR);
    out = capture_end(&cap);
    api_set_cancel(NULL, NULL);
    assert_string_equal(out, "");
    free(out);
    if (!server_saw_hangup(&srv, 0, 15000))
        fail_msg("the client waited for the server to give up");
    api_get_stats(client, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.failures, 0);
    assert_int_equal(fake_saves, 0);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 1);
}

static void test_offline_uses_only_the_store(void **state)
{
    struct canned script[] = {{CANNED_REPLY, NULL, 0, 0, 0}};
    struct api_ref_list refs;
    struct api_doc d;
    char url[128];
    uint64_t size;

    (void)state;
    listen_srv();
    script[0].response = reply("200 OK", WS_NEW);
    run_srv(script, 1);
    connect_cached(60, 1);
    fake_put(ws_url(url, sizeof(url), "acme"), WS_OLD, strlen(WS_OLD), "\"e1\"",
             time(NULL) - 100000);
    assert_int_equal(api_get_workspace(client, "acme", &d), 0);
    assert_string_equal(d.text, "{\n  \"slug\": \"old\"\n}\n");
    api_doc_release(&d);
    assert_int_equal(api_get_workspace(client, "other", &d), -EIO);
    assert_int_equal(api_list_branches(client, "acme", "api", &refs), -EIO);
    assert_int_equal(api_get_commit(client, "acme", "api", H1, &(struct api_commit){0}), -EIO);
    assert_int_equal(api_get_file(client, "acme", "api", H1, "README", TO_FD(1), &size), -EIO);
    assert_int_equal(requests_sent(), 0);
    assert_int_equal(fake_saves, 0);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 0);
}

static size_t immutable_saves;

static int no_load(void *ctx, const char *url, char **body, size_t *len)
{
    (void)ctx;
    (void)url;
    (void)body;
    (void)len;
    return -ENOENT;
}

static void count_save(void *ctx, const char *url, const char *body, size_t len)
{
    (void)ctx;
    (void)url;
    (void)body;
    (void)len;
    immutable_saves++;
}

static void test_refused_answer_is_not_kept(void **state)
{
    struct canned script[] = {{CANNED_REPLY, NULL, 0, 0, 0}, {CANNED_REPLY, NULL, 0, 0, 0}};
    struct api_response_cache rc = {.load = no_load, .save = count_save};
    struct api_commit c;

    (void)state;
    immutable_saves = 0;
    listen_srv();
    /* a JSON object, but not the commit asked for: not kept, so asked again */
    script[0].response = reply("200 OK", "{\"type\":\"commit\",\"hash\":\"" H2 "\"}");
    script[1].response = reply("200 OK", "{\"type\":\"commit\",\"hash\":\"" H1 "\"}");
    run_srv(script, 2);
    connect_client(5000);
    api_set_response_cache(client, &rc);
    assert_int_equal(api_get_commit(client, "acme", "api", H1, &c), -EIO);
    assert_int_equal(immutable_saves, 0);
    assert_int_equal(api_get_commit(client, "acme", "api", H1, &c), 0);
    assert_string_equal(c.hash, H1);
    api_commit_release(&c);
    assert_int_equal(immutable_saves, 1);
}

/* Issue 14: a 200 body that does not parse is transient like a 5xx. */
static void test_spoilt_page_is_retried(void **state)
{
    struct canned script[3];
    struct api_repo_list list;
    struct capture cap;
    char *logged;

    (void)state;
    listen_srv();
    script[0] =
        (struct canned){CANNED_REPLY,
                        page("{\"values\": [" REPO(
                            "a", "a") "], \"next\": "
                                      "\"http://127.0.0.1:%d/2.0/repositories/acme?page=2\"}"),
                        0, 0, 0};
    script[1] = (struct canned){CANNED_REPLY, page("{\"values\": [" REPO("b", "b") "]"), 0, 0, 0};
    script[2] = (struct canned){CANNED_REPLY, page("{\"values\": [" REPO("b", "b") "]}"), 0, 0, 0};
    run_srv(script, 3);
    connect_client(5000);
    capture_start(&cap);
    assert_int_equal(api_list_repos(client, "acme", NULL, &list), 0);
    logged = capture_end(&cap);
    assert_int_equal(list.count, 2);
    api_repo_list_release(&list);
    assert_string_equal(logged, ""); /* a retry that worked is not worth a line */
    free(logged);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 3);
}

static void test_spoilt_forever_is_eio_logged_once(void **state)
{
    struct canned script[HTTP_MAX_ATTEMPTS + 1];
    struct api_response_cache rc = {.load = no_load, .save = count_save};
    struct api_commit c;
    struct capture cap;
    char *logged;

    (void)state;
    immutable_saves = 0;
    listen_srv();
    for (size_t i = 0; i < HTTP_MAX_ATTEMPTS; i++)
        script[i] = (struct canned){
            CANNED_REPLY, reply("200 OK", "{\"type\":\"commit\",\"hash\":\"" H1), 0, 0, 0};
    script[HTTP_MAX_ATTEMPTS] = (struct canned){
        CANNED_REPLY, reply("200 OK", "{\"type\":\"commit\",\"hash\":\"" H1 "\"}"), 0, 0, 0};
    run_srv(script, HTTP_MAX_ATTEMPTS + 1);
    connect_client(10000);
    api_set_response_cache(client, &rc);
    capture_start(&cap);
    assert_int_equal(api_get_commit(client, "acme", "api", H1, &c), -EIO);
    logged = capture_end(&cap);
    assert_non_null(strstr(logged, "/commit/" H1 ": HTTP 200: a body that is not JSON"));
    assert_non_null(strstr(logged, "(5 attempts)"));
    assert_null(strchr(logged, '\n') ? strchr(strchr(logged, '\n') + 1, '\n') : NULL);
    free(logged);
    assert_int_equal(immutable_saves, 0);
    assert_int_equal(requests_sent(), HTTP_MAX_ATTEMPTS);
    /* not an outage: the next call is sent, and gets the whole answer */
    assert_int_equal(api_get_commit(client, "acme", "api", H1, &c), 0);
    api_commit_release(&c);
    assert_int_equal(immutable_saves, 1);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, HTTP_MAX_ATTEMPTS + 1);
}

/*
 * Issue 14: once the API is known unreachable, every call of any kind fails
 * at once for a while, without a request, and the outage is one line.
 */
static void test_outage_pauses_every_kind_of_call(void **state)
{
    struct canned script[HTTP_MAX_ATTEMPTS];
    struct api_entry_list entries;
    struct api_ref_list refs;
    struct api_commit c;
    struct api_doc d;
    struct capture cap;
    struct api_stats st;
    char *logged;
    uint64_t size;
    FILE *f = tmpfile();

    (void)state;
    listen_srv();
    for (size_t i = 0; i < HTTP_MAX_ATTEMPTS; i++)
        script[i] = (struct canned){
            CANNED_REPLY, reply("503 Service Unavailable", "{\"type\":\"error\"}"), 0, 0, 0};
    run_srv(script, HTTP_MAX_ATTEMPTS);
    connect_client(10000);
    capture_start(&cap);
    assert_int_equal(api_get_workspace(client, "acme", &d), -EIO);
    assert_int_equal(api_list_branches(client, "acme", "api", &refs), -EIO);
    assert_int_equal(api_get_commit(client, "acme", "api", H1, &c), -EIO);
    assert_int_equal(api_list_dir(client, "acme", "api", H1, "", &entries), -EIO);
    assert_int_equal(api_get_file(client, "acme", "api", H1, "README", TO_FD(fileno(f)), &size),
                     -EIO);
    assert_int_equal(api_get_diff(client, "acme", "api", H1, TO_FD(fileno(f)), &size), -EIO);
    logged = capture_end(&cap);
    fclose(f);
    assert_non_null(strstr(logged, "/workspaces/acme: HTTP 503"));
    assert_int_equal(strchr(logged, '\n') - logged + 1, (long)strlen(logged)); /* one line */
    free(logged);
    api_get_stats(client, &st);
    assert_int_equal(st.requests, HTTP_MAX_ATTEMPTS);
    assert_int_equal(st.by_kind[API_KIND_WORKSPACE], 1);
    assert_int_equal(st.by_kind[API_KIND_BRANCHES] + st.by_kind[API_KIND_COMMIT] +
                         st.by_kind[API_KIND_TREE] + st.by_kind[API_KIND_FILE] +
                         st.by_kind[API_KIND_DIFF],
                     0);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, HTTP_MAX_ATTEMPTS);
}

/* ---- directory listings ---- */

#define SRC_FIELDS                                                                                 \
    "fields=size%2Cpage%2Cpagelen%2Cnext%2Cvalues.path%2Cvalues.type%2Cvalues.size"                \
    "%2Cvalues.attributes"

static void test_list_dir_pages(void **state)
{
    struct canned script[2];
    struct api_entry_list list;
    char t[512];

    (void)state;
    listen_srv();
    script[0] = (struct canned){
        CANNED_REPLY,
        page("{\"pagelen\": 3, \"values\": ["
             "{\"path\": \"docs/a b/zeta.md\", \"type\": \"commit_file\", \"size\": 12,"
             " \"attributes\": []},"
             "{\"path\": \"docs/a b/sub\", \"type\": \"commit_directory\"},"
             "{\"path\": \"elsewhere/x\", \"type\": \"commit_file\", \"size\": 1},"
             "{\"path\": \"docs/a b/run.sh\", \"type\": \"commit_file\", \"size\": 30,"
             " \"attributes\": [\"executable\"]}],"
             "\"next\": \"http://127.0.0.1:%d/2.0/repositories/acme/api/src/" H1
             "/docs/a%20b/?page=2\"}"),
        0, 0, 0};
    script[1] = (struct canned){
        CANNED_REPLY,
        page("{\"values\": ["
             "{\"path\": \"docs/a b/link\", \"type\": \"commit_file\", \"size\": 9,"
             " \"attributes\": [\"link\"]},"
             "{\"path\": \"docs/a b/zeta.md\", \"type\": \"commit_file\", \"size\": 99},"
             "{\"path\": \"docs/a b/big.bin\", \"type\": \"commit_file\", \"size\": 62914560,"
             " \"attributes\": [\"lfs\", \"binary\"]}]}"),
        0, 0, 0};
    run_srv(script, 2);
    connect_client(5000);
    assert_int_equal(api_list_dir(client, "acme", "api", H1, "docs/a b", &list), 0);
    assert_int_equal(list.count, 5); /* elsewhere/x skipped, zeta.md once */
    assert_string_equal(list.items[0].name, "big.bin");
    assert_int_equal(list.items[0].type, API_ENTRY_FILE);
    assert_int_equal(list.items[0].lfs, 1);
    assert_int_equal(list.items[0].size, 62914560);
    assert_string_equal(list.items[1].name, "link");
    assert_int_equal(list.items[1].type, API_ENTRY_LINK);
    assert_string_equal(list.items[2].name, "run.sh");
    assert_int_equal(list.items[2].executable, 1);
    assert_string_equal(list.items[3].name, "sub");
    assert_int_equal(list.items[3].type, API_ENTRY_DIR);
    assert_string_equal(list.items[4].name, "zeta.md");
    assert_int_equal(list.items[4].size, 12); /* the first of the two */
    api_entry_list_release(&list);
    assert_null(list.items);
    assert_int_equal(list.count, 0);
    api_entry_list_release(&list);
    api_entry_list_release(NULL);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 2);
    assert_string_equal(target(0, t, sizeof(t)), "/2.0/repositories/acme/api/src/" H1
                                                 "/docs/a%20b/?pagelen=100&" SRC_FIELDS);
    assert_string_equal(target(1, t, sizeof(t)),
                        "/2.0/repositories/acme/api/src/" H1 "/docs/a%20b/?page=2");
}

static void test_list_dir_urls(void **state)
{
    static const struct {
        const char *dir;
        const char *path;
    } cases[] = {
        {"", "/"},
        {"src", "/src/"},
        {"a b/c", "/a%20b/c/"},
        {"d\xc3\xa9j\xc3\xa0/\xe6\x97\xa5\xe6\x9c\xac", "/d%C3%A9j%C3%A0/%E6%97%A5%E6%9C%AC/"},
        {"x#y/q?r/50%/a+b", "/x%23y/q%3Fr/50%25/a%2Bb/"},
        {"semi;colon&eq=", "/semi%3Bcolon%26eq%3D/"},
    };
    struct canned script[6];
    struct api_entry_list list;
    char t[512], want[512];

    (void)state;
    listen_srv();
    for (size_t i = 0; i < 6; i++)
        script[i] = (struct canned){CANNED_REPLY, reply("200 OK", "{\"values\": []}"), 0, 0, 0};
    run_srv(script, 6);
    connect_client(5000);
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(api_list_dir(client, "my ws", "r", H1, cases[i].dir, &list), 0);
        assert_int_equal(list.count, 0);
        api_entry_list_release(&list);
    }
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 6);
    for (size_t i = 0; i < 6; i++) {
        snprintf(want, sizeof(want), "/2.0/repositories/my%%20ws/r/src/" H1 "%s?pagelen=100&%s",
                 cases[i].path, SRC_FIELDS);
        assert_string_equal(target(i, t, sizeof(t)), want);
    }
}

static void test_list_dir_bad_arguments(void **state)
{
    static const char *const bad_dirs[] = {".", "..", "a/../b", "a//b", "/a", "a/", "./a", "a/."};
    struct canned script[] = {{CANNED_REPLY, reply("200 OK", "{\"values\": []}"), 0, 0, 0}};
    struct api_entry_list list = {(struct api_entry *)1, 7};
    struct api_stats st;

    (void)state;
    listen_srv();
    run_srv(script, 1);
    connect_client(5000);
    for (size_t i = 0; i < sizeof(bad_dirs) / sizeof(bad_dirs[0]); i++) {
        if (api_list_dir(client, "acme", "api", H1, bad_dirs[i], &list) != -EINVAL)
            fail_msg("dir '%s' accepted", bad_dirs[i]);
        assert_null(list.items);
    }
    assert_int_equal(api_list_dir(client, "acme", "api", H1, NULL, &list), -EINVAL);
    assert_int_equal(api_list_dir(client, "acme", "api", "abc", "", &list), -EINVAL);
    assert_int_equal(api_list_dir(client, "acme", "api", NULL, "", &list), -EINVAL);
    assert_int_equal(
        api_list_dir(client, "acme", "api", "F7591A13EDA445D9A9167F98EB870319F4B6C2D8", "", &list),
        -EINVAL);
    assert_int_equal(api_list_dir(client, "acme", "..", H1, "", &list), -EINVAL);
    api_get_stats(client, &st);
    assert_int_equal(st.requests, 0);
}

static void test_list_dir_failures(void **state)
{
    struct canned script[3];
    struct api_entry_list list;

    (void)state;
    listen_srv();
    script[0] = (struct canned){
        CANNED_REPLY,
        reply("404 Not Found", "{\"type\":\"error\",\"error\":{\"message\":\"No such file\"}}"), 0,
        0, 0};
    script[1] = (struct canned){
        CANNED_REPLY,
        page("{\"values\": [{\"path\": \"a\", \"type\": \"commit_file\"}],"
             " \"next\": \"http://127.0.0.1:%d/2.0/repositories/acme/api/src/" H1 "/?page=2\"}"),
        0, 0, 0};
    script[2] =
        (struct canned){CANNED_REPLY, page("{\"values\": [{\"path\": \"b\"}, 3]}"), 0, 0, 0};
    run_srv(script, 3);
    connect_client(5000);
    assert_int_equal(api_list_dir(client, "acme", "api", H1, "nope", &list), -ENOENT);
    assert_null(list.items);
    assert_int_equal(api_list_dir(client, "acme", "api", H1, "", &list), -EIO);
    assert_null(list.items);
    assert_int_equal(list.count, 0);
}

/* ---- downloads ---- */

/* A response with a body of len bytes (which may hold NULs), kept until teardown. */
static const char *raw_reply(const char *status, const char *headers, const void *body, size_t len,
                             size_t *total)
{
    size_t cap = strlen(status) + strlen(headers) + len + 160;
    char *r = malloc(cap);
    int head;

    assert_non_null(r);
    head = snprintf(r, cap, "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
                    status, len, headers);
    memcpy(r + head, body, len);
    *total = (size_t)head + len;
    assert_true(nbuilt < sizeof(built) / sizeof(built[0]));
    built[nbuilt++] = r;
    return r;
}

static struct canned raw_step(const char *status, const char *headers, const void *body, size_t len)
{
    struct canned c = {CANNED_REPLY, NULL, 0, 0, 0};

    c.response = raw_reply(status, headers, body, len, &c.response_len);
    return c;
}

/* A temporary file already holding junk, so that a test sees it truncated. */
/* The whole content of fd (malloc'd) and its length. */
static char *file_content(int fd, size_t *len)
{
    off_t end = lseek(fd, 0, SEEK_END);
    char *data;

    assert_true(end >= 0);
    data = malloc((size_t)end + 1);
    assert_non_null(data);
    if (end > 0)
        assert_int_equal(pread(fd, data, (size_t)end, 0), end);
    data[end] = '\0';
    *len = (size_t)end;
    return data;
}

static void test_get_file_exact_bytes(void **state)
{
    static const char body[] = "line 1\n\0\xff\xfe binary \r\n\x01 end";
    struct canned script[1];
    uint64_t size = 7;
    size_t len;
    char t[512], h[128], *got;
    int fd = body_file();

    (void)state;
    listen_srv();
    script[0] =
        raw_step("200 OK", "Content-Type: application/octet-stream\r\n", body, sizeof(body) - 1);
    run_srv(script, 1);
    connect_client(5000);
    assert_int_equal(
        api_get_file(client, "acme", "api", H1, "dir x/f#?%+\xc3\xa9.bin", TO_FD(fd), &size), 0);
    assert_int_equal(size, sizeof(body) - 1);
    got = file_content(fd, &len);
    assert_int_equal(len, sizeof(body) - 1);
    assert_memory_equal(got, body, len);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), (off_t)len); /* written from offset 0 on */
    free(got);
    close(fd);
    server_stop(&srv);
    assert_string_equal(target(0, t, sizeof(t)),
                        "/2.0/repositories/acme/api/src/" H1 "/dir%20x/f%23%3F%25%2B%C3%A9.bin");
    assert_string_equal(request_header(srv.requests[0], "Authorization", h, sizeof(h)),
                        "Bearer " TOKEN);
}

static void test_get_file_retry_resumes_where_it_was_cut(void **state)
{
    static const char full[] = "first part, then the rest";
    static const char partial[] = "HTTP/1.1 200 OK\r\nContent-Length: 25\r\n"
                                  "Connection: close\r\n\r\nfirst part";
    struct canned script[3];
    struct api_stats st;
    uint64_t size;
    size_t len;
    char *got;
    int fd = body_file();

    (void)state;
    listen_srv();
    script[0] = raw_step("503 Service Unavailable", "Content-Type: application/json\r\n",
                         "{\"type\":\"error\",\"error\":{\"message\":\"busy\"}}", 43);
    script[1] = (struct canned){CANNED_REPLY, partial, 0, 0, 0}; /* cut short: retried */
    script[2] = raw_step("200 OK", "", full, sizeof(full) - 1);
    run_srv(script, 3);
    connect_client(10000);
    assert_int_equal(api_get_file(client, "acme", "api", H1, "f", TO_FD(fd), &size), 0);
    assert_int_equal(size, sizeof(full) - 1);
    /* the sink got every byte once: the retry's first ten were delivered before */
    got = file_content(fd, &len);
    assert_int_equal(len, sizeof(full) - 1);
    assert_memory_equal(got, full, len);
    free(got);
    close(fd);
    api_get_stats(client, &st);
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.failures, 0);
}

/* A sink whose readers all go away once bytes came (case 0), or once the server has the request. */
struct giving_up {
    int case_;
    int bytes_came;
};

static int give_up(void *ctx)
{
    const struct giving_up *g = ctx;
    return g->case_ == 0 ? g->bytes_came : server_has_it(&srv);
}

static int note_bytes(void *ctx, const void *data, size_t len)
{
    (void)data, (void)len;
    ((struct giving_up *)ctx)->bytes_came = 1;
    return 0;
}

static void test_get_file_cancelled_by_its_sink(void **state)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n"
                               "Connection: close\r\n\r\nthe start of a body";
    /* the server holds each connection for 15 s, far longer than the client's budget */
    struct canned stalled[2] = {{CANNED_REPLY_STALL, head, 15000, 0, 0},
                                {CANNED_STALL, NULL, 15000, 0, 0}};
    struct api_stats st;
    struct capture cap;
    uint64_t size = 9;
    char *out;

    (void)state;
    for (int i = 0; i < 2; i++) {
        struct giving_up g = {i, 0};
        const struct api_sink sink = {note_bytes, give_up, &g};

        listen_srv();
        run_srv(&stalled[i], 1);
        connect_client(10000);
        capture_start(&cap);
        assert_int_equal(api_get_file(client, "acme", "api", H1, "f", &sink, &size), -EINTR);
        out = capture_end(&cap);
        assert_string_equal(out, ""); /* nothing wrong to say of the API */
        free(out);
        assert_int_equal(size, 0);
        /* It hung up while the server still held the connection, and did not try again. */
        if (!server_saw_hangup(&srv, 0, 15000))
            fail_msg("case %d: the client waited for the server to give up", i);
        api_get_stats(client, &st);
        assert_int_equal(st.requests, 1);
        assert_int_equal(st.failures, 0);
        server_stop(&srv);
        assert_int_equal(srv.nrequests, 1);
        teardown(NULL);
        setup(NULL);
    }
}

static void test_get_file_errors_leave_nothing(void **state)
{
    static const struct {
        const char *status;
        int rc;
    } cases[] = {
        {"404 Not Found", -ENOENT}, {"401 Unauthorized", -EACCES}, {"403 Forbidden", -EACCES},
        {"400 Bad Request", -EIO},  {"304 Not Modified", -EIO},
    };
    static const char err[] = "{\"type\":\"error\",\"error\":{\"message\":\"No such file\"}}";
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct canned script[1];
        uint64_t size = 5;
        size_t len;
        char *got;
        int fd = body_file();

        listen_srv();
        script[0] =
            raw_step(cases[i].status, "Content-Type: application/json\r\n", err, sizeof(err) - 1);
        run_srv(script, 1);
        connect_client(5000);
        assert_int_equal(api_get_file(client, "acme", "api", H1, "a/b", TO_FD(fd), &size),
                         cases[i].rc);
        assert_int_equal(size, 0);
        got = file_content(fd, &len);
        assert_int_equal(len, 0); /* neither the junk nor the error body */
        free(got);
        close(fd);
        teardown(NULL);
        setup(NULL);
    }
}

static void test_get_file_persistent_5xx(void **state)
{
    struct canned script[HTTP_MAX_ATTEMPTS];
    uint64_t size;
    size_t len;
    char *got;
    int fd = body_file();

    (void)state;
    listen_srv();
    for (int i = 0; i < HTTP_MAX_ATTEMPTS; i++)
        script[i] = raw_step("502 Bad Gateway", "", "<html>bad gateway</html>", 24);
    run_srv(script, HTTP_MAX_ATTEMPTS);
    connect_client(10000);
    assert_int_equal(api_get_file(client, "acme", "api", H1, "f", TO_FD(fd), &size), -EIO);
    got = file_content(fd, &len);
    assert_int_equal(len, 0);
    free(got);
    close(fd);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, HTTP_MAX_ATTEMPTS);
}

static void test_get_file_lfs_redirect_drops_token(void **state)
{
    static const char media[] = "LFS object \0 with a NUL";
    struct canned_server media_srv;
    struct canned landing[1], hop[1];
    char loc[160], h[128], t[256], *got;
    uint64_t size;
    size_t len;
    int fd = body_file();

    (void)state;
    server_init(&media_srv);
    assert_int_equal(server_listen(&media_srv), 0);
    landing[0] =
        raw_step("200 OK", "Content-Type: application/octet-stream\r\n", media, sizeof(media) - 1);
    assert_int_equal(server_run(&media_srv, landing, 1), 0);
    listen_srv();
    snprintf(loc, sizeof(loc), "Location: http://127.0.0.1:%d/media/obj?sig=abc\r\n",
             media_srv.port);
    hop[0] = raw_step("302 Found", loc, "redirect body must not be stored", 32);
    run_srv(hop, 1);
    connect_client(5000);
    assert_int_equal(api_get_file(client, "acme", "api", H1, "big.bin", TO_FD(fd), &size), 0);
    assert_int_equal(size, sizeof(media) - 1);
    got = file_content(fd, &len);
    assert_int_equal(len, sizeof(media) - 1);
    assert_memory_equal(got, media, len);
    free(got);
    close(fd);
    server_stop(&srv);
    server_stop(&media_srv);
    assert_int_equal(srv.nrequests, 1);
    assert_int_equal(media_srv.nrequests, 1);
    assert_string_equal(request_header(srv.requests[0], "Authorization", h, sizeof(h)),
                        "Bearer " TOKEN);
    assert_string_equal(request_header(media_srv.requests[0], "Authorization", h, sizeof(h)), "");
    assert_null(strstr(media_srv.requests[0], TOKEN));
    assert_non_null(strstr(media_srv.requests[0], "GET /media/obj?sig=abc HTTP/1.1"));
    assert_string_equal(target(0, t, sizeof(t)), "/2.0/repositories/acme/api/src/" H1 "/big.bin");
    server_release(&media_srv);
}

static void test_get_file_stalls_fail_in_time(void **state)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n"
                               "Connection: close\r\n\r\nthe start of a body";
    /* the server holds each connection for 15 s, far longer than the client's budget */
    struct canned silent[2] = {{CANNED_STALL, NULL, 15000, 0, 0},
                               {CANNED_STALL, NULL, 15000, 0, 0}};
    struct canned stalled[2] = {{CANNED_REPLY_STALL, head, 15000, 0, 0},
                                {CANNED_REPLY_STALL, head, 15000, 0, 0}};
    struct canned *scripts[] = {silent, stalled};
    struct timespec t0;
    uint64_t size;
    size_t len;
    char *got;
    long took;

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        int fd = body_file();

        listen_srv();
        run_srv(scripts[i], 2);
        connect_client(1000);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(api_get_file(client, "acme", "api", H1, "f", TO_FD(fd), &size), -EIO);
        took = elapsed_ms_since(&t0);
        /* The client gave up: it hung up while the server still held the connection. */
        if (!server_saw_hangup(&srv, 0, 15000))
            fail_msg("case %zu: the client waited for the server to give up", i);
        /* A floor, which load can only make later: the stall window is at least 2 s. */
        if (took < 1800)
            fail_msg("case %zu gave up after %ld ms", i, took);
        /* what came before the stall was delivered, nothing else: the caller drops it */
        got = file_content(fd, &len);
        assert_int_equal(len, i == 0 ? 0 : strlen("the start of a body"));
        assert_memory_equal(got, "the start of a body", len);
        free(got);
        close(fd);
        server_stop(&srv);
        /* Case 0 tries no more past the deadline; in case 1 the first bytes renewed the
         * budget, and the retry waited behind the stall unanswered. */
        assert_int_equal(srv.nrequests, 1);
        teardown(NULL);
        setup(NULL);
    }
}

static void test_get_file_slow_but_steady_is_not_cut(void **state)
{
    enum { N = 48 * 1024 };
    struct canned script[1];
    char *body = malloc(N), *got;
    uint64_t size;
    size_t len;
    int fd = body_file();

    (void)state;
    assert_non_null(body);
    for (size_t i = 0; i < N; i++)
        body[i] = (char)('a' + i % 23);
    listen_srv();
    script[0] = raw_step("200 OK", "", body, N);
    script[0].action = CANNED_REPLY_PACED;
    script[0].pace_bytes = 4096;
    script[0].stall_ms = 200; /* about 2.4 s at 20 KiB/s: longer than the 1 s budget */
    run_srv(script, 1);
    connect_client(1000);
    assert_int_equal(api_get_file(client, "acme", "api", H1, "f", TO_FD(fd), &size), 0);
    assert_int_equal(size, N);
    got = file_content(fd, &len);
    assert_int_equal(len, N);
    assert_memory_equal(got, body, N);
    free(got);
    free(body);
    close(fd);
}

static void test_get_file_large(void **state)
{
    enum { N = 8 * 1024 * 1024 + 13 };
    struct canned script[1];
    char *body = malloc(N), *got;
    uint64_t size;
    size_t len;
    int fd = body_file();

    (void)state;
    assert_non_null(body);
    for (size_t i = 0; i < N; i++)
        body[i] = (char)(i * 7 + (i >> 11));
    listen_srv();
    script[0] = raw_step("200 OK", "", body, N);
    run_srv(script, 1);
    connect_client(20000);
    assert_int_equal(api_get_file(client, "acme", "api", H1, "f", TO_FD(fd), &size), 0);
    assert_int_equal(size, N);
    got = file_content(fd, &len);
    assert_int_equal(len, N);
    assert_memory_equal(got, body, N);
    free(got);
    free(body);
    close(fd);
}

static void test_get_file_write_error(void **state)
{
    enum { N = 5000 };
    struct canned script[2];
    struct rlimit saved, small = {1000, 0};
    struct capture cap;
    char body[N], *out;
    uint64_t size = 3;
    int fd = body_file();

    (void)state;
    memset(body, 'x', sizeof(body));
    listen_srv();
    script[0] = raw_step("200 OK", "", body, N);
    script[1] = script[0];
    run_srv(script, 2);
    connect_client(5000);
    /* files may not grow past 1000 bytes: write() goes short, then fails with EFBIG */
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small.rlim_max = saved.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    capture_start(&cap);
    /* the sink's own failure ends the download as it is: not retried, not the API's fault */
    assert_int_equal(api_get_file(client, "acme", "api", H1, "f", TO_FD(fd), &size), -EFBIG);
    out = capture_end(&cap);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(size, 0);
    close(fd);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 1);
}

static void test_get_file_bad_arguments(void **state)
{
    static const char *const bad_paths[] = {"", ".", "..", "a/../b", "a//b", "/a", "a/"};
    struct canned script[] = {{CANNED_REPLY, reply("200 OK", "{}"), 0, 0, 0}};
    struct api_stats st;
    uint64_t size;
    int fd = body_file();

    (void)state;
    listen_srv();
    run_srv(script, 1);
    connect_client(5000);
    for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        if (api_get_file(client, "acme", "api", H1, bad_paths[i], TO_FD(fd), &size) != -EINVAL)
            fail_msg("path '%s' accepted", bad_paths[i]);
    }
    assert_int_equal(api_get_file(client, "acme", "api", H1, NULL, TO_FD(fd), &size), -EINVAL);
    assert_int_equal(api_get_file(client, "acme", "api", "abc", "f", TO_FD(fd), &size), -EINVAL);
    assert_int_equal(api_get_file(client, "acme", "api", H1, "f", NULL, &size), -EINVAL);
    assert_int_equal(api_get_diff(client, "acme", "api", "abc", TO_FD(fd), &size), -EINVAL);
    assert_int_equal(api_get_diff(client, "acme", "api", H1, NULL, &size), -EINVAL);
    assert_int_equal(api_get_diff(client, "..", "api", H1, TO_FD(fd), &size), -EINVAL);
    api_get_stats(client, &st);
    assert_int_equal(st.requests, 0);
    close(fd);
}

/* ---- one repository ---- */

static const char *repo_url(char *dst, size_t len, const char *slug)
{
    snprintf(dst, len, "http://127.0.0.1:%d/2.0/repositories/acme/%s", srv.port, slug);
    return dst;
}

static void test_get_repo(void **state)
{
    struct canned script[2];
    struct api_repo r;
    char t[256];

    (void)state;
    listen_srv();
    script[0] = (struct canned){CANNED_REPLY, reply("200 OK", REPO("api", "a")), 0, 0, 0};
    script[1] = (struct canned){CANNED_REPLY, reply("200 OK", REPO("renamed", "a")), 0, 0, 0};
    run_srv(script, 2);
    connect_client(5000);
    assert_int_equal(api_get_repo(client, "acme", "api", &r), 0);
    assert_string_equal(r.slug, "api");
    assert_string_equal(r.uuid, "{a}");
    assert_string_equal(r.full_name, "acme/api");
    assert_string_equal(r.mainbranch, "main");
    assert_non_null(strstr(r.doc.text, "\"slug\": \"api\""));
    api_repo_release(&r);
    /* an answer about another repository (a rename redirects) is not this one */
    assert_int_equal(api_get_repo(client, "acme", "old", &r), -ENOENT);
    assert_null(r.slug);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 2);
    assert_string_equal(target(0, t, sizeof(t)), "/2.0/repositories/acme/api");
    assert_string_equal(target(1, t, sizeof(t)), "/2.0/repositories/acme/old");
}

static void test_get_repo_without_slug_is_not_kept(void **state)
{
    static const char *const bodies[] = {
        "{\"type\":\"repository\",\"uuid\":\"{a}\",\"full_name\":\"acme/api\"}",
        "{\"type\":\"repository\",\"slug\":\"\",\"uuid\":\"{a}\"}",
        "{\"type\":\"repository\",\"slug\":42,\"uuid\":\"{a}\"}",
        "{\"type\":\"repository\",\"slug\":\"api\\u0000\",\"uuid\":\"{a}\"}",
    };
    enum { N = sizeof(bodies) / sizeof(bodies[0]) };
    struct canned script[N + 1];
    struct capture cap;
    struct api_repo r;
    char url[128], *logged;
    int rc;

    (void)state;
    listen_srv();
    for (size_t i = 0; i < N; i++)
        script[i] = (struct canned){CANNED_REPLY, reply("200 OK", bodies[i]), 0, 0, 0};
    script[N] = (struct canned){CANNED_REPLY, reply("200 OK", REPO("api", "a")), 0, 0, 0};
    run_srv(script, N + 1);
    connect_cached(60, 0);
    repo_url(url, sizeof(url), "api");
    for (size_t i = 0; i < N; i++) {
        capture_start(&cap);
        rc = api_get_repo(client, "acme", "api", &r);
        logged = capture_end(&cap);
        if (rc != -EIO || r.slug || !strstr(logged, "a repository without a usable slug"))
            fail_msg("case %zu: %d, logged '%s'", i, rc, logged);
        free(logged);
        assert_int_equal(fake_saves, 0);
        assert_null(fake_find(url));
    }
    /* A stored one without a slug (damaged, or kept by an older bbfs) is asked for again. */
    fake_put(url, bodies[0], strlen(bodies[0]), NULL, time(NULL));
    capture_start(&cap);
    rc = api_get_repo(client, "acme", "api", &r);
    free(capture_end(&cap));
    assert_int_equal(rc, 0);
    assert_string_equal(r.slug, "api");
    api_repo_release(&r);
    assert_int_equal(fake_saves, 1);
    assert_string_equal(fake_find(url)->body, REPO("api", "a"));
    assert_int_equal(requests_sent(), N + 1);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, N + 1);
}

/* jansson's allocator for the test below: allocation number json_fail_at fails (0: none). */
static size_t json_allocs, json_fail_at;

static void *failing_json_malloc(size_t size)
{
    if (json_fail_at && ++json_allocs == json_fail_at)
        return NULL;
    return malloc(size);
}

/*
 * Every allocation jansson makes for api_get_repo fails in turn (the body's
 * parse, the document's text): each is an error, never a repository
 * without a slug, and never kept.
 */
static void test_get_repo_out_of_memory_is_not_kept(void **state)
{
    enum { MAX_CALLS = 200 };
    struct canned script[MAX_CALLS];
    size_t n, nomem = 0, saves;
    struct capture cap;
    struct api_repo r;
    char *logged;
    int rc;

    (void)state;
    listen_srv();
    script[0] = (struct canned){CANNED_REPLY, reply("200 OK", REPO("api", "a")), 0, 0, 0};
    for (n = 1; n < MAX_CALLS; n++)
        script[n] = script[0];
    run_srv(script, MAX_CALLS);
    connect_cached(0, 0); /* ttl 0: every call asks the API */
    for (n = 1; n < MAX_CALLS; n++) {
        saves = fake_saves;
        json_allocs = 0;
        json_fail_at = n;
        json_set_alloc_funcs(failing_json_malloc, free);
        capture_start(&cap); /* a body jansson could not parse is logged as not JSON */
        rc = api_get_repo(client, "acme", "api", &r);
        logged = capture_end(&cap);
        json_set_alloc_funcs(malloc, free);
        json_fail_at = 0;
        free(logged);
        assert_int_equal(requests_sent(), n); /* nothing retried */
        if (rc == 0) {
            assert_string_equal(r.slug, "api");
            api_repo_release(&r);
            if (json_allocs < n)
                break; /* nothing failed: every allocation has had its turn */
            continue;
        }
        if (rc != -ENOMEM && rc != -EIO)
            fail_msg("allocation %zu: %d", n, rc);
        nomem += rc == -ENOMEM;
        assert_null(r.slug);
        assert_int_equal(fake_saves, saves);
    }
    assert_true(n < MAX_CALLS);
    assert_true(nomem > 0);
    assert_true(fake_saves > 0);
}

static void test_get_diff(void **state)
{
    static const char diff[] = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
    struct canned script[1 + HTTP_MAX_ATTEMPTS];
    struct capture cap;
    uint64_t size;
    size_t len, lines = 0;
    char t[256], *got, *out;
    int fd = body_file();

    (void)state;
    listen_srv();
    script[0] = raw_step("200 OK", "Content-Type: text/plain\r\n", diff, sizeof(diff) - 1);
    for (int i = 1; i <= HTTP_MAX_ATTEMPTS; i++)
        script[i] = raw_step("555 Unknown", "Content-Type: application/json\r\n",
                             "{\"type\":\"error\",\"error\":{\"message\":\"Timeout\"}}", 45);
    run_srv(script, 1 + HTTP_MAX_ATTEMPTS);
    connect_client(10000);
    assert_int_equal(api_get_diff(client, "acme", "api", H2, TO_FD(fd), &size), 0);
    assert_int_equal(size, sizeof(diff) - 1);
    got = file_content(fd, &len);
    assert_string_equal(got, diff);
    free(got);

    capture_start(&cap);
    assert_int_equal(api_get_diff(client, "acme", "api", H3, TO_FD(fd), &size), -EIO);
    out = capture_end(&cap);
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    if (lines != 1 || !strstr(out, "too large for the API") || !strstr(out, H3))
        fail_msg("logged: '%s'", out);
    free(out);
    assert_int_equal(size, 0);
    got = file_content(fd, &len);
    assert_int_equal(len, sizeof(diff) - 1); /* nothing of the error answers came */
    free(got);
    close(fd);
    server_stop(&srv);
    assert_int_equal(srv.nrequests, 1 + HTTP_MAX_ATTEMPTS);
    assert_string_equal(target(0, t, sizeof(t)), "/2.0/repositories/acme/api/diff/" H2);
    assert_string_equal(target(1, t, sizeof(t)), "/2.0/repositories/acme/api/diff/" H3);
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
        cmocka_unit_test_setup_teardown(test_spoilt_page_is_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spoilt_forever_is_eio_logged_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage_pauses_every_kind_of_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_page_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_branches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_tags_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pullrequests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_subtree_groups_complete_directories, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pullrequest_comments_and_hashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_subtree_keeps_each_complete_directory, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_list_commits_stops_at_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_commits_short_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_docs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_access_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_answer_costs_no_request, setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_stale_answer_is_revalidated, setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_api_serves_stale, setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_not_found_is_not_served_from_store, setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(test_offline_uses_only_the_store, setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_nowait_uses_the_store_and_sends_nothing, setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_check_abandons_a_hung_request, setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(test_refused_answer_is_not_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_dir_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_dir_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_dir_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_dir_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_file_exact_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_file_retry_resumes_where_it_was_cut, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_get_file_cancelled_by_its_sink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_file_errors_leave_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_file_persistent_5xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_file_lfs_redirect_drops_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_file_stalls_fail_in_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_file_slow_but_steady_is_not_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_file_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_file_write_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_file_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_repo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_repo_without_slug_is_not_kept, setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(test_get_repo_out_of_memory_is_not_kept, setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(test_get_diff, setup, teardown),
    };
    int rc;

    signal(SIGPIPE, SIG_IGN);
    api_global_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    api_global_cleanup();
    return rc;
}

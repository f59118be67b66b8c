/*
 * test_url.c - percent-encoding, URL building, base URL checks (scheme,
 * loopback-only http), same-origin checks and the !api rewrite of api/url.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/url.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void test_encode_table(void **state)
{
    static const struct {
        const char *in;
        int keep_slash;
        const char *out;
    } cases[] = {
        {"plain", 0, "plain"},
        {"AZaz09-._~", 0, "AZaz09-._~"},
        {"with space", 0, "with%20space"},
        {"a+b", 0, "a%2Bb"},
        {"100%", 0, "100%25"},
        {"x#y", 0, "x%23y"},
        {"x?y", 0, "x%3Fy"},
        {"a&b=c", 0, "a%26b%3Dc"},
        {"feature/x", 0, "feature%2Fx"},
        {"feature/x", 1, "feature/x"},
        {"a b/c#d", 1, "a%20b/c%23d"},
        {"ünï", 0, "%C3%BCn%C3%AF"},
        {"日本", 0, "%E6%97%A5%E6%9C%AC"},
        {"{uuid}", 0, "%7Buuid%7D"},
        {"project.key=\"PLAT\"", 0, "project.key%3D%22PLAT%22"},
        {"new\nline", 0, "new%0Aline"},
        {"", 0, ""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        buf_init(&b, 1024);
        assert_int_equal(url_encode(&b, cases[i].in, cases[i].keep_slash), 0);
        char *got = buf_take(&b, NULL);
        assert_non_null(got);
        assert_string_equal(got, cases[i].out);
        free(got);
        buf_release(&b);
    }
}

static void test_build_url(void **state)
{
    struct buf u;
    char *url;

    (void)state;
    url_init(&u, "https://api.bitbucket.org/2.0");
    url_add_segment(&u, "repositories");
    url_add_segment(&u, "acme");
    url_add_query(&u, "pagelen", "100");
    url_add_query(&u, "sort", "slug");
    url_add_query(&u, "q", "project.key=\"PLAT\"");
    url = buf_take(&u, NULL);
    assert_string_equal(url, "https://api.bitbucket.org/2.0/repositories/acme?pagelen=100&sort=slug"
                             "&q=project.key%3D%22PLAT%22");
    free(url);
    buf_release(&u);

    url_init(&u, "http://127.0.0.1:8080/2.0");
    url_add_segment(&u, "repositories");
    url_add_segment(&u, "acme");
    url_add_segment(&u, "my repo");
    url_add_segment(&u, "commits");
    url_add_path(&u, "feature/a b");
    url_add_query(&u, "fields", "next,values.hash");
    url = buf_take(&u, NULL);
    assert_string_equal(url, "http://127.0.0.1:8080/2.0/repositories/acme/my%20repo/commits/"
                             "feature/a%20b?fields=next%2Cvalues.hash");
    free(url);
    buf_release(&u);

    /* a '+' in a fields spec must not turn into a space */
    url_init(&u, "https://h");
    url_add_query(&u, "fields", "+values.reviewers");
    url = buf_take(&u, NULL);
    assert_string_equal(url, "https://h?fields=%2Bvalues.reviewers");
    free(url);
    buf_release(&u);
}

static void test_bad_segments(void **state)
{
    static const char *const bad[] = {"", ".", ".."};
    static const char *const bad_paths[] = {"", ".", "..", "a/../b", "a//b", "/a", "a/", "./a"};
    struct buf u;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        url_init(&u, "https://h/2.0");
        assert_int_equal(url_add_segment(&u, bad[i]), -EINVAL);
        /* the error sticks: the URL can no longer be taken */
        url_add_segment(&u, "fine");
        assert_null(buf_take(&u, NULL));
        buf_release(&u);
    }
    for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        url_init(&u, "https://h/2.0");
        assert_int_equal(url_add_path(&u, bad_paths[i]), -EINVAL);
        buf_release(&u);
    }
    /* "..." and ".x" are ordinary names */
    url_init(&u, "https://h");
    assert_int_equal(url_add_segment(&u, "..."), 0);
    assert_int_equal(url_add_path(&u, ".x/y.z"), 0);
    char *url = buf_take(&u, NULL);
    assert_string_equal(url, "https://h/.../.x/y.z");
    free(url);
    buf_release(&u);
}

static void test_dir_urls(void **state)
{
    static const struct {
        const char *dir;
        const char *url; /* NULL: refused */
    } cases[] = {
        {"", "https://h/src/H/"},
        {"docs", "https://h/src/H/docs/"},
        {"a b/c d", "https://h/src/H/a%20b/c%20d/"},
        {"d\xc3\xa9j\xc3\xa0/\xe6\x97\xa5\xe6\x9c\xac",
         "https://h/src/H/d%C3%A9j%C3%A0/%E6%97%A5%E6%9C%AC/"},
        {"x#y/q?r", "https://h/src/H/x%23y/q%3Fr/"},
        {"100%/a+b", "https://h/src/H/100%25/a%2Bb/"},
        {"a&b=c;d", "https://h/src/H/a%26b%3Dc%3Bd/"},
        {"...", "https://h/src/H/.../"},
        {".hidden/x.y", "https://h/src/H/.hidden/x.y/"},
        {"tab\there\x7f", "https://h/src/H/tab%09here%7F/"},
        {".", NULL},
        {"..", NULL},
        {"a/..", NULL},
        {"a/./b", NULL},
        {"a//b", NULL},
        {"/a", NULL},
        {"a/", NULL},
        {"/", NULL},
        {NULL, NULL},
    };
    struct buf u;
    char *url;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        url_init(&u, "https://h");
        url_add_segment(&u, "src");
        url_add_segment(&u, "H");
        int rc = url_add_dir(&u, cases[i].dir);
        url = buf_take(&u, NULL);
        if (cases[i].url) {
            assert_int_equal(rc, 0);
            if (!url || strcmp(url, cases[i].url) != 0)
                fail_msg("case %zu: got '%s'", i, url ? url : "(null)");
        } else {
            assert_int_equal(rc, -EINVAL);
            assert_null(url);
        }
        free(url);
        buf_release(&u);
    }
}

static void test_url_too_long(void **state)
{
    char *big = malloc(URL_MAX + 2);
    struct buf u;

    (void)state;
    assert_non_null(big);
    memset(big, 'a', URL_MAX + 1);
    big[URL_MAX + 1] = '\0';
    url_init(&u, "https://h");
    assert_int_equal(url_add_segment(&u, big), -EFBIG);
    assert_null(buf_take(&u, NULL));
    buf_release(&u);
    free(big);
}

static void test_loopback(void **state)
{
    static const struct {
        const char *host;
        int loopback;
    } cases[] = {
        {"localhost", 1},
        {"LocalHost", 1},
        {"127.0.0.1", 1},
        {"127.0.0.5", 1},
        {"127.255.1.2", 1},
        {"[::1]", 1},
        {"[::ffff:127.0.0.1]", 1},
        {"128.0.0.1", 0},
        {"10.0.0.1", 0},
        {"example.com", 0},
        {"localhost.evil", 0},
        {"[::2]", 0},
        {"::1", 0},
        {"", 0},
        {"127.0.0.1.nip.io", 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (url_host_is_loopback(cases[i].host) != cases[i].loopback)
            fail_msg("host '%s': expected %d", cases[i].host, cases[i].loopback);
    }
    assert_false(url_host_is_loopback(NULL));
}

static void test_check_base(void **state)
{
    static const struct {
        const char *url;
        int rc;
        const char *norm;
    } cases[] = {
        {"https://api.bitbucket.org/2.0", 0, "https://api.bitbucket.org/2.0"},
        {"https://api.bitbucket.org/2.0/", 0, "https://api.bitbucket.org/2.0"},
        {"HTTPS://api.bitbucket.org/2.0", 0, "https://api.bitbucket.org/2.0"},
        {"http://localhost/2.0", 0, "http://localhost/2.0"},
        {"http://localhost:8080", 0, "http://localhost:8080"},
        {"http://127.0.0.5:9/2.0", 0, "http://127.0.0.5:9/2.0"},
        {"http://[::1]:8080/2.0", 0, "http://[::1]:8080/2.0"},
        {"http://example.com/2.0", -EINVAL, NULL},
        {"http://10.0.0.1/2.0", -EINVAL, NULL},
        {"http://128.0.0.1/2.0", -EINVAL, NULL},
        {"ftp://127.0.0.1/2.0", -EINVAL, NULL},
        {"file:///etc/passwd", -EINVAL, NULL},
        {"api.bitbucket.org/2.0", -EINVAL, NULL},
        {"https://user:pw@api.bitbucket.org/2.0", -EINVAL, NULL},
        {"https://api.bitbucket.org/2.0?x=1", -EINVAL, NULL},
        {"https://api.bitbucket.org/2.0#frag", -EINVAL, NULL},
        {"", -EINVAL, NULL},
        {"not a url", -EINVAL, NULL},
    };
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *norm = (char *)"untouched";
        err[0] = '\0';
        int rc = url_check_base(cases[i].url, &norm, err, sizeof(err));
        if (rc != cases[i].rc)
            fail_msg("'%s': rc %d, expected %d (%s)", cases[i].url, rc, cases[i].rc, err);
        if (cases[i].norm) {
            assert_string_equal(norm, cases[i].norm);
            free(norm);
        } else {
            assert_null(norm);
            assert_true(err[0] != '\0');
            assert_null(strchr(err, '\n'));
        }
    }
    /* the message names the problem */
    char *norm;
    url_check_base("http://example.com/2.0", &norm, err, sizeof(err));
    assert_non_null(strstr(err, "loopback"));
}

static void test_same_origin(void **state)
{
    static const struct {
        const char *a, *b;
        int same;
    } cases[] = {
        {"https://api.bitbucket.org/2.0", "https://api.bitbucket.org/2.0/x?page=2", 1},
        {"https://api.bitbucket.org/2.0", "https://API.bitbucket.org:443/other", 1},
        {"https://api.bitbucket.org/2.0", "http://api.bitbucket.org/2.0/x", 0},
        {"https://api.bitbucket.org/2.0", "https://api.bitbucket.org:8443/2.0/x", 0},
        {"https://api.bitbucket.org/2.0", "https://evil.example/2.0/x", 0},
        {"https://api.bitbucket.org/2.0", "https://api.bitbucket.org.evil.example/2.0", 0},
        {"https://api.bitbucket.org/2.0", "https://api.bitbucket.org@evil.example/2.0", 0},
        {"http://127.0.0.1:8080/2.0", "http://127.0.0.1:8080/2.0/r?page=3", 1},
        {"http://127.0.0.1:8080/2.0", "http://127.0.0.1:8081/2.0/r?page=3", 0},
        {"http://127.0.0.1:8080/2.0", "http://localhost:8080/2.0/r", 0},
        {"http://[::1]:8080/2.0", "http://[::1]:8080/x", 1},
        {"https://api.bitbucket.org/2.0", "/2.0/relative", 0},
        {"https://api.bitbucket.org/2.0", "", 0},
        {"https://api.bitbucket.org/2.0", "javascript:alert(1)", 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (url_same_origin(cases[i].a, cases[i].b) != cases[i].same)
            fail_msg("'%s' vs '%s': expected %d", cases[i].a, cases[i].b, cases[i].same);
    }
}

static void test_rewrite_alias(void **state)
{
    static const struct {
        const char *base, *in, *out;
    } cases[] = {
        {"https://api.bitbucket.org/2.0", "https://bitbucket.org/!api/2.0/repositories/a/b?page=2",
         "https://api.bitbucket.org/2.0/repositories/a/b?page=2"},
        {"http://127.0.0.1:8080/2.0", "https://bitbucket.org/!api/2.0/repositories/a",
         "http://127.0.0.1:8080/2.0/repositories/a"},
        {"http://127.0.0.1:8080", "https://bitbucket.org/!api/2.0/x",
         "http://127.0.0.1:8080/2.0/x"},
        {"https://api.bitbucket.org/2.0", "https://api.bitbucket.org/2.0/x?page=2",
         "https://api.bitbucket.org/2.0/x?page=2"},
        {"https://api.bitbucket.org/2.0", "https://bitbucket.org/acme/repo",
         "https://bitbucket.org/acme/repo"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        assert_int_equal(url_rewrite_api_alias(cases[i].base, cases[i].in, &out), 0);
        assert_string_equal(out, cases[i].out);
        free(out);
    }
}

static void test_for_log(void **state)
{
    char shown[64];

    (void)state;
    assert_string_equal(url_for_log("https://h/2.0/repositories/acme?q=secret%20stuff&page=2",
                                    shown, sizeof(shown)),
                        "https://h/2.0/repositories/acme");
    assert_string_equal(url_for_log("https://h/x#frag", shown, sizeof(shown)), "https://h/x");
    /* a hostile link cannot forge a log line */
    assert_string_equal(url_for_log("https://h/a\nb\x1b[2J?q=1", shown, sizeof(shown)),
                        "https://h/a?b?[2J");
    /* cut to the buffer, always terminated */
    assert_string_equal(url_for_log("https://h/0123456789", shown, 12), "https://h/0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_table), cmocka_unit_test(test_build_url),
        cmocka_unit_test(test_bad_segments), cmocka_unit_test(test_url_too_long),
        cmocka_unit_test(test_loopback),     cmocka_unit_test(test_check_base),
        cmocka_unit_test(test_same_origin),  cmocka_unit_test(test_rewrite_alias),
        cmocka_unit_test(test_for_log),      cmocka_unit_test(test_dir_urls),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}

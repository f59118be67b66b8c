/*
 * test_page.c - the pagination envelope (api/page.c): shape checks that
 * make a listing fail as a whole, and the rules for following "next"
 * (same origin only, !api rewrite, loops, a page cap).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/page.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BASE "https://api.bitbucket.org/2.0"
#define FIRST BASE "/repositories/acme?pagelen=100&sort=slug"

static void test_envelope_shapes(void **state)
{
    static const struct {
        const char *body;
        int rc;
        size_t count;
        const char *next;
    } cases[] = {
        {"{\"values\": [], \"pagelen\": 10}", 0, 0, NULL},
        {"{\"values\": [{\"a\": 1}, {}], \"next\": \"https://x/2\"}", 0, 2, "https://x/2"},
        {"{\"values\": [{}], \"next\": null}", 0, 1, NULL},
        {"{\"values\": [{\"description\": \"nul \\u0000 inside\"}]}", 0, 1, NULL},
        {"{\"size\": 3, \"page\": 1, \"pagelen\": 1, \"values\": [{}], \"previous\": 5}", 0, 1,
         NULL},
        {"", -EIO, 0, NULL},
        {"not json", -EIO, 0, NULL},
        {"{\"values\": [", -EIO, 0, NULL},
        {"[]", -EIO, 0, NULL},
        {"{}", -EIO, 0, NULL},
        {"{\"next\": \"https://x/2\"}", -EIO, 0, NULL},
        {"{\"values\": \"oops\"}", -EIO, 0, NULL},
        {"{\"values\": {}}", -EIO, 0, NULL},
        {"{\"values\": null}", -EIO, 0, NULL},
        {"{\"values\": [{}, 3]}", -EIO, 0, NULL},
        {"{\"values\": [{}, \"x\"]}", -EIO, 0, NULL},
        {"{\"values\": [{}, null]}", -EIO, 0, NULL},
        {"{\"values\": [], \"next\": 12345}", -EIO, 0, NULL},
        {"{\"values\": [], \"next\": [\"https://x/2\"]}", -EIO, 0, NULL},
        {"{\"type\": 7, \"values\": \"oops\", \"next\": 12345, \"pagelen\": \"ten\"}", -EIO, 0,
         NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *root = (json_t *)1, *values = (json_t *)1;
        const char *next = "untouched";
        int rc = page_parse("http://test/page?x=1", cases[i].body, strlen(cases[i].body), &root,
                            &values, &next);
        if (rc != cases[i].rc)
            fail_msg("case %zu '%s': rc %d, expected %d", i, cases[i].body, rc, cases[i].rc);
        if (rc == 0) {
            assert_int_equal(json_array_size(values), cases[i].count);
            if (cases[i].next)
                assert_string_equal(next, cases[i].next);
            else
                assert_null(next);
            json_decref(root);
        } else {
            assert_null(root);
            assert_null(values);
            assert_null(next);
        }
    }
}

/* Follows the given next links in order; returns the rc of the last step. */
static int walk(const char *base, const char *first, const char *const *links, size_t n,
                size_t max_pages, char **last)
{
    struct page_walk w;
    int rc = 0;

    *last = NULL;
    assert_int_equal(page_walk_init(&w, base, first, max_pages), 0);
    for (size_t i = 0; i < n; i++) {
        free(*last);
        *last = NULL;
        rc = page_walk_next(&w, links[i], last);
        if (rc < 0)
            break;
    }
    page_walk_release(&w);
    return rc;
}

static void test_next_rules(void **state)
{
    static const struct {
        const char *base;
        const char *links[4];
        int rc;
        const char *last;
    } cases[] = {
        /* ordinary opaque cursors on the API host */
        {BASE,
         {BASE "/repositories/acme?page=2", BASE "/repositories/acme?page=3"},
         0,
         BASE "/repositories/acme?page=3"},
        {BASE,
         {BASE "/repositories/acme/api/commits/master?page=dbtR"},
         0,
         BASE "/repositories/acme/api/commits/master?page=dbtR"},
        /* the end */
        {BASE, {NULL}, 0, NULL},
        /* the !api alias is rewritten onto the base */
        {BASE,
         {"https://bitbucket.org/!api/2.0/repositories/acme?page=2"},
         0,
         BASE "/repositories/acme?page=2"},
        {"http://127.0.0.1:8080/2.0",
         {"https://bitbucket.org/!api/2.0/repositories/acme?page=2"},
         0,
         "http://127.0.0.1:8080/2.0/repositories/acme?page=2"},
        /* another host, scheme or port: refused, the token would go there */
        {BASE, {"https://evil.example/2.0/repositories/acme?page=2"}, -EIO, NULL},
        {BASE, {"http://api.bitbucket.org/2.0/repositories/acme?page=2"}, -EIO, NULL},
        {BASE, {"https://api.bitbucket.org:444/2.0/repositories/acme?page=2"}, -EIO, NULL},
        {BASE, {"https://api.bitbucket.org@evil.example/2.0/r?page=2"}, -EIO, NULL},
        {BASE, {"https://bitbucket.org/acme/page2"}, -EIO, NULL},
        {"http://127.0.0.1:8080/2.0", {"http://127.0.0.1:8081/2.0/r?page=2"}, -EIO, NULL},
        /* not a URL at all */
        {BASE, {""}, -EIO, NULL},
        {BASE, {"?page=2"}, -EIO, NULL},
        {BASE, {"javascript:alert(1)"}, -EIO, NULL},
        /* loops: back to the first page, or to an earlier next */
        {BASE, {FIRST}, -EIO, NULL},
        {BASE, {BASE "/r?page=2", BASE "/r?page=3", BASE "/r?page=2"}, -EIO, NULL},
        {BASE, {BASE "/r?page=2", BASE "/r?page=2"}, -EIO, NULL},
        /* a loop through the alias is still a loop */
        {BASE, {BASE "/r?page=2", "https://bitbucket.org/!api/2.0/r?page=2"}, -EIO, NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = 0;
        char *last;
        while (n < 4 && cases[i].links[n])
            n++;
        int rc = walk(cases[i].base, FIRST, cases[i].links, n ? n : 1, PAGE_MAX_PAGES, &last);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d, expected %d", i, rc, cases[i].rc);
        if (cases[i].last)
            assert_string_equal(last, cases[i].last);
        else
            assert_null(last);
        free(last);
    }
}

static void test_page_cap(void **state)
{
    char links[5][64];
    const char *ptrs[5];
    char *last;

    (void)state;
    for (int i = 0; i < 5; i++) {
        snprintf(links[i], sizeof(links[i]), BASE "/r?page=%d", i + 2);
        ptrs[i] = links[i];
    }
    /* 5 pages allowed: the first plus four next links */
    assert_int_equal(walk(BASE, FIRST, ptrs, 4, 5, &last), 0);
    assert_string_equal(last, BASE "/r?page=5");
    free(last);
    /* the fifth next link would be the sixth page */
    assert_int_equal(walk(BASE, FIRST, ptrs, 5, 5, &last), -EIO);
    assert_null(last);
}

static void test_many_pages_no_false_loop(void **state)
{
    struct page_walk w;
    char link[96], *url;

    (void)state;
    assert_int_equal(page_walk_init(&w, BASE, FIRST, PAGE_MAX_PAGES), 0);
    for (int i = 2; i <= 2000; i++) {
        snprintf(link, sizeof(link), BASE "/repositories/acme/api/commits?page=%d", i);
        assert_int_equal(page_walk_next(&w, link, &url), 0);
        assert_string_equal(url, link);
        free(url);
    }
    assert_int_equal(w.pages, 2000);
    page_walk_release(&w);
    page_walk_release(&w);
}

static void expect_page_url(const char *second, size_t page, const char *want)
{
    char *url;
    assert_int_equal(page_url_for(second, page, &url), 0);
    assert_string_equal(url, want);
    free(url);
}

static void test_page_urls(void **state)
{
    char *url;
    (void)state;
    expect_page_url("http://h/2.0/repositories/acme?pagelen=100&page=2", 7,
                    "http://h/2.0/repositories/acme?pagelen=100&page=7");
    expect_page_url("http://h/x?page=2&pagelen=100", 12, "http://h/x?page=12&pagelen=100");
    /* Iterator-based links (an opaque cursor) and look-alikes have no page number to set. */
    assert_int_equal(page_url_for("http://h/commits?page=dbtR", 3, &url), -ENOENT);
    assert_int_equal(page_url_for("http://h/x?page=20", 3, &url), -ENOENT);
    assert_int_equal(page_url_for("http://h/x?subpage=2", 3, &url), -ENOENT);
    assert_int_equal(page_url_for("http://h/page=2", 3, &url), -ENOENT);
    assert_null(url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_shapes),
        cmocka_unit_test(test_next_rules),
        cmocka_unit_test(test_page_cap),
        cmocka_unit_test(test_page_urls),
        cmocka_unit_test(test_many_pages_no_false_loop),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}

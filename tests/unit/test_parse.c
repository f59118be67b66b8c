/*
 * test_parse.c - Bitbucket JSON to structs (api/parse.c): fixtures of real
 * response shapes (repositories, refs with slashes and hostile names, a
 * merge commit, unicode, a /src directory listing with every kind of entry
 * and attribute shape), ISO-8601 timestamps, error bodies, full hashes and
 * the pretty-printed documents.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HASH "f7591a13eda445d9a9167f98eb870319f4b6c2d8"

/* Fixtures live next to this file; tests run from the repository root. */
static json_t *load_fixture(const char *name)
{
    char path[512];
    const char *slash = strrchr(__FILE__, '/');
    int dirlen = slash ? (int)(slash - __FILE__) : 1;
    json_error_t err;
    json_t *root;

    snprintf(path, sizeof(path), "%.*s/fixtures/%s", dirlen, slash ? __FILE__ : ".", name);
    root = json_load_file(path, PARSE_JSON_FLAGS, &err);
    if (!root)
        fail_msg("cannot load fixture %s: %s (line %d)", path, err.text, err.line);
    return root;
}

static void test_time_table(void **state)
{
    static const struct {
        const char *s;
        int rc;
        int64_t t;
    } cases[] = {
        {"2018-09-20T12:49:08.541926+00:00", 0, 1537447748},
        {"2018-09-21T15:53:38.794718+00:00", 0, 1537545218},
        {"2020-01-01T00:00:00+02:00", 0, 1577829600},
        {"2020-01-01T00:00:00+0200", 0, 1577829600},
        {"2020-01-01T00:00:00Z", 0, 1577836800},
        {"2020-01-01T00:00:00z", 0, 1577836800},
        {"2020-01-01T00:00:00", 0, 1577836800}, /* no zone: UTC */
        {"2020-01-01 00:00:00+00:00", 0, 1577836800},
        {"2012-07-16T19:37:54+02:00", 0, 1342460274},
        {"2000-02-29T23:59:59-05:30", 0, 951888599},
        {"1970-01-01T00:00:00+00:00", 0, 0},
        {"1969-12-31T23:59:59Z", 0, -1},
        {"2038-01-19T03:14:08Z", 0, 2147483648LL},
        {"2100-03-01T00:00:00Z", 0, 4107542400LL},
        {"2016-12-31T23:59:60Z", 0, 1483228800}, /* a leap second rolls over */
        {"", -EINVAL, 0},
        {"2020-01-01", -EINVAL, 0},
        {"2020-13-01T00:00:00Z", -EINVAL, 0},
        {"2021-02-29T00:00:00Z", -EINVAL, 0},
        {"2020-01-01T24:00:00Z", -EINVAL, 0},
        {"2020-01-01T00:00:00.Z", -EINVAL, 0},
        {"2020-01-01T00:00:00+2", -EINVAL, 0},
        {"2020-01-01T00:00:00Z junk", -EINVAL, 0},
        {"20-01-01T00:00:00Z", -EINVAL, 0},
        {"yesterday", -EINVAL, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t t = 12345;
        int rc = parse_time(cases[i].s, &t);
        if (rc != cases[i].rc || (rc == 0 && t != cases[i].t))
            fail_msg("'%s': rc %d t %lld, expected rc %d t %lld", cases[i].s, rc, (long long)t,
                     cases[i].rc, (long long)cases[i].t);
    }
    assert_int_equal(parse_time(NULL, &(int64_t){0}), -EINVAL);
}

static void test_time_ignores_tz(void **state)
{
    int64_t a, b;

    (void)state;
    setenv("TZ", "America/St_Johns", 1);
    tzset();
    assert_int_equal(parse_time("2018-09-21T15:53:38.794718+00:00", &a), 0);
    setenv("TZ", "UTC", 1);
    tzset();
    assert_int_equal(parse_time("2018-09-21T15:53:38.794718+00:00", &b), 0);
    assert_int_equal(a, b);
    assert_int_equal(a, 1537545218);
}

static void test_full_hash(void **state)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"f7591a13eda445d9a9167f98eb870319f4b6c2d8", 1},
        {"0000000000000000000000000000000000000000", 1},
        {"F7591A13EDA445D9A9167F98EB870319F4B6C2D8", 0},
        {"f7591a13eda445d9a9167f98eb870319f4b6c2d", 0},
        {"f7591a13eda445d9a9167f98eb870319f4b6c2d80", 0},
        {"g7591a13eda445d9a9167f98eb870319f4b6c2d8", 0},
        {"f7591a13", 0},
        {"", 0},
        {"f7591a13eda445d9a9167f98eb870319f4b6c2d\n", 0},
        {"../../../../../../../../../../../../etc/", 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(api_is_full_hash(cases[i].s), cases[i].ok);
    assert_false(api_is_full_hash(NULL));
}

static void test_repos_fixture(void **state)
{
    json_t *root = load_fixture("repos_page.json"), *values, *item;
    struct api_repo repos[4];
    size_t i;

    (void)state;
    values = json_object_get(root, "values");
    assert_int_equal(json_array_size(values), 4);
    for (i = 0; i < json_array_size(values); i++) {
        item = json_array_get(values, i);
        int rc = parse_repo(item, &repos[i]);
        assert_int_equal(rc, i == 3 ? -EINVAL : 0);
    }
    /* a full repository */
    assert_string_equal(repos[0].slug, "api");
    assert_string_equal(repos[0].uuid, "{3deb8c29-778a-450c-8f69-3e50a18079df}");
    assert_string_equal(repos[0].full_name, "acme/api");
    assert_string_equal(repos[0].description, "The API service");
    assert_string_equal(repos[0].mainbranch, "master");
    assert_string_equal(repos[0].html_url, "https://bitbucket.org/acme/api");
    assert_int_equal(repos[0].created_on, 1537447748);
    assert_int_equal(repos[0].updated_on, 1537545218);
    assert_int_equal(repos[0].size, 123456);
    assert_non_null(strstr(repos[0].doc.text, "\n  \"slug\": \"api\",\n"));
    assert_int_equal(repos[0].doc.len, strlen(repos[0].doc.text));
    assert_int_equal(repos[0].doc.text[repos[0].doc.len - 1], '\n');
    assert_int_equal(repos[0].doc.text[repos[0].doc.len - 2], '}');
    /* key order is the API's */
    assert_true(strstr(repos[0].doc.text, "\"type\"") < strstr(repos[0].doc.text, "\"slug\""));

    /* an empty repository: mainbranch null, no links, no description */
    assert_string_equal(repos[1].slug, "empty");
    assert_null(repos[1].mainbranch);
    assert_null(repos[1].html_url);
    assert_string_equal(repos[1].description, "");
    assert_int_equal(repos[1].created_on, 1577829600);
    assert_int_equal(repos[1].updated_on, 1577836800);

    /* unicode kept as UTF-8, both in the fields and in the document */
    assert_string_equal(repos[2].description, "Café ☃ 日本語");
    assert_non_null(strstr(repos[2].doc.text, "\"Dépôt 日本\""));
    assert_null(strstr(repos[2].doc.text, "\\u"));
    assert_null(repos[2].mainbranch);         /* absent */
    assert_int_equal(repos[2].created_on, 0); /* unparsable */
    assert_int_equal(repos[2].updated_on, 0); /* absent */
    assert_int_equal(repos[2].size, 0);       /* absent */

    /* no slug: unusable, left zeroed */
    assert_null(repos[3].slug);
    assert_null(repos[3].doc.text);

    for (i = 0; i < 4; i++)
        parse_repo_release(&repos[i]);
    parse_repo_release(&repos[0]); /* twice is harmless */
    json_decref(root);
}

static void test_refs_fixture(void **state)
{
    json_t *root = load_fixture("refs_page.json"), *values, *item;
    static const struct {
        int rc;
        const char *name;
        const char *hash;
        int64_t date;
    } want[] = {
        {0, "master", "e7d158ff7ed5538c28f94cd97a9ad569680fc94e", 1618209878},
        {0, "feature/BB-1", "0123456789abcdef0123456789abcdef01234567", 1618209878},
        {0, "issue-9.3/AUI-5343-assistive-class", "89abcdef0123456789abcdef0123456789abcdef", 0},
        {0, "evil\nname\x1b[31m", "fedcba9876543210fedcba9876543210fedcba98", 1618209878},
        {-EINVAL, NULL, NULL, 0}, /* short hash */
        {-EINVAL, NULL, NULL, 0}, /* uppercase hash */
        {-EINVAL, NULL, NULL, 0}, /* no target */
    };
    size_t i;

    (void)state;
    values = json_object_get(root, "values");
    assert_int_equal(json_array_size(values), sizeof(want) / sizeof(want[0]));
    for (i = 0; i < json_array_size(values); i++) {
        item = json_array_get(values, i);
        struct api_ref ref;
        int rc = parse_ref(item, &ref);
        assert_int_equal(rc, want[i].rc);
        if (rc == 0) {
            assert_string_equal(ref.name,
                                want[i].name); /* hostile names are not this layer's job */
            assert_string_equal(ref.target, want[i].hash);
            assert_int_equal(ref.date, want[i].date);
        } else {
            assert_null(ref.name);
        }
        parse_ref_release(&ref);
    }
    json_decref(root);
}

static void test_commit_fixture(void **state)
{
    json_t *root = load_fixture("commit.json");
    struct api_commit c;

    (void)state;
    assert_int_equal(parse_commit(root, &c), 0);
    assert_string_equal(c.hash, "f7591a13eda445d9a9167f98eb870319f4b6c2d8");
    assert_int_equal(c.date, 1342460274);
    assert_string_equal(c.message, "Merge branch 'feature/x'\n\nCafé ☃ — 日本語\n");
    assert_int_equal(c.parent_count, 2);
    assert_string_equal(c.parents[0], "f06941fec4ef6bcb0c2456927a0cf258fa4f899b");
    assert_string_equal(c.parents[1], "1111111111111111111111111111111111111111");
    assert_string_equal(c.html_url, "https://bitbucket.org/bitbucket/geordi/commits/"
                                    "f7591a13eda445d9a9167f98eb870319f4b6c2d8");
    assert_non_null(strstr(c.doc.text, "Zoë Ünïcode"));
    assert_non_null(strstr(c.doc.text, "\\n\\nCafé ☃ — 日本語\\n\""));
    api_commit_release(&c);
    api_commit_release(&c);

    /* a bad parent hash makes the commit unusable */
    json_object_set_new(json_array_get(json_object_get(root, "parents"), 1), "hash",
                        json_string("abc"));
    assert_int_equal(parse_commit(root, &c), -EINVAL);
    assert_null(c.message);

    /* no parents, no message, no links: a root commit with defaults */
    json_object_del(root, "parents");
    json_object_del(root, "message");
    json_object_del(root, "links");
    assert_int_equal(parse_commit(root, &c), 0);
    assert_int_equal(c.parent_count, 0);
    assert_null(c.parents);
    assert_string_equal(c.message, "");
    assert_null(c.html_url);
    api_commit_release(&c);

    /* parents of the wrong type */
    json_object_set_new(root, "parents", json_string("nope"));
    assert_int_equal(parse_commit(root, &c), -EINVAL);
    json_decref(root);
}

static void test_commit_summaries(void **state)
{
    json_t *root = load_fixture("commits_page.json"), *values, *item;
    struct api_commit_summary s;
    size_t i;

    (void)state;
    values = json_object_get(root, "values");
    for (i = 0; i < json_array_size(values); i++) {
        item = json_array_get(values, i);
        int rc = parse_commit_summary(item, &s);
        assert_int_equal(rc, i == 1 ? -EINVAL : 0);
    }
    assert_int_equal(parse_commit_summary(json_array_get(values, 2), &s), 0);
    assert_string_equal(s.hash, "f06941fec4ef6bcb0c2456927a0cf258fa4f899b");
    assert_int_equal(s.date, 1342381074);
    json_decref(root);
}

static void test_embedded_nul(void **state)
{
    static const char body[] = "{\"values\": ["
                               "{\"slug\": \"docs\", \"description\": \"nul \\u0000 inside\"},"
                               "{\"slug\": \"api\\u0000evil\"},"
                               "{\"name\": \"main\\u0000x\", \"target\": {\"hash\": \"" HASH "\"}},"
                               "{\"name\": \"main\", \"target\": {\"hash\": \"" HASH "\\u0000\"}},"
                               "{\"hash\": \"" HASH "\", \"message\": \"a\\u0000b\"}"
                               "]}";
    json_error_t err;
    json_t *root = json_loads(body, PARSE_JSON_FLAGS, &err), *values;
    struct api_repo repo;
    struct api_ref ref;
    struct api_commit c;

    (void)state;
    assert_non_null(root);
    values = json_object_get(root, "values");
    /* free text is cut at the NUL; the document keeps it escaped */
    assert_int_equal(parse_repo(json_array_get(values, 0), &repo), 0);
    assert_string_equal(repo.description, "nul ");
    assert_non_null(strstr(repo.doc.text, "\"nul \\u0000 inside\""));
    parse_repo_release(&repo);
    /* names holding a NUL would alias shorter names: refused */
    assert_int_equal(parse_repo(json_array_get(values, 1), &repo), -EINVAL);
    assert_int_equal(parse_ref(json_array_get(values, 2), &ref), -EINVAL);
    assert_int_equal(parse_ref(json_array_get(values, 3), &ref), -EINVAL);
    assert_int_equal(parse_commit(json_array_get(values, 4), &c), 0);
    assert_string_equal(c.message, "a");
    api_commit_release(&c);
    json_decref(root);
}

static void test_doc_format(void **state)
{
    json_t *obj = json_loads("{\"z\": 1, \"a\": [1, {\"b\": \"é\"}], \"e\": {}}", 0, NULL);
    struct api_doc doc;

    (void)state;
    assert_non_null(obj);
    assert_int_equal(parse_doc(obj, &doc), 0);
    assert_string_equal(doc.text, "{\n"
                                  "  \"z\": 1,\n"
                                  "  \"a\": [\n"
                                  "    1,\n"
                                  "    {\n"
                                  "      \"b\": \"é\"\n"
                                  "    }\n"
                                  "  ],\n"
                                  "  \"e\": {}\n"
                                  "}\n");
    assert_int_equal(doc.len, strlen(doc.text));
    api_doc_release(&doc);
    api_doc_release(&doc);
    assert_int_equal(parse_doc(json_object_get(obj, "z"), &doc), -EINVAL);
    json_decref(obj);
}

static void test_error_messages(void **state)
{
    static const struct {
        const char *body;
        int rc;
        const char *message;
    } cases[] = {
        {"{\"type\":\"error\",\"error\":{\"message\":\"Token is invalid, expired, or not supported "
         "for this endpoint.\"}}",
         0, "Token is invalid, expired, or not supported for this endpoint."},
        {"{\"type\": \"error\", \"error\": {\"message\": \"Bad request\", \"detail\": \"You must "
         "specify a valid source branch\", \"fields\": {\"src\": [\"required\"]}}}",
         0, "Bad request: You must specify a valid source branch"},
        {"{\"type\":\"error\",\"error\":{\"message\":\"Commit not found\",\"data\":{\"shas\":[]}}}",
         0, "Commit not found"},
        {"{\"type\":\"error\",\"error\":{\"message\":\"line\\nforged: line\\u001b[31m\"}}", 0,
         "line?forged: line?[31m"},
        {"Rate limit for this resource has been exceeded", -ENOENT, ""},
        {"{\"type\":\"error\",\"error\":{}}", -ENOENT, ""},
        {"{\"type\":\"error\",\"error\":{\"message\":\"\"}}", -ENOENT, ""},
        {"{\"type\":\"error\",\"error\":\"flat\"}", -ENOENT, ""},
        {"[1,2]", -ENOENT, ""},
        {"", -ENOENT, ""},
        {"{\"error\":{\"message\":", -ENOENT, ""},
    };
    char msg[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = parse_error_message(cases[i].body, strlen(cases[i].body), msg, sizeof(msg));
        assert_int_equal(rc, cases[i].rc);
        assert_string_equal(msg, cases[i].message);
    }
    /* a long message is cut to the buffer, still terminated */
    char small[8];
    assert_int_equal(
        parse_error_message("{\"error\":{\"message\":\"abcdefghijkl\"}}", 36, small, sizeof(small)),
        0);
    assert_string_equal(small, "abcdefg");
}

static void test_src_fixture(void **state)
{
    json_t *root = load_fixture("src_page.json"), *values;
    static const struct {
        int rc;
        const char *name;
        enum api_entry_type type;
        uint64_t size;
        int executable, lfs;
    } want[] = {
        {0, "README.md", API_ENTRY_FILE, 2622, 0, 0},
        {0, "guide", API_ENTRY_DIR, 0, 0, 0},
        {0, "current", API_ENTRY_LINK, 9, 0, 0},
        {0, "build.sh", API_ENTRY_FILE, 120, 1, 0},
        {0, "vendor lib", API_ENTRY_SUBMODULE, 40, 0, 0},
        {0, "video.mp4", API_ENTRY_FILE, 62914560, 0, 1},
        {0, "tool", API_ENTRY_FILE, 7, 1, 0},      /* attributes as one string */
        {0, "notes.txt", API_ENTRY_FILE, 3, 0, 0}, /* null */
        {0, "plain.txt", API_ENTRY_FILE, 0, 0, 0}, /* absent */
        /* hostile, but a name: this layer copies it, the filesystem decides */
        {0, "\xc3\xa9vil\nname\x1b[31m #?%", API_ENTRY_FILE, 1, 0, 0},
        {0, "..", API_ENTRY_DIR, 0, 0, 0},
        {0, "odd", API_ENTRY_FILE, 0, 1, 0},   /* negative size, junk attributes */
        {0, "sized", API_ENTRY_FILE, 0, 0, 0}, /* size as a string */
        {-EINVAL, NULL, 0, 0, 0, 0},           /* docs/a/b: not a direct child */
        {-EINVAL, NULL, 0, 0, 0, 0},           /* other/x */
        {-EINVAL, NULL, 0, 0, 0, 0},           /* docsx/y: a prefix is not a parent */
        {-EINVAL, NULL, 0, 0, 0, 0},           /* docs/: empty name */
        {-EINVAL, NULL, 0, 0, 0, 0},           /* docs itself */
        {-EINVAL, NULL, 0, 0, 0, 0},           /* a NUL inside */
        {-EINVAL, NULL, 0, 0, 0, 0},           /* unknown type */
        {-EINVAL, NULL, 0, 0, 0, 0},           /* no path */
        {-EINVAL, NULL, 0, 0, 0, 0},           /* path not a string */
        {-EINVAL, NULL, 0, 0, 0, 0},           /* no type */
    };
    struct api_entry e;
    size_t i;

    (void)state;
    values = json_object_get(root, "values");
    assert_int_equal(json_array_size(values), sizeof(want) / sizeof(want[0]));
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int rc = parse_entry(json_array_get(values, i), "docs", &e);
        if (rc != want[i].rc)
            fail_msg("entry %zu: rc %d", i, rc);
        if (rc < 0) {
            assert_null(e.name);
            continue;
        }
        if (strcmp(e.name, want[i].name) != 0 || e.type != want[i].type || e.size != want[i].size ||
            e.executable != want[i].executable || e.lfs != want[i].lfs)
            fail_msg("entry %zu: '%s' type %d size %llu x %d lfs %d", i, e.name, (int)e.type,
                     (unsigned long long)e.size, e.executable, e.lfs);
        parse_entry_release(&e);
        assert_null(e.name);
    }
    parse_entry_release(&e);
    parse_entry_release(NULL);

    /* the same entries listed as the root: only single components are names */
    assert_int_equal(parse_entry(json_array_get(values, 0), "", &e), -EINVAL);
    assert_int_equal(parse_entry(json_array_get(values, 17), "", &e), 0); /* "docs" */
    assert_string_equal(e.name, "docs");
    assert_int_equal(e.type, API_ENTRY_DIR);
    parse_entry_release(&e);
    assert_int_equal(parse_entry(json_array_get(values, 0), NULL, &e), -EINVAL);
    /* a nested directory */
    assert_int_equal(parse_entry(json_array_get(values, 13), "docs/a", &e), 0);
    assert_string_equal(e.name, "b");
    parse_entry_release(&e);
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_table),       cmocka_unit_test(test_time_ignores_tz),
        cmocka_unit_test(test_full_hash),        cmocka_unit_test(test_repos_fixture),
        cmocka_unit_test(test_refs_fixture),     cmocka_unit_test(test_commit_fixture),
        cmocka_unit_test(test_commit_summaries), cmocka_unit_test(test_embedded_nul),
        cmocka_unit_test(test_doc_format),       cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_src_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

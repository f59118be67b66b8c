/*
 * test_names.c - which API strings may become file names, and path splitting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/names.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void test_valid_names(void **state)
{
    static const struct {
        const char *name;
        int valid;
    } cases[] = {
        {"api", 1}, {"with space", 1}, {"ünïcödé", 1},   {"-dash", 1},   {".dotfile", 1},
        {"...", 1}, {"", 0},           {".", 0},         {"..", 0},      {"a/b", 0},
        {"/", 0},   {"new\nline", 0},  {"tab\there", 0}, {"del\x7f", 0}, {"esc\x1b[31m", 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(names_is_valid(cases[i].name), cases[i].valid);

    char long_name[300];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_false(names_is_valid(long_name));
    long_name[255] = '\0';
    assert_true(names_is_valid(long_name));
}

static void test_ref_names(void **state)
{
    static const struct {
        const char *ref;
        int valid;
    } cases[] = {
        {"main", 1}, {"feature/x", 1}, {"feature/deep/y", 1}, {"v1.0", 1},  {"", 0},   {"/x", 0},
        {"x/", 0},   {"a//b", 0},      {"a/../b", 0},         {"a/./b", 0}, {"..", 0}, {"a/b\n", 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(names_ref_is_valid(cases[i].ref), cases[i].valid);
}

static void test_split_and_join(void **state)
{
    char *parts[NAMES_MAX_DEPTH];
    (void)state;

    char root[] = "";
    assert_int_equal(names_split(root, parts, NAMES_MAX_DEPTH), 0);

    char path[] = "acme/api/branches/feature/x";
    assert_int_equal(names_split(path, parts, NAMES_MAX_DEPTH), 5);
    assert_string_equal(parts[0], "acme");
    assert_string_equal(parts[4], "x");

    char *joined = names_join(parts, 3, 5);
    assert_string_equal(joined, "feature/x");
    free(joined);
    joined = names_join(parts, 3, 3);
    assert_string_equal(joined, "");
    free(joined);

    char deep[] = "a/b/c/d";
    assert_int_equal(names_split(deep, parts, 3), -ENAMETOOLONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_names),
        cmocka_unit_test(test_ref_names),
        cmocka_unit_test(test_split_and_join),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

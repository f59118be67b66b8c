/*
 * test_inode.c - inode numbers are stable per path and live while the
 * kernel holds references.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/inode.h"

#include <stdio.h>
#include <stdlib.h>

static void test_root_is_one(void **state)
{
    struct inode_table *t = inode_table_new();
    (void)state;
    assert_int_equal(inode_ref(t, ""), INODE_ROOT);
    char *path = inode_path(t, INODE_ROOT);
    assert_string_equal(path, "");
    free(path);
    inode_table_free(t);
}

static void test_stable_numbers(void **state)
{
    struct inode_table *a = inode_table_new(), *b = inode_table_new();
    (void)state;
    uint64_t ino = inode_ref(a, "acme/api");
    assert_true(ino > INODE_ROOT);
    assert_int_equal(inode_ref(a, "acme/api"), ino);
    /* A new table (a remount) gives the same number. */
    assert_int_equal(inode_ref(b, "acme/api"), ino);
    assert_int_not_equal(inode_ref(a, "acme/web"), ino);
    char *path = inode_path(a, ino);
    assert_string_equal(path, "acme/api");
    free(path);
    inode_table_free(a);
    inode_table_free(b);
}

static void test_forget_counts(void **state)
{
    struct inode_table *t = inode_table_new();
    (void)state;
    uint64_t ino = inode_ref(t, "x");
    inode_ref(t, "x");
    inode_forget(t, ino, 1);
    char *path = inode_path(t, ino);
    assert_non_null(path);
    free(path);
    inode_forget(t, ino, 1);
    assert_null(inode_path(t, ino));
    /* Forgetting the unknown or the root is harmless. */
    inode_forget(t, 12345, 3);
    inode_forget(t, INODE_ROOT, 1);
    path = inode_path(t, INODE_ROOT);
    assert_non_null(path);
    free(path);
    inode_table_free(t);
}

static void test_many_paths_distinct(void **state)
{
    struct inode_table *t = inode_table_new();
    enum { N = 20000 };
    uint64_t *inos = calloc(N, sizeof(*inos));
    char path[64];
    (void)state;
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "acme/repo%d/commits", i);
        inos[i] = inode_ref(t, path);
        assert_true(inos[i] > INODE_ROOT);
    }
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "acme/repo%d/commits", i);
        char *got = inode_path(t, inos[i]);
        assert_string_equal(got, path);
        free(got);
    }
    free(inos);
    inode_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root_is_one),
        cmocka_unit_test(test_stable_numbers),
        cmocka_unit_test(test_forget_counts),
        cmocka_unit_test(test_many_paths_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_store.c - the on-disk store's size bound: which entries a commit over
 * the limit evicts (least recently used first, a lookup counting as a use,
 * never the entry just committed), that a replaced entry is counted once,
 * and that a reopened store counts what an earlier one left.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api.h"
#include "fs/store.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/bbfs-test-store-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static struct store *open_store(uint64_t limit)
{
    struct store *store;
    char err[256];
    assert_int_equal(store_open(dir, limit, &store, err, sizeof(err)), 0);
    return store;
}

static void put(struct store *store, const char *key, size_t len)
{
    char *data = malloc(len);
    assert_non_null(data);
    memset(data, 'x', len);
    assert_int_equal(store_put_bytes(store, key, data, len), 0);
    free(data);
}

static int present(struct store *store, const char *key)
{
    uint64_t size;
    int fd, rc = store_lookup(store, key, &fd, &size);
    if (rc == 0)
        close(fd);
    return rc == 0;
}

/* Makes key's entry look last used seconds_ago (without a lookup, which would mark it used). */
static void age(const char *key, time_t seconds_ago)
{
    char hex[65], path[256];
    struct timespec times[2] = {{.tv_sec = time(NULL) - seconds_ago}, {0}};
    times[1] = times[0];
    /* the store names entries by the SHA-256 of their key */
    api_sha256_hex(key, strlen(key), hex);
    snprintf(path, sizeof(path), "%s/objects/%.2s/%s", dir, hex, hex + 2);
    assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
}

static void test_least_recently_used_go_first(void **state)
{
    struct store *store = open_store(1000);
    (void)state;
    put(store, "a", 400);
    put(store, "b", 400);
    age("a", 100);
    age("b", 50);
    /* 1200 bytes: a goes, and 800 is within 90% of the limit */
    put(store, "c", 400);
    assert_false(present(store, "a"));
    assert_true(present(store, "b"));
    assert_true(present(store, "c"));
    store_close(store);
}

static void test_lookup_marks_used(void **state)
{
    struct store *store = open_store(1000);
    (void)state;
    put(store, "a", 400);
    put(store, "b", 400);
    age("a", 100);
    age("b", 50);
    assert_true(present(store, "a"));
    put(store, "c", 400);
    assert_true(present(store, "a"));
    assert_false(present(store, "b"));
    assert_true(present(store, "c"));
    store_close(store);
}

static void test_replaced_entry_counts_once(void **state)
{
    struct store *store = open_store(1000);
    (void)state;
    put(store, "old", 300);
    age("old", 100);
    put(store, "a", 600);
    put(store, "a", 600);
    /* 900 bytes, not 1500: nothing to evict */
    assert_true(present(store, "old"));
    store_close(store);
}

static void test_entry_bigger_than_limit_is_kept_until_next_commit(void **state)
{
    struct store *store = open_store(100);
    (void)state;
    put(store, "big", 500);
    assert_true(present(store, "big"));
    age("big", 10);
    put(store, "small", 10);
    assert_false(present(store, "big"));
    assert_true(present(store, "small"));
    store_close(store);
}

static void test_reopened_store_counts_what_is_there(void **state)
{
    struct store *store = open_store(1 << 20);
    (void)state;
    put(store, "a", 400);
    put(store, "b", 400);
    store_close(store);
    age("a", 100);
    age("b", 50);
    store = open_store(1000);
    put(store, "c", 400);
    assert_false(present(store, "a"));
    assert_true(present(store, "b"));
    assert_true(present(store, "c"));
    store_close(store);
}

/* A full disk: entries go, least recently used first, until there is room or none is left. */
static void test_make_room_evicts_until_there_is_room(void **state)
{
    struct store *store = open_store(1 << 30);
    (void)state;
    put(store, "old", 100);
    put(store, "new", 100);
    age("old", 100);
    age("new", 50);
    /* room for nothing more is there already: nothing goes */
    assert_int_equal(store_make_room(store, 0), -ENOSPC);
    assert_true(present(store, "old") && present(store, "new"));
    /* room for more than the disk can hold: everything goes, and there is still none */
    assert_int_equal(store_make_room(store, UINT64_MAX / 2), 0);
    assert_false(present(store, "old"));
    assert_false(present(store, "new"));
    assert_int_equal(store_make_room(store, UINT64_MAX / 2), -ENOSPC);
    /* the store works on, and counts from nothing */
    put(store, "again", 100);
    assert_true(present(store, "again"));
    store_close(store);
}

static void test_faults_of_a_store_that_cannot_keep(void **state)
{
    (void)state;
    assert_true(store_is_fault(ENOSPC) && store_is_fault(EDQUOT) && store_is_fault(EACCES) &&
                store_is_fault(EPERM) && store_is_fault(EROFS));
    assert_false(store_is_fault(EIO) || store_is_fault(ENOENT) || store_is_fault(EINVAL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_least_recently_used_go_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_marks_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replaced_entry_counts_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_bigger_than_limit_is_kept_until_next_commit,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopened_store_counts_what_is_there, setup, teardown),
        cmocka_unit_test_setup_teardown(test_make_room_evicts_until_there_is_room, setup, teardown),
        cmocka_unit_test(test_faults_of_a_store_that_cannot_keep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

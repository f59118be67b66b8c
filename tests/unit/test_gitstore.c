/*
 * test_gitstore.c - what packs brought, in the store (fs/gitstore.c):
 * directory listings, commit records and tips survive the round trip with
 * any name a git tree allows (spaces, newlines, bytes that are not UTF-8,
 * long names), every kind of entry and flag; an entry that is missing,
 * cut, of another format or damaged reads as absent (-ENOENT), never as a
 * wrong listing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api.h"
#include "fs/gitstore.h"
#include "fs/store.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH "0123456789abcdef0123456789abcdef01234567"
#define OTHER "fedcba9876543210fedcba9876543210fedcba98"

static char dir[64];
static struct store *store;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    char err[256];
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/bbfs-test-gitstore-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    return store_open(dir, UINT64_C(1) << 30, &store, err, sizeof(err));
}

static int teardown(void **state)
{
    (void)state;
    store_close(store);
    return nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Every kind of entry and flag, and names git allows: a list to release. */
static void fill(struct api_entry_list *list)
{
    static char long_name[256];
    static const struct {
        const char *name;
        enum api_entry_type type;
        uint64_t size;
        int executable, lfs;
    } rows[] = {
        {"README.md", API_ENTRY_FILE, 122, 0, 0},
        {"run.sh", API_ENTRY_FILE, 18, 1, 0},
        {"docs", API_ENTRY_DIR, 0, 0, 0},
        {"link", API_ENTRY_LINK, 9, 0, 0},
        {"vendor", API_ENTRY_SUBMODULE, 0, 0, 0},
        {"model.bin", API_ENTRY_FILE, 62914560, 0, 1},
        {"new\nline", API_ENTRY_FILE, 1, 0, 0},
        {"with space ", API_ENTRY_FILE, 0, 0, 0},
        {"\xff\xfe latin", API_ENTRY_FILE, UINT64_MAX, 0, 0},
        {long_name, API_ENTRY_FILE, 7, 0, 0},
    };
    size_t n = sizeof(rows) / sizeof(rows[0]);
    memset(long_name, 'n', sizeof(long_name) - 1);
    list->items = calloc(n, sizeof(*list->items));
    assert_non_null(list->items);
    for (list->count = 0; list->count < n; list->count++) {
        struct api_entry *e = &list->items[list->count];
        e->name = strdup(rows[list->count].name);
        assert_non_null(e->name);
        e->type = rows[list->count].type;
        e->size = rows[list->count].size;
        e->executable = rows[list->count].executable;
        e->lfs = rows[list->count].lfs;
    }
}

static void assert_same(const struct api_entry_list *a, const struct api_entry_list *b)
{
    assert_int_equal(a->count, b->count);
    for (size_t i = 0; i < a->count; i++) {
        assert_string_equal(a->items[i].name, b->items[i].name);
        assert_int_equal(a->items[i].type, b->items[i].type);
        assert_true(a->items[i].size == b->items[i].size);
        assert_int_equal(a->items[i].executable, b->items[i].executable);
        assert_int_equal(a->items[i].lfs, b->items[i].lfs);
    }
}

static void test_dirs(void **state)
{
    struct api_entry_list want, got, empty = {0};
    (void)state;
    fill(&want);
    assert_int_equal(gitstore_get_dir(store, "api", HASH, "", &got), -ENOENT);
    assert_int_equal(gitstore_put_dir(store, "api", HASH, "", &want), 0);
    assert_int_equal(gitstore_put_dir(store, "api", HASH, "a b/\nc", &want), 0);
    assert_int_equal(gitstore_put_dir(store, "api", HASH, "empty", &empty), 0);
    assert_int_equal(gitstore_get_dir(store, "api", HASH, "", &got), 0);
    assert_same(&want, &got);
    api_entry_list_release(&got);
    assert_int_equal(gitstore_get_dir(store, "api", HASH, "a b/\nc", &got), 0);
    assert_same(&want, &got);
    api_entry_list_release(&got);
    assert_int_equal(gitstore_get_dir(store, "api", HASH, "empty", &got), 0);
    assert_int_equal(got.count, 0);
    api_entry_list_release(&want);
    /* another directory, commit or repository is another entry */
    assert_int_equal(gitstore_get_dir(store, "api", HASH, "docs", &got), -ENOENT);
    assert_int_equal(gitstore_get_dir(store, "api", OTHER, "", &got), -ENOENT);
    assert_int_equal(gitstore_get_dir(store, "web", HASH, "", &got), -ENOENT);
}

/* The store's key of a directory's entry (gitstore.c's layout). */
#define DIR_KEY "gitdir\napi\n" HASH "\nbad"

#define BYTES(s)                                                                                   \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }

static void test_damaged_dirs(void **state)
{
    static const struct {
        const char *data;
        size_t len;
    } damaged[] = {
        BYTES(""),
        BYTES("bbfs-gitdir 2\n"),
        BYTES("bbfs-gitdir 1"),
        BYTES("bbfs-gitdir 1\nf 0 0 3 4\nabc\n"),        /* the name is shorter than said */
        BYTES("bbfs-gitdir 1\nf 0 0 3 2\nabc\n"),        /* longer */
        BYTES("bbfs-gitdir 1\nf 0 0 3 3\nabc"),          /* cut before the name's end */
        BYTES("bbfs-gitdir 1\nx 0 0 3 3\nabc\n"),        /* no such type */
        BYTES("bbfs-gitdir 1\nf 2 0 3 3\nabc\n"),        /* a flag that is not one */
        BYTES("bbfs-gitdir 1\nf 0 0 3 0\n\n"),           /* no name */
        BYTES("bbfs-gitdir 1\nf 0 0 3 3 9\nabc\n"),      /* more fields */
        BYTES("bbfs-gitdir 1\nf 0 0 3\nabc\n"),          /* fewer */
        BYTES("bbfs-gitdir 1\nf 0 0 3 3\na\0c\n"),       /* a NUL in the name */
        BYTES("bbfs-gitdir 1\nf 0 0 3 3\nabc\ngarbage"), /* something after the records */
    };
    static const char good[] = "bbfs-gitdir 1\nf 1 1 3 3\nabc\n";
    struct api_entry_list got;
    (void)state;
    assert_int_equal(store_put_bytes(store, DIR_KEY, good, sizeof(good) - 1), 0);
    assert_int_equal(gitstore_get_dir(store, "api", HASH, "bad", &got), 0);
    assert_int_equal(got.count, 1);
    assert_string_equal(got.items[0].name, "abc");
    assert_int_equal(got.items[0].executable, 1);
    assert_int_equal(got.items[0].lfs, 1);
    api_entry_list_release(&got);
    for (size_t i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
        assert_int_equal(store_put_bytes(store, DIR_KEY, damaged[i].data, damaged[i].len), 0);
        if (gitstore_get_dir(store, "api", HASH, "bad", &got) != -ENOENT)
            fail_msg("damaged entry %zu read as a listing of %zu", i, got.count);
        assert_null(got.items);
    }
}

static void test_commits(void **state)
{
    int64_t date = 0;
    (void)state;
    assert_int_equal(gitstore_get_commit(store, "api", HASH, &date), -ENOENT);
    assert_int_equal(gitstore_put_commit(store, "api", HASH, 1704186000), 0);
    assert_int_equal(gitstore_get_commit(store, "api", HASH, &date), 0);
    assert_true(date == 1704186000);
    assert_int_equal(gitstore_get_commit(store, "api", OTHER, &date), -ENOENT);
    assert_int_equal(store_put_bytes(store, "gitcommit\napi\n" OTHER, "bbfs-gitcommit 1\n12x\n",
                                     strlen("bbfs-gitcommit 1\n12x\n")),
                     0);
    assert_int_equal(gitstore_get_commit(store, "api", OTHER, &date), -ENOENT);
}

static void test_tips(void **state)
{
    static const char *const names[2][2] = {{"main", "feature/x\ny"}, {"v1", NULL}};
    static const char *const targets[2][2] = {{HASH, OTHER}, {OTHER, NULL}};
    struct api_ref_list want[2], got[2];
    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        want[kind].items = calloc(2, sizeof(struct api_ref));
        assert_non_null(want[kind].items);
        for (want[kind].count = 0; want[kind].count < 2 && names[kind][want[kind].count];
             want[kind].count++) {
            struct api_ref *ref = &want[kind].items[want[kind].count];
            ref->name = strdup(names[kind][want[kind].count]);
            assert_non_null(ref->name);
            memcpy(ref->target, targets[kind][want[kind].count], API_HASH_LEN + 1);
        }
    }
    assert_int_equal(gitstore_get_tips(store, "api", got), -ENOENT);
    assert_int_equal(gitstore_put_tips(store, "api", want), 0);
    assert_int_equal(gitstore_get_tips(store, "api", got), 0);
    for (int kind = 0; kind < 2; kind++) {
        assert_int_equal(got[kind].count, want[kind].count);
        for (size_t i = 0; i < got[kind].count; i++) {
            assert_string_equal(got[kind].items[i].name, want[kind].items[i].name);
            assert_string_equal(got[kind].items[i].target, want[kind].items[i].target);
        }
        api_ref_list_release(&got[kind]);
        api_ref_list_release(&want[kind]);
    }
    static const char bad_hash[] = "bbfs-gittips 1\nb nothex 4\nmain\n";
    assert_int_equal(store_put_bytes(store, "gittips\nweb\n", bad_hash, sizeof(bad_hash) - 1), 0);
    assert_int_equal(gitstore_get_tips(store, "web", got), -ENOENT);
    assert_null(got[0].items);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dirs),
        cmocka_unit_test(test_damaged_dirs),
        cmocka_unit_test(test_commits),
        cmocka_unit_test(test_tips),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

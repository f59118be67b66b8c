/*
 * test_pack.c - packs read with libgit2 (api/pack.c).
 *
 * Repositories are written here with `git fast-import` (so that any name
 * survives: spaces, newlines, bytes that are not UTF-8) and packed with
 * `git pack-objects` the way a depth-1 fetch is: one commit, its trees and
 * blobs, similar files stored as deltas. Expected values come from git
 * (ls-tree, cat-file). Also: symlinks, executables, a submodule, an empty
 * tree, an LFS pointer, broken, cut and thin packs (a clear error, nothing
 * left behind), readers on several threads, a 60 MiB blob with the
 * process's peak RSS bounded (the indexing runs in the helper process), the
 * same indexing without the helper, and a helper that died.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/pack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUBMODULE_SHA "1234567890abcdef1234567890abcdef12345678"
#define LARGE_SIZE ((size_t)60 << 20)
#define RSS_LIMIT_KIB (64 * 1024)
#define LFS_POINTER                                                                                \
    "version https://git-lfs.github.com/spec/v1\n"                                                 \
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"                \
    "size 12345\n"
#define LFS_CONTENT_SIZE 12345

static char root[256]; /* mkdtemp: the repository, packs, index directories */

/* ---- helpers ---- */

/* stdout of a shell command, malloc'd, *len its length; fails the test on error. */
static char *sh_len(size_t *len, const char *fmt, ...)
{
    char cmd[4096], *out;
    size_t cap = 1 << 16, n = 0, got;
    FILE *f;
    va_list ap;
    int status;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    f = popen(cmd, "r");
    if (!f)
        fail_msg("cannot run %s", cmd);
    out = malloc(cap + 1);
    assert_non_null(out);
    while ((got = fread(out + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            out = realloc(out, cap + 1);
            assert_non_null(out);
        }
    }
    out[n] = '\0';
    status = pclose(f);
    if (status != 0)
        fail_msg("failed (%d): %s", status, cmd);
    if (len)
        *len = n;
    return out;
}

static char *sh(const char *cmd)
{
    char *out = sh_len(NULL, "%s", cmd);
    size_t n = strlen(out);

    while (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
    return out;
}

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    free(sh(cmd));
}

/* ---- a repository written with git fast-import ---- */

static FILE *stream;
static int next_mark = 1;

static int blob(const char *data, size_t len)
{
    fprintf(stream, "blob\nmark :%d\ndata %zu\n", next_mark, len);
    fwrite(data, 1, len, stream);
    fputc('\n', stream);
    return next_mark++;
}

/* A file entry: mode, blob mark, and a path in fast-import's quoted form. */
struct file {
    const char *mode;
    int mark;
    const char *path;
};

static void commit(const char *branch, const char *message, const struct file *files, size_t n,
                   const char *raw_lines)
{
    size_t i;

    fprintf(stream, "commit refs/heads/%s\ncommitter A <a@example.com> %d +0000\ndata %zu\n%s\n",
            branch, 1700000000 + next_mark, strlen(message), message);
    if (raw_lines)
        fputs(raw_lines, stream);
    for (i = 0; i < n; i++)
        fprintf(stream, "M %s :%d %s\n", files[i].mode, files[i].mark, files[i].path);
    fputc('\n', stream);
    next_mark++;
}

/* Text of about 20 KB, the same for every seed but one line: good delta material. */
static char *similar_text(int seed, size_t *len)
{
    char *s = malloc(32768);
    size_t n = 0;
    int i;

    assert_non_null(s);
    for (i = 0; i < 400; i++)
        n +=
            (size_t)snprintf(s + n, 32768 - n, "line %03d of a file that looks like the others%s\n",
                             i, i == 200 ? (seed % 2 ? " (odd)" : " (even)") : "");
    n += (size_t)snprintf(s + n, 32768 - n, "seed %d\n", seed);
    *len = n;
    return s;
}

/* Pseudo-random bytes (xorshift): incompressible, so the pack is as big as the blob. */
static void write_large_blob(void)
{
    static char chunk[1 << 16];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    size_t left = LARGE_SIZE, i, n;

    fprintf(stream, "blob\nmark :%d\ndata %zu\n", next_mark, LARGE_SIZE);
    while (left > 0) {
        n = left < sizeof(chunk) ? left : sizeof(chunk);
        for (i = 0; i + 8 <= n; i += 8) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            memcpy(chunk + i, &x, 8);
        }
        fwrite(chunk, 1, n, stream);
        left -= n;
    }
    fputc('\n', stream);
    next_mark++;
}

/*
 * Branches: main (every kind of entry), next (main and one file changed a
 * little), empty (no files), large (the 60 MiB blob next to a small file).
 */
static int build_repo(void **state)
{
    char path[512], *text[4];
    size_t len[4];
    int i, marks[12];

    (void)state;
    snprintf(root, sizeof(root), "/tmp/bbfs-test-pack-XXXXXX");
    assert_non_null(mkdtemp(root));
    run("git init -q --bare '%s/repo.git'", root);
    snprintf(path, sizeof(path), "%s/stream", root);
    stream = fopen(path, "w");
    assert_non_null(stream);
    for (i = 0; i < 4; i++) {
        text[i] = similar_text(i, &len[i]);
        marks[i] = blob(text[i], len[i]);
        free(text[i]);
    }
    marks[4] = blob("#!/bin/sh\necho hi\n", 18);
    marks[5] = blob("README.md", 9);
    marks[6] = blob("", 0);
    marks[7] = blob("new\nline\n", 9);
    marks[8] = blob("\xff\xfe not utf-8\n", 14);
    marks[9] = blob(LFS_POINTER, strlen(LFS_POINTER));
    marks[10] = blob("# readme\n", 9);
    {
        const struct file files[] = {
            {"100644", marks[10], "README.md"},
            {"100644", marks[0], "src/a.txt"},
            {"100644", marks[1], "src/b.txt"},
            {"100644", marks[2], "src/deep/c.txt"},
            {"100644", marks[3], "src/deep/d.txt"},
            {"100755", marks[4], "bin/run.sh"},
            {"120000", marks[5], "link-to-readme"},
            {"100644", marks[6], "empty.txt"},
            {"100644", marks[7], "dir with space/file with space"},
            {"100644", marks[7], "\"names/new\\nline\""},
            {"100644", marks[8], "\"names/\\377\\376 latin\""},
            {"100644", marks[9], "assets/model.bin"},
        };
        commit("main", "every kind of entry", files, sizeof(files) / sizeof(files[0]),
               "M 160000 " SUBMODULE_SHA " vendor/lib\n");
    }
    text[0] = similar_text(10, &len[0]);
    {
        const struct file files[] = {{"100644", blob(text[0], len[0]), "src/a.txt"}};
        commit("next", "a.txt changes a little", files, 1, "from refs/heads/main\n");
    }
    free(text[0]);
    commit("empty", "nothing at all", NULL, 0, NULL);
    write_large_blob();
    {
        const struct file files[] = {{"100644", next_mark - 1, "big/large.bin"},
                                     {"100644", marks[10], "small.txt"}};
        commit("large", "a large file", files, 2, NULL);
    }
    fclose(stream);
    free(sh_len(NULL,
                "git --git-dir='%s/repo.git' fast-import --quiet < '%s/stream' && rm '%s/stream'",
                root, root, root));
    return 0;
}

static int remove_repo(void **state)
{
    (void)state;
    if (root[0])
        run("rm -rf '%s'", root);
    return 0;
}

static char *git(const char *args)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd), "git --git-dir='%s/repo.git' %s", root, args);
    return sh(cmd);
}

/* A depth-1 pack of rev (its commit, trees and blobs; deltas allowed) in a file, opened. */
static int pack_of(const char *rev, const char *extra)
{
    char path[512], *out;
    int fd;

    snprintf(path, sizeof(path), "%s/fetched-%s%s.pack", root, rev, extra ? "-extra" : "");
    fd = open(path, O_RDONLY);
    if (fd >= 0)
        return fd; /* made by an earlier test */
    out =
        sh_len(NULL,
               "git --git-dir='%s/repo.git' rev-list --objects --no-walk %s | "
               "git --git-dir='%s/repo.git' pack-objects --stdout -q --delta-base-offset %s > '%s'",
               root, rev, root, extra ? extra : "", path);
    free(out);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    return fd;
}

/* A fresh, empty directory for index files. */
static void fresh_dir(char *dir, size_t len, const char *name)
{
    snprintf(dir, len, "%s/%s", root, name);
    run("rm -rf '%s' && mkdir '%s'", dir, dir);
}

static size_t dir_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static struct pack *open_main(char *commit, const char *dirname)
{
    char dir[512], name[PACK_NAME_LEN + 1], *c;
    struct pack *p = NULL;
    int fd = pack_of("main", NULL);

    fresh_dir(dir, sizeof(dir), dirname);
    assert_int_equal(pack_index(dir, fd, name), 0);
    close(fd);
    assert_int_equal(pack_open(dir, name, &p), 0);
    c = git("rev-parse main");
    strcpy(commit, c);
    free(c);
    return p;
}

/* ---- listing ---- */

static const char *type_of(enum api_entry_type t)
{
    switch (t) {
    case API_ENTRY_DIR:
        return "tree";
    case API_ENTRY_SUBMODULE:
        return "commit";
    default:
        return "blob";
    }
}

/*
 * The listing of dir against `git ls-tree -z -l`: the same names in the same
 * order, types, modes (executable, symlink) and sizes.
 */
static void check_listing(struct pack *p, const char *commit, const char *dir)
{
    struct api_entry_list list;
    char cmd[1024], *out, *rec, mode[8], type[8], oid[41], size[32];
    size_t len, i = 0;

    assert_int_equal(pack_list_dir(p, commit, dir, &list), 0);
    snprintf(cmd, sizeof(cmd), "git --git-dir='%s/repo.git' ls-tree -z -l %s%s%s%s", root, commit,
             *dir ? ":'" : "", dir, *dir ? "'" : "");
    out = sh_len(&len, "%s", cmd);
    for (rec = out; rec < out + len; rec += strlen(rec) + 1, i++) {
        char *tab = strchr(rec, '\t');

        assert_non_null(tab);
        assert_int_equal(sscanf(rec, "%7s %7s %40s %31s", mode, type, oid, size), 4);
        assert_true(i < list.count);
        assert_string_equal(list.items[i].name, tab + 1);
        assert_string_equal(type_of(list.items[i].type), type);
        assert_int_equal(list.items[i].executable, strcmp(mode, "100755") == 0);
        assert_int_equal(list.items[i].type == API_ENTRY_LINK, strcmp(mode, "120000") == 0);
        if (list.items[i].lfs)
            assert_int_equal(list.items[i].size, LFS_CONTENT_SIZE); /* what the pointer says */
        else if (strcmp(type, "blob") == 0)
            assert_int_equal(list.items[i].size, strtoull(size, NULL, 10));
        else
            assert_int_equal(list.items[i].size, 0);
    }
    assert_int_equal(list.count, i);
    free(out);
    api_entry_list_release(&list);
}

static void test_list_every_directory(void **state)
{
    static const char *const dirs[] = {"",      "src",   "src/deep", "bin", "dir with space",
                                       "names", "assets"};
    char commit[41], tree[41], *want;
    struct pack *p;
    int64_t date;
    size_t i;

    (void)state;
    p = open_main(commit, "idx-list");
    assert_int_equal(pack_commit_tree(p, commit, tree), 0);
    want = git("rev-parse main^{tree}");
    assert_string_equal(tree, want);
    free(want);
    assert_int_equal(pack_commit_date(p, commit, &date), 0);
    want = git("log -1 --format=%at main");
    assert_int_equal(date, strtoll(want, NULL, 10));
    free(want);
    assert_int_equal(pack_commit_date(p, "0000000000000000000000000000000000000000", &date),
                     -ENOENT);
    assert_int_equal(pack_commit_date(p, "main", &date), -EINVAL);
    for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        check_listing(p, commit, dirs[i]);
    pack_close(p);
}

static void test_entry_kinds(void **state)
{
    struct api_entry_list list;
    char commit[41];
    struct pack *p;
    size_t i;
    int seen = 0;

    (void)state;
    p = open_main(commit, "idx-kinds");
    assert_int_equal(pack_list_dir(p, commit, "", &list), 0);
    for (i = 0; i < list.count; i++) {
        const struct api_entry *e = &list.items[i];

        if (strcmp(e->name, "vendor") == 0)
            seen |= 1, assert_int_equal(e->type, API_ENTRY_DIR);
        if (strcmp(e->name, "link-to-readme") == 0)
            seen |= 2, assert_int_equal(e->type, API_ENTRY_LINK), assert_int_equal(e->size, 9);
        if (strcmp(e->name, "empty.txt") == 0)
            seen |= 4, assert_int_equal(e->size, 0);
        assert_int_equal(e->lfs, 0);
    }
    assert_int_equal(seen, 7);
    api_entry_list_release(&list);
    assert_int_equal(pack_list_dir(p, commit, "vendor", &list), 0);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].name, "lib");
    assert_int_equal(list.items[0].type, API_ENTRY_SUBMODULE);
    api_entry_list_release(&list);
    assert_int_equal(pack_list_dir(p, commit, "bin", &list), 0);
    assert_int_equal(list.items[0].executable, 1);
    api_entry_list_release(&list);
    /* an LFS pointer is told apart by its content; its size is the one it gives */
    assert_int_equal(pack_list_dir(p, commit, "assets", &list), 0);
    assert_int_equal(list.items[0].lfs, 1);
    assert_int_equal(list.items[0].size, LFS_CONTENT_SIZE);
    api_entry_list_release(&list);
    pack_close(p);
}

static void test_lookup_errors(void **state)
{
    static const struct {
        const char *commit, *dir;
        int rc;
    } cases[] = {
        {NULL, "nope", -ENOENT},
        {NULL, "README.md", -ENOENT},  /* a file is no directory */
        {NULL, "vendor/lib", -ENOENT}, /* nor is a submodule */
        {NULL, "src/", 0},
        {NULL, "src//deep", -ENOENT},
        {NULL, "src/../src", -ENOENT},
        {"0000000000000000000000000000000000000000", "", -ENOENT}, /* not in the pack */
        {"HEAD", "", -EINVAL},
        {"ABCDEF7890abcdef1234567890abcdef12345678", "", -EINVAL},
    };
    struct api_entry_list list;
    char commit[41];
    struct pack *p;
    size_t i;
    int rc;

    (void)state;
    p = open_main(commit, "idx-errors");
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rc = pack_list_dir(p, cases[i].commit ? cases[i].commit : commit, cases[i].dir, &list);
        if (rc != cases[i].rc)
            fail_msg("%s: %d, not %d", cases[i].dir, rc, cases[i].rc);
        api_entry_list_release(&list);
    }
    pack_close(p);
    assert_int_equal(pack_open(root, "not-a-name", &p), -EINVAL);
    assert_null(p);
    assert_int_equal(pack_open(root, "0123456789012345678901234567890123456789", &p), -ENOENT);
    assert_null(p);
    pack_close(NULL);
}

static void test_subtree(void **state)
{
    struct api_subtree tree;
    char commit[41], *count;
    struct pack *p;
    size_t i, entries = 0;

    (void)state;
    p = open_main(commit, "idx-subtree");
    assert_int_equal(pack_list_subtree(p, commit, "", 100, 10000, &tree), 0);
    count = git("ls-tree -r -t main | wc -l");
    for (i = 0; i < tree.count; i++)
        entries += tree.dirs[i].entries.count;
    assert_int_equal(entries, strtoul(count, NULL, 10));
    free(count);
    count = git("ls-tree -r -d main | grep -v ' commit ' | wc -l");
    assert_int_equal(tree.count, strtoul(count, NULL, 10) + 1); /* every tree and the root */
    free(count);
    assert_string_equal(tree.dirs[0].path, "");
    api_subtree_release(&tree);

    assert_int_equal(pack_list_subtree(p, commit, "src", 1, 10000, &tree), 0);
    assert_int_equal(tree.count, 1);
    assert_string_equal(tree.dirs[0].path, "src");
    api_subtree_release(&tree);
    assert_int_equal(pack_list_subtree(p, commit, "src", 2, 10000, &tree), 0);
    assert_int_equal(tree.count, 2);
    assert_string_equal(tree.dirs[1].path, "src/deep");
    api_subtree_release(&tree);
    assert_int_equal(pack_list_subtree(p, commit, "", 100, 5, &tree), -EFBIG);
    assert_int_equal(tree.count, 0);
    assert_int_equal(pack_list_subtree(p, commit, "", 0, 10, &tree), -EINVAL);
    pack_close(p);
}

/* ---- reading ---- */

static void check_read(struct pack *p, const char *commit, const char *path)
{
    char tmp[] = "/tmp/bbfs-test-read-XXXXXX", cmd[1024], *want, *got;
    size_t want_len;
    uint64_t size = 99;
    int fd = mkstemp(tmp);
    struct stat st;

    assert_true(fd >= 0);
    unlink(tmp);
    assert_int_equal(write(fd, "stale bytes that must go", 24), 24);
    assert_int_equal(pack_read_file(p, commit, path, fd, &size), 0);
    snprintf(cmd, sizeof(cmd), "git --git-dir='%s/repo.git' cat-file blob '%s:%s'", root, commit,
             path);
    want = sh_len(&want_len, "%s", cmd);
    assert_int_equal(size, want_len);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, want_len);
    got = malloc(want_len + 1);
    assert_non_null(got);
    assert_int_equal(pread(fd, got, want_len, 0), want_len);
    assert_memory_equal(got, want, want_len);
    free(got);
    free(want);
    close(fd);
}

static void test_read_files(void **state)
{
    static const char *const paths[] = {"README.md",
                                        "src/a.txt",
                                        "src/deep/d.txt",
                                        "bin/run.sh",
                                        "empty.txt",
                                        "link-to-readme",
                                        "dir with space/file with space"};
    const char *name = "names/new\nline";
    char commit[41];
    struct pack *p;
    uint64_t size;
    size_t i;
    char tmp[] = "/tmp/bbfs-test-read-XXXXXX";
    int fd = mkstemp(tmp);

    (void)state;
    p = open_main(commit, "idx-read");
    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        check_read(p, commit, paths[i]);
    /* names git quotes: found by the name as it is */
    assert_int_equal(pack_read_file(p, commit, name, fd, &size), 0);
    assert_int_equal(size, 9);
    assert_int_equal(pack_read_file(p, commit, "names/\xff\xfe latin", fd, &size), 0);
    assert_int_equal(size, 14);
    assert_int_equal(pack_read_file(p, commit, "src", fd, &size), -ENOENT);
    assert_int_equal(pack_read_file(p, commit, "vendor/lib", fd, &size), -ENOENT);
    assert_int_equal(pack_read_file(p, commit, "", fd, &size), -ENOENT);
    assert_int_equal(write(fd, "stale", 5), 5);
    assert_int_equal(pack_read_file(p, commit, "nope", fd, &size), -ENOENT);
    assert_int_equal(size, 0);
    assert_int_equal(lseek(fd, 0, SEEK_END), 0); /* nothing left after a failure */
    unlink(tmp);
    close(fd);
    pack_close(p);
}

/* Several threads listing and reading one pack at once all get git's answers. */
struct reader {
    struct pack *p;
    const char *commit;
    uint64_t readme_size;
    int failures;
};

static void *read_many(void *arg)
{
    struct reader *r = arg;
    struct api_entry_list list;
    char tmp[] = "/tmp/bbfs-test-thread-XXXXXX";
    uint64_t size;
    int fd = mkstemp(tmp), i;

    unlink(tmp);
    for (i = 0; i < 200; i++) {
        if (pack_list_dir(r->p, r->commit, i % 2 ? "src/deep" : "", &list) < 0 || list.count == 0)
            r->failures++;
        api_entry_list_release(&list);
        if (pack_read_file(r->p, r->commit, "README.md", fd, &size) < 0 || size != r->readme_size)
            r->failures++;
    }
    close(fd);
    return NULL;
}

static void test_threads(void **state)
{
    pthread_t threads[4];
    struct reader readers[4];
    char commit[41], *size;
    struct pack *p;
    int i;

    (void)state;
    p = open_main(commit, "idx-threads");
    size = git("cat-file -s main:README.md");
    for (i = 0; i < 4; i++) {
        readers[i] = (struct reader){p, commit, strtoull(size, NULL, 10), 0};
        assert_int_equal(pthread_create(&threads[i], NULL, read_many, &readers[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(readers[i].failures, 0);
    }
    free(size);
    pack_close(p);
}

/* ---- packs of every shape ---- */

static void test_deltas_and_empty_tree(void **state)
{
    char dir[512], name[PACK_NAME_LEN + 1], pack[600], *chains, *commit;
    struct api_entry_list list;
    struct pack *p;
    int fd;

    (void)state;
    /* the pack of main really holds deltas */
    fd = pack_of("main", NULL);
    close(fd);
    snprintf(pack, sizeof(pack), "%s/fetched-main.pack", root);
    chains = sh_len(NULL,
                    "cp '%s' '%s/check.pack' && git index-pack '%s/check.pack' >/dev/null && "
                    "git verify-pack -v '%s/check.idx' | grep -c '^chain length' || true",
                    pack, root, root, root);
    assert_true(atoi(chains) > 0);
    free(chains);

    fd = pack_of("empty", NULL);
    fresh_dir(dir, sizeof(dir), "idx-empty");
    assert_int_equal(pack_index(dir, fd, name), 0);
    close(fd);
    assert_int_equal(pack_open(dir, name, &p), 0);
    commit = git("rev-parse empty");
    assert_int_equal(pack_list_dir(p, commit, "", &list), 0);
    assert_int_equal(list.count, 0);
    api_entry_list_release(&list);
    free(commit);
    pack_close(p);
}

/* A pack cut anywhere, damaged, empty or thin: -EPROTO and an empty directory. */
static void test_broken_packs(void **state)
{
    char dir[512], name[PACK_NAME_LEN + 1], path[600], *data, *chains;
    size_t len, cuts[] = {0, 1, 11, 12, 100, 0, 0, 0};
    int fd, i;
    struct stat st;

    (void)state;
    fd = pack_of("main", NULL);
    assert_int_equal(fstat(fd, &st), 0);
    len = (size_t)st.st_size;
    data = malloc(len);
    assert_non_null(data);
    assert_int_equal(pread(fd, data, len, 0), len);
    close(fd);
    cuts[5] = len / 2;
    cuts[6] = len - 21;
    cuts[7] = len - 1;
    fresh_dir(dir, sizeof(dir), "idx-broken");
    snprintf(path, sizeof(path), "%s/broken.pack", root);
    for (i = 0; i < 9; i++) {
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        if (i < 8) {
            assert_int_equal(write(fd, data, cuts[i]), cuts[i]);
        } else {
            data[len / 2] ^= 0x55; /* one damaged byte in the middle */
            assert_int_equal(write(fd, data, len), len);
        }
        if (pack_index(dir, fd, name) != -EPROTO)
            fail_msg("case %d (%zu bytes) indexed", i, i < 8 ? cuts[i] : len);
        assert_string_equal(name, "");
        assert_int_equal(dir_files(dir), 0);
        close(fd);
    }
    free(data);

    /* a thin pack: next's new blob is a delta against main's, which it does not hold */
    free(sh_len(NULL,
                "cd '%s' && printf 'next\\n^main\\n' | git --git-dir=repo.git pack-objects "
                "--stdout -q --revs --thin --delta-base-offset > thin.pack",
                root));
    chains = sh_len(NULL,
                    "cd '%s' && git index-pack --stdin < thin.pack >/dev/null 2>&1 "
                    "&& echo indexed || echo refused",
                    root);
    assert_string_equal(chains, "refused\n"); /* git too, without --fix-thin */
    free(chains);
    snprintf(path, sizeof(path), "%s/thin.pack", root);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pack_index(dir, fd, name), -EPROTO);
    assert_int_equal(dir_files(dir), 0);
    close(fd);
}

/* ---- a 60 MiB blob ---- */

static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

static void reset_peak_rss(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "5", 1), 1); /* 5: reset the peak resident set size */
    close(fd);
}

static void test_large_blob(void **state)
{
    char dir[512], name[PACK_NAME_LEN + 1], *commit, *want;
    struct api_entry_list list;
    struct pack *p;
    uint64_t size;
    long peak;
    int fd, out;

    (void)state;
    fd = pack_of("large", NULL);
    commit = git("rev-parse large");
    fresh_dir(dir, sizeof(dir), "idx-large");
    {
        char tmp[] = "/tmp/bbfs-test-large-XXXXXX";

        out = mkstemp(tmp);
        unlink(tmp);
    }
    reset_peak_rss();
    assert_int_equal(pack_index(dir, fd, name), 0);
    assert_int_equal(pack_open(dir, name, &p), 0);
    assert_int_equal(pack_list_dir(p, commit, "big", &list), 0);
    assert_int_equal(list.count, 1);
    assert_int_equal(list.items[0].size, LARGE_SIZE);
    api_entry_list_release(&list);
    /* too big to read into memory: refused before a byte is read, for the API to serve */
    assert_int_equal(write(out, "stale", 5), 5);
    assert_int_equal(pack_read_file(p, commit, "big/large.bin", out, &size), -EFBIG);
    assert_int_equal(lseek(out, 0, SEEK_END), 0);
    close(out);
    {
        char tmp[] = "/tmp/bbfs-test-small-XXXXXX";
        int sfd = mkstemp(tmp);

        unlink(tmp);
        assert_int_equal(pack_read_file(p, commit, "small.txt", sfd, &size), 0);
        assert_int_equal(size, 9);
        close(sfd);
    }
    peak = peak_rss_kib();
    pack_close(p);
    want = sh_len(NULL, "ls '%s' | wc -l", dir);
    assert_int_equal(atoi(want), 2); /* the .pack and its .idx */
    free(want);
    print_message("peak RSS with a 60 MiB blob: %ld KiB\n", peak);
#if !defined(__SANITIZE_ADDRESS__) /* ASan's shadow memory and quarantine are no measure */
    if (peak >= RSS_LIMIT_KIB)
        fail_msg("peak RSS %ld KiB while indexing and reading a pack with a 60 MiB blob", peak);
#endif
    free(commit);
    close(fd);
}

/* pack_index() without the helper process: the same packs, the same answers. */
static void test_index_in_this_process(void **state)
{
    char dir[512], name[PACK_NAME_LEN + 1], helper_name[PACK_NAME_LEN + 1];
    int fd = pack_of("main", NULL);

    (void)state;
    fresh_dir(dir, sizeof(dir), "idx-helper");
    assert_int_equal(pack_index(dir, fd, helper_name), 0);
    pack_indexer_stop();
    fresh_dir(dir, sizeof(dir), "idx-here");
    assert_int_equal(pack_index(dir, fd, name), 0);
    assert_string_equal(name, helper_name);
    assert_int_equal(dir_files(dir), 2);
    fresh_dir(dir, sizeof(dir), "idx-here");
    assert_int_equal(pack_index(dir, open("/dev/null", O_RDONLY), name), -EPROTO);
    assert_int_equal(dir_files(dir), 0);
    assert_int_equal(pack_indexer_start(), 0);
    close(fd);
}

/* The helper's pid, from the kernel's list of our children (0 if it cannot say). */
static pid_t helper_pid(void)
{
    char path[64], line[256];
    FILE *f;
    long pid = 0;

    snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
    f = fopen(path, "r");
    if (!f)
        return 0;
    if (fgets(line, sizeof(line), f))
        pid = strtol(line, NULL, 10);
    fclose(f);
    return (pid_t)pid;
}

/* A helper that died (killed, or crashed on a hostile pack) is an error, not a hang. */
static void test_helper_gone(void **state)
{
    char dir[512], name[PACK_NAME_LEN + 1];
    int fd = pack_of("main", NULL);
    pid_t pid = helper_pid();

    (void)state;
    if (pid <= 0)
        skip();
    assert_int_equal(kill(pid, SIGKILL), 0);
    fresh_dir(dir, sizeof(dir), "idx-gone");
    assert_int_equal(pack_index(dir, fd, name), -EIO);
    assert_int_equal(dir_files(dir), 0);
    pack_indexer_stop();
    assert_int_equal(pack_indexer_start(), 0);
    assert_int_equal(pack_index(dir, fd, name), 0);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_every_directory),
        cmocka_unit_test(test_entry_kinds),
        cmocka_unit_test(test_lookup_errors),
        cmocka_unit_test(test_subtree),
        cmocka_unit_test(test_read_files),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_deltas_and_empty_tree),
        cmocka_unit_test(test_broken_packs),
        cmocka_unit_test(test_large_blob),
        cmocka_unit_test(test_index_in_this_process),
        cmocka_unit_test(test_helper_gone),
    };
    int failed;

    if (pack_global_init() < 0 || pack_indexer_start() < 0)
        return 1;
    failed = cmocka_run_group_tests(tests, build_repo, remove_repo);
    pack_global_cleanup();
    return failed;
}

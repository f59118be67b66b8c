/*
 * replay.c - runs a fuzz target over saved inputs, without libFuzzer.
 *
 *   replay_fuzz_parse DIR|FILE...
 *
 * Every regular file of each directory (sorted by name, not recursive) and
 * every file named is handed once to LLVMFuzzerTestOneInput(). Every path
 * named must exist, and a directory must hold at least one input: a corpus
 * that went missing (renamed, not checked out, never written) would
 * otherwise pass with nothing replayed. (git keeps no empty regressions/
 * folder: `make fuzz-replay` names a target's only when it exists.)
 * A target's bug shows as a crash or a sanitizer report, so a clean exit
 * means every input passed. Linked with one target by `make fuzz-replay`.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

/* The whole file in a malloc'd buffer of exactly its size (a sanitizer sees overreads). */
static int read_file(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL, *grown;
    size_t len = 0, alloc = 0, n;

    if (!f)
        return -errno;
    for (;;) {
        if (len == alloc) {
            alloc = alloc ? alloc * 2 : 4096;
            grown = realloc(buf, alloc);
            if (!grown) {
                free(buf);
                fclose(f);
                return -ENOMEM;
            }
            buf = grown;
        }
        n = fread(buf + len, 1, alloc - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        return -EIO;
    }
    fclose(f);
    /* shrink to the exact size: bytes past the input must be out of bounds */
    grown = malloc(len ? len : 1);
    if (!grown) {
        free(buf);
        return -ENOMEM;
    }
    if (len)
        memcpy(grown, buf, len);
    free(buf);
    *data = grown;
    *size = len;
    return 0;
}

static int run_file(const char *path)
{
    uint8_t *data = NULL;
    size_t size = 0;
    int rc = read_file(path, &data, &size);

    if (rc < 0) {
        fprintf(stderr, "replay: cannot read '%s': %s\n", path, strerror(-rc));
        return rc;
    }
    fprintf(stderr, "replay: %s\n", path); /* names the input a crash report is about */
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Runs every regular file of dir; returns how many, or -errno. */
static int run_dir(const char *dir)
{
    struct dirent **names;
    struct stat st;
    char *path;
    int i, n, count = 0, rc = 0;

    n = scandir(dir, &names, NULL, by_name);
    if (n < 0)
        return -errno;
    for (i = 0; i < n; i++) {
        if (rc == 0 && names[i]->d_name[0] != '.') {
            if (asprintf(&path, "%s/%s", dir, names[i]->d_name) < 0) {
                rc = -ENOMEM;
            } else {
                if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                    rc = run_file(path);
                    count++;
                }
                free(path);
            }
        }
        free(names[i]);
    }
    free(names);
    return rc < 0 ? rc : count;
}

int main(int argc, char **argv)
{
    struct stat st;
    int i, n, total = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
        return 2;
    }
    for (i = 1; i < argc; i++) {
        if (stat(argv[i], &st) < 0) {
            fprintf(stderr, "replay: cannot stat '%s': %s\n", argv[i], strerror(errno));
            return 1;
        }
        n = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]) == 0 ? 1 : -EIO;
        if (n < 0) {
            fprintf(stderr, "replay: cannot read '%s': %s\n", argv[i], strerror(-n));
            return 1;
        }
        if (n == 0) {
            fprintf(stderr, "replay: no input in '%s'\n", argv[i]);
            return 1;
        }
        total += n;
    }
    printf("replay: %d inputs, no crash\n", total);
    return 0;
}

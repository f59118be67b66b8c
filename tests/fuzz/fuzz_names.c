/*
 * fuzz_names.c - fuzz target for fs/names.h: which API strings become file names.
 *
 * The input, cut at its first NUL, is tried as a file name, as a ref name
 * and as a path. Each answer is compared with a plain re-statement of the
 * rule in names.h (not empty, not "." or "..", no '/', no control character,
 * at most 255 bytes; a ref is valid when every '/'-separated part is), and
 * splitting a path then joining its parts must give the path back.
 *
 *   build/fuzz/fuzz_names -max_total_time=60 build/fuzz/corpus/fuzz_names
 * tests/fuzz/corpus/fuzz_names
 */
#include <errno.h>
#include <string.h>

#include "fs/names.h"
#include "tests/fuzz/fuzz.h"

/* The rule of names.h for the len bytes at s. */
static int expect_valid(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > 255 || (len == 1 && s[0] == '.') ||
        (len == 2 && s[0] == '.' && s[1] == '.'))
        return 0;
    for (i = 0; i < len; i++)
        if (s[i] == '/' || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int expect_ref_valid(const char *s)
{
    const char *slash;

    for (;;) {
        slash = strchr(s, '/');
        if (!expect_valid(s, slash ? (size_t)(slash - s) : strlen(s)))
            return 0;
        if (!slash)
            return 1;
        s = slash + 1;
    }
}

static void run_split(const char *s, size_t len)
{
    char *path = strdup(s), *joined, *parts[NAMES_MAX_DEPTH];
    size_t slashes = 0, i;
    int n, k;

    if (!path)
        return;
    for (i = 0; i < len; i++)
        slashes += s[i] == '/';
    n = names_split(path, parts, NAMES_MAX_DEPTH);
    if (len == 0) {
        fuzz_check(n == 0);
    } else if (slashes + 1 > NAMES_MAX_DEPTH) {
        fuzz_check(n == -ENAMETOOLONG);
    } else {
        fuzz_check(n == (int)slashes + 1);
        for (k = 0; k < n; k++)
            fuzz_check(!strchr(parts[k], '/'));
        joined = names_join(parts, 0, n);
        if (joined)
            fuzz_check(strcmp(joined, s) == 0);
        free(joined);
        /* a sub-range: the parts after the first */
        joined = names_join(parts, 1, n);
        if (joined)
            fuzz_check(strcmp(joined, n > 1 ? strchr(s, '/') + 1 : "") == 0);
        free(joined);
    }
    free(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    size_t len;

    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    len = strlen(s);
    fuzz_check(!!names_is_valid(s) == expect_valid(s, len));
    fuzz_check(!!names_ref_is_valid(s) == expect_ref_valid(s));
    run_split(s, len);
    free(s);
    return 0;
}

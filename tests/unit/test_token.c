/*
 * test_token.c - token sources and the refusal of readable token files, and
 * other secrets read from files under the same rules (secret_file_load).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *write_token_file(const char *content, mode_t mode)
{
    char *path = strdup("/tmp/bbfs-token-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    chmod(path, mode);
    return path;
}

static void test_file_token_trimmed(void **state)
{
    char *path = write_token_file("  s3cret-token \n second line\n", 0600);
    char *token = NULL;
    char err[256] = "";
    (void)state;
    unsetenv("BITBUCKET_TOKEN");
    assert_int_equal(token_load(path, &token, err, sizeof(err)), 0);
    assert_string_equal(token, "s3cret-token");
    token_free(token);
    unlink(path);
    free(path);
}

static void test_readable_file_refused(void **state)
{
    static const mode_t modes[] = {0640, 0604, 0644};
    (void)state;
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        char *path = write_token_file("s3cret\n", modes[i]);
        char *token = NULL;
        char err[256] = "";
        assert_int_equal(token_load(path, &token, err, sizeof(err)), -EPERM);
        assert_null(token);
        assert_non_null(strstr(err, "chmod 600"));
        assert_null(strstr(err, "s3cret"));
        unlink(path);
        free(path);
    }
}

static void test_bad_files(void **state)
{
    char *token = NULL;
    char err[256] = "";
    (void)state;
    assert_int_equal(token_load("/nonexistent/token", &token, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/token"));

    char *empty = write_token_file("\n\n", 0600);
    assert_int_equal(token_load(empty, &token, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "empty"));
    unlink(empty);
    free(empty);

    char *spaced = write_token_file("two words\n", 0600);
    assert_int_equal(token_load(spaced, &token, err, sizeof(err)), -EINVAL);
    unlink(spaced);
    free(spaced);
}

static void test_environment_token(void **state)
{
    char *token = NULL;
    char err[256] = "";
    (void)state;
    setenv("BITBUCKET_TOKEN", "env-token\n", 1);
    assert_int_equal(token_load(NULL, &token, err, sizeof(err)), 0);
    assert_string_equal(token, "env-token");
    token_free(token);

    /* token_file wins over the environment. */
    char *path = write_token_file("file-token", 0600);
    assert_int_equal(token_load(path, &token, err, sizeof(err)), 0);
    assert_string_equal(token, "file-token");
    token_free(token);
    unlink(path);
    free(path);
    unsetenv("BITBUCKET_TOKEN");
}

/* A password file: like a token file, but a password may hold spaces. */
static void test_secret_file(void **state)
{
    char *secret = NULL, err[256] = "";
    char *path = write_token_file("  fleet:pass word \nsecond line\n", 0600);
    (void)state;

    assert_int_equal(secret_file_load(path, "shared_cache_auth", &secret, err, sizeof(err)), 0);
    assert_string_equal(secret, "fleet:pass word");
    token_free(secret);
    chmod(path, 0640);
    secret = NULL;
    assert_int_equal(secret_file_load(path, "shared_cache_auth", &secret, err, sizeof(err)),
                     -EPERM);
    assert_null(secret);
    assert_non_null(strstr(err, "shared_cache_auth file"));
    assert_non_null(strstr(err, "chmod 600"));
    assert_null(strstr(err, "pass word"));
    unlink(path);
    free(path);

    path = write_token_file("tab\tinside\n", 0600);
    assert_int_equal(secret_file_load(path, "shared_cache_auth", &secret, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "control characters"));
    assert_null(strstr(err, "inside"));
    unlink(path);
    free(path);

    path = write_token_file(" \n", 0600);
    assert_int_equal(secret_file_load(path, "shared_cache_auth", &secret, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "empty"));
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_token_trimmed), cmocka_unit_test(test_readable_file_refused),
        cmocka_unit_test(test_bad_files),          cmocka_unit_test(test_environment_token),
        cmocka_unit_test(test_secret_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_digest.c - api_sha256_hex (api/digest.c): the FIPS 180-2 test
 * vectors, bytes after a NUL counted, lowercase hex with a terminating NUL,
 * and names that differ for contents that differ.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api.h"

#include <stdlib.h>
#include <string.h>

static void test_known_vectors(void **state)
{
    static const struct {
        const char *data;
        size_t len;
        const char *hex;
    } cases[] = {
        {"", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"a\0b", 3, "59b271ae1bbcb1d31d41929817f4b16fb439eb4f31520b5ad1d5ce98920a7138"},
    };
    char out[65];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(out, 'X', sizeof(out));
        api_sha256_hex(cases[i].data, cases[i].len, out);
        assert_string_equal(out, cases[i].hex);
    }
    api_sha256_hex(NULL, 0, out); /* nothing at all hashes like "" */
    assert_string_equal(out, cases[0].hex);
}

static void test_million_a(void **state)
{
    char *data = malloc(1000000), out[65];

    (void)state;
    assert_non_null(data);
    memset(data, 'a', 1000000);
    api_sha256_hex(data, 1000000, out);
    assert_string_equal(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(data);
}

static void test_names_are_safe(void **state)
{
    const char *key = "acme/api/src/../../etc/passwd\n";
    char a[65], b[65];

    (void)state;
    api_sha256_hex(key, strlen(key), a);
    api_sha256_hex(key, strlen(key) - 1, b);
    assert_int_equal(strlen(a), 64);
    assert_int_equal(strspn(a, "0123456789abcdef"), 64);
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_names_are_safe),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_digest.c - api_sha256_hex (api/digest.c): the FIPS 180-2 test
 * vectors, bytes after a NUL counted, lowercase hex with a terminating NUL,
 * and names that differ for contents that differ; digest_sha256 and
 * digest_hmac_sha256 (digest.h) against the same vectors and RFC 4231's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api.h"
#include "api/digest.h"

#include <stdio.h>
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

static void to_hex(const unsigned char *md, char out[2 * DIGEST_LEN + 1])
{
    for (size_t i = 0; i < DIGEST_LEN; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

static void test_binary_sha256_matches_hex(void **state)
{
    const char *data = "abc";
    unsigned char md[DIGEST_LEN];
    char hex[2 * DIGEST_LEN + 1], name[65];

    (void)state;
    assert_int_equal(digest_sha256(data, 3, md), 0);
    to_hex(md, hex);
    api_sha256_hex(data, 3, name);
    assert_string_equal(hex, name);
}

/* RFC 4231, test cases 1, 2, 4, 6 and 7 (keys shorter and longer than a block), and an empty key.
 */
static void test_hmac_vectors(void **state)
{
    static const struct {
        const char *key;
        size_t keylen;
        const char *data;
        const char *hex;
    } cases[] = {
        {"\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b", 20,
         "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"Jefe", 4, "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14"
         "\x15\x16\x17\x18\x19",
         25,
         "\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd"
         "\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd"
         "\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd",
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {NULL, 131, "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {NULL, 131,
         "This is a test using a larger than block-size key and a larger than block-size data. "
         "The key needs to be hashed before being used by the HMAC algorithm.",
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
        {"", 0, "", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"},
    };
    unsigned char aa[131], md[DIGEST_LEN];
    char hex[2 * DIGEST_LEN + 1];

    (void)state;
    memset(aa, 0xaa, sizeof(aa));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const void *key = cases[i].key ? (const void *)cases[i].key : aa;

        assert_int_equal(
            digest_hmac_sha256(key, cases[i].keylen, cases[i].data, strlen(cases[i].data), md), 0);
        to_hex(md, hex);
        assert_string_equal(hex, cases[i].hex);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),  cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_names_are_safe), cmocka_unit_test(test_binary_sha256_matches_hex),
        cmocka_unit_test(test_hmac_vectors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_shared.c - the keys and value format of the shared cache
 * (api/shared.c). Every machine of a fleet must derive the same keys and read
 * each other's values, so the expected secret, keys and one whole value are
 * fixed vectors computed outside bbfs (Python's hashlib and hmac, the layout
 * of shared.h). Then: hostile names neither collide nor leak into keys, the
 * token is in no key, every damaged byte is detected, a value cannot move to
 * another key, a mutable value cannot be forged without the secret, the caps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/shared.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "ATCTT3xFfGN0-secret-token"
#define REQUEST "https://api.bitbucket.org/2.0/repositories/acme?q=project.key%3D%22PLAT%22"

static const struct shared_address readme = {
    .origin = "https://api.bitbucket.org/2.0",
    .workspace = "acme",
    .repo = "api",
    .kind = "src",
    .hash = "0123456789abcdef0123456789abcdef01234567",
    .path = "docs/README.md",
};

static void hex(const unsigned char *p, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

static size_t unhex(const char *s, char *out)
{
    size_t n = strlen(s) / 2;

    for (size_t i = 0; i < n; i++) {
        unsigned v;

        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    return n;
}

static void test_secret_vector(void **state)
{
    struct shared_secret secret;
    char out[2 * SHARED_SECRET_LEN + 1];

    (void)state;
    assert_int_equal(shared_secret_derive(TOKEN, &secret), 0);
    hex(secret.bytes, sizeof(secret.bytes), out);
    assert_string_equal(out, "dd46e6126b75b23630dd59c107f5d4a1bc8fa6c60b52a7d4c5530a84253418c5");
    shared_secret_wipe(&secret);
    for (size_t i = 0; i < sizeof(secret.bytes); i++)
        assert_int_equal(secret.bytes[i], 0);
    assert_int_equal(shared_secret_derive("", &secret), -EINVAL);
    assert_int_equal(shared_secret_derive(NULL, &secret), -EINVAL);
}

static void test_key_vectors(void **state)
{
    struct shared_secret secret;
    struct shared_key key;
    char lease[SHARED_KEY_SIZE];

    (void)state;
    assert_int_equal(shared_key_by_hash(&readme, &key), 0);
    assert_string_equal(
        key.name, "bbfs:1:h:be3088005cb7e226803fbf0c4959ee5ade8b6fcf926195413997657847a35ab1");
    assert_int_equal(key.kind, SHARED_BY_HASH);
    shared_lease_name(&key, lease);
    assert_string_equal(
        lease, "bbfs:1:h:be3088005cb7e226803fbf0c4959ee5ade8b6fcf926195413997657847a35ab1:lease");

    assert_int_equal(shared_secret_derive(TOKEN, &secret), 0);
    assert_int_equal(shared_key_mutable(&secret, REQUEST, &key), 0);
    assert_string_equal(
        key.name, "bbfs:1:m:f82ff2e79d6b1aad25b12979bde07ecee9d2402a0a6f5c4d78755347a73cde5e");
    assert_int_equal(key.kind, SHARED_MUTABLE);
    assert_int_equal(shared_key_mutable(NULL, REQUEST, &key), -EINVAL);
    assert_int_equal(shared_key_mutable(&secret, NULL, &key), -EINVAL);
}

static void assert_plain_key(const char *name)
{
    assert_int_equal(strlen(name), 9 + 64);
    assert_int_equal(strspn(name + 9, "0123456789abcdef"), 64);
}

/* Fields that concatenate alike, hostile bytes, and empty ones: all distinct, all plain. */
static void test_hostile_names(void **state)
{
    static const char *const variants[][3] = {
        {"a/b", "c", "d"},  {"a", "b/c", "d"}, {"a", "b", "c/d"},
        {"", "ab", "cd"},   {"ab", "", "cd"},  {"..", "..", "/etc/passwd"},
        {"a\nb", "c", "d"}, {"a", "c", "d\n"}, {"a b", "c", "d"},
        {"", "", ""},
    };
    size_t n = sizeof(variants) / sizeof(variants[0]);
    struct shared_key keys[sizeof(variants) / sizeof(variants[0])];

    (void)state;
    for (size_t i = 0; i < n; i++) {
        struct shared_address a = readme;

        a.workspace = variants[i][0];
        a.repo = variants[i][1];
        a.path = variants[i][2];
        assert_int_equal(shared_key_by_hash(&a, &keys[i]), 0);
        assert_plain_key(keys[i].name);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(keys[i].name, keys[j].name);
    }
    {
        struct shared_address a = readme;

        a.path = NULL;
        assert_int_equal(shared_key_by_hash(&a, &keys[0]), -EINVAL);
    }
}

/* The kind and the origin are part of the address too. */
static void test_address_fields_all_count(void **state)
{
    struct shared_address a = readme, b = readme, c = readme;
    struct shared_key ka, kb, kc;

    (void)state;
    b.kind = "diff";
    c.origin = "https://bitbucket.example.com/2.0";
    assert_int_equal(shared_key_by_hash(&a, &ka), 0);
    assert_int_equal(shared_key_by_hash(&b, &kb), 0);
    assert_int_equal(shared_key_by_hash(&c, &kc), 0);
    assert_string_not_equal(ka.name, kb.name);
    assert_string_not_equal(ka.name, kc.name);
}

static void test_mutable_keys_per_token(void **state)
{
    struct shared_secret one, other;
    struct shared_key k1, k1again, k2, k3;
    char secret_hex[2 * SHARED_SECRET_LEN + 1];

    (void)state;
    assert_int_equal(shared_secret_derive(TOKEN, &one), 0);
    assert_int_equal(shared_secret_derive(TOKEN "x", &other), 0);
    assert_int_equal(shared_key_mutable(&one, REQUEST, &k1), 0);
    assert_int_equal(shared_key_mutable(&one, REQUEST, &k1again), 0);
    assert_int_equal(shared_key_mutable(&other, REQUEST, &k2), 0);
    assert_int_equal(shared_key_mutable(&one, REQUEST "&page=2", &k3), 0);
    assert_string_equal(k1.name, k1again.name);
    assert_string_not_equal(k1.name, k2.name);
    assert_string_not_equal(k1.name, k3.name);
    assert_plain_key(k1.name);
    hex(one.bytes, sizeof(one.bytes), secret_hex);
    assert_null(strstr(k1.name, TOKEN));
    assert_null(strstr(k1.name, secret_hex));
    assert_null(strstr(k1.name, "acme"));
}

static char *sealed(const struct shared_key *key, const struct shared_secret *secret,
                    const struct shared_entry *e, size_t *len)
{
    char *value;

    assert_int_equal(shared_value_build(e, 1 << 20, &value, len), 0);
    assert_int_equal(shared_value_seal(key, secret, value, *len), 0);
    return value;
}

/* The value Python built for this key, entry and secret. */
static void test_value_vector(void **state)
{
    static const char expected_hex[] =
        "6262534301000005000000000000000d000000006553f100de829a4064eb87e48c1b07970e574352491c8d0e"
        "b3836d8ff6c151ac250461ae22616263227b2276616c756573223a5b5d7d";
    const struct shared_entry e = {.body = "{\"values\":[]}",
                                   .len = 13,
                                   .etag = "\"abc\"",
                                   .etag_len = 5,
                                   .fetched_at = 1700000000};
    struct shared_secret secret;
    struct shared_key key;
    struct shared_entry back;
    char expected[128], *value;
    size_t len, expected_len = unhex(expected_hex, expected);

    (void)state;
    assert_int_equal(shared_secret_derive(TOKEN, &secret), 0);
    assert_int_equal(shared_key_mutable(&secret, REQUEST, &key), 0);
    value = sealed(&key, &secret, &e, &len);
    assert_int_equal(len, expected_len);
    assert_memory_equal(value, expected, len);
    assert_int_equal(shared_value_open(&key, &secret, value, len, 1 << 20, &back), 0);
    assert_int_equal(back.len, 13);
    assert_memory_equal(back.body, e.body, 13);
    assert_int_equal(back.etag_len, 5);
    assert_memory_equal(back.etag, "\"abc\"", 5);
    assert_int_equal(back.fetched_at, 1700000000);
    free(value);
}

static void test_round_trips(void **state)
{
    static const char binary[] = "a\0b\0\xff\n";
    const struct shared_entry entries[] = {
        {.body = "", .len = 0},
        {.body = binary, .len = sizeof(binary)},
        {.body = "x", .len = 1, .etag = "W/\"1\"", .etag_len = 5, .fetched_at = -1},
    };
    struct shared_key key;
    struct shared_entry back;
    char *value;
    size_t len;

    (void)state;
    assert_int_equal(shared_key_by_hash(&readme, &key), 0);
    for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
        value = sealed(&key, NULL, &entries[i], &len);
        assert_int_equal(len, SHARED_HEADER_LEN + entries[i].etag_len + entries[i].len);
        assert_int_equal(shared_value_open(&key, NULL, value, len, 1 << 20, &back), 0);
        assert_int_equal(back.len, entries[i].len);
        assert_memory_equal(back.body, entries[i].body, back.len);
        assert_int_equal(back.etag_len, entries[i].etag_len);
        if (back.etag_len)
            assert_memory_equal(back.etag, entries[i].etag, back.etag_len);
        else
            assert_null(back.etag);
        assert_int_equal(back.fetched_at, entries[i].fetched_at);
        free(value);
    }
}

/* Each byte changed in turn, every truncation, and a byte too many: never accepted. */
static void test_every_damage_detected(void **state)
{
    const struct shared_entry e = {
        .body = "hello, world", .len = 12, .etag = "\"e\"", .etag_len = 3, .fetched_at = 42};
    struct shared_secret secret;
    struct shared_key keys[2];
    struct shared_entry back;
    char *value, *longer;
    size_t len;

    (void)state;
    assert_int_equal(shared_secret_derive(TOKEN, &secret), 0);
    assert_int_equal(shared_key_by_hash(&readme, &keys[0]), 0);
    assert_int_equal(shared_key_mutable(&secret, REQUEST, &keys[1]), 0);
    for (int k = 0; k < 2; k++) {
        value = sealed(&keys[k], &secret, &e, &len);
        for (size_t i = 0; i < len; i++) {
            for (unsigned bit = 0; bit < 8; bit++) {
                int rc;

                value[i] ^= (char)(1u << bit);
                rc = shared_value_open(&keys[k], &secret, value, len, 1 << 20, &back);
                assert_true(rc == -EBADMSG || rc == -EFBIG);
                value[i] ^= (char)(1u << bit);
            }
        }
        for (size_t cut = 0; cut < len; cut++)
            assert_int_equal(shared_value_open(&keys[k], &secret, value, cut, 1 << 20, &back),
                             -EBADMSG);
        longer = malloc(len + 1);
        assert_non_null(longer);
        memcpy(longer, value, len);
        longer[len] = 'x';
        assert_int_equal(shared_value_open(&keys[k], &secret, longer, len + 1, 1 << 20, &back),
                         -EBADMSG);
        assert_int_equal(shared_value_open(&keys[k], &secret, value, len, 1 << 20, &back), 0);
        free(longer);
        free(value);
    }
}

/* A good value under another key, or a mutable one forged without the secret. */
static void test_values_bound_to_key_and_secret(void **state)
{
    const struct shared_entry e = {.body = "[]", .len = 2, .fetched_at = 1};
    struct shared_secret secret, other;
    struct shared_key a, b, forged;
    struct shared_entry back;
    struct shared_address elsewhere = readme;
    char *value;
    size_t len;

    (void)state;
    elsewhere.path = "other";
    assert_int_equal(shared_key_by_hash(&readme, &a), 0);
    assert_int_equal(shared_key_by_hash(&elsewhere, &b), 0);
    value = sealed(&a, NULL, &e, &len);
    assert_int_equal(shared_value_open(&b, NULL, value, len, 1 << 20, &back), -EBADMSG);
    free(value);

    assert_int_equal(shared_secret_derive(TOKEN, &secret), 0);
    assert_int_equal(shared_secret_derive("another token", &other), 0);
    assert_int_equal(shared_key_mutable(&secret, REQUEST, &a), 0);
    assert_int_equal(shared_key_mutable(&secret, REQUEST "&page=2", &b), 0);
    value = sealed(&a, &secret, &e, &len);
    assert_int_equal(shared_value_open(&a, &secret, value, len, 1 << 20, &back), 0);
    assert_int_equal(shared_value_open(&b, &secret, value, len, 1 << 20, &back), -EBADMSG);
    assert_int_equal(shared_value_open(&a, &other, value, len, 1 << 20, &back), -EBADMSG);
    assert_int_equal(shared_value_open(&a, NULL, value, len, 1 << 20, &back), -EINVAL);
    free(value);

    /* Same name, checked with a plain SHA-256 as anyone could compute it. */
    forged = a;
    forged.kind = SHARED_BY_HASH;
    value = sealed(&forged, NULL, &e, &len);
    assert_int_equal(shared_value_open(&a, &secret, value, len, 1 << 20, &back), -EBADMSG);
    free(value);
}

static void test_caps_and_etags(void **state)
{
    char body[100] = {0}, etag[SHARED_ETAG_MAX + 1], *value;
    struct shared_entry e = {.body = body, .len = sizeof(body)}, back;
    struct shared_key key;
    size_t len;

    (void)state;
    assert_int_equal(shared_key_by_hash(&readme, &key), 0);
    assert_int_equal(shared_value_build(&e, 99, &value, &len), -EFBIG);
    assert_null(value);
    value = sealed(&key, NULL, &e, &len);
    assert_int_equal(shared_value_open(&key, NULL, value, len, 100, &back), 0);
    assert_int_equal(shared_value_open(&key, NULL, value, len, 99, &back), -EFBIG);
    /* Only the beginning of a value over the cap, as a bounded read gets it. */
    assert_int_equal(shared_value_open(&key, NULL, value, SHARED_HEADER_LEN + 10, 99, &back),
                     -EFBIG);
    free(value);

    memset(etag, 'e', sizeof(etag));
    e.etag = etag;
    e.etag_len = SHARED_ETAG_MAX;
    value = sealed(&key, NULL, &e, &len);
    assert_int_equal(shared_value_open(&key, NULL, value, len, 100, &back), 0);
    assert_int_equal(back.etag_len, SHARED_ETAG_MAX);
    free(value);
    e.etag_len = SHARED_ETAG_MAX + 1;
    assert_int_equal(shared_value_build(&e, 100, &value, &len), -EINVAL);
    e.etag = "\"a\nb\"";
    e.etag_len = 5;
    assert_int_equal(shared_value_build(&e, 100, &value, &len), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_vector),
        cmocka_unit_test(test_key_vectors),
        cmocka_unit_test(test_hostile_names),
        cmocka_unit_test(test_address_fields_all_count),
        cmocka_unit_test(test_mutable_keys_per_token),
        cmocka_unit_test(test_value_vector),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_every_damage_detected),
        cmocka_unit_test(test_values_bound_to_key_and_secret),
        cmocka_unit_test(test_caps_and_etags),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

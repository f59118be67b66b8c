/*
 * test_log.c - api/log.c: sanitising hostile strings, one line per message,
 * log_once/log_forget, debug filtering, holding start-up messages. stderr is
 * redirected into a temporary file to read back what was written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/log.h"
#include "log_capture.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_sanitize_table(void **state)
{
    static const struct {
        const char *in;
        size_t dstlen;
        const char *out;
    } cases[] = {
        {"plain text", 64, "plain text"},
        {"new\nline", 64, "new?line"},
        {"cr\rlf\r\n", 64, "cr?lf??"},
        {"tab\there", 64, "tab?here"},
        {"esc\x1b[31mred", 64, "esc?[31mred"},
        {"del\x7f", 64, "del?"},
        {"bell\a", 64, "bell?"},
        {"ünïcödé 日本 ☃", 64, "ünïcödé 日本 ☃"},
        {"c1 \xc2\x9b"
         "31m",
         64, "c1 ?31m"}, /* U+009B CSI */
        {"bidi \xe2\x80\xae"
         "txt",
         64, "bidi ?txt"}, /* U+202E RLO */
        {"ls \xe2\x80\xa8"
         "x",
         64, "ls ?x"}, /* U+2028 */
        {"bad \xff\xfe utf8", 64, "bad ?? utf8"},
        {"overlong \xc0\xaf", 64, "overlong ??"},
        {"surrogate \xed\xa0\x80", 64, "surrogate ???"},
        {"truncated \xe6\x97", 64, "truncated ??"},
        {"abcdef", 4, "abc"},
        {"ab日本", 5, "ab"}, /* never half a character */
        {"ab日本", 6, "ab日"},
        {"", 8, ""},
    };
    char dst[64];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(dst, 'X', sizeof(dst));
        log_sanitize(dst, cases[i].dstlen, cases[i].in);
        if (strcmp(dst, cases[i].out) != 0)
            fail_msg("case %zu: got '%s', expected '%s'", i, dst, cases[i].out);
    }
    log_sanitize(dst, sizeof(dst), NULL);
    assert_string_equal(dst, "(null)");
    log_sanitize(dst, 0, "untouched"); /* no room, no write */
    log_sanitize(NULL, 10, "x");

    /* in place */
    char inplace[] = "a\nb\xe2\x80\xae"
                     "c日";
    log_sanitize(inplace, sizeof(inplace), inplace);
    assert_string_equal(inplace, "a?b?c日");
}

static int count_lines(const char *s)
{
    int n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_one_line_per_message(void **state)
{
    struct capture c;
    char *out;

    (void)state;
    capture_start(&c);
    log_err("cannot fetch '%s': %s", "acme/api", "connection refused");
    log_warn("hostile %s", "x\ny: forged\x1b[2J");
    log_info("info %d", 3);
    out = capture_end(&c);
    assert_string_equal(out, "bbfs: error: cannot fetch 'acme/api': connection refused\n"
                             "bbfs: warning: hostile x?y: forged?[2J\n"
                             "bbfs: info 3\n");
    free(out);
}

static void test_debug_filter(void **state)
{
    struct capture c;
    char *out;

    (void)state;
    capture_start(&c);
    log_set_debug(0);
    log_debug("hidden %d", 1);
    log_msg(LOG_LEVEL_DEBUG, "hidden too");
    log_once(LOG_LEVEL_DEBUG, "dbg-key", "hidden once");
    log_set_debug(1);
    assert_true(log_debug_enabled());
    log_debug("shown %d", 2);
    log_set_debug(0);
    assert_false(log_debug_enabled());
    out = capture_end(&c);
    assert_string_equal(out, "bbfs: debug: shown 2\n");
    free(out);
}

static void test_once_and_forget(void **state)
{
    struct capture c;
    char *out;

    (void)state;
    capture_start(&c);
    for (int i = 0; i < 5; i++)
        log_once(LOG_LEVEL_WARN, "net", "network down (%d)", i);
    log_once(LOG_LEVEL_WARN, "other", "another key");
    log_forget("net");
    log_once(LOG_LEVEL_WARN, "net", "network down again");
    log_once(LOG_LEVEL_WARN, "net", "not shown");
    log_forget("never-seen");
    log_forget(NULL);
    out = capture_end(&c);
    assert_string_equal(out, "bbfs: warning: network down (0)\n"
                             "bbfs: warning: another key\n"
                             "bbfs: warning: network down again\n");
    free(out);
    log_forget("net");
    log_forget("other");
}

static void test_once_is_bounded(void **state)
{
    struct capture c;
    char key[32], *out;

    (void)state;
    capture_start(&c);
    /* many distinct keys: each logs once, memory stays bounded (oldest evicted) */
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        log_once(LOG_LEVEL_WARN, key, "key %d", i);
        log_once(LOG_LEVEL_WARN, key, "key %d again", i);
    }
    out = capture_end(&c);
    assert_int_equal(count_lines(out), 1000);
    assert_null(strstr(out, "again"));
    free(out);
}

static void *once_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++)
        log_once(LOG_LEVEL_WARN, "shared", "shared key");
    return NULL;
}

static void test_once_threads(void **state)
{
    pthread_t t[8];
    struct capture c;
    char *out;

    (void)state;
    log_forget("shared");
    capture_start(&c);
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, once_thread, NULL), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    out = capture_end(&c);
    assert_string_equal(out, "bbfs: warning: shared key\n");
    free(out);
}

static void test_long_message_truncated(void **state)
{
    struct capture c;
    char big[3000], *out;

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    capture_start(&c);
    log_warn("%s", big);
    out = capture_end(&c);
    assert_int_equal(count_lines(out), 1);
    assert_true(strlen(out) < 1100);
    free(out);
}

static void test_hold_then_write(void **state)
{
    struct capture c;
    char *out;

    (void)state;
    capture_start(&c);
    log_hold();
    log_warn("held %d", 1);
    log_once(LOG_LEVEL_WARN, "held-key", "held once");
    log_once(LOG_LEVEL_WARN, "held-key", "not twice");
    log_info("held %d", 2);
    log_set_debug(1);
    log_debug("debug is never held");
    log_set_debug(0);
    fprintf(stderr, "the start-up line\n");
    log_release(1);
    log_warn("after");
    log_release(1); /* nothing held: nothing written */
    out = capture_end(&c);
    assert_string_equal(out, "bbfs: debug: debug is never held\n"
                             "the start-up line\n"
                             "bbfs: warning: held 1\n"
                             "bbfs: warning: held once\n"
                             "bbfs: held 2\n"
                             "bbfs: warning: after\n");
    free(out);
    log_forget("held-key");
}

static void test_hold_then_drop(void **state)
{
    struct capture c;
    char *out;

    (void)state;
    capture_start(&c);
    log_hold();
    log_warn("the rate limit is nearly used up");
    fprintf(stderr, "bbfs: token rejected\n");
    log_release(0);
    log_warn("after");
    out = capture_end(&c);
    assert_string_equal(out, "bbfs: token rejected\n"
                             "bbfs: warning: after\n");
    free(out);
}

static void test_hold_is_bounded(void **state)
{
    struct capture c;
    char first_dropped[32], *out;

    (void)state;
    capture_start(&c);
    log_hold();
    for (int i = 0; i < LOG_HELD_MAX + 5; i++)
        log_warn("held %d", i);
    log_release(1);
    out = capture_end(&c);
    assert_int_equal(count_lines(out), LOG_HELD_MAX + 1);
    assert_non_null(strstr(out, "bbfs: warning: held 0\n"));
    snprintf(first_dropped, sizeof(first_dropped), "held %d\n", LOG_HELD_MAX);
    assert_null(strstr(out, first_dropped));
    assert_non_null(strstr(out, "bbfs: warning: 5 more start-up messages were dropped\n"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sanitize_table),         cmocka_unit_test(test_one_line_per_message),
        cmocka_unit_test(test_debug_filter),           cmocka_unit_test(test_once_and_forget),
        cmocka_unit_test(test_once_is_bounded),        cmocka_unit_test(test_once_threads),
        cmocka_unit_test(test_long_message_truncated), cmocka_unit_test(test_hold_then_write),
        cmocka_unit_test(test_hold_then_drop),         cmocka_unit_test(test_hold_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

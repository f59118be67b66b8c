/*
 * test_options.c - the command line: defaults, bbfs's -o options, the
 * source, git's options, and what is refused (every wrong number, every
 * empty text, with a message naming the option and its range).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fs/options.h"

#include <errno.h>
#include <string.h>

static int parse(int argc, const char *const *argv, struct options *opts, struct fuse_args *args,
                 char *err)
{
    struct fuse_args init = FUSE_ARGS_INIT(argc, (char **)argv);
    *args = init;
    return options_parse(args, opts, err, 256);
}

static int has_arg(const struct fuse_args *args, const char *arg)
{
    for (int i = 0; i < args->argc; i++)
        if (strcmp(args->argv[i], arg) == 0)
            return 1;
    return 0;
}

/* fuse_opt collects the -o options it keeps into "-o" "a,b,c". */
static int has_mount_option(const struct fuse_args *args, const char *opt)
{
    for (int i = 0; i + 1 < args->argc; i++)
        if (strcmp(args->argv[i], "-o") == 0 && strstr(args->argv[i + 1], opt))
            return 1;
    return 0;
}

static void test_defaults_and_source(void **state)
{
    const char *argv[] = {"bbfs", "acme/PLAT", "/mnt/bb", NULL};
    struct options opts;
    struct fuse_args args;
    char err[256] = "";
    (void)state;
    assert_int_equal(parse(3, argv, &opts, &args, err), 0);
    assert_string_equal(opts.api_url, "https://api.bitbucket.org/2.0");
    assert_int_equal(opts.ttl, 60);
    assert_int_equal(opts.commit_limit, 100);
    assert_int_equal(opts.timeout, 30);
    assert_true(opts.cache_size == UINT64_C(1) << 30);
    assert_false(opts.offline);
    assert_string_equal(opts.workspace, "acme");
    assert_string_equal(opts.project, "PLAT");
    /* The mountpoint stays for fuse_parse_cmdline; the source does not. */
    assert_true(has_arg(&args, "/mnt/bb"));
    assert_false(has_arg(&args, "acme/PLAT"));
    options_release(&opts);
    fuse_opt_free_args(&args);
}

static void test_bbfs_options(void **state)
{
    const char *argv[] = {"bbfs",
                          "-f",
                          "-o",
                          "api_url=http://127.0.0.1:9/2.0,ttl=5,commit_limit=7,offline,_netdev,"
                          "allow_other",
                          "-o",
                          "token_file=/t,cache_dir=/c,ca_file=/ca.pem,timeout=3",
                          "acme",
                          "/mnt/bb",
                          NULL};
    struct options opts;
    struct fuse_args args;
    char err[256] = "";
    (void)state;
    assert_int_equal(parse(8, argv, &opts, &args, err), 0);
    assert_string_equal(opts.api_url, "http://127.0.0.1:9/2.0");
    assert_int_equal(opts.ttl, 5);
    assert_int_equal(opts.commit_limit, 7);
    assert_int_equal(opts.timeout, 3);
    assert_true(opts.offline);
    assert_string_equal(opts.token_file, "/t");
    assert_string_equal(opts.cache_dir, "/c");
    assert_string_equal(opts.ca_file, "/ca.pem");
    assert_string_equal(opts.workspace, "acme");
    assert_null(opts.project);
    /* FUSE's own options pass through; fstab noise does not. */
    assert_true(has_arg(&args, "-f"));
    assert_true(has_mount_option(&args, "allow_other"));
    for (int i = 0; i < args.argc; i++)
        assert_null(strstr(args.argv[i], "_netdev"));
    options_release(&opts);
    fuse_opt_free_args(&args);
}

static void test_refusals(void **state)
{
    static const struct {
        int argc;
        const char *argv[6];
        const char *message_part;
    } cases[] = {
        {5, {"bbfs", "-o", "token=secret", "acme", "/m"}, "token_file"},
        {2, {"bbfs", "acme"}, "usage"},
        {4, {"bbfs", "acme", "/m", "/extra"}, "too many"},
        {3, {"bbfs", "ac me", "/m"}, "invalid source"},
        {3, {"bbfs", "acme/", "/m"}, "invalid source"},
        {3, {"bbfs", "/PLAT", "/m"}, "invalid source"},
        {3, {"bbfs", "acme/P/Q", "/m"}, "invalid source"},
        {5, {"bbfs", "-o", "commit_limit=0", "acme", "/m"}, "commit_limit"},
        {5, {"bbfs", "-o", "cache_size=0", "acme", "/m"}, "cache_size"},
        {5, {"bbfs", "-o", "cache_size=0G", "acme", "/m"}, "cache_size"},
        {5, {"bbfs", "-o", "cache_size=", "acme", "/m"}, "cache_size"},
        {5, {"bbfs", "-o", "cache_size=lots", "acme", "/m"}, "cache_size"},
        {5, {"bbfs", "-o", "cache_size=-1", "acme", "/m"}, "cache_size"},
        {5, {"bbfs", "-o", "cache_size=1.5G", "acme", "/m"}, "cache_size"},
        {5, {"bbfs", "-o", "cache_size=2P", "acme", "/m"}, "cache_size"},
        {5, {"bbfs", "-o", "cache_size=2GB", "acme", "/m"}, "cache_size"},
        {5, {"bbfs", "-o", "cache_size=2Gib", "acme", "/m"}, "cache_size"},
        {5, {"bbfs", "-o", "cache_size=2 G", "acme", "/m"}, "cache_size"},
        {5, {"bbfs", "-o", "cache_size=16777216T", "acme", "/m"}, "too big"},
        {5, {"bbfs", "-o", "cache_size=99999999999999999999", "acme", "/m"}, "too big"},
        {5, {"bbfs", "-o", "cache_size=lots,cache_size=1G", "acme", "/m"}, "cache_size 'lots'"},
        /* numbers: decimal digits within the documented range, nothing else */
        {5,
         {"bbfs", "-o", "ttl=-5", "acme", "/m"},
         "ttl '-5': expected whole seconds from 0 to 31536000"},
        {5, {"bbfs", "-o", "ttl=999999999999999999999", "acme", "/m"}, "0 to 31536000"},
        {5, {"bbfs", "-o", "ttl=18446744073709551616", "acme", "/m"}, "0 to 31536000"},
        {5, {"bbfs", "-o", "ttl=4294967296", "acme", "/m"}, "0 to 31536000"},
        {5, {"bbfs", "-o", "ttl=31536001", "acme", "/m"}, "0 to 31536000"},
        {5, {"bbfs", "-o", "ttl=0x10", "acme", "/m"}, "ttl '0x10'"},
        {5, {"bbfs", "-o", "ttl=1.5", "acme", "/m"}, "ttl '1.5'"},
        {5, {"bbfs", "-o", "ttl=1e3", "acme", "/m"}, "ttl '1e3'"},
        {5, {"bbfs", "-o", "ttl=", "acme", "/m"}, "ttl ''"},
        {5, {"bbfs", "-o", "ttl= 5", "acme", "/m"}, "ttl ' 5'"},
        {5, {"bbfs", "-o", "ttl=5 ", "acme", "/m"}, "ttl '5 '"},
        {5, {"bbfs", "-o", "ttl=+5", "acme", "/m"}, "ttl '+5'"},
        {5, {"bbfs", "-o", "ttl=5s", "acme", "/m"}, "ttl '5s'"},
        {5, {"bbfs", "-o", "ttl=-5,ttl=5", "acme", "/m"}, "ttl '-5'"},
        {5, {"bbfs", "-o", "ttl=5,ttl=-5", "acme", "/m"}, "ttl '-5'"},
        {5, {"bbfs", "-o", "commit_limit=0", "acme", "/m"}, "commit_limit '0'"},
        {5, {"bbfs", "-o", "commit_limit=-1", "acme", "/m"}, "from 1 to 10000"},
        {5, {"bbfs", "-o", "commit_limit=10001", "acme", "/m"}, "from 1 to 10000"},
        {5, {"bbfs", "-o", "commit_limit=ten", "acme", "/m"}, "commit_limit 'ten'"},
        {5,
         {"bbfs", "-o", "timeout=0", "acme", "/m"},
         "timeout '0': expected whole seconds from 1 to 3600"},
        {5, {"bbfs", "-o", "timeout=-1", "acme", "/m"}, "timeout '-1'"},
        {5, {"bbfs", "-o", "timeout=3601", "acme", "/m"}, "from 1 to 3600"},
        /* no text option means anything empty */
        {5, {"bbfs", "-o", "cache_dir=", "acme", "/m"}, "empty cache_dir="},
        {5, {"bbfs", "-o", "token_file=", "acme", "/m"}, "empty token_file="},
        {5, {"bbfs", "-o", "ca_file=", "acme", "/m"}, "empty ca_file="},
        {5, {"bbfs", "-o", "api_url=", "acme", "/m"}, "empty api_url="},
        {5, {"bbfs", "-o", "git_url=", "acme", "/m"}, "empty git_url="},
        {5, {"bbfs", "-o", "git_max=0", "acme", "/m"}, "invalid git_max '0'"},
        {5, {"bbfs", "-o", "git_max=lots", "acme", "/m"}, "invalid git_max 'lots'"},
        {5, {"bbfs", "-o", "git_max=", "acme", "/m"}, "git_max"},
        {5, {"bbfs", "-o", "git_max=99999999999999999999", "acme", "/m"}, "git_max"},
        /* what is quoted back stays on one line */
        {5, {"bbfs", "-o", "ttl=5\nbbfs: forged", "acme", "/m"}, "ttl '5?bbfs: forged'"},
        {3, {"bbfs", "ac\nme", "/m"}, "invalid source 'ac?me'"},
        /* the first wrong value is the one named */
        {5, {"bbfs", "-o", "timeout=0,ttl=-1", "acme", "/m"}, "timeout '0'"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct options opts;
        struct fuse_args args;
        char err[256] = "";
        int rc = parse(cases[i].argc, cases[i].argv, &opts, &args, err);
        if (rc != -EINVAL || !strstr(err, cases[i].message_part))
            fail_msg("case %zu (%s): %d '%s'", i, cases[i].argv[2] ? cases[i].argv[2] : "", rc,
                     err);
        /* A refused token is never echoed back. */
        assert_null(strstr(err, "secret"));
        options_release(&opts);
        fuse_opt_free_args(&args);
    }
}

static void test_cache_size(void **state)
{
    static const struct {
        const char *option;
        uint64_t bytes;
    } cases[] = {
        {"cache_size=1", 1},
        {"cache_size=4096", 4096},
        {"cache_size=256K", UINT64_C(256) << 10},
        {"cache_size=256k", UINT64_C(256) << 10},
        {"cache_size=256KiB", UINT64_C(256) << 10},
        {"cache_size=500M", UINT64_C(500) << 20},
        {"cache_size=500m", UINT64_C(500) << 20},
        {"cache_size=2GiB", UINT64_C(2) << 30},
        {"cache_size=2g", UINT64_C(2) << 30},
        {"cache_size=3T", UINT64_C(3) << 40},
        {"cache_size=3TiB", UINT64_C(3) << 40},
        /* the largest that fits: 2^64 - 1 bytes, and 2^24 - 1 TiB */
        {"cache_size=18446744073709551615", UINT64_MAX},
        {"cache_size=16777215T", UINT64_C(16777215) << 40},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[] = {"bbfs", "-o", cases[i].option, "acme", "/m", NULL};
        struct options opts;
        struct fuse_args args;
        char err[256] = "";
        assert_int_equal(parse(5, argv, &opts, &args, err), 0);
        assert_true(opts.cache_size == cases[i].bytes);
        options_release(&opts);
        fuse_opt_free_args(&args);
    }
}

static void test_counts(void **state)
{
    static const struct {
        const char *option;
        unsigned ttl, commit_limit, timeout;
    } cases[] = {
        {"ttl=0", 0, 100, 30},
        {"ttl=31536000", 31536000, 100, 30},
        {"ttl=010", 10, 100, 30}, /* decimal, not octal */
        {"ttl=5,ttl=9", 9, 100, 30},
        {"commit_limit=1", 60, 1, 30},
        {"commit_limit=10000", 60, 10000, 30},
        {"timeout=1", 60, 100, 1},
        {"timeout=3600", 60, 100, 3600},
        {"ttl=0,commit_limit=1,timeout=3600", 0, 1, 3600},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[] = {"bbfs", "-o", cases[i].option, "acme", "/m", NULL};
        struct options opts;
        struct fuse_args args;
        char err[256] = "";
        if (parse(5, argv, &opts, &args, err) != 0)
            fail_msg("%s: %s", cases[i].option, err);
        assert_int_equal(opts.ttl, cases[i].ttl);
        assert_int_equal(opts.commit_limit, cases[i].commit_limit);
        assert_int_equal(opts.timeout, cases[i].timeout);
        options_release(&opts);
        fuse_opt_free_args(&args);
    }
}

/*
 * git: git_max is a size like cache_size; the git URL is the default one
 * only with the default API, given ones are used, nogit and offline mean
 * none.
 */
static void test_git(void **state)
{
    static const struct {
        const char *option;
        uint64_t git_max;
        const char *git_url; /* what options_git_url() says, NULL: git is not used */
    } cases[] = {
        {"ttl=5", UINT64_C(100) << 20, "https://bitbucket.org"},
        {"api_url=https://api.bitbucket.org/2.0/", UINT64_C(100) << 20, "https://bitbucket.org"},
        {"git_max=1G", UINT64_C(1) << 30, "https://bitbucket.org"},
        {"git_max=4096", 4096, "https://bitbucket.org"},
        {"git_url=https://git.example.com", UINT64_C(100) << 20, "https://git.example.com"},
        {"api_url=http://127.0.0.1:9/2.0", UINT64_C(100) << 20, NULL},
        {"api_url=http://127.0.0.1:9/2.0,git_url=http://127.0.0.1:9", UINT64_C(100) << 20,
         "http://127.0.0.1:9"},
        {"nogit", UINT64_C(100) << 20, NULL},
        {"nogit,git_url=https://git.example.com", UINT64_C(100) << 20, NULL},
        {"offline", UINT64_C(100) << 20, NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[] = {"bbfs", "-o", cases[i].option, "acme", "/m", NULL};
        struct options opts;
        struct fuse_args args;
        char err[256] = "";
        if (parse(5, argv, &opts, &args, err) != 0)
            fail_msg("%s: %s", cases[i].option, err);
        assert_true(opts.git_max == cases[i].git_max);
        if (cases[i].git_url)
            assert_string_equal(options_git_url(&opts), cases[i].git_url);
        else
            assert_null(options_git_url(&opts));
        options_release(&opts);
        fuse_opt_free_args(&args);
    }
}

/* FUSE's options and unknown ones stay in args: fuse_session_new judges them. */
static void test_other_options_left_for_fuse(void **state)
{
    const char *argv[] = {"bbfs", "-o", "frobnicate=1,ttl=5,allow_other", "acme", "/m", NULL};
    struct options opts;
    struct fuse_args args;
    char err[256] = "";
    (void)state;
    assert_int_equal(parse(5, argv, &opts, &args, err), 0);
    assert_true(has_mount_option(&args, "frobnicate=1"));
    assert_true(has_mount_option(&args, "allow_other"));
    assert_false(has_mount_option(&args, "ttl"));
    options_release(&opts);
    fuse_opt_free_args(&args);
}

static void test_help_and_version(void **state)
{
    const char *help[] = {"bbfs", "--help", NULL};
    const char *version[] = {"bbfs", "-V", NULL};
    struct options opts;
    struct fuse_args args;
    char err[256] = "";
    (void)state;
    assert_int_equal(parse(2, help, &opts, &args, err), 0);
    assert_true(opts.show_help);
    options_release(&opts);
    fuse_opt_free_args(&args);
    assert_int_equal(parse(2, version, &opts, &args, err), 0);
    assert_true(opts.show_version);
    options_release(&opts);
    fuse_opt_free_args(&args);
    /* --help is answered whatever else is wrong on the command line */
    const char *help_with_bad_value[] = {"bbfs", "-o", "ttl=-5", "--help", NULL};
    assert_int_equal(parse(4, help_with_bad_value, &opts, &args, err), 0);
    assert_true(opts.show_help);
    options_release(&opts);
    fuse_opt_free_args(&args);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_source),
        cmocka_unit_test(test_bbfs_options),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_cache_size),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_git),
        cmocka_unit_test(test_other_options_left_for_fuse),
        cmocka_unit_test(test_help_and_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

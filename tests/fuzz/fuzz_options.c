/*
 * fuzz_options.c - fuzz target for fs/options.h: the bbfs command line.
 *
 * The input is split on NUL and newline into arguments (at most 64), after
 * an argv[0] of "bbfs", and handed to options_parse(), which runs libfuse's
 * fuse_opt_parse() over bbfs's option table. Checked beyond memory errors
 * and leaks (both the success and the error paths release everything):
 *   - on 0 without -h/-V: a workspace of plain characters, numbers within
 *     their documented ranges, no empty text option, non-zero cache and
 *     pack sizes, no git URL with nogit or offline, no shared_cache_auth=
 *     without shared_cache=, and no -o token= given;
 *   - on -EINVAL: one non-empty line in err.
 *
 *   build/fuzz/fuzz_options -max_total_time=60 build/fuzz/corpus/fuzz_options
 * tests/fuzz/corpus/fuzz_options
 */
#include <errno.h>
#include <string.h>

#include "fs/options.h"
#include "tests/fuzz/fuzz.h"

#define MAX_ARGS 64

static int plain(const char *s)
{
    return *s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.{}") ==
                     strlen(s);
}

/*
 * Whether an -o option list of argv names token= (before any "--"). Lists
 * with a backslash are skipped: fuse_opt's escapes are not re-stated here.
 */
static int gives_token(int argc, char **argv)
{
    const char *list, *p;
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return 0;
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            list = argv[++i];
        else if (strncmp(argv[i], "-o", 2) == 0)
            list = argv[i] + 2;
        else
            continue;
        if (strchr(list, '\\'))
            continue;
        for (p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
            if (strncmp(p, "token=", 6) == 0)
                return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1), *argv[MAX_ARGS + 2], *p, *end, err[256];
    struct fuse_args args;
    struct options opts;
    int argc = 0, rc, token_given = 0;
    size_t i;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    argv[argc++] = (char *)"bbfs";
    for (p = buf, end = buf + size; p < end && argc <= MAX_ARGS; p += strlen(p) + 1) {
        for (i = 0; p + i < end && p[i] && p[i] != '\n'; i++)
            ;
        p[i] = '\0';
        argv[argc++] = p;
    }
    argv[argc] = NULL;
    args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
    token_given = gives_token(argc, argv);

    memset(err, 'x', sizeof(err));
    err[sizeof(err) - 1] = '\0';
    memset(&opts, 0xa5, sizeof(opts));
    rc = options_parse(&args, &opts, err, sizeof(err));
    fuzz_check(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
    if (rc == 0 && !opts.show_help && !opts.show_version) {
        fuzz_check(opts.workspace && plain(opts.workspace));
        fuzz_check(!opts.project || plain(opts.project));
        fuzz_check(opts.api_url && *opts.api_url && opts.commit_limit > 0 && opts.timeout > 0 &&
                   opts.cache_size > 0 && opts.git_max > 0);
        fuzz_check(opts.ttl <= OPTIONS_TTL_MAX && opts.commit_limit <= OPTIONS_COMMIT_LIMIT_MAX &&
                   opts.timeout <= OPTIONS_TIMEOUT_MAX);
        fuzz_check((!opts.token_file || *opts.token_file) && (!opts.cache_dir || *opts.cache_dir) &&
                   (!opts.ca_file || *opts.ca_file) && (!opts.git_url || *opts.git_url));
        fuzz_check((!opts.shared_cache || *opts.shared_cache) &&
                   (!opts.shared_cache_auth || (*opts.shared_cache_auth && opts.shared_cache)));
        fuzz_check(!options_git_url(&opts) || (!opts.nogit && !opts.offline));
        fuzz_check(!token_given);
    } else if (rc == -EINVAL) {
        fuzz_check(err[0] && err[0] != 'x' && !strchr(err, '\n'));
    }
    options_release(&opts);
    fuzz_check(opts.api_url == NULL && opts.workspace == NULL);
    fuse_opt_free_args(&args);
    free(buf);
    return 0;
}

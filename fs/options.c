/*
 * options.c - parsing of the bbfs command line (see options.h).
 *
 * fuse_opt's own "%u" conversions read "-5", "0x10" and "1.5" as something
 * else, so every number goes through a key of its own and is checked here:
 * decimal digits within the range --help and the man page give, else one
 * line naming the option. A wrong value anywhere on the command line is
 * refused, even when a later repetition of the option is right.
 */
#include "fs/options.h"

#include "api/git.h"
#include "api/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    KEY_HELP,
    KEY_VERSION,
    KEY_TOKEN,
    KEY_CACHE_SIZE,
    KEY_GIT_MAX,
    KEY_TTL,
    KEY_COMMIT_LIMIT,
    KEY_TIMEOUT,
};

/* bbfs's whole-number options, each an unsigned in struct options. */
static const struct count_option {
    int key;
    const char *name;
    size_t offset;
    unsigned min, max;
    const char *what; /* the unit, for the message */
} count_options[] = {
    {KEY_TTL, "ttl", offsetof(struct options, ttl), 0, OPTIONS_TTL_MAX, "whole seconds"},
    {KEY_COMMIT_LIMIT, "commit_limit", offsetof(struct options, commit_limit), 1,
     OPTIONS_COMMIT_LIMIT_MAX, "a whole number of commits"},
    {KEY_TIMEOUT, "timeout", offsetof(struct options, timeout), 1, OPTIONS_TIMEOUT_MAX,
     "whole seconds"},
};

/* bbfs's text options: none of them means anything empty. */
static const struct text_option {
    const char *name;
    size_t offset; /* of a char * in struct options */
    const char *what;
} text_options[] = {
    {"api_url", offsetof(struct options, api_url), "a URL"},
    {"token_file", offsetof(struct options, token_file), "a file"},
    {"cache_dir", offsetof(struct options, cache_dir), "a directory"},
    {"ca_file", offsetof(struct options, ca_file), "a file"},
    {"shared_cache", offsetof(struct options, shared_cache), "a redis:// or redis+unix:// URL"},
    {"shared_cache_auth", offsetof(struct options, shared_cache_auth), "a file"},
    {"git_url", offsetof(struct options, git_url), "a URL"},
};

/* clang-format off */
#define OPTION(t, p) {t, offsetof(struct options, p), 1}
/* clang-format on */

static const struct fuse_opt option_spec[] = {
    OPTION("api_url=%s", api_url),
    OPTION("token_file=%s", token_file),
    OPTION("cache_dir=%s", cache_dir),
    OPTION("ca_file=%s", ca_file),
    OPTION("shared_cache=%s", shared_cache),
    OPTION("shared_cache_auth=%s", shared_cache_auth),
    OPTION("git_url=%s", git_url),
    OPTION("nogit", nogit),
    OPTION("offline", offline),
    FUSE_OPT_KEY("token=", KEY_TOKEN),
    FUSE_OPT_KEY("ttl=", KEY_TTL),
    FUSE_OPT_KEY("commit_limit=", KEY_COMMIT_LIMIT),
    FUSE_OPT_KEY("timeout=", KEY_TIMEOUT),
    FUSE_OPT_KEY("cache_size=", KEY_CACHE_SIZE),
    FUSE_OPT_KEY("git_max=", KEY_GIT_MAX),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    /* fstab noise that means nothing to a FUSE daemon */
    FUSE_OPT_KEY("_netdev", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("auto", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("noauto", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("user", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("nouser", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("users", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("nofail", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_END,
};

/*
 * fuse_opt_parse stores option values at offsets from its data pointer, so
 * the options come first here and the parser's own state after them.
 */
struct parse_state {
    struct options opts;
    char *source;
    int positionals;
    int refused_token;
    int invalid; /* an option had a wrong value: the first is described in error */
    char error[256];
};

/*
 * "1048576", "512K", "512k", "2GiB": bytes, the suffix K, M, G or T a power
 * of 1024. -EINVAL for garbage and 0 (an empty cache is no cache), -ERANGE
 * when it does not fit in 64 bits.
 */
static int parse_size(const char *s, uint64_t *out)
{
    static const char units[] = "KMGT";
    unsigned shift = 0;
    char *end;

    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno)
        return -ERANGE;
    if (*end) {
        const char *unit = strchr(units, toupper((unsigned char)*end));
        if (!unit)
            return -EINVAL;
        shift = 10 * (unsigned)(unit - units + 1);
        end++;
        if (strcmp(end, "iB") == 0)
            end += 2;
    }
    if (*end || n == 0)
        return -EINVAL;
    if (n > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)n << shift;
    return 0;
}

/* Decimal digits only (no sign, space, "0x" or fraction), from min to max. */
static int parse_count(const char *s, unsigned min, unsigned max, unsigned *out)
{
    if (!*s || s[strspn(s, "0123456789")])
        return -EINVAL;
    errno = 0;
    unsigned long long n = strtoull(s, NULL, 10);
    if (errno || n < min || n > max)
        return -ERANGE;
    *out = (unsigned)n;
    return 0;
}

/* Remembers why the first wrong option is wrong: the one line a user is shown. */
__attribute__((format(printf, 2, 3))) static void refuse(struct parse_state *state, const char *fmt,
                                                         ...)
{
    va_list ap;

    if (state->invalid++)
        return;
    va_start(ap, fmt);
    vsnprintf(state->error, sizeof(state->error), fmt, ap);
    va_end(ap);
}

static void take_count(struct parse_state *state, int key, const char *arg)
{
    for (size_t i = 0; i < sizeof(count_options) / sizeof(count_options[0]); i++) {
        const struct count_option *o = &count_options[i];
        if (o->key != key)
            continue;
        const char *value = arg + strlen(o->name) + 1;
        unsigned *field = (unsigned *)((char *)&state->opts + o->offset);
        if (parse_count(value, o->min, o->max, field) != 0)
            refuse(state, "invalid %s '%s': expected %s from %u to %u", o->name, value, o->what,
                   o->min, o->max);
        return;
    }
}

/* A size option, "name=SIZE", into *field. */
static void take_size(struct parse_state *state, const char *name, const char *arg, uint64_t *field)
{
    const char *value = arg + strlen(name) + 1;
    int rc = parse_size(value, field);

    if (rc == -ERANGE)
        refuse(state, "%s '%s' is too big", name, value);
    else if (rc != 0)
        refuse(state,
               "invalid %s '%s': expected bytes above 0 with an optional "
               "suffix K, M, G or T (powers of 1024), e.g. 500M",
               name, value);
}

static int process_arg(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    struct parse_state *state = data;
    (void)outargs;

    switch (key) {
    case KEY_HELP:
        state->opts.show_help = 1;
        return 0;
    case KEY_VERSION:
        state->opts.show_version = 1;
        return 0;
    case KEY_TOKEN:
        state->refused_token = 1;
        return 0;
    case KEY_CACHE_SIZE:
        take_size(state, "cache_size", arg, &state->opts.cache_size);
        return 0;
    case KEY_GIT_MAX:
        take_size(state, "git_max", arg, &state->opts.git_max);
        return 0;
    case KEY_TTL:
    case KEY_COMMIT_LIMIT:
    case KEY_TIMEOUT:
        take_count(state, key, arg);
        return 0;
    case FUSE_OPT_KEY_NONOPT:
        /* The first positional is the source; the second (mountpoint) stays for FUSE. */
        if (state->positionals++ == 0) {
            state->source = strdup(arg);
            return state->source ? 0 : -1;
        }
        return 1;
    default:
        return 1;
    }
}

/* An empty api_url=, cache_dir= ... would quietly mean the current directory or nothing. */
static void refuse_empty_text(struct parse_state *state)
{
    for (size_t i = 0; i < sizeof(text_options) / sizeof(text_options[0]); i++) {
        const struct text_option *o = &text_options[i];
        const char *value = *(char **)((char *)&state->opts + o->offset);
        if (value && !*value)
            refuse(state, "empty %s=: expected %s", o->name, o->what);
    }
}

/* Workspace slugs, {uuid}s and project keys: nothing that needs quoting anywhere. */
static int is_plain_identifier(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.{}", *s))
            return 0;
    return 1;
}

static int split_source(struct options *opts, const char *source, char *err, size_t errlen)
{
    const char *slash = strchr(source, '/');
    size_t wslen = slash ? (size_t)(slash - source) : strlen(source);

    opts->workspace = strndup(source, wslen);
    if (slash && slash[1])
        opts->project = strdup(slash + 1);
    if (!opts->workspace || (slash && slash[1] && !opts->project))
        return -ENOMEM;
    if (!is_plain_identifier(opts->workspace) || (slash && !opts->project) ||
        (opts->project && !is_plain_identifier(opts->project))) {
        snprintf(err, errlen, "invalid source '%s': expected WORKSPACE or WORKSPACE/PROJECT_KEY",
                 source);
        return -EINVAL;
    }
    return 0;
}

int options_parse(struct fuse_args *args, struct options *opts, char *err, size_t errlen)
{
    struct parse_state state;
    int rc = 0;

    memset(&state, 0, sizeof(state));
    /* fuse_opt_parse frees a string option's old value, so defaults are heap copies. */
    state.opts.api_url = strdup(OPTIONS_API_URL);
    state.opts.ttl = 60;
    state.opts.commit_limit = 100;
    state.opts.timeout = 30;
    state.opts.cache_size = UINT64_C(1) << 30;
    state.opts.git_max = OPTIONS_GIT_MAX;
    if (!state.opts.api_url) {
        *opts = state.opts;
        rc = -ENOMEM;
        goto out;
    }
    int parsed = fuse_opt_parse(args, &state, option_spec, process_arg);
    refuse_empty_text(&state);
    *opts = state.opts;
    if (parsed != 0) {
        snprintf(err, errlen, "cannot parse the command line");
        rc = -EINVAL;
        goto out;
    }
    if (opts->show_help || opts->show_version)
        goto out;
    if (state.refused_token) {
        snprintf(err, errlen,
                 "-o token= is refused: command lines are visible to other users; "
                 "put the token in a file readable only by you and use -o token_file=PATH, "
                 "or set BITBUCKET_TOKEN");
        rc = -EINVAL;
        goto out;
    }
    if (state.invalid) {
        snprintf(err, errlen, "%s", state.error);
        rc = -EINVAL;
        goto out;
    }
    if (opts->shared_cache_auth && !opts->shared_cache) {
        snprintf(err, errlen, "shared_cache_auth= needs shared_cache=URL: a password for what?");
        rc = -EINVAL;
        goto out;
    }
    if (!state.source || state.positionals < 2) {
        snprintf(err, errlen, "usage: bbfs [options] WORKSPACE[/PROJECT_KEY] MOUNTPOINT");
        rc = -EINVAL;
        goto out;
    }
    if (state.positionals > 2) {
        snprintf(err, errlen, "too many arguments: expected WORKSPACE[/PROJECT_KEY] MOUNTPOINT");
        rc = -EINVAL;
        goto out;
    }
    rc = split_source(opts, state.source, err, errlen);
out:
    if (rc == -EINVAL)
        log_sanitize(err, errlen, err); /* a value with a newline in it stays one line */
    free(state.source);
    return rc;
}

void options_release(struct options *opts)
{
    free(opts->api_url);
    free(opts->token_file);
    free(opts->cache_dir);
    free(opts->ca_file);
    free(opts->shared_cache);
    free(opts->shared_cache_auth);
    free(opts->git_url);
    free(opts->workspace);
    free(opts->project);
    memset(opts, 0, sizeof(*opts));
}

const char *options_git_url(const struct options *opts)
{
    size_t len = opts->api_url ? strlen(opts->api_url) : 0;

    if (opts->nogit || opts->offline)
        return NULL;
    if (opts->git_url)
        return opts->git_url;
    while (len > 0 && opts->api_url[len - 1] == '/')
        len--;
    if (len == strlen(OPTIONS_API_URL) && strncmp(opts->api_url, OPTIONS_API_URL, len) == 0)
        return GIT_DEFAULT_URL;
    return NULL;
}

void options_print_help(const char *progname)
{
    printf("usage: %s [options] WORKSPACE[/PROJECT_KEY] MOUNTPOINT\n"
           "\n"
           "Mounts a Bitbucket Cloud workspace (or one project of it) read-only.\n"
           "The token comes from token_file=, $BITBUCKET_TOKEN, or a prompt.\n"
           "\n"
           "bbfs options:\n"
           "    -o api_url=URL         API base (https://api.bitbucket.org/2.0)\n"
           "    -o token_file=PATH     file holding the token (must not be group/world readable)\n"
           "    -o cache_dir=PATH      persistent cache ($XDG_CACHE_HOME/bbfs)\n"
           "    -o cache_size=SIZE     evict from it beyond SIZE, e.g. 500M or 2G (1G)\n"
           "    -o ttl=SECONDS         trust listings and refs this long, 0 to %u (60)\n"
           "    -o commit_limit=N      commits listed in commits/, 1 to %u (100)\n"
           "    -o timeout=SECONDS     give up on a request after this long, retries included,\n"
           "                           1 to %u (30)\n"
           "    -o ca_file=PATH        CA bundle for TLS verification\n"
           "    -o git_url=URL         git smart HTTP for whole trees, with the token as\n"
           "                           x-token-auth (https://bitbucket.org; with another\n"
           "                           api_url=, git is used only when git_url= is given)\n"
           "    -o git_max=SIZE        fetch no git pack bigger than SIZE (100M)\n"
           "    -o nogit               never use git: every file through the API\n"
           "    -o offline             never touch the network\n"
           "    -o shared_cache=URL    a cache shared by many machines: redis://HOST[:PORT][/DB]\n"
           "                           or redis+unix:///PATH[?db=N]\n"
           "    -o shared_cache_auth=PATH  file holding its password or user:password\n"
           "                           (must not be group/world readable)\n"
           "    -h, --help             this help\n"
           "    -V, --version          the version\n"
           "\n"
           "FUSE options:\n"
           "    -f                     stay in the foreground\n"
           "    -d, -o debug           debug output (implies -f)\n"
           "    -s                     single-threaded\n"
           "    -o allow_other         let other users see the mount\n",
           progname, OPTIONS_TTL_MAX, OPTIONS_COMMIT_LIMIT_MAX, OPTIONS_TIMEOUT_MAX);
}

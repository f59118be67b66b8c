/*
 * options.h - the bbfs command line (../shared/DESIGN.md "Command line").
 *
 *   bbfs [-f] [-d] [-s] [-o OPT[,OPT...]] WORKSPACE[/PROJECT_KEY] MOUNTPOINT
 *
 * bbfs's own -o options are parsed with fuse_opt_parse from one table and
 * removed from args; what remains (-f, -d, the mountpoint, FUSE's own -o
 * options) is left for fuse_parse_cmdline and fuse_session_new. Secrets are
 * never taken from argv: -o token= is refused. Numbers are decimal and
 * within the ranges below (--help and the man page give them too); text
 * options are never empty.
 */
#ifndef BBFS_OPTIONS_H
#define BBFS_OPTIONS_H

#include <fuse_opt.h>
#include <stddef.h>
#include <stdint.h>

#define OPTIONS_TTL_MAX 31536000u       /* seconds: a year; 0 is allowed */
#define OPTIONS_COMMIT_LIMIT_MAX 10000u /* 100 requests of the hourly budget of 1,000 */
#define OPTIONS_TIMEOUT_MAX 3600u       /* seconds; the least is 1 */
#define OPTIONS_API_URL "https://api.bitbucket.org/2.0"
#define OPTIONS_GIT_MAX ((uint64_t)100 << 20) /* git_max='s default */

struct options {
    char *api_url;
    char *token_file;
    char *cache_dir;
    char *ca_file;
    char *shared_cache;      /* redis://... or redis+unix://...; NULL: none */
    char *shared_cache_auth; /* file holding its password; NULL: none */
    unsigned ttl;
    unsigned commit_limit;
    unsigned timeout;
    uint64_t cache_size; /* bytes the on-disk store may hold before evicting */
    char *git_url;       /* NULL: see options_git_url() */
    uint64_t git_max;    /* bytes of the biggest git pack fetched */
    int nogit;
    int offline;
    int show_help;
    int show_version;
    char *workspace;
    char *project; /* NULL without /PROJECT_KEY */
};

/*
 * Fills opts (defaults first) and strips bbfs's options from args. Returns 0,
 * or -EINVAL with one line in err naming what is wrong (a value out of range
 * names the option and its range). -h/--help and -V/--version only set
 * show_help/show_version; the positional WORKSPACE is then optional. Options
 * that are not bbfs's are left in args: fuse_session_new refuses the ones
 * FUSE does not know either.
 */
int options_parse(struct fuse_args *args, struct options *opts, char *err, size_t errlen);
void options_release(struct options *opts);

/*
 * Where whole trees come from through git, or NULL when git is not used:
 * nogit, offline, or an api_url= other than the default without a git_url=
 * (bbfs then sends the token to no host the command line did not name).
 */
const char *options_git_url(const struct options *opts);

/* Prints the usage and the option list (bbfs's own, then FUSE's). */
void options_print_help(const char *progname);

#endif

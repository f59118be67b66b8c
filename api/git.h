/*
 * git.h - a git smart-HTTP client for whole trees: the branch and tag tips
 * of a repository, and one commit fetched at depth 1 as a pack streamed into
 * a file (read it with api/pack.h). No git CLI, no libgit2 transport: curl
 * and api/gitproto.h.
 *
 * A fetch is GET {git_url}/{WS}/{SLUG}.git/info/refs?service=git-upload-pack
 * (discovery, asking for protocol v2), then POST .../git-upload-pack. In v2
 * any commit can be wanted; a v0 server (only what it advertised, as
 * bitbucket.org is reported to be) is asked only for a branch, HEAD or tag
 * tip, and a fetch of any other commit is refused before any POST.
 *
 * Credentials: the token goes only as HTTP Basic x-token-auth:TOKEN, set
 * through curl's user name and password options (never in a URL, argv or a
 * log), only to git_url's origin: no redirect is followed to another origin
 * at all. git_url is https, or plain http to a loopback host.
 *
 * Time: discovery and ls-refs must finish within timeout_ms; a pack may take
 * longer but is aborted when it moves less than HTTP_LOW_SPEED_BYTES a
 * second for timeout_ms (at least two seconds). No request is retried: the
 * caller has the REST API to fall back on.
 *
 * Errors are a negative errno and a cause (struct git_error) for the
 * caller's statistics and fallbacks:
 *   -EIO / -ETIMEDOUT  unreachable (no answer, or none in time)
 *   -EACCES            401, 403
 *   -ENOENT            404
 *   -EPERM             the commit is refused (v0 and not a tip, or the server's ERR)
 *   -EPROTO            an answer that is not the protocol, or a pack cut short
 *   -EFBIG             the pack is over the caller's cap
 *   -EINTR             cancelled by the caller
 *   -ENOTSUP           a server without shallow fetches, or with SHA-256 objects
 *   -EINVAL, -ENOMEM   the caller's mistake, memory
 *
 * Threads: a git_client may be used by many threads at once; a git_remote,
 * once discovered, is read-only and may be shared too.
 */
#ifndef BBFS_API_GIT_H
#define BBFS_API_GIT_H

#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

#define GIT_DEFAULT_URL "https://bitbucket.org"
/* The most bytes of a discovery or ls-refs answer read. */
#define GIT_MAX_LISTING ((uint64_t)32 << 20)

struct git_client;
struct git_remote;

struct git_config {
    const char *base_url; /* git_url, e.g. GIT_DEFAULT_URL; no trailing '/' needed */
    const char *token;    /* copied, wiped on free */
    const char *ca_file;  /* extra CA bundle, or NULL */
    long timeout_ms;
    long connect_timeout_ms;
};

/* Why a call failed; the rows of .bbfs/stats' git fallbacks. */
enum git_cause {
    GIT_CAUSE_NONE,
    GIT_CAUSE_UNREACHABLE, /* no HTTP answer: refused, reset, DNS, timed out */
    GIT_CAUSE_AUTH,        /* 401, 403 */
    GIT_CAUSE_NOT_FOUND,   /* 404 */
    GIT_CAUSE_REFUSED,     /* the server will not send that commit */
    GIT_CAUSE_BROKEN,      /* not the protocol, or cut short */
    GIT_CAUSE_TOO_BIG,     /* the pack is over the cap */
    GIT_CAUSE_CANCELLED,   /* the caller's cancel flag */
    GIT_CAUSE_OTHER,       /* other statuses, a redirect off the origin, the disk, memory */
    GIT_CAUSE_COUNT
};
/* "unreachable", "auth", ...: a word for cause. */
const char *git_cause_name(enum git_cause cause);

struct git_error {
    enum git_cause cause;
    long status;       /* the HTTP status, 0 when none */
    char message[256]; /* one sanitised line, never the token */
};

/*
 * Fills err: the cause, the HTTP status, a message made harmless for a log
 * line (also for a caller whose own step failed after git's).
 */
void git_set_error(struct git_error *err, enum git_cause cause, long status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Refuses (-EINVAL, a line in errbuf) a git_url that is not http(s), plain
 * http to a host that is not loopback, credentials, a query or a fragment
 * in it, and a token with control characters.
 */
int git_client_new(const struct git_config *cfg, struct git_client **out, char *errbuf,
                   size_t errlen);
void git_client_free(struct git_client *c);

/* GET info/refs of workspace/slug: what the server speaks and, in v0, its refs. */
int git_discover(struct git_client *c, const char *workspace, const char *slug,
                 struct git_remote **out, struct git_error *err);
void git_remote_free(struct git_remote *r);
/* 2 or 0: the protocol the server answered with. */
int git_remote_version(const struct git_remote *r);

/*
 * A repository's tips. date is 0 in every ref: git's advertisement carries
 * no dates. Names are hostile like any API string.
 */
struct git_tips {
    char *head;                         /* the branch HEAD names ("main"), NULL if unknown */
    char head_commit[API_HASH_LEN + 1]; /* "" when there is no HEAD */
    struct api_ref_list branches;       /* sorted by name */
    struct api_ref_list tags;           /* sorted by name; annotated tags peeled */
};
void git_tips_release(struct git_tips *tips);

/* The tips: from the v0 advertisement without a request, or POST ls-refs in v2. */
int git_remote_tips(struct git_client *c, const struct git_remote *r, struct git_tips *out,
                    struct git_error *err);

struct git_fetch_options {
    uint64_t max_bytes; /* the pack's cap: -EFBIG past it; 0 for none */
    const int *cancel;  /* read atomically while the pack flows: non-zero gives -EINTR */
};

/*
 * POST git-upload-pack for commit (40 lowercase hex digits) at depth 1: the
 * commit, its tree and every blob of it, no history. The pack's bytes are
 * written to fd as they arrive (memory does not grow with the pack); fd must
 * be a seekable file open for writing: it is truncated first, and again on
 * failure, so it holds exactly the pack after a return of 0 and nothing
 * otherwise. *size gets the pack's length (0 on failure).
 */
int git_remote_fetch(struct git_client *c, const struct git_remote *r, const char *commit, int fd,
                     const struct git_fetch_options *opts, uint64_t *size, struct git_error *err);

/* Counters for .bbfs/stats: a consistent snapshot, from any thread. */
struct git_stats {
    uint64_t requests;                  /* HTTP requests sent */
    uint64_t fetches;                   /* packs received whole */
    uint64_t bytes;                     /* response bodies received, packs included */
    uint64_t pack_bytes;                /* of them, bytes of packs */
    uint64_t failures[GIT_CAUSE_COUNT]; /* calls that failed, by cause */
};
void git_get_stats(struct git_client *c, struct git_stats *out);

#endif

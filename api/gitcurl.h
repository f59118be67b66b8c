/*
 * gitcurl.h - the libcurl side of git.h (internal to api/): the client with
 * its credentials and connection cache, one request whose answer is fed to
 * a parser as it arrives, and the counters.
 *
 * The token is set only through CURLOPT_USERNAME ("x-token-auth") and
 * CURLOPT_PASSWORD with Basic auth; redirects are never followed by curl
 * (git.c decides, and follows only those that stay on git_url's origin).
 */
#ifndef BBFS_API_GITCURL_H
#define BBFS_API_GITCURL_H

#include <stddef.h>
#include <stdint.h>

#include "api/buf.h"
#include "api/git.h"

/* One request's exchange with curl's callbacks. */
struct git_exchange {
    /* set by the caller */
    const int *cancel; /* non-zero (read atomically) aborts the transfer: -EINTR */
    uint64_t max_body; /* of a 2xx body; 0: no cap (past it: -EFBIG in feed_err) */
    int (*feed)(void *ctx, const char *data, size_t len); /* takes the 2xx body */
    void *feed_ctx;
    /* filled in */
    long status; /* of the last response's status line, 0 before one */
    char content_type[128];
    uint64_t body_bytes; /* of the 2xx body */
    int feed_err;        /* why the body stopped being taken (feed's errno, -EFBIG), or 0 */
    char error_body[256];
    size_t error_len;
};

/* Request kinds for gitcurl_request(). */
enum {
    GITCURL_V2 = 1 << 0,     /* Git-Protocol: version=2 */
    GITCURL_STREAM = 1 << 1, /* a pack: a low-speed limit instead of a total deadline */
};

/*
 * GET url (body NULL) or POST body to it. 0 when a 2xx answer was taken
 * whole by ex->feed; ex->feed_err when feed (or the cap) stopped it, err
 * left for the caller to fill; otherwise -errno with err filled in: -EINTR
 * cancelled, -ETIMEDOUT, -EIO (no answer), -EPROTO (an answer cut short),
 * and for a non-2xx status http_status_errno()'s value. *redirect gets the
 * Location of a 3xx answer (malloc'd), else NULL.
 */
int gitcurl_request(struct git_client *c, const char *url, const struct buf *body, unsigned kind,
                    struct git_exchange *ex, char **redirect, struct git_error *err);

/* git_url, normalised, without a trailing '/'. */
const char *gitcurl_base(const struct git_client *c);

/* Counters of git_get_stats(). */
void gitcurl_count_failure(struct git_client *c, enum git_cause cause);
void gitcurl_count_fetch(struct git_client *c, uint64_t pack_bytes);

#endif

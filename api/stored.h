/*
 * stored.h - stored answers standing in for requests (internal to api/).
 *
 * Every JSON answer a call of api.h reads goes through here, so this is
 * the one place that decides between the response cache (api.h's struct
 * api_response_cache) and the API:
 *
 *   - an immutable answer (addressed by a full commit hash) is used
 *     whenever it is stored;
 *   - a mutable one is used as it is while fresh (younger than ttl and not
 *     expired by api_expire), then revalidated with its ETag (a 304
 *     refreshes its time), and served stale when the API cannot be
 *     reached (http_is_outage): while the client is paused after an outage
 *     (HTTP_OUTAGE_PAUSE_SECONDS), at once;
 *   - offline, what is stored is all there is (-EIO otherwise).
 *
 * A body is checked by its caller before it is used; a stored body that
 * fails the check (damaged, or kept by an older bbfs) is asked of the API
 * again. Bodies are kept (stored_keep) only once their caller accepted
 * them, and never error answers.
 */
#ifndef BBFS_API_STORED_H
#define BBFS_API_STORED_H

#include <stdint.h>

#include "api/api.h"
#include "api/http.h"

/* The state of the stored answers of one client (in struct api_client). */
struct stored_answers {
    struct api_response_cache cache; /* all NULL when none was set */
    long ttl;                        /* seconds a stored mutable answer is fresh */
    int64_t expired_at;              /* answers fetched up to this second are stale (atomic) */
    /* counters of api_stats (atomic): used without a request, revalidated, served stale */
    uint64_t used, not_modified, stale;
};

/*
 * Decides whether an answer's body may be used: 0, or -errno with nothing
 * left behind. from_store says whether the body came from the store (then a
 * refusal is not the API's fault and is not reported as such).
 */
typedef int (*answer_check_fn)(const struct http_response *resp, int from_store, void *ctx);

/*
 * GET url as kind through the stored answers, and check its body. A stored
 * body that check refuses (except for -ENOMEM) is fetched again from the
 * API and checked once more. *from_store says where the accepted body came
 * from. flags go to http_get (HTTP_NOT_OUTAGE). resp is the caller's to
 * release either way.
 */
int stored_get_checked(struct api_client *c, enum api_kind kind, const char *url, unsigned flags,
                       answer_check_fn check, void *ctx, struct http_response *resp,
                       int *from_store);

/* Keeps an answer from the API that its caller accepted. */
void stored_keep(struct api_client *c, enum api_kind kind, const char *url,
                 const struct http_response *resp);

/*
 * Whether a mutable answer for url is stored: at any age (any_age), or such
 * that it may be used without a request now (fresh, or offline).
 */
int stored_is_usable(struct api_client *c, const char *url, int any_age);

#endif

/*
 * walk.h - whole listings, page after page (internal to api/).
 *
 * A listing is gathered completely before it counts: any failure on any
 * page fails the whole walk, so the filesystem never sees half a
 * directory, and the pages that came from the API are stored only when
 * the whole walk succeeded (the pages of a broken chain would be replayed
 * otherwise). Each page goes through the stored answers (stored.h); which
 * next links may be followed is page.h's business. When the first page
 * tells how many follow, the rest are fetched at once, unless the API said
 * the token's hourly budget is nearly spent.
 */
#ifndef BBFS_API_WALK_H
#define BBFS_API_WALK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

/* Called for each entry of each page, in order: 0 to go on, 1 to stop after it, or -errno. */
typedef int (*item_fn)(json_t *item, void *ctx);

/*
 * GET first_url and every page after it, handing each entry to fn. Stops
 * early when fn returns 1. Any failure fails the whole walk. *fetched_at (when
 * not NULL) gets when the oldest page was fetched (api.h: fetched_at).
 */
int walk_pages(struct api_client *c, enum api_kind kind, const char *first_url, item_fn fn,
               void *ctx, int64_t *fetched_at);
/*
 * walk_pages for at most max_pages pages: -EFBIG, before any later page is
 * asked for, when the first says there are more. flags go to http_get: a
 * listing that may be too big to answer in time is HTTP_NOT_OUTAGE.
 */
int walk_pages_capped(struct api_client *c, enum api_kind kind, const char *first_url,
                      size_t max_pages, unsigned flags, item_fn fn, void *ctx);

/*
 * Gathers a listing's entries into an array of structs of elem bytes:
 * walk_collect is the item_fn, a struct collector its ctx. parse fills one
 * zeroed struct from an entry: 0, -EINVAL to skip the entry (logged once as
 * skip_message, the entry itself at debug level), or -errno. After the walk
 * the caller owns items and count, also when the walk failed.
 */
typedef int (*collect_fn)(json_t *item, void *out, const void *arg);
struct collector {
    collect_fn parse;
    const void *arg; /* for parse */
    size_t elem;
    size_t limit; /* stop after this many; 0: no limit */
    const char *skip_key, *skip_message;
    void *items;
    size_t count, alloc;
};
int walk_collect(json_t *item, void *collector);

#endif

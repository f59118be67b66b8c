/*
 * page.h - the pagination envelope and the rules for following "next" (internal to api/).
 *
 * A Bitbucket collection answers {"values": [...], "next": "URL", ...};
 * only values and next are guaranteed, and next is opaque. page_parse()
 * checks one page's shape; a page_walk decides whether its next link may be
 * followed at all:
 *
 *   - https://bitbucket.org/!api/... links are rewritten under the base URL;
 *   - the link must have the base URL's scheme, host and port, otherwise
 *     following it would send the bearer token to another server;
 *   - a link seen before is a loop; more than max_pages pages is a runaway.
 *
 * Every refusal is -EIO, logged with the reason, and fails the listing as a
 * whole: callers never hand out a partial list.
 */
#ifndef BBFS_API_PAGE_H
#define BBFS_API_PAGE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define PAGE_MAX_PAGES 10000

struct page_seen {
    uint64_t hash;
    char *url;
};

struct page_walk {
    char *base;
    size_t pages; /* pages handed out so far, the first one included */
    size_t max_pages;
    struct page_seen *seen;
    size_t nseen, seen_alloc;
};

/* first_url counts as the first page and as seen. 0 or -ENOMEM. */
int page_walk_init(struct page_walk *w, const char *base, const char *first_url, size_t max_pages);
void page_walk_release(struct page_walk *w);

/*
 * next: the page's raw next link, or NULL at the end. On 0, *url is the
 * URL to fetch (malloc'd) or NULL when the walk is over; -EIO when the link
 * may not be followed (logged), -ENOMEM.
 */
int page_walk_next(struct page_walk *w, const char *next, char **url);

/*
 * The URL of page number page of a list-based collection, made from the
 * link to page 2 (a "page=2" query parameter, replaced). -ENOENT when the
 * link has no such parameter (an iterator-based collection), -ENOMEM.
 */
int page_url_for(const char *second_url, size_t page, char **out);

/*
 * Parses one page. On 0, *root is a new reference the caller must
 * json_decref; *values (an array of objects) and *next (NULL when absent or
 * null) are borrowed from it. -EIO (logged, naming what) when the body is
 * not JSON or not the envelope: no values array, an entry that is not an
 * object, next that is not a string. The pages of one listing (one URL but
 * for the query) are logged once, until page_forget_failure(url).
 */
int page_parse(const char *what, const char *body, size_t len, json_t **root, json_t **values,
               const char **next);
/* A listing read whole: its next malformed page is logged again. */
void page_forget_failure(const char *url);

#endif

/*
 * client.h - what the calls of api.h share (internal to api/): the client,
 * counted requests through the response cache, whole listings, downloads.
 *
 * The calls themselves live by subject: api.c (workspace, project,
 * repositories, refs, commits), src.c (directories and files at a commit,
 * diffs), pullrequests.c.
 */
#ifndef BBFS_API_CLIENT_H
#define BBFS_API_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "api/buf.h"
#include "api/http.h"

/* The API's most entries a page (pull requests: fewer). */
#define PAGELEN_MAX 100

struct api_client {
    char *base; /* normalised, without a trailing '/' */
    struct http_client *http;
    struct api_response_cache responses; /* all NULL when none was set */
    long ttl;                            /* seconds a stored mutable answer is fresh */
    int offline;                         /* no requests at all */
    int64_t expired_at; /* stored answers fetched up to this second are stale (atomic) */
    int64_t down_until; /* the API could not be reached: stale answers until then (atomic) */
    /* counters of api_stats kept here, not by http.c (atomic) */
    uint64_t by_kind[API_KIND_COUNT];
    uint64_t stored, not_modified, stale, bad_answers;
};

/* Whether an answer of this kind can never change (it is addressed by a full commit hash). */
int client_is_immutable(enum api_kind kind);
/* Adds one to a counter of the client's, from any thread. */
void client_count(uint64_t *counter);

/* Starts u as the base URL + "/repositories/{ws}/{repo}" (repo may be NULL). */
void client_url_repo(struct buf *u, struct api_client *c, const char *workspace, const char *repo);
/* The built URL, or NULL with *rc set (-EINVAL for a bad name, -ENOMEM). */
char *client_url_finish(struct buf *u, int *rc);

/* Whether a mutable answer for url is stored and may be used without a request now. */
int client_is_stored(struct api_client *c, const char *url);

/* Logs, once a line, an answer from url that was not what was asked for. */
void client_log_bad_json(const char *url, const char *why);
/* -EIO (logged once) when offline: the caller may not make a request. */
int client_refuse_offline(struct api_client *c, const char *url);

/* Turns an answer's JSON object into the caller's struct: 0, or -errno (nothing left behind). */
typedef int (*object_fn)(json_t *root, void *ctx);

/*
 * GET url, parse its body as one JSON object and hand it to fn. The answer
 * is kept only when fn took it, and a stored one that fn refuses (damaged, or
 * kept by an older bbfs) is fetched again. *fetched_at (when not NULL) gets
 * when the answer was fetched (api.h: fetched_at).
 */
int client_get_object(struct api_client *c, enum api_kind kind, const char *url, object_fn fn,
                      void *ctx, int64_t *fetched_at);
/* A whole document: the pretty-printed object of url, with its fetched_at. */
int client_get_doc(struct api_client *c, enum api_kind kind, char *url, struct api_doc *out);

/* Called for each entry of each page: 0 to go on, 1 to stop after it, or -errno. */
typedef int (*item_fn)(json_t *item, void *ctx);

/*
 * GET first_url and every page after it, handing each entry to fn. Stops
 * early when fn returns 1. Any failure fails the whole walk. When the first
 * page says how many there are, the rest are fetched at once. *fetched_at
 * gets when the oldest page was fetched (api.h: fetched_at).
 */
int client_walk_pages(struct api_client *c, enum api_kind kind, const char *first_url, item_fn fn,
                      void *ctx, int64_t *fetched_at);
/*
 * client_walk_pages for at most max_pages pages: -EFBIG, before any later
 * page is asked for, when the first says there are more.
 */
int client_walk_pages_capped(struct api_client *c, enum api_kind kind, const char *first_url,
                             size_t max_pages, item_fn fn, void *ctx);

/*
 * Gathers a listing's entries into an array of structs of elem bytes:
 * client_collect is the item_fn, a struct collector its ctx. parse fills one
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
int client_collect(json_t *item, void *collector);

/*
 * Makes room for one more element in an array of count elements of elem
 * bytes with *alloc allocated. Returns the (maybe moved) array, NULL when
 * out of memory (the old array is then still valid).
 */
void *client_grow_array(void *items, size_t *alloc, size_t count, size_t elem);

/*
 * http_download() of url into fd, counted as kind; offline, -EIO. resp is
 * the caller's to release either way.
 */
int client_download(struct api_client *c, enum api_kind kind, const char *url, int fd,
                    unsigned flags, struct http_response *resp, uint64_t *size);

#endif

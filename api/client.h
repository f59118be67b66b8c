/*
 * client.h - what the calls of api.h share (internal to api/): the client,
 * the URLs they build, counted requests to the API, single objects and
 * downloads.
 *
 * Layers: the calls themselves live by subject (api.c: workspace, project,
 * repositories, refs, commits; src.c: directories and files at a commit,
 * diffs; pullrequests.c). They read one object with client_get_object()
 * and whole listings with walk_pages() (walk.h); both go through the
 * stored answers (stored.h), which ask the API with client_fetch(), which
 * is http_get() (http.h) counted by kind.
 */
#ifndef BBFS_API_CLIENT_H
#define BBFS_API_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "api/buf.h"
#include "api/http.h"
#include "api/stored.h"

/* The API's most entries a page (pull requests: fewer). */
#define PAGELEN_MAX 100

struct api_client {
    char *base; /* normalised, without a trailing '/' */
    struct http_client *http;
    struct stored_answers stored;
    int offline; /* no requests at all */
    /* counters of api_stats kept here, not by http.c (atomic) */
    uint64_t by_kind[API_KIND_COUNT];
    uint64_t bad_answers;
};

/* Whether an answer of this kind can never change (it is addressed by a full commit hash). */
int client_is_immutable(enum api_kind kind);
/* Adds one to a counter of the client's, from any thread. */
void client_count(uint64_t *counter);

/* Starts u as the base URL + "/repositories/{ws}/{repo}" (repo may be NULL). */
void client_url_repo(struct buf *u, struct api_client *c, const char *workspace, const char *repo);
/* Starts u as client_url_repo() + "/{what}/{rev}": a resource at a commit ("src", "diff"...). */
void client_url_at(struct buf *u, struct api_client *c, const char *workspace, const char *repo,
                   const char *what, const char *rev);
/* The built URL, or NULL with *rc set (-EINVAL for a bad name, -ENOMEM). */
char *client_url_finish(struct buf *u, int *rc);

/* Logs an answer from url that was not what was asked for. */
void client_log_bad_json(const char *url, const char *why);
/* -EIO (logged once) when offline: the caller may not make a request. */
int client_refuse_offline(struct api_client *c, const char *url);

/*
 * GET url's JSON answer from the API itself (HTTP_JSON and flags), counted
 * as kind when it went out, etag (or NULL) sent as If-None-Match; offline,
 * -EIO; on a thread in nowait mode, -EWOULDBLOCK. See http_get(); resp is
 * the caller's to release either way.
 */
int client_fetch(struct api_client *c, enum api_kind kind, const char *url, const char *etag,
                 unsigned flags, struct http_response *resp);

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
/* A whole document: the pretty-printed object of url. */
int client_get_doc(struct api_client *c, enum api_kind kind, char *url, struct api_doc *out);

/*
 * http_download() into sink of the URL built in u (released here), counted
 * as kind; -EINVAL for a URL that could not be built, offline -EIO, on a
 * thread in nowait mode -EWOULDBLOCK. resp is the caller's to release
 * either way.
 */
int client_download(struct api_client *c, enum api_kind kind, struct buf *u,
                    const struct api_sink *sink, unsigned flags, struct http_response *resp,
                    uint64_t *size);

/*
 * Makes room for one more element in an array of count elements of elem
 * bytes with *alloc allocated. Returns the (maybe moved) array, NULL when
 * out of memory (the old array is then still valid).
 */
void *client_grow_array(void *items, size_t *alloc, size_t count, size_t elem);

#endif

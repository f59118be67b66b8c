/*
 * pullrequests.c - the pull request calls of api.h (they need the token's
 * pullrequest scope), and abbreviated hashes made full.
 */
#include "api/api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/client.h"
#include "api/log.h"
#include "api/parse.h"
#include "api/url.h"
#include "api/walk.h"

/* ---- pull requests ---- */

/* Pages of pull requests are at most this long: the API refuses more (HTTP 400). */
#define PR_PAGELEN "50"

void api_pullrequest_list_release(struct api_pullrequest_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        api_pullrequest_release(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof(*list));
}

static int pullrequest_item(json_t *item, void *out, const void *arg)
{
    (void)arg;
    return parse_pullrequest(item, out);
}

static int cmp_pr_id(const void *a, const void *b)
{
    const struct api_pullrequest *x = a, *y = b;

    return (x->id > y->id) - (x->id < y->id);
}

/* Starts u as .../{repo}/pullrequests[/{id}[/{tail}]] (id 0: none); url_finish ends it. */
static void pullrequest_url(struct api_client *c, const char *workspace, const char *repo,
                            uint64_t id, const char *tail, struct buf *u)
{
    char number[24];

    client_url_repo(u, c, workspace, repo);
    url_add_segment(u, "pullrequests");
    if (id) {
        snprintf(number, sizeof(number), "%" PRIu64, id);
        url_add_segment(u, number);
    }
    if (tail)
        url_add_segment(u, tail);
}

int api_list_pullrequests(struct api_client *client, const char *workspace, const char *repo,
                          struct api_pullrequest_list *out)
{
    struct collector acc = {.parse = pullrequest_item,
                            .elem = sizeof(*out->items),
                            .skip_key = "api:pr-without-id",
                            .skip_message = "ignoring a pull request without an id"};
    struct buf u;
    size_t kept = 0;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    pullrequest_url(client, workspace, repo, 0, NULL, &u);
    url_add_query(&u, "state", "OPEN");
    url_add_query(&u, "pagelen", PR_PAGELEN);
    url = client_url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = walk_pages(client, API_KIND_PULLREQUESTS, url, walk_collect, &acc, &out->fetched_at);
    out->items = acc.items;
    out->count = acc.count;
    free(url);
    if (rc < 0) {
        api_pullrequest_list_release(out);
        return rc;
    }
    /* Sorted by id, and an id the pages gave twice (a list changing under us) kept once. */
    if (out->count > 1)
        qsort(out->items, out->count, sizeof(*out->items), cmp_pr_id);
    for (size_t i = 0; i < out->count; i++) {
        if (kept > 0 && out->items[kept - 1].id == out->items[i].id) {
            api_pullrequest_release(&out->items[i]);
            continue;
        }
        out->items[kept++] = out->items[i];
    }
    out->count = kept;
    return 0;
}

struct pr_args {
    uint64_t id;
    struct api_pullrequest *out;
};

/* The pull request object, if it is the one asked for. */
static int pullrequest_from(json_t *root, void *ctx)
{
    struct pr_args *args = ctx;
    int rc = parse_pullrequest(root, args->out);

    if (rc == 0 && args->out->id != args->id) {
        api_pullrequest_release(args->out);
        rc = -EINVAL;
    }
    return rc == -EINVAL ? -EIO : rc;
}

int api_get_pullrequest(struct api_client *client, const char *workspace, const char *repo,
                        uint64_t id, struct api_pullrequest *out)
{
    struct pr_args args = {id, out};
    struct buf u;
    char *url;
    int rc;

    memset(out, 0, sizeof(*out));
    if (id == 0)
        return -EINVAL;
    pullrequest_url(client, workspace, repo, id, NULL, &u);
    url = client_url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = client_get_object(client, API_KIND_PULLREQUESTS, url, pullrequest_from, &args,
                           &out->doc.fetched_at);
    free(url);
    return rc;
}

static int add_to_array(json_t *item, void *ctx)
{
    return json_array_append(ctx, item) == 0 ? 0 : -ENOMEM;
}

int api_get_pullrequest_comments(struct api_client *client, const char *workspace, const char *repo,
                                 uint64_t id, struct api_doc *out)
{
    json_t *all = json_array();
    int64_t fetched_at = 0;
    struct buf u;
    char *url = NULL;
    int rc = -ENOMEM;

    memset(out, 0, sizeof(*out));
    if (!all)
        goto out;
    pullrequest_url(client, workspace, repo, id, "comments", &u);
    url_add_query(&u, "pagelen", "100");
    url = client_url_finish(&u, &rc);
    if (!url)
        goto out;
    rc = walk_pages(client, API_KIND_COMMENTS, url, add_to_array, all, &fetched_at);
    if (rc == 0)
        rc = parse_doc(all, out);
    if (rc == 0)
        out->fetched_at = fetched_at;
out:
    free(url);
    json_decref(all);
    return rc;
}

int api_get_pullrequest_diff(struct api_client *client, const char *workspace, const char *repo,
                             uint64_t id, const struct api_sink *sink, uint64_t *size)
{
    struct http_response resp;
    struct buf u;
    int rc;

    if (size)
        *size = 0;
    if (id == 0 || !sink)
        return -EINVAL;
    pullrequest_url(client, workspace, repo, id, "diff", &u);
    rc = client_download(client, API_KIND_DIFF, &u, sink, 0, &resp, size);
    http_response_release(&resp);
    return rc;
}

struct hash_args {
    const char *abbrev;
    char *full;
};

/* The commit's full hash, if it starts with the abbreviation asked about. */
static int hash_from(json_t *root, void *ctx)
{
    struct hash_args *args = ctx;
    const char *hash = parse_get_ident(root, "hash");

    if (!hash || !api_is_full_hash(hash) || strncmp(hash, args->abbrev, strlen(args->abbrev)) != 0)
        return -EIO;
    memcpy(args->full, hash, API_HASH_LEN + 1);
    return 0;
}

int api_expand_hash(struct api_client *client, const char *workspace, const char *repo,
                    const char *abbrev, char full[API_HASH_LEN + 1])
{
    struct hash_args args = {abbrev, full};
    size_t n = strspn(abbrev, "0123456789abcdef");
    struct buf u;
    char *url;
    int rc;

    if (n < 7 || n > API_HASH_LEN || abbrev[n] != '\0')
        return -EINVAL;
    if (n == API_HASH_LEN) {
        memcpy(full, abbrev, API_HASH_LEN + 1);
        return 0;
    }
    client_url_at(&u, client, workspace, repo, "commit", abbrev);
    url_add_query(&u, "fields", "hash");
    url = client_url_finish(&u, &rc);
    if (!url)
        return rc;
    rc = client_get_object(client, API_KIND_COMMIT, url, hash_from, &args, NULL);
    free(url);
    return rc;
}

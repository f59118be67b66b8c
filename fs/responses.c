/*
 * responses.c - the API's answers in the store and the shared cache (see
 * responses.h).
 */
#include "fs/responses.h"

#include "api/api.h"
#include "fs/shared_cache.h"
#include "fs/store.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The API's answers live in the store under "response\nURL": immutable ones
 * as the bare body, mutable ones behind a header of four lines, the format's
 * name, the time fetched (seconds since the epoch), the body's length and the
 * ETag (maybe empty). An entry whose header does not parse or whose length
 * does not match is treated as absent.
 */
#define RESPONSE_MAGIC "bbfs-response 1\n"

static char *response_key(const char *url)
{
    char *key;
    if (asprintf(&key, "response\n%s", url) < 0)
        return NULL;
    return key;
}

static int load_response(void *ctx, const char *url, char **body, size_t *len)
{
    struct responses *r = ctx;
    char *key = response_key(url);
    if (!key)
        return -ENOMEM;
    int rc = store_get_bytes(r->store, key, body, len);
    if (rc == -ENOENT && shared_cache_load(r->shared, url, body, len) == 0) {
        store_put_bytes(r->store, key, *body, *len);
        rc = 0;
    }
    free(key);
    return rc;
}

static void save_response(void *ctx, const char *url, const char *body, size_t len)
{
    struct responses *r = ctx;
    char *key = response_key(url);
    if (!key)
        return;
    store_put_bytes(r->store, key, body, len);
    free(key);
    shared_cache_save(r->shared, url, body, len);
}

/* Splits the next '\n'-ended line off *p (before end), or NULL. */
static char *next_line(char **p, char *end)
{
    char *line = *p, *nl = memchr(line, '\n', (size_t)(end - line));
    if (!nl)
        return NULL;
    *nl = '\0';
    *p = nl + 1;
    return line;
}

static int parse_number(const char *s, unsigned long long *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno || *end ? -1 : 0;
}

/* The stored mutable answer for url into *a (body NULL when there is none): 0 or -ENOMEM. */
static int load_stored_mutable(struct store *store, const char *url, struct shared_answer *a)
{
    char *key = response_key(url), *data = NULL, *p, *end, *time_s, *len_s, *etag_s;
    unsigned long long t, n;
    size_t size;
    int rc;

    memset(a, 0, sizeof(*a));
    if (!key)
        return -ENOMEM;
    rc = store_get_bytes(store, key, &data, &size);
    free(key);
    if (rc)
        return rc == -ENOMEM ? rc : 0;
    rc = 0;
    if (size < strlen(RESPONSE_MAGIC) || memcmp(data, RESPONSE_MAGIC, strlen(RESPONSE_MAGIC)) != 0)
        goto out;
    end = data + size;
    p = data + strlen(RESPONSE_MAGIC);
    if (!(time_s = next_line(&p, end)) || !(len_s = next_line(&p, end)) ||
        !(etag_s = next_line(&p, end)) || parse_number(time_s, &t) != 0 ||
        parse_number(len_s, &n) != 0 || t > INT64_MAX || n != (unsigned long long)(end - p))
        goto out;
    if (*etag_s && !(a->etag = strdup(etag_s))) {
        rc = -ENOMEM;
        goto out;
    }
    memmove(data, p, (size_t)n + 1); /* with the store's terminating NUL */
    a->body = data;
    a->len = (size_t)n;
    a->fetched_at = (int64_t)t;
    return 0;
out:
    free(data);
    return rc;
}

static void store_mutable(struct store *store, const char *url, const char *body, size_t len,
                          const char *etag, int64_t fetched_at)
{
    char *key = response_key(url), *data = NULL, head[512];

    if (!key)
        return;
    /* An ETag that cannot sit on one line is not kept: the answer is then revalidated in full. */
    if (!etag || strlen(etag) > 256 || strpbrk(etag, "\r\n"))
        etag = "";
    int n = snprintf(head, sizeof(head), RESPONSE_MAGIC "%lld\n%zu\n%s\n",
                     (long long)(fetched_at < 0 ? 0 : fetched_at), len, etag);
    if (n > 0 && (size_t)n < sizeof(head) && (data = malloc((size_t)n + len))) {
        memcpy(data, head, (size_t)n);
        memcpy(data + n, body, len);
        store_put_bytes(store, key, data, (size_t)n + len);
    }
    free(data);
    free(key);
}

/* The newest of the stored and the shared answer; peek: only looking, no request follows. */
static int load_mutable(struct responses *r, const char *url, int peek, char **body, size_t *len,
                        char **etag, int64_t *fetched_at)
{
    struct shared_answer a;
    int rc = load_stored_mutable(r->store, url, &a);

    if (rc)
        return rc;
    if (shared_cache_load_mutable(r->shared, url, peek, &a) == 1)
        store_mutable(r->store, url, a.body, a.len, a.etag, a.fetched_at);
    if (!a.body)
        return -ENOENT;
    *body = a.body;
    *len = a.len;
    *etag = a.etag;
    *fetched_at = a.fetched_at;
    return 0;
}

static int load_mutable_response(void *ctx, const char *url, char **body, size_t *len, char **etag,
                                 int64_t *fetched_at)
{
    return load_mutable(ctx, url, 0, body, len, etag, fetched_at);
}

static int peek_mutable_response(void *ctx, const char *url, char **body, size_t *len, char **etag,
                                 int64_t *fetched_at)
{
    return load_mutable(ctx, url, 1, body, len, etag, fetched_at);
}

static void save_mutable_response(void *ctx, const char *url, const char *body, size_t len,
                                  const char *etag, int64_t fetched_at)
{
    struct responses *r = ctx;

    store_mutable(r->store, url, body, len, etag, fetched_at);
    shared_cache_save_mutable(r->shared, url, body, len, etag, fetched_at);
}

void responses_attach(struct api_client *api, struct responses *r)
{
    struct api_response_cache responses = {
        .ctx = r,
        .load = load_response,
        .save = save_response,
        .load_mutable = load_mutable_response,
        .peek_mutable = peek_mutable_response,
        .save_mutable = save_mutable_response,
    };
    api_set_response_cache(api, &responses);
}

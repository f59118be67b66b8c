/*
 * walk.c - page walking (see walk.h): a listing's pages one after another,
 * or, when the first page says how many there are, the rest at once by a
 * few threads; the pages held until the walk succeeded; and the collector
 * that gathers entries into an array.
 */
#include "api/walk.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/client.h"
#include "api/log.h"
#include "api/page.h"
#include "api/stored.h"

/* Requests in flight for one listing: enough to hide latency, few enough to be polite. */
#define PAGE_WORKERS 6

/* A page that came from the API, held until the whole walk succeeded. */
struct held_page {
    char *url;
    struct http_response resp;
};

/* One listing being walked. */
struct walk {
    struct api_client *c;
    enum api_kind kind;
    item_fn fn;
    void *ctx;
    size_t max_pages;
    unsigned flags; /* for http_get */
    struct page_walk links;
    struct held_page *held;
    size_t nheld, held_alloc;
    int64_t oldest; /* when the oldest page was fetched (api.h: fetched_at), 0 before any */
};

/* Notes when a page the walk used was fetched. */
static void note_fetched(struct walk *w, const struct http_response *resp)
{
    if (w->oldest == 0 || (resp->fetched_at && resp->fetched_at < w->oldest))
        w->oldest = resp->fetched_at;
}

/* One page's envelope (see page_parse); values and next are borrowed from root. */
struct page {
    struct api_client *c;
    const char *url;
    json_t *root, *values;
    const char *next;
};

/* An answer_check_fn: the body is a page's envelope. */
static int check_page(const struct http_response *resp, int from_store, void *arg)
{
    struct page *p = arg;
    int rc = page_parse(p->url, resp->body, resp->len, &p->root, &p->values, &p->next);

    if (rc == -EIO && !from_store)
        client_count(&p->c->bad_answers);
    return rc;
}

/* GET url through the stored answers and parse it into p; resp is the caller's to release. */
static int get_page(struct walk *w, const char *url, struct page *p, struct http_response *resp,
                    int *from_store)
{
    memset(p, 0, sizeof(*p));
    p->c = w->c;
    p->url = url;
    return stored_get_checked(w->c, w->kind, url, w->flags, check_page, p, resp, from_store);
}

/* Hands a page's entries to fn in order; *stop when fn asked to stop. */
static int hand_out(struct walk *w, json_t *values, int *stop)
{
    int rc;

    for (size_t i = 0; i < json_array_size(values) && !*stop; i++) {
        rc = w->fn(json_array_get(values, i), w->ctx);
        if (rc < 0)
            return rc;
        *stop = rc > 0;
    }
    return 0;
}

/* Holds a page from the API (taking *url and resp) until the walk is over. */
static int hold_page(struct walk *w, char **url, struct http_response *resp)
{
    struct held_page *grown =
        client_grow_array(w->held, &w->held_alloc, w->nheld, sizeof(*w->held));

    if (!grown)
        return -ENOMEM;
    w->held = grown;
    w->held[w->nheld].url = *url;
    w->held[w->nheld++].resp = *resp;
    *url = NULL;
    memset(resp, 0, sizeof(*resp));
    return 0;
}

/* Stores the held pages when the walk succeeded (rc 0), and lets them go. */
static void walk_finish(struct walk *w, int rc)
{
    for (size_t i = 0; i < w->nheld; i++) {
        if (rc == 0)
            stored_keep(w->c, w->kind, w->held[i].url, &w->held[i].resp);
        http_response_release(&w->held[i].resp);
        free(w->held[i].url);
    }
    free(w->held);
    page_walk_release(&w->links);
}

/* ---- the pages after the first, at once ---- */

/* One of pages 2..n of a list-based collection. */
struct batch_page {
    char *url;
    struct http_response resp;
    struct page page;
    int rc, from_store;
};

/* Pages 2..n, fetched by PAGE_WORKERS threads. */
struct page_batch {
    struct walk *w;
    struct batch_page *pages;
    size_t count;      /* pages 2..n: count = n - 1 */
    size_t next_index; /* atomic: the next page a worker takes */
};

static void *page_worker(void *arg)
{
    struct page_batch *b = arg;
    struct batch_page *p;
    size_t i;

    while ((i = __atomic_fetch_add(&b->next_index, 1, __ATOMIC_RELAXED)) < b->count) {
        p = &b->pages[i];
        p->rc = get_page(b->w, p->url, &p->page, &p->resp, &p->from_store);
    }
    return NULL;
}

static void page_batch_release(struct page_batch *b)
{
    for (size_t i = 0; b->pages && i < b->count; i++) {
        free(b->pages[i].url);
        http_response_release(&b->pages[i].resp);
        json_decref(b->pages[i].page.root);
    }
    free(b->pages);
}

/*
 * The URLs of pages 2..npages from second_url, page 2's link (already
 * checked). -ENOENT when the collection is not list-based after all.
 */
static int page_batch_init(struct page_batch *b, struct walk *w, const char *second_url,
                           size_t npages)
{
    int rc;

    memset(b, 0, sizeof(*b));
    b->w = w;
    b->pages = calloc(npages - 1, sizeof(*b->pages));
    if (!b->pages)
        return -ENOMEM;
    b->count = npages - 1;
    for (size_t i = 0; i < b->count; i++) {
        rc = page_url_for(second_url, i + 2, &b->pages[i].url);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Every page of b fetched and parsed, by the workers and this thread: 0 or the first failure. */
static int page_batch_fetch(struct page_batch *b)
{
    pthread_t threads[PAGE_WORKERS];
    size_t nthreads = 0;

    /* A thread that may not wait (api_nowait) takes stored pages alone: workers would ask the API.
     */
    for (; !api_nowait() && nthreads < PAGE_WORKERS && nthreads < b->count; nthreads++)
        if (pthread_create(&threads[nthreads], NULL, page_worker, b) != 0)
            break;
    page_worker(b); /* this thread works too, and alone if no thread could start */
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    for (size_t i = 0; i < b->count; i++)
        if (b->pages[i].rc < 0)
            return b->pages[i].rc;
    return 0;
}

/*
 * How many pages a list-based collection has, from its first page: 0 when
 * the envelope does not say (iterator-based, no size) or looks odd.
 */
static size_t page_count(json_t *first)
{
    json_int_t size, pagelen, page;

    if (json_unpack(first, "{s:I, s:I, s:I}", "size", &size, "pagelen", &pagelen, "page", &page) !=
            0 ||
        page != 1 || pagelen <= 0 || size <= 0 || size > (json_int_t)PAGE_MAX_PAGES * pagelen)
        return 0;
    return (size_t)((size + pagelen - 1) / pagelen);
}

/*
 * Checks the fetched pages 2..n against the first page's promise: full
 * pages, a last page with what is left and no next. A collection that
 * changed while it was read fails this, and is read again link by link.
 */
static int batch_is_consistent(const struct page_batch *b, json_t *first)
{
    json_int_t size = json_integer_value(json_object_get(first, "size"));
    json_int_t pagelen = json_integer_value(json_object_get(first, "pagelen"));

    for (size_t i = 0; i < b->count; i++) {
        const struct page *p = &b->pages[i].page;
        int last = i + 1 == b->count;
        json_int_t want = last ? size - pagelen * (json_int_t)(b->count) : pagelen;
        if ((json_int_t)json_array_size(p->values) != want || last != (p->next == NULL))
            return 0;
    }
    return 1;
}

/*
 * Whether the API said the token's hourly budget is nearly spent: then pages
 * are asked for one at a time, so that other users of the token get a share.
 */
static int near_rate_limit(struct api_client *c)
{
    struct http_stats s;

    http_get_stats(c->http, &s);
    return s.ratelimit_near;
}

/*
 * Fetches pages 2..npages at once (second_url is page 2's link, already
 * checked; first the first page's root) and hands their entries to fn in
 * order. *done is 0 when the pages did not add up: nothing was handed to
 * fn, and the caller follows the links instead.
 */
static int walk_rest_at_once(struct walk *w, const char *second_url, size_t npages, json_t *first,
                             int *done)
{
    struct page_batch b;
    int rc, stop = 0;

    *done = 0;
    rc = page_batch_init(&b, w, second_url, npages);
    if (rc == -ENOENT) {
        rc = 0; /* not list-based after all */
        goto out;
    }
    if (rc == 0)
        rc = page_batch_fetch(&b);
    if (rc < 0)
        goto out;
    if (!batch_is_consistent(&b, first)) {
        log_debug("a listing changed while its pages were read at once; reading it again");
        goto out;
    }
    for (size_t i = 0; i < b.count && rc == 0; i++) {
        rc = stop ? 0 : hand_out(w, b.pages[i].page.values, &stop);
        note_fetched(w, &b.pages[i].resp);
        if (rc == 0 && !b.pages[i].from_store)
            rc = hold_page(w, &b.pages[i].url, &b.pages[i].resp);
    }
    *done = rc == 0;
out:
    page_batch_release(&b);
    return rc;
}

/* ---- the walk ---- */

/*
 * After the first page: -EFBIG when it promises more than max_pages pages,
 * else the rest at once when it says how many there are and more than one
 * follows.
 * *url (page 2's link) becomes NULL when nothing is left to follow.
 */
static int after_first_page(struct walk *w, json_t *first, char **url)
{
    size_t npages = page_count(first);
    int rc, done;

    if (npages > w->max_pages)
        return -EFBIG;
    if (npages <= 2 || near_rate_limit(w->c))
        return 0;
    rc = walk_rest_at_once(w, *url, npages, first, &done);
    if (rc < 0 || done) {
        free(*url);
        *url = NULL;
    }
    return rc;
}

/*
 * Fetches the page *url, hands its entries to fn, and replaces *url with
 * the next page's URL: NULL at the end, when fn stopped the walk, or when
 * the rest was fetched at once.
 */
static int walk_page(struct walk *w, char **url)
{
    struct http_response resp;
    struct page p;
    char *next_url = NULL;
    int rc, from_store, stop = 0;

    rc = get_page(w, *url, &p, &resp, &from_store);
    if (rc == 0) {
        note_fetched(w, &resp);
        rc = hand_out(w, p.values, &stop);
    }
    if (rc == 0 && !stop)
        rc = page_walk_next(&w->links, p.next, &next_url);
    if (rc == 0 && !from_store)
        rc = hold_page(w, url, &resp);
    http_response_release(&resp);
    free(*url);
    *url = next_url;
    if (rc == 0 && *url && w->links.pages == 2)
        rc = after_first_page(w, p.root, url);
    json_decref(p.root); /* p.next was borrowed from it: used above, dead now */
    return rc;
}

/* walk_pages_capped, telling when the oldest page was fetched. */
static int walk_dated(struct api_client *c, enum api_kind kind, const char *first_url,
                      size_t max_pages, unsigned flags, item_fn fn, void *ctx, int64_t *fetched_at)
{
    struct walk w = {
        .c = c, .kind = kind, .fn = fn, .ctx = ctx, .max_pages = max_pages, .flags = flags};
    char *url;
    int rc;

    rc = page_walk_init(&w.links, c->base, first_url, max_pages);
    if (rc < 0)
        return rc;
    url = strdup(first_url);
    if (!url)
        rc = -ENOMEM;
    while (rc == 0 && url)
        rc = walk_page(&w, &url);
    free(url);
    walk_finish(&w, rc);
    if (rc == 0)
        page_forget_failure(first_url);
    if (rc == 0 && fetched_at)
        *fetched_at = w.oldest;
    return rc;
}

int walk_pages_capped(struct api_client *c, enum api_kind kind, const char *first_url,
                      size_t max_pages, unsigned flags, item_fn fn, void *ctx)
{
    return walk_dated(c, kind, first_url, max_pages, flags, fn, ctx, NULL);
}

int walk_pages(struct api_client *c, enum api_kind kind, const char *first_url, item_fn fn,
               void *ctx, int64_t *fetched_at)
{
    return walk_dated(c, kind, first_url, PAGE_MAX_PAGES, 0, fn, ctx, fetched_at);
}

/* ---- the collector ---- */

int walk_collect(json_t *item, void *collector)
{
    struct collector *c = collector;
    char *items = client_grow_array(c->items, &c->alloc, c->count, c->elem);
    int rc;

    if (!items)
        return -ENOMEM;
    c->items = items;
    memset(items + c->count * c->elem, 0, c->elem);
    rc = c->parse(item, items + c->count * c->elem, c->arg);
    if (rc == -EINVAL) {
        log_once(LOG_LEVEL_WARN, c->skip_key, "%s", c->skip_message);
        if (log_debug_enabled()) {
            char *text = json_dumps(item, JSON_COMPACT), clean[256];
            log_sanitize(clean, sizeof(clean), text ? text : "?");
            log_debug("ignored entry %s", clean);
            free(text);
        }
        return 0;
    }
    if (rc < 0)
        return rc;
    c->count++;
    return c->limit && c->count >= c->limit ? 1 : 0;
}

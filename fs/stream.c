/*
 * stream.c - downloads read as they arrive (see stream.h).
 *
 * One mutex, the streams', guards the table of downloads under way and
 * every download's state and counts; each download has a condition variable
 * its readers wait on. The bytes themselves are written and read without
 * it: a download only appends, and a read is answered only from bytes
 * already counted as written, from the file they were counted in (a file
 * left behind when the bytes move out of a full store stays open while a
 * read uses it). Where the bytes land, also when the store cannot take
 * them, is landing.c's. Downloads run on a pool of threads of their own, and
 * give up as soon as nobody wants their bytes (unless little is left): curl
 * asks at least once a second.
 */
#include "fs/stream.h"

#include "api/api.h"
#include "fs/landing.h"
#include "fs/store.h"
#include "fs/waits.h"
#include "fs/workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Downloads at once (more wait in the queue), and how many may wait. */
#define DOWNLOAD_THREADS 32
#define DOWNLOAD_QUEUE 4096
/* Downloads one read starts at most when the ones it follows stop under it. */
#define MAX_TRIES 3
/*
 * What is cheaper to finish than to ask for again (a request, of a budget
 * of 1,000 an hour): a download nobody wants any more goes on when its
 * bytes flow and no more than this is left of it (an open without a read,
 * wc -c, is followed by a cat); a bigger or a stalled one stops.
 */
#define FINISH_ANYWAY ((uint64_t)8 << 20)

/* A file holding a content's bytes, open while anyone may read from it. */
struct backing {
    unsigned refs; /* atomic */
    int fd;
};

enum download_state { ARRIVING, COMPLETE, FAILED };

struct download {
    struct download *next; /* in the table */
    struct streams *owner;
    char *key;
    struct stream_source source; /* arg: the download's own copy */
    unsigned refs;               /* the streams following it, the table, its job */
    unsigned interest;           /* the streams following it (atomic: read by the download) */
    int dropped;                 /* nobody wanted it any more: it stops (atomic) */
    enum download_state state;
    int error;   /* FAILED: why */
    int started; /* its first bytes, or its end, are there */
    uint64_t bytes;
    uint64_t awaited;     /* the fewest bytes a waiting read needs (UINT64_MAX: none waits) */
    struct backing *file; /* where the bytes are; NULL until it began */
    int in_table;
    pthread_cond_t changed;
    struct landing landing; /* where the bytes go: the download thread's alone */
    int ran;
};

struct streams {
    struct store *store;
    pthread_mutex_t lock;
    struct download *table;
    struct workers *threads;
    int stopping; /* atomic */
};

struct stream {
    struct streams *owner;
    char *key;
    struct stream_source source; /* arg: its own copy, for a download after a failure */
    struct download *d;          /* the download it follows, or NULL */
    int fd;                      /* without d: the complete entry from the store */
    uint64_t size;
    int stored; /* it was complete in the store when opened */
};

/* ---- files and the table -------------------------------------------------- */

static struct backing *backing_new(int fd)
{
    struct backing *b = malloc(sizeof(*b));
    if (!b) {
        close(fd);
        return NULL;
    }
    b->refs = 1;
    b->fd = fd;
    return b;
}

static void backing_put(struct backing *b)
{
    if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        close(b->fd);
        free(b);
    }
}

static void download_free(struct download *d)
{
    backing_put(d->file);
    if (d->source.arg)
        d->source.free(d->source.arg);
    pthread_cond_destroy(&d->changed);
    free(d->key);
    free(d);
}

static struct download *table_find_locked(struct streams *s, const char *key)
{
    struct download *d = s->table;
    while (d && strcmp(d->key, key) != 0)
        d = d->next;
    return d;
}

static void table_remove_locked(struct download *d)
{
    struct download **link = &d->owner->table;
    while (*link != d)
        link = &(*link)->next;
    *link = d->next;
    d->in_table = 0;
    d->refs--;
}

/* A complete download nobody follows is no longer worth finding: its content is stored or gone. */
static void download_put_locked(struct download *d)
{
    d->refs--;
    if (d->refs == 1 && d->in_table && d->state == COMPLETE)
        table_remove_locked(d);
    if (d->refs == 0)
        download_free(d);
}

static void follow_locked(struct stream *st, struct download *d)
{
    d->refs++;
    __atomic_add_fetch(&d->interest, 1, __ATOMIC_RELEASE);
    st->d = d;
}

/* Whether bytes of a content said to weigh hint, flowing, leave little enough to finish. */
static int nearly_done(uint64_t hint, uint64_t bytes)
{
    return bytes > 0 && bytes <= hint && hint - bytes <= FINISH_ANYWAY;
}

/*
 * A download nobody wants any more stops (wanted() says so to it) unless it
 * is nearly done, and then leaves the table at once: an open that comes
 * meanwhile (Ctrl-C, then the same command again) starts a new one rather
 * than follow one that stops.
 */
static void unfollow_locked(struct stream *st)
{
    struct download *d = st->d;

    if (__atomic_sub_fetch(&d->interest, 1, __ATOMIC_RELEASE) == 0 && d->state == ARRIVING &&
        !nearly_done(d->source.size_hint, d->bytes)) {
        __atomic_store_n(&d->dropped, 1, __ATOMIC_RELEASE);
        if (d->in_table)
            table_remove_locked(d);
    }
    download_put_locked(d);
    st->d = NULL;
}

/* ---- writing: the download thread ----------------------------------------- */

/* Whether the download should go on (asked by its own thread, at every piece and in between). */
static int wanted(struct download *d)
{
    if (__atomic_load_n(&d->owner->stopping, __ATOMIC_ACQUIRE))
        return 0;
    if (__atomic_load_n(&d->interest, __ATOMIC_ACQUIRE) > 0)
        return 1;
    /* a content bigger than it was said to be is not nearly done after all */
    return !__atomic_load_n(&d->dropped, __ATOMIC_ACQUIRE) &&
           nearly_done(d->source.size_hint, d->landing.written);
}

static int set_file(struct download *d, int fd)
{
    struct backing *b = backing_new(fd), *old;
    if (!b)
        return -ENOMEM;
    pthread_mutex_lock(&d->owner->lock);
    old = d->file;
    d->file = b;
    pthread_mutex_unlock(&d->owner->lock);
    backing_put(old);
    return 0;
}

/* Readers take the bytes from a file of their own: the landing's may move or close. */
static int follow_landing(struct download *d)
{
    int fd = dup(d->landing.fd);
    return fd < 0 ? -errno : set_file(d, fd);
}

static int sink_write(void *ctx, const void *data, size_t len)
{
    struct download *d = ctx;
    int moved, rc;

    if (!wanted(d))
        return -ECANCELED;
    rc = landing_write(&d->landing, data, len, &moved);
    if (rc == 0 && moved)
        rc = follow_landing(d);
    if (rc)
        return rc;
    pthread_mutex_lock(&d->owner->lock);
    d->bytes = d->landing.written;
    /* curl hands over 16 KiB at a time: readers wake when what one of them waits for is there */
    if (!d->started || d->bytes >= d->awaited) {
        d->started = 1;
        d->awaited = UINT64_MAX;
        pthread_cond_broadcast(&d->changed);
    }
    pthread_mutex_unlock(&d->owner->lock);
    return 0;
}

static int sink_cancelled(void *ctx)
{
    return !wanted(ctx);
}

/* What readers of a failed download are told: the API's answer, or EIO. */
static int reader_error(int rc)
{
    return rc == -ENOENT || rc == -EACCES || rc == -ECANCELED ? rc : -EIO;
}

static void download_finish(struct download *d, int rc, int complete)
{
    struct streams *s = d->owner;

    if (rc == 0 && !complete)
        rc = landing_finish(&d->landing, d->key);
    landing_release(&d->landing);
    pthread_mutex_lock(&s->lock);
    d->state = rc ? FAILED : COMPLETE;
    d->error = reader_error(rc);
    d->started = 1;
    /* found again in the store from now on; an unkept one is shared while it is read */
    if (d->in_table && (rc || d->landing.kept || complete))
        table_remove_locked(d);
    pthread_cond_broadcast(&d->changed);
    pthread_mutex_unlock(&s->lock);
}

static void download_run(void *arg)
{
    struct download *d = arg;
    const struct api_sink sink = {sink_write, sink_cancelled, d};
    int complete, rc;

    d->ran = 1;
    rc = landing_begin(&d->landing, d->owner->store, d->key, d->source.size_hint, &complete);
    if (rc == 0)
        rc = follow_landing(d);
    if (rc == 0 && !complete)
        rc = d->source.fill(d->source.arg, &sink);
    download_finish(d, rc, complete);
}

/* After the job ran, or instead of it when it was dropped (the pool stopping). */
static void download_job_end(void *arg)
{
    struct download *d = arg;
    struct streams *s = d->owner;

    if (!d->ran)
        download_finish(d, -EIO, 0);
    pthread_mutex_lock(&s->lock);
    download_put_locked(d);
    pthread_mutex_unlock(&s->lock);
}

/* ---- reading ----------------------------------------------------------------- */

static struct download *download_new(struct streams *s, const struct stream *st)
{
    struct download *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->owner = s;
    d->source = st->source;
    d->source.arg = st->source.copy(st->source.arg);
    d->key = strdup(st->key);
    d->awaited = UINT64_MAX;
    d->landing.fd = -1;
    d->landing.w.fd = -1;
    pthread_cond_init(&d->changed, NULL);
    if (!d->source.arg || !d->key) {
        download_free(d);
        return NULL;
    }
    return d;
}

/* Whether st follows a download or holds its content already (another read of it attached it). */
static int attached_locked(const struct stream *st)
{
    return st->d || st->fd >= 0;
}

/*
 * Makes st follow the download of its content under way, or hold the
 * complete entry from the store, or follow a download started now. Reads of
 * one open content may come at once: the first to attach it does.
 */
static int attach(struct stream *st)
{
    struct streams *s = st->owner;
    struct download *d, *mine;
    uint64_t size;
    int fd, started = 0;

    if (__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
        return -EIO;
    pthread_mutex_lock(&s->lock);
    d = attached_locked(st) ? NULL : table_find_locked(s, st->key);
    if (d)
        follow_locked(st, d);
    int done = attached_locked(st);
    pthread_mutex_unlock(&s->lock);
    if (done)
        return 0;
    if (store_lookup(s->store, st->key, &fd, &size) == 0) {
        pthread_mutex_lock(&s->lock);
        if (!attached_locked(st)) {
            st->fd = fd;
            st->size = size;
            fd = -1;
        }
        pthread_mutex_unlock(&s->lock);
        if (fd >= 0)
            close(fd);
        return 0;
    }
    if (api_nowait())
        return -EWOULDBLOCK;
    mine = download_new(s, st);
    if (!mine)
        return -ENOMEM;
    pthread_mutex_lock(&s->lock);
    d = attached_locked(st) ? NULL : table_find_locked(s, st->key); /* started meanwhile */
    if (!d && !attached_locked(st)) {
        d = mine;
        d->next = s->table;
        s->table = d;
        d->in_table = 1;
        d->refs = 2; /* the table, the job */
        started = 1;
    }
    if (d)
        follow_locked(st, d);
    pthread_mutex_unlock(&s->lock);
    if (!started)
        download_free(mine);
    else
        workers_submit(s->threads, download_run, download_job_end, d);
    return 0;
}

/* Waits for the first bytes of the download st follows; when it failed, st follows nothing. */
static int wait_started(struct stream *st)
{
    struct streams *s = st->owner;
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    while (rc == 0 && !st->d->started && !__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
        rc = waits_cond(&st->d->changed, &s->lock);
    if (rc == 0 && !st->d->started)
        rc = -EIO;
    if (rc == 0 && st->d->state == FAILED)
        rc = st->d->error;
    if (rc)
        unfollow_locked(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int stream_open(struct streams *s, const char *key, const struct stream_source *source,
                struct stream **out, int *stored)
{
    struct stream *st = calloc(1, sizeof(*st));
    int rc = -ENOMEM;

    *out = NULL;
    *stored = 0;
    if (!st)
        return -ENOMEM;
    st->owner = s;
    st->fd = -1;
    st->source = *source;
    st->source.arg = source->copy(source->arg);
    st->key = strdup(key);
    if (!st->source.arg || !st->key)
        goto out;
    /* A download that stopped (nobody wanted it) just as this open came is started anew. */
    for (int tries = 0; tries < MAX_TRIES; tries++) {
        rc = attach(st);
        if (rc == 0 && st->d)
            rc = wait_started(st);
        if (rc != -ECANCELED)
            break;
    }
out:
    if (rc) {
        stream_close(st);
        return rc == -ECANCELED ? -EIO : rc;
    }
    *stored = st->stored = !st->d;
    *out = st;
    return 0;
}

void stream_close(struct stream *st)
{
    if (!st)
        return;
    if (st->d) {
        pthread_mutex_lock(&st->owner->lock);
        unfollow_locked(st);
        pthread_mutex_unlock(&st->owner->lock);
    }
    if (st->fd >= 0)
        close(st->fd);
    if (st->source.arg)
        st->source.free(st->source.arg);
    free(st->key);
    free(st);
}

int stream_stored(const struct stream *st)
{
    return st->stored;
}

static size_t span_len(uint64_t have, uint64_t off, size_t len)
{
    if (off >= have)
        return 0;
    return have - off < len ? (size_t)(have - off) : len;
}

/* Whether bytes [off, off + len) of d can be read now (or all there is, complete). */
static int ready_locked(const struct download *d, uint64_t off, size_t len)
{
    if (!d->file)
        return 0;
    return d->state == COMPLETE || (d->bytes > off && d->bytes - off >= len);
}

/*
 * One look at the download st follows: 0 with the span, 1 to look again
 * (after a wait, or with st following nothing), or -errno. *tries counts the
 * downloads started anew for this read: one when the download had failed
 * before the read came (a later read starts a new one), and again when it
 * stopped under the read because, for a moment, nobody wanted it.
 */
static int look_locked(struct stream *st, uint64_t off, size_t len, struct stream_span *out,
                       int *tries, int *waited)
{
    struct download *d = st->d;

    if (__atomic_load_n(&st->owner->stopping, __ATOMIC_ACQUIRE))
        return -EIO;
    /* bytes a download delivered are right, also when it failed after them */
    if (d->state == FAILED && !ready_locked(d, off, len)) {
        int anew = d->error == -ECANCELED ? *tries < MAX_TRIES : !*waited && *tries == 0;
        if (!anew)
            return d->error == -ECANCELED ? -EIO : d->error;
        ++*tries;
        unfollow_locked(st);
        return 1;
    }
    if (ready_locked(d, off, len)) {
        __atomic_add_fetch(&d->file->refs, 1, __ATOMIC_ACQ_REL);
        out->hold = d->file;
        out->fd = d->file->fd;
        out->len = span_len(d->bytes, off, len);
        return 0;
    }
    *waited = 1;
    uint64_t end = len < UINT64_MAX - off ? off + len : UINT64_MAX;
    if (end < d->awaited)
        d->awaited = end; /* waiting for the end: woken by the download's end */
    int rc = waits_cond(&d->changed, &st->owner->lock);
    return rc ? rc : 1;
}

int stream_span(struct stream *st, uint64_t off, size_t len, struct stream_span *out)
{
    int rc = 1, tries = 0, waited = 0;

    memset(out, 0, sizeof(*out));
    out->fd = -1;
    out->pos = off;
    while (rc == 1) {
        int unattached = 0;
        pthread_mutex_lock(&st->owner->lock);
        if (st->d) {
            rc = look_locked(st, off, len, out, &tries, &waited);
        } else if (st->fd >= 0) { /* complete in the store: open until stream_close */
            out->fd = st->fd;
            out->len = span_len(st->size, off, len);
            rc = 0;
        }
        unattached = rc == 1 && !attached_locked(st);
        pthread_mutex_unlock(&st->owner->lock);
        if (unattached) {
            rc = attach(st);
            if (rc == 0)
                rc = 1;
        }
    }
    return rc;
}

void stream_span_release(struct stream_span *span)
{
    backing_put(span->hold);
    span->hold = NULL;
    span->fd = -1;
}

int stream_size(struct stream *st, uint64_t *size)
{
    struct stream_span all;
    int rc = stream_span(st, 0, SIZE_MAX, &all);

    if (rc == 0) {
        *size = all.len;
        stream_span_release(&all);
    }
    return rc;
}

/* ---- the downloads of a store -------------------------------------------------- */

int streams_new(struct store *store, struct streams **out)
{
    struct streams *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->store = store;
    pthread_mutex_init(&s->lock, NULL);
    if (workers_new(DOWNLOAD_THREADS, DOWNLOAD_QUEUE, &s->threads) != 0) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void streams_stop(struct streams *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    for (struct download *d = s->table; d; d = d->next)
        pthread_cond_broadcast(&d->changed);
    pthread_mutex_unlock(&s->lock);
}

void streams_free(struct streams *s)
{
    if (!s)
        return;
    streams_stop(s);
    workers_free(s->threads); /* the downloads under way notice the stop and end */
    while (s->table) {
        struct download *d = s->table;
        table_remove_locked(d);
        if (d->refs == 0)
            download_free(d);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

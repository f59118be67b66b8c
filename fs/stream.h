/*
 * stream.h - contents arriving: one download into the store, read by many as
 * its bytes arrive (internal to fs/).
 *
 * A content is named by its store key. Opening it finds it complete in the
 * store, or follows the download of it under way, or starts one: all its
 * readers share one download, whatever offsets they read. The download
 * writes the store's temporary file progressively, and a read waits only
 * until its own range is on disk, the content is complete, or the download
 * failed. The entry enters the store (renamed into place, store.h) only when
 * complete and its length checked, so a crash never leaves a torn entry.
 *
 * A failed download fails the reads waiting for it; a later read of the same
 * open content starts a new one (bytes read before were right, and stay so).
 * When every reader has gone before the end, the download stops and leaves
 * nothing behind.
 *
 * A download nobody wants any more goes on only when little is left of it.
 * A store that cannot take the content (full, unwritable) does not fail it:
 * the bytes go elsewhere (landing.h), shared while someone reads them. Every
 * wait is one of waits.h.
 */
#ifndef BBFS_STREAM_H
#define BBFS_STREAM_H

#include <stddef.h>
#include <stdint.h>

struct api_sink;
struct store;
struct streams;
struct stream;

/* What produces a content. */
struct stream_source {
    /* writes the content through sink, in order (on a download thread): 0 or -errno */
    int (*fill)(void *arg, const struct api_sink *sink);
    void *(*copy)(const void *arg); /* arg for a download of its own; NULL without memory */
    void (*free)(void *arg);
    void *arg;
    uint64_t size_hint; /* what it is expected to weigh (0: unknown), for room in a full store */
};

/* The downloads of one store (borrowed; it must outlive them). */
int streams_new(struct store *store, struct streams **out);
/* Stops the downloads under way: their waiting reads fail. Opens after it fail. */
void streams_stop(struct streams *s);
/* Stops, waits for the download threads, frees. Every stream must be closed. */
void streams_free(struct streams *s);

/*
 * Opens key's content: 0 once its first bytes (or its end) are there; the
 * download's error when it failed before. source (borrowed, copied) starts
 * a download when one is needed. In nowait mode: -EWOULDBLOCK where a
 * download would have to start, or its first bytes be waited for. *stored
 * says whether it was complete in the store.
 */
int stream_open(struct streams *s, const char *key, const struct stream_source *source,
                struct stream **out, int *stored);
void stream_close(struct stream *st);

/* Whether st's content was complete in the store when it was opened. */
int stream_stored(const struct stream *st);

/* Some bytes of a content: len bytes at pos of fd; released with stream_span_release. */
struct stream_span {
    int fd;
    uint64_t pos;
    size_t len; /* fewer than asked at the content's end, 0 past it */
    void *hold; /* keeps fd open */
};
/*
 * Bytes [off, off + len) of st, waiting for them (or for the content's end)
 * while they arrive: 0, -EIO (or the API's answer) when the download failed
 * while this read waited, a wait's -EWOULDBLOCK or -EINTR.
 */
int stream_span(struct stream *st, uint64_t off, size_t len, struct stream_span *out);
void stream_span_release(struct stream_span *span);

/* The content's size, once all of it is there. */
int stream_size(struct stream *st, uint64_t *size);

#endif

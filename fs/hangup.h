/*
 * hangup.h - SIGHUP taken by a thread of its own, which calls back.
 *
 * hangup_block() runs before any thread starts, so that every thread
 * inherits SIGHUP blocked: only the hangup thread takes it (with sigwait),
 * and a SIGHUP that comes before that thread starts waits for it, while one
 * that comes after it stopped stays pending, harmless, instead of ending the
 * process or the FUSE session (whose handler ends the session on SIGHUP).
 * The callback runs on that thread, where taking locks is allowed.
 */
#ifndef BBFS_HANGUP_H
#define BBFS_HANGUP_H

struct hangup;

typedef void (*hangup_fn)(void *ctx);

/* Blocks SIGHUP in the calling thread and in every thread it starts later: 0 or -errno. */
int hangup_block(void);

/* Starts the thread that calls on_hangup(ctx) once per SIGHUP taken: 0 or -errno. */
int hangup_start(hangup_fn on_hangup, void *ctx, struct hangup **out);

/*
 * Stops and joins the thread: when it returns, no callback runs or will run,
 * so ctx and what it points to may be freed. NULL is allowed.
 */
void hangup_stop(struct hangup *h);

#endif

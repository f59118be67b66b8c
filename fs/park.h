/*
 * park.h - FUSE requests that must wait for the network are answered from
 * threads of their own, so that a FUSE thread never waits for it (internal
 * to fs/).
 *
 * An operation first runs on the FUSE thread in nowait mode (api.h's
 * api_set_nowait, waits.h): whatever is in memory or on disk answers at
 * once, and whatever would have to wait answers -EWOULDBLOCK instead. The
 * request is then parked: run again, allowed to wait, on a pool of network
 * threads, which answers it. However many requests wait for the network,
 * one that needs none (.bbfs/stats, anything cached) is answered at once.
 *
 * The kernel may interrupt a parked request (its caller got a signal): it
 * is answered EINTR at once, from the thread that reads the interrupt; its
 * waits end and its requests to the API are abandoned within a second
 * (waits.h). Every answer goes through park_reply_*, which send exactly one
 * per request: a late one after EINTR is dropped (its result says so, so
 * that the caller undoes what the answer would have handed over).
 */
#ifndef BBFS_PARK_H
#define BBFS_PARK_H

#include <fuse_lowlevel.h>

struct park;
struct park_req;

/*
 * An operation on a request: answers r with a park_reply_* and returns 0,
 * or returns -errno for park to answer (-EWOULDBLOCK: it must wait, and is
 * parked). It runs at most twice, so that it must not answer before it
 * knows it will not answer -EWOULDBLOCK.
 */
typedef int (*park_fn)(struct park_req *r, void *args);

int park_new(struct park **out);
/*
 * Answers what is parked EINTR, ends its waits, and waits for the threads:
 * while the session can still take answers.
 */
void park_free(struct park *p);

/*
 * Runs fn(r, args) for req, at once in nowait mode, then parked when it must
 * wait. args (malloc'd by the caller) is given over: free_args frees it
 * after the last run.
 */
void park_run(struct park *p, fuse_req_t req, park_fn fn, void *args,
              void (*free_args)(void *args));

/* fuse_req_userdata of r's request. */
void *park_userdata(struct park_req *r);

/* Each answers r unless it was answered already: 0, else -errno (not sent). */
int park_reply_err(struct park_req *r, int err);
int park_reply_entry(struct park_req *r, const struct fuse_entry_param *e);
int park_reply_attr(struct park_req *r, const struct stat *attr, double timeout);
int park_reply_readlink(struct park_req *r, const char *link);
int park_reply_open(struct park_req *r, const struct fuse_file_info *fi);
int park_reply_buf(struct park_req *r, const char *buf, size_t size);
int park_reply_data(struct park_req *r, struct fuse_bufvec *bufv);
int park_reply_xattr(struct park_req *r, size_t count);

#endif

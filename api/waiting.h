/*
 * waiting.h - how long the calling thread may wait for the network
 * (internal to api/; set through api.h's api_set_nowait and api_set_cancel).
 *
 * Both settings are thread-local: a FUSE thread that must never wait sets
 * nowait, and a thread answering a request the kernel may interrupt sets a
 * cancel check, without any call of api.h growing a parameter for it.
 */
#ifndef BBFS_API_WAITING_H
#define BBFS_API_WAITING_H

/* Whether the calling thread's cancel check (api_set_cancel) says to give up now. */
int waiting_cancelled(void);

#endif

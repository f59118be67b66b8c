/*
 * responses.h - keeps the API's answers in the on-disk store, so that they
 * outlive the mount: the link between api/'s response cache hooks and
 * fs/store.
 */
#ifndef BBFS_RESPONSES_H
#define BBFS_RESPONSES_H

struct api_client;
struct store;

/* From now on the client loads and saves its answers through store (borrowed). */
void responses_attach(struct api_client *api, struct store *store);

#endif

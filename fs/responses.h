/*
 * responses.h - keeps the API's answers in the on-disk store, so that they
 * outlive the mount, and in the cache a fleet shares when there is one: the
 * link between api/'s response cache hooks, fs/store and fs/shared_cache.
 * An answer is looked for in the store, then in the shared cache (and kept
 * in the store when found there), else fetched; a fetched one goes to both.
 */
#ifndef BBFS_RESPONSES_H
#define BBFS_RESPONSES_H

struct api_client;
struct shared_cache;
struct store;

/* Where the answers go; both borrowed, shared may be NULL. */
struct responses {
    struct store *store;
    struct shared_cache *shared;
};

/* From now on the client loads and saves its answers through r (which must outlive it). */
void responses_attach(struct api_client *api, struct responses *r);

#endif

/*
 * inode.c - the inode table (see inode.h): a chained hash map from inode
 * number to path and kernel lookup count, under one mutex.
 */
#include "fs/inode.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* How many numbers after its hash a path may take when hashes collide. */
#define INODE_PROBES 16

struct inode {
    struct inode *next;
    uint64_t ino;
    uint64_t nlookup;
    char *path;
};

struct inode_table {
    pthread_mutex_t lock;
    struct inode **buckets;
    size_t nbuckets;
    size_t count;
};

static uint64_t hash_path(const char *path)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

struct inode_table *inode_table_new(void)
{
    struct inode_table *table = calloc(1, sizeof(*table));
    if (!table)
        return NULL;
    table->nbuckets = 1024;
    table->buckets = calloc(table->nbuckets, sizeof(*table->buckets));
    if (!table->buckets) {
        free(table);
        return NULL;
    }
    pthread_mutex_init(&table->lock, NULL);
    return table;
}

void inode_table_free(struct inode_table *table)
{
    if (!table)
        return;
    for (size_t i = 0; i < table->nbuckets; i++) {
        struct inode *n = table->buckets[i];
        while (n) {
            struct inode *next = n->next;
            free(n->path);
            free(n);
            n = next;
        }
    }
    free(table->buckets);
    pthread_mutex_destroy(&table->lock);
    free(table);
}

static struct inode *find_locked(struct inode_table *table, uint64_t ino)
{
    for (struct inode *n = table->buckets[ino & (table->nbuckets - 1)]; n; n = n->next)
        if (n->ino == ino)
            return n;
    return NULL;
}

static void grow_locked(struct inode_table *table)
{
    size_t nbuckets = table->nbuckets * 2;
    struct inode **buckets = calloc(nbuckets, sizeof(*buckets));
    if (!buckets)
        return;
    for (size_t i = 0; i < table->nbuckets; i++) {
        struct inode *n = table->buckets[i];
        while (n) {
            struct inode *next = n->next;
            n->next = buckets[n->ino & (nbuckets - 1)];
            buckets[n->ino & (nbuckets - 1)] = n;
            n = next;
        }
    }
    free(table->buckets);
    table->buckets = buckets;
    table->nbuckets = nbuckets;
}

/* Skips 0 (invalid) and 1 (the root) when a hash lands there. */
static uint64_t candidate(uint64_t hash, unsigned k)
{
    uint64_t ino = hash + k;
    return ino <= INODE_ROOT ? ino + 2 : ino;
}

uint64_t inode_ref(struct inode_table *table, const char *path)
{
    if (path[0] == '\0')
        return INODE_ROOT;

    uint64_t hash = hash_path(path), ino = 0;
    pthread_mutex_lock(&table->lock);
    /* A path keeps the number it has, even when an earlier probe slot was freed since. */
    for (unsigned k = 0; k < INODE_PROBES; k++) {
        struct inode *n = find_locked(table, candidate(hash, k));
        if (n && strcmp(n->path, path) == 0) {
            n->nlookup++;
            ino = n->ino;
            goto out;
        }
    }
    for (unsigned k = 0; k < INODE_PROBES && !ino; k++)
        if (!find_locked(table, candidate(hash, k)))
            ino = candidate(hash, k);
    if (!ino)
        goto out;

    struct inode *n = calloc(1, sizeof(*n));
    if (n)
        n->path = strdup(path);
    if (!n || !n->path) {
        free(n);
        ino = 0;
        goto out;
    }
    n->ino = ino;
    n->nlookup = 1;
    n->next = table->buckets[ino & (table->nbuckets - 1)];
    table->buckets[ino & (table->nbuckets - 1)] = n;
    if (++table->count > table->nbuckets)
        grow_locked(table);
out:
    pthread_mutex_unlock(&table->lock);
    return ino;
}

/* The number the kernel knows path by, or 0. */
static uint64_t find_path_locked(struct inode_table *table, const char *path, uint64_t hash)
{
    for (unsigned k = 0; k < INODE_PROBES; k++) {
        struct inode *n = find_locked(table, candidate(hash, k));
        if (n && strcmp(n->path, path) == 0)
            return n->ino;
    }
    return 0;
}

uint64_t inode_peek(struct inode_table *table, const char *path)
{
    if (path[0] == '\0')
        return INODE_ROOT;
    uint64_t hash = hash_path(path), ino;
    pthread_mutex_lock(&table->lock);
    ino = find_path_locked(table, path, hash);
    for (unsigned k = 0; k < INODE_PROBES && !ino; k++)
        if (!find_locked(table, candidate(hash, k)))
            ino = candidate(hash, k);
    pthread_mutex_unlock(&table->lock);
    return ino ? ino : candidate(hash, 0);
}

uint64_t inode_find(struct inode_table *table, const char *path)
{
    if (path[0] == '\0')
        return INODE_ROOT;
    pthread_mutex_lock(&table->lock);
    uint64_t ino = find_path_locked(table, path, hash_path(path));
    pthread_mutex_unlock(&table->lock);
    return ino;
}

void inode_forget(struct inode_table *table, uint64_t ino, uint64_t n)
{
    if (ino == INODE_ROOT)
        return;
    pthread_mutex_lock(&table->lock);
    struct inode **link = &table->buckets[ino & (table->nbuckets - 1)];
    while (*link && (*link)->ino != ino)
        link = &(*link)->next;
    struct inode *node = *link;
    if (node) {
        node->nlookup = node->nlookup > n ? node->nlookup - n : 0;
        if (node->nlookup == 0) {
            *link = node->next;
            free(node->path);
            free(node);
            table->count--;
        }
    }
    pthread_mutex_unlock(&table->lock);
}

char *inode_path(struct inode_table *table, uint64_t ino)
{
    if (ino == INODE_ROOT)
        return strdup("");
    char *path = NULL;
    pthread_mutex_lock(&table->lock);
    struct inode *n = find_locked(table, ino);
    if (n)
        path = strdup(n->path);
    pthread_mutex_unlock(&table->lock);
    return path;
}

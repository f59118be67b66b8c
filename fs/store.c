/*
 * store.c - the on-disk content cache (see store.h).
 */
#include "fs/store.h"

#include "api/api.h"
#include "api/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

struct store {
    char *root;
    char *objects; /* ROOT/objects */
    uint64_t limit;
    /*
     * Guards total and counted, and makes "measure, rename, count" of a commit
     * and "check, unlink, uncount" of an eviction atomic, so that neither a
     * replaced entry nor one evicted while it is replaced is counted wrong.
     */
    pthread_mutex_t lock;
    uint64_t total;           /* bytes of the entries under objects/, once counted */
    int counted;              /* whether total has been measured yet */
    pthread_mutex_t evicting; /* held by the one thread evicting */
};

/* An entry's name under objects/: "XX/" and the other 62 hex digits of its hash. */
#define ENTRY_NAME_LEN (3 + 62)

/* mkdir -p with mode 0700 for every directory it creates. */
static int make_dirs(const char *path)
{
    char *copy = strdup(path);
    int rc = 0;
    if (!copy)
        return -ENOMEM;
    for (char *p = copy + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    free(copy);
    return rc;
}

static void remove_leftovers(const char *tmpdir)
{
    DIR *dir = opendir(tmpdir);
    struct dirent *de;
    if (!dir)
        return;
    while ((de = readdir(dir)) != NULL)
        if (de->d_name[0] != '.')
            unlinkat(dirfd(dir), de->d_name, 0);
    closedir(dir);
}

int store_open(const char *root, uint64_t limit_bytes, struct store **out, char *err, size_t errlen)
{
    struct store *store = calloc(1, sizeof(*store));
    char *tmpdir = NULL;
    int rc;

    if (!store)
        return -ENOMEM;
    pthread_mutex_init(&store->lock, NULL);
    pthread_mutex_init(&store->evicting, NULL);
    store->limit = limit_bytes;
    if (asprintf(&tmpdir, "%s/tmp", root) < 0)
        tmpdir = NULL;
    if (asprintf(&store->objects, "%s/objects", root) < 0)
        store->objects = NULL;
    if (!(store->root = strdup(root)) || !tmpdir || !store->objects) {
        rc = -ENOMEM;
        goto out;
    }
    rc = make_dirs(tmpdir);
    if (rc) {
        snprintf(err, errlen, "cannot create cache directory '%s': %s", root, strerror(-rc));
        goto out;
    }
    /* An existing cache keeps whatever mode its owner gave it, but ours is private. */
    if (chmod(root, 0700) != 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot make cache directory '%s' private: %s", root,
                 strerror(errno));
        goto out;
    }
    remove_leftovers(tmpdir);
out:
    free(tmpdir);
    if (rc) {
        store_close(store);
        return rc;
    }
    *out = store;
    return 0;
}

void store_close(struct store *store)
{
    if (!store)
        return;
    pthread_mutex_destroy(&store->lock);
    pthread_mutex_destroy(&store->evicting);
    free(store->root);
    free(store->objects);
    free(store);
}

static char *entry_path(const struct store *store, const char *key)
{
    char hex[65];
    char *path;
    api_sha256_hex(key, strlen(key), hex);
    if (asprintf(&path, "%s/objects/%.2s/%s", store->root, hex, hex + 2) < 0)
        return NULL;
    return path;
}

/*
 * The mtime is the entry's last use, on disk so that eviction order survives
 * remounts. A second's precision is plenty for that, and saves a write per
 * read of a hot entry. Failing to mark it only makes its eviction earlier.
 */
static void mark_used(int fd, const struct stat *st)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t age_ns = (int64_t)(now.tv_sec - st->st_mtim.tv_sec) * 1000000000 +
                     (now.tv_nsec - st->st_mtim.tv_nsec);
    if (age_ns >= 1000000000)
        futimens(fd, NULL);
}

int store_lookup(struct store *store, const char *key, int *fd, uint64_t *size)
{
    struct stat st;
    char *path = entry_path(store, key);
    int rc = 0;

    if (!path)
        return -ENOMEM;
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (*fd < 0) {
        rc = errno == ENOENT ? -ENOENT : -errno;
        goto out;
    }
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        log_warn("cache entry %s is not a regular file; fetching it again", path);
        close(*fd);
        *fd = -1;
        unlink(path);
        rc = -ENOENT;
        goto out;
    }
    *size = (uint64_t)st.st_size;
    mark_used(*fd, &st);
out:
    free(path);
    return rc;
}

int store_begin(struct store *store, struct store_writer *w)
{
    w->fd = -1;
    if (asprintf(&w->tmp_path, "%s/tmp/entry-XXXXXX", store->root) < 0) {
        w->tmp_path = NULL;
        return -ENOMEM;
    }
    w->fd = mkostemp(w->tmp_path, O_CLOEXEC);
    if (w->fd < 0) {
        int rc = -errno;
        free(w->tmp_path);
        w->tmp_path = NULL;
        return rc;
    }
    return 0;
}

/* ---- size accounting and eviction ---------------------------------------- */

struct entry {
    char name[ENTRY_NAME_LEN + 1];
    uint64_t size;
    struct timespec mtime;
};

struct entry_list {
    struct entry *v;
    size_t n, cap;
};

static int entry_list_add(struct entry_list *list, const char *dir, const char *name,
                          const struct stat *st)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? 2 * list->cap : 256;
        struct entry *v = realloc(list->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        list->v = v;
        list->cap = cap;
    }
    struct entry *e = &list->v[list->n++];
    snprintf(e->name, sizeof(e->name), "%.2s/%.62s", dir, name);
    e->size = (uint64_t)st->st_size;
    e->mtime = st->st_mtim;
    return 0;
}

/*
 * Adds the sizes of the entries under objects/ (open as objects_fd) to *total
 * and appends the entries to *list, each when not NULL. Anything not named
 * like an entry is not one and is left alone.
 */
static int scan_entries(int objects_fd, uint64_t *total, struct entry_list *list)
{
    int top_fd = dup(objects_fd); /* closedir closes it; objects_fd is the caller's */
    DIR *top = top_fd >= 0 ? fdopendir(top_fd) : NULL;
    struct dirent *de;
    int rc = 0;

    if (!top) {
        rc = -errno;
        if (top_fd >= 0)
            close(top_fd);
        return rc;
    }
    while (rc == 0 && (de = readdir(top)) != NULL) {
        if (strlen(de->d_name) != 2 || de->d_name[0] == '.')
            continue;
        int fd = openat(objects_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *sub = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *ent;
        if (!sub) {
            if (fd >= 0)
                close(fd);
            continue; /* not a directory: not ours */
        }
        while (rc == 0 && (ent = readdir(sub)) != NULL) {
            struct stat st;
            if (strlen(ent->d_name) != ENTRY_NAME_LEN - 3 ||
                fstatat(dirfd(sub), ent->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                !S_ISREG(st.st_mode))
                continue;
            if (total)
                *total += (uint64_t)st.st_size;
            if (list)
                rc = entry_list_add(list, de->d_name, ent->d_name, &st);
        }
        closedir(sub);
    }
    closedir(top);
    return rc;
}

static int open_objects(const struct store *store)
{
    int fd = open(store->objects, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

/*
 * The total is measured at the first commit rather than at open: mounting
 * stays fast however big the store is, and a mount that only reads what is
 * stored never pays for the scan. Called with store->lock held, so commits
 * wait for the count rather than add to a total that is not there yet.
 */
static void count_locked(struct store *store)
{
    uint64_t total = 0;
    int fd = open_objects(store);
    int rc = fd < 0 ? fd : scan_entries(fd, &total, NULL);

    if (fd >= 0)
        close(fd);
    if (rc) {
        /* Not counted: the next commit tries again, and nothing is evicted meanwhile. */
        log_once(LOG_LEVEL_WARN, "store:count", "cannot measure the cache: %s", strerror(-rc));
        return;
    }
    store->total = total;
    store->counted = 1;
}

/* A total short of the truth (entries added behind bbfs's back) must not wrap around. */
static void uncount_locked(struct store *store, uint64_t bytes)
{
    store->total -= bytes < store->total ? bytes : store->total;
}

static int by_mtime(const void *a, const void *b)
{
    const struct timespec *x = &((const struct entry *)a)->mtime;
    const struct timespec *y = &((const struct entry *)b)->mtime;
    if (x->tv_sec != y->tv_sec)
        return x->tv_sec < y->tv_sec ? -1 : 1;
    return (x->tv_nsec > y->tv_nsec) - (x->tv_nsec < y->tv_nsec);
}

/*
 * Unlinks the least recently used entries until the total is at most 90% of
 * the limit (so that commits near the limit do not each pay for a scan),
 * sparing keep, the entry just committed: its caller opens it next. One thread
 * evicts at a time; the others go on, as the total it works down includes
 * what they add.
 */
static void evict(struct store *store, const char *keep)
{
    uint64_t target = store->limit - store->limit / 10, freed = 0;
    struct entry_list list = {0};
    size_t evicted = 0;
    int fd = -1, rc;

    if (pthread_mutex_trylock(&store->evicting) != 0)
        return;
    fd = open_objects(store);
    rc = fd < 0 ? fd : scan_entries(fd, NULL, &list);
    if (rc)
        goto out;
    if (list.n > 1)
        qsort(list.v, list.n, sizeof(*list.v), by_mtime);
    for (size_t i = 0; i < list.n; i++) {
        const struct entry *e = &list.v[i];
        struct stat st;
        int done;

        if (strcmp(e->name, keep) == 0)
            continue;
        pthread_mutex_lock(&store->lock);
        done = store->total <= target;
        /* Used or replaced since the scan, it is no longer among the least recently used. */
        if (!done && fstatat(fd, e->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            (uint64_t)st.st_size == e->size && st.st_mtim.tv_sec == e->mtime.tv_sec &&
            st.st_mtim.tv_nsec == e->mtime.tv_nsec && unlinkat(fd, e->name, 0) == 0) {
            uncount_locked(store, e->size);
            freed += e->size;
            evicted++;
        }
        pthread_mutex_unlock(&store->lock);
        if (done)
            break;
    }
    if (evicted)
        log_debug("cache: evicted %zu entries (%llu bytes) to stay under cache_size", evicted,
                  (unsigned long long)freed);
out:
    if (rc)
        log_once(LOG_LEVEL_WARN, "store:evict", "cannot evict from the cache: %s", strerror(-rc));
    free(list.v);
    if (fd >= 0)
        close(fd);
    pthread_mutex_unlock(&store->evicting);
}

/* Bytes the store's file system has available now; UINT64_MAX when it cannot tell. */
static uint64_t available(const struct store *store)
{
    struct statvfs st;

    if (statvfs(store->objects, &st) != 0)
        return UINT64_MAX;
    return (uint64_t)st.f_bavail * st.f_frsize;
}

int store_make_room(struct store *store, uint64_t bytes)
{
    struct entry_list list = {0};
    size_t evicted = 0;
    uint64_t freed = 0;
    int fd, rc;

    pthread_mutex_lock(&store->evicting);
    fd = open_objects(store);
    rc = fd < 0 ? fd : scan_entries(fd, NULL, &list);
    if (rc == 0 && list.n > 1)
        qsort(list.v, list.n, sizeof(*list.v), by_mtime);
    for (size_t i = 0; rc == 0 && i < list.n && available(store) < bytes; i++) {
        pthread_mutex_lock(&store->lock);
        if (unlinkat(fd, list.v[i].name, 0) == 0) {
            uncount_locked(store, list.v[i].size);
            freed += list.v[i].size;
            evicted++;
        }
        pthread_mutex_unlock(&store->lock);
    }
    if (evicted)
        log_debug("cache: evicted %zu entries (%llu bytes) to make room on a full disk", evicted,
                  (unsigned long long)freed);
    free(list.v);
    if (fd >= 0)
        close(fd);
    pthread_mutex_unlock(&store->evicting);
    return evicted ? 0 : -ENOSPC;
}

int store_is_fault(int err)
{
    return err == ENOSPC || err == EDQUOT || err == EACCES || err == EPERM || err == EROFS;
}

void store_cannot_keep(struct store *store, int err)
{
    char key[64];

    snprintf(key, sizeof(key), "store:cannot-keep:%d", err);
    log_once(LOG_LEVEL_WARN, key,
             "cannot keep downloads in the cache at %s: %s; serving them without keeping them",
             store->root, strerror(err));
}

int store_commit(struct store *store, struct store_writer *w, const char *key)
{
    char *path = entry_path(store, key);
    struct stat st, old;
    int rc = 0, over = 0;

    if (!path) {
        rc = -ENOMEM;
        goto out;
    }
    if (fstat(w->fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    char *slash = strrchr(path, '/');
    *slash = '\0';
    rc = make_dirs(path);
    *slash = '/';
    if (rc)
        goto out;
    pthread_mutex_lock(&store->lock);
    if (!store->counted)
        count_locked(store);
    /* A replaced entry's bytes leave the store with it. */
    int replaced = lstat(path, &old) == 0 && S_ISREG(old.st_mode);
    if (rename(w->tmp_path, path) != 0) {
        rc = -errno;
    } else if (store->counted) {
        store->total += (uint64_t)st.st_size;
        if (replaced)
            uncount_locked(store, (uint64_t)old.st_size);
        over = store->total > store->limit;
    }
    pthread_mutex_unlock(&store->lock);
    if (rc)
        goto out;
    free(w->tmp_path); /* renamed: nothing left to remove */
    w->tmp_path = NULL;
    if (over)
        evict(store, path + strlen(path) - ENTRY_NAME_LEN);
out:
    if (rc && store_is_fault(-rc))
        store_cannot_keep(store, -rc);
    else if (rc && path)
        log_once(LOG_LEVEL_ERR, "store:commit", "cannot write the cache entry %s: %s", path,
                 strerror(-rc));
    free(path);
    store_abort(w);
    return rc;
}

void store_abort(struct store_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp_path) {
        unlink(w->tmp_path);
        free(w->tmp_path);
    }
    w->fd = -1;
    w->tmp_path = NULL;
}

/* Entries read whole are API answers; anything bigger than this is not one of ours. */
#define STORE_MAX_BYTES (64u << 20)

int store_read_all(int fd, uint64_t size, uint64_t max, char **data, size_t *len)
{
    int rc = 0;
    *data = size <= max ? malloc(size + 1) : NULL;
    if (!*data) {
        rc = size <= max ? -ENOMEM : -EFBIG;
    } else if (pread(fd, *data, size, 0) != (ssize_t)size) {
        free(*data);
        *data = NULL;
        rc = -EIO;
    } else {
        (*data)[size] = '\0';
        *len = size;
    }
    close(fd);
    return rc;
}

int store_get_bytes(struct store *store, const char *key, char **data, size_t *len)
{
    uint64_t size;
    int fd, rc = store_lookup(store, key, &fd, &size);
    return rc ? rc : store_read_all(fd, size, STORE_MAX_BYTES, data, len);
}

int store_put_bytes(struct store *store, const char *key, const void *data, size_t len)
{
    struct store_writer w;
    int rc = store_begin(store, &w);
    if (rc) {
        if (store_is_fault(-rc))
            store_cannot_keep(store, -rc);
        return rc;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(w.fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            if (store_is_fault(-rc))
                store_cannot_keep(store, -rc);
            store_abort(&w);
            return rc;
        }
        p += n;
        left -= (size_t)n;
    }
    return store_commit(store, &w, key);
}

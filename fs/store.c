/*
 * store.c - the on-disk content cache (see store.h).
 */
#include "fs/store.h"

#include "api/api.h"
#include "api/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct store {
    char *root;
};

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

int store_open(const char *root, struct store **out, char *err, size_t errlen)
{
    struct store *store = calloc(1, sizeof(*store));
    char *tmpdir = NULL;
    int rc;

    if (!store || !(store->root = strdup(root)) || asprintf(&tmpdir, "%s/tmp", root) < 0) {
        tmpdir = NULL;
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
    free(store->root);
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
        log_once(LOG_LEVEL_ERR, "store:tmp", "cannot create a file in the cache: %s",
                 strerror(errno));
        free(w->tmp_path);
        w->tmp_path = NULL;
        return rc;
    }
    return 0;
}

int store_commit(struct store *store, struct store_writer *w, const char *key)
{
    char *path = entry_path(store, key);
    int rc = 0;

    if (!path) {
        rc = -ENOMEM;
        goto out;
    }
    char *slash = strrchr(path, '/');
    *slash = '\0';
    rc = make_dirs(path);
    *slash = '/';
    if (rc == 0 && rename(w->tmp_path, path) != 0)
        rc = -errno;
    if (rc == 0) {
        free(w->tmp_path); /* renamed: nothing left to remove */
        w->tmp_path = NULL;
    }
    if (rc)
        log_once(LOG_LEVEL_ERR, "store:commit", "cannot write the cache entry %s: %s", path,
                 strerror(-rc));
out:
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

int store_get_bytes(struct store *store, const char *key, char **data, size_t *len)
{
    uint64_t size;
    int fd, rc = store_lookup(store, key, &fd, &size);
    if (rc)
        return rc;
    *data = size <= STORE_MAX_BYTES ? malloc(size + 1) : NULL;
    if (!*data) {
        rc = size <= STORE_MAX_BYTES ? -ENOMEM : -EFBIG;
        goto out;
    }
    if (pread(fd, *data, size, 0) != (ssize_t)size) {
        free(*data);
        *data = NULL;
        rc = -EIO;
        goto out;
    }
    (*data)[size] = '\0';
    *len = size;
out:
    close(fd);
    return rc;
}

int store_put_bytes(struct store *store, const char *key, const void *data, size_t len)
{
    struct store_writer w;
    int rc = store_begin(store, &w);
    if (rc)
        return rc;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(w.fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = -EIO;
            store_abort(&w);
            return rc;
        }
        p += n;
        left -= (size_t)n;
    }
    return store_commit(store, &w, key);
}

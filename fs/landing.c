/*
 * landing.c - where a download's bytes land, also when the store cannot
 * take them (see landing.h).
 */
#include "fs/landing.h"

#include "api/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_at(int fd, const char *p, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

/* The first len bytes of from into to. */
static int copy_prefix(int from, int to, uint64_t len)
{
    loff_t in = 0, out = 0;
    char buf[65536];

    while ((uint64_t)in < len) {
        ssize_t n = copy_file_range(from, &in, to, &out, (size_t)(len - (uint64_t)in), 0);
        if (n > 0)
            continue;
        if (n == 0)
            return -EIO;
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
            return -errno;
        /* not between these file systems: by hand */
        n = pread(from, buf, sizeof(buf), in);
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        int rc = write_at(to, buf, (size_t)n, (uint64_t)out);
        if (rc)
            return rc;
        in += n;
        out += n;
    }
    return 0;
}

/* An unlinked file outside the store. */
static int open_elsewhere(void)
{
    const char *tmpdir = getenv("TMPDIR");
    const char *dirs[] = {tmpdir && tmpdir[0] == '/' ? tmpdir : "/var/tmp", "/var/tmp", "/tmp"};
    int rc = -ENOENT;

    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        int fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
            return fd;
        rc = -errno;
        char path[4096];
        snprintf(path, sizeof(path), "%s/bbfs-XXXXXX", dirs[i]);
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0) {
            unlink(path);
            return fd;
        }
    }
    return rc;
}

/* The bytes so far, and those to come, go to a file outside the store. */
static int land_elsewhere(struct landing *l, int cause)
{
    int fd = open_elsewhere(), rc;

    store_cannot_keep(l->store, cause);
    rc = fd < 0 ? fd : l->fd >= 0 ? copy_prefix(l->fd, fd, l->written) : 0;
    if (rc) {
        if (fd >= 0)
            close(fd);
        log_once(LOG_LEVEL_ERR, "landing:elsewhere",
                 "cannot hold a download outside the cache either: %s", strerror(-rc));
        return -EIO;
    }
    if (l->fd >= 0)
        close(l->fd);
    l->fd = fd;
    if (l->kept)
        store_abort(&l->w);
    l->kept = 0;
    return 0;
}

/* Room for what is still to come, once per download. */
static int make_room(struct landing *l, size_t len)
{
    if (l->made_room)
        return -ENOSPC;
    l->made_room = 1;
    return store_make_room(l->store, l->size_hint > l->written ? l->size_hint - l->written : len);
}

static int is_full(int rc)
{
    return rc == -ENOSPC || rc == -EDQUOT;
}

int landing_begin(struct landing *l, struct store *store, const char *key, uint64_t size_hint,
                  int *complete)
{
    uint64_t size;
    int rc;

    memset(l, 0, sizeof(*l));
    l->store = store;
    l->size_hint = size_hint;
    l->fd = -1;
    l->w.fd = -1;
    *complete = store_lookup(store, key, &l->fd, &size) == 0;
    if (*complete) {
        l->written = size;
        return 0;
    }
    rc = store_begin(store, &l->w);
    if (is_full(rc) && make_room(l, 0) == 0)
        rc = store_begin(store, &l->w);
    if (rc == 0) {
        l->kept = 1;
        l->fd = dup(l->w.fd); /* store_commit closes the writer's */
        return l->fd < 0 ? -errno : 0;
    }
    return store_is_fault(-rc) ? land_elsewhere(l, -rc) : rc;
}

int landing_write(struct landing *l, const void *data, size_t len, int *moved)
{
    int rc = write_at(l->fd, data, len, l->written);

    *moved = 0;
    if (rc && l->kept && store_is_fault(-rc)) {
        if (is_full(rc) && make_room(l, len) == 0)
            rc = write_at(l->fd, data, len, l->written);
        if (rc && store_is_fault(-rc)) {
            rc = land_elsewhere(l, -rc);
            *moved = rc == 0;
            if (rc == 0)
                rc = write_at(l->fd, data, len, l->written);
        }
    }
    if (rc == 0)
        l->written += len;
    return rc;
}

int landing_finish(struct landing *l, const char *key)
{
    struct stat st;

    if (fstat(l->fd, &st) != 0)
        return -errno;
    if ((uint64_t)st.st_size != l->written) {
        log_warn("a download came out with %lld bytes on disk instead of %llu: not kept",
                 (long long)st.st_size, (unsigned long long)l->written);
        return -EIO;
    }
    if (l->kept && store_commit(l->store, &l->w, key) != 0)
        l->kept = 0; /* store_commit said why; what was read is right all the same */
    return 0;
}

void landing_release(struct landing *l)
{
    if (l->w.tmp_path || l->w.fd >= 0)
        store_abort(&l->w);
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}

/*
 * ops.c - FUSE low-level operations on top of the tree (see ops.h).
 *
 * Every request turns its inode number back into a path through the inode
 * table, asks the tree, and replies. Directory listings are taken whole at
 * opendir so that readdir offsets stay consistent while the listing is read;
 * small files are materialised at open for the same reason. Every modifying
 * operation answers EROFS.
 */
#include "fs/ops.h"

#include "fs/inode.h"
#include "fs/tree.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* Hash-addressed data never changes: let the kernel keep it for a day. */
#define IMMUTABLE_TIMEOUT 86400.0

/* What an open file or directory starts with: its place in the context's list. */
struct ops_handle {
    struct ops_handle *prev, *next;
    int is_dir;
};

struct open_dir {
    struct ops_handle handle; /* first: a handle is its open_dir */
    char *path;
    struct tree_dir dir;
};

/*
 * Counted, because the kernel may send RELEASE as soon as it has taken the
 * bytes of the last READ reply, while the replying thread is still inside
 * fuse_reply_buf (and a sanitizer still reading the buffer it wrote).
 */
struct open_file {
    struct ops_handle handle; /* first: a handle is its open_file */
    atomic_uint refs;
    struct tree_file file;
};

/* Listed before the open is answered: a RELEASE may follow the answer at once. */
static void handle_add(struct ops_context *ctx, struct ops_handle *h, int is_dir)
{
    h->is_dir = is_dir;
    pthread_mutex_lock(&ctx->handles_lock);
    h->prev = NULL;
    h->next = ctx->handles;
    if (h->next)
        h->next->prev = h;
    ctx->handles = h;
    pthread_mutex_unlock(&ctx->handles_lock);
}

static void handle_remove(struct ops_context *ctx, struct ops_handle *h)
{
    pthread_mutex_lock(&ctx->handles_lock);
    if (h->prev)
        h->prev->next = h->next;
    else
        ctx->handles = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&ctx->handles_lock);
}

static void open_dir_free(struct open_dir *od)
{
    tree_dir_release(&od->dir);
    free(od->path);
    free(od);
}

static void open_file_put(struct open_file *of)
{
    if (atomic_fetch_sub(&of->refs, 1) != 1)
        return;
    tree_file_release(&of->file);
    free(of);
}

void ops_context_init(struct ops_context *ctx)
{
    pthread_mutex_init(&ctx->handles_lock, NULL);
    ctx->handles = NULL;
}

void ops_context_release(struct ops_context *ctx)
{
    while (ctx->handles) {
        struct ops_handle *h = ctx->handles;
        ctx->handles = h->next;
        if (h->is_dir)
            open_dir_free((struct open_dir *)h);
        else
            open_file_put((struct open_file *)h); /* no read runs once the loop is over */
    }
    pthread_mutex_destroy(&ctx->handles_lock);
}

static struct ops_context *ctx_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static char *child_path(const char *parent, const char *name)
{
    char *path;
    if (asprintf(&path, "%s%s%s", parent, *parent ? "/" : "", name) < 0)
        return NULL;
    return path;
}

static void fill_stat(const struct tree_stat *ts, uint64_t ino, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    st->st_mode = ts->mode;
    st->st_nlink = S_ISDIR(ts->mode) ? 2 : 1;
    st->st_size = ts->size;
    st->st_blksize = 4096;
    st->st_blocks = (ts->size + 511) / 512;
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_mtim.tv_sec = ts->mtime;
    st->st_ctim.tv_sec = ts->mtime;
    st->st_atim.tv_sec = ts->mtime;
}

static double timeout_for(const struct ops_context *ctx, const struct tree_stat *ts)
{
    return ts->immutable ? IMMUTABLE_TIMEOUT : ctx->ttl;
}

/* A live file's size changes between two looks: the kernel may not keep it. */
static double attr_timeout_for(const struct ops_context *ctx, const struct tree_stat *ts)
{
    return ts->live ? 0.0 : timeout_for(ctx, ts);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct ops_context *ctx = ctx_of(req);
    struct fuse_entry_param e;
    struct tree_stat ts;
    char *dir = inode_path(ctx->inodes, parent);
    char *path = dir ? child_path(dir, name) : NULL;
    int rc;

    memset(&e, 0, sizeof(e));
    if (!dir) {
        rc = -ESTALE;
        goto out;
    }
    if (!path) {
        rc = -ENOMEM;
        goto out;
    }
    rc = tree_stat(ctx->tree, path, &ts);
    if (rc == -ENOENT) {
        /* A negative entry: the kernel answers repeats (.git probes) itself. */
        struct tree_stat parent_st;
        e.entry_timeout =
            tree_stat(ctx->tree, dir, &parent_st) == 0 ? timeout_for(ctx, &parent_st) : ctx->ttl;
        fuse_reply_entry(req, &e);
        rc = 0;
        goto out;
    }
    if (rc)
        goto out;
    e.ino = inode_ref(ctx->inodes, path);
    if (e.ino == 0) {
        rc = -ENOMEM;
        goto out;
    }
    e.entry_timeout = timeout_for(ctx, &ts);
    e.attr_timeout = attr_timeout_for(ctx, &ts);
    fill_stat(&ts, e.ino, &e.attr);
    if (fuse_reply_entry(req, &e) != 0)
        inode_forget(ctx->inodes, e.ino, 1);
out:
    if (rc)
        fuse_reply_err(req, -rc);
    free(path);
    free(dir);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    inode_forget(ctx_of(req)->inodes, ino, nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    struct ops_context *ctx = ctx_of(req);
    for (size_t i = 0; i < count; i++)
        inode_forget(ctx->inodes, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct ops_context *ctx = ctx_of(req);
    struct tree_stat ts;
    struct stat st;
    char *path = inode_path(ctx->inodes, ino);
    int rc;

    (void)fi;
    if (!path) {
        rc = -ESTALE;
        goto out;
    }
    rc = tree_stat(ctx->tree, path, &ts);
    if (rc)
        goto out;
    fill_stat(&ts, ino, &st);
    fuse_reply_attr(req, &st, attr_timeout_for(ctx, &ts));
out:
    if (rc)
        fuse_reply_err(req, -rc);
    free(path);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct ops_context *ctx = ctx_of(req);
    char *target = NULL;
    char *path = inode_path(ctx->inodes, ino);
    int rc = path ? tree_readlink(ctx->tree, path, &target) : -ESTALE;

    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_readlink(req, target);
    free(target);
    free(path);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct ops_context *ctx = ctx_of(req);
    struct open_dir *od = calloc(1, sizeof(*od));
    int rc;

    if (!od) {
        rc = -ENOMEM;
        goto out;
    }
    od->path = inode_path(ctx->inodes, ino);
    if (!od->path) {
        rc = -ESTALE;
        goto out;
    }
    rc = tree_list(ctx->tree, od->path, &od->dir);
    if (rc)
        goto out;
    /* A directory addressed by a commit hash never changes: the kernel may keep its listing. */
    fi->cache_readdir = fi->keep_cache = od->dir.immutable;
    fi->fh = (uint64_t)(uintptr_t)od;
    handle_add(ctx, &od->handle, 1);
    if (fuse_reply_open(req, fi) == 0)
        od = NULL;
    else
        handle_remove(ctx, &od->handle);
out:
    if (rc)
        fuse_reply_err(req, -rc);
    if (od)
        open_dir_free(od);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    struct ops_context *ctx = ctx_of(req);
    const struct open_dir *od = (const struct open_dir *)(uintptr_t)fi->fh;
    char *buf = malloc(size);
    size_t used = 0;

    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* Offsets 0 and 1 are "." and ".."; entry i has offset i + 3. */
    for (off_t i = off; i < (off_t)od->dir.count + 2; i++) {
        struct stat st;
        const char *name;
        memset(&st, 0, sizeof(st));
        if (i < 2) {
            name = i == 0 ? "." : "..";
            st.st_mode = S_IFDIR;
            st.st_ino = ino;
        } else {
            const struct tree_dirent *de = &od->dir.entries[i - 2];
            char *path = child_path(od->path, de->name);
            name = de->name;
            st.st_mode = de->st.mode;
            /* readdir skips entries with inode 0, so give the number lookup will. */
            st.st_ino = path ? inode_peek(ctx->inodes, path) : INODE_ROOT;
            free(path);
        }
        size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, i + 1);
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct open_dir *od = (struct open_dir *)(uintptr_t)fi->fh;
    (void)ino;
    handle_remove(ctx_of(req), &od->handle);
    open_dir_free(od);
    fuse_reply_err(req, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct ops_context *ctx = ctx_of(req);
    struct open_file *of = NULL;
    char *path = inode_path(ctx->inodes, ino);
    int rc;

    if (!path) {
        rc = -ESTALE;
        goto out;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        rc = -EROFS;
        goto out;
    }
    of = calloc(1, sizeof(*of));
    if (!of) {
        rc = -ENOMEM;
        goto out;
    }
    atomic_init(&of->refs, 1);
    of->file.fd = -1;
    rc = tree_open(ctx->tree, path, &of->file);
    if (rc)
        goto out;
    fi->fh = (uint64_t)(uintptr_t)of;
    fi->keep_cache = of->file.st.immutable;
    /* Reads of a live file go to its content at open, not to a stale page cache or size. */
    fi->direct_io = of->file.st.live;
    handle_add(ctx, &of->handle, 0);
    if (fuse_reply_open(req, fi) == 0)
        of = NULL;
    else
        handle_remove(ctx, &of->handle);
out:
    if (rc)
        fuse_reply_err(req, -rc);
    if (of)
        open_file_put(of);
    free(path);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;
    const struct tree_file *file = &of->file;
    (void)ino;
    atomic_fetch_add(&of->refs, 1);
    if (file->fd >= 0) {
        /* Straight from the cache file: libfuse splices or preads it. */
        struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
        buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
        buf.buf[0].fd = file->fd;
        buf.buf[0].pos = off;
        fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
    } else if (off < 0 || (size_t)off >= file->len) {
        fuse_reply_buf(req, NULL, 0);
    } else {
        size_t n = file->len - (size_t)off;
        fuse_reply_buf(req, file->data + off, n < size ? n : size);
    }
    open_file_put(of);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;
    (void)ino;
    handle_remove(ctx_of(req), &of->handle);
    open_file_put(of);
    fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs st;
    (void)ino;
    memset(&st, 0, sizeof(st));
    st.f_bsize = 4096;
    st.f_frsize = 4096;
    st.f_namemax = 255;
    st.f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV;
    fuse_reply_statfs(req, &st);
}

/* ---- everything that would modify answers EROFS ------------------------ */

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    (void)ino, (void)attr, (void)to_set, (void)fi;
    fuse_reply_err(req, EROFS);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    (void)parent, (void)name, (void)mode, (void)rdev;
    fuse_reply_err(req, EROFS);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    (void)parent, (void)name, (void)mode;
    fuse_reply_err(req, EROFS);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    (void)parent, (void)name;
    fuse_reply_err(req, EROFS);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    (void)link, (void)parent, (void)name;
    fuse_reply_err(req, EROFS);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    (void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
    fuse_reply_err(req, EROFS);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    (void)ino, (void)newparent, (void)newname;
    fuse_reply_err(req, EROFS);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)ino, (void)buf, (void)size, (void)off, (void)fi;
    fuse_reply_err(req, EROFS);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    (void)parent, (void)name, (void)mode, (void)fi;
    fuse_reply_err(req, EROFS);
}

/* Replies to a (list|get)xattr request for value as the size protocol of xattr(7) asks. */
static void reply_xattr_value(fuse_req_t req, size_t size, const char *value, size_t len)
{
    if (size == 0)
        fuse_reply_xattr(req, len);
    else if (size < len)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, value, len);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct ops_context *ctx = ctx_of(req);
    char *path = NULL, *value = NULL;
    size_t len = 0;
    int rc;

    /* ls -l asks every file for its ACLs and security label: answered before any look-up. */
    if (!tree_xattr_known(name)) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    path = inode_path(ctx->inodes, ino);
    rc = path ? tree_getxattr(ctx->tree, path, name, &value, &len) : -ESTALE;

    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_xattr_value(req, size, value, len);
    free(value);
    free(path);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct ops_context *ctx = ctx_of(req);
    char *path = inode_path(ctx->inodes, ino), *names = NULL;
    size_t len = 0;
    int rc = path ? tree_listxattr(ctx->tree, path, &names, &len) : -ESTALE;

    if (rc)
        fuse_reply_err(req, -rc);
    else
        reply_xattr_value(req, size, names, len);
    free(names);
    free(path);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    (void)ino, (void)name, (void)value, (void)size, (void)flags;
    fuse_reply_err(req, EROFS);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    (void)ino, (void)name;
    fuse_reply_err(req, EROFS);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi)
{
    (void)ino, (void)mode, (void)offset, (void)length, (void)fi;
    fuse_reply_err(req, EROFS);
}

static const struct fuse_lowlevel_ops ops = {
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .statfs = op_statfs,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .write = op_write,
    .create = op_create,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .setxattr = op_setxattr,
    .removexattr = op_removexattr,
    .fallocate = op_fallocate,
};

const struct fuse_lowlevel_ops *ops_table(void)
{
    return &ops;
}

/*
 * ops.c - FUSE low-level operations on top of the tree (see ops.h).
 *
 * Every request turns its inode number back into a path through the inode
 * table, asks the tree, and replies. An operation that may need the network
 * runs through park.h: first on the FUSE thread without waiting, then, when
 * it must wait, on a network thread, its arguments copied (do_* with *_args).
 * Directory listings are taken whole at opendir so that readdir offsets stay
 * consistent while the listing is read; small files are materialised at
 * open for the same reason; a file's content is read as it arrives. Every
 * modifying operation answers EROFS (readonly.c).
 */
#include "fs/ops.h"

#include "fs/inode.h"
#include "fs/park.h"
#include "fs/readonly.h"
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

int ops_context_init(struct ops_context *ctx)
{
    pthread_mutex_init(&ctx->handles_lock, NULL);
    ctx->handles = NULL;
    return park_new(&ctx->park);
}

void ops_context_stop(struct ops_context *ctx)
{
    park_free(ctx->park);
    ctx->park = NULL;
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

/* ---- arguments kept for a parked request --------------------------------- */

/* An inode, a size, and an open's flags and results (getattr, readlink, opendir, open, listxattr).
 */
struct ino_args {
    fuse_ino_t ino;
    size_t size;
    struct fuse_file_info fi;
};

/* An inode and a name (lookup: the parent; getxattr: the attribute). */
struct name_args {
    fuse_ino_t ino;
    size_t size;
    char name[];
};

struct read_args {
    struct open_file *of; /* counted */
    size_t size;
    off_t off;
};

static void run_ino(fuse_req_t req, fuse_ino_t ino, size_t size, const struct fuse_file_info *fi,
                    park_fn fn)
{
    struct ino_args *a = calloc(1, sizeof(*a));
    if (!a) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    a->ino = ino;
    a->size = size;
    if (fi)
        a->fi = *fi;
    park_run(ctx_of(req)->park, req, fn, a, free);
}

static void run_name(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size, park_fn fn)
{
    size_t len = strlen(name);
    struct name_args *a = malloc(sizeof(*a) + len + 1);
    if (!a) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    a->ino = ino;
    a->size = size;
    memcpy(a->name, name, len + 1);
    park_run(ctx_of(req)->park, req, fn, a, free);
}

/* ---- look-ups and attributes --------------------------------------------- */

/* A negative entry: the kernel answers repeats (.git probes) itself, for as long as the parent
 * lives. */
static int reply_no_entry(struct park_req *r, struct ops_context *ctx, const char *dir)
{
    struct fuse_entry_param e;
    struct tree_stat parent_st;
    int rc = tree_stat(ctx->tree, dir, &parent_st);

    if (rc == -EWOULDBLOCK || rc == -EINTR)
        return rc;
    memset(&e, 0, sizeof(e));
    e.entry_timeout = rc == 0 ? timeout_for(ctx, &parent_st) : ctx->ttl;
    park_reply_entry(r, &e);
    return 0;
}

static int do_lookup(struct park_req *r, void *arg)
{
    const struct name_args *a = arg;
    struct ops_context *ctx = park_userdata(r);
    struct fuse_entry_param e;
    struct tree_stat ts;
    char *dir = inode_path(ctx->inodes, a->ino);
    char *path = dir ? child_path(dir, a->name) : NULL;
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
        rc = reply_no_entry(r, ctx, dir);
        goto out;
    }
    if (rc)
        goto out;
    e.ino = inode_ref(ctx->inodes, path);
    if (e.ino == 0) {
        rc = -ENOMEM;
        goto out;
    }
    /* A moved ref's new target gets a new generation: the kernel drops what it kept of the old. */
    e.generation = ts.generation;
    e.entry_timeout = timeout_for(ctx, &ts);
    e.attr_timeout = attr_timeout_for(ctx, &ts);
    fill_stat(&ts, e.ino, &e.attr);
    if (park_reply_entry(r, &e) != 0)
        inode_forget(ctx->inodes, e.ino, 1);
out:
    free(path);
    free(dir);
    return rc;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    run_name(req, parent, name, 0, do_lookup);
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

static int do_getattr(struct park_req *r, void *arg)
{
    const struct ino_args *a = arg;
    struct ops_context *ctx = park_userdata(r);
    struct tree_stat ts;
    struct stat st;
    char *path = inode_path(ctx->inodes, a->ino);
    int rc = path ? tree_stat(ctx->tree, path, &ts) : -ESTALE;

    if (rc == 0) {
        fill_stat(&ts, a->ino, &st);
        park_reply_attr(r, &st, attr_timeout_for(ctx, &ts));
    }
    free(path);
    return rc;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    run_ino(req, ino, 0, NULL, do_getattr);
}

static int do_readlink(struct park_req *r, void *arg)
{
    const struct ino_args *a = arg;
    struct ops_context *ctx = park_userdata(r);
    char *target = NULL;
    char *path = inode_path(ctx->inodes, a->ino);
    int rc = path ? tree_readlink(ctx->tree, path, &target) : -ESTALE;

    if (rc == 0)
        park_reply_readlink(r, target);
    free(target);
    free(path);
    return rc;
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    run_ino(req, ino, 0, NULL, do_readlink);
}

/* ---- directories ------------------------------------------------------------- */

static int do_opendir(struct park_req *r, void *arg)
{
    struct ino_args *a = arg;
    struct ops_context *ctx = park_userdata(r);
    struct open_dir *od = calloc(1, sizeof(*od));
    int rc;

    if (!od)
        return -ENOMEM;
    od->path = inode_path(ctx->inodes, a->ino);
    if (!od->path) {
        rc = -ESTALE;
        goto out;
    }
    rc = tree_list(ctx->tree, od->path, &od->dir);
    if (rc)
        goto out;
    /* A directory addressed by a commit hash never changes: the kernel may keep its listing. */
    a->fi.cache_readdir = a->fi.keep_cache = od->dir.immutable;
    a->fi.fh = (uint64_t)(uintptr_t)od;
    handle_add(ctx, &od->handle, 1);
    if (park_reply_open(r, &a->fi) == 0)
        od = NULL;
    else
        handle_remove(ctx, &od->handle);
out:
    if (od)
        open_dir_free(od);
    return rc;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    run_ino(req, ino, 0, fi, do_opendir);
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

/* ---- files --------------------------------------------------------------------- */

static int do_open(struct park_req *r, void *arg)
{
    struct ino_args *a = arg;
    struct ops_context *ctx = park_userdata(r);
    struct open_file *of = NULL;
    char *path = inode_path(ctx->inodes, a->ino);
    int rc;

    if (!path) {
        rc = -ESTALE;
        goto out;
    }
    if ((a->fi.flags & O_ACCMODE) != O_RDONLY || (a->fi.flags & O_TRUNC)) {
        rc = -EROFS;
        goto out;
    }
    of = calloc(1, sizeof(*of));
    if (!of) {
        rc = -ENOMEM;
        goto out;
    }
    atomic_init(&of->refs, 1);
    rc = tree_open(ctx->tree, path, &of->file);
    if (rc)
        goto out;
    a->fi.fh = (uint64_t)(uintptr_t)of;
    a->fi.keep_cache = of->file.st.immutable;
    /* Reads of a live file go to its content at open, not to a stale page cache or size. */
    a->fi.direct_io = of->file.st.live;
    handle_add(ctx, &of->handle, 0);
    if (park_reply_open(r, &a->fi) == 0)
        of = NULL;
    else
        handle_remove(ctx, &of->handle);
out:
    if (of)
        open_file_put(of);
    free(path);
    return rc;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    run_ino(req, ino, 0, fi, do_open);
}

static void read_args_free(void *arg)
{
    struct read_args *a = arg;
    open_file_put(a->of);
    free(a);
}

/* Straight from the file the bytes are in (libfuse splices or preads it), or from memory. */
static int do_read(struct park_req *r, void *arg)
{
    struct read_args *a = arg;
    struct tree_span span;
    int rc = tree_file_span(&a->of->file, a->off, a->size, &span);

    if (rc)
        return rc;
    if (span.fd >= 0 && span.len > 0) {
        struct fuse_bufvec buf = FUSE_BUFVEC_INIT(span.len);
        buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
        buf.buf[0].fd = span.fd;
        buf.buf[0].pos = span.pos;
        park_reply_data(r, &buf);
    } else {
        park_reply_buf(r, span.data, span.len);
    }
    tree_span_release(&span);
    return 0;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct read_args *a = malloc(sizeof(*a));
    (void)ino;
    if (!a) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    a->of = (struct open_file *)(uintptr_t)fi->fh;
    a->size = size;
    a->off = off;
    atomic_fetch_add(&a->of->refs, 1);
    park_run(ctx_of(req)->park, req, do_read, a, read_args_free);
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

/* Replies to a (list|get)xattr request for value as the size protocol of xattr(7) asks. */
static void reply_xattr_value(struct park_req *r, size_t size, const char *value, size_t len)
{
    if (size == 0)
        park_reply_xattr(r, len);
    else if (size < len)
        park_reply_err(r, ERANGE);
    else
        park_reply_buf(r, value, len);
}

static int do_getxattr(struct park_req *r, void *arg)
{
    const struct name_args *a = arg;
    struct ops_context *ctx = park_userdata(r);
    char *value = NULL, *path = inode_path(ctx->inodes, a->ino);
    size_t len = 0;
    int rc = path ? tree_getxattr(ctx->tree, path, a->name, &value, &len) : -ESTALE;

    if (rc == 0)
        reply_xattr_value(r, a->size, value, len);
    free(value);
    free(path);
    return rc;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    /*
     * ls -l asks every file for its ACLs and security label: answered before
     * any look-up, and outside user.* as not supported at all, which ls
     * remembers for the whole mount (coreutils: per device) and stops asking.
     */
    if (!tree_xattr_known(name)) {
        fuse_reply_err(req, strncmp(name, "user.", 5) == 0 ? ENODATA : EOPNOTSUPP);
        return;
    }
    run_name(req, ino, name, size, do_getxattr);
}

static int do_listxattr(struct park_req *r, void *arg)
{
    const struct ino_args *a = arg;
    struct ops_context *ctx = park_userdata(r);
    char *path = inode_path(ctx->inodes, a->ino), *names = NULL;
    size_t len = 0;
    int rc = path ? tree_listxattr(ctx->tree, path, &names, &len) : -ESTALE;

    if (rc == 0)
        reply_xattr_value(r, a->size, names, len);
    free(names);
    free(path);
    return rc;
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    run_ino(req, ino, size, NULL, do_listxattr);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    /*
     * Synchronous reads: a signalled reader's read is then interrupted (the
     * kernel never interrupts its asynchronous readahead, nor answers a
     * killed reader until it is answered), and a read of a cached file never
     * queues behind readahead that waits for the network (max_background).
     */
    conn->want &= ~FUSE_CAP_ASYNC_READ;
    /* The kernel keeps symlink targets; a ref that moves says so (refs.c). */
    if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
        conn->want |= FUSE_CAP_CACHE_SYMLINKS;
    /* Reads are answered from files (the store's): spliced, not copied through a buffer. */
    if (conn->capable & FUSE_CAP_SPLICE_WRITE)
        conn->want |= FUSE_CAP_SPLICE_WRITE;
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
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
    .setattr = readonly_setattr,
    .mknod = readonly_mknod,
    .mkdir = readonly_mkdir,
    .unlink = readonly_unlink,
    .rmdir = readonly_unlink,
    .symlink = readonly_symlink,
    .rename = readonly_rename,
    .link = readonly_link,
    .write = readonly_write,
    .create = readonly_create,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .setxattr = readonly_setxattr,
    .removexattr = readonly_removexattr,
    .fallocate = readonly_fallocate,
};

const struct fuse_lowlevel_ops *ops_table(void)
{
    return &ops;
}

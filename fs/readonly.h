/*
 * readonly.h - the FUSE operations that would change the tree: bbfs is
 * read-only, and each answers EROFS (internal to fs/; ops.c's table names
 * them).
 */
#ifndef BBFS_READONLY_H
#define BBFS_READONLY_H

#include <fuse_lowlevel.h>

void readonly_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                      struct fuse_file_info *fi);
void readonly_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void readonly_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void readonly_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void readonly_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void readonly_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                     const char *newname, unsigned int flags);
void readonly_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void readonly_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi);
void readonly_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     struct fuse_file_info *fi);
void readonly_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                       size_t size, int flags);
void readonly_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
void readonly_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                        struct fuse_file_info *fi);

#endif

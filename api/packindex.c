/*
 * packindex.c - pack_index(): libgit2's git_indexer over a received pack,
 * in this process or in a helper process started by pack_indexer_start().
 *
 * Why a helper: libgit2 1.5's indexer maps each object whole while it
 * checksums it (crc32 over the object's bytes, in windows of the pack it is
 * writing), and git_indexer_append() drops that pack from the list of files
 * whose windows the mapped limit may close (git_mwindow_free_all() removes
 * it). So indexing a pack with a 200 MiB blob maps 200 MiB of it at once,
 * whatever GIT_OPT_SET_MWINDOW_MAPPED_LIMIT says, and VmRSS follows. The
 * helper, forked while the process is still single-threaded, does the
 * indexing in an address space of its own and hands back the pack's name;
 * a pack that crashes libgit2 then kills the helper, not the filesystem.
 *
 * The helper speaks over a SOCK_SEQPACKET socket pair: a request is the
 * index directory's path with the pack's fd attached (SCM_RIGHTS), an
 * answer an errno and the name. It exits when the socket closes, i.e. when
 * every process holding the other end is gone (fuse_daemonize's parent
 * included), and is never restarted: after it dies, pack_index() fails
 * with -EIO.
 */
#include "api/pack.h"

#include <errno.h>
#include <git2.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/log.h"

#define INDEX_CHUNK ((size_t)1 << 16)
#define DIR_MAX 4096

struct answer {
    int32_t rc;
    char name[PACK_NAME_LEN + 1];
};

static struct {
    pthread_mutex_t lock; /* one request at a time on the socket */
    int sock;             /* our end, -1 when there is no helper */
    pid_t pid;
} helper = {PTHREAD_MUTEX_INITIALIZER, -1, -1};

static int is_name(const char *s)
{
    size_t i;

    for (i = 0; i < PACK_NAME_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[i] == '\0';
}

/* The indexer's failure: -ENOMEM, or -EPROTO for a pack that does not index. */
static int index_error(void)
{
    const git_error *e = git_error_last();

    log_debug("libgit2: the pack does not index: %s",
              e && e->message ? e->message : "unknown error");
    return e && e->klass == GIT_ERROR_NOMEMORY ? -ENOMEM : -EPROTO;
}

/* pack_index() in this process. */
static int index_here(const char *dir, int fd, char name[PACK_NAME_LEN + 1])
{
    git_indexer_options opts;
    git_indexer_progress stats;
    git_indexer *idx = NULL;
    const char *indexed;
    char *chunk = malloc(INDEX_CHUNK);
    off_t off = 0;
    ssize_t n;
    int rc;

    name[0] = '\0';
    if (!chunk)
        return -ENOMEM;
    rc = git_indexer_options_init(&opts, GIT_INDEXER_OPTIONS_VERSION);
    if (rc == 0)
        rc = git_indexer_new(&idx, dir, 0, NULL, &opts);
    if (rc < 0) {
        rc = index_error() == -ENOMEM ? -ENOMEM : -EIO; /* the directory, not the pack */
        goto out;
    }
    for (;;) {
        n = pread(fd, chunk, INDEX_CHUNK, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        if (n == 0)
            break;
        off += n;
        rc = git_indexer_append(idx, chunk, (size_t)n, &stats);
        if (rc < 0)
            break;
    }
    if (rc == 0)
        rc = git_indexer_commit(idx, &stats);
    if (rc < 0) {
        rc = index_error();
        goto out;
    }
    indexed = git_indexer_name(idx);
    if (!indexed || !is_name(indexed)) {
        rc = -EIO;
        goto out;
    }
    memcpy(name, indexed, PACK_NAME_LEN + 1);
out:
    git_indexer_free(idx); /* removes what an unfinished index wrote */
    free(chunk);
    return rc;
}

/* The helper's loop: one request, one answer, until the socket closes. */
static void serve(int sock)
{
    char dir[DIR_MAX + 1], control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = dir, .iov_len = DIR_MAX};
    struct msghdr msg;
    struct cmsghdr *cmsg;
    struct answer answer;
    ssize_t n;
    int fd;

    for (;;) {
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof(control);
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        dir[n] = '\0';
        cmsg = CMSG_FIRSTHDR(&msg);
        memset(&answer, 0, sizeof(answer));
        if (cmsg && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS &&
            cmsg->cmsg_len == CMSG_LEN(sizeof(int))) {
            memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
            answer.rc = index_here(dir, fd, answer.name);
            close(fd);
        } else {
            answer.rc = -EINVAL;
        }
        if (send(sock, &answer, sizeof(answer), MSG_NOSIGNAL) < 0)
            return;
    }
}

int pack_indexer_start(void)
{
    int sv[2];
    pid_t pid;

    if (helper.sock >= 0)
        return 0;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return -errno;
    }
    if (pid == 0) {
        /* keep nothing of the parent's open files (a FUSE device, sockets) but our end */
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        if (dup2(sv[1], 3) < 0)
            _exit(1);
        close_range(4, ~0U, 0);
        serve(3);
        _exit(0);
    }
    close(sv[1]);
    helper.sock = sv[0];
    helper.pid = pid;
    return 0;
}

void pack_indexer_stop(void)
{
    if (helper.sock < 0)
        return;
    close(helper.sock); /* the helper sees the end of its socket and exits */
    helper.sock = -1;
    while (waitpid(helper.pid, NULL, 0) < 0 && errno == EINTR)
        ;
    helper.pid = -1;
}

/* One request to the helper; -EIO when it is gone. */
static int index_there(const char *dir, int fd, char name[PACK_NAME_LEN + 1])
{
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = (void *)dir, .iov_len = strlen(dir)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *cmsg;
    struct answer answer;
    ssize_t n;
    int rc = -EIO, gone = 1;

    if (iov.iov_len == 0 || iov.iov_len > DIR_MAX)
        return -EINVAL;
    memset(control, 0, sizeof(control));
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    pthread_mutex_lock(&helper.lock);
    if (helper.sock < 0)
        goto out;
    while ((n = sendmsg(helper.sock, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        goto out;
    while ((n = recv(helper.sock, &answer, sizeof(answer), 0)) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof(answer) || answer.rc > 0 || (answer.rc == 0 && !is_name(answer.name)))
        goto out;
    gone = 0;
    rc = answer.rc;
    if (rc == 0)
        memcpy(name, answer.name, PACK_NAME_LEN + 1);
out:
    pthread_mutex_unlock(&helper.lock);
    if (gone)
        log_once(LOG_LEVEL_WARN, "pack:helper", "the pack indexing process is gone");
    return rc;
}

int pack_index(const char *dir, int fd, char name[PACK_NAME_LEN + 1])
{
    name[0] = '\0';
    if (!dir)
        return -EINVAL;
    if (helper.sock >= 0)
        return index_there(dir, fd, name);
    return index_here(dir, fd, name);
}

/*
 * canned_server.h - a tiny HTTP server for unit tests of api/ (header-only).
 *
 * server_start() listens on 127.0.0.1 on a free port and forks a child that
 * answers one connection per scripted step, in order: it reads the request
 * head, reports it to the parent through a pipe, then sends the canned
 * bytes (all at once, or paced, or some and then stalls; or sends nothing
 * and closes, or stalls). server_stop() kills the child and returns the
 * requests it saw. The child also kills itself after CANNED_LIFETIME
 * seconds, so a failing test never leaves it behind.
 *
 * A stalling step keeps its connection for stall_ms whatever the client
 * does (a retry waits in the listen queue meanwhile), but reports at once
 * when the client hangs up: server_saw_hangup() tells a client that gave
 * up from one that waited for the server, without timing the client.
 *
 * Responses should say "Connection: close": one connection, one answer.
 */
#ifndef BBFS_TESTS_CANNED_SERVER_H
#define BBFS_TESTS_CANNED_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CANNED_LIFETIME 20
#define CANNED_MAX_REQUESTS 32

enum canned_action {
    CANNED_REPLY,       /* send response, close */
    CANNED_CLOSE,       /* read the request, close without a byte (an empty reply) */
    CANNED_STALL,       /* read the request, say nothing for stall_ms, close */
    CANNED_REPLY_STALL, /* send response (a head and part of a body), stall for stall_ms, close */
    CANNED_REPLY_PACED, /* send response pace_bytes at a time, stall_ms between them, close */
};

struct canned {
    enum canned_action action;
    const char *response;
    int stall_ms;
    size_t response_len; /* bytes of response to send; 0 means strlen(response) */
    size_t pace_bytes;   /* CANNED_REPLY_PACED: bytes per write */
};

struct canned_server {
    pid_t pid;
    int port;
    int listen_fd; /* between server_listen() and server_run() */
    int log_fd;    /* read end: the child's records */
    char *requests[CANNED_MAX_REQUESTS];
    size_t nrequests;
    int hung_up[CANNED_MAX_REQUESTS]; /* by step: the client left while the server held on */
};

/* What the child reports through its pipe, each record followed by len bytes. */
enum canned_record_type {
    CANNED_RECORD_HEAD,   /* the request head of step */
    CANNED_RECORD_HANGUP, /* the client hung up during step, before the server was done */
};

struct canned_record {
    uint32_t type;
    uint32_t step;
    uint32_t len;
};

/* 0, or -1 when the peer went away. */
__attribute__((unused)) static int canned_write_all(int fd, const char *p, size_t len)
{
    ssize_t n;

    while (len > 0) {
        n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads a request head (up to the blank line) from fd; returns its length. */
__attribute__((unused)) static size_t canned_read_head(int fd, char *buf, size_t cap)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    size_t len = 0;
    ssize_t n;

    while (len + 1 < cap) {
        if (poll(&pfd, 1, 5000) <= 0)
            break;
        n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    buf[len] = '\0';
    return len;
}

__attribute__((unused)) static void canned_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

__attribute__((unused)) static long elapsed_ms_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

__attribute__((unused)) static void canned_report(int log_fd, enum canned_record_type type,
                                                  size_t step, const char *data, size_t len)
{
    struct canned_record r = {(uint32_t)type, (uint32_t)step, (uint32_t)len};

    canned_write_all(log_fd, (const char *)&r, sizeof(r));
    if (len > 0)
        canned_write_all(log_fd, data, len);
}

/*
 * Holds connection fd for ms, reading and dropping what the client sends,
 * and reports the moment the client hangs up (end of file or reset).
 */
__attribute__((unused)) static void canned_stall(int fd, int ms, int log_fd, size_t step)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    struct timespec t0;
    char junk[4096];
    long left;
    ssize_t n;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    while ((left = ms - elapsed_ms_since(&t0)) > 0) {
        if (pfd.fd < 0) {
            canned_sleep_ms((int)left);
            break;
        }
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        n = read(fd, junk, sizeof(junk));
        if (n == 0 || (n < 0 && errno != EINTR)) {
            canned_report(log_fd, CANNED_RECORD_HANGUP, step, NULL, 0);
            pfd.fd = -1;
        }
    }
}

__attribute__((unused)) static void canned_child(int lfd, int log_fd, const struct canned *script,
                                                 size_t n)
{
    char head[16384];
    size_t i, rlen;
    int fd;

    alarm(CANNED_LIFETIME);
    for (i = 0; i < n; i++) {
        fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            _exit(1);
        canned_report(log_fd, CANNED_RECORD_HEAD, i, head,
                      canned_read_head(fd, head, sizeof(head)));
        rlen = 0;
        if (script[i].response)
            rlen = script[i].response_len ? script[i].response_len : strlen(script[i].response);
        if ((script[i].action == CANNED_REPLY || script[i].action == CANNED_REPLY_STALL) &&
            script[i].response)
            canned_write_all(fd, script[i].response, rlen);
        if (script[i].action == CANNED_REPLY_PACED && script[i].response) {
            for (size_t off = 0; off < rlen; off += script[i].pace_bytes) {
                if (off > 0)
                    canned_sleep_ms(script[i].stall_ms);
                if (canned_write_all(fd, script[i].response + off,
                                     rlen - off < script[i].pace_bytes ? rlen - off
                                                                       : script[i].pace_bytes)) {
                    canned_report(log_fd, CANNED_RECORD_HANGUP, i, NULL, 0);
                    break; /* the client gave up */
                }
            }
        }
        if (script[i].action == CANNED_STALL || script[i].action == CANNED_REPLY_STALL)
            canned_stall(fd, script[i].stall_ms, log_fd, i);
        shutdown(fd, SHUT_RDWR);
        close(fd);
    }
    /* stay around (refusing nothing, answering nothing) until killed */
    pause();
    _exit(0);
}

/* An idle server that server_release() may be called on. */
__attribute__((unused)) static void server_init(struct canned_server *s)
{
    memset(s, 0, sizeof(*s));
    s->pid = -1;
    s->log_fd = -1;
    s->listen_fd = -1;
}

/* Binds 127.0.0.1 on a free port (s->port) without answering yet. 0 or -1. */
__attribute__((unused)) static int server_listen(struct canned_server *s)
{
    struct sockaddr_in addr;
    socklen_t alen = sizeof(addr);
    int lfd;

    server_init(s);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        return -1;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 16) < 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0) {
        close(lfd);
        return -1;
    }
    s->port = ntohs(addr.sin_port);
    s->listen_fd = lfd;
    return 0;
}

/*
 * Forks the child that plays script (which may mention s->port: build it
 * after server_listen). 0 or -1.
 */
__attribute__((unused)) static int server_run(struct canned_server *s, const struct canned *script,
                                              size_t n)
{
    int pipefd[2];

    if (s->listen_fd < 0 || pipe(pipefd) < 0)
        return -1;
    fflush(NULL);
    s->pid = fork();
    if (s->pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (s->pid == 0) {
        close(pipefd[0]);
        canned_child(s->listen_fd, pipefd[1], script, n);
        _exit(0);
    }
    close(s->listen_fd);
    s->listen_fd = -1;
    close(pipefd[1]);
    s->log_fd = pipefd[0];
    return 0;
}

/* server_listen() then server_run(). */
__attribute__((unused)) static int server_start(struct canned_server *s,
                                                const struct canned *script, size_t n)
{
    if (server_listen(s) < 0)
        return -1;
    return server_run(s, script, n);
}

/* All of len bytes from fd; 0, or -1 at end of file or on an error. */
__attribute__((unused)) static int canned_read_all(int fd, void *p, size_t len)
{
    ssize_t n;

    while (len > 0) {
        n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p = (char *)p + n;
        len -= (size_t)n;
    }
    return 0;
}

/* Takes in one record of the child's, waiting up to wait_ms for it. 0, or -1 when none came. */
__attribute__((unused)) static int canned_take_record(struct canned_server *s, int wait_ms)
{
    struct pollfd pfd = {.fd = s->log_fd, .events = POLLIN};
    struct canned_record r;
    char *data;

    if (s->log_fd < 0 || poll(&pfd, 1, wait_ms) <= 0 || canned_read_all(s->log_fd, &r, sizeof(r)))
        return -1;
    data = calloc(1, (size_t)r.len + 1);
    if (!data || (r.len > 0 && canned_read_all(s->log_fd, data, r.len))) {
        free(data);
        return -1;
    }
    if (r.type == CANNED_RECORD_HEAD && s->nrequests < CANNED_MAX_REQUESTS) {
        s->requests[s->nrequests++] = data;
        return 0;
    }
    if (r.type == CANNED_RECORD_HANGUP && r.step < CANNED_MAX_REQUESTS)
        s->hung_up[r.step] = 1;
    free(data);
    return 0;
}

/*
 * Whether the client hung up during step while the server still held the
 * connection (a stall, or a paced answer), waiting up to wait_ms (a hang
 * guard: the report comes as soon as the client hangs up) to hear of it.
 */
__attribute__((unused)) static int server_saw_hangup(struct canned_server *s, size_t step,
                                                     int wait_ms)
{
    struct timespec t0;
    long left;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (step < CANNED_MAX_REQUESTS && !s->hung_up[step] &&
           (left = wait_ms - elapsed_ms_since(&t0)) > 0)
        if (canned_take_record(s, (int)left) < 0)
            break;
    return step < CANNED_MAX_REQUESTS && s->hung_up[step];
}

/* Stops the child and collects the request heads it reported. */
__attribute__((unused)) static void server_stop(struct canned_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = -1;
    }
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        s->listen_fd = -1;
    }
    if (s->log_fd < 0)
        return;
    while (canned_take_record(s, 0) == 0) /* the child is gone: what it wrote is all there */
        ;
    close(s->log_fd);
    s->log_fd = -1;
}

__attribute__((unused)) static void server_release(struct canned_server *s)
{
    size_t i;

    server_stop(s);
    for (i = 0; i < s->nrequests; i++)
        free(s->requests[i]);
    s->nrequests = 0;
}

/* The value of header name in a request head ("" when absent), into dst. */
__attribute__((unused)) static const char *request_header(const char *head, const char *name,
                                                          char *dst, size_t dstlen)
{
    const char *p = head;
    size_t nlen = strlen(name), vlen;

    dst[0] = '\0';
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            p += nlen + 1;
            while (*p == ' ')
                p++;
            vlen = strcspn(p, "\r\n");
            if (vlen >= dstlen)
                vlen = dstlen - 1;
            memcpy(dst, p, vlen);
            dst[vlen] = '\0';
            return dst;
        }
    }
    return dst;
}

#endif

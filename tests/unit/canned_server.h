/*
 * canned_server.h - a tiny HTTP server for unit tests of api/ (header-only).
 *
 * server_start() listens on 127.0.0.1 on a free port and forks a child that
 * answers one connection per scripted step, in order: it reads the request
 * head, reports it to the parent through a pipe, then sends the canned
 * bytes (all at once, or paced, or some and then stalls; or sends nothing
 * and closes, or stalls). server_stop() kills the
 * child and returns the requests it saw. The child also kills itself
 * after CANNED_LIFETIME seconds, so a failing test never leaves it behind.
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
    int log_fd;    /* read end: length-prefixed request heads */
    char *requests[CANNED_MAX_REQUESTS];
    size_t nrequests;
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

__attribute__((unused)) static void canned_child(int lfd, int log_fd, const struct canned *script,
                                                 size_t n)
{
    char head[16384];
    uint32_t len;
    size_t i, rlen;
    int fd;

    alarm(CANNED_LIFETIME);
    for (i = 0; i < n; i++) {
        fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            _exit(1);
        len = (uint32_t)canned_read_head(fd, head, sizeof(head));
        canned_write_all(log_fd, (const char *)&len, sizeof(len));
        canned_write_all(log_fd, head, len);
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
                                                                       : script[i].pace_bytes))
                    break; /* the client gave up */
            }
        }
        if (script[i].action == CANNED_STALL || script[i].action == CANNED_REPLY_STALL)
            canned_sleep_ms(script[i].stall_ms);
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

/* Stops the child and collects the request heads it reported. */
__attribute__((unused)) static void server_stop(struct canned_server *s)
{
    uint32_t len;
    ssize_t n;

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
    while (s->nrequests < CANNED_MAX_REQUESTS) {
        n = read(s->log_fd, &len, sizeof(len));
        if (n != (ssize_t)sizeof(len))
            break;
        s->requests[s->nrequests] = calloc(1, (size_t)len + 1);
        if (!s->requests[s->nrequests])
            break;
        if (len > 0 && read(s->log_fd, s->requests[s->nrequests], len) != (ssize_t)len)
            break;
        s->nrequests++;
    }
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

__attribute__((unused)) static long elapsed_ms_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

#endif

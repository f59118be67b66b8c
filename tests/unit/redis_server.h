/*
 * redis_server.h - a real redis-server for unit tests of the shared cache
 * (header-only).
 *
 * redis_server_start() runs redis-server on a free port of 127.0.0.1 (never
 * the default one) and a unix socket in a private directory, without
 * persistence, and returns once it answers. The child gets SIGKILL when the
 * test process dies (PR_SET_PDEATHSIG), and redis_server_stop() (from each
 * test's teardown, which cmocka runs after a failure too) stops it and
 * removes its directory. redis_raw() is a plain hiredis connection for the
 * test's own look at the server (INFO, SCAN, changing values by hand).
 * silent_listener() is a socket that accepts connections (in the kernel's
 * backlog) and never reads nor answers.
 */
#ifndef BBFS_TESTS_REDIS_SERVER_H
#define BBFS_TESTS_REDIS_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

/* Hang guard: how long a redis-server may take to answer after it starts. */
#define REDIS_SERVER_START_MS 20000

struct redis_server {
    pid_t pid;
    int port;
    char dir[64];
    char socket[128];
    char password[64]; /* requirepass, "" for none */
};

static inline long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* A port nobody listens on now (the kernel's choice for port 0). */
static inline int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* A connection of the test's own, authenticated when the server has a password. */
static inline redisContext *redis_raw(const struct redis_server *s)
{
    struct timeval tv = {.tv_sec = 5};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    redisReply *r;

    if (!ctx || ctx->err) {
        redisFree(ctx);
        return NULL;
    }
    redisSetTimeout(ctx, tv);
    if (s->password[0]) {
        r = redisCommand(ctx, "AUTH %s", s->password);
        freeReplyObject(r);
    }
    return ctx;
}

/* 1 when the server answers PING (or refuses it for want of a password). */
static inline int redis_server_answers(const struct redis_server *s)
{
    struct timeval tv = {.tv_sec = 1};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    redisReply *r = NULL;
    int up;

    if (ctx && !ctx->err) {
        redisSetTimeout(ctx, tv);
        r = redisCommand(ctx, "PING");
    }
    up = r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR) &&
         strstr(r->str, "LOADING") == NULL;
    freeReplyObject(r);
    redisFree(ctx);
    return up;
}

static inline void redis_server_exec(const struct redis_server *s, const char *const *extra)
{
    char port[16], logfile[160];
    const char *argv[40] = {"redis-server", "--port",       port,      "--bind",
                            "127.0.0.1",    "--save",       "",        "--appendonly",
                            "no",           "--unixsocket", s->socket, "--unixsocketperm",
                            "700",          "--dir",        s->dir,    "--logfile",
                            logfile,        "--daemonize",  "no"};
    int argc = 19;

    snprintf(port, sizeof(port), "%d", s->port);
    snprintf(logfile, sizeof(logfile), "%s/redis.log", s->dir);
    if (s->password[0]) {
        argv[argc++] = "--requirepass";
        argv[argc++] = s->password;
    }
    for (; extra && *extra && argc < 38; extra++)
        argv[argc++] = *extra;
    argv[argc] = NULL;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execvp("redis-server", (char *const *)argv);
    _exit(127);
}

/* Starts (or, with s->port and s->dir already set, restarts) the server: 0 or -1. */
static inline int redis_server_spawn(struct redis_server *s, const char *const *extra)
{
    long long deadline = mono_ms() + REDIS_SERVER_START_MS;
    int status;

    s->pid = fork();
    if (s->pid < 0)
        return -1;
    if (s->pid == 0)
        redis_server_exec(s, extra);
    while (mono_ms() < deadline) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0; /* it exited: the port was taken meanwhile, or worse */
            return -1;
        }
        if (redis_server_answers(s))
            return 0;
        pause_ms(20);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
    return -1;
}

static inline int redis_server_start(struct redis_server *s, const char *password,
                                     const char *const *extra)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/bbfs-redis-test-XXXXXX");
    if (!mkdtemp(s->dir))
        return -1;
    snprintf(s->socket, sizeof(s->socket), "%s/redis.sock", s->dir);
    snprintf(s->password, sizeof(s->password), "%s", password ? password : "");
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = free_port();
        if (s->port > 0 && redis_server_spawn(s, extra) == 0)
            return 0;
    }
    return -1;
}

/* Redis dies at once, as in a crash: its connections are reset. */
static inline void redis_server_kill(struct redis_server *s)
{
    int status;

    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
    }
    s->pid = 0;
}

static inline void redis_server_stop(struct redis_server *s)
{
    char path[200];
    int status;

    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        for (int i = 0; i < 250 && waitpid(s->pid, &status, WNOHANG) == 0; i++)
            pause_ms(20);
        redis_server_kill(s);
    }
    if (s->dir[0]) {
        snprintf(path, sizeof(path), "%s/redis.log", s->dir);
        unlink(path);
        unlink(s->socket);
        rmdir(s->dir);
        s->dir[0] = '\0';
    }
}

/* A number from INFO (e.g. "total_connections_received"), or -1. */
static inline long long redis_info(redisContext *raw, const char *field)
{
    redisReply *r = redisCommand(raw, "INFO");
    long long value = -1;
    char *at;

    if (r && r->type == REDIS_REPLY_STRING) {
        at = strstr(r->str, field);
        if (at && at[strlen(field)] == ':')
            value = atoll(at + strlen(field) + 1);
    }
    freeReplyObject(r);
    return value;
}

/* Listens on a free port and never accepts, reads or answers: returns the fd. */
static inline int silent_listener(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

/*
 * Everything written to stderr (the log) between capture_begin and
 * capture_end, one capture at a time. A failed assertion jumps past
 * capture_end: the test's teardown calls capture_abandon, so stderr comes
 * back and the file goes.
 */
static struct {
    int active;
    int saved;
    char path[64];
} capture;

static inline void capture_begin(void)
{
    int fd;

    fflush(stderr);
    snprintf(capture.path, sizeof(capture.path), "/tmp/bbfs-redis-log-XXXXXX");
    fd = mkstemp(capture.path);
    capture.saved = dup(2);
    dup2(fd, 2);
    close(fd);
    capture.active = 1;
}

/* The captured text (malloc'd), and the lines it has in *lines. */
static inline char *capture_end(int *lines)
{
    FILE *f;
    char *text = calloc(1, 65536);
    size_t n = 0;

    fflush(stderr);
    dup2(capture.saved, 2);
    close(capture.saved);
    capture.active = 0;
    f = fopen(capture.path, "r");
    if (f && text) {
        n = fread(text, 1, 65535, f);
        fclose(f);
    }
    unlink(capture.path);
    *lines = 0;
    for (size_t i = 0; text && i < n; i++)
        *lines += text[i] == '\n';
    return text;
}

static inline void capture_abandon(void)
{
    int lines;

    if (capture.active)
        free(capture_end(&lines));
}

#endif

/*
 * token.c - loading the token (see token.h).
 */
#include "fs/token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define TOKEN_MAX 4096

/* Keeps the first line, without surrounding white space. */
static int clean_token(char *buf, char *err, size_t errlen, const char *source)
{
    char *start = buf;
    while (*start == ' ' || *start == '\t')
        start++;
    size_t len = strcspn(start, "\r\n");
    while (len > 0 && (start[len - 1] == ' ' || start[len - 1] == '\t'))
        len--;
    memmove(buf, start, len);
    memset(buf + len, 0, strlen(buf + len));
    if (len == 0) {
        snprintf(err, errlen, "the token from %s is empty", source);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] == 0x7f) {
            snprintf(err, errlen, "the token from %s contains white space or control characters",
                     source);
            return -EINVAL;
        }
    return 0;
}

static int read_token_file(const char *path, char *buf, char *err, size_t errlen)
{
    struct stat st;
    ssize_t got = 0;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        snprintf(err, errlen, "cannot open token file '%s': %s", path, strerror(errno));
        return -errno;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot stat token file '%s': %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "token file '%s' is not a regular file", path);
        rc = -EINVAL;
        goto out;
    }
    if (st.st_mode & (S_IRGRP | S_IROTH)) {
        snprintf(err, errlen, "token file '%s' is readable by group or others; run: chmod 600 '%s'",
                 path, path);
        rc = -EPERM;
        goto out;
    }
    while (got < TOKEN_MAX - 1) {
        ssize_t n = read(fd, buf + got, (size_t)(TOKEN_MAX - 1 - got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot read token file '%s': %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        got += n;
    }
    buf[got] = '\0';
out:
    close(fd);
    return rc;
}

static int prompt_token(char *buf, char *err, size_t errlen)
{
    struct termios saved, quiet;
    int rc = 0;

    if (tcgetattr(STDIN_FILENO, &saved) != 0) {
        snprintf(err, errlen, "cannot prompt for the token: %s", strerror(errno));
        return -errno;
    }
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    fputs("Bitbucket token: ", stderr);
    fflush(stderr);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    if (!fgets(buf, TOKEN_MAX, stdin)) {
        snprintf(err, errlen, "no token given");
        rc = -EINVAL;
    }
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    return rc;
}

int token_load(const char *token_file, char **token, char *err, size_t errlen)
{
    char *buf = calloc(1, TOKEN_MAX);
    const char *env = getenv("BITBUCKET_TOKEN");
    const char *source;
    int rc;

    *token = NULL;
    if (!buf)
        return -ENOMEM;
    if (token_file) {
        source = "token_file";
        rc = read_token_file(token_file, buf, err, errlen);
    } else if (env && *env) {
        source = "BITBUCKET_TOKEN";
        snprintf(buf, TOKEN_MAX, "%s", env);
        rc = 0;
    } else if (isatty(STDIN_FILENO)) {
        source = "the prompt";
        rc = prompt_token(buf, err, errlen);
    } else {
        snprintf(err, errlen,
                 "no token: use -o token_file=PATH, set BITBUCKET_TOKEN, or run on a terminal");
        rc = -EINVAL;
        goto out;
    }
    if (rc == 0)
        rc = clean_token(buf, err, errlen, source);
out:
    if (rc == 0) {
        *token = strdup(buf);
        if (!*token)
            rc = -ENOMEM;
    }
    explicit_bzero(buf, TOKEN_MAX);
    free(buf);
    return rc;
}

void token_free(char *token)
{
    if (!token)
        return;
    explicit_bzero(token, strlen(token));
    free(token);
}

/*
 * token.c - loading the token, and other secrets kept in files (see token.h).
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

#define SECRET_MAX 4096

/*
 * Keeps the first line, without surrounding white space; what names the
 * secret and source where it came from, for messages. Inside it, white space
 * is refused unless inner_spaces (a password may have spaces, a token not).
 */
static int clean_secret(char *buf, const char *what, const char *source, int inner_spaces,
                        char *err, size_t errlen)
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
        snprintf(err, errlen, "the %s from %s is empty", what, source);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if ((c < 0x21 && !(inner_spaces && c == ' ')) || c == 0x7f) {
            snprintf(err, errlen, "the %s from %s contains %s", what, source,
                     inner_spaces ? "control characters" : "white space or control characters");
            return -EINVAL;
        }
    }
    return 0;
}

/* Reads a file only its owner may read into buf (SECRET_MAX bytes); what names it in messages. */
static int read_secret_file(const char *path, const char *what, char *buf, char *err, size_t errlen)
{
    struct stat st;
    ssize_t got = 0;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s '%s': %s", what, path, strerror(errno));
        return -errno;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot stat %s '%s': %s", what, path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s '%s' is not a regular file", what, path);
        rc = -EINVAL;
        goto out;
    }
    if (st.st_mode & (S_IRGRP | S_IROTH)) {
        snprintf(err, errlen, "%s '%s' is readable by group or others; run: chmod 600 '%s'", what,
                 path, path);
        rc = -EPERM;
        goto out;
    }
    while (got < SECRET_MAX - 1) {
        ssize_t n = read(fd, buf + got, (size_t)(SECRET_MAX - 1 - got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot read %s '%s': %s", what, path, strerror(errno));
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
    if (!fgets(buf, SECRET_MAX, stdin)) {
        snprintf(err, errlen, "no token given");
        rc = -EINVAL;
    }
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    return rc;
}

int token_load(const char *token_file, char **token, char *err, size_t errlen)
{
    char *buf = calloc(1, SECRET_MAX);
    const char *env = getenv("BITBUCKET_TOKEN");
    const char *source;
    int rc;

    *token = NULL;
    if (!buf)
        return -ENOMEM;
    if (token_file) {
        source = "token_file";
        rc = read_secret_file(token_file, "token file", buf, err, errlen);
    } else if (env && *env) {
        source = "BITBUCKET_TOKEN";
        snprintf(buf, SECRET_MAX, "%s", env);
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
        rc = clean_secret(buf, "token", source, 0, err, errlen);
out:
    if (rc == 0) {
        *token = strdup(buf);
        if (!*token)
            rc = -ENOMEM;
    }
    explicit_bzero(buf, SECRET_MAX);
    free(buf);
    return rc;
}

int secret_file_load(const char *path, const char *option, char **secret, char *err, size_t errlen)
{
    char *buf = calloc(1, SECRET_MAX), what[64];
    int rc;

    *secret = NULL;
    if (!buf)
        return -ENOMEM;
    snprintf(what, sizeof(what), "%s file", option);
    rc = read_secret_file(path, what, buf, err, errlen);
    if (rc == 0)
        rc = clean_secret(buf, "secret", what, 1, err, errlen);
    if (rc == 0 && !(*secret = strdup(buf)))
        rc = -ENOMEM;
    explicit_bzero(buf, SECRET_MAX);
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

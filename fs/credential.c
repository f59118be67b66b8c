/*
 * credential.c - git-credential-bbfs: a git credential helper that gives git
 * the bbfs token for Bitbucket's https URLs, so that `git clone` of a
 * repository's clone-url needs no password prompt and stores no secret.
 *
 *   git config --global credential.https://bitbucket.org.helper \
 *       '/usr/local/bin/git-credential-bbfs --token-file /home/me/.config/bbfs-token'
 *   git clone "$(cat ~/bb/acme/api/clone-url)"
 *
 * git runs `git-credential-bbfs [OPTIONS] get|store|erase` with key=value
 * lines on stdin, ended by a blank line or EOF (gitcredentials(7)). For `get`
 * with protocol=https (or http to a loopback host, for tests), the Bitbucket
 * host (bitbucket.org, or --host H, or $BBFS_GIT_HOST; host:port when git
 * names a port) and no user name other than x-token-auth, it prints
 * username=x-token-auth and password=TOKEN.
 * Anything else gets no answer, so git asks its next helper or the user.
 * `store` and `erase` are read and ignored: the token lives in its file.
 *
 * The token comes from --token-file (refused when group- or world-readable,
 * as bbfs's token_file=) or $BITBUCKET_TOKEN, never from argv, and is written
 * nowhere but git's pipe.
 */
#include "fs/token.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOKEN_USER "x-token-auth"
#define DEFAULT_HOST "bitbucket.org"

/* The keys of one request that matter here; other keys are skipped. */
struct cred_request {
    char *protocol;
    char *host;
    char *username;
};

static void cred_request_release(struct cred_request *req)
{
    free(req->protocol);
    free(req->host);
    free(req->username);
    memset(req, 0, sizeof(*req));
}

static int set_field(char **field, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return -ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

/* Reads key=value lines until a blank line or EOF. */
static int cred_request_read(struct cred_request *req, FILE *in)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;

    while ((len = getline(&line, &cap, in)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            break;
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        const char *value = eq + 1;
        if (strcmp(line, "protocol") == 0)
            rc = set_field(&req->protocol, value);
        else if (strcmp(line, "host") == 0)
            rc = set_field(&req->host, value);
        else if (strcmp(line, "username") == 0)
            rc = set_field(&req->username, value);
        if (rc != 0)
            goto out;
    }
    if (ferror(in))
        rc = -EIO;
out:
    free(line);
    return rc;
}

/* Whether host[:port] names a loopback address: 127.x.y.z, [::1] or localhost. */
static int is_loopback(const char *host)
{
    size_t len = strcspn(host, ":");

    if (strncmp(host, "[::1]", 5) == 0)
        return host[5] == '\0' || host[5] == ':';
    return strncmp(host, "127.", 4) == 0 || (len == 9 && strncasecmp(host, "localhost", 9) == 0);
}

/* https, or plain http to a loopback host (bbfs's rule for api_url=). */
static int cred_request_matches(const struct cred_request *req, const char *host)
{
    if (!req->protocol || !req->host || strcasecmp(req->host, host) != 0)
        return 0;
    if (req->username && strcmp(req->username, TOKEN_USER) != 0)
        return 0;
    return strcmp(req->protocol, "https") == 0 ||
           (strcmp(req->protocol, "http") == 0 && is_loopback(req->host));
}

/* Answers a matching `get`; the token is read only when it is needed. */
static int answer_get(const struct cred_request *req, const char *host, const char *token_file)
{
    char err[512] = "";
    char *token = NULL;
    const char *env = getenv("BITBUCKET_TOKEN");
    int rc;

    if (!cred_request_matches(req, host))
        return 0;
    if (!token_file && !(env && *env)) {
        fprintf(stderr, "git-credential-bbfs: no token: use --token-file PATH or set "
                        "BITBUCKET_TOKEN\n");
        return -EINVAL;
    }
    rc = token_load(token_file, &token, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "git-credential-bbfs: %s\n", err);
        return rc;
    }
    printf("username=%s\npassword=%s\n", TOKEN_USER, token);
    if (fflush(stdout) != 0 || ferror(stdout))
        rc = -EIO;
    token_free(token);
    return rc;
}

static void usage(FILE *f)
{
    fputs("usage: git-credential-bbfs [--token-file PATH] [--host HOST] get|store|erase\n"
          "\n"
          "A git credential helper: answers `get` for https://HOST (bitbucket.org,\n"
          "or $BBFS_GIT_HOST) with user x-token-auth and the token from --token-file\n"
          "or $BITBUCKET_TOKEN. Configure it with\n"
          "  git config --global credential.https://bitbucket.org.helper \\\n"
          "      '/usr/local/bin/git-credential-bbfs --token-file PATH'\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"token-file", required_argument, NULL, 't'},
        {"host", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct cred_request req = {0};
    const char *token_file = NULL;
    const char *host = getenv("BBFS_GIT_HOST");
    int opt, rc = 0;

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 't':
            token_file = optarg;
            break;
        case 'H':
            host = optarg;
            break;
        case 'h':
            usage(stdout);
            goto out;
        default:
            usage(stderr);
            rc = -EINVAL;
            goto out;
        }
    }
    if (!host || !*host)
        host = DEFAULT_HOST;
    if (optind != argc - 1) {
        usage(stderr);
        rc = -EINVAL;
        goto out;
    }
    rc = cred_request_read(&req, stdin);
    if (rc != 0) {
        fprintf(stderr, "git-credential-bbfs: cannot read the request: %s\n", strerror(-rc));
        goto out;
    }
    /* store, erase and operations git may add later: nothing to do. */
    if (strcmp(argv[optind], "get") == 0)
        rc = answer_get(&req, host, token_file);
out:
    cred_request_release(&req);
    return rc == 0 ? 0 : 1;
}

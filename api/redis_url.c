/*
 * redis_url.c - parses the shared cache's URL and credential (redis_url.h).
 *
 * Strict on purpose: a URL that is not exactly one of the two forms is
 * refused with one line that says what is wrong, rather than guessed at, and
 * the line quotes the URL only when it cannot hold a password.
 */
#include "api/redis_url.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "api/log.h"

#define REDIS_DEFAULT_PORT 6379
#define REDIS_MAX_DB 999999999 /* nine digits; Redis itself refuses a db it does not have */

static const char tcp_scheme[] = "redis://";
static const char unix_scheme[] = "redis+unix://";

/* A decimal number of 1 to 9 digits, no sign: 0 with *out <= max, or -EINVAL. */
static int parse_number(const char *s, size_t len, long max, int *out)
{
    long v = 0;

    if (len == 0 || len > 9)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

static int host_char(char ch, int bracketed)
{
    if (bracketed)
        return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
               ch == ':' || ch == '.';
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           ch == '.' || ch == '-' || ch == '_';
}

/* "HOST[:PORT][/DB]" after "redis://". */
static int parse_tcp(const char *url, const char *rest, struct redis_target *t, char *errbuf,
                     size_t errlen)
{
    int bracketed = rest[0] == '[';
    const char *host = rest + bracketed, *end = host, *p;

    while (*end && host_char(*end, bracketed))
        end++;
    p = end;
    if (bracketed && *p++ != ']')
        goto bad_host;
    if (end == host || (*p && *p != ':' && *p != '/'))
        goto bad_host;
    t->port = REDIS_DEFAULT_PORT;
    if (*p == ':') {
        size_t len = strcspn(++p, "/");

        if (parse_number(p, len, 65535, &t->port) < 0 || t->port == 0) {
            log_format_line(errbuf, errlen, "shared_cache '%s': bad port (1 to 65535)", url);
            return -EINVAL;
        }
        p += len;
    }
    if (*p == '/' && *++p && parse_number(p, strlen(p), REDIS_MAX_DB, &t->db) < 0) {
        log_format_line(errbuf, errlen, "shared_cache '%s': bad database number after '/'", url);
        return -EINVAL;
    }
    t->host = strndup(host, (size_t)(end - host));
    if (!t->host)
        return -ENOMEM;
    if (asprintf(&t->where, bracketed ? "redis://[%s]:%d/%d" : "redis://%s:%d/%d", t->host, t->port,
                 t->db) < 0) {
        t->where = NULL;
        return -ENOMEM;
    }
    return 0;
bad_host:
    log_format_line(errbuf, errlen, "shared_cache '%s': bad host (a name, an address or [IPv6])",
                    url);
    return -EINVAL;
}

/* "/PATH[?db=N]" after "redis+unix://". */
static int parse_unix(const char *url, const char *rest, struct redis_target *t, char *errbuf,
                      size_t errlen)
{
    size_t len = strcspn(rest, "?");
    const char *query = rest + len;

    if (rest[0] != '/' || len < 2) {
        log_format_line(errbuf, errlen,
                        "shared_cache '%s': the socket path must be absolute (redis+unix:///PATH)",
                        url);
        return -EINVAL;
    }
    if (len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        log_format_line(errbuf, errlen, "shared_cache '%s': the socket path is too long", url);
        return -EINVAL;
    }
    if (*query && (strncmp(query, "?db=", 4) != 0 ||
                   parse_number(query + 4, strlen(query + 4), REDIS_MAX_DB, &t->db) < 0)) {
        log_format_line(errbuf, errlen, "shared_cache '%s': the only query is ?db=N", url);
        return -EINVAL;
    }
    t->socket_path = strndup(rest, len);
    if (!t->socket_path)
        return -ENOMEM;
    if (asprintf(&t->where, "redis+unix://%s?db=%d", t->socket_path, t->db) < 0) {
        t->where = NULL;
        return -ENOMEM;
    }
    return 0;
}

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int parse_credential(const char *credential, struct redis_target *t, char *errbuf,
                            size_t errlen)
{
    const char *colon = strchr(credential, ':');

    if (has_control(credential)) {
        log_format_line(errbuf, errlen, "the shared cache's credential has control characters");
        return -EINVAL;
    }
    if (colon == credential || !*(colon ? colon + 1 : credential)) {
        log_format_line(errbuf, errlen,
                        "the shared cache's credential needs a password, or user:password");
        return -EINVAL;
    }
    if (colon) {
        t->user = strndup(credential, (size_t)(colon - credential));
        t->password = strdup(colon + 1);
    } else {
        t->password = strdup(credential);
    }
    if (!t->password || (colon && !t->user))
        return -ENOMEM;
    return 0;
}

int redis_target_parse(const char *url, const char *credential, struct redis_target *t,
                       char *errbuf, size_t errlen)
{
    int rc;

    memset(t, 0, sizeof(*t));
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!url)
        url = "";
    if (strchr(url, '@')) {
        log_format_line(errbuf, errlen,
                        "shared_cache: no credential in the URL; put it in shared_cache_auth");
        return -EINVAL;
    }
    if (strncmp(url, tcp_scheme, strlen(tcp_scheme)) == 0)
        rc = parse_tcp(url, url + strlen(tcp_scheme), t, errbuf, errlen);
    else if (strncmp(url, unix_scheme, strlen(unix_scheme)) == 0)
        rc = parse_unix(url, url + strlen(unix_scheme), t, errbuf, errlen);
    else {
        log_format_line(errbuf, errlen,
                        "shared_cache '%s': not redis://HOST[:PORT][/DB] or "
                        "redis+unix:///PATH[?db=N]",
                        url);
        rc = -EINVAL;
    }
    if (rc == 0 && credential)
        rc = parse_credential(credential, t, errbuf, errlen);
    if (rc == -ENOMEM)
        log_format_line(errbuf, errlen, "shared_cache: out of memory");
    return rc;
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void redis_target_release(struct redis_target *t)
{
    free(t->host);
    free(t->socket_path);
    free(t->where);
    wipe_free(t->user);
    wipe_free(t->password);
    memset(t, 0, sizeof(*t));
}

/*
 * redis_url.h - where the shared cache's Redis is and how to log in
 * (internal to api/; used by redis.c and redis_pool.c).
 *
 * Two forms, nothing else:
 *
 *   redis://HOST[:PORT][/DB]       HOST a name, an IPv4 address or [IPv6]; port 6379, db 0
 *   redis+unix:///PATH[?db=N]      an absolute socket path
 *
 * A credential never comes in the URL (one with '@' is refused without
 * being quoted): it is "password", or "user:password" for an ACL user (the
 * first ':' separates them, so a password with ':' needs its user, e.g.
 * "default:pass:word").
 */
#ifndef BBFS_API_REDIS_URL_H
#define BBFS_API_REDIS_URL_H

#include <stddef.h>

struct redis_target {
    char *host; /* NULL for a unix socket */
    int port;
    char *socket_path; /* NULL for TCP */
    int db;
    char *user;     /* NULL: AUTH with the password alone */
    char *password; /* NULL: no AUTH */
    char *where;    /* the URL rebuilt, for messages; never a credential */
};

/*
 * Fills t (release with redis_target_release, also after a failure). 0;
 * -EINVAL with one line in errbuf; -ENOMEM.
 */
int redis_target_parse(const char *url, const char *credential, struct redis_target *t,
                       char *errbuf, size_t errlen);
/* Frees; the credential is wiped first. */
void redis_target_release(struct redis_target *t);

#endif

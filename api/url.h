/*
 * url.h - URL checks and URL building for the Bitbucket client (internal to api/).
 *
 * Building: every request URL is the base URL plus path segments and query
 * parameters appended one at a time, each percent-encoded here and nowhere
 * else (RFC 3986: only ALPHA DIGIT - . _ ~ stay literal; '+' becomes %2B,
 * a space %20, UTF-8 bytes %XX). A segment never contains a literal '/';
 * url_add_path() is for values whose '/' are meant as separators (a
 * revision such as feature/x in /commits/{revision}). Empty, "." and ".."
 * segments are refused with -EINVAL: curl would fold dot segments away and
 * the request would name another resource.
 *
 *   struct buf u;
 *   url_init(&u, base);
 *   url_add_segment(&u, "repositories");
 *   url_add_segment(&u, workspace);
 *   url_add_query(&u, "q", "project.key=\"PLAT\"");   // q=project.key%3D%22PLAT%22
 *   char *url = buf_take(&u, NULL);                    // NULL if any step failed
 *
 * Checking: the configured base URL must be http or https, plain http only
 * to a loopback host, without credentials, query or fragment. Pagination
 * links are followed only to the base URL's origin (scheme, host, port), so
 * the bearer token never travels to a host the user did not name.
 */
#ifndef BBFS_API_URL_H
#define BBFS_API_URL_H

#include <stddef.h>

#include "api/buf.h"

/* Longest URL this client builds or follows. */
#define URL_MAX (64 * 1024)

/*
 * Validates base; on success *out is a normalised copy (lowercase scheme,
 * no trailing '/'). -EINVAL with one line in errbuf otherwise, -ENOMEM.
 */
int url_check_base(const char *base, char **out, char *errbuf, size_t errlen);
/* The same checks for another service's base URL: what ("git") names it in errbuf. */
int url_check_named_base(const char *what, const char *base, char **out, char *errbuf,
                         size_t errlen);

/* 1 when host (as in a URL: "localhost", "127.0.0.5", "[::1]") is a loopback address. */
int url_host_is_loopback(const char *host);

/* 1 when both URLs parse and have the same scheme, host and (default-filled) port, else 0. */
int url_same_origin(const char *a, const char *b);

/*
 * Some links point at https://bitbucket.org/!api/2.0/...; *out becomes the
 * same resource under base: "https://bitbucket.org/!api" is replaced by base
 * without its trailing "/2.0" (https://api.bitbucket.org/2.0/... for the
 * default base). Other URLs are copied unchanged. 0, -EINVAL (too long) or -ENOMEM.
 */
int url_rewrite_api_alias(const char *base, const char *url, char **out);

/*
 * url as a log line may show it, into dst (len bytes): its query and
 * fragment cut off (they may be long or hostile), sanitised like
 * log_sanitize(). Returns dst.
 */
const char *url_for_log(const char *url, char *dst, size_t len);

void url_init(struct buf *u, const char *base);
/* Appends '/' and the encoded segment ('/' inside it becomes %2F). */
int url_add_segment(struct buf *u, const char *segment);
/* Appends '/' and path, each '/'-separated part encoded, the separators kept. */
int url_add_path(struct buf *u, const char *path);
/*
 * Appends a directory for /src listings: "/" for the root (""), else '/',
 * the path as url_add_path() does it, and a trailing '/' ("a b/c" becomes
 * "/a%20b/c/").
 */
int url_add_dir(struct buf *u, const char *dir);
/* Appends ?key=value or &key=value, both encoded. */
int url_add_query(struct buf *u, const char *key, const char *value);
/* Appends s percent-encoded; '/' kept literal when keep_slash. */
int url_encode(struct buf *u, const char *s, int keep_slash);

#endif

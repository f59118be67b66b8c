/*
 * url.c - percent-encoding, base URL validation and same-origin checks.
 *
 * Parsing is left to curl's URL API (curl_url) so that this file and the
 * HTTP layer agree on what host and port a URL names.
 */
#include "api/url.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/log.h"

#define API_ALIAS "https://bitbucket.org/!api/"

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int url_encode(struct buf *u, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p;
    char esc[3] = {'%', 0, 0};

    for (p = (const unsigned char *)s; *p; p++) {
        if (is_unreserved(*p) || (keep_slash && *p == '/')) {
            buf_appendc(u, (char)*p);
        } else {
            esc[1] = hex[*p >> 4];
            esc[2] = hex[*p & 0xf];
            buf_append(u, esc, 3);
        }
    }
    return u->err;
}

void url_init(struct buf *u, const char *base)
{
    buf_init(u, URL_MAX);
    buf_appends(u, base);
}

static int segment_ok(const char *s, size_t len)
{
    return len > 0 && !(len == 1 && s[0] == '.') && !(len == 2 && s[0] == '.' && s[1] == '.');
}

int url_add_segment(struct buf *u, const char *segment)
{
    if (!segment || !segment_ok(segment, strlen(segment)))
        return buf_set_error(u, -EINVAL);
    buf_appendc(u, '/');
    return url_encode(u, segment, 0);
}

int url_add_path(struct buf *u, const char *path)
{
    const char *p, *slash;

    if (!path)
        return buf_set_error(u, -EINVAL);
    for (p = path;; p = slash + 1) {
        slash = strchr(p, '/');
        if (!segment_ok(p, slash ? (size_t)(slash - p) : strlen(p)))
            return buf_set_error(u, -EINVAL);
        if (!slash)
            break;
    }
    buf_appendc(u, '/');
    return url_encode(u, path, 1);
}

int url_add_dir(struct buf *u, const char *dir)
{
    if (!dir)
        return buf_set_error(u, -EINVAL);
    if (*dir && url_add_path(u, dir) < 0)
        return u->err;
    return buf_appendc(u, '/');
}

int url_add_query(struct buf *u, const char *key, const char *value)
{
    if (u->err)
        return u->err;
    buf_appendc(u, strchr(u->data ? u->data : "", '?') ? '&' : '?');
    url_encode(u, key, 0);
    buf_appendc(u, '=');
    return url_encode(u, value, 0);
}

int url_host_is_loopback(const char *host)
{
    char tmp[INET6_ADDRSTRLEN + 2];
    struct in_addr a4;
    struct in6_addr a6;
    size_t len;

    if (!host)
        return 0;
    if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    len = strlen(host);
    if (len < 2 || host[0] != '[' || host[len - 1] != ']' || len - 2 >= sizeof(tmp))
        return 0;
    memcpy(tmp, host + 1, len - 2);
    tmp[len - 2] = '\0';
    if (inet_pton(AF_INET6, tmp, &a6) != 1)
        return 0;
    if (IN6_IS_ADDR_LOOPBACK(&a6))
        return 1;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

/* The parts of a parsed URL this file looks at; all malloc'd by curl. */
struct url_parts {
    char *scheme, *host, *port, *user, *password, *query, *fragment, *zone;
};

static void parts_release(struct url_parts *p)
{
    curl_free(p->scheme);
    curl_free(p->host);
    curl_free(p->port);
    curl_free(p->user);
    curl_free(p->password);
    curl_free(p->query);
    curl_free(p->fragment);
    curl_free(p->zone);
    memset(p, 0, sizeof(*p));
}

/* 0, -EINVAL when url does not parse (or has an unknown scheme), -ENOMEM. */
static int url_split(const char *url, struct url_parts *p, char **whole)
{
    CURLU *h;
    CURLUcode uc;
    int rc = -EINVAL;

    memset(p, 0, sizeof(*p));
    h = curl_url();
    if (!h)
        return -ENOMEM;
    uc = curl_url_set(h, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        rc = uc == CURLUE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
        goto out;
    }
    if (curl_url_get(h, CURLUPART_SCHEME, &p->scheme, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_HOST, &p->host, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_PORT, &p->port, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    /* Absent parts are errors from curl_url_get; only presence matters. */
    curl_url_get(h, CURLUPART_USER, &p->user, 0);
    curl_url_get(h, CURLUPART_PASSWORD, &p->password, 0);
    curl_url_get(h, CURLUPART_QUERY, &p->query, 0);
    curl_url_get(h, CURLUPART_FRAGMENT, &p->fragment, 0);
    curl_url_get(h, CURLUPART_ZONEID, &p->zone, 0);
    if (whole && curl_url_get(h, CURLUPART_URL, whole, 0) != CURLUE_OK) {
        rc = -ENOMEM;
        goto out;
    }
    rc = 0;
out:
    if (rc < 0)
        parts_release(p);
    curl_url_cleanup(h);
    return rc;
}

int url_check_named_base(const char *what, const char *base, char **out, char *errbuf,
                         size_t errlen)
{
    struct url_parts p;
    char *whole = NULL;
    size_t len;
    int rc;

    *out = NULL;
    if (!base || !*base) {
        log_format_line(errbuf, errlen, "no %s URL given", what);
        return -EINVAL;
    }
    rc = url_split(base, &p, &whole);
    if (rc == -ENOMEM) {
        log_format_line(errbuf, errlen, "out of memory");
        return rc;
    }
    if (rc < 0) {
        log_format_line(errbuf, errlen, "invalid %s URL '%s'", what, base);
        return rc;
    }
    rc = -EINVAL;
    if (strcasecmp(p.scheme, "https") != 0 && strcasecmp(p.scheme, "http") != 0) {
        log_format_line(errbuf, errlen, "%s URL '%s': only http and https are supported", what,
                        base);
        goto out;
    }
    if (strcasecmp(p.scheme, "http") == 0 && !url_host_is_loopback(p.host)) {
        log_format_line(errbuf, errlen,
                        "%s URL '%s': plain http is only allowed to a loopback host; use https",
                        what, base);
        goto out;
    }
    if (p.user || p.password || p.query || p.fragment) {
        log_format_line(errbuf, errlen,
                        "%s URL '%s' must not contain credentials, a query or a fragment", what,
                        base);
        goto out;
    }
    len = strlen(whole);
    while (len > 0 && whole[len - 1] == '/')
        whole[--len] = '\0';
    *out = strdup(whole);
    if (!*out) {
        log_format_line(errbuf, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    rc = 0;
out:
    curl_free(whole);
    parts_release(&p);
    return rc;
}

int url_check_base(const char *base, char **out, char *errbuf, size_t errlen)
{
    return url_check_named_base("API", base, out, errbuf, errlen);
}

int url_same_origin(const char *a, const char *b)
{
    struct url_parts pa, pb;
    int same = 0;

    if (url_split(a, &pa, NULL) < 0)
        return 0;
    if (url_split(b, &pb, NULL) < 0) {
        parts_release(&pa);
        return 0;
    }
    same = strcasecmp(pa.scheme, pb.scheme) == 0 && strcasecmp(pa.host, pb.host) == 0 &&
           strcmp(pa.port, pb.port) == 0 && !pa.zone == !pb.zone &&
           (!pa.zone || strcmp(pa.zone, pb.zone) == 0);
    parts_release(&pa);
    parts_release(&pb);
    return same;
}

int url_rewrite_api_alias(const char *base, const char *url, char **out)
{
    size_t alias_len = strlen(API_ALIAS), root_len = strlen(base);
    const char *rest;
    struct buf b;

    if (strncmp(url, API_ALIAS, alias_len) != 0) {
        *out = strdup(url);
        return *out ? 0 : -ENOMEM;
    }
    rest = url + alias_len;
    /* base ".../2.0" stands for "!api/2.0": strip it and append the rest after '/' */
    if (root_len >= 4 && strcmp(base + root_len - 4, "/2.0") == 0)
        root_len -= 4;
    buf_init(&b, URL_MAX);
    buf_append(&b, base, root_len);
    buf_appendc(&b, '/');
    buf_appends(&b, rest);
    *out = buf_take(&b, NULL);
    return *out ? 0 : (b.err == -EFBIG ? -EINVAL : -ENOMEM);
}

const char *url_for_log(const char *url, char *dst, size_t len)
{
    char *cut = strndup(url, strcspn(url, "?#"));

    log_sanitize(dst, len, cut ? cut : "?");
    free(cut);
    return dst;
}

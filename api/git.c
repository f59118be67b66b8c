/*
 * git.c - the smart-HTTP client of git.h: discovery, the tips, and the
 * depth-1 fetch, each answer parsed by api/gitproto.c as gitcurl.c receives
 * it (so neither a ref listing nor a pack is ever held whole).
 */
#include "api/git.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/buf.h"
#include "api/gitcurl.h"
#include "api/gitproto.h"
#include "api/url.h"

#ifndef BBFS_VERSION
#define BBFS_VERSION "unknown"
#endif

#define GIT_AGENT "bbfs/" BBFS_VERSION
#define DISCOVERY_SUFFIX "/info/refs?service=git-upload-pack"
#define ADVERTISEMENT_TYPE "application/x-git-upload-pack-advertisement"
#define RESULT_TYPE "application/x-git-upload-pack-result"
#define MAX_REDIRECTS 3
/* Bytes of a fetch answer beyond its pack (shallow list, progress) read at most. */
#define FETCH_OVERHEAD ((uint64_t)1 << 20)

struct git_remote {
    char *url; /* {git_url}/{WS}/{SLUG}.git, or where a same-origin redirect led */
    struct gitproto_adv adv;
};

/* ---- discovery and ls-refs ---- */

static int list_feed(void *ctx, const char *data, size_t len)
{
    return gitproto_list_feed(ctx, data, len);
}

/* A list parser's failure (ERR, not the protocol, too many refs) into err. */
static int list_failed(const struct gitproto_list_parser *p, int rc, struct git_error *err)
{
    if (rc == -EREMOTEIO)
        git_set_error(err, GIT_CAUSE_REFUSED, 200, "the server said: %s", p->message);
    else if (rc == -EFBIG)
        git_set_error(err, GIT_CAUSE_TOO_BIG, 200, "the ref listing is too big");
    else if (rc == -ENOMEM)
        git_set_error(err, GIT_CAUSE_OTHER, 200, "out of memory");
    else
        git_set_error(err, GIT_CAUSE_BROKEN, 200, "not git's protocol");
    return rc == -EREMOTEIO ? -EPERM : rc;
}

/*
 * GET url's advertisement into p, following same-origin redirects. *final
 * is the URL that answered (malloc'd).
 */
static int get_advertisement(struct git_client *c, char *url, struct gitproto_list_parser *p,
                             char **final, struct git_error *err)
{
    struct git_exchange ex;
    char *next = NULL;
    int redirects, rc;

    *final = NULL;
    for (redirects = 0;; redirects++) {
        gitproto_adv_release(p->adv);
        gitproto_list_init(p, GITPROTO_DISCOVERY, p->adv);
        memset(&ex, 0, sizeof(ex));
        ex.max_body = GIT_MAX_LISTING;
        ex.feed = list_feed;
        ex.feed_ctx = p;
        rc = gitcurl_request(c, url, NULL, GITCURL_V2, &ex, &next, err);
        if (rc == 0 || !next)
            break;
        if (redirects >= MAX_REDIRECTS || !url_same_origin(next, gitcurl_base(c))) {
            git_set_error(err, GIT_CAUSE_OTHER, ex.status, "redirect to another origin refused");
            rc = -EIO;
            break;
        }
        free(url);
        url = next;
        next = NULL;
    }
    free(next);
    if (rc < 0 && ex.feed_err) {
        rc = list_failed(p, rc, err);
    } else if (rc == 0 &&
               strncmp(ex.content_type, ADVERTISEMENT_TYPE, strlen(ADVERTISEMENT_TYPE)) != 0) {
        git_set_error(err, GIT_CAUSE_BROKEN, ex.status, "not a smart HTTP server");
        rc = -EPROTO;
    } else if (rc == 0 && (rc = gitproto_list_finish(p)) < 0) {
        rc = list_failed(p, rc, err);
    }
    if (rc == 0)
        *final = url;
    else
        free(url);
    return rc;
}

int git_discover(struct git_client *c, const char *workspace, const char *slug,
                 struct git_remote **out, struct git_error *err)
{
    struct gitproto_list_parser *p = NULL;
    struct git_remote *r = NULL;
    struct git_error scratch;
    char *url = NULL, *final = NULL;
    struct buf u;
    size_t len;
    int rc = -ENOMEM;

    err = err ? err : &scratch;
    memset(err, 0, sizeof(*err));
    *out = NULL;
    url_init(&u, gitcurl_base(c));
    url_add_segment(&u, workspace);
    url_add_segment(&u, slug);
    buf_appends(&u, ".git" DISCOVERY_SUFFIX);
    url = buf_take(&u, NULL);
    if (!url) {
        rc = u.err == -ENOMEM ? -ENOMEM : -EINVAL;
        git_set_error(err, GIT_CAUSE_OTHER, 0, "cannot name repository '%s/%s' in a URL",
                      workspace ? workspace : "", slug ? slug : "");
        goto out;
    }
    r = calloc(1, sizeof(*r));
    p = malloc(sizeof(*p));
    if (!r || !p)
        goto out;
    p->adv = &r->adv;
    rc = get_advertisement(c, url, p, &final, err);
    url = NULL;
    if (rc < 0)
        goto out;
    len = strlen(final);
    if (len < strlen(DISCOVERY_SUFFIX) ||
        strcmp(final + len - strlen(DISCOVERY_SUFFIX), DISCOVERY_SUFFIX) != 0) {
        git_set_error(err, GIT_CAUSE_OTHER, 200, "redirected to an unexpected URL");
        rc = -EIO;
        goto out;
    }
    final[len - strlen(DISCOVERY_SUFFIX)] = '\0';
    r->url = final;
    final = NULL;
    if (r->adv.caps & GITPROTO_CAP_SHA256) {
        git_set_error(err, GIT_CAUSE_OTHER, 200, "the repository's objects are not SHA-1");
        rc = -ENOTSUP;
        goto out;
    }
    *out = r;
    r = NULL;
    rc = 0;
out:
    if (rc == -ENOMEM && !err->cause)
        git_set_error(err, GIT_CAUSE_OTHER, 0, "out of memory");
    if (rc < 0)
        gitcurl_count_failure(c, err->cause);
    git_remote_free(r);
    free(p);
    free(url);
    free(final);
    return rc;
}

void git_remote_free(struct git_remote *r)
{
    if (!r)
        return;
    gitproto_adv_release(&r->adv);
    free(r->url);
    free(r);
}

int git_remote_version(const struct git_remote *r)
{
    return r->adv.version;
}

/* POST command (a built request) to the remote, its answer fed to feed. */
static int post(struct git_client *c, const struct git_remote *r, const struct buf *body,
                int stream, struct git_exchange *ex, struct git_error *err)
{
    char *url, *redirect = NULL;
    struct buf u;
    int rc;

    buf_init(&u, URL_MAX);
    buf_appends(&u, r->url);
    buf_appends(&u, "/git-upload-pack");
    url = buf_take(&u, NULL);
    if (!url) {
        git_set_error(err, GIT_CAUSE_OTHER, 0, "out of memory");
        return -ENOMEM;
    }
    rc = gitcurl_request(c, url, body,
                         (r->adv.version == 2 ? GITCURL_V2 : 0) | (stream ? GITCURL_STREAM : 0), ex,
                         &redirect, err);
    if (rc == 0 && strncmp(ex->content_type, RESULT_TYPE, strlen(RESULT_TYPE)) != 0) {
        git_set_error(err, GIT_CAUSE_BROKEN, ex->status, "not an upload-pack answer");
        rc = -EPROTO;
    }
    free(redirect); /* a POST is never redirected: the 3xx is an error like any other */
    free(url);
    return rc;
}

/* ---- tips ---- */

void git_tips_release(struct git_tips *tips)
{
    free(tips->head);
    api_ref_list_release(&tips->branches);
    api_ref_list_release(&tips->tags);
    memset(tips, 0, sizeof(*tips));
}

static int ref_cmp(const void *a, const void *b)
{
    return strcmp(((const struct api_ref *)a)->name, ((const struct api_ref *)b)->name);
}

/* Appends name (after prefix) -> commit to list, which has room (see tips_from_refs). */
static int add_tip(struct api_ref_list *list, const char *name, const char *commit)
{
    struct api_ref *ref = &list->items[list->count];

    if (!*name)
        return 0;
    memset(ref, 0, sizeof(*ref));
    ref->name = strdup(name);
    if (!ref->name)
        return -ENOMEM;
    memcpy(ref->target, commit, API_HASH_LEN);
    list->count++;
    return 0;
}

/* Sorts list by name and keeps one of the refs a server named twice. */
static void sort_unique(struct api_ref_list *list)
{
    size_t i, kept = 0;

    if (list->count > 1)
        qsort(list->items, list->count, sizeof(struct api_ref), ref_cmp);
    for (i = 0; i < list->count; i++) {
        if (kept > 0 && strcmp(list->items[kept - 1].name, list->items[i].name) == 0) {
            free(list->items[i].name);
            continue;
        }
        list->items[kept++] = list->items[i];
    }
    list->count = kept;
}

static int tips_from_refs(const struct gitproto_refs *refs, struct git_tips *out)
{
    const struct gitproto_ref *r;
    size_t i;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (refs->count > 0) {
        out->branches.items = calloc(refs->count, sizeof(struct api_ref));
        out->tags.items = calloc(refs->count, sizeof(struct api_ref));
        if (!out->branches.items || !out->tags.items)
            rc = -ENOMEM;
    }
    for (i = 0; i < refs->count && rc == 0; i++) {
        r = &refs->items[i];
        if (strcmp(r->name, "HEAD") == 0) {
            memcpy(out->head_commit, r->oid, API_HASH_LEN + 1);
            if (r->symref && strncmp(r->symref, "refs/heads/", 11) == 0 && r->symref[11]) {
                free(out->head);
                out->head = strdup(r->symref + 11);
                rc = out->head ? 0 : -ENOMEM;
            }
        } else if (strncmp(r->name, "refs/heads/", 11) == 0) {
            rc = add_tip(&out->branches, r->name + 11, r->oid);
        } else if (strncmp(r->name, "refs/tags/", 10) == 0) {
            rc = add_tip(&out->tags, r->name + 10, r->peeled[0] ? r->peeled : r->oid);
        }
    }
    if (rc < 0) {
        git_tips_release(out);
        return rc;
    }
    sort_unique(&out->branches);
    sort_unique(&out->tags);
    return 0;
}

int git_remote_tips(struct git_client *c, const struct git_remote *r, struct git_tips *out,
                    struct git_error *err)
{
    struct gitproto_list_parser *p = NULL;
    struct gitproto_adv listed = {0};
    struct git_error scratch;
    struct git_exchange ex;
    struct buf body;
    int rc;

    err = err ? err : &scratch;
    memset(err, 0, sizeof(*err));
    memset(out, 0, sizeof(*out));
    buf_init(&body, 1 << 16);
    if (r->adv.version != 2) {
        rc = tips_from_refs(&r->adv.refs, out);
        goto out;
    }
    rc = gitproto_ls_refs_request(&body, r->adv.caps, GIT_AGENT);
    if (rc < 0) {
        git_set_error(err, GIT_CAUSE_OTHER, 0, "the server offers no ls-refs");
        goto out;
    }
    p = malloc(sizeof(*p));
    if (!p) {
        rc = -ENOMEM;
        goto out;
    }
    gitproto_list_init(p, GITPROTO_LS_REFS, &listed);
    memset(&ex, 0, sizeof(ex));
    ex.max_body = GIT_MAX_LISTING;
    ex.feed = list_feed;
    ex.feed_ctx = p;
    rc = post(c, r, &body, 0, &ex, err);
    if (rc < 0 && ex.feed_err)
        rc = list_failed(p, rc, err);
    else if (rc == 0 && (rc = gitproto_list_finish(p)) < 0)
        rc = list_failed(p, rc, err);
    if (rc == 0)
        rc = tips_from_refs(&listed.refs, out);
out:
    if (rc == -ENOMEM)
        git_set_error(err, GIT_CAUSE_OTHER, 0, "out of memory");
    if (rc < 0)
        gitcurl_count_failure(c, err->cause);
    gitproto_adv_release(&listed);
    buf_release(&body);
    free(p);
    return rc;
}

/* ---- the fetch ---- */

/*
 * What to ask for commit: in v2, or where a v0 server lets any reachable
 * commit be wanted, the commit itself; otherwise an advertised tip that is
 * the commit (a branch, HEAD, a lightweight tag) or peels to it (an
 * annotated tag: its own object is the tip, and its pack brings the commit).
 */
static const char *choose_want(const struct git_remote *r, const char *commit)
{
    const struct gitproto_refs *refs = &r->adv.refs;
    size_t i;

    if (r->adv.version == 2 || (r->adv.caps & GITPROTO_CAP_ALLOW_REACHABLE))
        return commit;
    for (i = 0; i < refs->count; i++)
        if (strcmp(refs->items[i].oid, commit) == 0)
            return commit;
    for (i = 0; i < refs->count; i++)
        if (strcmp(refs->items[i].peeled, commit) == 0)
            return refs->items[i].oid;
    return NULL;
}

/* Where the pack goes: fd, within the cap. */
struct pack_sink {
    int fd;
    uint64_t written, max;
    int write_errno;
};

static int sink_write(void *ctx, const char *data, size_t len)
{
    struct pack_sink *s = ctx;
    ssize_t n;

    if (s->max && s->written + len > s->max)
        return -EFBIG;
    while (len > 0) {
        n = write(s->fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            s->write_errno = n < 0 ? errno : EIO;
            return -EIO;
        }
        data += n;
        len -= (size_t)n;
        s->written += (uint64_t)n;
    }
    return 0;
}

static int fetch_feed(void *ctx, const char *data, size_t len)
{
    return gitproto_fetch_feed(ctx, data, len);
}

/* The failure of a fetch whose answer was (partly) parsed, into err. */
static int fetch_failed(const struct gitproto_fetch_parser *p, const struct pack_sink *sink, int rc,
                        struct git_error *err)
{
    switch (rc) {
    case -EREMOTEIO:
        git_set_error(err, GIT_CAUSE_REFUSED, 200, "the server said: %s", p->message);
        return -EPERM;
    case -EFBIG:
        git_set_error(err, GIT_CAUSE_TOO_BIG, 200, "the pack is over %llu bytes",
                      (unsigned long long)sink->max);
        return rc;
    case -EIO:
        git_set_error(err, GIT_CAUSE_OTHER, 200, "cannot store the pack: %s",
                      strerror(sink->write_errno));
        return rc;
    case -ENOMEM:
        git_set_error(err, GIT_CAUSE_OTHER, 200, "out of memory");
        return rc;
    default:
        git_set_error(err, GIT_CAUSE_BROKEN, 200, "the answer %s",
                      p->pack_bytes ? "was cut short" : "is not git's protocol");
        return -EPROTO;
    }
}

static int reset_fd(int fd)
{
    return ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0 ? 0 : -errno;
}

int git_remote_fetch(struct git_client *c, const struct git_remote *r, const char *commit, int fd,
                     const struct git_fetch_options *opts, uint64_t *size, struct git_error *err)
{
    struct gitproto_fetch_parser *p = NULL;
    struct pack_sink sink = {.fd = fd};
    struct git_error scratch;
    struct git_exchange ex;
    const char *want;
    struct buf body;
    int rc;

    err = err ? err : &scratch;
    memset(err, 0, sizeof(*err));
    *size = 0;
    buf_init(&body, 1 << 16);
    if (!commit || !gitproto_is_oid(commit) || reset_fd(fd) < 0) {
        git_set_error(err, GIT_CAUSE_OTHER, 0, "bad commit or file");
        rc = -EINVAL;
        goto out;
    }
    want = choose_want(r, commit);
    if (!want) {
        git_set_error(err, GIT_CAUSE_REFUSED, 0, "%s is no tip, and the server serves only tips",
                      commit);
        rc = -EPERM;
        goto out;
    }
    rc = gitproto_fetch_request(&body, r->adv.version, r->adv.caps, GIT_AGENT, want);
    if (rc < 0) {
        git_set_error(err, GIT_CAUSE_OTHER, 0, "the server offers no shallow fetch");
        goto out;
    }
    p = malloc(sizeof(*p));
    if (!p) {
        git_set_error(err, GIT_CAUSE_OTHER, 0, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    sink.max = opts ? opts->max_bytes : 0;
    gitproto_fetch_init(p, r->adv.version, sink_write, &sink);
    memset(&ex, 0, sizeof(ex));
    ex.cancel = opts ? opts->cancel : NULL;
    ex.max_body = sink.max ? sink.max + FETCH_OVERHEAD : 0;
    ex.feed = fetch_feed;
    ex.feed_ctx = p;
    rc = post(c, r, &body, 1, &ex, err);
    if (rc == -EFBIG && p->pack_bytes <= sink.max)
        rc = -EPROTO; /* the answer, not its pack, went past the cap: not git's protocol */
    if (rc < 0 && ex.feed_err)
        rc = fetch_failed(p, &sink, rc, err);
    else if (rc == 0 && (rc = gitproto_fetch_finish(p)) < 0)
        rc = fetch_failed(p, &sink, rc, err);
out:
    if (rc == 0) {
        *size = sink.written;
        gitcurl_count_fetch(c, sink.written);
    } else {
        gitcurl_count_failure(c, err->cause);
        if (rc != -EINVAL)
            reset_fd(fd); /* a failed fetch leaves nothing behind */
    }
    buf_release(&body);
    free(p);
    return rc;
}

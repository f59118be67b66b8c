/*
 * api.h - the Bitbucket Cloud client that bbfs's filesystem layer sees.
 *
 * Everything here is plain C: no curl, no jansson types cross this header.
 * Each call performs the HTTP requests it needs (following pagination,
 * retrying 429 and 5xx with backoff inside one deadline) and hands back
 * structs the caller owns. Functions return 0 or a negative errno:
 *
 *   -ENOENT   404 (unknown workspace, project, repository or commit)
 *   -EACCES   401 or 403
 *   -EIO      network failure, 5xx or 429 after retries, malformed JSON,
 *             a broken pagination chain; offline, an answer that is not stored
 *   -ENOMEM   allocation failure
 *   -EINVAL   a caller error (bad argument)
 *   -EWOULDBLOCK  a request was needed on a thread in nowait mode (below)
 *   -EINTR    the thread's cancel check said to give up (below)
 *
 * Every string that came from the API is hostile: it may be empty, contain
 * '/', "..", newlines or control characters. This layer does not sanitise
 * names; the filesystem layer decides what to expose.
 *
 * All functions are safe to call from several threads at once on one client.
 */
#ifndef BBFS_API_H
#define BBFS_API_H

#include <stddef.h>
#include <stdint.h>

#define API_HASH_LEN 40

struct api_client;

struct api_config {
    const char *base_url; /* e.g. "https://api.bitbucket.org/2.0", no trailing slash needed */
    const char *token;    /* bearer token; copied by api_client_new, wiped on free */
    const char *ca_file;  /* extra CA bundle, or NULL for the system bundle */
    long timeout_ms;      /* whole-call deadline, retries included */
    long connect_timeout_ms;
    long ttl;    /* seconds a stored mutable answer is used without asking the API */
    int offline; /* never touch the network: stored answers of any age, else -EIO */
};

/* Process-wide set-up of the HTTP library; call once before any thread starts. */
int api_global_init(void);
void api_global_cleanup(void);

/*
 * The calling thread's patience with the network (thread-local settings).
 * While nowait is set, no call made from the thread sends a request: where
 * one is needed the call answers -EWOULDBLOCK at once, after using what is
 * stored (a FUSE thread must never wait for the network). A cancel check
 * (NULL: none) is asked at least about once a second while a request of the
 * thread waits or flows, and between its attempts; once it answers nonzero
 * the request is abandoned and the call answers -EINTR, logging nothing and
 * keeping nothing.
 */
void api_set_nowait(int nowait);
int api_nowait(void);
void api_set_cancel(int (*cancelled)(void *ctx), void *ctx);

/*
 * Refuses (-EINVAL, with a message in errbuf) an unparsable base URL, a
 * scheme other than http/https, and plain http to a host that is not a
 * loopback address.
 */
int api_client_new(const struct api_config *cfg, struct api_client **out, char *errbuf,
                   size_t errlen);
void api_client_free(struct api_client *client);

/*
 * Where answers are kept across mounts. load returns 0 with a malloc'd,
 * NUL-terminated body, or -ENOENT; save keeps a body that parsed well. A body
 * that no longer parses is fetched again. All are called from any thread.
 *
 * load and save hold answers addressed by a full commit hash (commit
 * objects, directory listings at a commit): they are fetched once.
 *
 * load_mutable and save_mutable (either may be NULL: mutable answers are
 * then not kept) hold every other answer (repository lists, refs, commit
 * listings, workspace and project documents, one entry per page URL) with
 * its ETag (NULL when the API sent none) and the wall-clock time it was
 * fetched or last confirmed by a 304; load_mutable hands back a malloc'd
 * etag or NULL. Saving the same body with a later time refreshes an entry.
 * With them, a stored answer younger than ttl is used without a request, an
 * older one is revalidated with If-None-Match, one of any age is served
 * (stale, logged once) when the API cannot be reached, and offline uses
 * nothing else. Error answers are never saved.
 *
 * peek_mutable (optional; NULL: load_mutable) is load_mutable when only
 * looking (api_repos_are_stored): no request for url follows, so a cache
 * shared by many machines must not claim the fetch nor wait for another's.
 */
struct api_response_cache {
    void *ctx;
    int (*load)(void *ctx, const char *url, char **body, size_t *len);
    void (*save)(void *ctx, const char *url, const char *body, size_t len);
    int (*load_mutable)(void *ctx, const char *url, char **body, size_t *len, char **etag,
                        int64_t *fetched_at);
    int (*peek_mutable)(void *ctx, const char *url, char **body, size_t *len, char **etag,
                        int64_t *fetched_at);
    void (*save_mutable)(void *ctx, const char *url, const char *body, size_t len, const char *etag,
                         int64_t fetched_at);
};
void api_set_response_cache(struct api_client *client, const struct api_response_cache *cache);
/*
 * Makes every stored mutable answer fetched until now stale: the next use
 * revalidates it (SIGHUP's refresh without unmounting). Any thread, any time.
 */
void api_expire(struct api_client *client);

/*
 * One request that proves the token works and the workspace (and project,
 * when project_key is not NULL) exists. On failure errbuf holds one
 * human-readable line, e.g. "token rejected by https://...: Token is invalid"
 * or "project 'PLAT' not found in workspace 'acme'" or
 * "cannot reach https://...: Couldn't connect to server". The token never
 * appears in it.
 */
int api_check_access(struct api_client *client, const char *workspace, const char *project_key,
                     char *errbuf, size_t errlen);

/*
 * fetched_at, in the results of mutable answers below: the wall-clock second
 * (since the epoch) the oldest answer the result is made of was fetched or
 * last confirmed by the API (a stored answer keeps the time it was fetched),
 * so that a caller keeping the result trusts it no longer than ttl from then.
 * 0 where not known; not set for answers addressed by a commit hash.
 */

/* A JSON document, pretty-printed with a 2-space indent and a trailing newline. */
struct api_doc {
    char *text;
    size_t len;
    int64_t fetched_at;
};
void api_doc_release(struct api_doc *doc);

/* GET /workspaces/{ws}: -EACCES or -ENOENT where the token may not read it. */
int api_get_workspace(struct api_client *client, const char *workspace, struct api_doc *out);
/* GET /workspaces/{ws}/projects/{key} */
int api_get_project(struct api_client *client, const char *workspace, const char *project_key,
                    struct api_doc *out);

struct api_repo {
    char *slug;
    char *uuid;
    char *full_name;
    char *description;  /* "" when absent */
    char *mainbranch;   /* NULL for an empty repository */
    char *html_url;     /* links.html.href, or NULL */
    char *project_key;  /* project.key, or NULL */
    int64_t created_on; /* seconds since the epoch, 0 when absent */
    int64_t updated_on;
    uint64_t size;      /* the repository's size in bytes as the API gives it, 0 when absent */
    struct api_doc doc; /* the repository object as the API sent it */
};

/* GET /repositories/{ws}/{slug}: one repository, without the whole listing. */
int api_get_repo(struct api_client *client, const char *workspace, const char *slug,
                 struct api_repo *out);
void api_repo_release(struct api_repo *repo);

struct api_repo_list {
    struct api_repo *items;
    size_t count;
    int64_t fetched_at;
};
void api_repo_list_release(struct api_repo_list *list);

/*
 * Whether api_list_repos's first page is stored: at any age (any_age), or
 * such that api_list_repos would answer without a request now (fresh, or
 * offline).
 */
int api_repos_are_stored(struct api_client *client, const char *workspace, const char *project_key,
                         int any_age);

/*
 * Every repository of the workspace the token can see, restricted to one
 * project when project_key is not NULL. All pages are followed; entries are
 * sorted by slug and de-duplicated by uuid. A listing whose pagination breaks
 * part-way fails as a whole (never a partial list).
 */
int api_list_repos(struct api_client *client, const char *workspace, const char *project_key,
                   struct api_repo_list *out);

struct api_ref {
    char *name;                    /* may contain '/' (feature/x) */
    char target[API_HASH_LEN + 1]; /* full commit hash */
    int64_t date;                  /* the target commit's date */
};

struct api_ref_list {
    struct api_ref *items;
    size_t count;
    int64_t fetched_at;
};
void api_ref_list_release(struct api_ref_list *list);

/* All branches (or tags) of a repository, all pages, sorted by name. */
int api_list_branches(struct api_client *client, const char *workspace, const char *repo,
                      struct api_ref_list *out);
int api_list_tags(struct api_client *client, const char *workspace, const char *repo,
                  struct api_ref_list *out);

struct api_commit_summary {
    char hash[API_HASH_LEN + 1];
    int64_t date;
};

struct api_commit_list {
    struct api_commit_summary *items;
    size_t count;
    int64_t fetched_at;
};
void api_commit_list_release(struct api_commit_list *list);

/*
 * The newest commits reachable from revision (a branch name, which may
 * contain '/', or a hash), newest first, at most limit of them. Pages are
 * followed only as far as limit needs.
 */
int api_list_commits(struct api_client *client, const char *workspace, const char *repo,
                     const char *revision, size_t limit, struct api_commit_list *out);

struct api_commit {
    char hash[API_HASH_LEN + 1];
    int64_t date;
    char *message;
    char (*parents)[API_HASH_LEN + 1];
    size_t parent_count;
    char *html_url;
    struct api_doc doc; /* the commit object */
};
void api_commit_release(struct api_commit *commit);

/* GET /commit/{hash}; hash must be 40 lowercase hex digits (-EINVAL otherwise). */
int api_get_commit(struct api_client *client, const char *workspace, const char *repo,
                   const char *hash, struct api_commit *out);

/* One entry of a directory listing at a commit (GET /src/{hash}/{dir}/). */
enum api_entry_type {
    API_ENTRY_FILE,
    API_ENTRY_DIR,
    API_ENTRY_LINK,      /* a symlink: its content is the target */
    API_ENTRY_SUBMODULE, /* a gitlink: shown as an empty directory */
};

struct api_entry {
    char *name; /* the last component of the entry's path; hostile like any API string */
    enum api_entry_type type;
    uint64_t size; /* bytes of content (files and links) */
    int executable;
    int lfs; /* content is served through a redirect to LFS storage */
};

struct api_entry_list {
    struct api_entry *items;
    size_t count;
};
void api_entry_list_release(struct api_entry_list *list);

/*
 * The entries of directory dir ("" for the root, "a/b" below it) at commit
 * hash (40 hex digits; -EINVAL otherwise): all pages, or an error, never a
 * partial list. -ENOENT when the directory does not exist at that commit.
 */
int api_list_dir(struct api_client *client, const char *workspace, const char *repo,
                 const char *hash, const char *dir, struct api_entry_list *out);

/*
 * Directory dir at commit hash and the directories below it, down to
 * max_depth levels (1: dir alone), from one recursive listing (GET
 * /src/{hash}/{dir}/?max_depth=N), in as few requests as its pages. Only
 * complete directories are given: dir and those whose entries were within
 * max_depth, each like api_list_dir's answer. -EFBIG, after one request, when
 * the listing holds more than max_entries entries; the API's 555 (too deep to
 * list in time) is -EIO like any 5xx.
 */
struct api_subtree_dir {
    char *path; /* below the tree root, "" for the root */
    struct api_entry_list entries;
};
struct api_subtree {
    struct api_subtree_dir *dirs;
    size_t count;
};
int api_list_subtree(struct api_client *client, const char *workspace, const char *repo,
                     const char *hash, const char *dir, unsigned max_depth, size_t max_entries,
                     struct api_subtree *out);
void api_subtree_release(struct api_subtree *tree);

/*
 * Where a download's body goes, as it arrives (api_get_file and the diffs).
 * write gets the body's bytes in order, every byte once: when an attempt is
 * repeated (a cut connection, a 5xx), what an earlier attempt delivered is
 * not delivered again. It returns 0, or -errno to stop the download, which
 * then answers that errno (not retried, not logged: the sink's own fault).
 * An error answer (404, 403, ...) never reaches it. cancelled (may be NULL)
 * is asked at least about once a second while the download waits or flows;
 * nonzero stops it, and the call answers -EINTR.
 */
struct api_sink {
    int (*write)(void *ctx, const void *data, size_t len);
    int (*cancelled)(void *ctx);
    void *ctx;
};

/*
 * Streams a file's raw content at commit hash into sink. Redirects (LFS) are
 * followed; the token is never sent to another host. Memory use does not
 * grow with the file's size. *size gets the body's length.
 */
int api_get_file(struct api_client *client, const char *workspace, const char *repo,
                 const char *hash, const char *path, const struct api_sink *sink, uint64_t *size);

/*
 * The unified diff of commit hash against its first parent (GET /diff/{hash}),
 * streamed into sink like api_get_file. A diff the API refuses as too large
 * (status 555, after retries) is -EIO with the reason logged once.
 */
int api_get_diff(struct api_client *client, const char *workspace, const char *repo,
                 const char *hash, const struct api_sink *sink, uint64_t *size);

/*
 * SHA-256 of data as 64 lowercase hex digits and a NUL: the names of on-disk
 * cache entries, so that no string from the API ever becomes a path.
 */
void api_sha256_hex(const void *data, size_t len, char out[65]);

/* True when s is exactly 40 lowercase hexadecimal digits. */
int api_is_full_hash(const char *s);

/* ---- pull requests (need the token's pullrequest scope: -EACCES without) ---- */

struct api_pullrequest {
    uint64_t id;
    char *title;       /* "" when absent */
    char *description; /* "" when absent */
    char *state;       /* as the API says: OPEN, MERGED, DECLINED, SUPERSEDED */
    /* source.commit.hash and destination.commit.hash as given (the API abbreviates
     * them to 12 digits; see api_expand_hash); "" when absent */
    char source[API_HASH_LEN + 1];
    char destination[API_HASH_LEN + 1];
    int64_t created_on, updated_on;
    struct api_doc doc; /* the pull request object */
};
void api_pullrequest_release(struct api_pullrequest *pr);

struct api_pullrequest_list {
    struct api_pullrequest *items; /* sorted by id, no duplicates */
    size_t count;
    int64_t fetched_at;
};
void api_pullrequest_list_release(struct api_pullrequest_list *list);

/* The OPEN pull requests of a repository, every page (50 a page, the API's most). */
int api_list_pullrequests(struct api_client *client, const char *workspace, const char *repo,
                          struct api_pullrequest_list *out);
/* One pull request of any state. */
int api_get_pullrequest(struct api_client *client, const char *workspace, const char *repo,
                        uint64_t id, struct api_pullrequest *out);
/* Every comment of a pull request, all pages as one JSON array (pretty-printed). */
int api_get_pullrequest_comments(struct api_client *client, const char *workspace, const char *repo,
                                 uint64_t id, struct api_doc *out);
/*
 * The pull request's diff into sink (see api_get_file). The API answers with
 * a redirect, followed with the token on the same origin only.
 */
int api_get_pullrequest_diff(struct api_client *client, const char *workspace, const char *repo,
                             uint64_t id, const struct api_sink *sink, uint64_t *size);

/*
 * The full hash of an abbreviated one (7 to 40 hex digits) via GET
 * /commit/{abbrev}: kept forever, as the answer is addressed by a hash.
 */
int api_expand_hash(struct api_client *client, const char *workspace, const char *repo,
                    const char *abbrev, char full[API_HASH_LEN + 1]);

/* What a request asks for: the rows of .bbfs/stats. */
enum api_kind {
    API_KIND_ACCESS, /* the check before mounting */
    API_KIND_WORKSPACE,
    API_KIND_PROJECT,
    API_KIND_REPOS,
    API_KIND_BRANCHES,
    API_KIND_TAGS,
    API_KIND_COMMITS, /* commit listings */
    API_KIND_COMMIT,
    API_KIND_TREE, /* directory listings at a commit */
    API_KIND_FILE,
    API_KIND_DIFF,
    API_KIND_PULLREQUESTS, /* listings and single pull requests */
    API_KIND_COMMENTS,
    API_KIND_COUNT
};

/* "repos", "branches", ...: a word for kind. */
const char *api_kind_name(enum api_kind kind);

/*
 * Counters for observability (.bbfs/stats); a consistent snapshot, safe to
 * take from any thread at any time.
 */
struct api_stats {
    uint64_t requests;                /* HTTP requests sent, retries included */
    uint64_t retries;                 /* of which repeats after 429/5xx/network errors */
    uint64_t failures;                /* requests that failed for good */
    long ratelimit_limit;             /* last X-RateLimit-Limit (requests/hour), -1 if never sent */
    int ratelimit_near;               /* the last X-RateLimit-NearLimit said "true" */
    uint64_t ratelimit_near_count;    /* responses that said NearLimit: true */
    uint64_t requests_last_hour;      /* HTTP requests sent in the last 60 minutes */
    uint64_t bytes;                   /* response bodies received */
    uint64_t by_kind[API_KIND_COUNT]; /* calls that went to the network, retries not counted */
    uint64_t stored;                  /* answers taken from the store without a request */
    uint64_t not_modified;            /* stored answers revalidated by a 304 */
    uint64_t stale;                   /* stored answers served because the API was unreachable */
    /* failures by cause */
    uint64_t failed_network, failed_auth, failed_not_found, failed_rate_limited, failed_server,
        failed_other, bad_answers;
};
void api_get_stats(struct api_client *client, struct api_stats *out);

#endif

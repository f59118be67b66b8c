/*
 * objects.h - the API's objects through the in-memory cache (internal to
 * fs/).
 *
 * One call gets any kind of object: from memory when it is fresh, else from
 * the API (which answers from its stored answers when it can), once however
 * many threads ask. A table in objects.c says per kind what its cache key is,
 * which API call makes it, how long it is trusted (ttl, or forever for what a
 * commit hash addresses) and what an error means there. It is the one place
 * where errors are turned into what the tree shows instead of EACCES:
 *
 *   - workspace.json and project.json the token may not read are absent;
 *   - a repository the token may not see is absent (ENOENT), as is one
 *     outside the mounted project;
 *   - without the pullrequest scope pullrequests/ is empty (said once) and
 *     any one pull request is absent;
 *   - a commit or hash the API refuses as malformed is absent.
 *
 * Listings of names (repositories, refs, directory entries) come indexed
 * (index.h); a refreshed listing of repositories or refs reports the names
 * that came and went (tree_report_changed).
 */
#ifndef BBFS_OBJECTS_H
#define BBFS_OBJECTS_H

#include "api/api.h"
#include "fs/index.h"

struct cache_ref;
struct tree;

enum object_kind {
    OBJECT_REPOS,        /* struct repo_index: the repositories of the mount */
    OBJECT_REPO,         /* struct api_repo: one repository asked for alone */
    OBJECT_BRANCHES,     /* struct ref_index */
    OBJECT_TAGS,         /* struct ref_index */
    OBJECT_COMMITS,      /* struct api_commit_list: the newest of the main branch */
    OBJECT_COMMIT,       /* struct api_commit */
    OBJECT_WORKSPACE,    /* struct api_doc: workspace.json */
    OBJECT_PROJECT,      /* struct api_doc: project.json */
    OBJECT_DIR,          /* struct dir_index: a directory at a commit */
    OBJECT_PULLREQUESTS, /* struct api_pullrequest_list: the open ones */
    OBJECT_PULLREQUEST,  /* struct api_pullrequest */
    OBJECT_COMMENTS,     /* struct api_doc: comments.json */
    OBJECT_FULL_HASH,    /* char[API_HASH_LEN + 1]: an abbreviated hash expanded */
    OBJECT_KIND_COUNT
};

/* What names an object; each kind reads the fields it needs. */
struct object_id {
    const char *repo;
    const char *revision; /* a branch (commit listings) or a full or abbreviated hash */
    const char *path;     /* a directory below the tree root */
    uint64_t number;      /* a pull request's id */
};

struct repo_index {
    struct api_repo_list list;
    struct name_index index; /* of struct api_repo, by slug */
};

struct ref_index {
    struct api_ref_list list;
    struct name_index index; /* of struct api_ref, by name; no name is a prefix "a/" of another */
};

struct dir_index {
    struct api_entry_list list;
    struct name_index index; /* of struct api_entry, by name */
};

/* 0 with *ref holding the object (cache_ref_put it), or a negative errno. */
int object_get(struct tree *tree, enum object_kind kind, const struct object_id *id,
               struct cache_ref **ref);
/* Like object_get without fetching: -EAGAIN when memory holds nothing fresh. */
int object_peek(struct tree *tree, enum object_kind kind, const struct object_id *id,
                struct cache_ref **ref);
/*
 * Offers the entries of directory id->path at commit id->revision, taken
 * from another answer (a recursive listing); entries is taken over.
 */
void object_offer_dir(struct tree *tree, const struct object_id *id,
                      struct api_entry_list *entries);

/* Names of the indexed items. */
const char *repo_slug(const void *repo);
const char *ref_name(const void *ref);
const char *entry_name(const void *entry);

#endif

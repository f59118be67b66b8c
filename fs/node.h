/*
 * node.h - inside the tree (internal to fs/): struct tree, struct node, the
 * kinds of node, and what the part files share.
 *
 * A path is resolved into a struct node: its kind plus references to the
 * cached objects it is made of, and its mtime. Each part of the tree owns its
 * kinds in a file of its own (workspace.c, refs.c, commits.c, source.c,
 * pullrequests.c, stats.c): how a path below it resolves, and the operations
 * of its kinds, a row each of the table tree.c dispatches through.
 */
#ifndef BBFS_NODE_H
#define BBFS_NODE_H

#include "fs/names.h"
#include "fs/tree.h"

#include <stdint.h>
#include <sys/stat.h>

struct api_client;
struct api_doc;
struct api_entry_list;
struct api_repo;
struct cache;
struct name_index;
struct cache_ref;
struct packs;
struct readahead;
struct shared_cache;
struct store;
struct stream;
struct streams;

#define MODE_DIR (S_IFDIR | 0555)
#define MODE_FILE (S_IFREG | 0444)
#define MODE_EXEC (S_IFREG | 0555)
#define MODE_LINK (S_IFLNK | 0777)

/* The directory about the mount itself, beside the workspace. */
#define BBFS_DIR ".bbfs"

/* Names the workspace directory holds besides its repositories. */
#define WORKSPACE_JSON "workspace.json"
#define PROJECT_JSON "project.json"

struct tree {
    char *workspace;
    char *project; /* NULL: the whole workspace */
    time_t ttl;
    size_t commit_limit;
    int offline;
    time_t mount_time;
    struct api_client *api;
    struct cache *cache;
    struct store *store;
    struct shared_cache *shared; /* NULL: none */
    struct streams *streams;     /* the downloads into the store */
    tree_changed_fn changed;
    tree_moved_fn moved;
    void *changed_ctx; /* of both */
    uint64_t files_stored,
        files_downloaded; /* contents and diffs: from the store or not (atomic) */
    struct readahead *readahead;
    struct packs *packs; /* whole trees through git (packs.h), or NULL */
};

enum ref_kind { REF_BRANCHES, REF_TAGS };

/* Kinds from NODE_COMMIT on are addressed by a commit hash: immutable. */
enum node_kind {
    NODE_ROOT,
    NODE_BBFS,  /* .bbfs/: about the mount itself */
    NODE_STATS, /* .bbfs/stats */
    NODE_WORKSPACE,
    NODE_DOC, /* workspace.json, project.json */
    NODE_REPO,
    NODE_REPO_JSON,
    NODE_DESCRIPTION,
    NODE_CLONE_URL,
    NODE_HEAD,
    NODE_REFS, /* branches/, tags/, or a directory made of ref-name parts */
    NODE_REF_LINK,
    NODE_COMMITS,
    NODE_PRS, /* pullrequests/ */
    NODE_PR,  /* pullrequests/ID */
    NODE_PR_JSON,
    NODE_PR_TITLE,
    NODE_PR_DESCRIPTION,
    NODE_PR_STATE,
    NODE_PR_LINK, /* source, destination */
    NODE_PR_DIFF,
    NODE_PR_COMMENTS, /* comments.json */
    NODE_COMMIT,
    NODE_COMMIT_JSON,
    NODE_MESSAGE,
    NODE_PARENTS,
    NODE_PARENT_LINK,
    NODE_DIFF,
    NODE_TREE_DIR, /* tree/ or a directory below it */
    NODE_TREE_FILE,
    NODE_TREE_EXEC, /* a file with its executable bit */
    NODE_TREE_LINK,
    NODE_TREE_SUBMODULE, /* shown as an empty directory */
    NODE_KIND_COUNT
};

struct node {
    enum node_kind kind;
    char *buf; /* the split copy of the path */
    char *parts[NAMES_MAX_DEPTH];
    int nparts;
    time_t mtime;

    struct cache_ref *doc_ref;
    struct cache_ref *repos_ref;
    struct cache_ref
        *repo_ref; /* the repository asked for alone, when the listing was not at hand */
    const struct api_repo *repo;
    enum ref_kind ref_kind;
    struct cache_ref *refs_ref;
    char *ref_prefix;             /* NODE_REFS: "" or "feature"; NODE_REF_LINK: the name */
    const struct api_ref *ref;    /* NODE_REF_LINK */
    const char *hash;             /* NODE_COMMIT and below */
    struct cache_ref *commit_ref; /* the full commit, when it was needed */
    const char *parent;           /* NODE_PARENT_LINK */
    char *tree_path;              /* NODE_TREE_*: the path below tree/, "" for tree/ itself */
    struct cache_ref *dir_ref;    /* NODE_TREE_* below tree/: the parent directory */
    const struct api_entry *entry;
    struct cache_ref *pr_ref; /* NODE_PR and below: the listing or the one pull request */
    const struct api_pullrequest *pr;
    const char *pr_hash;            /* NODE_PR_LINK: the abbreviated hash it points to */
    struct cache_ref *comments_ref; /* NODE_PR_COMMENTS, once read */
    char *scratch;                  /* generated content or link target */
};

/* A directory listing being built. */
struct listing {
    struct tree_dir *dir;
    size_t cap;
};

/*
 * What a kind of node does, a row per kind. A directory has list; a file
 * either open (contents kept in the store) or content (generated, also a
 * link's target). size gives the size where it is known without either
 * (-1 where this node's is not: then open or content tells).
 */
struct node_ops {
    mode_t mode;
    int live; /* changes all the time: see tree_stat.live */
    int (*list)(struct tree *tree, struct node *n, struct listing *l, const char *path);
    int (*content)(struct tree *tree, struct node *n, const char **data, size_t *len);
    int (*open)(struct tree *tree, struct node *n, struct stream **out);
    off_t (*size)(const struct node *n);
    /* the web page (user.bitbucket.html_url), malloc'd; NULL without memory */
    char *(*html_url)(const struct tree *tree, const struct node *n);
    /* a symlink that moves: tree_stat.generation, from what names its target */
    uint64_t (*generation)(const struct node *n);
};

/* The rows, by the file that owns them; NULL where a kind is not theirs. */
const struct node_ops *workspace_ops(enum node_kind kind);
const struct node_ops *refs_ops(enum node_kind kind);
const struct node_ops *commits_ops(enum node_kind kind);
const struct node_ops *source_ops(enum node_kind kind);
const struct node_ops *pullrequests_ops(enum node_kind kind);
const struct node_ops *stats_ops(enum node_kind kind);

/*
 * Resolving the part a file owns (n->parts[0..nparts) is the path): the
 * workspace directory and what it holds (parts 1 and 2), then by parts[2],
 * the name in the repository directory.
 */
int workspace_resolve(struct tree *tree, struct node *n);
int workspace_resolve_file(struct tree *tree, struct node *n); /* repository.json, ... */
int refs_resolve(struct tree *tree, struct node *n);           /* HEAD, branches/, tags/ */
int commits_resolve(struct tree *tree, struct node *n);
int source_resolve(struct tree *tree, struct node *n); /* HASH/tree/..., from commits_resolve */
int pullrequests_resolve(struct tree *tree, struct node *n);
int stats_resolve(struct tree *tree, struct node *n); /* .bbfs/ */

/*
 * After a refresh replaced before by after (objects.c), report the symlinks
 * that point elsewhere now (refs.c): the refs of one listing (what is
 * "branches" or "tags"; indexes of struct api_ref), the HEAD of one
 * repository, the HEADs of a listing of repositories (of struct api_repo).
 */
void refs_report_moved(struct tree *tree, const char *repo, const char *what,
                       const struct name_index *before, const struct name_index *after);
void refs_report_head(struct tree *tree, const struct api_repo *before,
                      const struct api_repo *after);
void refs_report_heads(struct tree *tree, const struct name_index *before,
                       const struct name_index *after);

/* A repository's web page, malloc'd (NULL without memory). */
char *workspace_repo_url(const struct tree *tree, const struct api_repo *repo);

/*
 * The entries of directory dir at commit hash from the API: from one
 * recursive listing when a walk is under way, else alone (source.c).
 */
int source_list_dir(struct tree *tree, const char *repo, const char *hash, const char *dir,
                    struct api_entry_list *out);

/* ---- shared by the parts (tree.c) ---- */

/* Adds an entry to a listing. */
int listing_add(struct listing *l, const char *name, size_t namelen, const struct tree_stat *st);
/* Adds the child called name of the directory at dirpath, with its attributes (-ENOENT: none). */
int listing_add_child(struct tree *tree, struct listing *l, const char *dirpath, const char *name);
/* Adds fixed children, each with its mode and otherwise the attributes st. */
struct fixed_child {
    const char *name;
    mode_t mode;
};
int listing_add_fixed(struct listing *l, const struct fixed_child *children, size_t count,
                      const struct tree_stat *st);

/* A fixed name in a directory, and the kind of node it is. */
struct named_kind {
    const char *name;
    enum node_kind kind;
};
/* Makes n the kind called name in table: 0, or -ENOENT when no row has that name. */
int node_kind_named(struct node *n, const struct named_kind *table, size_t count, const char *name);

/* A JSON document as a file's content. */
int node_doc(const struct api_doc *doc, const char **data, size_t *len);

/* A generation (tree_stat) for a symlink whose target is named by what. */
uint64_t node_generation(const char *what);

/* Content printed into n->scratch: 0, or -ENOMEM when asprintf failed (printed < 0). */
int node_printed(struct node *n, int printed, const char **data, size_t *len);

/*
 * Tells whoever listens (tree_config.changed) that the entry name of
 * directory dir came or went. A ref "a/b" is the entry b of dir/a, and dir/a
 * is itself an entry of dir: both are reported.
 */
void tree_report_changed(struct tree *tree, const char *dir, const char *name);
/* Tells whoever listens (tree_config.moved) that the symlink at path now points elsewhere. */
void tree_report_moved(struct tree *tree, const char *path);

/* Offline, a file or diff that is not stored cannot be had: -EIO, said once. */
int tree_refuse_offline(const struct tree *tree);

#endif

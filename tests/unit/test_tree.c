/*
 * test_tree.c - the tree layer against a fake API (linked in place of api/):
 * hostile names, nested refs, exact sizes, requests per operation.
 *
 * The fake implements api.h from tables below and counts calls, so each
 * test can say how many requests an operation may cost; git's hooks
 * (packs.h) are stubs that leave every tree to it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/api.h"
#include "fs/packs.h"
#include "fs/store.h"
#include "fs/tree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <ftw.h>
#include <unistd.h>

#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define HASH_C "cccccccccccccccccccccccccccccccccccccccc"
#define HASH_UNKNOWN "dddddddddddddddddddddddddddddddddddddddd"

/* ---- the fake API ------------------------------------------------------ */

static struct {
    int list_repos, list_branches, list_tags, list_commits, get_commit, get_workspace, get_project,
        list_dir, get_file, get_diff;
    int fail_repos;        /* errno the next repo listings return */
    size_t branches_shown; /* how many of branches[] the listing has; 0: all */
    int list_prs, get_pr, get_comments, get_pr_diff, expand_hash, list_subtree, get_repo;
    int listing_not_stored; /* api_repos_are_stored says no: repositories are asked for alone */
    int listing_stale;      /* it says yes only for any age: stored, but not fresh */
    int get_repo_error;     /* what api_get_repo returns instead of the repository */
    int pr_scope_missing;   /* pull request calls answer -EACCES */
    int workspace_error;
    int file_error;  /* what api_get_file returns instead of the content */
    time_t refs_age; /* how old the ref listings are, as if stored that long ago */
} fake;

/* Successful opens of store entries (the linker wraps store_lookup for this test). */
static int store_opens;
int __real_store_lookup(struct store *store, const char *key, int *fd, uint64_t *size);
int __wrap_store_lookup(struct store *store, const char *key, int *fd, uint64_t *size);
int __wrap_store_lookup(struct store *store, const char *key, int *fd, uint64_t *size)
{
    int rc = __real_store_lookup(store, key, fd, size);
    if (rc == 0)
        __atomic_fetch_add(&store_opens, 1, __ATOMIC_SEQ_CST);
    return rc;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void set_doc(struct api_doc *doc, const char *text)
{
    doc->text = strdup(text);
    doc->len = strlen(text);
}

int api_is_full_hash(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!strchr("0123456789abcdef", s[n]))
            return 0;
    return n == API_HASH_LEN;
}

void api_get_stats(struct api_client *client, struct api_stats *out)
{
    (void)client;
    memset(out, 0, sizeof(*out));
    out->requests = (uint64_t)(fake.list_repos + fake.list_branches);
    out->ratelimit_limit = -1;
    out->by_kind[API_KIND_REPOS] = (uint64_t)fake.list_repos;
}

const char *api_kind_name(enum api_kind kind)
{
    return kind == API_KIND_REPOS ? "repos" : "other";
}

void api_doc_release(struct api_doc *doc)
{
    free(doc->text);
    doc->text = NULL;
}

int api_get_workspace(struct api_client *client, const char *workspace, struct api_doc *out)
{
    (void)client, (void)workspace;
    fake.get_workspace++;
    if (fake.workspace_error)
        return fake.workspace_error;
    set_doc(out, "{\n  \"slug\": \"acme\"\n}\n");
    return 0;
}

int api_get_project(struct api_client *client, const char *workspace, const char *project_key,
                    struct api_doc *out)
{
    (void)client, (void)workspace, (void)project_key;
    fake.get_project++;
    set_doc(out, "{\n  \"key\": \"PLAT\"\n}\n");
    return 0;
}

static const struct {
    const char *slug;
    const char *mainbranch;
    const char *description;
} repos[] = {
    {"web", "main", "Web"},
    {"api", "main", "The public API"},
    {"empty", NULL, ""},
    {"", "main", "empty slug"},
    {".", "main", "dot"},
    {"..", "main", "dotdot"},
    {"a/b", "main", "slash"},
    {"new\nline", "main", "newline"},
    {"workspace.json", "main", "reserved"},
};

int api_list_repos(struct api_client *client, const char *workspace, const char *project_key,
                   struct api_repo_list *out)
{
    (void)client, (void)workspace, (void)project_key;
    fake.list_repos++;
    if (fake.fail_repos)
        return fake.fail_repos;
    size_t n = sizeof(repos) / sizeof(repos[0]);
    out->items = calloc(n, sizeof(*out->items));
    out->count = n;
    for (size_t i = 0; i < n; i++) {
        struct api_repo *r = &out->items[i];
        r->slug = strdup(repos[i].slug);
        r->mainbranch = dup_or_null(repos[i].mainbranch);
        r->description = strdup(repos[i].description);
        r->updated_on = 1700000000 + (int64_t)i;
        char json[128];
        snprintf(json, sizeof(json), "{\n  \"slug\": \"%s\"\n}\n", repos[i].slug);
        set_doc(&r->doc, json);
    }
    return 0;
}

int api_repos_are_stored(struct api_client *client, const char *workspace, const char *project_key,
                         int any_age)
{
    (void)client, (void)workspace, (void)project_key;
    return !fake.listing_not_stored && (any_age || !fake.listing_stale);
}

int api_get_repo(struct api_client *client, const char *workspace, const char *slug,
                 struct api_repo *out)
{
    (void)client, (void)workspace;
    fake.get_repo++;
    memset(out, 0, sizeof(*out));
    if (fake.get_repo_error)
        return fake.get_repo_error;
    for (size_t i = 0; i < sizeof(repos) / sizeof(repos[0]); i++) {
        if (strcmp(repos[i].slug, slug) != 0)
            continue;
        out->slug = strdup(repos[i].slug);
        out->mainbranch = dup_or_null(repos[i].mainbranch);
        out->description = strdup(repos[i].description);
        out->project_key = strdup(strcmp(slug, "web") == 0 ? "OPS" : "PLAT");
        set_doc(&out->doc, "{}\n");
        return 0;
    }
    return -ENOENT;
}

void api_repo_release(struct api_repo *repo)
{
    free(repo->slug);
    free(repo->mainbranch);
    free(repo->description);
    free(repo->project_key);
    api_doc_release(&repo->doc);
}

void api_repo_list_release(struct api_repo_list *list)
{
    for (size_t i = 0; i < list->count; i++) {
        free(list->items[i].slug);
        free(list->items[i].mainbranch);
        free(list->items[i].description);
        api_doc_release(&list->items[i].doc);
    }
    free(list->items);
}

static const struct {
    const char *name;
    const char *target;
} branches[] = {
    {"main", HASH_A},      {"feature/x", HASH_B}, {"feature/deep/y", HASH_C},
    {"feature", HASH_C}, /* shadowed by the directory feature/ */
    {"feature-z", HASH_A}, {"a//b", HASH_A},      {"x/../y", HASH_A},
    {"trailing/", HASH_A}, {"bad\tname", HASH_A},
};

static int fill_refs(struct api_ref_list *out, int tags)
{
    size_t n = tags ? 1 : sizeof(branches) / sizeof(branches[0]);
    if (!tags && fake.branches_shown)
        n = fake.branches_shown;
    out->items = calloc(n, sizeof(*out->items));
    out->count = n;
    out->fetched_at = fake.refs_age ? (int64_t)(time(NULL) - fake.refs_age) : 0;
    for (size_t i = 0; i < n; i++) {
        out->items[i].name = strdup(tags ? "v1" : branches[i].name);
        strcpy(out->items[i].target, tags ? HASH_B : branches[i].target);
        out->items[i].date = 1600000000;
    }
    return 0;
}

int api_list_branches(struct api_client *client, const char *workspace, const char *repo,
                      struct api_ref_list *out)
{
    (void)client, (void)workspace, (void)repo;
    fake.list_branches++;
    return fill_refs(out, 0);
}

int api_list_tags(struct api_client *client, const char *workspace, const char *repo,
                  struct api_ref_list *out)
{
    (void)client, (void)workspace, (void)repo;
    fake.list_tags++;
    return fill_refs(out, 1);
}

void api_ref_list_release(struct api_ref_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i].name);
    free(list->items);
}

int api_list_commits(struct api_client *client, const char *workspace, const char *repo,
                     const char *revision, size_t limit, struct api_commit_list *out)
{
    (void)client, (void)workspace, (void)repo, (void)revision;
    fake.list_commits++;
    size_t n = limit < 2 ? limit : 2;
    out->items = calloc(2, sizeof(*out->items));
    out->count = n;
    strcpy(out->items[0].hash, HASH_A);
    out->items[0].date = 1650000000;
    if (n > 1) {
        strcpy(out->items[1].hash, HASH_B);
        out->items[1].date = 1640000000;
    }
    return 0;
}

void api_commit_list_release(struct api_commit_list *list)
{
    free(list->items);
}

int api_get_commit(struct api_client *client, const char *workspace, const char *repo,
                   const char *hash, struct api_commit *out)
{
    (void)client, (void)workspace, (void)repo;
    fake.get_commit++;
    if (!api_is_full_hash(hash))
        return -EINVAL;
    if (strcmp(hash, HASH_UNKNOWN) == 0)
        return -ENOENT;
    strcpy(out->hash, hash);
    out->date = strcmp(hash, HASH_A) == 0 ? 1650000000 : 1640000000;
    out->message = strdup("Subject line\n\nBody with ünïcödé.\n");
    out->parent_count = strcmp(hash, HASH_A) == 0 ? 2 : 0;
    out->parents = calloc(2, sizeof(*out->parents));
    strcpy(out->parents[0], HASH_B);
    strcpy(out->parents[1], HASH_C);
    set_doc(&out->doc, "{\n  \"type\": \"commit\"\n}\n");
    return 0;
}

void api_commit_release(struct api_commit *commit)
{
    free(commit->message);
    free(commit->parents);
    free(commit->html_url);
    api_doc_release(&commit->doc);
}

/* The tree of every commit: a root and one subdirectory. */
static const struct {
    const char *dir;
    const char *name;
    enum api_entry_type type;
    uint64_t size;
    int executable, lfs;
} entries[] = {
    {"", "README.md", API_ENTRY_FILE, 21, 0, 0},
    {"", "run.sh", API_ENTRY_FILE, 18, 1, 0},
    {"", "link", API_ENTRY_LINK, 9, 0, 0},
    {"", "vendor", API_ENTRY_SUBMODULE, 0, 0, 0},
    {"", "src", API_ENTRY_DIR, 0, 0, 0},
    {"", "..", API_ENTRY_DIR, 0, 0, 0},
    {"", "", API_ENTRY_FILE, 1, 0, 0},
    {"", "assets", API_ENTRY_DIR, 0, 0, 0},
    {"src", "main.c", API_ENTRY_FILE, 22, 0, 0},
    {"src", "util.c", API_ENTRY_FILE, 22, 0, 0},
    {"src", "io.h", API_ENTRY_FILE, 20, 0, 0},
    /* in LFS, listed with its pointer's size */
    {"assets", "model.bin", API_ENTRY_FILE, 131, 0, 1},
};

int api_list_dir(struct api_client *client, const char *workspace, const char *repo,
                 const char *hash, const char *dir, struct api_entry_list *out)
{
    (void)client, (void)workspace, (void)repo, (void)hash;
    fake.list_dir++;
    size_t n = sizeof(entries) / sizeof(entries[0]);
    out->items = calloc(n, sizeof(*out->items));
    out->count = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(entries[i].dir, dir) != 0)
            continue;
        struct api_entry *e = &out->items[out->count++];
        e->name = strdup(entries[i].name);
        e->type = entries[i].type;
        e->size = entries[i].size;
        e->executable = entries[i].executable;
        e->lfs = entries[i].lfs;
    }
    return out->count ? 0 : -ENOENT;
}

void api_entry_list_release(struct api_entry_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i].name);
    free(list->items);
}

static int write_all(const struct api_sink *sink, const char *text, uint64_t *size)
{
    *size = strlen(text);
    return sink->write(sink->ctx, text, *size);
}

/* "content of PATH\n", as long as the listing says; the link's target is "README.md". */
int api_get_file(struct api_client *client, const char *workspace, const char *repo,
                 const char *hash, const char *path, const struct api_sink *sink, uint64_t *size)
{
    char text[256];
    (void)client, (void)workspace, (void)repo, (void)hash;
    __atomic_fetch_add(&fake.get_file, 1, __ATOMIC_SEQ_CST); /* readahead threads too */
    if (fake.file_error)
        return fake.file_error;
    if (strcmp(path, "link") == 0)
        return write_all(sink, "README.md", size);
    snprintf(text, sizeof(text), "content of %s\n", path);
    return write_all(sink, text, size);
}

int api_get_diff(struct api_client *client, const char *workspace, const char *repo,
                 const char *hash, const struct api_sink *sink, uint64_t *size)
{
    char text[128];
    (void)client, (void)workspace, (void)repo;
    fake.get_diff++;
    snprintf(text, sizeof(text), "diff of %s\n", hash);
    return write_all(sink, text, size);
}

/* Pull requests: #2 and #10 open (listed), #7 merged (looked up alone). */
static void fill_pr(struct api_pullrequest *pr, uint64_t id)
{
    char json[64];
    pr->id = id;
    pr->title = strdup(id == 2 ? "Add \"quotes\" / slashes" : "A title");
    pr->description = strdup(id == 7 ? "" : "Line one\nLine two");
    pr->state = strdup(id == 7 ? "MERGED" : "OPEN");
    strcpy(pr->source, "bbbbbbbbbbbb");
    strcpy(pr->destination, id == 10 ? "" : "aaaaaaaaaaaa");
    pr->updated_on = 1700000000 + (int64_t)id;
    snprintf(json, sizeof(json), "{\n  \"id\": %llu\n}\n", (unsigned long long)id);
    set_doc(&pr->doc, json);
}

int api_list_pullrequests(struct api_client *client, const char *workspace, const char *repo,
                          struct api_pullrequest_list *out)
{
    (void)client, (void)workspace, (void)repo;
    fake.list_prs++;
    if (fake.pr_scope_missing)
        return -EACCES;
    out->items = calloc(2, sizeof(*out->items));
    out->count = 2;
    fill_pr(&out->items[0], 2);
    fill_pr(&out->items[1], 10);
    return 0;
}

int api_get_pullrequest(struct api_client *client, const char *workspace, const char *repo,
                        uint64_t id, struct api_pullrequest *out)
{
    (void)client, (void)workspace, (void)repo;
    fake.get_pr++;
    if (fake.pr_scope_missing)
        return -EACCES;
    if (id != 7)
        return -ENOENT;
    fill_pr(out, id);
    return 0;
}

void api_pullrequest_release(struct api_pullrequest *pr)
{
    free(pr->title);
    free(pr->description);
    free(pr->state);
    api_doc_release(&pr->doc);
}

void api_pullrequest_list_release(struct api_pullrequest_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        api_pullrequest_release(&list->items[i]);
    free(list->items);
}

int api_get_pullrequest_comments(struct api_client *client, const char *workspace, const char *repo,
                                 uint64_t id, struct api_doc *out)
{
    (void)client, (void)workspace, (void)repo, (void)id;
    fake.get_comments++;
    set_doc(out, "[\n  {\n    \"id\": 1\n  }\n]\n");
    return 0;
}

int api_get_pullrequest_diff(struct api_client *client, const char *workspace, const char *repo,
                             uint64_t id, const struct api_sink *sink, uint64_t *size)
{
    char text[64];
    (void)client, (void)workspace, (void)repo;
    fake.get_pr_diff++;
    snprintf(text, sizeof(text), "diff of pull request %llu\n", (unsigned long long)id);
    return write_all(sink, text, size);
}

int api_expand_hash(struct api_client *client, const char *workspace, const char *repo,
                    const char *abbrev, char full[API_HASH_LEN + 1])
{
    (void)client, (void)workspace, (void)repo;
    fake.expand_hash++;
    if (strcmp(abbrev, "bbbbbbbbbbbb") != 0 && strcmp(abbrev, "aaaaaaaaaaaa") != 0)
        return -ENOENT;
    strcpy(full, abbrev[0] == 'b' ? HASH_B : HASH_A);
    return 0;
}

/* Too big, always: the tree falls back to listing directories one by one. */
int api_list_subtree(struct api_client *client, const char *workspace, const char *repo,
                     const char *hash, const char *dir, unsigned max_depth, size_t max_entries,
                     struct api_subtree *out)
{
    (void)client, (void)workspace, (void)repo, (void)hash, (void)dir, (void)max_depth;
    (void)max_entries;
    memset(out, 0, sizeof(*out));
    fake.list_subtree++;
    return -EFBIG;
}

void api_subtree_release(struct api_subtree *tree)
{
    (void)tree;
}

/* ---- git's hooks (fs/packs.h): no git here, every tree from the fake API ---- */

int packs_look(struct tree *tree, const struct api_repo *repo, const char *hash)
{
    (void)tree, (void)repo, (void)hash;
    return 0;
}

int packs_list_dir(struct tree *tree, const char *repo, const char *hash, const char *dir,
                   int walking, struct api_entry_list *out)
{
    (void)tree, (void)repo, (void)hash, (void)dir, (void)walking, (void)out;
    return -ENODATA;
}

int packs_commit_date(struct tree *tree, const struct api_repo *repo, const char *hash,
                      int64_t *date)
{
    (void)tree, (void)repo, (void)hash, (void)date;
    return -ENODATA;
}

int packs_reading(struct tree *tree, const char *repo, const char *hash)
{
    (void)tree, (void)repo, (void)hash;
    return -ENODATA;
}

int packs_settle(struct tree *tree, const char *repo, const char *hash)
{
    (void)tree, (void)repo, (void)hash;
    return 0;
}

int packs_refs(struct tree *tree, const struct api_repo *repo, int tags, struct cache_ref **ref)
{
    (void)tree, (void)repo, (void)tags, (void)ref;
    return -ENODATA;
}

void packs_print_stats(struct tree *tree, FILE *f)
{
    (void)tree, (void)f;
}

/* ---- helpers ----------------------------------------------------------- */

static char store_dir[] = "/tmp/bbfs-test-store-XXXXXX";
static struct store *store;

static int read_all(struct tree *tree, const char *path, char **data, size_t *len)
{
    struct tree_file f;
    int rc = tree_open(tree, path, &f);
    if (rc)
        return rc;
    if (f.content) {
        struct tree_span all;
        assert_int_equal(tree_file_span(&f, 0, SIZE_MAX, &all), 0);
        *len = all.len;
        *data = malloc(*len + 1);
        assert_int_equal(pread(all.fd, *data, *len, 0), (ssize_t)*len);
        tree_span_release(&all);
    } else {
        *len = f.len;
        *data = f.data;
        f.data = NULL;
    }
    tree_file_release(&f);
    return 0;
}

static int setup(void **state)
{
    char err[256];
    struct tree_config cfg = {
        .workspace = "acme", .project = "PLAT", .ttl = 60, .commit_limit = 100};
    if (!store) {
        assert_non_null(mkdtemp(store_dir));
        assert_int_equal(store_open(store_dir, UINT64_C(1) << 30, &store, err, sizeof(err)), 0);
    }
    cfg.store = store;
    struct tree *tree;
    memset(&fake, 0, sizeof(fake));
    assert_int_equal(tree_new(&cfg, NULL, &tree), 0);
    *state = tree;
    return 0;
}

static int teardown(void **state)
{
    tree_free(*state);
    return 0;
}

static char *list_names(struct tree *tree, const char *path)
{
    struct tree_dir dir;
    static char names[1024];
    names[0] = '\0';
    if (tree_list(tree, path, &dir) != 0)
        return NULL;
    for (size_t i = 0; i < dir.count; i++) {
        strcat(names, dir.entries[i].name);
        strcat(names, i + 1 < dir.count ? " " : "");
    }
    tree_dir_release(&dir);
    return names;
}

static char *link_of(struct tree *tree, const char *path)
{
    static char target[256];
    char *t = NULL;
    if (tree_readlink(tree, path, &t) != 0)
        return NULL;
    snprintf(target, sizeof(target), "%s", t);
    free(t);
    return target;
}

/* ---- tests ------------------------------------------------------------- */

static void test_hostile_repo_names_skipped(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    assert_string_equal(list_names(tree, "acme"), "workspace.json project.json api empty web");
    assert_int_equal(tree_stat(tree, "acme/..", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/a", &st), -ENOENT);
    /* The reserved name is the workspace document, not the repository. */
    char *data;
    size_t len;
    assert_int_equal(read_all(tree, "acme/workspace.json", &data, &len), 0);
    assert_memory_equal(data, "{\n  \"slug\": \"acme\"\n}\n", len);
    free(data);
    assert_int_equal(tree_stat(tree, "other", &st), -ENOENT);
}

static void test_listing_is_cached_and_probes_are_free(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    assert_non_null(list_names(tree, "acme"));
    int calls = fake.list_repos;
    assert_int_equal(tree_stat(tree, "acme/.git", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/api/.git", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/api/HEAD.lock", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/api/branches/nope", &st), -ENOENT);
    assert_non_null(list_names(tree, "acme"));
    assert_int_equal(fake.list_repos, calls);
    assert_int_equal(fake.list_branches, 1);
}

static void test_nested_refs(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    assert_string_equal(list_names(tree, "acme/api/branches"), "feature-z feature main");
    assert_string_equal(list_names(tree, "acme/api/branches/feature"), "deep x");
    assert_string_equal(list_names(tree, "acme/api/branches/feature/deep"), "y");
    assert_string_equal(link_of(tree, "acme/api/branches/main"), "../commits/" HASH_A);
    assert_string_equal(link_of(tree, "acme/api/branches/feature/x"), "../../commits/" HASH_B);
    assert_string_equal(link_of(tree, "acme/api/branches/feature/deep/y"),
                        "../../../commits/" HASH_C);
    assert_string_equal(link_of(tree, "acme/api/tags/v1"), "../commits/" HASH_B);
    assert_string_equal(link_of(tree, "acme/api/HEAD"), "branches/main");
    assert_int_equal(tree_stat(tree, "acme/api/branches/feature", &st), 0);
    assert_true(S_ISDIR(st.mode));
    assert_int_equal(tree_stat(tree, "acme/api/branches/feature/x", &st), 0);
    assert_true(S_ISLNK(st.mode));
    assert_int_equal(st.size, (off_t)strlen("../../commits/" HASH_B));
    /* Hostile ref names are never reachable. */
    assert_int_equal(tree_stat(tree, "acme/api/branches/a", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/api/branches/x", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/api/branches/trailing", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/api/branches/fea", &st), -ENOENT);
}

static void test_empty_repository(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    assert_string_equal(list_names(tree, "acme/empty"),
                        "repository.json description clone-url branches tags commits pullrequests");
    assert_int_equal(tree_stat(tree, "acme/empty/HEAD", &st), -ENOENT);
    assert_string_equal(list_names(tree, "acme/empty/commits"), "");
}

/* Every file's st_size equals the bytes read, everywhere in the tree. */
static void check_sizes(struct tree *tree, const char *path, int depth)
{
    struct tree_dir dir;
    assert_int_equal(tree_list(tree, path, &dir), 0);
    for (size_t i = 0; i < dir.count; i++) {
        char child[512];
        struct tree_stat st;
        snprintf(child, sizeof(child), "%s%s%s", path, *path ? "/" : "", dir.entries[i].name);
        assert_int_equal(tree_stat(tree, child, &st), 0);
        assert_int_equal(st.mode, dir.entries[i].st.mode);
        if (S_ISREG(st.mode)) {
            char *data;
            size_t len;
            assert_int_equal(read_all(tree, child, &data, &len), 0);
            assert_int_equal((size_t)st.size, len);
            free(data);
        } else if (S_ISDIR(st.mode) && depth < 6) {
            check_sizes(tree, child, depth + 1);
        }
    }
    tree_dir_release(&dir);
}

static void test_sizes_match_contents(void **state)
{
    check_sizes(*state, "", 0);
}

static void test_commits(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    assert_string_equal(list_names(tree, "acme/api/commits"), HASH_A " " HASH_B);
    /* A listed commit's directory costs no request of its own. */
    assert_int_equal(tree_stat(tree, "acme/api/commits/" HASH_A, &st), 0);
    assert_int_equal(fake.get_commit, 0);
    assert_int_equal(st.mtime, 1650000000);
    assert_true(st.immutable);

    assert_string_equal(list_names(tree, "acme/api/commits/" HASH_A),
                        "commit.json message parents diff tree");
    assert_string_equal(list_names(tree, "acme/api/commits/" HASH_A "/parents"), HASH_B " " HASH_C);
    assert_string_equal(link_of(tree, "acme/api/commits/" HASH_A "/parents/" HASH_B),
                        "../../" HASH_B);
    char *data;
    size_t len;
    assert_int_equal(read_all(tree, "acme/api/commits/" HASH_A "/message", &data, &len), 0);
    assert_memory_equal(data, "Subject line\n\nBody with ünïcödé.\n", len);
    free(data);
    assert_int_equal(fake.get_commit, 1);

    /* Unlisted but real: looked up. Invalid: no request at all. */
    assert_int_equal(tree_stat(tree, "acme/api/commits/" HASH_C, &st), 0);
    int calls = fake.get_commit;
    assert_int_equal(tree_stat(tree, "acme/api/commits/xyz", &st), -ENOENT);
    assert_int_equal(
        tree_stat(tree, "acme/api/commits/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/api/commits/" HASH_A "0", &st), -ENOENT);
    assert_int_equal(fake.get_commit, calls);
    /* Unknown: one request, then remembered. */
    assert_int_equal(tree_stat(tree, "acme/api/commits/" HASH_UNKNOWN, &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/api/commits/" HASH_UNKNOWN "/message", &st), -ENOENT);
    assert_int_equal(fake.get_commit, calls + 1);
    assert_int_equal(tree_stat(tree, "acme/api/commits/" HASH_A "/parents/" HASH_UNKNOWN, &st),
                     -ENOENT);
}

static void test_errors_are_not_cached(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    fake.fail_repos = -EIO;
    assert_int_equal(tree_stat(tree, "acme/api", &st), -EIO);
    fake.fail_repos = 0;
    assert_int_equal(tree_stat(tree, "acme/api", &st), 0);
    assert_int_equal(fake.list_repos, 2);
}

static void test_unreadable_workspace_is_absent(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    fake.workspace_error = -EACCES;
    assert_string_equal(list_names(tree, "acme"), "project.json api empty web");
    assert_int_equal(tree_stat(tree, "acme/workspace.json", &st), -ENOENT);
}

static void test_text_files(void **state)
{
    struct tree *tree = *state;
    char *data;
    size_t len;
    assert_int_equal(read_all(tree, "acme/api/description", &data, &len), 0);
    assert_memory_equal(data, "The public API\n", len);
    free(data);
    assert_int_equal(read_all(tree, "acme/api/clone-url", &data, &len), 0);
    assert_memory_equal(data, "https://x-token-auth@bitbucket.org/acme/api.git\n", len);
    free(data);
    assert_int_equal(read_all(tree, "acme/api", &data, &len), -EISDIR);
}

static void test_files_at_a_commit(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    const char *root = "acme/api/commits/" HASH_A "/tree";
    char path[256];
    assert_string_equal(list_names(tree, root), "README.md assets link run.sh src vendor");
    assert_int_equal(fake.list_dir, 1);

    /* Attributes come from the listing: no download for a stat. */
    snprintf(path, sizeof(path), "%s/run.sh", root);
    assert_int_equal(tree_stat(tree, path, &st), 0);
    assert_int_equal(st.mode, S_IFREG | 0555);
    assert_int_equal(st.size, 18);
    assert_int_equal(st.mtime, 1650000000);
    snprintf(path, sizeof(path), "%s/vendor", root);
    assert_int_equal(tree_stat(tree, path, &st), 0);
    assert_true(S_ISDIR(st.mode));
    assert_string_equal(list_names(tree, path), "");
    snprintf(path, sizeof(path), "%s/..", root);
    assert_int_equal(tree_stat(tree, path, &st), -ENOENT);
    assert_int_equal(fake.get_file, 0);

    snprintf(path, sizeof(path), "%s/link", root);
    assert_string_equal(link_of(tree, path), "README.md");

    /* Contents: downloaded once into the store, then served from it. */
    char *data;
    size_t len;
    snprintf(path, sizeof(path), "%s/src/main.c", root);
    assert_int_equal(read_all(tree, path, &data, &len), 0);
    assert_memory_equal(data, "content of src/main.c\n", len);
    free(data);
    int downloads = fake.get_file;
    assert_int_equal(read_all(tree, path, &data, &len), 0);
    free(data);
    assert_int_equal(fake.get_file, downloads);
}

static void test_reading_through_a_directory_reads_ahead(void **state)
{
    struct tree *tree = *state;
    const char *dir = "acme/api/commits/" HASH_C "/tree/src";
    char path[256], *data;
    size_t len;
    int before = __atomic_load_n(&fake.get_file, __ATOMIC_SEQ_CST);

    /* listing order: io.h main.c util.c */
    snprintf(path, sizeof(path), "%s/io.h", dir);
    assert_int_equal(read_all(tree, path, &data, &len), 0);
    free(data);
    assert_int_equal(read_all(tree, path, &data, &len), 0); /* the same file: no reading through */
    free(data);
    snprintf(path, sizeof(path), "%s/main.c", dir);
    assert_int_equal(read_all(tree, path, &data, &len), 0); /* the second file: util.c follows */
    free(data);
    for (int i = 0; i < 200 && __atomic_load_n(&fake.get_file, __ATOMIC_SEQ_CST) < before + 3; i++)
        usleep(10000);
    assert_int_equal(__atomic_load_n(&fake.get_file, __ATOMIC_SEQ_CST), before + 3);
    snprintf(path, sizeof(path), "%s/util.c", dir);
    assert_int_equal(read_all(tree, path, &data, &len), 0);
    assert_memory_equal(data, "content of src/util.c\n", len);
    free(data);
    assert_int_equal(__atomic_load_n(&fake.get_file, __ATOMIC_SEQ_CST), before + 3);
}

static void test_a_repository_without_the_listing(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    fake.listing_not_stored = 1;
    /* going straight into a repository asks for it alone, not for every page of the listing */
    assert_string_equal(list_names(tree, "acme/api/branches"), "feature-z feature main");
    assert_int_equal(tree_stat(tree, "acme/api/HEAD", &st), 0);
    assert_int_equal(fake.get_repo, 1);
    assert_int_equal(fake.list_repos, 0);
    /* one outside the mounted project (PLAT) is not there; a probe is remembered */
    assert_int_equal(tree_stat(tree, "acme/web", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/.git", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/.git", &st), -ENOENT);
    assert_int_equal(fake.get_repo, 3);
    /* once the listing is at hand, it answers */
    assert_non_null(list_names(tree, "acme"));
    assert_int_equal(fake.list_repos, 1);
    assert_int_equal(tree_stat(tree, "acme/empty", &st), 0);
    assert_int_equal(tree_stat(tree, "acme/nothing", &st), -ENOENT);
    assert_int_equal(fake.get_repo, 3);
    fake.listing_not_stored = 0;
}

static void test_store_survives_remount(void **state)
{
    struct tree *tree = *state;
    const char *path = "acme/api/commits/" HASH_B "/tree/README.md";
    char *data;
    size_t len;
    assert_int_equal(read_all(tree, path, &data, &len), 0);
    free(data);
    int downloads = fake.get_file;

    /* A new tree over the same store: the content is on disk already. */
    struct tree *again;
    struct tree_config cfg = {.store = store, .workspace = "acme", .ttl = 60, .commit_limit = 9};
    assert_int_equal(tree_new(&cfg, NULL, &again), 0);
    assert_int_equal(read_all(again, path, &data, &len), 0);
    assert_memory_equal(data, "content of README.md\n", len);
    free(data);
    assert_int_equal(fake.get_file, downloads);
    tree_free(again);
}

static void test_diff_has_its_size_before_reading(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    const char *path = "acme/api/commits/" HASH_C "/diff";
    assert_int_equal(tree_stat(tree, path, &st), 0);
    assert_int_equal(st.size, (off_t)strlen("diff of " HASH_C "\n"));
    char *data;
    size_t len;
    assert_int_equal(read_all(tree, path, &data, &len), 0);
    assert_int_equal(len, (size_t)st.size);
    free(data);
    assert_int_equal(fake.get_diff, 1);
}

static void test_stats_file_counts_what_happened(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    char *data;
    size_t len;
    assert_string_equal(list_names(tree, ""), "acme .bbfs");
    assert_string_equal(list_names(tree, ".bbfs"), "stats");
    assert_non_null(list_names(tree, "acme"));
    assert_int_equal(tree_stat(tree, ".bbfs/stats", &st), 0);
    assert_true(S_ISREG(st.mode) && st.live && !st.immutable && st.size > 0);
    assert_int_equal(read_all(tree, ".bbfs/stats", &data, &len), 0);
    assert_non_null(strstr(data, "\nrequests_repos 1\n"));
    assert_non_null(strstr(data, "\nratelimit_limit unknown\n"));
    assert_non_null(strstr(data, "\nmemory_misses "));
    free(data);
    assert_int_equal(tree_stat(tree, ".bbfs/other", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, ".bbfs/stats/x", &st), -ENOENT);
}

static void test_web_links_as_extended_attributes(void **state)
{
    struct tree *tree = *state;
    char *value;
    size_t len;
    assert_int_equal(tree_listxattr(tree, "acme/api", &value, &len), 0);
    assert_int_equal(len, sizeof("user.bitbucket.html_url"));
    assert_memory_equal(value, "user.bitbucket.html_url", len);
    free(value);
    assert_int_equal(tree_getxattr(tree, "acme/api", "user.bitbucket.html_url", &value, &len), 0);
    assert_int_equal(len, strlen("https://bitbucket.org/acme/api"));
    assert_memory_equal(value, "https://bitbucket.org/acme/api", len);
    free(value);
    assert_int_equal(
        tree_getxattr(tree, "acme/api/commits/" HASH_B, "user.bitbucket.html_url", &value, &len),
        0);
    assert_memory_equal(value, "https://bitbucket.org/acme/api/commits/" HASH_B, len);
    free(value);
    assert_int_equal(tree_getxattr(tree, "acme/api", "user.other", &value, &len), -ENODATA);
    assert_int_equal(
        tree_getxattr(tree, "acme/api/description", "user.bitbucket.html_url", &value, &len),
        -ENODATA);
    assert_int_equal(tree_listxattr(tree, "acme/api/description", &value, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(tree_listxattr(tree, "acme/nope", &value, &len), -ENOENT);
}

static void test_pull_requests(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    char *data;
    size_t len;
    assert_string_equal(list_names(tree, "acme/api/pullrequests"), "2 10");
    assert_string_equal(list_names(tree, "acme/api/pullrequests/2"),
                        "pullrequest.json title description state source destination diff "
                        "comments.json");
    /* #10 has no destination hash: no link */
    assert_int_equal(tree_stat(tree, "acme/api/pullrequests/10/destination", &st), -ENOENT);
    assert_int_equal(read_all(tree, "acme/api/pullrequests/2/title", &data, &len), 0);
    assert_memory_equal(data, "Add \"quotes\" / slashes\n", len);
    free(data);
    assert_int_equal(read_all(tree, "acme/api/pullrequests/2/state", &data, &len), 0);
    assert_memory_equal(data, "OPEN\n", len);
    free(data);
    /* a link's size is known before its abbreviated hash is expanded */
    assert_int_equal(tree_stat(tree, "acme/api/pullrequests/2/source", &st), 0);
    assert_true(S_ISLNK(st.mode));
    assert_int_equal(st.size, (off_t)strlen("../../commits/" HASH_B));
    assert_int_equal(fake.expand_hash, 0);
    assert_string_equal(link_of(tree, "acme/api/pullrequests/2/source"), "../../commits/" HASH_B);
    assert_string_equal(link_of(tree, "acme/api/pullrequests/2/destination"),
                        "../../commits/" HASH_A);
    assert_non_null(link_of(tree, "acme/api/pullrequests/10/source"));
    assert_int_equal(fake.expand_hash, 2); /* one per abbreviated hash */
    assert_int_equal(fake.list_prs, 1);
    assert_int_equal(fake.get_pr, 0); /* the open ones come from the listing */

    /* any other id is asked for alone; a merged one is there, an unknown one is not */
    assert_int_equal(read_all(tree, "acme/api/pullrequests/7/state", &data, &len), 0);
    assert_memory_equal(data, "MERGED\n", len);
    free(data);
    assert_int_equal(read_all(tree, "acme/api/pullrequests/7/description", &data, &len), 0);
    assert_memory_equal(data, "\n", len);
    free(data);
    assert_int_equal(tree_stat(tree, "acme/api/pullrequests/8", &st), -ENOENT);
    assert_int_equal(fake.get_pr, 2);
    /* names that cannot be ids cost nothing */
    assert_int_equal(tree_stat(tree, "acme/api/pullrequests/.git", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/api/pullrequests/07", &st), -ENOENT);
    assert_int_equal(tree_stat(tree, "acme/api/pullrequests/2/nope", &st), -ENOENT);
    assert_int_equal(fake.get_pr, 2);

    /* the diff is fetched once for its size, and read from the store (a walk of an
     * earlier test may have stored it already) */
    int diffs = fake.get_pr_diff;
    assert_int_equal(tree_stat(tree, "acme/api/pullrequests/2/diff", &st), 0);
    assert_int_equal(read_all(tree, "acme/api/pullrequests/2/diff", &data, &len), 0);
    assert_int_equal(len, (size_t)st.size);
    assert_memory_equal(data, "diff of pull request 2\n", len);
    free(data);
    assert_true(fake.get_pr_diff - diffs <= 1);
    assert_int_equal(read_all(tree, "acme/api/pullrequests/2/comments.json", &data, &len), 0);
    assert_non_null(strstr(data, "\"id\": 1"));
    free(data);
}

static void test_pull_requests_without_scope(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    fake.pr_scope_missing = 1;
    assert_string_equal(list_names(tree, "acme/api/pullrequests"), "");
    assert_int_equal(tree_stat(tree, "acme/api/pullrequests/7", &st), -ENOENT);
    fake.pr_scope_missing = 0;
}

static char changes[1024];

static void record_change(void *ctx, const char *dir, const char *name)
{
    (void)ctx;
    snprintf(changes + strlen(changes), sizeof(changes) - strlen(changes), "%s|%s;", dir, name);
}

static void test_refresh_reports_names_that_came_and_went(void **state)
{
    struct tree *tree;
    struct tree_config cfg = {
        .store = store, .workspace = "acme", .ttl = 0, .commit_limit = 9, .changed = record_change};
    (void)state;
    assert_int_equal(tree_new(&cfg, NULL, &tree), 0);
    fake.branches_shown = 1;
    changes[0] = '\0';
    assert_string_equal(list_names(tree, "acme/api/branches"), "main");
    assert_string_equal(changes, ""); /* a first listing replaces nothing */

    fake.branches_shown = 0;
    tree_expire(tree); /* a second later, or SIGHUP: the uses of one second share a fetch */
    assert_string_equal(list_names(tree, "acme/api/branches"), "feature-z feature main");
    const char *came = "acme/api/branches|feature-z;"
                       "acme/api/branches/feature/deep|y;acme/api/branches/feature|deep;"
                       "acme/api/branches|feature;"
                       "acme/api/branches/feature|x;acme/api/branches|feature;";
    assert_string_equal(changes, came);

    changes[0] = '\0';
    tree_expire(tree);
    assert_non_null(list_names(tree, "acme/api/branches"));
    assert_string_equal(changes, ""); /* the same listing again: nothing changed */

    fake.branches_shown = 1;
    tree_expire(tree);
    assert_string_equal(list_names(tree, "acme/api/branches"), "main");
    assert_string_equal(changes, came); /* the same names went */
    fake.branches_shown = 0;
    tree_free(tree);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int remove_file(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    return flag == FTW_F ? remove(path) : 0;
}

/* ---- issue 14 ---------------------------------------------------------- */

/* Issue 14: a look-up falls back to the stale listing the way a listing does. */
static void test_a_repository_the_api_cannot_give_comes_from_the_stale_listing(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    char *data;
    size_t len;
    fake.listing_stale = 1;
    fake.get_repo_error = -EIO; /* the API is down: only stored answers come */
    assert_int_equal(read_all(tree, "acme/api/description", &data, &len), 0);
    assert_memory_equal(data, "The public API\n", len);
    free(data);
    assert_int_equal(fake.get_repo, 1);
    assert_int_equal(fake.list_repos, 1);
    /* the listing, once at hand, answers the others; what it lacks is not there */
    assert_int_equal(tree_stat(tree, "acme/empty", &st), 0);
    assert_int_equal(tree_stat(tree, "acme/nothing", &st), -ENOENT);
    assert_int_equal(fake.get_repo, 1);
    assert_int_equal(fake.list_repos, 1);
    /* an answer about the repository itself is not overruled by the listing */
    struct tree *other;
    struct tree_config cfg = {.store = store, .workspace = "acme", .ttl = 60, .commit_limit = 9};
    assert_int_equal(tree_new(&cfg, NULL, &other), 0);
    fake.get_repo_error = -ENOENT;
    assert_int_equal(tree_stat(other, "acme/api", &st), -ENOENT);
    assert_int_equal(fake.list_repos, 1);
    tree_free(other);
    /* nothing stored at all: the failure as it is */
    fake.listing_not_stored = 1;
    fake.get_repo_error = -EIO;
    assert_int_equal(tree_new(&cfg, NULL, &other), 0);
    assert_int_equal(tree_stat(other, "acme/api", &st), -EIO);
    assert_int_equal(fake.list_repos, 1);
    tree_free(other);
}

/* Issue 14: ttl=0 revalidates at each use, but the uses of one second share one. */
static void test_ttl_zero_shares_one_revalidation_a_second(void **state)
{
    struct tree *tree;
    struct tree_stat st;
    struct tree_config cfg = {
        .store = store, .workspace = "acme", .project = "PLAT", .ttl = 0, .commit_limit = 9};
    (void)state;
    struct timespec t0, t1;
    assert_int_equal(tree_new(&cfg, NULL, &tree), 0);
    fake.listing_stale = 1; /* stored, so never fresh with ttl 0 */
    /* ls -l of the workspace: the listing, then a look-up per name */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_non_null(list_names(tree, "acme"));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tree_stat(tree, "acme/api", &st), 0);
        assert_int_equal(tree_stat(tree, "acme/empty", &st), 0);
        assert_int_equal(tree_stat(tree, "acme/nothing", &st), -ENOENT);
    }
    assert_non_null(list_names(tree, "acme/api/branches"));
    assert_non_null(list_names(tree, "acme/api/branches"));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long elapsed_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    if (elapsed_ms < 1000) { /* (a machine that stalled a second proves nothing) */
        assert_int_equal(fake.list_repos, 1);
        assert_int_equal(fake.list_branches, 1);
    }
    assert_int_equal(fake.get_repo, 0); /* the listing answers, not a request a name */
    /* a use after that second revalidates, once */
    int before = fake.list_repos;
    usleep(1100 * 1000);
    assert_int_equal(tree_stat(tree, "acme/api", &st), 0);
    assert_int_equal(tree_stat(tree, "acme/empty", &st), 0);
    assert_in_range(fake.list_repos, before + 1, before + 2);
    assert_int_equal(fake.get_repo, 0);
    tree_free(tree);
}

/* Issue 13's left-over: an LFS file's size is its content's, whatever the listing says. */
static void test_an_lfs_file_has_its_content_size(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    const char *path = "acme/api/commits/" HASH_B "/tree/assets/model.bin";
    const char *content = "content of assets/model.bin\n";
    char *data;
    size_t len;
    /* (other tests may have read it: the store starts empty) */
    char objects[sizeof(store_dir) + 16];
    snprintf(objects, sizeof(objects), "%s/objects", store_dir);
    assert_int_equal(nftw(objects, remove_file, 8, FTW_PHYS), 0);
    assert_int_equal(tree_stat(tree, path, &st), 0);
    assert_int_equal(st.size, strlen(content));
    assert_int_equal(fake.get_file, 1); /* learnt from the content, now in the store */
    assert_int_equal(tree_stat(tree, path, &st), 0);
    assert_int_equal(st.size, strlen(content));
    assert_int_equal(read_all(tree, path, &data, &len), 0);
    assert_int_equal(len, strlen(content));
    assert_memory_equal(data, content, len);
    free(data);
    assert_int_equal(fake.get_file, 1);
}

/* ---- issue 12: the bugs a review found ---------------------------------- */

static void test_nothing_is_listed_below_a_submodule(void **state)
{
    struct tree *tree = *state;
    struct tree_stat st;
    const char *root = "acme/api/commits/" HASH_A "/tree";
    char path[256];
    assert_non_null(list_names(tree, root));
    int listings = fake.list_dir;
    /* a shell probing inside the submodule, and a path through a file */
    snprintf(path, sizeof(path), "%s/vendor/.git", root);
    assert_int_equal(tree_stat(tree, path, &st), -ENOENT);
    snprintf(path, sizeof(path), "%s/README.md/x", root);
    assert_int_equal(tree_stat(tree, path, &st), -ENOENT);
    assert_int_equal(fake.list_dir, listings);
    /* a real directory is still listed */
    snprintf(path, sizeof(path), "%s/src/main.c", root);
    assert_int_equal(tree_stat(tree, path, &st), 0);
    assert_int_equal(fake.list_dir, listings + 1);
}

static void test_an_evicted_file_whose_download_fails_is_tried_again(void **state)
{
    struct tree *tree = *state;
    const char *path = "acme/api/commits/" HASH_A "/tree/src/util.c";
    char *data;
    size_t len;
    assert_int_equal(read_all(tree, path, &data, &len), 0);
    free(data);
    /* the store lets it go (cache_size=), and the next download fails */
    char objects[sizeof(store_dir) + 16];
    snprintf(objects, sizeof(objects), "%s/objects", store_dir);
    assert_int_equal(nftw(objects, remove_file, 8, FTW_PHYS), 0);
    fake.file_error = -EIO;
    assert_int_equal(read_all(tree, path, &data, &len), -EIO);
    /* the next read asks again, and gets it */
    fake.file_error = 0;
    int downloads = fake.get_file;
    assert_int_equal(read_all(tree, path, &data, &len), 0);
    assert_memory_equal(data, "content of src/util.c\n", len);
    free(data);
    assert_int_equal(fake.get_file, downloads + 1);
}

static void test_a_stored_answer_is_trusted_for_what_is_left_of_ttl(void **state)
{
    struct tree *tree = *state; /* ttl 60 */
    /* the API answers from a listing it stored 58 s ago: 2 s of the ttl are left */
    fake.refs_age = 58;
    assert_non_null(list_names(tree, "acme/api/branches"));
    assert_int_equal(fake.list_branches, 1);
    usleep(2500 * 1000);
    assert_non_null(list_names(tree, "acme/api/branches"));
    assert_int_equal(fake.list_branches, 2);
    fake.refs_age = 0;
}

static void test_an_open_resolves_and_opens_once(void **state)
{
    struct tree *tree = *state;
    const char *path = "acme/api/commits/" HASH_B "/diff";
    struct tree_stat st;
    struct tree_file f;
    assert_int_equal(tree_stat(tree, path, &st), 0); /* downloaded for its size */
    int opens = __atomic_load_n(&store_opens, __ATOMIC_SEQ_CST);
    assert_int_equal(tree_open(tree, path, &f), 0);
    assert_int_equal(__atomic_load_n(&store_opens, __ATOMIC_SEQ_CST), opens + 1);
    struct tree_span all;
    assert_int_equal(tree_file_span(&f, 0, SIZE_MAX, &all), 0);
    assert_int_equal(all.len, st.size);
    tree_span_release(&all);
    assert_true(f.st.immutable);
    tree_file_release(&f);
    assert_int_equal(fake.get_diff, 1);
    /* a generated file: its attributes come with the bytes built once */
    assert_int_equal(tree_open(tree, "acme/api/description", &f), 0);
    assert_int_equal((size_t)f.st.size, f.len);
    assert_true(S_ISREG(f.st.mode) && !f.st.immutable);
    tree_file_release(&f);
}

static int remove_store(void **state)
{
    (void)state;
    store_close(store);
    nftw(store_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hostile_repo_names_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listing_is_cached_and_probes_are_free, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nested_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_repository, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sizes_match_contents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_are_not_cached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_workspace_is_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_at_a_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reading_through_a_directory_reads_ahead, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_repository_without_the_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_repository_the_api_cannot_give_comes_from_the_stale_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_zero_shares_one_revalidation_a_second, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_an_lfs_file_has_its_content_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_survives_remount, setup, teardown),
        cmocka_unit_test_setup_teardown(test_diff_has_its_size_before_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_reports_names_that_came_and_went, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stats_file_counts_what_happened, setup, teardown),
        cmocka_unit_test_setup_teardown(test_web_links_as_extended_attributes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_requests_without_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_is_listed_below_a_submodule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_evicted_file_whose_download_fails_is_tried_again,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_stored_answer_is_trusted_for_what_is_left_of_ttl,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_open_resolves_and_opens_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, remove_store);
}

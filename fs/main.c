/*
 * main.c - bbfs: mount a Bitbucket Cloud workspace or project read-only.
 *
 * The order matters for users: parse the options (bbfs's, then FUSE's in
 * fuse_session_new), check the mountpoint (not a dead mount, not one in use),
 * load the token, check the token and workspace/project with one request,
 * and only then mount and go to the background, so that every start-up
 * failure is one clear line on the terminal, sent before any request when it
 * can be, and leaves nothing mounted. What is logged meanwhile is held until
 * the mount is up (an unreachable shared cache, a wrong password for it).
 * Teardown stops the SIGHUP thread before freeing what it refreshes, and
 * frees the shared cache only after every thread that uses it. Try it with
 * `make demo`.
 */
#include "api/api.h"
#include "api/git.h"
#include "api/log.h"
#include "api/pack.h"
#include "fs/hangup.h"
#include "fs/inode.h"
#include "fs/notify.h"
#include "fs/ops.h"
#include "fs/options.h"
#include "fs/packs.h"
#include "fs/responses.h"
#include "fs/shared_cache.h"
#include "fs/store.h"
#include "fs/token.h"
#include "fs/tree.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <mntent.h>
#include <signal.h>
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

static int check_mountpoint(const char *mountpoint)
{
    struct stat st;
    struct statfs sfs;
    int err;
    /*
     * A mount whose daemon died may still answer stat from the kernel's
     * cached attributes; statfs has to ask the daemon, and cannot.
     */
    if (stat(mountpoint, &st) == 0 && statfs(mountpoint, &sfs) != 0 && errno == ENOTCONN) {
        err = ENOTCONN;
    } else if (stat(mountpoint, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        fprintf(stderr, "bbfs: mountpoint '%s' is not a directory\n", mountpoint);
        return -ENOTDIR;
    } else {
        err = errno;
    }
    if (err == ENOTCONN)
        fprintf(stderr,
                "bbfs: mountpoint '%s' is a dead mount (transport endpoint is not connected) "
                "left by an earlier bbfs; run: fusermount3 -u '%s'\n",
                mountpoint, mountpoint);
    else
        fprintf(stderr, "bbfs: cannot use mountpoint '%s': %s\n", mountpoint, strerror(err));
    return -err;
}

/*
 * A second FUSE mount on the same directory would hide the first one
 * silently, and fusermount3 -u would then take off only the top one.
 */
static int check_not_mounted(const char *mountpoint)
{
    char real[PATH_MAX], line[3 * PATH_MAX];
    char type[64] = "", source[256] = "";
    struct mntent entry;
    FILE *mounts;

    /* Nothing is mounted where no path leads; fuse_session_mount says why. */
    if (!realpath(mountpoint, real))
        return 0;
    mounts = setmntent("/proc/self/mounts", "re");
    if (!mounts)
        return 0;
    /* The last mount on a directory is the one on top. */
    while (getmntent_r(mounts, &entry, line, sizeof(line)))
        if (strcmp(entry.mnt_dir, real) == 0) {
            log_sanitize(type, sizeof(type), entry.mnt_type);
            log_sanitize(source, sizeof(source), entry.mnt_fsname);
        }
    endmntent(mounts);
    if (strncmp(type, "fuse", 4) != 0)
        return 0;
    fprintf(stderr,
            "bbfs: mountpoint '%s' is in use: %s (%s) is mounted there; "
            "unmount it first: fusermount3 -u '%s'\n",
            mountpoint, source, type, mountpoint);
    return -EBUSY;
}

/*
 * The store's directory: cache_dir, else $XDG_CACHE_HOME/bbfs, else
 * ~/.cache/bbfs; then one area per API URL and workspace, named by a hash.
 */
static char *store_root(const struct options *opts)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    char *base = NULL, *root = NULL, *area_key = NULL;
    char area[65];

    if (opts->cache_dir && opts->cache_dir[0] == '/') {
        base = strdup(opts->cache_dir);
    } else if (opts->cache_dir) {
        /* Made absolute now: the daemon leaves the working directory behind. */
        char *cwd = getcwd(NULL, 0);
        if (cwd && asprintf(&base, "%s/%s", cwd, opts->cache_dir) < 0)
            base = NULL;
        free(cwd);
    } else if (xdg && xdg[0] == '/') {
        if (asprintf(&base, "%s/bbfs", xdg) < 0)
            base = NULL;
    } else if (home && home[0] == '/') {
        if (asprintf(&base, "%s/.cache/bbfs", home) < 0)
            base = NULL;
    }
    if (!base) {
        fprintf(stderr, "bbfs: no cache directory: set -o cache_dir=, XDG_CACHE_HOME or HOME\n");
        return NULL;
    }
    if (asprintf(&area_key, "%s\n%s", opts->api_url, opts->workspace) >= 0) {
        api_sha256_hex(area_key, strlen(area_key), area);
        if (asprintf(&root, "%s/%.32s", base, area) < 0)
            root = NULL;
    }
    free(area_key);
    free(base);
    return root;
}

static int add_mount_options(struct fuse_args *args, const struct options *opts)
{
    char fsname[256];
    snprintf(fsname, sizeof(fsname), "-ofsname=%s%s%s", opts->workspace, opts->project ? "/" : "",
             opts->project ? opts->project : "");
    if (fuse_opt_add_arg(args, "-oro") != 0 ||
        fuse_opt_add_arg(args, "-odefault_permissions") != 0 ||
        fuse_opt_add_arg(args, "-osubtype=bbfs") != 0 || fuse_opt_add_arg(args, fsname) != 0)
        return -ENOMEM;
    return 0;
}

static int run_session(struct fuse_session *se, const struct fuse_cmdline_opts *cmd)
{
    if (cmd->singlethread)
        return fuse_session_loop(se);
    struct fuse_loop_config *loop = fuse_loop_cfg_create();
    if (!loop)
        return -ENOMEM;
    fuse_loop_cfg_set_clone_fd(loop, (unsigned)cmd->clone_fd);
    /* An unset max_idle_threads is UINT_MAX, which the setter rejects noisily. */
    if (cmd->max_idle_threads != UINT_MAX)
        fuse_loop_cfg_set_idle_threads(loop, cmd->max_idle_threads);
    fuse_loop_cfg_set_max_threads(loop, cmd->max_threads);
    int rc = fuse_session_loop_mt(se, loop);
    fuse_loop_cfg_destroy(loop);
    return rc;
}

/* What a running bbfs holds: bbfs_release frees what is set, in the reverse order of start-up. */
struct bbfs {
    struct fuse_args args;
    struct options opts;
    struct fuse_cmdline_opts cmd;
    struct fuse_session *se;
    int http_ready; /* api_global_init succeeded */
    int git_ready;  /* libgit2 and the pack indexing helper are up */
    struct api_client *api;
    struct shared_cache *shared;
    char *store_dir;
    struct store *store;
    struct responses responses;
    struct git_client *git;
    struct packs *packs;
    struct ops_context ctx;
    struct notify *notify;
    struct tree *tree;
    int handlers_set;
    int mounted;
    struct hangup *hangup;
};

/*
 * SIGHUP forgets every mutable answer, so the next look asks the API (a
 * refresh without unmounting). Called on the hangup thread (hangup.h).
 */
static void refresh(void *arg)
{
    struct bbfs *b = arg;

    log_info("SIGHUP: listings, refs and repository data will be fetched again");
    api_expire(b->api); /* first: what the tree fetches next is revalidated */
    tree_expire(b->tree);
}

/*
 * bbfs's options, then FUSE's (fuse_session_new refuses those nobody knows),
 * then the mountpoint: 0 to go on, 1 when --help or --version answered,
 * -1 after one line on stderr.
 */
static int read_command_line(struct bbfs *b, const char *progname)
{
    char err[512] = "";

    if (options_parse(&b->args, &b->opts, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        return -1;
    }
    if (b->opts.show_help) {
        options_print_help(progname);
        return 1;
    }
    if (b->opts.show_version) {
        printf("bbfs %s (FUSE library %s)\n", BBFS_VERSION, fuse_pkgversion());
        return 1;
    }
    if (fuse_parse_cmdline(&b->args, &b->cmd) != 0)
        return -1;
    if (!b->cmd.mountpoint) {
        fprintf(stderr, "bbfs: no mountpoint given (see bbfs --help)\n");
        return -1;
    }
    log_set_debug(b->cmd.debug);
    if (add_mount_options(&b->args, &b->opts) != 0)
        return -1;
    b->se = fuse_session_new(&b->args, ops_table(), sizeof(struct fuse_lowlevel_ops), &b->ctx);
    if (!b->se)
        return -1;
    if (check_mountpoint(b->cmd.mountpoint) != 0 || check_not_mounted(b->cmd.mountpoint) != 0)
        return -1;
    return 0;
}

/*
 * The cache a fleet shares, when shared_cache= names one: its URL and
 * password are checked here, before any request, and it is reached only
 * after the token proved good. Offline touches no network, Redis included.
 */
static int open_shared_cache(struct bbfs *b, const char *token)
{
    char err[512] = "";

    if (!b->opts.shared_cache)
        return 0;
    if (b->opts.offline) {
        log_info("offline: the shared cache is not used");
        return 0;
    }
    const struct shared_cache_config cfg = {
        .url = b->opts.shared_cache,
        .auth_file = b->opts.shared_cache_auth,
        .token = token,
        .api_url = b->opts.api_url,
        .workspace = b->opts.workspace,
        .ttl = (long)b->opts.ttl,
        .timeout_ms = (long)b->opts.timeout * 1000,
    };
    if (shared_cache_open(&cfg, &b->shared, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        return -1;
    }
    return 0;
}

/*
 * libgit2 and the helper that indexes packs (a fork: while bbfs has one
 * thread, and before it holds the token), when git is to be used. Without
 * them bbfs goes on, every file through the API.
 */
static void start_git(struct bbfs *b)
{
    if (!options_git_url(&b->opts))
        return;
    if (pack_global_init() != 0) {
        log_warn("cannot initialise libgit2: whole trees come from the API");
        return;
    }
    if (pack_indexer_start() != 0) {
        log_warn("cannot start the process that indexes git packs: whole trees come from the API");
        pack_global_cleanup();
        return;
    }
    b->git_ready = 1;
}

/* The git client with the token, only to git_url's origin (git.h). */
static int connect_git(struct bbfs *b, const char *token, char *err, size_t errlen)
{
    struct git_config cfg = {
        .base_url = options_git_url(&b->opts),
        .token = token,
        .ca_file = b->opts.ca_file,
        .timeout_ms = (long)b->opts.timeout * 1000,
        .connect_timeout_ms = (long)(b->opts.timeout < 10 ? b->opts.timeout : 10) * 1000,
    };
    return b->git_ready ? git_client_new(&cfg, &b->git, err, errlen) : 0;
}

/* The token, the clients, and the one request that checks the token (not offline). */
static int connect_api(struct bbfs *b)
{
    char *token = NULL;
    char err[512] = "";
    int rc = -1;

    /* Offline, no request is ever sent: no token is needed, nor prompted for. */
    if (!b->opts.offline && token_load(b->opts.token_file, &token, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        goto out;
    }
    if (api_global_init() != 0) {
        fprintf(stderr, "bbfs: cannot initialise the HTTP library\n");
        goto out;
    }
    b->http_ready = 1;
    struct api_config api_cfg = {
        .base_url = b->opts.api_url,
        .token = token ? token : "",
        .ca_file = b->opts.ca_file,
        .timeout_ms = (long)b->opts.timeout * 1000,
        .connect_timeout_ms = (long)(b->opts.timeout < 10 ? b->opts.timeout : 10) * 1000,
        .ttl = (long)b->opts.ttl,
        .offline = b->opts.offline,
    };
    if (api_client_new(&api_cfg, &b->api, err, sizeof(err)) != 0 ||
        connect_git(b, token, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        goto out;
    }
    if (open_shared_cache(b, token) != 0)
        goto out;
    if (!b->opts.offline &&
        api_check_access(b->api, b->opts.workspace, b->opts.project, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        goto out;
    }
    shared_cache_check(b->shared); /* a wrong password is said while the terminal still listens */
    rc = 0;
out:
    token_free(token);
    return rc;
}

/* Whole trees through git, kept in the store; their packs indexed in STORE/git. */
static int attach_packs(struct bbfs *b)
{
    struct packs_config cfg = {
        .git = b->git,
        .max_pack = b->opts.git_max,
        .cache_size = b->opts.cache_size,
    };
    char *work_dir;
    int rc;

    if (asprintf(&work_dir, "%s/git", b->store_dir) < 0)
        return -1;
    cfg.work_dir = work_dir;
    rc = packs_new(&cfg, &b->packs);
    if (rc)
        fprintf(stderr, "bbfs: cannot make the directory for git's packs '%s': %s\n", work_dir,
                strerror(-rc));
    free(work_dir);
    return rc ? -1 : 0;
}

/* The on-disk store, the inode table, the invalidations and the tree over them. */
static int build_tree(struct bbfs *b)
{
    char err[512] = "";

    b->store_dir = store_root(&b->opts);
    if (!b->store_dir)
        return -1;
    if (store_open(b->store_dir, b->opts.cache_size, &b->store, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        return -1;
    }
    b->responses = (struct responses){.store = b->store, .shared = b->shared};
    responses_attach(b->api, &b->responses);
    if (attach_packs(b) != 0)
        return -1;
    b->ctx.inodes = inode_table_new();
    if (!b->ctx.inodes || notify_new(b->ctx.inodes, &b->notify) != 0)
        return -1;
    struct tree_config tree_cfg = {
        .store = b->store,
        .shared = b->shared,
        .workspace = b->opts.workspace,
        .project = b->opts.project,
        .ttl = (time_t)b->opts.ttl,
        .commit_limit = b->opts.commit_limit,
        .offline = b->opts.offline,
        .changed = notify_changed,
        .moved = notify_moved,
        .changed_ctx = b->notify,
        .packs = b->packs,
    };
    if (tree_new(&tree_cfg, b->api, &b->tree) != 0)
        return -1;
    b->ctx.tree = b->tree;
    b->ctx.ttl = (double)b->opts.ttl;
    return ops_context_init(&b->ctx);
}

/* Mounts, goes to the background (without -f) and serves until unmounted: the exit status. */
static int mount_and_serve(struct bbfs *b)
{
    if (fuse_set_signal_handlers(b->se) != 0)
        return 1;
    b->handlers_set = 1;
    if (fuse_session_mount(b->se, b->cmd.mountpoint) != 0) {
        fprintf(stderr, "bbfs: cannot mount on '%s'\n", b->cmd.mountpoint);
        return 1;
    }
    b->mounted = 1;
    log_release(1); /* what start-up held, still on the terminal: before daemonizing */
    fuse_daemonize(b->cmd.foreground);
    if (!b->cmd.foreground)
        log_use_syslog(1);
    if (notify_start(b->notify, b->se) != 0)
        log_warn("cannot start the invalidation thread: changed names show after ttl");
    if (hangup_start(refresh, b, &b->hangup) != 0)
        log_warn("cannot handle SIGHUP: refreshing needs a remount");

    /* libfuse 3.14 returns the number of the signal that ended the loop. */
    int loop_rc = run_session(b->se, &b->cmd);
    return loop_rc == 0 || loop_rc == SIGTERM || loop_rc == SIGINT ? 0 : 1;
}

static void bbfs_release(struct bbfs *b)
{
    packs_cancel(b->packs);    /* a pack on its way is not waited for */
    hangup_stop(b->hangup);    /* first: it refreshes the client and the tree */
    ops_context_stop(&b->ctx); /* the requests still waiting, answered while it can */
    notify_free(b->notify);    /* before the session it sends invalidations to */
    if (b->mounted) {
        fuse_session_unmount(b->se);
        ops_context_release(&b->ctx);
    }
    if (b->handlers_set)
        fuse_remove_signal_handlers(b->se);
    tree_free(b->tree);
    packs_free(b->packs);
    inode_table_free(b->ctx.inodes);
    shared_cache_free(b->shared); /* when nothing may use it: after FUSE's threads and the tree's */
    store_close(b->store);
    free(b->store_dir);
    git_client_free(b->git);
    if (b->git_ready)
        pack_global_cleanup(); /* and the indexing helper */
    api_client_free(b->api);
    if (b->http_ready)
        api_global_cleanup();
    if (b->se)
        fuse_session_destroy(b->se);
    free(b->cmd.mountpoint);
    log_release(0); /* what a failed start-up held */
    options_release(&b->opts);
    fuse_opt_free_args(&b->args);
}

int main(int argc, char *argv[])
{
    struct bbfs b = {.args = FUSE_ARGS_INIT(argc, argv)};
    int ret = 1;

    /* No core dumps or ptrace by other users: the token lives in this process. */
    prctl(PR_SET_DUMPABLE, 0);
    /*
     * glibc gives each new thread a malloc arena of its own, and what the bounded cache frees
     * in one arena stays resident while its replacements grow another: a network thread
     * started late added 8 MiB for good (test_memory). Two arenas keep memory at the cache's
     * bound; the threads wait on the network, not on malloc.
     */
    mallopt(M_ARENA_MAX, 2);
    /* Before any thread starts, so that every thread inherits it (hangup.h). */
    if (hangup_block() != 0) {
        fprintf(stderr, "bbfs: cannot block SIGHUP\n");
        return 1;
    }
    int rc = read_command_line(&b, argv[0]);
    if (rc > 0) {
        ret = 0;
    } else if (rc == 0) {
        log_hold(); /* until the mount is up, a start-up error is the one line a user sees */
        start_git(&b);
        if (connect_api(&b) == 0 && build_tree(&b) == 0)
            ret = mount_and_serve(&b);
    }
    bbfs_release(&b);
    return ret;
}

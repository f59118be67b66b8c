/*
 * main.c - bbfs: mount a Bitbucket Cloud workspace or project read-only.
 *
 * The order matters for users: parse the options (bbfs's, then FUSE's in
 * fuse_session_new), check the mountpoint (not a dead mount, not one in use),
 * load the token, check the token and workspace/project with one request,
 * and only then mount and go to the background, so that every start-up
 * failure is one clear line on the terminal, sent before any request when it
 * can be, and leaves nothing mounted. What is logged meanwhile is held until
 * the mount is up. Teardown stops the SIGHUP thread before freeing what it
 * refreshes. Try it with `make demo`.
 */
#include "api/api.h"
#include "api/log.h"
#include "fs/hangup.h"
#include "fs/inode.h"
#include "fs/notify.h"
#include "fs/ops.h"
#include "fs/options.h"
#include "fs/responses.h"
#include "fs/store.h"
#include "fs/token.h"
#include "fs/tree.h"

#include <errno.h>
#include <limits.h>
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
    struct api_client *api;
    char *store_dir;
    struct store *store;
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

/* The token, the client, and the one request that checks both (not offline). */
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
    if (api_client_new(&api_cfg, &b->api, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        goto out;
    }
    if (!b->opts.offline &&
        api_check_access(b->api, b->opts.workspace, b->opts.project, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        goto out;
    }
    rc = 0;
out:
    token_free(token);
    return rc;
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
    responses_attach(b->api, b->store);
    b->ctx.inodes = inode_table_new();
    if (!b->ctx.inodes || notify_new(b->ctx.inodes, &b->notify) != 0)
        return -1;
    struct tree_config tree_cfg = {
        .store = b->store,
        .workspace = b->opts.workspace,
        .project = b->opts.project,
        .ttl = (time_t)b->opts.ttl,
        .commit_limit = b->opts.commit_limit,
        .offline = b->opts.offline,
        .changed = notify_changed,
        .moved = notify_moved,
        .changed_ctx = b->notify,
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
    inode_table_free(b->ctx.inodes);
    store_close(b->store);
    free(b->store_dir);
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
        if (connect_api(&b) == 0 && build_tree(&b) == 0)
            ret = mount_and_serve(&b);
    }
    bbfs_release(&b);
    return ret;
}

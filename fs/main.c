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

struct refresh_targets {
    struct tree *tree;
    struct api_client *api;
};

/*
 * SIGHUP forgets every mutable answer, so the next look asks the API (a
 * refresh without unmounting). Called on the hangup thread (hangup.h).
 */
static void refresh(void *arg)
{
    struct refresh_targets *targets = arg;

    log_info("SIGHUP: listings, refs and repository data will be fetched again");
    api_expire(targets->api); /* first: what the tree fetches next is revalidated */
    tree_expire(targets->tree);
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

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct fuse_cmdline_opts cmd;
    struct options opts = {0};
    struct ops_context ctx = {0};
    struct api_client *api = NULL;
    struct tree *tree = NULL;
    struct notify *notify = NULL;
    struct fuse_session *se = NULL;
    struct store *store = NULL;
    struct hangup *hangup = NULL;
    struct refresh_targets targets;
    char *store_dir = NULL;
    char *token = NULL;
    char err[512] = "";
    int ret = 1;

    /* No core dumps or ptrace by other users: the token lives in this process. */
    prctl(PR_SET_DUMPABLE, 0);
    memset(&cmd, 0, sizeof(cmd));
    /* Before any thread starts, so that every thread inherits it (hangup.h). */
    if (hangup_block() != 0) {
        fprintf(stderr, "bbfs: cannot block SIGHUP\n");
        goto err_out1;
    }

    if (options_parse(&args, &opts, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        goto err_out1;
    }
    if (opts.show_help) {
        options_print_help(argv[0]);
        ret = 0;
        goto err_out1;
    }
    if (opts.show_version) {
        printf("bbfs %s (FUSE library %s)\n", BBFS_VERSION, fuse_pkgversion());
        ret = 0;
        goto err_out1;
    }
    if (fuse_parse_cmdline(&args, &cmd) != 0)
        goto err_out2;
    if (!cmd.mountpoint) {
        fprintf(stderr, "bbfs: no mountpoint given (see bbfs --help)\n");
        goto err_out2;
    }
    log_set_debug(cmd.debug);
    /* The session before any request: FUSE refuses the options nobody knows here. */
    if (add_mount_options(&args, &opts) != 0)
        goto err_out2;
    se = fuse_session_new(&args, ops_table(), sizeof(struct fuse_lowlevel_ops), &ctx);
    if (!se)
        goto err_out2;
    if (check_mountpoint(cmd.mountpoint) != 0 || check_not_mounted(cmd.mountpoint) != 0)
        goto err_out3;

    /* Offline, no request is ever sent: no token is needed, nor prompted for. */
    if (!opts.offline && token_load(opts.token_file, &token, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        goto err_out3;
    }
    /* Until the mount is up, a start-up error is the one line a user sees. */
    log_hold();
    if (api_global_init() != 0) {
        fprintf(stderr, "bbfs: cannot initialise the HTTP library\n");
        goto err_out4;
    }
    struct api_config api_cfg = {
        .base_url = opts.api_url,
        .token = token ? token : "",
        .ca_file = opts.ca_file,
        .timeout_ms = (long)opts.timeout * 1000,
        .connect_timeout_ms = (long)(opts.timeout < 10 ? opts.timeout : 10) * 1000,
        .ttl = (long)opts.ttl,
        .offline = opts.offline,
    };
    if (api_client_new(&api_cfg, &api, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        goto err_out5;
    }
    token_free(token);
    token = NULL;
    if (!opts.offline &&
        api_check_access(api, opts.workspace, opts.project, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        goto err_out6;
    }

    store_dir = store_root(&opts);
    if (!store_dir)
        goto err_out6;
    if (store_open(store_dir, opts.cache_size, &store, err, sizeof(err)) != 0) {
        fprintf(stderr, "bbfs: %s\n", err);
        goto err_out6;
    }
    responses_attach(api, store);

    ctx.inodes = inode_table_new();
    if (!ctx.inodes || notify_new(ctx.inodes, &notify) != 0)
        goto err_out7;

    struct tree_config tree_cfg = {
        .store = store,
        .workspace = opts.workspace,
        .project = opts.project,
        .ttl = (time_t)opts.ttl,
        .commit_limit = opts.commit_limit,
        .offline = opts.offline,
        .changed = notify_changed,
        .changed_ctx = notify,
    };
    if (tree_new(&tree_cfg, api, &tree) != 0)
        goto err_out7;
    ctx.tree = tree;
    ctx.ttl = (double)opts.ttl;
    ops_context_init(&ctx);

    if (fuse_set_signal_handlers(se) != 0)
        goto err_out8;
    if (fuse_session_mount(se, cmd.mountpoint) != 0) {
        fprintf(stderr, "bbfs: cannot mount on '%s'\n", cmd.mountpoint);
        goto err_out9;
    }
    log_release(1); /* still on the terminal: before daemonizing */
    fuse_daemonize(cmd.foreground);
    if (!cmd.foreground)
        log_use_syslog(1);
    if (notify_start(notify, se) != 0)
        log_warn("cannot start the invalidation thread: changed names show after ttl");
    targets.tree = tree;
    targets.api = api;
    if (hangup_start(refresh, &targets, &hangup) != 0)
        log_warn("cannot handle SIGHUP: refreshing needs a remount");

    /* libfuse 3.14 returns the number of the signal that ended the loop. */
    int loop_rc = run_session(se, &cmd);
    ret = loop_rc == 0 || loop_rc == SIGTERM || loop_rc == SIGINT ? 0 : 1;

    hangup_stop(hangup); /* before what it refreshes is freed */
    notify_free(notify);
    notify = NULL;
    fuse_session_unmount(se);
    ops_context_release(&ctx);
err_out9:
    fuse_remove_signal_handlers(se);
err_out8:
    tree_free(tree);
err_out7:
    notify_free(notify);
    inode_table_free(ctx.inodes);
err_out6:
    store_close(store);
    free(store_dir);
    api_client_free(api);
err_out5:
    api_global_cleanup();
err_out4:
    token_free(token);
err_out3:
    fuse_session_destroy(se);
err_out2:
    free(cmd.mountpoint);
err_out1:
    log_release(0); /* what start-up held, when it failed */
    options_release(&opts);
    fuse_opt_free_args(&args);
    return ret;
}

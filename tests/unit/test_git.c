/*
 * test_git.c - the git smart-HTTP client (api/git.c, api/gitcurl.c).
 *
 * Against the fake Bitbucket server (tests/fakebb/server.py, started here
 * with the demo data of fixture.py, git's own http-backend behind it): the
 * tips and packs in protocol v2 and v0, a commit that is not a tip, refusals
 * (401, 404), a cut pack, a reset, a hang, the cap, cancelling. Expected
 * values come from git (for-each-ref, ls-tree, index-pack). Against canned
 * answers (canned_server.h): the exact credentials sent, redirects (same
 * origin followed, another origin never contacted), a server that never
 * answers, an answer that is not git's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/git.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/buf.h"
#include "api/gitproto.h"
#include "api/http.h"
#include "tests/unit/canned_server.h"

#define PYTHON "/usr/bin/python3"
#define TOKEN "demo-token"
#define SERVER_DEADLINE_S 30 /* hang guard: the server prints its port well before */

/* ---- the fake server ---- */

static struct {
    char dir[256];     /* mkdtemp: data, log, port file */
    char data[512];    /* data.json */
    char log[512];     /* the request log */
    char base[128];    /* http://127.0.0.1:PORT */
    char git_dir[512]; /* of the api repository */
    pid_t pid;
} fake = {.pid = -1};

/* stdout of a shell command (trailing newline cut), malloc'd; fails the test on error. */
static char *sh(const char *fmt, ...)
{
    char cmd[2048], *out = NULL;
    size_t len = 0;
    FILE *f;
    va_list ap;
    int status;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    f = popen(cmd, "r");
    if (!f)
        fail_msg("cannot run %s", cmd);
    out = malloc(1 << 20);
    assert_non_null(out);
    len = fread(out, 1, (1 << 20) - 1, f);
    out[len] = '\0';
    status = pclose(f);
    if (status != 0)
        fail_msg("failed (%d): %s", status, cmd);
    while (len > 0 && out[len - 1] == '\n')
        out[--len] = '\0';
    return out;
}

static char *git_out(const char *args)
{
    return sh("git --git-dir='%s' %s", fake.git_dir, args);
}

static int start_fake(void **state)
{
    char port_file[600], *out, line[64];
    FILE *f;
    time_t deadline;

    (void)state;
    snprintf(fake.dir, sizeof(fake.dir), "/tmp/bbfs-test-git-XXXXXX");
    if (!mkdtemp(fake.dir))
        return -1;
    out = sh(PYTHON " tests/fakebb/fixture.py --out '%s/demo'", fake.dir);
    snprintf(fake.data, sizeof(fake.data), "%s", out);
    free(out);
    snprintf(fake.git_dir, sizeof(fake.git_dir), "%s/demo/git/acme/api.git", fake.dir);
    snprintf(fake.log, sizeof(fake.log), "%s/requests.jsonl", fake.dir);
    snprintf(port_file, sizeof(port_file), "%s/port", fake.dir);
    fflush(NULL);
    fake.pid = fork();
    if (fake.pid < 0)
        return -1;
    if (fake.pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        execl(PYTHON, PYTHON, "tests/fakebb/server.py", "--data", fake.data, "--port", "0",
              "--port-file", port_file, "--log", fake.log, (char *)NULL);
        _exit(127);
    }
    deadline = time(NULL) + SERVER_DEADLINE_S;
    while (time(NULL) < deadline) {
        f = fopen(port_file, "r");
        if (f && fgets(line, sizeof(line), f)) {
            fclose(f);
            snprintf(fake.base, sizeof(fake.base), "http://127.0.0.1:%d", atoi(line));
            return 0;
        }
        if (f)
            fclose(f);
        if (waitpid(fake.pid, NULL, WNOHANG) == fake.pid)
            break;
        usleep(50000);
    }
    return -1;
}

static int stop_fake(void **state)
{
    char *out;

    (void)state;
    if (fake.pid > 0) {
        kill(fake.pid, SIGTERM);
        waitpid(fake.pid, NULL, 0);
        fake.pid = -1;
    }
    if (fake.dir[0]) {
        out = sh("rm -rf '%s'", fake.dir);
        free(out);
    }
    return 0;
}

static size_t discard(char *data, size_t size, size_t nmemb, void *userp)
{
    (void)data, (void)userp;
    return size * nmemb;
}

/* POST a JSON body to the fake server's control endpoint path. */
static void control(const char *path, const char *json)
{
    char url[256];
    CURL *easy = curl_easy_init();
    long status = 0;

    assert_non_null(easy);
    snprintf(url, sizeof(url), "%s/_fake/%s", fake.base, path);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT, 10L);
    assert_int_equal(curl_easy_perform(easy), CURLE_OK);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(status, 200);
    curl_easy_cleanup(easy);
}

static void knobs(const char *json)
{
    control("knobs", json);
}

static int reset_knobs(void **state)
{
    (void)state;
    control("reset", "");
    return 0;
}

/* Lines of the request log so far. */
static size_t log_mark(void)
{
    FILE *f = fopen(fake.log, "r");
    size_t n = 0;
    int ch;

    if (!f)
        return 0;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

/* The "git" kinds of the git requests logged after line mark, joined by ' '. */
static void git_requests_since(size_t mark, char *out, size_t outlen)
{
    FILE *f = fopen(fake.log, "r");
    char line[8192];
    size_t n = 0;
    json_t *rec;

    out[0] = '\0';
    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        if (n++ < mark)
            continue;
        rec = json_loads(line, 0, NULL);
        assert_non_null(rec);
        if (strcmp(json_string_value(json_object_get(rec, "server")), "git") == 0) {
            if (out[0])
                strncat(out, " ", outlen - strlen(out) - 1);
            strncat(out, json_string_value(json_object_get(rec, "git")), outlen - strlen(out) - 1);
        }
        json_decref(rec);
    }
    fclose(f);
}

static struct git_client *client(const char *base, const char *token, long timeout_ms)
{
    struct git_config cfg = {.base_url = base,
                             .token = token,
                             .timeout_ms = timeout_ms,
                             .connect_timeout_ms = timeout_ms};
    struct git_client *c = NULL;
    char errbuf[256];

    assert_int_equal(git_client_new(&cfg, &c, errbuf, sizeof(errbuf)), 0);
    return c;
}

static int temp_file(void)
{
    char path[] = "/tmp/bbfs-test-pack-XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

static off_t fd_size(int fd)
{
    struct stat st;

    assert_int_equal(fstat(fd, &st), 0);
    return st.st_size;
}

/*
 * Whether the pack in fd holds exactly commit, its trees and blobs (and
 * maybe the tag that was wanted): git index-pack reads it, and its object
 * list is compared with git's own.
 */
static void check_pack_has_commit(int fd, const char *commit)
{
    char pack[600], *listed, *expected;

    snprintf(pack, sizeof(pack), "%s/check.pack", fake.dir);
    free(sh("rm -f '%s' '%s/check.idx'", pack, fake.dir));
    {
        int out = open(pack, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        char buf[65536];
        ssize_t n;

        assert_true(out >= 0);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            assert_int_equal(write(out, buf, (size_t)n), n);
        close(out);
    }
    free(sh("git index-pack '%s' >/dev/null", pack));
    listed = sh("git verify-pack -v '%s/check.idx' | grep -E '^[0-9a-f]{40} (commit|tree|blob) ' "
                "| cut -d' ' -f1 | sort",
                fake.dir);
    expected = sh("(echo %s; git --git-dir='%s' rev-parse %s^{tree}; "
                  "git --git-dir='%s' ls-tree -r -t %s | cut -f1 | cut -d' ' -f3) | sort -u",
                  commit, fake.git_dir, commit, fake.git_dir, commit);
    assert_string_equal(listed, expected);
    free(listed);
    free(expected);
}

/* ---- the fake server: tips ---- */

/* git_tips against git for-each-ref of the api repository. */
static void check_tips(const struct git_tips *tips)
{
    char *branches = git_out("for-each-ref --format='%(refname:lstrip=2) %(objectname)' "
                             "--sort=refname refs/heads");
    char *tags = git_out("for-each-ref --format='%(refname:lstrip=2) %(*objectname)%(objectname)' "
                         "--sort=refname refs/tags");
    char *head = git_out("symbolic-ref --short HEAD");
    char *head_commit = git_out("rev-parse HEAD");
    char got[4096] = "", line[256];
    size_t i;

    for (i = 0; i < tips->branches.count; i++) {
        snprintf(line, sizeof(line), "%s%s %s", i ? "\n" : "", tips->branches.items[i].name,
                 tips->branches.items[i].target);
        strncat(got, line, sizeof(got) - strlen(got) - 1);
        assert_int_equal(tips->branches.items[i].date, 0);
    }
    assert_string_equal(got, branches);
    got[0] = '\0';
    for (i = 0; i < tips->tags.count; i++) {
        snprintf(line, sizeof(line), "%s%s %s", i ? "\n" : "", tips->tags.items[i].name,
                 tips->tags.items[i].target);
        strncat(got, line, sizeof(got) - strlen(got) - 1);
    }
    /* git prints an annotated tag's commit then its own object: keep the commit */
    {
        char want[4096] = "", *save = NULL, *l;
        for (l = strtok_r(tags, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            char *sp = strchr(l, ' ');
            sp[1 + 40] = '\0';
            snprintf(line, sizeof(line), "%s%s", want[0] ? "\n" : "", l);
            strncat(want, line, sizeof(want) - strlen(want) - 1);
        }
        assert_string_equal(got, want);
    }
    assert_string_equal(tips->head, head);
    assert_string_equal(tips->head_commit, head_commit);
    free(branches);
    free(tags);
    free(head);
    free(head_commit);
}

static void tips_in(const char *protocol_knob, int version, const char *requests)
{
    struct git_client *c = client(fake.base, TOKEN, 10000);
    struct git_remote *r = NULL;
    struct git_tips tips;
    struct git_error err;
    struct git_stats stats;
    char seen[256];
    size_t mark;

    knobs(protocol_knob);
    mark = log_mark();
    assert_int_equal(git_discover(c, "acme", "api", &r, &err), 0);
    assert_int_equal(git_remote_version(r), version);
    assert_int_equal(git_remote_tips(c, r, &tips, &err), 0);
    check_tips(&tips);
    git_requests_since(mark, seen, sizeof(seen));
    assert_string_equal(seen, requests);
    git_get_stats(c, &stats);
    assert_int_equal(stats.requests, version == 2 ? 2 : 1);
    assert_int_equal(stats.fetches, 0);
    git_tips_release(&tips);
    git_remote_free(r);
    git_client_free(c);
}

static void test_tips_v2(void **state)
{
    (void)state;
    tips_in("{\"git_protocol\": \"v2\"}", 2, "discover ls-refs");
}

static void test_tips_v0(void **state)
{
    (void)state;
    tips_in("{\"git_protocol\": \"v0\"}", 0, "discover");
}

static void test_tips_of_an_empty_repository(void **state)
{
    static const char *const modes[] = {"{\"git_protocol\": \"v2\"}", "{\"git_protocol\": \"v0\"}"};
    struct git_client *c = client(fake.base, TOKEN, 10000);
    struct git_remote *r;
    struct git_tips tips;
    size_t i;

    (void)state;
    for (i = 0; i < 2; i++) {
        knobs(modes[i]);
        assert_int_equal(git_discover(c, "acme", "empty", &r, NULL), 0);
        assert_int_equal(git_remote_tips(c, r, &tips, NULL), 0);
        assert_null(tips.head);
        assert_string_equal(tips.head_commit, "");
        assert_int_equal(tips.branches.count, 0);
        assert_int_equal(tips.tags.count, 0);
        git_tips_release(&tips);
        git_remote_free(r);
    }
    git_client_free(c);
}

/* ---- the fake server: fetches ---- */

/* Fetches commit (a git revision of api) in protocol mode; rc expected. */
static int fetch(const char *protocol_knob, const char *rev, uint64_t max_bytes, int fd,
                 struct git_error *err, char *seen, size_t seenlen)
{
    struct git_client *c = client(fake.base, TOKEN, 10000);
    struct git_fetch_options opts = {.max_bytes = max_bytes};
    struct git_remote *r = NULL;
    char *commit = git_out(rev);
    uint64_t size = 0;
    size_t mark;
    int rc;

    knobs(protocol_knob);
    mark = log_mark();
    rc = git_discover(c, "acme", "api", &r, err);
    if (rc == 0) {
        size = 99;
        rc = git_remote_fetch(c, r, commit, fd, &opts, &size, err);
    }
    if (rc == 0) {
        assert_int_equal(size, (uint64_t)fd_size(fd));
        check_pack_has_commit(fd, commit);
    } else {
        assert_int_equal(size, 0);
        assert_int_equal(fd_size(fd), 0); /* nothing left behind */
    }
    if (seen)
        git_requests_since(mark, seen, seenlen);
    git_remote_free(r);
    free(commit);
    git_client_free(c);
    return rc;
}

static void test_fetch_head_v2(void **state)
{
    struct git_error err;
    char seen[256];
    int fd = temp_file();

    (void)state;
    assert_int_equal(fetch("{}", "rev-parse HEAD", 0, fd, &err, seen, sizeof(seen)), 0);
    assert_string_equal(seen, "discover fetch");
    close(fd);
}

static void test_fetch_head_v0(void **state)
{
    struct git_error err;
    char seen[256];
    int fd = temp_file();

    (void)state;
    assert_int_equal(
        fetch("{\"git_protocol\": \"v0\"}", "rev-parse HEAD", 0, fd, &err, seen, sizeof(seen)), 0);
    assert_string_equal(seen, "discover fetch");
    close(fd);
}

/* An annotated tag's commit: v0 wants the tag (the advertised tip), and its pack has the commit. */
static void test_fetch_annotated_tag_v0(void **state)
{
    struct git_error err;
    char *type = git_out("cat-file -t v1");
    int fd = temp_file();

    (void)state;
    assert_string_equal(type, "tag");
    assert_int_equal(
        fetch("{\"git_protocol\": \"v0\"}", "rev-parse v1^{commit}", 0, fd, &err, NULL, 0), 0);
    free(type);
    close(fd);
}

static void test_old_commit(void **state)
{
    struct git_error err;
    char seen[256];
    int fd = temp_file();

    (void)state;
    /* main~3 is no branch or tag tip of the demo's api */
    assert_int_equal(fetch("{}", "rev-parse main~3", 0, fd, &err, seen, sizeof(seen)), 0);
    assert_string_equal(seen, "discover fetch");
    /* a v0 server would refuse it: no POST at all */
    assert_int_equal(
        fetch("{\"git_protocol\": \"v0\"}", "rev-parse main~3", 0, fd, &err, seen, sizeof(seen)),
        -EPERM);
    assert_int_equal(err.cause, GIT_CAUSE_REFUSED);
    assert_string_equal(seen, "discover");
    close(fd);
}

static void test_refusals(void **state)
{
    static const struct {
        const char *token, *slug;
        int rc;
        enum git_cause cause;
        long status;
    } cases[] = {
        {"wrong-token", "api", -EACCES, GIT_CAUSE_AUTH, 401},
        {"pat-token", "infra", -ENOENT, GIT_CAUSE_NOT_FOUND, 404}, /* another project's */
        {TOKEN, "no-such-repo", -ENOENT, GIT_CAUSE_NOT_FOUND, 404},
    };
    struct git_client *c;
    struct git_remote *r;
    struct git_error err;
    struct git_stats stats;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c = client(fake.base, cases[i].token, 10000);
        assert_int_equal(git_discover(c, "acme", cases[i].slug, &r, &err), cases[i].rc);
        assert_null(r);
        assert_int_equal(err.cause, cases[i].cause);
        assert_int_equal(err.status, cases[i].status);
        assert_null(strstr(err.message, cases[i].token));
        git_get_stats(c, &stats);
        assert_int_equal(stats.failures[cases[i].cause], 1);
        git_client_free(c);
    }
    knobs("{\"git_fail\": {\"status\": 403, \"request\": \"fetch\"}}");
    {
        int fd = temp_file();
        assert_int_equal(fetch("{}", "rev-parse HEAD", 0, fd, &err, NULL, 0), -EACCES);
        assert_int_equal(err.cause, GIT_CAUSE_AUTH);
        close(fd);
    }
}

static void test_cut_pack(void **state)
{
    struct git_error err;
    int fd = temp_file();

    (void)state;
    knobs("{\"git_cut\": {\"bytes\": 300, \"request\": \"fetch\"}}");
    assert_int_equal(fetch("{}", "rev-parse HEAD", 0, fd, &err, NULL, 0), -EPROTO);
    assert_int_equal(err.cause, GIT_CAUSE_BROKEN);
    /* a reset may come before curl has read what preceded it: broken or unreachable */
    knobs("{\"git_reset\": {\"bytes\": 300, \"request\": \"fetch\"}}");
    assert_true(fetch("{}", "rev-parse HEAD", 0, fd, &err, NULL, 0) < 0);
    assert_true(err.cause == GIT_CAUSE_BROKEN || err.cause == GIT_CAUSE_UNREACHABLE);
    knobs("{\"git_reset\": {\"request\": \"discover\"}}");
    assert_true(fetch("{}", "rev-parse HEAD", 0, fd, &err, NULL, 0) < 0);
    assert_true(err.cause == GIT_CAUSE_BROKEN || err.cause == GIT_CAUSE_UNREACHABLE);
    close(fd);
}

static void test_cap(void **state)
{
    struct git_error err;
    int fd = temp_file();
    off_t whole;

    (void)state;
    assert_int_equal(fetch("{}", "rev-parse HEAD", 0, fd, &err, NULL, 0), 0);
    whole = fd_size(fd);
    assert_int_equal(fetch("{}", "rev-parse HEAD", (uint64_t)whole - 1, fd, &err, NULL, 0), -EFBIG);
    assert_int_equal(err.cause, GIT_CAUSE_TOO_BIG);
    assert_int_equal(fetch("{}", "rev-parse HEAD", (uint64_t)whole, fd, &err, NULL, 0), 0);
    close(fd);
}

/* A server that stops answering: bounded by the client's timeout (generous hang guards). */
static void test_hang(void **state)
{
    static const char *const hangs[] = {"{\"git_hang\": {\"request\": \"discover\"}}",
                                        "{\"git_hang\": {\"request\": \"fetch\"}}"};
    struct git_client *c = client(fake.base, TOKEN, 1500);
    struct git_remote *r = NULL;
    struct git_error err;
    struct timespec t0;
    char *commit = git_out("rev-parse HEAD");
    uint64_t size;
    int fd = temp_file(), rc;
    size_t i;

    (void)state;
    for (i = 0; i < 2; i++) {
        knobs(hangs[i]);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = git_discover(c, "acme", "api", &r, &err);
        if (rc == 0)
            rc = git_remote_fetch(c, r, commit, fd, NULL, &size, &err);
        assert_int_equal(rc, -ETIMEDOUT);
        assert_true(elapsed_ms_since(&t0) < 15000); /* hang guard */
        git_remote_free(r);
        r = NULL;
    }
    free(commit);
    close(fd);
    git_client_free(c);
}

static void test_cancel(void **state)
{
    struct git_client *c = client(fake.base, TOKEN, 10000);
    struct git_remote *r = NULL;
    struct git_error err;
    int cancel = 1, fd = temp_file();
    struct git_fetch_options opts = {.cancel = &cancel};
    char *commit = git_out("rev-parse HEAD");
    uint64_t size;

    (void)state;
    assert_int_equal(git_discover(c, "acme", "api", &r, &err), 0);
    assert_int_equal(git_remote_fetch(c, r, commit, fd, &opts, &size, &err), -EINTR);
    assert_int_equal(err.cause, GIT_CAUSE_CANCELLED);
    assert_int_equal(fd_size(fd), 0);
    cancel = 0;
    assert_int_equal(git_remote_fetch(c, r, commit, fd, &opts, &size, &err), 0);
    assert_true(size > 0);
    git_remote_free(r);
    free(commit);
    close(fd);
    git_client_free(c);
}

/* The token reached the fake server as Basic only, and it never logged it. */
static void test_token_never_logged(void **state)
{
    char *hits;

    (void)state;
    hits = sh("grep -c -F '%s' '%s' || true", TOKEN, fake.log);
    assert_string_equal(hits, "0");
    free(hits);
}

/* ---- canned answers ---- */

#define ONES "1111111111111111111111111111111111111111"
#define TWOS "2222222222222222222222222222222222222222"

/*
 * A canned 200 answer to discovery: a v0 advertisement of HEAD alone, or
 * (hostile) with refs a careless or malicious server might send. *len gets
 * its length.
 */
static char *adv_response_of(int hostile, size_t *len)
{
    static const char first[] = ONES " HEAD\0shallow side-band-64k symref=HEAD:refs/heads/main\n";
    static const char *const refs[] = {
        TWOS " refs/heads/zeta\n", ONES " refs/heads/main\n",  TWOS " refs/heads/main\n",
        ONES " refs/heads/\n",     TWOS " refs/heads/a\tb\n",  TWOS " refs/tags/v1\n",
        ONES " refs/tags/v1^{}\n", ONES " refs/pull/1/head\n",
    };
    struct buf body, all;
    char head[256], *text, *out;
    size_t body_len, i;

    buf_init(&body, 4096);
    pkt_append_str(&body, "# service=git-upload-pack\n");
    pkt_append_flush(&body);
    pkt_append(&body, first, sizeof(first) - 1);
    for (i = 0; hostile && i < sizeof(refs) / sizeof(refs[0]); i++)
        pkt_append_str(&body, refs[i]);
    pkt_append_flush(&body);
    text = buf_take(&body, &body_len);
    assert_non_null(text);
    snprintf(head, sizeof(head),
             "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n",
             body_len);
    buf_init(&all, 8192);
    buf_appends(&all, head);
    buf_append(&all, text, body_len);
    out = buf_take(&all, len);
    assert_non_null(out);
    free(text);
    return out;
}

static char *adv_response(size_t *len)
{
    return adv_response_of(0, len);
}

/* Tips from a hostile advertisement: sorted, one of each name, no empty name, tags peeled. */
static void test_tips_from_a_hostile_advertisement(void **state)
{
    struct canned script[1];
    struct canned_server s;
    struct git_client *c;
    struct git_remote *r = NULL;
    struct git_tips tips;
    char base[64], *adv;
    size_t adv_len;

    (void)state;
    adv = adv_response_of(1, &adv_len);
    script[0] = (struct canned){CANNED_REPLY, adv, 0, adv_len, 0};
    assert_int_equal(server_start(&s, script, 1), 0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", s.port);
    c = client(base, "s3cr3t", 5000);
    assert_int_equal(git_discover(c, "ws", "r", &r, NULL), 0);
    assert_int_equal(git_remote_tips(c, r, &tips, NULL), 0);
    server_stop(&s);
    assert_int_equal(s.nrequests, 1); /* v0: the tips come with the advertisement */
    assert_string_equal(tips.head, "main");
    assert_string_equal(tips.head_commit, ONES);
    assert_int_equal(tips.branches.count, 3);
    assert_string_equal(tips.branches.items[0].name, "a\tb"); /* kept: fs/ decides on names */
    assert_string_equal(tips.branches.items[1].name, "main");
    assert_string_equal(tips.branches.items[2].name, "zeta");
    assert_string_equal(tips.branches.items[2].target, TWOS);
    assert_int_equal(tips.tags.count, 1);
    assert_string_equal(tips.tags.items[0].name, "v1");
    assert_string_equal(tips.tags.items[0].target, ONES);
    git_tips_release(&tips);
    git_remote_free(r);
    git_client_free(c);
    server_release(&s);
    free(adv);
}

static void test_credentials_are_basic_x_token_auth(void **state)
{
    struct canned script[1];
    struct canned_server s;
    struct git_client *c;
    struct git_remote *r = NULL;
    struct git_error err;
    char base[64], value[256], *adv;
    size_t adv_len;
    int rc;

    (void)state;
    adv = adv_response(&adv_len);
    script[0] = (struct canned){CANNED_REPLY, adv, 0, adv_len, 0};
    assert_int_equal(server_start(&s, script, 1), 0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", s.port);
    c = client(base, "s3cr3t", 5000);
    rc = git_discover(c, "ws", "my repo", &r, &err);
    server_stop(&s);
    assert_int_equal(rc, 0);
    assert_int_equal(s.nrequests, 1);
    assert_non_null(
        strstr(s.requests[0], "GET /ws/my%20repo.git/info/refs?service=git-upload-pack "));
    /* base64("x-token-auth:s3cr3t"), and the token nowhere else */
    assert_string_equal(request_header(s.requests[0], "Authorization", value, sizeof(value)),
                        "Basic eC10b2tlbi1hdXRoOnMzY3IzdA==");
    assert_null(strstr(s.requests[0], "s3cr3t"));
    assert_string_equal(request_header(s.requests[0], "Git-Protocol", value, sizeof(value)),
                        "version=2");
    assert_int_equal(git_remote_version(r), 0);
    git_remote_free(r);
    git_client_free(c);
    server_release(&s);
    free(adv);
}

static void test_redirects(void **state)
{
    char same[512], other[512], base[64], other_base[64], value[256], *adv;
    struct canned_server s, o;
    struct canned script[2], other_script[1];
    struct git_client *c;
    struct git_remote *r = NULL;
    struct git_error err;
    size_t adv_len;

    (void)state;
    /* another origin: the same host on another port, which would answer */
    adv = adv_response(&adv_len);
    other_script[0] = (struct canned){CANNED_REPLY, adv, 0, adv_len, 0};
    assert_int_equal(server_start(&o, other_script, 1), 0);
    snprintf(other_base, sizeof(other_base), "http://127.0.0.1:%d", o.port);
    assert_int_equal(server_listen(&s), 0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", s.port);
    snprintf(same, sizeof(same),
             "HTTP/1.1 301 Moved\r\nLocation: %s/ws/moved.git/info/refs?service=git-upload-pack"
             "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
             base);
    snprintf(other, sizeof(other),
             "HTTP/1.1 302 Found\r\nLocation: %s/ws/r.git/info/refs?service=git-upload-pack\r\n"
             "Content-Length: 0\r\nConnection: close\r\n\r\n",
             other_base);
    script[0] = (struct canned){CANNED_REPLY, same, 0, 0, 0};
    script[1] = (struct canned){CANNED_REPLY, other, 0, 0, 0};
    assert_int_equal(server_run(&s, script, 2), 0);
    c = client(base, "s3cr3t", 5000);
    assert_int_equal(git_discover(c, "ws", "r", &r, &err), -EIO);
    assert_null(r);
    assert_int_equal(err.cause, GIT_CAUSE_OTHER);
    server_stop(&s);
    server_stop(&o);
    /* the same-origin redirect was followed, with the credentials; the other origin never asked */
    assert_int_equal(s.nrequests, 2);
    assert_non_null(strstr(s.requests[1], "GET /ws/moved.git/info/refs"));
    assert_string_equal(request_header(s.requests[1], "Authorization", value, sizeof(value)),
                        "Basic eC10b2tlbi1hdXRoOnMzY3IzdA==");
    assert_int_equal(o.nrequests, 0);
    git_client_free(c);
    server_release(&s);
    server_release(&o);

    /* a same-origin redirect that leads to an answer: the remote lives where it led */
    script[1] = (struct canned){CANNED_REPLY, adv, 0, adv_len, 0};
    assert_int_equal(server_listen(&s), 0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", s.port);
    snprintf(same, sizeof(same),
             "HTTP/1.1 301 Moved\r\nLocation: %s/ws/moved.git/info/refs?service=git-upload-pack"
             "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
             base);
    assert_int_equal(server_run(&s, script, 2), 0);
    c = client(base, "s3cr3t", 5000);
    assert_int_equal(git_discover(c, "ws", "r", &r, &err), 0);
    server_stop(&s);
    assert_int_equal(s.nrequests, 2);
    git_remote_free(r);
    git_client_free(c);
    server_release(&s);
    free(adv);
}

static void test_silent_server(void **state)
{
    struct canned script[] = {{CANNED_STALL, NULL, 8000, 0, 0}};
    struct canned_server s;
    struct git_client *c;
    struct git_remote *r = NULL;
    struct git_error err;
    struct timespec t0;
    char base[64];

    (void)state;
    assert_int_equal(server_start(&s, script, 1), 0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", s.port);
    c = client(base, "s3cr3t", 1000);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(git_discover(c, "ws", "r", &r, &err), -ETIMEDOUT);
    assert_true(elapsed_ms_since(&t0) < 6000); /* hang guard */
    assert_int_equal(err.cause, GIT_CAUSE_UNREACHABLE);
    git_client_free(c);
    server_release(&s);
}

static void test_not_git(void **state)
{
    static const char *const dumb = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                    "Content-Length: 6\r\nConnection: close\r\n\r\nhello\n";
    struct canned script[] = {{CANNED_REPLY, dumb, 0, 0, 0}};
    struct canned_server s;
    struct git_client *c;
    struct git_remote *r = NULL;
    struct git_error err;
    char base[64];
    int port;

    (void)state;
    assert_int_equal(server_start(&s, script, 1), 0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", s.port);
    c = client(base, "s3cr3t", 5000);
    assert_int_equal(git_discover(c, "ws", "r", &r, &err), -EPROTO);
    assert_int_equal(err.cause, GIT_CAUSE_BROKEN);
    git_client_free(c);
    server_release(&s);

    /* nobody listening */
    port = s.port;
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
    c = client(base, "s3cr3t", 5000);
    assert_int_equal(git_discover(c, "ws", "r", &r, &err), -EIO);
    assert_int_equal(err.cause, GIT_CAUSE_UNREACHABLE);
    git_client_free(c);
}

/* An error answer's first line is the message, unless it would carry the token. */
static void test_error_messages(void **state)
{
    static const char *const answers[] = {
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
        "Connection: close\r\n\r\nno\x1b[31m access\nmore\n",
        "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
        "Connection: close\r\n\r\nbad password s3cr3t\n",
    };
    static const char *const messages[] = {"HTTP 403: no?[31m access", "HTTP 401"};
    struct canned script[1];
    struct canned_server s;
    struct git_client *c;
    struct git_remote *r = NULL;
    struct git_error err;
    char base[64];
    size_t i;

    (void)state;
    for (i = 0; i < 2; i++) {
        script[0] = (struct canned){CANNED_REPLY, answers[i], 0, 0, 0};
        assert_int_equal(server_start(&s, script, 1), 0);
        snprintf(base, sizeof(base), "http://127.0.0.1:%d", s.port);
        c = client(base, "s3cr3t", 5000);
        assert_int_equal(git_discover(c, "ws", "r", &r, &err), -EACCES);
        assert_int_equal(err.cause, GIT_CAUSE_AUTH);
        assert_string_equal(err.message, messages[i]);
        git_client_free(c);
        server_release(&s);
    }
}

static void test_client_refuses(void **state)
{
    static const struct {
        const char *base, *token;
        int rc;
    } cases[] = {
        {"https://bitbucket.org", "t", 0},
        {"https://bitbucket.org/", "t", 0},
        {"http://127.0.0.1:8080", "t", 0},
        {"http://[::1]:8080", "t", 0},
        {"http://bitbucket.org", "t", -EINVAL},
        {"ftp://bitbucket.org", "t", -EINVAL},
        {"https://user:pw@bitbucket.org", "t", -EINVAL},
        {"https://bitbucket.org/?x=1", "t", -EINVAL},
        {"https://bitbucket.org/#f", "t", -EINVAL},
        {"not a url", "t", -EINVAL},
        {"https://bitbucket.org", "", -EINVAL},
        {"https://bitbucket.org", "a\nb", -EINVAL},
        {"https://bitbucket.org", NULL, -EINVAL},
    };
    struct git_config cfg = {.timeout_ms = 1000, .connect_timeout_ms = 1000};
    struct git_client *c;
    char errbuf[256];
    size_t i;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cfg.base_url = cases[i].base;
        cfg.token = cases[i].token;
        errbuf[0] = '\0';
        rc = git_client_new(&cfg, &c, errbuf, sizeof(errbuf));
        if (rc != cases[i].rc)
            fail_msg("%s: %d, not %d", cases[i].base, rc, cases[i].rc);
        if (rc < 0) {
            assert_null(c);
            assert_true(errbuf[0] != '\0');
        }
        git_client_free(c);
    }
    assert_string_equal(git_cause_name(GIT_CAUSE_REFUSED), "refused");
    assert_string_equal(git_cause_name(GIT_CAUSE_COUNT), "other");
}

int main(void)
{
    const struct CMUnitTest fake_tests[] = {
        cmocka_unit_test_teardown(test_tips_v2, reset_knobs),
        cmocka_unit_test_teardown(test_tips_v0, reset_knobs),
        cmocka_unit_test_teardown(test_tips_of_an_empty_repository, reset_knobs),
        cmocka_unit_test_teardown(test_fetch_head_v2, reset_knobs),
        cmocka_unit_test_teardown(test_fetch_head_v0, reset_knobs),
        cmocka_unit_test_teardown(test_fetch_annotated_tag_v0, reset_knobs),
        cmocka_unit_test_teardown(test_old_commit, reset_knobs),
        cmocka_unit_test_teardown(test_refusals, reset_knobs),
        cmocka_unit_test_teardown(test_cut_pack, reset_knobs),
        cmocka_unit_test_teardown(test_cap, reset_knobs),
        cmocka_unit_test_teardown(test_hang, reset_knobs),
        cmocka_unit_test_teardown(test_cancel, reset_knobs),
        cmocka_unit_test(test_token_never_logged),
    };
    const struct CMUnitTest canned_tests[] = {
        cmocka_unit_test(test_credentials_are_basic_x_token_auth),
        cmocka_unit_test(test_tips_from_a_hostile_advertisement),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_silent_server),
        cmocka_unit_test(test_not_git),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_client_refuses),
    };
    int failed;

    if (http_global_init() < 0)
        return 1;
    failed = cmocka_run_group_tests_name("canned", canned_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("fakebb", fake_tests, start_fake, stop_fake);
    http_global_cleanup();
    return failed;
}

"""
commits/HASH/tree/ and commits/HASH/diff: a commit's files and its diff.

The tree must be exactly what `git archive HASH` gives (names, contents,
symlinks as links, submodules as empty directories), with sizes, modes and
mtimes known before any read and at no request per entry; contents come once
from the API, are shared by concurrent readers, streamed (bbfs's memory does
not grow with a file's size), kept on disk across remounts, private, and free
of the token; LFS contents come through a redirect that never gets the token;
failures are EIO within the timeout and leave nothing wrong in the cache.

Expected values come from git (the `files` fixture repository) or from the
fake server's answer for the same URL, never from hard-coded hashes.
"""

import hashlib
import math
import os
import re
import stat
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import (cat, describe, errno_of, iso_to_epoch, ls, out, run,
                      stat_fmt, timed_errno, user_env)
from helpers import CUT_SHORT, after_the_pause, failed_get, logged

SLUG = "files"
TIMEOUT = 3        # -o timeout= for the tests that wait for a failure
SLACK = 4          # seconds on top of it before we call it a hang
BIG_TIMEOUT = 60   # one command that reads the 60 MiB file (or several trees)
SLOWED = 6         # downloads sent slowly in the read-ahead test ...
SLOW_FILE = 2      # ... taking this many seconds each
RSS_LIMIT = 64 << 20


# The fixture repository comes from conftest's files_demo / files_server.


class Repo:
    """What git says about the `files` repository."""

    def __init__(self, demo):
        self.demo = demo
        self.git_dir = demo.git_dir(SLUG)

    def git(self, *args):
        return self.demo.git(SLUG, *args)

    def git_bytes(self, *args, timeout=60):
        return subprocess.run(["git", "--git-dir", self.git_dir, *args], capture_output=True,
                              timeout=timeout, check=True).stdout

    def main(self):
        return self.demo.branches(SLUG)[self.demo.head_branch(SLUG)]

    def root(self):
        roots = self.demo.rev_list(SLUG, "--max-parents=0", "HEAD")
        assert len(roots) == 1, roots
        return roots[0]

    def merge(self):
        merges = self.demo.rev_list(SLUG, "--merges", "HEAD")
        assert merges, "the fixture should hold a merge commit"
        return merges[0]

    def tags(self):
        return self.demo.tags(SLUG)

    def entries(self, sha):
        """{path: (mode, type, object, size or None)} for every entry, trees included."""
        res = {}
        for rec in self.git_bytes("ls-tree", "-r", "-t", "-l", "-z", sha).split(b"\0"):
            if not rec:
                continue
            meta, path = rec.split(b"\t", 1)
            mode, typ, obj, size = meta.decode().split()
            res[path.decode("utf-8", "surrogateescape")] = (
                mode, typ, obj, None if size == "-" else int(size))
        return res

    def blob(self, obj):
        return self.git_bytes("cat-file", "blob", obj)

    def blob_sha256(self, obj):
        """sha256 of a blob, streamed (the 60 MiB one is not held in memory)."""
        h = hashlib.sha256()
        p = subprocess.Popen(["git", "--git-dir", self.git_dir, "cat-file", "blob", obj],
                             stdout=subprocess.PIPE)
        try:
            for chunk in iter(lambda: p.stdout.read(1 << 20), b""):
                h.update(chunk)
        finally:
            p.stdout.close()
            assert p.wait(60) == 0
        return h.hexdigest()

    def archive(self, sha, dest):
        """`git archive SHA | tar -x -C dest`."""
        dest = Path(dest)
        dest.mkdir(parents=True)
        git = subprocess.Popen(["git", "--git-dir", self.git_dir, "archive", sha],
                               stdout=subprocess.PIPE)
        try:
            tar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=git.stdout,
                                 capture_output=True, timeout=BIG_TIMEOUT)
        finally:
            git.stdout.close()
            assert git.wait(BIG_TIMEOUT) == 0, f"git archive {sha} failed"
        assert tar.returncode == 0, tar.stderr
        return dest

    def biggest(self, sha):
        """(path, object, size) of the largest regular file at sha."""
        files = [(p, e[2], e[3]) for p, e in self.entries(sha).items() if e[1] == "blob"
                 and e[0] != "120000"]
        return max(files, key=lambda f: f[2])


@pytest.fixture
def repo(files_demo):
    return Repo(files_demo)


def commit_dir(m, sha):
    return m.ws / SLUG / "commits" / sha


def tree_of(m, sha):
    return commit_dir(m, sha) / "tree"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Reading the request log


SRC_RE = re.compile(r"/repositories/acme/" + SLUG + r"/src/([0-9a-f]{40})(/.*)?$")
DIFF_RE = re.compile(r"/repositories/acme/" + SLUG + r"/diff/([0-9a-f]{40})/?$")


def src_requests(entries, sha=None):
    """[(hash, path inside the tree without slashes at either end, entry)] of /src requests."""
    res = []
    for e in entries:
        m = SRC_RE.search(urllib.parse.unquote(e["path"]))
        if m and (sha is None or m.group(1) == sha):
            res.append((m.group(1), (m.group(2) or "/").strip("/"), e))
    return res


def raw_requests(entries, repo, sha):
    """/src requests of sha for something that is not a directory (file contents)."""
    trees = {p for p, e in repo.entries(sha).items() if e[1] == "tree"} | {""}
    return [(p, e) for _, p, e in src_requests(entries, sha) if p not in trees]


def listing_requests(entries, repo, sha):
    trees = {p for p, e in repo.entries(sha).items() if e[1] == "tree"} | {""}
    return [(p, e) for _, p, e in src_requests(entries, sha) if p in trees]


def diff_requests(entries, sha=None):
    return [e for e in entries
            if (m := DIFF_RE.search(urllib.parse.unquote(e["path"])))
            and (sha is None or m.group(1) == sha)]


def requests_for(entries, sha, path):
    """The /src requests of sha for exactly this path."""
    return [e for _, p, e in src_requests(entries, sha) if p == path]


def clear_failures(server):
    server.knobs(fail=None, reset=None, hang=None, slow_body=None, latency_ms=0)


def interesting_commits(repo):
    """name -> hash: the root, a merge, the tag commits and main (duplicates dropped)."""
    res = {"root": repo.root(), "merge": repo.merge()}
    for name, sha in sorted(repo.tags().items()):
        res["tag-" + name] = sha
    res["main"] = repo.main()
    seen, out_ = set(), {}
    for k, v in res.items():
        if v not in seen:
            seen.add(v)
            out_[k] = v
    return out_


# --------------------------------------------------------------------------
# The tree is git archive


# Directories whose contents diff -r does not read at some commits: many/ (150 files) is
# read in full at v1 and v2 already, and every file costs a request to the fake server
# (tens of ms each). Their listings are still compared.
SKIP_CONTENT = {"merge": ["many"], "main": ["many"]}


def test_trees_equal_git_archive_and_tags_diff_like_git(mount_factory, files_server, repo,
                                                        tmp_path):
    """`diff -r` of tree/ against `git archive | tar -x` for the root, a merge, both tag
    commits and main (the five run at once: one mount, concurrent readers), then
    `diff -r tags/v1/tree tags/v2/tree` against the same diff of the two archives."""
    commits = interesting_commits(repo)
    assert {"root", "merge", "tag-v1", "tag-v2", "main"} <= set(commits), commits
    m = mount_factory(files_server, target="acme")
    archives = {name: repo.archive(sha, tmp_path / "archive" / name)
                for name, sha in commits.items()}
    procs = {}
    for name, sha in commits.items():
        skip = [a for d in SKIP_CONTENT.get(name, ()) for a in ("-x", d)]
        procs[name] = subprocess.Popen(
            ["diff", "-r", "--no-dereference", *skip, str(tree_of(m, sha)), str(archives[name])],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=user_env())
    problems = []
    # what diff -r skipped is still listed exactly (names, types, sizes)
    for name, dirs in SKIP_CONTENT.items():
        sha = commits[name]
        want = repo.entries(sha)
        for d in dirs:
            got = find_entries(tree_of(m, sha) / d)
            exp = {p[len(d) + 1:]: (expected_kind(e), e[3]) for p, e in want.items()
                   if p.startswith(d + "/")}
            assert exp, f"{d}/ is not in {name}"
            got = {p: (v[0], v[1] if v[0] != "d" else None) for p, v in got.items()}
            exp = {p: (k, sz if k != "d" else None) for p, (k, sz) in exp.items()}
            if got != exp:
                problems.append(f"{name}: {d}/ lists {sorted(set(got) ^ set(exp))} differently")
    end = time.monotonic() + BIG_TIMEOUT
    for name, p in procs.items():
        try:
            o, e = p.communicate(timeout=max(1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs.values():
                q.kill()
            pytest.fail(f"diff -r of {name} did not finish within {BIG_TIMEOUT}s")
        if p.returncode != 0:
            problems.append(f"{name} {commits[name]} (diff exit {p.returncode}):\n{o}{e}")
    # submodules: an empty directory in both
    for name, sha in commits.items():
        for path, e in repo.entries(sha).items():
            if e[1] == "commit":
                a = archives[name] / path
                assert a.is_dir() and not any(a.iterdir()), f"git archive: {a}"
                if ls(tree_of(m, sha) / path) != []:
                    problems.append(f"{name}: submodule {path} is not empty")
    assert any(e[1] == "commit" for e in repo.entries(commits["main"]).values())
    # the tags: the same diff -r output as git's archives (contents are cached by now)
    ta = m.ws / SLUG / "tags" / "v1" / "tree"
    tb = m.ws / SLUG / "tags" / "v2" / "tree"
    got = diff_r(ta, tb)
    want = diff_r(archives["tag-v1"], archives["tag-v2"])
    assert want.returncode == 1 and want.stderr == "", "v1 and v2 should differ:\n" + want.stdout
    norm = lambda text, x, y: text.replace(str(x), "A").replace(str(y), "B")
    if (got.returncode, norm(got.stdout, ta, tb), got.stderr) != \
            (want.returncode, norm(want.stdout, archives["tag-v1"], archives["tag-v2"]), ""):
        problems.append(f"diff -r tags/v1/tree tags/v2/tree (exit {got.returncode}):\n"
                        f"{got.stdout}{got.stderr}\ngit archives (exit {want.returncode}):\n"
                        f"{want.stdout}")
    assert problems == [], "\n".join(problems)


def diff_r(a, b, timeout=BIG_TIMEOUT):
    return run(["diff", "-r", "--no-dereference", a, b], timeout=timeout)


# --------------------------------------------------------------------------
# Attributes from the listing alone


def find_entries(path):
    """{relative path: (type letter, size, octal mode, mtime)} from one `find -printf`."""
    r = run(["find", path, "-mindepth", "1", "-printf", r"%y %s %m %T@ %P\0"], binary=True)
    assert r.returncode == 0, r.stderr
    res = {}
    for rec in r.stdout.split(b"\0"):
        if rec:
            y, s, mode, t, p = rec.split(b" ", 4)
            res[p.decode("utf-8", "surrogateescape")] = (y.decode(), int(s), int(mode, 8),
                                                         float(t))
    return res


def expected_kind(e):
    mode, typ = e[0], e[1]
    if typ == "tree" or typ == "commit":
        return "d"
    return "l" if mode == "120000" else "f"


def test_sizes_types_and_cost_before_any_read(mount_factory, files_server, repo):
    sha = repo.main()
    want = repo.entries(sha)
    m = mount_factory(files_server, target="acme")
    tree = tree_of(m, sha)
    errno_of("stat", commit_dir(m, sha))   # the commit itself is not what is measured
    mark = files_server.log.mark()
    got = find_entries(tree)
    assert set(got) == set(want), (sorted(set(got) ^ set(want)))
    for path, e in want.items():
        kind = expected_kind(e)
        assert got[path][0] == kind, path
        if kind != "d":
            assert got[path][1] == e[3], f"{path}: size {got[path][1]}, git says {e[3]}"
    run(["ls", "-lR", tree], check=True, timeout=BIG_TIMEOUT)
    run(["find", tree, "-ls"], check=True, timeout=BIG_TIMEOUT)
    reqs = files_server.log.since(mark)
    # no file content was fetched: only symlinks (ls -l and find -ls print their targets,
    # which the listing does not carry) and LFS files (the listing's size may be the
    # pointer's: the size is the content's) may be read, once each
    links = {p for p, e in want.items() if e[0] == "120000"}
    raw = raw_requests(reqs, repo, sha)
    assert [p for p, _ in raw if p not in links and p != LFS_FILE] == [], \
        describe([e for _, e in raw])
    assert len(raw) == len({p for p, _ in raw}), "a symlink was read twice:\n" + describe(
        [e for _, e in raw])
    # one listing per directory (submodules need none), plus the extra pages
    # of directories with more than 100 entries
    dirs = [p for p, e in want.items() if e[1] == "tree"] + [""]
    children = {d: 0 for d in dirs}
    for p in want:
        children[os.path.dirname(p)] += 1
    extra = sum(max(0, (n - 1) // 100) for n in children.values())
    assert any(n > 100 for n in children.values()), "the fixture should hold a directory " \
                                                    "with more than 100 entries"
    listings = listing_requests(reqs, repo, sha)
    assert len(listings) <= len(dirs) + extra, describe([e for _, e in listings])
    # and everything else that was asked for belongs to this commit, but the LFS file's
    # content from its host
    others = [e for e in reqs if e not in [x for _, x in listings] + [x for _, x in raw]]
    lfs = [e for e in others if e["server"] == "lfs"]
    assert len(lfs) == 1, describe(lfs)
    assert all(sha in e["path"] for e in others if e["server"] != "lfs"), describe(others)


def test_a_walk_is_answered_by_one_recursive_listing(mount_factory, files_server, repo):
    """
    ls -lR lists directory after directory: after the first few, bbfs lists
    the rest of the tree recursively (max_depth), 100 entries a request, and
    shows exactly what git has.
    """
    sha = repo.main()
    want = repo.entries(sha)
    m = mount_factory(files_server, target="acme")
    tree = tree_of(m, sha)
    errno_of("stat", commit_dir(m, sha))
    mark = files_server.log.mark()
    got = find_entries(tree)
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    reqs = files_server.log.since(mark)
    recursive = [e for e in reqs if "max_depth=" in e.get("query", "")]
    assert recursive, describe(reqs)
    dirs = [p for p, e in want.items() if e[1] == "tree"]
    listings = [e for e in reqs if "/src/" in e["path"] and e["path"].endswith("/")]
    # a few directories one by one, then the pages of one recursive listing
    bound = 3 + math.ceil(len(want) / 100)
    assert len(listings) <= bound < len(dirs), describe(listings)
    # everything below was answered from it: ls -lR costs no listing at all
    mark = files_server.log.mark()
    run(["ls", "-lR", tree], check=True, timeout=BIG_TIMEOUT)
    again = [e for e in files_server.log.since(mark) if e["path"].endswith("/")]
    assert again == [], describe(again)


def test_reading_through_a_directory_reads_ahead(mount_factory, files_server, repo):
    """
    grep -r opens file after file: from the second file of a directory on,
    bbfs downloads the directory's other files with a few threads while grep
    works, each exactly once, and grep sees git's bytes.

    The first SLOWED downloads are sent slowly (SLOW_FILE seconds each): grep reads one
    file at a time, so if any two of them were in flight at once, bbfs was reading ahead.
    """
    sha = repo.main()
    want = {p: e for p, e in repo.entries(sha).items()
            if p.startswith("many/") and e[1] == "blob"}
    assert len(want) > 100
    m = mount_factory(files_server, target="acme")
    tree = tree_of(m, sha)
    ls(tree / "many")
    size = max(e[3] for e in want.values())
    mark = files_server.log.mark()
    files_server.knobs(slow_body={"path_contains": f"/src/{sha}/many/", "count": SLOWED,
                                  "bytes_per_second": max(1, size // SLOW_FILE)})
    r = run(["grep", "-r", "-c", "file number", tree / "many"], timeout=BIG_TIMEOUT)
    assert r.returncode == 0, r.stderr
    counts = dict(ln.rsplit(":", 1) for ln in r.stdout.split("\n") if ln)
    assert {os.path.relpath(p, tree) for p in counts} == set(want)
    assert all(c == "1" for c in counts.values()), r.stdout
    raw = raw_requests(files_server.log.since(mark), repo, sha)
    assert sorted(p for p, _ in raw) == sorted(want), "each file exactly once"
    # slowed downloads overlapped: one started before another had been answered
    slowed = sorted((e["time"], e["time"] + e["duration_ms"] / 1000) for _, e in raw
                    if "slow_body" in e)
    assert len(slowed) == SLOWED, describe([e for _, e in raw][:SLOWED + 2])
    assert any(b[0] < a[1] for a, b in zip(slowed, slowed[1:])), slowed


def test_modes_mtimes_and_symlinks(mount_factory, files_server, repo):
    sha = repo.main()
    want = repo.entries(sha)
    m = mount_factory(files_server, target="acme")
    tree = tree_of(m, sha)
    got = find_entries(tree)
    when = iso_to_epoch(files_server.get_json(f"repositories/acme/{SLUG}/commit/{sha}")["date"])
    assert "bin/run.sh" in want and want["bin/run.sh"][0] == "100755"
    for path, e in want.items():
        kind, _, mode, mtime = got[path]
        if e[0] == "100755":
            assert mode == 0o555, f"{path}: {oct(mode)}"
        elif e[0] == "100644":
            assert mode == 0o444, f"{path}: {oct(mode)}"
        elif kind == "d":
            assert mode & 0o222 == 0, f"{path}: {oct(mode)}"
        assert int(mtime) == when, f"{path}: mtime {mtime}, commit date {when}"
    for p in (commit_dir(m, sha), tree, commit_dir(m, sha) / "diff"):
        assert int(stat_fmt(p, "%Y")) == when, p
    assert stat_fmt(commit_dir(m, sha) / "diff", "%a") == "444"
    # symlinks are links, with git's target, never followed by bbfs itself
    links = {p: e for p, e in want.items() if e[0] == "120000"}
    assert "escape" in links, "the fixture should hold a symlink named 'escape'"
    for path, e in links.items():
        target = repo.blob(e[2]).decode("utf-8", "surrogateescape")
        assert out(["readlink", tree / path]).rstrip("\n") == target, path
        assert errno_of("lstat", tree / path).startswith("OK")
    escape = repo.blob(links["escape"][2]).decode()
    assert escape.startswith("/") or escape.startswith(".."), escape
    # submodules are empty directories
    subs = [p for p, e in want.items() if e[1] == "commit"]
    assert subs, "the fixture should hold a submodule"
    for p in subs:
        assert got[p][0] == "d"
        assert ls(tree / p) == []


# --------------------------------------------------------------------------
# Names


def test_names_exactly(mount_factory, files_server, repo):
    sha = repo.main()
    m = mount_factory(files_server, target="acme")
    tree = tree_of(m, sha)
    names = out(["ls", "-1A", tree]).split("\n")
    names = [n for n in names if n]
    want_root = sorted(p for p in repo.entries(sha) if "/" not in p)
    assert sorted(names) == want_root
    for n in ("-rf", ".gitignore", "ünïcödé.txt", "with space.txt"):
        assert n in names, n
    e = repo.entries(sha)["-rf"]
    r = run(["cat", "--", tree / "-rf"], binary=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == repo.blob(e[2])
    for n in ("ünïcödé.txt", "with space.txt", ".gitignore"):
        assert cat(tree / n) == repo.blob(repo.entries(sha)[n][2]), n


# --------------------------------------------------------------------------
# The diff file


@pytest.mark.parametrize("which", ["root", "merge", "main"])
def test_diff_file_is_the_api_diff(mount_factory, files_server, repo, which):
    sha = interesting_commits(repo)[which]
    m = mount_factory(files_server, target="acme")
    diff = commit_dir(m, sha) / "diff"
    size = int(stat_fmt(diff, "%s"))          # before any read
    status, body = files_server.get_bytes(f"repositories/acme/{SLUG}/diff/{sha}")
    assert status == 200
    assert size == len(body), f"stat says {size}, the diff has {len(body)} bytes"
    assert cat(diff) == body
    assert int(stat_fmt(diff, "%s")) == len(body)


def test_refused_diff_is_eio_logged_once_then_works(mount_factory, files_server, repo):
    sha = repo.main()
    cause = rf"the diff of commit {sha} in 'acme/{SLUG}' is too large for the API \(HTTP 555\)"
    m = mount_factory(files_server, target="acme", options=[f"timeout={TIMEOUT}"],
                      allow=[cause])
    errno_of("stat", tree_of(m, sha))
    err = m.stderr_mark()
    files_server.knobs(fail={"status": 555, "count": -1, "path_contains": "/diff/"})
    e, took = timed_errno("read", commit_dir(m, sha) / "diff", timeout=TIMEOUT + 20)
    assert e == "EIO"
    assert took < TIMEOUT + SLACK, took
    logged(m, err, cause)
    e, took = timed_errno("read", commit_dir(m, sha) / "diff", timeout=TIMEOUT + 20)
    assert e == "EIO"
    assert took < TIMEOUT + SLACK, took
    assert len(m.stderr_since(err)) == 1, "the same failure was logged twice:\n" + m.stderr()
    # the tree does not need the diff
    assert errno_of("listdir", tree_of(m, sha)) == "OK"
    clear_failures(files_server)
    status, body = files_server.get_bytes(f"repositories/acme/{SLUG}/diff/{sha}")
    assert status == 200
    assert int(stat_fmt(commit_dir(m, sha) / "diff", "%s")) == len(body)
    assert cat(commit_dir(m, sha) / "diff") == body


# --------------------------------------------------------------------------
# Downloads: shared, streamed, cached, private


def vm_rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.mark.serial
def test_concurrent_readers_share_one_streamed_download(mount_factory, files_server, repo,
                                                        tmp_path):
    sha = repo.main()
    path, obj, size = repo.biggest(sha)
    assert size >= 60 << 20, (path, size)
    want = repo.blob_sha256(obj)
    # Under AddressSanitizer freed buffers sit in a quarantine (256 MiB by default) and
    # stay resident: keep it small so VmRSS still says whether memory follows file size.
    m = mount_factory(files_server, target="acme",
                      extra_env={"ASAN_OPTIONS": "quarantine_size_mb=1"})
    f = tree_of(m, sha) / path
    assert int(stat_fmt(f, "%s")) == size
    pid = m.proc.pid
    base = vm_rss(pid)
    # slow the body down so that all eight readers overlap with the download
    files_server.knobs(slow_body={"path_contains": "/src/" + sha + "/" + path,
                                  "bytes_per_second": 40 << 20, "count": -1})
    mark = files_server.log.mark()
    outs = [tmp_path / f"out{i}" for i in range(8)]
    procs = []
    for o in outs:
        with open(o, "wb") as fh:
            procs.append(subprocess.Popen(["cat", str(f)], stdin=subprocess.DEVNULL, stdout=fh,
                                          stderr=subprocess.PIPE, env=user_env()))
    peak = base
    end = time.monotonic() + BIG_TIMEOUT
    try:
        while any(p.poll() is None for p in procs):
            if time.monotonic() > end:
                pytest.fail(f"eight readers of {path} did not finish within {BIG_TIMEOUT}s")
            peak = max(peak, vm_rss(pid))
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
    for p in procs:
        assert p.returncode == 0, p.stderr.read()
        p.stderr.close()
    clear_failures(files_server)
    for o in outs:
        assert o.stat().st_size == size, o
        assert sha256_file(o) == want, o
    reqs = files_server.log.since(mark)
    downloads = requests_for(reqs, sha, path)
    assert len(downloads) == 1, describe(downloads)
    assert peak < RSS_LIMIT, f"VmRSS peaked at {peak >> 20} MiB (from {base >> 20} MiB)"
    # and now it is cached
    mark = files_server.log.mark()
    assert sha256_file_via_cat(f, tmp_path / "again") == want
    assert requests_for(files_server.log.since(mark), sha, path) == []


def sha256_file_via_cat(f, dest):
    r = run(f"cat '{f}' > '{dest}'", timeout=BIG_TIMEOUT)
    assert r.returncode == 0, r.stderr
    try:
        return sha256_file(dest)
    finally:
        os.unlink(dest)


def small_files(repo, sha, n=3):
    """A few regular files of the commit (not the big one)."""
    files = sorted((p, e) for p, e in repo.entries(sha).items()
                   if e[1] == "blob" and e[0] != "120000" and 0 < e[3] < (1 << 20))
    return files[:n]


def test_remount_with_the_same_cache_fetches_nothing_again(mount_factory, files_server, repo,
                                                          tmp_path):
    sha = repo.main()
    cache = tmp_path / "shared-cache"
    files = small_files(repo, sha)
    link = next(p for p, e in repo.entries(sha).items() if e[0] == "120000")
    m = mount_factory(files_server, target="acme", cache_dir=cache)
    for p, e in files:
        assert cat(tree_of(m, sha) / p) == repo.blob(e[2]), p
    out(["readlink", tree_of(m, sha) / link])
    diff = cat(commit_dir(m, sha) / "diff")
    assert m.unmount() == []
    m2 = mount_factory(files_server, target="acme", cache_dir=cache)
    mark = files_server.log.mark()
    for p, e in files:
        assert cat(tree_of(m2, sha) / p) == repo.blob(e[2]), p
    target = repo.blob(repo.entries(sha)[link][2]).decode()
    assert out(["readlink", tree_of(m2, sha) / link]).rstrip("\n") == target
    assert cat(commit_dir(m2, sha) / "diff") == diff
    assert int(stat_fmt(commit_dir(m2, sha) / "diff", "%s")) == len(diff)
    reqs = files_server.log.since(mark)
    for p, _ in files + [(link, None)]:
        assert requests_for(reqs, sha, p) == [], describe(reqs)
    assert diff_requests(reqs, sha) == [], describe(reqs)


def test_remount_tree_listings_come_from_cache(mount_factory, files_server, repo, tmp_path):
    """Trees are immutable: a directory listed before is not listed again after a remount."""
    sha = repo.main()
    cache = tmp_path / "shared-cache"
    m = mount_factory(files_server, target="acme", cache_dir=cache)
    before = find_entries(tree_of(m, sha))
    assert m.unmount() == []
    m2 = mount_factory(files_server, target="acme", cache_dir=cache)
    mark = files_server.log.mark()
    assert find_entries(tree_of(m2, sha)) == before
    reqs = files_server.log.since(mark)
    assert src_requests(reqs, sha) == [], describe(reqs)


def test_cache_is_private_and_holds_no_token(mount_factory, files_server, repo):
    sha = repo.main()
    token = "demo-token"
    m = mount_factory(files_server, target="acme", token=token)
    for p, e in small_files(repo, sha, n=5):
        assert cat(tree_of(m, sha) / p) == repo.blob(e[2]), p
    cat(commit_dir(m, sha) / "diff")
    find_entries(tree_of(m, sha))
    cache = Path(m.cache)
    assert cache.is_dir()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    r = run(["grep", "-r", "-l", "-a", "-F", "--", token, cache])
    assert r.returncode == 1, f"the token is in the cache: {r.stdout}{r.stderr}"
    r = run(["find", cache, "-name", f"*{token}*"])
    assert r.returncode == 0 and r.stdout == "", f"the token names a cache entry: {r.stdout}"
    nfiles = 0
    for d, dirs, names in os.walk(cache):
        for n in dirs:
            mode = stat.S_IMODE(os.lstat(os.path.join(d, n)).st_mode)
            assert mode == 0o700, f"{d}/{n}: {oct(mode)}"
        for n in names:
            st = os.lstat(os.path.join(d, n))
            assert st.st_mode & 0o077 == 0, f"{d}/{n}: {oct(st.st_mode)}"
            nfiles += 1
    assert nfiles > 0, "nothing was cached on disk"


@pytest.mark.parametrize("knob", ["fail", "reset"])
def test_failed_download_is_eio_and_caches_nothing(mount_factory, files_server, repo, knob):
    sha = repo.main()
    path, e = max(small_files(repo, sha, n=50), key=lambda f: f[1][3])
    url_path = re.escape(urllib.parse.quote(path))
    cause = failed_get(rf"repositories/acme/{SLUG}/src/{sha}/{url_path}",
                       {"fail": r"HTTP 503: Service Unavailable \(\d+ attempts\)$",
                        "reset": CUT_SHORT}[knob])
    m = mount_factory(files_server, target="acme", options=[f"timeout={TIMEOUT}"],
                      allow=[cause])
    f = tree_of(m, sha) / path
    assert int(stat_fmt(f, "%s")) == e[3]
    spec = {"count": -1, "path_contains": f"/src/{sha}/{path}"}
    if knob == "fail":
        spec["status"] = 503
    err = m.stderr_mark()
    files_server.knobs(**{knob: spec})
    got, took = timed_errno("read", f, timeout=TIMEOUT + 20)
    assert got == "EIO"
    assert took < TIMEOUT + SLACK, took
    logged(m, err, cause)
    clear_failures(files_server)
    after_the_pause(lambda: errno_of("read", f) == "OK", path)
    assert cat(f) == repo.blob(e[2])


# --------------------------------------------------------------------------
# LFS


LFS_FILE = "assets/model.lfs"


@pytest.mark.parametrize("lfs_host", [None, "localhost"])
def test_lfs_content_comes_without_the_token(mount_factory, files_server, repo, lfs_host):
    """The raw GET of an LFS file answers 302 to the LFS listener (another port; with
    lfs_host, another host name too): the content arrives, the token does not."""
    sha = repo.main()
    e = repo.entries(sha)[LFS_FILE]
    if lfs_host:
        files_server.knobs(lfs_host=lfs_host)
    m = mount_factory(files_server, target="acme")
    f = tree_of(m, sha) / LFS_FILE
    mark = files_server.log.mark()
    assert int(stat_fmt(f, "%s")) == e[3]     # (the size is the content's: it is fetched)
    assert cat(f) == repo.blob(e[2])
    reqs = files_server.log.since(mark)
    api = requests_for(reqs, sha, LFS_FILE)
    assert [(r["status"], r["auth"]) for r in api] == [(302, True)], describe(reqs)
    lfs = [r for r in reqs if r.get("server") == "lfs"]
    assert len(lfs) == 1, describe(reqs)
    assert lfs[0]["status"] == 200 and lfs[0]["bytes"] == e[3], lfs
    assert lfs[0]["auth"] is False, "the token was sent to the LFS host"
    # cached like any other file
    mark = files_server.log.mark()
    assert cat(f) == repo.blob(e[2])
    assert files_server.log.since(mark) == []

"""
Whole trees through git (issue 15): once bbfs sees a walk of a commit's tree, or a reader
going through its files, it fetches that commit as one shallow pack over the fake server's
git smart HTTP (`-o git_url=`), and from then on the commit's listings, sizes, modes,
symlink targets and contents come from what the pack brought, kept in the store. A small
repository's pack comes at the first look into a tree; a single file of a larger one stays
one API request.

Checked here: trees through git equal git (names, types, sizes, modes, mtimes, symlink
targets, `grep -r` against `git grep`) and the API path, in protocol v2 and v0, annotated
and lightweight tags; request counts from the fake server's log (0 API requests for that
commit's files and directories after the walk; `grep -r` over every repository's HEAD at
most 1.5 API requests each and a few git requests); every fallback (unreachable, 401, 403,
404, a hang, a cut pack, a reset, a refused old commit in v0, a pack over the cap) with
right bytes, one log line naming the cause and no wait past the timeout; a pack with
deltas; a 60 MiB blob with bbfs's RSS under 64 MiB; the token in no command line, log or
cache file; remount and offline after git; nogit.

The harness's mounts have no git_url=, and bbfs does not send the token to bitbucket.org
when api_url= names another server: every mount of the other test files uses the API only.
Expected values come from git (the fixtures' repositories), never from bbfs.
"""

import base64
import hashlib
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (cat, describe, free_closed_port, out, run, run_bbfs_expect_failure,
                      one_clear_line, user_env, write_token_file)
from test_tree import Repo, expected_kind, raw_requests, src_requests, tree_of, vm_rss

TIMEOUT = 3          # -o timeout= for the tests that wait for a failure
SLACK = 6            # seconds on top of it before we call it a hang (a loaded machine)
BIG_TIMEOUT = 60
RSS_LIMIT = 64 << 20


def git_options(server, *more):
    """The options that point bbfs's git at the fake server's smart HTTP."""
    return [f"git_url={server.base}", *more]


def git_requests(entries, kind=None):
    return [e for e in entries if e["server"] == "git" and (kind is None or e.get("git") == kind)]


def api_requests(entries):
    return [e for e in entries if e["server"] == "api"]


def stats(m):
    """.bbfs/stats as {name: value}."""
    return dict(ln.split(" ", 1) for ln in out(["cat", m.path / ".bbfs" / "stats"]).splitlines())


def commit_date(repo, sha):
    """The date the API gives a commit: its author's (the fake's `date`)."""
    return int(repo.git("log", "-1", "--format=%at", sha).strip())


# --------------------------------------------------------------------------
# What a tree looks like: find against git, grep -r against git grep


def tree_listing(path):
    """{relative path: (type letter, size, mode, mtime, symlink target)} from one find."""
    r = run(["find", path, "-mindepth", "1", "-printf", r"%y %s %m %T@\0%l\0%P\0"], binary=True,
            timeout=BIG_TIMEOUT)
    assert r.returncode == 0, r.stderr
    fields = r.stdout.split(b"\0")
    res = {}
    for i in range(0, len(fields) - 1, 3):
        y, s, mode, t = fields[i].split(b" ")
        res[fields[i + 2].decode("utf-8", "surrogateescape")] = (
            y.decode(), int(s), int(mode, 8), int(float(t)),
            fields[i + 1].decode("utf-8", "surrogateescape"))
    return res


def git_listing(repo, sha):
    """What tree_listing must give for commit sha, from git."""
    date = commit_date(repo, sha)
    res = {}
    for path, (mode, typ, obj, size) in repo.entries(sha).items():
        kind = expected_kind((mode, typ))
        if kind == "d":
            res[path] = ("d", 0, 0o555, date, "")
        elif kind == "l":
            res[path] = ("l", size, 0o777, date, repo.blob(obj).decode("utf-8", "surrogateescape"))
        else:
            res[path] = ("f", size, 0o555 if mode == "100755" else 0o444, date, "")
    return res


def grep_records(data, git_prefix=None):
    """Sorted (path, line, text) of `grep -r -n -Z` output (git_prefix None) or of
    `git grep -z -n` output, whose paths start with git_prefix ("SHA:")."""
    res = []
    i = 0
    while i < len(data):
        nul = data.index(b"\0", i)
        path = data[i:nul]
        if git_prefix is None:
            path = path[2:] if path.startswith(b"./") else path
            colon = data.index(b":", nul + 1)
            line, rest = data[nul + 1:colon], colon + 1
        else:
            assert path.startswith(git_prefix), path
            path = path[len(git_prefix):]
            nul2 = data.index(b"\0", nul + 1)
            line, rest = data[nul + 1:nul2], nul2 + 1
        end = data.index(b"\n", rest)
        res.append((path, int(line), data[rest:end]))
        i = end + 1
    return sorted(res)


PATTERN = "e"   # matches a line of nearly every text file


def bbfs_grep(tree):
    r = run(["sh", "-c", 'cd "$1" && grep -r -n -I -Z -e "$2" .', "sh", tree, PATTERN],
            binary=True, timeout=BIG_TIMEOUT)
    assert r.returncode == 0, r.stderr
    return grep_records(r.stdout)


def git_grep(git_dir, sha):
    r = subprocess.run(["git", "--git-dir", str(git_dir), "grep", "-z", "-n", "-I", "-e", PATTERN,
                        sha], capture_output=True, timeout=60, check=True)
    return grep_records(r.stdout, sha.encode() + b":")


@pytest.fixture
def repo(files_demo):
    return Repo(files_demo)


# --------------------------------------------------------------------------
# A walk through git equals git, and afterwards costs the API nothing


WALKS = [("v2", "v2"), ("v2", "v1"), ("v0", "v2"), ("v0", "v1")]


@pytest.mark.parametrize("protocol,tag", WALKS, ids=[f"{p}-tag-{t}" for p, t in WALKS])
def test_walk_is_one_pack_and_equals_git(mount_factory, files_server, repo, protocol, tag):
    """find over tags/TAG/tree: one fetch in that protocol (v1 is annotated: in v0 its tag
    object is the tip wanted); the listing is git's; then grep -r (= git grep) and ls -lR
    cost no API request of that commit and no git request at all."""
    files_server.knobs(git_protocol=protocol)
    sha = repo.tags()[tag]
    m = mount_factory(files_server, target="acme", options=git_options(files_server))
    tree = m.ws / "files" / "tags" / tag / "tree"
    mark = files_server.log.mark()
    assert tree_listing(tree) == git_listing(repo, sha)
    reqs = files_server.log.since(mark)
    fetches = git_requests(reqs, "fetch")
    assert len(fetches) == 1, describe(git_requests(reqs))
    assert fetches[0]["protocol"] == (2 if protocol == "v2" else 0)
    # before the walk was seen: a few listings; file contents only for symlinks find read
    links = {p for p, e in repo.entries(sha).items() if e[0] == "120000"}
    assert {p for p, _ in raw_requests(reqs, repo, sha)} <= links, describe(reqs)
    mark = files_server.log.mark()
    assert bbfs_grep(tree) == git_grep(repo.git_dir, sha)
    run(["ls", "-lR", tree], check=True, timeout=BIG_TIMEOUT)
    reqs = files_server.log.since(mark)
    assert src_requests(reqs, sha) == [], describe(reqs)
    assert git_requests(reqs) == [], describe(reqs)
    s = stats(m)
    assert (s["git_fetches"], s["git_trees"], s["git_fallbacks"]) == ("1", "1", "0"), s


def test_git_and_the_api_give_the_same_tree(mount_factory, files_server, repo):
    """find over main (symlinks, executables, a submodule, a 60 MiB file, an LFS file) with
    git and with nogit: the same names, types, sizes, modes, mtimes and targets."""
    sha = repo.main()
    kinds = {(e[0], e[1]) for e in repo.entries(sha).values()}
    assert {("120000", "blob"), ("100755", "blob"), ("160000", "commit")} <= kinds, kinds
    through_git = mount_factory(files_server, target="acme", options=git_options(files_server))
    through_api = mount_factory(files_server, target="acme",
                                options=git_options(files_server, "nogit"))
    want = git_listing(repo, sha)
    got = tree_listing(tree_of(through_git, sha))
    assert got == want
    assert tree_listing(tree_of(through_api, sha)) == got
    assert ls(tree_of(through_git, sha) / "vendor" / "lib") == []
    assert stats(through_git)["git_trees"] == "1"


def ls(path):
    return [ln for ln in out(["ls", "-1A", path]).split("\n") if ln]


def test_single_file_of_a_large_repository_stays_one_api_request(mount_factory, files_server,
                                                                 repo):
    sha = repo.main()
    m = mount_factory(files_server, target="acme", options=git_options(files_server))
    f = m.ws / "files" / "HEAD" / "tree" / "README.md"
    mark = files_server.log.mark()
    assert cat(f) == repo.blob(repo.entries(sha)["README.md"][2])
    reqs = files_server.log.since(mark)
    assert [p for p, _ in raw_requests(reqs, repo, sha)] == ["README.md"], describe(reqs)
    assert git_requests(reqs, "fetch") == [], describe(reqs)


def test_small_repository_comes_whole_at_the_first_look(mount_factory, server, demo):
    """`cat api/HEAD/tree/README.md` of a small repository: its pack, and no API request for
    refs, commits, listings or files (the repository object itself is asked for)."""
    head = demo.branches("api")[demo.head_branch("api")]
    assert int(demo.repos()["api"]["size"]) < 1 << 20
    m = mount_factory(server, target="acme", options=git_options(server))
    mark = server.log.mark()
    want = subprocess.run(["git", "--git-dir", demo.git_dir("api"), "show", f"{head}:README.md"],
                          capture_output=True, check=True).stdout
    assert cat(m.ws / "api" / "HEAD" / "tree" / "README.md") == want
    reqs = server.log.since(mark)
    assert len(git_requests(reqs, "fetch")) == 1, describe(reqs)
    assert [e["path"] for e in api_requests(reqs)] == ["/2.0/repositories/acme/api"], \
        describe(reqs)


def test_refs_resolve_from_git_without_the_api(mount_factory, server, demo):
    """Every branch and tag of api, nested names included, resolves from git's advertisement
    to the commit git names, without an API request for refs; `ls -l branches/` still asks
    the API (its links carry the commits' dates)."""
    branches, tags = demo.branches("api"), demo.tags("api")
    assert any("/" in name for name in branches) and tags, (branches, tags)
    m = mount_factory(server, options=git_options(server))
    mark = server.log.mark()
    for kind, refs in (("branches", branches), ("tags", tags)):
        for name, sha in refs.items():
            link = out(["readlink", m.ws / "api" / kind / name]).rstrip("\n")
            assert link == "../" * (name.count("/") + 1) + "commits/" + sha, (kind, name)
    reqs = server.log.since(mark)
    assert [e for e in api_requests(reqs) if "/refs" in e["path"]] == [], describe(reqs)
    assert len(git_requests(reqs, "discover")) == 1, describe(git_requests(reqs))
    mark = server.log.mark()
    run(["ls", "-l", m.ws / "api" / "branches"], check=True)
    assert [e for e in api_requests(server.log.since(mark)) if "/refs/branches" in e["path"]]


def test_grep_over_every_repository_head(mount_factory, server, demo):
    """grep -r over acme/*/HEAD/tree: what git grep finds in each, for at most 1.5 API
    requests per repository and at most 3 git requests each (discovery, ls-refs, fetch)."""
    repos = {slug: demo.branches(slug)[demo.head_branch(slug)]
             for slug in demo.repos() if demo.branches(slug)}
    assert len(repos) >= 5, repos
    m = mount_factory(server, target="acme", options=git_options(server))
    mark = server.log.mark()
    r = run(["sh", "-c", 'cd "$1" && grep -r -n -I -Z -e "$2" */HEAD/tree', "sh", m.ws, PATTERN],
            binary=True, timeout=BIG_TIMEOUT)
    assert r.returncode == 0, r.stderr
    reqs = server.log.since(mark)
    want = []
    for slug, sha in repos.items():
        want += [(f"{slug}/HEAD/tree/".encode() + p, n, t)
                 for p, n, t in git_grep(demo.git_dir(slug), sha)]
    assert grep_records(r.stdout) == sorted(want)
    assert len(api_requests(reqs)) <= 1.5 * len(repos), describe(api_requests(reqs))
    for slug in repos:
        mine = [e for e in git_requests(reqs) if e["path"].startswith(f"/acme/{slug}.git/")]
        assert 1 <= len(mine) <= 3, describe(mine)
        assert len(git_requests(mine, "fetch")) == 1, describe(mine)


# --------------------------------------------------------------------------
# Fallbacks: right bytes from the API, one line naming the cause, no wait past the timeout


def archive(repo, sha, dest):
    return repo.archive(sha, dest)


def diff_r(a, b):
    return run(["diff", "-r", "--no-dereference", a, b], timeout=BIG_TIMEOUT)


FAULTS = {
    # name: (knobs, git_url of a closed port?, the cause .bbfs/stats counts)
    "unreachable": ({}, True, "unreachable"),
    "401": ({"git_fail": {"status": 401, "request": "discover"}}, False, "auth"),
    "403": ({"git_fail": {"status": 403, "request": "discover"}}, False, "auth"),
    "404": ({"git_fail": {"status": 404, "request": "discover"}}, False, "not_found"),
    "hang": ({"git_hang": {"request": "fetch"}}, False, "unreachable"),
    "cut": ({"git_cut": {"bytes": 4096, "request": "fetch"}}, False, "broken"),
    "reset": ({"git_reset": {"bytes": 4096, "request": "fetch"}}, False, "broken"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fallback_serves_right_bytes_in_time(mount_factory, files_server, repo, tmp_path, fault):
    knobs, closed, cause = FAULTS[fault]
    sha = repo.tags()["v2"]
    want = archive(repo, sha, tmp_path / "want")
    git_url = f"http://127.0.0.1:{free_closed_port()}" if closed else files_server.base
    line = rf"git: .*\({cause}\)"
    m = mount_factory(files_server, target="acme", options=[f"git_url={git_url}",
                                                            f"timeout={TIMEOUT}"],
                      allow=[line])
    if knobs:
        files_server.knobs(**knobs)
    err = m.stderr_mark()
    tree = m.ws / "files" / "tags" / "v2" / "tree"
    t0 = time.monotonic()
    run(["find", tree], check=True, timeout=TIMEOUT + 20)   # the walk: git's turn
    took = time.monotonic() - t0
    # a hang guard: git's one wait is bounded by the timeout, the API's answers are quick
    assert took < TIMEOUT + SLACK, f"the walk took {took:.1f}s with git failing ({fault})"
    d = diff_r(want, tree)
    assert d.returncode == 0, d.stdout + d.stderr
    lines = m.stderr_since(err)
    assert len(lines) == 1 and re.search(line, lines[0]), "\n".join(lines)
    s = stats(m)
    assert s[f"git_fallbacks_{cause}"] == "1" and s["git_trees"] == "0", s


@pytest.mark.parametrize("protocol", ["v0", "v2"])
def test_old_commit_is_refused_in_v0_and_fetched_in_v2(mount_factory, files_server, repo,
                                                       tmp_path, protocol):
    """The root commit is no tip: a v0 server (bitbucket.org's reported behaviour) will not
    send it, so the API serves it, said once; in v2 it comes in a pack like a tip."""
    files_server.knobs(git_protocol=protocol)
    sha = repo.root()
    assert sha not in set(repo.tags().values()) | set(repo.demo.branches("files").values())
    want = archive(repo, sha, tmp_path / "want")
    line = r"git: 'acme/files' at [0-9a-f]{12}: .*\(refused\)"
    m = mount_factory(files_server, target="acme", options=git_options(files_server),
                      allow=[line])
    err = m.stderr_mark()
    mark = files_server.log.mark()
    d = diff_r(want, tree_of(m, sha))
    assert d.returncode == 0, d.stdout + d.stderr
    reqs = files_server.log.since(mark)
    lines = m.stderr_since(err)
    if protocol == "v0":
        assert git_requests(reqs, "fetch") == [], "a refused commit was asked for"
        assert len(lines) == 1 and re.search(line, lines[0]), lines
        assert stats(m)["git_fallbacks_refused"] == "1"
    else:
        assert len(git_requests(reqs, "fetch")) == 1, describe(git_requests(reqs))
        assert lines == []


@pytest.mark.parametrize("cap", ["size", "pack"])
def test_pack_over_the_cap_is_not_fetched(mount_factory, fresh_server, fresh_demo, cap):
    """git_max=1K: a repository whose size is over it is not asked for a pack at all; one
    whose size says less but whose pack is more is cut off at the cap. The API serves."""
    data = fresh_demo.data()
    rec = data["workspaces"]["acme"]["repositories"]["api"]
    if cap == "pack":
        rec["size"] = 100
    fresh_demo.save(data)
    assert (rec["size"] > 1024) == (cap == "size"), rec["size"]
    head = fresh_demo.branches("api")[fresh_demo.head_branch("api")]
    line = r"git: 'acme/api'.*\(too_big\)"
    m = mount_factory(fresh_server, target="acme",
                      options=git_options(fresh_server, "git_max=1K"), allow=[line])
    err = m.stderr_mark()
    mark = fresh_server.log.mark()
    got = bbfs_grep(m.ws / "api" / "HEAD" / "tree")
    assert got == git_grep(fresh_demo.git_dir("api"), head)
    fetches = git_requests(fresh_server.log.since(mark), "fetch")
    assert len(fetches) == (0 if cap == "size" else 1), describe(fetches)
    lines = m.stderr_since(err)
    assert len(lines) == 1 and re.search(line, lines[0]), lines
    assert stats(m)["git_fallbacks_too_big"] == "1"


# --------------------------------------------------------------------------
# Deltas, and a big blob


def similar_text(n):
    return "".join(f"line {i:03d} of a file much like the others{' (changed)' if i == n else ''}\n"
                   for i in range(400))


def add_repository(demo, slug, files):
    """A repository of one commit (project PLAT) added to demo's data; its git directory."""
    import fixture
    root = Path(demo.data_path).parent
    info = fixture.make_repo(root / "git" / "acme" / f"{slug}.git",
                             [{"message": f"Add {slug}", "files": files}])
    data = demo.data()
    data["workspaces"]["acme"]["repositories"][slug] = {
        "project": "PLAT", "git_dir": info["git_dir"], "description": slug, "language": "",
        "is_private": True, "uuid": fixture.det_uuid("acme/" + slug),
        "created_on": "2024-04-01T08:00:00.000000+00:00",
        "updated_on": fixture.newest_date(info["git_dir"]), "size": info["size"]}
    demo.save(data)
    return info["git_dir"]


def basic_auth_env(token="demo-token"):
    """git's configuration through the environment: the token as Basic x-token-auth."""
    basic = base64.b64encode(f"x-token-auth:{token}".encode()).decode()
    return user_env(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
                    GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader",
                    GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}")


def test_pack_with_deltas(mount_factory, fresh_server, fresh_demo, tmp_path):
    git_dir = add_repository(fresh_demo, "deltas",
                             {f"src/file-{n}.txt": similar_text(n) for n in range(8)})
    # what a depth-1 fetch of it brings holds deltas
    clone = tmp_path / "clone"
    r = run(["git", "clone", "-q", "--depth", "1", f"{fresh_server.base}/acme/deltas.git", clone],
            env=basic_auth_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    idx = next((clone / ".git" / "objects" / "pack").glob("*.idx"))
    verify = out(["git", "verify-pack", "-v", idx])
    deltas = [ln for ln in verify.splitlines() if re.match(r"[0-9a-f]{40} blob +\d+ \d+ \d+ \d+ ", ln)]
    assert deltas, verify
    m = mount_factory(fresh_server, target="acme", options=git_options(fresh_server))
    tree = m.ws / "deltas" / "HEAD" / "tree"
    for n in range(8):
        assert cat(tree / "src" / f"file-{n}.txt") == similar_text(n).encode()
    assert stats(m)["git_trees"] == "1"
    head = fresh_demo.branches("deltas")["main"]
    assert bbfs_grep(tree) == git_grep(git_dir, head)


BIG = 60 << 20


def random_chunks():
    """60 MiB that do not compress: SHAKE-256 output, 1 MiB at a time."""
    for i in range(BIG >> 20):
        yield hashlib.shake_256(b"bbfs big blob %d" % i).digest(1 << 20)


def vm_hwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1]) * 1024
    return 0


@pytest.mark.serial
def test_big_blob_in_the_pack_keeps_memory_low(mount_factory, fresh_server, fresh_demo):
    """A pack of 60 MiB (one incompressible blob): fetched, indexed and unpacked with bbfs's
    peak RSS under 64 MiB; the blob itself, too big to read whole from a pack, comes through
    the API's streamed download."""
    # directories enough for find to be seen walking (three listings)
    add_repository(fresh_demo, "huge", {
        "README.md": "a big blob\n", "a/one.txt": "1\n", "b/two.txt": "2\n", "c/three.txt": "3\n",
        "data/big.bin": {"generate": random_chunks, "size": BIG}})
    want = hashlib.sha256(b"".join(random_chunks())).hexdigest()
    head = fresh_demo.branches("huge")["main"]
    m = mount_factory(fresh_server, target="acme", options=git_options(fresh_server),
                      extra_env={"ASAN_OPTIONS": "quarantine_size_mb=1"})
    tree = m.ws / "huge" / "HEAD" / "tree"
    mark = fresh_server.log.mark()
    run(["find", tree], check=True, timeout=BIG_TIMEOUT)
    run(["ls", "-lR", tree], check=True, timeout=BIG_TIMEOUT)
    fetches = git_requests(fresh_server.log.since(mark), "fetch")
    assert len(fetches) == 1 and fetches[0]["bytes"] > BIG, describe(fetches)
    assert stats(m)["git_trees"] == "1"
    assert vm_hwm(m.proc.pid) < RSS_LIMIT, f"VmHWM {vm_hwm(m.proc.pid) >> 20} MiB"
    r = run(f"sha256sum < '{tree}/data/big.bin'", timeout=BIG_TIMEOUT)
    assert r.stdout.split()[0] == want
    assert cat(tree / "README.md") == b"a big blob\n"
    assert vm_rss(m.proc.pid) < RSS_LIMIT
    files = [e for e in fresh_server.log.since(mark)
             if "/src/" in e["path"] and not e["path"].endswith("/")]
    assert [e["path"].split("/src/", 1)[1] for e in files] == [f"{head}/data/big.bin"], \
        describe(files)


# --------------------------------------------------------------------------
# The token, remounts, offline, nogit


def test_token_in_no_command_line_log_or_cache(mount_factory, fresh_server, fresh_demo, tmp_path):
    token = "demo-token"
    add_repository(fresh_demo, "other", {"a.txt": "a\n"})
    line = r"git: 'acme/other'.*HTTP 403.*\(auth\)"
    m = mount_factory(fresh_server, target="acme", token=token,
                      options=git_options(fresh_server), allow=[line])
    fresh_server.knobs(git_fail={"status": 403, "path_contains": "/other.git/", "count": -1})
    assert cat(m.ws / "api" / "HEAD" / "tree" / "README.md")
    assert cat(m.ws / "other" / "HEAD" / "tree" / "a.txt") == b"a\n"
    # every git request carried Basic x-token-auth (the fake refuses anything else)
    reqs = git_requests(fresh_server.log.entries())
    assert reqs and all(e["auth"] for e in reqs if "/api.git/" in e["path"]), describe(reqs)
    pids = [m.proc.pid] + children(m.proc.pid)
    assert len(pids) >= 2, "the pack indexing helper should be running"
    for pid in pids:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert token.encode() not in f.read(), pid
        with open(f"/proc/{pid}/environ", "rb") as f:
            assert token.encode() not in f.read(), pid
    assert token not in m.stderr()
    assert any(re.search(line, ln) for ln in m.stderr().splitlines()), m.stderr()
    r = run(["grep", "-r", "-l", "-a", "-F", "--", token, m.cache])
    assert r.returncode == 1, f"the token is in the cache: {r.stdout}{r.stderr}"
    for d, dirs, names in os.walk(m.cache):
        for n in dirs + names:
            st = os.lstat(os.path.join(d, n))
            assert st.st_mode & 0o077 == 0, f"{d}/{n}: {oct(st.st_mode)}"
    assert m.unmount() == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or zombie(pid), f"{pid} outlived bbfs"


def children(pid):
    res = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat_ = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat_.rsplit(")", 1)[1].split()[1]) == pid:
                res.append(int(p.name))
    return res


def zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_remount_and_offline_after_git(mount_factory, files_server, repo, tmp_path):
    """What the packs brought is in the store: a remount reads the trees without a pack or a
    listing or a file from the API, and so does an offline mount."""
    cache = tmp_path / "cache"
    sha = repo.tags()["v2"]
    m = mount_factory(files_server, target="acme", options=git_options(files_server),
                      cache_dir=cache)
    ls(m.ws)   # the repository listing, for the offline mount to find the repository in
    tree = m.ws / "files" / "tags" / "v2" / "tree"
    want = bbfs_grep(tree)
    assert want == git_grep(repo.git_dir, sha)
    listing = tree_listing(tree)
    assert m.unmount() == []
    for options in (git_options(files_server), ["offline"]):
        m = mount_factory(files_server, target="acme", options=options, cache_dir=cache)
        mark = files_server.log.mark()
        tree = m.ws / "files" / "tags" / "v2" / "tree"
        assert tree_listing(tree) == listing
        assert bbfs_grep(tree) == want
        reqs = files_server.log.since(mark)
        assert src_requests(reqs, sha) == [] and git_requests(reqs, "fetch") == [], describe(reqs)
        if "offline" in options:
            assert reqs == [], describe(reqs)
        assert m.unmount() == []


def test_nogit_and_no_git_url_never_use_git(mount_factory, files_server, repo):
    sha = repo.tags()["v2"]
    for options in (git_options(files_server, "nogit"), []):
        m = mount_factory(files_server, target="acme", options=options)
        mark = files_server.log.mark()
        assert bbfs_grep(tree_of(m, sha)) == git_grep(repo.git_dir, sha)
        assert git_requests(files_server.log.since(mark)) == []
        assert stats(m)["git_enabled"] == "false"
        assert m.unmount() == []


def test_git_url_over_plain_http_to_another_host_is_refused(tmp_path, server):
    tf = write_token_file(tmp_path / "token", "demo-token")
    rc, err, _ = run_bbfs_expect_failure(
        "acme/PLAT", tmp_path / "mnt",
        options=[f"api_url={server.url}", f"token_file={tf}", f"cache_dir={tmp_path / 'c'}",
                 "git_url=http://bitbucket.org"])
    assert rc != 0
    assert "git URL 'http://bitbucket.org'" in one_clear_line(err)
    assert server.log.entries() == []

"""
The in-memory cache of parsed answers (issue 12):

- it is bounded (least recently used go first), so bbfs's memory stays flat
  however many commits a mount goes through: looking up 5,000 commits
  (`commit.json` of each) and listing the root tree of 1,000 of them keeps
  VmRSS under 64 MiB, and flat over the second half. The repository is made
  here with `git fast-import`: 5,000 commits whose messages are a few KiB
  each, so that an unbounded cache would hold about 100 MiB of them;
- an answer the API took from its store is trusted for what is left of its
  ttl, not for a whole ttl more;
- opening a file resolves its path once (counted by .bbfs/stats' memory_hits);
- a download is not remembered in memory: when a stored file was evicted and
  downloading it again fails, the next read tries again.

Expected values come from git.
"""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BBFS_BIN, PYTHON, Demo, cat, describe, errno_of, git_message, ls, run, user_env
from helpers import after_the_pause
from test_tree import Repo, clear_failures, requests_for, small_files, tree_of

N_COMMITS = 5000
N_TREES = 1000
BATCHES = 20
RSS_LIMIT = 64 << 20
FLAT_SLACK = 4 << 20      # the second half may not grow more than this over its first sample
# Under AddressSanitizer its own allocator (which ignores bbfs's two malloc arenas) keeps a
# cache per thread: a network thread started late adds a few MiB the plain build does not.
ASAN_FLAT_SLACK = 8 << 20
ASAN_RSS_LIMIT = 96 << 20  # its shadow memory and quarantine: 42 MiB at the first sample
BATCH_TIMEOUT = 300       # hang guard for one batch of 250 look-ups (ASan, a loaded machine)


def build_many_commits(root):
    """acme/many (project PLAT): N_COMMITS commits on main, each changing two small files."""
    import fixture
    root = Path(root)
    git_dir = root / "git" / "acme" / "many.git"
    git_dir.parent.mkdir(parents=True)
    subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "-q", "--bare", str(git_dir)],
                   check=True, env=fixture.git_env(), timeout=60)
    body = "".join(f"line {i} of a long commit message that says what changed and why\n"
                   for i in range(40))
    start = 1704186000
    stream = []
    for i in range(N_COMMITS):
        msg = f"Change {i}\n\n{body}".encode()
        when = start + 60 * i
        stream.append(b"commit refs/heads/main\nmark :%d\n" % (i + 1))
        stream.append(b"author Alice <alice@acme.example> %d +0000\n" % when)
        stream.append(b"committer Alice <alice@acme.example> %d +0000\n" % when)
        stream.append(b"data %d\n%s\n" % (len(msg), msg))
        if i:
            stream.append(b"from :%d\n" % i)
        content = b"version %d\n" % i
        for path in (b"README.md", b"src/file-%d.txt" % (i % 7)):
            stream.append(b"M 644 inline %s\ndata %d\n%s\n" % (path, len(content), content))
        stream.append(b"\n")
    stream.append(b"done\n")
    subprocess.run(["git", "-C", str(git_dir), "fast-import", "--quiet", "--done",
                    "--date-format=raw"], input=b"".join(stream), check=True,
                   env=fixture.git_env(), timeout=120)
    data = fixture._acme_data({"many": {
        "project": "PLAT", "git_dir": str(git_dir), "description": "5,000 commits",
        "language": "", "is_private": True, "uuid": fixture.det_uuid("acme/many"),
        "created_on": "2024-01-01T00:00:00+00:00",
        "updated_on": fixture.newest_date(git_dir), "size": fixture.tree_size(git_dir)}})
    return fixture.write_data(root, data)


def vm_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


# One process per batch: cat commit.json of each commit given on stdin, and list the root
# tree of those marked with a "*"; prints how many of each it did.
WALKER = r"""
import os, sys
commits = trees = 0
for line in sys.stdin:
    path = line.strip()
    listed = path.endswith("*")
    path = path.rstrip("*")
    with open(os.path.join(path, "commit.json"), "rb") as f:
        f.read()
    commits += 1
    if listed:
        os.listdir(os.path.join(path, "tree"))
        trees += 1
print(commits, trees)
"""


@pytest.mark.serial
@pytest.mark.timeout(1200)
def test_thousands_of_commits_keep_memory_flat(mount_factory, fakebb_factory, tmp_path):
    demo = Demo(build_many_commits(tmp_path / "many"))
    server = fakebb_factory(demo)
    hashes = demo.rev_list("many", "main")
    assert len(hashes) == N_COMMITS
    # Under AddressSanitizer freed memory sits in a quarantine (256 MiB by default) and
    # stays resident: keep it small so that VmRSS says whether bbfs's memory is flat.
    m = mount_factory(server, extra_env={"ASAN_OPTIONS": "quarantine_size_mb=1"})
    commits = m.ws / "many" / "commits"
    every = N_COMMITS // N_TREES
    per_batch = N_COMMITS // BATCHES
    samples = []
    t0 = time.monotonic()
    for b in range(BATCHES):
        batch = hashes[b * per_batch:(b + 1) * per_batch]
        stdin = "".join(f"{commits / h}{'*' if (b * per_batch + i) % every == 0 else ''}\n"
                        for i, h in enumerate(batch))
        r = subprocess.run([PYTHON, "-c", WALKER], input=stdin, capture_output=True, text=True,
                           timeout=BATCH_TIMEOUT, env=user_env())
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [str(len(batch)), str(len(batch) // every)], r.stdout
        samples.append(vm_rss(m.proc.pid))
    elapsed = time.monotonic() - t0
    mib = [round(s / (1 << 20), 1) for s in samples]
    print(f"\n{N_COMMITS} commits, {N_TREES} trees in {elapsed:.0f} s; VmRSS MiB by batch: {mib}")

    # what was read is right: a few commits checked against git
    for h in (hashes[0], hashes[N_COMMITS // 2], hashes[-1]):
        r = subprocess.run(["cat", str(commits / h / "message")], capture_output=True,
                           timeout=30, env=user_env())
        assert r.returncode == 0 and r.stdout == git_message(demo.git_dir("many"), h), h
        names = sorted(demo.git("many", "ls-tree", "--name-only", h).split())
        r = subprocess.run(["ls", "-1", str(commits / h / "tree")], capture_output=True,
                           text=True, timeout=30, env=user_env())
        assert sorted(r.stdout.split()) == names, h
        doc = json.loads(subprocess.run(["cat", str(commits / h / "commit.json")],
                                        capture_output=True, timeout=30,
                                        env=user_env()).stdout)
        assert doc["hash"] == h

    with open(BBFS_BIN, "rb") as f:
        asan = b"__asan_init" in f.read()
    limit, slack = (ASAN_RSS_LIMIT, ASAN_FLAT_SLACK) if asan else (RSS_LIMIT, FLAT_SLACK)
    assert max(samples) < limit, f"VmRSS reached {max(mib)} MiB: {mib}"
    second = samples[BATCHES // 2:]
    assert max(second) - second[0] <= slack, f"VmRSS grew over the second half: {mib}"


def test_a_remount_trusts_a_stored_listing_for_what_is_left_of_its_ttl(mount_factory, fresh_server,
                                                                      fresh_demo):
    """Taken from the store half-way through its ttl, a listing expires with the stored one."""
    ttl = 6
    m = mount_factory(fresh_server, options=[f"ttl={ttl}"])
    assert "late" not in ls(m.ws / "api" / "branches")   # fetched and stored now (t0)
    t0 = time.monotonic()
    assert m.unmount() == []
    time.sleep(max(0.0, t0 + ttl / 2 - time.monotonic()))
    m2 = mount_factory(fresh_server, options=[f"ttl={ttl}"], cache_dir=m.cache)
    branches = m2.ws / "api" / "branches"
    mark = fresh_server.log.mark()
    assert "late" not in ls(branches)                    # from the store, fetched at t0
    assert time.monotonic() < t0 + ttl - 1, "the remount took longer than the ttl"
    reqs = [e for e in fresh_server.log.since(mark) if "/refs/branches" in e["path"]]
    assert reqs == [], describe(reqs)
    fresh_demo.git("api", "branch", "late", fresh_demo.branches("api")["main"])
    # the stored answer is stale from t0 + ttl: memory must not keep it until t0 + 1.5 ttl
    time.sleep(max(0.0, t0 + ttl + 1 - time.monotonic()))
    assert "late" in ls(branches)
    assert time.monotonic() < t0 + 1.5 * ttl, "too slow to tell the stored ttl from a new one"


def memory_hits(m):
    text = cat(m.path / ".bbfs" / "stats").decode()
    return int(dict(ln.split(" ", 1) for ln in text.splitlines())["memory_hits"])


def test_an_open_resolves_its_path_once(mount_factory, server, demo):
    m = mount_factory(server)
    sha = demo.rev_list("api", "main")[-1]
    f = m.ws / "api" / "commits" / sha / "message"
    # looked up and read once: the kernel keeps a hash-addressed entry and its attributes
    assert cat(f) == git_message(demo.git_dir("api"), sha)
    before = memory_hits(m)
    run(["getfattr", "-n", "user.bitbucket.html_url", str(f)])  # one resolve (no such attribute)
    one = memory_hits(m) - before
    assert one >= 1
    before = memory_hits(m)
    assert cat(f) == git_message(demo.git_dir("api"), sha)
    assert memory_hits(m) - before == one


def test_an_evicted_file_whose_download_fails_is_tried_again(mount_factory, files_server,
                                                             files_demo):
    repo = Repo(files_demo)
    sha = repo.main()
    path, entry = small_files(repo, sha, n=1)[0]
    m = mount_factory(files_server, target="acme", options=["timeout=3"], allow=[r"HTTP 503"])
    f = tree_of(m, sha) / path
    assert cat(f) == repo.blob(entry[2])
    # the store lets it go (as cache_size= would), and downloading it again fails
    for d, _, names in os.walk(m.cache):
        if "objects" in os.path.relpath(d, m.cache).split(os.sep):
            for n in names:
                os.unlink(os.path.join(d, n))
    files_server.knobs(fail={"status": 503, "count": -1, "path_contains": f"/src/{sha}/{path}"})
    err = m.stderr_mark()
    try:
        assert errno_of("read", f) == "EIO"
    finally:
        clear_failures(files_server)
    said = m.stderr_since(err)
    assert not [ln for ln in said if "serving cached data" in ln], said
    # the next read once the outage's pause is over asks again, and gets it
    mark = files_server.log.mark()
    after_the_pause(lambda: errno_of("read", f) == "OK", path)
    assert cat(f) == repo.blob(entry[2])
    reqs = files_server.log.since(mark)
    assert len(requests_for(reqs, sha, path)) == 1, describe(reqs)

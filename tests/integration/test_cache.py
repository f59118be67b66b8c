"""
The persistent cache: mutable answers (repository lists, refs, commit
listings, workspace documents) are kept on disk with their ETag, so that a
remount within ttl costs no request, a listing older than ttl is revalidated
once with If-None-Match (whether the fake server answers 304 or, like much of
the real API, the whole 200 again), a dead server still shows what was read
before, and `-o offline` browses the cache with no server and no token.
Request counts come from the fake server's request log.
"""

import os
import re
import stat
import subprocess
import time

from conftest import cat, describe, errno_of, ls, out, timed_errno

TIMEOUT = 3      # -o timeout= for the tests that wait for the deadline
SLACK = 4        # seconds on top of it before we call it a hang
# Serving stale data and refusing offline are logged, as they should be.
ALLOW = [r"cannot reach the API", r"couldn.t connect", r"offline", r"refresh of .* failed", r"cannot (fetch|read)"]


def walk(m):
    """Every name below the workspace except the trees at commits (`find`, with link targets)."""
    return out(["find", m.ws, "-path", "*/tree", "-prune", "-o", "-printf", "%P %y %l\n"],
               timeout=90)


def immutable(entry):
    """A request for something addressed by a commit hash (kept forever, never revalidated);
    a pull request's diff is kept under the two commits it is between."""
    p = entry["path"]
    return ("/commit/" in p or "/src/" in p or "/diff/" in p
            or re.search(r"/pullrequests/\d+/diff$", p) is not None)


def url_of(entry):
    return (entry["path"], entry.get("query", ""))


def blob(demo, slug, rev, path):
    return subprocess.run(["git", "--git-dir", str(demo.git_dir(slug)), "show", f"{rev}:{path}"],
                          capture_output=True, timeout=30, check=True).stdout


def main_files(demo, slug="api"):
    """Regular files of the main branch's tip, as paths."""
    names = demo.git(slug, "ls-tree", "-r", "--name-only", "main").split("\n")
    return sorted(n for n in names if n)


def test_remount_within_ttl_costs_no_request(mount_factory, server):
    m = mount_factory(server, target="acme", options=["ttl=3600"])
    first = walk(m)
    assert m.unmount() == []
    m2 = mount_factory(server, target="acme", options=["ttl=3600"], cache_dir=m.cache)
    mark = server.log.mark()
    assert walk(m2) == first
    reqs = server.log.since(mark)
    assert reqs == [], describe(reqs)


def test_listings_are_revalidated_once_after_ttl(mount_factory, server, no_304):
    server.knobs(no_304=no_304)
    mark = server.log.mark()
    m = mount_factory(server, target="acme", options=["ttl=3600"])
    first = walk(m)
    # every mutable answer of the first mount but the access check (never cached)
    mutable = {url_of(e) for e in server.log.since(mark)
               if not immutable(e) and e.get("query") != "pagelen=1"}
    assert any("/refs/branches" in p for p, _ in mutable), mutable
    assert m.unmount() == []
    ttl = 3
    time.sleep(ttl + 0.2)       # every stored answer is older than ttl now
    m2 = mount_factory(server, target="acme", options=[f"ttl={ttl}"], cache_dir=m.cache)
    mark = server.log.mark()
    assert walk(m2) == first
    reqs = server.log.since(mark)
    # each stored answer was revalidated with its ETag, and nothing else was asked for
    assert {url_of(e) for e in reqs} == mutable, describe(reqs)
    assert all(e["if_none_match"] for e in reqs), describe(reqs)
    assert all(e["status"] == (200 if no_304 else 304) for e in reqs), describe(reqs)
    # once: a walk that outlasts the ttl may rightly revalidate an answer again, but
    # never within a ttl of the last time (bbfs counts whole seconds: up to 1 s early)
    for url in mutable:
        times = sorted(e["time"] for e in reqs if url_of(e) == url)
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(g >= ttl - 2 for g in gaps), (url, gaps)


def test_damaged_entries_are_fetched_again(mount_factory, server):
    """A torn or garbled stored listing is treated as absent, never served."""
    m = mount_factory(server, target="acme", options=["ttl=3600"])
    names = ls(m.ws)
    branches = ls(m.ws / "api" / "branches")
    assert m.unmount() == []
    damaged = 0
    for d, _, files in os.walk(m.cache):
        for n in files:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                data = f.read()
            if data.startswith(b"bbfs-response 1\n"):
                with open(p, "wb") as f:
                    f.write(data[:-1] if damaged % 2 else b"bbfs-response 1\nx\n")
                damaged += 1
    assert damaged >= 2
    m2 = mount_factory(server, target="acme", options=["ttl=3600"], cache_dir=m.cache)
    mark = server.log.mark()
    assert ls(m2.ws) == names
    assert ls(m2.ws / "api" / "branches") == branches
    reqs = server.log.since(mark)
    assert all(e["status"] == 200 for e in reqs) and len(reqs) >= 2, describe(reqs)


def test_dead_server_serves_what_was_read(mount_factory, server, demo):
    m = mount_factory(server, target="acme", options=["ttl=1", f"timeout={TIMEOUT}"], allow=ALLOW)
    repo = m.ws / "api"
    tip = demo.branches("api")["main"]
    tree = repo / "commits" / tip / "tree"
    files = main_files(demo)
    assert len(files) >= 2
    read, unread = files[:-1][:3], files[-1]
    before = {d: out(["ls", "-laR", repo / d]) for d in ("branches", "tags")}
    listed = ls(repo / "commits")
    contents = {f: cat(tree / f) for f in read}
    for f in read:
        assert contents[f] == blob(demo, "api", "main", f), f
    server.stop()
    time.sleep(1.5)  # past ttl: everything would be revalidated
    t0 = time.monotonic()
    for d, text in before.items():
        assert out(["ls", "-laR", repo / d]) == text, d
    assert ls(repo / "commits") == listed
    for f in read:
        assert cat(tree / f) == contents[f], f
    # a promise, not a speed: nothing blocks longer than the timeout (generous bounds)
    assert time.monotonic() - t0 < 2 * (TIMEOUT + SLACK)
    e, took = timed_errno("read", tree / unread, timeout=TIMEOUT + SLACK + 5)
    assert e == "EIO"
    assert took < TIMEOUT + SLACK


def test_offline_mount_browses_the_cache(mount_factory, server, demo, tmp_path):
    m = mount_factory(server, target="acme", options=["ttl=3600"])
    repo = m.ws / "api"
    tip = demo.branches("api")["main"]
    files = main_files(demo)
    names = ls(m.ws)
    doc = cat(repo / "repository.json")
    link = out(["readlink", repo / "branches" / "main"])
    first = cat(repo / "commits" / tip / "tree" / files[0])
    assert m.unmount() == []
    server.stop()

    # no token at all: the token file is absent and nothing is prompted for
    off = mount_factory(server, target="acme", options=["offline"], token_via="none",
                        cache_dir=m.cache, allow=ALLOW)
    repo = off.ws / "api"
    assert ls(off.ws) == names
    assert cat(repo / "repository.json") == doc
    assert out(["readlink", repo / "branches" / "main"]) == link
    assert cat(repo / "commits" / tip / "tree" / files[0]) == first
    # never fetched: no network, so EIO (or ENOENT for a name the cached listing lacks)
    assert errno_of("read", repo / "commits" / tip / "tree" / files[-1]) == "EIO"
    assert errno_of("listdir", repo / "tags") == "EIO"
    assert errno_of("stat", off.ws / "no-such-repo") == "ENOENT"
    assert any("offline" in ln for ln in off.stderr().splitlines()), off.stderr()


def test_cache_files_are_private_and_hold_no_token(mount_factory, server, demo):
    token = "demo-token"
    m = mount_factory(server, target="acme", token=token, options=["ttl=3600"])
    ls(m.ws)
    out(["ls", "-lR", m.ws / "api" / "branches", m.ws / "api" / "tags"])
    cat(m.ws / "api" / "repository.json")
    tip = demo.branches("api")["main"]
    cat(m.ws / "api" / "commits" / tip / "tree" / main_files(demo)[0])
    assert m.unmount() == []
    nfiles = 0
    for d, dirs, names in os.walk(m.cache):
        assert stat.S_IMODE(os.lstat(d).st_mode) == 0o700, d
        for n in names:
            st = os.lstat(os.path.join(d, n))
            assert stat.S_ISREG(st.st_mode), n
            assert stat.S_IMODE(st.st_mode) == 0o600, os.path.join(d, n)
            nfiles += 1
    assert nfiles >= 5
    r = subprocess.run(["grep", "-r", "-l", "-a", "-F", "--", token, str(m.cache)],
                       capture_output=True, timeout=30)
    assert r.returncode == 1, f"the token is in the cache: {r.stdout!r}"

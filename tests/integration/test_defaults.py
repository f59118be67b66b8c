"""
The defaults DESIGN.md promises when an option is not given: ttl 60 s,
timeout 30 s, cache_size 1G, and the cache in $XDG_CACHE_HOME/bbfs, else
~/.cache/bbfs (0700 directories, 0600 files).

No test here passes the option it checks. Times are checked from the side a
loaded machine cannot spoil: what must still be pending or cached at a point
in time comfortably before the default runs out, and what must have happened
by a point after it (a late check only makes that more certain); the upper
bounds are hang guards, marked as such.
"""

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ERRNO_PROG, PYTHON, cat, describe, ls, out, user_env, write_token_file
from helpers import bare_mount, failed_get

TTL = 60          # the defaults under test
TIMEOUT = 30
CACHE_SIZE = 1 << 30


def refs_requests(entries, slug):
    return [e for e in entries if e["path"].startswith(f"/2.0/repositories/acme/{slug}/refs")]


def link_target(name, sha):
    return "../" * (name.count("/") + 1) + "commits/" + sha


@pytest.mark.timeout(TTL + TIMEOUT + 60)
def test_ttl_is_60_and_timeout_is_30(mount_factory, fresh_server, fresh_demo):
    """One mount without ttl= or timeout=:
    - a request that is never answered is still waiting TIMEOUT - 5 s later, and has
      failed with EIO (logged with its cause) by TIMEOUT + 15 s (hang guard);
    - branches listed at t0 are answered from memory at t0 + TTL - 15 s (no request, a
      branch made since is not there yet) and revalidated once t0 + TTL has passed."""
    hung = failed_get(r"repositories/acme/web/refs/branches", r"Timeout was reached")
    m = mount_factory(fresh_server, allow=[hung])
    branches = m.ws / "api" / "branches"
    t0 = time.monotonic()
    assert "after-ttl" not in ls(branches)
    listed = time.monotonic()
    tip = fresh_demo.branches("api")["main"]
    fresh_demo.git("api", "branch", "after-ttl", tip)

    fresh_server.knobs(hang={"count": -1, "path_contains": "/repositories/acme/web/refs"})
    reader = subprocess.Popen([PYTHON, "-c", ERRNO_PROG, "listdir", m.ws / "web" / "branches"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=user_env())
    started = time.monotonic()
    try:
        time.sleep(max(0.0, started + TIMEOUT - 5 - time.monotonic()))
        assert reader.poll() is None, f"the hung request ended after " \
            f"{time.monotonic() - started:.0f}s: {reader.stdout.read()}"
        try:
            got, _ = reader.communicate(timeout=started + TIMEOUT + 15 - time.monotonic())
        except subprocess.TimeoutExpired:
            pytest.fail(f"hang guard: still waiting {TIMEOUT + 15}s after the request was made")
        assert got.strip() == "EIO", got
    finally:
        fresh_server.knobs(hang=None)
        if reader.poll() is None:
            reader.kill()
            reader.communicate()

    time.sleep(max(0.0, t0 + TTL - 15 - time.monotonic()))
    mark = fresh_server.log.mark()
    assert "after-ttl" not in ls(branches), "revalidated before ttl had passed"
    assert refs_requests(fresh_server.log.since(mark), "api") == [], \
        describe(fresh_server.log.since(mark))

    time.sleep(max(0.0, listed + TTL + 1 - time.monotonic()))
    mark = fresh_server.log.mark()
    assert out(["readlink", branches / "after-ttl"]).strip() == link_target("after-ttl", tip)
    assert refs_requests(fresh_server.log.since(mark), "api"), "not revalidated after ttl"


# --------------------------------------------------------------------------
# Where the cache goes, and its modes


def check_private(top):
    """Every directory under TOP (itself included) is 0700, every file 0600; returns how
    many files there are."""
    files = 0
    assert stat.S_IMODE(os.stat(top).st_mode) == 0o700, top
    for d, dirs, names in os.walk(top):
        for n in dirs:
            mode = stat.S_IMODE(os.lstat(os.path.join(d, n)).st_mode)
            assert mode == 0o700, f"{d}/{n}: {oct(mode)}"
        for n in names:
            mode = stat.S_IMODE(os.lstat(os.path.join(d, n)).st_mode)
            assert mode == 0o600, f"{d}/{n}: {oct(mode)}"
            files += 1
    return files


def read_some(m, demo):
    """Reads what bbfs keeps on disk: a file at a commit and that commit's diff, compared
    with git."""
    tip = demo.branches("api")["main"]
    d = m.ws / "api" / "commits" / tip
    assert cat(d / "tree" / "README.md") == \
        subprocess.run(["git", "--git-dir", demo.git_dir("api"), "show", f"{tip}:README.md"],
                       capture_output=True, check=True, timeout=30).stdout
    cat(d / "diff")


@pytest.mark.parametrize("xdg", [False, True])
def test_cache_goes_to_xdg_cache_home_else_home_cache(server, demo, tmp_path, xdg):
    """Without cache_dir=: $XDG_CACHE_HOME/bbfs when it is set, else $HOME/.cache/bbfs,
    created private (0700) down to the files (0600), with umask 022."""
    home = tmp_path / "home"
    home.mkdir()
    env = user_env(HOME=str(home))
    if xdg:
        env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    where = tmp_path / "xdg" / "bbfs" if xdg else home / ".cache" / "bbfs"
    tf = write_token_file(tmp_path / "token", "demo-token")
    old = os.umask(0o022)
    try:
        m = bare_mount(server, tmp_path / "mnt", tmp_path / "bbfs.stderr", env, token_file=tf)
    finally:
        os.umask(old)
    try:
        read_some(m, demo)
    finally:
        problems = m.unmount()
    assert problems == [], problems
    assert where.is_dir(), f"no cache at {where}: " + out(["find", tmp_path, "-maxdepth", "4"])
    assert check_private(where) > 0, "nothing was cached on disk"
    if xdg:
        assert not (home / ".cache").exists(), "XDG_CACHE_HOME was set, yet ~/.cache was used"
    else:
        assert stat.S_IMODE((home / ".cache").stat().st_mode) == 0o700


# --------------------------------------------------------------------------
# cache_size=1G


def entry_dirs(cache):
    """The directories named objects under a cache directory (one per API and workspace)."""
    return [Path(d) / "objects" for d, dirs, _ in os.walk(cache) if "objects" in dirs]


def filler(objects, size):
    """A sparse file of SIZE bytes named like a store entry (fs/store.c: objects/XX/ and 62
    hex digits), used a long time ago: what the store counts, first to go, costing no disk."""
    f = objects / "00" / ("0" * 62)
    f.parent.mkdir(mode=0o700, exist_ok=True)
    with open(f, "wb") as fh:
        fh.truncate(size)
    os.chmod(f, 0o600)
    os.utime(f, (946684800, 946684800))      # 2000-01-01
    return f


def test_cache_size_is_1g(mount_factory, files_server, files_demo, tmp_path):
    """The store holds up to 1 GiB: with an old entry of 1 GiB - 8 MiB in it, storing more
    (diffs of a few KiB) evicts nothing; with the entry grown to 1 GiB, the next thing
    stored pushes the total over the bound and the old entry, the least recently used, is
    evicted."""
    from test_tree import commit_dir, diff_requests
    commits = files_demo.rev_list("files", "main")
    assert len(commits) >= 4, commits
    cache = tmp_path / "cache"

    def store_diffs(shas):
        """Reads the diffs of SHAS, each fetched (and so stored) now."""
        m = mount_factory(files_server, target="acme", cache_dir=cache)
        mark = files_server.log.mark()
        for sha in shas:
            status, want = files_server.get_bytes(f"repositories/acme/files/diff/{sha}")
            assert status == 200
            assert cat(commit_dir(m, sha) / "diff") == want, sha
        fetched = diff_requests(files_server.log.since(mark))
        assert len(fetched) == 2 * len(shas), describe(fetched)   # ours and bbfs's
        assert m.unmount() == []

    store_diffs(commits[:1])
    (objects,) = entry_dirs(cache)
    old = filler(objects, CACHE_SIZE - (8 << 20))
    store_diffs(commits[1:3])
    assert old.exists(), "evicted with the store under 1 GiB"

    with open(old, "r+b") as fh:
        fh.truncate(CACHE_SIZE)
    os.utime(old, (946684800, 946684800))
    store_diffs(commits[3:4])
    assert not old.exists(), "not evicted with the store over 1 GiB"

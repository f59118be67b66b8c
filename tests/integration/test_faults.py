"""
The fault matrix: what test_errors.py (short and long 500/502/503/429
bursts, malformed and wrongly shaped bodies, a hanging server, stale data)
and test_tree.py (a refused 555 diff, a download that always fails or is
always cut) do not already cover. Every fault is injected with a knob of the
fake server (tests/fakebb/README.md, "Fault knobs"); every test checks the
errno, that nothing blocks longer than -o timeout= (plus slack), the one
line bbfs logged and the cause it names, and that once the fault is cleared
the same read gives the right answer (nothing wrong was cached).

| fault (knob)                          | where                  | expected                                     |
|---------------------------------------|------------------------|----------------------------------------------|
| 429 + Retry-After: 1, twice           | repository listing     | listing complete; each retry follows its 429 |
|   (fail status 429 retry_after 1)     |                        | and comes no sooner than 1 s after it (the   |
|                                       |                        | log's times); nothing logged                 |
| 429 + Retry-After: 1, for good        | refs                   | EIO within timeout; one line; recovers       |
| 555, twice                            | a commit's diff        | diff complete and exact; nothing logged      |
| 555, twice                            | repository listing     | listing complete; nothing logged             |
| cut mid-body, once (reset)            | 100 KiB binary file    | right bytes (retried); nothing logged        |
| cut mid-body, once, slowed (reset +   | 1 MiB LFS file (the    | right bytes (retried), never wrong bytes     |
|   slow_body)                          | redirect's target)     |                                              |
| cut mid-body, 3 times, slowed         | 100 KiB binary file    | right bytes or EIO, never wrong bytes; a     |
|                                       |                        | later read is right                          |
| `next` loops back, no `size`          | repository listing     | EIO within timeout, no partial listing; one  |
|   (next_loop: page 1 -> 2 -> 1)       |                        | line naming the loop; <= 3 pages fetched     |
| `next` is the page itself             | commit listing         | EIO; one request; one line naming the loop   |
|   (next_loop to "self")               |                        |                                              |
| either loop, then cleared             | both                   | XFAIL (bbfs bug): the looping page was kept  |
|                                       |                        | and is replayed for ttl s, still EIO; with   |
|                                       |                        | ttl=1 it recovers after a second             |
| 70 MiB JSON body (huge)               | repository listing     | EIO within timeout (cap 64 MiB); one line;   |
|                                       |                        | recovers                                     |
| 70 MiB JSON body (huge)               | a commit's commit.json | EIO within timeout; one line; recovers       |
| random 500/503 bursts and latency     | everything, 8 readers  | every byte read equals git's; EIO allowed    |
|   (the load test, tests/load.py)      | for 10 s, then calm    | only near a fault, never in the calm after;  |
|                                       |                        | no hang, no crash                            |
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (REPO_ROOT, bbfs_binary, cat, describe, errno_of, is_repo_list, ls, run,
                      timed_errno)
from helpers import CUT_SHORT, after_the_pause, failed_get, logged

TIMEOUT = 3      # -o timeout= for the tests that wait for the deadline
SLACK = 4        # seconds on top of it before we call it a hang
CAP = 64 << 20   # bbfs's bound on a JSON body (api/http.h, HTTP_MAX_JSON)


def loop_line(path_re):
    """bbfs's line for a `next` link that leads back to a page it has read."""
    return (r"pagination stopped: the link loops back to a page already read "
            rf"\(next link 'https?://[^/\s]+/2\.0/{path_re}[?']")


def too_big(path_re):
    return failed_get(path_re, rf"response larger than {CAP} bytes$")


def clear(server):
    server.knobs(fail=None, reset=None, slow_body=None, next_loop=None, huge=None)


def plat_repos(m):
    return sorted(n for n in ls(m.ws) if not n.endswith(".json"))


def git_blob(git_dir, rev, path):
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{rev}:{path}"],
                          capture_output=True, timeout=60, check=True).stdout


def read_or_errno(path, timeout):
    """('OK', bytes) or (errno name, None), in a subprocess."""
    r = run([sys.executable if os.path.exists(sys.executable) else "/usr/bin/python3", "-c",
             "import os, sys, errno\n"
             "try:\n"
             "    sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())\n"
             "except OSError as e:\n"
             "    sys.stderr.write(errno.errorcode.get(e.errno, str(e.errno)))\n"
             "    sys.exit(3)\n", path], timeout=timeout, binary=True)
    if r.returncode == 0:
        return "OK", r.stdout
    assert r.returncode == 3, r.stderr
    return r.stderr.decode(), None


# ---------------------------------------------------------------- Retry-After


def test_429_with_retry_after_waits_and_succeeds(mount, server):
    expected = server.repo_slugs(project="PLAT")
    err = mount.stderr_mark()
    mark = server.log.mark()
    server.knobs(fail={"status": 429, "count": 2, "retry_after": 1,
                       "path_contains": "/repositories/acme"})
    assert plat_repos(mount) == expected
    reqs = sorted((e for e in server.log.since(mark) if is_repo_list(e)), key=lambda e: e["time"])
    statuses = [e["status"] for e in reqs]
    assert statuses[:3] == [429, 429, 200], describe(reqs)
    # each retry follows the 429 it answers, no sooner than Retry-After (1 s) after it (the
    # server's own clock; a loaded machine can only make the gap longer)
    for before, after in zip(reqs[:2], reqs[1:3]):
        gap = after["time"] - before["time"]
        assert gap >= 0.95, f"retried {gap:.2f}s after a 429 with Retry-After: 1\n" + describe(reqs)
    assert mount.stderr_since(err) == [], mount.stderr()


def test_429_with_retry_after_for_good_is_eio_then_recovers(mount_factory, server, demo):
    cause = failed_get(r"repositories/acme/api/refs/branches", r"HTTP 429\b")
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[cause])
    branches = m.ws / "api" / "branches"
    ls(m.ws)
    err = m.stderr_mark()
    mark = server.log.mark()
    server.knobs(fail={"status": 429, "count": -1, "retry_after": 1, "path_contains": "/refs"})
    e, took = timed_errno("listdir", branches, timeout=TIMEOUT + 20)
    assert e == "EIO"
    assert took < TIMEOUT + SLACK, took
    reqs = server.log.since(mark)
    assert 2 <= sum(1 for r in reqs if r["status"] == 429) <= TIMEOUT + 1, describe(reqs)
    logged(m, err, cause)
    clear(server)
    after_the_pause(lambda: errno_of("listdir", branches) == "OK", "branches/")
    assert sorted(ls(branches)) == sorted({n.split("/")[0] for n in demo.branches("api")})


# ---------------------------------------------------------------- 555


def test_short_555_burst_on_diff_is_invisible(mount, server, demo):
    tip = demo.branches("api")["main"]
    ls(mount.ws / "api" / "commits")
    err = mount.stderr_mark()
    mark = server.log.mark()
    server.knobs(fail={"status": 555, "count": 2, "path_contains": "/diff/"})
    got = cat(mount.ws / "api" / "commits" / tip / "diff")
    status, want = server.get_bytes(f"repositories/acme/api/diff/{tip}")
    assert status == 200 and got == want
    reqs = server.log.since(mark)
    assert sum(1 for r in reqs if r["status"] == 555) == 2, describe(reqs)
    assert mount.stderr_since(err) == [], mount.stderr()


def test_short_555_burst_on_listing_is_invisible(mount, server):
    expected = server.repo_slugs(project="PLAT")
    server.knobs(max_pagelen=2)
    err = mount.stderr_mark()
    mark = server.log.mark()
    server.knobs(fail={"status": 555, "count": 2, "path_contains": "/repositories/acme"})
    assert plat_repos(mount) == expected
    reqs = server.log.since(mark)
    assert sum(1 for r in reqs if r["status"] == 555) == 2, describe(reqs)
    assert mount.stderr_since(err) == [], mount.stderr()


# ---------------------------------------------------------------- bodies cut short


BLOB = "data/blob.bin"          # 100 KiB, binary
LFS = "assets/model.lfs"        # 1 MiB, through the LFS redirect


def files_git(files_demo):
    return files_demo.git_dir("files")


def tip_of(files_demo):
    return files_demo.branches("files")["main"]


def test_body_cut_once_is_retried_with_the_right_bytes(mount_factory, files_server, files_demo):
    sha = tip_of(files_demo)
    want = git_blob(files_git(files_demo), sha, BLOB)
    m = mount_factory(files_server, target="acme", options=[f"timeout={TIMEOUT}"])
    f = m.ws / "files" / "commits" / sha / "tree" / BLOB
    assert errno_of("stat", f) == "OK"
    err = m.stderr_mark()
    mark = files_server.log.mark()
    files_server.knobs(reset={"count": 1, "path_contains": f"/src/{sha}/{BLOB}"})
    t0 = time.monotonic()
    e, got = read_or_errno(f, timeout=TIMEOUT + 20)
    assert time.monotonic() - t0 < TIMEOUT + SLACK
    assert e == "OK" and got == want
    reqs = [r for r in files_server.log.since(mark) if BLOB in r["path"]]
    assert [r.get("fault") for r in reqs] == ["reset", None], describe(reqs)
    assert reqs[0]["bytes"] < len(want)
    assert m.stderr_since(err) == [], m.stderr()
    # and what is cached is right
    assert cat(f) == want


def test_lfs_body_cut_once_is_retried_with_the_right_bytes(mount_factory, files_server,
                                                            files_demo):
    sha = tip_of(files_demo)
    want = git_blob(files_git(files_demo), sha, LFS)
    m = mount_factory(files_server, target="acme", options=[f"timeout={TIMEOUT}"])
    f = m.ws / "files" / "commits" / sha / "tree" / LFS
    assert LFS.split("/")[-1] in ls(f.parent)   # (a stat of it downloads it: its size)
    err = m.stderr_mark()
    mark = files_server.log.mark()
    files_server.knobs(reset={"count": 1, "path_contains": "/media/"},
                       slow_body={"count": 1, "path_contains": "/media/",
                                  "bytes_per_second": 4 << 20})
    e, got = read_or_errno(f, timeout=TIMEOUT + 20)
    assert e == "OK", e
    assert got == want, "wrong bytes after a cut LFS download"
    lfs = [r for r in files_server.log.since(mark) if r["server"] == "lfs"]
    assert lfs and lfs[0].get("fault") == "reset", describe(lfs)
    assert all(r["auth"] is False for r in lfs), "the token went to the LFS host"
    assert m.stderr_since(err) == [], m.stderr()
    clear(files_server)
    assert cat(f) == want


def test_body_cut_repeatedly_never_gives_wrong_bytes(mount_factory, files_server, files_demo):
    """Three cuts in a row, each part-way through a slowed body: the read either gets the
    whole file after retries or fails with EIO; never a short or mixed file, and nothing
    torn is cached."""
    sha = tip_of(files_demo)
    want = git_blob(files_git(files_demo), sha, BLOB)
    cause = failed_get(rf"repositories/acme/files/src/{sha}/{BLOB}", CUT_SHORT)
    m = mount_factory(files_server, target="acme", options=[f"timeout={TIMEOUT}"],
                      allow=[cause])
    f = m.ws / "files" / "commits" / sha / "tree" / BLOB
    assert errno_of("stat", f) == "OK"
    err = m.stderr_mark()
    pc = f"/src/{sha}/{BLOB}"
    files_server.knobs(reset={"count": 3, "path_contains": pc},
                       slow_body={"count": 3, "path_contains": pc, "bytes_per_second": 200_000})
    t0 = time.monotonic()
    e, got = read_or_errno(f, timeout=TIMEOUT + 20)
    took = time.monotonic() - t0
    assert e in ("OK", "EIO"), e
    if e == "OK":
        assert got == want, "wrong bytes after cut downloads"
        assert m.stderr_since(err) == [], m.stderr()
    else:
        assert took < TIMEOUT + SLACK, took
        logged(m, err, cause)
    clear(files_server)
    assert cat(f) == want


# ---------------------------------------------------------------- pagination loops


def test_next_link_looping_back_is_eio_not_partial(mount_factory, server):
    """Pages without `size` (bbfs must follow `next`): page 1 -> page 2 -> page 1 again."""
    cause = loop_line(r"repositories/acme")
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[cause])
    expected = server.repo_slugs(project="PLAT")
    assert len(expected) > 4
    server.knobs(max_pagelen=2)
    err = m.stderr_mark()
    mark = server.log.mark()
    server.knobs(next_loop={"count": -1, "path_contains": "/repositories/acme"})
    e, took = timed_errno("listdir", m.ws, timeout=TIMEOUT + 20)
    assert e == "EIO", e
    assert took < TIMEOUT + SLACK, took
    pages = [r for r in server.log.since(mark) if is_repo_list(r)]
    assert pages and all(r.get("fault") == "next_loop" for r in pages), describe(pages)
    assert len(pages) <= 3, "the loop was followed:\n" + describe(pages)
    logged(m, err, cause)


def test_next_link_to_the_same_page_is_eio(mount_factory, server):
    """The commit listing (cursor pagination) whose `next` is the page just read."""
    cause = loop_line(r"repositories/acme/api/commits/main")
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[cause])
    server.knobs(max_pagelen=5)
    ls(m.ws)
    err = m.stderr_mark()
    mark = server.log.mark()
    server.knobs(next_loop={"count": -1, "to": "self", "path_contains": "/commits"})
    e, took = timed_errno("listdir", m.ws / "api" / "commits", timeout=TIMEOUT + 20)
    assert e == "EIO", e
    assert took < TIMEOUT + SLACK, took
    reqs = [r for r in server.log.since(mark) if "/commits" in r["path"]]
    assert len(reqs) == 1, describe(reqs)
    logged(m, err, cause)


@pytest.mark.parametrize("where", ["repositories", "commits"])
def test_looping_page_is_not_kept(mount_factory, server, demo, where):
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"],
                      allow=[loop_line(r"repositories/acme(/api/commits/main)?")])
    server.knobs(max_pagelen=2 if where == "repositories" else 5)
    if where == "repositories":
        path, knob = m.ws, {"path_contains": "/repositories/acme"}
        want = server.repo_slugs(project="PLAT")
    else:
        ls(m.ws)
        path, knob = m.ws / "api" / "commits", {"path_contains": "/commits", "to": "self"}
        want = None
    server.knobs(next_loop={"count": -1, **knob})
    assert errno_of("listdir", path) == "EIO"
    clear(server)
    err = m.stderr_mark()
    e = errno_of("listdir", path)
    assert e == "OK", f"{e} after the fault was cleared:\n" + "\n".join(m.stderr_since(err))
    if want:
        assert plat_repos(m) == want
    else:
        assert demo.branches("api")["main"] in ls(path)


def test_looping_page_recovers_after_ttl(mount_factory, server):
    """What does work today: once ttl has passed, the stored page is revalidated."""
    m = mount_factory(server, options=[f"timeout={TIMEOUT}", "ttl=1"],
                      allow=[loop_line(r"repositories/acme")])
    expected = server.repo_slugs(project="PLAT")
    server.knobs(max_pagelen=2)
    server.knobs(next_loop={"count": -1, "path_contains": "/repositories/acme"})
    assert errno_of("listdir", m.ws) == "EIO"
    clear(server)
    time.sleep(1.5)
    assert plat_repos(m) == expected


# ---------------------------------------------------------------- oversized JSON


def test_huge_json_listing_is_eio_within_timeout(mount_factory, server):
    cause = too_big(r"repositories/acme")
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[cause])
    expected = server.repo_slugs(project="PLAT")
    err = m.stderr_mark()
    mark = server.log.mark()
    server.knobs(huge={"count": -1, "path_contains": "/repositories/acme"})
    e, took = timed_errno("listdir", m.ws, timeout=TIMEOUT + 20)
    assert e == "EIO", e
    assert took < TIMEOUT + SLACK, took
    reqs = server.log.since(mark)
    assert reqs and all(r.get("fault") == "huge" for r in reqs), describe(reqs)
    # the cap stops the transfer: the 70 MiB are never read in full, nor retried
    assert all(r["bytes"] < (70 << 20) for r in reqs), [r["bytes"] for r in reqs]
    assert len(reqs) <= 2, describe(reqs)
    logged(m, err, cause)
    clear(server)
    assert plat_repos(m) == expected


def test_huge_commit_json_is_eio_within_timeout(mount_factory, server, demo):
    root = demo.rev_list("api", "--max-parents=0", "main")[0]
    cause = too_big(rf"repositories/acme/api/commit/{root}")
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[cause])
    f = m.ws / "api" / "commits" / root / "commit.json"
    ls(m.ws / "api" / "commits")
    err = m.stderr_mark()
    server.knobs(huge={"count": -1, "path_contains": f"/commit/{root}"})
    e, took = timed_errno("read", f, timeout=TIMEOUT + 20)
    assert e == "EIO", e
    assert took < TIMEOUT + SLACK, took
    logged(m, err, cause)
    clear(server)
    assert json.loads(cat(f))["hash"] == root


# ---------------------------------------------------------------- the load test, short


@pytest.mark.serial
@pytest.mark.timeout(150)
def test_short_load_with_faults(files_demo, tmp_path):
    """tests/load.py for 10 s with 8 readers (make load runs it for 120 s with 16), then its
    closing calm, where any EIO fails the run."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    try:
        import load
    finally:
        sys.path.remove(str(REPO_ROOT / "tests"))
    summary = load.run_load(bbfs=bbfs_binary(), duration=10, readers=8, workdir=tmp_path,
                            data_json=Path(files_demo.data_path), log=print)
    assert summary["failures"] == [], summary["failures"]
    assert summary["operations"] > 50, summary
    assert summary["bytes_compared"] > 0, summary
    assert summary["operations_with_no_fault_near"] > 0, summary

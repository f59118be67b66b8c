"""
Failing fast, and spoilt answers (issue 14 items 4 and 5; issue 13's one line per episode).

Once the API is known unreachable (refused, reset, timed out, 5xx or 429 after retries),
every request for the next 10 seconds answers at once, without touching the network:
stored data where there is some, EIO otherwise, for every kind of request (listings,
objects, files, diffs). The outage is one line on stderr, naming its cause; the first
answer after it ends it, and the next outage is a line of its own.

A 200 answer whose JSON body does not parse (cut in half, its Content-Length right: the
fake's `cut_json` knob) is transient like a 5xx: retried with the same backoff, invisible
when a retry works, else EIO with one line. A body that parses with the wrong shape is
an immediate error.

Counts and orderings come from the fake server's request log, expected values from git
and the fake's data.
"""

import os
import re
import signal
import time

import pytest

from conftest import PYTHON, cat, describe, errno_of, ls, out, run
from helpers import failed_get
from test_readable import git_find

HTTP_MAX_ATTEMPTS = 5     # api/http.h: attempts of one call, retries included
PAUSE = 10                # api/http.h HTTP_OUTAGE_PAUSE_SECONDS, the man page's 10 seconds
TIMEOUT = 10              # -o timeout=
READS = 50

# One os call per path, in one process: "OK" or the errno's name, a line each.
READ_ALL = r"""
import errno, os, sys
for p in sys.argv[1:]:
    try:
        with open(p, "rb") as f:
            f.read()
        print("OK")
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
"""


def read_all(paths):
    r = run([PYTHON, "-c", READ_ALL, *map(str, paths)], timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def api_only(entries):
    return [e for e in entries if e["server"] == "api"]


def unread_files(demo, m, count):
    """count files of api's tree at several commits, their directories listed (so that a
    read needs the file alone), none of them read: [(path in the mount, git's bytes)]."""
    files = []
    for sha in demo.rev_list("api", "main"):
        names = demo.git("api", "ls-tree", "--name-only", sha).split()
        blobs = [n for n in names if demo.git("api", "cat-file", "-t", f"{sha}:{n}").strip()
                 == "blob"]
        tree = m.ws / "api" / "commits" / sha / "tree"
        assert sorted(out(["ls", "-1A", tree]).split()) == sorted(names)
        files += [(tree / n, sha, n) for n in blobs]
        if len(files) >= count:
            return files[:count]
    pytest.fail(f"the api repository has fewer than {count} files in its first trees")


CAUSES = {"503": r"HTTP 503: Service Unavailable", "reset": r"(Transferred a partial file|"
          r"Recv failure|Connection reset)", "429": r"HTTP 429: Rate limit"}
FAULTS = {"503": {"fail": {"status": 503, "count": -1}},
          "reset": {"reset": {"count": -1}},
          "429": {"fail": {"status": 429, "count": -1}}}


@pytest.mark.parametrize("fault", ["503", "reset", "429"])
def test_failing_reads_fail_fast(mount_factory, server, demo, fault):
    """50 reads of files never read, while the API fails: the first costs one retry cycle,
    the other 49 none (without the pause: 250 requests). Listings, commit objects, diffs
    and tags answer at once too; stale data is served at once; the outage is one line."""
    cause = CAUSES[fault]
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"],
                      allow=[failed_get(r"\S+", cause), rf"cannot reach the API \({cause}"])
    files = unread_files(demo, m, READS)
    branches = ls(m.ws / "api" / "branches")
    names = ls(m.ws)
    assert [n for n in names if not n.endswith(".json")] == server.repo_slugs(project="PLAT")
    shas = demo.rev_list("api", "main")
    unlisted = [s for s in shas if s not in {sha for _, sha, _ in files}]
    err = m.stderr_mark()
    mark = server.log.mark()
    server.knobs(**FAULTS[fault])
    assert read_all(p for p, _, _ in files) == ["EIO"] * READS
    reqs = api_only(server.log.since(mark))
    # one retry cycle, all for the first file: the other 49 reads touched no network
    assert 1 <= len(reqs) <= HTTP_MAX_ATTEMPTS, describe(reqs)
    assert {e["path"] for e in reqs} == {reqs[0]["path"]}, describe(reqs)
    assert reqs[0]["path"].endswith(f"/{files[0][1]}/{files[0][2]}"), describe(reqs)
    # every other kind of request answers at once too: a directory listing, a commit
    # object, a diff, a ref listing; and what is stored is served, stale (SIGHUP makes
    # every listing stale) or not
    mark = server.log.mark()
    assert errno_of("listdir", m.ws / "api" / "commits" / unlisted[0] / "tree") == "EIO"
    assert errno_of("read", m.ws / "api" / "commits" / unlisted[1] / "commit.json") == "EIO"
    assert errno_of("read", m.ws / "api" / "commits" / shas[0] / "diff") == "EIO"
    assert errno_of("listdir", m.ws / "api" / "tags") == "EIO"
    os.kill(m.proc.pid, signal.SIGHUP)
    time.sleep(0.5)                       # (the signal is handled by a thread of its own)
    assert ls(m.ws / "api" / "branches") == branches
    assert ls(m.ws) == names
    reqs = api_only(server.log.since(mark))
    assert reqs == [], describe(reqs)
    # the outage is one line, naming its cause (besides what SIGHUP says of itself)
    said = [ln for ln in m.stderr_since(err) if "SIGHUP" not in ln]
    assert len(said) == 1 and re.search(cause, said[0]), said
    # the API answers again: after the pause, the first answer ends the outage ...
    server.knobs(fail=None, reset=None)
    end = time.monotonic() + PAUSE + 30           # a hang guard
    path, sha, name = files[1]
    want = demo.git("api", "show", f"{sha}:{name}").encode()
    while errno_of("read", path) != "OK":
        assert time.monotonic() < end, "no recovery after the pause"
        time.sleep(0.5)
    assert cat(path).rstrip(b"\n") == want.rstrip(b"\n")
    # ... so that the next outage is tried at once, and said again (a file of another
    # commit: the next one of the same directory would have the rest read ahead at once)
    err = m.stderr_mark()
    mark = server.log.mark()
    server.knobs(**FAULTS[fault])
    assert files[-1][1] != files[1][1]
    assert errno_of("read", files[-1][0]) == "EIO"
    reqs = api_only(server.log.since(mark))
    assert 1 <= len(reqs) <= HTTP_MAX_ATTEMPTS, describe(reqs)
    assert {e["path"] for e in reqs} == {reqs[0]["path"]}, describe(reqs)
    assert reqs[0]["path"].endswith(f"/{files[-1][1]}/{files[-1][2]}"), describe(reqs)
    said = m.stderr_since(err)
    assert len(said) == 1 and re.search(cause, said[0]), said
    server.knobs(fail=None, reset=None)


def test_spoilt_bodies_are_retried(mount_factory, server, demo):
    """One JSON answer in three cut in half: listings, repository.json and tree directories
    are all right, each cut answer asked for again, nothing said."""
    slugs = server.repo_slugs()
    described = {s: server.get_json(f"repositories/acme/{s}")["description"] for s in slugs}
    server.knobs(cut_json={"every": 3, "count": -1})   # (the mount's own check is the 1st)
    mark = server.log.mark()
    m = mount_factory(server, target="acme")
    assert [n for n in ls(m.ws) if not n.endswith(".json")] == slugs
    for slug in slugs:
        assert cat(m.ws / slug / "description") == (described[slug] + "\n").encode()
        assert cat(m.ws / slug / "repository.json").startswith(b"{\n")
    tip = demo.branches("api")["main"]
    got = out(["find", m.ws / "api" / "commits" / tip / "tree", "-mindepth", "1", "-printf",
               r"%P %y %s %l\n"]).splitlines()
    assert sorted(got) == git_find(demo, "api", tip)
    assert sorted(ls(m.ws / "api" / "branches")) == sorted(
        {b.split("/")[0] for b in demo.branches("api")})
    server.knobs(cut_json=None)
    reqs = api_only(server.log.since(mark))
    cut = [i for i, e in enumerate(reqs) if e.get("fault") == "cut_json"]
    assert len(cut) >= 3, describe(reqs)
    for i in cut:   # each cut answer was asked for again, and then came whole
        again = [e for e in reqs[i + 1:] if (e["path"], e["query"]) ==
                 (reqs[i]["path"], reqs[i]["query"])]
        assert any(e["status"] == 200 and e.get("fault") is None for e in again), \
            describe(reqs[i:])
    assert m.stderr().strip() == "", m.stderr()


def test_spoilt_forever_is_eio_with_one_line_wrong_shape_at_once(mount_factory, server, demo):
    refs = r"repositories/acme/api/refs/branches\S*"
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"],
                      allow=[failed_get(refs, r"HTTP 200: a body that is not JSON"),
                             r"malformed page from \S+/refs/branches\S*: \"values\" is not"])
    ls(m.ws)
    branches = m.ws / "api" / "branches"
    err = m.stderr_mark()
    mark = server.log.mark()
    server.knobs(cut_json={"count": -1, "path_contains": "/refs/branches"})
    assert errno_of("listdir", branches) == "EIO"
    reqs = api_only(server.log.since(mark))
    assert len(reqs) == HTTP_MAX_ATTEMPTS and all(e.get("fault") == "cut_json" for e in reqs), \
        describe(reqs)
    said = m.stderr_since(err)
    assert len(said) == 1 and re.search(failed_get(refs, r"HTTP 200: a body that is not JSON "
                                                   rf"\(.*\) \({HTTP_MAX_ATTEMPTS} attempts\)$"),
                                        said[0]), said
    # not an outage: the rest of the API is asked as before
    server.knobs(cut_json=None, wrong_shape={"count": -1, "path_contains": "/refs/branches"})
    mark = server.log.mark()
    assert errno_of("listdir", branches) == "EIO"
    reqs = api_only(server.log.since(mark))
    assert len(reqs) == 1 and reqs[0].get("fault") == "wrong_shape", describe(reqs)
    server.knobs(wrong_shape=None)
    assert sorted(ls(branches)) == sorted({b.split("/")[0] for b in demo.branches("api")})

"""
Bad answers from the API lose nothing: short bursts of 429/503 are retried
invisibly; long ones give EIO for what is not cached, are logged once with
their cause (the URL and the status), and leave nothing wrong in the cache;
malformed JSON and wrongly shaped answers give EIO rather than a partial
listing, logged with what was wrong; a hanging server costs at most the
request timeout; stale data is served when a refresh fails. A 403 is EACCES
where the tree has no documented exception (a repository the token may not
see is absent, and so is a pull request without the pullrequest scope).
"""

import json
import math
import re
import time

import pytest

from conftest import (cat, describe, errno_of, is_repo_list, lines, ls,
                      run, timed_errno)
from helpers import after_the_pause, failed_get, logged

TIMEOUT = 3      # -o timeout= for the tests that wait for the deadline
SLACK = 4        # seconds on top of it before we call it a hang


def link_target(name, sha):
    return "../" * (name.count("/") + 1) + "commits/" + sha


def branch_links(path):
    res = {}
    for ln in lines(["find", path, "-type", "l", "-printf", "%P\\t%l\\n"]):
        rel, target = ln.split("\t", 1)
        res[rel] = target
    return res


def expected_branches(demo, slug="api"):
    return {n: link_target(n, h) for n, h in demo.branches(slug).items()}


def clear_failures(server):
    server.knobs(fail=None, malformed=None, wrong_shape=None, hang=None)


# ---------------------------------------------------------------- short bursts


@pytest.mark.parametrize("status", [503, 500, 502, 429])
def test_short_burst_on_refs_is_invisible(mount, server, demo, status):
    ls(mount.ws)
    mark = server.log.mark()
    err = mount.stderr_mark()
    server.knobs(fail={"status": status, "count": 2, "path_contains": "/refs"})
    assert branch_links(mount.ws / "api" / "branches") == expected_branches(demo)
    reqs = server.log.since(mark)
    assert sum(1 for e in reqs if e["status"] == status) == 2, describe(reqs)
    assert mount.stderr_since(err) == []


@pytest.mark.parametrize("status", [429, 503])
def test_short_burst_on_listing_is_invisible(mount, server, status):
    expected = server.repo_slugs(project="PLAT")
    server.knobs(max_pagelen=2)
    mark = server.log.mark()
    err = mount.stderr_mark()
    server.knobs(fail={"status": status, "count": 2})
    assert sorted(n for n in ls(mount.ws) if not n.endswith(".json")) == expected
    reqs = server.log.since(mark)
    assert sum(1 for e in reqs if e["status"] == status) == 2, describe(reqs)
    # every page is fetched successfully exactly once
    ok_pages = [e for e in reqs if is_repo_list(e) and e["status"] == 200]
    assert len(ok_pages) == math.ceil(len(expected) / 2), describe(reqs)
    assert mount.stderr_since(err) == []


# ---------------------------------------------------------------- long bursts


@pytest.mark.parametrize("status", [503, 429])
def test_long_burst_is_eio_logged_once_then_recovers(mount_factory, server, demo, status):
    cause = failed_get(r"repositories/acme/api/refs/branches", rf"HTTP {status}\b")
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[cause])
    branches = m.ws / "api" / "branches"
    ls(m.ws)
    err = m.stderr_mark()
    server.knobs(fail={"status": status, "count": -1, "path_contains": "/refs"})
    e, took = timed_errno("listdir", branches)
    assert e == "EIO"
    assert took < TIMEOUT + SLACK, took
    logged(m, err, cause)
    e, took = timed_errno("listdir", branches)
    assert e == "EIO"
    assert took < TIMEOUT + SLACK, took
    assert len(m.stderr_since(err)) == 1, "the same failure was logged twice:\n" + m.stderr()
    # what does not need the failing endpoint keeps working
    assert json.loads(cat(m.ws / "api" / "repository.json"))["slug"] == "api"
    clear_failures(server)
    # (an outage: the API is asked again once its pause is over)
    after_the_pause(lambda: errno_of("listdir", branches) == "OK", "branches/")
    assert branch_links(branches) == expected_branches(demo)


def test_repository_dir_lists_while_refs_fail(mount_factory, server):
    """A broken refs endpoint costs branches/ and tags/, not the whole repository."""
    cause = failed_get(r"repositories/acme/api/refs/branches", r"HTTP 503\b")
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[cause])
    ls(m.ws)
    err = m.stderr_mark()
    server.knobs(fail={"status": 503, "count": -1, "path_contains": "/refs"})
    assert errno_of("listdir", m.ws / "api" / "branches") == "EIO"
    logged(m, err, cause)
    r = run(["ls", m.ws / "api"])
    assert r.returncode == 0, r.stderr
    assert {"repository.json", "description", "clone-url", "commits"} <= set(r.stdout.split())
    clear_failures(server)


STALE = (r"cannot reach the API \(HTTP 503: Service Unavailable\): serving stored, maybe stale, "
         r"data for https?://\S+/2\.0/")


def test_stale_data_is_served_when_refresh_fails(mount_factory, server, demo):
    m = mount_factory(server, options=["ttl=1", f"timeout={TIMEOUT}"], allow=[STALE])
    before = ls(m.ws)
    links = branch_links(m.ws / "api" / "branches")
    server.knobs(fail={"status": 503, "count": -1})
    time.sleep(1.5)
    t0 = time.monotonic()
    err = m.stderr_mark()
    assert ls(m.ws) == before
    assert branch_links(m.ws / "api" / "branches") == links
    assert time.monotonic() - t0 < 2 * (TIMEOUT + SLACK)
    # one line for the outage: stale data is served, and why
    said = m.stderr_since(err)
    assert len(said) == 1 and re.search(STALE, said[0]), "\n".join(said)
    # the outage goes on: no new lines for the same failures (no log storm)
    time.sleep(1.5)
    err = m.stderr_mark()
    assert ls(m.ws) == before
    assert branch_links(m.ws / "api" / "branches") == links
    assert m.stderr_since(err) == [], m.stderr()
    clear_failures(server)


# ---------------------------------------------------------------- bad bodies

# What bbfs says about a body it cannot use, per knob: one that is not JSON is retried
# (issue 14), one of the wrong shape is not.
NOT_JSON = r"HTTP 200: a body that is not JSON \(.*\) \(5 attempts\)$"
BAD_PAGE = {"wrong_shape": r'"values" is not an array'}
BAD_COMMIT = {"wrong_shape": r"not the commit asked for"}


def bad_page(path_re, knob):
    if knob == "malformed":
        return failed_get(path_re, NOT_JSON)
    return rf"malformed page from https?://[^/\s]+/2\.0/{path_re}: {BAD_PAGE[knob]}$"


@pytest.mark.parametrize("knob", ["malformed", "wrong_shape"])
def test_bad_body_on_listing_is_eio_then_recovers(mount_factory, server, knob):
    cause = bad_page(r"repositories/acme", knob)
    m = mount_factory(server, allow=[cause])
    expected = server.repo_slugs(project="PLAT")
    err = m.stderr_mark()
    server.knobs(**{knob: {"count": -1}})
    assert errno_of("listdir", m.ws) == "EIO"
    logged(m, err, cause)
    clear_failures(server)
    assert sorted(n for n in ls(m.ws) if not n.endswith(".json")) == expected


@pytest.mark.parametrize("knob", ["malformed", "wrong_shape"])
def test_bad_second_page_is_eio_not_partial(mount_factory, server, knob):
    """A listing whose later page is broken fails as a whole: the first page is
    answered normally (the fault skips it), the second is broken."""
    cause = bad_page(r"repositories/acme", knob)
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[cause])
    expected = server.repo_slugs(project="PLAT")
    assert len(expected) > 2
    mark = server.log.mark()
    err = m.stderr_mark()
    server.knobs(max_pagelen=2,
                 **{knob: {"count": -1, "skip": 1, "path_contains": "/repositories/acme"}})
    assert errno_of("listdir", m.ws) == "EIO"
    logged(m, err, cause)
    clear_failures(server)
    pages = [e for e in server.log.since(mark) if is_repo_list(e)]
    assert pages and pages[0].get("fault") is None and pages[0]["status"] == 200, \
        describe(server.log.since(mark))
    assert any(e.get("fault") == knob for e in pages[1:]), describe(pages)
    assert sorted(n for n in ls(m.ws) if not n.endswith(".json")) == expected


@pytest.mark.parametrize("knob", ["malformed", "wrong_shape"])
def test_bad_body_on_refs_and_commit(mount_factory, server, demo, knob):
    refs = bad_page(r"repositories/acme/api/refs/branches\S*", knob)
    commit = (r"(unexpected answer from|GET) https?://[^/\s]+/2\.0/repositories/acme/api/commit/"
              r"(?P<sha>[0-9a-f]{40}): "
              + (NOT_JSON if knob == "malformed" else rf"{BAD_COMMIT[knob]}$"))
    m = mount_factory(server, allow=[refs, commit])
    api = m.ws / "api"
    ls(m.ws)
    err = m.stderr_mark()
    server.knobs(**{knob: {"count": -1, "path_contains": "/refs"}})
    assert errno_of("listdir", api / "branches") == "EIO"
    logged(m, err, refs)
    clear_failures(server)
    assert branch_links(api / "branches") == expected_branches(demo)
    root = demo.rev_list("api", "--max-parents=0", "main")[0]
    unlisted = demo.rev_list("api", "main..feature/deep/y")[0]
    ls(api / "commits")
    err = m.stderr_mark()
    server.knobs(**{knob: {"count": -1, "path_contains": "/commit/"}})
    assert errno_of("read", api / "commits" / root / "commit.json") == "EIO"
    assert errno_of("stat", api / "commits" / unlisted) == "EIO"
    # one line for each commit, naming it and what was wrong
    said = m.stderr_since(err)
    assert [re.search(commit, ln) and re.search(commit, ln)["sha"] for ln in said] == \
        [root, unlisted], "\n".join(said)
    clear_failures(server)
    assert json.loads(cat(api / "commits" / root / "commit.json"))["hash"] == root
    assert errno_of("stat", api / "commits" / unlisted) == "OK"


# ---------------------------------------------------------------- hangs


def test_hanging_server_fails_within_timeout(mount_factory, server):
    cause = failed_get(r"repositories/acme", r"Timeout was reached")
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[cause])
    expected = server.repo_slugs(project="PLAT")
    mark = server.log.mark()
    err = m.stderr_mark()
    server.knobs(hang={"count": -1})
    e, took = timed_errno("listdir", m.ws, timeout=TIMEOUT + 20)
    assert e == "EIO"
    assert took < TIMEOUT + SLACK, f"took {took:.1f}s:\n" + describe(server.log.since(mark))
    logged(m, err, cause)
    clear_failures(server)
    after_the_pause(lambda: errno_of("listdir", m.ws) == "OK", "the workspace")
    assert sorted(n for n in ls(m.ws) if not n.endswith(".json")) == expected



# ---------------------------------------------------------------- 403


def forbidden_cases(demo):
    """(name, the path the 403 answers, os call, the path in the tree below acme/api)."""
    tip = demo.branches("api")["main"]
    unlisted = demo.rev_list("api", "main..feature/deep/y")[0]
    readme = "README.md"
    assert readme in demo.git("api", "ls-tree", "--name-only", tip).split()
    return {
        "branches": ("/repositories/acme/api/refs", "listdir", "branches"),
        "commits": ("/repositories/acme/api/commits", "listdir", "commits"),
        "commit.json": (f"/repositories/acme/api/commit/{tip}", "read",
                        f"commits/{tip}/commit.json"),
        "unlisted commit": (f"/repositories/acme/api/commit/{unlisted}", "stat",
                            f"commits/{unlisted}"),
        "tree": (f"/repositories/acme/api/src/{tip}/", "listdir", f"commits/{tip}/tree"),
        "file": (f"/repositories/acme/api/src/{tip}/{readme}", "read",
                 f"commits/{tip}/tree/{readme}"),
        "diff": (f"/repositories/acme/api/diff/{tip}", "read", f"commits/{tip}/diff"),
    }


@pytest.mark.parametrize("what", ["branches", "commits", "commit.json", "unlisted commit", "tree",
                                  "file", "diff"])
def test_403_is_eacces_asked_once_and_not_logged(mount_factory, server, demo, what):
    """DESIGN.md: 403 -> EACCES. A refusal is an answer, not a failure: one request (no
    retry), nothing on stderr, and once the API allows it the same call works."""
    forbidden, op, rel = forbidden_cases(demo)[what]
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"])
    tip = demo.branches("api")["main"]
    # what leads there is known first (the listing that gives the file its size, etc.);
    # the diff's own size comes from the diff, so its stat is left to the refusal
    if what == "file":
        assert errno_of("stat", m.ws / "api" / rel) == "OK"
    elif what != "commits":
        assert errno_of("stat", m.ws / "api" / "commits" / tip) == "OK"
    err = m.stderr_mark()
    mark = server.log.mark()
    server.knobs(fail={"status": 403, "count": -1, "path_contains": forbidden,
                       "message": "Access denied"})
    assert errno_of(op, m.ws / "api" / rel) == "EACCES"
    refused = [e for e in server.log.since(mark) if e["status"] == 403]
    assert len(refused) == 1, describe(server.log.since(mark))
    assert refused[0]["path"].startswith("/2.0" + forbidden.rstrip("/")), describe(refused)
    assert m.stderr_since(err) == []
    clear_failures(server)
    assert errno_of(op, m.ws / "api" / rel) == "OK"


def test_403_on_a_repository_reached_by_path_is_enoent(mount_factory, server, demo):
    """The documented exception: a repository the token may not see is not there (ENOENT,
    like one outside the project), rather than a directory that cannot be entered; like any
    absent name it is remembered until ttl has passed."""
    m = mount_factory(server, options=["ttl=1"])
    mark = server.log.mark()
    server.knobs(fail={"status": 403, "count": -1, "path_contains": "/repositories/acme/web"})
    assert errno_of("stat", m.ws / "web" / "HEAD") == "ENOENT"
    assert errno_of("stat", m.ws / "web") == "ENOENT"
    refused = [e for e in server.log.since(mark) if e["status"] == 403]
    assert refused and all(e["path"].rstrip("/") == "/2.0/repositories/acme/web"
                           for e in refused), describe(server.log.since(mark))
    assert m.stderr() == ""
    clear_failures(server)
    time.sleep(1.5)
    assert errno_of("stat", m.ws / "web" / "HEAD") == "OK"

"""
Bad answers from the API lose nothing: short bursts of 429/503 are retried
invisibly; long ones give EIO for what is not cached, are logged once, and
leave nothing wrong in the cache; malformed JSON and wrongly shaped answers
give EIO rather than a partial listing; a hanging server costs at most the
request timeout; stale data is served when a refresh fails.
"""

import json
import math
import time

import pytest

from conftest import (cat, describe, errno_of, is_repo_list, lines, ls,
                      run, timed_errno)

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
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[r".*"])
    branches = m.ws / "api" / "branches"
    ls(m.ws)
    err = m.stderr_mark()
    server.knobs(fail={"status": status, "count": -1, "path_contains": "/refs"})
    e, took = timed_errno("listdir", branches)
    assert e == "EIO"
    assert took < TIMEOUT + SLACK, took
    assert len(m.stderr_since(err)) == 1, m.stderr()
    e, took = timed_errno("listdir", branches)
    assert e == "EIO"
    assert took < TIMEOUT + SLACK, took
    assert len(m.stderr_since(err)) == 1, "the same failure was logged twice:\n" + m.stderr()
    # what does not need the failing endpoint keeps working
    assert json.loads(cat(m.ws / "api" / "repository.json"))["slug"] == "api"
    clear_failures(server)
    assert branch_links(branches) == expected_branches(demo)


def test_repository_dir_lists_while_refs_fail(mount_factory, server):
    """A broken refs endpoint costs branches/ and tags/, not the whole repository."""
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[r".*"])
    ls(m.ws)
    server.knobs(fail={"status": 503, "count": -1, "path_contains": "/refs"})
    assert errno_of("listdir", m.ws / "api" / "branches") == "EIO"
    r = run(["ls", m.ws / "api"])
    assert r.returncode == 0, r.stderr
    assert {"repository.json", "description", "clone-url", "commits"} <= set(r.stdout.split())
    clear_failures(server)


def test_stale_data_is_served_when_refresh_fails(mount_factory, server, demo):
    m = mount_factory(server, options=["ttl=1", f"timeout={TIMEOUT}"], allow=[r".*"])
    before = ls(m.ws)
    links = branch_links(m.ws / "api" / "branches")
    server.knobs(fail={"status": 503, "count": -1})
    time.sleep(1.5)
    t0 = time.monotonic()
    err = m.stderr_mark()
    assert ls(m.ws) == before
    assert branch_links(m.ws / "api" / "branches") == links
    assert time.monotonic() - t0 < 2 * (TIMEOUT + SLACK)
    logged = m.stderr_since(err)
    assert logged, "serving stale data should be logged"
    # the outage goes on: no new lines for the same failures (no log storm)
    time.sleep(1.5)
    err = m.stderr_mark()
    assert ls(m.ws) == before
    assert branch_links(m.ws / "api" / "branches") == links
    assert m.stderr_since(err) == [], m.stderr()
    clear_failures(server)


# ---------------------------------------------------------------- bad bodies


@pytest.mark.parametrize("knob", ["malformed", "wrong_shape"])
def test_bad_body_on_listing_is_eio_then_recovers(mount_factory, server, knob):
    m = mount_factory(server, allow=[r".*"])
    expected = server.repo_slugs(project="PLAT")
    server.knobs(**{knob: {"count": -1}})
    assert errno_of("listdir", m.ws) == "EIO"
    clear_failures(server)
    assert sorted(n for n in ls(m.ws) if not n.endswith(".json")) == expected


@pytest.mark.parametrize("knob", ["malformed", "wrong_shape"])
def test_bad_second_page_is_eio_not_partial(mount_factory, server, knob):
    """A listing whose later page is broken fails as a whole: the first page is
    answered normally (the fault skips it), the second is broken."""
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[r".*"])
    expected = server.repo_slugs(project="PLAT")
    assert len(expected) > 2
    mark = server.log.mark()
    server.knobs(max_pagelen=2,
                 **{knob: {"count": -1, "skip": 1, "path_contains": "/repositories/acme"}})
    assert errno_of("listdir", m.ws) == "EIO"
    clear_failures(server)
    pages = [e for e in server.log.since(mark) if is_repo_list(e)]
    assert pages and pages[0].get("fault") is None and pages[0]["status"] == 200, \
        describe(server.log.since(mark))
    assert any(e.get("fault") == knob for e in pages[1:]), describe(pages)
    assert sorted(n for n in ls(m.ws) if not n.endswith(".json")) == expected


@pytest.mark.parametrize("knob", ["malformed", "wrong_shape"])
def test_bad_body_on_refs_and_commit(mount_factory, server, demo, knob):
    m = mount_factory(server, allow=[r".*"])
    api = m.ws / "api"
    ls(m.ws)
    server.knobs(**{knob: {"count": -1, "path_contains": "/refs"}})
    assert errno_of("listdir", api / "branches") == "EIO"
    clear_failures(server)
    assert branch_links(api / "branches") == expected_branches(demo)
    root = demo.rev_list("api", "--max-parents=0", "main")[0]
    unlisted = demo.rev_list("api", "main..feature/deep/y")[0]
    ls(api / "commits")
    server.knobs(**{knob: {"count": -1, "path_contains": "/commit/"}})
    assert errno_of("read", api / "commits" / root / "commit.json") == "EIO"
    assert errno_of("stat", api / "commits" / unlisted) == "EIO"
    clear_failures(server)
    assert json.loads(cat(api / "commits" / root / "commit.json"))["hash"] == root
    assert errno_of("stat", api / "commits" / unlisted) == "OK"


# ---------------------------------------------------------------- hangs


def test_hanging_server_fails_within_timeout(mount_factory, server):
    m = mount_factory(server, options=[f"timeout={TIMEOUT}"], allow=[r".*"])
    expected = server.repo_slugs(project="PLAT")
    mark = server.log.mark()
    server.knobs(hang={"count": -1})
    e, took = timed_errno("listdir", m.ws, timeout=TIMEOUT + 20)
    assert e == "EIO"
    assert took < TIMEOUT + SLACK, f"took {took:.1f}s:\n" + describe(server.log.since(mark))
    clear_failures(server)
    assert sorted(n for n in ls(m.ws) if not n.endswith(".json")) == expected


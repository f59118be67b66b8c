"""
commits/: the newest commit_limit commits of the main branch (100 by default,
newest first, however many pages of /commits that takes), and commit.json /
message / parents/ for any full hash, listed or not; invalid and unknown
hashes are ENOENT without a request storm. Expected values come from git and
from the fake server's answer for the same commit.
"""

import math

import pytest

from conftest import (cat, describe, errno_of, git_message, iso_to_epoch, lines, ls, out,
                      stat_fmt)
from helpers import LONG_COMMITS, LONG_SLUG, json_file, long_demo  # noqa: F401 - a fixture


def check_commit(mount, server, demo, slug, sha):
    d = mount.ws / slug / "commits" / sha
    assert {"commit.json", "message", "parents"} <= set(ls(d)), sha
    obj = server.get_json(f"repositories/acme/{slug}/commit/{sha}")
    assert cat(d / "commit.json") == json_file(obj), sha
    msg = cat(d / "message")
    assert msg == git_message(demo.git_dir(slug), sha), sha
    assert msg.decode() == obj["message"], sha
    parents = demo.parents(slug, sha)
    assert sorted(ls(d / "parents")) == sorted(parents), sha
    for p in parents:
        assert out(["readlink", d / "parents" / p]).strip() == f"../../{p}"
    for f in ("commit.json", "message"):
        assert int(stat_fmt(d / f, "%s")) == len(cat(d / f)), f
    when = iso_to_epoch(obj["date"])
    assert int(stat_fmt(d, "%Y")) == when
    assert int(stat_fmt(d / "commit.json", "%Y")) == when
    assert int(stat_fmt(d / "message", "%Y")) == when


def test_commits_lists_the_main_branch(mount, demo):
    listed = ls(mount.ws / "api" / "commits")
    main = demo.rev_list("api", "main")
    assert len(listed) == min(100, len(main))
    assert set(listed) == set(main[:100])


@pytest.mark.parametrize("limit", [10])
def test_commit_limit(mount_factory, server, demo, limit):
    m = mount_factory(server, options=[f"commit_limit={limit}"])
    listed = ls(m.ws / "api" / "commits")
    main = demo.rev_list("api", "main")
    assert len(main) > limit
    assert len(listed) == limit
    # Bitbucket (and the fake) list commits newest first in git's topological order
    assert set(listed) == set(demo.rev_list("api", "--topo-order", f"--max-count={limit}", "main"))
    assert demo.branches("api")["main"] in listed
    # tools: main branch is trunk
    tools = ls(m.ws / "tools" / "commits")
    trunk = demo.rev_list("tools", "trunk")
    assert len(tools) == min(limit, len(trunk))
    assert set(tools) == set(demo.rev_list("tools", "--topo-order", f"--max-count={limit}", "trunk"))


def test_listed_commits(mount, server, demo):
    main = demo.rev_list("api", "main")
    tip = main[0]
    merges = demo.rev_list("api", "--merges", "main")
    assert merges, "demo data should hold a merge commit on main"
    assert len(demo.parents("api", merges[0])) == 2
    check_commit(mount, server, demo, "api", tip)
    check_commit(mount, server, demo, "api", merges[0])


def test_unlisted_commits_can_be_looked_up(mount_factory, server, demo):
    m = mount_factory(server, options=["commit_limit=10"])
    listed = set(ls(m.ws / "api" / "commits"))
    root = demo.rev_list("api", "--max-parents=0", "main")[0]
    feature_only = demo.rev_list("api", "main..feature/deep/y")
    assert feature_only, "demo data should have commits only on feature/deep/y"
    assert root not in listed and feature_only[0] not in listed
    check_commit(m, server, demo, "api", root)
    assert ls(m.ws / "api" / "commits" / root / "parents") == []
    check_commit(m, server, demo, "api", feature_only[0])
    # looking them up does not add them to the listing
    assert set(ls(m.ws / "api" / "commits")) == listed


INVALID = [
    "xyz",
    "0" * 39,
    "0" * 41,
    "ABCDEF0123456789ABCDEF0123456789ABCDEF01",
    "g" * 40,
    "main",
]


def test_invalid_hash_is_enoent_without_request(mount, demo, server):
    commits = mount.ws / "api" / "commits"
    ls(commits)
    tip = demo.branches("api")["main"]
    mark = server.log.mark()
    for name in INVALID + [tip.upper(), tip[:39], tip[:7]]:
        assert errno_of("lstat", commits / name) == "ENOENT", name
    reqs = server.log.since(mark)
    assert reqs == [], describe(reqs)


def test_unknown_hash_is_enoent_and_remembered(mount, server):
    commits = mount.ws / "api" / "commits"
    ls(commits)
    unknown = "0123456789abcdef0123456789abcdef01234567"
    mark = server.log.mark()
    assert errno_of("lstat", commits / unknown) == "ENOENT"
    first = server.log.since(mark)
    assert 1 <= len(first) <= 2, describe(first)
    mark = server.log.mark()
    assert errno_of("lstat", commits / unknown) == "ENOENT"
    assert errno_of("stat", commits / unknown / "message") == "ENOENT"
    again = server.log.since(mark)
    assert again == [], describe(again)


def test_commit_read_twice_costs_one_request(mount, server, demo):
    sha = demo.rev_list("api", "--max-parents=0", "main")[0]
    d = mount.ws / "api" / "commits" / sha
    cat(d / "commit.json")
    mark = server.log.mark()
    cat(d / "commit.json")
    cat(d / "message")
    ls(d / "parents")
    assert server.log.since(mark) == []


def test_empty_and_other_repositories(mount, server, demo):
    assert ls(mount.ws / "empty" / "commits") == []
    for slug in ("web", "docs"):
        listed = ls(mount.ws / slug / "commits")
        head = demo.head_branch(slug)
        assert set(listed) == set(demo.rev_list(slug, head)[:100]), slug


# --------------------------------------------------------------------------
# A main branch longer than commit_limit


def readdir_order(path):
    """Names in the order readdir gives them (find does not sort)."""
    return lines(["find", path, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\n"])


def commit_pages(entries):
    prefix = f"/2.0/repositories/acme/{LONG_SLUG}/commits"
    return [e for e in entries if e["path"].startswith(prefix)]


def test_commit_limit_default_is_100_newest_first(mount_factory, fakebb_factory, long_demo):
    server = fakebb_factory(long_demo)
    main = long_demo.rev_list(LONG_SLUG, "--topo-order", "main")
    assert len(main) == LONG_COMMITS > 100
    m = mount_factory(server)
    assert readdir_order(m.ws / LONG_SLUG / "commits") == main[:100]
    assert main[100] not in ls(m.ws / LONG_SLUG / "commits")


@pytest.mark.parametrize("limit", [None, 1000])
def test_commit_listing_pages_are_walked_to_the_limit(mount_factory, fakebb_factory, long_demo,
                                                      limit):
    """/commits (cursor pagination: only `next`) capped at 30 a page: bbfs follows `next`
    until it has commit_limit commits (100 by default) or the listing ends, one request a
    page."""
    server = fakebb_factory(long_demo)
    main = long_demo.rev_list(LONG_SLUG, "--topo-order", "main")
    m = mount_factory(server, options=[f"commit_limit={limit}"] if limit else [])
    ls(m.ws)
    server.knobs(max_pagelen=30)
    mark = server.log.mark()
    want = main[:limit or 100]
    assert readdir_order(m.ws / LONG_SLUG / "commits") == want
    pages = commit_pages(server.log.since(mark))
    assert len(pages) == math.ceil(len(want) / 30), describe(pages)
    assert all(e["status"] == 200 for e in pages), describe(pages)

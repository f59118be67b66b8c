"""
`ttl=0` (issue 14 item 6): "revalidate at each use", at most once per listing and
operation. Every path a command touches is resolved again by each FUSE request (the
kernel keeps nothing for 0 seconds), so without sharing `ls -la WS` cost 624 requests,
`ls -la WS/REPO/HEAD/tree/` 1,385 and a `cat` of a cached file 17. Uses of the same
second, concurrent or back to back, share one revalidation: each URL is asked for at most
once a second, and a command costs a handful.

Counts and the gaps between requests for one URL come from the fake server's request
log (its clock; a slow machine can only make them longer); expected names from the
fake's data and git.
"""

import collections
import time

import pytest

from conftest import cat, out

MIN_GAP = 0.9       # seconds between two requests for one URL (bbfs shares a second of uses)


def per_url(entries):
    urls = collections.defaultdict(list)
    for e in entries:
        if e["server"] == "api":
            urls[(e["path"], e["query"])].append(e["time"])
    return urls


def measure(server, command):
    """Runs command; (its output, the requests it cost by URL, the seconds it took)."""
    mark = server.log.mark()
    t0 = time.monotonic()
    text = out(command, timeout=60)
    took = time.monotonic() - t0
    return text, per_url(server.log.since(mark)), took


def check_shared(urls, took, most):
    """No URL asked twice within a second; no more requests in all than most per second
    the command took (and a second more), each revalidating something."""
    for url, times in urls.items():
        times.sort()
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(g >= MIN_GAP for g in gaps), (url, gaps)
    total = sum(len(t) for t in urls.values())
    assert total <= most * (int(took) + 2), (total, took, sorted(urls))


@pytest.fixture
def ttl0(mount_factory, server):
    return mount_factory(server, target="acme", options=["ttl=0"])


def test_ls_la_of_the_workspace(ttl0, server, no_304):
    server.knobs(no_304=no_304)
    text, urls, took = measure(server, ["ls", "-la", ttl0.ws])
    names = {ln.split()[-1] for ln in text.splitlines()[1:]}
    assert set(server.repo_slugs()) <= names
    # the listing, workspace.json: 2 URLs (the access check is not a revalidation)
    assert set(p for p, _ in urls) <= {"/2.0/repositories/acme", "/2.0/workspaces/acme"}, \
        sorted(urls)
    check_shared(urls, took, most=2)


def test_ls_la_of_a_tree_through_head(ttl0, server, demo, no_304):
    server.knobs(no_304=no_304)
    ls_tree = ["ls", "-la", f"{ttl0.ws}/api/HEAD/tree/"]
    out(ls_tree)                              # the tree's listing, kept forever, is not measured
    text, urls, took = measure(server, ls_tree)
    names = {ln.split()[-1] for ln in text.splitlines()[1:]} - {".", ".."}
    assert names == set(demo.git("api", "ls-tree", "--name-only", "main").split())
    # the repository (alone or in the listing), its branches, the commit listing
    assert len(urls) <= 3, sorted(urls)
    check_shared(urls, took, most=3)


def test_cat_of_a_cached_file(ttl0, server, demo, no_304):
    server.knobs(no_304=no_304)
    f = ttl0.ws / "api" / "HEAD" / "tree" / "README.md"
    want = demo.git("api", "show", "main:README.md").encode()
    assert cat(f).rstrip(b"\n") == want.rstrip(b"\n")
    time.sleep(1.1)                           # what the first cat fetched is a second old
    for _ in range(3):
        mark = server.log.mark()
        t0 = time.monotonic()
        assert cat(f).rstrip(b"\n") == want.rstrip(b"\n")
        took = time.monotonic() - t0
        urls = per_url(server.log.since(mark))
        # each listing on the way revalidated once (the repository, its branches, the
        # commit listing), the file itself not at all
        assert not [u for u in urls if u[0].endswith("/README.md")], sorted(urls)
        assert len(urls) <= 3, sorted(urls)
        check_shared(urls, took, most=3)
        time.sleep(1.1)
    # a second later, a use revalidates again: ttl=0 still means "at each use"
    assert urls, "nothing was revalidated"

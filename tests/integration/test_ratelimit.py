"""
Bitbucket's rate limit, as the fake's `rate_budget` knob plays it: each token has N
requests in any rolling window; past them every request gets a plain-text 429 with no
Retry-After until the window has moved (bitbucket-api.md 5.3). Near it, answers say
`X-RateLimit-NearLimit: true`.

Near the limit bbfs keeps working but spends less: pages one at a time, nothing read
ahead, and it says so once. Past it, bbfs backs off (a bounded number of spaced
retries, no tight loop), serves the stale data it has, fails the rest with EIO, logs
the cause, and recovers once the window has moved (the test moves it at once by
setting the knob again).

Expected values come from git and the fake's data; counts and orderings from the
fake's request log.
"""

import collections
import re
import subprocess
import time

from conftest import cat, describe, errno_of, lines, ls
from helpers import after_the_pause

HTTP_MAX_ATTEMPTS = 5     # api/http.h: attempts of one request, retries included
RETRY_PAUSE = 10          # the man page: after a failure, stale data is served 10 s unasked
BURN_PATH = "repositories/acme/api"


def spend(server, n):
    """Spends n requests of demo-token's budget, as another client of the token would."""
    for _ in range(n):
        assert server.get(BURN_PATH)[0] == 200


def api_requests(entries):
    return [e for e in entries if e["server"] == "api"]


def by_url(entries):
    urls = collections.defaultdict(list)
    for e in entries:
        urls[(e["path"], e["query"])].append(e)
    return urls


def stats(m):
    text = cat(m.path / ".bbfs" / "stats").decode()
    return dict(ln.split(" ", 1) for ln in text.splitlines() if " " in ln)


def readme_and_others(demo, sha):
    """README.md and two other files at the root of api's tree at sha, from git."""
    names = demo.git("api", "ls-tree", "--name-only", sha).split()
    files = [n for n in names if demo.git("api", "cat-file", "-t", f"{sha}:{n}").strip() == "blob"]
    others = [n for n in files if n != "README.md"]
    assert "README.md" in files and len(others) >= 2, files
    return "README.md", others[:2]


def blob(demo, sha, path):
    return subprocess.run(["git", "--git-dir", demo.git_dir("api"), "show", f"{sha}:{path}"],
                          capture_output=True, timeout=30, check=True).stdout


# --------------------------------------------------------------------------
# Near the limit


def test_near_the_limit_pages_one_at_a_time_no_read_ahead_said_once(mount_factory, server, demo):
    """With less than a fifth of the budget left, bbfs still shows everything right, reads
    a listing's pages one after the other (no page asked for before the one before it was
    answered) and reads nothing ahead (only the files read are fetched), and says so once.
    Latency makes overlapping requests unmistakable in the log."""
    slugs = server.repo_slugs(project="PLAT")
    sha = demo.branches("api")["main"]
    readme, others = readme_and_others(demo, sha)
    server.knobs(rate_budget={"requests": 200, "window": 3600})
    spend(server, 165)                        # 35 left: under a fifth
    server.knobs(max_pagelen=2, latency_ms=100)
    mark = server.log.mark()
    m = mount_factory(server, options=["commit_limit=2"], allow=[r"nearly used up"])
    assert [n for n in ls(m.ws) if not n.endswith(".json")] == slugs
    tree = m.ws / "api" / "commits" / sha / "tree"
    names = demo.git("api", "ls-tree", "--name-only", sha).split()
    assert sorted(lines(["ls", "-1A", tree])) == sorted(names)
    for name in [readme] + others:            # reading through the directory
        assert cat(tree / name) == blob(demo, sha, name), name
    reqs = api_requests(server.log.since(mark))
    assert all(e["status"] == 200 for e in reqs), describe(reqs)
    # the pages of each listing, one at a time
    pages = collections.defaultdict(list)
    for e in reqs:
        if re.search(r"(^|&)page(len)?=", e["query"]):
            pages[e["path"]].append(e)
    multi = {p: es for p, es in pages.items() if len(es) > 1}
    assert any("/src/" in p for p in multi), describe(reqs)
    assert any(p.endswith("/repositories/acme") for p in multi), describe(reqs)
    for path, es in multi.items():
        es = sorted(es, key=lambda e: e["time"])
        for before, after in zip(es, es[1:]):
            # (duration_ms is rounded to 0.1 ms)
            assert after["time"] >= before["time"] + before["duration_ms"] / 1000 - 0.001, \
                f"pages of {path} overlap:\n" + describe(es)
    # nothing read ahead: the only file contents fetched are the ones read
    files = {e["path"].rsplit("/", 1)[1] for e in reqs
             if "/src/" in e["path"] and not e["path"].endswith("/")}
    assert files == {readme, *others}, describe(reqs)
    said = [ln for ln in m.stderr().splitlines() if "nearly used up" in ln]
    assert len(said) == 1, m.stderr()
    assert stats(m)["ratelimit_near_limit"] == "true"


# --------------------------------------------------------------------------
# Past the limit


def exhaust(server):
    """Uses up demo-token's budget (a window of an hour, as Bitbucket's)."""
    server.knobs(rate_budget={"requests": 20, "window": 3600})
    spend(server, 20)
    assert server.get(BURN_PATH)[0] == 429


def test_past_the_limit_backs_off_serves_stale_and_recovers(mount_factory, fresh_server,
                                                           fresh_demo):
    server = fresh_server
    sha = fresh_demo.branches("api")["main"]
    readme, (unread, _) = readme_and_others(fresh_demo, sha)
    m = mount_factory(server, options=["ttl=1", "timeout=10"],
                      allow=[r"HTTP 429", r"rate limit", r"cannot reach the API"])
    api = m.ws / "api"
    branches = ls(api / "branches")
    tree = api / "commits" / sha / "tree"
    listing = ls(tree)
    text = cat(tree / readme)
    exhaust(server)
    fresh_demo.git("api", "branch", "after-the-limit", sha)
    err = m.stderr_mark()
    mark = server.log.mark()
    time.sleep(1.5)                           # past ttl: everything mutable is stale now
    # stale data is served; what was never fetched is EIO
    assert ls(api / "branches") == branches
    assert ls(tree) == listing and cat(tree / readme) == text
    assert errno_of("read", tree / unread) == "EIO"
    assert errno_of("listdir", api / "tags") == "EIO"
    reqs = api_requests(server.log.since(mark))
    assert reqs and all(e["status"] == 429 and e.get("fault") == "rate_budget" for e in reqs), \
        describe(reqs)
    # bounded: at most one request and its retries per thing it needed (the workspace's,
    # the repository's and the branches' refresh, the file, the tags) ...
    urls = by_url(reqs)
    assert len(urls) <= 5, describe(reqs)
    for url, es in urls.items():
        assert len(es) <= HTTP_MAX_ATTEMPTS, describe(es)
    # ... and spaced: each failed call's retries took their time (a jittered exponential
    # backoff: four pauses of up to 0.1, 0.2, 0.4 and 0.8 s; 20 ms for all four together
    # happens once in a million calls, a tight loop every time)
    full = [es for es in urls.values() if len(es) == HTTP_MAX_ATTEMPTS]
    assert full, describe(reqs)
    for es in full:
        times = sorted(e["time"] for e in es)
        assert times[-1] - times[0] >= 0.02, describe(es)
    # the cause is named
    said = m.stderr_since(err)
    assert any(re.search(r"429|rate limit", ln, re.I) for ln in said), said
    assert int(stats(m)["errors_rate_limited"]) >= 1

    # the window moves: all works again once the outage's pause is over, and the new
    # branch shows
    server.knobs(rate_budget={"requests": 20, "window": 3600})
    mark = server.log.mark()
    after_the_pause(lambda: errno_of("read", tree / unread) == "OK", unread)
    assert cat(tree / unread) == blob(fresh_demo, sha, unread)
    end = time.monotonic() + RETRY_PAUSE + 30          # a hang guard
    while "after-the-limit" not in (names := ls(api / "branches")):
        assert time.monotonic() < end, names
        time.sleep(0.5)
    assert sorted(names) == sorted({b.split("/")[0] for b in fresh_demo.branches("api")})
    assert sorted(ls(api / "tags")) == sorted({t.split("/")[0] for t in fresh_demo.tags("api")})
    reqs = api_requests(server.log.since(mark))
    assert all(e["status"] in (200, 304) for e in reqs), describe(reqs)


def test_past_the_limit_one_line_names_the_cause(mount_factory, fresh_server, fresh_demo):
    """However many things fail while the budget is spent, the episode is one line on
    stderr, and it names the rate limit (429), not a network failure."""
    server = fresh_server
    sha = fresh_demo.branches("api")["main"]
    _, others = readme_and_others(fresh_demo, sha)
    m = mount_factory(server, options=["ttl=1", "timeout=10"],
                      allow=[r"HTTP 429", r"rate limit", r"cannot reach the API"])
    api = m.ws / "api"
    ls(api / "branches")
    tree = api / "commits" / sha / "tree"
    ls(tree)
    exhaust(server)
    err = m.stderr_mark()
    time.sleep(1.5)
    ls(api / "branches")                      # stale
    for name in others:                       # never fetched: EIO
        assert errno_of("read", tree / name) == "EIO"
    assert errno_of("listdir", api / "tags") == "EIO"
    said = [ln for ln in m.stderr_since(err) if "nearly used up" not in ln]
    assert len(said) == 1 and re.search(r"429|rate limit", said[0], re.I), said

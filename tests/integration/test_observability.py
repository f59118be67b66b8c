"""
Observability: MOUNTPOINT/.bbfs/stats counts what bbfs did (checked against
the fake server's request log), reports the rate-limit headers it saw, and
repositories and commits carry their web page as an extended attribute.
"""

import re

from conftest import cat, errno_of, ls, out, run


def stats(m):
    """The counters of .bbfs/stats as a dict of strings."""
    text = cat(m.path / ".bbfs" / "stats").decode()
    pairs = [ln.split(" ", 1) for ln in text.splitlines()]
    assert all(len(p) == 2 for p in pairs), text
    return dict(pairs)


def test_stats_count_the_requests_the_server_saw(mount_factory, server):
    mark = server.log.mark()
    m = mount_factory(server)
    assert ".bbfs" in out(["ls", "-A", m.path]).split()
    assert ".bbfs" not in ls(m.path)  # a dot directory: out of the way of plain ls
    repos = [n for n in ls(m.ws) if not n.endswith(".json")]
    assert repos
    cat(m.ws / repos[0] / "repository.json")
    s = stats(m)
    seen = server.log.since(mark)
    assert int(s["requests"]) == len(seen), (s, seen)
    assert int(s["requests_access"]) == 1
    listings = [e for e in seen if e["path"].rstrip("/").endswith("/repositories/acme")
                and e.get("query") != "pagelen=1"]
    assert int(s["requests_repos"]) == len(listings) >= 1
    assert int(s["bytes_fetched"]) >= sum(int(e.get("bytes", 0)) for e in seen) > 0
    # reading repository.json after the listing is answered from memory
    assert int(s["memory_hits"]) >= 1
    assert s["offline"] == "false"
    # the file is live: after more work it says more
    ls(m.ws / repos[0] / "branches")
    again = stats(m)
    assert int(again["requests_branches"]) == int(s["requests_branches"]) + 1
    assert int(again["requests"]) == len(server.log.since(mark))


def test_stats_report_rate_limit_headers_and_errors(mount_factory, server):
    m = mount_factory(server, options=["timeout=3"],
                      allow=[r"rate limit", r"HTTP 500", r"cannot (fetch|read)", r"failed"])
    server.knobs(near_limit=True, rate_limit=1234)
    ls(m.ws)
    s = stats(m)
    assert s["ratelimit_limit"] == "1234"
    assert s["ratelimit_near_limit"] == "true"
    assert int(s["ratelimit_near_limit_answers"]) >= 1
    assert len(re.findall(r"rate limit is nearly used up", m.stderr())) == 1, m.stderr()

    server.knobs(fail={"status": 500, "count": 1000}, near_limit=False)
    assert errno_of("stat", m.ws / "api" / "commits" / ("e" * 40)) == "EIO"
    s = stats(m)
    assert int(s["errors_server"]) >= 1
    assert int(s["retries"]) >= 1
    assert int(s["errors"]) >= int(s["errors_server"])


def test_web_links_are_extended_attributes(mount_factory, server, demo):
    m = mount_factory(server)
    repo = m.ws / "api"
    text = out(["getfattr", "-d", repo])
    assert 'user.bitbucket.html_url="https://bitbucket.org/acme/api"' in text, text
    tip = demo.branches("api")["main"]
    commit = m.ws / "api" / "commits" / tip
    value = out(["getfattr", "--only-values", "-n", "user.bitbucket.html_url", commit])
    assert value == f"https://bitbucket.org/acme/api/commits/{tip}"
    # files have none; nothing can be set
    assert out(["getfattr", "-d", repo / "description"]).strip() == ""
    r = run(["setfattr", "-n", "user.x", "-v", "1", repo], check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr, r.stderr

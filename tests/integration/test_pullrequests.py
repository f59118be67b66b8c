"""
Pull requests as files: REPO/pullrequests/ID/ with the object, title,
description, state, links to the source and destination commits, the diff
and every comment. Expected values come from the fake server's data and git.
"""

import json
import math
import subprocess

from conftest import cat, describe, errno_of, ls, out

ALLOW_SCOPE = [r"pullrequest scope", r"lacks one or more required privilege scopes"]


def pr_requests(entries, slug=None):
    return [e for e in entries if "/pullrequests" in e["path"]
            and (slug is None or f"/repositories/acme/{slug}/" in e["path"])]


def test_open_pull_requests_are_listed_and_any_can_be_looked_up(mount, demo, server):
    want = demo.pullrequests("api")
    prs = mount.ws / "api" / "pullrequests"
    opened = sorted(str(p["id"]) for p in want if p["state"] == "OPEN")
    assert sorted(ls(prs)) == opened
    for p in want:       # merged and declined ones too, by id
        d = prs / str(p["id"])
        assert cat(d / "title").decode() == p["title"] + "\n"
        assert cat(d / "description").decode() == p["description"] + "\n"
        assert cat(d / "state").decode() == p["state"] + "\n"
        obj = json.loads(cat(d / "pullrequest.json"))
        assert obj["id"] == p["id"] and obj["title"] == p["title"]
        for side in ("source", "destination"):
            target = out(["readlink", d / side]).strip()
            assert target == "../../commits/" + p[side]["commit"], (side, target)
            # the link leads to the commit: its message is git's
            msg = demo.git("api", "log", "-1", "--format=%B", p[side]["commit"])
            assert cat(d / side / "message").decode().strip() == msg.strip()
    assert errno_of("stat", prs / "999") == "ENOENT"
    assert errno_of("stat", prs / "not-a-number") == "ENOENT"


def test_diff_and_comments(mount, demo):
    want = {p["id"]: p for p in demo.pullrequests("api")}
    d = mount.ws / "api" / "pullrequests" / "1"
    p = want[1]
    diff = cat(d / "diff").decode()
    expect = demo.git("api", "diff", f"{p['destination']['commit']}...{p['source']['commit']}")
    changed = sorted(l[len("+++ b/"):] for l in expect.splitlines() if l.startswith("+++ b/"))
    assert changed and sorted(l[len("+++ b/"):] for l in diff.splitlines()
                              if l.startswith("+++ b/")) == changed
    assert int(out(["stat", "-c", "%s", d / "diff"])) == len(diff.encode())
    comments = json.loads(cat(d / "comments.json"))
    assert [c["id"] for c in comments] == [c["id"] for c in p["comments"]]
    assert len(comments) == p["comment_count"] > 10      # more than one page at pagelen 10
    assert json.loads(cat(mount.ws / "api" / "pullrequests" / "4" / "comments.json")) == []


def test_comment_pages_are_merged(mount_factory, server, demo):
    m = mount_factory(server)
    server.knobs(max_pagelen=10)
    mark = server.log.mark()
    comments = json.loads(cat(m.ws / "api" / "pullrequests" / "1" / "comments.json"))
    want = [c for c in demo.pullrequests("api") if c["id"] == 1][0]
    assert len(comments) == want["comment_count"]
    pages = [e for e in server.log.since(mark) if e["path"].endswith("/comments")]
    assert len(pages) == math.ceil(want["comment_count"] / 10), describe(pages)


def test_grep_over_every_pull_request_costs_only_the_listings(mount_factory, server, demo):
    m = mount_factory(server)
    slugs = [n for n in ls(m.ws) if not n.endswith(".json")]
    server.knobs(max_pagelen=1)
    mark = server.log.mark()
    r = subprocess.run('grep -l "Dark theme" */pullrequests/*/pullrequest.json && '
                       'cat */pullrequests/*/title */pullrequests/*/state > /dev/null',
                       shell=True, cwd=m.ws, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["web/pullrequests/1/pullrequest.json"]
    reqs = pr_requests(server.log.since(mark))
    # per repository ceil(open / pagelen) listing pages (at least one), nothing per pull request
    expected = sum(max(1, len([p for p in demo.pullrequests(s) if p["state"] == "OPEN"]))
                   for s in slugs)
    assert len(reqs) == expected, describe(reqs)
    assert all(e["path"].endswith("/pullrequests") for e in reqs), describe(reqs)


def test_listing_costs_ceil_n_over_50(mount_factory, server, demo):
    m = mount_factory(server)
    mark = server.log.mark()
    ls(m.ws / "api" / "pullrequests")
    for n in ls(m.ws / "api" / "pullrequests"):
        cat(m.ws / "api" / "pullrequests" / n / "title")
        cat(m.ws / "api" / "pullrequests" / n / "state")
    reqs = pr_requests(server.log.since(mark))
    assert len(reqs) == 1, describe(reqs)
    assert "pagelen=50" in reqs[0].get("query", ""), describe(reqs)


def test_token_without_the_pullrequest_scope(mount_factory, server):
    m = mount_factory(server, token="nopr-token", allow=ALLOW_SCOPE)
    prs = m.ws / "api" / "pullrequests"
    assert ls(prs) == []
    assert errno_of("stat", prs / "2") == "ENOENT"
    assert ls(prs) == []
    assert "commits" in ls(m.ws / "api")      # everything else works
    said = [l for l in m.stderr().splitlines() if "pullrequest scope" in l]
    assert len(said) == 1, m.stderr()


def test_diff_redirect_stays_on_the_api_host_with_the_token(mount_factory, server):
    m = mount_factory(server)
    mark = server.log.mark()
    cat(m.ws / "api" / "pullrequests" / "1" / "diff")
    reqs = server.log.since(mark)
    hops = [e for e in reqs if "/diff" in e["path"]]
    assert [e["status"] for e in hops] == [302, 200], describe(reqs)
    assert all(e.get("auth", True) for e in hops), describe(hops)

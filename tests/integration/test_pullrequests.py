"""
Pull requests as files: REPO/pullrequests/ID/ with the object, title,
description, state, links to the source and destination commits, the diff
and every comment. Expected values come from the fake server's data and git:
pullrequest.json and comments.json are byte for byte the fake's objects
pretty-printed, the diff is byte for byte git's diff of the two commits.
"""

import json
import math
import subprocess

from conftest import cat, describe, errno_of, ls, out, stat_fmt
from helpers import json_file, pullrequest_diff

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
        obj = server.get_json(f"repositories/acme/api/pullrequests/{p['id']}")
        assert obj["id"] == p["id"] and obj["title"] == p["title"]
        assert cat(d / "pullrequest.json") == json_file(obj), p["id"]
        assert int(stat_fmt(d / "pullrequest.json", "%s")) == len(json_file(obj)), p["id"]
        for side in ("source", "destination"):
            target = out(["readlink", d / side]).strip()
            assert target == "../../commits/" + p[side]["commit"], (side, target)
            # the link leads to the commit: its message is git's
            msg = demo.git("api", "log", "-1", "--format=%B", p[side]["commit"])
            assert cat(d / side / "message").decode().strip() == msg.strip()
    assert errno_of("stat", prs / "999") == "ENOENT"
    assert errno_of("stat", prs / "not-a-number") == "ENOENT"


def test_diff_is_gits_diff_of_the_two_commits(mount, demo):
    """Every pull request's diff, byte for byte: what the source brings over its merge base
    with the destination, as `git diff` writes it with the fake's options (stat first)."""
    gd = demo.git_dir("api")
    for p in demo.pullrequests("api"):
        want = pullrequest_diff(gd, p["source"]["commit"], p["destination"]["commit"])
        d = mount.ws / "api" / "pullrequests" / str(p["id"])
        assert int(stat_fmt(d / "diff", "%s")) == len(want), p["id"]
        assert cat(d / "diff") == want, p["id"]
    first = [p for p in demo.pullrequests("api") if p["id"] == 1][0]
    changed = pullrequest_diff(gd, first["source"]["commit"], first["destination"]["commit"])
    assert b"+++ b/src/x.c" in changed, "pull request 1 should change src/x.c"


def test_comments_json_is_every_comment_of_the_fake(mount, demo, server):
    """comments.json: the values of every page of /comments, in order, pretty-printed."""
    for p in demo.pullrequests("api"):
        want = server.get_all(f"repositories/acme/api/pullrequests/{p['id']}/comments")
        assert [c["id"] for c in want] == [c["id"] for c in p["comments"]], p["id"]
        f = mount.ws / "api" / "pullrequests" / str(p["id"]) / "comments.json"
        assert cat(f) == json_file(want), p["id"]
        assert int(stat_fmt(f, "%s")) == len(json_file(want)), p["id"]
    counts = {p["id"]: p["comment_count"] for p in demo.pullrequests("api")}
    assert counts[1] > 10 and counts[4] == 0   # several pages at pagelen 10; none at all


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

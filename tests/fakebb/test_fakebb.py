"""Self-test of the fake Bitbucket server, its fixture builder and the demo launcher.

Run with: /usr/bin/python3 -m pytest tests/fakebb
Each server runs as a subprocess on port 0 and is always stopped; every HTTP call has a
timeout, and the whole module is expected to take well under 20 seconds.
"""

import hashlib
import http.client
import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fixture  # noqa: E402

pytestmark = pytest.mark.timeout(60)

TOKENS = ("demo-token", "pat-token", "nopr-token")


class Server:
    """A running server.py subprocess."""

    def __init__(self, data, tmp, *extra):
        self.log = tmp / "requests.log"
        port_file = tmp / "port"
        self.out_path = tmp / "server.out"
        self.out = open(self.out_path, "w+b")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "server.py"), "--data", str(data), "--port", "0",
             "--port-file", str(port_file), "--log", str(self.log)] + list(extra),
            stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        self.root = "http://127.0.0.1:%d" % self.port
        self.base = self.root + "/2.0"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.seek(0)
        text = self.out.read().decode(errors="replace")
        self.out.close()
        return text

    def get(self, path, token="demo-token", headers=None, timeout=10, raw=False):
        """(status, headers, parsed JSON or bytes) for a GET of PATH (relative to /2.0)."""
        url = path if path.startswith("http") else self.base + path
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        req = urllib.request.Request(url, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, hdrs, body = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, body = e.code, e.headers, e.read()
        if raw or not body:
            return status, hdrs, body
        if "json" in (hdrs.get("Content-Type") or ""):
            return status, hdrs, json.loads(body)
        return status, hdrs, body

    def knobs(self, **kw):
        req = urllib.request.Request(self.root + "/_fake/knobs", data=json.dumps(kw).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def reset(self):
        req = urllib.request.Request(self.root + "/_fake/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def walk(self, path, token="demo-token"):
        """All values of a paginated collection, following `next`; also the pages."""
        values, pages, url = [], [], self.base + path
        while url:
            status, _, page = self.get(url, token)
            assert status == 200, page
            pages.append(page)
            values += page["values"]
            url = page.get("next")
            assert len(pages) < 100
        return values, pages


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    data = fixture.build_demo(root)
    srv = Server(data, root)
    srv.data = data
    srv.git = root / "git" / "acme"
    yield srv
    srv.output = srv.stop()


@pytest.fixture
def srv(demo):
    demo.reset()
    yield demo
    demo.reset()


def git(git_dir, *args):
    return subprocess.run(["git", "-C", str(git_dir)] + list(args), check=True,
                          stdout=subprocess.PIPE, env=fixture.git_env()).stdout.decode().strip()


# ---------------------------------------------------------------------------------- fixture

def test_fixture_is_deterministic(tmp_path, demo):
    fixture.build_demo(tmp_path)
    for slug in ("api", "web", "tools", "docs", "infra", "secrets-ops"):
        a = git(demo.git / (slug + ".git"), "for-each-ref")
        b = git(tmp_path / "git" / "acme" / (slug + ".git"), "for-each-ref")
        assert a == b and a


def test_fixture_demo_shape(demo):
    api = demo.git / "api.git"
    assert int(git(api, "rev-list", "--count", "main")) == 35
    assert git(api, "rev-list", "--merges", "main").count("\n") == 0   # exactly one merge
    assert git(api, "for-each-ref", "--format=%(refname:short)", "refs/heads").split() == \
        ["feature/deep/y", "feature/x", "main", "release-1.0"]
    assert git(api, "cat-file", "-t", "v1") == "tag"
    assert git(api, "cat-file", "-t", "v2") == "commit"
    assert git(api, "rev-parse", "v1^{commit}") != git(api, "rev-parse", "v2")
    assert git(demo.git / "tools.git", "symbolic-ref", "HEAD") == "refs/heads/trunk"
    assert git(demo.git / "empty.git", "for-each-ref") == ""


def test_make_repo_extends_existing_repo(tmp_path):
    info = fixture.make_repo(tmp_path / "r.git", [{"message": "one", "files": {"a": "1\n"}}])
    more = fixture.make_repo(tmp_path / "r.git", [
        {"message": "two", "files": {"b": "2\n"}, "id": "two"},
        {"branch": "side", "from": "main", "message": "side", "files": {"weird name \"q\".txt": "x"}},
    ], branches={"old": "two"}, tags={"t": "two"})
    assert git(tmp_path / "r.git", "rev-list", "--count", "main") == "2"
    assert git(tmp_path / "r.git", "rev-parse", "old") == git(tmp_path / "r.git", "rev-parse", "main")
    assert git(tmp_path / "r.git", "ls-tree", "--name-only", "side").split("\n") == \
        ["a", "b", '"weird name \\"q\\".txt"']
    assert more["ids"]["two"] == git(tmp_path / "r.git", "rev-parse", "t")
    assert info["size"] == 2


# ---------------------------------------------------------------------------------- basics

def test_listening_line_and_auth(srv):
    first = srv.out_path.read_text().splitlines()[0]
    assert first == "listening on http://127.0.0.1:%d/2.0" % srv.port
    for token in (None, "nope", "demo-token "):
        status, hdrs, body = srv.get("/repositories/acme", token=token)
        if token == "demo-token ":
            assert status == 200      # surrounding blanks are not part of the token
            continue
        assert status == 401
        assert body == {"type": "error", "error": {
            "message": "Token is invalid, expired, or not supported for this endpoint."}}
    status, _, body = srv.get("/repositories/acme", headers={"Authorization": "Basic ZGVtby10b2tlbg=="}, token=None)
    assert status == 401


def test_unknown_paths_and_methods(srv):
    assert srv.get("/nothing/here")[0] == 404
    assert srv.get("/nothing/here", token=None)[0] == 401
    assert srv.get("/repositories/acme/api/commit/abc/nope")[0] == 404
    req = urllib.request.Request(srv.base + "/repositories/acme", data=b"{}", method="POST",
                                 headers={"Authorization": "Bearer demo-token"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405


def test_headers_etag_and_304(srv):
    status, hdrs, body = srv.get("/repositories/acme/api", raw=True)
    assert status == 200
    assert hdrs["X-RateLimit-Limit"] == "1000"
    assert hdrs["X-RateLimit-Resource"] == "api"
    assert hdrs["X-RateLimit-NearLimit"] == "false"
    assert int(hdrs["Content-Length"]) == len(body)
    etag = hdrs["ETag"]
    assert etag.startswith('"') and len(etag) == 34
    status, hdrs2, body2 = srv.get("/repositories/acme/api", headers={"If-None-Match": etag}, raw=True)
    assert status == 304 and body2 == b"" and hdrs2["ETag"] == etag
    status, _, _ = srv.get("/repositories/acme/api", headers={"If-None-Match": '"other"'})
    assert status == 200


def test_keep_alive(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        for path in ("/2.0/repositories/acme/api", "/2.0/nope", "/2.0/repositories/acme/api/refs/tags"):
            conn.request("GET", path, headers={"Authorization": "Bearer demo-token"})
            r = conn.getresponse()
            r.read()
            assert r.getheader("Content-Length") is not None
        sock = conn.sock.getsockname()
    finally:
        conn.close()
    conns = [json.loads(line)["conn"] for line in srv.log.read_text().splitlines()[-3:]]
    assert conns == ["%s:%d" % sock] * 3


# ---------------------------------------------------------------------------------- objects

def test_workspace_and_projects(srv):
    status, _, ws = srv.get("/workspaces/acme")
    assert status == 200 and ws["type"] == "workspace" and ws["name"] == "Acme Corp"
    assert ws["links"]["self"]["href"] == srv.base + "/workspaces/acme"
    status, _, p = srv.get("/workspaces/acme/projects/PLAT")
    assert status == 200 and p["key"] == "PLAT" and p["name"] == "Platform" and p["type"] == "project"
    assert srv.get("/workspaces/acme/projects/NOPE")[0] == 404
    assert srv.get("/workspaces/nope")[0] == 404
    assert srv.get("/workspaces/%s" % ws["uuid"].replace("{", "%7B").replace("}", "%7D"))[0] == 200
    assert srv.get("/user")[0] == 403


def test_repository_object(srv):
    status, _, r = srv.get("/repositories/acme/api")
    assert status == 200
    for key in ("scm", "name", "slug", "full_name", "uuid", "description", "language", "is_private",
                "size", "created_on", "updated_on", "mainbranch", "project", "workspace", "owner", "links"):
        assert key in r
    assert r["type"] == "repository" and r["full_name"] == "acme/api" and r["language"] == "c"
    assert r["mainbranch"] == {"type": "branch", "name": "main"}
    assert r["project"]["key"] == "PLAT" and r["project"]["type"] == "project"
    assert {"name": "https", "href": "https://x-token-auth@bitbucket.org/acme/api.git"} in r["links"]["clone"]
    assert r["links"]["html"]["href"] == "https://bitbucket.org/acme/api"
    assert r["created_on"].endswith("+00:00")
    assert srv.get("/repositories/acme/tools")[2]["mainbranch"]["name"] == "trunk"
    assert srv.get("/repositories/acme/empty")[2]["mainbranch"] is None
    docs = srv.get("/repositories/acme/docs")[2]
    assert "\n" in docs["description"] and docs["language"] == ""
    status, _, err = srv.get("/repositories/acme/nope")
    assert status == 404 and err["error"]["message"].startswith("You may not have access to this repository")


def test_repository_list_pagination(srv):
    values, pages = srv.walk("/repositories/acme?pagelen=2")
    assert [v["slug"] for v in values] == ["api", "infra", "web", "tools", "secrets-ops", "docs", "empty"]
    assert len(pages) == 4
    assert all(p["size"] == 7 and p["pagelen"] == 2 for p in pages)
    assert [p["page"] for p in pages] == [1, 2, 3, 4]
    assert "previous" not in pages[0] and pages[1]["previous"].endswith("page=1")
    assert "next" not in pages[-1]
    assert pages[0]["next"] == srv.base + "/repositories/acme?pagelen=2&page=2"
    # the Host header decides the links' host
    status, _, page = srv.get("/repositories/acme?pagelen=2", headers={"Host": "example.test:99"})
    assert page["next"].startswith("http://example.test:99/2.0/repositories/acme?")


def test_repository_list_filter_and_sort(srv):
    q = "/repositories/acme?q=project.key%3D%22PLAT%22&sort=slug&pagelen=100"
    values, _ = srv.walk(q)
    assert [v["slug"] for v in values] == ["api", "docs", "empty", "tools", "web"]
    values, _ = srv.walk('/repositories/acme?q=project.key="OPS"&sort=-name')
    assert [v["slug"] for v in values] == ["secrets-ops", "infra"]
    values, _ = srv.walk("/repositories/acme?sort=-updated_on")
    assert values[0]["slug"] == "empty" or values[0]["updated_on"] >= values[-1]["updated_on"]
    for bad in ("q=project.key%3D", "q=nosuchfield%3D%221%22", "sort=bogus", "q=project.key+IN+(%22A%22)"):
        status, _, body = srv.get("/repositories/acme?" + bad)
        assert status == 400, bad
        assert body["type"] == "error"


def test_pagelen_validation_and_cap(srv):
    for bad in ("101", "-1", "abc", "1.5"):
        status, _, body = srv.get("/repositories/acme?pagelen=" + bad)
        assert status == 400 and body == {"type": "error", "error": {"message": "Invalid pagelen"}}
    assert srv.get("/repositories/acme?pagelen=100")[2]["pagelen"] == 100
    assert srv.get("/repositories/acme/api/commits?pagelen=101")[0] == 400
    srv.knobs(max_pagelen=3)
    values, pages = srv.walk("/repositories/acme?pagelen=100")
    assert len(values) == 7 and len(pages) == 3 and pages[0]["pagelen"] == 3
    values, pages = srv.walk("/repositories/acme/api/commits/main")
    assert len(values) == 35 and len(pages) == 12


def test_pat_token_scope(srv):
    values, _ = srv.walk("/repositories/acme", token="pat-token")
    assert sorted(v["slug"] for v in values) == ["api", "docs", "empty", "tools", "web"]
    status, _, body = srv.get("/workspaces/acme", token="pat-token")
    assert status == 403
    assert body == {"type": "error", "error": {"message": "This API is not accessible by this authentication mechanism"}}
    assert srv.get("/repositories/acme/infra", token="pat-token")[0] == 404
    assert srv.get("/repositories/acme/infra/refs/branches", token="pat-token")[0] == 404
    assert srv.get("/workspaces/acme/projects/OPS", token="pat-token")[0] == 404
    assert srv.get("/workspaces/acme/projects/PLAT", token="pat-token")[0] == 200


# ---------------------------------------------------------------------------------- refs

def test_branches(srv):
    status, _, page = srv.get("/repositories/acme/api/refs/branches")
    assert status == 200 and page["size"] == 4 and page["page"] == 1
    assert [b["name"] for b in page["values"]] == ["feature/deep/y", "feature/x", "main", "release-1.0"]
    main = page["values"][2]
    assert main["type"] == "branch"
    t = main["target"]
    assert t["type"] == "commit" and len(t["hash"]) == 40 and t["hash"] == git(srv.git / "api.git", "rev-parse", "main")
    assert t["date"].endswith("+00:00") and t["author"]["raw"] and t["parents"][0]["type"] == "commit"
    assert main["links"]["self"]["href"].endswith("/refs/branches/main")
    for path in ("feature/deep/y", "feature%2Fdeep%2Fy"):
        status, _, b = srv.get("/repositories/acme/api/refs/branches/" + path)
        assert status == 200 and b["name"] == "feature/deep/y"
        assert b["links"]["self"]["href"].endswith("/refs/branches/feature/deep/y")
    assert srv.get("/repositories/acme/api/refs/branches/feature")[0] == 404
    status, _, page = srv.get('/repositories/acme/api/refs/branches?q=name="main"')
    assert [b["name"] for b in page["values"]] == ["main"]
    status, _, page = srv.get("/repositories/acme/empty/refs/branches")
    assert page["values"] == [] and page["size"] == 0


def test_tags(srv):
    status, _, page = srv.get("/repositories/acme/api/refs/tags")
    assert status == 200 and "size" not in page
    tags = {t["name"]: t for t in page["values"]}
    assert list(tags) == ["v1", "v2"]
    v1, v2 = tags["v1"], tags["v2"]
    assert v1["message"].startswith("Version 1") and v1["tagger"]["raw"] and v1["date"]
    assert "message" not in v2 and "tagger" not in v2
    assert v1["target"]["hash"] != v2["target"]["hash"]
    assert v1["target"]["hash"] == git(srv.git / "api.git", "rev-parse", "v1^{commit}")
    assert srv.get("/repositories/acme/api/refs/tags/v2")[2]["target"]["hash"] == v2["target"]["hash"]
    assert srv.get("/repositories/acme/api/refs/tags/v3")[0] == 404
    status, _, page = srv.get("/repositories/acme/api/refs")
    assert page["size"] == 6


# ---------------------------------------------------------------------------------- commits

def test_commits_iterator(srv):
    values, pages = srv.walk("/repositories/acme/api/commits?pagelen=10")
    hashes = [c["hash"] for c in values]
    assert len(hashes) == len(set(hashes)) == 38       # every branch and tag
    for p in pages:
        assert "size" not in p and "page" not in p and p["pagelen"] == 10
    assert "next" not in pages[-1]
    cursor = pages[0]["next"].split("page=")[1]
    assert not cursor.isdigit()
    # topological: each commit comes before its parents
    pos = {h: i for i, h in enumerate(hashes)}
    for c in values:
        for p in c["parents"]:
            assert pos[p["hash"]] > pos[c["hash"]]
    status, _, page = srv.get("/repositories/acme/api/commits")
    assert page["pagelen"] == 30 and len(page["values"]) == 30
    main, _ = srv.walk("/repositories/acme/api/commits/main?pagelen=100")
    assert len(main) == 35 and main[0]["hash"] == git(srv.git / "api.git", "rev-parse", "main")
    y, _ = srv.walk("/repositories/acme/api/commits/feature%2Fdeep%2Fy?pagelen=100")
    assert len(y) == 33 and y[0]["message"] == "Feature Y: parse options\n"
    y2, _ = srv.walk("/repositories/acme/api/commits/feature/deep/y?pagelen=100")
    assert y == y2
    short = main[5]["hash"][:10]
    assert srv.walk("/repositories/acme/api/commits/%s" % short)[0][0]["hash"] == main[5]["hash"]
    only_y, _ = srv.walk("/repositories/acme/api/commits/feature/deep/y?exclude=main")
    assert len(only_y) == 2
    assert srv.get("/repositories/acme/api/commits/nope")[0] == 404
    assert srv.get("/repositories/acme/api/commits/main~2")[0] == 404
    assert srv.get("/repositories/acme/api/commits?page=2")[0] == 400
    status, _, page = srv.get("/repositories/acme/empty/commits")
    assert status == 200 and page == {"values": [], "pagelen": 30}


def test_commit_object(srv):
    api = srv.git / "api.git"
    merge = git(api, "rev-list", "--merges", "main")
    status, _, c = srv.get("/repositories/acme/api/commit/" + merge)
    assert status == 200 and c["type"] == "commit" and len(c["parents"]) == 2
    assert c["participants"] == [] and c["summary"]["raw"] == c["message"]
    assert set(c["links"]) >= {"self", "html", "diff", "patch"}
    assert c["repository"]["full_name"] == "acme/api"
    uni = git(api, "log", "-1", "--format=%H", "--grep=Décoder", "main")
    status, _, c = srv.get("/repositories/acme/api/commit/" + uni[:7])
    assert c["hash"] == uni
    assert c["message"] == "Décoder les réponses UTF-8 correctement ✓ — 日本語テスト\n"
    assert c["date"] == "2024-01-03T19:00:00+00:00"        # written at 21:00 +02:00
    assert c["author"]["raw"] == "Zoë Ünal <zoe@acme.example>" and c["author"]["user"]["nickname"] == "zoe"
    multi = git(api, "log", "-1", "--format=%H", "--grep=429", "main")
    c = srv.get("/repositories/acme/api/commit/" + multi)[2]
    assert c["message"].count("\n") == 6 and c["message"].startswith("Handle HTTP 429 responses\n\n")
    bob = git(api, "log", "-1", "--format=%H", "--author=Bob", "main")
    assert "user" not in srv.get("/repositories/acme/api/commit/" + bob)[2]["author"]
    status, _, body = srv.get("/repositories/acme/api/commit/" + "0" * 40)
    assert status == 404 and body == {"type": "error", "error": {"message": "Commit not found"}}


def test_fields(srv):
    status, _, page = srv.get("/repositories/acme/api/commits?pagelen=2&fields=values.hash,values.date")
    assert set(page) == {"values"} and set(page["values"][0]) == {"hash", "date"}
    status, _, page = srv.get("/repositories/acme/api/commits?pagelen=2&fields=next,values.hash")
    assert set(page) == {"values", "next"}
    status, _, r = srv.get("/repositories/acme/api?fields=-links,-project.links,-workspace,-owner")
    assert "links" not in r and "links" not in r["project"] and "workspace" not in r and r["slug"] == "api"
    status, _, page = srv.get("/repositories/acme?fields=-values.links,%2Bvalues.size&pagelen=1")
    assert "links" not in page["values"][0] and "size" in page["values"][0] and "next" in page
    status, _, page = srv.get("/repositories/acme?fields=-values.links.*&pagelen=1")
    assert page["values"][0]["links"] == {}
    status, _, r = srv.get("/repositories/acme/empty?fields=slug,mainbranch.name")
    assert r == {"slug": "empty", "mainbranch": None}


# ---------------------------------------------------------------------------------- pull requests

PRS = "/repositories/acme/api/pullrequests"


def pr_ids(page):
    return [v["id"] for v in page["values"]]


def test_pullrequest_list_states_and_shape(srv):
    expected = {pr["id"]: pr for pr in fixture.pullrequests(srv.data, "api")}
    assert sorted(expected) == [1, 2, 3, 4]
    status, _, page = srv.get(PRS)
    assert status == 200
    assert pr_ids(page) == [4, 1] and page["size"] == 2 and page["page"] == 1
    assert page["pagelen"] == 10 and "next" not in page
    assert pr_ids(srv.get(PRS + "?state=OPEN")[2]) == [4, 1]
    assert pr_ids(srv.get(PRS + "?state=MERGED")[2]) == [2]
    assert pr_ids(srv.get(PRS + "?state=MERGED&state=DECLINED")[2]) == [3, 2]
    page = srv.get(PRS + "?state=OPEN&state=MERGED&state=DECLINED&state=SUPERSEDED&pagelen=50")[2]
    assert pr_ids(page) == [4, 3, 2, 1] and page["size"] == 4
    assert srv.get(PRS + "?state=BOGUS")[0] == 400
    for v in page["values"]:
        want = expected[v["id"]]
        assert v["type"] == "pullrequest" and v["title"] == want["title"] and v["state"] == want["state"]
        assert v["description"] == want["description"] and v["summary"]["raw"] == want["description"]
        assert v["comment_count"] == want["comment_count"]
        for side in ("source", "destination"):
            assert v[side]["branch"]["name"] == want[side]["branch"]
            assert v[side]["commit"]["hash"] == want[side]["commit"][:12]
            assert len(v[side]["commit"]["hash"]) == 12 and v[side]["commit"]["type"] == "commit"
            assert v[side]["repository"]["full_name"] == "acme/api"
            assert v[side]["repository"]["type"] == "repository"
        assert v["links"]["html"]["href"] == "https://bitbucket.org/acme/api/pull-requests/%d" % v["id"]
        assert v["links"]["self"]["href"] == srv.base + PRS + "/%d" % v["id"]
        assert v["created_on"].endswith("+00:00") and v["updated_on"] >= v["created_on"]
        assert v["author"]["type"] == "user" and v["author"]["display_name"]
        # the listing's values are the objects a single GET gives
        assert srv.get(PRS + "/%d" % v["id"])[2] == v
    assert [expected[i]["comment_count"] for i in (1, 2, 3, 4)] == [23, 1, 2, 0]
    # fields, as on the other collections
    page = srv.get(PRS + "?pagelen=1&fields=size,page,pagelen,next,values.id,values.source.commit.hash")[2]
    assert set(page) == {"size", "page", "pagelen", "next", "values"}
    assert page["values"] == [{"id": 4, "source": {"commit": {"hash": expected[4]["source"]["commit"][:12]}}}]
    page = srv.get(PRS + "?fields=values.*&state=MERGED")[2]
    assert set(page) == {"values"} and page["values"][0]["id"] == 2
    # other repositories
    web = srv.get("/repositories/acme/web/pullrequests")[2]
    assert pr_ids(web) == [1] and web["values"][0]["comment_count"] == 2
    for slug in ("tools", "empty", "docs"):
        status, _, page = srv.get("/repositories/acme/%s/pullrequests" % slug)
        assert status == 200 and page["size"] == 0 and page["values"] == [] and page["page"] == 1
    assert srv.get("/repositories/acme/nope/pullrequests")[0] == 404
    assert srv.get("/repositories/acme/infra/pullrequests", token="pat-token")[0] == 404


def test_pullrequest_pagination(srv):
    values, pages = srv.walk(PRS + "?pagelen=1&state=OPEN&state=MERGED")
    assert [v["id"] for v in values] == [4, 2, 1] and len(pages) == 3
    assert pages[0]["next"] == srv.base + PRS + "?pagelen=1&state=OPEN&state=MERGED&page=2"
    assert all(p["size"] == 3 and p["pagelen"] == 1 for p in pages)
    assert srv.get(PRS + "?pagelen=50")[0] == 200
    for bad in ("51", "100", "-1", "x"):
        status, _, body = srv.get(PRS + "?pagelen=" + bad)
        assert status == 400 and body == {"type": "error", "error": {"message": "Invalid pagelen"}}
    srv.knobs(max_pagelen=1)
    values, pages = srv.walk(PRS + "?pagelen=50&state=OPEN&state=DECLINED")
    assert [v["id"] for v in values] == [4, 3, 1] and len(pages) == 3 and pages[0]["pagelen"] == 1


def test_single_pullrequest(srv):
    expected = {pr["id"]: pr for pr in fixture.pullrequests(srv.data, "api")}
    status, _, pr = srv.get(PRS + "/2")
    assert status == 200 and pr["state"] == "MERGED" and pr["title"] == "Release 1.0"
    assert pr["merge_commit"]["hash"] == expected[2]["merge_commit"][:12]
    assert pr["closed_by"]["display_name"] == "Alice Example"
    assert pr["source"]["branch"]["name"] == "release-1.0"
    status, _, pr = srv.get(PRS + "/4")
    assert pr["title"] == 'Fix "quotes" / slashes\tand tabs' and pr["description"] == ""
    assert pr["merge_commit"] is None and pr["closed_by"] is None and pr["comment_count"] == 0
    assert pr["summary"] == {"type": "rendered", "raw": "", "markup": "markdown", "html": ""}
    assert "\n" in srv.get(PRS + "/1")[2]["description"]
    assert srv.get(PRS + "/3")[2]["state"] == "DECLINED"
    for bad in ("99", "0", "abc"):
        status, _, body = srv.get(PRS + "/" + bad)
        assert status == 404 and body["type"] == "error" and body["error"]["message"], bad
    assert srv.get(PRS + "/1/activity")[0] == 404


def test_pullrequest_comments(srv):
    values, pages = srv.walk(PRS + "/1/comments?pagelen=10")
    assert len(values) == 23 and len(pages) == 3 and [len(p["values"]) for p in pages] == [10, 10, 3]
    assert all(p["size"] == 23 for p in pages)
    ids = [c["id"] for c in values]
    assert ids == sorted(ids) and len(set(ids)) == 23
    want = fixture.pullrequests(srv.data, "api")[0]["comments"]
    assert [c["content"]["raw"] for c in values] == [c["raw"] for c in want]
    for c in values:
        assert c["type"] == "pullrequest_comment" and c["deleted"] is False
        assert set(c["content"]) >= {"raw", "markup", "html"} and c["content"]["markup"] == "markdown"
        assert c["user"]["display_name"] and c["created_on"].endswith("+00:00") and c["updated_on"]
        assert c["links"]["self"]["href"] == srv.base + PRS + "/1/comments/%d" % c["id"]
    script = next(c for c in values if "<script>" in c["content"]["raw"])
    assert "<script>" not in script["content"]["html"]
    assert srv.get(PRS + "/1/comments/%d" % ids[0])[2] == values[0]
    assert srv.get(PRS + "/1/comments/1")[0] == 404
    assert srv.get(PRS + "/1/comments?pagelen=100")[2]["pagelen"] == 100
    assert srv.get(PRS + "/1/comments?pagelen=101")[0] == 400
    assert srv.get(PRS + "/4/comments")[2]["values"] == []
    assert len(srv.walk("/repositories/acme/web/pullrequests/1/comments")[0]) == 2
    assert srv.get(PRS + "/99/comments")[0] == 404


def test_pullrequest_diff_redirect(srv):
    g = srv.git / "api.git"
    for pr in fixture.pullrequests(srv.data, "api"):
        src, dst = pr["source"]["commit"], pr["destination"]["commit"]
        status, hdrs, body = fetch(srv.base + PRS + "/%d/diff" % pr["id"])
        assert status == 302 and body == b""
        assert hdrs["Location"] == "%s/repositories/acme/api/diff/acme/api:%s%%0D%s?from_pullrequest_id=%d&topic=true" % (
            srv.base, src[:12], dst[:12], pr["id"])
        status, hdrs, body = fetch(hdrs["Location"])
        assert status == 200 and hdrs["Content-Type"] == "text/plain"
        base = gitb(g, "merge-base", dst, src).decode().strip()
        assert body == gitb(g, "diff", "--full-index", "-M", base, src), pr["id"]
        assert body == gitb(g, "diff", "--full-index", "-M", "%s...%s" % (dst, src))
    assert b"+int x_run(void)" in fetch(srv.base + "/repositories/acme/api/diff/acme/api:%s%%0D%s" % (
        fixture.pullrequests(srv.data, "api")[0]["source"]["commit"][:7],
        fixture.pullrequests(srv.data, "api")[0]["destination"]["commit"][:7]))[2]
    # the spec must name this repository; unknown hashes are 404
    assert fetch(srv.base + "/repositories/acme/api/diff/acme/web:abcdef1%0Dabcdef2")[0] == 404
    assert fetch(srv.base + "/repositories/acme/api/diff/acme/api:0000000%0D0000000")[0] == 404
    status, hdrs, _ = fetch(srv.base + "/repositories/acme/web/pullrequests/1/patch")
    assert status == 302 and "/repositories/acme/web/patch/acme/web:" in hdrs["Location"]
    assert fetch(srv.base + PRS + "/99/diff")[0] == 404


def test_pullrequest_scope(srv):
    body403 = {"type": "error", "error": {
        "message": "Your credentials lack one or more required privilege scopes.",
        "detail": {"granted": ["project", "repository"], "required": ["pullrequest"]}}}
    for path in (PRS, PRS + "?state=MERGED", PRS + "/1", PRS + "/1/comments", PRS + "/1/diff",
                 PRS + "/99", "/repositories/acme/web/pullrequests", "/repositories/acme/infra/pullrequests"):
        status, _, body = srv.get(path, token="nopr-token")
        assert status == 403 and body == body403, path
    for path in ("/repositories/acme/api", "/repositories/acme/api/refs/branches",
                 "/repositories/acme/api/commits", "/repositories/acme?pagelen=100"):
        assert srv.get(path, token="nopr-token")[0] == 200, path
    values, _ = srv.walk("/repositories/acme", token="nopr-token")
    assert sorted(v["slug"] for v in values) == ["api", "docs", "empty", "tools", "web"]
    assert srv.get("/workspaces/acme", token="nopr-token")[0] == 403
    for token in ("demo-token", "pat-token"):
        assert srv.get(PRS, token=token)[0] == 200
        assert srv.get(PRS + "/1/comments", token=token)[0] == 200
    assert srv.get(PRS, token="nope")[0] == 401


def test_pullrequest_etag_and_log(srv):
    mark = log_mark(srv)
    for path in (PRS + "?state=MERGED", PRS + "/1", PRS + "/1/comments?pagelen=5"):
        status, hdrs, body = srv.get(path, raw=True)
        assert status == 200 and hdrs["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
        status, hdrs2, body2 = srv.get(path, headers={"If-None-Match": hdrs["ETag"]}, raw=True)
        assert status == 304 and body2 == b"" and hdrs2["ETag"] == hdrs["ETag"]
    fetch(srv.base + PRS + "/1/diff")
    srv.get(PRS, token="nopr-token")
    recs = log_since(srv, mark, 8)
    assert [(r["path"], r["status"]) for r in recs] == [
        ("/2.0" + PRS, 200), ("/2.0" + PRS, 304), ("/2.0" + PRS + "/1", 200), ("/2.0" + PRS + "/1", 304),
        ("/2.0" + PRS + "/1/comments", 200), ("/2.0" + PRS + "/1/comments", 304),
        ("/2.0" + PRS + "/1/diff", 302), ("/2.0" + PRS, 403)]
    assert recs[0]["query"] == "state=MERGED" and all(r["auth"] for r in recs)


def test_pullrequests_reload_from_data_json(demo, tmp_path):
    data = json.loads(pathlib.Path(demo.data).read_text())     # absolute git_dir paths
    fixture.write_data(tmp_path, data)
    srv = Server(tmp_path / "data.json", tmp_path)
    try:
        assert pr_ids(srv.get(PRS)[2]) == [4, 1]
        data["workspaces"]["acme"]["repositories"]["api"]["pullrequests"].append(
            {"id": 5, "title": "Late arrival", "state": "OPEN", "author": "alice@acme.example",
             "source": {"branch": "release-1.0"}, "destination": {"branch": "main"},
             "created_on": "2024-01-07T08:00:00.000000+00:00",
             "comments": [{"id": 7, "author": "zoe@acme.example", "raw": "hi",
                           "created_on": "2024-01-07T09:00:00.000000+00:00"}]})
        data["workspaces"]["acme"]["repositories"]["tools"]["pullrequests"] = [
            {"id": 1, "title": "Tools PR", "state": "SUPERSEDED", "author": "Someone Else",
             "source": {"branch": "gone"}, "destination": {"branch": "trunk"},
             "created_on": "2024-01-07T08:00:00.000000+00:00"}]
        fixture.write_data(tmp_path, data)
        page = srv.get(PRS)[2]
        assert pr_ids(page) == [5, 4, 1]
        new = page["values"][0]
        tips = {b: git(demo.git / "api.git", "rev-parse", b) for b in ("release-1.0", "main")}
        assert new["source"]["commit"]["hash"] == tips["release-1.0"][:12]   # branch tip, now
        assert new["destination"]["commit"]["hash"] == tips["main"][:12]
        assert new["comment_count"] == 1 and new["updated_on"] == new["created_on"]
        assert fixture.pullrequests(tmp_path / "data.json", "api")[-1]["source"]["commit"] == tips["release-1.0"]
        tools = srv.get("/repositories/acme/tools/pullrequests?state=SUPERSEDED")[2]["values"][0]
        assert tools["source"]["commit"] is None and tools["author"]["display_name"] == "Someone Else"
        assert srv.get("/repositories/acme/tools/pullrequests/1/diff")[0] == 404
    finally:
        srv.stop()


# ---------------------------------------------------------------------------------- runtime changes

def test_runtime_changes_are_visible(tmp_path):
    info = fixture.make_repo(tmp_path / "git" / "one.git", [{"message": "first", "files": {"f": "1\n"}}])
    data = {"workspaces": {"ws": {"name": "WS", "uuid": "{w}", "projects": {"P": {"name": "P", "uuid": "{p}"}},
                                  "repositories": {"one": {"project": "P", "git_dir": "git/one.git", "uuid": "{1}",
                                                           "created_on": "2024-01-01T00:00:00+00:00"}}}},
            "tokens": {"t": {"workspaces": ["ws"], "projects": None, "workspace_read": True}}}
    fixture.write_data(tmp_path, data)
    srv = Server(tmp_path / "data.json", tmp_path)
    try:
        assert srv.get("/repositories/ws/one/refs/branches", token="t")[2]["size"] == 1
        git(info["git_dir"], "branch", "extra", "main")
        names = [b["name"] for b in srv.get("/repositories/ws/one/refs/branches", token="t")[2]["values"]]
        assert names == ["extra", "main"]
        git(info["git_dir"], "branch", "-D", "extra")
        assert srv.get("/repositories/ws/one/refs/branches/extra", token="t")[0] == 404
        # ref names that look like options or hashes are still plain names
        git(info["git_dir"], "update-ref", "refs/heads/-dash", "main")
        git(info["git_dir"], "update-ref", "refs/heads/abcd", "main")
        for name in ("-dash", "abcd"):
            assert srv.get("/repositories/ws/one/commits/" + name, token="t")[0] == 200
            assert srv.get("/repositories/ws/one/refs/branches/" + name, token="t")[0] == 200
        fixture.make_repo(info["git_dir"], [{"message": "second", "files": {"g": "2\n"}}])
        assert srv.get("/repositories/ws/one/commits/main", token="t")[2]["values"][0]["message"] == "second\n"
        # a repository and a token added to data.json while running
        two = fixture.make_repo(tmp_path / "git" / "two.git", [{"message": "hello", "files": {"x": "y"}}])
        data["workspaces"]["ws"]["repositories"]["two"] = {"project": "P", "git_dir": two["git_dir"],
                                                           "uuid": "{2}", "created_on": "2024-02-01T00:00:00+00:00"}
        data["workspaces"]["ws"]["repositories"]["gone"] = {"project": "P", "git_dir": "missing.git",
                                                            "uuid": "{3}", "created_on": "2024-03-01T00:00:00+00:00"}
        data["tokens"]["new"] = {"workspaces": ["ws"], "projects": ["P"], "workspace_read": False}
        fixture.write_data(tmp_path, data)
        values, _ = srv.walk("/repositories/ws", token="new")
        assert [v["slug"] for v in values] == ["one", "two", "gone"]
        # a repository whose git directory is missing is served as an empty one
        assert values[2]["mainbranch"] is None
        assert srv.get("/repositories/ws/gone/commits", token="new")[2]["values"] == []
        assert srv.get("/repositories/ws/gone/refs/branches", token="new")[2]["size"] == 0
    finally:
        srv.stop()


# ---------------------------------------------------------------------------------- faults

def test_knob_endpoint(srv):
    k = srv.knobs(latency_ms=0)
    assert set(k) >= {"latency_ms", "max_pagelen", "fail", "malformed", "wrong_shape", "hang", "reset",
                      "no_304", "rate_budget", "max_depth_limit", "lfs_size", "lfs_status"}
    for bad in ({"nope": 1}, {"fail": {"count": 1}}, {"max_pagelen": 0}, {"hang": {"bogus": 1}},
                {"no_304": 1}, {"rate_budget": 10}, {"max_depth_limit": {}}, {"lfs_size": None}):
        req = urllib.request.Request(srv.root + "/_fake/knobs", data=json.dumps(bad).encode(), method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 400
    with urllib.request.urlopen(srv.root + "/_fake/knobs", timeout=5) as r:
        assert json.loads(r.read())["fail"] is None


def test_fault_fail(srv):
    srv.knobs(fail={"status": 503, "count": 2, "path_contains": "/refs"})
    assert srv.get("/repositories/acme/api")[0] == 200          # not matching
    status, hdrs, body = srv.get("/repositories/acme/api/refs/branches")
    assert status == 503 and body["type"] == "error" and "Retry-After" not in hdrs
    assert srv.get("/repositories/acme/api/refs/tags")[0] == 503
    assert srv.get("/repositories/acme/api/refs/tags")[0] == 200   # used up
    srv.knobs(fail={"status": 429, "count": 1})
    status, hdrs, body = srv.get("/repositories/acme", raw=True)
    assert status == 429 and body == b"Rate limit for this resource has been exceeded"
    assert hdrs["Content-Type"] == "text/plain" and "Retry-After" not in hdrs
    srv.knobs(fail={"status": 429, "count": 1, "retry_after": 2})
    status, hdrs, _ = srv.get("/repositories/acme")
    assert status == 429 and hdrs["Retry-After"] == "2"
    srv.knobs(fail={"status": 500, "count": -1})
    assert [srv.get("/repositories/acme")[0] for _ in range(3)] == [500] * 3


def test_fault_bodies(srv):
    srv.knobs(malformed={"count": 1, "path_contains": "/commits"})
    status, hdrs, body = srv.get("/repositories/acme/api/commits", raw=True)
    assert status == 200 and int(hdrs["Content-Length"]) == len(body)
    with pytest.raises(ValueError):
        json.loads(body)
    srv.knobs(wrong_shape={"count": 1})
    status, _, body = srv.get("/repositories/acme/api/refs/branches")
    assert status == 200 and body["values"] == "oops"
    srv.knobs(reset={"count": 1})
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        srv.get("/repositories/acme/api/refs/branches")
    assert srv.get("/repositories/acme/api/refs/branches")[0] == 200


def test_fault_cut_json(srv):
    """cut_json spoils one JSON answer in `every`: cut in half, Content-Length right, the
    real ETag; file bodies, error answers and 304s are not counted; `count` counts cuts."""
    path = "/repositories/acme/api/refs/branches"
    _, hdrs, whole = srv.get(path, raw=True)
    srv.knobs(cut_json={"every": 3, "count": 2, "path_contains": "/refs/"})
    assert srv.get("/repositories/acme/api")[0] == 200                  # not matching
    assert srv.get(path + "/no-such-branch")[0] == 404                   # not a 200: not seen
    assert srv.get(path, headers={"If-None-Match": hdrs["ETag"]})[0] == 304   # nor a 304
    answers = [srv.get(path, raw=True) for _ in range(7)]
    for i, (status, h, body) in enumerate(answers):
        assert status == 200 and int(h["Content-Length"]) == len(body)
        assert h["ETag"] == hdrs["ETag"]
        if i in (2, 5):
            assert body == whole[:len(whole) // 2]
            with pytest.raises(ValueError):
                json.loads(body)
        else:
            assert body == whole
    assert srv.knobs()["cut_json"] is None                               # two cut: used up
    log = [json.loads(ln) for ln in srv.log.read_text().splitlines()]
    assert [r.get("fault") for r in log[-7:]] == [None, None, "cut_json", None, None,
                                                   "cut_json", None]
    # a file body is never cut, whatever it is
    srv.knobs(cut_json={"every": 1, "count": -1})
    sha = git(srv.git / "api.git", "rev-parse", "main")
    status, h, body = srv.get("/repositories/acme/api/src/%s/README.md" % sha, raw=True)
    assert status == 200 and body == git(srv.git / "api.git", "show",
                                         "%s:README.md" % sha).encode() + b"\n"
    for bad in ({"every": 0}, {"every": "2"}, {"bogus": 1}):
        req = urllib.request.Request(srv.root + "/_fake/knobs",
                                     data=json.dumps({"cut_json": bad}).encode(), method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 400


def test_fault_hang_and_latency(srv):
    srv.knobs(hang={"count": 1})
    t = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        srv.get("/repositories/acme", timeout=0.5)
    assert time.monotonic() - t < 10            # a hang guard: the client's timeout ends it
    assert srv.get("/repositories/acme")[0] == 200
    srv.knobs(latency_ms=300)
    t = time.monotonic()
    assert srv.get("/repositories/acme/api")[0] == 200
    assert time.monotonic() - t >= 0.3


def test_no_304(srv, demo, tmp_path):
    """no_304: If-None-Match is never answered with 304 (the real API's 304s are
    unreliable); the log says which requests carried it."""
    paths = ("/repositories/acme/api", "/repositories/acme/api/refs/branches",
             "/repositories/acme/api/src/main/README.md")
    etags = {p: srv.get(p, raw=True)[1]["ETag"] for p in paths}
    mark = log_mark(srv)
    for p in paths:
        assert srv.get(p, headers={"If-None-Match": etags[p]})[0] == 304
    assert srv.knobs(no_304=True)["no_304"] is True
    for p in paths:
        status, hdrs, body = srv.get(p, headers={"If-None-Match": etags[p]}, raw=True)
        assert status == 200 and hdrs["ETag"] == etags[p] and body == srv.get(p, raw=True)[2], p
    recs = log_since(srv, mark, 9)
    assert [(r["status"], r["if_none_match"]) for r in recs] == \
        [(304, True)] * 3 + [(200, True), (200, False)] * 3
    srv.reset()
    assert srv.get(paths[0], headers={"If-None-Match": etags[paths[0]]})[0] == 304
    other = Server(demo.data, tmp_path, "--no-304")
    try:
        assert other.knobs()["no_304"] is True
        assert other.get(paths[0], headers={"If-None-Match": etags[paths[0]]})[0] == 200
        assert other.reset()["no_304"] is True          # the start value stays the default
    finally:
        other.stop()


def test_rate_budget_stays_exhausted(srv):
    """A rolling budget: N requests per window, per token; refused requests spend nothing,
    so it stays exhausted (not "the next N requests fail"); 429 as Bitbucket sends it."""
    srv.knobs(rate_budget={"requests": 5, "window": 3600})
    mark = log_mark(srv)
    answers = [srv.get("/repositories/acme/api", raw=True) for _ in range(12)]
    assert [a[0] for a in answers] == [200] * 5 + [429] * 7
    # X-RateLimit-NearLimit once less than a fifth is left (none after the fifth)
    assert [a[1]["X-RateLimit-NearLimit"] for a in answers[:5]] == ["false"] * 4 + ["true"]
    for status, hdrs, body in answers[5:]:
        assert body == b"Rate limit for this resource has been exceeded"
        assert hdrs["Content-Type"] == "text/plain" and "Retry-After" not in hdrs
        assert hdrs["X-RateLimit-NearLimit"] == "true" and hdrs["X-RateLimit-Limit"]
    recs = log_since(srv, mark, 12)
    assert [r.get("fault") for r in recs] == [None] * 5 + ["rate_budget"] * 7
    assert all(r["auth"] for r in recs)
    # other tokens have budgets of their own; other faults wait behind the limiter
    assert srv.get("/repositories/acme/api", token="pat-token")[0] == 200
    srv.knobs(fail={"status": 503, "count": 1})
    assert srv.get("/repositories/acme/api")[0] == 429
    assert srv.knobs()["fail"] is not None
    # setting the knob again starts an empty window
    srv.knobs(rate_budget={"requests": 5, "window": 3600}, fail=None)
    assert srv.get("/repositories/acme/api")[0] == 200
    srv.knobs(rate_budget=None)
    assert [srv.get("/repositories/acme/api")[0] for _ in range(8)] == [200] * 8
    for bad in ({"requests": 1}, {"requests": -1, "window": 1}, {"requests": 1, "window": 0},
                {"requests": 1.5, "window": 1}, {"requests": 1, "window": 1, "x": 1}, [1, 2]):
        req = urllib.request.Request(srv.root + "/_fake/knobs", method="POST",
                                     data=json.dumps({"rate_budget": bad}).encode())
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=5)


def test_rate_budget_window_rolls(srv):
    """Requests for a while against 3 a 0.4 s window: the log shows the budget refused
    exactly the requests that found 3 granted ones in the 0.4 s before them, and granted
    again once the window had moved past them."""
    window, budget = 0.4, 3
    srv.knobs(rate_budget={"requests": budget, "window": window})
    mark = log_mark(srv)
    statuses = []
    deadline = time.monotonic() + 30          # hang guard
    while not (429 in statuses and statuses[-1] == 200 and statuses.count(429) >= 3):
        assert time.monotonic() < deadline, statuses
        statuses.append(srv.get("/repositories/acme/api")[0])
        time.sleep(0.03)
    recs = log_since(srv, mark, len(statuses))
    assert [r["status"] for r in recs] == statuses
    granted = []
    for r in recs:
        in_window = [t for t in granted if t > r["time"] - window]
        if r["status"] == 200:
            assert len(in_window) < budget, r
            granted.append(r["time"])
        else:
            assert len(in_window) == budget and r["fault"] == "rate_budget", r


# ---------------------------------------------------------------------------------- log

def test_request_log(srv):
    srv.get("/repositories/acme/api?pagelen=5")
    srv.get("/repositories/acme/api", token="pat-token")
    srv.get("/repositories/acme/api", token=None)
    lines = [json.loads(line) for line in srv.log.read_text().splitlines()]
    assert lines
    for rec in lines:
        assert set(rec) >= {"time", "method", "path", "query", "status", "auth", "conn", "if_none_match"}
        assert not rec["path"].startswith("/_fake")
    last = lines[-3:]
    assert [r["status"] for r in last] == [200, 200, 401]
    assert [r["auth"] for r in last] == [True, True, False]
    assert last[0]["query"] == "pagelen=5"


def test_token_never_logged(demo, request):
    # runs after the other demo tests in this module (pytest keeps file order)
    text = demo.log.read_text()
    for token in TOKENS:
        assert token not in text
    assert "Bearer" not in text and "Authorization" not in text


# ---------------------------------------------------------------------------------- demo.py

def test_demo_launcher_with_stub_bbfs(tmp_path):
    d = tmp_path / "demo"
    ok = tmp_path / "bbfs-ok"          # "succeeds" without mounting anything
    ok.write_text("#!/bin/sh\necho \"$@\" > %s\nexit 0\n" % (tmp_path / "args"))
    bad = tmp_path / "bbfs-bad"
    bad.write_text("#!/bin/sh\necho 'bbfs: cannot reach the API' >&2\nexit 3\n")
    for f in (ok, bad):
        f.chmod(0o755)
    env = dict(os.environ)
    run = lambda *a: subprocess.run([sys.executable, str(HERE / "demo.py")] + list(a), env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=40)

    try:
        res = run("--bbfs", str(bad), "--dir", str(d))
        assert res.returncode != 0
        assert b"bbfs: cannot reach the API" in res.stderr
        assert not (d / "server.pid").exists()                  # server stopped again
        assert stat.S_IMODE((d / "token").stat().st_mode) == 0o600
        assert (d / "token").read_text().strip() == "demo-token"

        res = run("--bbfs", str(ok), "--dir", str(d), "--timeout", "1")
        assert res.returncode != 0 and b"was not mounted" in res.stderr
        args = (tmp_path / "args").read_text().split()
        assert args[0] == "-o" and args[2:] == ["acme/PLAT", str(d / "mnt")]
        opts = dict(o.split("=", 1) for o in args[1].split(","))
        assert opts["api_url"].startswith("http://127.0.0.1:") and opts["api_url"].endswith("/2.0")
        assert opts["token_file"] == str(d / "token")
        assert "demo-token" not in " ".join(args)
    finally:
        res = run("--stop", "--dir", str(d))        # also when an assertion failed
    assert res.returncode == 0


# ---------------------------------------------------------------------------------- files at a commit
# The `files` repository (fixture.build_tree_fixture): every kind of tree entry, a 60 MiB
# file, an LFS file, a merge, a rename. Expected values come from git itself.

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    data = fixture.build_tree_fixture(root)
    srv = Server(data, root)
    srv.data = data
    srv.git_dir = root / "git" / "acme" / "files.git"
    yield srv
    srv.stop()


@pytest.fixture
def fsrv(files):
    files.reset()
    yield files
    files.reset()


FILES = "/repositories/acme/files"


def gitb(git_dir, *args):
    return subprocess.run(["git", "--git-dir", str(git_dir)] + list(args), check=True,
                          stdout=subprocess.PIPE, env=fixture.git_env(), timeout=60).stdout


def tree_entries(git_dir, rev, recursive=True):
    """{path: (mode, type, object, size or None)} from git ls-tree."""
    args = ["ls-tree", "-z", "-l"] + (["-r", "-t"] if recursive else []) + [rev]
    res = {}
    for rec in gitb(git_dir, *args).split(b"\0"):
        if rec:
            meta, path = rec.split(b"\t", 1)
            mode, typ, obj, size = meta.decode().split()
            res[path.decode()] = (mode, typ, obj, None if size == "-" else int(size))
    return res


def fetch(url, method="GET", headers=None, token="demo-token"):
    """(status, headers, body) without following redirects (urllib would follow them,
    Authorization header included)."""
    u = urllib.parse.urlsplit(url)
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, u.path + ("?" + u.query if u.query else ""), headers=h)
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def blob_contents(git_dir, shas):
    """{sha: bytes} through one `git cat-file --batch`."""
    out = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch"], check=True,
                         input="".join(s + "\n" for s in shas).encode(), stdout=subprocess.PIPE,
                         timeout=60).stdout
    res, pos = {}, 0
    for sha in shas:
        nl = out.index(b"\n", pos)
        size = int(out[pos:nl].split()[2])
        res[sha] = out[nl + 1:nl + 1 + size]
        pos = nl + 2 + size
    return res


def src_url(srv, rev, path=""):
    return "%s%s/src/%s/%s" % (srv.base, FILES, rev, urllib.parse.quote(path, safe="/"))


def log_mark(srv):
    return len(srv.log.read_text().splitlines())


def log_since(srv, mark, n=1):
    """The records after MARK, once there are N of them (a record is written right after
    the answer's last byte, so it may trail the client by a moment)."""
    deadline = time.monotonic() + 5
    while True:
        lines = srv.log.read_text().splitlines()[mark:]
        if len(lines) >= n or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.02)


def health(srv):
    with urllib.request.urlopen(srv.root + "/_fake/health", timeout=5) as r:
        return json.loads(r.read())


def test_tree_fixture_layout(files, tmp_path):
    g = files.git_dir
    main = tree_entries(g, "main")
    for path in ("ünïcödé.txt", "日本語/ファイル.md", "with space.txt", "dir with space/inner file",
                 "-rf", "--help.txt", ".gitignore", ".hidden/dir/x", "empty.txt",
                 "a/b/c/d/e/f/deep.txt", ".gitmodules", "new-name.txt", "names/a#b?c%d&e=f+g;h.txt"):
        assert main[path][:2] == ("100644", "blob"), path
    assert main["bin/run.sh"][0] == "100755"
    assert main["link-to-readme"][0] == main["escape"][0] == "120000"
    assert gitb(g, "cat-file", "blob", main["link-to-readme"][2]) == b"README.md"
    assert gitb(g, "cat-file", "blob", main["escape"][2]) == b"../../../../etc/passwd"
    assert main["vendor/lib"][:3] == ("160000", "commit", fixture.SUBMODULE_SHA)
    assert main["big/large.bin"][3] == fixture.LARGE_SIZE > 50 << 20
    assert main["data/blob.bin"][3] == 100 * 1024
    assert b"\0" in gitb(g, "cat-file", "blob", main["data/blob.bin"][2])[:8000]
    assert main["empty.txt"][3] == 0 and 900 * 1024 < main["assets/model.lfs"][3] < 1200 * 1024
    assert sum(1 for p in main if p.startswith("many/")) == 150
    assert "old-name.txt" not in main and "doomed.txt" not in main
    # history: one root, a merge with two parents, a rename + delete; tags on different trees
    assert len(gitb(g, "rev-list", "--max-parents=0", "main").split()) == 1
    merges = gitb(g, "rev-list", "--merges", "main").split()
    assert len(merges) == 1 and len(gitb(g, "rev-parse", merges[0].decode() + "^@").split()) == 2
    status = gitb(g, "diff", "-M", "--name-status", "v2^", "v2").decode()
    assert "R100\told-name.txt\tnew-name.txt" in status and "D\tdoomed.txt" in status
    assert gitb(g, "cat-file", "-t", "v1") == b"tag\n"
    assert gitb(g, "rev-parse", "v1^{tree}") != gitb(g, "rev-parse", "v2^{tree}")
    # git archive works (submodules become empty directories)
    tar = subprocess.run("git --git-dir='%s' archive main | tar -t" % g, shell=True, check=True,
                         stdout=subprocess.PIPE, timeout=60).stdout.decode().split("\n")
    assert "vendor/lib/" in tar and "big/large.bin" in tar
    # deterministic
    data = json.loads(fixture.build_tree_fixture(tmp_path / "again").read_text())
    assert gitb(tmp_path / "again" / "git" / "acme" / "files.git", "for-each-ref") == gitb(g, "for-each-ref")
    assert data["workspaces"]["acme"]["repositories"]["files"]["lfs"] == ["*.lfs"]


def test_tree_fixture_with_demo(tmp_path, monkeypatch):
    # with_demo adds `files` to the demo's data.json (a stand-in demo keeps this test quick)
    def fake_demo(root):
        return fixture.write_data(root, fixture._acme_data({"api": {"project": "PLAT"}}))
    monkeypatch.setattr(fixture, "build_demo", fake_demo)
    data = json.loads(fixture.build_tree_fixture(tmp_path, with_demo=True).read_text())
    assert set(data["workspaces"]["acme"]["repositories"]) == {"api", "files"}
    with pytest.raises(FileExistsError):
        fixture.build_tree_fixture(tmp_path)


def test_src_listing_shape_and_pagination(fsrv):
    g = fsrv.git_dir
    sha = gitb(g, "rev-parse", "main").decode().strip()
    root = list(tree_entries(g, "main", recursive=False))
    status, hdrs, page = fsrv.get("%s/src/%s/?pagelen=100" % (FILES, sha))
    assert status == 200 and set(page) == {"pagelen", "size", "values", "page"}
    assert [v["path"] for v in page["values"]] == root        # git tree order
    assert page["size"] == len(root) and page["pagelen"] == 100
    for variant in (sha + "//?pagelen=100", "main/?pagelen=100"):
        assert fsrv.get("%s/src/%s" % (FILES, variant))[2] == page, variant
    values, pages = fsrv.walk("%s/src/%s/" % (FILES, sha))
    assert values == page["values"] and len(pages) == (len(root) + 9) // 10
    assert all(p["pagelen"] == 10 for p in pages) and "next" not in pages[-1]
    # a directory with 150 entries needs two pages even at pagelen=100
    values, pages = fsrv.walk("%s/src/%s/many/?pagelen=100" % (FILES, sha))
    assert [p["page"] for p in pages] == [1, 2] and pages[1]["previous"].endswith("page=1")
    assert [v["path"] for v in values] == ["many/file-%03d" % i for i in range(150)]
    assert fsrv.walk("%s/src/%s/many?pagelen=100" % (FILES, sha))[0] == values
    d = next(v for v in page["values"] if v["path"] == "a")
    f = next(v for v in page["values"] if v["path"] == "README.md")
    assert set(d) == {"path", "type", "commit", "links"} and d["type"] == "commit_directory"
    assert set(f) == {"path", "commit", "type", "attributes", "escaped_path", "size", "mimetype", "links"}
    assert f["type"] == "commit_file" and f["commit"]["hash"] == d["commit"]["hash"] == sha
    assert d["links"]["self"]["href"] == "%s%s/src/%s/a/" % (fsrv.base, FILES, sha)
    assert f["links"]["meta"]["href"].endswith("/src/%s/README.md?format=meta" % sha)
    # fields include-only, as bbfs asks for it
    q = "fields=next,values.path,values.type,values.size,values.attributes&pagelen=100"
    status, _, p = fsrv.get("%s/src/%s/many/?%s" % (FILES, sha, q))
    assert set(p) == {"values", "next"}
    assert p["values"][0] == {"path": "many/file-000", "type": "commit_file", "size": 14, "attributes": []}


def test_src_attributes_and_sizes(fsrv):
    g = fsrv.git_dir
    want = tree_entries(g, "main")
    got = {}
    for d in [""] + [p for p, e in want.items() if e[1] == "tree"]:
        got.update({v["path"]: v for v in fsrv.walk("%s/src/main/%s?pagelen=100" % (
            FILES, urllib.parse.quote(d + "/" if d else "")))[0]})
    assert set(got) == set(want)
    expect_attrs = {"bin/run.sh": ["executable"], "link-to-readme": ["link"], "escape": ["link"],
                    "vendor/lib": ["subrepository"], "data/blob.bin": ["binary"],
                    "big/large.bin": ["binary"], "assets/model.lfs": ["binary", "lfs"]}
    for path, e in want.items():
        v = got[path]
        if e[1] == "tree":
            assert v["type"] == "commit_directory" and "size" not in v, path
            continue
        assert v["type"] == "commit_file", path
        assert v["attributes"] == expect_attrs.get(path, []), path
        # size = what the raw GET gives: 40 hex digits for a submodule, else git's size
        assert v["size"] == (40 if e[0] == "160000" else e[3]), path
    assert got["link-to-readme"]["size"] == len("README.md")
    assert got["assets/model.lfs"]["size"] == want["assets/model.lfs"][3]
    assert got["README.md"]["mimetype"] == "text/markdown" and got["-rf"]["mimetype"] is None
    assert got["with space.txt"]["escaped_path"] == "with space.txt"
    assert got["ünïcödé.txt"]["escaped_path"] == '"\\303\\274n\\303\\257c\\303\\266d\\303\\251.txt"'


def test_src_raw_bytes(fsrv):
    g = fsrv.git_dir
    sha = gitb(g, "rev-parse", "main").decode().strip()
    want = tree_entries(g, sha)
    files = [p for p, e in want.items() if e[1] == "blob" and p not in ("big/large.bin", "assets/model.lfs")
             and not (p.startswith("many/") and p != "many/file-149")]
    blobs = blob_contents(g, [want[p][2] for p in files])
    for path in files:
        status, hdrs, body = fsrv.get(src_url(fsrv, sha, path), raw=True)
        assert status == 200, path
        assert body == blobs[want[path][2]], path
        assert int(hdrs["Content-Length"]) == len(body) and "charset" not in hdrs["Content-Type"], path
    assert fsrv.get(src_url(fsrv, sha, "README.md"), raw=True)[1]["Content-Type"] == "text/markdown"
    assert fsrv.get(src_url(fsrv, sha, "escape"), raw=True)[2] == b"../../../../etc/passwd"
    assert fsrv.get(src_url(fsrv, sha, "vendor/lib"), raw=True)[2] == fixture.SUBMODULE_SHA.encode()
    status, hdrs, _ = fsrv.get(src_url(fsrv, sha, "bin/run.sh"))
    status, _, body = fsrv.get(src_url(fsrv, sha, "bin/run.sh"), headers={"If-None-Match": hdrs["ETag"]})
    assert status == 304 and body == b""
    # the 60 MiB file: HEAD says its size; GET streams exactly git's bytes
    status, hdrs, body = fetch(src_url(fsrv, sha, "big/large.bin"), method="HEAD")
    assert status == 200 and int(hdrs["Content-Length"]) == fixture.LARGE_SIZE and body == b""
    mark = log_mark(fsrv)
    status, hdrs, body = fsrv.get(src_url(fsrv, sha, "big/large.bin"), raw=True, timeout=60)
    assert len(body) == fixture.LARGE_SIZE
    assert hashlib.md5(body).digest() == hashlib.md5(b"".join(fixture.large_file_chunks())).digest()
    del body
    rec = log_since(fsrv, mark)[0]
    assert rec["bytes"] == fixture.LARGE_SIZE and rec["server"] == "api" and rec["status"] == 200


def test_src_meta_and_max_depth(fsrv):
    sha = gitb(fsrv.git_dir, "rev-parse", "main").decode().strip()
    listing = {v["path"]: v for v in fsrv.walk("%s/src/%s/bin/" % (FILES, sha))[0]}
    status, _, meta = fsrv.get("%s/src/%s/bin/run.sh?format=meta" % (FILES, sha))
    assert status == 200 and meta == listing["bin/run.sh"]
    status, _, meta = fsrv.get("%s/src/main/assets/model.lfs?format=meta" % FILES)
    assert status == 200 and meta["attributes"] == ["binary", "lfs"]      # no redirect
    status, _, meta = fsrv.get("%s/src/%s/a/b?format=meta" % (FILES, sha))
    assert meta["type"] == "commit_directory" and meta["path"] == "a/b"
    assert fsrv.get("%s/src/%s/?format=meta" % (FILES, sha))[2]["path"] == ""
    values, _ = fsrv.walk("%s/src/%s/a/?max_depth=3" % (FILES, sha))
    assert [v["path"] for v in values] == ["a/b", "a/b/c", "a/b/c/d"]
    values, _ = fsrv.walk("%s/src/%s/?max_depth=2&pagelen=100" % (FILES, sha))
    top = list(tree_entries(fsrv.git_dir, sha, recursive=False))
    assert [v["path"] for v in values[:len(top)]] == top                 # breadth first
    assert "a/b" in [v["path"] for v in values] and "a/b/c" not in [v["path"] for v in values]
    assert fsrv.get("%s/src/%s/?max_depth=0" % (FILES, sha))[0] == 400


def test_src_errors(fsrv):
    sha = gitb(fsrv.git_dir, "rev-parse", "main").decode().strip()
    status, _, body = fsrv.get("%s/src/%s/" % (FILES, "0" * 40))
    assert status == 404 and body == {"type": "error", "error": {"message": "Commit not found"}}
    for path in ("nope", "nope/", "README.md/x", "README.md/", "vendor/lib/x", "a//b",
                 "a/../README.md", "names/a%2Fb", "many/file-000/"):
        status, hdrs, body = fsrv.get("%s/src/%s/%s" % (FILES, sha, path))
        assert status == 404 and body["type"] == "error", path
    assert fsrv.get("%s/src/topic/README.md" % FILES)[0] == 200          # a branch name works ...
    assert fsrv.get("%s/src/feature/x/README.md" % FILES)[0] == 404      # ... without a slash
    assert fsrv.get("%s/src/%s/README.md" % (FILES, sha), token=None)[0] == 401
    assert fsrv.get("%s/src/%s/README.md" % (FILES, sha), token="pat-token")[0] == 200
    assert fsrv.get("/repositories/acme/nope/src/%s/" % sha)[0] == 404
    status, hdrs, _ = fetch(fsrv.base + FILES + "/src")
    assert status == 302 and hdrs["Location"] == "%s%s/src/%s/" % (fsrv.base, FILES, sha)


def test_refs_with_a_slash_are_no_commits(srv):
    """/src, /diff and /patch take hashes and plain ref names; a ref with a slash answers
    404, raw or %2F-encoded (bitbucket-api.md gotcha 1), while /commits and /refs take it."""
    api = "/repositories/acme/api"
    x = git(srv.git / "api.git", "rev-parse", "feature/x")
    main = git(srv.git / "api.git", "rev-parse", "main")
    for ok in ("/src/%s/" % x, "/src/main/", "/diff/%s" % x, "/diff/main", "/diff/%s..main" % x,
               "/patch/%s" % x, "/patch/main..%s" % x, "/diff/acme/api:%s%%0D%s" % (x[:12], main[:12]),
               "/commits/feature/x", "/commits/feature%2Fx", "/refs/branches/feature%2Fx"):
        assert srv.get(api + ok)[0] == 200, ok
    for ref in ("feature/x", "feature%2Fx", "feature%2fx"):
        for path in ("/src/%s/", "/src/%s/README.md", "/src/%s/?format=meta", "/diff/%s",
                     "/diff/%s..main", "/diff/main..%s", "/patch/%s", "/patch/%s..main",
                     "/diff/acme/api:%s%%0Dmain"):
            status, _, body = srv.get(api + path % ref)
            assert (status, body) == (404, {"type": "error", "error": {"message": "Commit not found"}}), \
                path % ref


def test_src_root_needs_its_trailing_slash(fsrv):
    sha = gitb(fsrv.git_dir, "rev-parse", "main").decode().strip()
    for path in (sha, sha + "?format=meta", sha + "?pagelen=100", "main"):
        status, _, body = fsrv.get("%s/src/%s" % (FILES, path))
        assert status == 404 and body["type"] == "error", path
    for path in (sha + "/", sha + "//", sha + "/?format=meta", sha + "/many", sha + "/many/"):
        assert fsrv.get("%s/src/%s" % (FILES, path))[0] == 200, path


def test_max_depth_limit(fsrv):
    """A recursive listing over `entries` entries times out with a 555, after `delay`."""
    sha = gitb(fsrv.git_dir, "rev-parse", "main").decode().strip()
    everything = tree_entries(fsrv.git_dir, sha)
    assert len(everything) > 100 and len(tree_entries(fsrv.git_dir, sha + ":a")) < 10
    fsrv.knobs(max_depth_limit={"entries": 100})
    mark = log_mark(fsrv)
    status, _, body = fsrv.get("%s/src/%s/?max_depth=64&pagelen=100" % (FILES, sha))
    assert (status, body) == (555, {"type": "error", "error": {"message": "Timeout"}})
    assert fsrv.get("%s/src/%s/many/?max_depth=2" % (FILES, sha))[0] == 555     # 150 entries
    assert fsrv.get("%s/src/%s/a/?max_depth=64" % (FILES, sha))[0] == 200       # 6 entries
    values, _ = fsrv.walk("%s/src/%s/many/?pagelen=100" % (FILES, sha))          # not recursive
    assert len(values) == 150
    recs = log_since(fsrv, mark, 5)
    assert [(r["status"], r.get("fault")) for r in recs] == [
        (555, "max_depth_limit"), (555, "max_depth_limit"), (200, None), (200, None), (200, None)]
    fsrv.knobs(max_depth_limit={"entries": len(everything)})
    values, _ = fsrv.walk("%s/src/%s/?max_depth=64&pagelen=100" % (FILES, sha))
    assert sorted(v["path"] for v in values) == sorted(everything)
    # delay: the answer comes late; it is logged when the request arrives, status null
    fsrv.knobs(max_depth_limit={"entries": 100, "delay": 0.5})
    started = time.monotonic()
    assert fsrv.get("%s/src/%s/?max_depth=2" % (FILES, sha))[0] == 555
    assert time.monotonic() - started >= 0.5
    fsrv.knobs(max_depth_limit={"entries": 100, "delay": 600})
    mark = log_mark(fsrv)
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        fsrv.get("%s/src/%s/?max_depth=2" % (FILES, sha), timeout=1)
    rec = log_since(fsrv, mark)[0]
    assert rec["status"] is None and rec["fault"] == "max_depth_limit"
    for bad in ({"entries": -1}, {"entries": 1, "delay": -1}, {"delay": 1}, {"entries": 1, "x": 2},
                {"entries": True}, 5):
        req = urllib.request.Request(fsrv.root + "/_fake/knobs", method="POST",
                                     data=json.dumps({"max_depth_limit": bad}).encode())
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=5)


def lfs_pointer(content):
    """The pointer file git-lfs would store for CONTENT."""
    return ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
            % (hashlib.sha256(content).hexdigest(), len(content))).encode()


@pytest.mark.parametrize("size_knob", ["content", "pointer"])
def test_lfs_size_and_redirect_status(fsrv, size_knob):
    """Both readings of an LFS file's `size` (the content's, or the pointer's), and the
    real API's 301; the bytes behind the redirect are the content either way."""
    g = fsrv.git_dir
    sha = gitb(g, "rev-parse", "main").decode().strip()
    entries = tree_entries(g, sha)
    content = gitb(g, "cat-file", "blob", entries["assets/model.lfs"][2])
    want = len(content) if size_knob == "content" else len(lfs_pointer(content))
    assert want != len(content) or size_knob == "content"
    fsrv.knobs(lfs_size=size_knob, lfs_status=301)
    listing = {v["path"]: v for v in fsrv.walk("%s/src/%s/assets/" % (FILES, sha))[0]}
    recursive = {v["path"]: v for v in fsrv.walk("%s/src/%s/?max_depth=3&pagelen=100" % (FILES, sha))[0]}
    meta = fsrv.get("%s/src/%s/assets/model.lfs?format=meta" % (FILES, sha))[2]
    for entry in (listing["assets/model.lfs"], recursive["assets/model.lfs"], meta):
        assert entry["size"] == want and entry["attributes"] == ["binary", "lfs"]
    assert recursive["README.md"]["size"] == entries["README.md"][3]       # only LFS files
    status, hdrs, body = fetch(src_url(fsrv, sha, "assets/model.lfs"))
    assert status == 301 and body == b"" and "/media/" in hdrs["Location"]
    assert fetch(hdrs["Location"], token=None)[2] == content
    fsrv.reset()
    assert fetch(src_url(fsrv, sha, "assets/model.lfs"))[0] == 302
    assert fsrv.get("%s/src/%s/assets/model.lfs?format=meta" % (FILES, sha))[2]["size"] == len(content)
    for bad in ({"lfs_size": "real"}, {"lfs_status": 307}, {"lfs_status": "301"}):
        req = urllib.request.Request(fsrv.root + "/_fake/knobs", data=json.dumps(bad).encode(),
                                     method="POST")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=5)


def test_lfs_redirect_to_a_second_listener(fsrv):
    g = fsrv.git_dir
    blob = tree_entries(g, "main")["assets/model.lfs"][2]
    want = gitb(g, "cat-file", "blob", blob)
    lfs_port = health(fsrv)["lfs_port"]
    assert lfs_port not in (None, fsrv.port)
    mark = log_mark(fsrv)
    status, hdrs, body = fetch(src_url(fsrv, "main", "assets/model.lfs"))
    assert status == 302 and body == b"" and hdrs["Content-Length"] == "0"
    location = hdrs["Location"]
    assert location.startswith("http://127.0.0.1:%d/media/" % lfs_port)
    status, hdrs, body = fetch(location, token=None)
    assert status == 200 and body == want and int(hdrs["Content-Length"]) == len(want)
    api, lfs = log_since(fsrv, mark, 2)
    assert (api["server"], api["status"], api["auth"]) == ("api", 302, True)
    assert (lfs["server"], lfs["status"], lfs["auth"], lfs["bytes"]) == ("lfs", 200, False, len(want))
    # a client that forwards its token: still served, but the log says so
    mark = log_mark(fsrv)
    status, _, body = fetch(location, token="demo-token")
    assert status == 200 and log_since(fsrv, mark)[0]["auth"] is True
    assert "demo-token" not in fsrv.log.read_text()
    assert fetch(location, method="HEAD", token=None)[1]["Content-Length"] == str(len(want))
    assert fetch("http://127.0.0.1:%d/media/bm9wZQ" % lfs_port, token=None)[0] == 404
    fsrv.knobs(lfs_host="localhost")
    status, hdrs, _ = fetch(src_url(fsrv, "main", "assets/model.lfs"))
    assert hdrs["Location"].startswith("http://localhost:%d/media/" % lfs_port)


def diff_of(g, old, new):
    return gitb(g, "diff", "--full-index", "-M", old, new)


def test_diff_and_patch(fsrv):
    g = fsrv.git_dir
    root = gitb(g, "rev-list", "--max-parents=0", "main").decode().strip()
    merge = gitb(g, "rev-list", "--merges", "main").decode().strip()
    main = gitb(g, "rev-parse", "main").decode().strip()
    empty_tree = gitb(g, "hash-object", "-t", "tree", "--stdin").decode().strip()
    cases = {main: main + "^", merge: merge + "^1", root: empty_tree,
             gitb(g, "rev-parse", "v2").decode().strip(): "v2^", root_child(g, root): root}
    for sha, parent in cases.items():
        status, hdrs, body = fsrv.get("%s/diff/%s" % (FILES, sha), raw=True)
        assert status == 200 and hdrs["Content-Type"] == "text/plain"
        assert body == diff_of(g, parent, sha) and int(hdrs["Content-Length"]) == len(body), sha
    texts = {sha: fsrv.get("%s/diff/%s" % (FILES, sha), raw=True)[2] for sha in cases}
    assert b"Binary files /dev/null and b/big/large.bin differ" in texts[main]
    assert b"Binary files /dev/null and b/data/blob.bin differ" in texts[root_child(g, root)]
    assert b"+Subproject commit " + fixture.SUBMODULE_SHA.encode() in texts[merge]
    assert b"rename from old-name.txt" in texts[gitb(g, "rev-parse", "v2").decode().strip()]
    assert b"diff --git a/README.md b/README.md\nnew file mode 100644" in texts[root]
    # Bitbucket's A..B is git's B A (with topic=false; the default is three-dot)
    assert fsrv.get("%s/diff/v2..v1?topic=false" % FILES, raw=True)[2] == diff_of(g, "v1", "v2")
    assert fsrv.get("%s/diff/main..topic" % FILES, raw=True)[2] == diff_of(g, "topic", "main")
    assert fsrv.get("%s/diff/%s" % (FILES, "0" * 40))[0] == 404
    assert fsrv.get("%s/diff/nope..main" % FILES)[0] == 404
    status, _, body = fsrv.get("%s/patch/%s" % (FILES, root), raw=True)
    assert status == 200 and body == gitb(g, "format-patch", "-1", "--stdout", "--no-signature",
                                          "--full-index", root)
    assert body.startswith(b"From " + root.encode())
    assert fsrv.get("%s/patch/%s" % (FILES, merge), raw=True)[:3:2] == (200, b"")


def root_child(g, root):
    return gitb(g, "rev-list", "--reverse", "--ancestry-path", root + "..main").split()[0].decode()


def test_new_knobs_and_bytes_in_log(fsrv):
    g = fsrv.git_dir
    sha = gitb(g, "rev-parse", "main").decode().strip()
    # a refused diff is `fail` with status 555 (no knob of its own); skip lets one through
    fsrv.knobs(fail={"status": 555, "count": 1, "skip": 1, "path_contains": "/diff/",
                     "message": "Service Timeout"})
    assert fsrv.get("%s/diff/%s" % (FILES, sha))[0] == 200
    status, _, body = fsrv.get("%s/diff/%s" % (FILES, sha))
    assert status == 555 and body == {"type": "error", "error": {"message": "Service Timeout"}}
    assert fsrv.get("%s/diff/%s" % (FILES, sha))[0] == 200
    # slow_body: exact bytes, paced; the request shows in /_fake/active meanwhile
    size = 100 * 1024
    fsrv.knobs(slow_body={"bytes_per_second": 250 * 1024, "path_contains": "/data/blob.bin"})
    got, active = {}, []
    mark = log_mark(fsrv)
    t = threading.Thread(target=lambda: got.update(
        r=fsrv.get(src_url(fsrv, sha, "data/blob.bin"), raw=True)))
    started = time.monotonic()
    t.start()
    while t.is_alive() and not active:
        with urllib.request.urlopen(fsrv.root + "/_fake/active", timeout=5) as r:
            active = [a for a in json.loads(r.read()) if a["path"].endswith("/data/blob.bin")]
        time.sleep(0.02)
    t.join(10)
    assert time.monotonic() - started >= 0.3
    status, hdrs, body = got["r"]
    assert status == 200 and len(body) == size == int(hdrs["Content-Length"])
    assert active and active[0]["length"] == size and 0 <= active[0]["bytes"] < size
    rec = log_since(fsrv, mark)[0]
    assert rec["slow_body"] == 250 * 1024 and rec["bytes"] == size
    assert fsrv.knobs()["slow_body"] is None                                 # count 1 used up
    # reset and malformed on a file (over 64 KiB: streamed from git)
    fsrv.knobs(reset={"path_contains": "/data/blob.bin"})
    mark = log_mark(fsrv)
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        fsrv.get(src_url(fsrv, sha, "data/blob.bin"), raw=True)
    assert log_since(fsrv, mark)[0]["bytes"] == size // 2
    fsrv.knobs(malformed={"path_contains": "/bin/run.sh"})
    status, hdrs, body = fsrv.get(src_url(fsrv, sha, "bin/run.sh"), raw=True)
    full = gitb(g, "cat-file", "blob", "main:bin/run.sh")
    assert status == 200 and body == full[:len(full) // 2] == full[:int(hdrs["Content-Length"])]
    for bad in ({"slow_body": {"count": 1}}, {"slow_body": {"bytes_per_second": 0}},
                {"lfs_host": "a b"}):
        req = urllib.request.Request(fsrv.root + "/_fake/knobs", data=json.dumps(bad).encode(), method="POST")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=5)
    # every record has the body bytes sent
    for rec in (json.loads(line) for line in fsrv.log.read_text().splitlines()):
        assert isinstance(rec["bytes"], int) and rec["server"] in ("api", "lfs")

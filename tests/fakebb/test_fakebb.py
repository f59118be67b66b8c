"""Self-test of the fake Bitbucket server, its fixture builder and the demo launcher.

Run with: /usr/bin/python3 -m pytest tests/fakebb
Each server runs as a subprocess on port 0 and is always stopped; every HTTP call has a
timeout, and the whole module is expected to take well under 20 seconds.
"""

import http.client
import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fixture  # noqa: E402

pytestmark = pytest.mark.timeout(60)

TOKENS = ("demo-token", "pat-token")


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
    assert set(k) >= {"latency_ms", "max_pagelen", "fail", "malformed", "wrong_shape", "hang", "reset"}
    for bad in ({"nope": 1}, {"fail": {"count": 1}}, {"max_pagelen": 0}, {"hang": {"bogus": 1}}):
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


def test_fault_hang_and_latency(srv):
    srv.knobs(hang={"count": 1})
    t = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        srv.get("/repositories/acme", timeout=0.5)
    assert time.monotonic() - t < 3
    assert srv.get("/repositories/acme")[0] == 200
    srv.knobs(latency_ms=300)
    t = time.monotonic()
    assert srv.get("/repositories/acme/api")[0] == 200
    assert time.monotonic() - t >= 0.3


# ---------------------------------------------------------------------------------- log

def test_request_log(srv):
    srv.get("/repositories/acme/api?pagelen=5")
    srv.get("/repositories/acme/api", token="pat-token")
    srv.get("/repositories/acme/api", token=None)
    lines = [json.loads(line) for line in srv.log.read_text().splitlines()]
    assert lines
    for rec in lines:
        assert set(rec) >= {"time", "method", "path", "query", "status", "auth", "conn"}
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

    res = run("--stop", "--dir", str(d))
    assert res.returncode == 0

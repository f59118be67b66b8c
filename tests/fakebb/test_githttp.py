"""Self-test of the fake server's git smart HTTP (githttp.py) with the real git CLI.

Run with: /usr/bin/python3 -m pytest tests/fakebb/test_githttp.py
One server for the module (a subprocess on port 0, always stopped); knobs are reset around
every test. Credentials reach git through GIT_CONFIG_* environment variables
(http.extraHeader), never through a command line. Expected values come from the demo's git
repositories.
"""

import base64
import json
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fixture  # noqa: E402
from test_fakebb import Server  # noqa: E402

pytestmark = pytest.mark.timeout(120)

GIT_TIMEOUT = 60       # hang guard for one git command


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("gitdemo")
    data = fixture.build_demo(root)
    srv = Server(data, root)
    srv.git = root / "git" / "acme"
    yield srv
    srv.stop()


@pytest.fixture
def srv(demo):
    demo.reset()
    yield demo
    demo.reset()


def basic(user, token):
    return "Basic " + base64.b64encode(("%s:%s" % (user, token)).encode()).decode()


def git_env(auth=None, *config):
    """git's environment: no user config, no prompt, AUTH as an extra header, CONFIG pairs."""
    env = fixture.git_env()
    pairs = list(config) + ([("http.extraHeader", "Authorization: " + auth)] if auth else [])
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for i, (k, v) in enumerate(pairs):
        env["GIT_CONFIG_KEY_%d" % i], env["GIT_CONFIG_VALUE_%d" % i] = k, v
    return env


def run_git(args, env, cwd=None):
    return subprocess.run(["git"] + [str(a) for a in args], env=env, cwd=cwd, capture_output=True,
                          timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL)


def repo_git(srv, slug, *args):
    return fixture.git(srv.git / (slug + ".git"), *args).decode().strip()


def url(srv, slug, layout="new", ws="acme"):
    if layout == "new":
        return "%s/%s/%s.git" % (srv.root, ws, slug)
    return "%s/git/%s/%s.git" % (srv.root, ws, slug)


def git_entries(srv, since=0):
    return [e for e in read_log(srv)[since:] if e.get("server") == "git"]


def read_log(srv):
    if not srv.log.exists():
        return []
    return [json.loads(ln) for ln in srv.log.read_text().splitlines() if ln.endswith("}")]


def mark(srv):
    return len(read_log(srv))


def clone(srv, tmp_path, slug="api", layout="new", auth=None, protocol=None, extra=()):
    dest = tmp_path / ("clone-%d" % time.monotonic_ns())
    config = [("protocol.version", protocol)] if protocol else []
    env = git_env(auth if auth is not None else basic("x-token-auth", "demo-token"), *config)
    r = run_git(["clone", "-q", "--depth", "1", *extra, url(srv, slug, layout), dest], env)
    return r, dest


def head_of(dest):
    return subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True,
                          timeout=GIT_TIMEOUT, check=True, env=fixture.git_env()).stdout.decode().strip()


def shallow_fetch(srv, tmp_path, sha, protocol, slug="api"):
    """`git fetch --depth 1 URL SHA` into a new repository: (result, repository)."""
    dest = tmp_path / ("fetch-%d" % time.monotonic_ns())
    env = git_env(basic("x-token-auth", "demo-token"), ("protocol.version", protocol))
    run_git(["init", "-q", "--bare", dest], env)
    r = run_git(["--git-dir", dest, "fetch", "-q", "--depth", "1", url(srv, slug), sha], env)
    return r, dest


# ------------------------------------------------------------------------------- clones

@pytest.mark.parametrize("layout", ["new", "old"])
def test_shallow_clone_v2_on_both_layouts(srv, tmp_path, layout):
    m = mark(srv)
    r, dest = clone(srv, tmp_path, layout=layout)
    assert r.returncode == 0, r.stderr
    main = repo_git(srv, "api", "rev-parse", "refs/heads/main")
    assert head_of(dest) == main
    assert (dest / ".git" / "shallow").read_text().split() == [main]
    entries = git_entries(srv, m)
    assert [e["git"] for e in entries] == ["discover", "ls-refs", "fetch"]
    assert all(e["protocol"] == 2 and e["status"] == 200 and e["auth"] for e in entries)
    assert all(e["path"].startswith("/acme/api.git/" if layout == "new" else "/git/acme/api.git/")
               for e in entries)
    assert not [e for e in read_log(srv)[m:] if e.get("server") == "api"]


def test_clone_with_protocol_v0_client(srv, tmp_path):
    m = mark(srv)
    r, dest = clone(srv, tmp_path, protocol="0")
    assert r.returncode == 0, r.stderr
    assert head_of(dest) == repo_git(srv, "api", "rev-parse", "refs/heads/main")
    entries = git_entries(srv, m)
    # git's v0 client asks for the shallow list in one POST and the pack in a second
    assert [(e["git"], e["protocol"]) for e in entries] == [("discover", 0)] + [("fetch", 0)] * 2


def test_v0_mode_ignores_the_version_header(srv, tmp_path):
    srv.knobs(git_protocol="v0")
    m = mark(srv)
    r, dest = clone(srv, tmp_path, slug="web")
    assert r.returncode == 0, r.stderr
    assert head_of(dest) == repo_git(srv, "web", "rev-parse", "refs/heads/main")
    entries = git_entries(srv, m)
    assert [(e["git"], e["protocol"]) for e in entries] == [("discover", 0)] + [("fetch", 0)] * 2


def test_advertisement_in_each_mode(srv):
    """What a client sees on discovery: v2 capabilities, or a v0 ref list naming HEAD."""
    def discover(proto_header):
        h = {"Authorization": basic("x-token-auth", "demo-token")}
        if proto_header:
            h["Git-Protocol"] = proto_header
        req = urllib.request.Request(url(srv, "api") + "/info/refs?service=git-upload-pack", headers=h)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers["Content-Type"], r.read()
    ctype, body = discover("version=2")
    assert ctype == "application/x-git-upload-pack-advertisement"
    assert body.startswith(b"000eversion 2\n") and b"fetch=shallow" in body
    srv.knobs(git_protocol="v0")
    _, body = discover("version=2")
    assert body.startswith(b"001e# service=git-upload-pack\n0000")
    main = repo_git(srv, "api", "rev-parse", "refs/heads/main").encode()
    assert main + b" HEAD\0" in body and b"symref=HEAD:refs/heads/main" in body
    v1 = repo_git(srv, "api", "rev-parse", "v1^{commit}").encode()
    assert v1 + b" refs/tags/v1^{}\n" in body


# ------------------------------------------------------------------ wants that are not tips

def old_commit(srv):
    """A commit of api's main that is neither a branch nor a tag tip."""
    tips = set(repo_git(srv, "api", "for-each-ref", "--format=%(objectname) %(*objectname)").split())
    for sha in repo_git(srv, "api", "rev-list", "main").split():
        if sha not in tips:
            return sha
    raise AssertionError("no non-tip commit")


def test_v2_serves_any_reachable_commit(srv, tmp_path):
    sha = old_commit(srv)
    m = mark(srv)
    r, dest = shallow_fetch(srv, tmp_path, sha, "2")
    assert r.returncode == 0, r.stderr
    assert fixture.git(dest, "cat-file", "-t", sha).decode().strip() == "commit"
    assert [e["git"] for e in git_entries(srv, m)] == ["discover", "ls-refs", "fetch"]


def pkt(line):
    return b"%04x" % (len(line) + 4) + line


def v0_upload_pack(srv, sha):
    """(status, body) of a v0 POST git-upload-pack wanting SHA at depth 1."""
    body = (pkt(b"want %s side-band-64k ofs-delta no-progress shallow\n" % sha.encode())
            + pkt(b"deepen 1\n") + b"0000" + pkt(b"done\n"))
    status, _, answer = status_of(srv, "/acme/api.git/git-upload-pack",
                                  basic("x-token-auth", "demo-token"), "POST", body)
    return status, answer


def test_v0_mode_refuses_an_unadvertised_commit(srv, tmp_path):
    srv.knobs(git_protocol="v0")
    sha = old_commit(srv)
    m = mark(srv)
    # git's own client does not even ask: the v0 advertisement allows no such want
    r, _ = shallow_fetch(srv, tmp_path, sha, "2")
    assert r.returncode != 0 and sha.encode() in r.stderr
    assert [e["git"] for e in git_entries(srv, m)] == ["discover"]
    # a client that asks anyway gets what upload-pack says to a want it will not serve
    status, answer = v0_upload_pack(srv, sha)
    assert (status, answer) == (200, pkt(b"ERR upload-pack: not our ref %s\n" % sha.encode()))
    # while git's upload-pack alone (the v2 mode) serves it even to a v0 request over HTTP
    srv.knobs(git_protocol="v2")
    status, answer = v0_upload_pack(srv, sha)
    assert status == 200 and answer.startswith(pkt(b"shallow %s" % sha.encode()))
    assert b"PACK" in answer
    # an annotated tag's commit is no tip either, though it is advertised as refs/tags/v1^{}
    srv.knobs(git_protocol="v0")
    commit = repo_git(srv, "api", "rev-parse", "v1^{commit}")
    status, answer = v0_upload_pack(srv, commit)
    assert (status, answer) == (200, pkt(b"ERR upload-pack: not our ref %s\n" % commit.encode()))
    # the tag itself is, and its pack brings the commit
    tag = repo_git(srv, "api", "rev-parse", "v1")
    r, dest = shallow_fetch(srv, tmp_path, tag, "0")
    assert r.returncode == 0, r.stderr
    assert fixture.git(dest, "cat-file", "-t", tag).decode().strip() == "tag"
    assert fixture.git(dest, "cat-file", "-t", commit).decode().strip() == "commit"


# ---------------------------------------------------------------------------- refusals

def status_of(srv, path, auth, method="GET", body=None):
    h = {"Authorization": auth} if auth else {}
    if body is not None:
        h["Content-Type"] = "application/x-git-upload-pack-request"
    req = urllib.request.Request(srv.root + path, headers=h, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


REFS = "/acme/api.git/info/refs?service=git-upload-pack"


@pytest.mark.parametrize("auth", [
    None,
    "Bearer demo-token",
    basic("demo", "demo-token"),
    basic("x-token-auth", "wrong-token"),
    basic("x-token-auth", ""),
    "Basic !!!not-base64",
], ids=["none", "bearer", "wrong-user", "wrong-token", "empty-token", "garbage"])
def test_only_basic_x_token_auth_is_accepted(srv, auth):
    m = mark(srv)
    for path in (REFS, "/git" + REFS):
        status, headers, _ = status_of(srv, path, auth)
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Basic realm=")
    entries = git_entries(srv, m)
    assert [(e["status"], e["auth"]) for e in entries] == [(401, False)] * 2


def test_repository_the_token_cannot_see_is_404(srv):
    # pat-token sees the PLAT project only: infra (OPS) is hidden, exactly like a missing one
    for slug in ("infra", "no-such-repo"):
        status, _, body = status_of(srv, "/acme/%s.git/info/refs?service=git-upload-pack" % slug,
                                    basic("x-token-auth", "pat-token"))
        assert status == 404 and body == b"Repository not found\n"
    status, _, _ = status_of(srv, "/nobody/api.git/info/refs?service=git-upload-pack",
                             basic("x-token-auth", "demo-token"))
    assert status == 404
    status, _, _ = status_of(srv, "/acme/api.git/info/refs?service=git-upload-pack",
                             basic("x-token-auth", "pat-token"))
    assert status == 200


def test_clone_with_a_token_without_access_fails(srv, tmp_path):
    r, _ = clone(srv, tmp_path, slug="infra", auth=basic("x-token-auth", "pat-token"))
    assert r.returncode != 0 and b"not found" in r.stderr


def test_receive_pack_is_refused(srv):
    auth = basic("x-token-auth", "demo-token")
    assert status_of(srv, "/acme/api.git/info/refs?service=git-receive-pack", auth)[0] == 403
    assert status_of(srv, "/acme/api.git/git-receive-pack", auth, "POST", b"0000")[0] == 403


def test_the_token_is_never_logged(srv, tmp_path):
    r, _ = clone(srv, tmp_path)
    assert r.returncode == 0, r.stderr
    status_of(srv, REFS, basic("x-token-auth", "wrong-token"))
    text = srv.log.read_text()
    assert "demo-token" not in text and "wrong-token" not in text
    assert base64.b64encode(b"x-token-auth:demo-token").decode() not in text


# ------------------------------------------------------------------------------- faults

def test_cut_pack(srv, tmp_path):
    srv.knobs(git_cut={"bytes": 200, "request": "fetch"})
    m = mark(srv)
    r, _ = clone(srv, tmp_path)
    assert r.returncode != 0
    entries = git_entries(srv, m)
    cut = [e for e in entries if e.get("fault") == "git_cut"]
    assert len(cut) == 1 and cut[0]["git"] == "fetch" and cut[0]["bytes"] == 200
    # discovery and ls-refs were not touched, and the knob is used up
    assert all(e["bytes"] > 0 and "fault" not in e for e in entries if e["git"] != "fetch")
    r, dest = clone(srv, tmp_path)
    assert r.returncode == 0, r.stderr


def test_reset(srv, tmp_path):
    srv.knobs(git_reset={"bytes": 100, "request": "fetch"})
    m = mark(srv)
    r, _ = clone(srv, tmp_path)
    assert r.returncode != 0
    reset = [e for e in git_entries(srv, m) if e.get("fault") == "git_reset"]
    assert len(reset) == 1 and reset[0]["bytes"] == 100


def test_hang_is_bounded_by_the_client(srv, tmp_path):
    srv.knobs(git_hang={"request": "discover"})
    m = mark(srv)
    r, _ = clone(srv, tmp_path, extra=["-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=2"])
    assert r.returncode != 0
    hung = [e for e in git_entries(srv, m) if e.get("fault") == "git_hang"]
    assert len(hung) == 1 and hung[0]["status"] is None and hung[0]["git"] == "discover"


def test_fail_status(srv, tmp_path):
    srv.knobs(git_fail={"status": 403, "request": "ls-refs"})
    m = mark(srv)
    r, _ = clone(srv, tmp_path)
    assert r.returncode != 0
    assert [(e["git"], e["status"]) for e in git_entries(srv, m)] == [("discover", 200), ("ls-refs", 403)]


def test_api_faults_do_not_touch_git_and_latency_does(srv, tmp_path):
    srv.knobs(fail={"status": 500, "count": -1}, latency_ms=200)
    m = mark(srv)
    r, _ = clone(srv, tmp_path)
    assert r.returncode == 0, r.stderr
    entries = git_entries(srv, m)
    assert entries and all(e["status"] == 200 and e["duration_ms"] >= 200 for e in entries)


@pytest.mark.parametrize("knobs", [
    {"git_protocol": "v1"},
    {"git_cut": {"bytes": -1}},
    {"git_cut": {"request": "push"}},
    {"git_fail": {"status": 99}},
    {"git_hang": {"bytes": 3}},
    {"git_reset": "now"},
])
def test_bad_knobs_are_refused(srv, knobs):
    req = urllib.request.Request(srv.root + "/_fake/knobs", data=json.dumps(knobs).encode(),
                                 method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 400


def test_reset_clears_the_git_knobs(srv):
    srv.knobs(git_protocol="v0", git_cut={"bytes": 1})
    out = srv.reset()
    assert out["git_protocol"] == "v2" and out["git_cut"] is None

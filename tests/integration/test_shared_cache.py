"""
A fleet shares one budget (issue 17): mounts on separate cache directories
and one Redis (`-o shared_cache=`), a real redis-server started per test on
a free port and stopped even when the test fails.

- The second machine reads a tree, commit objects and a diff right with no
  request for data addressed by a hash, and within ttl lists the workspace
  and branches/ with no request at all; what it got from Redis is in its own
  store too.
- A token for another project reads nothing of PLAT through a Redis a PLAT
  mount filled; no key or value holds the token.
- A value changed by hand in Redis is detected, the bytes read stay right,
  and the value is replaced.
- Redis killed in the middle of a walk: the walk completes right, no read
  longer than the timeout. A wrong password: one clear line, the mount
  works without Redis. A password file others can read, or a bad URL: one
  line, nothing mounted, no request. Offline, Redis is never reached.
- Four mounts doing the same cold walk at once cost at most 1.2 times the
  requests of one mount alone; with the holder of a lease killed mid-fetch,
  the others still read right.

Expected bytes come from git and the fake server; request counts from the
fake server's log (`"server": "api"`).
"""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import (BBFS_BIN, PYTHON, cat, errno_of, force_unmount, free_closed_port, ls,
                      mountinfo_has, one_clear_line, out, run, run_bbfs_expect_failure,
                      scan_stderr, user_env, wait_for_mount, write_token_file)
from helpers import json_file

REDIS_DEADLINE = 15    # redis-server until it answers PING
WALK_GUARD = 90        # hang guard for a whole walk (marked as such where used)
TIMEOUT = 10           # bbfs's -o timeout= in the tests that kill things

# The one line that says the shared cache cannot be used (api/redis_pool.c).
UNAVAILABLE = r"shared cache redis://127\.0\.0\.1:\d+/0 unavailable: "
DAMAGED = r"shared cache redis://127\.0\.0\.1:\d+/0: a damaged value was deleted"


# --------------------------------------------------------------------------
# A real redis-server, and a few commands of its protocol (RESP)


class Redis:
    """redis-server on a free loopback port and a unix socket, no persistence, its own
    directory; with CONF, that configuration file first (the command line overrides it).
    AUTH is the password, or (user, password), this test's own connections log in with."""

    def __init__(self, workdir, password=None, conf=None, auth=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.conf = conf
        self.auth = auth or password
        self.socket = self.dir / "redis.sock"
        self.port = None
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        for _ in range(5):
            self.port = free_closed_port()
            args = ["redis-server", *([str(self.conf)] if self.conf else []),
                    "--port", str(self.port), "--bind", "127.0.0.1",
                    "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                    "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                    "--logfile", str(self.dir / "redis.log"), "--daemonize", "no"]
            if self.password:
                args += ["--requirepass", self.password]
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
            end = time.monotonic() + REDIS_DEADLINE
            while time.monotonic() < end and self.proc.poll() is None:
                try:
                    if self.command("PING") == "PONG":
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()   # the port was taken meanwhile, or it is too slow: another one
        raise RuntimeError(f"redis-server did not start:\n{self.log()}")

    def log(self):
        p = self.dir / "redis.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def kill(self):
        """Dies at once, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def command(self, *args):
        """One command on a connection of its own: the reply (bytes, int, list, str)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            f = s.makefile("rb")
            if self.auth:
                s.sendall(encode("AUTH", *([self.auth] if isinstance(self.auth, str)
                                           else self.auth)))
                read_reply(f)
            s.sendall(encode(*args))
            return read_reply(f)

    def keys(self):
        """Every key, by SCAN."""
        cursor, found = b"0", []
        while True:
            cursor, batch = self.command("SCAN", cursor, "COUNT", "1000")
            found += batch
            if cursor == b"0":
                return found

    def hash_keys(self):
        return [k for k in self.keys() if re.fullmatch(rb"bbfs:1:h:[0-9a-f]{64}", k)]

    def settle(self, quiet=0.5, deadline=20):
        """Waits until the keys have not changed for QUIET seconds: the mounts' writes,
        off their readers' paths, are done (a hang guard bounds it)."""
        end = time.monotonic() + deadline
        last, since = None, time.monotonic()
        while time.monotonic() < end:
            now = sorted(self.keys())
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.1)


def encode(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


def read_reply(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        return [read_reply(f) for _ in range(int(rest))]
    raise OSError(f"unexpected reply {line!r}")


@pytest.fixture
def redis_factory(tmp_path):
    """start(password=None, conf=None, auth=None) -> a running Redis; every one is stopped
    at teardown. Tests name it (or `redis`) before mount_factory: fixtures are torn down in
    the reverse order, so Redis outlives the mounts, which write to it until they end."""
    servers = []

    def start(password=None, conf=None, auth=None):
        r = Redis(tmp_path / f"redis{len(servers)}", password, conf, auth)
        servers.append(r)
        return r.start()

    yield start
    for r in servers:
        r.stop()


@pytest.fixture
def redis(redis_factory):
    return redis_factory()


def shared(redis, *more):
    return [f"shared_cache={redis.url}", *more]


# --------------------------------------------------------------------------
# What to read and what it must be


def api_requests(entries):
    return [e for e in entries if e.get("server", "api") == "api"]


def by_hash(entries):
    """Requests for data addressed by a commit hash: commit objects, listings at a
    commit, files, diffs."""
    return [e for e in api_requests(entries)
            if re.search(r"/(commit|src|diff|patch)/", e["path"])]


def describe(entries):
    return "\n".join(f"  {e['method']} {e['path']}?{e.get('query', '')} -> {e['status']}"
                     for e in entries)


def archive(git_dir, rev, dest):
    """`git archive REV | tar -x -C DEST`: what tree/ must be."""
    dest.mkdir(parents=True)
    git = subprocess.Popen(["git", "--git-dir", str(git_dir), "archive", rev],
                           stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=git.stdout, check=True, timeout=120)
    git.stdout.close()
    assert git.wait(60) == 0
    return dest


def assert_same_tree(tree, want):
    r = run(["diff", "-r", "--no-dereference", str(tree), str(want)], timeout=WALK_GUARD)
    assert r.returncode == 0, f"diff -r {tree} {want}:\n{r.stdout}{r.stderr}"


def stats(m):
    text = out(["cat", str(m.path / ".bbfs" / "stats")])
    return dict(ln.split(" ", 1) for ln in text.splitlines())


class Reads:
    """What a machine of the fleet reads of the demo's `api` repository: its tree at
    HEAD, the commit objects of HEAD and its parent, HEAD's diff."""

    def __init__(self, demo, server, tmp_path):
        self.git_dir = demo.git_dir("api")
        self.head = demo.git("api", "rev-parse", "HEAD").strip()
        self.commits = [self.head] + demo.parents("api", self.head)[:1]
        self.tree = archive(self.git_dir, self.head, tmp_path / "want-tree")
        self.objects = {h: json_file(server.get_json(f"repositories/acme/api/commit/{h}"))
                        for h in self.commits}
        status, self.diff = server.get_bytes(f"repositories/acme/api/diff/{self.head}")
        assert status == 200

    def check(self, ws):
        """Reads them below the workspace directory WS, and compares."""
        repo = ws / "api"
        assert_same_tree(repo / "commits" / self.head / "tree", self.tree)
        for h, want in self.objects.items():
            assert cat(repo / "commits" / h / "commit.json") == want, h
        assert cat(repo / "commits" / self.head / "diff") == self.diff


# --------------------------------------------------------------------------
# Two machines


def test_second_machine_reads_from_redis(redis, mount_factory, server, demo, tmp_path):
    reads = Reads(demo, server, tmp_path)
    first = mount_factory(server, options=shared(redis))
    reads.check(first.ws)
    want_ls = sorted(server.repo_slugs(project="PLAT") + ["project.json", "workspace.json"])
    want_branches = sorted(demo.branches("api"))
    assert sorted(ls(first.ws)) == want_ls
    assert set(ls(first.ws / "api" / "branches")) == {b.split("/")[0] for b in want_branches}
    redis.settle()

    second = mount_factory(server, options=shared(redis))
    mark = server.log.mark()
    assert sorted(ls(second.ws)) == want_ls
    assert set(ls(second.ws / "api" / "branches")) == {b.split("/")[0] for b in want_branches}
    listed = server.log.since(mark)
    assert api_requests(listed) == [], "within ttl, ls of the workspace and branches/ " \
        "should cost nothing:\n" + describe(listed)
    reads.check(second.ws)
    got = server.log.since(mark)
    assert by_hash(got) == [], "data addressed by a hash should come from Redis:\n" \
        + describe(by_hash(got))
    st = stats(second)
    assert st["shared_cache"] == "up"
    assert int(st["shared_hits"]) > 0 and int(st["shared_errors"]) == 0, st

    # what came from Redis is in the second machine's own store: without Redis, a
    # remount on its cache reads it all again without a request for it
    second_cache = second.cache
    assert second.unmount() == []
    redis.kill()
    again = mount_factory(server, cache_dir=second_cache, allow=[UNAVAILABLE],
                          options=shared(redis))
    mark = server.log.mark()
    reads.check(again.ws)
    assert by_hash(server.log.since(mark)) == []


def test_another_projects_token_reads_nothing_of_plat(redis, mount_factory, fresh_demo,
                                                      fakebb_factory, tmp_path):
    data = fresh_demo.data()
    data["tokens"]["ops-token"] = {"workspaces": ["acme"], "projects": ["OPS"],
                                   "workspace_read": False}
    fresh_demo.save(data)
    server = fakebb_factory(fresh_demo)
    reads = Reads(fresh_demo, server, tmp_path)
    plat = mount_factory(server, token="pat-token", options=shared(redis))
    reads.check(plat.ws)
    assert redis.hash_keys(), "the PLAT mount should have filled Redis"

    ops = mount_factory(server, target="acme", token="ops-token", options=shared(redis))
    assert sorted(ls(ops.ws)) == server.repo_slugs(token="ops-token") == ["infra", "secrets-ops"]
    api = ops.ws / "api"
    for path in (api, api / "commits" / reads.head / "commit.json",
                 api / "commits" / reads.head / "tree" / "README.md",
                 api / "commits" / reads.head / "diff"):
        assert errno_of("stat", str(path)) == "ENOENT", path
    assert int(stats(ops)["shared_hits"]) == 0
    # and nothing of PLAT reached its store: a line of api's README is not there
    readme = (reads.tree / "README.md").read_bytes().splitlines()[0]
    found = run(["grep", "-rlF", readme.decode(), str(ops.cache)])
    assert found.returncode == 1, f"PLAT data in the OPS mount's cache: {found.stdout}"


def test_no_key_or_value_holds_the_token(redis, mount_factory, server, demo, tmp_path):
    token = "demo-token"
    reads = Reads(demo, server, tmp_path)
    m = mount_factory(server, token=token, options=shared(redis))
    reads.check(m.ws)
    ls(m.ws / "api" / "tags")
    assert m.unmount() == []   # every queued write is done
    keys = redis.keys()
    assert len(keys) > 10
    for k in keys:
        assert token.encode() not in k
        value = redis.command("GET", k)
        assert value is not None and token.encode() not in value, k


def test_a_value_changed_by_hand_is_detected_and_replaced(redis, mount_factory, server, demo,
                                                          tmp_path):
    reads = Reads(demo, server, tmp_path)
    first = mount_factory(server, options=shared(redis))
    reads.check(first.ws)
    assert first.unmount() == []
    keys = redis.hash_keys()
    assert keys
    for k in keys:   # the last byte of each: the body's, or the check's for an empty one
        value = redis.command("GET", k)
        redis.command("SETRANGE", k, len(value) - 1, bytes([value[-1] ^ 0x20]))

    second = mount_factory(server, options=shared(redis), allow=[DAMAGED])
    reads.check(second.ws)
    st = stats(second)
    assert int(st["shared_damaged"]) > 0, st
    assert [ln for ln in second.stderr().splitlines() if re.search(DAMAGED, ln)], \
        second.stderr()
    assert second.unmount() == []

    third = mount_factory(server, options=shared(redis))
    mark = server.log.mark()
    reads.check(third.ws)
    assert by_hash(server.log.since(mark)) == [], "the damaged values should be replaced"
    assert int(stats(third)["shared_damaged"]) == 0


# --------------------------------------------------------------------------
# Faults cost only speed


# Reads every file below a directory, each in its own timed open/read, and prints
# "MAX_SECONDS" on the last line; a read that fails exits 1 with its path.
READ_ALL = r"""
import os, sys, time
root, longest = sys.argv[1], 0.0
for d, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(files):
        p = os.path.join(d, name)
        if os.path.islink(p):
            continue
        t0 = time.monotonic()
        with open(p, "rb") as f:
            f.read()
        longest = max(longest, time.monotonic() - t0)
print(longest)
"""


def test_redis_killed_in_the_middle_of_a_walk(redis, mount_factory, files_server, files_demo,
                                              tmp_path):
    git_dir = files_demo.git_dir("files")
    v1 = files_demo.git("files", "rev-parse", "v1^{commit}").strip()
    want = archive(git_dir, v1, tmp_path / "want")
    m = mount_factory(files_server, target="acme", allow=[UNAVAILABLE],
                      options=shared(redis, f"timeout={TIMEOUT}"))
    tree = m.ws / "files" / "commits" / v1 / "tree"
    files_server.knobs(latency_ms=20)   # a walk long enough to kill Redis in it
    mark = files_server.log.mark()
    walk = subprocess.Popen([PYTHON, "-c", READ_ALL, str(tree)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=user_env())
    try:
        end = time.monotonic() + WALK_GUARD
        while len(files_server.log.since(mark, settle=False)) < 30:
            assert walk.poll() is None, f"the walk ended before Redis was killed: {walk.stderr}"
            assert time.monotonic() < end, "the walk never got going"   # hang guard
            time.sleep(0.05)
        redis.kill()
        stdout, stderr = walk.communicate(timeout=WALK_GUARD)   # hang guard
    finally:
        if walk.poll() is None:
            walk.kill()
            walk.wait(10)
        files_server.knobs(latency_ms=0)
    assert walk.returncode == 0, stderr
    assert float(stdout.split()[-1]) < TIMEOUT, "a read took longer than the timeout"
    assert_same_tree(tree, want)
    st = stats(m)
    assert st["shared_cache"] == "down" and int(st["shared_errors"]) >= 1, st
    lines = [ln for ln in m.stderr().splitlines() if re.search(UNAVAILABLE, ln)]
    assert len(lines) == 1, m.stderr()


def test_wrong_password_is_one_line_and_the_mount_works(redis_factory, mount_factory, server, demo,
                                                        tmp_path):
    password = "Fleet pass 42"
    r = redis_factory(password=password)
    right = write_token_file(tmp_path / "redis-right", password)
    wrong = write_token_file(tmp_path / "redis-wrong", "not the password")
    m = mount_factory(server, allow=[UNAVAILABLE + r"authentication failed: WRONGPASS"],
                      options=shared(r, f"shared_cache_auth={wrong}"))
    head = demo.git("api", "rev-parse", "HEAD").strip()
    want = demo.git("api", "show", "HEAD:README.md").encode()
    assert cat(m.ws / "api" / "commits" / head / "tree" / "README.md") == want
    lines = [ln for ln in m.stderr().splitlines() if ln.strip()]
    assert len(lines) == 1 and re.search(UNAVAILABLE + "authentication failed", lines[0]), lines
    assert "not the password" not in m.stderr() and password not in m.stderr()
    assert stats(m)["shared_cache"] == "down"
    assert r.keys() == []

    good = mount_factory(server, options=shared(r, f"shared_cache_auth={right}"))
    assert cat(good.ws / "api" / "commits" / head / "tree" / "README.md") == want
    assert good.unmount() == []
    assert r.hash_keys(), "with the right password the mount should write to Redis"


def test_refused_before_any_request(redis, server, tmp_path):
    """A password file others may read, or a URL that is not one of the two forms:
    one line naming it, nothing mounted, no request (the fake's log stays empty)."""
    token = write_token_file(tmp_path / "token", "demo-token")
    readable = write_token_file(tmp_path / "redis-pass", "secret", mode=0o644)
    base = [f"api_url={server.url}", f"token_file={token}", f"cache_dir={tmp_path / 'c'}"]
    cases = [
        ([f"shared_cache={redis.url}", f"shared_cache_auth={readable}"],
         r"shared_cache_auth file '.*redis-pass' is readable by group or others"),
        (["shared_cache=http://127.0.0.1:6379"], r"shared_cache 'http://127\.0\.0\.1:6379'"),
        ([f"shared_cache=redis://u:secret@127.0.0.1:{redis.port}"], r"shared_cache"),
        ([f"shared_cache=redis://127.0.0.1:{redis.port}/x"], r"bad database number"),
        ([f"shared_cache_auth={readable}"], r"shared_cache_auth= needs shared_cache="),
        (["shared_cache="], r"empty shared_cache="),
    ]
    for i, (opts, why) in enumerate(cases):
        code, err, _ = run_bbfs_expect_failure("acme/PLAT", tmp_path / f"mnt{i}",
                                               options=base + opts)
        assert code != 0
        line = one_clear_line(err)
        assert re.search(why, line), line
        assert "secret" not in line, line
    assert server.log.entries() == []
    assert redis.keys() == []


def test_unreachable_redis_at_start(mount_factory, server, demo):
    m = mount_factory(server, allow=[UNAVAILABLE + "cannot connect"],
                      options=[f"shared_cache=redis://127.0.0.1:{free_closed_port()}"])
    head = demo.git("api", "rev-parse", "HEAD").strip()
    assert cat(m.ws / "api" / "commits" / head / "tree" / "VERSION") == \
        demo.git("api", "show", "HEAD:VERSION").encode()
    lines = [ln for ln in m.stderr().splitlines() if ln.strip()]
    assert len(lines) == 1 and re.search(UNAVAILABLE + "cannot connect", lines[0]), lines


def test_offline_never_reaches_redis(mount_factory, server, demo):
    """offline touches no network, Redis included: said once, and shared_cache is off."""
    head = demo.git("api", "rev-parse", "HEAD").strip()
    readme = Path("api") / "commits" / head / "tree" / "README.md"
    online = mount_factory(server)
    ls(online.ws)   # offline, a repository is found in the stored listing
    want = cat(online.ws / readme)
    assert want == demo.git("api", "show", "HEAD:README.md").encode()
    cache = online.cache
    assert online.unmount() == []
    # a closed port: a connection attempt would be logged as "unavailable"
    m = mount_factory(server, cache_dir=cache,
                      options=["offline", f"shared_cache=redis://127.0.0.1:{free_closed_port()}"])
    assert cat(m.ws / readme) == want
    assert stats(m)["shared_cache"] == "off"
    lines = [ln for ln in m.stderr().splitlines() if ln.strip()]
    assert lines == ["bbfs: offline: the shared cache is not used"], lines


# --------------------------------------------------------------------------
# Machines that miss at the same moment fetch once


def walk_at_once(mounts, rel, want):
    """diff -r of MOUNT/REL against WANT on every mount at once."""
    procs = [subprocess.Popen(["diff", "-r", "--no-dereference", str(m.path / rel), str(want)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=user_env()) for m in mounts]
    try:
        outs = [p.communicate(timeout=WALK_GUARD)[0] for p in procs]   # hang guard
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o


def test_four_mounts_at_once_fetch_once(redis, mount_factory, files_server, files_demo, tmp_path):
    git_dir = files_demo.git_dir("files")
    v1 = files_demo.git("files", "rev-parse", "v1^{commit}").strip()
    want = archive(git_dir, v1, tmp_path / "want")
    rel = Path("acme") / "files" / "tags" / "v1" / "tree"

    mark = files_server.log.mark()
    alone = mount_factory(files_server, target="acme")   # no shared cache: the baseline
    walk_at_once([alone], rel, want)
    one = len(api_requests(files_server.log.since(mark)))
    assert one > 50, "the walk should be big enough to count"

    mark = files_server.log.mark()
    fleet = [mount_factory(files_server, target="acme", options=shared(redis))
             for _ in range(4)]
    walk_at_once(fleet, rel, want)
    four = api_requests(files_server.log.since(mark))
    assert len(four) <= 1.2 * one, f"4 mounts cost {len(four)} requests, one alone {one}"
    waits = sum(int(stats(m)["shared_waits"]) for m in fleet)
    assert waits > 0, "the mounts should have waited for one another's fetches"


def test_holder_killed_mid_fetch_others_finish(redis, mount_factory, files_server, files_demo,
                                               tmp_path):
    main = files_demo.git("files", "rev-parse", "main").strip()
    path = "data/blob.bin"
    want = subprocess.run(["git", "--git-dir", files_demo.git_dir("files"), "show",
                           f"{main}:{path}"], capture_output=True, check=True).stdout
    opts = shared(redis, f"timeout={TIMEOUT}")
    holder = mount_factory(files_server, target="acme", options=opts)
    others = [mount_factory(files_server, target="acme", options=opts) for _ in range(3)]
    rel = Path("acme") / "files" / "commits" / main / "tree" / path
    for m in [holder] + others:   # resolve the path first: only the content is left to fetch
        assert errno_of("stat", str(m.path / rel)) == "OK"
    files_server.knobs(slow_body={"path_contains": f"/src/{main}/{path}",
                                  "bytes_per_second": len(want) // 4, "count": 1})
    reader = subprocess.Popen(["cat", str(holder.path / rel)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=user_env())
    try:
        end = time.monotonic() + 30
        while not (any(path in str(a.get("path", "")) for a in active(files_server))
                   and any(k.endswith(b":lease") for k in redis.keys())):
            assert reader.poll() is None, "the read ended before the download was seen"
            assert time.monotonic() < end, "the download or its lease never showed up"
            time.sleep(0.05)
        holder.proc.send_signal(signal.SIGKILL)
        holder.proc.wait(10)
    finally:
        holder.crash(reader)
    assert not mountinfo_has(holder.path)
    assert not scan_stderr(holder.stderr(), holder.allow)
    assert any(k.endswith(b":lease") for k in redis.keys()), "the dead holder's lease is left"

    procs = [subprocess.Popen(["cat", str(m.path / rel)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=user_env()) for m in others]
    try:
        results = [p.communicate(timeout=3 * TIMEOUT) for p in procs]   # hang guard
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    for p, (data, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert data == want


def active(server):
    """The fake's requests whose body is being sent now."""
    with urllib.request.urlopen(server.base + "/_fake/active", timeout=10) as r:
        body = json.loads(r.read() or b"[]")
    return body.get("active", body.get("values", [])) if isinstance(body, dict) else body


# --------------------------------------------------------------------------
# examples/: a fleet's unit, fstab line and Redis configuration


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def fleet_paths(tmp_path, name):
    """The example's paths, mapped into TMP_PATH/NAME (the files they name made)."""
    root = tmp_path / name
    (root / "etc").mkdir(parents=True)
    return {
        "/usr/local/bin/bbfs": BBFS_BIN,
        "/etc/bbfs/token": str(write_token_file(root / "etc" / "token", "demo-token")),
        "/etc/bbfs/redis-auth": str(write_token_file(root / "etc" / "redis-auth",
                                                     "bbfs-fleet:PASSWORD")),
        "/var/cache/bbfs": str(root / "cache"),
        "/mnt/bitbucket": str(root / "mnt"),
    }


def mapped(text, paths):
    for old, new in paths.items():
        text = text.replace(old, new)
    return text


def start_example(argv, server, redis, mnt, stderr_path):
    """bbfs as the example runs it, with the fake's api_url and this Redis's socket."""
    if os.geteuid() != 0:   # allow_other needs user_allow_other in /etc/fuse.conf
        argv = [re.sub(r"\ballow_other,", "", a) for a in argv]
    Path(mnt).mkdir(parents=True, exist_ok=True)
    argv = [*argv[:-2], "-o", f"api_url={server.url},shared_cache=redis+unix://{redis.socket}",
            *argv[-2:]]
    with open(stderr_path, "wb") as f:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                env=user_env())
    try:
        wait_for_mount(proc, mnt, stderr_path)
    except BaseException:
        force_unmount(mnt, proc)
        raise
    return proc


def test_fleet_examples(redis_factory, server, demo, tmp_path):
    """examples/redis-bbfs.conf's Redis (its ACL user), bbfs-fleet.service's command on one
    machine and fleet.fstab's line on another: the second reads with no request for
    data addressed by a hash."""
    redis = redis_factory(conf=EXAMPLES / "redis-bbfs.conf", auth=("admin", "ADMIN-PASSWORD"))
    assert redis.command("CONFIG", "GET", "maxmemory-policy") == [b"maxmemory-policy",
                                                                  b"allkeys-lru"]
    reads = Reads(demo, server, tmp_path)

    unit = (EXAMPLES / "bbfs-fleet.service").read_text()
    unit_paths = fleet_paths(tmp_path, "unit")
    execs = {k: shlex.split(mapped(v, unit_paths))
             for k, v in re.findall(r"^(Exec\w+)=(.*)$", unit, re.M)}
    assert "-f" in execs["ExecStart"] and "shared_cache_auth=" in execs["ExecStart"][3]
    assert run(execs["ExecStartPre"]).returncode == 0
    mnt = Path(execs["ExecStart"][-1])
    first = start_example(execs["ExecStart"], server, redis, mnt, tmp_path / "unit.stderr")
    try:
        reads.check(mnt / "acme")
        assert run(execs["ExecStop"]).returncode == 0
        assert first.wait(15) == 0
    finally:
        force_unmount(mnt, first)
    assert not scan_stderr((tmp_path / "unit.stderr").read_text(errors="replace"))
    assert redis.hash_keys(), "the unit's mount should have filled Redis"

    line = [ln for ln in (EXAMPLES / "fleet.fstab").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    assert len(line) == 1
    source, where, fstype, options, *_ = mapped(line[0], fleet_paths(tmp_path, "fstab")).split()
    assert fstype == "fuse.bbfs" and "_netdev" in options
    mark = server.log.mark()
    second = start_example([BBFS_BIN, "-f", "-o", options, source, where], server, redis,
                           where, tmp_path / "fstab.stderr")
    try:
        reads.check(Path(where) / "acme")
        got = server.log.since(mark)
        assert by_hash(got) == [], describe(by_hash(got))
        subprocess.run(["fusermount3", "-u", where], capture_output=True, timeout=10)
        assert second.wait(15) == 0
    finally:
        force_unmount(where, second)
    assert not scan_stderr((tmp_path / "fstab.stderr").read_text(errors="replace"))

"""
Integration harness for bbfs: really mounts the daemon against the fake
Bitbucket server (tests/fakebb) and looks at the tree the way a user would.

Rules every test follows (STYLE.md point 7):
- the test process never touches the mount itself; every filesystem access
  is a subprocess with a timeout (`run`, `errno_of`), so a hung daemon fails
  a test instead of hanging the suite;
- bbfs runs with -f, the mount is awaited with a deadline that fails early
  (with bbfs's stderr) if the daemon dies;
- teardown always unmounts with `fusermount3 -u` and requires exit status 0,
  and on any failure falls back to `fusermount3 -u -z`, SIGTERM, SIGKILL;
- the daemon's stderr is scanned for error|warning|abort against a per-test
  allow-list; sanitizer reports always fail.

Expected values come from git (the demo repositories) or from the fake
server's own answer for the same URL, never from hard-coded hashes.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKEBB = REPO_ROOT / "tests" / "fakebb"
PYTHON = "/usr/bin/python3"
BBFS_BIN = os.environ.get("BBFS_BIN") or str(REPO_ROOT / "build" / "bbfs")

TEST_TIMEOUT = 120          # per-test backstop (pytest-timeout)
CMD_TIMEOUT = 20            # any single filesystem command
MOUNT_DEADLINE = 20         # bbfs -f until the mount shows up
EXIT_DEADLINE = 15          # fusermount3 -u until bbfs exits
SERVER_DEADLINE = 15        # fake server until it prints its address

# Lines of bbfs's stderr that fail a test unless allow-listed ...
SUSPICIOUS = re.compile(r"error|warning|abort", re.IGNORECASE)
# ... and lines that fail it always.
SANITIZER = re.compile(
    r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|ThreadSanitizer"
    r"|runtime error|Segmentation fault|SUMMARY: ",
)

sys.path.insert(0, str(FAKEBB))


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test timeout (pytest-timeout)")
    config.addinivalue_line("markers", "serial: measures memory or load; `make integration` runs "
                            "it alone, after the others (which run in parallel)")


def pytest_collection_modifyitems(config, items):
    """A backstop timeout on every test that does not set its own."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


# --------------------------------------------------------------------------
# Running commands as a user would


def user_env(**extra):
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/root"),
    }
    env.update(extra)
    return env


def run(args, timeout=CMD_TIMEOUT, check=False, input=None, env=None, binary=False):
    """Runs a command (list, or a string for sh -c) with a timeout."""
    if isinstance(args, str):
        args = ["/bin/sh", "-c", args]
    try:
        r = subprocess.run(
            [str(a) for a in args],
            stdin=subprocess.DEVNULL if input is None else None,
            input=input,
            capture_output=True,
            timeout=timeout,
            env=env or user_env(),
            text=not binary,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"command timed out after {timeout}s: {args}\n{e.stderr!r}")
    if check and r.returncode != 0:
        pytest.fail(f"command failed ({r.returncode}): {args}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def out(args, timeout=CMD_TIMEOUT):
    """stdout of a command that must succeed."""
    return run(args, timeout=timeout, check=True).stdout


def lines(args, timeout=CMD_TIMEOUT):
    return [ln for ln in out(args, timeout=timeout).split("\n") if ln != ""]


def ls(path, timeout=CMD_TIMEOUT):
    """Names in a directory as `ls -1` prints them (one per line)."""
    return lines(["ls", "-1", path], timeout=timeout)


def cat(path, timeout=CMD_TIMEOUT):
    return run(["cat", path], timeout=timeout, check=True, binary=True).stdout


# A tiny program run in a subprocess that performs one os call and prints
# "OK <result>" or the errno name. Used for errno checks (never message text).
ERRNO_PROG = r"""
import errno, json, os, sys
op, args = sys.argv[1], sys.argv[2:]
def wr(p):
    fd = os.open(p, os.O_WRONLY)
    os.close(fd)
def create(p):
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.close(fd)
def read(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        data = b""
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            data += b
    finally:
        os.close(fd)
    return len(data)
ops = {
    "stat": lambda p: oct(os.stat(p).st_mode),
    "lstat": lambda p: oct(os.lstat(p).st_mode),
    "listdir": lambda p: json.dumps(sorted(os.listdir(p))),
    "read": read,
    "readlink": os.readlink,
    "open_write": wr,
    "open_rdwr": lambda p: os.close(os.open(p, os.O_RDWR)),
    "open_trunc": lambda p: os.close(os.open(p, os.O_WRONLY | os.O_TRUNC)),
    "create": create,
    "mkdir": lambda p: os.mkdir(p, 0o755),
    "rmdir": os.rmdir,
    "unlink": os.unlink,
    "rename": os.rename,
    "link": os.link,
    "symlink": os.symlink,
    "chmod": lambda p: os.chmod(p, 0o777),
    "lchown": lambda p: os.lchown(p, 1, 1),
    "truncate": lambda p: os.truncate(p, 0),
    "utime": lambda p: os.utime(p, (0, 0)),
    "setxattr": lambda p: os.setxattr(p, "user.bbfs", b"x"),
    "removexattr": lambda p: os.removexattr(p, "user.bbfs"),
    "mknod": lambda p: os.mkfifo(p),
}
try:
    r = ops[op](*args)
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
else:
    print("OK", r if r is not None else "")
"""


def errno_of(op, *paths, timeout=CMD_TIMEOUT):
    """'OK' or the errno name (e.g. 'ENOENT') of one os call in a subprocess."""
    r = run([PYTHON, "-c", ERRNO_PROG, op, *paths], timeout=timeout)
    if r.returncode != 0:
        pytest.fail(f"errno helper crashed: {r.stderr}")
    word = r.stdout.strip().split(" ", 1)[0]
    return word


def timed_errno(op, *paths, timeout=CMD_TIMEOUT):
    """(errno name, seconds taken)."""
    t0 = time.monotonic()
    e = errno_of(op, *paths, timeout=timeout)
    return e, time.monotonic() - t0


def stat_fmt(path, fmt, follow=False):
    args = ["stat"] + (["-L"] if follow else []) + ["-c", fmt, path]
    return out(args).rstrip("\n")


def git(git_dir, *args):
    r = subprocess.run(
        ["git", "--git-dir", str(git_dir), *args],
        capture_output=True, timeout=60, env=user_env(
            GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="test@example.com",
            GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="test@example.com"),
    )
    if r.returncode != 0:
        raise RuntimeError(f"git {args} failed: {r.stderr.decode(errors='replace')}")
    return r.stdout.decode()


def git_message(git_dir, sha):
    """A commit's full message exactly as stored by git."""
    raw = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "commit", sha],
                         capture_output=True, timeout=30, check=True).stdout
    return raw.split(b"\n\n", 1)[1] if b"\n\n" in raw else b""


def iso_to_epoch(s):
    from datetime import datetime
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp())


def mountinfo_has(path):
    """Whether path is a mount point, from /proc/self/mountinfo (never stats it)."""
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split(" ")
                if len(fields) > 4:
                    mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
                    if mp == path:
                        return True
    except OSError:
        pass
    return False


def free_closed_port():
    """A loopback port nobody listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------
# Demo data


class Demo:
    """A demo data set: data.json plus the git repositories behind it."""

    def __init__(self, data_path):
        self.data_path = Path(data_path)

    def data(self):
        return json.loads(self.data_path.read_text())

    def save(self, data):
        # Write-then-rename so the server never reads a torn file.
        tmp = self.data_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.data_path)
        # Make sure an mtime-based reload notices even within one second.
        st = os.stat(self.data_path)
        os.utime(self.data_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    def repos(self, workspace="acme"):
        return self.data()["workspaces"][workspace]["repositories"]

    def git_dir(self, slug, workspace="acme"):
        return self.repos(workspace)[slug]["git_dir"]

    def git(self, slug, *args):
        return git(self.git_dir(slug), *args)

    def branches(self, slug):
        """{name: hash} from git itself."""
        res = {}
        for ln in self.git(slug, "for-each-ref", "--format=%(objectname) %(refname)",
                           "refs/heads").splitlines():
            h, ref = ln.split(" ", 1)
            res[ref[len("refs/heads/"):]] = h
        return res

    def tags(self, slug):
        """{name: commit hash} from git (annotated tags peeled)."""
        res = {}
        for ln in self.git(slug, "for-each-ref", "--format=%(refname)", "refs/tags").splitlines():
            name = ln[len("refs/tags/"):]
            res[name] = self.git(slug, "rev-parse", f"{ln}^{{commit}}").strip()
        return res

    def pullrequests(self, slug):
        """The pull requests of slug as the fake server serves them (fixture.pullrequests)."""
        import fixture
        return fixture.pullrequests(self.data_path, slug)

    def head_branch(self, slug):
        return self.git(slug, "symbolic-ref", "--short", "HEAD").strip()

    def rev_list(self, slug, *args):
        return self.git(slug, "rev-list", *args).split()

    def parents(self, slug, sha):
        return self.git(slug, "rev-list", "--parents", "-n", "1", sha).split()[1:]


@pytest.fixture(scope="session")
def demo_session(tmp_path_factory):
    """The demo data, built once; tests must not modify it (use fresh_demo)."""
    import fixture as fakebb_fixture
    root = tmp_path_factory.mktemp("demo")
    return Demo(fakebb_fixture.build_demo(str(root)))


@pytest.fixture
def demo(demo_session):
    return demo_session


@pytest.fixture
def fresh_demo(tmp_path):
    """A private copy of the demo data that a test may change."""
    import fixture as fakebb_fixture
    root = tmp_path / "demo"
    root.mkdir()
    return Demo(fakebb_fixture.build_demo(str(root)))


# --------------------------------------------------------------------------
# The fake server


class RequestLog:
    """The fake server's request log (one JSON object per line)."""

    def __init__(self, path):
        self.path = Path(path)

    def entries(self):
        if not self.path.exists():
            return []
        res = []
        with open(self.path, encoding="utf-8") as f:
            for ln in f:
                if ln.endswith("\n"):
                    res.append(json.loads(ln))
        return res

    def settle(self, quiet=0.3, deadline=5.0):
        """Waits until no new line has been logged for `quiet` seconds."""
        end = time.monotonic() + deadline
        last = -1
        last_change = time.monotonic()
        while time.monotonic() < end:
            n = self.path.stat().st_size if self.path.exists() else 0
            if n != last:
                last, last_change = n, time.monotonic()
            elif time.monotonic() - last_change >= quiet:
                return
            time.sleep(0.05)

    def mark(self):
        self.settle()
        return len(self.entries())

    def since(self, mark, settle=True):
        if settle:
            self.settle()
        return self.entries()[mark:]


def is_repo_list(entry, workspace="acme"):
    """A page of the repository listing of a workspace."""
    return entry["method"] == "GET" and entry["path"].rstrip("/").endswith(f"/repositories/{workspace}")


def describe(entries):
    return "\n".join(f"  {e.get('method')} {e.get('path')}?{e.get('query', '')} -> {e.get('status')}"
                     for e in entries)


class FakeServer:
    def __init__(self, demo, workdir, extra_args=()):
        self.demo = demo
        self.extra_args = [str(a) for a in extra_args]   # e.g. --tls-cert F --tls-key F
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port_file = self.workdir / "port"
        self.log = RequestLog(self.workdir / "requests.jsonl")
        self.out_path = self.workdir / "server.out"
        self.proc = None
        self.url = None

    def start(self):
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            [PYTHON, str(FAKEBB / "server.py"), "--data", str(self.demo.data_path),
             "--port", "0", "--port-file", str(self.port_file), "--log", str(self.log.path),
             *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            env=user_env(PYTHONUNBUFFERED="1"), start_new_session=True,
        )
        end = time.monotonic() + SERVER_DEADLINE
        while time.monotonic() < end:
            text = self.out_path.read_text(errors="replace")
            m = re.search(r"listening on (https?://\S+)", text)
            if m:
                self.url = m.group(1).rstrip("/")
                self.base = re.match(r"(https?://[^/]+)", self.url).group(1)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake server exited ({self.proc.returncode}):\n{text}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"fake server did not start within {SERVER_DEADLINE}s:\n"
                           + self.out_path.read_text(errors="replace"))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_out", None):
            self._out.close()

    def knobs(self, **knobs):
        """POST /_fake/knobs with the given JSON object."""
        req = urllib.request.Request(
            self.base + "/_fake/knobs", data=json.dumps(knobs).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body.strip() else None

    def get(self, path, token="demo-token", params=None):
        """GET url (absolute, or relative to the API base) -> (status, parsed JSON or text)."""
        url = path if path.startswith("http") else self.url + "/" + path.lstrip("/")
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def get_bytes(self, path, token="demo-token"):
        """GET url (absolute, or relative to the API base) -> (status, raw body bytes).

        For raw endpoints (file contents, diffs); the request is logged like any other."""
        url = path if path.startswith("http") else self.url + "/" + path.lstrip("/")
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path, token="demo-token", params=None):
        status, body = self.get(path, token, params)
        assert status == 200, f"fake server: GET {path} -> {status}: {body}"
        return body

    def get_all(self, path, token="demo-token", params=None):
        """All values of a paginated collection."""
        page = self.get_json(path, token, params)
        values = list(page["values"])
        while page.get("next"):
            page = self.get_json(page["next"], token)
            values += page["values"]
        return values

    def repo_slugs(self, workspace="acme", project=None, token="demo-token"):
        params = {"q": f'project.key="{project}"'} if project else None
        return sorted(r["slug"] for r in self.get_all(f"repositories/{workspace}", token, params))


@pytest.fixture
def fakebb_factory(tmp_path):
    servers = []

    def start(demo, name="server", extra_args=()):
        s = FakeServer(demo, tmp_path / f"{name}{len(servers)}", extra_args)
        servers.append(s)
        return s.start()

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(params=[False, True], ids=["304", "no-304"])
def no_304(request):
    """Both ways a revalidation may be answered, for the tests of revalidation to run
    in each: a matching If-None-Match gets 304 (False), or never does and the whole 200
    comes again (True, the fake's `no_304` knob: the real API's 304s are unreliable,
    bitbucket-api.md §6). Set it on the server: `server.knobs(no_304=no_304)`. The
    request log's `if_none_match` tells a revalidation from a first fetch either way."""
    return request.param


@pytest.fixture
def server(fakebb_factory, demo):
    """A fake server on the shared (read-only) demo data."""
    return fakebb_factory(demo)


@pytest.fixture
def fresh_server(fakebb_factory, fresh_demo):
    """A fake server on a private copy of the demo data the test may change."""
    return fakebb_factory(fresh_demo)


# --------------------------------------------------------------------------
# Mounting bbfs


def bbfs_binary():
    if not os.access(BBFS_BIN, os.X_OK):
        pytest.fail(f"bbfs binary not found at {BBFS_BIN} (build it with `make build/bbfs`, "
                    "or set BBFS_BIN)")
    return BBFS_BIN


def write_token_file(path, token, mode=0o600):
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, mode)
    return path


def force_unmount(mnt, proc=None):
    """Last-resort cleanup: lazy unmount, then SIGTERM, then SIGKILL."""
    if mountinfo_has(mnt):
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True, timeout=10)
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def scan_stderr(text, allow=()):
    """Lines of bbfs's stderr that should fail a test."""
    bad = []
    for ln in text.splitlines():
        if SANITIZER.search(ln):
            bad.append(ln)
        elif SUSPICIOUS.search(ln) and not any(re.search(a, ln, re.IGNORECASE) for a in allow):
            bad.append(ln)
    return bad


class Mount:
    """One foreground bbfs process and its mount point."""

    def __init__(self, path, proc, stderr_path, allow, server):
        self.path = Path(path)
        self.proc = proc
        self.stderr_path = Path(stderr_path)
        self.allow = list(allow)
        self.server = server
        self.cache = None       # its cache_dir (set by mount_factory)
        self.closed = False
        self.exit_code = None

    def __truediv__(self, other):
        return self.path / other

    @property
    def ws(self):
        return self.path / "acme"

    def stderr(self):
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stderr_mark(self):
        return len(self.stderr())

    def stderr_since(self, mark):
        """Non-empty lines bbfs wrote to stderr after stderr_mark() returned mark."""
        return [ln for ln in self.stderr()[mark:].splitlines() if ln.strip()]

    def alive(self):
        return self.proc.poll() is None and mountinfo_has(self.path)

    def crash(self, *readers):
        """SIGKILLs bbfs if it still runs (a crash), cleans its dead mount up, and ends the
        readers it stranded. The harness's unmount then reports nothing: check stderr here."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.closed = True
        force_unmount(self.path, self.proc)
        for r in readers:
            try:
                r.wait(15)
            except subprocess.TimeoutExpired:
                r.kill()
                r.wait(10)

    def unmount(self):
        """fusermount3 -u, then the daemon must exit 0 within a deadline. Returns problems."""
        problems = []
        if self.closed:
            return problems
        self.closed = True
        try:
            if self.proc.poll() is not None:
                problems.append(f"bbfs died during the test (exit {self.proc.returncode})")
            else:
                ok = False
                last = ""
                end = time.monotonic() + EXIT_DEADLINE
                while time.monotonic() < end:
                    r = subprocess.run(["fusermount3", "-u", str(self.path)],
                                       capture_output=True, text=True, timeout=10)
                    if r.returncode == 0 or not mountinfo_has(self.path):
                        ok = True
                        break
                    last = r.stderr.strip()
                    time.sleep(0.2)  # e.g. "busy" while a killed command lets go
                if not ok:
                    problems.append(f"fusermount3 -u failed: {last}")
                try:
                    self.exit_code = self.proc.wait(max(1.0, end - time.monotonic()))
                    if self.exit_code != 0:
                        problems.append(f"bbfs exited {self.exit_code} after fusermount3 -u")
                except subprocess.TimeoutExpired:
                    problems.append(f"bbfs did not exit within {EXIT_DEADLINE}s of fusermount3 -u")
        finally:
            force_unmount(self.path, self.proc)
            if mountinfo_has(self.path):
                problems.append("still mounted after cleanup")
        bad = scan_stderr(self.stderr(), self.allow)
        if bad:
            problems.append("unexpected lines on bbfs's stderr:\n  " + "\n  ".join(bad))
        return problems


def wait_for_mount(proc, mnt, stderr_path, deadline=MOUNT_DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if mountinfo_has(mnt):
            return
        if proc.poll() is not None:
            pytest.fail(f"bbfs exited {proc.returncode} before mounting:\n"
                        + Path(stderr_path).read_text(errors="replace"))
        time.sleep(0.05)
    force_unmount(mnt, proc)
    pytest.fail(f"bbfs did not mount within {deadline}s:\n"
                + Path(stderr_path).read_text(errors="replace"))


@pytest.fixture
def mount_factory(tmp_path, fakebb_factory):
    """mount(server, target="acme/PLAT", token="demo-token", options=(), ...) -> Mount.

    Writes a 0600 token file, starts `bbfs -f -o api_url=...,token_file=...,
    cache_dir=... TARGET MNT`, waits for the mount. Teardown unmounts and checks.
    Each mount gets its own cache directory (`m.cache`); pass cache_dir= to
    reuse an earlier mount's (a remount).
    Depends on fakebb_factory so that every fake server outlives the mounts.
    """
    mounts = []

    def mount(server, target="acme/PLAT", token="demo-token", options=(), allow=(),
              token_via="file", extra_env=None, args=(), wait=True, cache_dir=None):
        n = len(mounts)
        mnt = tmp_path / f"mnt{n}"
        mnt.mkdir()
        # a private cache per mount, unless the test reuses one (remount)
        cache = Path(cache_dir) if cache_dir is not None else tmp_path / f"cache{n}"
        opts = [f"api_url={server.url}", f"cache_dir={cache}"]
        env = user_env(XDG_CACHE_HOME=str(tmp_path / f"xdg{n}"))
        if token_via == "file":
            tf = write_token_file(tmp_path / f"token{n}", token)
            opts.append(f"token_file={tf}")
        elif token_via == "env":
            env["BITBUCKET_TOKEN"] = token
        opts += list(options)
        env.update(extra_env or {})
        stderr_path = tmp_path / f"bbfs{n}.stderr"
        errf = open(stderr_path, "wb")
        proc = subprocess.Popen(
            [bbfs_binary(), "-f", *args, "-o", ",".join(opts), target, str(mnt)],
            stdin=subprocess.DEVNULL, stdout=errf, stderr=errf, env=env,
        )
        errf.close()
        m = Mount(mnt, proc, stderr_path, allow, server)
        m.cache = cache
        mounts.append(m)
        if wait:
            wait_for_mount(proc, mnt, stderr_path)
        return m

    yield mount
    problems = []
    for m in mounts:
        for p in m.unmount():
            problems.append(f"{m.path}: {p}\n--- bbfs stderr ---\n{m.stderr()}")
    if problems:
        pytest.fail("mount teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def mount(mount_factory, server):
    """bbfs on acme/PLAT with demo-token against a fresh fake server."""
    return mount_factory(server)


def run_bbfs_expect_failure(target, mnt, options=(), env=None, timeout=30, args=()):
    """Runs bbfs -f that is expected to exit at once without mounting.

    Returns (exit code, stderr, seconds). Cleans up if it mounted anyway.
    """
    Path(mnt).mkdir(parents=True, exist_ok=True)
    cmd = [bbfs_binary(), "-f", *args]
    if options:
        cmd += ["-o", ",".join(options)]
    cmd += [target, str(mnt)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env or user_env())
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        force_unmount(mnt, proc)
        proc.communicate()
        pytest.fail(f"bbfs {target} did not exit within {timeout}s "
                    f"(mounted: {mountinfo_has(mnt)})")
    elapsed = time.monotonic() - t0
    mounted = mountinfo_has(mnt)
    if mounted:
        force_unmount(mnt, proc)
    assert not mounted, "bbfs mounted although it should have refused"
    return proc.returncode, err.decode(errors="replace"), elapsed


def one_clear_line(stderr):
    """bbfs's stderr on a refused start: exactly one non-empty line."""
    assert not SANITIZER.search(stderr), stderr
    ls_ = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(ls_) == 1, f"expected one line on stderr, got:\n{stderr}"
    return ls_[0]


# The `files` repository of every kind of tree entry, built once per session
# (it holds a 60 MiB file) for every test module that needs it.
@pytest.fixture(scope="session")
def files_demo(tmp_path_factory):
    import fixture as fakebb_fixture
    root = tmp_path_factory.mktemp("tree")
    demo = Demo(fakebb_fixture.build_tree_fixture(str(root)))
    assert "files" in demo.repos(), "the tree fixture should hold the 'files' repository"
    return demo


@pytest.fixture
def files_server(fakebb_factory, files_demo):
    return fakebb_factory(files_demo)

#!/usr/bin/python3
"""bbfs benchmark (issue 5): what `make bench` runs.

    run.py [--latency-ms 50] [--runs 5] [--quick] [--only OP[,OP...]] [--bbfs PATH]
           [--results FILE] [--no-diy] [--no-tmpfs] [--keep]

Starts the fake Bitbucket server (tests/fakebb/server.py) on the generated data set
(bench/dataset.py, cached under build/bench-data) with LATENCY ms added to every request,
mounts bbfs on it and times each operation, cold (a fresh cache_dir and a fresh mount per
run) and warm (the same mount, right after the cold pass). It prints one table:

  requests   API requests the fake server logged during the operation (median of runs)
  wall       wall time, median of the runs
  bound      the lower bound: dependent round trips x latency + bytes / loopback bandwidth
             (round trips per operation: see BOUNDS below and bench/RESULTS.md)
  ratio      wall / bound (cold rows); wall / tmpfs wall (warm rows)
  DIY rows   the same work done by hand in the same run: `curl` paging through the API (one
             process per page, and the best a script does: pages 2..n in one kept-alive
             process), `git ls-remote`, `git clone` and `git clone --depth 1` over the fake
             server's git smart HTTP (/git/..., HTTP Basic x-token-auth from a 0600 file)
  tmpfs      the warm tree copied (cp -a) to /dev/shm and the same command run there
  RSS        bbfs's VmHWM (from /proc/PID/status) after the warm pass, largest of the runs

The fleet rows (issue 17, a table of their own, one run): FLEET mounts with separate
cache_dirs and one Redis (a redis-server on a free port, started and stopped here) doing the
same cold walk one after another, then at once, against one mount alone: total requests, and
the second machine's wall time against the first's.

Every subprocess has a timeout; a failing command is shown in the table as an error.
The mount is always unmounted (fusermount3 -u, then -u -z, then kill) and the server is
always stopped, also on Ctrl-C. Python 3 standard library only.
"""

import argparse
import base64
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import dataset  # noqa: E402

PYTHON = "/usr/bin/python3"
CMD_TIMEOUT = 300          # any one timed command
MOUNT_DEADLINE = 60
WS, PROJECT, TOKEN = dataset.WORKSPACE, dataset.PROJECT, dataset.TOKEN
BLOB_PATH = "blob/HEAD/tree/data.bin"

# Lower bounds: dependent round trips of an ideal client (fresh cache, the mount's own start-up
# check already done, pagelen 100, unlimited concurrency), per operation. Pages of a page-based
# listing after the first are fetched together (the first gives `size`).
BOUNDS = {
    "ws-ls": (2, "first page of the repository list, then the other 9 pages together"),
    "ws-grep": (2, "the same two: the list already holds every repository object"),
    "refs-ls": (2, "first pages of branches and of tags together, then their other pages together"),
    "commits-ls": (2, "GET repository (main branch name), then /commits/main?pagelen=100"),
    "tree-lsR": (4, "GET repository (main branch), then one level of the tree at a time "
                    "(root, 15 dirs together, 285 dirs together)"),
    "tree-find": (4, "as ls -lR"),
    "tree-grep": (5, "as ls -lR, then all 5,000 files together; + their bytes"),
    "file-ttfb": (3, "GET repository, root listing (size), first byte of the file"),
    "file-read": (3, "as TTFB; + 200 MiB"),
    "git-find": (3, "GET repository (main branch) and git's ref advertisement together, the "
                    "depth-1 fetch; + the pack's bytes"),
    "git-grep": (3, "as find through git: the pack holds every file"),
    "git-all-grep": (4, "the repository list (2), then every repository's ref advertisement "
                        "together, then every depth-1 fetch together; + the packs' bytes"),
}

OPS = ["mount", "ws-ls", "ws-grep", "refs-ls", "commits-ls", "tree-lsR", "tree-find",
       "tree-grep", "file", "git-find", "git-grep", "git-all-grep", "fleet"]

# The fleet rows (issue 17): this many mounts, each on a cache_dir of its own, share one Redis.
FLEET = 4

# Operations with whole trees through git (-o git_url= the fake's smart HTTP; the others use the
# API only), and the API operation whose tmpfs copy and do-it-yourself rows they share.
GIT_OPS = {"git-find": "tree-find", "git-grep": "tree-grep", "git-all-grep": None}
# A cold pass of these outlasts ttl (60 s): a second pass revalidates every repository's refs
# and object, which is no warm read.
COLD_ONLY = {"git-all-grep"}


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def env_plain(**extra):
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LC_ALL": "C", "HOME": os.environ.get("HOME", "/root")}
    env.update(extra)
    return env


class CmdError(Exception):
    pass


def run_timed(args, timeout=CMD_TIMEOUT, ok=(0,), env=None, cwd=None):
    """(seconds, stdout bytes) of a command run to completion; CmdError when it fails."""
    if isinstance(args, str):
        args = ["/bin/bash", "-c", args]
    t0 = time.monotonic()
    try:
        r = subprocess.run([str(a) for a in args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, env=env or env_plain(), cwd=cwd)
    except subprocess.TimeoutExpired:
        raise CmdError("timed out after %ds" % timeout)
    dt = time.monotonic() - t0
    if r.returncode not in ok:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        raise CmdError("exit %d: %s" % (r.returncode, err[0][:120] if err else ""))
    return dt, r.stdout


# A reader run in its own process: time to the first byte and to the last (its own clock, so
# the interpreter's start-up is not counted).
READER = r"""
import json, os, sys, time
t0 = time.monotonic()
fd = os.open(sys.argv[1], os.O_RDONLY)
first = os.read(fd, 65536)
t1 = time.monotonic()
n = len(first)
while True:
    b = os.read(fd, 1 << 20)
    if not b:
        break
    n += len(b)
os.close(fd)
print(json.dumps({"ttfb": t1 - t0, "total": time.monotonic() - t0, "bytes": n}))
"""


def private_file(path, text):
    """PATH (mode 0600) holding TEXT, a secret; returns PATH."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def read_file_timed(path, timeout=CMD_TIMEOUT):
    _, out = run_timed([PYTHON, "-c", READER, path], timeout=timeout)
    r = json.loads(out)
    r["body"] = r["total"] - r["ttfb"]     # the bytes after the first: the download's own pace
    return r


# --------------------------------------------------------------------------- the fake server

class Server:
    def __init__(self, data_json, workdir, latency_ms):
        self.workdir = pathlib.Path(workdir)
        self.log_path = self.workdir / "requests.jsonl"
        self.out_path = self.workdir / "server.out"
        self.latency_ms = latency_ms
        self.data_json = data_json
        self.proc = None
        self.offset = 0

    def start(self):
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            [PYTHON, str(REPO_ROOT / "tests" / "fakebb" / "server.py"), "--data", str(self.data_json),
             "--port", "0", "--log", str(self.log_path), "--latency-ms", str(self.latency_ms),
             "--static-heads", "--cache-git"],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            env=env_plain(PYTHONUNBUFFERED="1"), start_new_session=True)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            m = re.search(r"listening on (http://\S+)", self.out_path.read_text(errors="replace"))
            if m:
                self.url = m.group(1).rstrip("/")
                self.base = re.match(r"(http://[^/]+)", self.url).group(1)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("fake server did not start:\n" + self.out_path.read_text(errors="replace"))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_out", None):
            self._out.close()

    def knobs(self, **knobs):
        req = urllib.request.Request(self.base + "/_fake/knobs", data=json.dumps(knobs).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def settle(self, quiet=0.25, deadline=10.0):
        """Wait until the request log has not grown for QUIET seconds (background work)."""
        end = time.monotonic() + deadline
        last, since = -1, time.monotonic()
        while time.monotonic() < end:
            n = self.log_path.stat().st_size if self.log_path.exists() else 0
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.05)

    def mark(self):
        self.settle()
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        return self.offset

    def since(self, mark):
        """Request records logged after MARK (after the log settles)."""
        self.settle()
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            data = f.read()
        return [json.loads(ln) for ln in data.split(b"\n") if ln.strip()]


def summarize(records, latency_ms):
    """(requests, bytes, fake-server busy ms beyond the injected latency, by-kind counts)."""
    kinds = {}
    for r in records:
        k = request_kind(r)
        kinds[k] = kinds.get(k, 0) + 1
    busy = sum(max(0.0, (r.get("duration_ms") or 0) - latency_ms) for r in records)
    return len(records), sum(r.get("bytes") or 0 for r in records), busy, kinds


def request_kind(r):
    p = r["path"]
    if r.get("server") == "git":
        return "git"
    if r.get("server") == "lfs":
        return "lfs"
    p = re.sub(r"^/2\.0", "", p)
    for rx, name in ((r"^/repositories/[^/]+/?$", "repo-list"), (r"^/repositories/[^/]+/[^/]+/?$", "repo"),
                     (r"/refs/branches/.", "branch"), (r"/refs/tags/.", "tag"),
                     (r"/refs/branches/?$", "branches"), (r"/refs/tags/?$", "tags"), (r"/refs/?$", "refs"),
                     (r"/commits", "commits"), (r"/commit/", "commit"), (r"/src/[^/]+/?$", "src-root"),
                     (r"/src/.*/$", "src-dir"), (r"/src/", "src-file"), (r"/diff/", "diff"),
                     (r"^/workspaces/[^/]+/?$", "workspace"), (r"/projects", "project")):
        if re.search(rx, p):
            return name
    return p


# --------------------------------------------------------------------------- bbfs mounts

def mountinfo_has(path):
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


class Mount:
    def __init__(self, bbfs, server, workdir, name, token_file, options=()):
        self.bbfs, self.server = bbfs, server
        self.path = pathlib.Path(workdir) / ("mnt-" + name)
        self.cache = pathlib.Path(workdir) / ("cache-" + name)
        self.stderr_path = pathlib.Path(workdir) / ("bbfs-" + name + ".stderr")
        self.token_file = token_file
        self.options = list(options)
        self.proc = None

    def start(self):
        """Mount; returns the seconds from spawning bbfs until the mount shows up."""
        shutil.rmtree(self.cache, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        opts = ["api_url=" + self.server.url, "token_file=%s" % self.token_file,
                "cache_dir=%s" % self.cache] + self.options
        errf = open(self.stderr_path, "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([self.bbfs, "-f", "-o", ",".join(opts), "%s/%s" % (WS, PROJECT),
                                      str(self.path)], stdin=subprocess.DEVNULL, stdout=errf,
                                     stderr=errf, env=env_plain(XDG_CACHE_HOME=str(self.cache) + "-xdg"))
        errf.close()
        end = t0 + MOUNT_DEADLINE
        while time.monotonic() < end:
            if mountinfo_has(self.path):
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise CmdError("bbfs exited %d before mounting: %s" % (self.proc.returncode, self.stderr()))
            time.sleep(0.01)
        raise CmdError("bbfs did not mount within %ds: %s" % (MOUNT_DEADLINE, self.stderr()))

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace").strip()[-300:]
        except OSError:
            return ""

    def vmhwm_kib(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except (OSError, AttributeError):
            pass
        return None

    def stop(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                end = time.monotonic() + 10
                while time.monotonic() < end and mountinfo_has(self.path):
                    r = subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True, timeout=10)
                    if r.returncode == 0:
                        break
                    time.sleep(0.2)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if mountinfo_has(self.path):
                subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True, timeout=10)
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            shutil.rmtree(self.cache, ignore_errors=True)


# --------------------------------------------------------------------------- operations

def op_commands(root):
    """{op: (label, argv or shell string, accepted exit codes)} for a tree rooted at ROOT
    (the mount point, or its tmpfs copy)."""
    w = "%s/%s" % (root, WS)
    t = "%s/big/HEAD/tree" % w
    return {
        "ws-ls": ("ls -l WS", ["ls", "-l", w], (0,)),
        "ws-grep": ("grep -l '\"language\": \"c\"' WS/*/repository.json",
                    "grep -l '\"language\": \"c\"' %s/*/repository.json" % w, (0, 1)),
        "refs-ls": ("ls big/branches big/tags", ["ls", w + "/big/branches", w + "/big/tags"], (0,)),
        "commits-ls": ("ls big/commits", ["ls", w + "/big/commits"], (0,)),
        "tree-lsR": ("ls -lR (5,000 files)", ["ls", "-lR", t], (0,)),
        "tree-find": ("find (5,000 files)", ["find", t], (0,)),
        "tree-grep": ("grep -r TODO (5,000 files)", ["grep", "-r", "TODO", t], (0,)),
        "git-find": ("find (5,000 files) through git", ["find", t], (0,)),
        "git-grep": ("grep -r TODO (5,000 files) through git", ["grep", "-r", "TODO", t], (0,)),
        "git-all-grep": ("grep -r TODO WS/*/HEAD/tree (1,000 repositories) through git",
                         "grep -r TODO %s/*/HEAD/tree" % w, (0, 1)),
    }


def fleet_walk(root):
    """The cold walk each machine of the fleet does (a CI job's look at a project): the
    workspace, big's refs, and the contents of one top-level directory of its tree (d00
    and its 19 subdirectories: about 330 files)."""
    w = "%s/%s" % (root, WS)
    return ("ls -l %s >/dev/null && ls %s/big/branches %s/big/tags >/dev/null && "
            "{ grep -r TODO %s/big/HEAD/tree/d00 >/dev/null; [ $? -le 1 ]; }" % (w, w, w, w))


class FleetRedis:
    """A redis-server for the fleet rows: a free loopback port, no persistence, its own
    directory; always stopped (Bench.run_fleet's finally)."""

    def __init__(self, workdir):
        self.dir = pathlib.Path(workdir) / "redis"
        self.proc = None

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            end = time.monotonic() + 20
            while time.monotonic() < end and self.proc.poll() is None:
                try:
                    if self.command(b"PING") == b"+PONG":
                        self.url = "redis://127.0.0.1:%d" % self.port
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()
        raise CmdError("redis-server did not start")

    def command(self, *words):
        """One command, its reply's first line (enough for PING and FLUSHALL)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words))
            return s.makefile("rb").readline().rstrip(b"\r\n")

    def flush(self):
        if self.command(b"FLUSHALL") != b"+OK":
            raise CmdError("FLUSHALL failed")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def tmpfs_copy(mnt, dest, op):
    """Copy what OP reads from the (warm) mount to DEST on tmpfs with cp -a."""
    w = "%s/%s" % (mnt, WS)
    d = pathlib.Path(dest) / WS
    d.mkdir(parents=True, exist_ok=True)
    if op in ("ws-ls", "ws-grep"):
        # every repository directory with its top-level files (not their trees)
        run_timed("cd %s && cp -a --parents %s/*/repository.json %s/*/description %s/*/clone-url %s"
                  % (mnt, WS, WS, WS, dest), timeout=600)
    elif op == "refs-ls":
        (d / "big").mkdir(exist_ok=True)
        run_timed(["cp", "-a", w + "/big/branches", w + "/big/tags", str(d / "big")], timeout=600)
    elif op == "commits-ls":
        (d / "big" / "commits").mkdir(parents=True, exist_ok=True)
        # the names only: copying commits/ whole would copy 100 trees
        _, out = run_timed(["ls", w + "/big/commits"])
        for name in out.decode().split():
            (d / "big" / "commits" / name).mkdir()
    elif op.startswith("tree-"):
        (d / "big" / "HEAD").mkdir(parents=True, exist_ok=True)
        if op == "tree-grep":
            run_timed(["cp", "-a", w + "/big/HEAD/tree", str(d / "big" / "HEAD")], timeout=600)
        else:
            # ls -lR and find never read the files, so their contents are not in bbfs's cache,
            # and bbfs fetches a file when it is opened (even by cp --attributes-only): copy
            # names, modes, sizes (sparse) and times from `find -printf`, which only stats
            metadata_copy(w + "/big/HEAD/tree", d / "big" / "HEAD" / "tree")
    elif op == "file":
        p = d / "blob" / "HEAD" / "tree"
        p.mkdir(parents=True, exist_ok=True)
        run_timed(["cp", "-a", "%s/%s" % (w, BLOB_PATH), str(p)], timeout=600)


def metadata_copy(src, dest):
    """DEST: the tree at SRC with every name, mode, size (as a hole) and mtime, no contents."""
    _, out = run_timed(["find", src, "-mindepth", "1", "-printf", "%y %m %s %T@ %P\\0%l\\0"], timeout=600)
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    parts = out.split(b"\0")
    dirs = []
    for meta, target in zip(parts[0::2], parts[1::2]):
        if not meta:
            continue
        kind, mode, size, mtime, rel = meta.split(b" ", 4)
        p = dest / os.fsdecode(rel)
        mode, mtime = int(mode, 8), float(mtime)
        if kind == b"d":
            p.mkdir(exist_ok=True)
            dirs.append((p, mode, mtime))
        elif kind == b"l":
            os.symlink(os.fsdecode(target), p)
        else:
            with open(p, "wb") as f:
                f.truncate(int(size))
            os.chmod(p, mode)
            os.utime(p, (mtime, mtime))
    for p, mode, mtime in reversed(dirs):
        os.chmod(p, mode | 0o200)
        os.utime(p, (mtime, mtime))


class Bench:
    def __init__(self, args):
        self.args = args
        self.latency = args.latency_ms
        self.results = []          # rows, in table order
        self.notes = []            # (label, cold results): requests by kind
        self.rss = []

    # ---- helpers
    def measure(self, fn):
        """Run FN (which does the timed work and returns seconds or a dict) between two log
        marks: {'wall', 'requests', 'bytes', 'busy', 'kinds', ...} or {'error'}."""
        mark = self.server.mark()
        try:
            res = fn()
        except CmdError as e:
            res = {"error": str(e)}
            n, b, busy, kinds = summarize(self.server.since(mark), self.latency)
            res.update(requests=n, bytes=b, busy=busy, kinds=kinds)
            return res
        if not isinstance(res, dict):
            res = {"wall": res}
        n, b, busy, kinds = summarize(self.server.since(mark), self.latency)
        res.update(requests=n, bytes=b, busy=busy, kinds=kinds)
        return res

    def mount(self, name, options=()):
        return Mount(self.args.bbfs, self.server, self.workdir, name, self.token_file, options)

    def options(self, op):
        return ["git_url=" + self.server.base] if op in GIT_OPS else []

    # ---- setup
    def setup(self):
        self.data_json = dataset.ensure()
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="bbfs-bench-"))
        self.shm = pathlib.Path(tempfile.mkdtemp(prefix="bbfs-bench-", dir="/dev/shm"))
        self.token_file = self.workdir / "token"
        private_file(self.token_file, TOKEN + "\n")
        self.hdr_file = private_file(self.workdir / "auth-header", "Authorization: Bearer %s\n" % TOKEN)
        basic = base64.b64encode(("x-token-auth:" + TOKEN).encode()).decode()
        self.git_config = private_file(self.workdir / "gitconfig",
                                       "[http]\n\textraHeader = Authorization: Basic %s\n" % basic)
        self.server = Server(self.data_json, self.workdir, self.latency).start()
        self.measure_bandwidth()

    def measure_bandwidth(self):
        """Loopback bandwidth: the best of 3 curls of the 200 MiB file at latency 0 (the
        fake server streaming from git is the bottleneck, which is what the bound needs)."""
        self.server.knobs(latency_ms=0)
        url = self.server.url + "/repositories/%s/blob/src/main/data.bin" % WS
        best = 0.0
        try:
            for _ in range(3):
                _, out = run_timed(["curl", "-sS", "--fail", "-o", "/dev/null", "-H", "@%s" % self.hdr_file,
                                    "-w", "%{size_download} %{time_total}", url], timeout=120)
                size, total = out.decode().split()
                best = max(best, float(size) / float(total))
        finally:
            self.server.knobs(latency_ms=self.latency)
        self.bandwidth = best
        log("loopback bandwidth (curl of the 200 MiB file at latency 0): %.0f MiB/s" % (best / 2 ** 20))

    def bound(self, rtts, nbytes):
        return rtts * self.latency / 1000.0 + nbytes / self.bandwidth

    # ---- the measurements
    def run_bbfs(self, op, runs):
        """Cold and warm passes of OP, each run on a fresh mount with a fresh cache."""
        cold, warm, rss, copied = [], [], [], False
        t0 = time.monotonic()
        for i in range(runs):
            if i and time.monotonic() - t0 > self.args.op_budget:
                log("%s: %d of %d runs (over the %g s budget)" % (op, i, runs, self.args.op_budget))
                break
            m = self.mount("%s-%d" % (op, i), self.options(op))
            try:
                if op == "mount":
                    cold.append(self.measure(m.start))
                    rss.append(m.vmhwm_kib())
                    continue
                m.start()
                if op == "file":
                    path = "%s/%s/%s" % (m.path, WS, BLOB_PATH)
                    cold.append(self.measure(lambda: read_file_timed(path)))
                    warm.append(self.measure(lambda: read_file_timed(path)))
                else:
                    _label, cmd, ok = op_commands(m.path)[op]
                    limit = {"tree-grep": self.args.cold_timeout,
                             "git-all-grep": self.args.all_timeout}.get(op, CMD_TIMEOUT)
                    cold.append(self.measure(lambda: run_timed(cmd, ok=ok, timeout=limit)[0]))
                    if "error" in cold[-1]:
                        break          # a warm pass after a cut-short cold one is not warm
                    if op in COLD_ONLY:
                        rss.append(m.vmhwm_kib())
                        continue
                    warm.append(self.measure(lambda: run_timed(cmd, ok=ok, timeout=limit)[0]))
                rss.append(m.vmhwm_kib())
                if (not copied and not self.args.no_tmpfs and "error" not in warm[-1]
                        and GIT_OPS.get(op, op)):
                    try:
                        tmpfs_copy(m.path, self.shm / op, GIT_OPS.get(op, op))
                        copied = True
                    except CmdError as e:
                        log("%s: copying to tmpfs failed: %s" % (op, e))
            except CmdError as e:
                cold.append({"error": str(e)})
            finally:
                m.stop()
        return cold, warm, [r for r in rss if r], copied

    def run_tmpfs(self, op, runs):
        root = self.shm / op
        out = []
        for _ in range(runs):
            if op == "file":
                out.append(self.measure(lambda: read_file_timed("%s/%s/%s" % (root, WS, BLOB_PATH))))
            else:
                _label, cmd, ok = op_commands(root)[GIT_OPS.get(op, op)]
                out.append(self.measure(lambda: run_timed(cmd, ok=ok)[0]))
        return out

    # ---- do-it-yourself
    def curl_pages(self, url, out_file):
        """Sequential curl paging (one curl per page, following `next`) into OUT_FILE."""
        script = r'''
url="$1"; : > "$3"
while [ -n "$url" ]; do
  curl -sS --fail -H @"$2" -o "$3.page" "$url" || exit 1
  cat "$3.page" >> "$3"; echo >> "$3"
  url=$(grep -o '"next":"[^"]*"' "$3.page" | tail -1 | sed 's/^"next":"//; s/"$//')
done'''
        return run_timed(["/bin/bash", "-c", script, "paging", url, str(self.hdr_file), str(out_file)])[0]

    def curl_pages_keepalive(self, url, out_file):
        """The best a shell script does with curl: page 1, then (its `size` and `pagelen` say
        how many pages there are) every other page by its `page=N` URL in one curl process,
        one after the other on one kept-alive connection. A listing without `size` (tags)
        can only be followed by `next`, one curl per page."""
        script = r'''
url="$1"; hdr="$2"; out="$3"; : > "$out"
curl -sS --fail -H @"$hdr" -o "$out.1" "$url" || exit 1
cat "$out.1" >> "$out"; echo >> "$out"
IFS='|' read -r size pagelen next < <(jq -r '"\(.size // "")|\(.pagelen)|\(.next // "")"' "$out.1")
if [ -n "$size" ] && [ -n "$next" ]; then
  n=$(( (size + pagelen - 1) / pagelen )); args=()
  for ((p = 2; p <= n; p++)); do args+=(-o "$out.$p" "${next/page=2/page=$p}"); done
  curl -sS --fail -H @"$hdr" "${args[@]}" || exit 1
  for ((p = 2; p <= n; p++)); do cat "$out.$p" >> "$out"; echo >> "$out"; done
else
  while [ -n "$next" ]; do
    curl -sS --fail -H @"$hdr" -o "$out.p" "$next" || exit 1
    cat "$out.p" >> "$out"; echo >> "$out"
    next=$(jq -r '.next // ""' "$out.p")
  done
fi'''
        return run_timed(["/bin/bash", "-c", script, "paging", url, str(self.hdr_file), str(out_file)])[0]

    def git_env(self):
        """git over the fake's smart HTTP as Bitbucket takes it: HTTP Basic, user
        x-token-auth, sent up front from a 0600 config file (never argv, a URL or the
        environment, which `ps` shows)."""
        return env_plain(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(self.git_config),
                         GIT_TERMINAL_PROMPT="0")

    def run_diy(self, op, runs):
        """[(label, [results])] of the do-it-yourself ways of OP."""
        if op in GIT_OPS:
            # beside a tree through git: the depth-1 clone (the full one is in the API rows)
            rows = self.run_diy(GIT_OPS[op], runs) if GIT_OPS[op] else []
            return [r for r in rows if "--depth" in r[0]]
        api = self.server.url
        git_url = "%s/git/%s/big.git" % (self.server.base, WS)
        tmp = self.workdir / "diy"
        q = urllib.parse.quote('project.key="%s"' % PROJECT)
        rows = []

        def repeat(fn):
            out = []
            t0 = time.monotonic()
            for i in range(runs):
                if i and time.monotonic() - t0 > self.args.op_budget:
                    break
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                out.append(self.measure(fn))
            return out

        repos = "%s/repositories/%s?q=%s&pagelen=100" % (api, WS, q)
        refs = ["%s/repositories/%s/big/refs/%s?pagelen=100" % (api, WS, kind) for kind in ("branches", "tags")]
        paging = (("curl, a process per page", self.curl_pages),
                  ("curl keep-alive, pages 2..n in one process", self.curl_pages_keepalive))
        if op == "ws-ls":
            for label, pages in paging:
                rows.append((label, repeat(lambda: pages(repos, tmp / "pages"))))
        elif op == "ws-grep":
            for label, pages in paging:
                def f():
                    dt = pages(repos, tmp / "pages")
                    return dt + run_timed("grep -o '\"language\":\"c\"' %s | wc -l" % (tmp / "pages"))[0]
                rows.append((label + " + grep", repeat(f)))
        elif op == "refs-ls":
            for label, pages in paging:
                rows.append((label, repeat(lambda: pages(refs[0], tmp / "b") + pages(refs[1], tmp / "t"))))
            rows.append(("git ls-remote", repeat(lambda: run_timed(
                ["git", "ls-remote", git_url], env=self.git_env())[0])))
        elif op == "commits-ls":
            rows.append(("curl /commits/main?pagelen=100", repeat(lambda: run_timed(
                ["curl", "-sS", "--fail", "-o", "/dev/null", "-H", "@%s" % self.hdr_file,
                 "%s/repositories/%s/big/commits/main?pagelen=100" % (api, WS)])[0])))
        elif op.startswith("tree-"):
            local = {"tree-lsR": ["ls", "-lR"], "tree-find": ["find"], "tree-grep": ["grep", "-r", "TODO"]}[op]

            for depth in ([], ["--depth", "1"]):
                def f():
                    dt = run_timed(["git", "clone", "-q", *depth, git_url, str(tmp / "big")],
                                   env=self.git_env())[0]
                    return dt + run_timed(local + [str(tmp / "big")])[0]
                rows.append(("git clone %s+ %s" % (" ".join(depth) + " " if depth else "", " ".join(local)),
                             repeat(f)))
        elif op == "file":
            def f():
                _, out = run_timed(["curl", "-sS", "--fail", "-o", "/dev/null", "-H", "@%s" % self.hdr_file,
                                    "-w", "%{time_starttransfer} %{time_total} %{size_download}",
                                    "%s/repositories/%s/blob/src/main/data.bin" % (api, WS)])
                ttfb, total, size = out.decode().split()
                return {"ttfb": float(ttfb), "total": float(total), "body": float(total) - float(ttfb),
                        "bytes": int(size)}
            rows.append(("curl", repeat(f)))
        shutil.rmtree(tmp, ignore_errors=True)
        return rows

    # ---- the fleet (issue 17)
    def run_fleet(self):
        """FLEET mounts on one Redis doing fleet_walk one after another, then at once, each
        time on a flushed Redis and fresh cache_dirs, against one mount alone without it.
        Requests count the mounts' start-up checks; walls are the walks'."""
        redis = FleetRedis(self.workdir).start()
        shared = ["shared_cache=" + redis.url]
        mounts = []

        def walk(m):
            return run_timed(fleet_walk(m.path), timeout=self.args.cold_timeout)[0]

        def alone():
            m = self.mount("fleet-alone")
            mounts.append(m)
            m.start()
            return walk(m)

        def one_after_another():
            walls = []
            for i in range(FLEET):
                m = self.mount("fleet-seq-%d" % i, shared)
                mounts.append(m)
                m.start()
                walls.append(walk(m))
            return {"wall": walls[0], "walls": walls}

        def at_once():
            fleet = [self.mount("fleet-once-%d" % i, shared) for i in range(FLEET)]
            mounts.extend(fleet)
            for m in fleet:
                m.start()
            t0 = time.monotonic()
            procs = [subprocess.Popen(["/bin/bash", "-c", fleet_walk(m.path)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env_plain())
                     for m in fleet]
            try:
                for p in procs:
                    _, err = p.communicate(timeout=self.args.cold_timeout)
                    if p.returncode != 0:
                        raise CmdError("a walk failed: %s" % err.decode(errors="replace")[:120])
            except subprocess.TimeoutExpired:
                raise CmdError("timed out after %ds" % self.args.cold_timeout)
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait(10)
            return time.monotonic() - t0

        try:
            self.fleet = [("one mount alone (no shared cache)", self.measure(alone))]
            for label, fn in (("%d mounts one after another" % FLEET, one_after_another),
                              ("%d mounts at once" % FLEET, at_once)):
                for m in mounts:
                    m.stop()
                redis.flush()
                self.fleet.append((label, self.measure(fn)))
        finally:
            for m in mounts:
                m.stop()
            redis.stop()

    def fleet_table(self):
        lines = ["", "Fleet (issue 17): %d mounts, each on a cache_dir of its own, one Redis, doing the "
                 "same cold walk (%s); requests include each mount's start-up check, walls are the "
                 "walks':" % (FLEET, "ls -l WS; ls big/branches big/tags; grep -r TODO of "
                              "big's directory d00, about 330 files"), "",
                 "| fleet | requests | × one mount | KiB | wall |", "|---|---|---|---|---|"]
        one = self.fleet[0][1].get("requests") if self.fleet else None
        for label, r in self.fleet:
            if "error" in r:
                lines.append("| %s | %s | | | error: %s |" % (label, r.get("requests", ""), r["error"][:120]))
                continue
            times = fmt_s(r["wall"])
            if "walls" in r:
                w = r["walls"]
                times = "; ".join("machine %d: %s%s" % (i + 1, fmt_s(t), " (%.2f× machine 1)" % (t / w[0])
                                                         if i and w[0] else "") for i, t in enumerate(w))
            elif "alone" not in label:
                times += " (until the last walk ended)"
            lines.append("| %s | %d | %s | %.0f | %s |" % (label, r["requests"],
                                                         "%.2f×" % (r["requests"] / one) if one else "—",
                                                         r["bytes"] / 1024, times))
        return lines

    # ---- main loop
    def run(self):
        ops = self.args.only or OPS
        runs = self.args.runs
        for op in ops:
            t0 = time.monotonic()
            if op == "fleet":
                log("fleet: %d mounts and one Redis, one run ..." % FLEET)
                self.run_fleet()
                log("fleet: done in %.1f s" % (time.monotonic() - t0))
                continue
            log("%s: bbfs, %d run(s) ..." % (op, runs))
            cold, warm, rss, copied = self.run_bbfs(op, runs)
            self.rss += [(r, op) for r in rss]
            tmpfs = self.run_tmpfs(op, runs) if copied else []
            diy = [] if self.args.no_diy or op == "mount" else self.run_diy(op, runs)
            self.add_rows(op, cold, warm, rss, tmpfs, diy)
            log("%s: done in %.1f s" % (op, time.monotonic() - t0))

    # ---- table
    def add_rows(self, op, cold, warm, rss, tmpfs, diy):
        rss_max = max(rss) if rss else None
        if op == "mount":
            self.results.append(row("mount (bbfs start until mounted)", cold, self.bound(1, 0), rtts=1,
                                    rss=rss_max))
            self.notes.append(("mount", cold))
            return
        if op == "file":
            size = dataset.BLOB_SIZE
            for metric, key in (("TTFB", "ttfb"), ("read 200 MiB", "total"),
                                ("200 MiB after the first byte", "body")):
                b = {"ttfb": BOUNDS["file-ttfb"][0], "total": BOUNDS["file-read"][0], "body": 0}[key]
                bnd = self.bound(b, 0 if key == "ttfb" else size)
                self.results.append(row("%s cold" % metric, cold, bnd, key=key, rtts=b, rss=rss_max,
                                        size=size if key != "ttfb" else None))
                if key == "ttfb":
                    self.notes.append(("200 MiB file cold", cold))
                    self.notes.append(("200 MiB file warm", warm))
                for label, res in diy:
                    self.results.append(row("  DIY %s: %s" % (label, metric), res, bnd, key=key, rtts=b,
                                            size=size if key != "ttfb" else None))
                if key != "body":
                    self.results.append(row("%s warm" % metric, warm, None, key=key, tmpfs=tmpfs,
                                            rss=rss_max, size=size if key == "total" else None))
            return
        label = op_commands("")[op][0]
        rtts = BOUNDS[op][0]
        nbytes_fn = (lambda r: self.tree_bytes()) if op == "tree-grep" else (lambda r: r.get("bytes", 0))
        okc = [r for r in cold if "error" not in r] or ([{}] if op == "tree-grep" else [])
        bnd = self.bound(rtts, statistics.median([nbytes_fn(r) for r in okc])) if okc else None
        self.results.append(row(label + " cold", cold, bnd, rtts=rtts, rss=rss_max))
        self.notes.append((label + " cold", cold))
        self.notes.append((label + " warm", warm))
        for dlabel, res in diy:
            self.results.append(row("  DIY " + dlabel, res, bnd, rtts=rtts))
        if op not in COLD_ONLY:
            self.results.append(row(label + " warm", warm, None, tmpfs=tmpfs, rss=rss_max))

    def tree_bytes(self):
        if not hasattr(self, "_tree_bytes"):
            git_dir = pathlib.Path(self.data_json).parent / "git" / WS / "big.git"
            _, out = run_timed(["git", "--git-dir", str(git_dir), "ls-tree", "-r", "-l", "main"])
            self._tree_bytes = sum(int(ln.split()[3]) for ln in out.decode().splitlines())
        return self._tree_bytes

    def table(self):
        head = ("| operation | runs | requests | KiB | server time beyond latency | wall (median) | lower bound | ratio "
                "| tmpfs | bbfs VmHWM |")
        lines = [head, "|" + "---|" * (head.count("|") - 1)]
        for r in self.results:
            lines.append("| " + " | ".join(r) + " |")
        if self.rss:
            kib, op = max(self.rss)
            lines.append("")
            lines.append("Peak RSS of bbfs (VmHWM, over every mount): %.1f MiB (during %s)" % (kib / 1024, op))
        if getattr(self, "fleet", None):
            lines += self.fleet_table()
        if self.notes:
            lines.append("")
            lines.append("Requests by kind (first run):")
            lines.append("")
            for label, res in self.notes:
                ok = [r for r in res if "kinds" in r]
                if ok:
                    kinds = ", ".join("%s %d" % kv for kv in sorted(ok[0]["kinds"].items(), key=lambda kv: -kv[1]))
                    lines.append("- %s: %s" % (label, kinds or "none"))
        return "\n".join(lines)

    def teardown(self):
        if getattr(self, "server", None):
            self.server.stop()
        if getattr(self, "shm", None):
            shutil.rmtree(self.shm, ignore_errors=True)
        if getattr(self, "workdir", None) and not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def fmt_s(s):
    if s is None:
        return "—"
    if s < 1:
        return "%.1f ms" % (s * 1000)
    return "%.2f s" % s


def row(label, results, bound, key="wall", tmpfs=None, rtts=None, rss=None, size=None):
    """Table cells for one row: the medians of RESULTS (dicts from Bench.measure)."""
    errors = [r["error"] for r in results if "error" in r]
    ok = [r for r in results if "error" not in r]
    if not ok:
        err = errors[0] if errors else "not run"
        r0 = results[0] if results else {}
        cells = [label, "%d" % len(results), "%s" % r0.get("requests", ""),
                 "%.0f" % (r0.get("bytes", 0) / 1024), fmt_s(r0.get("busy", 0) / 1000),
                 "error: " + err.replace("|", "/")[:150]]
        cells.append("%s (%d RT)" % (fmt_s(bound), rtts) if bound is not None and rtts is not None else "")
        return cells + ["", "", "%.1f MiB" % (rss / 1024) if rss else ""]
    med = lambda k: statistics.median([r.get(k) or 0 for r in ok])
    wall = med(key)
    cells = [label, "%d" % len(ok), "%d" % med("requests"), "%.0f" % (med("bytes") / 1024), fmt_s(med("busy") / 1000), fmt_s(wall)]
    if size:
        cells[5] += " (%.0f MiB/s)" % (size / 2 ** 20 / wall) if wall else ""
    git = statistics.median([(r.get("kinds") or {}).get("git", 0) for r in ok])
    if git:
        cells[2] += " (API %d + git %d)" % (med("requests") - git, git)
    tm = [r[key] for r in (tmpfs or []) if "error" not in r]
    if bound is not None:
        cells.append("%s (%d RT)" % (fmt_s(bound), rtts) if rtts is not None else fmt_s(bound))
        cells.append("%.1f×" % (wall / bound) if bound else "—")
    else:
        cells.append("0 (cached)")
        cells.append("%.1f× tmpfs" % (wall / statistics.median(tm)) if tm and statistics.median(tm) else "—")
    cells.append(fmt_s(statistics.median(tm)) if tm else "—")
    cells.append("%.1f MiB" % (rss / 1024) if rss else "")
    if errors:
        cells[0] += " (%d of %d runs failed: %s)" % (len(errors), len(results), errors[0].replace("|", "/")[:80])
    return cells


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = "%.1f GiB" % (kib / 2 ** 20)
    except (OSError, ValueError, IndexError):
        pass
    return "nproc %d, %s, RAM %s, kernel %s" % (os.cpu_count() or 0, cpu, mem, platform.release())


def main(argv=None):
    ap = argparse.ArgumentParser(description="bbfs benchmark against the fake Bitbucket server.")
    ap.add_argument("--latency-ms", type=float, default=50, help="latency added to every request (50)")
    ap.add_argument("--runs", type=int, default=5, help="runs per measurement; medians are shown (5)")
    ap.add_argument("--quick", action="store_true", help="one run of everything (for development)")
    ap.add_argument("--only", help="comma-separated operations: " + ",".join(OPS))
    ap.add_argument("--bbfs", default=str(REPO_ROOT / "build" / "bbfs"))
    ap.add_argument("--results", default=str(REPO_ROOT / "build" / "bench-results.md"),
                    help="also write the table (with the machine) here")
    ap.add_argument("--no-diy", action="store_true", help="skip the curl / git clone comparisons")
    ap.add_argument("--no-tmpfs", action="store_true", help="skip the tmpfs comparisons")
    ap.add_argument("--op-budget", type=float, default=45,
                    help="start no further run of an operation once its runs took this many "
                         "seconds (45); the table says how many runs each median has")
    ap.add_argument("--cold-timeout", type=float, default=150,
                    help="give up on a cold grep -r over the 5,000 files after this many seconds "
                         "(150; one request per file at 50 ms is 250 s); the table then shows the "
                         "requests made until then")
    ap.add_argument("--all-timeout", type=float, default=900,
                    help="give up on grep -r over all 1,000 HEAD trees through git after this "
                         "many seconds (900; four requests a repository at 50 ms are 200 s)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, stderr)")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs = 1
    if args.only:
        args.only = [o.strip() for o in args.only.split(",") if o.strip()]
        bad = [o for o in args.only if o not in OPS]
        if bad:
            ap.error("unknown operation(s) %s; known: %s" % (", ".join(bad), ", ".join(OPS)))
    if not os.access(args.bbfs, os.X_OK):
        ap.error("no bbfs binary at %s (make all)" % args.bbfs)
    for tool in ("fusermount3", "curl", "git", "jq", "redis-server"):
        if not shutil.which(tool):
            ap.error("%s is missing (make deps)" % tool)

    # SIGTERM stops the run like Ctrl-C: the finally below unmounts and stops the server
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    bench = Bench(args)
    t0 = time.monotonic()
    interrupted = False
    try:
        bench.setup()
        bench.run()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; cleaning up")
    finally:
        bench.teardown()
    total = time.monotonic() - t0
    header = ["bbfs benchmark, %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
              "machine: " + machine(),
              "latency %g ms per request; %d run(s) per measurement (medians); loopback bandwidth %s; "
              "total %.0f s%s" % (args.latency_ms, args.runs,
                                  "%.0f MiB/s" % (bench.bandwidth / 2 ** 20) if hasattr(bench, "bandwidth") else "?",
                                  total, " (interrupted)" if interrupted else ""),
              "", ""]
    text = "\n".join(header) + bench.table() + "\n"
    print(text)
    if args.results:
        pathlib.Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.results).write_text(text)
        log("table written to %s" % args.results)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())

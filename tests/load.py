#!/usr/bin/python3
"""Load test of bbfs under faults (issue 6): `make load` (LOAD_SECONDS=120 by default).

    tests/load.py --bbfs build/bbfs [--duration 120] [--readers 16] [--workdir DIR]
                  [--seed N] [--data DATA.json]

Builds the `files` repository (tests/fakebb/fixture.py, build_tree_fixture) unless --data
names a data.json, starts the fake server (tests/fakebb/server.py) and mounts bbfs on the
workspace with a short ttl and timeout. READERS threads then run random operations for
DURATION seconds, and through a closing calm after it, over the tree at several commits
(the root, the tags, the branch tips, the merge): `find` of a directory, `stat`, `cat` (or `sha256sum` of big files),
`readlink`, `grep -r` of a directory, `cat commit.json`. Every operation is a subprocess
with a timeout (the test never touches the mount itself) and every answer is compared
with git: names, types, sizes, link targets, and every byte read.

Meanwhile a thread makes storms of faults on the fake server, each followed by a calm:
during a storm it toggles short 500/503 bursts (a few requests, on one kind of URL or
all), longer outages of a second or two, cut bodies and latency; a calm has no fault for
longer than GRACE. After DURATION the faults stop and the readers go on through a
closing calm (GRACE + CLOSING seconds).

An operation that fails with EIO while a fault is near (one was active at some point
from GRACE seconds before it began until it ended: bbfs's retries of a request made
before it may run for the whole timeout, and it may then wait before asking again) is
counted. Any other failure fails the run: EIO with no fault near, any other errno, a
wrong byte, a wrong name or size, ENOENT for what exists, an operation that does not end
within its timeout (a hang), bbfs dying, a sanitizer report on its stderr, or VmRSS
growing by more than 50% (and more than 8 MiB) between the end of the warm-up (the first
quarter of the run, closing calm included) and the end. The summary says how many operations ran with no fault
near (in the calms), so that a run which never checked that cannot pass unnoticed.

Prints a summary (operations, errors by errno, bytes compared, RSS start/warm/end/peak)
and exits 1 on any failure. Always unmounts and stops the server. Also imported by
tests/integration/test_faults.py (run_load) for a short version.
"""

import argparse
import collections
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAKEBB = HERE / "fakebb"
PYTHON = "/usr/bin/python3"
TOKEN = "demo-token"
SLUG = "files"
OP_TIMEOUT = 60          # seconds: an operation that takes longer is a hang
BIG = 1 << 20            # files bigger than this are checked by SHA-256, not held in memory
BBFS_TIMEOUT = 5         # -o timeout=
BBFS_TTL = 2             # -o ttl=: listings are revalidated during the run, under faults
GRACE = BBFS_TIMEOUT + 12  # an EIO this long after a fault still counts as "near a fault"
STORM = (10.0, 20.0)       # seconds of faults coming and going ...
CALM = (GRACE + 5.0, GRACE + 10.0)   # ... then seconds without any: after GRACE, nothing may fail
CLOSING = 5.0              # seconds of the closing calm checked after its GRACE
SANITIZER = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer"
                       r"|runtime error|Segmentation fault|SUMMARY: ")


def env():
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL": "C", "HOME": os.environ.get("HOME", "/root")}


def git(git_dir, *args, binary=False):
    r = subprocess.run(["git", "--git-dir", str(git_dir), *args], capture_output=True,
                       timeout=120, check=True, env=env())
    return r.stdout if binary else r.stdout.decode("utf-8", "surrogateescape")


def mounted(path):
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split(" ")
                if len(fields) > 4 and re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                                              fields[4]) == path:
                    return True
    except OSError:
        pass
    return False


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- what git says


class Expected:
    """The tree of SLUG at a few commits, from git: {sha: {path: (kind, obj, size)}}."""

    def __init__(self, git_dir):
        self.git_dir = git_dir
        revs = {"main": "main", "topic": "topic", "v1": "v1^{commit}", "v2": "v2^{commit}"}
        self.commits = {}
        for name, rev in revs.items():
            self.commits[name] = git(git_dir, "rev-parse", rev).strip()
        self.commits["root"] = git(git_dir, "rev-list", "--max-parents=0", "main").split()[0]
        merges = git(git_dir, "rev-list", "--merges", "main").split()
        if merges:
            self.commits["merge"] = merges[0]
        self.trees = {sha: self._tree(sha) for sha in set(self.commits.values())}
        self._blobs = {}
        self._sha256 = {}
        self.lock = threading.Lock()

    def _tree(self, sha):
        entries = {"": ("dir", None, None)}
        raw = git(self.git_dir, "ls-tree", "-r", "-t", "-l", "-z", sha, binary=True)
        for rec in raw.split(b"\0"):
            if not rec:
                continue
            meta, path = rec.split(b"\t", 1)
            mode, otype, obj, size = meta.split()
            path = path.decode("utf-8", "surrogateescape")
            mode = mode.decode()
            if otype == b"tree":
                kind = "dir"
            elif mode == "160000":
                kind = "submodule"      # bbfs shows an empty directory
            elif mode == "120000":
                kind = "link"
            else:
                kind = "file"
            entries[path] = (kind, obj.decode(), None if size == b"-" else int(size))
        return entries

    def children(self, sha, d):
        prefix = d + "/" if d else ""
        return {p[len(prefix):] for p in self.trees[sha]
                if p and p.startswith(prefix) and "/" not in p[len(prefix):]}

    def files_under(self, sha, d):
        prefix = d + "/" if d else ""
        return [p for p, e in self.trees[sha].items() if e[0] == "file" and p.startswith(prefix)]

    def blob(self, obj):
        with self.lock:
            if obj in self._blobs:
                return self._blobs[obj]
        data = git(self.git_dir, "cat-file", "blob", obj, binary=True)
        with self.lock:
            self._blobs[obj] = data
        return data

    def sha256(self, obj):
        with self.lock:
            if obj in self._sha256:
                return self._sha256[obj]
        h = hashlib.sha256()
        p = subprocess.Popen(["git", "--git-dir", str(self.git_dir), "cat-file", "blob", obj],
                             stdout=subprocess.PIPE, env=env())
        for chunk in iter(lambda: p.stdout.read(1 << 20), b""):
            h.update(chunk)
        p.wait(120)
        with self.lock:
            self._sha256[obj] = h.hexdigest()
        return self._sha256[obj]


# --------------------------------------------------------------------------- the fake server


class Server:
    def __init__(self, data_json, workdir):
        self.data_json = data_json
        self.workdir = Path(workdir)
        self.proc = None

    def start(self):
        out = self.workdir / "server.out"
        self._out = open(out, "wb")
        self.proc = subprocess.Popen(
            [PYTHON, str(FAKEBB / "server.py"), "--data", str(self.data_json), "--port", "0",
             "--log", str(self.workdir / "requests.jsonl")],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            env=dict(env(), PYTHONUNBUFFERED="1"), start_new_session=True)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            m = re.search(r"listening on (http://\S+)", out.read_text(errors="replace"))
            if m:
                self.url = m.group(1).rstrip("/")
                self.base = re.match(r"(http://[^/]+)", self.url).group(1)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("fake server did not start:\n" + out.read_text(errors="replace"))

    def knobs(self, **knobs):
        req = urllib.request.Request(self.base + "/_fake/knobs", data=json.dumps(knobs).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

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


# --------------------------------------------------------------------------- operations


class Failure(Exception):
    pass


class Hang(Failure):
    pass


def errno_name(stderr):
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    for msg, name in (("Input/output error", "EIO"), ("No such file or directory", "ENOENT"),
                      ("Permission denied", "EACCES"), ("Transport endpoint", "ENOTCONN"),
                      ("Software caused connection abort", "ECONNABORTED"),
                      ("Resource temporarily unavailable", "EAGAIN"),
                      ("Operation not permitted", "EPERM"), ("Not a directory", "ENOTDIR")):
        if msg in text:
            return name
    return "other: " + text.strip()[:200]


class OpError(Exception):
    def __init__(self, name, what):
        super().__init__(f"{name}: {what}")
        self.errno = name


def sh(args, what):
    try:
        r = subprocess.run([str(a) for a in args], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=OP_TIMEOUT, env=env())
    except subprocess.TimeoutExpired:
        raise Hang(f"{what}: no answer within {OP_TIMEOUT}s")
    return r


class Reader:
    """One reader thread's operations. Each returns the number of bytes compared."""

    def __init__(self, exp, mnt, rng):
        self.exp = exp
        self.repo = Path(mnt) / "acme" / SLUG
        self.rng = rng

    def at(self, sha):
        # mostly by hash; sometimes through a tag or branch symlink
        names = [n for n, s in self.exp.commits.items() if s == sha and n in ("main", "v1", "v2")]
        if names and self.rng.random() < 0.3:
            n = self.rng.choice(names)
            return self.repo / ("branches" if n == "main" else "tags") / n / "tree"
        return self.repo / "commits" / sha / "tree"

    def pick(self, kinds):
        sha = self.rng.choice(sorted(self.exp.trees))
        paths = [p for p, e in self.exp.trees[sha].items() if e[0] in kinds]
        return sha, self.rng.choice(paths)

    def op_ls(self):
        sha, d = self.pick(("dir", "submodule"))
        path = self.at(sha) / d if d else self.at(sha)
        r = sh(["find", path, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\0"], f"ls {path}")
        if r.returncode != 0:
            raise OpError(errno_name(r.stderr), f"ls {path}")
        got = {n.decode("utf-8", "surrogateescape") for n in r.stdout.split(b"\0") if n}
        want = self.exp.children(sha, d) if self.exp.trees[sha][d][0] == "dir" else set()
        if got != want:
            raise Failure(f"ls {path}: got {sorted(got)[:20]}, want {sorted(want)[:20]}")
        return 0

    def op_stat(self):
        sha, p = self.pick(("dir", "file", "link", "submodule"))
        path = self.at(sha) / p if p else self.at(sha)
        r = sh(["stat", "-c", "%F\t%s", path], f"stat {path}")
        if r.returncode != 0:
            raise OpError(errno_name(r.stderr), f"stat {path}")
        kind, size = r.stdout.decode().strip().split("\t")
        want_kind, obj, want_size = self.exp.trees[sha][p]
        want_ftype = {"dir": "directory", "submodule": "directory", "link": "symbolic link",
                      "file": "regular file"}[want_kind]
        if kind.replace("regular empty file", "regular file") != want_ftype:
            raise Failure(f"stat {path}: a {kind}, want a {want_ftype}")
        if want_kind in ("file", "link") and int(size) != want_size:
            raise Failure(f"stat {path}: size {size}, want {want_size}")
        return 0

    def op_cat(self):
        sha, p = self.pick(("file",))
        _, obj, size = self.exp.trees[sha][p]
        if size > BIG and self.rng.random() < 0.7:
            sha, p = self.pick(("file",))   # big files less often
            _, obj, size = self.exp.trees[sha][p]
        path = self.at(sha) / p
        if size > BIG:
            r = sh(["sha256sum", path], f"sha256sum {path}")
            if r.returncode != 0:
                raise OpError(errno_name(r.stderr), f"read {path}")
            if r.stdout.split()[0].decode() != self.exp.sha256(obj):
                raise Failure(f"read {path}: WRONG BYTES (SHA-256 differs from git's)")
            return size
        r = sh(["cat", path], f"cat {path}")
        if r.returncode != 0:
            raise OpError(errno_name(r.stderr), f"read {path}")
        want = self.exp.blob(obj)
        if r.stdout != want:
            at = next((i for i, (a, b) in enumerate(zip(r.stdout, want)) if a != b),
                      min(len(r.stdout), len(want)))
            raise Failure(f"read {path}: WRONG BYTES ({len(r.stdout)} bytes, want {len(want)}; "
                          f"first difference at {at})")
        return len(want)

    def op_readlink(self):
        sha, p = self.pick(("link",))
        path = self.at(sha) / p
        r = sh(["readlink", "-v", path], f"readlink {path}")
        if r.returncode != 0:
            raise OpError(errno_name(r.stderr), f"readlink {path}")
        want = self.exp.blob(self.exp.trees[sha][p][1])
        if r.stdout.rstrip(b"\n") != want:
            raise Failure(f"readlink {path}: {r.stdout!r}, want {want!r}")
        return len(want)

    def op_grep(self):
        sha = self.rng.choice(sorted(self.exp.trees))
        dirs = [d for d, e in self.exp.trees[sha].items() if e[0] == "dir"
                and sum(self.exp.trees[sha][f][2] for f in self.exp.files_under(sha, d)) < BIG]
        d = self.rng.choice(dirs)
        files = self.exp.files_under(sha, d)
        texts = [f for f in files if self.exp.trees[sha][f][2]
                 and b"\0" not in self.exp.blob(self.exp.trees[sha][f][1])]
        pattern = b"e"
        if texts:
            data = self.exp.blob(self.exp.trees[sha][self.rng.choice(texts)][1])
            words = re.findall(rb"[A-Za-z0-9_-]{3,12}", data)
            if words:
                pattern = self.rng.choice(words)
        path = self.at(sha) / d if d else self.at(sha)
        r = sh(["grep", "-rlaFZ", "-e", pattern.decode(), "--", path], f"grep -r {path}")
        if r.returncode not in (0, 1):
            raise OpError(errno_name(r.stderr), f"grep -r {path}")
        base = str(path) + "/"
        got = {n.decode("utf-8", "surrogateescape")[len(base):] for n in r.stdout.split(b"\0") if n}
        want, nbytes = set(), 0
        for f in files:
            blob = self.exp.blob(self.exp.trees[sha][f][1])
            nbytes += len(blob)
            if pattern in blob:
                want.add(f[len(d) + 1:] if d else f)
        if got != want:
            raise Failure(f"grep -r {pattern!r} {path}: got {sorted(got)[:10]}, "
                          f"want {sorted(want)[:10]}")
        return nbytes

    def op_meta(self):
        sha = self.rng.choice(sorted(self.exp.trees))
        path = self.repo / "commits" / sha / "commit.json"
        r = sh(["cat", path], f"cat {path}")
        if r.returncode != 0:
            raise OpError(errno_name(r.stderr), f"read {path}")
        try:
            h = json.loads(r.stdout)["hash"]
        except (ValueError, KeyError, TypeError):
            raise Failure(f"read {path}: not a commit: {r.stdout[:200]!r}")
        if h != sha:
            raise Failure(f"read {path}: hash {h}, want {sha}")
        return 0

    OPS = [("ls", 3), ("stat", 4), ("cat", 6), ("readlink", 1), ("grep", 2), ("meta", 1)]


# --------------------------------------------------------------------------- faults


class Faults(threading.Thread):
    """Storms of faults, each followed by a calm, until stopped; remembers when each fault
    was active."""

    def __init__(self, server, rng, stop, log):
        super().__init__(daemon=True)
        self.server, self.rng, self.stop, self.log = server, rng, stop, log
        self.windows = []         # [start, end] (monotonic)
        self.count = collections.Counter()
        self.lock = threading.Lock()
        self.error = None

    def active_near(self, t0, t1):
        """Whether a fault was active at some point from GRACE s before t0 until t1."""
        with self.lock:
            return any(s - 0.5 <= t1 and (e is None or t0 <= e + GRACE) for s, e in self.windows)

    def last_end(self, t):
        """Seconds from the end of the last fault before T to T (None: no fault yet)."""
        with self.lock:
            ends = [e for s, e in self.windows if e is not None and e <= t]
        return t - max(ends) if ends else None

    def run(self):
        try:
            if self.stop.wait(self.rng.uniform(1.5, 4.0)):
                return
            while True:
                storm_end = time.monotonic() + self.rng.uniform(*STORM)
                while time.monotonic() < storm_end:
                    self.one_fault()
                    if self.stop.wait(self.rng.uniform(0.5, 2.0)):
                        return
                if self.stop.wait(self.rng.uniform(*CALM)):
                    return
        except Exception as e:   # noqa: BLE001 - reported as a failure of the run
            self.error = f"fault thread: {e!r}"
            self.log(self.error)

    def one_fault(self):
        kind = self.rng.choice(["burst", "burst", "outage", "latency", "cut"])
        where = self.rng.choice([None, "/src/", "/refs", "/commit", "/repositories/acme",
                                 "/media/"])
        status = self.rng.choice([500, 503])
        with self.lock:
            self.windows.append([time.monotonic(), None])
        self.count[kind] += 1
        try:
            if kind == "burst":      # a few failed requests: retries should hide them
                self.server.knobs(fail={"status": status, "count": self.rng.randint(1, 4),
                                        "path_contains": where})
                hold = 1.0
            elif kind == "outage":   # everything fails for a while
                self.server.knobs(fail={"status": status, "count": -1, "path_contains": where})
                hold = self.rng.uniform(0.5, 2.5)
            elif kind == "latency":
                self.server.knobs(latency_ms=self.rng.choice([50, 200, 500]))
                hold = self.rng.uniform(1.0, 3.0)
            else:                    # bodies cut half-way
                self.server.knobs(reset={"count": self.rng.randint(1, 3),
                                         "path_contains": where or "/src/"})
                hold = 1.0
            self.stop.wait(hold)
        finally:
            self.server.knobs(fail=None, reset=None, latency_ms=0)
            with self.lock:
                self.windows[-1][1] = time.monotonic()


# --------------------------------------------------------------------------- the run


def unmount(mnt, proc, log):
    """fusermount3 -u (retried while busy), then the daemon's exit status; never raises."""
    problems = []
    end = time.monotonic() + 20
    while mounted(mnt) and time.monotonic() < end:
        r = subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, text=True,
                           timeout=10)
        if r.returncode == 0:
            break
        time.sleep(0.2)
    rc = None
    if proc.poll() is None:
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            problems.append("bbfs did not exit after fusermount3 -u")
    else:
        rc = proc.returncode
    if mounted(mnt):
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True, timeout=10)
        problems.append("fusermount3 -u failed; lazily unmounted")
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if rc not in (0, None):
        problems.append(f"bbfs exited {rc} after fusermount3 -u")
    for p in problems:
        log(p)
    return problems


def run_load(bbfs, duration=120, readers=16, workdir=None, data_json=None, seed=None,
             log=print):
    """Runs the load test; returns the summary dict (summary["failures"] empty when it passed)."""
    seed = seed if seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    own_tmp = None
    if workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="bbfs-load-")
        workdir = own_tmp.name
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if data_json is None:
        sys.path.insert(0, str(FAKEBB))
        import fixture
        data_json = Path(fixture.build_tree_fixture(str(workdir / "data")))
    data = json.loads(Path(data_json).read_text())
    git_dir = Path(data["workspaces"]["acme"]["repositories"][SLUG]["git_dir"])
    if not git_dir.is_absolute():
        git_dir = Path(data_json).parent / git_dir
    exp = Expected(git_dir)

    failures, lock = [], threading.Lock()
    ops = collections.Counter()
    errors = collections.Counter()
    calm_ops = [0]            # operations with no fault near them (EIO there is a failure)
    bytes_compared = [0]
    latencies = []
    summary = {"seed": seed, "duration": duration, "readers": readers}
    server = Server(data_json, workdir).start()
    mnt = workdir / "mnt"
    mnt.mkdir(exist_ok=True)
    token_file = workdir / "token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (TOKEN + "\n").encode())
    os.close(fd)
    stderr_path = workdir / "bbfs.stderr"
    errf = open(stderr_path, "wb")
    proc = subprocess.Popen(
        [bbfs, "-f", "-o", f"api_url={server.url},token_file={token_file},"
         f"cache_dir={workdir / 'cache'},timeout={BBFS_TIMEOUT},ttl={BBFS_TTL}", "acme", str(mnt)],
        stdin=subprocess.DEVNULL, stdout=errf, stderr=errf,
        # Under AddressSanitizer freed buffers sit in a quarantine (256 MiB by default, and
        # 1 MiB more per thread) and freed memory goes back to the system only when asked:
        # keep the quarantines small and release often, so that VmRSS still says whether
        # bbfs's memory is flat rather than how much the sanitizer holds on to.
        env=dict(env(), ASAN_OPTIONS="quarantine_size_mb=1:thread_local_quarantine_size_kb=64"
                                     ":allocator_release_to_os_interval_ms=100"))
    errf.close()
    stop = threading.Event()           # the readers stop (the end, or a failure)
    no_more_faults = threading.Event()
    faults = Faults(server, random.Random(rng.random()), no_more_faults, log)
    rss = {"start": None, "warm": None, "end": None, "peak": 0}
    try:
        end = time.monotonic() + 20
        while not mounted(mnt):
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("bbfs did not mount:\n" + stderr_path.read_text(errors="replace"))
            time.sleep(0.05)
        rss["start"] = rss_kib(proc.pid)
        log(f"load: seed {seed}, {readers} readers for {duration}s of faults and a closing "
            f"calm of {GRACE + CLOSING:.0f}s, bbfs pid {proc.pid}, "
            f"VmRSS {rss['start']} KiB")

        t_start = time.monotonic()
        t_faults_end = t_start + duration
        t_end = t_faults_end + GRACE + CLOSING
        warm_at = t_start + max(5.0, (t_end - t_start) / 4)

        def fail(msg):
            with lock:
                failures.append(msg)
            log("FAILURE: " + msg)
            no_more_faults.set()
            stop.set()

        def reader(i):
            rd = Reader(exp, mnt, random.Random(rng.random() + i))
            names = [n for n, w in Reader.OPS for _ in range(w)]
            while not stop.is_set() and time.monotonic() < t_end:
                name = rd.rng.choice(names)
                t0 = time.monotonic()
                try:
                    n = getattr(rd, "op_" + name)()
                    t1 = time.monotonic()
                    with lock:
                        ops[name] += 1
                        bytes_compared[0] += n
                        latencies.append(t1 - t0)
                        calm_ops[0] += not faults.active_near(t0, t1)
                except OpError as e:
                    t1 = time.monotonic()
                    near = faults.active_near(t0, t1)
                    with lock:
                        ops[name] += 1
                        errors[(e.errno, "near a fault" if near else "no fault near")] += 1
                        calm_ops[0] += not near
                    if e.errno != "EIO":
                        fail(f"{e} (an error other than EIO)")
                    elif not near:
                        since = faults.last_end(t0)
                        fail(f"{e} with no fault near it (from {t0 - t_start:.1f}s to "
                             f"{t1 - t_start:.1f}s into the run; "
                             + ("no fault before it)" if since is None else
                                f"the last fault ended {since:.1f}s before it began)"))
                except Failure as e:
                    fail(str(e))
                except Exception as e:  # noqa: BLE001
                    fail(f"{name}: {e!r}")

        threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(readers)]
        faults.start()
        for t in threads:
            t.start()
        while time.monotonic() < t_end and not stop.is_set():
            if time.monotonic() >= t_faults_end:
                no_more_faults.set()         # the closing calm
            r = rss_kib(proc.pid)
            if r:
                rss["peak"] = max(rss["peak"], r)
                if rss["warm"] is None and time.monotonic() >= warm_at:
                    rss["warm"] = r
            if proc.poll() is not None:
                fail(f"bbfs died (exit {proc.returncode})")
                break
            stop.wait(0.5)
        no_more_faults.set()
        stop.set()
        for t in threads:
            t.join(OP_TIMEOUT + 10)
            if t.is_alive():
                fail("a reader thread did not finish (hang)")
        faults.join(15)
        server.knobs(fail=None, reset=None, latency_ms=0)
        if faults.error:
            fail(faults.error)
        rss["end"] = rss_kib(proc.pid)
        if rss["end"]:
            rss["peak"] = max(rss["peak"], rss["end"])
        if rss["warm"] is None:
            rss["warm"] = rss["end"]
        if proc.poll() is not None:
            fail(f"bbfs died (exit {proc.returncode})")
        elif not mounted(mnt):
            fail("the mount disappeared")
        if rss["warm"] and rss["end"] and rss["end"] > 1.5 * rss["warm"] \
                and rss["end"] - rss["warm"] > 8192:
            fail(f"VmRSS grew from {rss['warm']} KiB after warm-up to {rss['end']} KiB")
    finally:
        no_more_faults.set()
        stop.set()
        try:
            server.knobs(fail=None, reset=None, latency_ms=0)
        except Exception:  # noqa: BLE001 - the server may be gone
            pass
        problems = unmount(mnt, proc, log)
        server.stop()
    failures += problems
    stderr = stderr_path.read_text(errors="replace")
    bad = [ln for ln in stderr.splitlines() if SANITIZER.search(ln)]
    if bad:
        failures.append("sanitizer or crash report on bbfs's stderr:\n  " + "\n  ".join(bad[:20]))
    latencies.sort()
    summary.update({
        "operations": sum(ops.values()),
        "by_operation": dict(ops),
        "errors": {f"{e} ({when})": n for (e, when), n in sorted(errors.items())},
        "operations_with_no_fault_near": calm_ops[0],
        "bytes_compared": bytes_compared[0],
        "faults_toggled": dict(faults.count),
        "latency_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "latency_max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "rss_kib": rss,
        "bbfs_stderr_lines": len([ln for ln in stderr.splitlines() if ln.strip()]),
        "failures": failures,
    })
    if own_tmp is not None:
        own_tmp.cleanup()
    return summary


def print_summary(s, out=sys.stdout):
    w = out.write
    w(f"load test: {s['readers']} readers, {s['duration']} s, seed {s['seed']}\n")
    w(f"  operations      {s['operations']}  "
      + "  ".join(f"{k} {v}" for k, v in sorted(s["by_operation"].items())) + "\n")
    w("  errors          " + ("  ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "none")
      + "\n")
    w(f"  checked calm    {s['operations_with_no_fault_near']} operations with no fault near "
      "(where EIO fails the run)\n")
    w(f"  bytes compared  {s['bytes_compared']} ({s['bytes_compared'] / (1 << 20):.1f} MiB)\n")
    w("  faults toggled  " + "  ".join(f"{k} {v}" for k, v in sorted(s["faults_toggled"].items()))
      + "\n")
    w(f"  latency         p50 {s['latency_p50_ms']} ms, max {s['latency_max_ms']} ms\n")
    r = s["rss_kib"]
    w(f"  bbfs VmRSS      start {r['start']} KiB, after warm-up {r['warm']} KiB, "
      f"end {r['end']} KiB, peak {r['peak']} KiB\n")
    w(f"  bbfs stderr     {s['bbfs_stderr_lines']} lines\n")
    if s["failures"]:
        w(f"  FAILED ({len(s['failures'])}):\n")
        for f in s["failures"][:30]:
            w(f"    {f}\n")
    else:
        w("  passed: no wrong byte, no error away from faults, no hang, no crash, RSS bounded\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bbfs", default=str(HERE.parent / "build" / "bbfs"))
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--readers", type=int, default=16)
    ap.add_argument("--workdir", help="keep the data, cache and logs here (default: a temporary "
                                      "directory, removed afterwards)")
    ap.add_argument("--data", help="an existing data.json with the `files` repository")
    ap.add_argument("--seed", type=int)
    args = ap.parse_args(argv)
    if not os.access(args.bbfs, os.X_OK):
        ap.error(f"no bbfs at {args.bbfs} (make build/bbfs)")
    s = run_load(os.path.abspath(args.bbfs), args.duration, args.readers, args.workdir,
                 Path(args.data) if args.data else None, args.seed,
                 log=lambda m: print(m, file=sys.stderr, flush=True))
    print_summary(s)
    return 1 if s["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())

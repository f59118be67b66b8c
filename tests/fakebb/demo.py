#!/usr/bin/python3
"""What `make demo` runs: mount the fake Bitbucket demo workspace with bbfs.

It builds the demo repositories in DIR (once; later runs reuse them), starts server.py in
the background (own session, request log in DIR/server.log, its stdout/stderr in
DIR/server.out, pid in DIR/server.pid), writes the demo token to DIR/token (mode 0600),
mounts `acme/PLAT` on DIR/mnt with bbfs, and prints commands to try.  An earlier demo in
the same DIR is stopped first.  `demo.py --stop` unmounts and stops the server.

Usage: /usr/bin/python3 tests/fakebb/demo.py --bbfs /abs/path/to/build/bbfs [--dir DIR]
       /usr/bin/python3 tests/fakebb/demo.py --stop [--dir DIR]

Python 3 standard library only.
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fixture  # noqa: E402  (after the path tweak, so the demo runs from any cwd)

DEFAULT_DIR = "/tmp/bbfs-demo"
TOKEN = "demo-token"
MOUNT_SPEC = "acme/PLAT"
DEADLINE = 10.0          # seconds for the mount to appear (--timeout)
SERVER_DEADLINE = 30.0   # seconds for the server to listen: a hang guard, not a speed


def log(msg):
    print("demo: " + msg, flush=True)


def is_mounted(path):
    """Whether PATH is a mount point, from /proc/self/mountinfo (no syscall on the mount)."""
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and _unescape(fields[4]) == target:
                    return True
    except OSError:
        pass
    return False


def _unescape(s):
    # mountinfo writes space, tab, newline and backslash as \040-style octal escapes
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def unmount(mnt, lazy_only=False):
    """Unmount MNT if mounted: a clean unmount first, lazy (-z) when busy or stale."""
    if not is_mounted(mnt):
        return True
    attempts = [["fusermount3", "-u", "-z", str(mnt)]] if lazy_only else \
        [["fusermount3", "-u", str(mnt)], ["fusermount3", "-u", "-z", str(mnt)]]
    for cmd in attempts:
        try:
            subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            log("%s: %s" % (" ".join(cmd), e))
        if not is_mounted(mnt):
            return True
    log("could not unmount %s" % mnt)
    return False


def server_pid(d):
    """The pid in DIR/server.pid if that process is still our server.py (pids get reused)."""
    try:
        pid = int((d / "server.pid").read_text().strip())
        cmdline = pathlib.Path("/proc/%d/cmdline" % pid).read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    args = [a.decode(errors="replace") for a in cmdline]
    if any(a.endswith("server.py") for a in args) and str(d / "data.json") in args:
        return pid
    return None


def alive(pid):
    """Whether PID still runs; a zombie (our own child, after a failed mount) does not."""
    try:
        os.waitpid(pid, os.WNOHANG)      # reaps it when it is our child
    except ChildProcessError:
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_server(d):
    pid = server_pid(d)
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pid = None
        deadline = time.monotonic() + 5
        while pid and time.monotonic() < deadline:
            if not alive(pid):
                pid = None
                break
            time.sleep(0.05)
        if pid:
            os.kill(pid, signal.SIGKILL)
        log("stopped the fake server")
    for name in ("server.pid", "server.port"):
        try:
            (d / name).unlink()
        except FileNotFoundError:
            pass


def stop(d):
    if is_mounted(d / "mnt"):
        if unmount(d / "mnt"):
            log("unmounted %s" % (d / "mnt"))
    stop_server(d)


def ensure_data(d):
    """Demo repositories + data.json, built once; rebuilt if anything is missing."""
    data = d / "data.json"
    if data.exists():
        try:
            repos = json.loads(data.read_text())["workspaces"]["acme"]["repositories"]
            if all(os.path.isdir(r["git_dir"]) for r in repos.values()):
                return data
        except (OSError, ValueError, KeyError):
            pass
    shutil.rmtree(d / "git", ignore_errors=True)
    log("building demo repositories in %s" % (d / "git"))
    return fixture.build_demo(d)


def start_server(d, data):
    port_file = d / "server.port"
    out = open(d / "server.out", "ab")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), "--data", str(data), "--port", "0",
         "--port-file", str(port_file), "--log", str(d / "server.log")],
        stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True)
    out.close()
    (d / "server.pid").write_text("%d\n" % proc.pid)
    deadline = time.monotonic() + SERVER_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            return int(port_file.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.05)
    sys.stderr.write((d / "server.out").read_text(errors="replace"))
    stop_server(d)                  # one that is still starting must not be left behind
    raise SystemExit("demo: the fake server did not start")


def write_token(d):
    path = d / "token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)     # an older file may have had looser permissions
        os.write(fd, (TOKEN + "\n").encode())
    finally:
        os.close(fd)
    return path


def wait_for(mnt, path, deadline):
    """Whether MNT is mounted and PATH in it is a directory before DEADLINE; PATH is probed
    in a child process so a hung FUSE daemon cannot hang the demo."""
    while time.monotonic() < deadline:
        try:
            if is_mounted(mnt) and subprocess.run(["test", "-d", str(path)], timeout=2).returncode == 0:
                return True
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.1)
    return False


def self_path():
    """This script as the user can type it: relative when below the cwd, else absolute."""
    rel = os.path.relpath(HERE / "demo.py")
    return rel if not rel.startswith("..") else str(HERE / "demo.py")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Mount the fake Bitbucket demo with bbfs.")
    ap.add_argument("--bbfs", help="absolute path of the bbfs binary")
    ap.add_argument("--dir", default=DEFAULT_DIR, help="working directory (default %(default)s)")
    ap.add_argument("--stop", action="store_true", help="unmount and stop the server")
    ap.add_argument("--timeout", type=float, default=DEADLINE,
                    help="seconds to wait for the mount (default %(default)s)")
    args = ap.parse_args(argv)
    d = pathlib.Path(args.dir).resolve()

    if args.stop:
        stop(d)
        log("demo stopped")
        return 0
    if not args.bbfs:
        ap.error("--bbfs is required (or --stop)")
    bbfs = pathlib.Path(args.bbfs).resolve()
    if not os.access(bbfs, os.X_OK):
        raise SystemExit("demo: %s is not an executable (run `make` first)" % bbfs)

    d.mkdir(parents=True, exist_ok=True)
    mnt = d / "mnt"
    # an earlier demo: its mount may be stale (server gone), so unmount lazily
    if is_mounted(mnt):
        unmount(mnt, lazy_only=True)
    stop_server(d)
    data = ensure_data(d)
    port = start_server(d, data)
    api_url = "http://127.0.0.1:%d/2.0" % port
    log("fake Bitbucket API at %s (requests logged to %s)" % (api_url, d / "server.log"))
    token = write_token(d)
    mnt.mkdir(exist_ok=True)
    cache = d / "cache"
    cache.mkdir(mode=0o700, exist_ok=True)

    # whole trees through the fake's git smart HTTP, on the API's host and port
    cmd = [str(bbfs), "-o", "api_url=%s,git_url=%s,token_file=%s,cache_dir=%s"
           % (api_url, api_url[:-len("/2.0")], token, cache), MOUNT_SPEC, str(mnt)]
    log("mounting: " + " ".join(cmd))
    err_path = d / "bbfs.err"
    env = dict(os.environ)
    env.pop("BITBUCKET_TOKEN", None)      # the demo token comes from token_file only
    failure = None
    with open(err_path, "wb") as err:
        # bbfs daemonizes: it returns once mounted. A file, not a pipe, for stderr, so the
        # daemon holding it open cannot block us.
        try:
            rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                                timeout=args.timeout + 5).returncode
            if rc != 0:
                failure = "bbfs exited with status %d" % rc
        except subprocess.TimeoutExpired:
            failure = "bbfs did not return within %g s" % (args.timeout + 5)
    if not failure and not wait_for(mnt, mnt / "acme", time.monotonic() + args.timeout):
        failure = "%s was not mounted with %s in it within %g s" % (mnt, mnt / "acme", args.timeout)
    if failure:
        sys.stderr.write("demo: mount failed: %s\n" % failure)
        sys.stderr.write("---- bbfs stderr ----\n")
        sys.stderr.write(err_path.read_text(errors="replace") or "(empty)\n")
        sys.stderr.flush()
        stop(d)
        return 1

    m = str(mnt)
    print("""
bbfs demo mounted: %(spec)s on %(m)s  (token: demo-token, API: %(url)s)

Try:
  ls %(m)s/acme
  cat %(m)s/acme/api/repository.json
  ls -l %(m)s/acme/api/branches %(m)s/acme/api/branches/feature
  readlink %(m)s/acme/api/HEAD
  ls %(m)s/acme/api/commits | head
  cat %(m)s/acme/api/branches/main/message
  cat %(m)s/acme/api/tags/v1/commit.json
  grep -l '"language": "c"' %(m)s/acme/*/repository.json
  grep -rl '#include' %(m)s/acme/*/HEAD/tree   # whole trees through git: grep git_ %(m)s/.bbfs/stats
  tail -f %(d)s/server.log          # the API requests bbfs makes

Stop:
  /usr/bin/python3 %(me)s --stop%(dirarg)s
""" % {"spec": MOUNT_SPEC, "m": m, "url": api_url, "d": d,
       "me": self_path(),
       "dirarg": "" if str(d) == DEFAULT_DIR else " --dir %s" % d}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

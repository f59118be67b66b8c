#!/usr/bin/python3
"""What `make valgrind` runs: one bbfs mount session under valgrind memcheck, zero errors.

It starts the fake Bitbucket server (tests/fakebb/server.py) with the demo data, mounts
acme/PLAT with `valgrind ... build/bbfs -f` on a cold cache, walks the mount (ls -lR,
cat of documents, files and a diff, readlink of refs, a missing path), unmounts with
`fusermount3 -u` and fails when valgrind reported any error (invalid reads and writes,
uninitialised values, definite leaks), when bbfs did not exit 0, or when the walk failed.
Whatever happens, the mount is taken down (fusermount3 -u, then -u -z, SIGTERM, SIGKILL)
and the server is stopped. Library noise is suppressed in tests/valgrind.supp.

Usage: /usr/bin/python3 tests/valgrind.py --bbfs /abs/path/to/build/bbfs [--dir DIR]

The demo repositories are built once in DIR (default /tmp/bbfs-valgrind) and reused;
valgrind's report is DIR/valgrind.log, bbfs's stderr DIR/bbfs.err.
Python 3 standard library only.
"""

import argparse
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fakebb"))
import demo  # noqa: E402  (the demo's server and mount helpers)

SPEC = "acme/PLAT"
MOUNT_DEADLINE = 120.0   # valgrind makes start-up (TLS, curl, first requests) slow
STEP_TIMEOUT = 180.0     # one command of the walk
EXIT_DEADLINE = 120.0    # fusermount3 -u until bbfs exits: the leak check runs then
VALGRIND_ERRORS = 99


def log(msg):
    print("valgrind: " + msg, flush=True)


def walk(mnt):
    """Runs the walk; returns a list of problems (empty when all went as expected)."""
    a = mnt / "acme"
    api = a / "api"
    steps = [
        (["ls", "-lR", str(a)], 0),
        (["sh", "-c", "cat \"$1\"/*/repository.json", "sh", str(a)], 0),
        (["readlink", str(api / "HEAD")], 0),
        (["readlink", str(api / "branches" / "main")], 0),
        (["readlink", str(api / "tags" / "v1")], 0),
        (["cat", str(api / "HEAD" / "message")], 0),
        (["cat", str(api / "HEAD" / "commit.json")], 0),
        (["cat", str(api / "tags" / "v1" / "commit.json")], 0),
        (["cat", str(api / "branches" / "main" / "tree" / "README.md")], 0),
        (["cat", str(api / "HEAD" / "diff")], 0),
        (["diff", "-r", str(api / "tags" / "v1" / "tree"), str(api / "tags" / "v2" / "tree")], 1),
        (["cat", str(a / "web" / "branches" / "dev" / "tree" / "src" / "theme.css")], 0),
        (["stat", str(api / "no-such-entry")], 1),
        (["ls", str(api / "commits" / ("0" * 40))], 2),
        (["cat", str(a / "empty" / "repository.json")], 0),
    ]
    problems = []
    for cmd, want in steps:
        shown = "cat %s/*/repository.json" % cmd[-1] if cmd[0] == "sh" else " ".join(cmd)
        start = time.monotonic()
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            problems.append("%s: no answer within %g s" % (shown, STEP_TIMEOUT))
            continue
        took = time.monotonic() - start
        log("%-70s exit %d, %d bytes, %.1f s" % (shown[:70], r.returncode, len(r.stdout), took))
        if r.returncode != want:
            problems.append("%s: exit %d, expected %d: %s" % (
                shown, r.returncode, want, r.stderr.decode(errors="replace").strip()[:300]))
    return problems


def force_down(mnt, proc):
    """Takes the mount and the daemon down whatever state they are in."""
    if demo.is_mounted(mnt):
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def unmount(mnt, proc):
    """fusermount3 -u, then bbfs must exit within EXIT_DEADLINE. Returns (exit code, problems)."""
    problems = []
    if proc.poll() is not None:
        return proc.returncode, ["bbfs died during the walk (exit %d)" % proc.returncode]
    end = time.monotonic() + 30
    while demo.is_mounted(mnt) and time.monotonic() < end:
        r = subprocess.run(["fusermount3", "-u", str(mnt)], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            time.sleep(0.5)   # busy while a timed-out command lets go
    if demo.is_mounted(mnt):
        problems.append("fusermount3 -u failed")
    try:
        return proc.wait(EXIT_DEADLINE), problems
    except subprocess.TimeoutExpired:
        return None, problems + ["bbfs did not exit within %g s of fusermount3 -u" % EXIT_DEADLINE]


def summary(log_path):
    """valgrind's ERROR SUMMARY count and its leak summary lines."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    m = re.findall(r"ERROR SUMMARY: ([\d,]+) errors", text)
    errors = int(m[-1].replace(",", "")) if m else None
    leaks = [l.split("== ", 1)[-1] for l in text.splitlines()
             if re.search(r"(definitely|indirectly|possibly) lost:|still reachable:", l)]
    return errors, leaks, text


def main(argv=None):
    ap = argparse.ArgumentParser(description="A bbfs mount session under valgrind memcheck.")
    ap.add_argument("--bbfs", required=True, help="absolute path of the bbfs binary")
    ap.add_argument("--dir", default="/tmp/bbfs-valgrind", help="work directory (%(default)s)")
    args = ap.parse_args(argv)
    bbfs = pathlib.Path(args.bbfs).resolve()
    if not os.access(bbfs, os.X_OK):
        raise SystemExit("valgrind: %s is not an executable (run `make` first)" % bbfs)
    valgrind = shutil.which("valgrind")
    if not valgrind:
        raise SystemExit("valgrind: valgrind is not installed (make valgrind installs it)")

    d = pathlib.Path(args.dir).resolve()
    d.mkdir(parents=True, exist_ok=True)
    mnt = d / "mnt"
    if demo.is_mounted(mnt):
        demo.unmount(mnt, lazy_only=True)
    demo.stop_server(d)
    data = demo.ensure_data(d)
    cache = d / "cache"
    shutil.rmtree(cache, ignore_errors=True)      # a cold cache: every answer is fetched
    cache.mkdir(mode=0o700)
    mnt.mkdir(exist_ok=True)
    vlog = d / "valgrind.log"
    err_path = d / "bbfs.err"
    for p in (vlog, err_path):
        if p.exists():
            p.unlink()

    proc = None
    problems = []
    code = None
    try:
        port = demo.start_server(d, data, 10.0)
        api_url = "http://127.0.0.1:%d/2.0" % port
        token = demo.write_token(d)
        cmd = [valgrind, "--tool=memcheck", "--error-exitcode=%d" % VALGRIND_ERRORS,
               "--leak-check=full", "--errors-for-leak-kinds=definite",
               "--show-leak-kinds=definite", "--track-origins=yes", "--num-callers=40",
               "--suppressions=%s" % (HERE / "valgrind.supp"), "--log-file=%s" % vlog,
               str(bbfs), "-f", "-o",
               "api_url=%s,token_file=%s,cache_dir=%s" % (api_url, token, cache), SPEC, str(mnt)]
        log("fake server at %s; mounting: %s" % (api_url, " ".join(cmd)))
        env = dict(os.environ)
        env.pop("BITBUCKET_TOKEN", None)
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    env=env, start_new_session=True)
        end = time.monotonic() + MOUNT_DEADLINE
        while not demo.wait_for(mnt, mnt / "acme", time.monotonic() + 1):
            if proc.poll() is not None:
                problems.append("bbfs exited %d before mounting" % proc.returncode)
                break
            if time.monotonic() > end:
                problems.append("not mounted within %g s" % MOUNT_DEADLINE)
                break
        if not problems:
            log("mounted in %s" % mnt)
            problems += walk(mnt)
            code, more = unmount(mnt, proc)
            problems += more
            if code == VALGRIND_ERRORS:
                problems.append("valgrind reported errors (exit %d)" % code)
            elif code not in (0, None):
                problems.append("bbfs exited %d after fusermount3 -u" % code)
    finally:
        force_down(mnt, proc)
        demo.stop_server(d)

    errors, leaks, text = summary(vlog)
    for line in leaks:
        log(line)
    log("ERROR SUMMARY: %s errors (report: %s)" % ("?" if errors is None else errors, vlog))
    if errors is None:
        problems.append("no ERROR SUMMARY in %s" % vlog)
    elif errors:
        sys.stdout.write(text)
        problems.append("%d valgrind errors" % errors)
    bbfs_err = err_path.read_text(errors="replace") if err_path.exists() else ""
    if problems:
        if bbfs_err.strip():
            sys.stdout.write("---- bbfs stderr ----\n" + bbfs_err)
        for p in problems:
            log("FAILED: " + p)
        return 1
    log("passed: no errors, bbfs exited 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""
Options mean what they say (issue 14 items 7 and 8) and SIGHUP never hurts
(issue 12).

- Every wrong option value is refused with one line naming the option, exit
  non-zero, before any request reaches the fake server (its request log stays
  empty) and with nothing mounted; the documented bounds are accepted and
  mean what they say.
- A second mount on a mountpoint in use is refused; the first one is left as
  it was.
- The "rate limit nearly used up" warning never comes before a fatal start-up
  error; after a good start it is printed once.
- SIGHUP storms while mounted and while unmounting neither end nor crash bbfs
  (run under ASan by `make asan`), and it exits 0.

The ranges below are the documented contract (--help and the man page must
state the same ones).
"""

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (BBFS_BIN, EXIT_DEADLINE, REPO_ROOT, bbfs_binary, force_unmount,
                      is_repo_list, ls, mountinfo_has, one_clear_line, run, scan_stderr,
                      user_env, write_token_file)

MAN = REPO_ROOT / "man" / "bbfs.1"

# option: (least, most) as documented
RANGES = {"ttl": (0, 31536000), "commit_limit": (1, 10000), "timeout": (1, 3600)}

NEAR_LIMIT = re.compile(r"rate limit is nearly used up")


def mount_count(path):
    """How many mounts sit on path, from /proc/self/mountinfo."""
    path = os.path.realpath(path)
    n = 0
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split(" ")
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            n += mp == path
    return n


def start_refused(tmp_path, server, options, token="demo-token", mnt=None):
    """Runs bbfs -f with the harness's usual options plus `options`, from an empty
    working directory, expecting it to exit without mounting. Returns
    (exit status, stderr)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    mnt = Path(mnt) if mnt else tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    tf = write_token_file(tmp_path / "token", token)
    opts = [f"api_url={server.url}", f"token_file={tf}", f"cache_dir={tmp_path / 'cache'}",
            *options]
    before = mount_count(mnt)
    proc = subprocess.Popen([bbfs_binary(), "-f", "-o", ",".join(opts), "acme/PLAT", str(mnt)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=user_env())
    try:
        _, err = proc.communicate(timeout=30)  # hang guard, generous
    except subprocess.TimeoutExpired:
        force_unmount(mnt, proc)
        proc.communicate()
        pytest.fail(f"bbfs {options} did not exit")
    finally:
        if mount_count(mnt) > before:
            force_unmount(mnt)
            pytest.fail(f"bbfs {options} mounted although it should have refused")
    return proc.returncode, err.decode(errors="replace")


# --------------------------------------------------------------------------
# Wrong values: one line naming the option, before any request

BAD_VALUES = [
    ("ttl=-5", "ttl"),
    ("ttl=999999999999999999999", "ttl"),
    ("ttl=0x10", "ttl"),
    ("ttl=1.5", "ttl"),
    ("ttl=", "ttl"),
    ("ttl= 5", "ttl"),
    ("ttl=+5", "ttl"),
    ("ttl=31536001", "ttl"),
    ("commit_limit=-1", "commit_limit"),
    ("commit_limit=0", "commit_limit"),
    ("commit_limit=10001", "commit_limit"),
    ("commit_limit=1e3", "commit_limit"),
    ("timeout=-1", "timeout"),
    ("timeout=0", "timeout"),
    ("timeout=3601", "timeout"),
    ("timeout=ten", "timeout"),
    ("cache_size=lots", "cache_size"),
    ("cache_dir=", "cache_dir"),
    ("token_file=", "token_file"),
    ("ca_file=", "ca_file"),
    ("api_url=", "api_url"),
    ("frobnicate=1", "frobnicate"),
    ("frobnicate", "frobnicate"),
    # a wrong value is wrong wherever it stands
    ("ttl=-5,ttl=5", "ttl"),
    ("ttl=5,ttl=-5", "ttl"),
]


@pytest.mark.parametrize("option,name", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_wrong_value_refused_before_any_request(tmp_path, server, option, name):
    rc, err = start_refused(tmp_path, server, option.split(","))
    assert rc != 0
    line = one_clear_line(err)
    assert name in line, line
    if name in RANGES:
        least, most = RANGES[name]
        assert f"{least} to {most}" in line, line
    assert server.log.entries() == [], "a request was sent before the options were checked"
    # nothing was created where bbfs was started (an empty cache_dir= meant "here")
    assert list((tmp_path / "cwd").iterdir()) == []
    assert not (tmp_path / "cache").exists()


def test_bounds_are_accepted_and_mean_what_they_say(mount_factory, server, demo):
    """The least and the most of every range mount; commit_limit lists that many."""
    main = demo.head_branch("api")
    on_main = demo.rev_list("api", main)
    (limit_least, limit_most), (ttl_least, ttl_most) = RANGES["commit_limit"], RANGES["ttl"]
    assert 1 < len(on_main) < limit_most
    for limit, ttl in ((limit_least, ttl_most), (limit_most, ttl_least)):
        m = mount_factory(server, options=[f"commit_limit={limit}", f"ttl={ttl}",
                                           f"timeout={RANGES['timeout'][1]}"])
        assert ls(m.ws / "api" / "commits") == sorted(on_main[:limit])
        assert m.unmount() == []
    # the shortest timeout, offline (no request that a loaded machine could make late)
    m = mount_factory(server, target="acme", options=["offline", f"timeout={RANGES['timeout'][0]}"])
    assert ls(m.path) == ["acme"]
    assert m.unmount() == []


def test_help_and_man_page_give_the_ranges():
    r = run([BBFS_BIN, "--help"])
    assert r.returncode == 0, r.stderr
    options = MAN.read_text().split("\n.SH OPTIONS\n", 1)[1].split("\n.SH ", 1)[0]
    for name, (least, most) in RANGES.items():
        line = next((ln for ln in r.stdout.splitlines() if f"-o {name}=" in ln), None)
        assert line is not None, r.stdout
        # the range may continue on the next line of --help
        at = r.stdout.index(line)
        assert re.search(rf"{least} to {most}\b", r.stdout[at:at + 2 * len(line)]), line
        paragraph = options.split(f".BI {name}= ", 1)[1].split("\n.TP", 1)[0]
        assert re.search(rf"{least}\s+to\s+{most}\b", paragraph.replace("\\", "")), paragraph


# --------------------------------------------------------------------------
# A second mount on a mountpoint in use


def test_second_mount_on_a_mountpoint_in_use_is_refused(mount_factory, server, tmp_path):
    m = mount_factory(server)
    names = ls(m.ws)
    mark = server.log.mark()
    assert mount_count(m.path) == 1
    rc, err = start_refused(tmp_path, server, [], mnt=m.path)
    assert rc != 0
    line = one_clear_line(err)
    assert str(m.path) in line and "fusermount3 -u" in line, line
    assert server.log.since(mark) == [], "the refused mount sent a request"
    # the first mount is untouched: alone on its mountpoint, answering, unmounting cleanly
    assert mount_count(m.path) == 1
    assert m.alive()
    assert ls(m.ws) == names
    assert m.unmount() == []
    assert m.exit_code == 0


# --------------------------------------------------------------------------
# The rate-limit warning and fatal start-up errors


def test_no_rate_limit_warning_before_a_rejected_token(tmp_path, server):
    server.knobs(near_limit=True)
    rc, err = start_refused(tmp_path, server, [], token="not-a-token")
    assert rc != 0
    line = one_clear_line(err)
    assert not NEAR_LIMIT.search(line), err
    assert re.search(r"token", line, re.I), line
    # the check was made, and answered with the header
    entries = server.log.entries()
    assert [e["status"] for e in entries] == [401], entries


def test_no_rate_limit_warning_when_start_up_fails_after_the_check(tmp_path, server):
    """The check passes, then the cache directory cannot be used: one line, no warning."""
    server.knobs(near_limit=True)
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache directory should be\n")
    rc, err = start_refused(tmp_path, server, [])
    assert rc != 0
    assert not NEAR_LIMIT.search(err), err
    one_clear_line(err)
    assert [e["status"] for e in server.log.entries()] == [200]


def test_rate_limit_warning_once_after_a_good_start(mount_factory, server):
    server.knobs(near_limit=True)
    m = mount_factory(server, allow=[r"rate limit is nearly used up"])
    assert "api" in ls(m.ws)
    deadline = time.monotonic() + 10  # hang guard
    while not NEAR_LIMIT.search(m.stderr()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(NEAR_LIMIT.findall(m.stderr())) == 1, m.stderr()
    assert m.unmount() == []


# --------------------------------------------------------------------------
# SIGHUP storms


class HangupStorm:
    """SIGHUP after SIGHUP to one process from a thread, until it exits or the
    `with` block ends."""

    def __init__(self, proc):
        self.proc = proc
        self.sent = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stopping.is_set() and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGHUP)
            except ProcessLookupError:
                break
            self.sent += 1
            if self.sent % 50 == 0:
                time.sleep(0.001)  # let the daemon run now and then

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(10)


def test_sighup_storm_while_mounted_refreshes_and_never_unmounts(mount_factory, server):
    m = mount_factory(server, allow=[r"SIGHUP"])
    names = ls(m.ws)
    with HangupStorm(m.proc) as storm:
        for _ in range(5):
            assert ls(m.ws) == names
            assert "main" in ls(m.ws / "api" / "branches")
        time.sleep(0.5)
    assert storm.sent > 100
    assert m.alive(), f"bbfs ended during a SIGHUP storm:\n{m.stderr()}"
    # refreshed: the listing trusted for ttl (60 s) is asked for again
    mark = server.log.mark()
    assert ls(m.ws) == names
    assert any(is_repo_list(e) for e in server.log.since(mark)), server.log.since(mark)
    assert m.unmount() == []
    assert m.exit_code == 0


@pytest.mark.parametrize("round_", range(3))
def test_sighup_storm_while_unmounting_exits_zero(mount_factory, server, round_):
    m = mount_factory(server, allow=[r"SIGHUP"])
    assert "api" in ls(m.ws)
    ls(m.ws / "api" / "branches")
    with HangupStorm(m.proc) as storm:
        time.sleep(0.2)
        r = subprocess.run(["fusermount3", "-u", str(m.path)], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 0, r.stderr
        try:
            rc = m.proc.wait(EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail("bbfs did not exit after fusermount3 -u during a SIGHUP storm")
    m.closed = True
    force_unmount(m.path, m.proc)
    assert storm.sent > 0
    assert scan_stderr(m.stderr(), m.allow) == [], m.stderr()[-3000:]
    assert rc == 0, f"exit {rc} after fusermount3 -u during a SIGHUP storm:\n{m.stderr()[-3000:]}"
    assert not mountinfo_has(m.path)

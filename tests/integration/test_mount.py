"""
Mounting and unmounting: foreground (-f), background, single-threaded (-s),
SIGTERM, the root of the tree and the modes of what is in it.
"""

import ctypes
import os
import signal
import subprocess
import time

import pytest

from conftest import (EXIT_DEADLINE, MOUNT_DEADLINE, bbfs_binary, cat, force_unmount, ls,
                      mountinfo_has, out, scan_stderr, stat_fmt, user_env, write_token_file)
from helpers import json_file


def test_foreground_mount_then_fusermount_exits_zero(mount):
    assert ls(mount.path) == ["acme"]
    assert mount.unmount() == []
    assert mount.exit_code == 0
    assert not mountinfo_has(mount.path)


def test_sigterm_unmounts_and_exits_zero(mount):
    assert "api" in ls(mount.ws)
    mount.closed = True  # this test does the teardown itself
    try:
        mount.proc.send_signal(signal.SIGTERM)
        try:
            rc = mount.proc.wait(EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail("bbfs did not exit within the deadline after SIGTERM")
        deadline = time.monotonic() + 5
        while mountinfo_has(mount.path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not mountinfo_has(mount.path), "SIGTERM left the mount behind"
        assert rc == 0, f"exit status {rc} after SIGTERM:\n{mount.stderr()}"
        assert scan_stderr(mount.stderr()) == []
    finally:
        force_unmount(mount.path, mount.proc)


PR_SET_CHILD_SUBREAPER = 36


def _children_named(name):
    """Our direct children whose comm is `name` (we are a subreaper)."""
    me = os.getpid()
    res = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        if ppid == me and comm == name:
            res.append(int(d))
    return res


def test_background_mount_then_fusermount_exits_zero(server, tmp_path):
    """Without -f bbfs returns once mounted; the daemon exits 0 on fusermount3 -u.

    The test process becomes a child subreaper so that the daemonized bbfs is
    re-parented to it and its exit status can be collected.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("cannot become a child subreaper")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    tf = write_token_file(tmp_path / "token", "demo-token")
    daemon = None
    try:
        r = subprocess.run(
            [bbfs_binary(), "-o",
             f"api_url={server.url},token_file={tf},cache_dir={tmp_path / 'cache'}",
             "acme/PLAT", str(mnt)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=MOUNT_DEADLINE, env=user_env())
        assert r.returncode == 0, r.stderr
        assert not scan_stderr(r.stderr), r.stderr
        # The parent returns once the mount is up (or very shortly before).
        deadline = time.monotonic() + 5
        while not mountinfo_has(mnt) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mountinfo_has(mnt), "bbfs returned but nothing is mounted"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            kids = [p for p in _children_named("bbfs")]
            if kids:
                daemon = kids[0]
                break
            time.sleep(0.05)
        assert daemon, "no daemonized bbfs process found"
        assert "api" in ls(mnt / "acme")

        u = subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, text=True,
                           timeout=10)
        assert u.returncode == 0, u.stderr
        deadline = time.monotonic() + EXIT_DEADLINE
        status = None
        while time.monotonic() < deadline:
            pid, st = os.waitpid(daemon, os.WNOHANG)
            if pid == daemon:
                status = st
                break
            time.sleep(0.05)
        assert status is not None, "the bbfs daemon did not exit after fusermount3 -u"
        daemon = None
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, \
            f"daemon wait status {status:#x}"
        assert not mountinfo_has(mnt)
    finally:
        force_unmount(mnt)
        if daemon:
            try:
                os.kill(daemon, signal.SIGKILL)
                os.waitpid(daemon, 0)
            except OSError:
                pass
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def test_modes_of_files_dirs_and_links(mount):
    ws = mount.ws
    assert stat_fmt(mount.path, "%F %a") == "directory 555"
    assert stat_fmt(ws, "%F %a") == "directory 555"
    assert stat_fmt(ws / "api", "%F %a") == "directory 555"
    for f in ("repository.json", "description", "clone-url"):
        assert stat_fmt(ws / "api" / f, "%F %a") == "regular file 444", f
    for d in ("branches", "tags", "commits"):
        assert stat_fmt(ws / "api" / d, "%F %a") == "directory 555", d
    assert stat_fmt(ws / "api" / "HEAD", "%F") == "symbolic link"
    assert stat_fmt(ws / "api" / "branches" / "main", "%F") == "symbolic link"
    assert stat_fmt(ws / "api" / "branches" / "main", "%F %a", follow=True) == "directory 555"
    assert stat_fmt(ws / "api" / "branches" / "main" / "commit.json", "%F %a",
                    follow=True) == "regular file 444"


def test_repository_files(mount, server):
    """A repository directory holds the files DESIGN.md names."""
    names = set(ls(mount.ws / "api"))
    assert {"repository.json", "description", "clone-url", "HEAD", "branches", "tags",
            "commits"} <= names


def test_single_threaded_mount_serves(mount_factory, server, demo, tmp_path):
    """-s: FUSE answers one request at a time; the tree is the same, and several readers
    at once are each served (one after the other), none starves."""
    m = mount_factory(server, args=["-s"])
    assert sorted(n for n in ls(m.ws) if not n.endswith(".json")) == \
        server.repo_slugs(project="PLAT")
    assert cat(m.ws / "api" / "repository.json") == \
        json_file(server.get_json("repositories/acme/api"))
    tip = demo.branches("api")["main"]
    assert out(["readlink", m.ws / "api" / "HEAD"]).strip() == "branches/main"
    files = demo.git("api", "ls-tree", "-r", "--name-only", tip).split()
    assert len(files) >= 4, files
    procs = []
    for i, name in enumerate(files[:4]):
        with open(tmp_path / f"out{i}", "wb") as fh:
            procs.append(subprocess.Popen(["cat", m.ws / "api" / "commits" / tip / "tree" / name],
                                          stdin=subprocess.DEVNULL, stdout=fh,
                                          stderr=subprocess.PIPE, env=user_env()))
    for p in procs:
        try:
            assert p.wait(60) == 0, p.stderr.read()   # hang guard
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            p.stderr.close()
    for i, name in enumerate(files[:4]):
        want = subprocess.run(["git", "--git-dir", demo.git_dir("api"), "show", f"{tip}:{name}"],
                              capture_output=True, check=True, timeout=30).stdout
        assert (tmp_path / f"out{i}").read_bytes() == want, name

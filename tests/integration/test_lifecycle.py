"""
The daemon's life cycle beyond test_mount.py (foreground, background, SIGTERM):
SIGINT unmounts and exits 0; `fusermount3 -u` while a big read is in flight
ends bbfs with status 0 and the reader gets the whole file and EOF, or an
error after a correct prefix, never a hang and never a silently short file;
a dead mount point left by a SIGKILLed bbfs ("Transport endpoint is not
connected") is refused at start with a hint, before any request.
"""

import hashlib
import json
import signal
import subprocess
import time

import pytest

from conftest import (EXIT_DEADLINE, PYTHON, bbfs_binary, describe, force_unmount, ls,
                      mountinfo_has, scan_stderr, user_env, write_token_file)


def test_sigint_unmounts_and_exits_zero(mount):
    assert "api" in ls(mount.ws)
    mount.closed = True  # this test does the teardown itself
    try:
        mount.proc.send_signal(signal.SIGINT)
        try:
            rc = mount.proc.wait(EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail("bbfs did not exit within the deadline after SIGINT")
        deadline = time.monotonic() + 5
        while mountinfo_has(mount.path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not mountinfo_has(mount.path), "SIGINT left the mount behind"
        assert rc == 0, f"exit status {rc} after SIGINT:\n{mount.stderr()}"
        assert scan_stderr(mount.stderr()) == []
    finally:
        force_unmount(mount.path, mount.proc)


def active(server):
    import json
    import urllib.request
    with urllib.request.urlopen(server.base + "/_fake/active", timeout=10) as r:
        return json.loads(r.read())


# Reads a file to its end or its first error; prints what it got as JSON: the bytes read,
# their SHA-256, and "EOF" or the errno's name.
READER = r"""
import errno, hashlib, json, os, sys
h, n, end = hashlib.sha256(), 0, "EOF"
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
except OSError as e:
    end = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps({"bytes": n, "sha256": h.hexdigest(), "end": end}))
"""


def prefix_sha256(n):
    """SHA-256 of the first N bytes of big/large.bin, from the fixture's generator."""
    import fixture
    h, left = hashlib.sha256(), n
    for chunk in fixture.large_file_chunks():
        if left <= 0:
            break
        h.update(chunk[:left])
        left -= len(chunk)
    return h.hexdigest()


@pytest.mark.timeout(120)
def test_unmount_while_reading_ends_promptly(mount_factory, files_server, files_demo):
    import fixture
    sha = files_demo.branches("files")["main"]
    path = "big/large.bin"
    m = mount_factory(files_server, target="acme")
    f = m.ws / "files" / "commits" / sha / "tree" / path
    # the download takes ~8 s (60 MiB at 8 MiB/s). bbfs does not handle FUSE interrupts, so
    # a reader waiting for it can end only once it is done: that bounds the wait below
    files_server.knobs(slow_body={"path_contains": f"/src/{sha}/{path}",
                                  "bytes_per_second": 8 << 20, "count": -1})
    reader = subprocess.Popen([PYTHON, "-c", READER, str(f)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=user_env())
    try:
        end = time.monotonic() + 30
        while not any(path in str(a.get("path", "")) and (a.get("bytes") or 0) > 0
                      for a in active(files_server)):
            if reader.poll() is not None:
                pytest.fail(f"cat ended ({reader.returncode}) before the download was seen")
            if time.monotonic() > end:
                pytest.fail("the download never showed up in /_fake/active")
            time.sleep(0.1)
        m.closed = True   # this test unmounts itself
        # a plain unmount would say "busy" while the reader holds the file open; the lazy
        # one detaches at once and the kernel ends the session when the last user lets go
        u = subprocess.run(["fusermount3", "-u", "-z", str(m.path)], capture_output=True,
                           text=True, timeout=10)
        assert u.returncode == 0, u.stderr
        try:
            got, err = reader.communicate(timeout=60)    # hang guard
        except subprocess.TimeoutExpired:
            pytest.fail("the reader hung after the unmount")
        try:
            rc = m.proc.wait(30)                         # hang guard
        except subprocess.TimeoutExpired:
            pytest.fail("bbfs did not exit within 30 s of the reader's end")
        assert rc == 0, f"bbfs exited {rc}:\n{m.stderr()}"
        assert reader.returncode == 0, err
        got = json.loads(got)
        # the whole file, right, then EOF; or a correct prefix, then an error (the session
        # went away); a short file ending in EOF would be a silent truncation
        if got["end"] == "EOF":
            assert got["bytes"] == fixture.LARGE_SIZE, f"EOF after {got['bytes']} bytes"
        else:
            assert got["end"] in ("ENOTCONN", "ECONNABORTED", "EIO"), got
        assert got["sha256"] == prefix_sha256(got["bytes"]), \
            f"wrong bytes in the first {got['bytes']} the reader got"
        assert not mountinfo_has(m.path)
        assert scan_stderr(m.stderr()) == [], m.stderr()
    finally:
        files_server.knobs(slow_body=None)
        if reader.poll() is None:
            reader.kill()
            reader.wait(10)
        force_unmount(m.path, m.proc)


def test_dead_mountpoint_is_detected_at_start(mount_factory, server, tmp_path):
    m = mount_factory(server)
    assert "api" in ls(m.ws)
    m.closed = True
    m.proc.send_signal(signal.SIGKILL)
    m.proc.wait(10)
    tf = write_token_file(tmp_path / "token-dead", "demo-token")
    proc = None
    try:
        r = subprocess.run(["stat", str(m.path)], capture_output=True, text=True, timeout=10)
        assert "not connected" in r.stderr, r.stderr   # the dead mount we meant to make
        mark = server.log.mark()
        proc = subprocess.Popen(
            [bbfs_binary(), "-f", "-o",
             f"api_url={server.url},token_file={tf},cache_dir={tmp_path / 'c2'}",
             "acme/PLAT", str(m.path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=user_env())
        try:
            _, err = proc.communicate(timeout=30)   # hang guard
        except subprocess.TimeoutExpired:
            pytest.fail("bbfs did not refuse the dead mount point: it mounted on top of it")
        err = err.decode(errors="replace")
        assert proc.returncode != 0
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, err
        assert "not connected" in lines[0] or "dead mount" in lines[0], lines[0]
        assert "fusermount3 -u" in lines[0], "no hint how to clean up"
        # refused before the start-up request: the API was not asked anything
        assert server.log.since(mark) == [], describe(server.log.since(mark))
    finally:
        if proc is not None and proc.poll() is None:
            subprocess.run(["fusermount3", "-u", "-z", str(m.path)], capture_output=True,
                           timeout=10)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for _ in range(3):          # the new mount on top (if any), then the dead one
            force_unmount(m.path, m.proc)
        assert not mountinfo_has(m.path)

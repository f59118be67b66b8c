"""
The daemon's life cycle beyond test_mount.py (foreground, background, SIGTERM):
SIGINT unmounts and exits 0; `fusermount3 -u` while a big read is in flight
ends bbfs promptly with status 0 and the reader gets an error or EOF, never
a hang; a dead mount point left by a SIGKILLed bbfs ("Transport endpoint is
not connected") is refused at start with a hint.
"""

import signal
import subprocess
import time

import pytest

from conftest import (EXIT_DEADLINE, bbfs_binary, force_unmount, ls, mountinfo_has,
                      scan_stderr, user_env, write_token_file)


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


@pytest.mark.timeout(120)
def test_unmount_while_reading_ends_promptly(mount_factory, files_server, files_demo):
    sha = files_demo.branches("files")["main"]
    path = "big/large.bin"
    m = mount_factory(files_server, target="acme", allow=[r".*"])
    f = m.ws / "files" / "commits" / sha / "tree" / path
    # the download takes ~8 s (60 MiB at 8 MiB/s). bbfs does not handle FUSE interrupts, so
    # a reader waiting for it can end only once it is done: that bounds the wait below
    files_server.knobs(slow_body={"path_contains": f"/src/{sha}/{path}",
                                  "bytes_per_second": 8 << 20, "count": -1})
    reader = subprocess.Popen(["cat", str(f)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=user_env())
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
        t0 = time.monotonic()
        # a plain unmount would say "busy" while cat holds the file open; the lazy one
        # detaches at once and the kernel ends the session when the last user lets go
        u = subprocess.run(["fusermount3", "-u", "-z", str(m.path)], capture_output=True,
                           text=True, timeout=10)
        assert u.returncode == 0, u.stderr
        try:
            reader.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("the reader hung after the unmount")
        try:
            rc = m.proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("bbfs did not exit within 30 s of the unmount")
        took = time.monotonic() - t0
        assert rc == 0, f"bbfs exited {rc}:\n{m.stderr()}"
        # the reader got an error or EOF (its bytes are not checked: it may have been cut)
        assert reader.returncode is not None
        assert took < 30, took
        assert not mountinfo_has(m.path)
        assert not [ln for ln in m.stderr().splitlines()
                    if "Sanitizer" in ln or "Segmentation" in ln], m.stderr()
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
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [bbfs_binary(), "-f", "-o",
             f"api_url={server.url},token_file={tf},cache_dir={tmp_path / 'c2'}",
             "acme/PLAT", str(m.path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=user_env())
        try:
            _, err = proc.communicate(timeout=8)
        except subprocess.TimeoutExpired:
            pytest.fail("bbfs did not refuse the dead mount point: it mounted on top of it")
        err = err.decode(errors="replace")
        assert proc.returncode != 0
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, err
        assert "not connected" in lines[0] or "dead mount" in lines[0], lines[0]
        assert "fusermount3 -u" in lines[0], "no hint how to clean up"
        assert time.monotonic() - t0 < 5
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

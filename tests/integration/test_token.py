"""
Where the token comes from (token_file, BITBUCKET_TOKEN, a no-echo prompt),
and the one start-up check: a bad token, an unknown workspace or project, an
unreachable or insecure API, or a token on the command line exit non-zero
with one clear line and mount nothing.
"""

import os
import pty
import re
import select
import signal
import socket
import time

import pytest

from conftest import (EXIT_DEADLINE, MOUNT_DEADLINE, bbfs_binary, cat, errno_of, force_unmount,
                      free_closed_port, ls, mountinfo_has, one_clear_line, run_bbfs_expect_failure, scan_stderr,
                      user_env, write_token_file)


def opts(server, tmp_path, *more, token_file=None):
    o = [f"api_url={server.url}", f"cache_dir={tmp_path / 'cache'}"]
    if token_file:
        o.append(f"token_file={token_file}")
    return o + list(more)


def test_token_file_0600_and_0400_work(mount_factory, server):
    m = mount_factory(server)
    assert "api" in ls(m.ws)
    # a token file readable by its owner only, even read-only, is fine
    tf = m.path.parent / "token0"
    os.chmod(tf, 0o400)
    m2 = mount_factory(server, options=[f"token_file={tf}"], token_via="none")
    assert "api" in ls(m2.ws)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_readable_token_file_is_refused(server, tmp_path, mode):
    tf = write_token_file(tmp_path / "token", "demo-token", mode)
    mark = server.log.mark()
    rc, err, _ = run_bbfs_expect_failure("acme/PLAT", tmp_path / "mnt",
                                         opts(server, tmp_path, token_file=tf))
    assert rc != 0
    line = one_clear_line(err)
    assert str(tf) in line or "token" in line.lower(), line
    assert "demo-token" not in err
    assert server.log.since(mark) == [], "the token was used although refused"


def test_missing_token_file_is_refused(server, tmp_path):
    rc, err, _ = run_bbfs_expect_failure(
        "acme/PLAT", tmp_path / "mnt",
        opts(server, tmp_path, token_file=tmp_path / "does-not-exist"))
    assert rc != 0
    one_clear_line(err)


def test_token_from_environment(mount_factory, server):
    m = mount_factory(server, token="demo-token", token_via="env")
    assert "api" in ls(m.ws)
    entries = server.log.entries()
    assert entries and all(e["auth"] for e in entries), entries


def test_token_file_wins_over_environment(mount_factory, server):
    m = mount_factory(server, token="demo-token", extra_env={"BITBUCKET_TOKEN": "wrong-token"})
    assert "api" in ls(m.ws)


def test_no_token_without_terminal_is_refused(server, tmp_path):
    rc, err, _ = run_bbfs_expect_failure("acme/PLAT", tmp_path / "mnt", opts(server, tmp_path))
    assert rc != 0
    one_clear_line(err)


def test_token_prompt_on_terminal_does_not_echo(server, tmp_path):
    """With stdin a terminal and no other source, bbfs prompts without echo."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    argv = [bbfs_binary(), "-f", "-o", ",".join(opts(server, tmp_path)), "acme/PLAT", str(mnt)]
    env = user_env()
    pid, fd = pty.fork()
    if pid == 0:  # child: the pty is its controlling terminal
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    output = b""
    status = None

    def drain(seconds):
        nonlocal output
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    return
                if not chunk:
                    return
                output += chunk

    try:
        # wait for a prompt (anything printed), then type the token
        end = time.monotonic() + 10
        while not output and time.monotonic() < end:
            drain(0.1)
        assert output, "bbfs printed no prompt"
        assert re.search(rb"token", output, re.IGNORECASE), output
        os.write(fd, b"demo-token\n")
        end = time.monotonic() + MOUNT_DEADLINE
        while not mountinfo_has(mnt) and time.monotonic() < end:
            drain(0.05)
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                status = st
                pytest.fail(f"bbfs exited before mounting: {output!r}")
        assert mountinfo_has(mnt), output
        assert "api" in ls(mnt / "acme")
        drain(0.2)
        assert b"demo-token" not in output, f"the token was echoed: {output!r}"
        r = os.system(f"fusermount3 -u '{mnt}'")
        assert r == 0
        end = time.monotonic() + EXIT_DEADLINE
        while time.monotonic() < end:
            drain(0.05)
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                status = st
                break
        assert status is not None, "bbfs did not exit after fusermount3 -u"
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, output)
        assert not scan_stderr(output.decode(errors="replace"))
    finally:
        force_unmount(mnt)
        if status is None:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        os.close(fd)


def test_bad_token_is_refused_with_one_request(server, tmp_path):
    tf = write_token_file(tmp_path / "token", "s3cret-bad-token")
    mark = server.log.mark()
    rc, err, _ = run_bbfs_expect_failure("acme/PLAT", tmp_path / "mnt",
                                         opts(server, tmp_path, token_file=tf))
    assert rc != 0
    line = one_clear_line(err)
    assert re.search(r"401|reject|invalid|unauthori", line, re.IGNORECASE), line
    assert "s3cret-bad-token" not in err
    reqs = server.log.since(mark)
    assert len(reqs) == 1, reqs
    assert reqs[0]["status"] == 401


def test_bad_token_from_environment_is_refused(server, tmp_path):
    rc, err, _ = run_bbfs_expect_failure(
        "acme/PLAT", tmp_path / "mnt", opts(server, tmp_path),
        env=user_env(BITBUCKET_TOKEN="s3cret-bad-token"))
    assert rc != 0
    one_clear_line(err)
    assert "s3cret-bad-token" not in err


@pytest.mark.parametrize("target", ["acme/NOPE", "nosuchws/PLAT", "nosuchws"])
def test_unknown_workspace_or_project_is_refused(server, tmp_path, target):
    tf = write_token_file(tmp_path / "token", "demo-token")
    mark = server.log.mark()
    rc, err, _ = run_bbfs_expect_failure(target, tmp_path / "mnt",
                                         opts(server, tmp_path, token_file=tf))
    assert rc != 0
    one_clear_line(err)
    assert len(server.log.since(mark)) == 1


def test_pat_token_cannot_mount_other_project(server, tmp_path):
    tf = write_token_file(tmp_path / "token", "pat-token")
    rc, err, _ = run_bbfs_expect_failure("acme/OPS", tmp_path / "mnt",
                                         opts(server, tmp_path, token_file=tf))
    assert rc != 0
    one_clear_line(err)


def test_unreachable_api_is_refused_within_timeout(tmp_path):
    tf = write_token_file(tmp_path / "token", "demo-token")
    port = free_closed_port()
    rc, err, elapsed = run_bbfs_expect_failure(
        "acme/PLAT", tmp_path / "mnt",
        [f"api_url=http://127.0.0.1:{port}/2.0", f"token_file={tf}", "timeout=3",
         f"cache_dir={tmp_path / 'cache'}"], timeout=20)
    assert rc != 0
    one_clear_line(err)
    assert elapsed < 3 + 5, elapsed


def non_loopback_address():
    """An IPv4 address of this machine that is not a loopback one (the source address of
    its default route; a UDP connect sends nothing), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        addr = s.getsockname()[0]
    return None if addr.startswith("127.") else addr


@pytest.mark.parametrize("url", ["http://example.com/2.0", "http://10.0.0.1/2.0",
                                 "ftp://127.0.0.1/2.0", "http://LISTENER/2.0",
                                 "ftp://127.0.0.1:LISTENER_PORT/2.0"])
def test_insecure_api_url_is_refused(tmp_path, url):
    """Refused with one line, and without touching the network: where the URL names a
    listener of ours (a non-loopback address of this machine; a loopback one with ftp://),
    not even a connection reaches it."""
    tf = write_token_file(tmp_path / "token", "demo-token")
    listener = None
    if "LISTENER" in url:
        host = "127.0.0.1" if url.startswith("ftp:") else non_loopback_address()
        if host is None:
            pytest.skip("this machine has no non-loopback IPv4 address")
        listener = socket.create_server((host, 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        url = url.replace("LISTENER_PORT", str(port)).replace("LISTENER", f"{host}:{port}")
    try:
        rc, err, _ = run_bbfs_expect_failure(
            "acme/PLAT", tmp_path / "mnt",
            [f"api_url={url}", f"token_file={tf}", "timeout=3", f"cache_dir={tmp_path / 'cache'}"],
            timeout=20)
        assert rc != 0
        one_clear_line(err)
        if listener is not None:
            # bbfs has exited: a connection it made would be waiting in the backlog
            try:
                conn, peer = listener.accept()
                conn.close()
                pytest.fail(f"bbfs connected to {url} ({peer}) before refusing it")
            except BlockingIOError:
                pass
    finally:
        if listener is not None:
            listener.close()


def test_token_option_is_refused(server, tmp_path):
    mark = server.log.mark()
    rc, err, _ = run_bbfs_expect_failure(
        "acme/PLAT", tmp_path / "mnt", opts(server, tmp_path, "token=demo-token"))
    assert rc != 0
    assert "token_file" in err
    assert server.log.since(mark) == []


def test_token_never_logged_in_debug_mode(mount_factory, server, demo):
    """A walk in debug mode (-d) with a file read, a diff, a pull request and failing
    requests: the token is nowhere in bbfs's stderr, its cache directory, or the fake
    server's request log and output."""
    m = mount_factory(server, args=["-d"], allow=[r".*"], options=["timeout=3"])
    assert "api" in ls(m.ws)
    api = m.ws / "api"
    ls(api / "branches")
    ls(api / "commits")
    tip = demo.branches("api")["main"]
    assert cat(api / "commits" / tip / "tree" / "README.md") == \
        demo.git("api", "show", f"{tip}:README.md").encode()
    assert cat(api / "commits" / tip / "diff")
    cat(api / "pullrequests" / "1" / "title")
    assert cat(api / "pullrequests" / "1" / "diff")
    # failures: a 503 for good, an unknown commit (404)
    server.knobs(fail={"status": 503, "count": -1, "path_contains": "/refs/tags"})
    assert errno_of("listdir", api / "tags") == "EIO"
    server.knobs(fail=None)
    assert errno_of("stat", api / "commits" / ("0" * 40)) in ("ENOENT", "EIO")
    assert m.unmount() == []
    token = b"demo-token"
    with open(m.stderr_path, "rb") as f:
        assert token not in f.read()
    server.stop()     # flushes and closes its log
    places = [m.cache, server.log.path, server.out_path]
    nfiles = 0
    for place in places:
        for d, _, names in os.walk(place) if os.path.isdir(place) else [(os.path.dirname(place),
                                                                       [], [os.path.basename(place)])]:
            for n in names:
                with open(os.path.join(d, n), "rb") as f:
                    assert token not in f.read(), f"the token is in {os.path.join(d, n)}"
                nfiles += 1
    assert nfiles >= 5, nfiles

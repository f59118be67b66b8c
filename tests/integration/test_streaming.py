"""
Streaming downloads (issue 16): a file's content is read as it arrives.

- reads at odd offsets and of odd sizes while a slow download is under way give git's
  bytes, and eight readers at different offsets (the last MiB among them) share that one
  download;
- `head -c 4096` of an uncached big file returns while the fake server is still sending
  the body (it is in /_fake/active after head ended), and the download stops once its only
  reader has gone (the log's record says fewer bytes were sent than the body holds);
- a download cut in the middle: bytes read before the cut are right, the reads waiting
  beyond it get EIO, and a later read, also of the same open file, gets the right bytes;
- bbfs killed (SIGKILL) after a reader had the start of a file: a remount serves no torn
  entry: the file is downloaded again, whole and right.

Expected bytes come from git (the `files` fixture repository); orderings and counts from
the fake server's request log and its list of answers in flight, never from timings.
"""

import json
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import (PYTHON, cat, describe, mountinfo_has, run, scan_stderr,
                      stat_fmt, user_env)
from helpers import CUT_SHORT, failed_get
from test_tree import SLUG, Repo, clear_failures, requests_for, sha256_file, tree_of

BIG_TIMEOUT = 60
HANG_GUARD = 30      # a hang guard, far above what any of these waits should take
OUTAGE_PAUSE = 10    # api/http.h HTTP_OUTAGE_PAUSE_SECONDS: after a failure for good, calls fail
                     # at once for this long (issue 14), a cut download included


@pytest.fixture
def repo(files_demo):
    return Repo(files_demo)


def active(server):
    """The answers the fake server is sending right now (/_fake/active)."""
    with urllib.request.urlopen(server.base + "/_fake/active", timeout=10) as r:
        return json.loads(r.read() or b"[]")


def in_flight(server, sha, path):
    return [a for a in active(server) if a.get("path", "").endswith(f"/src/{sha}/{path}")]


def wait_until(what, cond, guard=HANG_GUARD):
    """Polls cond() until it is true; a hang guard, not a timing assertion."""
    end = time.monotonic() + guard
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {guard} s")


def git_blob_file(repo, obj, dest):
    """The blob's bytes in a file (the 60 MiB one is not held in memory)."""
    with open(dest, "wb") as f:
        subprocess.run(["git", "--git-dir", repo.git_dir, "cat-file", "blob", obj], stdout=f,
                       check=True, timeout=BIG_TIMEOUT)
    return dest


def piece(path, off, length):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(length)


# One program, run by each reader: opens PATH, preads each (offset, length) of the JSON list
# in turn and writes the pieces to OUT, each as a line: length, then the bytes.
PREAD_PROG = r"""
import json, os, sys
path, ranges, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
fd = os.open(path, os.O_RDONLY)
with open(out, "wb") as f:
    for off, length in ranges:
        data = b""
        while len(data) < length:
            got = os.pread(fd, length - len(data), off + len(data))
            if not got:
                break
            data += got
        f.write(b"%d\n" % len(data) + data)
os.close(fd)
"""


# Reads LENGTH bytes at OFF of PATH, prints the errno name of the failure (or OK), waits for a
# line on stdin, reads them again from the same open file, into OUT.
READ_TWICE_PROG = r"""
import errno, os, sys
path, off, length, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
fd = os.open(path, os.O_RDONLY)
def read():
    data = b""
    while len(data) < length:
        got = os.pread(fd, length - len(data), off + len(data))
        if not got:
            break
        data += got
    return data
try:
    read()
    print("OK", flush=True)
except OSError as e:
    print(errno.errorcode[e.errno], flush=True)
sys.stdin.readline()
with open(out, "wb") as f:
    f.write(read())
"""


# Opens PATH, says so, and keeps it open until stdin ends.
HOLD_PROG = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print("open", flush=True)
sys.stdin.read()
os.close(fd)
"""


def read_pieces(out):
    res, data = [], open(out, "rb").read()
    while data:
        head, data = data.split(b"\n", 1)
        n = int(head)
        res.append(data[:n])
        data = data[n:]
    return res


def start_reader(f, ranges, out):
    return subprocess.Popen([PYTHON, "-c", PREAD_PROG, str(f), json.dumps(ranges), str(out)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=user_env())


def finish(procs, guard=BIG_TIMEOUT):
    try:
        for p in procs:
            p.wait(guard)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    for p in procs:
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
        assert p.returncode == 0, err


def slow(server, sha, path, rate):
    server.knobs(slow_body={"path_contains": f"/src/{sha}/{path}", "bytes_per_second": rate,
                            "count": -1})


def test_odd_reads_and_eight_readers_share_one_slow_download(mount_factory, files_server, repo,
                                                             tmp_path):
    sha = repo.main()
    path, obj, size = repo.biggest(sha)
    assert size >= 60 << 20, (path, size)
    want = git_blob_file(repo, obj, tmp_path / "want")
    m = mount_factory(files_server, target="acme")
    f = tree_of(m, sha) / path
    assert int(stat_fmt(f, "%s")) == size          # from the listing: nothing downloaded
    slow(files_server, sha, path, 12 << 20)        # about 5 s for the whole body
    mark = files_server.log.mark()
    # one reader jumping about (the end first, bytes past it), seven at offsets of their own
    odd = [(size - 1, 1), (4095, 3), (12345, 70001), (size // 2 + 1, 12345),
           (size - 1_000_001, 999_999), (0, 1), (size, 10), (size + 100, 5)]
    spread = [[(k * (size // 7) + 511, 1 << 20)] for k in range(6)] + [[(size - (1 << 20), 1 << 20)]]
    outs = [tmp_path / f"out{i}" for i in range(8)]
    procs = [start_reader(f, odd, outs[0])]
    procs += [start_reader(f, ranges, o) for ranges, o in zip(spread, outs[1:])]
    finish(procs)
    clear_failures(files_server)
    for ranges, o in zip([odd] + spread, outs):
        got = read_pieces(o)
        assert len(got) == len(ranges)
        for (off, length), data in zip(ranges, got):
            assert data == piece(want, off, length), (o, off, length, len(data))
    downloads = requests_for(files_server.log.since(mark), sha, path)
    assert len(downloads) == 1, describe(downloads)
    assert downloads[0].get("slow_body"), "the download should have been the slowed one"
    # whole and right in the store now: read again without a request
    mark = files_server.log.mark()
    r = run(f"cat '{f}' > '{tmp_path / 'again'}'", timeout=BIG_TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert sha256_file(tmp_path / "again") == sha256_file(want)
    assert requests_for(files_server.log.since(mark), sha, path) == []


def test_head_returns_while_the_body_is_sent_and_the_download_stops(mount_factory, files_server,
                                                                    repo, tmp_path):
    sha = repo.main()
    path, obj, size = repo.biggest(sha)
    want = piece(git_blob_file(repo, obj, tmp_path / "want"), 0, 4096)
    m = mount_factory(files_server, target="acme")
    f = tree_of(m, sha) / path
    assert int(stat_fmt(f, "%s")) == size
    slow(files_server, sha, path, 1 << 20)         # a minute for the whole body
    mark = files_server.log.mark()
    # a reader that only holds the file open keeps the download going after head's end
    holder = subprocess.Popen([PYTHON, "-c", HOLD_PROG, str(f)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=user_env())
    try:
        assert holder.stdout.readline() == b"open\n"
        r = run(["head", "-c", "4096", f], binary=True, timeout=HANG_GUARD)
        sending = in_flight(files_server, sha, path)   # right after head ended
        assert r.returncode == 0, r.stderr
        assert r.stdout == want
        assert sending, "head ended only after the body had been sent"
        assert sending[0]["bytes"] < size, sending
    finally:
        holder.stdin.close()                           # its last reader goes ...
        holder.wait(HANG_GUARD)
        holder.stdout.close()
    # ... and bbfs gives the download up, leaving nothing behind
    wait_until("the download given up", lambda: not in_flight(files_server, sha, path))
    downloads = requests_for(files_server.log.since(mark), sha, path)
    assert len(downloads) == 1, describe(downloads)
    assert downloads[0]["bytes"] < size, downloads[0]
    wait_until("tmp/ emptied", lambda: not [p for p in m.cache.rglob("tmp/*")])
    clear_failures(files_server)


def test_a_cut_download_fails_the_waiting_reads_and_a_later_read_starts_anew(
        mount_factory, files_server, repo, tmp_path):
    sha = repo.main()
    path, obj, size = repo.biggest(sha)
    want = git_blob_file(repo, obj, tmp_path / "want")
    cause = failed_get(rf"repositories/acme/{SLUG}/src/{sha}/{path}", CUT_SHORT)
    m = mount_factory(files_server, target="acme", options=["timeout=5"], allow=[cause])
    f = tree_of(m, sha) / path
    assert int(stat_fmt(f, "%s")) == size
    # every answer cut at half the body: the reader of its end gets EIO, then (the server
    # well again) reads it again on the same open file
    files_server.knobs(reset={"path_contains": f"/src/{sha}/{path}", "count": -1})
    slow(files_server, sha, path, 32 << 20)
    early, last = [(0, 4096), (1 << 20, 4096)], (size - (1 << 20), 1 << 20)
    retry = subprocess.Popen([PYTHON, "-c", READ_TWICE_PROG, str(f), str(last[0]), str(last[1]),
                              str(tmp_path / "retry")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=user_env())
    reader = start_reader(f, early, tmp_path / "early")
    try:
        finish([reader])
        line = retry.stdout.readline()
        assert line == b"EIO\n", line
        clear_failures(files_server)
        time.sleep(OUTAGE_PAUSE + 0.5)  # a read within the pause fails at once, by design
        mark = files_server.log.mark()
        retry.stdin.write(b"go\n")
        retry.stdin.close()
        finish([retry])
    finally:
        if retry.poll() is None:
            retry.kill()
            retry.wait(10)
        retry.stdout.close()
    for (off, length), data in zip(early, read_pieces(tmp_path / "early")):
        assert data == piece(want, off, length)
    # the later read of the same open file: a download of its own, the right bytes
    assert (tmp_path / "retry").read_bytes() == piece(want, *last)
    assert len(requests_for(files_server.log.since(mark), sha, path)) == 1


def test_kill_9_after_a_streamed_read_leaves_no_torn_entry(mount_factory, files_server, repo,
                                                           tmp_path):
    sha = repo.main()
    path, obj, size = repo.biggest(sha)
    want = git_blob_file(repo, obj, tmp_path / "want")
    cache = tmp_path / "shared-cache"
    m = mount_factory(files_server, target="acme", cache_dir=cache)
    f = tree_of(m, sha) / path
    slow(files_server, sha, path, 4 << 20)
    reader = subprocess.Popen(["cat", str(f)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=user_env())
    try:
        # the start of the file was served while the rest still comes
        r = run(["head", "-c", str(1 << 20), f], binary=True, timeout=HANG_GUARD)
        assert r.stdout == piece(want, 0, 1 << 20)
        assert in_flight(files_server, sha, path), "the download should still be under way"
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(10)
    finally:
        m.crash(reader)
        clear_failures(files_server)
    assert not mountinfo_has(m.path)
    bad = scan_stderr(m.stderr(), m.allow)
    assert not bad, bad
    m2 = mount_factory(files_server, target="acme", cache_dir=cache)
    assert [p for p in cache.rglob("tmp/*")] == []
    mark = files_server.log.mark()
    r = run(f"cat '{tree_of(m2, sha) / path}' > '{tmp_path / 'read'}'", timeout=BIG_TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert sha256_file(tmp_path / "read") == sha256_file(want)
    assert len(requests_for(files_server.log.since(mark), sha, path)) == 1


def test_a_small_file_opened_and_closed_unread_is_still_downloaded_once(mount_factory,
                                                                        files_server, repo):
    """The download an open starts goes on when its reader leaves early and little is left
    (asking again would cost a request of the hourly budget): an open closed unread (as
    `wc -c` does) then `cat` cost one download."""
    sha = repo.main()
    path, e = "data/blob.bin", repo.entries(sha)["data/blob.bin"]
    m = mount_factory(files_server, target="acme")
    f = tree_of(m, sha) / path
    assert int(stat_fmt(f, "%s")) == e[3]
    slow(files_server, sha, path, 64 << 10)         # the body still comes when wc has gone
    mark = files_server.log.mark()
    r = run([PYTHON, "-c", "import os, sys; os.close(os.open(sys.argv[1], os.O_RDONLY))", f],
            timeout=HANG_GUARD)
    assert r.returncode == 0, r.stderr
    assert in_flight(files_server, sha, path), "the download should still be under way"
    assert cat(f) == repo.blob(e[2])
    downloads = requests_for(files_server.log.since(mark), sha, path)
    assert len(downloads) == 1, describe(downloads)
    clear_failures(files_server)

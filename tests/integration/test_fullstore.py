"""
A full or unwritable store (issue 16): files are still read, and right, without being kept.

- a store on a tiny file system (a 1 MiB tmpfs the test mounts): a 60 MiB file and the 1 MiB
  LFS file read right; one download per open: read twice through one open file (its pages
  dropped in between, so that the second pass reaches bbfs) it is downloaded once, and a
  second open downloads it again, as nothing could be kept; a small file that fits is kept
  (read twice, downloaded once); exactly one log line, naming the store's path and the cause;
- a store whose file system is remounted read-only under a mount: a read-only open is not
  refused, the bytes are right, one log line naming the path and the cause.

Expected bytes come from git; counts from the fake server's request log.
"""

import hashlib
import re
import subprocess

import pytest

from conftest import PYTHON, cat, describe, errno_of, run, user_env
from test_streaming import repo  # noqa: F401 (the repo fixture)
from test_tree import requests_for, sha256_file, tree_of

BIG_TIMEOUT = 60


@pytest.fixture
def tmpfs(tmp_path):
    """make(size) -> a tmpfs mounted for the test; unmounted after the test's mounts (it is
    set up before them, so torn down after them), lazily, whatever happened."""
    mounted = []

    def make(size):
        d = tmp_path / f"tmpfs{len(mounted)}"
        d.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(d)],
                       check=True, timeout=10)
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=10)


def cannot_keep(store, cause):
    """bbfs's one line for a store that cannot keep downloads (store.c), for a mount whose
    cache_dir is STORE (its area is a directory named by a hash below it)."""
    return (rf"cannot keep downloads in the cache at {re.escape(str(store))}/[0-9a-f]+: "
            rf"{cause}; serving them without keeping them$")


def lines_matching(m, pattern):
    return [ln for ln in m.stderr().splitlines() if re.search(pattern, ln)]


# Reads PATH whole twice through one open file, dropping its pages in between (so that the
# second pass asks bbfs again), and prints the sha256 of each pass.
TWICE_PROG = r"""
import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for _ in range(2):
    h, off = hashlib.sha256(), 0
    while True:
        data = os.pread(fd, 1 << 20, off)
        if not data:
            break
        h.update(data)
        off += len(data)
    print(h.hexdigest(), flush=True)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)
"""


def test_a_tiny_store_still_serves_big_files_right(tmpfs, mount_factory, files_server, repo,
                                                   tmp_path):
    store = tmpfs("1m")
    sha = repo.main()
    big, obj, size = repo.biggest(sha)
    assert size > 8 << 20
    want = repo.blob_sha256(obj)
    line = cannot_keep(store, "No space left on device")
    m = mount_factory(files_server, target="acme", cache_dir=store, allow=[line])
    f = tree_of(m, sha) / big
    mark = files_server.log.mark()
    r = run([PYTHON, "-c", TWICE_PROG, f], timeout=BIG_TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [want, want]
    downloads = requests_for(files_server.log.since(mark), sha, big)
    assert len(downloads) == 1, describe(downloads)
    # nothing could be kept: a new open downloads it again
    mark = files_server.log.mark()
    r = run(f"cat '{f}' > '{tmp_path / 'again'}'", timeout=BIG_TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert sha256_file(tmp_path / "again") == want
    assert len(requests_for(files_server.log.since(mark), sha, big)) == 1
    # the LFS file (1 MiB, through the redirect) reads right too
    lfs = repo.entries(sha)["assets/model.lfs"]
    assert hashlib.sha256(cat(tree_of(m, sha) / "assets/model.lfs")).hexdigest() == \
        repo.blob_sha256(lfs[2])
    # a small file fits, and is kept
    small = repo.entries(sha)["data/blob.bin"]
    mark = files_server.log.mark()
    for _ in range(2):
        assert cat(tree_of(m, sha) / "data/blob.bin") == repo.blob(small[2])
    assert len(requests_for(files_server.log.since(mark), sha, "data/blob.bin")) == 1
    assert len(lines_matching(m, line)) == 1, m.stderr()


def test_an_unwritable_store_still_serves(tmpfs, mount_factory, files_server, repo):
    store = tmpfs("64m")
    sha = repo.main()
    line = cannot_keep(store, "Read-only file system")
    m = mount_factory(files_server, target="acme", cache_dir=store, allow=[line])
    assert ".gitignore" in run(["ls", "-A", tree_of(m, sha)], check=True).stdout
    subprocess.run(["mount", "-o", "remount,ro", str(store)], check=True, timeout=10)
    files = {p: e for p, e in repo.entries(sha).items()
             if e[1] == "blob" and e[0] != "120000" and p.count("/") == 0}
    for p, e in sorted(files.items())[:4]:
        assert errno_of("read", tree_of(m, sha) / p) == "OK", p
        assert cat(tree_of(m, sha) / p) == repo.blob(e[2]), p
    assert len(lines_matching(m, line)) == 1, m.stderr()

"""
-o cache_size=: the on-disk cache stays within its bound by evicting the
least recently used entries (file contents, diffs, stored API answers).
What was used last survives, also across a remount; what was evicted is
fetched again, correctly; a file bigger than the whole bound is still served.

Expected values come from git (the `files` fixture repository), never from
hard-coded hashes. Request counts come from the fake server's request log.
"""

import os
import stat
import time

from conftest import cat, describe
from test_tree import Repo, requests_for, sha256_file_via_cat, tree_of


def cache_entries(cache):
    """{path: size} of the stored entries (regular files under objects/) of a cache directory."""
    res = {}
    for d, _, names in os.walk(cache):
        if "objects" not in os.path.relpath(d, cache).split(os.sep):
            continue
        for n in names:
            p = os.path.join(d, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                res[p] = st.st_size
    return res


def with_blob(repo, path):
    """The commits (oldest first) at which path is a regular file, and its object there."""
    res = []
    for sha in reversed(repo.demo.rev_list("files", "--all")):
        e = repo.entries(sha).get(path)
        if e and e[1] == "blob":
            res.append((sha, e[2], e[3]))
    return res


BLOB = "data/blob.bin"  # 100 KiB at every commit since the second: one entry per commit
LIMIT = 256 << 10


def check_bound(cache, limit):
    """The store is within its bound, give or take the entry committed last."""
    entries = cache_entries(cache)
    assert entries, f"nothing stored under {cache}"
    total, largest = sum(entries.values()), max(entries.values())
    assert total <= limit + largest, f"{total} bytes stored, bound {limit}, largest {largest}"


def test_least_recently_used_go_first_and_come_back_right(mount_factory, files_server, files_demo,
                                                          tmp_path):
    repo = Repo(files_demo)
    blobs = with_blob(repo, BLOB)
    # several times the bound, so that the first ones read cannot all stay
    assert len(blobs) * 100 * 1024 > 3 * LIMIT, blobs
    cache = tmp_path / "small-cache"
    options = [f"cache_size={LIMIT // 1024}K"]
    m = mount_factory(files_server, target="acme", options=options, cache_dir=cache)
    for sha, obj, _ in blobs:
        assert cat(tree_of(m, sha) / BLOB) == repo.blob(obj), sha
        check_bound(cache, LIMIT)
    assert m.unmount() == []

    # What is stored survives the remount: the last one read costs nothing ...
    m2 = mount_factory(files_server, target="acme", options=options, cache_dir=cache)
    last_sha, last_obj, _ = blobs[-1]
    mark = files_server.log.mark()
    assert cat(tree_of(m2, last_sha) / BLOB) == repo.blob(last_obj)
    reqs = files_server.log.since(mark)
    assert requests_for(reqs, last_sha, BLOB) == [], describe(reqs)
    # ... and the first one, evicted long ago, is fetched again, right.
    first_sha, first_obj, _ = blobs[0]
    mark = files_server.log.mark()
    assert cat(tree_of(m2, first_sha) / BLOB) == repo.blob(first_obj)
    reqs = files_server.log.since(mark)
    assert len(requests_for(reqs, first_sha, BLOB)) == 1, describe(reqs)
    check_bound(cache, LIMIT)


def test_an_entry_read_again_outlives_older_ones(mount_factory, files_server, files_demo):
    """Reading marks an entry used: it stays while one stored after it but not read again goes."""
    repo = Repo(files_demo)
    (sha1, obj1, _), (sha2, obj2, _), (sha3, obj3, _) = with_blob(repo, BLOB)[:3]
    m = mount_factory(files_server, target="acme", options=[f"cache_size={LIMIT}"])
    f1, f2, f3 = (tree_of(m, sha) / BLOB for sha in (sha1, sha2, sha3))
    assert cat(f1) == repo.blob(obj1)
    assert cat(f2) == repo.blob(obj2)
    # both fit; a use is recorded only once an entry is a second old
    time.sleep(1.2)
    mark = files_server.log.mark()
    assert cat(f1) == repo.blob(obj1)
    # the third does not fit with both: the one used least recently goes
    assert cat(f3) == repo.blob(obj3)
    assert cat(f1) == repo.blob(obj1)
    reqs = files_server.log.since(mark)
    assert requests_for(reqs, sha1, BLOB) == [], describe(reqs)
    assert len(requests_for(reqs, sha3, BLOB)) == 1, describe(reqs)
    mark = files_server.log.mark()
    assert cat(f2) == repo.blob(obj2)
    reqs = files_server.log.since(mark)
    assert len(requests_for(reqs, sha2, BLOB)) == 1, describe(reqs)


def test_a_file_bigger_than_the_bound_is_served(mount_factory, files_server, files_demo, tmp_path):
    """It is kept until the next entry is stored, then evicted like any other."""
    repo = Repo(files_demo)
    sha = repo.main()
    path, obj, size = repo.biggest(sha)
    limit = 1 << 20
    assert size > limit, (path, size)
    cache = tmp_path / "tiny-cache"
    m = mount_factory(files_server, target="acme", options=["cache_size=1M"], cache_dir=cache)
    assert sha256_file_via_cat(tree_of(m, sha) / path, tmp_path / "big") == repo.blob_sha256(obj)
    assert max(cache_entries(cache).values()) == size
    small, small_obj = next((p, e[2]) for p, e in sorted(repo.entries(sha).items())
                            if e[1] == "blob" and e[0] == "100644" and 0 < e[3] < 4096
                            and "/" not in p)
    assert cat(tree_of(m, sha) / small) == repo.blob(small_obj)
    assert sum(cache_entries(cache).values()) <= limit

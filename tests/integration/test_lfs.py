"""
LFS files. Bitbucket answers the raw GET of a file stored in LFS with a 301 to its media
host, and whether a listing's `size` for it is the content's or the size of the pointer
git-lfs stores in its place is not known (bitbucket-api.md gotcha 4). The fake plays both
readings (`lfs_size`) with the real status (`lfs_status: 301`). Under either, `stat`,
`wc -c` and `cat` must agree with the content git has, and the token must not go to the
media host.

Uses the `files` repository (fixture.build_tree_fixture: assets/model.lfs, 1 MiB).
"""

import hashlib

import pytest

from conftest import cat, describe, out, stat_fmt
from test_tree import Repo, tree_of

LFS_FILE = "assets/model.lfs"


@pytest.fixture
def repo(files_demo):
    return Repo(files_demo)


def pointer(content):
    """The pointer file git-lfs would store for content."""
    return ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
            % (hashlib.sha256(content).hexdigest(), len(content))).encode()


@pytest.mark.parametrize("reading", ["content", "pointer"])
def test_lfs_size_and_bytes_under_both_readings(mount_factory, files_server, repo, reading):
    sha = repo.main()
    e = repo.entries(sha)[LFS_FILE]
    content = repo.blob(e[2])
    files_server.knobs(lfs_size=reading, lfs_status=301)
    # what the listing says under this reading
    listing = files_server.get_json(f"repositories/acme/files/src/{sha}/assets/")
    listed = {v["path"]: v for v in listing["values"]}[LFS_FILE]
    assert "lfs" in listed["attributes"]
    assert listed["size"] == (len(content) if reading == "content" else len(pointer(content)))
    m = mount_factory(files_server, target="acme")
    f = tree_of(m, sha) / LFS_FILE
    mark = files_server.log.mark()
    assert int(stat_fmt(f, "%s")) == len(content)
    assert int(out(["wc", "-c", f]).split()[0]) == len(content)
    assert cat(f) == content
    assert int(out(["sh", "-c", 'cat "$1" | wc -c', "sh", f]).strip()) == len(content)
    # one redirect (the real status), one download from the media host, without the token
    reqs = files_server.log.since(mark)
    api = [r for r in reqs if r["server"] == "api" and r["path"].endswith("/" + LFS_FILE)]
    lfs = [r for r in reqs if r["server"] == "lfs"]
    assert [(r["status"], r["auth"]) for r in api] == [(301, True)], describe(reqs)
    assert [(r["status"], r["auth"], r["bytes"]) for r in lfs] == [(200, False, len(content))], \
        describe(reqs)

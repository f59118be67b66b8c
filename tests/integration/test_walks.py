"""
A walk of a tree the API will not list recursively. bbfs answers a walk (find, ls -R,
grep -r) with one `max_depth` listing; Bitbucket answers one that is too big by timing
out with a 555 ("If the max_depth parameter is specified to be too large, the call will
time out and return a 555", bitbucket-api.md 3.7), the fake's `max_depth_limit` knob.
Whether the 555 comes at once or after bbfs's timeout, bbfs must list the tree
directory by directory instead, and show exactly git's tree.

Uses the `files` repository (fixture.build_tree_fixture).
"""

import collections
import urllib.parse

import pytest

from conftest import describe, errno_of, run
from test_tree import Repo, commit_dir, expected_kind, listing_requests, tree_of

TIMEOUT = 4              # -o timeout=: the most a refused recursive listing may cost
HTTP_MAX_ATTEMPTS = 5    # api/http.h: attempts of one request, retries included
FIND_TIMEOUT = 120       # a hang guard for the walk


@pytest.fixture
def repo(files_demo):
    return Repo(files_demo)


def walk(tree):
    """{path: (type letter, size of a file, target of a link)} as `find` sees the tree."""
    r = run(["find", tree, "-mindepth", "1", "-printf", r"%y\0%s\0%l\0%P\0"], binary=True,
            timeout=FIND_TIMEOUT)
    assert r.returncode == 0, r.stderr
    fields = r.stdout.split(b"\0")[:-1]
    res = {}
    for i in range(0, len(fields), 4):
        kind, size, target, path = (f.decode("utf-8", "surrogateescape") for f in fields[i:i + 4])
        res[path] = (kind, int(size) if kind == "f" else None, target if kind == "l" else None)
    return res


def git_tree(repo, sha):
    """The same, from git: submodules are empty directories, links have their targets."""
    res = {}
    for path, e in repo.entries(sha).items():
        kind = expected_kind(e)
        target = repo.blob(e[2]).decode("utf-8", "surrogateescape") if kind == "l" else None
        res[path] = (kind, e[3] if kind == "f" else None, target)
    return res


def is_recursive(entry):
    depth = urllib.parse.parse_qs(entry.get("query", "")).get("max_depth", ["1"])[0]
    return int(depth) > 1


@pytest.mark.parametrize("answer", ["555", "timeout"])
def test_a_walk_the_api_will_not_list_recursively_goes_directory_by_directory(
        mount_factory, files_server, repo, answer):
    sha = repo.main()
    want = git_tree(repo, sha)
    entries = 100
    assert len(want) > entries
    # "timeout": the 555 comes long after bbfs has given up waiting
    delay = 0 if answer == "555" else TIMEOUT + 30
    files_server.knobs(max_depth_limit={"entries": entries, "delay": delay})
    m = mount_factory(files_server, target="acme", options=[f"timeout={TIMEOUT}"],
                      allow=[r"HTTP 555", r"Timeout"])
    errno_of("stat", commit_dir(m, sha))     # the commit itself is not what is measured
    mark = files_server.log.mark()
    got = walk(tree_of(m, sha))
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    wrong = {p: (got[p], want[p]) for p in want if got[p] != want[p]}
    assert wrong == {}, wrong
    reqs = files_server.log.since(mark)
    # the recursive listing was tried, refused, and not tried again for this commit
    recursive = [e for e in reqs if is_recursive(e)]
    assert recursive and all(e.get("fault") == "max_depth_limit" for e in recursive), \
        describe(reqs)
    assert len(recursive) <= (HTTP_MAX_ATTEMPTS if answer == "555" else 1), describe(recursive)
    assert len({(e["path"], e["query"]) for e in recursive}) == 1, describe(recursive)
    # then every directory (submodules are none) was listed on its own, each page once
    dirs = {p for p, e in repo.entries(sha).items() if e[1] == "tree"} | {""}
    plain = [(p, e) for p, e in listing_requests(reqs, repo, sha) if not is_recursive(e)]
    assert {p for p, _ in plain} == dirs, sorted(dirs ^ {p for p, _ in plain})
    pages = collections.Counter((e["path"], e["query"]) for _, e in plain)
    assert all(n == 1 for n in pages.values()), describe([e for _, e in plain])
    assert all(e["status"] == 200 for _, e in plain), describe([e for _, e in plain])
    # the refusal is said once at most
    said = [ln for ln in m.stderr().splitlines() if ln.strip()]
    assert len(said) <= 1, said
    # a second walk costs nothing: every listing is kept
    mark = files_server.log.mark()
    assert walk(tree_of(m, sha)) == got
    again = [e for _, e in listing_requests(files_server.log.since(mark), repo, sha)]
    assert again == [], describe(again)


def test_a_small_tree_is_still_one_recursive_listing(mount_factory, files_server, repo):
    """The knob refuses only big recursive listings: under its limit a walk still costs
    the few requests of one (so the test above is about the limit, not the knob)."""
    sha = repo.main()
    want = git_tree(repo, sha)
    files_server.knobs(max_depth_limit={"entries": len(want)})
    m = mount_factory(files_server, target="acme", options=[f"timeout={TIMEOUT}"])
    errno_of("stat", commit_dir(m, sha))
    mark = files_server.log.mark()
    assert walk(tree_of(m, sha)) == want
    reqs = files_server.log.since(mark)
    recursive = [e for e in reqs if is_recursive(e)]
    assert recursive and all(e["status"] == 200 for e in recursive), describe(reqs)
    dirs = {p for p, e in repo.entries(sha).items() if e[1] == "tree"}
    plain = [p for p, e in listing_requests(reqs, repo, sha) if not is_recursive(e)]
    assert len(plain) < len(dirs) / 2, describe(reqs)

"""
Look-ups the tree answers from what it has (issue 12): a name inside a
submodule (a shell or git probing `vendor/lib/.git`) is not there, and asking
the API to list the submodule's path would be a request for a certain "no".

Expected values come from git (the `files` fixture repository).
"""

from conftest import describe, errno_of, ls
from test_tree import Repo, src_requests, tree_of


def test_nothing_below_a_submodule_costs_a_request(mount_factory, files_server, files_demo):
    repo = Repo(files_demo)
    sha = repo.merge()  # main after the topic branch with the submodule came in
    subs = [p for p, e in repo.entries(sha).items() if e[0] == "160000"]
    assert subs, "the fixture should hold a submodule"
    sub = subs[0]
    holder = sub.rsplit("/", 1)[0]
    m = mount_factory(files_server, target="acme")
    tree = tree_of(m, sha)
    assert sub.rsplit("/", 1)[1] in ls(tree / holder)
    assert ls(tree / sub) == []
    mark = files_server.log.mark()
    assert errno_of("stat", tree / sub / ".git") == "ENOENT"
    assert errno_of("stat", tree / sub / "a" / "b") == "ENOENT"
    reqs = files_server.log.since(mark)
    assert [e for _, _, e in src_requests(reqs, sha)] == [], describe(reqs)

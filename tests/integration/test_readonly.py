"""
Every modifying call gets EROFS, whatever it is aimed at, and none of them
changes what the tree shows or costs a request.
"""

import pytest

from conftest import describe, errno_of, ls, run


@pytest.fixture
def paths(mount):
    ws = mount.ws
    ls(ws / "api" / "commits")
    tip = [n for n in ls(ws / "api" / "commits")][0]
    return {
        "root": mount.path,
        "ws": ws,
        "repo": ws / "api",
        "file": ws / "api" / "repository.json",
        "wsjson": ws / "workspace.json",
        "link": ws / "api" / "branches" / "main",
        "branches": ws / "api" / "branches",
        "commitdir": ws / "api" / "commits" / tip,
        "commitfile": ws / "api" / "commits" / tip / "message",
    }


CALLS = [
    ("open_write", "file"),
    ("open_rdwr", "file"),
    ("open_trunc", "commitfile"),
    ("truncate", "file"),
    ("create", "repo", "new.txt"),
    ("create", "ws", "new.txt"),
    ("create", "root", "new.txt"),
    ("mkdir", "repo", "newdir"),
    ("mkdir", "ws", "newrepo"),
    ("mkdir", "branches", "newbranch"),
    ("unlink", "file"),
    ("unlink", "link"),
    ("unlink", "commitfile"),
    ("rmdir", "commitdir"),
    ("rmdir", "repo"),
    ("chmod", "file"),
    ("chmod", "repo"),
    ("lchown", "file"),
    ("utime", "file"),
    ("setxattr", "file"),
    ("mknod", "repo", "fifo"),
]


@pytest.mark.parametrize("call", CALLS, ids=lambda c: "-".join(c))
def test_modifying_call_is_erofs(paths, mount, call):
    op, what, *child = call
    p = paths[what] / child[0] if child else paths[what]
    assert errno_of(op, p) == "EROFS", f"{op} {p}"


def test_rename_link_symlink_are_erofs(paths, mount):
    assert errno_of("rename", paths["file"], paths["repo"] / "renamed") == "EROFS"
    assert errno_of("rename", paths["link"], paths["branches"] / "other") == "EROFS"
    assert errno_of("symlink", "../commits/x", paths["branches"] / "evil") == "EROFS"
    assert errno_of("link", paths["file"], paths["repo"] / "hard") == "EROFS"


def test_shell_commands_fail_and_change_nothing(paths, mount):
    before = {k: ls(paths[k]) for k in ("ws", "repo", "branches", "commitdir")}
    content = run(["cat", paths["file"]], check=True).stdout
    # `rm -rf` walks the commit directory (tree/ listings, the size of diff): let that
    # reading happen first, so that what follows must cost nothing
    run(["find", paths["commitdir"], "-ls"], check=True)
    mark = mount.server.log.mark()
    for cmd in (["touch", paths["repo"] / "x"],
                ["touch", paths["file"]],
                ["mkdir", paths["repo"] / "d"],
                ["rm", "-f", paths["file"]],
                ["rm", "-rf", paths["commitdir"]],
                ["mv", paths["file"], paths["repo"] / "moved"],
                ["ln", "-s", "x", paths["branches"] / "y"],
                ["chmod", "777", paths["file"]],
                ["truncate", "-s", "0", paths["file"]],
                ["sh", "-c", f"echo hi > '{paths['file']}'"],
                ["sh", "-c", f"echo hi >> '{paths['repo'] / 'new'}'"]):
        r = run(cmd)
        assert r.returncode != 0, cmd
    assert {k: ls(paths[k]) for k in ("ws", "repo", "branches", "commitdir")} == before
    assert run(["cat", paths["file"]], check=True).stdout == content
    reqs = mount.server.log.since(mark)
    assert reqs == [], describe(reqs)

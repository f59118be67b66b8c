"""
Symlink caching (issue 16): the kernel keeps symlink targets (FUSE_CAP_CACHE_SYMLINKS), and
a branch, a tag or HEAD that moves is still seen as it is now.

- a moved branch and a moved HEAD: after ttl, the first readlink and the first path through
  the link (`branches/main/message`, `HEAD/message`) see the new commit (each link's
  generation names its target, so the kernel's look-up gives it a new inode);
- with ttl=3600 (the kernel keeps its entries for an hour), a refresh that finds a branch or
  HEAD moved (SIGHUP, then a listing read again) makes the kernel drop the target it kept:
  only that invalidation can, so this test fails without it.

Expected targets and messages come from git.
"""

import signal
import time

import pytest

from conftest import git_message, ls, out

HANG_GUARD = 30     # a hang guard: the refresh and the invalidation are taken by threads


def readlink(path):
    return out(["readlink", path]).rstrip("\n")


def older_commit(demo, branch):
    """A commit of branch's history other than its tip."""
    return demo.rev_list("api", branch)[1]


def test_a_moved_branch_and_head_are_seen_after_ttl(mount_factory, fresh_server, fresh_demo):
    ttl = 2
    m = mount_factory(fresh_server, options=[f"ttl={ttl}"])
    repo = m.ws / "api"
    git_dir = fresh_demo.git_dir("api")
    tip = fresh_demo.branches("api")["main"]
    assert readlink(repo / "branches" / "main") == f"../commits/{tip}"
    assert readlink(repo / "HEAD") == "branches/main"
    assert out(["cat", repo / "branches" / "main" / "message"]).encode() == git_message(git_dir, tip)
    other = sorted(b for b in fresh_demo.branches("api") if b != "main")[0]
    moved = older_commit(fresh_demo, "main")
    fresh_demo.git("api", "update-ref", "refs/heads/main", moved)
    fresh_demo.git("api", "symbolic-ref", "HEAD", f"refs/heads/{other}")
    time.sleep(ttl + 1)                 # what the kernel and bbfs keep has expired
    # the first look after ttl, not an eventual one
    assert readlink(repo / "branches" / "main") == f"../commits/{moved}"
    assert out(["cat", repo / "branches" / "main" / "message"]).encode() == \
        git_message(git_dir, moved)
    assert readlink(repo / "HEAD") == f"branches/{other}"
    assert out(["cat", repo / "HEAD" / "message"]).encode() == \
        git_message(git_dir, fresh_demo.branches("api")[other])


def until(what, cond):
    end = time.monotonic() + HANG_GUARD
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {HANG_GUARD}s")
        time.sleep(0.1)


def test_a_refresh_that_finds_links_moved_drops_the_kernels_targets(mount_factory, fresh_server,
                                                                    fresh_demo):
    m = mount_factory(fresh_server, options=["ttl=3600"], allow=[r"SIGHUP"])
    repo = m.ws / "api"
    tip = fresh_demo.branches("api")["main"]
    other = sorted(b for b in fresh_demo.branches("api") if b != "main")[0]
    assert readlink(repo / "branches" / "main") == f"../commits/{tip}"
    assert readlink(repo / "HEAD") == "branches/main"
    moved = older_commit(fresh_demo, "main")
    fresh_demo.git("api", "update-ref", "refs/heads/main", moved)
    fresh_demo.git("api", "symbolic-ref", "HEAD", f"refs/heads/{other}")
    # nothing told bbfs: the kernel and bbfs keep the answers of an hour's ttl
    assert readlink(repo / "branches" / "main") == f"../commits/{tip}"
    assert readlink(repo / "HEAD") == "branches/main"
    m.proc.send_signal(signal.SIGHUP)
    # the listings read again find the links moved; only bbfs telling the kernel can make
    # it drop the targets it keeps (its entries live for an hour)
    def branch_seen_moved():
        ls(repo / "branches")          # reads the listing again (after SIGHUP: refreshed)
        return readlink(repo / "branches" / "main") == f"../commits/{moved}"

    def head_seen_moved():
        ls(m.ws)                       # the repository listing, with each main branch
        return readlink(repo / "HEAD") == f"branches/{other}"

    until("main seen moved", branch_seen_moved)
    until("HEAD seen moved", head_seen_moved)

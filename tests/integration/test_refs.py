"""
branches/, tags/ and HEAD: one symlink per ref into commits/, names with
slashes as nested directories, HEAD naming the main branch, a tag listing of
many pages walked to its end, compared with what git itself says about the
demo repositories.
"""

import math
import time

from conftest import cat, describe, errno_of, git_message, lines, ls, out, stat_fmt
from helpers import LONG_SLUG, LONG_TAGS, long_demo  # noqa: F401 - a fixture


def link_target(name, sha):
    return "../" * (name.count("/") + 1) + "commits/" + sha


def symlinks_under(path):
    """{relative path: target} of every symlink below path (find -printf)."""
    res = {}
    for ln in lines(["find", path, "-type", "l", "-printf", "%P\\t%l\\n"]):
        rel, target = ln.split("\t", 1)
        res[rel] = target
    return res


def test_branches_are_links_into_commits(mount, demo, server):
    for slug in server.repo_slugs(project="PLAT"):
        expected = {n: link_target(n, h) for n, h in demo.branches(slug).items()}
        assert symlinks_under(mount.ws / slug / "branches") == expected, slug


def test_tags_are_links_into_commits(mount, demo, server):
    for slug in server.repo_slugs(project="PLAT"):
        expected = {n: link_target(n, h) for n, h in demo.tags(slug).items()}
        assert symlinks_under(mount.ws / slug / "tags") == expected, slug
    assert len(demo.tags("api")) >= 2


def test_nested_branch_names_are_directories(mount, demo):
    branches = demo.branches("api")
    assert "feature/x" in branches and "feature/deep/y" in branches
    b = mount.ws / "api" / "branches"
    assert stat_fmt(b / "feature", "%F %a") == "directory 555"
    assert stat_fmt(b / "feature" / "deep", "%F") == "directory"
    assert "feature" in ls(b)
    assert "x" in ls(b / "feature")
    assert out(["readlink", b / "feature" / "x"]).strip() == link_target("feature/x",
                                                                         branches["feature/x"])
    assert out(["readlink", b / "feature" / "deep" / "y"]).strip() == \
        link_target("feature/deep/y", branches["feature/deep/y"])
    # ls -l shows the links as links
    long = lines(["ls", "-l", b])
    assert any(ln.startswith("l") and " main -> ../commits/" in ln for ln in long), long
    assert any(ln.startswith("d") and ln.endswith(" feature") for ln in long), long


def test_links_resolve_to_the_commit(mount, demo):
    gd = demo.git_dir("api")
    for name, sha in demo.branches("api").items():
        assert cat(mount.ws / "api" / "branches" / name / "message") == git_message(gd, sha), name
    for name, sha in demo.tags("api").items():
        assert cat(mount.ws / "api" / "tags" / name / "message") == git_message(gd, sha), name


def test_head_names_the_main_branch(mount, demo, server):
    for slug in server.repo_slugs(project="PLAT"):
        obj = server.get_json(f"repositories/acme/{slug}")
        if not obj.get("mainbranch"):
            continue
        main = obj["mainbranch"]["name"]
        assert main == demo.head_branch(slug), slug
        assert out(["readlink", mount.ws / slug / "HEAD"]).strip() == f"branches/{main}", slug
    assert out(["readlink", mount.ws / "tools" / "HEAD"]).strip() == "branches/trunk"
    assert out(["readlink", mount.ws / "api" / "HEAD"]).strip() == "branches/main"
    head_commit = demo.branches("tools")["trunk"]
    assert cat(mount.ws / "tools" / "HEAD" / "message") == \
        git_message(demo.git_dir("tools"), head_commit)


def test_empty_repository_has_no_head(mount):
    e = mount.ws / "empty"
    assert "HEAD" not in ls(e)
    assert errno_of("lstat", e / "HEAD") == "ENOENT"
    assert ls(e / "branches") == []
    assert ls(e / "commits") == []
    assert {"repository.json", "description"} <= set(ls(e))


def test_new_branch_visible_after_ttl(mount_factory, fresh_server, fresh_demo):
    m = mount_factory(fresh_server, options=["ttl=1"])
    b = m.ws / "api" / "branches"
    assert "brand-new" not in ls(b)
    tip = fresh_demo.branches("api")["feature/x"]
    fresh_demo.git("api", "branch", "brand-new", tip)
    time.sleep(1.5)
    assert out(["readlink", b / "brand-new"]).strip() == link_target("brand-new", tip)


def test_sighup_refreshes_without_waiting_for_ttl(mount_factory, fresh_server, fresh_demo):
    """SIGHUP drops what bbfs trusted: the next ls asks the API again."""
    import signal
    m = mount_factory(fresh_server, options=["ttl=3600"], allow=[r"SIGHUP"])
    b = m.ws / "api" / "branches"
    assert "after-hup" not in ls(b)
    tip = fresh_demo.branches("api")["main"]
    fresh_demo.git("api", "branch", "after-hup", tip)
    assert "after-hup" not in ls(b)  # within ttl: the cached listing
    m.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "after-hup" not in ls(b) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out(["readlink", b / "after-hup"]).strip() == link_target("after-hup", tip)
    assert m.proc.poll() is None  # SIGHUP refreshes; it does not end bbfs


def test_tag_listing_of_many_pages_is_walked_to_the_end(mount_factory, fakebb_factory, long_demo):
    """The tag list has no `size`: bbfs must follow `next` page after page. At 25 a page,
    LONG_TAGS tags are ceil(LONG_TAGS / 25) pages, each asked for once; every tag git has is
    a link to its commit (annotated ones peeled)."""
    server = fakebb_factory(long_demo)
    m = mount_factory(server)
    ls(m.ws)
    server.knobs(max_pagelen=25)
    mark = server.log.mark()
    want = {n: link_target(n, h) for n, h in long_demo.tags(LONG_SLUG).items()}
    assert len(want) == LONG_TAGS
    assert symlinks_under(m.ws / LONG_SLUG / "tags") == want
    pages = [e for e in server.log.since(mark)
             if e["path"].rstrip("/") == f"/2.0/repositories/acme/{LONG_SLUG}/refs/tags"]
    assert len(pages) == math.ceil(LONG_TAGS / 25), describe(pages)
    assert all(e["status"] == 200 for e in pages), describe(pages)
    assert len({e["query"] for e in pages}) == len(pages), "a page was asked for twice"

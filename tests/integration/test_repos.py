"""
The workspace directory: which repositories are listed (project filter,
whole workspace, pagination), workspace.json / project.json, the files of a
repository, exact sizes and times, and what the listing costs in requests.
"""

import math
import time

from conftest import (cat, describe, errno_of, is_repo_list, iso_to_epoch, lines, ls, out, run,
                      stat_fmt)
from helpers import json_file


SLOW_PAGE = 3   # seconds a slowed page of the repository listing takes to send


def repo_names(mount):
    return sorted(n for n in ls(mount.ws) if not n.endswith(".json"))


def test_project_lists_exactly_its_repositories(mount, server):
    expected = server.repo_slugs(project="PLAT")
    everything = server.repo_slugs()
    assert set(expected) < set(everything), "demo data should have repos outside PLAT"
    assert repo_names(mount) == expected
    for other in set(everything) - set(expected):
        assert errno_of("lstat", mount.ws / other) == "ENOENT", other


def test_whole_workspace_lists_every_repository(mount_factory, server):
    m = mount_factory(server, target="acme")
    expected = server.repo_slugs()
    assert "infra" in expected
    assert repo_names(m) == expected
    names = ls(m.ws)
    assert "workspace.json" in names
    assert "project.json" not in names
    assert errno_of("stat", m.ws / "project.json") == "ENOENT"


def test_pagination_follows_every_page(mount, server):
    expected = server.repo_slugs(project="PLAT")
    server.knobs(max_pagelen=2)
    mark = server.log.mark()
    assert repo_names(mount) == expected
    pages = [e for e in server.log.since(mark) if is_repo_list(e)]
    assert len(pages) == math.ceil(len(expected) / 2), describe(pages)


def test_pagination_whole_workspace(mount_factory, server):
    expected = server.repo_slugs()
    m = mount_factory(server, target="acme")
    server.knobs(max_pagelen=2)
    mark = server.log.mark()
    assert repo_names(m) == expected
    pages = [e for e in server.log.since(mark) if is_repo_list(e)]
    assert len(pages) == math.ceil(len(expected) / 2), describe(pages)


def test_pages_after_the_first_are_fetched_at_once(mount_factory, server):
    """The first page gives size and pagelen: pages 2..n are then in flight together.

    Pages 2..n are sent slowly (SLOW_PAGE seconds each), so that fetching them one after
    the other would show in the request log as pages that start only after the one before
    has been answered; fetched together, each starts before any of them is answered."""
    expected = server.repo_slugs()
    m = mount_factory(server, target="acme")
    server.knobs(max_pagelen=2)
    page_bytes = max(len(server.get_bytes(f"repositories/acme?page={n}")[1]) for n in (1, 2))
    mark = server.log.mark()
    server.knobs(slow_body={"skip": 1, "count": -1, "path_contains": "/repositories/acme",
                            "bytes_per_second": max(1, page_bytes // SLOW_PAGE)})
    try:
        assert repo_names(m) == expected
    finally:
        server.knobs(slow_body=None)
    pages = sorted((e for e in server.log.since(mark) if is_repo_list(e)), key=lambda e: e["time"])
    assert len(pages) == math.ceil(len(expected) / 2) >= 3, describe(pages)
    first, rest = pages[0], pages[1:]
    assert "slow_body" not in first and all("slow_body" in e for e in rest), describe(pages)
    answered = [e["time"] + e["duration_ms"] / 1000 for e in pages]
    # page 2..n were asked for only once page 1 had been answered (they need its size) ...
    assert all(e["time"] >= answered[0] - 0.05 for e in rest), describe(pages)
    # ... and every one of them before any of them had been answered
    assert max(e["time"] for e in rest) < min(answered[1:]), describe(pages)


def test_a_repository_reached_by_path_costs_one_request_not_the_listing(mount_factory, server,
                                                                      demo):
    """cd into one repository of a big workspace: GET that repository, never every page."""
    m = mount_factory(server, target="acme")
    server.knobs(max_pagelen=1)     # the listing would cost one request per repository
    mark = server.log.mark()
    tip = demo.branches("api")["main"]
    assert out(["readlink", m.ws / "api" / "branches" / "main"]).strip().endswith(tip)
    reqs = server.log.since(mark)
    assert not [e for e in reqs if is_repo_list(e)], describe(reqs)
    repo = [e for e in reqs if e["path"].rstrip("/").endswith("/repositories/acme/api")]
    assert len(repo) == 1, describe(reqs)
    # a probe for a name that is not there: one request, then remembered
    mark = server.log.mark()
    assert errno_of("lstat", m.ws / ".git") == "ENOENT"
    assert errno_of("lstat", m.ws / ".git") == "ENOENT"
    assert len(server.log.since(mark)) == 1, describe(server.log.since(mark))
    # once listed, the workspace answers from the listing
    assert "web" in ls(m.ws)
    mark = server.log.mark()
    assert errno_of("lstat", m.ws / "nothing-here") == "ENOENT"
    assert errno_of("lstat", m.ws / "web" / "HEAD") == "OK"
    assert server.log.since(mark) == [] or all(
        "/repositories/acme/web/" in e["path"] for e in server.log.since(mark))


def test_a_repository_of_another_project_is_not_there(mount, server):
    """Mounted acme/PLAT, a repository of OPS reached by its path is absent."""
    others = set(server.repo_slugs()) - set(server.repo_slugs(project="PLAT"))
    assert others
    for slug in sorted(others):
        assert errno_of("stat", mount.ws / slug / "HEAD") == "ENOENT", slug


def test_ls_l_costs_no_request_per_entry(mount, server):
    slugs = server.repo_slugs(project="PLAT")
    mark = server.log.mark()
    listing = lines(["ls", "-l", "--time-style=+%s", mount.ws])
    assert len(listing) >= len(slugs)
    reqs = server.log.since(mark)
    per_repo = [e for e in reqs if any(f"/repositories/acme/{s}" in e["path"] for s in slugs)]
    assert per_repo == [], describe(per_repo)
    # the listing pages, plus at most workspace.json and project.json
    assert len([e for e in reqs if not is_repo_list(e)]) <= 2, describe(reqs)


def test_second_listing_within_ttl_costs_nothing(mount, server):
    first = ls(mount.ws)
    mark = server.log.mark()
    assert ls(mount.ws) == first
    run(["ls", "-l", mount.ws], check=True)
    run(["ls", "-l", mount.ws / "api"], check=True)
    reqs = server.log.since(mark)
    assert reqs == [] or all(not is_repo_list(e) for e in reqs), describe(reqs)
    mark = server.log.mark()
    run(["ls", "-l", mount.ws], check=True)
    run(["ls", "-l", mount.ws / "api"], check=True)
    assert server.log.since(mark) == [], describe(server.log.since(mark))


def test_sizes_are_exact_before_reading(mount, server):
    files = [mount.ws / "workspace.json", mount.ws / "project.json"]
    for slug in server.repo_slugs(project="PLAT"):
        files += [mount.ws / slug / f for f in ("repository.json", "description", "clone-url")]
    for f in files:
        size = int(stat_fmt(f, "%s"))
        assert size == len(cat(f)), f
        assert int(out(f"cat '{f}' | wc -c").strip()) == size, f


def test_repository_json_is_the_api_object(mount, server):
    """Byte for byte the fake's object, pretty-printed with a 2-space indent and a newline."""
    for slug in server.repo_slugs(project="PLAT"):
        want = json_file(server.get_json(f"repositories/acme/{slug}"))
        assert b'\n  "' in want and want.endswith(b"}\n")
        assert cat(mount.ws / slug / "repository.json") == want, slug


def test_description_and_clone_url(mount, server):
    for slug in server.repo_slugs(project="PLAT"):
        obj = server.get_json(f"repositories/acme/{slug}")
        desc = obj.get("description") or ""
        assert cat(mount.ws / slug / "description").decode() == desc + "\n", slug
        url = cat(mount.ws / slug / "clone-url").decode().rstrip("\n")
        assert url == f"https://x-token-auth@bitbucket.org/acme/{slug}.git", slug


def test_repository_mtime_is_updated_on(mount, server):
    for slug in server.repo_slugs(project="PLAT"):
        obj = server.get_json(f"repositories/acme/{slug}")
        assert int(stat_fmt(mount.ws / slug, "%Y")) == iso_to_epoch(obj["updated_on"]), slug


def test_workspace_and_project_json(mount, server):
    assert cat(mount.ws / "workspace.json") == json_file(server.get_json("workspaces/acme"))
    assert cat(mount.ws / "project.json") == \
        json_file(server.get_json("workspaces/acme/projects/PLAT"))
    assert {"workspace.json", "project.json"} <= set(ls(mount.ws))


def test_workspace_json_absent_without_permission(mount_factory, server):
    status, _ = server.get("workspaces/acme", token="pat-token")
    assert status in (401, 403, 404)
    m = mount_factory(server, token="pat-token")
    names = ls(m.ws)
    assert "workspace.json" not in names
    assert errno_of("stat", m.ws / "workspace.json") == "ENOENT"
    assert "project.json" in names
    assert cat(m.ws / "project.json") == \
        json_file(server.get_json("workspaces/acme/projects/PLAT", token="pat-token"))
    assert repo_names(m) == server.repo_slugs(project="PLAT", token="pat-token")


def test_grep_language_costs_no_request_after_listing(mount, server):
    expected = sorted(
        str(mount.ws / r["slug"] / "repository.json")
        for r in server.get_all("repositories/acme", params={"q": 'project.key="PLAT"'})
        if r.get("language") == "c")
    assert expected, "demo data should hold a C repository"
    ls(mount.ws)
    mark = server.log.mark()
    r = run(f"grep -l '\"language\": \"c\"' '{mount.ws}'/*/repository.json")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == expected
    reqs = server.log.since(mark)
    assert reqs == [], describe(reqs)


def test_unknown_names_are_enoent(mount):
    assert errno_of("stat", mount.path / "nope") == "ENOENT"
    assert errno_of("stat", mount.ws / "nope") == "ENOENT"
    assert errno_of("stat", mount.ws / "api" / "nope") == "ENOENT"
    assert errno_of("stat", mount.ws / "api" / "branches" / "nope") == "ENOENT"
    assert errno_of("stat", mount.ws / "api" / "tags" / "nope") == "ENOENT"


def test_new_repository_appears_after_ttl(mount_factory, fresh_server, fresh_demo):
    m = mount_factory(fresh_server, options=["ttl=1"])
    before = repo_names(m)
    data = fresh_demo.data()
    repos = data["workspaces"]["acme"]["repositories"]
    repos["newrepo"] = dict(repos["web"], uuid="{6b0b6c1e-0000-4000-8000-000000000001}")
    fresh_demo.save(data)
    assert "newrepo" in fresh_server.repo_slugs(project="PLAT"), "fake server did not reload"
    time.sleep(1.5)
    assert repo_names(m) == sorted(before + ["newrepo"])

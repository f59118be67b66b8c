"""
What was read stays readable (issue 14). A day's work online -- a path straight into a
repository, `ls -R` through HEAD and branches, `grep -r` over a tree, commit.json,
message and diff, the files of pull requests -- is shown again, names and bytes, by a
remount of the same cache with `-o offline` and no server at all, and by the same
mount with the server stopped past `ttl` (stale serving). That includes:

1. a repository reached straight by its path, never listed (its answer alone is kept);
2. a repository found in a listing whose time is up (a look-up falls back to the stored
   listing as `ls` does);
3. every directory of a tree a walk listed with one recursive listing (each is kept as
   the answer a listing of it alone would get).

Expected values come from git and the fake server's data; what the offline and stale
views show is then compared with what was seen online.
"""

import re
import time
import urllib.parse

import pytest

from conftest import cat, describe, errno_of, git_message, ls, out, run
from helpers import json_file, pullrequest_diff

TTL = 2          # -o ttl= of the stale tests
TIMEOUT = 3      # -o timeout= of the stale tests: a refused connection fails well within it
# The one line of an outage (api/http.c, api/stored.c) and offline refusals
OUTAGE = [r"cannot reach the API \(Couldn't connect to server\): serving stored",
          r"GET https?://\S+/2\.0/\S+: Couldn't connect to server \(\d attempts?\)$"]


def find(path):
    """Every name below path with its type, size (files) and target (links), sorted."""
    return sorted(out(["find", path, "-mindepth", "1", "-printf", r"%P %y %s %l\n"]).splitlines())


def git_find(demo, slug, rev):
    """What find() shows of tree/ at rev, from git."""
    res = []
    for ln in demo.git(slug, "ls-tree", "-r", "-t", "-l", rev).splitlines():
        meta, path = ln.split("\t", 1)
        mode, typ, _, size = meta.split()
        if typ == "tree":
            res.append(f"{path} d 0 ")
        elif mode == "120000":
            target = demo.git(slug, "cat-file", "blob", f"{rev}:{path}")
            res.append(f"{path} l {len(target)} {target}")
        else:
            res.append(f"{path} f {size} ")
    return sorted(res)


def day(m, demo):
    """A day's work on mount m: {what was done: (exit status, what it printed)}, in order.
    Nothing in it depends on the mount's own time (ls -l of the workspace shows it)."""
    ws = m.ws
    api, web = ws / "api", ws / "web"
    older = demo.rev_list("api", "main")[3]
    seen = {}

    def do(*args, record=True):
        r = run([str(a) for a in args], binary=True)
        if record:   # (the mount point named as WS: a remount has another)
            seen[" ".join(str(a).replace(str(ws), "WS") for a in args)] = (
                r.returncode, r.stdout.replace(str(ws).encode(), b"WS"))

    # 1: straight into a repository, nothing listed before
    do("cat", api / "repository.json")
    do("cat", api / "description")
    do("cat", api / "commits" / older / "commit.json")
    do("cat", api / "commits" / older / "message")
    # the workspace (its own mtime is the mount's), then repositories found in its listing
    do("ls", "-la", ws, record=False)
    do("ls", "-1A", ws)
    do("cat", ws / "workspace.json")
    do("cat", web / "description")
    do("ls", "-1A", ws / "docs")
    # ls -R through HEAD and branches
    do("ls", "-R", f"{web}/HEAD/")
    do("ls", "-lR", api / "branches")
    do("ls", "-R", f"{api}/branches/feature/x/")
    # grep -r over a tree (a walk: one recursive listing), then all of it again
    do("grep", "-r", "-n", "-a", "", f"{api}/HEAD/tree/")
    do("find", f"{api}/HEAD/tree/", "-mindepth", "1", "-printf", r"%P %y %s %l\n")
    # a commit's files
    for c in ("api/HEAD", "web/HEAD", f"api/commits/{older}"):
        for name in ("commit.json", "message", "diff"):
            do("cat", ws / c / name)
        do("ls", ws / c / "parents")
    # pull requests
    do("ls", "-1", api / "pullrequests")
    for pr in ls(api / "pullrequests"):
        d = api / "pullrequests" / pr
        for name in ("pullrequest.json", "title", "description", "state", "diff",
                     "comments.json"):
            do("cat", d / name)
        do("readlink", d / "source", d / "destination")
    return seen


def check_online(seen, m, server, demo):
    """What the day showed is what git and the fake hold (a few telling ones)."""
    assert all(rc == 0 for rc, _ in seen.values()), \
        [k for k, (rc, _) in seen.items() if rc != 0]
    older = demo.rev_list("api", "main")[3]
    repo = server.get_json("repositories/acme/api")
    assert seen["cat WS/api/repository.json"][1] == json_file(repo)
    assert seen["cat WS/api/description"][1] == (repo["description"] + "\n").encode()
    commit = server.get_json(f"repositories/acme/api/commit/{older}")
    assert seen[f"cat WS/api/commits/{older}/commit.json"][1] == json_file(commit)
    assert seen[f"cat WS/api/commits/{older}/message"][1] == \
        git_message(demo.git_dir("api"), older)
    slugs = server.repo_slugs()
    assert [n for n in seen["ls -1A WS"][1].decode().split() if not n.endswith(".json")] == slugs
    tree_find = "find WS/api/HEAD/tree/ -mindepth 1 -printf %P %y %s %l\\n"
    assert sorted(seen[tree_find][1].decode().splitlines()) == git_find(demo, "api", "main")
    for p in demo.pullrequests("api"):
        if p["state"] != "OPEN":
            continue
        key = f"cat WS/api/pullrequests/{p['id']}/"
        obj = server.get_json(f"repositories/acme/api/pullrequests/{p['id']}")
        assert seen[key + "pullrequest.json"][1] == json_file(obj)
        assert seen[key + "diff"][1] == pullrequest_diff(
            demo.git_dir("api"), p["source"]["commit"], p["destination"]["commit"])


def compare(before, after):
    """The same things done again show the same, thing by thing."""
    assert list(after) == list(before)
    differ = [k for k in before if after[k] != before[k]]
    assert differ == [], "\n".join(
        f"{k}:\n  online:  {before[k]!r:.300}\n  now:     {after[k]!r:.300}" for k in differ)


def is_recursive(entry):
    return int(urllib.parse.parse_qs(entry.get("query", "")).get("max_depth", ["1"])[0]) > 1


def test_a_days_work_is_there_offline(mount_factory, server, demo):
    mark = server.log.mark()
    m = mount_factory(server, target="acme", options=["ttl=3600"])
    online = day(m, demo)
    check_online(online, m, server, demo)
    reqs = server.log.since(mark)
    # the walk was one recursive listing, and src/ was never listed alone: offline finds it
    # in what the walk kept
    assert any(is_recursive(e) for e in reqs), describe(reqs)
    src = [e for e in reqs if re.search(r"/repositories/acme/api/src/[0-9a-f]{40}/src/$",
                                        e["path"])]
    assert src == [], describe(src)
    assert m.unmount() == []
    server.stop()
    off = mount_factory(server, target="acme", options=["offline"], token_via="none",
                        cache_dir=m.cache)
    compare(online, day(off, demo))
    # nothing was missing: not a single "not cached"
    assert off.stderr().strip() == "", off.stderr()


def test_a_days_work_is_served_stale_with_the_server_stopped(mount_factory, server, demo):
    m = mount_factory(server, target="acme", options=[f"ttl={TTL}", f"timeout={TIMEOUT}"],
                      allow=OUTAGE)
    online = day(m, demo)
    check_online(online, m, server, demo)
    server.stop()
    time.sleep(TTL + 1)           # every listing and repository is stale now
    err = m.stderr_mark()
    # item 2 first: repositories found in the listing, before anything lists the workspace
    assert (0, cat(m.ws / "web" / "description")) == online["cat WS/web/description"]
    assert ls(m.ws / "docs") == online["ls -1A WS/docs"][1].decode().split()
    compare(online, day(m, demo))
    # one line for the outage, naming its cause
    said = m.stderr_since(err)
    assert len(said) == 1 and any(re.search(p, said[0]) for p in OUTAGE), said


def test_a_listed_repository_after_its_listing_expired(mount_factory, server, demo):
    """Issue 14 item 2: with ttl=2, `ls -la WS; cat WS/REPO/description; ls WS/OTHER/`,
    the server stops, 3 s later the same paths work, and so does a third repository's
    directory, all from the stored listing; what was never read (its branches) is EIO."""
    m = mount_factory(server, target="acme", options=[f"ttl={TTL}", f"timeout={TIMEOUT}"],
                      allow=OUTAGE)
    repo = server.get_json("repositories/acme/api")
    out(["ls", "-la", m.ws])
    assert cat(m.ws / "api" / "description") == (repo["description"] + "\n").encode()
    other = ls(m.ws / "web")
    assert "repository.json" in other and "branches" in other
    server.stop()
    time.sleep(TTL + 1)
    assert cat(m.ws / "api" / "description") == (repo["description"] + "\n").encode()
    assert ls(m.ws / "web") == other
    assert ls(m.ws / "docs") == other   # (docs has a main branch too: the same names)
    assert errno_of("listdir", m.ws / "docs" / "branches") == "EIO"


@pytest.mark.parametrize("offline", [True, False], ids=["offline", "stale"])
def test_a_path_straight_into_a_repository(mount_factory, server, demo, offline):
    """Issue 14 item 1: without listing the workspace, repository.json, description and a
    commit's commit.json; then the server stops and ttl passes (or a remount is offline):
    the same bytes, none of it ever listed."""
    older = demo.rev_list("api", "main")[5]
    paths = ["repository.json", "description", f"commits/{older}/commit.json"]
    m = mount_factory(server, target="acme", options=[f"ttl={TTL}", f"timeout={TIMEOUT}"],
                      allow=OUTAGE)
    mark = server.log.mark()
    seen = {p: cat(m.ws / "api" / p) for p in paths}
    repo = server.get_json("repositories/acme/api")
    assert seen["repository.json"] == json_file(repo)
    assert seen["description"] == (repo["description"] + "\n").encode()
    commit = server.get_json(f"repositories/acme/api/commit/{older}")
    assert seen[f"commits/{older}/commit.json"] == json_file(commit)
    reqs = server.log.since(mark)
    assert not [e for e in reqs if e["path"].rstrip("/").endswith("/repositories/acme")], \
        describe(reqs)            # the workspace's listing was never asked for
    server.stop()
    if offline:
        assert m.unmount() == []
        m = mount_factory(server, target="acme", options=["offline"], token_via="none",
                          cache_dir=m.cache)
    else:
        time.sleep(TTL + 1)
    assert {p: cat(m.ws / "api" / p) for p in paths} == seen

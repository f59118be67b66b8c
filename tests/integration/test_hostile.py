"""
Hostile names and strings from the API: repository slugs like "..", "a/b",
"" or with control characters, over-long names, ref names git accepts but a
shell would not like, and a branch that is also a directory. bbfs must not
crash, never expose ".", "..", "" or a name with "/", never list a name
twice, and keep serving everything else exactly.
"""

import json
import os
import subprocess

import pytest

from conftest import ERRNO_PROG, PYTHON, cat, errno_of, git_message, lines, ls, out, run
from helpers import json_file

BAD_SLUGS = ["..", ".", "", "a/b", "../../etc", "with\nnewline", "tab\there", "esc\x1b[31mred",
             "x" * 300, "del\x7f"]
ODD_SLUGS = ["ok-ünïcödé", "-dash", "zz good", "%2e%2e", "...", "a\\b", "$(id)"]
ODD_BRANCHES = ["-dash", "ünïcödé", "a@b", "$(id)", "`id`", 'quo"te', "<html>", "semi;colon",
                "x'y", "deep/ly/nest/ed"]
LONG_BRANCH = "long-" + "y" * 300
EVIL_DESCRIPTION = "evil \x1b]0;pwned\x07 description\nsecond line\r\n\x7f?"


def link_target(name, sha):
    return "../" * (name.count("/") + 1) + "commits/" + sha


def listdir(path):
    """Exact names (os.listdir in a subprocess, as JSON)."""
    r = run([PYTHON, "-c", ERRNO_PROG, "listdir", path])
    word, _, rest = r.stdout.strip().partition(" ")
    assert word == "OK", f"listdir {path}: {r.stdout} {r.stderr}"
    return json.loads(rest)


def dots(path):
    """How often readdir returns '.' and '..' (ls -a prints exactly what readdir gives)."""
    names = run(["ls", "-a1", path], check=True).stdout.split("\n")
    return names.count("."), names.count("..")


def add_hostile_repos(demo):
    data = demo.data()
    repos = data["workspaces"]["acme"]["repositories"]
    template = repos["web"]
    for i, slug in enumerate(BAD_SLUGS + ODD_SLUGS):
        rec = dict(template)
        rec["uuid"] = "{00000000-0000-4000-8000-%012d}" % i
        rec["description"] = f"hostile repo {i}"
        repos[slug] = rec
    repos["docs"]["description"] = EVIL_DESCRIPTION
    demo.save(data)


def add_packed_refs(git_dir, refs):
    """Adds refs through packed-refs (git update-ref would refuse some of them)."""
    subprocess.run(["git", "--git-dir", git_dir, "pack-refs", "--all"], check=True,
                   capture_output=True, timeout=30)
    path = os.path.join(git_dir, "packed-refs")
    body = []
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            body = [ln for ln in f.read().splitlines() if ln and not ln.startswith("#")]
    # group peeled "^sha" lines with the ref line they follow, then sort by ref name
    groups = []
    for ln in body:
        if ln.startswith("^") and groups:
            groups[-1].append(ln)
        else:
            groups.append([ln])
    for ref, sha in refs.items():
        groups.append([f"{sha} {ref}"])
    groups.sort(key=lambda g: g[0].split(" ", 1)[1].encode("utf-8", "surrogateescape"))
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write("# pack-refs with: peeled fully-peeled sorted \n")
        for g in groups:
            f.write("\n".join(g) + "\n")


@pytest.fixture
def hostile(fresh_demo):
    add_hostile_repos(fresh_demo)
    gd = fresh_demo.git_dir("api")
    main = fresh_demo.branches("api")["main"]
    old = fresh_demo.rev_list("api", "--max-parents=0", "main")[0]
    for name in ODD_BRANCHES:
        fresh_demo.git("api", "update-ref", f"refs/heads/{name}", old)
    fresh_demo.git("api", "update-ref", "refs/tags/ünï-tag", old)
    # a branch that git itself cannot store as a loose ref, and one that is
    # at the same time a branch and the directory of feature/x
    add_packed_refs(gd, {f"refs/heads/{LONG_BRANCH}": main, "refs/heads/feature": main})
    branches = fresh_demo.branches("api")
    assert LONG_BRANCH in branches and "feature" in branches and "feature/x" in branches
    return fresh_demo


def test_nul_in_description_does_not_hide_the_workspace(fresh_demo, fakebb_factory,
                                                       mount_factory):
    """One repository whose description holds U+0000 must not make the whole
    listing fail; the other repositories stay visible."""
    data = fresh_demo.data()
    data["workspaces"]["acme"]["repositories"]["docs"]["description"] = "nul \x00 inside"
    fresh_demo.save(data)
    server = fakebb_factory(fresh_demo)
    m = mount_factory(server, allow=ALLOW + [r"docs", r"NUL", r"u0000"])
    names = listdir(m.ws)
    assert {"api", "web", "tools", "empty"} <= set(names), names
    assert m.proc.poll() is None, "bbfs died"


ALLOW = [r"skip", r"not usable", r"conflict", r"duplicate", r"ignor", r"invalid name"]


def test_hostile_repository_slugs(hostile, fakebb_factory, mount_factory):
    server = fakebb_factory(hostile)
    listed = {r["slug"]: r for r in server.get_all("repositories/acme",
                                                   params={"q": 'project.key="PLAT"'})}
    served = sorted(listed)
    assert set(BAD_SLUGS) <= set(served), "the fake server should serve the hostile slugs"
    m = mount_factory(server, allow=ALLOW)
    names = listdir(m.ws)
    assert dots(m.ws) == (1, 1)
    for n in names:
        assert n not in ("", ".", "..") and "/" not in n, repr(n)
        assert len(n.encode()) <= 255, n
        assert not any(ord(c) < 0x20 or ord(c) == 0x7f for c in n), repr(n)
    assert len(names) == len(set(names)), names
    good = [s for s in served if s not in BAD_SLUGS]
    assert set(good) <= set(names), set(good) - set(names)
    # odd but usable slugs: the fake's object, byte for byte, and the description data.json
    # gave it
    repos = hostile.repos()
    for slug in ODD_SLUGS:
        assert cat(m.ws / slug / "repository.json") == json_file(listed[slug]), slug
        assert cat(m.ws / slug / "description").decode() == repos[slug]["description"] + "\n"
    for p in ("a", "etc", "with", "tab", "esc"):
        assert errno_of("lstat", m.ws / p) == "ENOENT", p
    # the rest keeps working
    assert "main" in ls(m.ws / "api" / "branches")
    assert cat(m.ws / "docs" / "description").decode() == EVIL_DESCRIPTION + "\n"
    # a shell glob over the whole workspace works
    r = run(f"grep -l '\"language\": \"c\"' '{m.ws}'/*/repository.json")
    assert r.stdout.split() == [str(m.ws / "api" / "repository.json")], r.stdout + r.stderr
    assert m.proc.poll() is None, "bbfs died"


def test_hostile_ref_names(hostile, fakebb_factory, mount_factory):
    server = fakebb_factory(hostile)
    m = mount_factory(server, allow=ALLOW)
    b = m.ws / "api" / "branches"
    branches = hostile.branches("api")
    assert dots(b) == (1, 1)
    top = listdir(b)
    assert top.count("feature") == 1, f"'feature' is both a branch and a directory: {top}"
    assert len(top) == len(set(top)), top
    for name in ODD_BRANCHES + ["main", "feature/x", "feature/deep/y", "release-1.0"]:
        assert out(["readlink", b / name]).strip() == link_target(name, branches[name]), name
    assert LONG_BRANCH not in top
    assert errno_of("lstat", b / LONG_BRANCH) in ("ENOENT", "ENAMETOOLONG")
    # every link found is one git knows, with the right target
    for ln in lines(["find", b, "-type", "l", "-printf", "%P\\t%l\\n"]):
        rel, target = ln.split("\t", 1)
        if rel == "feature":
            continue  # may be shown as the directory or as the link, but only once
        assert rel in branches, rel
        assert target == link_target(rel, branches[rel]), rel
    t = m.ws / "api" / "tags"
    assert out(["readlink", t / "ünï-tag"]).strip() == \
        link_target("ünï-tag", hostile.tags("api")["ünï-tag"])
    gd = hostile.git_dir("api")
    assert cat(b / "$(id)" / "message") == git_message(gd, branches["$(id)"])
    assert cat(t / "ünï-tag" / "message") == git_message(gd, hostile.tags("api")["ünï-tag"])
    assert m.proc.poll() is None, "bbfs died"

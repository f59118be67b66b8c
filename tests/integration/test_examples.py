"""
examples/: the scripts run against a real mount of the demo data (acme/PLAT),
and the systemd user unit's commands run as systemd would run them. Expected
output comes from git (the demo repositories) and from the fake server's
objects, never from hard-coded answers. The demo's dates are fixed in the past,
so the scripts that look at "the last N days" get NOW= relative to them.
"""

import json
import re
import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import (BBFS_BIN, CMD_TIMEOUT, EXIT_DEADLINE, MOUNT_DEADLINE, REPO_ROOT,
                      force_unmount, git, mountinfo_has, run, scan_stderr, user_env,
                      wait_for_mount, write_token_file)

EXAMPLES = REPO_ROOT / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.sh"))
COMMIT_LIMIT = 100      # bbfs's default: commits/ lists this many of the main branch


def example(name, *args, now=None, timeout=60, cwd=None):
    env = user_env()
    if now is not None:
        env["NOW"] = f"@{now}"
    try:
        r = subprocess.run([str(EXAMPLES / name), *map(str, args)], capture_output=True,
                           text=True, timeout=timeout, env=env, cwd=cwd,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} timed out after {timeout}s")
    return r


def rows(text):
    return [ln.split("\t") for ln in text.splitlines() if ln]


def iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def plat_repos(server):
    """The demo's PLAT repository objects, as the fake server gives them."""
    return server.get_all("repositories/acme", params={"q": 'project.key="PLAT"'})


def listed_commits(demo, slug):
    """What commits/ lists: the newest COMMIT_LIMIT commits of the main branch
    (none for a repository without commits)."""
    if not demo.branches(slug):
        return []
    return demo.rev_list(slug, "--topo-order", f"--max-count={COMMIT_LIMIT}",
                         demo.head_branch(slug))


def author_info(demo, slug, sha):
    """(author time, 'Name <email>') from git."""
    ts, who = demo.git(slug, "log", "-1", "--format=%at %an <%ae>", sha).rstrip("\n").split(" ", 1)
    return int(ts), who


# --------------------------------------------------------------------------
# every script


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_opens_with_what_and_how(script):
    text = script.read_text().splitlines()
    assert text[0] == "#!/bin/sh"
    assert text[1].startswith(f"# {script.name} - "), text[1]
    header = "\n".join(ln for ln in text[1:] if ln.startswith("#"))
    assert f"examples/{script.name} MOUNTPOINT/WORKSPACE" in header
    assert "shows" in header
    assert run(["sh", "-n", script]).returncode == 0
    r = example(script.name)            # no arguments: usage, exit 2
    assert r.returncode == 2 and r.stderr.startswith("usage:"), r.stderr


def test_scripts_pass_shellcheck():
    if not Path("/usr/bin/shellcheck").exists():
        pytest.skip("shellcheck is not installed")
    r = run(["shellcheck", "-s", "sh", *SCRIPTS], timeout=60)
    assert r.returncode == 0, r.stdout


# --------------------------------------------------------------------------
# find-repos.sh


def field_text(obj, path):
    for key in path.split("."):
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, str) else json.dumps(obj)


JQ_CASES = [("language", "c"), ("language", "python"), ("language", ""), ("project.key", "PLAT"),
            ("is_private", "false"), ("mainbranch.name", "trunk"), ("mainbranch", "null"),
            ("language", "cobol")]
GREP_CASES = [("language", "c"), ("language", "javascript"), ("is_private", "false"),
              ("is_private", "true"), ("scm", "git"), ("language", "cobol")]


def test_find_repos_with_jq_and_with_grep(mount, server):
    repos = plat_repos(server)
    for mode, cases in (([], JQ_CASES), (["--grep"], GREP_CASES)):
        for field, value in cases:
            expected = sorted(r["slug"] for r in repos if field_text(r, field) == value)
            r = example("find-repos.sh", mount.ws, *mode, field, value)
            assert r.returncode == 0, r.stderr
            assert sorted(r.stdout.split()) == expected, (mode, field, value)


# --------------------------------------------------------------------------
# old-branches.sh


def all_branches(demo, server):
    """[(author time, slug, branch, hash)] of every branch of the PLAT repositories."""
    res = []
    for repo in plat_repos(server):
        slug = repo["slug"]
        for name, sha in demo.branches(slug).items():
            res.append((author_info(demo, slug, sha)[0], slug, name, sha))
    return res


def test_old_branches(mount, demo, server):
    branches = all_branches(demo, server)
    times = sorted({b[0] for b in branches})
    assert len(times) >= 3, "the demo should have branches of several dates"
    newest = times[-1]
    # a cut-off between the oldest and the newest branch, then one after all of them
    for now, days in ((newest, (newest - times[len(times) // 2]) // 86400),
                      (newest + 86400, 0)):
        limit = now - days * 86400
        expected = sorted((iso(t), slug, name, sha) for t, slug, name, sha in branches
                          if t < limit)
        assert expected, (now, days)
        r = example("old-branches.sh", mount.ws, days, now=now)
        assert r.returncode == 0, r.stderr
        got = [tuple(row) for row in rows(r.stdout)]
        assert sorted(got) == expected
        assert [g[0] for g in got] == sorted(g[0] for g in got), "not oldest first"
    # nothing is older than the oldest branch
    r = example("old-branches.sh", mount.ws, 1, now=times[0] + 86400 - 1)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr


# --------------------------------------------------------------------------
# search-commits.sh


SEARCHES = [("429|helper", True), ("^Add str_(split|join)", False), ("HANDLE", False),
            ("HANDLE", True), ("ü", False), ("no such words anywhere", True)]


def test_search_commits(mount, demo, server):
    messages = []           # (slug, hash, message) of everything commits/ lists
    for repo in plat_repos(server):
        slug = repo["slug"]
        for sha in listed_commits(demo, slug):
            msg = git(demo.git_dir(slug), "cat-file", "commit", sha).split("\n\n", 1)[1]
            messages.append((slug, sha, msg))
    for pattern, icase in SEARCHES:
        flags = re.IGNORECASE if icase else 0
        expected = [[slug, sha, msg.split("\n", 1)[0]] for slug, sha, msg in messages
                    if any(re.search(pattern, ln, flags) for ln in msg.split("\n"))]
        r = example("search-commits.sh", mount.ws, *(["-i"] if icase else []), pattern)
        assert r.returncode == 0, r.stderr
        assert sorted(rows(r.stdout)) == sorted(expected), (pattern, icase)


# --------------------------------------------------------------------------
# who-committed.sh


def commit_authors(demo, server):
    """[(author time, 'Name <email>')] of every commit in commits/ of every PLAT repo."""
    return [author_info(demo, repo["slug"], sha)
            for repo in plat_repos(server) for sha in listed_commits(demo, repo["slug"])]


def test_who_committed(mount, demo, server):
    commits = commit_authors(demo, server)
    times = sorted(t for t, _ in commits)
    newest, middle = times[-1], times[len(times) // 2]
    # NOW equal to a commit's date includes it; the window's start excludes
    for now, days in ((newest + 3600, None), (newest, 40), (middle, 3), (newest + 1, 10000)):
        since = now - (days if days is not None else 7) * 86400
        counts = {}
        for t, who in commits:
            if since < t <= now:
                counts[who] = counts.get(who, 0) + 1
        assert counts, (now, days)
        expected = sorted(([str(n), who] for who, n in counts.items()),
                          key=lambda x: (-int(x[0]), x[1].encode()))
        r = example("who-committed.sh", mount.ws, *([] if days is None else [days]), now=now)
        assert r.returncode == 0, r.stderr
        assert rows(r.stdout) == expected, (now, days)


# --------------------------------------------------------------------------
# file-at-tag.sh and diff-tags.sh


def git_show(demo, slug, rev, path):
    return subprocess.run(["git", "--git-dir", demo.git_dir(slug), "show", f"{rev}:{path}"],
                          capture_output=True, timeout=30, check=True).stdout


def test_file_at_tag(mount, demo, tmp_path):
    tags = demo.tags("api")
    assert len(tags) >= 2
    for tag in tags:
        paths = demo.git("api", "ls-tree", "-r", "--name-only", tag).split()
        for path in paths[:3] + paths[-2:]:
            dest = tmp_path / f"{tag}-{path.replace('/', '_')}"
            r = example("file-at-tag.sh", mount.ws, "api", tag, path, dest)
            assert r.returncode == 0, r.stderr
            assert dest.read_bytes() == git_show(demo, "api", tag, path), (tag, path)
            assert dest.stat().st_mode & 0o200, "the copy is not writable by its owner"
            assert tags[tag] in r.stdout
    # without DEST: the file name, in the current directory
    path = demo.git("api", "ls-tree", "-r", "--name-only", tag).split()[-1]
    r = example("file-at-tag.sh", mount.ws, "api", tag, path, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / Path(path).name).read_bytes() == git_show(demo, "api", tag, path)
    r = example("file-at-tag.sh", mount.ws, "api", "no-such-tag", path, tmp_path / "x")
    assert r.returncode != 0 and not (tmp_path / "x").exists()


def changed_paths(demo, slug, old, new):
    return demo.git(slug, "diff", "--name-only", "--no-renames", old, new).split("\n")[:-1]


def test_diff_tags_of_one_file_is_a_patch_from_one_to_the_other(mount, demo, tmp_path):
    tags = list(demo.tags("api"))
    old, new = tags[0], tags[1]
    paths = changed_paths(demo, "api", old, new)
    assert paths, "the demo's tags should differ"
    for path in paths:
        r = example("diff-tags.sh", mount.ws, "api", old, new, path)
        assert r.returncode == 1, r.stderr
        assert r.stdout.startswith(f"--- a/{path}\n+++ b/{path}\n"), r.stdout[:200]
        before = tmp_path / "before"
        try:
            before.write_bytes(git_show(demo, "api", old, path))
        except subprocess.CalledProcessError:
            before.write_bytes(b"")         # added at the new tag
        patch = tmp_path / "patch"
        patch.write_text(r.stdout)
        after = tmp_path / "after"
        p = run(["patch", "-s", "-o", after, before, patch])
        assert p.returncode == 0, p.stdout + p.stderr
        try:
            expected = git_show(demo, "api", new, path)
        except subprocess.CalledProcessError:
            expected = b""                  # deleted at the new tag
        assert after.read_bytes() == expected, path
    # the same file at the same tag: no output, exit 0
    r = example("diff-tags.sh", mount.ws, "api", old, old, paths[0])
    assert (r.returncode, r.stdout) == (0, "")


def test_diff_tags_of_the_whole_tree_names_every_changed_file(mount, demo):
    tags = list(demo.tags("api"))
    old, new = tags[0], tags[1]
    r = example("diff-tags.sh", mount.ws, "api", old, new)
    assert r.returncode == 1, r.stderr
    named = sorted(m.group(1) for m in re.finditer(rf"^--- {re.escape(old)}/tree/([^\t\n]+)",
                                                   r.stdout, re.M))
    assert named == sorted(changed_paths(demo, "api", old, new))
    r = example("diff-tags.sh", mount.ws, "api", old, "no-such-tag")
    assert r.returncode == 2


# --------------------------------------------------------------------------
# bbfs@.service


def unit_commands(text, instance, home):
    """{key: [argv]} of the Exec lines, with the specifiers systemd would expand."""
    spec = {"%i": instance.replace("/", "-"), "%I": instance, "%h": str(home), "%%": "%"}
    res = {}
    for ln in text.splitlines():
        m = re.match(r"(Exec\w+)=(.*)", ln)
        if m:
            line = re.sub(r"%[iIh%]", lambda s: spec[s.group(0)], m.group(2))
            res.setdefault(m.group(1), []).append(shlex.split(line))
    return res


@pytest.mark.timeout(90)
def test_systemd_unit_mounts_and_stops(server, tmp_path):
    unit = (EXAMPLES / "bbfs@.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert settings["Type"] == "simple"
    home = tmp_path / "home"
    (home / ".config" / "bbfs").mkdir(parents=True)
    write_token_file(home / ".config" / "bbfs" / "token", "demo-token")
    cmds = unit_commands(unit, "acme/PLAT", home)
    (start,), (stop,) = cmds["ExecStart"], cmds["ExecStop"]
    assert "-f" in start and "token_file=" in " ".join(start)
    assert stop[:2] == ["/usr/bin/fusermount3", "-u"]
    for pre in cmds.get("ExecStartPre", []):
        assert run(pre).returncode == 0, pre
    mnt = Path(start[-1])
    assert stop[2:] == [str(mnt)] and mnt.is_dir()
    # the unit's own command line, with this build and the fake server's URL
    argv = [BBFS_BIN, *start[1:-2], "-o", f"api_url={server.url}", *start[-2:]]
    errf = tmp_path / "bbfs.stderr"
    with open(errf, "wb") as f:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                env=user_env(HOME=str(home)))
    try:
        wait_for_mount(proc, mnt, errf, MOUNT_DEADLINE)
        names = run(["ls", "-1", mnt / "acme"], timeout=CMD_TIMEOUT).stdout.split()
        assert "api" in names
        assert (home / ".cache" / "bbfs").is_dir(), "the unit's cache_dir is not used"
        r = run(stop)
        assert r.returncode == 0, r.stderr
        assert proc.wait(EXIT_DEADLINE) == 0
        assert not mountinfo_has(mnt)
    finally:
        force_unmount(mnt, proc)
    assert not scan_stderr(errf.read_text(errors="replace"))


# --------------------------------------------------------------------------
# open-pullrequests.sh


def test_open_pullrequests_oldest_first(mount, demo, server):
    expected = []
    for repo in plat_repos(server):
        slug = repo["slug"]
        for p in demo.pullrequests(slug):
            if p["state"] != "OPEN":
                continue
            status, obj = server.get(f"repositories/acme/{slug}/pullrequests/{p['id']}")
            assert status == 200, obj
            title = re.sub(r"[\t\n]", " ", obj["title"])
            author = (obj.get("author") or {}).get("display_name", "")
            expected.append([obj["created_on"], slug, str(p["id"]), author, title])
    assert len(expected) >= 2, "the demo should have open pull requests in two repositories"
    r = example("open-pullrequests.sh", mount.ws)
    assert r.returncode == 0, r.stderr
    got = rows(r.stdout)
    assert got == sorted(expected), r.stdout
    assert [g[0] for g in got] == sorted(g[0] for g in got)

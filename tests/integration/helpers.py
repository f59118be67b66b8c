"""
Helpers shared by several integration test files that conftest.py does not
offer: the exact bytes a `*.json` file of the tree must hold, the diff the
fake server computes for a pull request (from git, with the fake's own diff
options), the lines of bbfs's stderr that name a cause, waiting out the pause after
an outage, and a mount of bbfs without the harness's `cache_dir=` (for the defaults).

Expected values come from git or from the fake server's answer, never from
bbfs's own output.
"""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Demo, Mount, bbfs_binary, wait_for_mount

import server as fakebb_server   # tests/fakebb/server.py (conftest puts it on sys.path)


def json_file(obj):
    """What a `*.json` file of the tree holds for the API object OBJ (DESIGN.md: the
    object pretty-printed with a 2-space indent and a trailing newline, UTF-8 as sent)."""
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def git_diff(git_dir, old, new):
    """`git diff OLD NEW` with the options every /diff of the fake server uses (its
    DIFF_OPTIONS, plus -M), as bytes."""
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "--literal-pathspecs", "diff",
         *fakebb_server.DIFF_OPTIONS, "-M", old, new],
        capture_output=True, timeout=60, check=True).stdout


def pullrequest_diff(git_dir, source, destination):
    """A pull request's diff as Bitbucket defines it: what SOURCE brings over its merge
    base with DESTINATION (`git diff DESTINATION...SOURCE`)."""
    base = subprocess.run(["git", "--git-dir", str(git_dir), "merge-base", destination, source],
                          capture_output=True, timeout=60, check=True, text=True).stdout.strip()
    return git_diff(git_dir, base, source)


# bbfs's one line for a request that failed for good (api/http.c), e.g.
#   bbfs: warning: GET http://127.0.0.1:PORT/2.0/repositories/acme/api/refs/branches:
#   HTTP 503: Service Unavailable (5 attempts)
def failed_get(path_re, cause_re):
    """A regular expression for that line: the URL's path matches PATH_RE (after /2.0),
    the cause CAUSE_RE (e.g. r"HTTP 503", r"Timeout was reached")."""
    return rf"GET https?://[^/\s]+/2\.0/{path_re}: {cause_re}"


# curl's words for a body cut short (a `reset` fault), with the attempts bbfs made
CUT_SHORT = r"(Transferred a partial file|Recv failure|Connection reset)[^(]*\(\d+ attempts?\)$"


def logged(mount, mark, cause_re):
    """bbfs's stderr lines since MARK, asserted to be exactly one, naming CAUSE_RE."""
    lines = mount.stderr_since(mark)
    assert len(lines) == 1, "expected one line naming the cause, got:\n" + "\n".join(lines)
    assert re.search(cause_re, lines[0]), f"the line does not name the cause /{cause_re}/:\n" \
        + lines[0]
    return lines[0]


# api/http.h HTTP_OUTAGE_PAUSE_SECONDS (the man page's 10 seconds): once the API could not
# be reached (no answer, 429, a 5xx after retries), bbfs asks it nothing for this long
OUTAGE_PAUSE = 10


def after_the_pause(works, what, slack=30):
    """works() until it says yes, for at most OUTAGE_PAUSE + slack seconds (a hang guard):
    after an outage bbfs answers EIO at once, without asking the API, until the pause is
    over and an answer comes."""
    end = time.monotonic() + OUTAGE_PAUSE + slack
    while not works():
        assert time.monotonic() < end, f"{what}: still failing {OUTAGE_PAUSE + slack} s after"
        time.sleep(0.5)


def bare_mount(server, mnt, stderr_path, env, token_file):
    """bbfs -f acme/PLAT with only api_url= and token_file= (no cache_dir=), in ENV: a Mount
    whose unmount() the caller must call (it returns the problems, like the harness's)."""
    Path(mnt).mkdir(parents=True, exist_ok=True)
    opts = f"api_url={server.url},token_file={token_file}"
    errf = open(stderr_path, "wb")
    proc = subprocess.Popen([bbfs_binary(), "-f", "-o", opts, "acme/PLAT", str(mnt)],
                            stdin=subprocess.DEVNULL, stdout=errf, stderr=errf, env=env)
    errf.close()
    m = Mount(mnt, proc, stderr_path, (), server)
    try:
        wait_for_mount(proc, mnt, stderr_path)
    except BaseException:
        m.unmount()
        raise
    return m


# --------------------------------------------------------------------------
# A repository with long listings: more than 100 commits on its main branch
# and more than 200 tags, added to a demo data set of its own.

LONG_SLUG = "long"
LONG_COMMITS = 131          # on main, one of them a merge of a side branch
LONG_TAGS = 230


def add_long_repository(demo):
    """Adds repository `long` (project PLAT) to DEMO's data: LONG_COMMITS commits on main
    (a side branch of 3 merged half-way, so that git's topological order matters) and
    LONG_TAGS tags, some annotated. Returns its git directory."""
    import fixture
    root = Path(demo.data_path).parent
    commits = []
    for i in range(LONG_COMMITS - 4):
        commits.append({"message": f"Change {i:03d}", "id": f"c{i}",
                        "files": {f"f{i % 7}.txt": f"version {i}\n"}})
        if i == 60:
            commits += [{"branch": "side", "from": "c60", "message": f"Side {k}",
                         "files": {f"side{k}.txt": f"side {k}\n"}} for k in range(3)]
            commits.append({"branch": "main", "message": "Merge branch 'side'", "merge": "side"})
    tags = {}
    for t in range(LONG_TAGS):
        rev = f"c{(t * 7) % (LONG_COMMITS - 4)}"
        tags[f"t{t:03d}"] = {"rev": rev, "message": f"Tag {t}"} if t % 5 == 0 else rev
    info = fixture.make_repo(root / "git" / "acme" / f"{LONG_SLUG}.git", commits, tags=tags)
    data = demo.data()
    data["workspaces"]["acme"]["repositories"][LONG_SLUG] = {
        "project": "PLAT", "git_dir": info["git_dir"], "description": "Long listings",
        "language": "", "is_private": True, "uuid": fixture.det_uuid("acme/" + LONG_SLUG),
        "created_on": "2024-04-01T08:00:00.000000+00:00",
        "updated_on": fixture.newest_date(info["git_dir"]), "size": info["size"]}
    demo.save(data)
    return info["git_dir"]


@pytest.fixture(scope="session")
def long_demo(tmp_path_factory):
    """The demo data plus repository `long` (read-only: tests must not change it)."""
    import fixture
    demo = Demo(fixture.build_demo(str(tmp_path_factory.mktemp("long"))))
    add_long_repository(demo)
    return demo

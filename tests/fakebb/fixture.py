#!/usr/bin/python3
"""Builds the git repositories and the data file that the fake Bitbucket server serves.

`build_demo(root)` creates bare git repositories under `root/git/WORKSPACE/SLUG.git` and
writes `root/data.json` (workspaces, projects, repositories, tokens, users) for
server.py.  Repositories are written with `git fast-import` and explicit author,
committer and dates, so every run produces the same commit hashes on any machine.
`make_repo()` is the reusable building block: tests call it to make their own
repositories (or to add commits, branches and tags to an existing one at runtime).

`build_tree_fixture(root)` builds the `files` repository instead (every kind of tree entry,
a 60 MiB file, an LFS file, a merge, renames); it is kept apart so the demo stays fast.

CLI:  /usr/bin/python3 tests/fakebb/fixture.py --out DIR        (prints the data.json path)
      /usr/bin/python3 tests/fakebb/fixture.py --tree-out DIR [--with-demo]

Python 3 standard library only.
"""

import argparse
import collections
import datetime
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import uuid

# Names used when a commit does not say who wrote it.
DEFAULT_AUTHOR = ("Alice Example", "alice@acme.example")
# Every default commit date is derived from this instant, so hashes never depend on "now".
BASE_TIME = datetime.datetime(2024, 1, 2, 9, 0, 0, tzinfo=datetime.timezone.utc)
# Namespace for deterministic UUIDs ("{...}" strings like Bitbucket's).
_UUID_NS = uuid.UUID("6f1c2a8e-7d0b-4a53-9a5e-3b4f1c2d9e10")


def det_uuid(name):
    """A stable Bitbucket-style UUID string for NAME (same input, same UUID)."""
    return "{%s}" % uuid.uuid5(_UUID_NS, name)


def git_env():
    """Environment for every git call: no user or system config can change the results."""
    env = dict(os.environ)
    env.update({
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
    })
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE",
                "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_DATE"):
        env.pop(var, None)
    return env


def git(git_dir, *args, input=None, check=True):
    """Run git against GIT_DIR and return stdout bytes."""
    cmd = ["git", "-c", "safe.directory=*", "-c", "commit.gpgsign=false",
           "-c", "tag.gpgsign=false", "-C", str(git_dir)] + list(args)
    res = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=git_env(), timeout=120)
    if check and res.returncode != 0:
        raise RuntimeError("git %s failed: %s" % (" ".join(args), res.stderr.decode(errors="replace")))
    return res.stdout


def _raw_date(value, default_dt):
    """fast-import's raw date ('<unix seconds> <+hhmm>') from an ISO string, datetime or None."""
    dt = default_dt
    if isinstance(value, str):
        dt = datetime.datetime.fromisoformat(value)
    elif isinstance(value, datetime.datetime):
        dt = value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    off = int(dt.utcoffset().total_seconds() // 60)
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return "%d %s%02d%02d" % (int(dt.timestamp()), sign, off // 60, off % 60)


def _quote_path(path):
    """C-style quoting for a path in a fast-import stream, so any file name survives."""
    out = ['"']
    for b in path.encode("utf-8", "surrogateescape"):
        c = chr(b)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif b < 0x20 or b == 0x7f:
            out.append("\\%03o" % b)
        elif b >= 0x80:
            # Non-ASCII UTF-8 bytes go through as octal escapes: unambiguous in the stream.
            out.append("\\%03o" % b)
        else:
            out.append(c)
    out.append('"')
    return "".join(out).encode("ascii")


def _data(payload):
    """A fast-import 'data' block holding PAYLOAD exactly (byte count form, no delimiters)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return b"data %d\n" % len(payload) + payload + b"\n"


# Content produced while it is written to git: `chunks()` yields exactly `size` bytes.
Generated = collections.namedtuple("Generated", "size chunks")


def _file_entry(spec):
    """(mode, content) for one file spec: content is bytes, a sha (str) or Generated.

    A spec is a str/bytes (regular file), or a dict with one of
      {"content": ..., "executable": bool}, {"symlink": "target"}, {"submodule": "<40-hex sha>"},
      {"generate": <function returning an iterator of bytes>, "size": N, "executable": bool}
    The last one is streamed into git, never held in memory whole (for very large files).
    """
    if isinstance(spec, (str, bytes)):
        return "100644", spec if isinstance(spec, bytes) else spec.encode("utf-8")
    if "symlink" in spec:
        return "120000", spec["symlink"].encode("utf-8")
    if "submodule" in spec:
        return "160000", spec["submodule"]
    if "generate" in spec:
        return ("100755" if spec.get("executable") else "100644"), Generated(spec["size"], spec["generate"])
    content = spec.get("content", b"")
    if isinstance(content, str):
        content = content.encode("utf-8")
    return ("100755" if spec.get("executable") else "100644"), content


def make_repo(path, commits=(), branches=None, tags=None, head=None, start=None, step_minutes=None):
    """Create (or extend) the bare git repository at PATH.

    commits: list of dicts, applied in order:
      message   commit message (a trailing newline is added when missing, as `git commit` does)
      files     {path: spec or None}; None deletes the path. Specs: see _file_entry().
      branch    branch to commit on (default: HEAD's branch, "main" for a new repository)
      from      for a branch that does not exist yet: where it starts (a branch name, a commit
                "id" given earlier, or any revision of an existing repo). Omitted: a root commit.
      merge     a branch name (or list) merged into `branch`: a merge commit whose tree is
                `branch`'s tree plus every file the merged branch has differently.
      author    (name, email); committer (name, email), default = author
      date      ISO-8601 string with offset (author date); default BASE/start + n * step
      committer_date  default = author date
      id        a name for this commit, usable in from/branches/tags and in the result
    branches: {name: revision} created or moved after the commits (revision as for "from").
    tags:     {name: revision} lightweight, or
              {name: {"rev": revision, "message": str, "tagger": (name, email), "date": iso}} annotated.
    head:     the branch HEAD points at (default: unchanged; "main" for a new repository).

    Returns {"git_dir": str, "ids": {id: hash}, "head": branch, "size": bytes of HEAD's files}.
    """
    path = pathlib.Path(path)
    new = not (path / "HEAD").exists()
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "-q", "--bare", str(path)],
                       check=True, env=git_env(), timeout=60)
    if head is None:
        head = "main" if new else current_head(path) or "main"
    start_dt = BASE_TIME if start is None else _as_dt(start)
    step = datetime.timedelta(minutes=97 if step_minutes is None else step_minutes)

    stream = []
    marks = {}          # id -> ":N"
    tips = {}           # branch -> dataref of its tip in this stream (":N" or sha)
    trees = {}          # branch -> {path: (mode, bytes or sha)}, to compute merge trees
    mark_no = 0

    def resolve(rev):
        """A fast-import dataref for REV: a mark from this stream, else a sha from the repo."""
        if rev in marks:
            return marks[rev]
        if rev in tips:
            return tips[rev]
        sha = git(path, "rev-parse", "--verify", "--quiet", "--end-of-options",
                  rev + "^{commit}", check=False).decode().strip()
        if not sha:
            raise ValueError("make_repo(%s): unknown revision %r" % (path, rev))
        return sha

    mark_trees = {}     # ":N" -> {path: entry} snapshot after that commit

    def tree_at(dataref):
        """Files of the commit DATAREF: a snapshot for our own marks, else read from git."""
        if dataref.startswith(":"):
            return dict(mark_trees[dataref])
        files = {}
        out = git(path, "ls-tree", "-r", "-z", "--full-tree", dataref)
        for entry in out.split(b"\0"):
            if not entry:
                continue
            meta, name = entry.split(b"\t", 1)
            mode, _type, sha = meta.decode().split()
            files[name.decode("utf-8", "surrogateescape")] = (mode, sha)
        return files

    for n, c in enumerate(commits):
        branch = c.get("branch", head)
        if branch not in tips:
            existing = git(path, "rev-parse", "--verify", "--quiet",
                           "refs/heads/" + branch, check=False).decode().strip()
            if existing:
                tips[branch] = existing
            elif c.get("from"):
                tips[branch] = resolve(c["from"])
            else:
                tips[branch] = None       # a root commit
            trees[branch] = tree_at(tips[branch]) if tips[branch] else {}
        files = trees.setdefault(branch, {})
        author = c.get("author", DEFAULT_AUTHOR)
        committer = c.get("committer", author)
        adate = _raw_date(c.get("date"), start_dt + n * step)
        cdate = _raw_date(c.get("committer_date"), None) if c.get("committer_date") else adate
        message = c.get("message", "Commit %d" % (n + 1))
        if not message.endswith("\n"):
            message += "\n"
        mark_no += 1
        mark = ":%d" % mark_no
        stream.append(b"commit refs/heads/" + branch.encode() + b"\n")
        stream.append(b"mark " + mark.encode() + b"\n")
        stream.append(("author %s <%s> %s\n" % (author[0], author[1], adate)).encode("utf-8"))
        stream.append(("committer %s <%s> %s\n" % (committer[0], committer[1], cdate)).encode("utf-8"))
        stream.append(_data(message))
        if tips[branch]:
            stream.append(b"from " + tips[branch].encode() + b"\n")
        changes = dict(c.get("files") or {})
        merges = c.get("merge") or []
        if isinstance(merges, str):
            merges = [merges]
        for m in merges:
            stream.append(b"merge " + resolve(m).encode() + b"\n")
            other = trees[m] if m in trees else tree_at(resolve(m))
            for p, entry in other.items():
                if files.get(p) != entry and p not in changes:
                    changes[p] = ("raw", entry)
        for p, spec in changes.items():
            if spec is None:
                stream.append(b"D " + _quote_path(p) + b"\n")
                files.pop(p, None)
                continue
            if isinstance(spec, tuple) and spec[0] == "raw":
                mode, content = spec[1]
            else:
                mode, content = _file_entry(spec)
            files[p] = (mode, content)
            if isinstance(content, str):          # an existing blob/commit sha
                stream.append(("M %s %s " % (mode, content)).encode() + _quote_path(p) + b"\n")
            elif isinstance(content, Generated):
                stream.append(("M %s inline " % mode).encode() + _quote_path(p) + b"\n")
                stream.append(content)
            else:
                stream.append(("M %s inline " % mode).encode() + _quote_path(p) + b"\n")
                stream.append(_data(content))
        stream.append(b"\n")
        tips[branch] = mark
        mark_trees[mark] = dict(files)
        if c.get("id"):
            marks[c["id"]] = mark

    for name, rev in (branches or {}).items():
        stream.append(b"reset refs/heads/" + name.encode() + b"\n")
        stream.append(b"from " + resolve(rev).encode() + b"\n\n")
        tips[name] = resolve(rev)

    for name, spec in (tags or {}).items():
        if isinstance(spec, str):
            stream.append(b"reset refs/tags/" + name.encode() + b"\n")
            stream.append(b"from " + resolve(spec).encode() + b"\n\n")
            continue
        tagger = spec.get("tagger", DEFAULT_AUTHOR)
        tdate = _raw_date(spec.get("date"), start_dt + len(commits) * step)
        msg = spec.get("message", "Release %s" % name)
        if not msg.endswith("\n"):
            msg += "\n"
        stream.append(b"tag " + name.encode() + b"\n")
        stream.append(b"from " + resolve(spec["rev"]).encode() + b"\n")
        stream.append(("tagger %s <%s> %s\n" % (tagger[0], tagger[1], tdate)).encode("utf-8"))
        stream.append(_data(msg))      # its trailing LF ends the tag command

    stream.append(b"done\n")
    with tempfile.NamedTemporaryFile(prefix="fakebb-marks-", delete=False) as mf:
        marks_file = mf.name
    try:
        _fast_import(path, stream, marks_file)
        mark_sha = {}
        with open(marks_file) as f:
            for line in f:
                m, sha = line.split()
                mark_sha[m] = sha
    finally:
        os.unlink(marks_file)

    git(path, "symbolic-ref", "HEAD", "refs/heads/" + head)
    return {
        "git_dir": str(path.resolve()),
        "ids": {k: mark_sha[v] for k, v in marks.items()},
        "head": head,
        "size": tree_size(path),
    }


def _fast_import(path, stream, marks_file):
    """Feed STREAM (bytes pieces and Generated contents) to `git fast-import` as it is
    produced. Big blobs are streamed by git too (core.bigFileThreshold) and lightly
    compressed, so a 60 MiB file costs well under a second and little memory."""
    cmd = ["git", "-c", "safe.directory=*", "-c", "core.bigFileThreshold=1m",
           "-c", "core.compression=1", "-c", "pack.compression=1", "-C", str(path),
           "fast-import", "--quiet", "--done", "--date-format=raw", "--export-marks=" + marks_file]
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                             env=git_env())
        try:
            for piece in stream:
                if not isinstance(piece, Generated):
                    p.stdin.write(piece)
                    continue
                p.stdin.write(b"data %d\n" % piece.size)
                n = 0
                for chunk in piece.chunks():
                    n += len(chunk)
                    if n > piece.size:
                        break
                    p.stdin.write(chunk)
                if n != piece.size:
                    raise ValueError("generated content has %d bytes, not the %d promised" % (n, piece.size))
                p.stdin.write(b"\n")
            p.stdin.close()
        except BrokenPipeError:
            pass                                   # fast-import died: its stderr says why
        except BaseException:
            p.kill()
            p.wait()
            raise
        rc = p.wait(timeout=120)
        if rc != 0:
            err.seek(0)
            raise RuntimeError("git fast-import failed: %s" % err.read().decode(errors="replace"))


def _as_dt(value):
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    dt = datetime.datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=datetime.timezone.utc)


def current_head(git_dir):
    """The branch name HEAD points at (whether or not it has commits), or None."""
    out = git(git_dir, "symbolic-ref", "-q", "HEAD", check=False).decode().strip()
    return out[len("refs/heads/"):] if out.startswith("refs/heads/") else None


def tree_size(git_dir):
    """Total bytes of the files at HEAD: a stable stand-in for Bitbucket's repository size."""
    out = git(git_dir, "ls-tree", "-r", "-l", "-z", "HEAD", check=False)
    total = 0
    for entry in out.split(b"\0"):
        parts = entry.split(b"\t", 1)[0].split()
        if len(parts) == 4 and parts[3].isdigit():
            total += int(parts[3])
    return total


def newest_date(git_dir):
    """The newest committer date over all branches and tags (ISO, UTC), or None when empty."""
    out = git(git_dir, "log", "--branches", "--tags", "-1", "--format=%ct", check=False).decode().strip()
    if not out:
        return None
    return iso_utc(int(out))


def iso_utc(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()


# --------------------------------------------------------------------------- demo content

ALICE = ("Alice Example", "alice@acme.example")
BOB = ("Bob Builder", "bob@acme.example")
ZOE = ("Zoë Ünal", "zoe@acme.example")


def _c_function(name, body):
    return "\nint %s(void)\n{\n%s}\n" % (name, body)


def _api_commits():
    """About 35 commits for acme/api: a small C library growing one step at a time."""
    readme = "# api\n\nThe public API of the Acme platform, as a small C library.\n"
    util = "/* util.c - small string helpers. */\n#include <string.h>\n#include \"api.h\"\n"
    header = ("#ifndef API_H\n#define API_H\n\n#include <stddef.h>\n\n"
              "int api_init(void);\nvoid api_cleanup(void);\n\n#endif\n")
    commits = [
        {"message": "Initial commit", "files": {
            "README.md": readme,
            ".gitignore": "build/\n*.o\n",
            "LICENSE": "MIT License\n\nCopyright (c) 2024 Acme Corp\n"}},
        {"message": "Add build system", "files": {
            "Makefile": "CFLAGS ?= -O2 -Wall\n\nall: libapi.a\n\nlibapi.a: src/api.o src/util.o\n\tar rcs $@ $^\n"}},
        {"message": "Add public header", "files": {"include/api.h": header}},
        {"message": "Add api_init and api_cleanup", "files": {
            "src/api.c": "/* api.c - library entry points. */\n#include \"api.h\"\n\nint api_init(void)\n{\n\treturn 0;\n}\n\nvoid api_cleanup(void)\n{\n}\n"}},
        {"message": "Add string helpers", "files": {"src/util.c": util}, "author": BOB},
    ]
    helpers = ["trim", "split", "join", "lower", "upper", "starts_with", "ends_with",
               "replace", "count", "reverse", "pad_left", "pad_right", "is_blank",
               "strip_prefix", "strip_suffix"]
    for i, h in enumerate(helpers):
        util += _c_function("str_" + h, "\treturn %d;\n" % i)
        commits.append({"message": "Add str_%s helper" % h, "files": {"src/util.c": util},
                        "author": BOB if i % 3 == 0 else ALICE})
        if h == "replace":
            commits[-1]["id"] = "tag-v1"
    # a multi-line message
    commits.append({"message": (
        "Handle HTTP 429 responses\n\n"
        "The server may answer 429 when the rate limit is exceeded.\n"
        "Back off exponentially and retry up to five times.\n\n"
        "Refs: #12\n"), "files": {
            "src/retry.c": "/* retry.c - exponential back-off. */\n#include \"api.h\"\n\n"
                           "int api_retry_delay(int attempt)\n{\n\treturn 1 << attempt;\n}\n"}})
    # a unicode message, by a unicode author, in a non-UTC time zone
    commits.append({"message": "Décoder les réponses UTF-8 correctement ✓ — 日本語テスト",
                    "author": ZOE, "date": "2024-01-03T21:00:00+02:00",
                    "files": {"docs/encoding.md": "# Encodage\n\nToutes les réponses sont en UTF-8 — même « ça ».\n"}})
    commits.append({"message": "Document the retry policy", "id": "fork-release",
                    "files": {"README.md": readme + "\n## Retries\n\n429 and 5xx answers are retried.\n"}})
    # release-1.0 forks here and gets one fix of its own
    commits.append({"branch": "release-1.0", "from": "fork-release", "message": "Bump version to 1.0.1",
                    "files": {"VERSION": "1.0.1\n"}, "author": BOB})
    commits.append({"message": "Add version file", "files": {"VERSION": "1.1.0-dev\n"}, "id": "tag-v2"})
    commits.append({"message": "Add api_version()", "id": "fork-x", "files": {
        "src/version.c": "#include \"api.h\"\n\nconst char *api_version(void)\n{\n\treturn \"1.1.0-dev\";\n}\n"}})
    # feature/x: three commits, merged back into main with a merge commit
    commits.append({"branch": "feature/x", "from": "fork-x", "message": "Start feature X",
                    "files": {"src/x.c": "/* x.c - feature X. */\n#include \"api.h\"\n"}})
    # "pr1-base": main when pull request #1 (feature/x) was opened, before the merge
    commits.append({"message": "Add CHANGELOG", "id": "pr1-base",
                    "files": {"CHANGELOG.md": "# Changelog\n\n## 1.1.0\n\n- api_version()\n"}})
    commits.append({"branch": "feature/x", "message": "Implement x_run()", "files": {
        "src/x.c": "/* x.c - feature X. */\n#include \"api.h\"\n\nint x_run(void)\n{\n\treturn 42;\n}\n"}})
    commits.append({"branch": "feature/x", "message": "Test x_run()", "author": BOB, "files": {
        "tests/test_x.c": "#include <assert.h>\n\nint x_run(void);\n\nint main(void)\n{\n\tassert(x_run() == 42);\n\treturn 0;\n}\n"}})
    commits.append({"message": "Merge branch 'feature/x'", "merge": "feature/x"})
    commits.append({"message": "Mention feature X in the CHANGELOG", "id": "fork-y", "files": {
        "CHANGELOG.md": "# Changelog\n\n## 1.1.0\n\n- api_version()\n- feature X\n"}})
    # feature/deep/y: two commits that are not merged
    commits.append({"branch": "feature/deep/y", "from": "fork-y", "message": "Sketch feature Y",
                    "files": {"src/y.c": "/* y.c - feature Y (work in progress). */\n"}})
    commits.append({"branch": "feature/deep/y", "message": "Feature Y: parse options", "author": BOB,
                    "files": {"src/y.c": "/* y.c - feature Y (work in progress). */\n\nint y_parse(int argc)\n{\n\treturn argc;\n}\n"}})
    commits.append({"message": "Add contributing guide", "author": ZOE, "files": {
        "CONTRIBUTING.md": "# Contributing\n\nRun `make` and send a pull request.\n"}})
    commits.append({"message": "Add CI pipeline", "author": BOB, "files": {
        "bitbucket-pipelines.yml": "pipelines:\n  default:\n    - step:\n        script:\n          - make\n"}})
    commits.append({"message": "Fix typo in README", "files": {
        "README.md": readme.replace("small C", "small, portable C") +
        "\n## Retries\n\n429 and 5xx answers are retried.\n"}})
    commits.append({"message": "Release 1.1.0", "files": {"VERSION": "1.1.0\n"}})
    return commits


def _rev(git_dir, rev):
    """The full commit hash of REV in GIT_DIR."""
    return git(git_dir, "rev-parse", "--verify", rev + "^{commit}").decode().strip()


def _pr_comments(first_id, authors, texts, start, step_minutes=37):
    """Comment records for data.json: ids from FIRST_ID, dates from START (ISO) on."""
    t0 = _as_dt(start)
    out = []
    for i, text in enumerate(texts):
        when = (t0 + datetime.timedelta(minutes=step_minutes * i)).isoformat(timespec="microseconds")
        out.append({"id": first_id + i, "author": authors[i % len(authors)], "raw": text,
                    "created_on": when, "updated_on": when})
    return out


def _api_pullrequests(info):
    """Pull requests of acme/api (data.json records; commits are full hashes resolved now).

    #1 OPEN feature/x -> main. feature/x was merged into main later in git's history, so
       the destination commit is main as it was when the PR was opened ("pr1-base"): the
       PR's diff is then not empty.
    #2 MERGED release-1.0 -> main. git has no real merge of it; merge_commit is main's
       "Add version file" commit (tag v2), standing in for a squash merge.
    #3 DECLINED feature/deep/y -> main (main's tip when the demo is built).
    #4 OPEN feature/deep/y -> release-1.0, a hostile title, an empty description."""
    g, ids = info["git_dir"], info["ids"]
    alice, zoe = ALICE[1], ZOE[1]
    texts = ["Looks good overall. A few nits below.",
             "Should `x_run()` be declared in `include/api.h`?",
             "Good point, I will add it.",
             "Multi-line comment:\n\n* first point\n* second point\n\nThanks!",
             "Merci ✓ — 日本語のコメント",
             "<script>alert('not html')</script> & \"quotes\""]
    texts += ["Review note %d: %s" % (n, w) for n, w in enumerate(
        ["naming", "tests", "docs", "error handling", "style", "performance", "memory",
         "threads", "portability", "build", "CI", "changelog", "license", "headers", "coverage",
         "release notes", "final check"], start=7)]
    assert len(texts) == 23
    return [
        {"id": 1, "title": "Add feature X", "state": "OPEN",
         "description": "Adds feature X.\n\n* `x_run()` returns 42\n* with a test\n\nCloses #7.",
         "author": alice,
         "source": {"branch": "feature/x", "commit": _rev(g, "feature/x")},
         "destination": {"branch": "main", "commit": ids["pr1-base"]},
         "merge_commit": None, "closed_by": None, "reason": "", "close_source_branch": True,
         "task_count": 1,
         "created_on": "2024-01-03T10:00:00.101010+00:00",
         "updated_on": "2024-01-06T16:30:00.101010+00:00",
         "comments": _pr_comments(100001, [zoe, alice], texts, "2024-01-05T09:30:00.000000+00:00")},
        {"id": 2, "title": "Release 1.0", "state": "MERGED",
         "description": "Bump the version to 1.0.1.", "author": zoe,
         "source": {"branch": "release-1.0", "commit": _rev(g, "release-1.0")},
         "destination": {"branch": "main", "commit": ids["fork-release"]},
         "merge_commit": ids["tag-v2"], "closed_by": alice, "reason": "",
         "close_source_branch": False, "task_count": 0,
         "created_on": "2024-01-04T08:00:00.202020+00:00",
         "updated_on": "2024-01-04T12:00:00.202020+00:00",
         "comments": _pr_comments(100101, [alice], ["Ship it!"], "2024-01-04T11:00:00.000000+00:00")},
        {"id": 3, "title": "Experimental: rewrite everything", "state": "DECLINED",
         "description": "Let us start over.\n\nThis is not meant to be merged.", "author": alice,
         "source": {"branch": "feature/deep/y", "commit": _rev(g, "feature/deep/y")},
         "destination": {"branch": "main", "commit": _rev(g, "main")},
         "merge_commit": None, "closed_by": zoe, "reason": "Too big to review.",
         "close_source_branch": False, "task_count": 0,
         "created_on": "2024-01-05T11:00:00.303030+00:00",
         "updated_on": "2024-01-05T18:00:00.303030+00:00",
         "comments": _pr_comments(100201, [zoe, alice], ["Please split this up.", "Declining for now."],
                                  "2024-01-05T12:00:00.000000+00:00")},
        {"id": 4, "title": 'Fix "quotes" / slashes\tand tabs', "state": "OPEN",
         "description": "", "author": zoe,
         "source": {"branch": "feature/deep/y", "commit": _rev(g, "feature/deep/y")},
         "destination": {"branch": "release-1.0", "commit": _rev(g, "release-1.0")},
         "merge_commit": None, "closed_by": None, "reason": "", "close_source_branch": False,
         "task_count": 0,
         "created_on": "2024-01-06T08:00:00.404040+00:00",
         "updated_on": "2024-01-06T08:00:00.404040+00:00",
         "comments": []},
    ]


def _web_pullrequests(info):
    g = info["git_dir"]
    return [
        {"id": 1, "title": "Dark theme", "state": "OPEN",
         "description": "Try a dark theme for the portal.", "author": ZOE[1],
         "source": {"branch": "dev", "commit": _rev(g, "dev")},
         "destination": {"branch": "main", "commit": _rev(g, "main")},
         "merge_commit": None, "closed_by": None, "reason": "", "close_source_branch": True,
         "task_count": 0,
         "created_on": "2024-02-12T09:00:00.505050+00:00",
         "updated_on": "2024-02-12T10:00:00.505050+00:00",
         "comments": _pr_comments(200001, [ALICE[1], ZOE[1]],
                                  ["Nice! Does it work on mobile?", "Yes, tested on two phones."],
                                  "2024-02-12T09:15:00.000000+00:00")},
    ]


def pullrequests(data_json, slug, workspace="acme"):
    """The pull requests of WORKSPACE/SLUG as data.json has them (what the server serves),
    oldest id first: a list of dicts with

      id, title, description, state, author (an email, a key of data.json's "users"),
      source / destination: {"branch": name, "commit": full 40-hex hash},
      merge_commit (full hash or None), closed_by (email or None), reason,
      close_source_branch, task_count, created_on, updated_on,
      comments: [{"id", "author", "raw", "created_on", "updated_on", "deleted"?}],
      comment_count (the number of comments that are not deleted).

    A source or destination without "commit" is resolved from its branch now, as the
    server does on each request (None when the branch does not exist)."""
    data = json.loads(pathlib.Path(data_json).read_text(encoding="utf-8"))
    rec = data["workspaces"][workspace]["repositories"][slug]
    git_dir = rec.get("git_dir")
    if git_dir and not os.path.isabs(git_dir):
        git_dir = os.path.join(os.path.dirname(os.path.abspath(data_json)), git_dir)
    out = []
    for pr in sorted(rec.get("pullrequests") or [], key=lambda p: p["id"]):
        pr = json.loads(json.dumps(pr))
        for side in ("source", "destination"):
            end = pr.setdefault(side, {})
            if not end.get("commit") and git_dir:
                sha = git(git_dir, "rev-parse", "--verify", "--quiet",
                          "refs/heads/%s^{commit}" % end.get("branch"), check=False).decode().strip()
                end["commit"] = sha or None
        pr.setdefault("comments", [])
        pr["comment_count"] = sum(1 for c in pr["comments"] if not c.get("deleted"))
        out.append(pr)
    return out


def build_demo(root):
    """Build the demo workspace under ROOT; return the path of ROOT/data.json."""
    root = pathlib.Path(root).resolve()
    gitroot = root / "git" / "acme"
    if gitroot.exists() and any(gitroot.iterdir()):
        # make_repo() would extend the old repositories and change every hash
        raise FileExistsError("%s already holds demo repositories; use a fresh directory" % gitroot)
    repos = {}

    def add(slug, project, info, description, language, created_on, is_private=True):
        repos[slug] = {
            "project": project,
            "git_dir": info["git_dir"],
            "description": description,
            "language": language,
            "is_private": is_private,
            "uuid": det_uuid("acme/" + slug),
            "created_on": created_on,
            "updated_on": newest_date(info["git_dir"]) or created_on,
            "size": info["size"],
        }

    api = make_repo(gitroot / "api.git", _api_commits(),
                    tags={"v1": {"rev": "tag-v1", "message": "Version 1\n\nFirst stable API.",
                                 "date": "2024-01-04T12:00:00+00:00"},
                          "v2": "tag-v2"})
    add("api", "PLAT", api, "The public API", "c", "2024-01-02T08:00:00.123456+00:00")
    repos["api"]["pullrequests"] = _api_pullrequests(api)

    web = make_repo(gitroot / "web.git", [
        {"message": "Initial web app", "files": {
            "README.md": "# web\n\nThe Acme customer portal.\n",
            "package.json": '{\n  "name": "acme-web",\n  "version": "0.1.0"\n}\n',
            "src/index.js": "console.log('hello from acme');\n"}},
        {"message": "Add login page", "author": BOB, "files": {
            "src/login.js": "export function login(user) {\n  return fetch('/login', {method: 'POST'});\n}\n"}},
        {"branch": "dev", "from": "main", "message": "Try a dark theme", "files": {
            "src/theme.css": "body { background: #111; color: #eee; }\n"}},
    ], start="2024-02-10T10:00:00+00:00")
    add("web", "PLAT", web, "Customer portal", "javascript", "2024-01-05T10:00:00+00:00")
    repos["web"]["pullrequests"] = _web_pullrequests(web)

    tools = make_repo(gitroot / "tools.git", [
        {"branch": "trunk", "message": "Add release script", "files": {
            "release.py": {"content": "#!/usr/bin/env python3\nprint('releasing')\n", "executable": True},
            "README.md": "# tools\n\nScripts the platform team uses.\n"}},
        {"branch": "trunk", "message": "Add lint script", "author": BOB, "files": {
            "lint.sh": {"content": "#!/bin/sh\nexec cc -fsyntax-only \"$@\"\n", "executable": True}}},
    ], head="trunk", start="2024-02-20T08:00:00+00:00")
    add("tools", "PLAT", tools, "Build and release tools", "python", "2024-02-01T09:30:00+00:00")

    empty = make_repo(gitroot / "empty.git")
    add("empty", "PLAT", empty, "", "", "2024-03-10T12:00:00+00:00")

    docs = make_repo(gitroot / "docs.git", [
        {"message": "Start the handbook", "files": {"index.md": "# Handbook\n\nWelcome to Acme.\n"}},
        {"message": "Add on-call page", "author": ZOE, "files": {
            "oncall.md": "# On call\n\nPage the platform team for outages.\n"}},
    ], start="2024-03-02T14:00:00+00:00")
    add("docs", "PLAT", docs, "Team documentation.\nSecond line of the description.", "",
        "2024-03-01T11:00:00+00:00", is_private=False)

    infra = make_repo(gitroot / "infra.git", [
        {"message": "Add provisioning script", "files": {
            "provision.sh": {"content": "#!/bin/sh\nset -eu\necho provisioning\n", "executable": True}}},
        {"message": "Provision the database too", "author": BOB, "files": {
            "provision.sh": {"content": "#!/bin/sh\nset -eu\necho provisioning\necho database\n",
                             "executable": True}}},
    ], start="2024-01-03T07:00:00+00:00")
    add("infra", "OPS", infra, "Infrastructure as code", "shell", "2024-01-03T06:00:00+00:00")

    secrets = make_repo(gitroot / "secrets-ops.git", [
        {"message": "Add encrypted vault placeholder", "files": {
            "vault.txt": "This file would hold encrypted secrets.\n"}},
    ], start="2024-02-15T16:00:00+00:00")
    add("secrets-ops", "OPS", secrets, "Operational secrets (encrypted)", "",
        "2024-02-15T15:00:00+00:00")

    return write_data(root, _acme_data(repos))


# --------------------------------------------------------------------------- the `files` repository

LARGE_SIZE = 60 << 20            # big/large.bin: over 50 MiB
LARGE_PAGE = 4096
SUBMODULE_SHA = hashlib.sha1(b"acme/lib at v1.0").hexdigest()   # vendor/lib points here


def pseudo_random(seed, size):
    """SIZE deterministic bytes that look random (NUL bytes included): SHA-256 in counter mode."""
    out, n = [], 0
    while n < size:
        block = hashlib.sha256(b"%s:%d" % (seed.encode(), len(out))).digest()
        out.append(block)
        n += len(block)
    return b"".join(out)[:size]


def large_file_chunks():
    """big/large.bin, 1 MiB at a time: 4 KiB pages, each starting with its own offset
    ("page 000000004096\\n") and filled with bytes 0..255, so that content read from the
    wrong place never matches, while git compresses it to almost nothing, quickly."""
    filler = bytes(range(256)) * (LARGE_PAGE // 256)
    per_chunk = (1 << 20) // LARGE_PAGE
    for c in range(LARGE_SIZE // (1 << 20)):
        pages = []
        for i in range(per_chunk):
            head = b"page %012d\n" % ((c * per_chunk + i) * LARGE_PAGE)
            pages.append(head + filler[len(head):])
        yield b"".join(pages)


def _files_commits():
    readme = "# files\n\nA repository with every kind of tree entry bbfs has to show.\n"
    readme_v2 = readme + "\nSee `many/` for a directory that needs two pages.\n"
    old_name = "".join("line %d of a file that is renamed later\n" % i for i in range(1, 21))
    many = {"many/file-%03d" % i: "file number %d\n" % i for i in range(150)}
    return [
        {"message": "Initial import", "id": "root", "files": {
            "README.md": readme,
            ".gitignore": "*.o\n/build/\n",
            "empty.txt": "",
            "with space.txt": "a name with a space\n",
            "ünïcödé.txt": "ünïcödé content ✓\n",
            "日本語/ファイル.md": "# ファイル\n\n日本語のテキスト。\n",
            "-rf": "a file, not an option\n",
            "--help.txt": "not an option either\n",
            "names/a#b?c%d&e=f+g;h.txt": "URL-special characters in the name\n",
            "names/\"quoted\" back\\slash.txt": "a double quote and a backslash in the name\n",
            "bin/run.sh": {"content": "#!/bin/sh\necho running\n", "executable": True},
            "link-to-readme": {"symlink": "README.md"},
            "old-name.txt": old_name,
            "doomed.txt": "this file is deleted later\n",
        }},
        {"message": "Add binary data, a deep path and hidden files", "author": BOB, "files": {
            "data/blob.bin": b"BLOB\0" + pseudo_random("data/blob.bin", 100 * 1024 - 5),
            "a/b/c/d/e/f/deep.txt": "six levels down\n",
            "dir with space/inner file": "inside a directory with a space\n",
            ".hidden/dir/x": "hidden\n",
            "escape": {"symlink": "../../../../etc/passwd"},
        }},
        {"message": "Add 150 small files", "id": "v1", "files": many},
        {"branch": "topic", "from": "v1", "message": "Add the lib submodule", "author": ZOE, "files": {
            ".gitmodules": "[submodule \"vendor/lib\"]\n\tpath = vendor/lib\n"
                           "\turl = https://bitbucket.org/acme/lib.git\n",
            "vendor/lib": {"submodule": SUBMODULE_SHA}}},
        {"branch": "topic", "message": "Add the model (stored in LFS)", "files": {
            "assets/model.lfs": pseudo_random("assets/model.lfs", 1 << 20)}},
        {"message": "Expand the README", "files": {"README.md": readme_v2}},
        # main's README wins (make_repo's merge would take topic's older one)
        {"message": "Merge branch 'topic'", "merge": "topic", "id": "merge",
         "files": {"README.md": readme_v2}},
        {"message": "Rename old-name.txt, delete doomed.txt", "author": BOB, "id": "v2", "files": {
            "old-name.txt": None, "new-name.txt": old_name, "doomed.txt": None,
            "many/file-007": "file number 7, changed\n"}},
        {"message": "Add a large file", "files": {
            "big/large.bin": {"generate": large_file_chunks, "size": LARGE_SIZE}}},
    ]


def build_tree_fixture(root, with_demo=False):
    """Build repository acme/files (project PLAT) under ROOT; return ROOT/data.json.

    With WITH_DEMO, the demo repositories (build_demo) are in the same data.json too.
    About a second, mostly for the 60 MiB file; deterministic like the demo."""
    root = pathlib.Path(root).resolve()
    target = root / "git" / "acme" / "files.git"
    if target.exists():
        raise FileExistsError("%s already exists; use a fresh directory" % target)
    if with_demo:
        build_demo(root)
        data = json.loads((root / "data.json").read_text(encoding="utf-8"))
    else:
        data = _acme_data({})
    info = make_repo(target, _files_commits(), tags={
        "v1": {"rev": "v1", "message": "Version 1", "date": "2024-04-02T12:00:00+00:00"},
        "v2": "v2"}, start="2024-04-01T09:00:00+00:00")
    data["workspaces"]["acme"]["repositories"]["files"] = {
        "project": "PLAT",
        "git_dir": info["git_dir"],
        "description": "Every kind of tree entry",
        "language": "",
        "is_private": True,
        "uuid": det_uuid("acme/files"),
        "created_on": "2024-03-31T08:00:00.000000+00:00",
        "updated_on": newest_date(info["git_dir"]),
        "size": info["size"],
        # raw GETs of these files answer with a redirect to the LFS listener
        "lfs": ["*.lfs"],
    }
    return write_data(root, data)


def _acme_data(repos):
    """data.json content for workspace acme (projects PLAT and OPS) holding REPOS."""
    return {
        "version": 1,
        "workspaces": {
            "acme": {
                "name": "Acme Corp",
                "uuid": det_uuid("workspace/acme"),
                "created_on": "2023-12-01T10:00:00.000000+00:00",
                "is_private": True,
                "projects": {
                    "PLAT": {"name": "Platform", "uuid": det_uuid("acme/project/PLAT"),
                             "description": "Platform team repositories",
                             "created_on": "2023-12-02T10:00:00.000000+00:00",
                             "updated_on": "2024-03-10T12:00:00.000000+00:00", "is_private": True},
                    "OPS": {"name": "Operations", "uuid": det_uuid("acme/project/OPS"),
                            "description": "Operations team repositories",
                            "created_on": "2023-12-03T10:00:00.000000+00:00",
                            "updated_on": "2024-02-15T15:00:00.000000+00:00", "is_private": True},
                },
                "repositories": repos,
            }
        },
        "tokens": {
            "demo-token": {"workspaces": ["acme"], "projects": None, "workspace_read": True},
            "pat-token": {"workspaces": ["acme"], "projects": ["PLAT"], "workspace_read": False},
            # like pat-token, but without the `pullrequest` scope: /pullrequests* answers 403.
            # A token without "scopes" has every scope.
            "nopr-token": {"workspaces": ["acme"], "projects": ["PLAT"], "workspace_read": False,
                           "scopes": ["project", "repository"]},
        },
        # Authors whose email matches get an `author.user` object; others only `author.raw`.
        "users": {
            "alice@acme.example": {"display_name": "Alice Example", "nickname": "alice",
                                   "uuid": det_uuid("user/alice"), "account_id": "557058:alice-0001"},
            "zoe@acme.example": {"display_name": "Zoë Ünal", "nickname": "zoe",
                                 "uuid": det_uuid("user/zoe"), "account_id": "557058:zoe-0003"},
        },
    }


def write_data(root, data):
    """Write ROOT/data.json atomically (the server reloads it when it changes)."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = root / "data.json"
    tmp = root / (".data.json.%d.tmp" % os.getpid())
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="Build the fake Bitbucket demo data.")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="build the demo repositories and data.json in this directory")
    where.add_argument("--tree-out", help="build the `files` repository and data.json in this directory")
    ap.add_argument("--with-demo", action="store_true", help="with --tree-out: the demo repositories too")
    args = ap.parse_args(argv)
    if args.out:
        print(build_demo(args.out))
    else:
        print(build_tree_fixture(args.tree_out, with_demo=args.with_demo))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""A fake Bitbucket Cloud REST API 2.0 server, for bbfs's tests and `make demo`.

It answers the read-only endpoints bbfs uses (workspaces, projects, repositories, refs,
commits, file trees and contents at a commit, diffs, patches, pull requests and their
comments) with the shapes, pagination
styles, error bodies and headers of the real API (see ../shared/bitbucket-api.md, beside the
checkout),
computed at request time from real git repositories listed in a data.json file written by
fixture.py.  Nothing about refs is cached, and data.json is re-read whenever it changes, so
a test can move a branch or add a repository and see it on the next request.  A second
listener on another port stands in for the LFS media storage that Bitbucket redirects file
downloads to.  Fault knobs under /_fake/ let tests inject latency, errors, rate limiting,
broken JSON, hung requests, cut connections and slow bodies, and make it as strict as
Bitbucket where Bitbucket is harsher than a client might hope: a rolling rate-limit budget,
no 304s, recursive listings that time out, LFS sizes read from the pointer.

Usage: server.py --data DATA.json [--host H] [--port P] [--port-file F] [--log F]
                 [--latency-ms N] [--max-pagelen N] [--lfs-port P] [--static-heads]
                 [--no-304] [--tls-cert PEM [--tls-key PEM]]

It also serves the repositories over git's smart HTTP protocol (githttp.py: `git
http-backend` as a CGI) under /WORKSPACE/SLUG.git/ as bitbucket.org does, and under
/git/WORKSPACE/SLUG.git/.

Python 3 standard library only; run with /usr/bin/python3.
"""

import argparse
import base64
import binascii
import collections
import datetime
import fnmatch
import hashlib
import html
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, unquote_to_bytes, urlsplit

import githttp

# Error messages, verbatim from the real API where known (bitbucket-api.md §3.10).
MSG_BAD_TOKEN = "Token is invalid, expired, or not supported for this endpoint."
MSG_NO_REPO = ("You may not have access to this repository or it no longer exists in this "
               "workspace. If you think this repository exists and you have access, make sure "
               "you are authenticated.")
MSG_NOT_ACCESSIBLE = "This API is not accessible by this authentication mechanism"
MSG_NO_COMMIT = "Commit not found"
MSG_BAD_PAGELEN = "Invalid pagelen"
MSG_NO_WORKSPACE = "Workspace not found"    # real wording unknown
MSG_NO_PROJECT = "Project not found"        # real wording unknown
MSG_NO_BRANCH = "Branch not found"          # real wording unknown
MSG_NO_TAG = "Tag not found"                # real wording unknown
MSG_NO_RESOURCE = "Resource not found"
MSG_NO_PATH = "No such file or directory"   # real wording unknown
MSG_NO_PR = "Pull request not found"        # real wording unknown
MSG_NO_COMMENT = "Comment not found"        # real wording unknown
MSG_SCOPE = "Your credentials lack one or more required privilege scopes."
MSG_TIMEOUT = "Timeout"                     # the 555 of a listing too big (real wording unknown)
RATE_LIMIT_BODY = b"Rate limit for this resource has been exceeded"
NEAR_LIMIT_SHARE = 0.2     # X-RateLimit-NearLimit: true when less than this share is left

# What git-lfs writes in place of a file's content (the oid is always 64 hex digits, so the
# pointer's size depends on the content's size alone).
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"

DEFAULT_PAGELEN = 10
COMMITS_PAGELEN = 30
MAX_PAGELEN = 100
PR_MAX_PAGELEN = 50        # /pullrequests only (bitbucket-api.md §2.2)
PR_STATES = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")

CHUNK = 64 * 1024          # bytes per write of a streamed body
BINARY_PROBE = 8000        # git's rule: a NUL in the first 8000 bytes makes a file binary

# Content-Type of raw file bodies and `mimetype` of listing entries, guessed from the
# extension like the real API does.  A fixed table rather than the mimetypes module, whose
# answers depend on the machine's /etc/mime.types.
MIME_TYPES = {
    "txt": "text/plain", "md": "text/markdown", "markdown": "text/markdown", "rst": "text/x-rst",
    "html": "text/html", "htm": "text/html", "css": "text/css", "csv": "text/csv",
    "js": "application/javascript", "json": "application/json", "xml": "application/xml",
    "yml": "application/x-yaml", "yaml": "application/x-yaml", "toml": "application/toml",
    "sh": "text/x-sh", "py": "text/x-python", "c": "text/x-csrc", "h": "text/x-chdr",
    "go": "text/x-go", "java": "text/x-java", "ts": "text/vnd.trolltech.linguist",
    "bat": "application/x-msdos-program", "pdf": "application/pdf", "png": "image/png",
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "svg": "image/svg+xml",
    "zip": "application/zip", "gz": "application/gzip", "tar": "application/x-tar",
    "bin": "application/octet-stream",
}

# The options of every /diff: what `git diff` prints by default, made independent of any
# configuration (tests compare with `git diff` + these options + -M).
DIFF_OPTIONS = ["--no-color", "--no-ext-diff", "--no-textconv", "--full-index",
                "--src-prefix=a/", "--dst-prefix=b/"]

# Merge strategies every branch advertises (shape of bitbucket-api.md §3.5).
MERGE_STRATEGIES = ["merge_commit", "squash", "fast_forward"]

# Top-level fields that q= and sort= may name, per collection; anything else is a 400
# (the real API rejects unknown fields, and a typo in a client's query should fail loudly).
REPO_FIELDS = {"slug", "name", "full_name", "uuid", "description", "language", "is_private",
               "size", "created_on", "updated_on", "project", "mainbranch", "scm", "workspace",
               "owner", "website", "fork_policy", "has_issues", "has_wiki", "parent", "type"}
REF_FIELDS = {"name", "target", "type", "date", "message", "tagger"}
PROJECT_FIELDS = {"key", "name", "uuid", "description", "is_private", "created_on",
                  "updated_on", "type"}
PR_FIELDS = {"id", "title", "description", "state", "author", "source", "destination",
             "merge_commit", "comment_count", "task_count", "close_source_branch", "closed_by",
             "reason", "created_on", "updated_on", "type", "summary"}
COMMENT_FIELDS = {"id", "content", "user", "created_on", "updated_on", "deleted", "type"}


class ApiError(Exception):
    """An API answer other than 200: status plus the standard error body. `fault` names the
    knob that caused it (for the request log); `delay` is how long the answer takes."""

    def __init__(self, status, message, detail=None, headers=None, fault=None, delay=0):
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = headers or []
        self.fault = fault
        self.delay = delay

    def body(self):
        err = {"message": self.message}
        if self.detail:
            err["detail"] = self.detail
        return {"type": "error", "error": err}


def iso_utc(ts):
    """Unix seconds -> ISO-8601 in UTC with an explicit +00:00, as Bitbucket writes dates."""
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).isoformat()


def json_bytes(obj):
    # Compact, UTF-8 (not \\u escapes): clients must cope with real multi-byte text.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def quote_ref(name):
    """A ref name inside a link: slashes stay raw, as in the real API's links (§3.5, §3.6)."""
    return quote(name, safe="/$;&=@!,:+()*'~")


# --------------------------------------------------------------------------- git access

def git_env():
    env = dict(os.environ)
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C",
                "GIT_TERMINAL_PROMPT": "0"})
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"):
        env.pop(var, None)
    return env


_GIT_ENV = git_env()
HEX_RE = re.compile(r"[0-9a-fA-F]{4,40}")


class GitRepo:
    """Read-only queries against one git directory, one subprocess each, never cached."""

    def __init__(self, git_dir):
        # --git-dir, not -C: a missing repository must never be "found" by git's discovery
        # in some enclosing directory (such as the bbfs checkout itself)
        if git_dir and os.path.isdir(os.path.join(git_dir, ".git")):
            git_dir = os.path.join(git_dir, ".git")
        self.dir = git_dir if git_dir and os.path.isfile(os.path.join(git_dir, "HEAD")) else ""

    def run(self, *args, input=None):
        cmd = ["git", "-c", "safe.directory=*", "--git-dir=" + self.dir] + list(args)
        try:
            res = subprocess.run(cmd, input=input, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=_GIT_ENV, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ApiError(500, "git failed: %s" % e)
        return res.returncode, res.stdout

    def refs(self):
        """({branch: sha}, {tag: (objecttype, objectsha, peeled commit sha or None)})."""
        if not os.path.isdir(self.dir):
            return {}, {}
        rc, out = self.run("for-each-ref",
                           "--format=%(refname)%00%(objecttype)%00%(objectname)%00%(*objectname)"
                           "%00%(*objecttype)", "refs/heads", "refs/tags")
        branches, tags = {}, {}
        if rc != 0:
            return branches, tags
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            refname, otype, osha, peeled, ptype = line.split("\0")
            if refname.startswith("refs/heads/"):
                if otype == "commit":
                    branches[refname[11:]] = osha
            elif refname.startswith("refs/tags/"):
                if otype == "commit":
                    tags[refname[10:]] = ("commit", osha, osha)
                elif otype == "tag" and ptype == "commit":
                    tags[refname[10:]] = ("tag", osha, peeled)
        return branches, tags

    def head_branch(self):
        """The branch HEAD names, if it exists (None for a repository without commits)."""
        if not os.path.isdir(self.dir):
            return None
        rc, out = self.run("rev-parse", "--verify", "--quiet", "--symbolic-full-name", "HEAD")
        name = out.decode("utf-8", "surrogateescape").strip()
        if rc == 0 and name.startswith("refs/heads/"):
            return name[11:]
        return None

    def read_objects(self, shas):
        """{sha: (type, bytes)} for the given object names, via one `git cat-file --batch`."""
        shas = [s for s in dict.fromkeys(shas) if s]
        if not shas:
            return {}
        rc, out = self.run("cat-file", "--batch", input=("\n".join(shas) + "\n").encode())
        result, pos = {}, 0
        for want in shas:
            nl = out.index(b"\n", pos)
            header = out[pos:nl].decode().split()
            pos = nl + 1
            if len(header) != 3:            # "<name> missing"
                continue
            size = int(header[2])
            result[want] = (header[1], out[pos:pos + size])
            pos += size + 1
        return result

    def resolve(self, rev, branches=None, tags=None):
        """A commit sha for REV (branch name, tag name, full or short hash), or None.

        Only exact ref names and hex hashes are accepted (not `main~2` or `a..b`), so a client
        that builds a bad revision string gets a 404 here as it would from Bitbucket."""
        if not rev:
            return None
        if _GIT_CACHE is not None and len(rev) == 40 and HEX_RE.fullmatch(rev) and os.path.isdir(self.dir):
            return self.resolve_full_hash(rev.lower())      # --cache-git: a full hash is a hash
        if branches is None:
            branches, tags = self.refs()
        # exact ref names first: a branch may be called "-dash" or look like a hash
        if rev in branches:
            return branches[rev]
        if rev in tags:
            return tags[rev][2]
        if HEX_RE.fullmatch(rev) and os.path.isdir(self.dir):
            if _GIT_CACHE is not None and len(rev) == 40:
                return self.resolve_full_hash(rev.lower())
            rc, out = self.run("rev-parse", "--verify", "--quiet", rev + "^{commit}")
            if rc == 0:
                return out.decode().strip()
        return None

    def resolve_full_hash(self, sha):
        """--cache-git: the commit a full hash names (remembered; None is not)."""
        key = (self.dir, "commit", sha)
        with _GIT_CACHE_LOCK:
            if key in _GIT_CACHE:
                return _GIT_CACHE[key]
        rc, out = self.run("rev-parse", "--verify", "--quiet", sha + "^{commit}")
        found = out.decode().strip() if rc == 0 else None
        if found:
            with _GIT_CACHE_LOCK:
                _GIT_CACHE[key] = found
        return found

    def rev_list(self, includes, excludes, path, skip, count):
        """Commit shas newest first in topological order (what /commits pages through)."""
        if not os.path.isdir(self.dir):
            return []
        args = ["rev-list", "--topo-order", "--skip=%d" % skip, "--max-count=%d" % count]
        args += includes if includes else ["--branches", "--tags"]
        args += ["^" + e for e in excludes]
        if path:
            args += ["--", path]
        rc, out = self.run(*args)
        return out.decode().split() if rc == 0 else []

    # ---- trees and blobs (everything below is addressed by object name: immutable)

    def ls_tree(self, treeish):
        """[TreeEntry] of one tree (a tree or commit name), in git's tree order; None if it
        is not a tree."""
        if _GIT_CACHE is not None and re.fullmatch(r"[0-9a-f]{40}", treeish or ""):
            return self.ls_tree_cached(treeish)
        rc, out = self.run("ls-tree", "-z", "-l", treeish)
        if rc != 0:
            return None
        entries = []
        for rec in out.split(b"\0"):
            if not rec:
                continue
            meta, name = rec.split(b"\t", 1)
            mode, otype, osha, size = meta.decode().split()
            entries.append(TreeEntry(name, mode, otype, osha, None if size == "-" else int(size)))
        return entries

    def ls_tree_cached(self, sha):
        """--cache-git: ls_tree of a full object name. A miss reads the whole tree below SHA
        with one `git ls-tree -r -t` and remembers every directory of it (by tree name)."""
        key = (self.dir, "tree", sha)
        with _GIT_CACHE_LOCK:
            if key in _GIT_CACHE:
                return _GIT_CACHE[key]
        rc, out = self.run("ls-tree", "-r", "-t", "-z", "-l", sha)
        if rc != 0:
            return None
        dirs = {b"": []}         # directory path -> its entries, in tree order
        tree_of = {b"": sha}     # directory path -> its tree name
        for rec in out.split(b"\0"):
            if not rec:
                continue
            meta, path = rec.split(b"\t", 1)
            mode, otype, osha, size = meta.decode().split()
            parent, _, name = path.rpartition(b"/")
            dirs.setdefault(parent, []).append(
                TreeEntry(name, mode, otype, osha, None if size == "-" else int(size)))
            if otype == "tree":
                dirs.setdefault(path, [])
                tree_of[path] = osha
        with _GIT_CACHE_LOCK:
            if len(_GIT_CACHE) > 1000000:
                _GIT_CACHE.clear()
            for path, entries in dirs.items():
                _GIT_CACHE[(self.dir, "tree", tree_of[path])] = entries
            _GIT_CACHE[key] = dirs[b""]
        return dirs[b""]

    def lookup(self, commit, segments):
        """The TreeEntry at path SEGMENTS (a list of bytes names) in COMMIT, or None.
        Walked one tree at a time, so no name is ever parsed as a pathspec or a revision."""
        treeish, entry = commit, None
        for i, seg in enumerate(segments):
            entries = self.ls_tree(treeish)
            entry = next((e for e in entries or () if e.name == seg), None)
            if entry is None:
                return None
            if i < len(segments) - 1:
                if entry.otype != "tree":
                    return None        # a path through a file, a link or a submodule
                treeish = entry.sha
        return entry

    def blob(self, sha):
        key = (self.dir, "blob", sha)
        if _GIT_CACHE is not None:
            with _GIT_CACHE_LOCK:
                if key in _GIT_CACHE:
                    return _GIT_CACHE[key]
        rc, out = self.run("cat-file", "blob", sha)
        if rc != 0:
            raise ApiError(500, "cannot read blob %s" % sha)
        if _GIT_CACHE is not None and len(out) <= CHUNK:
            with _GIT_CACHE_LOCK:
                _GIT_CACHE[key] = out       # --cache-git: small blobs only
        return out

    def blob_size(self, sha):
        """Size of blob SHA, or None when there is no such blob."""
        rc, out = self.run("cat-file", "--batch-check", input=(sha + "\n").encode())
        parts = out.decode().split()
        if rc != 0 or len(parts) != 3 or parts[1] != "blob":
            return None
        return int(parts[2])

    def is_binary(self, blobs):
        """{sha: bool} for [(sha, size)]: a NUL in the first 8000 bytes, as git decides.
        Only those bytes are read, even of a 60 MiB blob. Results are kept per blob name
        (content-addressed, so never stale)."""
        result, small, large = {}, [], []
        with _BINARY_LOCK:
            for sha, size in blobs:
                if sha in _BINARY_CACHE:
                    result[sha] = _BINARY_CACHE[sha]
                elif size <= CHUNK:
                    small.append(sha)
                else:
                    large.append(sha)
        for sha, (_t, data) in self.read_objects(small).items():
            result[sha] = b"\0" in data[:BINARY_PROBE]
        for sha in large:
            head = b""
            with self.popen("cat-file", "blob", sha) as p:
                try:
                    while len(head) < BINARY_PROBE:
                        more = p.stdout.read(BINARY_PROBE - len(head))
                        if not more:
                            break
                        head += more
                finally:
                    p.kill()
            result[sha] = b"\0" in head
        with _BINARY_LOCK:
            if len(_BINARY_CACHE) > 100000:
                _BINARY_CACHE.clear()
            _BINARY_CACHE.update(result)
        return result

    def popen(self, *args, stdout=subprocess.PIPE):
        cmd = ["git", "-c", "safe.directory=*", "--git-dir=" + self.dir] + list(args)
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=subprocess.DEVNULL, env=_GIT_ENV)

    def blob_stream(self, sha):
        """A function returning an iterator over blob SHA's bytes, read from git in CHUNK
        pieces (memory does not grow with the blob). Closing the iterator early stops git."""
        def chunks():
            p = self.popen("cat-file", "blob", sha)
            try:
                while True:
                    data = p.stdout.read(CHUNK)
                    if not data:
                        break
                    yield data
            finally:
                if p.poll() is None:
                    p.kill()
                p.stdout.close()
                p.wait()
        return chunks

    def to_file(self, *args):
        """Run git with stdout into an anonymous temporary file; (rc, file at offset 0)."""
        f = tempfile.TemporaryFile(prefix="fakebb-")
        cmd = ["git", "-c", "safe.directory=*", "--git-dir=" + self.dir] + list(args)
        try:
            rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.DEVNULL,
                                env=_GIT_ENV, timeout=120).returncode
        except (OSError, subprocess.TimeoutExpired) as e:
            f.close()
            raise ApiError(500, "git failed: %s" % e)
        f.seek(0)
        return rc, f

    def empty_tree(self):
        rc, out = self.run("hash-object", "-t", "tree", "--stdin", input=b"")
        return out.decode().strip()

    def merge_base(self, a, b):
        rc, out = self.run("merge-base", a, b)
        return out.decode().strip() if rc == 0 and out.strip() else None


TreeEntry = collections.namedtuple("TreeEntry", "name mode otype sha size")
_BINARY_CACHE = {}
# --cache-git: answers addressed by a full object name (a hash's commit, trees), never stale
_GIT_CACHE = None
_GIT_CACHE_LOCK = threading.Lock()
_BINARY_LOCK = threading.Lock()


def parse_person(value):
    """'Name <email> 1700000000 +0200' -> ('Name <email>', unix seconds)."""
    m = re.match(r"^(.*) (\d+) ([+-]\d{4})$", value)
    if not m:
        return value, 0
    return m.group(1), int(m.group(2))


def parse_commit(sha, raw):
    """A raw git commit object -> dict(hash, parents, author, author_ts, message)."""
    head, _, body = raw.partition(b"\n\n")
    info = {"hash": sha, "parents": [], "author": "", "author_ts": 0, "encoding": "utf-8"}
    for line in head.split(b"\n"):
        if line.startswith(b" "):          # continuation of a multi-line header (gpgsig)
            continue
        key, _, value = line.partition(b" ")
        if key == b"parent":
            info["parents"].append(value.decode())
        elif key == b"author":
            info["author"], info["author_ts"] = parse_person(value.decode("utf-8", "replace"))
        elif key == b"encoding":
            info["encoding"] = value.decode("ascii", "replace")
    try:
        info["message"] = body.decode(info["encoding"], "replace")
    except LookupError:
        info["message"] = body.decode("utf-8", "replace")
    return info


def parse_tag(raw):
    """A raw annotated tag object -> dict(tagger, tagger_ts, message)."""
    head, _, body = raw.partition(b"\n\n")
    info = {"tagger": None, "tagger_ts": None, "message": body.decode("utf-8", "replace")}
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        if key == b"tagger":
            info["tagger"], info["tagger_ts"] = parse_person(value.decode("utf-8", "replace"))
    return info


# --------------------------------------------------------------------------- BBQL (subset)

_BBQL_TOKEN = re.compile(r"""\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<op>!=|>=|<=|!~|=|~|>|<)
  | (?P<lp>\() | (?P<rp>\))
  | (?P<dt>\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?)
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
)""", re.X)


def parse_bbql(text, allowed_fields):
    """Compile a BBQL filter into a predicate over JSON objects.

    Supported: FIELD OP VALUE with OP in = != ~ !~ > >= < <=, VALUE a "string", number,
    unquoted date, true, false or null; AND / OR (AND binds tighter) and parentheses.
    Anything else raises ApiError(400): clients must not rely on more than this."""
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _BBQL_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ApiError(400, "Invalid query", "cannot parse q at offset %d" % pos)
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    i = 0

    def peek():
        return tokens[i] if i < len(tokens) else (None, None)

    def take():
        nonlocal i
        tok = peek()
        i += 1
        return tok

    def is_word(tok, w):
        return tok[0] == "word" and tok[1].lower() == w

    def expr():
        left = term()
        while is_word(peek(), "or"):
            take()
            right = term()
            left = (lambda a, b: lambda o: a(o) or b(o))(left, right)
        return left

    def term():
        left = factor()
        while is_word(peek(), "and"):
            take()
            right = factor()
            left = (lambda a, b: lambda o: a(o) and b(o))(left, right)
        return left

    def factor():
        tok = take()
        if tok[0] == "lp":
            inner = expr()
            if take()[0] != "rp":
                raise ApiError(400, "Invalid query", "missing )")
            return inner
        if tok[0] != "word" or tok[1].lower() in ("and", "or", "true", "false", "null"):
            raise ApiError(400, "Invalid query", "expected a field name")
        field = tok[1]
        if field.split(".")[0] not in allowed_fields:
            raise ApiError(400, "Invalid field name", "unknown field %r in q" % field)
        op = take()
        if op[0] != "op":
            raise ApiError(400, "Invalid query", "expected an operator after %r" % field)
        val = take()
        if val[0] == "str":
            value = json.loads(val[1])
        elif val[0] == "num":
            value = float(val[1]) if "." in val[1] else int(val[1])
        elif val[0] == "dt":
            value = val[1]
        elif val[0] == "word" and val[1].lower() in ("true", "false", "null"):
            value = {"true": True, "false": False, "null": None}[val[1].lower()]
        else:
            raise ApiError(400, "Invalid query", "expected a value after %s" % op[1])
        return compare(field.split("."), op[1], value)

    def compare(path, op, value):
        def pred(obj):
            got = get_path(obj, path)
            if op == "=":
                return got == value
            if op == "!=":
                return got != value
            if op in ("~", "!~"):
                hit = isinstance(got, str) and isinstance(value, str) and value.lower() in got.lower()
                return hit if op == "~" else not hit
            if got is None or value is None or isinstance(got, bool) != isinstance(value, bool):
                return False
            try:
                return {">": got > value, ">=": got >= value, "<": got < value, "<=": got <= value}[op]
            except TypeError:
                return False
        return pred

    pred = expr()
    if i != len(tokens):
        raise ApiError(400, "Invalid query", "unexpected %r" % (peek()[1],))
    return pred


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def get_path(obj, path):
    for seg in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(seg)
    return obj


def natural_key(s):
    """'1.10' after '1.2': the order Bitbucket's sort=name gives refs."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", s) if p]


# --------------------------------------------------------------------------- fields=

def apply_fields(obj, spec):
    """Partial responses (bitbucket-api.md §2.3): include-only, -removal and +addition."""
    items = [s.strip() for s in spec.split(",") if s.strip()]
    includes = [s for s in items if s[0] not in "+-"]
    plus = [s[1:] for s in items if s[0] == "+"]
    minus = [s[1:] for s in items if s[0] == "-"]
    if includes or "*" in minus:
        # Include-only mode: only what is listed survives, `next` included (real behaviour).
        obj = _select(obj, [p.split(".") for p in includes + plus])
    for m in minus:
        if m != "*":
            _remove(obj, m.split("."))
    return obj


def _select(obj, paths):
    if isinstance(obj, list):
        return [_select(e, paths) for e in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        rests = [p[1:] for p in paths if p and (p[0] == key or p[0] == "*")]
        if not rests:
            continue
        if any(not r for r in rests) or value is None:
            out[key] = value
        elif isinstance(value, (dict, list)):
            out[key] = _select(value, rests)
    return out


def _remove(obj, path):
    if isinstance(obj, list):
        for e in obj:
            _remove(e, path)
        return
    if not isinstance(obj, dict) or not path:
        return
    keys = list(obj) if path[0] == "*" else [path[0]]
    for key in keys:
        if key not in obj:
            continue
        if len(path) == 1:
            del obj[key]
        else:
            _remove(obj[key], path[1:])


# --------------------------------------------------------------------------- data file

class Store:
    """data.json, reloaded whenever its inode, size or mtime changes."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.lock = threading.Lock()
        self.key = None
        self.data = None
        self.get()
        if self.data is None:
            raise SystemExit("fakebb: cannot load %s" % self.path)

    def get(self):
        try:
            st = os.stat(self.path)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            return self.data
        with self.lock:
            if key != self.key:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        data = json.load(f)
                    base = os.path.dirname(self.path)
                    for ws in data.get("workspaces", {}).values():
                        ws.setdefault("projects", {})
                        for repo in ws.setdefault("repositories", {}).values():
                            # relative git_dir entries are relative to data.json
                            if repo.get("git_dir"):
                                repo["git_dir"] = os.path.join(base, repo["git_dir"])
                    self.data, self.key = data, key
                except (OSError, ValueError) as e:
                    # a half-written file: keep serving the previous version
                    print("fakebb: cannot reload %s: %s" % (self.path, e), file=sys.stderr, flush=True)
            return self.data


# --------------------------------------------------------------------------- fault knobs

FAULT_KNOBS = ("hang", "reset", "fail", "malformed", "wrong_shape", "next_loop", "huge")
FAULT_KEYS = {
    "fail": {"status", "count", "skip", "path_contains", "retry_after", "message"},
    "malformed": {"count", "skip", "path_contains"},
    "wrong_shape": {"count", "skip", "path_contains"},
    "hang": {"count", "skip", "path_contains"},
    "reset": {"count", "skip", "path_contains"},
    "slow_body": {"bytes_per_second", "count", "skip", "path_contains"},
    "next_loop": {"to", "count", "skip", "path_contains"},
    "huge": {"bytes", "count", "skip", "path_contains"},
    "cut_json": {"every", "count", "skip", "path_contains"},
}
HUGE_DEFAULT = 70 << 20    # `huge` answers: more than bbfs's 64 MiB cap on JSON



class Knobs:
    """Test-controlled behaviour. Faults are checked in FAULT_KNOBS order; the first that
    matches a request handles it and uses up one of its `count` (negative = forever).
    A fault with `skip: N` lets the first N matching requests through untouched (so a
    test can break page 2 of a listing whose pages all share one path)."""

    def __init__(self, latency_ms=0, max_pagelen=None, no_304=False):
        self.lock = threading.Lock()
        self.defaults = {"latency_ms": latency_ms, "max_pagelen": max_pagelen,
                         "near_limit": False, "rate_limit": 1000, "lfs_host": None,
                         "no_304": no_304, "rate_budget": None, "max_depth_limit": None,
                         "lfs_size": "content", "lfs_status": 302}
        self.defaults.update({k: None for k in FAULT_KNOBS + ("slow_body", "cut_json")})
        self.defaults.update(githttp.KNOBS)
        self.values = dict(self.defaults)
        # rate_budget: {hash of the token: times of the requests it was granted}, oldest first
        self.spent = {}
        self.cut_seen = 0        # cut_json: matching JSON answers seen since the knob was set

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.values))

    def reset(self):
        with self.lock:
            self.values = dict(self.defaults)
            self.spent = {}
            self.cut_seen = 0
            return json.loads(json.dumps(self.values))

    def take_budget(self, who, now):
        """The rolling rate limit (bitbucket-api.md §5): None without a `rate_budget`, else
        (granted, near): whether WHO (a token's hash) still has a request in the window
        (now - window, now] (if so it is spent now), and whether less than a fifth of the
        budget is left after it. A refused request spends nothing: the budget stays
        exhausted exactly until the window has moved past the requests that used it up."""
        with self.lock:
            budget = self.values.get("rate_budget")
            if not budget:
                return None
            times = self.spent.setdefault(who, collections.deque())
            while times and times[0] <= now - budget["window"]:
                times.popleft()
            granted = len(times) < budget["requests"]
            if granted:
                times.append(now)
            left = budget["requests"] - len(times)
            return granted, left < NEAR_LIMIT_SHARE * budget["requests"]

    def update(self, patch):
        if not isinstance(patch, dict):
            raise ValueError("knobs must be a JSON object")
        clean = {}
        for key, value in patch.items():
            if key not in self.defaults:
                raise ValueError("unknown knob %r (known: %s)" % (key, ", ".join(sorted(self.defaults))))
            if key == "latency_ms":
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                    raise ValueError("latency_ms must be a number >= 0")
            elif key == "max_pagelen":
                if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                    raise ValueError("max_pagelen must be null or an integer >= 1")
            elif key == "rate_limit":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError("rate_limit must be an integer")
            elif key == "near_limit":
                if not isinstance(value, bool):
                    raise ValueError("near_limit must be true or false")
            elif key == "lfs_host":
                if value is not None and (not isinstance(value, str) or not value
                                          or not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", value)):
                    raise ValueError("lfs_host must be null or a host name")
            elif key == "no_304":
                if not isinstance(value, bool):
                    raise ValueError("no_304 must be true or false")
            elif key == "lfs_size":
                if value not in ("content", "pointer"):
                    raise ValueError('lfs_size must be "content" or "pointer"')
            elif key == "lfs_status":
                if value not in (301, 302) or isinstance(value, bool):
                    raise ValueError("lfs_status must be 301 or 302")
            elif key == "rate_budget":
                value = None if value is None else self._rate_budget(value)
            elif key == "max_depth_limit":
                value = None if value is None else self._max_depth_limit(value)
            elif key in githttp.KNOBS:
                value = githttp.check_knob(key, value)
            elif value is not None:
                value = self._fault(key, value)
            clean[key] = value
        with self.lock:
            self.values.update(clean)
            if "rate_budget" in clean:
                self.spent = {}             # a budget set (again) starts with an empty window
            if "cut_json" in clean:
                self.cut_seen = 0
            return json.loads(json.dumps(self.values))

    @staticmethod
    def _rate_budget(value):
        if not isinstance(value, dict) or set(value) != {"requests", "window"}:
            raise ValueError('rate_budget must be null or {"requests": N, "window": SECONDS}')
        if not is_int(value["requests"]) or value["requests"] < 0:
            raise ValueError("rate_budget.requests must be an integer >= 0")
        if not is_number(value["window"]) or value["window"] <= 0:
            raise ValueError("rate_budget.window must be a number of seconds > 0")
        return dict(value)

    @staticmethod
    def _max_depth_limit(value):
        if not isinstance(value, dict) or not {"entries"} <= set(value) <= {"entries", "delay"}:
            raise ValueError('max_depth_limit must be null or {"entries": N, "delay": SECONDS}')
        value = dict(value)
        value.setdefault("delay", 0)
        if not is_int(value["entries"]) or value["entries"] < 0:
            raise ValueError("max_depth_limit.entries must be an integer >= 0")
        if not is_number(value["delay"]) or value["delay"] < 0:
            raise ValueError("max_depth_limit.delay must be a number of seconds >= 0")
        return value

    @staticmethod
    def _fault(key, value):
        if not isinstance(value, dict):
            raise ValueError("%s must be null or an object" % key)
        extra = set(value) - FAULT_KEYS[key]
        if extra:
            raise ValueError("%s: unknown keys %s" % (key, sorted(extra)))
        value = dict(value)
        value.setdefault("count", 1)
        value.setdefault("skip", 0)
        value.setdefault("path_contains", None)
        if not isinstance(value["count"], int) or isinstance(value["count"], bool):
            raise ValueError("%s.count must be an integer" % key)
        if not isinstance(value["skip"], int) or isinstance(value["skip"], bool) or value["skip"] < 0:
            raise ValueError("%s.skip must be an integer >= 0" % key)
        if value["path_contains"] is not None and not isinstance(value["path_contains"], str):
            raise ValueError("%s.path_contains must be a string" % key)
        if key == "fail":
            st = value.get("status")
            if not isinstance(st, int) or not 100 <= st <= 599:
                raise ValueError("fail.status must be an HTTP status code")
            value.setdefault("retry_after", None)
        if key == "next_loop" and value.setdefault("to", "previous") not in ("previous", "self"):
            raise ValueError('next_loop.to must be "previous" or "self"')
        if key == "huge":
            n = value.setdefault("bytes", HUGE_DEFAULT)
            if not isinstance(n, int) or isinstance(n, bool) or n < 64:
                raise ValueError("huge.bytes must be an integer >= 64")
        if key == "cut_json":
            every = value.setdefault("every", 1)
            if not is_int(every) or every < 1:
                raise ValueError("cut_json.every must be an integer >= 1")
        if key == "slow_body":
            bps = value.get("bytes_per_second")
            if not isinstance(bps, int) or isinstance(bps, bool) or bps < 1:
                raise ValueError("slow_body.bytes_per_second must be an integer >= 1")
        return value

    def take_fault(self, raw_path, decoded_path, keys=FAULT_KNOBS):
        """The fault that handles this request, or None; uses up one of its count."""
        with self.lock:
            for key in keys:
                spec = self.values.get(key)
                if not spec or spec["count"] == 0:
                    continue
                pc = spec.get("path_contains")
                if pc and pc not in raw_path and pc not in decoded_path:
                    continue
                if spec["skip"] > 0:
                    spec["skip"] -= 1
                    continue
                taken = dict(spec)
                if spec["count"] > 0:
                    spec["count"] -= 1
                    if spec["count"] == 0:
                        self.values[key] = None
                return key, taken
        return None

    def take_cut_json(self, raw_path, decoded_path):
        """Whether the `cut_json` knob cuts this 200 JSON answer: of the matching answers
        (after `skip`), every `every`-th, until `count` of them were cut."""
        with self.lock:
            spec = self.values.get("cut_json")
            if not spec or spec["count"] == 0:
                return False
            pc = spec.get("path_contains")
            if pc and pc not in raw_path and pc not in decoded_path:
                return False
            if spec["skip"] > 0:
                spec["skip"] -= 1
                return False
            self.cut_seen += 1
            if self.cut_seen % spec["every"]:
                return False
            if spec["count"] > 0:
                spec["count"] -= 1
                if spec["count"] == 0:
                    self.values["cut_json"] = None
            return True

    def take_slow(self, raw_path, decoded_path):
        """The slow_body spec for this request, or None. Checked apart from the faults:
        a request can be both slow and cut, for instance."""
        hit = self.take_fault(raw_path, decoded_path, keys=("slow_body",))
        return hit[1] if hit else None


# --------------------------------------------------------------------------- responses

class Response:
    """An answer: status, headers and a body that is either bytes or streamed.

    A streamed body (`stream`, a function returning an iterator of byte chunks, called only
    when the body is really sent) has its exact `length` known up front, so every answer
    still has a correct Content-Length. `closer` releases what the stream needs (a
    temporary file) whether or not it was sent."""

    def __init__(self, status, body=b"", content_type="application/json; charset=utf-8",
                 headers=None, stream=None, length=None, closer=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = list(headers or [])
        self.stream = stream
        self.length = len(body) if stream is None else length
        self.closer = closer
        self.declared = None               # Content-Length when it differs from length
        self.limit = None                  # send at most this many body bytes
        self.cut = False                   # after `limit` bytes, close the connection
        self.rate = None                   # slow_body: bytes per second
        self.fault = None                  # the knob behind this answer, for the request log
        self.delay = 0                     # seconds to wait before answering

    @classmethod
    def error(cls, err):
        resp = cls(err.status, json_bytes(err.body()), headers=err.headers)
        resp.fault, resp.delay = err.fault, err.delay
        return resp

    @classmethod
    def from_file(cls, f, content_type, headers=None):
        """Stream the rest of open file F (a temporary file) with an ETag of its content."""
        start = f.tell()
        md5 = hashlib.md5()
        for data in iter(lambda: f.read(CHUNK), b""):
            md5.update(data)
        length = f.tell() - start

        def chunks():
            f.seek(start)
            for data in iter(lambda: f.read(CHUNK), b""):
                yield data
        headers = list(headers or []) + [("ETag", '"%s"' % md5.hexdigest())]
        return cls(200, content_type=content_type, headers=headers, stream=chunks,
                   length=length, closer=f.close)

    def chunks(self):
        """An iterator over the body (a generator: close() it to stop a stream early)."""
        if self.stream is not None:
            yield from self.stream()
            return
        for i in range(0, len(self.body), CHUNK):
            yield self.body[i:i + CHUNK]

    def close(self):
        if self.closer:
            closer, self.closer = self.closer, None
            closer()


WRONG_SHAPE = {
    # Every field a client might read, with the wrong JSON type.
    "type": 7, "values": "oops", "next": 12345, "pagelen": "ten", "size": "many", "page": [],
    "hash": 42, "name": ["not", "a", "string"], "slug": {}, "key": False, "uuid": 1.5,
    "target": "oops", "date": 0, "message": False, "parents": "oops", "author": "oops",
    "links": "oops", "mainbranch": "main", "project": "PLAT", "description": 3,
    "created_on": True, "updated_on": None, "is_private": "yes",
}


class Api:
    """Turns one /2.0 request into a Response. Holds no per-request state itself."""

    ROUTES = [
        (r"/user", "user"),
        (r"/workspaces", "workspaces"),
        (r"/workspaces/(?P<ws>[^/]+)", "workspace"),
        (r"/workspaces/(?P<ws>[^/]+)/projects/?", "projects"),
        (r"/workspaces/(?P<ws>[^/]+)/projects/(?P<key>[^/]+)/?", "project"),
        (r"/repositories/(?P<ws>[^/]+)/?", "repositories"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/?", "repository"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/refs/?", "refs"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/refs/branches/?", "branches"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/refs/branches/(?P<name>.+)", "branch"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/refs/tags/?", "tags"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/refs/tags/(?P<name>.+)", "tag"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/commits/?", "commits"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/commits/(?P<rev>.+)", "commits"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/commit/(?P<rev>[^/]+)/?", "commit"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/src/?", "src_main"),
        # raw_path: everything after the commit, still %-encoded (decoded per segment)
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/src/(?P<rev>[^/]+)(?P<raw_path>/.*)?", "src"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/diff/(?P<spec>.+)", "diff"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/patch/(?P<spec>.+)", "patch"),
        # pull requests (need the `pullrequest` scope)
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/pullrequests/?", "pullrequests"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/pullrequests/(?P<pr_id>[^/]+)/?", "pullrequest"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/pullrequests/(?P<pr_id>[^/]+)/comments/?",
         "pullrequest_comments"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/pullrequests/(?P<pr_id>[^/]+)/comments/(?P<comment_id>[^/]+)/?",
         "pullrequest_comment"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/pullrequests/(?P<pr_id>[^/]+)/(?P<kind>diff|patch)/?",
         "pullrequest_diff"),
        (r"/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)/pullrequests/(?P<pr_id>[^/]+)/.*", "pullrequest_other"),
    ]

    def __init__(self, store, knobs):
        self.store = store
        self.knobs = knobs
        self.lfs_port = None       # set by FakeServer once the LFS listener is bound
        self.scheme = "http"       # "https" with --tls-cert (links and redirects follow it)
        self.routes = [(re.compile("^/2\\.0" + rx + "$"), name) for rx, name in self.ROUTES]
        # --static-heads: {git_dir: main branch}, remembered for the server's lifetime
        self.head_cache = None
        self.head_lock = threading.Lock()

    def head_branch(self, git_dir):
        """The main branch of GIT_DIR (from git every time, unless --static-heads)."""
        if self.head_cache is None:
            return GitRepo(git_dir).head_branch()
        with self.head_lock:
            if git_dir in self.head_cache:
                return self.head_cache[git_dir]
        name = GitRepo(git_dir).head_branch()
        with self.head_lock:
            self.head_cache[git_dir] = name
        return name

    def handle(self, method, raw_path, query, headers, host):
        req = Request(self, method, raw_path, query, headers, host)
        rate = rate_headers(self.knobs.snapshot())
        try:
            if method not in ("GET", "HEAD"):
                raise ApiError(405, "Method not allowed")
            for rx, name in self.routes:
                m = rx.match(raw_path)
                if m:
                    req.authenticate()
                    args = {k: v if v is None or k.startswith("raw_")
                            else unquote(v, errors="surrogateescape")
                            for k, v in m.groupdict().items()}
                    obj = getattr(req, "get_" + name)(**args)
                    break
            else:
                req.authenticate()
                raise ApiError(404, MSG_NO_RESOURCE)
            if isinstance(obj, Response):          # raw bytes, a stream or a redirect
                resp = obj
            else:
                if req.param("fields"):
                    obj = apply_fields(obj, ",".join(req.params_all("fields")))
                resp = Response(200, json_bytes(obj))
        except ApiError as e:
            resp = Response.error(e)
        resp.headers += rate
        return req, resp


class Request:
    """One API call: parsed query, the caller's token, and the object builders it needs."""

    def __init__(self, api, method, raw_path, query, headers, host):
        self.api = api
        self.method = method
        self.raw_path = raw_path
        self.query = query
        self.params = parse_qsl(query, keep_blank_values=True)
        self.headers = headers
        self.host = host
        self.base = "%s://%s/2.0" % (api.scheme, host)
        self.data = api.store.get()
        self.token = None
        self.users = self.data.get("users", {})

    # ---- helpers
    def param(self, name):
        for k, v in self.params:
            if k == name:
                return v
        return None

    def params_all(self, name):
        return [v for k, v in self.params if k == name]

    def authenticate(self):
        auth = self.headers.get("Authorization", "")
        if not token_known(self.data, auth):
            raise ApiError(401, MSG_BAD_TOKEN)
        self.token = self.data["tokens"][auth.strip().partition(" ")[2].strip()]

    def url_with_page(self, page):
        """`next`/`previous`: the request's own URL (Host header, raw path and other
        parameters kept exactly as the client sent them) with page= replaced."""
        parts = [p for p in self.query.split("&") if p and p.split("=", 1)[0] != "page"]
        parts.append("page=%s" % page)
        return "%s://%s%s?%s" % (self.api.scheme, self.host, self.raw_path, "&".join(parts))

    def pagelen(self, default, maximum=MAX_PAGELEN):
        raw = self.param("pagelen")
        n = default
        if raw is not None and raw != "":
            if not re.fullmatch(r"\s*-?\d+\s*", raw):
                raise ApiError(400, MSG_BAD_PAGELEN)
            n = int(raw)
            if n < 0 or n > maximum:
                raise ApiError(400, MSG_BAD_PAGELEN)
            if n == 0:          # accepted by the real API; we treat it as "default"
                n = default
        cap = self.api.knobs.snapshot().get("max_pagelen")
        if cap:
            n = min(n, cap)
        return n

    def paged(self, items, with_size=True, fill=None, maximum=MAX_PAGELEN):
        """Page-based envelope (size/page/pagelen/next/previous/values)."""
        pagelen = self.pagelen(DEFAULT_PAGELEN, maximum)
        raw = self.param("page")
        page = 1
        if raw is not None:
            if not re.fullmatch(r"\d+", raw) or int(raw) < 1:
                raise ApiError(400, "Invalid page")
            page = int(raw)
        start = (page - 1) * pagelen
        values = items[start:start + pagelen]
        if fill:
            fill(values)
        env = {"pagelen": pagelen}
        if with_size:
            env["size"] = len(items)
        env["values"] = values
        env["page"] = page
        if start + pagelen < len(items):
            env["next"] = self.url_with_page(page + 1)
        if page > 1:
            env["previous"] = self.url_with_page(page - 1)
        return env

    def filter_sort(self, items, allowed, default_key, natural_name=False):
        q = self.param("q")
        if q:
            pred = parse_bbql(q, allowed)
            items = [o for o in items if pred(o)]
        sort = self.param("sort")
        if sort:
            desc = sort.startswith("-")
            path = sort.lstrip("-").split(".")
            if path[0] not in allowed:
                raise ApiError(400, "Invalid sort field", "cannot sort by %r" % sort)
            if natural_name and path == ["name"]:
                key = lambda o: natural_key(o.get("name") or "")
            else:
                key = lambda o: (get_path(o, path) is not None, _sortable(get_path(o, path)))
            items = sorted(items, key=key, reverse=desc)
        else:
            items = sorted(items, key=default_key)
        return items

    # ---- lookups with access control
    def workspace(self, ws):
        """(slug, record) of a workspace the token may use; 404 otherwise (existence hidden)."""
        for slug, rec in self.data.get("workspaces", {}).items():
            if ws == slug or ws.lower() == rec.get("uuid", "").lower():
                if slug in (self.token.get("workspaces") or []):
                    return slug, rec
        raise ApiError(404, MSG_NO_WORKSPACE)

    def sees_project(self, key):
        projects = self.token.get("projects")
        return projects is None or key in projects

    def repo(self, ws, slug):
        ws_slug, wsrec = self.workspace_or_repo_404(ws)
        for rslug, rec in wsrec["repositories"].items():
            if slug == rslug or slug.lower() == rec.get("uuid", "").lower():
                if self.sees_project(rec.get("project")):
                    return ws_slug, wsrec, rslug, rec
        raise ApiError(404, MSG_NO_REPO)

    def workspace_or_repo_404(self, ws):
        try:
            return self.workspace(ws)
        except ApiError:
            raise ApiError(404, MSG_NO_REPO)

    # ---- object builders
    def ws_links(self, slug):
        return {"avatar": {"href": "https://bitbucket.org/workspaces/%s/avatar/?ts=1700000000" % slug},
                "html": {"href": "https://bitbucket.org/%s/" % slug},
                "self": {"href": "%s/workspaces/%s" % (self.base, slug)}}

    def ws_min(self, slug, rec):
        return {"type": "workspace", "uuid": rec.get("uuid"), "name": rec.get("name", slug),
                "slug": slug, "links": self.ws_links(slug)}

    def project_links(self, ws, key):
        return {"self": {"href": "%s/workspaces/%s/projects/%s" % (self.base, ws, key)},
                "html": {"href": "https://bitbucket.org/%s/workspace/projects/%s" % (ws, key)},
                "avatar": {"href": "https://bitbucket.org/%s/workspace/projects/%s/avatar/32?ts=1700000000" % (ws, key)}}

    def project_min(self, ws, key, rec):
        return {"type": "project", "key": key, "uuid": rec.get("uuid"),
                "name": rec.get("name", key), "links": self.project_links(ws, key)}

    def project_full(self, ws, wsrec, key, rec):
        links = self.project_links(ws, key)
        links["repositories"] = {"href": '%s/repositories/%s?q=project.key="%s"' % (self.base, ws, key)}
        return {"type": "project", "workspace": self.ws_min(ws, wsrec), "key": key,
                "uuid": rec.get("uuid"), "is_private": rec.get("is_private", True),
                "name": rec.get("name", key), "description": rec.get("description", ""),
                "links": links, "created_on": rec.get("created_on"),
                "updated_on": rec.get("updated_on"), "has_publicly_visible_repos": False}

    def repo_min(self, ws, slug, rec):
        full = "%s/%s" % (ws, slug)
        return {"type": "repository", "full_name": full, "name": rec.get("name", slug),
                "uuid": rec.get("uuid"),
                "links": {"self": {"href": "%s/repositories/%s" % (self.base, full)},
                          "html": {"href": "https://bitbucket.org/%s" % full},
                          "avatar": {"href": "https://bytebucket.org/ravatar/%s?ts=default" % quote(rec.get("uuid") or "")}}}

    def repo_full(self, ws, wsrec, slug, rec, with_mainbranch=True):
        full = "%s/%s" % (ws, slug)
        rbase = "%s/repositories/%s" % (self.base, full)
        proj_key = rec.get("project")
        proj = wsrec["projects"].get(proj_key)
        obj = {
            "type": "repository",
            "full_name": full,
            "links": {
                "self": {"href": rbase},
                "html": {"href": "https://bitbucket.org/%s" % full},
                "avatar": {"href": "https://bytebucket.org/ravatar/%s?ts=default" % quote(rec.get("uuid") or "")},
                "pullrequests": {"href": rbase + "/pullrequests"},
                "commits": {"href": rbase + "/commits"},
                "forks": {"href": rbase + "/forks"},
                "watchers": {"href": rbase + "/watchers"},
                "downloads": {"href": rbase + "/downloads"},
                "branches": {"href": rbase + "/refs/branches"},
                "tags": {"href": rbase + "/refs/tags"},
                "source": {"href": rbase + "/src"},
                "hooks": {"href": rbase + "/hooks"},
                "clone": [{"name": "https", "href": "https://x-token-auth@bitbucket.org/%s.git" % full},
                          {"name": "ssh", "href": "git@bitbucket.org:%s.git" % full}],
            },
            "name": rec.get("name", slug),
            "slug": slug,
            "description": rec.get("description", ""),
            "scm": "git",
            "website": None,
            "owner": {"display_name": wsrec.get("name", ws), "type": "team",
                      "uuid": wsrec.get("uuid"), "username": ws, "links": self.ws_links(ws)},
            "workspace": self.ws_min(ws, wsrec),
            "is_private": rec.get("is_private", True),
            "project": self.project_min(ws, proj_key, proj or {}) if proj_key else None,
            "fork_policy": "no_public_forks",
            "created_on": rec.get("created_on"),
            "updated_on": rec.get("updated_on", rec.get("created_on")),
            "size": rec.get("size", 0),
            "language": rec.get("language", ""),
            "uuid": rec.get("uuid"),
            "mainbranch": None,
            "has_issues": False,
            "has_wiki": False,
            "override_settings": {"default_merge_strategy": False, "branching_model": False},
            "parent": None,
            "enforced_signed_commits": None,
        }
        if with_mainbranch:
            self.fill_mainbranch(obj, rec)
        return obj

    def fill_mainbranch(self, obj, rec):
        name = self.api.head_branch(rec.get("git_dir"))
        obj["mainbranch"] = {"type": "branch", "name": name} if name else None

    def author_obj(self, raw):
        obj = {"raw": raw, "type": "author"}
        m = re.search(r"<([^>]*)>\s*$", raw)
        user = self.users.get(m.group(1)) if m else None
        if user:
            uuid = user.get("uuid", "")
            obj["user"] = {
                "display_name": user.get("display_name"),
                "links": {"self": {"href": "%s/users/%s" % (self.base, quote(uuid))},
                          "avatar": {"href": "https://avatar-management--avatars.example/%s" % quote(uuid)},
                          "html": {"href": "https://bitbucket.org/%s/" % quote(uuid)}},
                "type": "user", "uuid": uuid, "account_id": user.get("account_id"),
                "nickname": user.get("nickname")}
        return obj

    def commit_links(self, full, sha, detailed):
        rbase = "%s/repositories/%s" % (self.base, full)
        links = {"self": {"href": "%s/commit/%s" % (rbase, sha)},
                 "html": {"href": "https://bitbucket.org/%s/commits/%s" % (full, sha)}}
        if detailed:
            links.update({
                "diff": {"href": "%s/diff/%s" % (rbase, sha)},
                "patch": {"href": "%s/patch/%s" % (rbase, sha)},
                "comments": {"href": "%s/commit/%s/comments" % (rbase, sha)},
                "approve": {"href": "%s/commit/%s/approve" % (rbase, sha)},
                "statuses": {"href": "%s/commit/%s/statuses" % (rbase, sha)}})
        return links

    def commit_obj(self, ws, slug, rec, c, kind):
        """kind: 'target' (inside a ref), 'list' (/commits values) or 'full' (/commit/{hash})."""
        full = "%s/%s" % (ws, slug)
        obj = {
            "type": "commit",
            "hash": c["hash"],
            "date": iso_utc(c["author_ts"]),
            "author": self.author_obj(c["author"]),
            "message": c["message"],
            "links": self.commit_links(full, c["hash"], True),
            "parents": [{"hash": p, "type": "commit", "links": self.commit_links(full, p, False)}
                        for p in c["parents"]],
            "repository": self.repo_min(ws, slug, rec),
        }
        if kind != "target":
            rendered = {"raw": c["message"], "markup": "markdown", "type": "rendered",
                        "html": "<p>%s</p>" % html.escape(c["message"].strip()).replace("\n\n", "</p>\n<p>")}
            obj["summary"] = rendered
            obj["rendered"] = {"message": dict(rendered)}
        if kind == "full":
            obj["participants"] = []
        return obj

    def load_commits(self, git, shas):
        objs = git.read_objects(shas)
        return {s: parse_commit(s, objs[s][1]) for s in shas if s in objs and objs[s][0] == "commit"}

    def branch_obj(self, ws, slug, rec, name, commit):
        full = "%s/%s" % (ws, slug)
        rbase = "%s/repositories/%s" % (self.base, full)
        return {
            "name": name,
            "links": {"commits": {"href": "%s/commits/%s" % (rbase, quote_ref(name))},
                      "self": {"href": "%s/refs/branches/%s" % (rbase, quote_ref(name))},
                      "html": {"href": "https://bitbucket.org/%s/branch/%s" % (full, quote_ref(name))}},
            "default_merge_strategy": "merge_commit",
            "merge_strategies": list(MERGE_STRATEGIES),
            "type": "branch",
            "target": self.commit_obj(ws, slug, rec, commit, "target"),
        }

    def tag_obj(self, ws, slug, rec, name, commit, tag_info):
        full = "%s/%s" % (ws, slug)
        rbase = "%s/repositories/%s" % (self.base, full)
        obj = {
            "name": name,
            "links": {"commits": {"href": "%s/commits/%s" % (rbase, quote_ref(name))},
                      "self": {"href": "%s/refs/tags/%s" % (rbase, quote_ref(name))},
                      "html": {"href": "https://bitbucket.org/%s/commits/tag/%s" % (full, quote_ref(name))}},
            "type": "tag",
            "target": self.commit_obj(ws, slug, rec, commit, "target"),
        }
        if tag_info:
            # Only annotated tags have these ("if available", bitbucket-api.md §3.6).
            if tag_info["tagger"]:
                obj["tagger"] = self.author_obj(tag_info["tagger"])
                obj["date"] = iso_utc(tag_info["tagger_ts"])
            obj["message"] = tag_info["message"]
        return obj

    def all_refs(self, ws, slug, rec, kinds):
        """Branch and/or tag objects of a repository (all of them, for q/sort)."""
        git = GitRepo(rec.get("git_dir"))
        branches, tags = git.refs()
        need = []
        if "branch" in kinds:
            need += branches.values()
        if "tag" in kinds:
            need += [t[2] for t in tags.values()] + [t[1] for t in tags.values() if t[0] == "tag"]
        objs = git.read_objects(need)
        out = []
        if "branch" in kinds:
            for name, sha in branches.items():
                if sha in objs:
                    out.append(self.branch_obj(ws, slug, rec, name, parse_commit(sha, objs[sha][1])))
        if "tag" in kinds:
            for name, (otype, osha, peeled) in tags.items():
                if peeled in objs:
                    info = parse_tag(objs[osha][1]) if otype == "tag" and osha in objs else None
                    out.append(self.tag_obj(ws, slug, rec, name, parse_commit(peeled, objs[peeled][1]), info))
        return out

    # ---- endpoints
    def get_user(self):
        raise ApiError(403, MSG_NOT_ACCESSIBLE)

    def get_workspaces(self):
        raise ApiError(403, MSG_NOT_ACCESSIBLE)

    def get_workspace(self, ws):
        slug, rec = self.workspace(ws)
        if not self.token.get("workspace_read", True):
            raise ApiError(403, MSG_NOT_ACCESSIBLE)
        links = self.ws_links(slug)
        for part in ("members", "projects", "snippets"):
            links[part] = {"href": "%s/workspaces/%s/%s" % (self.base, slug, part)}
        links["repositories"] = {"href": "%s/repositories/%s" % (self.base, slug)}
        links["owners"] = {"href": '%s/workspaces/%s/members?q=permission%%3D%%22owner%%22' % (self.base, slug)}
        return {"uuid": rec.get("uuid"), "links": links,
                "created_on": rec.get("created_on"), "type": "workspace", "slug": slug,
                "is_private": rec.get("is_private", True), "name": rec.get("name", slug),
                "forking_mode": "internal_only", "is_privacy_enforced": False}

    def get_projects(self, ws):
        slug, rec = self.workspace(ws)
        items = [self.project_full(slug, rec, key, p) for key, p in rec["projects"].items()
                 if self.sees_project(key)]
        items = self.filter_sort(items, PROJECT_FIELDS, lambda o: o["key"])
        return self.paged(items)

    def get_project(self, ws, key):
        slug, rec = self.workspace(ws)
        for k, p in rec["projects"].items():
            if (key == k or key.lower() == p.get("uuid", "").lower()) and self.sees_project(k):
                return self.project_full(slug, rec, k, p)
        raise ApiError(404, MSG_NO_PROJECT)

    def get_repositories(self, ws):
        slug, rec = self.workspace(ws)
        # mainbranch needs git; only compute it for every repository when q/sort use it
        needs_mb = "mainbranch" in (self.param("q") or "") + (self.param("sort") or "")
        items = [self.repo_full(slug, rec, rslug, r, with_mainbranch=needs_mb)
                 for rslug, r in rec["repositories"].items() if self.sees_project(r.get("project"))]
        items = self.filter_sort(items, REPO_FIELDS, lambda o: (o["created_on"] or "", o["slug"]))
        fill = None
        if not needs_mb:
            repos = rec["repositories"]
            fill = lambda values: [self.fill_mainbranch(o, repos[o["slug"]]) for o in values]
        return self.paged(items, fill=fill)

    def get_repository(self, ws, slug):
        ws_slug, wsrec, rslug, rec = self.repo(ws, slug)
        return self.repo_full(ws_slug, wsrec, rslug, rec)

    def _refs(self, ws, slug, kinds, with_size):
        ws_slug, _wsrec, rslug, rec = self.repo(ws, slug)
        items = self.all_refs(ws_slug, rslug, rec, kinds)
        # default order: git's (byte-wise by name); sort=name is natural order
        items = self.filter_sort(items, REF_FIELDS, lambda o: o["name"].encode("utf-8", "surrogateescape"),
                                 natural_name=True)
        return self.paged(items, with_size=with_size)

    def get_refs(self, ws, slug):
        return self._refs(ws, slug, ("branch", "tag"), True)

    def get_branches(self, ws, slug):
        return self._refs(ws, slug, ("branch",), True)

    def get_tags(self, ws, slug):
        return self._refs(ws, slug, ("tag",), False)

    def get_branch(self, ws, slug, name):
        ws_slug, _wsrec, rslug, rec = self.repo(ws, slug)
        git = GitRepo(rec.get("git_dir"))
        branches, _tags = git.refs()
        if name not in branches:
            raise ApiError(404, MSG_NO_BRANCH)
        commits = self.load_commits(git, [branches[name]])
        return self.branch_obj(ws_slug, rslug, rec, name, commits[branches[name]])

    def get_tag(self, ws, slug, name):
        ws_slug, _wsrec, rslug, rec = self.repo(ws, slug)
        git = GitRepo(rec.get("git_dir"))
        _branches, tags = git.refs()
        if name not in tags:
            raise ApiError(404, MSG_NO_TAG)
        otype, osha, peeled = tags[name]
        objs = git.read_objects([peeled, osha])
        info = parse_tag(objs[osha][1]) if otype == "tag" else None
        return self.tag_obj(ws_slug, rslug, rec, name, parse_commit(peeled, objs[peeled][1]), info)

    def get_commits(self, ws, slug, rev=None):
        """Iterator pagination: pagelen + values + an opaque `next`; no size, no page."""
        ws_slug, _wsrec, rslug, rec = self.repo(ws, slug)
        git = GitRepo(rec.get("git_dir"))
        branches, tags = git.refs()
        includes = ([rev] if rev is not None else []) + self.params_all("include")
        inc_shas = []
        for r in includes:
            sha = git.resolve(r, branches, tags)
            if not sha:
                raise ApiError(404, MSG_NO_COMMIT)
            inc_shas.append(sha)
        exc_shas = []
        for r in self.params_all("exclude"):
            sha = git.resolve(r, branches, tags)
            if not sha:
                raise ApiError(404, MSG_NO_COMMIT)
            exc_shas.append(sha)
        pagelen = self.pagelen(COMMITS_PAGELEN)
        offset = self.cursor_offset()
        shas = git.rev_list(inc_shas, exc_shas, self.param("path"), offset, pagelen + 1)
        page, more = shas[:pagelen], len(shas) > pagelen
        commits = self.load_commits(git, page)
        env = {"values": [self.commit_obj(ws_slug, rslug, rec, commits[s], "list") for s in page],
               "pagelen": pagelen}
        if more:
            env["next"] = self.url_with_page(make_cursor(offset + pagelen))
        return env

    def cursor_offset(self):
        raw = self.param("page")
        if raw is None:
            return 0
        off = read_cursor(raw)
        if off is None:
            raise ApiError(400, "Invalid page")
        return off

    def get_commit(self, ws, slug, rev):
        ws_slug, _wsrec, rslug, rec = self.repo(ws, slug)
        git = GitRepo(rec.get("git_dir"))
        sha = git.resolve(rev)
        if not sha:
            raise ApiError(404, MSG_NO_COMMIT)
        commits = self.load_commits(git, [sha])
        return self.commit_obj(ws_slug, rslug, rec, commits[sha], "full")

    # ---- files at a commit (bitbucket-api.md §3.7, §3.8, gotchas 2-5)

    def get_src_main(self, ws, slug):
        """/src without a commit: a redirect to the root listing at the main branch's tip."""
        ws_slug, _wsrec, rslug, rec = self.repo(ws, slug)
        git = GitRepo(rec.get("git_dir"))
        branch = git.head_branch()
        sha = git.resolve(branch) if branch else None
        if not sha:
            raise ApiError(404, MSG_NO_COMMIT)
        url = "%s/repositories/%s/%s/src/%s/" % (self.base, ws_slug, rslug, sha)
        if self.query:
            url += "?" + self.query
        return Response(302, b"", content_type=None, headers=[("Location", url)])

    def get_src(self, ws, slug, rev, raw_path=None):
        ws_slug, _wsrec, rslug, rec = self.repo(ws, slug)
        git = GitRepo(rec.get("git_dir"))
        # A ref with a slash is no commit here, raw (`/src/feature/x/` reads as commit
        # `feature`) or %2F-encoded (gotcha 1): clients must resolve refs to hashes.
        sha = git.resolve(rev) if "/" not in rev else None
        if not sha:
            raise ApiError(404, MSG_NO_COMMIT)
        if raw_path is None:
            raise ApiError(404, MSG_NO_RESOURCE)  # the root is `/src/{commit}/` (gotcha 2)
        fmt = self.param("format")
        if fmt not in (None, "", "meta"):
            raise ApiError(400, "Invalid format", "format=%s is not supported by fakebb" % fmt)
        # "/a/b/" -> ["a", "b"] + trailing slash; "/" and "//" (the real API's own root
        # links) are the root. Each segment is %-decoded on its own (gotcha 2).
        inner = raw_path[1:]
        trailing = inner.endswith("/") or inner == ""
        if inner.endswith("/"):
            inner = inner[:-1]
        segments = [unquote_to_bytes(seg) for seg in inner.split("/")] if inner else []
        if any(seg in (b"", b".", b"..") or b"/" in seg or b"\0" in seg for seg in segments):
            raise ApiError(404, MSG_NO_PATH)
        path = b"/".join(segments)
        ctx = SrcContext(self, ws_slug, rslug, rec, git, sha)
        if not segments:
            entry = TreeEntry(b"", "040000", "tree", sha, None)
        else:
            entry = git.lookup(sha, segments)
            if entry is None:
                raise ApiError(404, MSG_NO_PATH)
        if entry.otype == "tree":
            if fmt == "meta":
                return ctx.dir_obj(path)
            depth = self.max_depth()
            items = ctx.listing(entry.sha, path, depth)
            self.check_max_depth_limit(depth, len(items))
            return self.paged(items, fill=ctx.fill)
        if trailing:
            raise ApiError(404, MSG_NO_PATH)      # a file asked for as a directory
        if fmt == "meta":
            values = [(path, entry)]
            ctx.fill(values)
            return values[0]
        return ctx.raw(path, entry)

    def max_depth(self):
        raw = self.param("max_depth")
        if raw is None or raw == "":
            return 1
        if not re.fullmatch(r"\d+", raw) or int(raw) < 1:
            raise ApiError(400, "Invalid max_depth")
        return int(raw)

    def check_max_depth_limit(self, depth, count):
        """The `max_depth_limit` knob: a recursive listing (max_depth over 1) of more than
        `entries` entries times out, after `delay` seconds, with a 555 ("If the max_depth
        parameter is specified to be too large, the call will time out and return a 555",
        bitbucket-api.md §3.7)."""
        limit = self.api.knobs.snapshot().get("max_depth_limit")
        if limit and depth > 1 and count > limit["entries"]:
            raise ApiError(555, MSG_TIMEOUT, fault="max_depth_limit", delay=limit["delay"])

    # ---- diffs and patches (bitbucket-api.md §4, gotchas 8 and 10)

    def diff_range(self, git, spec):
        """(old, new) commits or trees to compare for a /diff or /patch SPEC: one commit
        against its first parent (the empty tree for a root commit), or Bitbucket's
        reversed `A..B` = the changes that A brings over B.  The form a pull request's /diff
        redirects to, `WS/SLUG:SRC%0DDST` (%0D = CR; the `WS/SLUG:` prefix is optional on
        either side and must name this repository), means the same as `SRC..DST`.  A ref
        with a slash is no commit, raw or %2F-encoded (gotcha 1): 404."""
        spec = spec[:-1] if spec.endswith("/") else spec
        if "\r" in spec:
            ends = []
            for end in spec.split("\r", 1):
                prefix, colon, rev = end.rpartition(":")
                if colon:           # ":" cannot be part of a ref name, so this is WS/SLUG
                    pws, _, pslug = prefix.partition("/")
                    try:
                        other = self.repo(pws, pslug)[3]
                    except ApiError:
                        raise ApiError(404, MSG_NO_COMMIT)
                    if GitRepo(other.get("git_dir")).dir != git.dir:
                        raise ApiError(404, MSG_NO_COMMIT)   # forks are not supported
                ends.append(rev)
            spec = "..".join(ends)
        if "/" in spec:
            raise ApiError(404, MSG_NO_COMMIT)
        if ".." in spec:
            a, _, b = spec.partition("..")
            new, base = git.resolve(a), git.resolve(b.lstrip("."))
            if not new or not base:
                raise ApiError(404, MSG_NO_COMMIT)
            if self.param("topic") != "false":          # three-dot, the real default
                base = git.merge_base(new, base) or base
            return base, new, True
        sha = git.resolve(spec)
        if not sha:
            raise ApiError(404, MSG_NO_COMMIT)
        commit = self.load_commits(git, [sha])[sha]
        parent = commit["parents"][0] if commit["parents"] else git.empty_tree()
        return parent, sha, False

    def get_diff(self, ws, slug, spec):
        _ws_slug, _wsrec, _rslug, rec = self.repo(ws, slug)
        git = GitRepo(rec.get("git_dir"))
        old, new, _ = self.diff_range(git, spec)
        args = ["--literal-pathspecs", "diff"] + DIFF_OPTIONS
        args.append("--no-renames" if self.param("renames") == "false" else "-M")
        context = self.param("context")
        if context is not None:
            if not re.fullmatch(r"\d+", context):
                raise ApiError(400, "Invalid context")
            args.append("-U" + context)
        if self.param("ignore_whitespace") == "true":
            args.append("-w")
        args += [old, new, "--"] + self.params_all("path")
        rc, f = git.to_file(*args)
        if rc != 0:
            f.close()
            raise ApiError(500, "git diff failed")
        return Response.from_file(f, "text/plain")

    def get_patch(self, ws, slug, spec):
        _ws_slug, _wsrec, _rslug, rec = self.repo(ws, slug)
        git = GitRepo(rec.get("git_dir"))
        old, new, is_range = self.diff_range(git, spec)
        if not is_range and len(self.load_commits(git, [new])[new]["parents"]) > 1:
            # git format-patch has no patch for a merge (`-1` would pick its first parent)
            return Response(200, b"", content_type="text/plain")
        what = ["%s..%s" % (old, new)] if is_range else ["-1", new]
        rc, f = git.to_file("format-patch", "--stdout", "--no-signature", "--no-color",
                            "--no-ext-diff", "--no-textconv", "--full-index", *what)
        if rc != 0:
            f.close()
            raise ApiError(500, "git format-patch failed")
        return Response.from_file(f, "text/plain")

    # ---- pull requests (bitbucket-api.md §2.2, §4, §7.2): data.json's "pullrequests"

    def require_scope(self, scope):
        """403 unless the token has SCOPE. A token without "scopes" in data.json has every
        scope; `X:write` implies `X`."""
        scopes = self.token.get("scopes")
        if scopes is None or scope in scopes or scope + ":write" in scopes:
            return
        raise ApiError(403, MSG_SCOPE, detail={"granted": list(scopes), "required": [scope]})

    def user_obj(self, key):
        """The user object for KEY (an email listed in data.json's "users", the same object
        as a commit's author.user); a minimal one for any other string; None for None."""
        if not key:
            return None
        if key in self.users:
            return self.author_obj("x <%s>" % key)["user"]
        return {"display_name": key, "links": {}, "type": "user", "uuid": None,
                "account_id": None, "nickname": key}

    @staticmethod
    def rendered(raw):
        """A {raw, markup, html, type} text object; the html is escaped text in <p>s."""
        raw = raw or ""
        body = html.escape(raw.strip())
        return {"type": "rendered", "raw": raw, "markup": "markdown",
                "html": "<p>%s</p>" % body.replace("\n\n", "</p>\n<p>") if body else ""}

    def branch_tips(self, rec):
        """{branch: sha} of REC's repository, read once per request (only when a pull
        request names a branch without a commit)."""
        cache = self.__dict__.setdefault("_tips", {})
        key = rec.get("git_dir") or ""
        if key not in cache:
            cache[key] = GitRepo(key).refs()[0]
        return cache[key]

    def short_commit(self, full, sha):
        """{hash: 12 hex digits, type, links}: how pull requests name commits."""
        short = sha[:12]
        return {"hash": short, "type": "commit",
                "links": {"self": {"href": "%s/repositories/%s/commit/%s" % (self.base, full, short)},
                          "html": {"href": "https://bitbucket.org/%s/commits/%s" % (full, short)}}}

    def pr_end(self, ws, slug, rec, end):
        """A pull request's source or destination. Its commit is the one data.json gives,
        or else the branch's tip now (null when the branch does not exist)."""
        end = end or {}
        sha = end.get("commit") or self.branch_tips(rec).get(end.get("branch"))
        repo = self.repo_min(ws, slug, rec)
        return {"branch": {"name": end.get("branch")},
                "commit": self.short_commit(repo["full_name"], sha) if sha else None,
                "repository": repo}

    def pr_links(self, full, pr_id):
        pbase = "%s/repositories/%s/pullrequests/%d" % (self.base, full, pr_id)
        links = {"self": {"href": pbase},
                 "html": {"href": "https://bitbucket.org/%s/pull-requests/%d" % (full, pr_id)}}
        for part in ("commits", "approve", "request-changes", "diff", "diffstat", "comments",
                     "activity", "merge", "decline", "statuses"):
            links[part] = {"href": "%s/%s" % (pbase, part)}
        return links

    def pr_obj(self, ws, slug, rec, pr):
        full = "%s/%s" % (ws, slug)
        pr_id = int(pr["id"])
        merge = pr.get("merge_commit")
        return {
            "type": "pullrequest",
            "id": pr_id,
            "title": pr.get("title", ""),
            "description": pr.get("description") or "",
            "rendered": {"title": self.rendered(pr.get("title", "")),
                         "description": self.rendered(pr.get("description"))},
            "summary": self.rendered(pr.get("description")),
            "state": pr.get("state", "OPEN"),
            "author": self.user_obj(pr.get("author")),
            "source": self.pr_end(ws, slug, rec, pr.get("source")),
            "destination": self.pr_end(ws, slug, rec, pr.get("destination")),
            "merge_commit": self.short_commit(full, merge) if merge else None,
            "comment_count": sum(1 for c in pr.get("comments") or () if not c.get("deleted")),
            "task_count": pr.get("task_count", 0),
            "close_source_branch": bool(pr.get("close_source_branch", False)),
            "closed_by": self.user_obj(pr.get("closed_by")),
            "reason": pr.get("reason", ""),
            "created_on": pr.get("created_on"),
            "updated_on": pr.get("updated_on", pr.get("created_on")),
            "links": self.pr_links(full, pr_id),
        }

    def comment_obj(self, ws, slug, pr, c):
        full = "%s/%s" % (ws, slug)
        pr_id, cid = int(pr["id"]), int(c["id"])
        plinks = self.pr_links(full, pr_id)
        return {
            "id": cid,
            "type": "pullrequest_comment",
            "created_on": c.get("created_on"),
            "updated_on": c.get("updated_on", c.get("created_on")),
            "content": self.rendered(c.get("raw")),
            "user": self.user_obj(c.get("author")),
            "deleted": bool(c.get("deleted", False)),
            "pending": False,
            "links": {"self": {"href": "%s/comments/%d" % (plinks["self"]["href"], cid)},
                      "html": {"href": "https://bitbucket.org/%s/pull-requests/%d/_/diff#comment-%d"
                                       % (full, pr_id, cid)}},
            "pullrequest": {"type": "pullrequest", "id": pr_id, "title": pr.get("title", ""),
                            "links": {"self": plinks["self"], "html": plinks["html"]}},
        }

    def find_pr(self, ws, slug, pr_id):
        """(ws, slug, repository record, pull request record); the scope is checked first,
        so a token without it gets 403 even for a repository it cannot see."""
        self.require_scope("pullrequest")
        ws_slug, _wsrec, rslug, rec = self.repo(ws, slug)
        if re.fullmatch(r"\d+", pr_id):
            for pr in rec.get("pullrequests") or ():
                if int(pr.get("id", -1)) == int(pr_id):
                    return ws_slug, rslug, rec, pr
        raise ApiError(404, MSG_NO_PR)

    def get_pullrequests(self, ws, slug):
        """List-based pagination (max pagelen 50); state= repeatable, default OPEN only;
        newest (highest id) first."""
        self.require_scope("pullrequest")
        ws_slug, _wsrec, rslug, rec = self.repo(ws, slug)
        states = [s.upper() for s in self.params_all("state") if s]
        for s in states:
            if s not in PR_STATES:
                raise ApiError(400, "Invalid state", "state must be one of %s" % ", ".join(PR_STATES))
        states = states or ["OPEN"]
        items = [self.pr_obj(ws_slug, rslug, rec, pr) for pr in rec.get("pullrequests") or ()
                 if pr.get("state", "OPEN") in states]
        items = self.filter_sort(items, PR_FIELDS, lambda o: -o["id"])
        return self.paged(items, maximum=PR_MAX_PAGELEN)

    def get_pullrequest(self, ws, slug, pr_id):
        ws_slug, rslug, rec, pr = self.find_pr(ws, slug, pr_id)
        return self.pr_obj(ws_slug, rslug, rec, pr)

    def get_pullrequest_comments(self, ws, slug, pr_id):
        ws_slug, rslug, rec, pr = self.find_pr(ws, slug, pr_id)
        items = [self.comment_obj(ws_slug, rslug, pr, c) for c in pr.get("comments") or ()]
        items = self.filter_sort(items, COMMENT_FIELDS, lambda o: o["id"])
        return self.paged(items)

    def get_pullrequest_comment(self, ws, slug, pr_id, comment_id):
        ws_slug, rslug, rec, pr = self.find_pr(ws, slug, pr_id)
        for c in pr.get("comments") or ():
            if re.fullmatch(r"\d+", comment_id) and int(c["id"]) == int(comment_id):
                return self.comment_obj(ws_slug, rslug, pr, c)
        raise ApiError(404, MSG_NO_COMMENT)

    def get_pullrequest_diff(self, ws, slug, pr_id, kind):
        """302 to /diff (or /patch) of `WS/SLUG:SRC%0DDST` with 12-digit hashes, as the
        real API redirects (same host and port here)."""
        ws_slug, rslug, rec, pr = self.find_pr(ws, slug, pr_id)
        obj = self.pr_obj(ws_slug, rslug, rec, pr)
        src, dst = obj["source"]["commit"], obj["destination"]["commit"]
        if not src or not dst:
            raise ApiError(404, MSG_NO_COMMIT)
        url = "%s/repositories/%s/%s/%s/%s/%s:%s%%0D%s?from_pullrequest_id=%d&topic=true" % (
            self.base, ws_slug, rslug, kind, ws_slug, rslug, src["hash"], dst["hash"], obj["id"])
        return Response(302, b"", content_type=None, headers=[("Location", url)])

    def get_pullrequest_other(self, ws, slug, pr_id):
        self.find_pr(ws, slug, pr_id)
        raise ApiError(404, MSG_NO_RESOURCE)


class SrcContext:
    """Builds /src answers for one repository at one commit."""

    def __init__(self, req, ws, slug, rec, git, sha):
        self.req, self.ws, self.slug, self.rec, self.git, self.sha = req, ws, slug, rec, git, sha
        self.full = "%s/%s" % (ws, slug)
        self.src_base = "%s/repositories/%s/src/%s/" % (req.base, self.full, sha)
        self.lfs_patterns = [p for p in rec.get("lfs") or [] if isinstance(p, str)]
        self.knobs = req.api.knobs.snapshot()

    def listing(self, tree, path, max_depth):
        """[(path bytes, TreeEntry)] under tree TREE (at PATH): its entries in tree order,
        then breadth-first those of its subdirectories down to MAX_DEPTH levels."""
        items = []
        queue = collections.deque([(tree, path, 1)])
        while queue:
            treeish, prefix, depth = queue.popleft()
            for e in self.git.ls_tree(treeish) or []:
                p = prefix + b"/" + e.name if prefix else e.name
                items.append((p, e))
                if e.otype == "tree" and depth < max_depth:
                    queue.append((e.sha, p, depth + 1))
        return items

    def commit_min(self):
        return {"type": "commit", "hash": self.sha,
                "links": self.req.commit_links(self.full, self.sha, False)}

    def dir_obj(self, path):
        href = self.src_base + (quote(path, safe="/") + "/" if path else "")
        return {"path": path.decode("utf-8", "replace"), "type": "commit_directory",
                "commit": self.commit_min(),
                "links": {"self": {"href": href}, "meta": {"href": href + "?format=meta"}}}

    def is_lfs(self, path, entry):
        if entry.mode not in ("100644", "100755"):
            return False
        text = path.decode("utf-8", "surrogateescape")
        base = text.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(text if "/" in pat else base, pat)
                   for pat in self.lfs_patterns)

    def file_obj(self, path, entry, binary):
        """A commit_file entry. `size` is the number of bytes the raw GET of the file gives:
        the link target for a symlink, the 40-hex commit for a submodule, the real content
        for an LFS file; or, for an LFS file with the `lfs_size: "pointer"` knob, the size
        of the pointer git-lfs stores in its place (the other reading of the API)."""
        size = len(entry.sha) if entry.mode == "160000" else entry.size
        attributes = []
        if entry.mode == "120000":
            attributes.append("link")
        elif entry.mode == "100755":
            attributes.append("executable")
        elif entry.mode == "160000":
            attributes.append("subrepository")
        if binary:
            attributes.append("binary")
        if self.is_lfs(path, entry):
            attributes.append("lfs")
            if self.knobs["lfs_size"] == "pointer":
                size = lfs_pointer_size(entry.size)
        href = self.src_base + quote(path, safe="/")
        text = path.decode("utf-8", "replace")
        return {"path": text, "commit": self.commit_min(), "type": "commit_file",
                "attributes": attributes, "escaped_path": escape_path(path),
                "size": size,
                "mimetype": MIME_TYPES.get(mime_ext(text)),
                "links": {"self": {"href": href}, "meta": {"href": href + "?format=meta"},
                          "history": {"href": "%s/repositories/%s/filehistory/%s/%s" % (
                              self.req.base, self.full, self.sha, quote(path, safe="/"))}}}

    def fill(self, values):
        """Turn one page of (path, TreeEntry) into JSON entries, in place. Only the blobs
        on this page are probed for the binary attribute."""
        probe = [(e.sha, e.size) for _p, e in values if e.mode in ("100644", "100755") and e.size]
        binary = self.git.is_binary(probe) if probe else {}
        values[:] = [self.dir_obj(p) if e.otype == "tree" else self.file_obj(p, e, binary.get(e.sha))
                     for p, e in values]

    def raw(self, path, entry):
        """The raw GET of a file: its bytes, or a redirect to the LFS listener."""
        text = path.decode("utf-8", "replace")
        ctype = MIME_TYPES.get(mime_ext(text)) or "application/octet-stream"
        headers = [("ETag", '"%s"' % entry.sha)]
        if entry.mode == "160000":
            return Response(200, entry.sha.encode(), content_type=ctype, headers=headers)
        if self.is_lfs(path, entry):
            host = self.knobs["lfs_host"] or host_name(self.req.host)
            token = lfs_token(self.ws, self.slug, entry.sha)
            url = "%s://%s:%d/media/%s" % (self.req.api.scheme, host, self.req.api.lfs_port, token)
            return Response(self.knobs["lfs_status"], b"", content_type=None,
                            headers=[("Location", url)])
        if entry.size <= CHUNK:
            return Response(200, self.git.blob(entry.sha), content_type=ctype, headers=headers)
        return Response(200, content_type=ctype, headers=headers,
                        stream=self.git.blob_stream(entry.sha), length=entry.size)


def mime_ext(path):
    base = path.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base.lstrip(".") else ""


def escape_path(path):
    """PATH as a diff shows it: git's C-style quoting, in double quotes, when the name has
    bytes git quotes (control characters, `"`, `\\`, non-ASCII); else PATH itself."""
    special = {0x07: "\\a", 0x08: "\\b", 0x09: "\\t", 0x0a: "\\n", 0x0b: "\\v", 0x0c: "\\f",
               0x0d: "\\r", 0x22: '\\"', 0x5c: "\\\\"}
    if not any(b < 0x20 or b >= 0x7f or b in (0x22, 0x5c) for b in path):
        return path.decode("ascii")
    out = []
    for b in path:
        if b in special:
            out.append(special[b])
        elif b < 0x20 or b >= 0x7f:
            out.append("\\%03o" % b)
        else:
            out.append(chr(b))
    return '"' + "".join(out) + '"'


def host_name(host_header):
    """The host part of a Host header ("127.0.0.1:8080" -> "127.0.0.1", "[::1]:80" -> "[::1]")."""
    host, sep, port = host_header.rpartition(":")
    if sep and port.isdigit() and not host.endswith(":"):
        return host
    return host_header


# LFS media tokens: opaque to clients, but stateless here (base64url of the repository and
# the blob), so the LFS listener needs nothing from the request that was redirected.
def lfs_token(ws, slug, blob):
    raw = json.dumps([ws, slug, blob], ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def lfs_pointer_size(size):
    """The size of the git-lfs pointer file of SIZE bytes of content."""
    return len(LFS_POINTER % ("0" * 64, size))


def read_lfs_token(token):
    try:
        ws, slug, blob = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, TypeError):
        return None
    if not all(isinstance(x, str) for x in (ws, slug, blob)) or not HEX_RE.fullmatch(blob):
        return None
    return ws, slug, blob


def _sortable(v):
    if isinstance(v, bool):
        return (0, int(v), "")
    if isinstance(v, (int, float)):
        return (1, v, "")
    if v is None:
        return (2, 0, "")
    return (3, 0, json.dumps(v, sort_keys=True) if not isinstance(v, str) else v)


# Cursors are opaque to clients (bitbucket-api.md §2.1): base64url of a tagged offset, so a
# client that builds `page=2` itself instead of following `next` gets a 400.
def make_cursor(offset):
    return base64.urlsafe_b64encode(("fakebb:%d" % offset).encode()).decode().rstrip("=")


def read_cursor(token):
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    m = re.fullmatch(r"fakebb:(\d+)", text)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- HTTP server

class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False     # idle keep-alive connections must not delay shutdown
    allow_reuse_address = True

    def __init__(self, addr, data_path, log_path=None, latency_ms=0, max_pagelen=None, lfs_port=0,
                 static_heads=False, tls=None, no_304=False):
        super().__init__(addr, Handler)
        self.tls = tls             # an ssl.SSLContext (--tls-cert): both listeners speak HTTPS
        self.store = Store(data_path)
        self.knobs = Knobs(latency_ms=latency_ms, max_pagelen=max_pagelen, no_304=no_304)
        self.api = Api(self.store, self.knobs)
        if static_heads:
            self.api.head_cache = {}
        self.stopping = threading.Event()
        self.log_lock = threading.Lock()
        self.log_file = open(log_path, "a", encoding="utf-8") if log_path else None
        self.recent = collections.deque(maxlen=10000)   # GET /_fake/requests
        self.active = {}                                 # GET /_fake/active
        self.lfs = LfsServer((addr[0], lfs_port), self)
        self.api.lfs_port = self.lfs.server_address[1]
        if tls is not None:
            self.api.scheme = "https"

    @property
    def hub(self):
        return self

    def finish_request(self, request, client_address):
        tls_finish_request(self, super().finish_request, request, client_address)

    def log_request_record(self, record):
        # Never the token or the Authorization header: only these fields are written.
        with self.log_lock:
            self.recent.append(record)
            if self.log_file:
                self.log_file.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.log_file.flush()

    def server_close(self):
        self.stopping.set()
        super().server_close()
        self.lfs.server_close()
        if self.log_file:
            with self.log_lock:
                self.log_file.close()
                self.log_file = None


class LfsServer(ThreadingHTTPServer):
    """The second listener: LFS media storage on another port (another origin). It needs no
    auth and logs whether an Authorization header arrived anyway, for the tests that check
    a client never forwards its token there. Knobs, log and data are the main server's."""
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, hub):
        self.hub = hub
        super().__init__(addr, LfsHandler)

    def finish_request(self, request, client_address):
        tls_finish_request(self, super().finish_request, request, client_address)


def tls_finish_request(server, finish, request, client_address):
    """With --tls-cert, the TLS handshake runs here, in the connection's own thread (a client
    that refuses the certificate, or never speaks, costs only its thread); then the handler
    reads and writes through the TLS socket, which is closed when the connection ends."""
    ctx = server.hub.tls
    if ctx is None:
        return finish(request, client_address)
    try:
        request.settimeout(30)
        conn = ctx.wrap_socket(request, server_side=True)
    except (OSError, ValueError):       # ssl.SSLError is an OSError: the client said no
        return None
    try:
        return finish(conn, client_address)
    finally:
        try:
            conn.close()
        except OSError:
            pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Nagle's algorithm with the client's delayed ACK costs ~40 ms per answer on loopback.
    disable_nagle_algorithm = True
    server_version = "fakebb/1"
    sys_version = ""
    timeout = 120      # idle keep-alive connections are closed after this many seconds
    kind = "api"       # the request log's "server" field

    def log_message(self, fmt, *args):
        pass           # the JSON request log replaces http.server's stderr lines

    def version_string(self):
        return self.server_version

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def read_body(self):
        """Consume the request body so the next request on this connection parses cleanly."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True     # not supported: do not try to reuse the stream
            return b""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = 0
        return self.rfile.read(n) if n > 0 else b""

    # The parts that differ between the API and the LFS listener.
    def is_control(self, raw_path):
        return raw_path == "/_fake" or raw_path.startswith("/_fake/")

    def takes_faults(self, raw_path):
        return raw_path.startswith("/2.0/")

    def auth_flag(self):
        """The log's "auth": whether a known token was sent."""
        return token_known(self.server.hub.store.get(), self.headers.get("Authorization", ""))

    def produce(self, method, raw_path, query):
        """(Response, auth flag) for one request."""
        hub = self.server.hub
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        req, resp = hub.api.handle(method, raw_path, query, self.headers, host)
        return resp, req.token is not None

    def dispatch(self, method):
        hub = self.server.hub
        if self.kind == "api" and githttp.is_git_path(self.path):
            return githttp.serve(self, method, sys.modules[__name__])
        body = self.read_body()
        split = urlsplit(self.path)
        raw_path, query = split.path, split.query
        if self.is_control(raw_path):
            return self.fake_control(method, raw_path, query, body)
        started = time.time()
        knobs = hub.knobs.snapshot()
        fault, slow, near = self.take_knobs(raw_path, started)
        record = {"time": started, "server": self.kind, "method": method, "path": raw_path,
                  "query": query, "status": None, "auth": False,
                  "conn": "%s:%s" % self.client_address[:2], "bytes": 0,
                  "if_none_match": self.headers.get("If-None-Match") is not None}
        if fault:
            record["fault"] = fault[0]
        if slow:
            record["slow_body"] = slow["bytes_per_second"]
        if knobs["latency_ms"] and raw_path.startswith("/2.0"):
            hub.stopping.wait(knobs["latency_ms"] / 1000.0)
        if fault and fault[0] == "hang":
            record["auth"] = self.auth_flag()
            # Read the request, never answer; the connection dies with the server.
            hub.log_request_record(record)
            hub.stopping.wait()
            self.close_connection = True
            return
        resp = self.answer(method, raw_path, query, fault, knobs, record)
        if near:
            resp.headers = [(k, "true" if k == "X-RateLimit-NearLimit" else v)
                            for k, v in resp.headers]
        if resp.fault and not fault:
            record["fault"] = resp.fault
        if slow:
            resp.rate = slow["bytes_per_second"]
        if resp.delay:
            # An answer that takes its time is logged when the request arrives (status
            # null), as a hung one is: the client has usually given up before it is sent.
            hub.log_request_record(record)
            if hub.stopping.wait(resp.delay):
                resp.close()
                self.close_connection = True
                return
            try:
                self.send(resp, head=(method == "HEAD"))
            except OSError:
                self.close_connection = True      # the client gave up waiting, as expected
            return
        record["status"] = resp.status
        self.send(resp, head=(method == "HEAD"), record=record)

    def take_knobs(self, raw_path, now):
        """(fault, slow_body spec, near the rate limit) for this request. The rate limiter
        stands before everything else: a request it refuses meets no other fault."""
        knobs = self.server.hub.knobs
        budget = knobs.take_budget(self.budget_key(), now) if self.kind == "api" else None
        if budget is not None and not budget[0]:
            return ("rate_budget", None), None, True
        near = budget is not None and budget[1]
        if not self.takes_faults(raw_path):
            return None, None, near
        decoded = unquote(raw_path, errors="replace")
        return knobs.take_fault(raw_path, decoded), knobs.take_slow(raw_path, decoded), near

    def budget_key(self):
        """Whose budget a request spends: each token has its own (a hash of it: the token
        itself is kept nowhere); requests without a bearer token share one."""
        scheme, _, token = self.headers.get("Authorization", "").strip().partition(" ")
        return hashlib.sha256(token.strip().encode()).hexdigest() if scheme.lower() == "bearer" else ""

    def answer(self, method, raw_path, query, fault, knobs, record):
        """The answer to a request, fault applied, 304 when it may be; sets record["auth"]."""
        if fault and fault[0] == "rate_budget":
            # Bitbucket's 429: plain text, no Retry-After (bitbucket-api.md §5.3).
            record["auth"] = self.auth_flag()
            return Response(429, RATE_LIMIT_BODY, content_type="text/plain",
                            headers=rate_headers(knobs, near=True))
        try:
            resp, record["auth"] = self.produce(method, raw_path, query)
        except Exception:          # a bug here must not kill the connection silently
            traceback.print_exc()
            record["auth"] = self.auth_flag()
            resp = Response(500, json_bytes({"type": "error", "error": {"message": "fakebb internal error"}}))
        if fault:
            return self.apply_fault(fault, resp)
        if resp.status == 200:
            etag = dict(resp.headers).get("ETag")
            if etag is None:
                etag = '"%s"' % hashlib.md5(resp.body).hexdigest()
                resp.headers.append(("ETag", etag))
            if not knobs["no_304"] and etag_matches(self.headers.get("If-None-Match"), etag):
                resp.close()
                resp = Response(304, b"", content_type=None, headers=resp.headers)
        if (resp.status == 200 and resp.stream is None and self.takes_faults(raw_path)
                and (resp.content_type or "").startswith("application/json")
                and self.server.hub.knobs.take_cut_json(raw_path, unquote(raw_path, errors="replace"))):
            # Cut in half as `malformed` does, the real ETag kept: a transfer that completes.
            cut = Response(200, resp.body[:len(resp.body) // 2], content_type=resp.content_type,
                           headers=resp.headers)
            cut.fault = "cut_json"
            return cut
        return resp

    def apply_fault(self, fault, resp):
        kind, spec = fault
        if kind == "fail":
            resp.close()
            st = spec["status"]
            headers = [h for h in resp.headers if h[0].lower().startswith("x-ratelimit")]
            if spec.get("retry_after") is not None:
                headers.append(("Retry-After", str(spec["retry_after"])))
            if st == 429:
                # The real 429 is plain text, not JSON (bitbucket-api.md §5.3).
                return Response(429, RATE_LIMIT_BODY, content_type="text/plain", headers=headers)
            msg = spec.get("message") or {500: "Internal Server Error", 502: "Bad Gateway",
                                          503: "Service Unavailable", 504: "Gateway Timeout",
                                          555: "Timeout"}.get(st, "Injected error")
            return Response(st, json_bytes({"type": "error", "error": {"message": msg}}), headers=headers)
        if kind == "malformed":
            if resp.stream is None:
                body = resp.body if len(resp.body) > 2 else b'{"values": [1, 2'
                return Response(200, body[:max(1, len(body) // 2)], content_type=resp.content_type,
                                headers=resp.headers)
            resp.status = 200
            resp.limit = resp.declared = resp.length // 2
            return resp
        if kind == "wrong_shape":
            resp.close()
            return Response(200, json_bytes(WRONG_SHAPE), headers=resp.headers)
        if kind == "reset":
            resp.cut = True
            resp.limit = resp.length // 2
            return resp
        if kind == "next_loop":
            # The real page without `size` (so a client can only follow `next`), and `next`
            # points back: to "previous" (the page before; the first page keeps its `next`,
            # so page 1 -> 2 -> 1) or to "self" (the page's own URL, for cursor listings).
            # A JSON page without `next` is unchanged.
            try:
                obj = json.loads(resp.body) if resp.stream is None and resp.status == 200 else None
            except ValueError:
                obj = None
            if isinstance(obj, dict) and obj.get("next"):
                obj.pop("size", None)
                if spec["to"] == "self":
                    obj["next"] = "%s://%s%s" % (self.server.hub.api.scheme,
                                                 self.headers.get("Host") or "", self.path)
                elif obj.get("previous"):
                    obj["next"] = obj["previous"]
                resp.close()
                return Response(200, json_bytes(obj), headers=resp.headers)
            return resp
        if kind == "huge":
            # 200 with a valid JSON object of spec["bytes"] bytes, streamed from one buffer.
            resp.close()
            head, tail = b'{"pagelen":10,"values":[],"pad":"', b'"}'
            total = spec["bytes"]
            pad = b"x" * CHUNK

            def chunks():
                yield head
                left = total - len(head) - len(tail)
                while left > 0:
                    yield pad[:left]
                    left -= min(left, CHUNK)
                yield tail
            headers = [h for h in resp.headers if h[0].lower().startswith("x-ratelimit")]
            return Response(200, headers=headers + [("ETag", '"huge"')], stream=chunks, length=total)
        return resp

    def send(self, resp, head=False, record=None):
        """Write RESP and log RECORD (if given) with the number of body bytes sent.

        The record is written before the answer is complete (before the last body byte, or
        before the headers when there is no body), so a client that has the whole answer
        always finds its record in the log. A client that goes away mid-body is no error:
        `bytes` says how far it got (it counts the last byte as sent once the rest is)."""
        hub = self.server.hub
        logged = []

        def done(sent):
            if record is not None and not logged:
                logged.append(True)
                record["bytes"] = sent
                record["duration_ms"] = round((time.time() - record["time"]) * 1000, 1)
                hub.log_request_record(record)
        self.send_response(resp.status)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        for k, v in resp.headers:
            if k == "ETag" or resp.status != 304 or k.lower().startswith("x-ratelimit"):
                self.send_header(k, v)
        if not any(k == "ETag" for k, _ in resp.headers) and resp.status != 304 and resp.stream is None:
            self.send_header("ETag", '"%s"' % hashlib.md5(resp.body).hexdigest())
        if resp.status != 304:
            # 304 has no body by definition; every other answer says how long it is.
            self.send_header("Content-Length", str(resp.length if resp.declared is None else resp.declared))
        if resp.cut:
            self.send_header("Connection", "close")
        limit = 0 if head or resp.status == 304 else resp.length if resp.limit is None else resp.limit
        if limit == 0 and not resp.cut:
            done(0)
            resp.close()
            self.end_headers()
            return
        self.end_headers()
        sent, it = 0, resp.chunks()
        live = dict(record or {}, length=limit)
        key = object()
        if record is not None:                    # /_fake/* answers are not requests
            with hub.log_lock:
                hub.active[key] = live
        t0 = time.monotonic()
        piece = max(1, min(CHUNK, resp.rate // 20)) if resp.rate else CHUNK
        try:
            for chunk in it:
                chunk = chunk[:limit - sent]
                for i in range(0, len(chunk), piece):
                    data = chunk[i:i + piece]
                    if sent + len(data) >= limit and not resp.cut:
                        # the last piece: log first, then let the client complete
                        self.wfile.write(data[:-1])
                        done(limit)
                        self.wfile.write(data[-1:])
                    else:
                        self.wfile.write(data)
                    sent += len(data)
                    live["bytes"] = sent
                    if resp.rate and sent < limit:
                        # slow_body: paced to the rate from the first byte on
                        if hub.stopping.wait(max(0.0, t0 + sent / resp.rate - time.monotonic())):
                            raise ConnectionAbortedError("server stopping")
                if sent >= limit:
                    break
        except OSError:
            self.close_connection = True          # the client went away (or we are stopping)
        finally:
            with hub.log_lock:
                hub.active.pop(key, None)
            done(sent)
            it.close()
            resp.close()
        if resp.cut:
            # A connection cut mid-body: part of the promised bytes, then FIN.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def fake_control(self, method, raw_path, query, body):
        """/_fake/*: test controls, no auth, not logged."""
        hub = self.server.hub
        status, out = 200, None
        try:
            if raw_path == "/_fake/knobs" and method == "GET":
                out = hub.knobs.snapshot()
            elif raw_path == "/_fake/knobs" and method == "POST":
                out = hub.knobs.update(json.loads(body.decode("utf-8") or "{}"))
            elif raw_path == "/_fake/reset" and method == "POST":
                out = hub.knobs.reset()
            elif raw_path == "/_fake/requests" and method == "GET":
                with hub.log_lock:
                    out = list(hub.recent)
            elif raw_path == "/_fake/requests" and method == "DELETE":
                with hub.log_lock:
                    hub.recent.clear()
                out = []
            elif raw_path == "/_fake/active" and method == "GET":
                with hub.log_lock:
                    out = [dict(r) for r in hub.active.values()]
            elif raw_path == "/_fake/health" and method == "GET":
                out = {"ok": True, "port": hub.server_address[1], "lfs_port": hub.api.lfs_port}
            else:
                status, out = 404, {"error": "unknown control endpoint %s %s" % (method, raw_path)}
        except ValueError as e:
            status, out = 400, {"error": str(e)}
        self.send(Response(status, json_bytes(out)), head=(method == "HEAD"))


class LfsHandler(Handler):
    """GET/HEAD /media/<token> on the LFS listener: the blob's bytes, no auth needed."""
    kind = "lfs"

    def is_control(self, raw_path):
        return False

    def takes_faults(self, raw_path):
        return True

    def auth_flag(self):
        """The log's "auth" here: whether any Authorization header arrived at all."""
        return self.headers.get("Authorization") is not None

    def produce(self, method, raw_path, query):
        auth = self.auth_flag()
        not_found = Response(404, b"Not Found", content_type="text/plain")
        m = re.fullmatch(r"/media/([A-Za-z0-9_-]+)", raw_path)
        if method not in ("GET", "HEAD"):
            return Response(405, b"Method Not Allowed", content_type="text/plain"), auth
        ref = read_lfs_token(m.group(1)) if m else None
        if not ref:
            return not_found, auth
        ws, slug, blob = ref
        rec = self.server.hub.store.get().get("workspaces", {}).get(ws, {}).get("repositories", {}).get(slug)
        git = GitRepo(rec.get("git_dir")) if rec else None
        size = git.blob_size(blob) if git and git.dir else None
        if size is None:
            return not_found, auth
        return Response(200, content_type="application/octet-stream",
                        headers=[("ETag", '"%s"' % blob)], stream=git.blob_stream(blob),
                        length=size), auth


def rate_headers(knobs, near=False):
    """The rate-limit headers of every API answer (bitbucket-api.md §5.2)."""
    near = near or knobs["near_limit"]
    return [("X-RateLimit-Limit", str(knobs["rate_limit"])), ("X-RateLimit-Resource", "api"),
            ("X-RateLimit-NearLimit", "true" if near else "false")]


def token_known(data, auth_header):
    scheme, _, token = auth_header.strip().partition(" ")
    return scheme.lower() == "bearer" and token.strip() in data.get("tokens", {})


def etag_matches(header, etag):
    if not header:
        return False
    if header.strip() == "*":
        return True
    for part in header.split(","):
        part = part.strip()
        if part.startswith("W/"):
            part = part[2:]
        if part == etag:
            return True
    return False


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake Bitbucket Cloud API server for bbfs tests.")
    ap.add_argument("--data", required=True, help="data.json written by fixture.py")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", help="write the port number here once listening")
    ap.add_argument("--log", help="append one JSON line per /2.0 request here")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--max-pagelen", type=int, default=None, help="silently cap every page size")
    ap.add_argument("--lfs-port", type=int, default=0,
                    help="port of the LFS media listener (0 picks a free one; see /_fake/health)")
    ap.add_argument("--cache-git", action="store_true",
                    help="remember what git says about full object names (the commit of a 40-hex "
                         "hash, trees): much faster /src on big trees; a 40-hex revision is then "
                         "always taken as a hash, never as a ref name")
    ap.add_argument("--static-heads", action="store_true",
                    help="read each git directory's main branch once and remember it (for big "
                         "generated data sets whose HEADs never change, such as bench/)")
    ap.add_argument("--no-304", action="store_true",
                    help="never answer If-None-Match with 304 (the no_304 knob's start value)")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain)")
    ap.add_argument("--tls-key", help="the private key of --tls-cert (default: in the same file)")
    args = ap.parse_args(argv)
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    if args.cache_git:
        global _GIT_CACHE
        _GIT_CACHE = {}

    srv = FakeServer((args.host, args.port), args.data, log_path=args.log,
                     latency_ms=args.latency_ms,
                     max_pagelen=args.max_pagelen if args.max_pagelen and args.max_pagelen > 0 else None,
                     lfs_port=args.lfs_port, static_heads=args.static_heads, tls=tls,
                     no_304=args.no_304)
    port = srv.server_address[1]
    if args.port_file:
        # written atomically: a watcher never reads a half-written number
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for server in (srv, srv.lfs):
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    print("listening on %s://%s:%d/2.0" % (srv.api.scheme, args.host, port), flush=True)
    while not stop.wait(0.1):     # short: a signal does not cut a wait short (PEP 475)
        pass
    srv.stopping.set()          # releases hung and sleeping handlers
    srv.lfs.shutdown()
    srv.shutdown()
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

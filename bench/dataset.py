#!/usr/bin/python3
"""The benchmark's data set (issue 5), generated once and cached.

    dataset.py [--out build/bench-data] [--force]     prints the data.json path

Workspace `acme`, project `BENCH`, token `bench-token`, 1,000 repositories:

* `big`    10,000 commits on `main` (first parent chain), 300 branches (`main` and
           `branch-001` ... `branch-299`) and 300 tags (`v1.0.000` ... `v1.0.299`, every
           other one annotated), all pointing into main's history. The tree at the
           tip of main has 5,000 files in 300 directories: 15 top-level directories
           `d00`..`d14`, each with 19 subdirectories `s00`..`s18` (15 + 285 = 300), every
           directory holding 16 or 17 files of about 600 bytes.
* `blob`   one commit with `data.bin`, 200 MiB (BLOB_SIZE) of deterministic bytes that do
           not compress (slices of a seeded pseudo-random pool, each MiB starting with its
           own number).
* `repo-0000` ... `repo-0997`: 998 small repositories that all share one tiny git
           directory (one commit, `README.md`), so listing them costs the fake server
           nothing per repository (run it with --static-heads).

The result lives in OUT/VERSION/ (VERSION below): a second run finds OUT/VERSION/.done and
does nothing. Everything is written with `git fast-import`, with fixed authors and dates,
so the hashes are the same on every machine. Python 3 standard library only.
"""

import argparse
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(REPO_ROOT / "tests" / "fakebb"))
import fixture  # noqa: E402  (tests/fakebb/fixture.py)

# Bump when anything below changes what is generated: the cache is keyed by it.
VERSION = "v1"

WORKSPACE = "acme"
PROJECT = "BENCH"
TOKEN = "bench-token"
N_REPOS = 1000
N_COMMITS = 10_000
N_BRANCHES = 300          # main included
N_TAGS = 300
N_TOP_DIRS = 15
N_SUB_DIRS = 19           # per top-level directory: 15 + 15 * 19 = 300 directories
N_FILES = 5000
BLOB_SIZE = 200 << 20
BLOB_SEED = "bbfs bench blob v1"
LANGUAGES = ["c", "python", "go", "javascript", "shell", "java", "rust", ""]

BASE_TS = 1_704_186_000   # 2024-01-02T09:00:00Z
AUTHORS = [("Alice Example", "alice@acme.example"), ("Bob Builder", "bob@acme.example"),
           ("Zoë Ünal", "zoe@acme.example")]


def tree_dirs():
    """The 300 directories of big's tree, parents before children."""
    out = []
    for t in range(N_TOP_DIRS):
        top = "d%02d" % t
        out.append(top)
        out += ["%s/s%02d" % (top, s) for s in range(N_SUB_DIRS)]
    return out


def tree_files():
    """The 5,000 file paths of big's tree, spread round-robin over the 300 directories."""
    dirs = tree_dirs()
    return ["%s/f%04d.txt" % (dirs[i % len(dirs)], i) for i in range(N_FILES)]


def file_content(path, rev):
    lines = ["%s, revision %d" % (path, rev)]
    for k in range(8):
        lines.append("line %d of %s: the quick brown fox jumps over the lazy dog %06d"
                     % (k, path, (rev * 31 + k * 7) % 1_000_000))
    if rev % 97 == 0:
        lines.append("TODO: revisit this file (revision %d)" % rev)
    return ("\n".join(lines) + "\n").encode()


def _data(payload):
    return b"data %d\n" % len(payload) + payload + b"\n"


def _person(n, ts):
    name, email = AUTHORS[n % len(AUTHORS)]
    return ("%s <%s> %d +0000" % (name, email, ts)).encode()


def big_stream():
    """The fast-import stream of `big`, as a list of bytes pieces."""
    files = tree_files()
    out = []
    # commit 1 (mark :1): the whole tree
    ts = BASE_TS
    out.append(b"commit refs/heads/main\nmark :1\n")
    out.append(b"author " + _person(0, ts) + b"\ncommitter " + _person(0, ts) + b"\n")
    out.append(_data(b"Import 5000 files\n"))
    for p in files:
        out.append(b"M 100644 inline " + p.encode() + b"\n")
        out.append(_data(file_content(p, 0)))
    out.append(b"\n")
    # commits 2..N: each changes one file, round-robin over the tree
    for n in range(2, N_COMMITS + 1):
        ts = BASE_TS + n * 600
        p = files[(n * 37) % len(files)]
        out.append(b"commit refs/heads/main\nmark :%d\n" % n)
        out.append(b"author " + _person(n, ts) + b"\ncommitter " + _person(n, ts) + b"\n")
        out.append(_data(("Change %s (commit %d)\n" % (p, n)).encode()))
        out.append(b"from :%d\n" % (n - 1))
        out.append(b"M 100644 inline " + p.encode() + b"\n")
        out.append(_data(file_content(p, n)))
        out.append(b"\n")
    # branches and tags spread over main's history (never on the tip itself)
    for b in range(1, N_BRANCHES):
        out.append(b"reset refs/heads/branch-%03d\nfrom :%d\n\n" % (b, N_COMMITS - 30 * b))
    for t in range(N_TAGS):
        mark = 1 + 33 * t
        name = b"v1.0.%03d" % t
        if t % 2:
            out.append(b"reset refs/tags/" + name + b"\nfrom :%d\n\n" % mark)
        else:
            out.append(b"tag " + name + b"\nfrom :%d\n" % mark)
            out.append(b"tagger " + _person(t, BASE_TS + mark * 600 + 60) + b"\n")
            out.append(_data(b"Release " + name + b"\n"))
    out.append(b"done\n")
    return out


def blob_chunks():
    """BLOB_SIZE bytes, 1 MiB at a time: slices of a 4 MiB seeded pseudo-random pool at
    offsets that differ for every MiB, each MiB starting with its own number. zlib finds
    nothing to compress (its window is 32 KiB), git does not delta one blob against
    itself, and it costs one 4 MiB random draw."""
    pool = random.Random(BLOB_SEED).randbytes(4 << 20)
    pool2 = pool + pool
    mib = 1 << 20
    for i in range(BLOB_SIZE // mib):
        off = (i * 7919 * 64) % len(pool)
        head = b"MiB %06d of the bbfs bench blob\n" % i
        yield head + pool2[off + len(head):off + mib]


def fast_import(git_dir, pieces):
    git_dir = pathlib.Path(git_dir)
    git_dir.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "-q", "--bare", str(git_dir)],
                   check=True, env=fixture.git_env(), timeout=60)
    # fast-import replaces its marks file by a rename: never point it at /dev/null
    marks = git_dir.parent / (git_dir.name + ".marks")
    try:
        fixture._fast_import(git_dir, pieces, str(marks))
    finally:
        if marks.exists():
            marks.unlink()
    fixture.git(git_dir, "symbolic-ref", "HEAD", "refs/heads/main")


def build(root):
    root = pathlib.Path(root)
    gitroot = root / "git" / WORKSPACE
    t0 = time.monotonic()
    fast_import(gitroot / "big.git", big_stream())
    fast_import(gitroot / "blob.git", [
        b"commit refs/heads/main\nmark :1\n",
        b"author " + _person(0, BASE_TS) + b"\ncommitter " + _person(0, BASE_TS) + b"\n",
        _data(b"Add a 200 MiB file\n"),
        b"M 100644 inline data.bin\n",
        fixture.Generated(BLOB_SIZE, blob_chunks),
        b"\n", b"done\n"])
    small = fixture.make_repo(gitroot / "small.git", [
        {"message": "Initial commit", "files": {"README.md": "# a small repository\n"}}],
        start="2024-01-02T09:00:00+00:00")

    repos = {}
    rel = lambda name: "git/%s/%s.git" % (WORKSPACE, name)     # relative to data.json

    def add(slug, git_name, n, size, language, description):
        created = fixture.iso_utc(BASE_TS - 86400 * 30 + n * 60)
        repos[slug] = {
            "project": PROJECT, "git_dir": rel(git_name), "description": description,
            "language": language, "is_private": True, "uuid": fixture.det_uuid("bench/" + slug),
            "created_on": created, "updated_on": fixture.iso_utc(BASE_TS + n * 60), "size": size}

    add("big", "big", 0, fixture.tree_size(gitroot / "big.git"), "c",
        "10,000 commits, 300 branches, 300 tags, 5,000 files")
    add("blob", "blob", 1, BLOB_SIZE, "", "one 200 MiB file")
    for i in range(N_REPOS - 2):
        add("repo-%04d" % i, "small", i + 2, small["size"], LANGUAGES[i % len(LANGUAGES)],
            "Small repository number %d" % i)
    data = fixture._acme_data(repos)
    ws = data["workspaces"][WORKSPACE]
    ws["projects"] = {PROJECT: {"name": "Benchmark", "uuid": fixture.det_uuid("bench/project"),
                                "description": "The bbfs benchmark data set",
                                "created_on": "2023-12-02T10:00:00.000000+00:00",
                                "updated_on": "2024-03-10T12:00:00.000000+00:00",
                                "is_private": True}}
    data["tokens"] = {TOKEN: {"workspaces": [WORKSPACE], "projects": None, "workspace_read": True}}
    out = fixture.write_data(root, data)
    return out, time.monotonic() - t0


def ensure(out_dir=None, force=False, quiet=False):
    """The data.json of the cached data set, building it first when missing."""
    out_dir = pathlib.Path(out_dir or REPO_ROOT / "build" / "bench-data").resolve()
    final = out_dir / VERSION
    if (final / ".done").exists() and not force:
        return final / "data.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=VERSION + ".tmp-", dir=out_dir))
    try:
        if not quiet:
            print("bench: generating the data set in %s ..." % final, file=sys.stderr, flush=True)
        _, took = build(tmp)
        (tmp / ".done").write_text("%s generated in %.1f s\n" % (VERSION, took))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if not quiet:
            print("bench: data set generated in %.1f s" % took, file=sys.stderr, flush=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final / "data.json"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="cache directory (default build/bench-data)")
    ap.add_argument("--force", action="store_true", help="regenerate even when cached")
    args = ap.parse_args(argv)
    print(ensure(args.out, args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())

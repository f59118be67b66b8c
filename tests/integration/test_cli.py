"""
The user-facing command line: `bbfs --help` / `--version`, the man page (the
same options as --help, groff-clean), `make install` / `make uninstall` with
DESTDIR, and mounting the installed bbfs the ways an administrator does:
`mount -t fuse.bbfs` and an fstab line.

mount(8) runs /sbin/mount.fuse3 with a cleared environment, and mount.fuse3
runs `bbfs` through /bin/sh, whose default PATH is /usr/local/sbin:
/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin. So the installed copy is
bind-mounted over /usr/local/bin inside a private mount namespace (unshare
-m): the test sees exactly what a user sees after `make install`, and nothing
outside the namespace changes. The FUSE mount lives in that namespace too, so
everything that looks at it runs in one shell script there; the bbfs daemon is
found by its command line (which names the private mount point) and ended by
pid if it outlives the script.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (BBFS_BIN, CMD_TIMEOUT, EXIT_DEADLINE, MOUNT_DEADLINE, REPO_ROOT, run,
                      write_token_file)

MAN = REPO_ROOT / "man" / "bbfs.1"
MAKEFILE = REPO_ROOT / "Makefile"
BUILD_DIR = Path(os.path.abspath(BBFS_BIN)).parent
HELPER_BIN = BUILD_DIR / "git-credential-bbfs"
INSTALLED = {"bin/bbfs": (Path(BBFS_BIN), 0o755),
             "bin/git-credential-bbfs": (HELPER_BIN, 0o755),
             "share/man/man1/bbfs.1": (MAN, 0o644)}


def makefile_version():
    m = re.search(r"^VERSION\s*:?=\s*(\S+)", MAKEFILE.read_text(), re.M)
    assert m, "no VERSION in the Makefile"
    return m.group(1)


def help_text():
    r = run([BBFS_BIN, "--help"])
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr


# --------------------------------------------------------------------------
# --version, --help and the man page


def test_version_prints_the_version():
    version = makefile_version()
    for flag in ("--version", "-V"):
        r = run([BBFS_BIN, flag])
        assert r.returncode == 0, (flag, r.stderr)
        assert re.match(rf"bbfs {re.escape(version)}\b", r.stdout), (flag, r.stdout)


def test_help_exits_zero_and_shows_usage():
    text = help_text()
    assert "usage:" in text
    assert "WORKSPACE[/PROJECT_KEY] MOUNTPOINT" in text


def help_options(text):
    """Option names in --help: `-o name=...` / `-o flag`, `-x`, `--long`, as
    (bbfs's own, those under "FUSE options:")."""
    own, fuse = set(), set()
    opts = own
    for ln in text.splitlines():
        if ln.startswith("FUSE options"):
            opts = fuse
        m = re.match(r"\s+(-\S.*?)(?:\s{2,}|$)", ln)
        if not m:
            continue
        for part in m.group(1).split(","):
            part = part.strip()
            o = re.fullmatch(r"-o\s+([a-z_]+)(?:=\S*)?", part)
            if o:
                opts.add(o.group(1))
            elif re.fullmatch(r"--?[A-Za-z][-A-Za-z]*", part):
                opts.add(part)
    return own, fuse


def man_section(name):
    text = MAN.read_text()
    m = re.search(rf"^\.SH \"?{re.escape(name)}\"?\n(.*?)(?=^\.SH |\Z)", text, re.M | re.S)
    assert m, f"no {name} section in {MAN}"
    return m.group(1)


def man_words(line):
    """The words of a man macro line, with quotes and escapes undone."""
    line = re.sub(r"^\.\w+\s*", "", line)
    line = line.replace("\\-", "-").replace('" "', " ").replace('"', " ")
    return line.replace(",", " ").split()


def man_options():
    """(tagged options of OPTIONS' .TP paragraphs, every word of the section)."""
    section = man_section("OPTIONS")
    tagged = set()
    ls_ = section.splitlines()
    for i, ln in enumerate(ls_):
        if ln.strip() == ".TP" and i + 1 < len(ls_):
            for w in man_words(ls_[i + 1]):
                m = re.fullmatch(r"([a-z_]+)=", w)
                if m:
                    tagged.add(m.group(1))
                elif re.fullmatch(r"--?[A-Za-z][-A-Za-z]*|[a-z_]+", w):
                    tagged.add(w)
    words = set()
    for ln in ls_:
        for w in man_words(ln):
            words.add(w.rstrip(".=)").lstrip("("))
    return tagged, words


def test_help_and_man_page_list_the_same_options():
    own, fuse = help_options(help_text())
    in_help = own | fuse
    tagged, words = man_options()
    # the parsers must see something, or the comparison proves nothing
    assert {"api_url", "token_file", "--help"} <= own and "-f" in fuse, (own, fuse)
    assert {"api_url", "token_file", "-f", "--help"} <= tagged, tagged
    # bbfs's options each get a paragraph; FUSE's may be named in passing
    undocumented = {o for o in own if o not in tagged} | \
        {o for o in fuse if o not in tagged and o not in words}
    assert not undocumented, f"in bbfs --help but not in man/bbfs.1's OPTIONS: {undocumented}"
    unknown = tagged - in_help
    assert not unknown, f"in man/bbfs.1's OPTIONS but not in bbfs --help: {unknown}"


def test_man_page_is_groff_clean_and_current():
    r = run(["groff", "-man", "-Tutf8", "-wall", MAN])
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", f"groff warnings:\n{r.stderr}"
    th = MAN.read_text().splitlines()[0]
    assert f'"bbfs {makefile_version()}"' in th, th
    for section in ("SYNOPSIS", "OPTIONS", "EXIT STATUS", "GIT CREDENTIALS", "SEE ALSO"):
        man_section(section)


# --------------------------------------------------------------------------
# make install / make uninstall


def make(*args, timeout=60):
    """make in the repository, installing what is already built (never rebuilding:
    other tests may be using the binaries)."""
    return run(["make", "-s", "-C", REPO_ROOT, f"BUILD={BUILD_DIR}",
                "-o", BUILD_DIR / "bbfs", "-o", BUILD_DIR / "git-credential-bbfs", *args],
               timeout=timeout)


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*")
                  if p.is_file() or p.is_symlink())


def make_install(destdir, *args):
    r = make("install", f"DESTDIR={destdir}", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.mark.parametrize("prefix", [None, "/opt/bbfs"])
def test_install_and_uninstall_with_destdir(tmp_path, prefix):
    assert HELPER_BIN.exists(), f"{HELPER_BIN} not built (make all builds it)"
    dest = tmp_path / "dest"
    args = [f"PREFIX={prefix}"] if prefix else []
    base = prefix or "/usr/local"
    make_install(dest, *args)
    expected = sorted(base.lstrip("/") + "/" + rel for rel in INSTALLED)
    assert files_under(dest) == expected
    for rel, (src, mode) in INSTALLED.items():
        path = dest / base.lstrip("/") / rel
        assert path.read_bytes() == src.read_bytes(), rel
        assert path.stat().st_mode & 0o7777 == mode, (rel, oct(path.stat().st_mode))
    r = run([dest / base.lstrip("/") / "bin" / "bbfs", "--version"])
    assert r.returncode == 0 and r.stdout.startswith("bbfs "), r.stdout + r.stderr

    # uninstall removes exactly those files, nothing else
    keep = dest / base.lstrip("/") / "bin" / "other-tool"
    keep.write_text("not ours\n")
    r = make("uninstall", f"DESTDIR={dest}", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert files_under(dest) == [str(keep.relative_to(dest))]


# --------------------------------------------------------------------------
# mount -t fuse.bbfs and fstab, with the installed binary


def bbfs_pids(mnt):
    """Pids of bbfs processes whose command line names mnt (ours: mnt is private)."""
    res = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"bbfs" and str(mnt).encode() in argv:
            res.append(int(d))
    return res


def end_daemons(mnt, deadline=EXIT_DEADLINE):
    """Waits for the daemon of mnt to exit; SIGTERM, then SIGKILL, if it does not.
    Returns whether it had to be killed."""
    end = time.monotonic() + deadline
    while bbfs_pids(mnt) and time.monotonic() < end:
        time.sleep(0.1)
    killed = False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = bbfs_pids(mnt)
        if not pids:
            break
        killed = True
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 5
        while bbfs_pids(mnt) and time.monotonic() < end:
            time.sleep(0.1)
    # reap it if an earlier test made us a child subreaper
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
    return killed


# Runs in a private mount namespace: the installed bin/ over /usr/local/bin,
# the mount command, a look at the mount, then fusermount3 -u (as conftest: retried
# while busy, then -u -z on the way out).
NS_SCRIPT = r"""
set -e
mnt=$1 bindir=$2 out=$3
shift 3
trap 'fusermount3 -u -z "$mnt" 2>/dev/null || true' EXIT
mount --bind "$bindir" /usr/local/bin
"$@"
i=0
until findmnt -n "$mnt" >/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "not mounted" >&2; exit 3; }
    sleep 0.1
done
findmnt -n -o FSTYPE,SOURCE "$mnt" > "$out.mount"
ls -1 "$mnt/acme" > "$out.ls"
i=0
until fusermount3 -u "$mnt"; do
    i=$((i + 1)); [ $i -lt 50 ] || exit 4
    sleep 0.2
done
echo unmounted > "$out.done"
"""


def mount_in_namespace(tmp_path, mnt, mount_cmd):
    dest = tmp_path / "dest"
    make_install(dest)
    out = tmp_path / "ns"
    try:
        r = run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", NS_SCRIPT,
                 "ns", mnt, dest / "usr/local/bin", out, *mount_cmd],
                timeout=MOUNT_DEADLINE + CMD_TIMEOUT + EXIT_DEADLINE)
    finally:
        killed = end_daemons(mnt)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert (Path(f"{out}.done")).exists()
    assert not killed, "bbfs did not exit after fusermount3 -u"
    return Path(f"{out}.mount").read_text().split(), Path(f"{out}.ls").read_text().split()


def mount_options(server, tmp_path):
    tf = write_token_file(tmp_path / "token", "demo-token")
    return f"token_file={tf},api_url={server.url},cache_dir={tmp_path / 'cache'}"


@pytest.mark.timeout(150)
def test_mount_t_fuse_bbfs_runs_the_installed_bbfs(server, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    fstype, names = mount_in_namespace(
        tmp_path, mnt,
        ["mount", "-t", "fuse.bbfs", "acme/PLAT", mnt, "-o", mount_options(server, tmp_path)])
    assert fstype == ["fuse.bbfs", "acme/PLAT"]
    slugs = server.repo_slugs(project="PLAT")
    assert [n for n in names if n in slugs] == sorted(slugs)


@pytest.mark.timeout(150)
def test_fstab_line_mounts_with_mount_T(server, tmp_path):
    """An fstab line as the man page shows it, from a private fstab (mount -T)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text("# bbfs test\n"
                     f"acme/PLAT {mnt} fuse.bbfs {mount_options(server, tmp_path)},_netdev 0 0\n")
    fstype, names = mount_in_namespace(tmp_path, mnt, ["mount", "-T", fstab, mnt])
    assert fstype == ["fuse.bbfs", "acme/PLAT"]
    slugs = server.repo_slugs(project="PLAT")
    assert [n for n in names if n in slugs] == sorted(slugs)

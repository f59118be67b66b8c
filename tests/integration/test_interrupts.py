"""
Interrupts and liveness (issue 16): a stalled network never freezes the mount.

- SIGINT to `cat` during a throttled download ends it, the download stops (nobody else
  reads it), and the mount still lists and reads;
- the same against a server that accepts and never answers (the fake's `hang` knob), for a
  look-up (`stat`), a listing (`ls`) and a file (`cat`), with SIGINT and with SIGKILL: the
  command ends, and once the server answers again the same command works;
- with 32 reads hanging on the network, `cat .bbfs/stats` and `ls` of a directory listed
  before answer at once.

bbfs runs with a long `timeout=` (HUNG_TIMEOUT): without interrupts every command here
would wait that long. The time bounds below are hang guards far below it, not timings.
Expected names and bytes come from git.
"""

import signal
import subprocess

import pytest

from conftest import cat, describe, ls, run, user_env
from test_streaming import in_flight, repo, slow, wait_until  # noqa: F401 (the repo fixture)
from test_tree import clear_failures, requests_for, tree_of

HUNG_TIMEOUT = 120   # bbfs's timeout=: how long a hung request would hold a command
HANG_GUARD = 15      # a hang guard, far below HUNG_TIMEOUT


def hung(server, path_part):
    """Requests the fake server holds without an answer (logged on arrival, status null)."""
    return [e for e in server.log.entries() if e.get("fault") == "hang" and path_part in e["path"]]


def ended(proc, guard=HANG_GUARD):
    """The command's exit status once it ended; fails past the hang guard."""
    try:
        return proc.wait(guard)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"{proc.args} still ran {guard} s after its signal")


def start(args):
    return subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=user_env())


def test_sigint_ends_a_throttled_cat_and_its_download(mount_factory, files_server, repo):
    sha = repo.main()
    path, obj, size = repo.biggest(sha)
    m = mount_factory(files_server, target="acme", options=[f"timeout={HUNG_TIMEOUT}"])
    f = tree_of(m, sha) / path
    slow(files_server, sha, path, 256 << 10)       # four minutes for the whole body
    mark = files_server.log.mark()
    reader = start(["cat", f])
    try:
        wait_until("the body flowing", lambda: any(a["bytes"] > 0
                                                   for a in in_flight(files_server, sha, path)))
        reader.send_signal(signal.SIGINT)
        assert ended(reader) == -signal.SIGINT
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(10)
    # nobody reads it any more: the download stops
    wait_until("the download given up", lambda: not in_flight(files_server, sha, path))
    downloads = requests_for(files_server.log.since(mark), sha, path)
    assert len(downloads) == 1 and downloads[0]["bytes"] < size, describe(downloads)
    clear_failures(files_server)
    # the mount still lists and reads
    assert ls(tree_of(m, sha)) == sorted(p for p in repo.entries(sha)
                                         if "/" not in p and not p.startswith("."))
    readme = repo.entries(sha)["README.md"]
    assert cat(tree_of(m, sha) / "README.md") == repo.blob(readme[2])


# What each kind of request needs first, and the command that needs it.
HUNG_CASES = {
    "look-up": ("/repositories/acme/files", lambda m, sha: ["stat", m.ws / "files"]),
    "listing": ("/refs/branches", lambda m, sha: ["ls", m.ws / "files" / "branches"]),
    "file": ("/README.md", lambda m, sha: ["cat", tree_of(m, sha) / "README.md"]),
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("what", sorted(HUNG_CASES))
def test_a_signal_ends_a_command_on_a_server_that_never_answers(mount_factory, files_server,
                                                                repo, what, sig):
    sha = repo.main()
    part, command = HUNG_CASES[what]
    m = mount_factory(files_server, target="acme", options=[f"timeout={HUNG_TIMEOUT}"])
    if what == "file":
        ls(tree_of(m, sha))                         # the listing first: only the file hangs
    files_server.knobs(hang={"path_contains": part, "count": -1})
    proc = start(command(m, sha))
    try:
        wait_until("the request held by the server", lambda: hung(files_server, part))
        proc.send_signal(sig)
        assert ended(proc) == -sig
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # the server answers again: the same command works, and is answered
    files_server.knobs(hang=None)
    r = run(command(m, sha), timeout=HANG_GUARD, binary=True)
    assert r.returncode == 0, r.stderr
    if what == "listing":
        assert r.stdout.decode().split() == sorted(repo.demo.branches("files"))
    elif what == "file":
        assert r.stdout == repo.blob(repo.entries(sha)["README.md"][2])


def test_thirty_two_hung_reads_leave_stats_and_cached_listings_alive(mount_factory, files_server,
                                                                    repo):
    sha = repo.main()
    m = mount_factory(files_server, target="acme", options=[f"timeout={HUNG_TIMEOUT}"])
    many = tree_of(m, sha) / "many"
    names = ls(many)                                # listed: a cached directory
    assert names == sorted(p.split("/", 1)[1] for p in repo.entries(sha) if p.startswith("many/"))
    files_server.knobs(hang={"path_contains": f"/src/{sha}/many/", "count": -1})
    readers = [start(["cat", many / n]) for n in names[:32]]
    try:
        wait_until("32 reads held by the server",
                   lambda: len(hung(files_server, f"/src/{sha}/many/")) >= 32)
        # answered at once: each within a hang guard far below the hang (HUNG_TIMEOUT)
        stats = cat(m.path / ".bbfs" / "stats", timeout=HANG_GUARD).decode()
        assert "requests_file " in stats
        assert ls(many, timeout=HANG_GUARD) == names
        for p in readers:
            p.send_signal(signal.SIGKILL)
        for p in readers:
            assert ended(p) == -signal.SIGKILL
    finally:
        for p in readers:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        clear_failures(files_server)

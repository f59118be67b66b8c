"""
git-credential-bbfs, the git credential helper: git asks it (`git credential
fill`, then a real `git clone` from the fake server's smart-HTTP endpoint) and
gets user x-token-auth and the token for the Bitbucket host only; the token
never lands in the clone, in `git remote -v`, or on stderr.

git runs with an empty HOME, no system config and no terminal prompt, so the
helper configured with `-c credential.helper=...` is the only source of a
password. The fake server's /git/WS/SLUG.git/ wants Basic x-token-auth:TOKEN.
"""

import os
from pathlib import Path

import pytest

from conftest import BBFS_BIN, cat, run, user_env, write_token_file

HELPER = Path(os.path.abspath(BBFS_BIN)).parent / "git-credential-bbfs"
TOKEN = "demo-token"


@pytest.fixture
def helper():
    if not os.access(HELPER, os.X_OK):
        pytest.fail(f"{HELPER} not built (make all builds it)")
    return HELPER


def git_env(tmp_path, **extra):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return user_env(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
                    GIT_CONFIG_GLOBAL=str(home / "gitconfig"), **extra)


def helper_config(helper, *args):
    """`-c` arguments that make this helper git's only one (the empty value resets)."""
    return ["-c", "credential.helper=", "-c",
            "credential.helper=" + " ".join([str(helper), *map(str, args)])]


def ask(helper, request, *args, env=None):
    """Runs the helper directly: (exit status, stdout, stderr)."""
    r = run([helper, *args], input=request, env=env or user_env())
    return r.returncode, r.stdout, r.stderr


def fill(tmp_path, helper, request, *args, extra_env=None):
    r = run(["git", *helper_config(helper, *args), "credential", "fill"], input=request,
            env=git_env(tmp_path, **(extra_env or {})))
    return r.returncode, r.stdout, r.stderr


def answer(text):
    return dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)


# --------------------------------------------------------------------------
# The protocol


def test_git_credential_fill_gets_the_token_for_bitbucket(tmp_path, helper):
    tf = write_token_file(tmp_path / "token", TOKEN)
    rc, out, err = fill(tmp_path, helper, "protocol=https\nhost=bitbucket.org\n\n",
                        "--token-file", tf)
    assert rc == 0, err
    got = answer(out)
    assert (got.get("username"), got.get("password")) == ("x-token-auth", TOKEN)
    assert TOKEN not in err
    # a URL that already names the user x-token-auth, as clone-url does
    rc, out, err = fill(tmp_path, helper,
                        "url=https://x-token-auth@bitbucket.org/acme/api.git\n\n",
                        "--token-file", tf)
    assert rc == 0 and answer(out).get("password") == TOKEN, err


def test_other_hosts_users_and_protocols_get_nothing(tmp_path, helper):
    tf = write_token_file(tmp_path / "token", TOKEN)
    for request in ("protocol=https\nhost=github.com\n",
                    "protocol=https\nhost=bitbucket.org.evil.example\n",
                    "protocol=http\nhost=bitbucket.org\n",
                    "protocol=https\nhost=bitbucket.org\nusername=alice\n",
                    "protocol=http\nhost=127.0.0.1:8080\n"):   # loopback, but not --host
        rc, out, err = ask(helper, request + "\n", "--token-file", tf, "get")
        assert (rc, out) == (0, ""), (request, err)
        # git falls back to a prompt, which is off: no password at all
        rc, out, err = fill(tmp_path, helper, request + "\n", "--token-file", tf)
        assert rc != 0 and "password=" not in out, request
        assert TOKEN not in out + err


def test_host_option_env_and_token_sources(tmp_path, helper):
    tf = write_token_file(tmp_path / "token", TOKEN)
    req = "protocol=http\nhost=127.0.0.1:4567\n\n"
    rc, out, _ = ask(helper, req, "--host", "127.0.0.1:4567", "--token-file", tf, "get")
    assert rc == 0 and answer(out)["password"] == TOKEN
    rc, out, _ = ask(helper, req, "--token-file", tf, "get",
                     env=user_env(BBFS_GIT_HOST="127.0.0.1:4567"))
    assert rc == 0 and answer(out)["password"] == TOKEN
    # plain http to a host that is not loopback is never answered
    rc, out, _ = ask(helper, "protocol=http\nhost=example.com\n\n", "--host", "example.com",
                     "--token-file", tf, "get")
    assert (rc, out) == (0, "")
    # BITBUCKET_TOKEN when there is no --token-file
    rc, out, _ = ask(helper, "protocol=https\nhost=bitbucket.org\n\n", "get",
                     env=user_env(BITBUCKET_TOKEN="env-token"))
    assert rc == 0 and answer(out)["password"] == "env-token"


def test_store_and_erase_are_ignored(tmp_path, helper):
    tf = write_token_file(tmp_path / "token", TOKEN)
    before = tf.read_bytes()
    for op in ("store", "erase"):
        rc, out, err = ask(helper, "protocol=https\nhost=bitbucket.org\nusername=x-token-auth\n"
                           "password=other\n\n", "--token-file", tf, op)
        assert (rc, out, err) == (0, "", ""), op
    assert tf.read_bytes() == before


def test_refusals_never_show_the_token(tmp_path, helper):
    tf = write_token_file(tmp_path / "token", TOKEN, mode=0o644)
    req = "protocol=https\nhost=bitbucket.org\n\n"
    rc, out, err = ask(helper, req, "--token-file", tf, "get")
    assert rc != 0 and out == "" and "token file" in err and TOKEN not in err
    rc, out, err = ask(helper, req, "get")             # no token anywhere
    assert rc != 0 and out == "" and err
    rc, out, err = ask(helper, req, "--token-file", tmp_path / "missing", "get")
    assert rc != 0 and out == ""
    rc, out, err = ask(helper, req)                     # no operation
    assert rc != 0 and out == "" and "usage" in err


# --------------------------------------------------------------------------
# A real clone


def clone(tmp_path, server, helper, url, dest, *args, config=()):
    host = server.base.split("//", 1)[1]
    cfg = helper_config(helper, "--host", host, *args) if helper else []
    return run(["git", *cfg, *config, "clone", "-q", url, dest], timeout=120,
               env=git_env(tmp_path))


def assert_no_token_in(dest):
    r = run(["grep", "-r", "-l", "-F", "-a", TOKEN, dest / ".git"])
    assert r.returncode == 1, f"the token is in {r.stdout}"
    r = run(["git", "-C", dest, "remote", "-v"], env=user_env(GIT_CONFIG_NOSYSTEM="1"))
    assert r.returncode == 0 and "x-token-auth" in r.stdout and TOKEN not in r.stdout


@pytest.mark.timeout(180)
def test_git_clone_with_only_the_helper_for_a_password(tmp_path, server, demo, helper):
    tf = write_token_file(tmp_path / "token", TOKEN)
    url = f"http://x-token-auth@{server.base.split('//', 1)[1]}/git/acme/api.git"

    # without the helper there is no password: the clone fails, it does not hang
    r = clone(tmp_path, server, None, url, tmp_path / "no-helper")
    assert r.returncode != 0

    dest = tmp_path / "api"
    r = clone(tmp_path, server, helper, url, dest, "--token-file", tf)
    assert r.returncode == 0, r.stderr
    assert TOKEN not in r.stdout + r.stderr
    head = run(["git", "-C", dest, "rev-parse", "HEAD"], check=True).stdout.strip()
    assert head == demo.branches("api")[demo.head_branch("api")]
    assert_no_token_in(dest)
    git_requests = [e for e in server.log.entries() if e.get("server") == "git"]
    assert any(e["auth"] and e["status"] == 200 for e in git_requests), git_requests


@pytest.mark.timeout(180)
def test_clone_url_of_the_mount_clones_with_the_helper(tmp_path, server, mount, demo, helper):
    """`git clone "$(cat clone-url)"`, with bitbucket.org redirected to the fake server."""
    tf = write_token_file(tmp_path / "token", TOKEN)
    clone_url = cat(mount.ws / "web" / "clone-url").decode()
    assert clone_url == "https://x-token-auth@bitbucket.org/acme/web.git\n"
    host = server.base.split("//", 1)[1]
    dest = tmp_path / "web"
    r = clone(tmp_path, server, helper, clone_url.strip(), dest, "--token-file", tf,
              config=["-c", f"url.http://x-token-auth@{host}/git/.insteadOf="
                            "https://x-token-auth@bitbucket.org/"])
    assert r.returncode == 0, r.stderr
    head = run(["git", "-C", dest, "rev-parse", "HEAD"], check=True).stdout.strip()
    assert head == demo.branches("web")[demo.head_branch("web")]
    assert_no_token_in(dest)
    remote = run(["git", "-C", dest, "config", "remote.origin.url"], check=True).stdout.strip()
    assert remote == clone_url.strip()

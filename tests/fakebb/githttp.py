"""Git's smart HTTP protocol for the fake Bitbucket server (server.py), upload-pack only.

Two layouts on the API's host and port, with the same rules:

    /WS/SLUG.git/info/refs?service=git-upload-pack    POST /WS/SLUG.git/git-upload-pack
    /git/WS/SLUG.git/...                               (the older layout; bench/run.py uses it)

`git http-backend` runs as a CGI for each request. Authentication is HTTP Basic with the user
name `x-token-auth` and a token of data.json, nothing else (as bitbucket.org, bitbucket-api.md
§7.4): Bearer, another user name or an unknown token get 401 with a Basic challenge, so that
git retries with the credentials of its URL or helper. A repository the token cannot see is a
404, the same answer as for one that does not exist, as the API gives it (bitbucket-api.md
§8.11): neither tells a stranger that a private repository exists.

Knobs (POST /_fake/knobs, cleared by /_fake/reset):

    git_protocol  "v2" (default): the Git-Protocol header reaches upload-pack, so a client
                  asking for version=2 gets it, and upload-pack lets any reachable commit be
                  wanted (uploadpack.allowReachableSHA1InWant).
                  "v0": the header is ignored and a want that is not an advertised tip (a
                  branch, a tag's own object, HEAD; not the commit of an annotated tag) is
                  refused with `ERR upload-pack: not our ref`, as bitbucket.org is reported
                  to do. (git's own upload-pack lets HTTP
                  clients want any commit reachable from a tip, even in v0.)
    git_hang      {count, skip, path_contains, request}: the request is read, never answered.
    git_reset     {bytes, ...}: the head and `bytes` (default 0) bytes of the body, then a TCP
                  reset (SO_LINGER 0).
    git_cut       {bytes, ...}: the full Content-Length is promised, `bytes` bytes of the body
                  are sent, then the connection is closed in order (a cut pack).
    git_fail      {status, ...}: that status with a one-line text body (a 403, a 503 ...).

`request` narrows a fault to one kind of git request: "discover" (GET info/refs), "ls-refs"
or "fetch" (a v2 POST by its command; every v0 POST is a "fetch"); `count`, `skip` and
`path_contains` work as for the API's faults. The API's own faults never touch git requests;
`latency_ms` applies to both.

Every git request is logged with "server": "git", "git": its kind (above, or "other") and
"protocol": 2 or 0, so tests count API and git requests apart. The token is never logged.

server.py calls `serve(handler, method, server_module)` for the paths that `is_git_path`
accepts, and takes the knobs' defaults and validation from KNOBS and check_knob.
"""

import base64
import binascii
import gzip
import os
import re
import socket
import struct
import subprocess
import tempfile
import time
import traceback
import zlib
from urllib.parse import unquote, urlsplit

KNOBS = {"git_protocol": "v2", "git_hang": None, "git_reset": None, "git_cut": None,
         "git_fail": None}
FAULTS = ("git_hang", "git_reset", "git_cut", "git_fail")
FAULT_KEYS = {
    "git_hang": set(),
    "git_reset": {"bytes"},
    "git_cut": {"bytes"},
    "git_fail": {"status"},
}
COMMON_KEYS = {"count", "skip", "path_contains", "request"}
REQUEST_KINDS = ("discover", "ls-refs", "fetch", "other")
MAX_BODY = 64 << 20        # a want list is small; anything bigger is not a client of ours

NEW_LAYOUT = re.compile(r"/(?!_fake/)([^/]+)/([^/]+)\.git(/.*)")
OLD_LAYOUT = re.compile(r"/git/([^/]+)/([^/]+?)(?:\.git)?(/.*)")
WANT = re.compile(rb"want ([0-9a-f]{40})")


def is_git_path(path):
    raw_path = urlsplit(path).path
    return bool(NEW_LAYOUT.fullmatch(raw_path) or OLD_LAYOUT.fullmatch(raw_path))


def check_knob(key, value):
    """The clean value of git knob KEY, or ValueError."""
    if key == "git_protocol":
        if value not in ("v2", "v0"):
            raise ValueError('git_protocol must be "v2" or "v0"')
        return value
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("%s must be null or an object" % key)
    extra = set(value) - COMMON_KEYS - FAULT_KEYS[key]
    if extra:
        raise ValueError("%s: unknown keys %s" % (key, sorted(extra)))
    value = dict(value)
    value.setdefault("count", 1)
    value.setdefault("skip", 0)
    value.setdefault("path_contains", None)
    value.setdefault("request", None)
    for k in ("count", "skip"):
        if not isinstance(value[k], int) or isinstance(value[k], bool) or (k == "skip" and value[k] < 0):
            raise ValueError("%s.%s must be an integer%s" % (key, k, " >= 0" if k == "skip" else ""))
    if value["path_contains"] is not None and not isinstance(value["path_contains"], str):
        raise ValueError("%s.path_contains must be a string" % key)
    if value["request"] is not None and value["request"] not in REQUEST_KINDS:
        raise ValueError("%s.request must be one of %s" % (key, ", ".join(REQUEST_KINDS)))
    if key in ("git_reset", "git_cut"):
        n = value.setdefault("bytes", 0)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError("%s.bytes must be an integer >= 0" % key)
    if key == "git_fail":
        st = value.get("status")
        if not isinstance(st, int) or isinstance(st, bool) or not 100 <= st <= 599:
            raise ValueError("git_fail.status must be an HTTP status code")
    return value


def take_fault(knobs, raw_path, kind):
    """(name, spec) of the armed git fault that handles this request, using up one of its
    count, or None. Like Knobs.take_fault, plus the `request` filter."""
    decoded = unquote(raw_path, errors="replace")
    with knobs.lock:
        for key in FAULTS:
            spec = knobs.values.get(key)
            if not spec or spec["count"] == 0:
                continue
            pc = spec.get("path_contains")
            if pc and pc not in raw_path and pc not in decoded:
                continue
            if spec.get("request") and spec["request"] != kind:
                continue
            if spec["skip"] > 0:
                spec["skip"] -= 1
                continue
            taken = dict(spec)
            if spec["count"] > 0:
                spec["count"] -= 1
                if spec["count"] == 0:
                    knobs.values[key] = None
            return key, taken
    return None


# ---------------------------------------------------------------------------- requests

def read_body(handler):
    """The request body, de-chunked (git sends big POSTs with chunked encoding)."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts, total = [], 0
        while True:
            line = handler.rfile.readline(65537)
            if not line:
                raise ConnectionError("chunked body cut short")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass                           # trailers
                break
            total += size
            if total > MAX_BODY:
                raise ValueError("request body too large")
            parts.append(handler.rfile.read(size))
            handler.rfile.readline(65537)          # CRLF after each chunk
        return b"".join(parts)
    try:
        n = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        n = 0
    if n > MAX_BODY:
        raise ValueError("request body too large")
    return handler.rfile.read(n) if n > 0 else b""


def plain_body(handler, body):
    """BODY without its Content-Encoding (git gzips big requests); None if undecodable."""
    enc = handler.headers.get("Content-Encoding", "").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc in ("gzip", "x-gzip"):
        try:
            return gzip.decompress(body)
        except (OSError, EOFError, zlib.error):
            return None
    return None


def pkt_lines(data):
    """The payloads of DATA's pkt-lines (flush and delimiter packets as b""), up to the
    first malformed length."""
    out, i = [], 0
    while i + 4 <= len(data):
        try:
            n = int(data[i:i + 4], 16)
        except ValueError:
            break
        if n < 4:
            out.append(b"")
            i += 4
            continue
        out.append(data[i + 4:i + n])
        i += n
    return out


def git_token(handler):
    """The token of a `Basic x-token-auth:TOKEN` header, or None (Bearer is refused)."""
    scheme, _, value = handler.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, token = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return token if user == "x-token-auth" and token else None


def protocol_of(handler, mode):
    """2 when this request speaks protocol v2 (the client asked and the knob allows it)."""
    header = handler.headers.get("Git-Protocol", "")
    return 2 if mode == "v2" and "version=2" in header.split(":") else 0


def request_kind(method, git_path, query, plain, protocol):
    if method in ("GET", "HEAD") and git_path == "/info/refs":
        return "discover"
    if method == "POST" and git_path == "/git-upload-pack":
        if protocol != 2:
            return "fetch"
        for line in pkt_lines(plain or b"")[:1]:
            if line.rstrip(b"\n") == b"command=ls-refs":
                return "ls-refs"
            if line.rstrip(b"\n") == b"command=fetch":
                return "fetch"
    return "other"


def advertised_tips(git):
    """The object names of the refs a v0 advertisement offers: branches, tags (an annotated
    tag's own object: its peeled commit is a `^{}` line that git's client does not count as
    a ref either) and HEAD."""
    rc, out = git.run("for-each-ref", "--format=%(objectname)", "refs/heads", "refs/tags")
    tips = set(out.decode("ascii", "replace").split()) if rc == 0 else set()
    rc, out = git.run("rev-parse", "--verify", "--quiet", "HEAD")
    if rc == 0:
        tips.add(out.decode("ascii", "replace").strip())
    return tips


# ---------------------------------------------------------------------------- answers

def text(server, status, msg, headers=None):
    return server.Response(status, msg.encode() + b"\n", content_type="text/plain", headers=headers)


def refusal(server, oid):
    """What upload-pack sends for a want it will not serve: 200 and one ERR pkt-line."""
    line = b"ERR upload-pack: not our ref %s\n" % oid
    return server.Response(200, b"%04x" % (len(line) + 4) + line,
                           content_type="application/x-git-upload-pack-result",
                           headers=[("Cache-Control", "no-cache")])


def backend(handler, server, git, git_path, query, method, body, protocol, mode):
    """`git http-backend` for one request, as a Response streamed from a temporary file."""
    env = server.git_env()
    config = [("safe.directory", "*"), ("http.receivepack", "false"),
              ("uploadpack.allowReachableSHA1InWant", "true" if mode == "v2" else "false"),
              ("uploadpack.allowAnySHA1InWant", "false"),
              ("uploadpack.allowTipSHA1InWant", "false")]
    env.update({
        "GIT_PROJECT_ROOT": os.path.abspath(git.dir), "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": git_path, "QUERY_STRING": query, "REQUEST_METHOD": method,
        "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": handler.client_address[0],
        "GIT_CONFIG_COUNT": str(len(config))})
    for i, (k, v) in enumerate(config):
        env["GIT_CONFIG_KEY_%d" % i], env["GIT_CONFIG_VALUE_%d" % i] = k, v
    if handler.headers.get("Content-Encoding"):
        env["HTTP_CONTENT_ENCODING"] = handler.headers["Content-Encoding"]
    if protocol == 2:
        env["GIT_PROTOCOL"] = handler.headers["Git-Protocol"]
    f = tempfile.TemporaryFile(prefix="fakebb-git-")
    try:
        rc = subprocess.run(["git", "http-backend"], input=body, stdout=f,
                            stderr=subprocess.DEVNULL, env=env, timeout=600).returncode
    except (OSError, subprocess.TimeoutExpired) as e:
        f.close()
        return text(server, 500, "git http-backend failed: %s" % e)
    f.seek(0)
    head = b""
    while b"\r\n\r\n" not in head and b"\n\n" not in head:
        more = f.read(4096)
        if not more:
            break
        head += more
    sep = b"\r\n\r\n" if b"\r\n\r\n" in head else b"\n\n"
    cgi_head = head.split(sep, 1)[0]
    size = f.seek(0, os.SEEK_END)
    # upload-pack may exit non-zero after an answer of its own (an ERR line): send that
    if sep not in head or (rc != 0 and size <= len(cgi_head) + len(sep)):
        f.close()
        return text(server, 500, "git http-backend failed")
    f.seek(len(cgi_head) + len(sep))
    status, ctype, headers = 200, None, []
    for line in cgi_head.decode("latin-1").splitlines():
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        if k.lower() == "status":
            status = int(v.split()[0])
        elif k.lower() == "content-type":
            ctype = v
        elif k.lower() not in ("content-length", "transfer-encoding", "connection"):
            headers.append((k, v))
    resp = server.Response.from_file(f, ctype, headers)
    resp.status = status
    return resp


def answer(handler, server, method, raw_path, query, body, plain, protocol, mode, record):
    """The Response to one git request, after authentication and the v0 want check."""
    m = NEW_LAYOUT.fullmatch(raw_path) or OLD_LAYOUT.fullmatch(raw_path)
    if method not in ("GET", "POST", "HEAD"):
        return text(server, 405, "Method not allowed")
    token = git_token(handler)
    data = handler.server.hub.store.get()
    if token is None or token not in data.get("tokens", {}):
        return text(server, 401, "Authentication required",
                    [("WWW-Authenticate", 'Basic realm="Bitbucket.org HTTP"')])
    record["auth"] = True
    req = server.Request(handler.server.hub.api, "GET", raw_path, "",
                         {"Authorization": "Bearer " + token}, handler.headers.get("Host") or "")
    req.authenticate()
    try:
        _ws, _wsrec, _slug, rec = req.repo(unquote(m.group(1)), unquote(m.group(2)))
    except server.ApiError:
        return text(server, 404, "Repository not found")
    git = server.GitRepo(rec.get("git_dir"))
    if not git.dir:
        return text(server, 404, "Repository not found")
    git_path = unquote(m.group(3))
    if "git-receive-pack" in git_path or "service=git-receive-pack" in query:
        return text(server, 403, "Read-only")
    if record["git"] == "fetch" and protocol == 0 and mode == "v0":
        if plain is None:
            return text(server, 400, "Undecodable request body")
        tips = advertised_tips(git)
        for line in pkt_lines(plain):
            w = WANT.match(line)
            if w and w.group(1).decode() not in tips:
                return refusal(server, w.group(1))
    return backend(handler, server, git, git_path, query, method, body, protocol, mode)


def send_reset(handler, resp, nbytes, record):
    """The head and NBYTES of RESP's body, then a TCP reset instead of the rest."""
    hub = handler.server.hub
    handler.send_response(resp.status)
    if resp.content_type:
        handler.send_header("Content-Type", resp.content_type)
    for k, v in resp.headers:
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(resp.length))
    handler.end_headers()
    sent = 0
    try:
        for chunk in resp.chunks():
            if sent >= nbytes:
                break
            chunk = chunk[:nbytes - sent]
            handler.wfile.write(chunk)
            sent += len(chunk)
        handler.wfile.flush()
    except OSError:
        pass
    finally:
        resp.close()
    record["bytes"] = sent
    record["duration_ms"] = round((time.time() - record["time"]) * 1000, 1)
    hub.log_request_record(record)
    handler.close_connection = True
    try:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
    except OSError:
        pass


def serve(handler, method, server):
    """One git request on HANDLER (a server.Handler); SERVER is the server module, for its
    Response, Request, ApiError, GitRepo and git_env."""
    hub = handler.server.hub
    split = urlsplit(handler.path)
    raw_path, query = split.path, split.query
    record = {"time": time.time(), "server": "git", "method": method, "path": raw_path,
              "query": query, "status": None, "auth": False,
              "conn": "%s:%s" % handler.client_address[:2], "bytes": 0}
    try:
        body = read_body(handler)
    except (ConnectionError, ValueError):
        handler.close_connection = True
        return
    knobs = hub.knobs.snapshot()
    mode = knobs["git_protocol"]
    protocol = protocol_of(handler, mode)
    plain = plain_body(handler, body)
    m = NEW_LAYOUT.fullmatch(raw_path) or OLD_LAYOUT.fullmatch(raw_path)
    record["git"] = request_kind(method, unquote(m.group(3)), query, plain, protocol)
    record["protocol"] = protocol
    fault = take_fault(hub.knobs, raw_path, record["git"])
    if fault:
        record["fault"] = fault[0]
    if knobs["latency_ms"]:
        hub.stopping.wait(knobs["latency_ms"] / 1000.0)
    if fault and fault[0] == "git_hang":
        hub.log_request_record(record)
        hub.stopping.wait()
        handler.close_connection = True
        return
    try:
        resp = answer(handler, server, method, raw_path, query, body, plain, protocol, mode, record)
    except Exception:          # a bug here must not kill the connection silently
        traceback.print_exc()
        resp = text(server, 500, "fakebb internal error")
    if fault and fault[0] == "git_fail":
        resp.close()
        resp = text(server, fault[1]["status"], "Injected error")
    record["status"] = resp.status
    if fault and fault[0] == "git_reset":
        return send_reset(handler, resp, fault[1]["bytes"], record)
    if fault and fault[0] == "git_cut":
        resp.cut = True
        resp.limit = min(fault[1]["bytes"], resp.length)
    handler.send(resp, head=(method == "HEAD"), record=record)

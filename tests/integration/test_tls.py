"""
TLS: bbfs verifies the API's certificate. The fake server speaks HTTPS
(`server.py --tls-cert`) with certificates made here by the `openssl` CLI:
a throwaway CA, a server certificate it signed for 127.0.0.1 and localhost,
a self-signed one, and one the CA signed for another host name.

- `-o ca_file=CA.pem` with the CA's certificate: mounts, lists, reads;
- no ca_file (the system bundle, which does not hold the throwaway CA),
  a self-signed server certificate, or a certificate for "example.com":
  refused at mount time with one line on stderr about the certificate,
  exit status non-zero, nothing mounted, no request ever answered.

(`http://` to a host that is not loopback is refused before any
connection: test_token.py::test_insecure_api_url_is_refused.)
"""

import json
import re
import subprocess

import pytest

from conftest import (cat, ls, one_clear_line, run_bbfs_expect_failure, write_token_file)

CERT_WORDS = re.compile(r"certificate|SSL|TLS|issuer|verif", re.IGNORECASE)


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{r.stderr}")


def ec_key(name, cwd):
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-out", name, cwd=cwd)


def signed_cert(d, name, san, ca="ca"):
    """NAME.pem/NAME.key: a server certificate for SAN, signed by CA (ca.pem, ca.key)."""
    ec_key(f"{name}.key", d)
    openssl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={san.split(',')[0].split(':', 1)[1]}", cwd=d)
    (d / f"{name}.ext").write_text(
        f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
            "-out", f"{name}.pem", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """{ca, good, self_signed, wrong_host}: paths of PEM files (certificate; key beside it)."""
    d = tmp_path_factory.mktemp("pki")
    ec_key("ca.key", d)
    openssl("req", "-x509", "-new", "-key", "ca.key", "-out", "ca.pem", "-days", "2", "-sha256",
            "-subj", "/CN=bbfs throwaway test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    signed_cert(d, "good", "IP:127.0.0.1,DNS:localhost")
    signed_cert(d, "wrong_host", "DNS:example.com")
    ec_key("self_signed.key", d)
    openssl("req", "-x509", "-new", "-key", "self_signed.key", "-out", "self_signed.pem",
            "-days", "2", "-sha256", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", cwd=d)
    return {n: d / f"{n}.pem" for n in ("ca", "good", "self_signed", "wrong_host")}


def tls_server(fakebb_factory, demo, cert):
    key = cert.with_suffix(".key")
    s = fakebb_factory(demo, name="tls", extra_args=["--tls-cert", cert, "--tls-key", key])
    assert s.url.startswith("https://127.0.0.1:"), s.url
    return s


def test_https_with_ca_file_mounts_lists_and_reads(fakebb_factory, mount_factory, demo, pki):
    server = tls_server(fakebb_factory, demo, pki["good"])
    m = mount_factory(server, options=[f"ca_file={pki['ca']}"])
    names = ls(m.ws)
    assert {"api", "web", "tools", "docs"} <= set(names), names
    assert json.loads(cat(m.ws / "api" / "repository.json"))["slug"] == "api"
    tip = demo.branches("api")["main"]
    assert cat(m.ws / "api" / "commits" / tip / "tree" / "README.md") == \
        demo.git("api", "show", f"{tip}:README.md").encode()
    # the pages' `next` links are https:// too, and were followed
    reqs = server.log.entries()
    assert reqs and all(e["status"] in (200, 302) for e in reqs), reqs
    assert m.unmount() == []


def refuse(server, tmp_path, options):
    tf = write_token_file(tmp_path / "token", "demo-token")
    rc, err, elapsed = run_bbfs_expect_failure(
        "acme/PLAT", tmp_path / "mnt",
        [f"api_url={server.url}", f"token_file={tf}", "timeout=5",
         f"cache_dir={tmp_path / 'cache'}", *options], timeout=30)
    assert rc != 0
    line = one_clear_line(err)
    assert CERT_WORDS.search(line), f"the line does not name the certificate problem: {line}"
    assert "demo-token" not in err
    assert elapsed < 5 + 3, f"refusing took {elapsed:.1f}s (retried a certificate error?)"
    # the handshake failed: no HTTP request ever reached the server
    assert server.log.entries() == [], server.log.entries()
    return line


def test_unknown_ca_without_ca_file_is_refused(fakebb_factory, demo, pki, tmp_path):
    """The system bundle does not know the throwaway CA."""
    refuse(tls_server(fakebb_factory, demo, pki["good"]), tmp_path, [])


def test_self_signed_certificate_is_refused(fakebb_factory, demo, pki, tmp_path):
    refuse(tls_server(fakebb_factory, demo, pki["self_signed"]), tmp_path,
           [f"ca_file={pki['ca']}"])


def test_self_signed_certificate_is_refused_without_ca_file(fakebb_factory, demo, pki, tmp_path):
    refuse(tls_server(fakebb_factory, demo, pki["self_signed"]), tmp_path, [])


def test_certificate_for_another_host_is_refused(fakebb_factory, demo, pki, tmp_path):
    """Signed by the trusted CA, but for example.com, not 127.0.0.1."""
    refuse(tls_server(fakebb_factory, demo, pki["wrong_host"]), tmp_path,
           [f"ca_file={pki['ca']}"])


def test_missing_ca_file_is_refused(fakebb_factory, demo, pki, tmp_path):
    """A ca_file that does not exist is an error, never a silent fallback to no verification."""
    server = tls_server(fakebb_factory, demo, pki["good"])
    tf = write_token_file(tmp_path / "token", "demo-token")
    rc, err, _ = run_bbfs_expect_failure(
        "acme/PLAT", tmp_path / "mnt",
        [f"api_url={server.url}", f"token_file={tf}", "timeout=5",
         f"cache_dir={tmp_path / 'cache'}", f"ca_file={tmp_path / 'no-such-ca.pem'}"], timeout=30)
    assert rc != 0
    one_clear_line(err)
    assert server.log.entries() == []

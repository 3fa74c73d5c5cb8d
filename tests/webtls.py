"""Helpers for the web config tests: certificates made by ``openssl``, ``curl`` as the client, bcrypt hashes.

Everything is made in the test's own temporary directory; nothing talks to anything but 127.0.0.1 and the
test's own namespaces.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bcrypt


def bcrypt_hash(password: str, cost: int = 4) -> str:
    """A bcrypt hash in htpasswd's ``$2y$`` spelling (cost 4: the tests do not pay for strength)."""
    return "$2y$" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()[4:]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60)


@dataclass(frozen=True)
class Leaf:
    """A certificate and its key."""

    cert: Path
    key: Path


def make_ca(directory: Path, name: str) -> Leaf:
    """A self-signed EC P-256 CA ``CN=name``."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return Leaf(directory / f"{name}.crt", directory / f"{name}.key")


def make_leaf(
    directory: Path, ca: Leaf, name: str, *, sans: Sequence[str] = ("IP:127.0.0.1",), client: bool = False
) -> Leaf:
    """A certificate ``CN=name`` signed by ``ca`` for a server (default) or a client, with these SANs."""
    ext = directory / f"{name}.ext"
    usage = "clientAuth" if client else "serverAuth"
    ext.write_text(
        f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"
        f"subjectAltName={','.join(sans)}\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
        "-days", "2", "-out", f"{name}.crt", "-extfile", ext.name, cwd=directory,
    )  # fmt: skip
    return Leaf(directory / f"{name}.crt", directory / f"{name}.key")


@dataclass(frozen=True)
class PKI:
    """A CA with a server and a client certificate, and a rogue CA's client certificate."""

    ca: Leaf
    server: Leaf
    client: Leaf
    rogue_client: Leaf


def make_pki(directory: Path, *, server_sans: Sequence[str] = ("IP:127.0.0.1", "DNS:localhost")) -> PKI:
    """Everything a TLS and mTLS test needs, in ``directory``."""
    ca = make_ca(directory, "test-ca")
    rogue = make_ca(directory, "rogue-ca")
    return PKI(
        ca=ca,
        server=make_leaf(directory, ca, "server", sans=server_sans),
        client=make_leaf(directory, ca, "prometheus", sans=("DNS:prometheus.test",), client=True),
        rogue_client=make_leaf(directory, rogue, "intruder", sans=("DNS:prometheus.test",), client=True),
    )


@dataclass(frozen=True)
class CurlResult:
    """What curl got: ``rc`` (0 when a response came), the status, the headers (lower-case names), the body."""

    rc: int
    status: int
    headers: dict[str, str]
    body: str
    stderr: str


def curl(
    url: str,
    *,
    cacert: Path | None = None,
    cert: Leaf | None = None,
    user: str | None = None,
    method: str | None = None,
    head: bool = False,
    extra: Sequence[str] = (),
    prefix: Sequence[str] = (),
    timeout: float = 10.0,
) -> CurlResult:
    """Run ``curl`` (Debian's) against ``url``; ``prefix`` wraps it (``ip netns exec NS``)."""
    argv = [*prefix, "curl", "-sS", "--noproxy", "*", "--max-time", str(timeout)]
    if cacert is not None:
        argv += ["--cacert", str(cacert)]
    if cert is not None:
        argv += ["--cert", str(cert.cert), "--key", str(cert.key)]
    if user is not None:
        argv += ["-u", user]
    if method is not None:
        argv += ["-X", method]
    argv += ["-I"] if head else ["-D", "-", "-o", "/dev/stdout"]
    argv += [*extra, url]
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout + 10)
    if proc.returncode != 0:
        return CurlResult(proc.returncode, 0, {}, "", proc.stderr)
    head_text, _, body = proc.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head_text.split("\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return CurlResult(0, status, headers, body, proc.stderr)


def served_certificate_cn(host: str, port: int, cafile: Path) -> str:
    """The CN of the certificate the server presents on a new connection (verified against ``cafile``)."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False
    with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        peer = tls.getpeercert()
    subject = dict(item[0] for item in peer["subject"])
    return str(subject["commonName"])

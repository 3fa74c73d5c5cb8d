"""Certificate posture (issue 14 item 3): what the TLS probe reads in the chain a server sent, and its verification.

Loopback TLS servers (Python's ``ssl`` server side, certificates made here with ``cryptography`` or ``openssl``):
expired, not yet valid, self-signed, wrong name, client-auth-only and no EKU, a two-certificate chain under a test
CA given as ``tls_ca_file`` or not, malformed extensions and a negative serial; then the real Samba DC's LDAPS
with and without its CA file.  The probe always observes (LISTENING/``protocol-reply``); verification is a
separate 1/0.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from exporter.adapters.openssl import verify_chain
from exporter.cli.blocks import protocol_block
from exporter.config import load_config
from exporter.detail_metrics import detail_families
from exporter.engine import Engine
from exporter.errors import ConfigError, DecodeError
from exporter.model import ProbeOptions, ProbeParams, TlsDetails
from exporter.plan import plan
from exporter.probes import port_spec
from exporter.probes.tls import CertificatePolicy, describe_chain
from exporter.resolve import Resolved, Resolver
from exporter.result import ProbeResult
from exporter.states import PortState, Reason
from exporter.wire import x509 as wire_x509
from exporter.wire.x509 import CN_FALLBACK, check_certificates
from tests import testbed
from tests.encoders import encode_search_response
from tests.helpers import FUZZ, mutated

HOST = "tls.portqry.test"  # never resolved: the probes get 127.0.0.1 as their address
NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
LOOPBACK = Resolved("127.0.0.1", socket.AF_INET)

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Issued:
    """A certificate and its key."""

    cert: x509.Certificate
    key: Key

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def issue(
    cn: str,
    *,
    issuer: Issued | None = None,
    not_before: dt.datetime = NOW - DAY,
    not_after: dt.datetime = NOW + 30 * DAY,
    dns: Sequence[str] = (HOST,),
    ips: Sequence[str] = (),
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
    ca: bool = False,
    key: Key | None = None,
    raw_extensions: Sequence[x509.UnrecognizedExtension] = (),
) -> Issued:
    """A certificate for ``cn`` signed by ``issuer`` (self-signed without); ``eku=None``: no EKU extension."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    for ext in raw_extensions:
        builder = builder.add_extension(ext, critical=False)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def write_pem(path: Path, *certs: Issued) -> Path:
    path.write_bytes(b"".join(c.pem for c in certs))
    return path


@asynccontextmanager
async def tls_server(tmp_path: Path, leaf: Issued, *chain: Issued) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1 sending ``leaf`` and ``chain``; yields its port."""
    certfile = write_pem(tmp_path / "server-chain.pem", leaf, *chain)
    keyfile = tmp_path / "server-key.pem"
    keyfile.write_bytes(
        leaf.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    async with serve_tls(context) as port:
        yield port


@asynccontextmanager
async def serve_tls(context: ssl.SSLContext, reply: bytes = b"") -> AsyncIterator[int]:
    """Serve ``context`` on 127.0.0.1: read one request, answer ``reply`` (if any), wait for the close."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with suppress(ConnectionError, OSError, ssl.SSLError, TimeoutError):
            if reply:
                await asyncio.wait_for(reader.read(65536), 5)
                writer.write(reply)
                await writer.drain()
            await asyncio.wait_for(reader.read(65536), 5)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await server.wait_closed()


async def probe_tls(port: int, *, ca_file: str = "", host: str = HOST, binding: str = "tls") -> ProbeResult:
    options = ProbeOptions(timeout_seconds=2.0, tcp_tries=1, params=ProbeParams(tls_ca_file=ca_file))
    resolved = LOOPBACK if host != "127.0.0.1" else None
    [result] = await Engine().probe_target(
        "web", host, [port_spec("tcp", port, binding=binding)], options, resolved=resolved
    )
    return result


def tls_of(result: ProbeResult) -> TlsDetails:
    assert (result.state, result.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), result.error
    tls = result.details["tls"]
    assert isinstance(tls, TlsDetails) and tls.checks is not None, result.error
    return tls


def samples(result: ProbeResult) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The detail families of one result: name -> [(labels, value)]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in detail_families([result]):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


# ------------------------------------------------------------------------------------------- loopback peers


async def test_expired_certificate_is_observed_and_not_verified(tmp_path: Path) -> None:
    leaf = issue(HOST, not_before=NOW - 40 * DAY, not_after=NOW - 2 * DAY)
    async with tls_server(tmp_path, leaf) as port:
        result = await probe_tls(port, ca_file=str(write_pem(tmp_path / "ca.pem", leaf)))
    tls = tls_of(result)
    assert tls.checks is not None and -2.1 < tls.checks.days_left < -1.9
    assert tls.verified is False and "expired" in tls.verify_error
    got = samples(result)
    [(labels, not_after)] = got["portqry_tls_cert_not_after_timestamp_seconds"]
    assert labels["subject"] == f"CN={HOST}"
    assert not_after == int(leaf.cert.not_valid_after_utc.timestamp()) < NOW.timestamp()
    [(_, not_before)] = got["portqry_tls_cert_not_before_timestamp_seconds"]
    assert not_before == int(leaf.cert.not_valid_before_utc.timestamp())
    assert got["portqry_tls_cert_verified"] == [({**_at(port)}, 0.0)]


async def test_not_yet_valid_certificate(tmp_path: Path) -> None:
    leaf = issue(HOST, not_before=NOW + 3 * DAY, not_after=NOW + 90 * DAY)
    async with tls_server(tmp_path, leaf) as port:
        result = await probe_tls(port, ca_file=str(write_pem(tmp_path / "ca.pem", leaf)))
    tls = tls_of(result)
    assert tls.verified is False and "not yet valid" in tls.verify_error
    assert tls.certificate is not None and tls.certificate.not_before > NOW
    [(_, not_before)] = samples(result)["portqry_tls_cert_not_before_timestamp_seconds"]
    assert not_before > NOW.timestamp() + 2 * 86400


async def test_self_signed_is_verified_only_against_itself(tmp_path: Path) -> None:
    leaf = issue(HOST)
    async with tls_server(tmp_path, leaf) as port:
        system = await probe_tls(port)
        trusted = await probe_tls(port, ca_file=str(write_pem(tmp_path / "self.pem", leaf)))
    tls = tls_of(system)
    assert tls.verified is False and "self-signed" in tls.verify_error and tls.trust_store == "system"
    assert tls.checks is not None and tls.checks.chain_depth == 1 and tls.checks.chain_as_sent
    assert tls_of(trusted).verified is True and tls_of(trusted).trust_store.endswith("self.pem")
    assert samples(system)["portqry_tls_cert_verified"] == [(_at(port), 0.0)]
    assert samples(trusted)["portqry_tls_cert_verified"] == [(_at(port), 1.0)]


async def test_two_certificate_chain_verifies_with_the_test_ca_only(tmp_path: Path) -> None:
    root = issue("PortQry Test Root", ca=True, dns=(), eku=None, not_after=NOW + 900 * DAY)
    intermediate = issue("PortQry Test Issuing CA", issuer=root, ca=True, dns=(), eku=None)
    leaf = issue(HOST, issuer=intermediate, key=rsa.generate_private_key(65537, 2048))
    ca_file = str(write_pem(tmp_path / "root.pem", root))
    async with tls_server(tmp_path, leaf, intermediate) as port:
        with_ca = await probe_tls(port, ca_file=ca_file)
        without = await probe_tls(port)
    tls = tls_of(with_ca)
    assert tls.verified is True and tls.verify_error == ""
    assert tls.checks is not None
    assert (tls.checks.chain_depth, tls.checks.key_type, tls.checks.key_size) == (2, "RSA", 2048)
    assert tls.checks.signature_algorithm == "ecdsa-with-SHA256"  # the intermediate's key signs the leaf
    bad = tls_of(without)
    assert bad.verified is False and "unable to get local issuer certificate" in bad.verify_error
    [(labels, value)] = samples(with_ca)["portqry_tls_cert_info"]
    assert value == 1.0
    assert (labels["chain_depth"], labels["key_type"], labels["key_size"]) == ("2", "RSA", "2048")
    assert samples(with_ca)["portqry_tls_cert_verified"] == [(_at(port), 1.0)]
    assert samples(without)["portqry_tls_cert_verified"] == [(_at(port), 0.0)]


async def test_wrong_name_and_the_ways_a_name_matches(tmp_path: Path) -> None:
    wrong = issue("other.portqry.test", dns=("other.portqry.test",))
    async with tls_server(tmp_path, wrong) as port:
        result = await probe_tls(port)
    checks = tls_of(result).checks
    assert checks is not None
    assert (checks.name, checks.name_match, checks.name_source) == (HOST, False, "subjectAltName")
    assert samples(result)["portqry_tls_cert_name_match"] == [(_at(port), 0.0)]
    wildcard = issue("*.portqry.test", dns=("*.portqry.test",), ips=("127.0.0.1",))
    async with tls_server(tmp_path, wildcard) as port:
        by_name = await probe_tls(port)
        by_address = await probe_tls(port, host="127.0.0.1")
    assert tls_of(by_name).checks.name_match is True  # type: ignore[union-attr]
    assert samples(by_name)["portqry_tls_cert_name_match"] == [(_at(port), 1.0)]
    literal = tls_of(by_address).checks
    assert literal is not None and (literal.name, literal.name_match) == ("127.0.0.1", True)


@pytest.mark.parametrize(
    ("presented_dns", "cn", "name", "match", "source"),
    [
        (("tls.portqry.test",), "x", "TLS.PortQry.Test.", True, "subjectAltName"),
        (("*.portqry.test",), "x", "tls.portqry.test", True, "subjectAltName"),
        (("*.portqry.test",), "x", "a.tls.portqry.test", False, "subjectAltName"),  # one label only
        (("*.portqry.test",), "x", "portqry.test", False, "subjectAltName"),
        (("*.test",), "x", "portqry.test", False, "subjectAltName"),  # not over a single label
        (("t*.portqry.test",), "x", "tls.portqry.test", False, "subjectAltName"),  # no partial wildcard
        (("tls.*.test",), "x", "tls.portqry.test", False, "subjectAltName"),  # left-most label only
        ((), "tls.portqry.test", "tls.portqry.test", True, CN_FALLBACK),
        (("other.portqry.test",), "tls.portqry.test", "tls.portqry.test", False, "subjectAltName"),  # no CN then
        (("127.0.0.1",), "127.0.0.1", "127.0.0.1", False, "subjectAltName"),  # an address needs an iPAddress
    ],
)
def test_rfc6125_name_matching(presented_dns: tuple[str, ...], cn: str, name: str, match: bool, source: str) -> None:
    cert = issue(cn, dns=presented_dns)
    checks = check_certificates([cert.der], name=name, now=NOW)
    assert (checks.name_match, checks.name_source) == (match, source)


async def test_client_auth_only_and_no_eku(tmp_path: Path) -> None:
    client_only = issue(HOST, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    async with tls_server(tmp_path, client_only) as port:
        client = await probe_tls(port)
    checks = tls_of(client).checks
    assert checks is not None
    assert (checks.eku_present, checks.extended_key_usage, checks.server_auth) == (True, ("clientAuth",), False)
    assert samples(client)["portqry_tls_cert_server_auth"] == [(_at(port), 0.0)]
    any_purpose = issue(HOST, eku=None)
    async with tls_server(tmp_path, any_purpose) as port:
        no_eku = await probe_tls(port)
    checks = tls_of(no_eku).checks
    assert checks is not None and (checks.eku_present, checks.server_auth) == (False, True)
    assert samples(no_eku)["portqry_tls_cert_server_auth"] == [(_at(port), 1.0)]
    both = check_certificates([issue(HOST, eku=(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,)).der], name="", now=NOW)
    assert both.server_auth is True and both.name_match is None


async def test_portqry_lines_and_json_carry_the_checks(tmp_path: Path) -> None:
    leaf = issue(HOST, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), not_after=NOW + 10 * DAY + dt.timedelta(hours=1))
    async with tls_server(tmp_path, leaf) as port:
        result = await probe_tls(port)
    lines = protocol_block("tls", result)
    assert "Days left: 10.0" in lines
    assert "Server authentication: no (extendedKeyUsage clientAuth)" in lines
    assert f"Host name {HOST}: named (subjectAltName)" in lines
    assert "Chain depth: 1 (as sent)" in lines
    assert "Signature algorithm: ecdsa-with-SHA256" in lines
    assert "Key: EC secp256r1 256 bits" in lines
    assert any(line.startswith("Verified: no (self-signed certificate") for line in lines), lines
    checks = result.to_json()["details"]["tls"]["checks"]
    assert (checks["server_auth"], checks["name_match"], checks["key_size"]) == (False, True, 256)
    assert result.to_json()["details"]["tls"]["verified"] is False


# ------------------------------------------------------------------------------------------- hostile peers


async def test_an_extension_only_openssl_accepts_leaves_the_rest_readable(tmp_path: Path) -> None:
    """A certificatePolicies that is not a SEQUENCE: OpenSSL serves it, ``cryptography`` refuses all extensions;
    EKU and SAN are then read with pyasn1, never an exception."""
    junk = [x509.UnrecognizedExtension(ExtensionOID.CERTIFICATE_POLICIES, b"\x04\x00")]
    leaf = issue(HOST, raw_extensions=junk)
    async with tls_server(tmp_path, leaf) as port:
        result = await probe_tls(port)
    checks = tls_of(result).checks
    assert checks is not None
    assert (checks.server_auth, checks.extended_key_usage, checks.name_match) == (True, ("serverAuth",), True)
    assert checks.error.startswith("extensions: ") and "pyasn1" in checks.error
    got = samples(result)
    assert got["portqry_tls_cert_server_auth"] == [(_at(port), 1.0)]
    assert got["portqry_tls_cert_name_match"] == [(_at(port), 1.0)]
    assert got["portqry_tls_cert_verified"] == [(_at(port), 0.0)]


async def test_negative_serial_like_samba_is_read_and_verifiable(tmp_path: Path) -> None:
    """``openssl req -set_serial -5``: RFC 5280 forbids it, Samba does it; cryptography only warns (silenced)."""
    key, cert = tmp_path / "neg.key", tmp_path / "neg.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={HOST}", "-set_serial", "-5"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    async with serve_tls(context) as port:
        result = await probe_tls(port, ca_file=str(cert))
    tls = tls_of(result)
    assert tls.certificate is not None and tls.certificate.serial_number == "-5"
    assert tls.verified is True
    assert tls.checks is not None and (tls.checks.name_match, tls.checks.name_source) == (True, CN_FALLBACK)
    assert (tls.checks.eku_present, tls.checks.server_auth) == (False, True)


async def test_a_long_chain_is_counted_and_bounded(tmp_path: Path) -> None:
    """A server sending 30 certificates: the depth is what was sent, the verification takes 10 intermediates."""
    root = issue("root", ca=True, dns=(), eku=None)
    chain = [root]
    for i in range(29):
        chain.append(issue(f"ca{i}", issuer=chain[-1], ca=True, dns=(), eku=None))
    leaf = issue(HOST, issuer=chain[-1])
    async with tls_server(tmp_path, leaf, *reversed(chain[1:])) as port:
        result = await probe_tls(port, ca_file=str(write_pem(tmp_path / "root.pem", root)))
    tls = tls_of(result)
    assert tls.checks is not None and tls.checks.chain_depth == 30
    assert tls.verified is False and "unable to get local issuer certificate" in tls.verify_error


async def test_ldaps_binding_uses_the_target_policy(tmp_path: Path) -> None:
    """The ``ldaps`` probe (LDAP's own code) checks the certificate against the target's name and CA file."""
    root = issue("PortQry Test Root", ca=True, dns=(), eku=None)
    leaf = issue("dc1.portqry.test", issuer=root, dns=("dc1.portqry.test",))
    certfile = write_pem(tmp_path / "chain.pem", leaf)
    keyfile = tmp_path / "key.pem"
    keyfile.write_bytes(
        leaf.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    reply = encode_search_response(1, [("", [("dnsHostName", [b"dc1.portqry.test"])])])
    ca_file = str(write_pem(tmp_path / "root.pem", root))
    async with serve_tls(context, reply) as port:
        good = await probe_tls(port, ca_file=ca_file, host="dc1.portqry.test", binding="ldaps")
        wrong = await probe_tls(port, host="dc2.portqry.test", binding="ldaps")
    tls = tls_of(good)
    assert "ldap" in good.details
    assert tls.verified is True and tls.checks is not None and tls.checks.name_match is True
    other = tls_of(wrong)
    assert other.verified is False and other.checks is not None and other.checks.name_match is False


# ------------------------------------------------------------------------------------------- configuration


def test_tls_ca_file_in_defaults_and_per_target(tmp_path: Path) -> None:
    ca = write_pem(tmp_path / "ca.pem", issue("ca", ca=True, dns=(), eku=None))
    other = write_pem(tmp_path / "other.pem", issue("other", ca=True, dns=(), eku=None))
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f"""
[defaults]
tls_ca_file = "{ca}"
[[targets]]
name = "a"
host = "127.0.0.1"
ports = ["tcp/636"]
[[targets]]
name = "b"
host = "127.0.0.1"
ports = ["tcp/636"]
tls_ca_file = "{other}"
"""
    )
    a, b = plan(load_config(cfg))
    assert (a.options.params.tls_ca_file, b.options.params.tls_ca_file) == (str(ca), str(other))


@pytest.mark.parametrize(("content", "message"), [(None, "file not found"), (b"not a certificate\n", "no PEM")])
def test_tls_ca_file_must_hold_a_certificate(tmp_path: Path, content: bytes | None, message: str) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_bytes(content)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[defaults]\ntls_ca_file = "{ca}"\n')
    with pytest.raises(ConfigError, match=message) as exc:
        load_config(cfg)
    assert "tls_ca_file" in str(exc.value)


# ------------------------------------------------------------------------------------------- the Samba DC


async def test_samba_ldaps_certificate(dc: testbed.SambaDC) -> None:
    """Samba's LDAPS: a certificate from its own CA (private/tls/ca.pem), no SAN, RSA 4096, a random serial that
    may be negative (RFC 5280 forbids it; OpenSSL accepts it, cryptography's Web PKI verifier would not)."""
    ca_file = dc.target_dir / "private" / "tls" / "ca.pem"
    assert ca_file.is_file(), "Samba writes its CA to private/tls when it starts"
    eng = Engine(udp_pacing_seconds=0.0, resolver=Resolver([dc.address], timeout=3.0))
    specs = [port_spec("tcp", 636), port_spec("tcp", 3269)]
    plain = await eng.probe_target("dc1", dc.fqdn, specs, ProbeOptions(timeout_seconds=2.0))
    with_ca = await eng.probe_target(
        "dc1", dc.fqdn, specs, ProbeOptions(timeout_seconds=2.0, params=ProbeParams(tls_ca_file=str(ca_file)))
    )
    with warnings.catch_warnings():  # Samba's random serial may be negative: cryptography warns (RFC 5280)
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        issuer = x509.load_pem_x509_certificate(ca_file.read_bytes())
    for result in plain:
        tls = tls_of(result)
        assert tls.verified is False and tls.trust_store == "system", tls.verify_error
        assert tls.checks is not None
        assert (tls.checks.key_type, tls.checks.key_size) == ("RSA", 4096)
        assert tls.checks.server_auth is True and tls.checks.extended_key_usage == ("serverAuth",)
        assert (tls.checks.name_match, tls.checks.name_source) == (True, CN_FALLBACK)  # CN=DC1.pqtest.test
        assert tls.checks.chain_depth == 1 and 600 < tls.checks.days_left < 731  # Samba: valid about 2 years
        assert tls.certificate is not None and tls.certificate.not_before <= dt.datetime.now(dt.UTC)
        assert tls.certificate.not_before >= issuer.not_valid_before_utc
        assert samples(result)["portqry_tls_cert_verified"][0][1] == 0.0
    for result in with_ca:
        tls = tls_of(result)
        assert tls.verified is True, tls.verify_error
        assert samples(result)["portqry_tls_cert_verified"][0][1] == 1.0
        [(labels, _)] = samples(result)["portqry_tls_cert_info"]
        assert (labels["key_size"], labels["signature_algorithm"]) == ("4096", "sha256WithRSAEncryption")


def _at(port: int) -> dict[str, str]:
    return {"target": "web", "address": "127.0.0.1", "port": str(port), "domain": "", "site": ""}


def test_unreadable_san_or_eku_is_unfit() -> None:
    """A SAN that is not GeneralNames and an EKU that is not a SEQUENCE (OpenSSL will not even serve these)."""
    junk = [
        x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x82\x05"),
        x509.UnrecognizedExtension(ExtensionOID.EXTENDED_KEY_USAGE, b"\x04\x00"),
    ]
    checks = check_certificates([issue(HOST, dns=(), eku=None, raw_extensions=junk).der], name=HOST, now=NOW)
    assert (checks.server_auth, checks.name_match, checks.name_source) == (False, False, "subjectAltName unreadable")
    assert checks.eku_present and "extendedKeyUsage unreadable" in checks.error
    policies = x509.UnrecognizedExtension(ExtensionOID.CERTIFICATE_POLICIES, b"\x04\x00")
    quirky = issue(HOST, ips=("127.0.0.1",), raw_extensions=[policies])
    by_address = check_certificates([quirky.der], name="127.0.0.1", now=NOW)  # read through pyasn1
    assert by_address.names == (HOST, "127.0.0.1") and by_address.name_match is True


FUZZ_LEAF = issue(HOST, ips=("127.0.0.1",), eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH))


@FUZZ
@given(st.data())
def test_mutated_certificates_never_raise(data: st.DataObject) -> None:
    """Mutated DER: the checks raise only DecodeError, the verification and describe_chain never raise."""
    der = mutated(data, FUZZ_LEAF.der, max_edits=6)
    with suppress(DecodeError):
        check_certificates([der], name=HOST, now=NOW)
    assert verify_chain([der, der]).verified is False  # self-signed or broken: never trusted by the system store
    details, _error = describe_chain([der], CertificatePolicy(HOST))
    assert details.verified is not None


def test_a_certificate_seen_again_is_not_decoded_again() -> None:
    """A DC presents the same certificate every round: its pyasn1 parse (about 1 ms) is kept by its bytes."""
    leaf = issue(HOST)
    wire_x509._parse_cached.cache_clear()
    first, _ = describe_chain([leaf.der], CertificatePolicy(HOST))
    again, _ = describe_chain([bytes(leaf.der)], CertificatePolicy(HOST))
    info = wire_x509._parse_cached.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    assert again == first and again.certificate is first.certificate

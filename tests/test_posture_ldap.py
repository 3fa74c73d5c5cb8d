"""LDAP transport rules (issue 14 item 2): a simple bind meant to fail, and StartTLS, on tcp/389.

Against the real Samba DCs: ``dc`` refuses plain-text simple binds (strongerAuthRequired), ``dc2`` runs with
``ldap server require strong auth = no`` and answers invalidCredentials; both offer StartTLS with Samba's
self-signed certificate.  Loopback LDAP servers on port 389 of a random 127/8 address (binding 389 needs
root: outside CI the test skips without it) record every LDAPMessage they get, answer StartTLS with
protocolError, or misbehave: garbage after the bind, a StartTLS success followed by garbage or by silence.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import random
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st
from impacket.ldap import ldapasn1
from pyasn1.codec.ber import decoder as ber_decoder

from exporter import probes
from exporter.cli.blocks import protocol_block
from exporter.config import load_config
from exporter.detail_metrics import detail_families
from exporter.engine import Engine
from exporter.errors import DecodeError
from exporter.model import LdapBindCheck, ProbeOptions, ProbeParams, StartTlsCheck, TlsDetails
from exporter.plan import plan
from exporter.probes import ldap as ldap_probe
from exporter.probes import port_spec
from exporter.resolve import Resolved
from exporter.result import ProbeResult
from exporter.states import PortState, Reason
from exporter.wire.ldap import encode_message, split_messages
from exporter.wire.ldap_bind import (
    OP_BIND_RESPONSE,
    OP_EXTENDED_RESPONSE,
    STARTTLS_OID,
    decode_response,
    encode_simple_bind,
    encode_start_tls,
)
from exporter.wire.x509 import CN_FALLBACK
from tests import testbed
from tests.encoders import encode_search_response
from tests.helpers import FUZZ, mutated
from tests.testbed.preflight import is_ci

#: Short budget: one TCP try of 0.5 s, so a probe has 1 s for the rootDSE and both checks.
OPTIONS = ProbeOptions(timeout_seconds=0.5, tcp_tries=1, params=ProbeParams(snmp_community="pq-configured-secret"))
MADE_UP_DN = re.compile(r"cn=portqry-posture-check-[0-9a-f]{16},dc=invalid")
GARBAGE = b"\x17\x03\x03\x00\x05hello, this is not LDAP" * 3


def bind_response(message_id: int, code: int, diagnostic: str = "") -> bytes:
    response = ldapasn1.BindResponse()
    response["resultCode"] = code
    response["matchedDN"] = ""
    response["diagnosticMessage"] = diagnostic
    return encode_message(message_id, "bindResponse", response)


def extended_response(message_id: int, code: int, diagnostic: str = "", name: str | None = None) -> bytes:
    response = ldapasn1.ExtendedResponse()
    response["resultCode"] = code
    response["matchedDN"] = ""
    response["diagnosticMessage"] = diagnostic
    if name is not None:
        response["responseName"] = name
    return encode_message(message_id, "extendedResp", response)


def decoded(message: bytes) -> ldapasn1.LDAPMessage:
    value, rest = ber_decoder.decode(message, asn1Spec=ldapasn1.LDAPMessage())
    assert rest == b""
    return value


# ------------------------------------------------------------------------------------------- the codec


def test_the_bind_request_is_a_simple_ldapv3_bind() -> None:
    message = decoded(encode_simple_bind(7, "cn=x,dc=invalid", b"0123abcd"))
    assert int(message["messageID"]) == 7
    op = message["protocolOp"]
    assert op.getName() == "bindRequest"
    bind = op["bindRequest"]
    assert int(bind["version"]) == 3 and str(bind["name"]) == "cn=x,dc=invalid"
    assert bind["authentication"].getName() == "simple"
    assert bytes(bind["authentication"]["simple"]) == b"0123abcd"


def test_the_starttls_request_names_the_rfc_4511_oid() -> None:
    wire = encode_start_tls(9)
    op = decoded(wire)["protocolOp"]
    assert op.getName() == "extendedReq" and str(op["extendedReq"]["requestName"]) == STARTTLS_OID
    assert not op["extendedReq"]["requestValue"].hasValue()
    assert wire == bytes.fromhex("301d0201097718801631") + b".3.6.1.4.1.1466.20037"


def test_responses_decode_with_their_names() -> None:
    refused = decode_response(
        bind_response(5, 8, "BindSimple: Transport encryption required."), message_id=5, operation=OP_BIND_RESPONSE
    )
    assert (refused.result_code, refused.result_name, refused.disconnected) == (8, "strongerAuthRequired", False)
    assert refused.diagnostic_message == "BindSimple: Transport encryption required."
    checked = decode_response(bind_response(5, 49), message_id=5, operation=OP_BIND_RESPONSE)
    assert (checked.result_code, checked.result_name) == (49, "invalidCredentials")
    ok = decode_response(extended_response(6, 0, name=STARTTLS_OID), message_id=6, operation=OP_EXTENDED_RESPONSE)
    assert (ok.result_code, ok.result_name) == (0, "success")
    unknown = decode_response(extended_response(6, 2), message_id=6, operation=OP_EXTENDED_RESPONSE)
    assert unknown.result_name == "protocolError"
    notice = decode_response(
        extended_response(0, 52, "going away", name="1.3.6.1.4.1.1466.20036"), message_id=5, operation=OP_BIND_RESPONSE
    )
    assert (notice.disconnected, notice.result_name, notice.message_id) == (True, "unavailable", 0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bind_response(4, 49), "message ID 4 in a reply to 5"),
        (extended_response(5, 0), "unexpected LDAP operation extendedResp, expected bindResponse"),
        (bind_response(5, 49) + b"\x00", "trailing bytes after the LDAPMessage"),
        (bind_response(5, 49)[:-1], "truncated"),
        (b"\x30\x84\x7f\xff\xff\xff", "exceeds limit"),
        (GARBAGE, "expected BER tag 0x30"),
    ],
)
def test_bad_responses_raise_decode_error(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_response(data, message_id=5, operation=OP_BIND_RESPONSE)


@FUZZ
@given(st.data())
def test_mutated_responses_raise_only_decode_error(data: st.DataObject) -> None:
    for wire, operation in (
        (bind_response(5, 8, "x" * 40), OP_BIND_RESPONSE),
        (extended_response(5, 0, name=STARTTLS_OID), OP_EXTENDED_RESPONSE),
    ):
        with suppress(DecodeError):
            response = decode_response(mutated(data, wire), message_id=5, operation=operation)
            assert response.result_name


# ------------------------------------------------------------------------------------------- loopback peers

Behaviour = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Ldap389:
    """A loopback LDAP server on ``address``:389: the rootDSE to searches, ``bind`` and ``starttls`` behaviours."""

    address: str
    messages: list[bytes] = field(default_factory=list)

    def ops(self) -> list[str]:
        return [decoded(m)["protocolOp"].getName() for m in self.messages]


async def answer(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


def answering(data: Callable[[int], bytes]) -> Behaviour:
    async def behave(message_id: int, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(writer, data(message_id))

    return behave


async def silent(_message_id: int, reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
    await asyncio.wait_for(reader.read(65536), 5)


def _loopback_address() -> str:
    rng = random.Random()
    return f"127.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}.{rng.randrange(2, 255)}"


@asynccontextmanager
async def ldap_389(*, bind: Behaviour, starttls: Behaviour) -> AsyncIterator[Ldap389]:
    """Serve on port 389 of a random 127/8 address; skips (fails under CI) without the right to bind 389."""
    peer: Ldap389 | None = None
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert peer is not None
        writers.append(writer)
        buf = b""
        with suppress(ConnectionError, OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), 5)
                if not chunk:
                    return
                messages, buf = split_messages(buf + chunk)
                for message in messages:
                    peer.messages.append(message)
                    parsed = decoded(message)
                    message_id, op = int(parsed["messageID"]), parsed["protocolOp"].getName()
                    if op == "searchRequest":
                        root = [("", [("dnsHostName", [b"dc1.portqry.test"]), ("supportedLDAPVersion", [b"3"])])]
                        await answer(writer, encode_search_response(message_id, root))
                    elif op == "bindRequest":
                        await bind(message_id, reader, writer)
                    elif op == "extendedReq":
                        await starttls(message_id, reader, writer)
                        return

    server = None
    for _ in range(5):
        address = _loopback_address()
        try:
            server = await asyncio.start_server(handle, address, 389)
        except PermissionError:
            if is_ci():
                raise
            pytest.skip("binding port 389 needs root (CAP_NET_BIND_SERVICE)")
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        break
    assert server is not None, "no free 127/8 address for port 389"
    peer = Ldap389(address)
    try:
        yield peer
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await server.wait_closed()


async def probe_389(peer: Ldap389, options: ProbeOptions = OPTIONS, host: str = "dc1.portqry.test") -> ProbeResult:
    resolved = Resolved(peer.address, socket.AF_INET)
    [result] = await Engine().probe_target("dc1", host, [port_spec("tcp", 389)], options, resolved=resolved)
    return result


def samples(result: ProbeResult) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in detail_families([result]):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def checks(result: ProbeResult) -> tuple[LdapBindCheck, StartTlsCheck]:
    assert (result.state, result.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), result.error
    assert "ldap" in result.details, "the rootDSE decides the port"
    bind, starttls = result.details["ldap_bind"], result.details["ldap_starttls"]
    assert isinstance(bind, LdapBindCheck) and isinstance(starttls, StartTlsCheck)
    return bind, starttls


def self_signed(tmp_path: Path, cn: str) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=20))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


async def test_a_server_without_starttls_answers_protocol_error(tmp_path: Path) -> None:
    async with ldap_389(
        bind=answering(lambda mid: bind_response(mid, 49, "80090308: LdapErr: DSID-0C09041C")),
        starttls=answering(lambda mid: extended_response(mid, 2, "unsupported extended operation")),
    ) as peer:
        result = await probe_389(peer)
    bind, starttls = checks(result)
    assert (bind.result_code, bind.result_name, bind.plaintext_refused, bind.error) == (
        49, "invalidCredentials", False, ""
    )  # fmt: skip
    assert (starttls.result_code, starttls.result_name, starttls.supported) == (2, "protocolError", False)
    assert "starttls" not in result.details
    at = {"target": "dc1", "address": peer.address, "port": "389", "domain": "", "site": ""}
    got = samples(result)
    assert got["portqry_ldap_plaintext_bind_refused"] == [(at, 0.0)]
    assert got["portqry_ldap_starttls_supported"] == [(at, 0.0)]
    assert "portqry_tls_cert_verified" not in got
    lines = protocol_block("ldap", result)
    assert (
        "Bind response: invalidCredentials (49): plain-text simple binds allowed: the password would be checked"
        in lines
    )
    assert "StartTLS response: protocolError (2): not offered" in lines
    assert "Diagnostic: unsupported extended operation" in lines
    json = result.to_json()["details"]
    assert json["ldap_bind"]["result_code"] == 49 and json["ldap_starttls"]["result_name"] == "protocolError"


async def test_the_bind_carries_a_made_up_dn_and_password_and_nothing_else(tmp_path: Path) -> None:
    """The recorder sees one simple bind per probe, DN under dc=invalid, a fresh random password, no SASL."""
    async with ldap_389(
        bind=answering(lambda mid: bind_response(mid, 8, "BindSimple: Transport encryption required.")),
        starttls=answering(lambda mid: extended_response(mid, 2)),
    ) as peer:
        first = await probe_389(peer)
        second = await probe_389(peer)
    assert sorted(peer.ops()) == sorted(["searchRequest", "bindRequest", "extendedReq"] * 2)
    binds = [
        decoded(m)["protocolOp"]["bindRequest"]
        for m in peer.messages
        if decoded(m)["protocolOp"].getName() == "bindRequest"
    ]
    configured = {"pq-configured-secret", "public", "Pq-Testbed-Passw0rd", ""}
    passwords = []
    for bind in binds:
        assert int(bind["version"]) == 3
        assert MADE_UP_DN.fullmatch(str(bind["name"])), str(bind["name"])
        assert bind["authentication"].getName() == "simple"  # never sasl, sicily...
        password = bytes(bind["authentication"]["simple"]).decode()
        assert re.fullmatch(r"[0-9a-f]{32}", password) and password not in configured
        passwords.append(password)
    assert len(set(passwords)) == 2 and len({str(b["name"]) for b in binds}) == 2  # new for every probe
    for result, bind in zip((first, second), binds, strict=True):
        check, _ = checks(result)
        assert check.dn == str(bind["name"]) and check.plaintext_refused is True
        assert all(p not in repr(result.to_json()) for p in passwords)  # the password is never kept
        assert samples(result)["portqry_ldap_plaintext_bind_refused"][0][1] == 1.0


async def test_posture_checks_off_sends_neither(tmp_path: Path) -> None:
    async with ldap_389(bind=answering(lambda mid: bind_response(mid, 8)), starttls=answering(lambda mid: b"")) as peer:
        result = await probe_389(peer, ProbeOptions(timeout_seconds=0.5, tcp_tries=1, posture_checks=False))
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[[targets]]\nname = "dc"\nhost = "{peer.address}"\nports = ["tcp/389"]\n')
        [target] = plan(load_config(cfg))  # not a DC profile: off by default
        [planned] = await Engine().probe_target("dc", peer.address, list(target.specs), target.options)
    assert peer.ops() == ["searchRequest", "searchRequest"]
    for r in (result, planned):
        assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY)
        assert set(r.details) == {"ldap"}
        assert "portqry_ldap_plaintext_bind_refused" not in samples(r)


async def test_only_tcp_389_runs_the_checks(tmp_path: Path) -> None:
    """The same server on another port (as 3268 would be): the rootDSE only."""
    messages: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, TimeoutError):
            data = await asyncio.wait_for(reader.read(65536), 5)
            messages.append(data)
            await answer(writer, encode_search_response(int(decoded(data)["messageID"]), [("", [("a", [b"1"])])]))
            messages.append(await asyncio.wait_for(reader.read(65536), 5))
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        [result] = await Engine().probe_target("x", "127.0.0.1", [port_spec("tcp", port, binding="ldap")], OPTIONS)
    finally:
        server.close()
        await server.wait_closed()
    assert (result.reason, set(result.details)) == (Reason.PROTOCOL_REPLY, {"ldap"})
    assert len([m for m in messages if m]) == 1


async def test_starttls_success_upgrades_and_describes_the_certificate(tmp_path: Path) -> None:
    context = self_signed(tmp_path, "DC1.portqry.test")

    async def upgrade(mid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(writer, extended_response(mid, 0, name=STARTTLS_OID))
        await writer.start_tls(context)
        await asyncio.wait_for(reader.read(65536), 5)

    async with ldap_389(bind=answering(lambda mid: bind_response(mid, 8)), starttls=upgrade) as peer:
        result = await probe_389(peer)
    _, starttls = checks(result)
    assert (starttls.supported, starttls.tls_error) == (True, "")
    tls = result.details["starttls"]
    assert isinstance(tls, TlsDetails) and tls.checks is not None and tls.certificate is not None
    assert tls.certificate.subject == "CN=DC1.portqry.test"
    assert (tls.checks.name_match, tls.checks.name_source, tls.verified) == (True, CN_FALLBACK, False)
    at = {"target": "dc1", "address": peer.address, "port": "389", "domain": "", "site": ""}
    got = samples(result)
    assert got["portqry_ldap_starttls_supported"] == [(at, 1.0)]
    assert got["portqry_tls_cert_verified"] == [(at, 0.0)]
    assert got["portqry_tls_cert_name_match"] == [(at, 1.0)]
    assert got["portqry_tls_cert_server_auth"] == [(at, 1.0)]
    [(labels, _)] = got["portqry_tls_cert_not_after_timestamp_seconds"]
    assert labels["port"] == "389" and labels["subject"] == "CN=DC1.portqry.test"
    lines = protocol_block("ldap", result)
    assert "StartTLS response: success (0): offered" in lines
    assert "Starting TLS handshake on TCP port 389..." in lines and "Subject: CN=DC1.portqry.test" in lines


async def _garbage_after_bind(mid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await answer(writer, GARBAGE)


async def _success_then_garbage(mid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await answer(writer, extended_response(mid, 0))
    await asyncio.wait_for(reader.read(65536), 5)  # the ClientHello
    await answer(writer, GARBAGE)


async def _success_with_trailing_bytes(mid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await answer(writer, extended_response(mid, 0) + GARBAGE)
    await asyncio.wait_for(reader.read(65536), 5)


async def _success_then_silence(mid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await answer(writer, extended_response(mid, 0))
    await asyncio.wait_for(reader.read(65536), 5)  # the ClientHello
    await asyncio.wait_for(reader.read(65536), 5)  # nothing, until the probe gives up


async def _notice_of_disconnection(mid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await answer(writer, extended_response(0, 52, "shutting down", name="1.3.6.1.4.1.1466.20036"))


@pytest.mark.parametrize(
    ("bind", "starttls", "bind_error", "tls_error"),
    [
        (_garbage_after_bind, _success_then_garbage, r"^bind reply: expected BER tag 0x30", r"^TLS handshake: "),
        (silent, _success_then_silence, r"^bind: no reply within \d\.\d s$", r"^TLS handshake: no reply within"),
        (
            _notice_of_disconnection,
            _success_with_trailing_bytes,
            r"^bind: the server disconnected \(notice of disconnection, unavailable: shutting down\)$",
            rf"^{len(GARBAGE)} bytes after the StartTLS response, before the TLS handshake$",
        ),
    ],
    ids=["garbage", "silence", "notice-and-trailing-bytes"],
)
async def test_hostile_peers_give_error_texts_and_leave_the_port_alone(
    bind: Behaviour, starttls: Behaviour, bind_error: str, tls_error: str
) -> None:
    loop = asyncio.get_running_loop()
    async with ldap_389(bind=bind, starttls=starttls) as peer:
        started = loop.time()
        result = await probe_389(peer)
        took = loop.time() - started
    assert took < OPTIONS.protocol_budget + 0.7, took
    bind_check, starttls_check = checks(result)
    assert bind_check.result_code is None and re.search(bind_error, bind_check.error), bind_check.error
    assert starttls_check.result_code == 0 and re.search(tls_error, starttls_check.tls_error), starttls_check
    assert starttls_check.supported is False  # a success and no TLS after it: no StartTLS for a client
    assert result.error == "" and "starttls" not in result.details
    got = samples(result)
    assert "portqry_ldap_plaintext_bind_refused" not in got  # could not finish: absent
    assert got["portqry_ldap_starttls_supported"][0][1] == 0.0
    lines = protocol_block("ldap", result)
    assert f"Bind check: could not finish ({bind_check.error})" in lines
    assert f"TLS after StartTLS: {starttls_check.tls_error}" in lines


async def test_silence_to_starttls_is_an_unfinished_check() -> None:
    async with ldap_389(bind=answering(lambda mid: bind_response(mid, 8)), starttls=silent) as peer:
        result = await probe_389(peer)
    _, starttls = checks(result)
    assert starttls.result_code is None and re.fullmatch(r"StartTLS: no reply within \d\.\d s", starttls.error)
    assert "portqry_ldap_starttls_supported" not in samples(result)
    assert f"StartTLS check: could not finish ({starttls.error})" in protocol_block("ldap", result)


def test_ldaps_is_the_ldap_probe_itself() -> None:
    """The ldaps certificate policy comes from the LDAP probe's own describe call, not from a wrapper."""
    assert probes.PROBES["ldaps"] is ldap_probe.probe
    assert not hasattr(probes.tls, "with_certificate_policy")


# ------------------------------------------------------------------------------------------- the Samba DCs


async def _probe_dc(peer: testbed.SambaDC | testbed.JoinedDC) -> list[ProbeResult]:
    options = ProbeOptions(timeout_seconds=2.0)
    resolved = Resolved(peer.address, socket.AF_INET)
    specs = [port_spec("tcp", 389), port_spec("tcp", 636)]
    return await Engine().probe_target(peer.fqdn, peer.fqdn, specs, options, resolved=resolved)


async def _assert_samba(peer: testbed.SambaDC | testbed.JoinedDC, *, refused: bool) -> None:
    ldap, ldaps = await _probe_dc(peer)
    bind, starttls = checks(ldap)
    assert MADE_UP_DN.fullmatch(bind.dn)
    if refused:
        assert (bind.result_code, bind.result_name) == (8, "strongerAuthRequired"), bind
        assert "Transport encryption required" in bind.diagnostic_message
    else:
        assert (bind.result_code, bind.result_name) == (49, "invalidCredentials"), bind
    assert (starttls.result_code, starttls.supported, starttls.tls_error) == (0, True, ""), starttls
    tls = ldap.details["starttls"]
    assert isinstance(tls, TlsDetails) and tls.checks is not None and tls.certificate is not None
    assert tls.verified is False and tls.trust_store == "system"  # Samba's own CA is not trusted here
    assert (tls.checks.name_match, tls.checks.name_source) == (True, CN_FALLBACK)
    assert tls.checks.server_auth is True and tls.checks.key_type == "RSA"
    assert "ldap_bind" not in ldaps.details and "starttls" not in ldaps.details
    over_636 = ldaps.details["tls"]
    assert isinstance(over_636, TlsDetails) and over_636.certificate == tls.certificate  # one certificate, two ports
    got = samples(ldap)
    at = {"target": peer.fqdn, "address": peer.address, "port": "389", "domain": "", "site": ""}
    assert got["portqry_ldap_plaintext_bind_refused"] == [(at, 1.0 if refused else 0.0)]
    assert got["portqry_ldap_starttls_supported"] == [(at, 1.0)]
    assert got["portqry_tls_cert_verified"] == [(at, 0.0)]
    assert got["portqry_tls_cert_name_match"] == [(at, 1.0)]
    ports = {labels["port"] for labels, _ in samples(ldaps)["portqry_tls_cert_verified"]}
    assert ports == {"636"}  # the port label tells the StartTLS certificate from the LDAPS one
    lines = protocol_block("ldap", ldap)
    verdict = "refused" if refused else "allowed: the password would be checked"
    assert f"Bind response: {bind.result_name} ({bind.result_code}): plain-text simple binds {verdict}" in lines
    assert "StartTLS response: success (0): offered" in lines
    assert "Starting TLS handshake on TCP port 389..." in lines
    assert f"Host name {peer.fqdn}: named ({CN_FALLBACK})" in lines


async def test_samba_dc_refuses_plain_text_binds_and_offers_starttls(dc: testbed.SambaDC) -> None:
    await _assert_samba(dc, refused=True)


async def test_samba_dc2_checks_plain_text_binds_and_offers_starttls(dc2: testbed.JoinedDC) -> None:
    await _assert_samba(dc2, refused=False)


async def test_samba_dc_with_posture_checks_off(dc: testbed.SambaDC) -> None:
    options = ProbeOptions(timeout_seconds=2.0, posture_checks=False)
    resolved = Resolved(dc.address, socket.AF_INET)
    [result] = await Engine().probe_target(dc.fqdn, dc.fqdn, [port_spec("tcp", 389)], options, resolved=resolved)
    assert (result.state, result.reason, set(result.details)) == (PortState.LISTENING, Reason.PROTOCOL_REPLY, {"ldap"})

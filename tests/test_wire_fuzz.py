"""Hypothesis on the decoders that had no fuzz test of their own: random bytes and mutated valid encodings.

Which decoder is fuzzed where (random bytes / mutations of a valid encoding):

=========================================  ======================================================
decoder                                     fuzzed in
=========================================  ======================================================
ldap.decode_search_response, rootdse        test_wire_ldap (random, random bodies, mutated), test_wire_samba
netlogon.decode_netlogon                    test_wire_ldap (random, random names, mutated)
kerberos.decode_kdc_reply / krb_error       test_wire_kerberos (random, random bodies, mutated)
snmp.decode_response                        test_wire_snmp (random, mutated)
epm.decode_ept_lookup_response, tower;      test_wire_epm (random, mutated), test_wire_samba
dcerpc.decode_co_pdus
clrpc.decode_pdu                            test_wire_clrpc (random, truncations)
nbstat.decode_node_status_response          test_wire_nbstat (random), here (mutated)
mssqlr.decode_svr_resp, decode_dac_response test_wire_mssqlr (random), here (mutated)
reader.Reader                               test_wire_reader (random reads)
ber.read_tlv_header, tlv_length, check_ber  here (random)
ber.parse_generalized_time                  here (random text)
ldap.message_length, split_messages         here (random)
kerberos.tcp_record_length                  here (random)
dcerpc.frag_length, co_response_stub        here (random, mutated)
clrpc.Reassembly, join_fragments            here (mutated fragments)
x509.parse_certificate                      here (random, mutated)
probes.dns.summarise (dnspython)            here (random, mutated)
=========================================  ======================================================

Only our :class:`~exporter.errors.DecodeError` family may escape (``ProtocolError`` where the decoder's contract
says a refusal), and every call ends within :data:`BOUND` seconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Callable

import dns.message
import dns.rrset
from cryptography import x509 as crypto_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from exporter.errors import DecodeError
from exporter.probes.dns import build_query, summarise
from exporter.wire import ber, clrpc, dcerpc, kerberos, ldap, mssqlr, nbstat, x509
from exporter.wire.mssqlr import SqlInstance
from exporter.wire.nbstat import NetbiosName
from tests.encoders import encode_cl_response, encode_ept_lookup_response, encode_svr_resp
from tests.helpers import FUZZ, mutated
from tests.test_wire_nbstat import build_response

#: Seconds one decode may take at most (a bound against super-linear decoding, not a benchmark).
BOUND = 1.0


def _only_decode_error(decode: Callable[[], object]) -> None:
    started = time.monotonic()
    with contextlib.suppress(DecodeError):
        decode()
    took = time.monotonic() - started
    assert took < BOUND, f"decode took {took:.2f} s"


def _certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = crypto_x509.Name([crypto_x509.NameAttribute(NameOID.COMMON_NAME, "dc1.fuzz.test")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (
        crypto_x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


CERT = _certificate()
QUERY = build_query("dc1.fuzz.test", "A", 0x1234)
DNS_REPLY = dns.message.make_response(QUERY)
DNS_REPLY.answer.append(dns.rrset.from_text("dc1.fuzz.test.", 60, "IN", "A", "198.18.0.2"))
DNS_WIRE = DNS_REPLY.to_wire()
SVR_RESP = encode_svr_resp(
    [SqlInstance((("ServerName", "DB1"), ("InstanceName", "MSSQLSERVER"), ("Version", "16.0"), ("tcp", "1433")))]
)
NBSTAT = build_response(
    0x1234, [NetbiosName("DC1", 0x00, 0x0400), NetbiosName("FUZZ", 0x1C, 0x8400)], b"\x02\x00\x00\x00\x00\x01"
)
ACT = uuid.UUID(int=0x1234)
REQUEST = clrpc.decode_pdu(clrpc.encode_ept_lookup_request(ACT, seqnum=3, max_ents=8, entry_handle=bytes(20)))
STUB = encode_ept_lookup_response(bytes(20), [(uuid.UUID(int=i), None, b"fuzz\x00") for i in range(4)], 0)
FRAGMENTS = encode_cl_response(REQUEST, STUB, fragment_size=32)
CO_PDU = (
    bytes.fromhex("05000203100000001800000001000000")[:8]
    + (24 + len(STUB)).to_bytes(2, "little")
    + bytes.fromhex("000001000000")
    + len(STUB).to_bytes(4, "little")
    + bytes(4)
    + STUB
)


@FUZZ
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=64))
def test_ber_headers_random(data: bytes, pos: int) -> None:
    _only_decode_error(lambda: ber.read_tlv_header(data, pos))
    _only_decode_error(lambda: ber.tlv_length(data, pos))
    _only_decode_error(lambda: ber.check_ber(data))


@FUZZ
@given(st.binary(max_size=2000))
def test_ber_check_random_long(data: bytes) -> None:
    _only_decode_error(lambda: ber.check_ber(data))


@FUZZ
@given(st.text(max_size=40) | st.from_regex(r"\A[0-9]{8,14}(\.[0-9]{0,7})?(Z|[+-][0-9]{2,4})?\Z"))
def test_generalized_time_random_text(text: str) -> None:
    _only_decode_error(lambda: ber.parse_generalized_time(text))


@FUZZ
@given(st.binary(max_size=600))
def test_ldap_framing_random(data: bytes) -> None:
    _only_decode_error(lambda: ldap.message_length(data))
    _only_decode_error(lambda: ldap.split_messages(data))
    _only_decode_error(lambda: kerberos.tcp_record_length(data))


@FUZZ
@given(st.binary(min_size=0, max_size=40))
def test_co_frag_length_random(data: bytes) -> None:
    _only_decode_error(lambda: dcerpc.frag_length(data))


@FUZZ
@given(st.data())
def test_co_response_stub_mutated(data: st.DataObject) -> None:
    raw = mutated(data, CO_PDU + CO_PDU, max_edits=6)
    _only_decode_error(lambda: dcerpc.co_response_stub(dcerpc.decode_co_pdus(raw)))


@FUZZ
@given(st.data())
def test_cl_reassembly_mutated_fragments(data: st.DataObject) -> None:
    order = data.draw(st.permutations(range(len(FRAGMENTS))))
    pdus = []
    for i in order:
        raw = FRAGMENTS[i]
        if data.draw(st.booleans()):
            raw = mutated(data, raw, max_edits=3)
        try:
            pdus.append(clrpc.decode_pdu(raw))
        except DecodeError:
            continue
    reassembly = clrpc.Reassembly()

    def add_all() -> None:
        for pdu in pdus:
            reassembly.add(pdu)
        reassembly.body()

    _only_decode_error(add_all)
    _only_decode_error(lambda: clrpc.join_fragments(pdus))


@FUZZ
@given(st.data())
def test_mssqlr_mutated(data: st.DataObject) -> None:
    raw = mutated(data, SVR_RESP)
    _only_decode_error(lambda: mssqlr.decode_svr_resp(raw))
    _only_decode_error(lambda: mssqlr.decode_dac_response(raw))


@FUZZ
@given(st.data())
def test_nbstat_mutated(data: st.DataObject) -> None:
    _only_decode_error(lambda: nbstat.decode_node_status_response(mutated(data, NBSTAT)))


@FUZZ
@given(st.binary(max_size=600))
def test_certificate_random(data: bytes) -> None:
    _only_decode_error(lambda: x509.parse_certificate(data))


@FUZZ
@given(st.data())
def test_certificate_mutated(data: st.DataObject) -> None:
    _only_decode_error(lambda: x509.parse_certificate(mutated(data, CERT, max_edits=6)))


@FUZZ
@given(st.binary(max_size=600))
def test_dns_reply_random(data: bytes) -> None:
    _only_decode_error(lambda: summarise(QUERY, data))


@FUZZ
@given(st.data())
def test_dns_reply_mutated(data: st.DataObject) -> None:
    _only_decode_error(lambda: summarise(QUERY, mutated(data, DNS_WIRE)))


def test_valid_samples_decode() -> None:
    """The mutation seeds are valid: a fuzz run mutates real encodings, not garbage."""
    assert x509.parse_certificate(CERT).subject
    assert [n.name for n in nbstat.decode_node_status_response(NBSTAT).names] == ["DC1", "FUZZ"]
    assert summarise(QUERY, DNS_WIRE).answers == 1
    assert mssqlr.decode_svr_resp(SVR_RESP)[0].fields[0] == ("ServerName", "DB1")
    reassembly = clrpc.Reassembly()
    assert [reassembly.add(clrpc.decode_pdu(f)) for f in FRAGMENTS][-1] and reassembly.body() == STUB
    assert dcerpc.co_response_stub(dcerpc.decode_co_pdus(CO_PDU)) == STUB

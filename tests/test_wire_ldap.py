"""LDAP/CLDAP codec (``exporter.wire.ldap``) and the Netlogon parser (``exporter.wire.netlogon``).

Golden data: the Samba 4 CLDAP ping capture and the three Windows-DC Netlogon blobs in
``../shared/captures/`` (see its README; skipped when absent), plus request bytes checked with
``tshark -V`` (TShark 4.0.17): the LDAP ping matches the 79 bytes impacket's own filter parser
produces (anchors.md section 4).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dpkt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from impacket.ldap import ldapasn1
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.ber import encoder as ber_encoder

from exporter.errors import DecodeError, ProtocolError
from exporter.wire.ber import check_ber, parse_generalized_time, read_tlv_header
from exporter.wire.ldap import (
    MAX_MESSAGE_BYTES,
    MAX_VALUES,
    SearchEntry,
    SearchResult,
    decode_search_response,
    encode_ldap_ping,
    encode_root_dse_search,
    message_length,
    split_messages,
)
from exporter.wire.netlogon import (
    DS_FLAG_NAMES,
    DS_FLAGS,
    NetlogonSamLogonResponseEx,
    decode_netlogon,
    flag_names,
)
from exporter.wire.rootdse import RootDSE, parse_root_dse
from tests.encoders import encode_netlogon, encode_search_response
from tests.helpers import mutated

CAPTURES = Path(os.environ.get("PORTQRY_CAPTURES", Path(__file__).resolve().parents[2] / "shared" / "captures"))
needs_captures = pytest.mark.skipif(not CAPTURES.is_dir(), reason=f"capture directory {CAPTURES} absent")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def udp_payloads(name: str) -> list[bytes]:
    """UDP/TCP payloads of every frame of a capture, in order (``b""`` for other frames)."""
    out = []
    with (CAPTURES / name).open("rb") as fh:
        for _ts, frame in dpkt.pcap.Reader(fh):
            l4 = dpkt.ethernet.Ethernet(frame).data.data
            out.append(bytes(l4.data) if isinstance(l4, dpkt.udp.UDP | dpkt.tcp.TCP) else b"")
    return out


def long_form(data: bytes) -> bytes:
    """Re-encode a BER tree with 4-byte long-form lengths (``84 xx xx xx xx``), as Windows DCs do."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        hdr = read_tlv_header(data, pos)
        assert hdr is not None
        first, constructed, hlen, clen = hdr
        content = data[pos + hlen : pos + hlen + clen]
        body = long_form(content) if constructed else content
        out.append(first)  # low tag numbers only, which is all LDAP uses
        out += b"\x84" + len(body).to_bytes(4, "big") + body
        pos += hlen + clen
    return bytes(out)


# --------------------------------------------------------------------------- requests

ROOT_DSE_39 = bytes.fromhex("3025020107632004000a01000a0100020100020100010100870b6f626a656374436c6173733000")
PING_79 = bytes.fromhex(
    "304d020101634804000a01000a0100020100020100010100a029a3180409446e73446f6d61696e040b6578616d706c"
    "652e636f6da30d04054e74566572040416000000300a04084e65746c6f676f6e"
)


def test_root_dse_search_golden() -> None:
    assert encode_root_dse_search(7) == ROOT_DSE_39


def test_root_dse_search_decodes_with_impacket() -> None:
    data = encode_root_dse_search(42, ["dnsHostName", "currentTime"])
    msg, rest = ber_decoder.decode(data, asn1Spec=ldapasn1.LDAPMessage())
    assert rest == b""
    req = msg["protocolOp"]["searchRequest"]
    assert int(msg["messageID"]) == 42
    assert bytes(req["baseObject"]) == b""
    assert int(req["scope"]) == 0
    assert bytes(req["filter"]["present"]) == b"objectClass"
    assert [bytes(a) for a in req["attributes"]] == [b"dnsHostName", b"currentTime"]


def test_ldap_ping_golden() -> None:
    assert encode_ldap_ping(1, "example.com") == PING_79


def test_ldap_ping_optional_terms_in_order() -> None:
    guid = uuid.UUID("47f1238c-e55e-4cfe-89e8-780937b1cd3b")
    data = encode_ldap_ping(
        9, "example.com", 0x1E, "ws1.example.com", host="WS1", user="bob", aac=0x80, domain_guid=guid
    )
    # attribute names appear in MS-ADTS 6.3.3 order, NtVer last, with 4-byte little-endian values
    names = [b"DnsDomain", b"Host", b"DnsHostName", b"User", b"AAC", b"DomainGuid", b"NtVer", b"Netlogon"]
    positions = [data.index(n) for n in names]
    assert positions == sorted(positions)
    assert b"\x04\x04\x80\x00\x00\x00" in data  # AAC
    assert b"\x04\x10" + guid.bytes_le in data
    assert data.endswith(b"\x04\x04\x1e\x00\x00\x00\x30\x0a\x04\x08Netlogon")
    assert message_length(data) == len(data)


def test_ldap_ping_without_domain() -> None:
    data = encode_ldap_ping(3, None)
    assert b"DnsDomain" not in data
    assert b"NtVer" in data


@pytest.mark.parametrize("bad", [-1, 2**31])
def test_message_id_range(bad: int) -> None:
    with pytest.raises(ValueError, match="message_id"):
        encode_root_dse_search(bad)


def test_nt_version_range() -> None:
    with pytest.raises(ValueError, match="nt_version"):
        encode_ldap_ping(1, "x", 2**32)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (encode_root_dse_search(6), ["Filter: (objectClass=*)", "scope: baseObject (0)"]),
        (
            encode_ldap_ping(5, "example.com", dns_host_name="h.example.com", host="H"),
            ["(DnsDomain=example.com)", "(Host=H)", "(NtVer=0x00000016)", "AttributeDescription: Netlogon"],
        ),
    ],
)
def test_requests_dissect_cleanly_in_tshark(tmp_path: Path, payload: bytes, expected: list[str]) -> None:
    udp = dpkt.udp.UDP(sport=50000, dport=389, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=b"\x7f\x00\x00\x01", dst=b"\x7f\x00\x00\x02", p=dpkt.ip.IP_PROTO_UDP, data=udp)
    ip.len = len(ip)
    eth = dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
    path = tmp_path / "req.pcap"
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        writer.writepkt(bytes(eth), ts=0)
    out = subprocess.run(
        ["tshark", "-r", str(path), "-V"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "Malformed" not in out
    assert "Connectionless Lightweight Directory Access Protocol" in out
    for text in expected:
        assert text in out


# --------------------------------------------------------------------------- framing


def test_message_length_incremental() -> None:
    data = encode_search_response(1, [("", [("a", [b"x" * 300])])])
    first = data[: message_length(data) or 0]
    assert message_length(b"") is None
    assert message_length(first[:1]) is None  # tag only
    assert message_length(first[:3]) is None  # inside a long-form length
    assert message_length(first[:4]) == len(first)


def test_message_length_rejects() -> None:
    with pytest.raises(DecodeError, match="expected BER tag"):
        message_length(b"\x31\x00")
    with pytest.raises(DecodeError, match="indefinite"):
        message_length(b"\x30\x80")
    with pytest.raises(DecodeError, match="exceeds limit"):
        message_length(b"\x30\x84\x7f\xff\xff\xff")
    with pytest.raises(DecodeError, match="too long"):
        message_length(b"\x30\x85\x00\x00\x00\x00\x01")
    with pytest.raises(DecodeError, match="exceeds limit"):
        message_length(b"\x30\x82\x01\x00", limit=100)


@given(
    n=st.integers(min_value=1, max_value=5),
    value=st.binary(max_size=200),
    data=st.data(),
)
def test_split_messages_any_cut(n: int, value: bytes, data: st.DataObject) -> None:
    stream = encode_search_response(5, [("", [("v", [value])])] * n)
    cut = data.draw(st.integers(min_value=0, max_value=len(stream)))
    messages, rest = split_messages(stream[:cut])
    assert b"".join(messages) + rest == stream[:cut]
    full, tail = split_messages(stream)
    assert tail == b""
    assert len(full) == n + 1
    assert full[: len(messages)] == messages


def test_check_ber_bounds_depth_and_count() -> None:
    deep = b""
    for _ in range(5000):
        deep = b"\x30" + b"\x84" + len(deep).to_bytes(4, "big") + deep
    start = time.monotonic()
    with pytest.raises(DecodeError, match="deeper"):
        check_ber(deep)
    with pytest.raises(DecodeError, match="messageID: expected BER tag"):  # the LDAP decoder does not recurse
        decode_search_response(deep, limit=len(deep))
    many = b"\x04\x00" * 30000
    wide = b"\x30\x83" + len(many).to_bytes(3, "big") + many
    with pytest.raises(DecodeError, match="more than"):
        check_ber(wide)
    assert time.monotonic() - start < 2.0
    with pytest.raises(DecodeError, match="trailing"):
        check_ber(b"\x30\x00\x30\x00")
    with pytest.raises(DecodeError, match="overruns"):
        check_ber(b"\x30\x02\x04\x05abcde")
    with pytest.raises(DecodeError, match="empty"):
        check_ber(b"")


def test_worst_case_accepted_message_is_fast() -> None:
    values = [b"v"] * (MAX_VALUES // 2)  # the most values a reply may hold, all accepted
    data = encode_search_response(1, [("", [("a", values), ("b", values)])])
    start = time.process_time()
    result = decode_search_response(data)
    assert time.process_time() - start < 0.1
    assert len(result.entries[0].attributes[0][1]) == MAX_VALUES // 2
    with pytest.raises(DecodeError, match=f"more than {MAX_VALUES} attribute values"):
        decode_search_response(encode_search_response(1, [("", [("a", values), ("b", [*values, b"w"])])]))


# --------------------------------------------------------------------------- responses


@needs_captures
def test_samba_cldap_ping_reply() -> None:
    frames = udp_payloads("cldap-netlogon-ping-win7-client-samba4-dc.pcap")
    result = decode_search_response(frames[1])
    assert result.message_id == 1
    assert result.result_code == 0
    assert result.result_name == "success"
    assert result.done
    assert len(result.entries) == 1
    entry = result.entries[0]
    assert entry.object_name == ""
    assert [name for name, _ in entry.attributes] == ["netlogon"]  # lower case from Samba
    assert result.netlogon is not None
    assert len(result.netlogon) == 108
    ping = decode_netlogon(result.netlogon)
    assert ping.opcode == 23
    assert ping.flags_raw == 0x000011BD
    assert ping.flags == {"pdc", "gc", "ldap", "ds", "kdc", "closest", "writable", "full_secret_domain_6"}
    assert ping.domain_guid == uuid.UUID("1f789774-3b05-42d7-8bb2-8cf3d97a7f6a")
    assert ping.dns_forest_name == ping.dns_domain_name == "s4.howto.abartlet.net"
    assert ping.dns_host_name == "obed.s4.howto.abartlet.net"
    assert (ping.netbios_domain_name, ping.netbios_computer_name) == ("S4-HOWTO", "OBED")
    assert ping.user_name == ""
    assert ping.dc_site_name == ping.client_site_name == "Default-First-Site-Name"
    assert ping.next_closest_site_name is None  # Samba omits it though NtVer 0x16 asked
    assert ping.dc_address is None
    assert ping.nt_version == 5
    assert (ping.lm_nt_token, ping.lm20_token) == (0xFFFF, 0xFFFF)


@needs_captures
def test_samba_cldap_request_framing() -> None:
    """The Windows 7 request uses 4-byte long-form lengths; the framer must measure it right."""
    request = udp_payloads("cldap-netlogon-ping-win7-client-samba4-dc.pcap")[0]
    assert request[:2] == b"\x30\x84"
    assert message_length(request) == len(request) == 137
    with pytest.raises(DecodeError):
        decode_search_response(request)  # a request is not a reply


@needs_captures
def test_samba_reply_with_windows_long_form_lengths() -> None:
    reply = udp_payloads("cldap-netlogon-ping-win7-client-samba4-dc.pcap")[1]
    messages, _ = split_messages(reply)
    converted = b"".join(long_form(m) for m in messages)
    assert converted[:2] == b"\x30\x84"
    assert decode_search_response(converted) == decode_search_response(reply)


@needs_captures
@pytest.mark.parametrize("cut", [1, 2, 10, 50, 136, 138, 150])
def test_samba_reply_truncated(cut: int) -> None:
    reply = udp_payloads("cldap-netlogon-ping-win7-client-samba4-dc.pcap")[1]
    with pytest.raises(DecodeError):
        decode_search_response(reply[:cut])


def test_entry_then_done_round_trip() -> None:
    data = encode_search_response(
        4, [("", [("dnsHostName", [b"dc1.example.com"]), ("namingContexts", [b"DC=a", b"DC=b"])])]
    )
    result = decode_search_response(data)
    assert result.entries == (
        SearchEntry("", (("dnsHostName", (b"dc1.example.com",)), ("namingContexts", (b"DC=a", b"DC=b")))),
    )
    assert result.entries[0].get("DNSHOSTNAME") == (b"dc1.example.com",)
    assert result.entries[0].get("nope") == ()


def test_refused_search_keeps_result_code() -> None:
    data = encode_search_response(2, [], result_code=1, diagnostic_message="000004DC: LdapErr")
    result = decode_search_response(data)
    assert (result.result_code, result.result_name) == (1, "operationsError")
    assert result.diagnostic_message == "000004DC: LdapErr"
    with pytest.raises(ProtocolError, match="operationsError"):
        parse_root_dse(result)


def test_entries_without_done() -> None:
    data = encode_search_response(2, [("", [("a", [b"1"])])])
    only_entry = split_messages(data)[0][0]
    result = decode_search_response(only_entry)
    assert not result.done
    assert result.result_code is None
    with pytest.raises(DecodeError, match="no SearchResultDone"):
        parse_root_dse(result)


def test_message_after_done_and_mixed_ids() -> None:
    done = encode_search_response(2, [])
    with pytest.raises(DecodeError, match="after the end"):
        decode_search_response(done + done)
    a = split_messages(encode_search_response(2, [("", [("a", [b"1"])])]))[0][0]
    with pytest.raises(DecodeError, match="message ID 3"):
        decode_search_response(a + encode_search_response(3, []))


def test_notice_of_disconnection() -> None:
    resp = ldapasn1.ExtendedResponse()
    resp["resultCode"] = 2
    resp["matchedDN"] = ""
    resp["diagnosticMessage"] = "bye"
    resp["responseName"] = "1.3.6.1.4.1.1466.20036"
    msg = ldapasn1.LDAPMessage()
    msg["messageID"] = 0
    msg["protocolOp"]["extendedResp"] = resp
    result = decode_search_response(bytes(ber_encoder.encode(msg)))
    assert result.disconnected
    assert (result.result_code, result.result_name, result.diagnostic_message) == (2, "protocolError", "bye")


# --------------------------------------------------------------------------- rootDSE

# Values as a Windows Server 2019 DC returns them (MS-ADTS 3.1.1.3.2; PortQry's sample output).
AD_ROOT_DSE: list[tuple[str, list[bytes]]] = [
    ("currentTime", [b"20240301101112.0Z"]),
    ("subschemaSubentry", [b"CN=Aggregate,CN=Schema,CN=Configuration,DC=example,DC=com"]),
    (
        "dsServiceName",
        [b"CN=NTDS Settings,CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=example,DC=com"],
    ),
    (
        "namingContexts",
        [
            b"DC=example,DC=com",
            b"CN=Configuration,DC=example,DC=com",
            b"CN=Schema,CN=Configuration,DC=example,DC=com",
        ],
    ),
    ("defaultNamingContext", [b"DC=example,DC=com"]),
    ("rootDomainNamingContext", [b"DC=example,DC=com"]),
    ("configurationNamingContext", [b"CN=Configuration,DC=example,DC=com"]),
    ("schemaNamingContext", [b"CN=Schema,CN=Configuration,DC=example,DC=com"]),
    ("supportedControl", [b"1.2.840.113556.1.4.319", b"1.2.840.113556.1.4.801"]),
    ("supportedLDAPVersion", [b"3", b"2"]),
    ("supportedLDAPPolicies", [b"MaxPoolThreads", b"MaxPageSize"]),
    ("highestCommittedUSN", [b"12817"]),
    ("supportedSASLMechanisms", [b"GSSAPI", b"GSS-SPNEGO", b"EXTERNAL", b"DIGEST-MD5"]),
    ("dnsHostName", [b"DC1.example.com"]),
    ("ldapServiceName", [b"example.com:dc1$@EXAMPLE.COM"]),
    (
        "serverName",
        [b"CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=example,DC=com"],
    ),
    ("supportedCapabilities", [b"1.2.840.113556.1.4.800", b"1.2.840.113556.1.4.1670"]),
    ("isSynchronized", [b"TRUE"]),
    ("isGlobalCatalogReady", [b"FALSE"]),
    ("domainFunctionality", [b"7"]),
    ("forestFunctionality", [b"7"]),
    ("domainControllerFunctionality", [b"7"]),
]


def test_root_dse_typed() -> None:
    dse = parse_root_dse(decode_search_response(encode_search_response(11, [("", AD_ROOT_DSE)])))
    assert dse.current_time == datetime(2024, 3, 1, 10, 11, 12, tzinfo=UTC)
    assert dse.subschema_subentry == "CN=Aggregate,CN=Schema,CN=Configuration,DC=example,DC=com"
    assert dse.ds_service_name is not None
    assert dse.ds_service_name.startswith("CN=NTDS Settings,CN=DC1,")
    assert len(dse.naming_contexts) == 3
    assert dse.default_naming_context == dse.root_domain_naming_context == "DC=example,DC=com"
    assert dse.configuration_naming_context == "CN=Configuration,DC=example,DC=com"
    assert dse.schema_naming_context == "CN=Schema,CN=Configuration,DC=example,DC=com"
    assert dse.supported_control == ("1.2.840.113556.1.4.319", "1.2.840.113556.1.4.801")
    assert dse.supported_ldap_version == (3, 2)
    assert dse.supported_ldap_policies == ("MaxPoolThreads", "MaxPageSize")
    assert dse.highest_committed_usn == 12817
    assert "GSSAPI" in dse.supported_sasl_mechanisms
    assert dse.dns_host_name == "DC1.example.com"
    assert dse.ldap_service_name == "example.com:dc1$@EXAMPLE.COM"
    assert dse.server_name is not None
    assert dse.supported_capabilities[0] == "1.2.840.113556.1.4.800"
    assert dse.is_synchronized is True
    assert dse.is_global_catalog_ready is False
    assert (dse.domain_functionality, dse.forest_functionality, dse.domain_controller_functionality) == (
        7,
        7,
        7,
    )
    assert dse.get("DNSHOSTNAME") == ("DC1.example.com",)
    assert dict(dse.attributes)["supportedLDAPVersion"] == ("3", "2")
    hash(dse)  # frozen and hashable despite the mapping


def test_root_dse_openldap_has_no_ad_attributes() -> None:
    entry = SearchEntry("", (("namingContexts", (b"dc=example,dc=org",)), ("supportedLDAPVersion", (b"3",))))
    dse = RootDSE.from_entry(entry)
    assert dse.naming_contexts == ("dc=example,dc=org",)
    assert dse.current_time is None
    assert dse.highest_committed_usn is None
    assert dse.is_synchronized is None


@pytest.mark.parametrize(
    ("attr", "value", "match"),
    [
        ("currentTime", b"yesterday", "GeneralizedTime"),
        ("currentTime", b"20241301000000Z", "impossible"),
        ("highestCommittedUSN", b"12a", "integer"),
        ("highestCommittedUSN", b"9" * 5000, "integer"),
        ("isSynchronized", b"yes", "Boolean"),
        ("supportedLDAPVersion", b"three", "integer"),
        ("dnsHostName", b"\xff\xfe", "UTF-8"),
    ],
)
def test_root_dse_malformed_values(attr: str, value: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        RootDSE.from_entry(SearchEntry("", ((attr, (value,)),)))


def test_no_root_dse_entry() -> None:
    result = decode_search_response(encode_search_response(1, [("CN=x", [("a", [b"1"])])]))
    with pytest.raises(ProtocolError, match="no rootDSE"):
        parse_root_dse(result)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20240301101112.0Z", datetime(2024, 3, 1, 10, 11, 12, tzinfo=UTC)),
        ("20240301101112Z", datetime(2024, 3, 1, 10, 11, 12, tzinfo=UTC)),
        ("202403011011Z", datetime(2024, 3, 1, 10, 11, tzinfo=UTC)),
        ("20240301101112.25Z", datetime(2024, 3, 1, 10, 11, 12, 250000, tzinfo=UTC)),
        ("20240301101112+0130", datetime(2024, 3, 1, 8, 41, 12, tzinfo=UTC)),
        ("20240301101112", datetime(2024, 3, 1, 10, 11, 12, tzinfo=UTC)),
    ],
)
def test_generalized_time(text: str, expected: datetime) -> None:
    assert parse_generalized_time(text) == expected


@given(st.datetimes(min_value=datetime(1601, 1, 1), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_generalized_time_round_trip(moment: datetime) -> None:
    text = moment.strftime("%Y%m%d%H%M%S.%fZ")
    assert parse_generalized_time(text) == moment


# --------------------------------------------------------------------------- properties

attr_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=20
)
entries_st = st.lists(
    st.tuples(
        st.text(max_size=30),
        st.lists(st.tuples(attr_names, st.lists(st.binary(max_size=40), max_size=4)), max_size=5),
    ),
    max_size=3,
)


@given(
    message_id=st.integers(min_value=1, max_value=2**31 - 1),
    entries=entries_st,
    code=st.sampled_from([0, 1, 2, 32, 49, 53, 80]),
    diag=st.text(max_size=30),
)
def test_search_response_round_trip(
    message_id: int, entries: list[tuple[str, list[tuple[str, list[bytes]]]]], code: int, diag: str
) -> None:
    data = encode_search_response(message_id, entries, code, diag)
    result = decode_search_response(data)
    assert result.message_id == message_id
    assert result.result_code == code
    assert result.diagnostic_message == diag
    assert [e.object_name for e in result.entries] == [name for name, _ in entries]
    for entry, (_, attrs) in zip(result.entries, entries, strict=True):
        assert [t for t, _ in entry.attributes] == [t for t, _ in attrs]
        # SET OF values: order is the encoder's; compare as multisets
        for (_, got), (_, want) in zip(entry.attributes, attrs, strict=True):
            assert sorted(got) == sorted(want)


@given(
    usn=st.integers(min_value=0, max_value=2**63),
    sync=st.booleans(),
    gc=st.booleans(),
    level=st.integers(min_value=0, max_value=10),
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){1,3}", fullmatch=True),
)
def test_root_dse_round_trip(*, usn: int, sync: bool, gc: bool, level: int, when: datetime, host: str) -> None:
    when = when.replace(microsecond=0)
    attrs = [
        ("highestCommittedUSN", [str(usn).encode()]),
        ("isSynchronized", [b"TRUE" if sync else b"FALSE"]),
        ("isGlobalCatalogReady", [b"TRUE" if gc else b"FALSE"]),
        ("domainFunctionality", [str(level).encode()]),
        ("currentTime", [when.strftime("%Y%m%d%H%M%S.0Z").encode()]),
        ("dnsHostName", [host.encode()]),
    ]
    dse = parse_root_dse(decode_search_response(encode_search_response(1, [("", attrs)])))
    assert (dse.highest_committed_usn, dse.is_synchronized, dse.is_global_catalog_ready) == (usn, sync, gc)
    assert dse.domain_functionality == level
    assert dse.current_time == when
    assert dse.dns_host_name == host


def _decodes_or_decode_error(data: bytes) -> None:
    try:
        result = decode_search_response(data)
    except DecodeError:
        return
    with contextlib.suppress(DecodeError, ProtocolError):
        parse_root_dse(result)


@FUZZ
@given(st.binary(max_size=400))
@example(b"\x30\x80\x00\x00")
@example(b"\x30\x03\x02\x01\x01")
@example(b"\x30\x05\x02\x01\x01\x64\x00")
@example(b"\x30\x84\xff\xff\xff\xff")
@example(b"\x30\x06\x02\x01\x01\x65\x01\x0a")
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    _decodes_or_decode_error(data)


@FUZZ
@given(st.binary(max_size=400))
def test_random_sequence_bodies_raise_only_decode_error(body: bytes) -> None:
    _decodes_or_decode_error(
        b"\x30" + (b"\x82" + len(body).to_bytes(2, "big") if len(body) > 127 else bytes([len(body)])) + body
    )


SAMPLE_REPLY = encode_search_response(
    3, [("", [("dnsHostName", [b"dc1.example.com"]), ("currentTime", [b"20240101000000.0Z"])])]
)


@FUZZ
@given(st.data())
def test_mutated_reply_raises_only_decode_error(data: st.DataObject) -> None:
    _decodes_or_decode_error(mutated(data, SAMPLE_REPLY))


def test_every_truncation_raises_decode_error() -> None:
    for cut in range(len(SAMPLE_REPLY)):
        prefix = SAMPLE_REPLY[:cut]
        messages, rest = split_messages(prefix)
        if rest or not messages:
            with pytest.raises(DecodeError):
                decode_search_response(prefix)
        else:  # cut exactly between the entry and the done: valid but not done
            assert not decode_search_response(prefix).done


def test_oversized_message_refused_before_decoding() -> None:
    big = b"\x30\x84" + (MAX_MESSAGE_BYTES + 1).to_bytes(4, "big")
    with pytest.raises(DecodeError, match="exceeds limit"):
        decode_search_response(big)


# --------------------------------------------------------------------------- Netlogon


@needs_captures
def test_netlogon_w2k8r2() -> None:
    resp = decode_netlogon((CAPTURES / "netlogon-sam-logon-response-ex-w2k8r2-dc.bin").read_bytes())
    assert resp.opcode == 23
    assert resp.opcode_name == "LOGON_SAM_LOGON_RESPONSE_EX"
    assert resp.flags_raw == 0x000033FD
    assert resp.flags == flag_names(0x33FD)
    assert {
        "pdc",
        "gc",
        "ldap",
        "ds",
        "kdc",
        "timeserv",
        "closest",
        "writable",
        "good_timeserv",
        "ws",
    } <= resp.flags
    assert resp.domain_guid == uuid.UUID("cd441303-001c-464c-a621-e9d6b9b12fe9")
    assert resp.dns_forest_name == resp.dns_domain_name == "w2k8dom.ber.redhat.com"
    assert resp.dns_host_name == "gdw2k8r2.w2k8dom.ber.redhat.com"
    assert (resp.netbios_domain_name, resp.netbios_computer_name) == ("W2K8DOM", "GDW2K8R2")
    assert resp.user_name == ""
    assert resp.dc_site_name == resp.client_site_name == "Default-First-Site-Name"
    assert resp.nt_version == 5
    assert (resp.lm_nt_token, resp.lm20_token) == (0xFFFF, 0xFFFF)
    assert resp.dc_address is None
    assert resp.next_closest_site_name is None


@needs_captures
@pytest.mark.parametrize(
    ("name", "nt_version", "address"),
    [
        ("netlogon-sam-logon-response-ex-v5ex-dc1.bin", 5, None),
        ("netlogon-sam-logon-response-ex-v5ex-with-ip-dc1.bin", 0xD, "192.168.0.100"),
    ],
)
def test_netlogon_dc1(name: str, nt_version: int, address: str | None) -> None:
    resp = decode_netlogon((CAPTURES / name).read_bytes())
    assert resp.flags_raw == 0x0003F3FD
    assert resp.flags == {
        "pdc", "gc", "ldap", "ds", "kdc", "timeserv", "closest", "writable", "good_timeserv",
        "full_secret_domain_6", "ws", "ds_8", "ds_9", "ds_10", "key_list",
    }  # fmt: skip
    assert resp.domain_guid == uuid.UUID("47f1238c-e55e-4cfe-89e8-780937b1cd3b")
    assert resp.dns_forest_name == resp.dns_domain_name == "domain.local"
    assert resp.dns_host_name == "DC1.domain.local"
    assert (resp.netbios_domain_name, resp.netbios_computer_name) == ("DOMAIN", "DC1")
    assert resp.nt_version == nt_version
    assert resp.dc_address == address


def test_flag_names_cover_every_bit() -> None:
    assert len(DS_FLAGS) == 20
    assert flag_names(0xFFFFFFFF) == frozenset(DS_FLAGS.values())
    assert flag_names(0x00000002) == frozenset()  # bit 1 is unassigned
    assert DS_FLAG_NAMES[:3] == ("pdc", "gc", "ldap")
    assert DS_FLAG_NAMES[-1] == "dns_forest"
    assert set(DS_FLAG_NAMES) == set(DS_FLAGS.values())


def _netlogon(**overrides: object) -> NetlogonSamLogonResponseEx:
    fields: dict[str, object] = {
        "opcode": 23, "opcode_name": "LOGON_SAM_LOGON_RESPONSE_EX", "flags_raw": 0x3FD,
        "flags": flag_names(0x3FD), "domain_guid": uuid.UUID(int=1), "dns_forest_name": "ex.com",
        "dns_domain_name": "ex.com", "dns_host_name": "dc.ex.com", "netbios_domain_name": "EX",
        "netbios_computer_name": "DC", "user_name": "", "dc_site_name": "S", "client_site_name": "S",
        "dc_address": None, "next_closest_site_name": None, "nt_version": 5, "lm_nt_token": 0xFFFF,
        "lm20_token": 0xFFFF,
    }  # fmt: skip
    fields.update(overrides)
    return NetlogonSamLogonResponseEx(**fields)  # type: ignore[arg-type]


def test_netlogon_next_closest_site_and_address() -> None:
    resp = _netlogon(dc_address="198.18.2.3", next_closest_site_name="Branch-Site")
    assert decode_netlogon(encode_netlogon(resp)) == resp
    resp = _netlogon(next_closest_site_name="Sixteen-Letters!")  # label length 16, not a sockaddr
    assert decode_netlogon(encode_netlogon(resp)) == resp


def test_netlogon_pointer_loops_refused() -> None:
    head = encode_netlogon(_netlogon())[:24]
    tail = b"\x05\x00\x00\x00\xff\xff\xff\xff"
    self_loop = head + b"\xc0\x18" + b"\x00" * 7 + tail  # forest name points at itself
    with pytest.raises(DecodeError, match="backwards"):
        decode_netlogon(self_loop)
    forward = head + b"\xc0\x1a\x00" + b"\x00" * 7 + tail
    with pytest.raises(DecodeError, match="backwards"):
        decode_netlogon(forward)
    # label then pointer back to the label's start: would loop forever without the check
    loop = head + b"\x01a\xc0\x18" + b"\x00" * 7 + tail
    with pytest.raises(DecodeError, match="backwards"):
        decode_netlogon(loop)


def test_netlogon_rejects() -> None:
    good = encode_netlogon(_netlogon())
    with pytest.raises(DecodeError, match="opcode 19"):
        decode_netlogon(b"\x13\x00" + good[2:])
    with pytest.raises(DecodeError, match="too short"):
        decode_netlogon(good[:20])
    with pytest.raises(DecodeError, match="unexpected bytes"):
        decode_netlogon(good[:-8] + b"\x00\x00" + good[-8:])
    with pytest.raises(DecodeError, match="implausibly long"):
        decode_netlogon(good + bytes(5000))
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_netlogon(good[:24] + b"\x01\xff" + good[24:])
    with pytest.raises(DecodeError, match="reserved DNS label"):
        decode_netlogon(good[:24] + b"\x41" + good[24:])


labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=20)
dns_names = st.lists(labels, min_size=0, max_size=4).map(".".join)


@given(
    opcode=st.sampled_from([23, 24, 25]),
    flags=st.integers(min_value=0, max_value=0xFFFFFFFF),
    guid=st.uuids(),
    names=st.lists(dns_names, min_size=8, max_size=8),
    address=st.none() | st.ip_addresses(v=4).map(str),
    closest=st.none() | dns_names,
    nt=st.integers(min_value=0, max_value=0xFFFFFFFF),
)
def test_netlogon_round_trip(
    *,
    opcode: int,
    flags: int,
    guid: uuid.UUID,
    names: list[str],
    address: str | None,
    closest: str | None,
    nt: int,
) -> None:
    opcode_names = {
        23: "LOGON_SAM_LOGON_RESPONSE_EX",
        24: "LOGON_SAM_PAUSE_RESPONSE_EX",
        25: "LOGON_SAM_USER_UNKNOWN_EX",
    }
    resp = NetlogonSamLogonResponseEx(
        opcode=opcode,
        opcode_name=opcode_names[opcode],
        flags_raw=flags,
        flags=flag_names(flags),
        domain_guid=guid,
        dns_forest_name=names[0],
        dns_domain_name=names[1],
        dns_host_name=names[2],
        netbios_domain_name=names[3],
        netbios_computer_name=names[4],
        user_name=names[5],
        dc_site_name=names[6],
        client_site_name=names[7],
        dc_address=address,
        next_closest_site_name=closest,
        nt_version=nt,
        lm_nt_token=0xFFFF,
        lm20_token=0xFFFF,
    )
    assert decode_netlogon(encode_netlogon(resp)) == resp


def _netlogon_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_netlogon(data)


@FUZZ
@given(st.binary(max_size=300))
def test_netlogon_random_bytes(data: bytes) -> None:
    _netlogon_only_decode_error(data)


@FUZZ
@given(st.binary(min_size=8, max_size=200))
def test_netlogon_random_names(body: bytes) -> None:
    _netlogon_only_decode_error(b"\x17\x00\x00\x00" + bytes(20) + body)


@FUZZ
@given(st.data())
def test_netlogon_mutations_and_truncations(data: st.DataObject) -> None:
    raw = bytearray(encode_netlogon(_netlogon(dc_address="198.18.0.1", next_closest_site_name="B")))
    for _ in range(data.draw(st.integers(min_value=0, max_value=3))):
        i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[i] = data.draw(st.integers(min_value=0, max_value=255))
    _netlogon_only_decode_error(bytes(raw[: data.draw(st.integers(min_value=0, max_value=len(raw)))]))


def test_netlogon_pointer_chain_is_bounded() -> None:
    # 33 chained pointers, each strictly backwards: refused by the hop limit, not by recursion
    body = bytearray(b"\x00")
    for _ in range(40):
        target = 24 + len(body) - 2 if len(body) >= 2 else 24
        body += bytes([0xC0 | (target >> 8), target & 0xFF])
    data = bytes(encode_netlogon(_netlogon())[:24]) + bytes(body) + b"\x00" * 7 + bytes(8)
    start = time.monotonic()
    _netlogon_only_decode_error(data)
    assert time.monotonic() - start < 0.5


def test_generalized_time_fraction_truncated_to_microseconds() -> None:
    assert parse_generalized_time("20240101000000.1234567Z") - datetime(2024, 1, 1, tzinfo=UTC) == timedelta(
        microseconds=123456
    )


@pytest.mark.parametrize("text", ["99991231235959-2359", "00010101000000+0100", "00000101000000Z"])
def test_generalized_time_out_of_range(text: str) -> None:
    with pytest.raises(DecodeError):
        parse_generalized_time(text)


def test_many_tiny_messages_split_linearly_and_refused() -> None:
    stream = b"\x30\x00" * 100_000
    start = time.monotonic()
    messages, rest = split_messages(stream)
    assert (len(messages), rest) == (100_000, b"")
    with pytest.raises(DecodeError, match="more than 256"):
        decode_search_response(stream)
    assert time.monotonic() - start < 2.0


def test_a_decode_error_names_the_field_and_its_offset() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_search_response(bytes.fromhex("3003020101"))
    assert str(caught.value) == "LDAPMessage without a protocolOp (at byte 5)"
    assert caught.value.offset == 5


def _pyasn1_reading(data: bytes) -> tuple[object, ...]:
    """The reply as impacket's RFC 4511 ASN.1 (pyasn1) reads it: the oracle for our single-pass decoder."""
    out: list[object] = []
    messages, rest = split_messages(data)
    assert not rest
    for raw in messages:
        msg, tail = ber_decoder.decode(raw, asn1Spec=ldapasn1.LDAPMessage())
        assert not tail
        op = msg["protocolOp"]
        body = op.getComponent()
        if op.getName() == "searchResEntry":
            attrs = tuple((bytes(a["type"]), tuple(bytes(v) for v in a["vals"])) for a in body["attributes"])
            out.append((int(msg["messageID"]), "entry", bytes(body["objectName"]), attrs))
        elif op.getName() in ("searchResDone", "extendedResp"):
            out.append((int(msg["messageID"]), op.getName(), int(body["resultCode"]), bytes(body["diagnosticMessage"])))
        else:
            assert op.getName() == "searchResRef"  # counted, not kept
    return tuple(out)


def _our_reading(result: SearchResult) -> tuple[object, ...]:
    out: list[object] = [
        (result.message_id, "entry", e.object_name.encode(), tuple((t.encode(), v) for t, v in e.attributes))
        for e in result.entries
    ]
    if result.result_code is not None:
        op = "extendedResp" if result.disconnected else "searchResDone"
        mid = 0 if result.disconnected else result.message_id
        out.append((mid, op, result.result_code, result.diagnostic_message.encode()))
    return tuple(out)


RICH_REPLY = encode_search_response(
    7,
    [
        ("", [("supportedLDAPVersion", [b"3", b"2"]), ("namingContexts", [b"DC=a", b"DC=b,DC=c"])]),
        ("CN=x", [("a", []), ("b", [b"\x00" * 130])]),
    ],
    32,
    "no such object",
)


@FUZZ
@given(st.data())
def test_what_we_accept_pyasn1_reads_the_same(data: st.DataObject) -> None:
    """Soundness: any mutated reply our decoder accepts, pyasn1 decodes to the same messages and values."""
    raw = mutated(data, RICH_REPLY)
    try:
        ours = decode_search_response(raw)
    except DecodeError:
        return
    assert _pyasn1_reading(raw) == _our_reading(ours)

"""SNMP codec (``exporter.wire.snmp``): GetRequest out, GetResponse in.

Test data in ``tests/data/snmp_*.bin`` are real replies from net-snmp's ``snmpd`` 5.9 (Debian 12),
captured on 127.0.0.1 with ``rocommunity public 127.0.0.1`` and ``sysDescr portqry-exporter test
agent (net-snmp)`` in its config, to requests made by :func:`encode_get_request`:

- ``snmp_getresponse_sysdescr_v2c.bin``: v2c, request-id 0x1234, sysDescr.0.
- ``snmp_getresponse_sysdescr_v1.bin``: v1, request-id 0x4321, sysDescr.0.
- ``snmp_getresponse_nosuchobject_v2c.bin``: v2c, id 77, 1.3.6.1.2.1.1.99.0 -> noSuchObject.
- ``snmp_getresponse_nosuchname_v1.bin``: v1, id 78, same OID -> error-status noSuchName, index 1.

The same agent sent nothing at all to community ``wrong``. The v1 GetRequest is compared with
X-Scan's request in ``../shared/captures/closed-udp161-udp1434-icmp-unreach-winxpsp2.pcap``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import dpkt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.errors import DecodeError
from exporter.wire.snmp import (
    SYS_DESCR,
    SnmpResponse,
    VarBind,
    decode_response,
    encode_get_request,
)
from tests.encoders import encode_snmp_response as encode_response
from tests.helpers import mutated

DATA = Path(__file__).resolve().parent / "data"
CAPTURES = Path(os.environ.get("PORTQRY_CAPTURES", Path(__file__).resolve().parents[2] / "shared" / "captures"))
needs_captures = pytest.mark.skipif(not CAPTURES.is_dir(), reason=f"capture directory {CAPTURES} absent")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DESCR = "portqry-exporter test agent (net-snmp)"


# --------------------------------------------------------------------------- requests


@needs_captures
def test_v1_get_request_matches_xscan_bytes() -> None:
    with (CAPTURES / "closed-udp161-udp1434-icmp-unreach-winxpsp2.pcap").open("rb") as fh:
        frames = [dpkt.ethernet.Ethernet(f).data.data for _ts, f in dpkt.pcap.Reader(fh)]
    probe = bytes(frames[0].data)
    assert frames[0].dport == 161
    assert encode_get_request("public", 1, "v1") == probe


def test_v2c_get_request_golden() -> None:
    assert encode_get_request("public", 0x1234, "v2c") == bytes.fromhex(
        "302702010104067075626c6963a01a020212340201000201003" + "00e300c06082b060102010101000500"
    )


def test_get_request_arguments() -> None:
    with pytest.raises(ValueError, match="version"):
        encode_get_request("public", 1, "v3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="request_id"):
        encode_get_request("public", 2**31, "v1")
    with pytest.raises(ValueError, match="GetRequest"):
        encode_get_request("public", 1, "v1", oid="not.an.oid")


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize(("version", "text"), [("v1", "version-1 (0)"), ("v2c", "v2c (1)")])
def test_get_request_dissects_cleanly_in_tshark(tmp_path: Path, version: str, text: str) -> None:
    udp = dpkt.udp.UDP(sport=50000, dport=161, data=encode_get_request("public", 99, version))  # type: ignore[arg-type]
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=b"\x7f\x00\x00\x01", dst=b"\x7f\x00\x00\x02", p=dpkt.ip.IP_PROTO_UDP, data=udp)
    ip.len = len(ip)
    path = tmp_path / "get.pcap"
    with path.open("wb") as fh:
        dpkt.pcap.Writer(fh).writepkt(bytes(dpkt.ethernet.Ethernet(type=0x0800, data=ip)), ts=0)
    out = subprocess.run(
        ["tshark", "-r", str(path), "-V"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "Malformed" not in out
    for expected in (text, "community: public", "get-request", "request-id: 99", "1.3.6.1.2.1.1.1.0"):
        assert expected in out


# --------------------------------------------------------------------------- real replies


@pytest.mark.parametrize(("name", "version", "request_id"), [("v2c", "v2c", 0x1234), ("v1", "v1", 0x4321)])
def test_net_snmp_sysdescr(name: str, version: str, request_id: int) -> None:
    resp = decode_response((DATA / f"snmp_getresponse_sysdescr_{name}.bin").read_bytes())
    assert resp == SnmpResponse(
        version=version,  # type: ignore[arg-type]
        community="public",
        request_id=request_id,
        error_status=0,
        error_status_name="noError",
        error_index=0,
        varbinds=(VarBind(SYS_DESCR, "octet-string", DESCR),),
    )
    assert resp.sys_descr == DESCR


def test_net_snmp_no_such_object_v2c() -> None:
    resp = decode_response((DATA / "snmp_getresponse_nosuchobject_v2c.bin").read_bytes())
    assert (resp.version, resp.request_id, resp.error_status) == ("v2c", 77, 0)
    assert resp.varbinds == (VarBind("1.3.6.1.2.1.1.99.0", "no-such-object", None),)
    assert resp.sys_descr is None


def test_net_snmp_no_such_name_v1() -> None:
    resp = decode_response((DATA / "snmp_getresponse_nosuchname_v1.bin").read_bytes())
    assert (resp.version, resp.request_id) == ("v1", 78)
    assert (resp.error_status, resp.error_status_name, resp.error_index) == (2, "noSuchName", 1)
    assert resp.varbinds == (VarBind("1.3.6.1.2.1.1.99.0", "null", None),)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("snmp_*.bin")))
def test_real_replies_every_truncation(name: str) -> None:
    data = (DATA / name).read_bytes()
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_response(data[:cut])
    with pytest.raises(DecodeError, match="trailing"):
        decode_response(data + b"\x00")


def test_request_is_not_a_response() -> None:
    with pytest.raises(DecodeError, match="get-request PDU, not a response"):
        decode_response(encode_get_request("public", 1, "v2c"))


def test_v1_trap_and_v3_refused() -> None:
    trap = bytes.fromhex("301c020100040670756266696361a40f06052b06010401400400020100020100")  # [4] trap
    with pytest.raises(DecodeError):
        decode_response(trap)
    v3ish = bytearray(encode_response("public", 1, [(SYS_DESCR, "x")]))
    v3ish[4] = 3  # version field
    with pytest.raises(DecodeError, match="version 3"):
        decode_response(bytes(v3ish))


def tlv(tag: int, body: bytes) -> bytes:
    """One BER TLV with a definite length (short or two-byte long form)."""
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    return bytes([tag, 0x82]) + len(body).to_bytes(2, "big") + body


def test_value_kinds() -> None:
    # counter32 / gauge32 / timeticks / ipaddress / counter64 / OID / binary octets, hand-built BER
    oid = bytes.fromhex("06082b06010201010300")  # 1.3.6.1.2.1.1.3.0
    binds = b"".join(
        tlv(0x30, oid + value)
        for value in (
            tlv(0x41, b"\x01\x00"),
            tlv(0x42, b"\x00\xff\xff\xff\xff"),
            tlv(0x43, b"\x7f"),
            tlv(0x40, bytes([198, 18, 0, 1])),
            tlv(0x46, b"\x00\xff\xff\xff\xff\xff\xff\xff\xff"),
            tlv(0x06, b"\x2b\x06\x01\x04\x01\x82\x37"),
            tlv(0x04, b"\x00\x50\x56\x01\x02\x03"),
            tlv(0x44, b"\x9f\x78\x04\x3f\x80\x00\x00"),
            tlv(0x82, b""),
        )
    )
    pdu = tlv(0xA2, tlv(0x02, b"\x05") + tlv(0x02, b"\x00") + tlv(0x02, b"\x00") + tlv(0x30, binds))
    msg = tlv(0x30, tlv(0x02, b"\x01") + tlv(0x04, b"public") + pdu)
    resp = decode_response(msg)
    assert [(v.kind, v.value) for v in resp.varbinds] == [
        ("counter32", 256),
        ("gauge32", 2**32 - 1),
        ("timeticks", 127),
        ("ip-address", "198.18.0.1"),
        ("counter64", 2**64 - 1),
        ("object-identifier", "1.3.6.1.4.1.311"),
        ("octet-string", b"\x00\x50\x56\x01\x02\x03"),
        ("opaque", b"\x9f\x78\x04\x3f\x80\x00\x00"),
        ("end-of-mib-view", None),
    ]


def test_out_of_range_integers_refused() -> None:
    oid = bytes.fromhex("06082b06010201010300")
    for value in (tlv(0x41, b"\x01\x00\x00\x00\x00"), tlv(0x02, b"\x01" + bytes(60))):
        pdu = tlv(0xA2, tlv(0x02, b"\x05") * 3 + tlv(0x30, tlv(0x30, oid + value)))
        with pytest.raises(DecodeError, match="out of range"):
            decode_response(tlv(0x30, tlv(0x02, b"\x01") + tlv(0x04, b"public") + pdu))


def test_huge_oid_arc_refused_quickly() -> None:
    arc = b"\xff" * 3000 + b"\x7f"  # one arc of ~21000 bits
    oid = b"\x06\x82" + len(b"\x2b" + arc).to_bytes(2, "big") + b"\x2b" + arc
    vb = b"\x30\x82" + (len(oid) + 2).to_bytes(2, "big") + oid + b"\x05\x00"
    vbl = b"\x30\x82" + len(vb).to_bytes(2, "big") + vb
    body = b"\x02\x01\x05" * 3 + vbl
    pdu = b"\xa2\x82" + len(body).to_bytes(2, "big") + body
    inner = b"\x02\x01\x01\x04\x06public" + pdu
    msg = b"\x30\x82" + len(inner).to_bytes(2, "big") + inner
    with pytest.raises(DecodeError):
        decode_response(msg)


# --------------------------------------------------------------------------- properties

oids = st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=1, max_size=12).map(
    lambda arcs: "1.3." + ".".join(map(str, arcs))
)
values = (
    st.none()
    | st.integers(min_value=-(2**31), max_value=2**31 - 1)
    | st.binary(max_size=50)
    | st.text(alphabet=st.characters(categories=["L", "N", "P", "Zs"]), max_size=50)
)


@given(
    version=st.sampled_from(["v1", "v2c"]),
    community=st.text(alphabet=st.characters(categories=["L", "N"]), max_size=20),
    request_id=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    binds=st.lists(st.tuples(oids, values), max_size=5),
    status=st.integers(min_value=0, max_value=18),
)
def test_response_round_trip(
    version: str, community: str, request_id: int, binds: list[tuple[str, object]], status: int
) -> None:
    data = encode_response(community, request_id, binds, version=version, error_status=status)  # type: ignore[arg-type]
    resp = decode_response(data)
    assert (resp.version, resp.community, resp.request_id, resp.error_status) == (
        version,
        community,
        request_id,
        status,
    )
    assert [vb.oid for vb in resp.varbinds] == [oid for oid, _ in binds]
    for vb, (_, value) in zip(resp.varbinds, binds, strict=True):
        if isinstance(value, str):  # text that is not printable (e.g. U+00A0) comes back as bytes, by design
            assert vb.value in (value, value.encode())
        elif isinstance(value, bytes):
            assert vb.value in (value, value.decode("utf-8", "ignore"))
        else:
            assert vb.value == value


@given(
    community=st.text(alphabet=st.characters(categories=["L", "N"]), max_size=20),
    request_id=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    oid=oids,
)
def test_get_request_is_well_formed(community: str, request_id: int, oid: str) -> None:
    data = encode_get_request(community, request_id, "v2c", oid)
    with pytest.raises(DecodeError, match="get-request"):
        decode_response(data)


def _only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_response(data)


@FUZZ
@given(st.binary(max_size=300))
@example(b"\x30\x80\x00\x00")
@example(b"\x30\x03\x02\x01\x00")
@example(b"\x30\x0b\x02\x01\x00\x04\x00\xa2\x04\x02\x00\x02\x00")
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    _only_decode_error(data)


SAMPLE = encode_response("public", 7, [(SYS_DESCR, "Hardware: Intel64 - Software: Windows"), ("1.3.6.1.2.1.1.3.0", 5)])


@FUZZ
@given(st.data())
def test_mutated_reply_raises_only_decode_error(data: st.DataObject) -> None:
    _only_decode_error(mutated(data, SAMPLE))


def test_deep_nesting_refused() -> None:
    deep = b""
    for _ in range(2000):
        deep = b"\x30\x84" + len(deep).to_bytes(4, "big") + deep
    with pytest.raises(DecodeError, match="deeper"):
        decode_response(deep)

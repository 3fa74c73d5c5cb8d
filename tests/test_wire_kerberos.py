"""Kerberos codec (``exporter.wire.kerberos``): AS-REQ out, KRB-ERROR in.

Golden data: the Windows KDC replies in ``../shared/captures/krb5-*.pcap`` (see its README;
skipped when absent). The AS-REQ was checked with ``tshark -V`` (TShark 4.0.17).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import dpkt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from impacket.krb5 import asn1 as krb_asn1
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.der import encoder as der_encoder

from exporter.errors import DecodeError
from exporter.wire.kerberos import (
    ERROR_NAMES,
    EtypeInfo2,
    KdcRep,
    KrbError,
    decode_kdc_reply,
    decode_krb_error,
    encode_as_req,
    frame_tcp,
    tcp_record_length,
)
from tests.encoders import encode_krb_error
from tests.helpers import mutated

CAPTURES = Path(os.environ.get("PORTQRY_CAPTURES", Path(__file__).resolve().parents[2] / "shared" / "captures"))
needs_captures = pytest.mark.skipif(not CAPTURES.is_dir(), reason=f"capture directory {CAPTURES} absent")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

UDP_PCAP = "krb5-udp-krb-error-windc-kerbrute.pcap"
TCP_PCAP = "krb5-tcp-preauth-required-ws2019.pcap"


def payloads(name: str) -> list[bytes]:
    """UDP/TCP payload of every frame of a capture (``b""`` for other frames)."""
    out = []
    with (CAPTURES / name).open("rb") as fh:
        for _ts, frame in dpkt.pcap.Reader(fh):
            l4 = dpkt.ethernet.Ethernet(frame).data.data
            out.append(bytes(l4.data) if isinstance(l4, dpkt.udp.UDP | dpkt.tcp.TCP) else b"")
    return out


# --------------------------------------------------------------------------- captures


@needs_captures
def test_windows_udp_krb_error_frame6() -> None:
    frame = payloads(UDP_PCAP)[5]
    assert len(frame) == 102
    err = decode_krb_error(frame)
    assert (err.error_code, err.error_name) == (6, "KDC_ERR_C_PRINCIPAL_UNKNOWN")
    assert err.realm == "THREEBEESCO.COM"
    assert err.sname == "krbtgt/THREEBEESCO.COM"
    assert err.sname_type == 2
    assert err.stime == datetime(2020, 7, 22, 19, 16, 35, 347520, tzinfo=UTC)
    assert err.susec == 347520
    # Windows leaves out every optional field
    assert (err.ctime, err.cusec, err.crealm, err.cname, err.e_text, err.e_data) == (None,) * 6
    assert decode_kdc_reply(frame) == err


@needs_captures
def test_windows_udp_all_frames() -> None:
    frames = payloads(UDP_PCAP)
    codes = {}
    for number, frame in enumerate(frames, start=1):
        if frame[:1] == b"\x7e":
            codes[number] = decode_krb_error(frame).error_code
        else:
            assert frame[:1] == b"\x6a"  # AS-REQ from kerbrute
            with pytest.raises(DecodeError, match="AS-REQ, not KRB-ERROR"):
                decode_krb_error(frame)
            with pytest.raises(DecodeError, match="AS-REQ is not a KDC reply"):
                decode_kdc_reply(frame)
    assert codes == {
        6: 6, 7: 6, 9: 6, 11: 6, 15: 6, 19: 6, 20: 6,
        13: 25, 14: 25, 16: 25,
        23: 24, 24: 24,
        26: 52,
    }  # fmt: skip


@needs_captures
def test_windows_udp_preauth_required_e_data() -> None:
    err = decode_krb_error(payloads(UDP_PCAP)[12])
    assert err.error_name == "KDC_ERR_PREAUTH_REQUIRED"
    assert err.padata_types == (19, 2, 16, 15)
    assert err.etype_info2 == (EtypeInfo2(18, "WIN-20EU86TPGP8Administrator"), EtypeInfo2(23, None))
    assert decode_krb_error(payloads(UDP_PCAP)[25]).error_name == "KRB_ERR_RESPONSE_TOO_BIG"


@needs_captures
def test_windows_tcp_preauth_required() -> None:
    frames = payloads(TCP_PCAP)
    request, reply = frames[3], frames[4]
    assert tcp_record_length(request) == len(request) == 226
    assert tcp_record_length(reply) == len(reply) == 198
    assert reply[:4] == (194).to_bytes(4, "big")
    err = decode_krb_error(reply[4:])
    assert (err.error_code, err.realm, err.sname) == (25, "CYLERA.LAB", "krbtgt/CYLERA.LAB")
    assert err.etype_info2 == (
        EtypeInfo2(18, "CYLERA.LABrobin"),
        EtypeInfo2(23, None),
        EtypeInfo2(-133, None),
        EtypeInfo2(-128, None),
    )
    assert err.padata_types == (19, 2, 16, 15)
    assert err.ctime is None
    with pytest.raises(DecodeError, match=r"trailing|not KRB-ERROR|malformed"):
        decode_krb_error(reply)  # still framed


@needs_captures
@pytest.mark.parametrize("frame_no", [6, 13, 26])
def test_windows_reply_every_truncation(frame_no: int) -> None:
    frame = payloads(UDP_PCAP)[frame_no - 1]
    for cut in range(len(frame)):
        with pytest.raises(DecodeError):
            decode_krb_error(frame[:cut])
    with pytest.raises(DecodeError, match="trailing"):
        decode_krb_error(frame + b"\x00")


# --------------------------------------------------------------------------- AS-REQ

AS_REQ_137 = bytes.fromhex(
    "6a8186308183a103020105a20302010aa4773075a00703050040810010a1133011a003020101a10a30081b066e6f7375"
    "6368a20d1b0b4558414d504c452e434f4da320301ea003020102a11730151b066b72627467741b0b4558414d504c452e"
    "434f4da511180f32303337303931333032343830355aa70402023039a80b3009020112020111020117"
)


def test_as_req_golden() -> None:
    assert encode_as_req("EXAMPLE.COM", "nosuch", 12345) == AS_REQ_137


def _decode_as_req(data: bytes) -> krb_asn1.AS_REQ:
    req, rest = ber_decoder.decode(data, asn1Spec=krb_asn1.AS_REQ())
    assert rest == b""
    return req


@given(
    realm=st.from_regex(r"[A-Z][A-Z0-9.-]{0,40}", fullmatch=True),
    name=st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,30}(/[a-z0-9.-]{1,20})?", fullmatch=True),
    nonce=st.integers(min_value=0, max_value=2**32 - 1),
    etypes=st.lists(st.sampled_from([17, 18, 23, 24, -135]), min_size=1, max_size=4),
)
def test_as_req_round_trip(realm: str, name: str, nonce: int, etypes: list[int]) -> None:
    req = _decode_as_req(encode_as_req(realm, name, nonce, etypes=etypes))
    body = req["req-body"]
    assert int(req["pvno"]) == 5
    assert int(req["msg-type"]) == 10
    assert not req["padata"].hasValue()
    assert str(body["realm"]) == realm
    assert [str(s) for s in body["cname"]["name-string"]] == name.split("/")
    assert int(body["cname"]["name-type"]) == 1
    assert [str(s) for s in body["sname"]["name-string"]] == ["krbtgt", realm]
    assert int(body["nonce"]) == nonce
    assert [int(e) for e in body["etype"]] == etypes
    assert str(body["till"]) == "20370913024805Z"


def test_as_req_arguments() -> None:
    with pytest.raises(ValueError, match="nonce"):
        encode_as_req("R", "x", 2**32)
    with pytest.raises(ValueError, match="empty"):
        encode_as_req("", "x", 1)
    with pytest.raises(ValueError, match="aware"):
        encode_as_req("R", "x", 1, till=datetime(2030, 1, 1))
    req = _decode_as_req(encode_as_req("R", "x", 1, till=datetime(2030, 1, 1, tzinfo=UTC)))
    assert str(req["req-body"]["till"]) == "20300101000000Z"


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_as_req_dissects_cleanly_in_tshark(tmp_path: Path) -> None:
    udp = dpkt.udp.UDP(sport=50000, dport=88, data=encode_as_req("EXAMPLE.COM", "nosuch", 12345))
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=b"\x7f\x00\x00\x01", dst=b"\x7f\x00\x00\x02", p=dpkt.ip.IP_PROTO_UDP, data=udp)
    ip.len = len(ip)
    path = tmp_path / "asreq.pcap"
    with path.open("wb") as fh:
        dpkt.pcap.Writer(fh).writepkt(bytes(dpkt.ethernet.Ethernet(type=0x0800, data=ip)), ts=0)
    out = subprocess.run(
        ["tshark", "-r", str(path), "-V"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "Malformed" not in out
    for text in ("msg-type: krb-as-req (10)", "CNameString: nosuch", "SNameString: krbtgt", "nonce: 12345"):
        assert text in out


# --------------------------------------------------------------------------- TCP framing


def test_tcp_framing() -> None:
    msg = encode_as_req("R", "x", 1)
    framed = frame_tcp(msg)
    assert framed[:4] == len(msg).to_bytes(4, "big")
    assert tcp_record_length(framed[:3]) is None
    assert tcp_record_length(framed) == len(framed)
    with pytest.raises(DecodeError, match="high bit"):
        tcp_record_length(b"\x80\x00\x00\x01")
    with pytest.raises(DecodeError, match="exceeds limit"):
        tcp_record_length(b"\x00\x10\x00\x00")


@given(st.binary(max_size=300))
def test_tcp_framing_round_trip(msg: bytes) -> None:
    framed = frame_tcp(msg)
    total = tcp_record_length(framed + b"extra")
    assert total == len(framed)
    assert framed[4:total] == msg


# --------------------------------------------------------------------------- other replies


def test_krb_error_with_optional_fields() -> None:
    err = krb_asn1.KRB_ERROR()
    err["pvno"] = 5
    err["msg-type"] = 30
    err["ctime"] = "20240101000000Z"
    err["cusec"] = 12
    err["stime"] = "20240101000001Z"
    err["susec"] = 5
    err["error-code"] = 68
    err["crealm"] = "CLIENT.REALM"
    err["cname"]["name-type"] = 1
    err["cname"]["name-string"][0] = "nosuch"
    err["realm"] = "NM"
    err["sname"]["name-type"] = 2
    err["sname"]["name-string"].setComponents("krbtgt", "NM")
    err["e-text"] = "wrong realm"
    err["e-data"] = b"\x04\x00"  # not METHOD-DATA: kept raw, not an error
    out = decode_krb_error(bytes(der_encoder.encode(err)))
    assert (out.error_code, out.error_name) == (68, "KDC_ERR_WRONG_REALM")
    assert out.ctime == datetime(2024, 1, 1, 0, 0, 0, 12, tzinfo=UTC)
    assert out.cusec == 12
    assert out.crealm == "CLIENT.REALM"
    assert out.cname == "nosuch"
    assert out.e_text == "wrong realm"
    assert out.e_data == b"\x04\x00"
    assert (out.padata_types, out.etype_info2) == ((), ())


def test_as_rep_is_a_distinct_type() -> None:
    rep = krb_asn1.AS_REP()
    rep["pvno"] = 5
    rep["msg-type"] = 11
    rep["crealm"] = "EXAMPLE.COM"
    rep["cname"]["name-type"] = 1
    rep["cname"]["name-string"][0] = "roastme"
    ticket = rep["ticket"]
    ticket["tkt-vno"] = 5
    ticket["realm"] = "EXAMPLE.COM"
    ticket["sname"]["name-type"] = 2
    ticket["sname"]["name-string"].setComponents("krbtgt", "EXAMPLE.COM")
    ticket["enc-part"]["etype"] = 18
    ticket["enc-part"]["cipher"] = b"\x00" * 16
    rep["enc-part"]["etype"] = 23
    rep["enc-part"]["cipher"] = b"\x01" * 16
    data = bytes(der_encoder.encode(rep))
    out = decode_kdc_reply(data)
    assert out == KdcRep(11, "EXAMPLE.COM", "roastme", "EXAMPLE.COM", "krbtgt/EXAMPLE.COM", 23, ())
    with pytest.raises(DecodeError, match="AS-REP, not KRB-ERROR"):
        decode_krb_error(data)


def test_error_table() -> None:
    assert ERROR_NAMES[6] == "KDC_ERR_C_PRINCIPAL_UNKNOWN"
    assert ERROR_NAMES[68] == "KDC_ERR_WRONG_REALM"
    stime = datetime(2024, 1, 1, tzinfo=UTC)
    assert decode_krb_error(encode_krb_error(9999, "R", stime)).error_name == "UNKNOWN"


@given(
    code=st.integers(min_value=0, max_value=100),
    realm=st.from_regex(r"[A-Z][A-Z0-9.]{0,30}", fullmatch=True),
    stime=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    text=st.none() | st.text(max_size=40),
)
def test_krb_error_round_trip(code: int, realm: str, stime: datetime, text: str | None) -> None:
    out = decode_krb_error(encode_krb_error(code, realm, stime, susec=stime.microsecond, e_text=text))
    assert isinstance(out, KrbError)
    assert (out.error_code, out.realm, out.sname, out.stime, out.e_text) == (
        code,
        realm,
        f"krbtgt/{realm}",
        stime,
        text,
    )


# --------------------------------------------------------------------------- hostile bytes


def _only_decode_error(data: bytes) -> None:
    for decode in (decode_krb_error, decode_kdc_reply):
        with contextlib.suppress(DecodeError):
            decode(data)


@FUZZ
@given(st.binary(max_size=300))
@example(b"\x7e\x80\x00\x00")
@example(b"\x7e\x00")
@example(b"\x7e\x02\x30\x00")
@example(b"\x6b\x02\x30\x00")
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    _only_decode_error(data)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bodies_raise_only_decode_error(body: bytes) -> None:
    inner = b"\x30" + bytes([len(body)]) + body if len(body) < 128 else b"\x30\x81" + bytes([len(body)]) + body
    _only_decode_error(
        b"\x7e" + bytes([len(inner)]) + inner if len(inner) < 128 else b"\x7e\x81" + bytes([len(inner)]) + inner
    )


SAMPLE_ERROR = encode_krb_error(
    25, "EXAMPLE.COM", datetime(2024, 1, 1, tzinfo=UTC), e_text="x",
    e_data=bytes.fromhex("30363034a103020113a22d042b30293020a003020112a1191b17544852454542454553434f2e434f4d6261636b646f6f723005a003020117"),
)  # fmt: skip


@FUZZ
@given(st.data())
def test_mutated_error_raises_only_decode_error(data: st.DataObject) -> None:
    _only_decode_error(mutated(data, SAMPLE_ERROR))


def test_deep_nesting_refused() -> None:
    deep = b""
    for _ in range(3000):
        deep = b"\x30" + b"\x84" + len(deep).to_bytes(4, "big") + deep
    with pytest.raises(DecodeError, match="deeper"):
        decode_krb_error(b"\x7e\x84" + len(deep).to_bytes(4, "big") + deep)

"""NetBIOS node status (NBSTAT) codec tests against three real Windows replies.

Captures: ``/work/shared/captures/nbstat-*.pcap`` (README there lists the expected names, flag words
and unit IDs, checked with tshark).  impacket's ``encode_name`` is the reference for name encoding.
"""

from __future__ import annotations

import contextlib
import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.errors import DecodeError
from exporter.wire import nbstat
from exporter.wire.nbstat import NetbiosName
from tests.helpers import CAPTURES

needs_captures = pytest.mark.skipif(not CAPTURES.is_dir(), reason="shared captures not mounted")


def udp_payloads(name: str) -> list[bytes]:
    with (CAPTURES / name).open("rb") as fh:
        return [bytes(dpkt.ethernet.Ethernet(frame).data.data.data) for _ts, frame in dpkt.pcap.Reader(fh)]


def _names(status: nbstat.NodeStatus) -> list[tuple[str, int, int]]:
    return [(n.name, n.suffix, n.flags) for n in status.names]


# --------------------------------------------------------------------------- real replies


@needs_captures
def test_win10_reply() -> None:
    payloads = udp_payloads("nbstat-win10-WIN-I82B81NSLLJ.pcap")
    status = nbstat.decode_node_status_response(payloads[1])
    assert status.transaction_id == 0x8D02
    assert _names(status) == [
        ("WIN-I82B81NSLLJ", 0x00, 0x0400),
        ("WORKGROUP", 0x00, 0x8400),
        ("WIN-I82B81NSLLJ", 0x20, 0x0400),
    ]
    assert [n.group for n in status.names] == [False, True, False]
    assert status.mac == "0a:02:d7:5e:97:02"
    assert status.question_name == "*<00>"
    assert status.statistics[6:] == bytes(40)  # all statistics zero
    assert str(status.names[2]) == "WIN-I82B81NSLLJ<20>"
    # The Windows request in the same capture is byte-for-byte what we send.
    assert payloads[0] == nbstat.encode_node_status_request(0x8D02)


@needs_captures
def test_winxp_reply() -> None:
    payloads = udp_payloads("nbstat-winxpsp2.pcap")
    status = nbstat.decode_node_status_response(payloads[1])
    assert status.transaction_id == 0x1080
    assert _names(status) == [
        ("VIRTUALWORLD", 0x00, 0x4400),
        ("MSHOME", 0x00, 0xC400),
        ("VIRTUALWORLD", 0x20, 0x4400),
        ("MSHOME", 0x1E, 0xC400),
    ]
    assert {n.node_type for n in status.names} == {"M"}
    assert all(n.active and not n.conflict and not n.deregistering and not n.permanent for n in status.names)
    assert status.mac == "00:1a:4b:6a:ce:fe"
    assert len(payloads[1]) == 265  # RDLENGTH 119 ends at byte 175: XP appends 90 zero bytes
    assert payloads[1][175:] == bytes(90)
    assert nbstat.decode_node_status_response(payloads[3]).names == status.names


@needs_captures
def test_domain_controller_reply() -> None:
    status = nbstat.decode_node_status_response(udp_payloads("nbstat-windc-threebeesco.pcap")[1])
    assert status.transaction_id == 0x81C5
    assert _names(status) == [
        ("3B", 0x00, 0x8400),
        ("01566S-WIN16-IR", 0x00, 0x0400),
        ("3B", 0x1C, 0x8400),
        ("01566S-WIN16-IR", 0x20, 0x0400),
        ("3B", 0x1B, 0x0400),
    ]
    assert [n.group for n in status.names] == [True, False, True, False, False]
    assert status.mac == "00:50:56:23:45:59"


@needs_captures
@pytest.mark.parametrize(
    "name", ["nbstat-win10-WIN-I82B81NSLLJ.pcap", "nbstat-winxpsp2.pcap", "nbstat-windc-threebeesco.pcap"]
)
def test_truncated_real_replies_raise_decode_error(name: str) -> None:
    reply = udp_payloads(name)[1]
    (rdlength,) = struct.unpack_from(">H", reply, 54)
    end = 56 + rdlength  # Windows XP pads its reply with zeros past RDATA; those may go
    for cut in range(end):
        with pytest.raises(DecodeError):
            nbstat.decode_node_status_response(reply[:cut])
    assert nbstat.decode_node_status_response(reply[:end]) == nbstat.decode_node_status_response(reply)


@needs_captures
def test_requests_are_not_responses() -> None:
    request = udp_payloads("nbstat-winxpsp2.pcap")[0]
    with pytest.raises(DecodeError, match="not a response"):
        nbstat.decode_node_status_response(request)


# --------------------------------------------------------------------------- encoder


def test_request_golden() -> None:
    data = nbstat.encode_node_status_request(0x80F0)
    assert data == (
        bytes.fromhex("80f0 0000 0001 0000 0000 0000") + b"\x20CK" + b"A" * 30 + bytes.fromhex("00 0021 0001")
    )
    assert len(data) == 50


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_$", min_size=1, max_size=15),
    suffix=st.integers(0, 255),
)
def test_name_encoding_matches_impacket(name: str, suffix: int) -> None:
    from impacket.nmb import encode_name

    assert nbstat.encode_netbios_name(name, suffix) == encode_name(name, suffix, None)


def test_encoder_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="transaction_id"):
        nbstat.encode_node_status_request(0x10000)
    with pytest.raises(ValueError, match="longer than 15"):
        nbstat.encode_netbios_name("A" * 16)
    with pytest.raises(ValueError, match="suffix"):
        nbstat.encode_netbios_name("A", 256)
    with pytest.raises(ValueError, match="Latin-1"):
        nbstat.encode_netbios_name("\u4e2d")
    with pytest.raises(ValueError, match="scope"):
        nbstat.encode_netbios_name("A", scope="a..b")
    assert nbstat.encode_netbios_name("a", scope="corp.example").endswith(b"\x04corp\x07example\x00")


# --------------------------------------------------------------------------- round trip and fuzz


def build_response(
    trn_id: int, names: list[NetbiosName], unit_id: bytes, *, compress: bool = False, stats_len: int = 46
) -> bytes:
    """Test-side encoder of a NODE STATUS RESPONSE (RFC 1002 4.2.18)."""
    header = struct.pack(">HHHHHH", trn_id, 0x8400, 0, 1, 0, 0)
    qname = nbstat.encode_netbios_name("*")
    if compress:  # a question echoed, then the answer name as a pointer to it
        header = struct.pack(">HHHHHH", trn_id, 0x8400, 1, 1, 0, 0)
        qname = qname + struct.pack(">HH", 0x21, 1) + b"\xc0\x0c"
    rdata = bytes([len(names)])
    for n in names:
        rdata += n.name.encode("latin-1").ljust(15, b" ") + bytes([n.suffix]) + struct.pack(">H", n.flags)
    rdata += unit_id + bytes(stats_len - 6)
    return header + qname + struct.pack(">HHIH", 0x21, 1, 0, len(rdata)) + rdata


_nb_names = st.builds(
    NetbiosName,
    name=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_$", min_size=1, max_size=15),
    suffix=st.integers(0, 255),
    flags=st.integers(0, 0xFFFF),
)


@settings(max_examples=200, deadline=None)
@given(
    trn_id=st.integers(0, 0xFFFF),
    names=st.lists(_nb_names, max_size=20),
    unit_id=st.binary(min_size=6, max_size=6),
    compress=st.booleans(),
    stats_len=st.integers(6, 60),
)
def test_round_trip(trn_id: int, names: list[NetbiosName], unit_id: bytes, compress: bool, stats_len: int) -> None:
    data = build_response(trn_id, names, unit_id, compress=compress, stats_len=stats_len)
    status = nbstat.decode_node_status_response(data)
    assert status.transaction_id == trn_id
    assert list(status.names) == names
    assert status.mac == ":".join(f"{b:02x}" for b in unit_id)
    assert status.question_name == "*<00>"


def test_samba_zero_unit_id() -> None:
    status = nbstat.decode_node_status_response(build_response(1, [NetbiosName("DC", 0x20, 0x0400)], bytes(6)))
    assert status.mac == "00:00:00:00:00:00"


def test_hostile_messages() -> None:
    good = build_response(7, [NetbiosName("A", 0, 0)], bytes(6))
    looping = good[:12] + b"\xc0\x0c" + good[46:]  # pointer to itself
    with pytest.raises(DecodeError, match="pointer"):
        nbstat.decode_node_status_response(looping)
    with pytest.raises(DecodeError, match="NBSTAT"):
        nbstat.decode_node_status_response(good[:46] + b"\x00\x20" + good[48:])
    many = bytearray(good)
    many[56] = 200  # NUM_NAMES larger than the RDATA
    with pytest.raises(DecodeError, match="200 names"):
        nbstat.decode_node_status_response(bytes(many))
    negative = struct.pack(">HHHHHH", 7, 0x8403, 0, 0, 0, 0)
    with pytest.raises(DecodeError, match="rcode 3"):
        nbstat.decode_node_status_response(negative)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=150).map(lambda b: b"\x00\x01\x84\x00\x00\x00\x00\x01\x00\x00\x00\x00" + b),
    )
)
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        nbstat.decode_node_status_response(data)

"""Connectionless DCE/RPC (v4) codec tests.

Real replies: the Windows XP SP1 reject on UDP 135 and PROFINET IO stacks (mixed byte order) from
``/work/shared/captures`` (README there).  No Windows ept_lookup over UDP exists in any public
capture, so our request is checked by tshark's dissector instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.engine import Engine
from exporter.errors import DecodeError
from exporter.model import ProbeOptions
from exporter.probes import port_spec
from exporter.result import ProbeResult
from exporter.states import PortState, Reason
from exporter.wire import clrpc, dcerpc, epm
from exporter.wire.clrpc import ClPdu
from tests.helpers import CAPTURES
from tests.hostile_rpc import UdpMapper

ACT_ID = uuid.UUID("6a1f7c1e-2b3d-4e5f-8091-a2b3c4d5e6f7")
PNIO_IF = "dea00001-6c97-11d1-8271-00a02442df7d"

needs_captures = pytest.mark.skipif(not CAPTURES.is_dir(), reason="shared captures not mounted")


def udp_payloads(name: str) -> list[bytes]:
    """UDP payloads of every frame of a capture, in order (empty for non-UDP frames)."""
    out = []
    with (CAPTURES / name).open("rb") as fh:
        for _ts, frame in dpkt.pcap.Reader(fh):
            udp = dpkt.ethernet.Ethernet(frame).data.data
            out.append(bytes(udp.data) if isinstance(udp, dpkt.udp.UDP) else b"")
    return out


# --------------------------------------------------------------------------- real replies


@needs_captures
def test_windows_xp_reject() -> None:
    payloads = udp_payloads("clrpc-reject-udp135-winxpsp1.pcap")
    assert payloads[0] == b""  # nmap's empty probe
    reply = payloads[1]
    assert len(reply) == 84
    assert reply[:12] == bytes.fromhex("040600001000000000000000")  # nmap's Windows XP match
    pdu = clrpc.decode_pdu(reply)
    assert (pdu.ptype, pdu.ptype_name, pdu.flags1, pdu.flags2) == (6, "reject", 0, 0)
    assert pdu.drep == b"\x10\x00\x00"
    assert pdu.little_endian
    assert pdu.serial >> 8 == 0
    assert pdu.status == 0x1C000008
    assert pdu.status_name == "nca_rpc_version_mismatch"
    assert pdu.body == bytes.fromhex("0800001c")
    # Stale memory in the rest of the header is read, not validated.
    assert uuid.UUID(pdu.if_uuid).bytes_le == b"Messenger Servic"
    assert pdu.opnum == 18
    second = clrpc.decode_pdu(payloads[3])
    assert (second.ptype_name, second.status_name, second.server_boot) == (
        "reject",
        "nca_rpc_version_mismatch",
        0x495CFE90,
    )
    assert second.if_uuid == second.act_id == str(uuid.UUID(int=0))


def test_reject_with_echoed_garbage_length() -> None:
    """nmap-service-probes 16012: Windows echoes the probe's bytes 7.. in a reject header."""
    header = bytearray(bytes.fromhex("04062000100000") + bytes(range(7, 80)))
    data = bytes(header) + bytes.fromhex("0800001c")
    pdu = clrpc.decode_pdu(data)
    assert (pdu.ptype_name, pdu.flags1, pdu.status_name) == ("reject", 0x20, "nca_rpc_version_mismatch")


@needs_captures
def test_profinet_connect_mixed_byte_order() -> None:
    payloads = udp_payloads("clrpc-profinet-pnio-connect-udp34964.pcap")
    pdus = [clrpc.decode_pdu(p) for p in payloads]
    assert [p.ptype_name for p in pdus] == ["request", "response"] * 4
    assert [p.little_endian for p in pdus] == [False, True, False, True, False, True, True, False]
    assert [p.flags1 for p in pdus] == [0x20, 0x0A] * 4
    assert [p.seqnum for p in pdus] == [0, 0, 1, 1, 2, 2, 0, 0]
    assert [p.opnum for p in pdus] == [0, 0, 3, 3, 4, 4, 4, 4]
    assert [len(p.body) for p in pdus] == [562, 90, 873, 724, 52, 52, 52, 52]
    assert {p.if_uuid for p in pdus[:6]} == {PNIO_IF}
    assert pdus[6].if_uuid == pdus[7].if_uuid == "dea00002-6c97-11d1-8271-00a02442df7d"
    assert {p.act_id for p in pdus[:6]} == {"35fda900-358a-1212-8004-001c060b26ed"}
    assert {p.object_uuid for p in pdus[:6]} == {"dea00000-6c97-11d1-8271-00010101014d"}
    assert all((p.if_vers_major, p.if_vers_minor, p.ihint, p.ahint) == (1, 0, 0xFFFF, 0xFFFF) for p in pdus)
    assert pdus[7].server_boot == 2603989
    assert all(p.status is None for p in pdus)


@needs_captures
def test_profinet_read_little_endian() -> None:
    request, response = (clrpc.decode_pdu(p) for p in udp_payloads("clrpc-profinet-pnio-read-le.pcap"))
    assert (request.ptype_name, request.flags1, request.opnum, len(request.body)) == ("request", 0x08, 5, 84)
    assert (response.ptype_name, response.flags1, response.opnum) == ("response", 0x28, 5)
    assert (len(response.body), response.server_boot, response.little_endian) == (188, 1, True)
    assert response.if_uuid == PNIO_IF


@needs_captures
@pytest.mark.parametrize("name", ["clrpc-profinet-pnio-connect-udp34964.pcap", "clrpc-profinet-pnio-read-le.pcap"])
def test_real_pdus_reencode_byte_for_byte(name: str) -> None:
    for payload in udp_payloads(name):
        assert clrpc.encode_pdu(clrpc.decode_pdu(payload)) == payload


# --------------------------------------------------------------------------- our request


def test_ept_lookup_request_golden() -> None:
    data = clrpc.encode_ept_lookup_request(ACT_ID)
    assert len(data) == 120
    assert data[:8] == bytes.fromhex("0400200010000000")  # vers 4, request, idempotent, LE drep
    assert data[24:40] == uuid.UUID(epm.EPM_INTERFACE_UUID).bytes_le
    assert data[40:56] == ACT_ID.bytes_le
    assert data[80:] == epm.encode_ept_lookup_request()
    pdu = clrpc.decode_pdu(data)
    assert (pdu.ptype_name, pdu.if_uuid, pdu.act_id, pdu.opnum) == (
        "request",
        epm.EPM_INTERFACE_UUID,
        str(ACT_ID),
        2,
    )
    assert (pdu.if_vers_major, pdu.if_vers_minor, pdu.seqnum, pdu.fragnum, pdu.serial) == (3, 0, 0, 0, 0)
    assert (pdu.ihint, pdu.ahint, pdu.auth_proto, pdu.server_boot) == (0xFFFF, 0xFFFF, 0, 0)
    assert pdu.object_uuid == str(uuid.UUID(int=0))


def test_next_page_request() -> None:
    handle = bytes(4) + bytes(range(16))
    pdu = clrpc.decode_pdu(
        clrpc.encode_ept_lookup_request(ACT_ID, seqnum=1, entry_handle=handle, server_boot=77, max_ents=10)
    )
    assert (pdu.seqnum, pdu.server_boot) == (1, 77)
    assert pdu.body == epm.encode_ept_lookup_request(max_ents=10, entry_handle=handle)


def _write_pcap(path: Path, payload: bytes) -> None:
    udp = dpkt.udp.UDP(sport=40000, dport=135, data=payload)
    udp.ulen = 8 + len(payload)
    ip = dpkt.ip.IP(
        src=socket.inet_aton("127.0.0.1"), dst=socket.inet_aton("127.0.0.1"), p=dpkt.ip.IP_PROTO_UDP, data=udp
    )
    ip.len = 20 + len(udp)
    eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x02" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        writer.writepkt(bytes(eth), ts=0)


def test_tshark_dissects_request(tmp_path: Path) -> None:
    """tshark reads our request as DCE/RPC v4 Request, EPM, opnum 2, without any warning.

    The datagram is only written to a file (UDP 127.0.0.1 -> 127.0.0.1:135); nothing is sent.
    """
    tshark = shutil.which("tshark")
    if tshark is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tshark is required in CI")
        pytest.skip("tshark not installed (install the tshark package to run this check)")
    pcap = tmp_path / "clrpc-request.pcap"
    _write_pcap(pcap, clrpc.encode_ept_lookup_request(ACT_ID))
    result = subprocess.run(
        [tshark, "-r", str(pcap), "-V", "-O", "dcerpc,epm"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = result.stdout
    assert "Version: 4" in out
    assert "Packet type: Request (0)" in out
    assert "e1af8308-5d1f-11c9-91a4-08002b14a0fa" in out
    assert "Opnum: 2" in out
    assert "Interface Ver: 3" in out
    assert f"Activity: {ACT_ID}" in out
    assert "Byte order: Little-endian" in out
    assert "Inquiry type: rpc_c_ep_all_elts (0)" in out
    assert "Max entries: 500" in out
    assert "Malformed" not in out
    assert "Expert Info" not in out


# --------------------------------------------------------------------------- errors and status names


def test_decode_errors() -> None:
    good = clrpc.encode_ept_lookup_request(ACT_ID)
    with pytest.raises(DecodeError, match="80 bytes"):
        clrpc.decode_pdu(good[:79])
    with pytest.raises(DecodeError, match="exceeds"):
        clrpc.decode_pdu(good[:100])
    with pytest.raises(DecodeError, match="rpc_vers"):
        clrpc.decode_pdu(b"\x05" + good[1:])
    with pytest.raises(DecodeError, match="packet type"):
        clrpc.decode_pdu(good[:1] + b"\x0b" + good[2:])
    with pytest.raises(DecodeError, match="drep"):
        clrpc.decode_pdu(good[:4] + b"\x20" + good[5:])
    with pytest.raises(DecodeError, match="status"):
        clrpc.decode_pdu(b"\x04\x06" + good[2:80])


def test_status_names_cover_impacket_table() -> None:
    from impacket.dcerpc.v5.rpcrt import rpc_status_codes

    nca = {code for code in rpc_status_codes if code >> 24 == 0x1C}
    assert nca <= set(dcerpc.NCA_STATUS_NAMES)
    assert dcerpc.status_name(0x1C010003) == "nca_s_unk_if"
    assert dcerpc.status_name(epm.EPT_S_NOT_REGISTERED) == "ept_s_not_registered"
    assert dcerpc.status_name(0x12345678) == "0x12345678"


def test_join_fragments() -> None:
    def frag(num: int, flags: int, body: bytes) -> ClPdu:
        pdu = clrpc.decode_pdu(clrpc.encode_ept_lookup_request(ACT_ID))
        return dataclasses.replace(pdu, ptype=2, fragnum=num, flags1=clrpc.PF_FRAG | flags, body=body)

    parts = [frag(1, 0, b"bb"), frag(0, 0, b"aa"), frag(2, clrpc.PF_LAST_FRAG, b"cc"), frag(1, 0, b"bb")]
    assert clrpc.join_fragments(parts) == b"aabbcc"
    with pytest.raises(DecodeError, match="missing"):
        clrpc.join_fragments([parts[1], parts[2]])
    with pytest.raises(DecodeError, match="last-fragment"):
        clrpc.join_fragments(parts[:2])
    with pytest.raises(DecodeError, match="another call"):
        clrpc.join_fragments([parts[0], dataclasses.replace(parts[1], seqnum=9)])
    single = clrpc.decode_pdu(clrpc.encode_ept_lookup_request(ACT_ID))
    assert clrpc.join_fragments([single]) == single.body


def _frag(num: int, flags: int, body: bytes) -> ClPdu:
    pdu = clrpc.decode_pdu(clrpc.encode_ept_lookup_request(ACT_ID))
    return dataclasses.replace(pdu, ptype=2, fragnum=num, flags1=clrpc.PF_FRAG | flags, body=body)


def test_reassembly_as_fragments_arrive() -> None:
    fragments = clrpc.Reassembly()
    assert not fragments.add(_frag(2, clrpc.PF_LAST_FRAG, b"cc"))
    assert not fragments.add(_frag(0, 0, b"aa"))
    assert not fragments.add(_frag(0, 0, b"aa"))  # a retransmission
    with pytest.raises(DecodeError, match="missing fragments \\[1\\]"):
        fragments.body()
    assert fragments.add(_frag(1, 0, b"bb"))
    assert fragments.complete and fragments.body() == b"aabbcc"


def test_reassembly_caps_and_conflicts() -> None:
    with pytest.raises(DecodeError, match="beyond 4 fragments"):
        clrpc.Reassembly(max_fragments=4).add(_frag(4, 0, b"x"))
    big = clrpc.Reassembly(max_bytes=5)
    big.add(_frag(0, 0, b"abc"))
    with pytest.raises(DecodeError, match="larger than 5 bytes"):
        big.add(_frag(1, clrpc.PF_LAST_FRAG, b"def"))
    with pytest.raises(DecodeError, match="larger than 5 bytes"):  # the failure sticks
        big.body()
    assert big.failure is not None and not big.complete
    two_lasts = clrpc.Reassembly()
    two_lasts.add(_frag(1, clrpc.PF_LAST_FRAG, b"b"))
    with pytest.raises(DecodeError, match="both carry the last-fragment flag"):
        two_lasts.add(_frag(2, clrpc.PF_LAST_FRAG, b"c"))
    past = clrpc.Reassembly()
    past.add(_frag(1, clrpc.PF_LAST_FRAG, b"b"))
    with pytest.raises(DecodeError, match="does not fit"):
        past.add(_frag(5, 0, b"c"))
    other = clrpc.Reassembly()
    other.add(_frag(0, 0, b"a"))
    with pytest.raises(DecodeError, match="another call"):
        other.add(dataclasses.replace(_frag(1, 0, b"b"), seqnum=3))


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=12),
    order=st.randoms(use_true_random=False),
    dupes=st.lists(st.integers(0, 11), max_size=5),
)
def test_reassembly_any_order_with_duplicates(bodies: list[bytes], order: random.Random, dupes: list[int]) -> None:
    last = len(bodies) - 1
    frags = [_frag(i, clrpc.PF_LAST_FRAG if i == last else 0, b) for i, b in enumerate(bodies)]
    frags += [frags[i] for i in dupes if i <= last]
    order.shuffle(frags)
    fragments = clrpc.Reassembly()
    done = [fragments.add(f) for f in frags]
    assert done[-1] and fragments.body() == b"".join(bodies)
    assert clrpc.join_fragments(frags) == b"".join(bodies)


# --------------------------------------------------------------------------- properties

_uuids = st.integers(0, 2**128 - 1).map(lambda n: str(uuid.UUID(int=n)))
_u16 = st.integers(0, 0xFFFF)
_u32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def _pdus(draw: st.DrawFn) -> ClPdu:
    ptype = draw(st.integers(0, 10))
    body = draw(st.binary(min_size=4 if ptype in (3, 6) else 0, max_size=64))
    drep = bytes([draw(st.sampled_from([0x00, 0x10, 0x01, 0x11])), draw(st.integers(0, 3)), 0])
    status = None
    if ptype in (3, 6):
        status = int.from_bytes(body[:4], "little" if drep[0] >> 4 else "big")
    return ClPdu(
        ptype=ptype,
        flags1=draw(st.integers(0, 255)),
        flags2=draw(st.integers(0, 255)),
        drep=drep,
        serial=draw(_u16),
        object_uuid=draw(_uuids),
        if_uuid=draw(_uuids),
        act_id=draw(_uuids),
        server_boot=draw(_u32),
        if_vers=draw(_u32),
        seqnum=draw(_u32),
        opnum=draw(_u16),
        ihint=draw(_u16),
        ahint=draw(_u16),
        fragnum=draw(_u16),
        auth_proto=draw(st.integers(0, 255)),
        body=body,
        status=status,
    )


@settings(max_examples=300, deadline=None)
@given(_pdus())
def test_round_trip(pdu: ClPdu) -> None:
    data = clrpc.encode_pdu(pdu)
    assert len(data) == 80 + len(pdu.body)
    assert clrpc.decode_pdu(data) == pdu


@settings(max_examples=100, deadline=None)
@given(act=st.uuids(), seqnum=_u32, max_ents=_u32, handle=st.binary(min_size=20, max_size=20))
def test_request_round_trip(act: uuid.UUID, seqnum: int, max_ents: int, handle: bytes) -> None:
    pdu = clrpc.decode_pdu(clrpc.encode_ept_lookup_request(act, seqnum=seqnum, max_ents=max_ents, entry_handle=handle))
    assert (pdu.act_id, pdu.seqnum) == (str(act), seqnum)
    assert pdu.body == epm.encode_ept_lookup_request(max_ents=max_ents, entry_handle=handle)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.binary(min_size=78, max_size=90).map(lambda b: b"\x04" + b)))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        clrpc.decode_pdu(data)


@settings(max_examples=100, deadline=None)
@given(_pdus(), st.data())
def test_truncated_pdus_raise_decode_error(pdu: ClPdu, data: st.DataObject) -> None:
    raw = clrpc.encode_pdu(pdu)
    cut = data.draw(st.integers(0, 79))
    with pytest.raises(DecodeError):
        clrpc.decode_pdu(raw[:cut])


def test_encode_rejects_out_of_range() -> None:
    pdu = clrpc.decode_pdu(clrpc.encode_ept_lookup_request(ACT_ID))
    with pytest.raises(ValueError, match="out of range"):
        clrpc.encode_pdu(dataclasses.replace(pdu, opnum=70000))
    with pytest.raises(ValueError, match="drep"):
        clrpc.encode_pdu(dataclasses.replace(pdu, drep=b"\x20\x00\x00"))
    with pytest.raises(ValueError, match="serial"):
        clrpc.encode_pdu(dataclasses.replace(pdu, serial=0x10000))


# --------------------------------------------------------------------------- the UDP probe, fragmented replies


async def _probe_udp_epm(port: int) -> ProbeResult:
    [result] = await Engine(udp_pacing_seconds=0).probe_target(
        "epm", "127.0.0.1", [port_spec("udp", port, binding="rpc")], ProbeOptions(timeout_seconds=1.0)
    )
    return result


async def test_udp_probe_reassembles_a_fragmented_ept_lookup_reply() -> None:
    """A loopback mapper of 20 entries answers each page in 200-byte fragments, shuffled, the first one twice."""
    with UdpMapper(20, fragment_size=200, shuffle=True) as mapper:
        r = await _probe_udp_epm(mapper.port)
    assert (r.state, r.reason, r.error) == (PortState.LISTENING, Reason.PROTOCOL_REPLY, "")
    details = r.details["rpc"]
    assert (details.via, details.pages, details.total) == ("udp", 3, 20)  # fragmented pages stay at 8 entries
    assert [e.object_uuid for e in details.entries] == [str(uuid.UUID(int=i + 1)) for i in range(20)]
    assert details.protocol_sequence_counts == {"ncacn_ip_tcp": 20}


async def test_udp_probe_reports_a_missing_fragment() -> None:
    with UdpMapper(20, fragment_size=200, shuffle=True, drop=1) as mapper:
        r = await _probe_udp_epm(mapper.port)
    assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_ERROR)
    assert "missing fragments [1]" in r.error

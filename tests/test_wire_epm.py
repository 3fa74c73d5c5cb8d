"""Endpoint-mapper codec tests against real Windows ept_lookup replies.

Captures and dumps live in ``/work/shared/captures`` (see its README for provenance); expected values
are the ones the README quotes from ``tshark -V``.  impacket's own NDR (``ept_lookupResponse``) and
``PrintStringBinding`` serve as an independent second decoder for the two large dumps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.errors import DecodeError
from exporter.wire import dcerpc, epm
from exporter.wire.epm import EpmEntry, TowerFloor
from tests.encoders import encode_co_response_fragment, encode_ept_lookup_response, encode_tower
from tests.helpers import CAPTURES, tcp_streams

DUMP_346 = CAPTURES / "epm-ept-lookup-response-stub-win10-346entries.bin"
DUMP_430 = CAPTURES / "epm-ept-lookup-response-stub-winserver-dc1-430entries.bin"

pytestmark = pytest.mark.skipif(not CAPTURES.is_dir(), reason="shared captures not mounted")


def server_pdus(name: str) -> tuple[dcerpc.CoPdu, ...]:
    return dcerpc.decode_co_pdus(tcp_streams(name)[135])


def client_pdus(name: str) -> tuple[dcerpc.CoPdu, ...]:
    streams = tcp_streams(name)
    (client,) = (v for k, v in streams.items() if k != 135)
    return dcerpc.decode_co_pdus(client)


# --------------------------------------------------------------------------- the two dumps


def test_win10_dump_346_entries() -> None:
    page = epm.decode_ept_lookup_response(DUMP_346.read_bytes())
    assert page.num_ents == 346
    assert len(page.entries) == 346
    assert page.status == 0
    assert page.entry_handle == bytes(20)
    assert page.is_last
    assert epm.protocol_sequence_counts(page.entries) == {"ncacn_ip_tcp": 13, "ncacn_np": 15, "ncalrpc": 318}
    assert epm.tcp_ports(page.entries) == list(range(49664, 49672))
    first = page.entries[0]
    assert first.interface_uuid == "d95afe70-a6d5-4259-822e-2c84da1ddb0d"
    assert first.interface_version == "1.0"
    assert first.string_binding == "ncacn_ip_tcp:10.0.2.16[49664]"
    assert (first.address, first.endpoint, first.port) == ("10.0.2.16", "49664", 49664)
    assert first.transfer_syntax == epm.NDR_TRANSFER_SYNTAX_UUID
    assert first.interface_name == "[MS-RSP]: Remote Shutdown Protocol"
    assert first.unknown_floors == ()
    evt = page.entries[173]
    assert (evt.interface_uuid, evt.interface_version) == ("f6beaff7-1e19-4fbb-9f8f-b89e2018337c", "1.0")
    assert evt.annotation == "Event log TCPIP"
    assert evt.port == 49665
    assert all(e.address == r"\\MSEDGEWIN10" for e in page.entries if e.protocol_sequence == "ncacn_np")
    assert r"ncacn_np:\\MSEDGEWIN10[\pipe\lsass]" in {e.string_binding for e in page.entries}
    lrpc = next(e for e in page.entries if e.protocol_sequence == "ncalrpc")
    assert lrpc.string_binding == f"ncalrpc:[{lrpc.endpoint}]"
    assert lrpc.address == ""


def test_dc1_dump_430_entries() -> None:
    page = epm.decode_ept_lookup_response(DUMP_430.read_bytes())
    assert (page.num_ents, len(page.entries), page.status) == (430, 430, 0)
    assert page.entry_handle == bytes(20)
    assert epm.protocol_sequence_counts(page.entries) == {
        "ncacn_http": 9,
        "ncacn_ip_tcp": 36,
        "ncacn_np": 29,
        "ncalrpc": 356,
    }
    assert epm.tcp_ports(page.entries) == [
        49664, 49665, 49666, 49667, 49674, 49676, 49679, 49682, 49683, 49688, 49704,
    ]  # fmt: skip
    assert {e.string_binding for e in page.entries if e.protocol_sequence == "ncacn_http"} == {
        "ncacn_http:192.168.0.100[49673]"
    }
    assert {e.address for e in page.entries if e.protocol_sequence == "ncacn_np"} == {r"\\DC1"}
    drs = page.entries[364]
    assert drs.interface_uuid == "e3514235-4b06-11d1-ab04-00c04fc2dcd2"
    assert drs.interface_version == "4.0"
    assert drs.annotation == "MS NT Directory DRS Interface"
    assert drs.string_binding == "ncacn_ip_tcp:192.168.0.100[49667]"
    assert drs.interface_name.startswith("[MS-DRSR]")
    assert drs.provider == "ntdsai.dll"
    frs = page.entries[425]
    assert (frs.interface_uuid, frs.annotation, frs.port) == (
        "897e2e5f-93f3-4376-9c9c-fd2277495c27",
        "Frs2 Service",
        49704,
    )


@pytest.mark.parametrize("dump", [DUMP_346, DUMP_430], ids=["win10", "dc1"])
def test_dumps_match_impacket_decoder(dump: Path) -> None:
    """impacket's NDR and PrintStringBinding give the same bindings, entry by entry."""
    from impacket.dcerpc.v5 import epm as impacket_epm

    data = dump.read_bytes()
    theirs = impacket_epm.ept_lookupResponse(data)
    ours = epm.decode_ept_lookup_response(data)
    assert len(theirs["entries"]) == len(ours.entries)
    for their, mine in zip(theirs["entries"], ours.entries, strict=True):
        tower = impacket_epm.EPMTower(b"".join(their["tower"]["tower_octet_string"]))
        assert impacket_epm.PrintStringBinding(tower["Floors"]) == mine.string_binding
        assert str(tower["Floors"][0]).lower() == f"{mine.interface_uuid} v{mine.interface_version}"


# --------------------------------------------------------------------------- CO captures


def test_rpcdump_pcap_reassembles_to_the_346_dump() -> None:
    pdus = server_pdus("corpc-epm-lookup-all-win10-impacket-rpcdump.pcap")
    assert pdus[0].ptype_name == "bind_ack"
    frags = pdus[1:]
    assert len(frags) == 11
    assert [p.pfc_flags for p in frags] == [0x01] + [0x00] * 9 + [0x02]
    assert [p.frag_length for p in frags] == [4280] * 10 + [2740]
    assert frags[0].alloc_hint == 45276
    stub = dcerpc.co_response_stub(frags)
    assert stub == DUMP_346.read_bytes()
    assert len(epm.decode_ept_lookup_response(stub).entries) == 346


def test_reassembly_as_the_rpcdump_fragments_arrive() -> None:
    """The Windows 10 reply fed one fragment at a time: complete only at the last, the same stub as joined."""
    frags = server_pdus("corpc-epm-lookup-all-win10-impacket-rpcdump.pcap")[1:]
    fragments = dcerpc.CoReassembly()
    assert [fragments.add(p) for p in frags] == [False] * 10 + [True]
    assert (fragments.fragments, fragments.size, fragments.little_endian) == (11, 4280 * 10 + 2740, True)
    assert fragments.stub() == DUMP_346.read_bytes()
    with pytest.raises(DecodeError, match="after the last fragment"):
        fragments.add(frags[0])
    with pytest.raises(DecodeError, match="larger than 40000 bytes"):
        dcerpc.co_response_stub(frags, max_bytes=40_000)
    with pytest.raises(DecodeError, match="more than 10 fragments"):
        dcerpc.co_response_stub(frags, max_fragments=10)


def test_reassembly_refuses_what_does_not_belong() -> None:
    frags = server_pdus("corpc-epm-lookup-all-win10-impacket-rpcdump.pcap")[1:]
    fragments = dcerpc.CoReassembly()
    with pytest.raises(DecodeError, match="fragment 0 has pfc_flags 0x00"):  # no PFC_FIRST_FRAG
        fragments.add(frags[1])
    fragments = dcerpc.CoReassembly()
    fragments.add(frags[0])
    with pytest.raises(DecodeError, match="fragment 1 has pfc_flags 0x01"):  # a second first fragment
        fragments.add(frags[0])
    with pytest.raises(DecodeError, match="call_id 7"):
        fragments.add(dataclasses.replace(frags[1], call_id=7))
    (bind_ack,) = server_pdus("corpc-epm-lookup-all-win10-impacket-rpcdump.pcap")[:1]
    with pytest.raises(DecodeError, match="bind_ack, not a response"):
        fragments.add(bind_ack)
    with pytest.raises(DecodeError, match="no last fragment after 1 fragments"):
        fragments.stub()


def test_reassembly_ends_at_a_fault() -> None:
    (_bind_ack, fault) = server_pdus("corpc-epm-lookup-fault-accessdenied-winxpsp2.pcap")
    fragments = dcerpc.CoReassembly()
    assert fragments.add(fault)
    assert fragments.fault is fault
    with pytest.raises(DecodeError, match="nca_s_fault_access_denied"):
        fragments.stub()


def test_reassembly_cost_is_linear_in_fragments() -> None:
    """A flood of empty non-last fragments stops at the cap, each add touching only its own fragment."""
    first, more = (
        dcerpc.decode_co_pdus(encode_co_response_fragment(2, b"", first=f, last=False))[0] for f in (True, False)
    )
    fragments = dcerpc.CoReassembly()
    fragments.add(first)
    with pytest.raises(DecodeError, match=f"more than {dcerpc.MAX_RESPONSE_FRAGMENTS} fragments"):
        for _ in range(10 * dcerpc.MAX_RESPONSE_FRAGMENTS):
            fragments.add(more)
    assert fragments.fragments == dcerpc.MAX_RESPONSE_FRAGMENTS


def test_a_page_with_more_entries_than_asked_is_refused() -> None:
    data = DUMP_346.read_bytes()
    assert len(epm.decode_ept_lookup_response(data, max_ents=346).entries) == 346
    with pytest.raises(DecodeError, match="346 entries returned for max_ents 345"):
        epm.decode_ept_lookup_response(data, max_ents=345)


def test_rpcdump_request_matches_our_encoder() -> None:
    (bind, request) = client_pdus("corpc-epm-lookup-all-win10-impacket-rpcdump.pcap")
    assert (bind.ptype_name, request.ptype_name) == ("bind", "request")
    assert request.stub == epm.encode_ept_lookup_request(max_ents=499, vers_option=epm.RPC_C_VERS_ALL)


def test_iterated_lookup_win10() -> None:
    """349 one-entry pages, the handle echoed back, ended by ept_s_not_registered (frame 700)."""
    responses = [p for p in server_pdus("corpc-epm-lookup-iterate-handle-win10.pcap") if p.ptype == 2]
    requests = [p for p in client_pdus("corpc-epm-lookup-iterate-handle-win10.pcap") if p.ptype == 0]
    assert len(responses) == len(requests) == 349
    pages = [epm.decode_ept_lookup_response(dcerpc.co_response_stub([p])) for p in responses]
    handle = bytes.fromhex("000000002d6482bbbdd58e498a326b0859c414d0")
    assert all(p.num_ents == 1 and p.entry_handle == handle and not p.is_last for p in pages[:-1])
    last = pages[-1]
    assert (last.num_ents, last.entries, last.entry_handle) == (0, (), bytes(20))
    assert last.status == epm.EPT_S_NOT_REGISTERED
    assert last.is_last
    # Each request is what our encoder makes from the previous page's handle.
    previous = epm.NULL_ENTRY_HANDLE
    for request, page in zip(requests, pages, strict=True):
        assert request.stub == epm.encode_ept_lookup_request(max_ents=1, entry_handle=previous, vers_option=0)
        previous = page.entry_handle
    entries = [e for p in pages for e in p.entries]
    first = entries[0]
    assert first.object_uuid == "765294ba-60bc-48b8-92e9-89fd77769d91"
    assert (first.interface_uuid, first.interface_version) == ("d95afe70-a6d5-4259-822e-2c84da1ddb0d", "1.0")
    assert first.string_binding == "ncacn_ip_tcp:10.0.2.18[49664]"
    assert first.annotation == ""
    assert [f.protocol_id for f in first.floors] == [0x0D, 0x0D, 0x0B, 0x07, 0x09]
    counts = epm.protocol_sequence_counts(entries)
    assert (counts["ncacn_ip_tcp"], counts["ncacn_np"]) == (13, 16)
    assert epm.tcp_ports(entries) == list(range(49664, 49672))
    assert {e.address for e in entries if e.protocol_sequence == "ncacn_np"} == {r"\\MSEDGEWIN10"}


def test_exchange_entry_keeps_unknown_floor_0x20() -> None:
    (_bind_ack, response) = server_pdus("corpc-epm-lookup-1entry-exchange-win2000.pcap")
    page = epm.decode_ept_lookup_response(dcerpc.co_response_stub([response]))
    assert page.entry_handle == bytes(4) + bytes.fromhex("7cfc5f3b92b07544a3e3e4d53df481df")
    assert (page.num_ents, page.status) == (1, 0)
    (entry,) = page.entries
    assert entry.object_uuid == "00000000-0000-0000-0000-000000000000"
    assert entry.annotation == "MS Exchange Directory NSP Interface"
    assert (entry.interface_uuid, entry.interface_version) == ("f5cc5a18-4264-101a-8c59-08002b2f8426", "56.0")
    assert entry.protocol_sequence == "ncacn_http"
    assert entry.port == 5000
    assert entry.string_binding == "ncacn_http:[5000]"
    assert entry.unknown_floors == (TowerFloor(0x20, b"\x20", bytes([192, 168, 0, 2])),)
    assert len(entry.floors) == 5


def test_exchange_match_by_if_request_matches_our_encoder() -> None:
    (_bind, request) = client_pdus("corpc-epm-lookup-1entry-exchange-win2000.pcap")
    stale_object = str(uuid.UUID(bytes_le=request.stub[8:24]))  # the client sent stack garbage
    assert request.stub == epm.encode_ept_lookup_request(
        inquiry_type=epm.RPC_C_EP_MATCH_BY_IF,
        object_uuid=stale_object,
        interface=("f5cc5a18-4264-101a-8c59-08002b2f8426", 56, 0),
        vers_option=epm.RPC_C_VERS_ALL,
        max_ents=1,
    )


def test_access_denied_fault() -> None:
    (_bind_ack, fault) = server_pdus("corpc-epm-lookup-fault-accessdenied-winxpsp2.pcap")
    assert fault.ptype_name == "fault"
    assert fault.pfc_flags == 0x23
    assert (fault.frag_length, fault.call_id, fault.status) == (32, 0, 5)
    from exporter.wire.dcerpc import status_name

    assert status_name(5) == "nca_s_fault_access_denied"
    with pytest.raises(DecodeError):
        dcerpc.co_response_stub([fault])


def test_bind_nak() -> None:
    (nak,) = server_pdus("corpc-bind-nak-tcp135-garbage-probe-winxpsp1.pcap")
    assert (nak.ptype_name, nak.status, nak.call_id, nak.frag_length) == ("bind_nak", 4, 0x40010800, 24)


def test_co_stream_errors() -> None:
    with pytest.raises(DecodeError):
        dcerpc.decode_co_pdus(b"\x05\x00\x02\x03\x10\x00\x00\x00\xff\x00\x00\x00\x01\x00\x00\x00")
    with pytest.raises(DecodeError):
        dcerpc.decode_co_pdus(b"\x04" * 16)
    with pytest.raises(DecodeError):
        dcerpc.co_response_stub([])


# --------------------------------------------------------------------------- encoder


def test_request_stub_golden_and_impacket() -> None:
    from impacket.dcerpc.v5 import epm as impacket_epm
    from impacket.dcerpc.v5.dtypes import NULL

    stub = epm.encode_ept_lookup_request()
    assert stub == bytes(12) + b"\x01\x00\x00\x00" + bytes(20) + b"\xf4\x01\x00\x00"
    request = impacket_epm.ept_lookup()
    request["inquiry_type"] = impacket_epm.RPC_C_EP_ALL_ELTS
    request["object"] = NULL
    request["Ifid"] = NULL
    request["vers_option"] = impacket_epm.RPC_C_VERS_ALL
    request["max_ents"] = 500
    assert request.getData() == stub


def test_request_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="20 bytes"):
        epm.encode_ept_lookup_request(entry_handle=b"\x00")
    with pytest.raises(ValueError, match="out of range"):
        epm.encode_ept_lookup_request(max_ents=-1)


# --------------------------------------------------------------------------- hostile input


def test_truncations_raise_decode_error() -> None:
    data = DUMP_346.read_bytes()
    for cut in [*range(0, 200), *range(200, len(data), 211), len(data) - 1]:
        with pytest.raises(DecodeError):
            epm.decode_ept_lookup_response(data[:cut])


def test_huge_counts_are_refused_quickly() -> None:
    stub = bytes(20) + struct.pack("<IIII", 0xFFFFFFFF, 0xFFFFFFFF, 0, 0xFFFFFFFF) + bytes(64)
    with pytest.raises(DecodeError, match="cannot fit"):
        epm.decode_ept_lookup_response(stub)
    with pytest.raises(DecodeError, match="floors"):
        epm.decode_tower(b"\xff\xff")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        epm.decode_ept_lookup_response(data)
    with contextlib.suppress(DecodeError):
        dcerpc.decode_co_pdus(data)
    with contextlib.suppress(DecodeError):
        epm.decode_tower(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_dump_decodes_or_raises_decode_error(data: st.DataObject) -> None:
    raw = bytearray(DUMP_346.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        epm.decode_ept_lookup_response(bytes(raw))


# --------------------------------------------------------------------------- round trip


_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_\\", max_size=30)


@st.composite
def _entries(draw: st.DrawFn) -> tuple[uuid.UUID, bytes | None, bytes, dict[str, object]]:
    obj = uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))
    annotation = draw(st.text(alphabet="abc XYZ019", max_size=63)).encode()
    if draw(st.booleans()):
        return obj, None, annotation + b"\x00", {"protocol_sequence": "unknown", "annotation": annotation}
    iface = uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))
    major, minor = draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF))
    floors = [
        (b"\x0d" + iface.bytes_le + struct.pack("<H", major), struct.pack("<H", minor)),
        (b"\x0d" + uuid.UUID(epm.NDR_TRANSFER_SYNTAX_UUID).bytes_le + b"\x02\x00", b"\x00\x00"),
        (b"\x0b", b"\x00\x00"),
    ]
    kind = draw(st.sampled_from(["tcp", "udp", "np", "lrpc", "http"]))
    port = draw(st.integers(0, 0xFFFF))
    ip = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
    name = draw(_names)
    ip_text = ".".join(str(b) for b in ip)
    if kind in ("tcp", "udp", "http"):
        floors += [
            ({"tcp": b"\x07", "udp": b"\x08", "http": b"\x1f"}[kind], struct.pack(">H", port)),
            (b"\x09", ip),
        ]
        seq = {"tcp": "ncacn_ip_tcp", "udp": "ncadg_ip_udp", "http": "ncacn_http"}[kind]
        binding = f"{seq}:{ip_text}[{port}]"
    elif kind == "np":
        floors += [(b"\x0f", rb"\PIPE" + name.encode() + b"\x00"), (b"\x11", rb"\\HOST" + b"\x00")]
        seq, binding = "ncacn_np", rf"ncacn_np:\\HOST[\PIPE{name}]"
    else:
        floors += [(b"\x10", b"LRPC-" + name.encode() + b"\x00")]
        seq, binding = "ncalrpc", f"ncalrpc:[LRPC-{name}]"
    if draw(st.booleans()):
        floors.append((b"\x42\x01", b"\xde\xad"))
    expected: dict[str, object] = {
        "interface_uuid": str(iface),
        "interface_version": f"{major}.{minor}",
        "protocol_sequence": seq,
        "string_binding": binding,
        "annotation": annotation,
    }
    return obj, encode_tower(floors), annotation + b"\x00", expected


@settings(max_examples=150, deadline=None)
@given(
    handle=st.binary(min_size=20, max_size=20),
    entries=st.lists(_entries(), max_size=8),
    status=st.sampled_from([0, epm.EPT_S_NOT_REGISTERED]),
)
def test_round_trip_generated_pages(
    handle: bytes, entries: list[tuple[uuid.UUID, bytes | None, bytes, dict[str, object]]], status: int
) -> None:
    stub = encode_ept_lookup_response(handle, [(o, t, a) for o, t, a, _ in entries], status)
    page = epm.decode_ept_lookup_response(stub)
    assert (page.entry_handle, page.num_ents, page.status) == (handle, len(entries), status)
    for entry, (obj, _tower_bytes, _ann, expected) in zip(page.entries, entries, strict=True):
        assert isinstance(entry, EpmEntry)
        assert entry.object_uuid == str(obj)
        for key, value in expected.items():
            got = getattr(entry, key)
            assert (got.encode() if key == "annotation" else got) == value
        assert all(f.protocol_id == 0x42 for f in entry.unknown_floors)


def test_summaries_on_empty_input() -> None:
    assert epm.protocol_sequence_counts([]) == {}
    assert epm.tcp_ports([]) == []


# --------------------------------------------------------------------------- end of list, dynamic ports


@pytest.mark.parametrize(
    ("handle", "num_ents", "status", "last"),
    [
        (bytes(4) + b"\x01" * 16, 1, 0, False),  # Windows mid-list: a live handle
        (bytes(20), 3, 0, True),  # Windows: a null handle with the last entries
        (b"\x01\x00\x00\x00" + bytes(16), 3, 0, True),  # nil UUID = null context handle, whatever the attributes
        (bytes(20), 0, epm.EPT_S_NOT_REGISTERED, True),  # Samba (and Windows' empty last page)
        (bytes(4) + b"\x01" * 16, 2, epm.EPT_S_NOT_REGISTERED, True),  # entries with the end status: still valid
        (bytes(4) + b"\x01" * 16, 0, 0, True),  # an empty page ends the list (no endless paging)
        (bytes(4) + b"\x01" * 16, 1, 5, True),  # any failure status
    ],
)
def test_end_of_list_rule(handle: bytes, num_ents: int, status: int, last: bool) -> None:
    assert epm.EptLookupPage(handle, num_ents, (), status).is_last is last


def _tcp_entry(port: int, iface: str, version: str = "1.0", name: str = "", annotation: str = "") -> EpmEntry:
    return EpmEntry(
        object_uuid=str(uuid.UUID(int=0)),
        interface_uuid=iface,
        interface_version=version,
        annotation=annotation,
        protocol_sequence="ncacn_ip_tcp",
        string_binding=f"ncacn_ip_tcp:198.18.0.2[{port}]",
        address="198.18.0.2",
        endpoint=str(port),
        port=port,
        transfer_syntax=epm.NDR_TRANSFER_SYNTAX_UUID,
        interface_name=name,
        provider="",
        floors=(),
        unknown_floors=(),
    )


def test_dynamic_tcp_ports_groups_labels_and_bounds() -> None:
    drs = "[MS-DRSR]: Directory Replication Service (DRS) Remote Protocol"
    entries = [
        _tcp_entry(135, epm.EPM_INTERFACE_UUID, "3.0"),  # the mapper itself
        _tcp_entry(
            49668, "e3514235-4b06-11d1-ab04-00c04fc2dcd2", "4.0", drs, annotation="MS NT Directory DRS Interface"
        ),
        _tcp_entry(49668, "e3514235-4b06-11d1-ab04-00c04fc2dcd2", "4.0", drs),  # same label once
        _tcp_entry(49668, "12345778-1234-abcd-ef00-0123456789ac", "1.0", annotation="free text, never a label"),
        _tcp_entry(49664, "d95afe70-a6d5-4259-822e-2c84da1ddb0d", "1.0"),
        _tcp_entry(0, "d95afe70-a6d5-4259-822e-2c84da1ddb0d", "1.0"),
    ]
    got = epm.dynamic_tcp_ports(entries, mapper_port=135, max_ports=10, max_labels=10)
    assert got == (
        (49664, ("d95afe70-a6d5-4259-822e-2c84da1ddb0d v1.0",)),
        (49668, (drs, "12345778-1234-abcd-ef00-0123456789ac v1.0")),
    )
    assert epm.dynamic_tcp_ports(entries, mapper_port=135, max_ports=1, max_labels=1) == (
        (49664, ("d95afe70-a6d5-4259-822e-2c84da1ddb0d v1.0",)),
    )
    assert epm.dynamic_tcp_ports(entries, mapper_port=135, max_ports=10, max_labels=1)[1] == (49668, (drs,))
    many = [_tcp_entry(1000 + i % 300, str(uuid.UUID(int=i))) for i in range(3000)]
    bounded = epm.dynamic_tcp_ports(many, mapper_port=135, max_ports=256, max_labels=32)
    assert len(bounded) == 256 and all(len(labels) == 10 for _port, labels in bounded)


def test_dynamic_tcp_ports_of_the_win10_dump() -> None:
    page = epm.decode_ept_lookup_response(DUMP_346.read_bytes())
    got = epm.dynamic_tcp_ports(page.entries, mapper_port=135, max_ports=256, max_labels=32)
    assert [port for port, _ in got] == [p for p in epm.tcp_ports(page.entries) if p != 135]
    assert all(labels for _port, labels in got)

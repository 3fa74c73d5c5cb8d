"""RPC endpoint mapper (EPM) ``ept_lookup``: the request (impacket's NDR), our bounded response decoder, towers.

Pure bytes <-> frozen dataclasses; no sockets, no clocks.  The same NDR stub travels over TCP 135
(connection-oriented DCE/RPC v5, framed by :mod:`exporter.wire.dcerpc`) and UDP 135 (connectionless v4,
:mod:`exporter.wire.clrpc`).  The request is impacket's :class:`impacket.dcerpc.v5.epm.ept_lookup`; the
response is decoded here on :class:`~exporter.wire.reader.Reader` because impacket's NDR unpacking
trusts the counts it reads (a hostile ``max_count`` allocates and loops at will).

Specifications:
    * C706 (DCE 1.1 RPC) appendix L (``ept_lookup``, ``ept_entry_t``, ``twr_t``), appendix I
      (tower floor protocol identifiers) and chapter 14 (NDR).
    * [MS-RPCE] 2.2.1.1 (protocol sequences and their tower floors), 2.2.2.x (string bindings).

Towers (C706 appendix L): a little-endian ``uint16`` floor count, then per floor a little-endian
``uint16`` LHS length, the LHS (its first byte is the protocol identifier), a little-endian ``uint16``
RHS length and the RHS.  Ports are big-endian, IPv4 addresses are 4 bytes in network order, names are
NUL-terminated ASCII.

Check by hand::

    tshark -r corpc-epm-lookup-iterate-handle-win10.pcap -V -Y 'frame.number==4'
"""

from __future__ import annotations

import ipaddress
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from impacket.dcerpc.v5 import epm as impacket_epm
from impacket.dcerpc.v5 import rpcrt
from impacket.dcerpc.v5.dtypes import NULL
from impacket.dcerpc.v5.epm import KNOWN_PROTOCOLS, KNOWN_UUIDS

from exporter.errors import DecodeError
from exporter.wire.reader import Reader

__all__ = [
    "EPM_INTERFACE_UUID",
    "EPM_INTERFACE_VERSION",
    "EPT_LOOKUP_OPNUM",
    "EPT_S_NOT_REGISTERED",
    "NDR_TRANSFER_SYNTAX_UUID",
    "NULL_ENTRY_HANDLE",
    "RPC_C_EP_ALL_ELTS",
    "RPC_C_EP_MATCH_BY_BOTH",
    "RPC_C_EP_MATCH_BY_IF",
    "RPC_C_EP_MATCH_BY_OBJ",
    "RPC_C_VERS_ALL",
    "RPC_C_VERS_COMPATIBLE",
    "RPC_C_VERS_EXACT",
    "RPC_C_VERS_MAJOR_ONLY",
    "RPC_C_VERS_UPTO",
    "EpmEntry",
    "EptLookupPage",
    "TowerFloor",
    "decode_ept_lookup_response",
    "decode_tower",
    "dynamic_tcp_ports",
    "encode_ept_lookup_request",
    "interface_label",
    "protocol_sequence_counts",
    "tcp_ports",
]

#: The endpoint mapper interface (C706 appendix L; impacket's ``MSRPC_UUID_PORTMAP``), version 3.0.
EPM_INTERFACE_UUID = str(uuid.UUID(bytes_le=impacket_epm.MSRPC_UUID_PORTMAP[:16]))
EPM_INTERFACE_VERSION = (
    int.from_bytes(impacket_epm.MSRPC_UUID_PORTMAP[16:18], "little"),
    int.from_bytes(impacket_epm.MSRPC_UUID_PORTMAP[18:20], "little"),
)
EPT_LOOKUP_OPNUM: int = impacket_epm.ept_lookup.opnum
#: NDR 2.0 transfer syntax, the second floor of every Windows tower.
NDR_TRANSFER_SYNTAX_UUID = rpcrt.MSRPC_STANDARD_NDR_SYNTAX[0].lower()

#: ``ept_s_not_registered`` (impacket: ``RPC_NO_MORE_ELEMENTS``): no (more) entries.  Windows and Samba
#: end a paged lookup with it, and the entries returned in that same reply are still valid.
EPT_S_NOT_REGISTERED: int = impacket_epm.RPC_NO_MORE_ELEMENTS

# inquiry_type (C706 appendix L, rpc_c_ep_*); impacket misspells the last two and gives BOTH the value 1.
RPC_C_EP_ALL_ELTS: int = impacket_epm.RPC_C_EP_ALL_ELTS
RPC_C_EP_MATCH_BY_IF: int = impacket_epm.RPC_C_EP_MATCH_BY_IF
RPC_C_EP_MATCH_BY_OBJ: int = impacket_epm.RPC_C_EP_MATH_BY_OBJ
RPC_C_EP_MATCH_BY_BOTH = 3
# vers_option (rpc_c_vers_*)
RPC_C_VERS_ALL: int = impacket_epm.RPC_C_VERS_ALL
RPC_C_VERS_COMPATIBLE: int = impacket_epm.RPC_C_VERS_COMPATIBLE
RPC_C_VERS_EXACT: int = impacket_epm.RPC_C_VERS_EXACT
RPC_C_VERS_MAJOR_ONLY: int = impacket_epm.RPC_C_VERS_MARJOR_ONLY
RPC_C_VERS_UPTO: int = impacket_epm.RPC_C_VERS_UPTO

#: A null ``ept_lookup_handle_t`` (context handle: 4-byte attributes + 16-byte UUID).
NULL_ENTRY_HANDLE = bytes(20)

# Tower floor protocol identifiers impacket does not name (C706 appendix I; [MS-RPCE] 2.2.1.1).
_PROTO_UDP = 0x08
_PROTO_IP = 0x09
_PROTO_RPC_CL = 0x0A
_PROTO_SPX = 0x0C  # impacket's FLOOR_MSNP_IDENTIFIER, which is SPX in C706 and Wireshark
_PROTO_IPX = 0x0E
_PROTO_LOCAL = 0x10  # ncalrpc endpoint (MS "named pipes 2")

_PORT_PROTOCOLS = {
    impacket_epm.FLOOR_TCPPORT_IDENTIFIER: "ncacn_ip_tcp",
    _PROTO_UDP: "ncadg_ip_udp",
    impacket_epm.FLOOR_HTTP_IDENTIFIER: "ncacn_http",
}

# Bounds: a page larger than this is hostile, whatever the header claims.
_MAX_FLOORS = 64
_MIN_ENTRY_BYTES = 16 + 4 + 8  # object UUID, tower pointer, annotation offset + count
_U32_MAX = 0xFFFFFFFF


@dataclass(frozen=True)
class TowerFloor:
    """One protocol tower floor, as received.

    Attributes:
        protocol_id: first LHS byte (C706 appendix I), or ``-1`` when the LHS is empty.
        lhs: the whole left-hand side (protocol identifier data), bytes.
        rhs: the whole right-hand side (related or address data), bytes.
    """

    protocol_id: int
    lhs: bytes
    rhs: bytes


@dataclass(frozen=True)
class EpmEntry:
    """One endpoint-mapper entry (``ept_entry_t``) with its tower interpreted.

    Attributes:
        object_uuid: the entry's object UUID (lower-case text; nil UUID for most entries).
        interface_uuid: interface UUID from floor 1 (``''`` when the tower has no UUID floor).
        interface_version: ``"major.minor"`` from floor 1 (``''`` when absent).
        annotation: annotation string without its NUL (may be empty).
        protocol_sequence: ``ncacn_ip_tcp``, ``ncadg_ip_udp``, ``ncacn_np``, ``ncalrpc``,
            ``ncacn_http``, ``ncacn_spx``, ``ncadg_ipx``, or ``unknown`` (also for a null tower).
        string_binding: e.g. ``ncacn_ip_tcp:198.18.0.2[49664]``, ``ncacn_np:\\\\HOST[\\PIPE\\lsass]``,
            ``ncalrpc:[LRPC-...]``; ``''`` when the protocol sequence is unknown.
        address: network address from the tower (IPv4 text, ``\\\\HOST``, or ``''``).  It is the
            *server's* view (may be 0.0.0.0, NATed or unreachable); never dial it blindly.
        endpoint: port number as text, pipe or LRPC name, or ``''``.
        port: TCP/UDP/HTTP port when the protocol sequence has one, else ``None``.
        transfer_syntax: data representation UUID from floor 2 (``''`` when absent).
        interface_name: protocol name from impacket's ``KNOWN_PROTOCOLS`` (e.g.
            ``"[MS-DRSR]: Directory Replication Service (DRS) Remote Protocol"``), or ``''``.
        provider: server binary from impacket's ``KNOWN_UUIDS`` (e.g. ``"lsass.exe"``), or ``''``.
        floors: every floor, in order.
        unknown_floors: floors this module does not interpret (kept, never fatal).
    """

    object_uuid: str
    interface_uuid: str
    interface_version: str
    annotation: str
    protocol_sequence: str
    string_binding: str
    address: str
    endpoint: str
    port: int | None
    transfer_syntax: str
    interface_name: str
    provider: str
    floors: tuple[TowerFloor, ...]
    unknown_floors: tuple[TowerFloor, ...]


@dataclass(frozen=True)
class EptLookupPage:
    """One ``ept_lookup`` reply (C706 appendix L).

    Attributes:
        entry_handle: the 20-byte context handle to pass to the next call (all zero at the end).
        num_ents: number of entries the server says it returned.
        entries: the decoded entries (``len(entries) == num_ents``).
        status: ``error_status_t``; 0, or :data:`EPT_S_NOT_REGISTERED` at the end of the list.
    """

    entry_handle: bytes
    num_ents: int
    entries: tuple[EpmEntry, ...]
    status: int

    @property
    def is_last(self) -> bool:
        """True when no further page should be requested: the one end-of-list rule for TCP and UDP.

        C706 appendix L: the server returns a null ``entry_handle`` once the list is exhausted, and
        ``ept_s_not_registered`` (0x16c9a0d6) when nothing (more) matches.  Windows ends with a null
        handle (and ept_s_not_registered on the empty page after the last entry); Samba returns every
        entry in one page and then ept_s_not_registered with a null handle.  So: any non-zero status
        (also a failure status), an empty page, or a handle whose UUID is nil ([MS-RPCE] 2.2.4.6: a
        context handle with a nil UUID is null) ends the list.  The entries of the last page are valid.
        """
        return self.status != 0 or self.num_ents == 0 or self.entry_handle[4:] == bytes(16)


# --------------------------------------------------------------------------- NDR


def _uuid_from_ndr(raw: bytes, little_endian: bool) -> str:
    return str(uuid.UUID(bytes_le=raw) if little_endian else uuid.UUID(bytes=raw))


def _cstring(raw: bytes) -> str:
    """Text up to the first NUL; undecodable bytes become U+FFFD."""
    return raw.split(b"\x00", 1)[0].decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- towers


def decode_tower(octets: bytes) -> tuple[TowerFloor, ...]:
    """Split a tower octet string into floors (C706 appendix L).

    Args:
        octets: the ``tower_octet_string`` (floor count, then floors; all counts little-endian).

    Returns:
        The floors in order.  Trailing bytes after the last floor are ignored (Windows pads none).

    Raises:
        DecodeError: the floor count or a floor runs past the end, or more than 64 floors.
    """
    r = Reader(octets, little_endian=True)
    count = r.u16("tower floor count")
    if count > _MAX_FLOORS:
        raise DecodeError(f"tower claims {count} floors (max {_MAX_FLOORS})", 0)
    floors: list[TowerFloor] = []
    for _ in range(count):
        lhs = r.bytes(r.u16("floor LHS length"), "floor LHS")
        rhs = r.bytes(r.u16("floor RHS length"), "floor RHS")
        floors.append(TowerFloor(lhs[0] if lhs else -1, lhs, rhs))
    return tuple(floors)


def _interpret(object_uuid: str, annotation: str, floors: tuple[TowerFloor, ...]) -> EpmEntry:
    """Turn floors into an :class:`EpmEntry` ([MS-RPCE] 2.2.1.1; impacket ``PrintStringBinding``)."""
    interface_uuid = interface_version = transfer_syntax = interface_name = provider = ""
    protseq = address = endpoint = ""
    port: int | None = None
    unknown: list[TowerFloor] = []
    uuid_floors = 0
    for floor in floors:
        pid, lhs, rhs = floor.protocol_id, floor.lhs, floor.rhs
        if pid == impacket_epm.FLOOR_UUID_IDENTIFIER and len(lhs) == 19 and len(rhs) == 2:
            text = str(uuid.UUID(bytes_le=lhs[1:17]))
            major = int.from_bytes(lhs[17:19], "little")
            minor = int.from_bytes(rhs, "little")
            if uuid_floors == 0:
                interface_uuid, interface_version = text, f"{major}.{minor}"
                interface_name = KNOWN_PROTOCOLS.get(text.upper(), "")
                provider = KNOWN_UUIDS.get(lhs[1:19], "")
            elif uuid_floors == 1:
                transfer_syntax = text
            else:
                unknown.append(floor)
            uuid_floors += 1
        elif pid in (impacket_epm.FLOOR_RPCV5_IDENTIFIER, _PROTO_RPC_CL) and len(lhs) == 1:
            pass  # RPC protocol floor: RHS is the minor version, nothing to report
        elif pid in _PORT_PROTOCOLS and len(rhs) == 2 and len(lhs) == 1:
            protseq = _PORT_PROTOCOLS[pid]
            port = int.from_bytes(rhs, "big")
            endpoint = str(port)
        elif pid == _PROTO_IP and len(rhs) == 4 and len(lhs) == 1:
            address = str(ipaddress.IPv4Address(rhs))
        elif pid == impacket_epm.FLOOR_NBNP_IDENTIFIER and len(lhs) == 1:
            protseq, endpoint = "ncacn_np", _cstring(rhs)
        elif pid == _PROTO_LOCAL and len(lhs) == 1:
            protseq, endpoint = "ncalrpc", _cstring(rhs)
        elif pid == impacket_epm.FLOOR_MSNB_IDENTIFIER and len(lhs) == 1:
            address = _cstring(rhs)
        elif pid == _PROTO_SPX and len(rhs) == 2 and len(lhs) == 1:
            protseq = "ncacn_spx"
            endpoint = str(int.from_bytes(rhs, "big"))
        elif pid == _PROTO_IPX and len(rhs) == 2 and len(lhs) == 1:
            protseq = "ncadg_ipx"
            endpoint = str(int.from_bytes(rhs, "big"))
        else:
            unknown.append(floor)
    if protseq == "ncalrpc":
        address = ""
    binding = f"{protseq}:{address}[{endpoint}]" if protseq else ""
    return EpmEntry(
        object_uuid=object_uuid,
        interface_uuid=interface_uuid,
        interface_version=interface_version,
        annotation=annotation,
        protocol_sequence=protseq or "unknown",
        string_binding=binding,
        address=address,
        endpoint=endpoint,
        port=port,
        transfer_syntax=transfer_syntax,
        interface_name=interface_name,
        provider=provider,
        floors=floors,
        unknown_floors=tuple(unknown),
    )


# --------------------------------------------------------------------------- ept_lookup


def decode_ept_lookup_response(
    stub: bytes, *, little_endian: bool = True, max_ents: int | None = None
) -> EptLookupPage:
    """Decode the NDR stub of an ``ept_lookup`` response (C706 appendix L, NDR 2.0 chapter 14).

    Layout: ``entry_handle`` (20 bytes), ``num_ents`` (uint32), the conformant-varying array of
    ``ept_entry_t`` (max_count, offset, actual_count; each entry: object UUID (16), tower pointer
    referent id (4), annotation as a varying string (offset, length, chars, padded to 4)), then the
    deferred towers (max_count, tower_length, octets, padded to 4), then ``status`` (uint32).

    Args:
        stub: the stub bytes (without any DCE/RPC header), as reassembled from all fragments.
        little_endian: integer byte order from the PDU's ``drep`` (Windows and Samba: little).
        max_ents: the ``max_ents`` of the request: a server may return at most that many entries (C706 appendix
            L), so a page claiming more is refused before any entry is decoded; ``None`` for no check.

    Returns:
        The page.  A fault is not a page: check the PDU type before calling this.

    Raises:
        DecodeError: truncated or inconsistent counts, more entries than ``max_ents``, hostile lengths,
            malformed towers, or trailing bytes; the offset is the byte in ``stub`` where decoding failed.
    """
    r = Reader(stub, little_endian=little_endian)

    def ulong(what: str) -> int:
        r.align(4)
        return r.u32(what)

    handle = r.bytes(20, "entry_handle")
    num_ents = ulong("num_ents")
    if max_ents is not None and num_ents > max_ents:
        raise r.error(f"{num_ents} entries returned for max_ents {max_ents}", r.pos - 4)
    max_count = ulong("entries max_count")
    offset = ulong("entries offset")
    actual = ulong("entries actual_count")
    if actual != num_ents:
        raise r.error(f"array actual_count {actual} != num_ents {num_ents}", r.pos - 4)
    if offset > max_count or actual > max_count - offset:
        raise r.error(f"array offset {offset} + count {actual} exceeds max_count {max_count}", r.pos - 4)
    if actual * _MIN_ENTRY_BYTES > r.remaining:
        raise r.error(f"{actual} entries cannot fit in {r.remaining} bytes")
    heads: list[tuple[str, int, str]] = []
    for _ in range(actual):
        r.align(4)
        obj = _uuid_from_ndr(r.bytes(16, "object uuid"), little_endian)
        ref = ulong("tower pointer")
        ulong("annotation offset")  # a varying string's offset is always 0 in practice and carries no data
        chars = r.bytes(ulong("annotation length"), "annotation")
        heads.append((obj, ref, _cstring(chars)))
    entries: list[EpmEntry] = []
    for obj, ref, annotation in heads:
        if ref == 0:
            entries.append(_interpret(obj, annotation, ()))
            continue
        t_max = ulong("tower max_count")
        t_len = ulong("tower_length")
        if t_max != t_len:
            raise r.error(f"tower max_count {t_max} != tower_length {t_len}", r.pos - 4)
        start = r.pos
        octets = r.bytes(t_len, "tower octets")
        try:
            floors = decode_tower(octets)
        except DecodeError as err:
            raise r.error(f"entry {len(entries) + 1}: {err}", start + max(err.offset, 0)) from err
        entries.append(_interpret(obj, annotation, floors))
    status = ulong("status")
    if r.remaining:
        raise r.error(f"{r.remaining} trailing bytes after status")
    return EptLookupPage(entry_handle=handle, num_ents=num_ents, entries=tuple(entries), status=status)


def encode_ept_lookup_request(
    *,
    max_ents: int = 500,
    entry_handle: bytes = NULL_ENTRY_HANDLE,
    inquiry_type: int = RPC_C_EP_ALL_ELTS,
    object_uuid: str | None = None,
    interface: tuple[str, int, int] | None = None,
    vers_option: int = RPC_C_VERS_ALL,
) -> bytes:
    """Encode the NDR stub of an ``ept_lookup`` request (opnum 2; C706 appendix L; little-endian NDR 2.0).

    Built with impacket's :class:`~impacket.dcerpc.v5.epm.ept_lookup`; the pointer referent ids are
    fixed (1 for ``object``, 2 for ``Ifid``, as Windows clients send) so the bytes are deterministic.
    The default asks for every element (``RPC_C_EP_ALL_ELTS``, null object and interface), as PortQry,
    rpcdump and ``RpcMgmtEpEltInqBegin`` do.  The stub is the same over TCP and UDP.

    Args:
        max_ents: entries wanted in this page (uint32).
        entry_handle: the 20-byte handle from the previous page (null for the first call).
        inquiry_type: ``RPC_C_EP_*``.
        object_uuid: object UUID to match, or ``None`` for a null pointer.
        interface: ``(uuid, major, minor)`` to match, or ``None`` for a null pointer.
        vers_option: ``RPC_C_VERS_*``.

    Returns:
        The stub bytes (40 bytes with both pointers null).

    Raises:
        ValueError: a handle that is not 20 bytes, a malformed UUID, or a value out of range for its field.
    """
    if len(entry_handle) != 20:
        raise ValueError(f"entry_handle must be 20 bytes, got {len(entry_handle)}")
    for name, value, top in (
        ("max_ents", max_ents, _U32_MAX),
        ("inquiry_type", inquiry_type, _U32_MAX),
        ("vers_option", vers_option, _U32_MAX),
    ):
        if not 0 <= value <= top:
            raise ValueError(f"ept_lookup field out of range: {name} {value}")
    request = impacket_epm.ept_lookup()
    request["inquiry_type"] = inquiry_type
    if object_uuid is None:
        request["object"] = NULL
    else:
        request["object"] = uuid.UUID(object_uuid).bytes_le
        request.fields["object"].fields["ReferentID"] = 1
    if interface is None:
        request["Ifid"] = NULL
    else:
        if_uuid, major, minor = interface
        if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF):
            raise ValueError(f"ept_lookup field out of range: interface version {major}.{minor}")
        request["Ifid"]["Uuid"] = uuid.UUID(if_uuid).bytes_le
        request["Ifid"]["VersMajor"] = major
        request["Ifid"]["VersMinor"] = minor
        request.fields["Ifid"].fields["ReferentID"] = 2
    handle = impacket_epm.ept_lookup_handle_t()
    handle["context_handle_attributes"] = int.from_bytes(entry_handle[:4], "little")
    handle["context_handle_uuid"] = entry_handle[4:]
    request["entry_handle"] = handle
    request["vers_option"] = vers_option
    request["max_ents"] = max_ents
    return bytes(request.getData())


# --------------------------------------------------------------------------- summaries


def protocol_sequence_counts(entries: Iterable[EpmEntry]) -> dict[str, int]:
    """Count entries per protocol sequence (the ``portqry_rpc_endpoints`` metric).

    Args:
        entries: decoded entries, possibly from several pages.

    Returns:
        ``{"ncacn_ip_tcp": 13, "ncalrpc": 318, ...}``, keys sorted.
    """
    counts = Counter(e.protocol_sequence for e in entries)
    return dict(sorted(counts.items()))


def tcp_ports(entries: Iterable[EpmEntry]) -> list[int]:
    """Distinct ``ncacn_ip_tcp`` ports, sorted ascending.

    Args:
        entries: decoded entries.

    Returns:
        Sorted distinct port numbers (the mapper's own 135 included when it is listed).
    """
    return sorted({e.port for e in entries if e.protocol_sequence == "ncacn_ip_tcp" and e.port is not None})


def interface_label(entry: EpmEntry) -> str:
    """The ``interface`` label of an entry: impacket's known protocol name, else ``"UUID vX.Y"``.

    Never the annotation: that is free text the server chooses, and labels must stay bounded.
    """
    return entry.interface_name or f"{entry.interface_uuid} v{entry.interface_version}"


def dynamic_tcp_ports(
    entries: Iterable[EpmEntry], *, mapper_port: int, max_ports: int, max_labels: int
) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """The dynamic ``ncacn_ip_tcp`` ports of a dump, each with the interfaces registered on it.

    Args:
        entries: decoded entries, in server order.
        mapper_port: the port the mapper was queried on (it registers itself there); left out.
        max_ports: the most ports returned (the lowest ``max_ports``).
        max_labels: the most interface labels kept per port (first seen first).

    Returns:
        ``((port, (label, ...)), ...)`` sorted by port; labels are :func:`interface_label`, distinct,
        in server order.  Port 0 and entries without a port are skipped.
    """
    by_port: dict[int, list[str]] = {}
    for e in entries:
        if e.protocol_sequence == "ncacn_ip_tcp" and e.port and e.port != mapper_port:
            labels = by_port.setdefault(e.port, [])
            label = interface_label(e)
            if label not in labels and len(labels) < max_labels:
                labels.append(label)
    return tuple((port, tuple(by_port[port])) for port in sorted(by_port)[:max_ports])

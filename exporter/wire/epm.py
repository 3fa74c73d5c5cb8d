"""RPC endpoint mapper (EPM) ``ept_lookup`` codec: NDR stubs and protocol towers.

Pure bytes <-> frozen dataclasses; no sockets, no clocks.  The same NDR stub travels over TCP 135
(connection-oriented DCE/RPC v5, 24-byte response header) and UDP 135 (connectionless v4, 80-byte
header, see :mod:`exporter.wire.clrpc`); this module handles the stub and, for captures and TCP
streams, the connection-oriented PDU framing.

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
import struct
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from impacket.dcerpc.v5.epm import KNOWN_PROTOCOLS, KNOWN_UUIDS

from exporter.errors import DecodeError

__all__ = [
    "CO_HEADER_LEN",
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
    "CoPdu",
    "EpmEntry",
    "EptLookupPage",
    "TowerFloor",
    "co_response_stub",
    "decode_co_pdus",
    "decode_ept_lookup_response",
    "decode_tower",
    "encode_ept_lookup_request",
    "protocol_sequence_counts",
    "tcp_ports",
]

#: The endpoint mapper interface (C706 appendix L), version 3.0; ``ept_lookup`` is opnum 2.
EPM_INTERFACE_UUID = "e1af8308-5d1f-11c9-91a4-08002b14a0fa"
EPM_INTERFACE_VERSION = (3, 0)
EPT_LOOKUP_OPNUM = 2
#: NDR 2.0 transfer syntax, the second floor of every Windows tower.
NDR_TRANSFER_SYNTAX_UUID = "8a885d04-1ceb-11c9-9fe8-08002b104860"

#: ``ept_s_not_registered``: no (more) entries.  Windows and Samba end a paged lookup with it, and the
#: entries returned in that same reply are still valid.
EPT_S_NOT_REGISTERED = 0x16C9A0D6

# inquiry_type (C706 appendix L, rpc_c_ep_*)
RPC_C_EP_ALL_ELTS = 0
RPC_C_EP_MATCH_BY_IF = 1
RPC_C_EP_MATCH_BY_OBJ = 2
RPC_C_EP_MATCH_BY_BOTH = 3
# vers_option (rpc_c_vers_*)
RPC_C_VERS_ALL = 1
RPC_C_VERS_COMPATIBLE = 2
RPC_C_VERS_EXACT = 3
RPC_C_VERS_MAJOR_ONLY = 4
RPC_C_VERS_UPTO = 5

#: A null ``ept_lookup_handle_t`` (context handle: 4-byte attributes + 16-byte UUID).
NULL_ENTRY_HANDLE = bytes(20)

# Tower floor protocol identifiers (C706 appendix I; [MS-RPCE] 2.2.1.1).
_PROTO_TCP = 0x07
_PROTO_UDP = 0x08
_PROTO_IP = 0x09
_PROTO_RPC_CL = 0x0A
_PROTO_RPC_CO = 0x0B
_PROTO_SPX = 0x0C
_PROTO_UUID = 0x0D
_PROTO_IPX = 0x0E
_PROTO_NAMED_PIPE = 0x0F
_PROTO_LOCAL = 0x10  # ncalrpc endpoint (MS "named pipes 2")
_PROTO_NETBIOS = 0x11
_PROTO_HTTP = 0x1F

_PORT_PROTOCOLS = {_PROTO_TCP: "ncacn_ip_tcp", _PROTO_UDP: "ncadg_ip_udp", _PROTO_HTTP: "ncacn_http"}

# Bounds: a page larger than this is hostile, whatever the header claims.
_MAX_FLOORS = 64
_MIN_ENTRY_BYTES = 16 + 4 + 8  # object UUID, tower pointer, annotation offset + count

CO_HEADER_LEN = 16
_CO_PTYPE_NAMES = {
    0: "request",
    2: "response",
    3: "fault",
    11: "bind",
    12: "bind_ack",
    13: "bind_nak",
    14: "alter_context",
    15: "alter_context_resp",
    16: "auth3",
    17: "shutdown",
    18: "co_cancel",
    19: "orphaned",
    20: "rts",
}
_PFC_FIRST_FRAG = 0x01
_PFC_LAST_FRAG = 0x02


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
    """One ``ept_lookup`` reply.

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
        """True when no further page should be requested (null handle or a non-zero status)."""
        return self.status != 0 or self.entry_handle[4:] == bytes(16)


@dataclass(frozen=True)
class CoPdu:
    """A connection-oriented (v5) DCE/RPC PDU (C706 12.6), as found in a TCP 135 stream.

    Attributes:
        ptype: PDU type (0 request, 2 response, 3 fault, 12 bind_ack, 13 bind_nak, ...).
        pfc_flags: ``PFC_*`` flags (0x01 first fragment, 0x02 last fragment, 0x20 did not execute).
        little_endian: integer representation from ``drep[0]``.
        frag_length: PDU length in bytes, header included.
        call_id: call identifier.
        alloc_hint: request/response/fault only (else 0).
        status: fault status (ptype 3), or bind_nak reject reason (ptype 13); else ``None``.
        stub: stub data for request/response (auth trailer removed); else the body after the header.
    """

    ptype: int
    pfc_flags: int
    little_endian: bool
    frag_length: int
    call_id: int
    alloc_hint: int
    status: int | None
    stub: bytes

    @property
    def ptype_name(self) -> str:
        """Name of the PDU type (``"response"``, ``"fault"``, ...), or ``"ptype_N"``."""
        return _CO_PTYPE_NAMES.get(self.ptype, f"ptype_{self.ptype}")


# --------------------------------------------------------------------------- NDR reading


class _Reader:
    """Bounds-checked NDR reader; every failure is a :class:`DecodeError` with the offset."""

    def __init__(self, data: bytes, little_endian: bool) -> None:
        self.data = data
        self.pos = 0
        self.u32 = struct.Struct("<I" if little_endian else ">I")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(f"truncated {what}: need {n} bytes, have {len(self.data) - self.pos}", self.pos)

    def align(self, n: int) -> None:
        pad = -self.pos % n
        self.need(pad, "alignment padding")
        self.pos += pad

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def ulong(self, what: str) -> int:
        self.align(4)
        self.need(4, what)
        (value,) = self.u32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)


def _uuid_from_ndr(raw: bytes, little_endian: bool) -> str:
    return str(uuid.UUID(bytes_le=raw) if little_endian else uuid.UUID(bytes=raw))


def _uuid_to_ndr(value: str | uuid.UUID, little_endian: bool = True) -> bytes:
    u = value if isinstance(value, uuid.UUID) else uuid.UUID(value)
    return u.bytes_le if little_endian else u.bytes


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
    if len(octets) < 2:
        raise DecodeError("tower shorter than its floor count", 0)
    (count,) = struct.unpack_from("<H", octets, 0)
    if count > _MAX_FLOORS:
        raise DecodeError(f"tower claims {count} floors (max {_MAX_FLOORS})", 0)
    pos = 2
    floors: list[TowerFloor] = []
    for _ in range(count):
        if pos + 2 > len(octets):
            raise DecodeError("truncated floor LHS length", pos)
        (lhs_len,) = struct.unpack_from("<H", octets, pos)
        pos += 2
        if pos + lhs_len + 2 > len(octets):
            raise DecodeError(f"floor LHS of {lhs_len} bytes runs past the tower", pos)
        lhs = octets[pos : pos + lhs_len]
        pos += lhs_len
        (rhs_len,) = struct.unpack_from("<H", octets, pos)
        pos += 2
        if pos + rhs_len > len(octets):
            raise DecodeError(f"floor RHS of {rhs_len} bytes runs past the tower", pos)
        rhs = octets[pos : pos + rhs_len]
        pos += rhs_len
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
        if pid == _PROTO_UUID and len(lhs) == 19 and len(rhs) == 2:
            text = str(uuid.UUID(bytes_le=lhs[1:17]))
            (major,) = struct.unpack_from("<H", lhs, 17)
            (minor,) = struct.unpack_from("<H", rhs, 0)
            if uuid_floors == 0:
                interface_uuid, interface_version = text, f"{major}.{minor}"
                interface_name = KNOWN_PROTOCOLS.get(text.upper(), "")
                provider = KNOWN_UUIDS.get(lhs[1:19], "")
            elif uuid_floors == 1:
                transfer_syntax = text
            else:
                unknown.append(floor)
            uuid_floors += 1
        elif pid in (_PROTO_RPC_CO, _PROTO_RPC_CL) and len(lhs) == 1:
            pass  # RPC protocol floor: RHS is the minor version, nothing to report
        elif pid in _PORT_PROTOCOLS and len(rhs) == 2 and len(lhs) == 1:
            protseq = _PORT_PROTOCOLS[pid]
            (port,) = struct.unpack(">H", rhs)
            endpoint = str(port)
        elif pid == _PROTO_IP and len(rhs) == 4 and len(lhs) == 1:
            address = str(ipaddress.IPv4Address(rhs))
        elif pid == _PROTO_NAMED_PIPE and len(lhs) == 1:
            protseq, endpoint = "ncacn_np", _cstring(rhs)
        elif pid == _PROTO_LOCAL and len(lhs) == 1:
            protseq, endpoint = "ncalrpc", _cstring(rhs)
        elif pid == _PROTO_NETBIOS and len(lhs) == 1:
            address = _cstring(rhs)
        elif pid == _PROTO_SPX and len(rhs) == 2 and len(lhs) == 1:
            protseq = "ncacn_spx"
            endpoint = str(struct.unpack(">H", rhs)[0])
        elif pid == _PROTO_IPX and len(rhs) == 2 and len(lhs) == 1:
            protseq = "ncadg_ipx"
            endpoint = str(struct.unpack(">H", rhs)[0])
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


def decode_ept_lookup_response(stub: bytes, *, little_endian: bool = True) -> EptLookupPage:
    """Decode the NDR stub of an ``ept_lookup`` response (C706 appendix L, NDR 2.0).

    Layout: ``entry_handle`` (20 bytes), ``num_ents`` (uint32), the conformant-varying array of
    ``ept_entry_t`` (max_count, offset, actual_count; each entry: object UUID (16), tower pointer
    referent id (4), annotation as a varying string (offset, length, chars, padded to 4)), then the
    deferred towers (max_count, tower_length, octets, padded to 4), then ``status`` (uint32).

    Args:
        stub: the stub bytes (without any DCE/RPC header), as reassembled from all fragments.
        little_endian: integer byte order from the PDU's ``drep`` (Windows and Samba: little).

    Returns:
        The page.  A fault is not a page: check the PDU type before calling this.

    Raises:
        DecodeError: truncated or inconsistent counts, hostile lengths, or malformed towers.
    """
    r = _Reader(stub, little_endian)
    handle = r.take(20, "entry_handle")
    num_ents = r.ulong("num_ents")
    max_count = r.ulong("entries max_count")
    offset = r.ulong("entries offset")
    actual = r.ulong("entries actual_count")
    if actual != num_ents:
        raise DecodeError(f"array actual_count {actual} != num_ents {num_ents}", r.pos - 4)
    if offset > max_count or actual > max_count - offset:
        raise DecodeError(f"array offset {offset} + count {actual} exceeds max_count {max_count}", r.pos - 4)
    if actual * _MIN_ENTRY_BYTES > len(stub) - r.pos:
        raise DecodeError(f"{actual} entries cannot fit in {len(stub) - r.pos} bytes", r.pos)
    heads: list[tuple[str, int, str]] = []
    for _ in range(actual):
        r.align(4)
        obj = _uuid_from_ndr(r.take(16, "object uuid"), little_endian)
        ref = r.ulong("tower pointer")
        s_off = r.ulong("annotation offset")
        s_len = r.ulong("annotation length")
        chars = r.take(s_len, "annotation")
        del s_off  # a varying string's offset is always 0 in practice and carries no data
        heads.append((obj, ref, _cstring(chars)))
    entries: list[EpmEntry] = []
    for obj, ref, annotation in heads:
        if ref == 0:
            entries.append(_interpret(obj, annotation, ()))
            continue
        t_max = r.ulong("tower max_count")
        t_len = r.ulong("tower_length")
        if t_max != t_len:
            raise DecodeError(f"tower max_count {t_max} != tower_length {t_len}", r.pos - 4)
        start = r.pos
        octets = r.take(t_len, "tower octets")
        try:
            floors = decode_tower(octets)
        except DecodeError as err:
            raise DecodeError(f"entry {len(entries) + 1}: {err}", start + max(err.offset, 0)) from err
        entries.append(_interpret(obj, annotation, floors))
    status = r.ulong("status")
    if r.pos != len(stub):
        raise DecodeError(f"{len(stub) - r.pos} trailing bytes after status", r.pos)
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
    """Encode the NDR stub of an ``ept_lookup`` request (opnum 2; little-endian NDR 2.0).

    The default asks for every element (``RPC_C_EP_ALL_ELTS``, null object and interface), as
    PortQry, rpcdump and ``RpcMgmtEpEltInqBegin`` do.  The stub is the same over TCP and UDP.

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
        ValueError: a handle that is not 20 bytes, or a value out of range for its field.
    """
    if len(entry_handle) != 20:
        raise ValueError(f"entry_handle must be 20 bytes, got {len(entry_handle)}")
    try:
        out = struct.pack("<I", inquiry_type)
        # [ptr] parameters: a non-zero referent id, then the referent inline; 0 for NULL.
        if object_uuid is not None:
            out += struct.pack("<I", 1) + _uuid_to_ndr(object_uuid)
        else:
            out += bytes(4)
        if interface is not None:
            if_uuid, major, minor = interface
            out += struct.pack("<I", 2) + _uuid_to_ndr(if_uuid) + struct.pack("<HH", major, minor)
        else:
            out += bytes(4)
        out += struct.pack("<I", vers_option) + entry_handle + struct.pack("<I", max_ents)
    except struct.error as err:
        raise ValueError(f"ept_lookup field out of range: {err}") from err
    return out


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
    """Distinct ``ncacn_ip_tcp`` ports, sorted ascending (the dynamic ports to probe).

    Args:
        entries: decoded entries.

    Returns:
        Sorted distinct port numbers.
    """
    return sorted({e.port for e in entries if e.protocol_sequence == "ncacn_ip_tcp" and e.port is not None})


# --------------------------------------------------------------------------- CO framing


def decode_co_pdus(stream: bytes) -> tuple[CoPdu, ...]:
    """Split a connection-oriented DCE/RPC byte stream into PDUs (C706 12.6).

    Args:
        stream: concatenated TCP payload of one direction; must hold whole PDUs.

    Returns:
        The PDUs in order.

    Raises:
        DecodeError: a version other than 5.0, a ``frag_length`` shorter than its header, or a
            PDU cut short at the end of ``stream``.
    """
    pdus: list[CoPdu] = []
    pos = 0
    while pos < len(stream):
        if len(stream) - pos < CO_HEADER_LEN:
            raise DecodeError("truncated connection-oriented header", pos)
        vers, minor, ptype, flags = stream[pos : pos + 4]
        if vers != 5 or minor > 1:
            raise DecodeError(f"not DCE/RPC v5: version {vers}.{minor}", pos)
        drep0 = stream[pos + 4]
        if drep0 >> 4 not in (0, 1):
            raise DecodeError(f"unknown integer representation in drep 0x{drep0:02x}", pos + 4)
        le = drep0 >> 4 == 1
        frag_len, auth_len, call_id = struct.unpack_from("<HHI" if le else ">HHI", stream, pos + 8)
        if frag_len < CO_HEADER_LEN or pos + frag_len > len(stream):
            raise DecodeError(f"frag_length {frag_len} invalid for {len(stream) - pos} bytes left", pos + 8)
        pdu = stream[pos : pos + frag_len]
        alloc_hint = 0
        status: int | None = None
        body = pdu[CO_HEADER_LEN:]
        u32 = "<I" if le else ">I"
        if ptype in (0, 2, 3):
            if frag_len < 24:
                raise DecodeError("request/response/fault PDU shorter than 24 bytes", pos)
            (alloc_hint,) = struct.unpack_from(u32, pdu, 16)
            end = frag_len
            if auth_len:
                end = frag_len - auth_len - 8  # auth verifier: 8-byte sec_trailer + auth_value
                if end < 24:
                    raise DecodeError(f"auth_length {auth_len} larger than the PDU", pos + 10)
            body = pdu[24:end]
            if ptype == 3:
                if frag_len < 28:
                    raise DecodeError("fault PDU without a status", pos)
                (status,) = struct.unpack_from(u32, pdu, 24)
        elif ptype == 13:
            if frag_len < 18:
                raise DecodeError("bind_nak PDU without a reject reason", pos)
            (status,) = struct.unpack_from("<H" if le else ">H", pdu, 16)
        pdus.append(CoPdu(ptype, flags, le, frag_len, call_id, alloc_hint, status, body))
        pos += frag_len
    return tuple(pdus)


def co_response_stub(pdus: Sequence[CoPdu]) -> bytes:
    """Join the stubs of one fragmented response (first fragment ... last fragment).

    Args:
        pdus: the response PDUs of one call, in order (other PDU types must be removed first).

    Returns:
        The reassembled stub, ready for :func:`decode_ept_lookup_response`.

    Raises:
        DecodeError: an empty list, a non-response PDU, missing first/last flags, or mixed call ids.
    """
    if not pdus:
        raise DecodeError("no response fragments")
    for i, pdu in enumerate(pdus):
        if pdu.ptype != 2:
            raise DecodeError(f"fragment {i} is a {pdu.ptype_name}, not a response")
        if pdu.call_id != pdus[0].call_id:
            raise DecodeError(f"fragment {i} has call_id {pdu.call_id}, expected {pdus[0].call_id}")
        first = bool(pdu.pfc_flags & _PFC_FIRST_FRAG)
        last = bool(pdu.pfc_flags & _PFC_LAST_FRAG)
        if first != (i == 0) or last != (i == len(pdus) - 1):
            raise DecodeError(f"fragment {i} of {len(pdus)} has pfc_flags 0x{pdu.pfc_flags:02x}")
    return b"".join(p.stub for p in pdus)

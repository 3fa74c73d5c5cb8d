"""Connectionless DCE/RPC (protocol version 4, ``ncadg_ip_udp``) PDU codec.

Pure bytes <-> frozen dataclasses; no sockets, no clocks, no randomness (the caller supplies the
activity UUID).  impacket has no connectionless RPC, so this module builds and reads the PDUs itself
(packet type values are impacket's ``rpcrt.MSRPC_*``) and reassembles fragmented responses.

Specification: C706 (DCE 1.1 RPC) chapter 12, "RPC PDU Encodings", section 12.5 "Connectionless RPC
PDUs".  Every PDU starts with an 80-byte header; multi-byte integers *and* the three UUIDs are in
the byte order given by ``drep[0]`` (high nibble 1 = little-endian, 0 = big-endian)::

    offset size field            offset size field
     0     1    rpc_vers (4)      56     4    server_boot
     1     1    ptype             60     4    if_vers
     2     1    flags1            64     4    seqnum
     3     1    flags2            68     2    opnum
     4     3    drep              70     2    ihint
     7     1    serial_hi         72     2    ahint
     8    16    object UUID       74     2    len (body length, bytes)
    24    16    if_id (UUID)      76     2    fragnum
    40    16    act_id (UUID)     78     1    auth_proto
                                  79     1    serial_lo

A reject or fault carries a 4-byte ``nca_s_*`` status as its body.  Windows echoes stale or arbitrary
bytes in the rest of a reject header (see ``clrpc-reject-udp135-winxpsp1.pcap``), so nothing there is
validated beyond the version, the type and the byte order.

Check by hand::

    tshark -r clrpc-reject-udp135-winxpsp1.pcap -V -O dcerpc
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from impacket.dcerpc.v5 import rpcrt

from exporter.errors import DecodeError
from exporter.wire import dcerpc, epm
from exporter.wire.reader import Reader

__all__ = [
    "CL_HEADER_LEN",
    "PF2_CANCEL_PENDING",
    "PF_BROADCAST",
    "PF_FRAG",
    "PF_IDEMPOTENT",
    "PF_LAST_FRAG",
    "PF_MAYBE",
    "PF_NO_FACK",
    "PTYPE_FAULT",
    "PTYPE_NAMES",
    "PTYPE_REJECT",
    "PTYPE_REQUEST",
    "PTYPE_RESPONSE",
    "ClPdu",
    "Reassembly",
    "decode_pdu",
    "encode_ept_lookup_request",
    "encode_pdu",
    "encode_request",
    "join_fragments",
]

CL_HEADER_LEN = 80
RPC_VERS = 4

PTYPE_REQUEST: int = rpcrt.MSRPC_REQUEST
PTYPE_RESPONSE: int = rpcrt.MSRPC_RESPONSE
PTYPE_FAULT: int = rpcrt.MSRPC_FAULT
PTYPE_REJECT: int = rpcrt.MSRPC_REJECT
#: C706 12.5.1 packet types (impacket's ``MSRPC_*`` values).
PTYPE_NAMES: dict[int, str] = {
    rpcrt.MSRPC_REQUEST: "request",
    rpcrt.MSRPC_PING: "ping",
    rpcrt.MSRPC_RESPONSE: "response",
    rpcrt.MSRPC_FAULT: "fault",
    rpcrt.MSRPC_WORKING: "working",
    rpcrt.MSRPC_NOCALL: "nocall",
    rpcrt.MSRPC_REJECT: "reject",
    rpcrt.MSRPC_ACK: "ack",
    rpcrt.MSRPC_CL_CANCEL: "cl_cancel",
    rpcrt.MSRPC_FACK: "fack",
    rpcrt.MSRPC_CANCELACK: "cancel_ack",
}

# flags1 (C706 12.5.3.3)
PF_LAST_FRAG = 0x02
PF_FRAG = 0x04
PF_NO_FACK = 0x08
PF_MAYBE = 0x10
PF_IDEMPOTENT = 0x20
PF_BROADCAST = 0x40
# flags2
PF2_CANCEL_PENDING = 0x02

_NIL_UUID = uuid.UUID(int=0)
_HEADER_TAIL = "IIIHHHHHBB"  # server_boot .. serial_lo, after the three UUIDs


@dataclass(frozen=True)
class ClPdu:
    """A connectionless DCE/RPC PDU (C706 12.5.1).

    Attributes:
        ptype: packet type (see :data:`PTYPE_NAMES`).
        flags1: ``PF_*`` flags.
        flags2: ``PF2_*`` flags.
        drep: the 3-byte data representation label (``10 00 00`` = little-endian/ASCII/IEEE).
        serial: fragment serial number (``serial_hi << 8 | serial_lo``).
        object_uuid: object UUID (text).
        if_uuid: interface UUID (text).
        act_id: activity UUID (text).
        server_boot: server boot time (seconds since 1970; 0 in a first request).
        if_vers: interface version as sent (``major | minor << 16``).
        seqnum: call sequence number within the activity.
        opnum: operation number.
        ihint: interface hint (0xffff = none).
        ahint: activity hint (0xffff = none).
        fragnum: fragment number.
        auth_proto: authentication protocol (0 = none).
        body: the ``len`` bytes after the header (for reject/fault: whatever follows the header).
        status: for reject and fault, the 4-byte status read from the body; else ``None``.
    """

    ptype: int
    flags1: int
    flags2: int
    drep: bytes
    serial: int
    object_uuid: str
    if_uuid: str
    act_id: str
    server_boot: int
    if_vers: int
    seqnum: int
    opnum: int
    ihint: int
    ahint: int
    fragnum: int
    auth_proto: int
    body: bytes
    status: int | None = None

    @property
    def ptype_name(self) -> str:
        """``"request"``, ``"reject"``, ...; ``"ptype_N"`` is never produced by the decoder."""
        return PTYPE_NAMES.get(self.ptype, f"ptype_{self.ptype}")

    @property
    def little_endian(self) -> bool:
        """Integer representation from ``drep[0]``."""
        return self.drep[0] >> 4 == 1

    @property
    def if_vers_major(self) -> int:
        """Interface major version (low 16 bits of ``if_vers``)."""
        return self.if_vers & 0xFFFF

    @property
    def if_vers_minor(self) -> int:
        """Interface minor version (high 16 bits of ``if_vers``)."""
        return self.if_vers >> 16

    @property
    def status_name(self) -> str:
        """Name of :attr:`status` (``""`` when there is none)."""
        return "" if self.status is None else dcerpc.status_name(self.status)


def _uuid_bytes(text: str, little_endian: bool) -> bytes:
    u = uuid.UUID(text)
    return u.bytes_le if little_endian else u.bytes


def _uuid_text(raw: bytes, little_endian: bool) -> str:
    return str(uuid.UUID(bytes_le=raw) if little_endian else uuid.UUID(bytes=raw))


def encode_pdu(pdu: ClPdu) -> bytes:
    """Encode a PDU: the 80-byte header (``len`` = ``len(body)``) followed by the body.

    The :attr:`ClPdu.status` field is ignored: a reject's or fault's status is part of ``body``.

    Args:
        pdu: the PDU; ``drep[0]`` selects the byte order of integers and UUIDs.

    Returns:
        The datagram payload, ``80 + len(body)`` bytes.

    Raises:
        ValueError: a field out of range, a ``drep`` that is not 3 bytes or names an unknown
            integer representation, a body over 65535 bytes, or a malformed UUID.
    """
    if len(pdu.drep) != 3 or pdu.drep[0] >> 4 not in (0, 1):
        raise ValueError(f"drep must be 3 bytes with integer representation 0 or 1, got {pdu.drep.hex()}")
    if not 0 <= pdu.serial <= 0xFFFF:
        raise ValueError(f"serial {pdu.serial} out of range 0-65535")
    le = pdu.little_endian
    try:
        head = struct.pack("BBBB3sB", RPC_VERS, pdu.ptype, pdu.flags1, pdu.flags2, pdu.drep, pdu.serial >> 8)
        uuids = b"".join(_uuid_bytes(u, le) for u in (pdu.object_uuid, pdu.if_uuid, pdu.act_id))
        tail = struct.pack(
            ("<" if le else ">") + _HEADER_TAIL,
            pdu.server_boot,
            pdu.if_vers,
            pdu.seqnum,
            pdu.opnum,
            pdu.ihint,
            pdu.ahint,
            len(pdu.body),
            pdu.fragnum,
            pdu.auth_proto,
            pdu.serial & 0xFF,
        )
    except struct.error as err:
        raise ValueError(f"connectionless header field out of range: {err}") from err
    return head + uuids + tail + pdu.body


def decode_pdu(data: bytes) -> ClPdu:
    """Decode one connectionless PDU (one UDP datagram payload).

    Args:
        data: the datagram payload, bytes.

    Returns:
        The PDU.  For reject (6) and fault (3), :attr:`ClPdu.status` holds the status read at
        offset 80 in the ``drep`` byte order, whatever the (possibly stale) ``len`` field says.

    Raises:
        DecodeError: shorter than 80 bytes, ``rpc_vers`` not 4, unknown packet type, unknown
            integer representation, a body shorter than ``len``, or a reject/fault without a status.
    """
    if len(data) < CL_HEADER_LEN:
        raise DecodeError(f"connectionless header needs 80 bytes, got {len(data)}", len(data))
    r = Reader(data)
    vers, ptype, flags1, flags2 = r.u8(), r.u8(), r.u8(), r.u8()
    drep = r.bytes(3, "drep")
    serial_hi = r.u8()
    if vers != RPC_VERS:
        raise DecodeError(f"rpc_vers is {vers}, expected 4", 0)
    if ptype not in PTYPE_NAMES:
        raise DecodeError(f"unknown connectionless packet type {ptype}", 1)
    if drep[0] >> 4 not in (0, 1):
        raise DecodeError(f"unknown integer representation in drep 0x{drep[0]:02x}", 4)
    r.little_endian = le = drep[0] >> 4 == 1
    object_uuid, if_uuid, act_id = (_uuid_text(r.bytes(16, "UUID"), le) for _ in range(3))
    server_boot, if_vers, seqnum = r.u32(), r.u32(), r.u32()
    opnum, ihint, ahint, length, fragnum = r.u16(), r.u16(), r.u16(), r.u16(), r.u16()
    auth_proto, serial_lo = r.u8(), r.u8()
    status: int | None = None
    if ptype in (PTYPE_REJECT, PTYPE_FAULT):
        if r.remaining < 4:
            raise DecodeError(f"{PTYPE_NAMES[ptype]} without a 4-byte status", len(data))
        body = r.data[CL_HEADER_LEN : CL_HEADER_LEN + length] if length >= 4 else r.data[CL_HEADER_LEN:]
        status = r.u32("status")
    else:
        if length > r.remaining:
            raise DecodeError(f"body length {length} exceeds the {r.remaining} bytes received", 74)
        body = r.bytes(length, "body")
    return ClPdu(
        ptype=ptype,
        flags1=flags1,
        flags2=flags2,
        drep=drep,
        serial=serial_hi << 8 | serial_lo,
        object_uuid=object_uuid,
        if_uuid=if_uuid,
        act_id=act_id,
        server_boot=server_boot,
        if_vers=if_vers,
        seqnum=seqnum,
        opnum=opnum,
        ihint=ihint,
        ahint=ahint,
        fragnum=fragnum,
        auth_proto=auth_proto,
        body=body,
        status=status,
    )


def encode_request(
    act_id: uuid.UUID,
    body: bytes,
    *,
    if_uuid: str = epm.EPM_INTERFACE_UUID,
    if_version: tuple[int, int] = epm.EPM_INTERFACE_VERSION,
    opnum: int = epm.EPT_LOOKUP_OPNUM,
    seqnum: int = 0,
    object_uuid: str = str(_NIL_UUID),
    flags1: int = PF_IDEMPOTENT,
    server_boot: int = 0,
) -> bytes:
    """Encode a single-fragment connectionless request (little-endian, ASCII, IEEE).

    The defaults call ``ept_lookup`` (EPM e1af8308-5d1f-11c9-91a4-08002b14a0fa v3.0, opnum 2),
    which the IDL marks ``idempotent``, hence ``flags1 = PF_IDEMPOTENT``; ihint/ahint 0xffff (no
    hint), fragment 0, serial 0, no authentication.

    Args:
        act_id: activity UUID; the caller draws it (e.g. ``uuid.uuid4()``) so this stays pure.
        body: the NDR stub (e.g. from :func:`exporter.wire.epm.encode_ept_lookup_request`).
        if_uuid: interface UUID.
        if_version: ``(major, minor)``.
        opnum: operation number.
        seqnum: sequence number of this call within the activity (increment per page).
        object_uuid: object UUID (nil for EPM).
        flags1: ``PF_*`` flags.
        server_boot: 0 for a first call; the server's boot time after its first reply.

    Returns:
        The datagram payload, ``80 + len(body)`` bytes.

    Raises:
        ValueError: a field out of range.
    """
    major, minor = if_version
    if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF):
        raise ValueError(f"interface version {major}.{minor} out of range")
    return encode_pdu(
        ClPdu(
            ptype=PTYPE_REQUEST,
            flags1=flags1,
            flags2=0,
            drep=b"\x10\x00\x00",
            serial=0,
            object_uuid=object_uuid,
            if_uuid=if_uuid,
            act_id=str(act_id),
            server_boot=server_boot,
            if_vers=major | minor << 16,
            seqnum=seqnum,
            opnum=opnum,
            ihint=0xFFFF,
            ahint=0xFFFF,
            fragnum=0,
            auth_proto=0,
            body=body,
        )
    )


def encode_ept_lookup_request(
    act_id: uuid.UUID,
    *,
    seqnum: int = 0,
    max_ents: int = 500,
    entry_handle: bytes = epm.NULL_ENTRY_HANDLE,
    server_boot: int = 0,
) -> bytes:
    """Encode an ``ept_lookup`` (all elements) as a connectionless request datagram for UDP 135.

    Args:
        act_id: activity UUID chosen by the caller (one per lookup, kept across pages).
        seqnum: call number within the activity (0, 1, 2, ... per page).
        max_ents: entries wanted per page.
        entry_handle: handle from the previous page (20 bytes; null for the first).
        server_boot: 0, or the ``server_boot`` of the server's previous reply.

    Returns:
        The datagram payload (80-byte header + 40-byte stub).

    Raises:
        ValueError: a field out of range.
    """
    stub = epm.encode_ept_lookup_request(max_ents=max_ents, entry_handle=entry_handle)
    return encode_request(act_id, stub, seqnum=seqnum, server_boot=server_boot)


class Reassembly:
    """The fragments of one connectionless response, collected as they arrive (C706 12.5.3.3, 12.5.3.4).

    Fragments are keyed by ``fragnum``; duplicates (retransmissions) are ignored; the response is
    complete once fragments ``0..n`` are all there and fragment ``n`` carries ``PF_LAST_FRAG``.
    Bounded: fragment numbers from ``max_fragments`` on and bodies beyond ``max_bytes`` in total are refused.

    Args:
        max_fragments: the most fragments one response may have.
        max_bytes: the most body bytes kept, over all fragments.

    Attributes:
        failure: the first :class:`DecodeError` :meth:`add` raised (kept for :meth:`body`), else ``None``.
    """

    def __init__(self, *, max_fragments: int = 64, max_bytes: int = 256 * 1024) -> None:
        self.max_fragments = max_fragments
        self.max_bytes = max_bytes
        self.failure: DecodeError | None = None
        self._call: tuple[str, int] | None = None
        self._by_num: dict[int, ClPdu] = {}
        self._last: int | None = None
        self._bytes = 0

    @property
    def complete(self) -> bool:
        """True when every fragment up to the one flagged ``PF_LAST_FRAG`` has arrived."""
        return self.failure is None and self._last is not None and len(self._by_num) == self._last + 1

    def add(self, pdu: ClPdu) -> bool:
        """Add one fragment (an unfragmented PDU is fragment 0 and the last one).

        Returns:
            :attr:`complete` after adding it.

        Raises:
            DecodeError: a PDU of another call (activity, sequence number), a fragment number at or past
                ``max_fragments``, a second last fragment with another number, a fragment past the last,
                or more than ``max_bytes`` in total; the same error is raised again by :meth:`body`.
        """
        try:
            self._add(pdu)
        except DecodeError as err:
            if self.failure is None:
                self.failure = err
            raise
        return self.complete

    def _add(self, pdu: ClPdu) -> None:
        if self.failure is not None:
            raise self.failure
        call = (pdu.act_id, pdu.seqnum)
        if self._call is None:
            self._call = call
        elif call != self._call:
            raise DecodeError(f"fragment {pdu.fragnum} belongs to another call")
        num = pdu.fragnum if pdu.flags1 & PF_FRAG else 0
        last = bool(pdu.flags1 & PF_LAST_FRAG or not pdu.flags1 & PF_FRAG)
        if num >= self.max_fragments:
            raise DecodeError(f"fragment number {num} beyond {self.max_fragments} fragments")
        if num in self._by_num:
            return
        if last and self._last is not None and num != self._last:
            raise DecodeError(f"fragments {self._last} and {num} both carry the last-fragment flag")
        if (self._last is not None and num > self._last) or (last and any(n > num for n in self._by_num)):
            raise DecodeError(f"fragment {num} does not fit before or at the last fragment")
        self._bytes += len(pdu.body)
        if self._bytes > self.max_bytes:
            raise DecodeError(f"fragmented response larger than {self.max_bytes} bytes")
        self._by_num[num] = pdu
        if last:
            self._last = num

    def body(self) -> bytes:
        """The reassembled body, fragments in ``fragnum`` order.

        Raises:
            DecodeError: nothing added, an earlier :meth:`add` failure, no last fragment yet, or a gap.
        """
        if self.failure is not None:
            raise self.failure
        if not self._by_num:
            raise DecodeError("no fragments")
        if self._last is None:
            raise DecodeError("no fragment carries the last-fragment flag")
        missing = [n for n in range(self._last + 1) if n not in self._by_num]
        if missing:
            raise DecodeError(f"missing fragments {missing[:8]}")
        return b"".join(self._by_num[n].body for n in range(self._last + 1))


def join_fragments(pdus: Sequence[ClPdu], *, max_fragments: int = 64, max_bytes: int = 256 * 1024) -> bytes:
    """Reassemble the bodies of one fragmented connectionless response (C706 12.5.3.3) with :class:`Reassembly`.

    An unfragmented PDU (no ``PF_FRAG``) is returned as is.  Duplicates (retransmissions) are ignored.

    Args:
        pdus: all received fragments of one call (same activity and sequence number), any order.
        max_fragments: see :class:`Reassembly`.
        max_bytes: see :class:`Reassembly`.

    Returns:
        The concatenated bodies, in fragment-number order.

    Raises:
        DecodeError: no fragments, mixed activities or sequence numbers, a gap in the fragment
            numbers, no fragment with ``PF_LAST_FRAG``, or past the caps.
    """
    fragments = Reassembly(max_fragments=max_fragments, max_bytes=max_bytes)
    for pdu in pdus:
        fragments.add(pdu)
    return fragments.body()

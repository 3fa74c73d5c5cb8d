"""Connectionless DCE/RPC (protocol version 4, ``ncadg_ip_udp``) PDU codec.

Pure bytes <-> frozen dataclasses; no sockets, no clocks, no randomness (the caller supplies the
activity UUID).  impacket has no connectionless RPC, so this module builds and reads the PDUs itself.

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

from exporter.errors import DecodeError
from exporter.wire import epm

__all__ = [
    "CL_HEADER_LEN",
    "NCA_STATUS_NAMES",
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
    "decode_pdu",
    "encode_ept_lookup_request",
    "encode_pdu",
    "encode_request",
    "join_fragments",
    "status_name",
]

CL_HEADER_LEN = 80
RPC_VERS = 4

PTYPE_REQUEST = 0
PTYPE_RESPONSE = 2
PTYPE_FAULT = 3
PTYPE_REJECT = 6
#: C706 12.5.1 packet types.
PTYPE_NAMES = {
    0: "request",
    1: "ping",
    2: "response",
    3: "fault",
    4: "working",
    5: "nocall",
    6: "reject",
    7: "ack",
    8: "cl_cancel",
    9: "fack",
    10: "cancel_ack",
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

#: ``nca_s_*`` reject and fault status codes (C706 appendix E; names as C706 and Wireshark spell
#: them), plus the Windows statuses Windows returns in faults ([MS-RPCE] 2.2.2.x, [MS-ERREF]).
NCA_STATUS_NAMES: dict[int, str] = {
    0x00000005: "nca_s_fault_access_denied",
    0x000006D8: "nca_s_fault_cant_perform",
    0x000006F7: "nca_s_fault_ndr",
    0x1C000001: "nca_s_fault_int_div_by_zero",
    0x1C000002: "nca_s_fault_addr_error",
    0x1C000003: "nca_s_fault_fp_div_zero",
    0x1C000004: "nca_s_fault_fp_underflow",
    0x1C000005: "nca_s_fault_fp_overflow",
    0x1C000006: "nca_s_fault_invalid_tag",
    0x1C000007: "nca_s_fault_invalid_bound",
    0x1C000008: "nca_rpc_version_mismatch",
    0x1C000009: "nca_unspec_reject",
    0x1C00000A: "nca_s_bad_actid",
    0x1C00000B: "nca_who_are_you_failed",
    0x1C00000C: "nca_manager_not_entered",
    0x1C00000D: "nca_s_fault_cancel",
    0x1C00000E: "nca_s_fault_ill_inst",
    0x1C00000F: "nca_s_fault_fp_error",
    0x1C000010: "nca_s_fault_int_overflow",
    0x1C000012: "nca_s_fault_unspec",
    0x1C000013: "nca_s_fault_remote_comm_failure",
    0x1C000014: "nca_s_fault_pipe_empty",
    0x1C000015: "nca_s_fault_pipe_closed",
    0x1C000016: "nca_s_fault_pipe_order",
    0x1C000017: "nca_s_fault_pipe_discipline",
    0x1C000018: "nca_s_fault_pipe_comm_error",
    0x1C000019: "nca_s_fault_pipe_memory",
    0x1C00001A: "nca_s_fault_context_mismatch",
    0x1C00001B: "nca_s_fault_remote_no_memory",
    0x1C00001C: "nca_invalid_pres_context_id",
    0x1C00001D: "nca_unsupported_authn_level",
    0x1C00001F: "nca_invalid_checksum",
    0x1C000020: "nca_invalid_crc",
    0x1C000021: "nca_s_fault_user_defined",
    0x1C000022: "nca_s_fault_tx_open_failed",
    0x1C000023: "nca_s_fault_codeset_conv_error",
    0x1C000024: "nca_s_fault_object_not_found",
    0x1C000025: "nca_s_fault_no_client_stub",
    0x1C010001: "nca_s_comm_failure",
    0x1C010002: "nca_s_op_rng_error",
    0x1C010003: "nca_s_unk_if",
    0x1C010006: "nca_s_wrong_boot_time",
    0x1C010009: "nca_s_you_crashed",
    0x1C01000B: "nca_s_proto_error",
    0x1C010013: "nca_s_out_args_too_big",
    0x1C010014: "nca_s_server_too_busy",
    0x1C010015: "nca_s_fault_string_too_long",
    0x1C010017: "nca_s_unsupported_type",
    epm.EPT_S_NOT_REGISTERED: "ept_s_not_registered",
}

_NIL_UUID = uuid.UUID(int=0)
_HEADER_TAIL = "IIIHHHHHBB"  # server_boot .. serial_lo, after the three UUIDs


def status_name(code: int) -> str:
    """Name of an ``nca_s_*`` (or Windows) status code.

    Args:
        code: the 32-bit status.

    Returns:
        The name from :data:`NCA_STATUS_NAMES`, else ``"0x%08x"``.
    """
    return NCA_STATUS_NAMES.get(code, f"0x{code:08x}")


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
        return "" if self.status is None else status_name(self.status)


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
    if data[0] != RPC_VERS:
        raise DecodeError(f"rpc_vers is {data[0]}, expected 4", 0)
    ptype = data[1]
    if ptype not in PTYPE_NAMES:
        raise DecodeError(f"unknown connectionless packet type {ptype}", 1)
    if data[4] >> 4 not in (0, 1):
        raise DecodeError(f"unknown integer representation in drep 0x{data[4]:02x}", 4)
    le = data[4] >> 4 == 1
    (
        server_boot,
        if_vers,
        seqnum,
        opnum,
        ihint,
        ahint,
        length,
        fragnum,
        auth_proto,
        serial_lo,
    ) = struct.unpack_from(("<" if le else ">") + _HEADER_TAIL, data, 56)
    status: int | None = None
    if ptype in (PTYPE_REJECT, PTYPE_FAULT):
        if len(data) < CL_HEADER_LEN + 4:
            raise DecodeError(f"{PTYPE_NAMES[ptype]} without a 4-byte status", len(data))
        (status,) = struct.unpack_from("<I" if le else ">I", data, CL_HEADER_LEN)
        body = data[CL_HEADER_LEN : CL_HEADER_LEN + length] if length >= 4 else data[CL_HEADER_LEN:]
    else:
        if CL_HEADER_LEN + length > len(data):
            raise DecodeError(f"body length {length} exceeds the {len(data) - 80} bytes received", 74)
        body = data[CL_HEADER_LEN : CL_HEADER_LEN + length]
    return ClPdu(
        ptype=ptype,
        flags1=data[2],
        flags2=data[3],
        drep=bytes(data[4:7]),
        serial=data[7] << 8 | serial_lo,
        object_uuid=_uuid_text(data[8:24], le),
        if_uuid=_uuid_text(data[24:40], le),
        act_id=_uuid_text(data[40:56], le),
        server_boot=server_boot,
        if_vers=if_vers,
        seqnum=seqnum,
        opnum=opnum,
        ihint=ihint,
        ahint=ahint,
        fragnum=fragnum,
        auth_proto=auth_proto,
        body=bytes(body),
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


def join_fragments(pdus: Sequence[ClPdu]) -> bytes:
    """Reassemble the bodies of one fragmented connectionless response (C706 12.5.3.3).

    An unfragmented PDU (no ``PF_FRAG``) is returned as is.  Duplicates (retransmissions) of a
    fragment number are allowed and ignored.

    Args:
        pdus: all received fragments of one call (same activity and sequence number), any order.

    Returns:
        The concatenated bodies, in fragment-number order.

    Raises:
        DecodeError: no fragments, mixed activities or sequence numbers, a gap in the fragment
            numbers, or no fragment with ``PF_LAST_FRAG``.
    """
    if not pdus:
        raise DecodeError("no fragments")
    first = pdus[0]
    if len(pdus) == 1 and not first.flags1 & PF_FRAG:
        return first.body
    by_num: dict[int, ClPdu] = {}
    for pdu in pdus:
        if (pdu.act_id, pdu.seqnum) != (first.act_id, first.seqnum):
            raise DecodeError(f"fragment {pdu.fragnum} belongs to another call")
        by_num.setdefault(pdu.fragnum, pdu)
    last = [n for n, p in by_num.items() if p.flags1 & PF_LAST_FRAG]
    if not last:
        raise DecodeError("no fragment carries the last-fragment flag")
    count = min(last) + 1
    missing = [n for n in range(count) if n not in by_num]
    if missing:
        raise DecodeError(f"missing fragments {missing[:8]}")
    return b"".join(by_num[n].body for n in range(count))

"""Connection-oriented DCE/RPC (v5) framing, as found on TCP 135, and the RPC status names.

Pure bytes <-> frozen dataclasses.  impacket frames and sends our requests; its ``TCPTransport.recv``
is unbounded on hostile peers, so replies are split and checked here (C706 12.6, [MS-RPCE] 2.2.2).
PDU type and flag values are impacket's (:mod:`impacket.dcerpc.v5.rpcrt`).

Common header (16 bytes, C706 12.6.3.1): ``rpc_vers`` (5), ``rpc_vers_minor`` (0/1), ``ptype``,
``pfc_flags``, ``drep`` (4; ``drep[0] >> 4`` = 1 for little-endian), ``frag_length`` (u16),
``auth_length`` (u16), ``call_id`` (u32).  Request, response and fault add ``alloc_hint`` (u32),
``p_cont_id`` and ``cancel_count``/``opnum`` (24 bytes); a fault carries its status at offset 24.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from impacket.dcerpc.v5 import epm as impacket_epm
from impacket.dcerpc.v5 import rpcrt

from exporter.errors import DecodeError
from exporter.wire.reader import Reader

__all__ = [
    "CO_HEADER_LEN",
    "MAX_RESPONSE_BYTES",
    "MAX_RESPONSE_FRAGMENTS",
    "NCA_STATUS_NAMES",
    "CoPdu",
    "CoReassembly",
    "co_response_stub",
    "decode_co_pdus",
    "frag_length",
    "status_name",
]

CO_HEADER_LEN = 16
#: The most bytes (headers included) one response may take over all its fragments: an ``ept_lookup`` page of
#: 500 Windows entries is about 65 KB (the 430-entry DC dump's stub is 56 KB).
MAX_RESPONSE_BYTES = 1024 * 1024
#: The most fragments one response may have: 1 MiB in fragments of the smallest size a peer must accept (C706
#: 12.6.3.6 ``MustRecvFragSize``, 1432 bytes) is about 730.
MAX_RESPONSE_FRAGMENTS = 768
_REQUEST_HEADER_LEN = 24
_SEC_TRAILER_LEN = 8

#: C706 12.6.4 packet types (impacket's ``MSRPC_*`` values).
CO_PTYPE_NAMES: Mapping[int, str] = MappingProxyType(
    {
        rpcrt.MSRPC_REQUEST: "request",
        rpcrt.MSRPC_RESPONSE: "response",
        rpcrt.MSRPC_FAULT: "fault",
        rpcrt.MSRPC_BIND: "bind",
        rpcrt.MSRPC_BINDACK: "bind_ack",
        rpcrt.MSRPC_BINDNAK: "bind_nak",
        rpcrt.MSRPC_ALTERCTX: "alter_context",
        rpcrt.MSRPC_ALTERCTX_R: "alter_context_resp",
        rpcrt.MSRPC_AUTH3: "auth3",
        rpcrt.MSRPC_SHUTDOWN: "shutdown",
        rpcrt.MSRPC_CO_CANCEL: "co_cancel",
        rpcrt.MSRPC_ORPHANED: "orphaned",
        rpcrt.MSRPC_RTS: "rts",
    }
)

#: ``nca_s_*`` reject and fault status codes (C706 appendix E; names as C706 and Wireshark spell
#: them), plus the Windows statuses Windows returns in faults ([MS-RPCE] 2.2.2.x, [MS-ERREF]).
NCA_STATUS_NAMES: Mapping[int, str] = MappingProxyType(
    {
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
        impacket_epm.RPC_NO_MORE_ELEMENTS: "ept_s_not_registered",
    }
)


def status_name(code: int) -> str:
    """Name of an ``nca_s_*`` (or Windows) status code (C706 appendix E).

    Args:
        code: the 32-bit status.

    Returns:
        The name from :data:`NCA_STATUS_NAMES`, else ``"0x%08x"``.
    """
    return NCA_STATUS_NAMES.get(code, f"0x{code:08x}")


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
        return CO_PTYPE_NAMES.get(self.ptype, f"ptype_{self.ptype}")


def _decode_one(r: Reader) -> CoPdu:
    start = r.pos
    if r.remaining < CO_HEADER_LEN:
        raise r.error("truncated connection-oriented header")
    vers, minor, ptype, flags, drep0 = r.u8(), r.u8(), r.u8(), r.u8(), r.u8()
    if vers != 5 or minor > 1:
        raise r.error(f"not DCE/RPC v5: version {vers}.{minor}", start)
    if drep0 >> 4 not in (0, 1):
        raise r.error(f"unknown integer representation in drep 0x{drep0:02x}", start + 4)
    r.little_endian = drep0 >> 4 == 1
    r.skip(3, "drep")
    frag_len, auth_len, call_id = r.u16(), r.u16(), r.u32()
    if frag_len < CO_HEADER_LEN or frag_len - CO_HEADER_LEN > r.remaining:
        raise r.error(f"frag_length {frag_len} invalid for {len(r.data) - start} bytes left", start + 8)
    body = r.sub(frag_len - CO_HEADER_LEN, "PDU body")
    alloc_hint = 0
    status: int | None = None
    if ptype in (rpcrt.MSRPC_REQUEST, rpcrt.MSRPC_RESPONSE, rpcrt.MSRPC_FAULT):
        if frag_len < _REQUEST_HEADER_LEN:
            raise r.error("request/response/fault PDU shorter than 24 bytes", start)
        alloc_hint = body.u32()
        body.skip(4)  # p_cont_id, cancel_count/opnum
        end = frag_len
        if auth_len:
            end = frag_len - auth_len - _SEC_TRAILER_LEN
            if end < _REQUEST_HEADER_LEN:
                raise r.error(f"auth_length {auth_len} larger than the PDU", start + 10)
        if ptype == rpcrt.MSRPC_FAULT:
            if frag_len < _REQUEST_HEADER_LEN + 4:
                raise r.error("fault PDU without a status", start)
            status = int.from_bytes(body.data[8:12], "little" if r.little_endian else "big")
        stub = body.bytes(end - _REQUEST_HEADER_LEN)
    elif ptype == rpcrt.MSRPC_BINDNAK:
        if frag_len < CO_HEADER_LEN + 2:
            raise r.error("bind_nak PDU without a reject reason", start)
        status = body.u16()
        stub = body.data
    else:
        stub = body.data
    return CoPdu(ptype, flags, r.little_endian, frag_len, call_id, alloc_hint, status, stub)


def frag_length(header: bytes) -> int:
    """``frag_length`` of the PDU whose 16-byte common header is ``header`` (C706 12.6.3.1), in bytes.

    For a stream reader: read 16 bytes, then ``frag_length - 16`` more.

    Raises:
        DecodeError: fewer than 16 bytes, not v5, an unknown ``drep``, or shorter than the header.
    """
    r = Reader(header)
    if len(header) < CO_HEADER_LEN:
        raise r.error("truncated connection-oriented header")
    vers, minor = r.u8(), r.u8()
    if vers != 5 or minor > 1:
        raise r.error(f"not DCE/RPC v5: version {vers}.{minor}", 0)
    drep0 = header[4]
    if drep0 >> 4 not in (0, 1):
        raise r.error(f"unknown integer representation in drep 0x{drep0:02x}", 4)
    r.skip(6)
    length = r.u16("frag_length", little_endian=drep0 >> 4 == 1)
    if length < CO_HEADER_LEN:
        raise r.error(f"frag_length {length} shorter than the header", 8)
    return length


def decode_co_pdus(stream: bytes) -> tuple[CoPdu, ...]:
    """Split a connection-oriented DCE/RPC byte stream into PDUs (C706 12.6).

    Args:
        stream: concatenated TCP payload of one direction; must hold whole PDUs.

    Returns:
        The PDUs in order.

    Raises:
        DecodeError: a version other than 5.0/5.1, an unknown ``drep``, a ``frag_length`` shorter
            than its header, an ``auth_length`` larger than the PDU, or a PDU cut short at the end.
    """
    r = Reader(stream)
    pdus: list[CoPdu] = []
    while r.remaining:
        pdus.append(_decode_one(r))
    return tuple(pdus)


class CoReassembly:
    """The fragments of one connection-oriented response, checked one by one as they arrive (C706 12.6.3.1).

    Each :meth:`add` costs the size of its fragment (nothing already added is looked at again), so reading a
    response is linear in its bytes; the total bytes and the fragment count are capped, so a peer that never sends
    ``PFC_LAST_FRAG`` costs at most ``max_bytes`` of reading and ``max_fragments`` adds.

    Args:
        max_bytes: the most bytes, headers included, over all fragments.
        max_fragments: the most fragments.

    Attributes:
        fault: the fault PDU that ended the call (C706 12.6.4.7), else ``None``.
        fragments: fragments added so far.
        size: bytes added so far (``frag_length`` summed).
        little_endian: integer representation of the first fragment (for decoding the stub).
    """

    def __init__(self, *, max_bytes: int = MAX_RESPONSE_BYTES, max_fragments: int = MAX_RESPONSE_FRAGMENTS) -> None:
        self.max_bytes = max_bytes
        self.max_fragments = max_fragments
        self.fault: CoPdu | None = None
        self.fragments = 0
        self.size = 0
        self.little_endian = True
        self._call_id: int | None = None
        self._complete = False
        self._stubs: list[bytes] = []

    @property
    def complete(self) -> bool:
        """True once the last fragment (or a fault) has been added."""
        return self._complete

    def add(self, pdu: CoPdu) -> bool:
        """Add the next PDU of the response.

        Returns:
            :attr:`complete` after adding it.

        Raises:
            DecodeError: a PDU after the response completed, a PDU that is neither a response nor a fault, another
                call id, ``PFC_FIRST_FRAG`` missing on the first fragment or present on a later one, or past
                ``max_bytes`` or ``max_fragments``.
        """
        i = self.fragments
        if self._complete:
            raise DecodeError(f"fragment {i} after the last fragment")
        if self.size + pdu.frag_length > self.max_bytes:
            raise DecodeError(f"response larger than {self.max_bytes} bytes", self.size)
        if i >= self.max_fragments:
            raise DecodeError(f"more than {self.max_fragments} fragments in one response", self.size)
        if pdu.ptype not in (rpcrt.MSRPC_RESPONSE, rpcrt.MSRPC_FAULT):
            raise DecodeError(f"fragment {i} is a {pdu.ptype_name}, not a response", self.size)
        if self._call_id is None:
            self._call_id, self.little_endian = pdu.call_id, pdu.little_endian
        elif pdu.call_id != self._call_id:
            raise DecodeError(f"fragment {i} has call_id {pdu.call_id}, expected {self._call_id}", self.size)
        fault = pdu.ptype == rpcrt.MSRPC_FAULT
        if not fault and bool(pdu.pfc_flags & rpcrt.PFC_FIRST_FRAG) != (i == 0):
            raise DecodeError(f"fragment {i} has pfc_flags 0x{pdu.pfc_flags:02x}", self.size)
        self.fragments += 1
        self.size += pdu.frag_length
        if fault:
            self.fault, self._complete = pdu, True
            return True
        self._stubs.append(pdu.stub)
        self._complete = bool(pdu.pfc_flags & rpcrt.PFC_LAST_FRAG)
        return self._complete

    def stub(self) -> bytes:
        """The reassembled stub, ready for :func:`exporter.wire.epm.decode_ept_lookup_response`.

        Raises:
            DecodeError: nothing added, a fault, or no fragment with ``PFC_LAST_FRAG`` yet.
        """
        if self.fault is not None:
            raise DecodeError(f"the response is a fault ({status_name(self.fault.status or 0)})")
        if not self._stubs:
            raise DecodeError("no response fragments")
        if not self._complete:
            raise DecodeError(f"no last fragment after {self.fragments} fragments", self.size)
        return b"".join(self._stubs)


def co_response_stub(
    pdus: Sequence[CoPdu], *, max_bytes: int = MAX_RESPONSE_BYTES, max_fragments: int = MAX_RESPONSE_FRAGMENTS
) -> bytes:
    """Join the stubs of one fragmented response, first fragment to last (C706 12.6.3.1 ``PFC_*_FRAG``).

    Args:
        pdus: the response PDUs of one call, in order (other PDU types must be removed first).
        max_bytes: see :class:`CoReassembly`.
        max_fragments: see :class:`CoReassembly`.

    Returns:
        The reassembled stub, ready for :func:`exporter.wire.epm.decode_ept_lookup_response`.

    Raises:
        DecodeError: an empty list, a non-response PDU, missing first/last flags, mixed call ids, or past the caps.
    """
    fragments = CoReassembly(max_bytes=max_bytes, max_fragments=max_fragments)
    for i, pdu in enumerate(pdus):
        if pdu.ptype != rpcrt.MSRPC_RESPONSE:
            raise DecodeError(f"fragment {i} is a {pdu.ptype_name}, not a response")
        if fragments.add(pdu) and i != len(pdus) - 1:
            raise DecodeError(f"fragment {i} of {len(pdus)} has pfc_flags 0x{pdu.pfc_flags:02x}")
    return fragments.stub()

"""impacket at arm's length: the MS-RPC connection-oriented transport to the endpoint mapper (TCP 135).

impacket connects, binds to the endpoint mapper interface (MS-RPCE 2.2.1.1, C706 appendix L) and sends
``ept_lookup`` requests.  Every PDU it or we read comes through :class:`_PduStream`: one whole PDU by its
``frag_length`` (C706 12.6.3.1), bounded by the deadline (impacket's own ``TCPTransport.recv`` does one ``recv``
for the bind_ack, so a bind_ack split over two TCP segments read as garbage, and it loops forever on a peer that
closes mid-PDU).  Response fragments are checked one by one as they arrive
(:class:`~exporter.wire.dcerpc.CoReassembly`: linear, capped in bytes and fragments) and each page decoded by
:mod:`exporter.wire.epm`.  Paging follows the ``entry_handle`` until the server returns a null handle, zero
entries or ``ept_s_not_registered`` (Samba's end of list), which never discards the entries already received.

Everything here blocks: call it through :func:`exporter.probes.blocking.run_blocking`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from dataclasses import dataclass

from impacket.dcerpc.v5 import epm as impacket_epm
from impacket.dcerpc.v5 import rpcrt, transport

from exporter.errors import DecodeError, ProtocolError, error_detail, plain_error
from exporter.wire import dcerpc, epm

#: The most reply bytes one dump may read over all its pages (each response is also capped by
#: :data:`exporter.wire.dcerpc.MAX_RESPONSE_BYTES`).
MAX_DUMP_BYTES = 4 * 1024 * 1024
#: Bytes asked of the socket per read: many small fragments cost one system call, not two each.
_READ_SIZE = 65536
#: What a bind reply that impacket cannot parse is, in plain words (impacket's own text goes to the detail).
_MALFORMED_BIND = "endpoint mapper bind reply is truncated or malformed"


@dataclass(frozen=True, slots=True)
class EpmTcpDump:
    """The pages of one endpoint-mapper dump.

    Attributes:
        pages: decoded pages, in order.
        fault_status: status of a Fault PDU that ended the dump (e.g. 5 = access denied), else ``None``.
        error: why the dump stopped early after some pages (connection lost, garbage), else ``""``.
    """

    pages: tuple[epm.EptLookupPage, ...]
    fault_status: int | None = None
    error: str = ""


class EpmSession:
    """One TCP connection to an endpoint mapper.

    Args:
        address: IPv4/IPv6 literal (never a name: impacket would resolve it, blocking).
        port: usually 135.
        timeout: seconds for the connect and for each read.
    """

    def __init__(self, address: str, port: int, timeout: float) -> None:
        self.transport = _BoundedTransport(address, port)
        self.transport.set_connect_timeout(max(timeout, 0.001))
        self.timeout = timeout
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether the TCP connection was made (then a timeout is a silent mapper, not an unreachable one)."""
        try:
            return isinstance(self.transport.get_socket(), socket.socket)
        except AttributeError:
            return False

    def close(self) -> None:
        """Close the connection (safe from another thread; unblocks a pending read)."""
        self._closed = True
        try:
            sock = self.transport.get_socket()
        except AttributeError:
            return
        if isinstance(sock, socket.socket):  # impacket holds 0 until connect() has made the socket
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _bind(self) -> rpcrt.DCERPC_v5:
        """Connect and bind to the endpoint mapper; impacket's failures become plain :class:`ProtocolError`."""
        try:
            dce = self.transport.get_dce_rpc()
            dce.connect()
            dce.bind(impacket_epm.MSRPC_UUID_PORTMAP)
        except ProtocolError as exc:  # our read of the bind reply: the peer closed part-way through it
            raise ProtocolError(_MALFORMED_BIND, detail=str(exc)) from None
        except rpcrt.DCERPCException as exc:
            # impacket's words are the protocol's ("Bind context rejected: abstract_syntax_not_supported")
            raise ProtocolError(f"endpoint mapper refused the bind: {str(exc).strip()}") from None
        except TimeoutError:
            raise
        except OSError as exc:
            raise ProtocolError(f"endpoint mapper connection: {plain_error(exc)}", detail=error_detail(exc)) from None
        except (struct.error, KeyError, IndexError, ValueError, TypeError) as exc:
            # impacket's structure.py: ('unpack requires a buffer of 1 bytes', "When unpacking field ...")
            raise ProtocolError(_MALFORMED_BIND, detail=error_detail(exc)) from None
        except Exception as exc:  # noqa: BLE001 - impacket's structure.py raises bare Exception on bad bytes
            raise ProtocolError(_MALFORMED_BIND, detail=error_detail(exc)) from None
        return dce

    def lookup_all(self, *, deadline: float, max_pages: int = 64, max_ents: int = 500) -> EpmTcpDump:
        """Bind and page through ``ept_lookup`` (all elements) until the end of the list.

        Reading is bounded: each response by :data:`exporter.wire.dcerpc.MAX_RESPONSE_BYTES` and
        :data:`~exporter.wire.dcerpc.MAX_RESPONSE_FRAGMENTS`, the whole dump by :data:`MAX_DUMP_BYTES`, every read
        by ``deadline``.  A page past a cap after earlier pages ends the dump with those pages and an ``error``.

        Args:
            deadline: ``time.monotonic()`` by which to stop.
            max_pages: the most requests sent (a cap against servers that never end the list).
            max_ents: entries asked per page (a page with more is refused).

        Raises:
            ProtocolError: the connection failed, the bind was rejected (bind_nak), or the server spoke garbage.
            DecodeError: a reply could not be decoded, or it passed a cap.
            TimeoutError: the deadline passed.
        """
        self.transport.deadline = deadline
        try:
            dce = self._bind()
        except BaseException:
            self.close()  # a failed bind leaves impacket's socket open
            raise
        stream = self.transport.stream()
        pages: list[epm.EptLookupPage] = []
        handle = epm.NULL_ENTRY_HANDLE
        read = 0
        try:
            for _ in range(max_pages):
                # the stub is ours (byte-identical to impacket's ept_lookup NDR); impacket frames and sends it
                dce.call(
                    epm.EPT_LOOKUP_OPNUM,
                    epm.encode_ept_lookup_request(max_ents=max_ents, entry_handle=handle),
                )
                fragments = dcerpc.CoReassembly(max_bytes=min(dcerpc.MAX_RESPONSE_BYTES, MAX_DUMP_BYTES - read))
                while not fragments.add(stream.read_co_pdu(deadline)):
                    pass
                read += fragments.size
                if fragments.fault is not None:
                    return EpmTcpDump(tuple(pages), fragments.fault.status)
                page = epm.decode_ept_lookup_response(
                    fragments.stub(), little_endian=fragments.little_endian, max_ents=max_ents
                )
                pages.append(page)
                handle = page.entry_handle
                if page.is_last:
                    break
        except TimeoutError:
            if pages:
                return EpmTcpDump(tuple(pages), error="endpoint mapper stopped answering mid-dump")
            raise
        except OSError as exc:
            if self._closed:
                raise TimeoutError("endpoint mapper dump cancelled") from None
            if pages:
                return EpmTcpDump(tuple(pages), error=f"endpoint mapper connection lost mid-dump: {plain_error(exc)}")
            raise ProtocolError(f"endpoint mapper connection: {plain_error(exc)}", detail=error_detail(exc)) from None
        except (ProtocolError, DecodeError) as exc:
            if pages:
                return EpmTcpDump(tuple(pages), error=f"endpoint mapper dump cut short: {exc}")
            raise
        finally:
            self.close()
        return EpmTcpDump(tuple(pages))


class _PduStream:
    """Whole connection-oriented PDUs from a socket, each by its ``frag_length`` (C706 12.6.3.1), bounded in time.

    Reads ask for :data:`_READ_SIZE` bytes and keep what follows the PDU for the next one, so each byte is copied a
    bounded number of times however the peer splits its PDUs into segments.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()
        self._pos = 0

    def read_pdu(self, deadline: float) -> bytes:
        """The next whole PDU (header and body), in bytes.

        Raises:
            DecodeError: the header is not DCE/RPC v5 (see :func:`exporter.wire.dcerpc.frag_length`).
            ProtocolError: the peer closed part-way.  TimeoutError: ``deadline`` (``time.monotonic()``) passed.
            OSError: the connection failed.
        """
        header = self._take(dcerpc.CO_HEADER_LEN, deadline, dcerpc.CO_HEADER_LEN)
        length = dcerpc.frag_length(header)
        return header + self._take(length - dcerpc.CO_HEADER_LEN, deadline, length)

    def read_co_pdu(self, deadline: float) -> dcerpc.CoPdu:
        """The next PDU, decoded (:func:`exporter.wire.dcerpc.decode_co_pdus`); raises as :meth:`read_pdu`."""
        (pdu,) = dcerpc.decode_co_pdus(self.read_pdu(deadline))
        return pdu

    def _take(self, count: int, deadline: float, pdu_length: int) -> bytes:
        while len(self._buf) - self._pos < count:
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("endpoint mapper read timed out")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(max(_READ_SIZE, count - len(self._buf)))
            except TimeoutError:
                raise TimeoutError("endpoint mapper read timed out") from None
            if not chunk:
                got = pdu_length - count + len(self._buf)
                raise ProtocolError(f"endpoint mapper closed the connection after {got} of a {pdu_length}-byte PDU")
            self._buf += chunk
        out = bytes(self._buf[self._pos : self._pos + count])
        self._pos += count
        return out


class _BoundedTransport(transport.TCPTransport):  # type: ignore[misc]  # impacket is untyped
    """impacket's TCP transport whose ``recv`` (used by impacket's ``bind``) returns one whole PDU from a
    :class:`_PduStream` by ``deadline`` (``time.monotonic()``; set before the bind)."""

    def __init__(self, address: str, port: int) -> None:
        super().__init__(address, port)
        self.deadline = 0.0
        self._stream: _PduStream | None = None

    def stream(self) -> _PduStream:
        """The connection's PDU stream (made on first use, after ``connect``)."""
        if self._stream is None:
            self._stream = _PduStream(self.get_socket())
        return self._stream

    def recv(self, forceRecv: int = 0, count: int = 0) -> bytes:
        """One whole PDU (impacket's ``DCERPCTransport.recv``; its arguments are unused)."""
        return self.stream().read_pdu(self.deadline)

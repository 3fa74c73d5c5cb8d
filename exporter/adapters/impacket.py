"""impacket at arm's length: the MS-RPC connection-oriented transport to the endpoint mapper (TCP 135).

impacket connects, binds to the endpoint mapper interface (MS-RPCE 2.2.1.1, C706 appendix L) and sends
``ept_lookup`` requests; the replies are read here with bounded reads (impacket's ``TCPTransport.recv``
loops forever on a peer that closes mid-PDU) and decoded by :mod:`exporter.wire.epm`.  Paging follows the
``entry_handle`` until the server returns a null handle, zero entries or ``ept_s_not_registered``
(Samba's end of list), which never discards the entries already received.

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

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_PDUS = 4096
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
        self.transport = transport.TCPTransport(address, port)
        self.transport.set_connect_timeout(max(timeout, 0.001))
        self.timeout = timeout
        self._closed = False

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

        Args:
            deadline: ``time.monotonic()`` by which to stop.
            max_pages: the most requests sent (a cap against servers that never end the list).
            max_ents: entries asked per page.

        Raises:
            ProtocolError: the connection failed, the bind was rejected (bind_nak), or the server spoke garbage.
            DecodeError: a reply could not be decoded.
            TimeoutError: the deadline passed.
        """
        try:
            dce = self._bind()
        except BaseException:
            self.close()  # a failed bind leaves impacket's socket open
            raise
        sock = self.transport.get_socket()
        pages: list[epm.EptLookupPage] = []
        handle = epm.NULL_ENTRY_HANDLE
        try:
            for _ in range(max_pages):
                # the stub is ours (byte-identical to impacket's ept_lookup NDR); impacket frames and sends it
                dce.call(
                    epm.EPT_LOOKUP_OPNUM,
                    epm.encode_ept_lookup_request(max_ents=max_ents, entry_handle=handle),
                )
                pdus = _read_response(sock, deadline)
                fault = next((p for p in pdus if p.status is not None), None)
                if fault is not None:
                    return EpmTcpDump(tuple(pages), fault.status)
                page = epm.decode_ept_lookup_response(
                    dcerpc.co_response_stub(pdus), little_endian=pdus[0].little_endian
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


def _read_response(sock: socket.socket, deadline: float) -> tuple[dcerpc.CoPdu, ...]:
    """Read connection-oriented PDUs until one carries PFC_LAST_FRAG (or is a fault); bounded."""
    size = 0
    pdus: list[dcerpc.CoPdu] = []
    for _ in range(MAX_PDUS):
        header = _read_exact(sock, dcerpc.CO_HEADER_LEN, deadline)
        frag_len = dcerpc.frag_length(header)
        size += frag_len
        if size > MAX_RESPONSE_BYTES:
            raise DecodeError(f"endpoint-mapper response larger than {MAX_RESPONSE_BYTES} bytes", size)
        (pdu,) = dcerpc.decode_co_pdus(header + _read_exact(sock, frag_len - dcerpc.CO_HEADER_LEN, deadline))
        pdus.append(pdu)
        if pdu.status is not None or pdu.pfc_flags & rpcrt.PFC_LAST_FRAG:
            return tuple(pdus)
    raise DecodeError(f"more than {MAX_PDUS} fragments in one response", size)


def _read_exact(sock: socket.socket, count: int, deadline: float) -> bytes:
    data = b""
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("endpoint mapper read timed out")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(count - len(data))
        except TimeoutError:
            raise TimeoutError("endpoint mapper read timed out") from None
        if not chunk:
            raise ProtocolError(f"endpoint mapper closed the connection after {len(data)} of {count} bytes")
        data += chunk
    return data

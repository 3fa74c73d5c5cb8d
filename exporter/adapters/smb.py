"""impacket at arm's length: the SMB negotiate on TCP 445, and nothing after it (no session setup, no user).

Two connections, each one NEGOTIATE exchange, then closed:

1. The multi-protocol negotiate of MS-SMB2 3.2.4.2.2.1 (an SMB1 ``SMB_COM_NEGOTIATE`` offering
   ``NT LM 0.12``, ``SMB 2.002`` and ``SMB 2.???``), as Windows clients and impacket's
   ``SMBConnection.negotiateSession`` send it.  A server that answers ``SMB 2.???`` (dialect 0x02FF)
   gets the SMB2 NEGOTIATE (MS-SMB2 2.2.3) offering 2.0.2 to 3.1.1 on the same connection: impacket's
   :class:`~impacket.smb3.SMB3` sends it and parses the reply.  The dialect, the server's
   ``SecurityMode`` (signing enabled / required) and its SPNEGO token come from the final reply.
2. An SMB1 negotiate offering ``NT LM 0.12`` alone (MS-CIFS 2.2.4.52): a reply with a dialect means SMB1
   is still accepted.  A server without SMB1 answers ``DialectIndex`` 0xFFFF, closes the connection, or
   (Samba 4.17) sends a reply that impacket cannot parse (a ``struct`` error): all of them "refused".

The sockets are ours (connected here with our timeout, closed by :meth:`SmbNegotiator.close` from
another thread), and impacket only frames and parses: ``SMBConnection.negotiateSession`` is not used as
a whole because its SMB1 branch builds an ``impacket.smb.SMB``, whose constructor sends a null-session
SESSION_SETUP (``login('', '')``) to a share-level server; SMB1 replies are parsed here with impacket's
structures instead.  Every read is one NetBIOS session message (at most 128 KiB) bounded by the timeout.

Everything here blocks: call it through :func:`exporter.probes.blocking.run_blocking`.

Check by hand::

    smbclient -L //198.18.0.2 -N -d 3 2>&1 | grep -i 'negotiated\\|signing'
    nmap -p445 --script smb-protocols,smb2-security-mode 198.18.0.2
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

from impacket import nmb, smb, smb3, smb3structs

from exporter.errors import DecodeError, ProtocolError, error_detail, plain_error

__all__ = [
    "MAX_KEEPALIVES",
    "MAX_REPLY_BYTES",
    "SMB1_DIALECT",
    "SmbConnectionLost",
    "SmbNegotiate",
    "SmbNegotiator",
    "SmbUnreachable",
    "dialect_name",
]

#: The SMB1 dialect string (MS-CIFS 2.2.4.52.1) and its ``dialect`` label.
SMB1_DIALECT = "NT LM 0.12"
#: SMB2 ``DialectRevision`` -> its name (MS-SMB2 2.2.4).
_DIALECTS = {
    smb3structs.SMB2_DIALECT_002: "2.0.2",
    smb3structs.SMB2_DIALECT_21: "2.1",
    smb3structs.SMB2_DIALECT_30: "3.0",
    smb3structs.SMB2_DIALECT_302: "3.0.2",
    smb3structs.SMB2_DIALECT_311: "3.1.1",
}
_MULTI_PROTOCOL = b"\x02NT LM 0.12\x00\x02SMB 2.002\x00\x02SMB 2.???\x00"
_SMB1_ONLY = b"\x02NT LM 0.12\x00"
#: The NetBIOS name impacket puts nowhere on port 445 (given, so that it never asks ``gethostname``).
_CLIENT_NAME = "PORTQRY"
_SMB1_MAGIC = b"\xffSMB"
_SMB2_MAGIC = b"\xfeSMB"
_NO_DIALECT = 0xFFFF
#: The largest negotiate reply read (bytes); Windows and Samba send 200-400.
MAX_REPLY_BYTES = 64 * 1024
#: The most NetBIOS keep-alives skipped while waiting for one reply.
MAX_KEEPALIVES = 16
#: The most SMB messages read on one negotiate connection (two replies, plus interim responses and strays):
#: impacket loops on STATUS_PENDING without a count, and recurses on a reply with another MessageId.
MAX_MESSAGES = 8
_NTLM_PARAMETERS = 34  # WordCount 17: the NT LAN Manager negotiate response (MS-CIFS 2.2.4.52.2)


def dialect_name(revision: int) -> str:
    """``0x0311`` -> ``"3.1.1"`` (MS-SMB2 2.2.4 ``DialectRevision``); an unknown revision as ``0x....``."""
    return _DIALECTS.get(revision, f"0x{revision:04x}")


@dataclass(frozen=True, slots=True)
class SmbNegotiate:
    """What one negotiate told us.

    Attributes:
        dialect: ``"3.1.1"``, ``"3.0.2"``, ``"3.0"``, ``"2.1"``, ``"2.0.2"`` or ``"NT LM 0.12"``.
        signing_enabled: the server's ``SecurityMode`` has signing enabled (SMB2 0x01, SMB1 0x04).
        signing_required: ... signing required (SMB2 ``SMB2_NEGOTIATE_SIGNING_REQUIRED`` 0x02, SMB1 0x08).
        security_blob: the SPNEGO token of the reply (``b""`` when it has none).
    """

    dialect: str
    signing_enabled: bool
    signing_required: bool
    security_blob: bytes


class SmbConnectionLost(ProtocolError):
    """The server closed or reset the connection before a byte of a reply."""


class SmbUnreachable(ProtocolError):
    """The TCP connection to the SMB port could not be made (refused, unreachable, timed out)."""


class _Session(nmb.NetBIOSTCPSession):  # type: ignore[misc]  # impacket is untyped
    """impacket's NetBIOS session on our socket, with our reads: bounded by the deadline, not per ``recv``.

    impacket's own reader restarts its timeout on every packet and skips keep-alives by recursion; this one
    reads one session message (a 4-byte header, RFC 1002 4.3.1 / MS-SMB2 2.1, and at most
    :data:`MAX_REPLY_BYTES`) by the deadline and skips at most :data:`MAX_KEEPALIVES` keep-alives.
    """

    def __init__(self, sock: socket.socket, address: str, port: int, deadline: float) -> None:
        super().__init__(_CLIENT_NAME, address, address, nmb.TYPE_SERVER, port, None, sock=sock)
        self._pq_sock = sock
        self._pq_deadline = deadline
        self._pq_messages = 0

    def recv_packet(self, timeout: float | None = None) -> nmb.NetBIOSSessionPacket:
        """One session message; ``timeout`` (impacket's per-read value) is ignored for the deadline."""
        for _ in range(MAX_KEEPALIVES + 1):
            header = self._read(4, first=True)
            if header[0] == nmb.NETBIOS_SESSION_MESSAGE:  # MS-SMB2 2.1: a 24-bit StreamProtocolLength
                length = int.from_bytes(header[1:4], "big")
            else:  # RFC 1002 4.3.1: 17 bits
                length = (header[1] & 0x01) << 16 | header[2] << 8 | header[3]
            if length > MAX_REPLY_BYTES:
                raise DecodeError(f"SMB reply of {length} bytes is larger than {MAX_REPLY_BYTES}", 1)
            body = self._read(length, first=False) if length else b""
            if header[0] != nmb.NETBIOS_SESSION_KEEP_ALIVE:
                self._pq_messages += 1
                if self._pq_messages > MAX_MESSAGES:
                    raise DecodeError(f"more than {MAX_MESSAGES} SMB messages without a negotiate reply", 0)
                return nmb.NetBIOSSessionPacket(header + body)
        raise DecodeError(f"more than {MAX_KEEPALIVES} NetBIOS keep-alives instead of a reply", 0)

    def _read(self, count: int, *, first: bool) -> bytes:
        data = b""
        while len(data) < count:
            remaining = self._pq_deadline - time.monotonic()
            if remaining <= 0:
                if data or not first:
                    raise DecodeError(f"SMB reply stopped after {len(data)} of {count} bytes")
                raise TimeoutError("SMB negotiate: no reply in time")
            self._pq_sock.settimeout(remaining)
            try:
                chunk = self._pq_sock.recv(count - len(data))
            except TimeoutError:
                continue
            if not chunk:
                if data or not first:
                    raise DecodeError(f"SMB connection closed after {len(data)} of {count} bytes of a reply")
                raise SmbConnectionLost("SMB connection closed by the server without a reply")
            data += chunk
        return data


class SmbNegotiator:
    """Negotiates with one SMB server, one connection per negotiate (each closed before the next).

    Args:
        address: IPv4/IPv6 literal (never a name).
        port: usually 445.
        timeout: seconds for the TCP connect.
    """

    def __init__(self, address: str, port: int, timeout: float) -> None:
        self.address = address
        self.port = port
        self.timeout = max(timeout, 0.001)
        self._sock: socket.socket | None = None
        self._closed = False

    def close(self) -> None:
        """Close the current connection and refuse new ones (safe from another thread; unblocks a read)."""
        self._closed = True
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def negotiate(self, *, deadline: float) -> SmbNegotiate:
        """The multi-protocol negotiate, then the SMB2 NEGOTIATE when the server picks ``SMB 2.???``.

        Args:
            deadline: ``time.monotonic()`` by which to stop.

        Raises:
            SmbUnreachable: the TCP connection could not be made.
            SmbConnectionLost: the server closed or reset the connection without replying.
            ProtocolError: the server refused the negotiate (an error status, no dialect accepted).
            DecodeError: the reply is not SMB, stopped part-way, or could not be parsed.
            TimeoutError: no reply by the deadline.
        """
        with self._connection(deadline) as session:
            reply = _exchange(session, _MULTI_PROTOCOL)
            if reply.startswith(_SMB1_MAGIC):
                return _smb1_negotiate(reply)
            packet = _smb2_packet(reply)
            try:
                server = smb3.SMB3(
                    self.address,
                    self.address,
                    _CLIENT_NAME,
                    nmb.TYPE_SERVER,
                    self.port,
                    self.timeout,
                    session=session,
                    negSessionResponse=packet,
                )
            except smb3.SessionError as exc:
                raise ProtocolError(f"SMB2 negotiate refused: status 0x{exc.get_error_code():08x}") from None
            return _smb2_state(server)

    def smb1_accepted(self, *, deadline: float) -> tuple[bool, str]:
        """Whether the server accepts an SMB1 negotiate offering ``NT LM 0.12`` alone.

        Returns:
            ``(True, "")`` for a reply choosing the dialect; ``(False, why)`` for a refusal: ``DialectIndex``
            0xFFFF or an error status, an SMB2 reply, a closed or reset connection, or a reply that cannot be
            parsed (Samba 4.17's refusal is one impacket cannot parse).

        Raises:
            SmbUnreachable: the TCP connection could not be made.
            TimeoutError: no reply by the deadline.
        """
        try:
            with self._connection(deadline) as session:
                reply = _exchange(session, _SMB1_ONLY)
            if not reply.startswith(_SMB1_MAGIC):
                return False, "answered with SMB2"
            _smb1_negotiate(reply)
        except SmbUnreachable:
            raise
        except (DecodeError, ProtocolError) as exc:
            return False, str(exc)
        return True, ""

    @contextlib.contextmanager
    def _connection(self, deadline: float) -> Iterator[_Session]:
        """A NetBIOS session ("direct hosting" on 445: no session request, MS-SMB2 2.1) on our own socket."""
        if self._closed:
            raise TimeoutError("SMB negotiate cancelled")
        try:
            sock = socket.create_connection(
                (self.address, self.port), timeout=max(min(self.timeout, deadline - time.monotonic()), 0.001)
            )
        except OSError as exc:
            raise SmbUnreachable(f"SMB connect: {plain_error(exc)}", detail=error_detail(exc)) from None
        self._sock = sock
        try:
            if self._closed:
                raise TimeoutError("SMB negotiate cancelled")
            yield _Session(sock, self.address, self.port, deadline)
        except smb3.SessionError as exc:
            raise ProtocolError(f"SMB negotiate refused: status 0x{exc.get_error_code():08x}") from None
        except (DecodeError, ProtocolError):
            raise
        except OSError as exc:
            if self._closed:
                raise TimeoutError("SMB negotiate cancelled") from None
            if isinstance(exc, TimeoutError):
                raise
            raise SmbConnectionLost(f"SMB connection: {plain_error(exc)}", detail=error_detail(exc)) from None
        except Exception as exc:  # noqa: BLE001 - impacket's structure.py raises bare Exception, struct.error ...
            raise DecodeError("SMB negotiate reply is truncated or malformed", detail=error_detail(exc)) from None
        finally:
            self._sock = None
            with contextlib.suppress(OSError):
                sock.close()


def _exchange(session: _Session, dialects: bytes) -> bytes:
    """Send one SMB1 ``SMB_COM_NEGOTIATE`` offering ``dialects`` (MS-CIFS 2.2.4.52.1); the reply's SMB message."""
    request = smb.NewSMBPacket()
    request["Flags1"] = smb.SMB.FLAGS1_PATHCASELESS | smb.SMB.FLAGS1_CANONICALIZED_PATHS
    request["Flags2"] = (
        smb.SMB.FLAGS2_EXTENDED_SECURITY | smb.SMB.FLAGS2_NT_STATUS | smb.SMB.FLAGS2_LONG_NAMES | smb.SMB.FLAGS2_UNICODE
    )
    command = smb.SMBCommand(smb.SMB.SMB_COM_NEGOTIATE)
    command["Data"] = dialects
    request.addCommand(command)
    session.send_packet(request.getData())
    reply = session.recv_packet()
    if reply.get_type() != nmb.NETBIOS_SESSION_MESSAGE:
        raise DecodeError(f"NetBIOS session packet of type 0x{reply.get_type():02x}, not a message", 0)
    data: bytes = reply.get_trailer()
    if not data.startswith((_SMB1_MAGIC, _SMB2_MAGIC)):
        raise DecodeError("reply is not SMB (no SMB1 or SMB2 header)", 4)
    return data


def _smb2_packet(reply: bytes) -> smb3structs.SMB2Packet:
    packet = smb3structs.SMB2Packet(reply)
    if packet["Command"] != smb3structs.SMB2_NEGOTIATE:
        raise DecodeError(f"SMB2 reply to NEGOTIATE has command 0x{packet['Command']:04x}", 12)
    if packet["Status"] != 0:
        raise ProtocolError(f"SMB2 negotiate refused: status 0x{packet['Status']:08x}")
    return packet


def _smb2_state(server: smb3.SMB3) -> SmbNegotiate:
    """Dialect, SecurityMode and token of impacket's SMB3 connection state (MS-SMB2 3.2.1.2 ``Connection``)."""
    state = server._Connection  # impacket keeps MS-SMB2's Connection abstract data model here
    revision = int(state["Dialect"])
    if revision == smb3structs.SMB2_DIALECT_WILDCARD:
        raise DecodeError("SMB2 server answered the SMB2 NEGOTIATE with the wildcard dialect again", 0)
    if revision >= smb3structs.SMB2_DIALECT_30:
        mode = int(state["ServerSecurityMode"])
    else:  # impacket keeps the server's required bit (not its own 3.1.1 rule) below 3.0
        mode = smb3structs.SMB2_NEGOTIATE_SIGNING_ENABLED | (
            smb3structs.SMB2_NEGOTIATE_SIGNING_REQUIRED if state["RequireSigning"] else 0
        )
    return SmbNegotiate(
        dialect=dialect_name(revision),
        signing_enabled=bool(mode & smb3structs.SMB2_NEGOTIATE_SIGNING_ENABLED),
        signing_required=bool(mode & smb3structs.SMB2_NEGOTIATE_SIGNING_REQUIRED),
        security_blob=bytes(state["GSSNegotiateToken"] or b""),
    )


def _smb1_negotiate(reply: bytes) -> SmbNegotiate:
    """Parse an SMB1 negotiate response (MS-CIFS 2.2.4.52.2, MS-SMB 2.2.4.5.2) with impacket's structures.

    Raises:
        ProtocolError: an error status, or ``DialectIndex`` 0xFFFF (no dialect accepted).
        DecodeError: not a negotiate response, or too short.
    """
    try:
        packet = smb.NewSMBPacket(data=reply)
        if packet["Command"] != smb.SMB.SMB_COM_NEGOTIATE:
            raise DecodeError(f"SMB1 reply to NEGOTIATE has command 0x{packet['Command']:02x}", 4)
        if packet["ErrorClass"] or packet["ErrorCode"] or packet["_reserved"]:
            status = packet["ErrorClass"] | packet["_reserved"] << 8 | packet["ErrorCode"] << 16
            raise ProtocolError(f"SMB1 negotiate refused: status 0x{status:08x}")
        command = smb.SMBCommand(packet["Data"][0])
        parameters = command["Parameters"]
        if len(parameters) >= 2 and struct.unpack_from("<H", parameters)[0] == _NO_DIALECT:
            raise ProtocolError("SMB1 negotiate refused: no dialect accepted")
        if len(parameters) < _NTLM_PARAMETERS:
            raise DecodeError(f"SMB1 negotiate response has {len(parameters)} parameter bytes, not 34", 32)
        fields = smb.SMBNTLMDialect_Parameters(parameters)
        blob = b""
        if fields["Capabilities"] & smb.SMB.CAP_EXTENDED_SECURITY:
            blob = bytes(smb.SMBExtended_Security_Data(command["Data"])["SecurityBlob"])
    except (DecodeError, ProtocolError):
        raise
    except Exception as exc:  # noqa: BLE001 - impacket's structure.py raises bare Exception, struct.error ...
        raise DecodeError("SMB1 negotiate reply is truncated or malformed", detail=error_detail(exc)) from None
    mode = int(fields["SecurityMode"])
    return SmbNegotiate(
        dialect=SMB1_DIALECT,
        signing_enabled=bool(mode & smb.SMB.SECURITY_SIGNATURES_ENABLED),
        signing_required=bool(mode & smb.SMB.SECURITY_SIGNATURES_REQUIRED),
        security_blob=blob,
    )

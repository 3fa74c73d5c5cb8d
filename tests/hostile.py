"""Hostile loopback peers: one server per (binding, transport, behaviour), all in one process of their own.

Run as ``python3 -m tests.hostile``: it listens on 127.0.0.1 only (ephemeral ports), prints one JSON line
``{"<binding>/<transport>/<behaviour>": port, ...}`` on stdout and serves until stdin closes or SIGTERM.
The probe side (tests/test_hostile_peers.py) runs in other processes, so the servers' CPU is not counted there.

Behaviours (:data:`TCP_BEHAVIOURS`, :data:`UDP_BEHAVIOURS`):

=================  ===========================================================================================
garbage            random bytes instead of a reply (TCP: 4 KB, then the connection stays open; UDP: one datagram)
endless            TCP: random bytes as fast as the reader takes them; UDP: a garbage datagram every ms, 3 s
slowloris          the valid reply, one byte a second (TCP); a one-byte datagram a second (UDP)
huge_length        a header that promises far more than is sent: BER ``0x84 7f ff ff ff``, a DCE/RPC bind_ack
                   with frag_length 65535, a Kerberos record length of 2 GB, a DNS length of 65535 (the most its
                   2-byte prefix can say), a TLS record of 65535 bytes, counts of 65535 in DNS/NBSTAT headers,
                   an SMB session header ``00 ff ff ff`` (0xFFFFFF bytes as MS-SMB2 2.1 reads it, 0x1FFFF as
                   RFC 1002 4.3.1 does)
fragment_flood     DCE/RPC: a valid bind_ack, then 24-byte response fragments without PFC_LAST_FRAG forever
                   (TCP) / PF_FRAG fragments that never end (UDP); LDAP(S): SearchResultEntry messages forever;
                   SMB: the wildcard answer, then SMB2 interim responses (``STATUS_PENDING``) that never end
split              a valid reply cut in two segments (TCP) or fragments (connectionless RPC) with 0.15 s between
page_flood         DCE/RPC: valid ``ept_lookup`` pages of 8 entries, each with a handle promising more, forever
reply_flood        UDP: 500 garbage datagrams per query
oversize           UDP: one 65,507-byte datagram (CLDAP: a structurally valid rootDSE stuffed with values)
=================  ===========================================================================================

Not every behaviour has a meaning for every binding (DNS and Kerberos over TCP take the first whole message,
so they have no fragment flood; a connectionless split exists only for RPC): :func:`cases` lists the pairs.
SMB has no fragments either (one NetBIOS session message is one whole SMB message); its flood is the one
way an SMB2 reply can go on without ending, interim responses (MS-SMB2 3.3.4.2) before a final that never comes.
TLS bindings (``ldaps``, ``tls``) get garbage, endless, slowloris and huge_length at the TLS layer, before any
handshake; split and fragment_flood run inside TLS (a real handshake by the ``ssl`` module over memory BIOs, so
the server decides how its bytes are cut).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import ssl
import struct
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import dns.message
from impacket.dcerpc.v5 import rpcrt

from exporter.errors import DecodeError
from exporter.wire import clrpc
from exporter.wire.kerberos import frame_tcp
from tests.cldap import _message_id
from tests.encoders import (
    encode_cl_response,
    encode_ept_lookup_response,
    encode_krb_error,
    encode_search_response,
    encode_smb1_negotiate_refusal,
    encode_smb2_interim_response,
    encode_smb2_negotiate_response,
    encode_spnego_init,
)

TCP_BINDINGS = ("dns", "kerberos", "ldap", "ldaps", "rpc", "smb", "tls")
UDP_BINDINGS = ("dns", "kerberos", "ldap", "mssql", "netbios", "rpc", "snmp")
TCP_BEHAVIOURS = ("garbage", "endless", "slowloris", "huge_length", "fragment_flood", "split", "page_flood")
UDP_BEHAVIOURS = (
    "garbage",
    "endless",
    "slowloris",
    "huge_length",
    "fragment_flood",
    "split",
    "page_flood",
    "reply_flood",
    "oversize",
)
#: Behaviours that exist only for the endpoint mapper (a connectionless split has fragments only there).
RPC_ONLY = {"tcp": ("page_flood",), "udp": ("fragment_flood", "split", "page_flood")}
TLS_BINDINGS = ("ldaps", "tls")
SPLIT_PAUSE = 0.15
#: How long a UDP behaviour keeps sending after one query, seconds (bounded: the probes are long gone by then).
UDP_SEND_SECONDS = 3.0
OVERSIZE = 65507

ROOT_DSE = [
    ("dnsHostName", [b"dc1.hostile.test"]),
    ("defaultNamingContext", [b"DC=hostile,DC=test"]),
    ("currentTime", [b"20261201000000.0Z"]),
]


def cases() -> list[tuple[str, str, str]]:
    """Every ``(binding, transport, behaviour)`` served."""
    out = []
    for binding in TCP_BINDINGS:
        for behaviour in TCP_BEHAVIOURS:
            if behaviour == "fragment_flood" and binding in ("dns", "kerberos"):
                continue
            if behaviour in RPC_ONLY["tcp"] and binding != "rpc":
                continue
            out.append((binding, "tcp", behaviour))
    for binding in UDP_BINDINGS:
        for behaviour in UDP_BEHAVIOURS:
            if behaviour in RPC_ONLY["udp"] and binding != "rpc":
                continue
            out.append((binding, "udp", behaviour))
    return out


def case_id(binding: str, transport: str, behaviour: str) -> str:
    """The key of a case in the port map, ``ldap/tcp/split``."""
    return f"{binding}/{transport}/{behaviour}"


def _garbage(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


# ----------------------------------------------------------------------------------------------- valid replies


def _dns_reply(query: bytes) -> bytes:
    return dns.message.make_response(dns.message.from_wire(query)).to_wire()


def _krb_reply() -> bytes:
    return encode_krb_error(6, "HOSTILE.TEST", datetime.now(UTC).replace(microsecond=0))


def _ldap_reply(request: bytes) -> bytes:
    return encode_search_response(_message_id(request) or 1, [("", ROOT_DSE)])


def _co_header(ptype: int, flags: int, frag_length: int, call_id: int) -> bytes:
    return struct.pack("<BBBB4sHHI", 5, 0, ptype, flags, b"\x10\x00\x00\x00", frag_length, 0, call_id)


def _call_id(pdu: bytes) -> int:
    return struct.unpack_from("<I", pdu, 12)[0] if len(pdu) >= 16 else 1


def _bind_ack(bind: bytes) -> bytes:
    ack = rpcrt.MSRPCBindAck()
    ack["max_tfrag"] = ack["max_rfrag"] = 4280
    ack["assoc_group"] = 0x1234
    ack["SecondaryAddr"] = b"135\x00"
    ack["SecondaryAddrLen"] = 4
    result = rpcrt.CtxItemResult()
    result["Result"] = 0
    result["Reason"] = 0
    result["TransferSyntax"] = rpcrt.uuidtup_to_bin(("8a885d04-1ceb-11c9-9fe8-08002b104860", "2.0"))
    ack["ctx_num"] = 1
    ack["ctx_items"] = result.getData()
    header = rpcrt.MSRPCHeader()
    header["type"] = rpcrt.MSRPC_BINDACK
    header["flags"] = rpcrt.PFC_FIRST_FRAG | rpcrt.PFC_LAST_FRAG
    header["call_id"] = _call_id(bind)
    header["pduData"] = ack.getData()
    return bytes(header.getData())


def _co_response(request: bytes, stub: bytes) -> bytes:
    body = struct.pack("<IHBB", len(stub), 0, 0, 0) + stub
    flags = rpcrt.PFC_FIRST_FRAG | rpcrt.PFC_LAST_FRAG
    return _co_header(rpcrt.MSRPC_RESPONSE, flags, 16 + len(body), _call_id(request)) + body


def _epm_stub() -> bytes:
    return encode_ept_lookup_response(bytes(20), [], 0x16C9A0D6)


_SMB2_WILDCARD = 0x02FF
_SMB311 = 0x0311
_SMB_TOKEN = encode_spnego_init()


def _netbios(message: bytes) -> bytes:
    """One session message on 445 (MS-SMB2 2.1: type 0, a 24-bit length)."""
    return len(message).to_bytes(4, "big") + message


def _smb2_message_id(request: bytes) -> int:
    return struct.unpack_from("<Q", request, 4 + 24)[0] if request[4:8] == b"\xfeSMB" and len(request) >= 36 else 0


def _smb_reply(request: bytes) -> bytes:
    """A DC's answer to one negotiate (NetBIOS header included): the SMB2 NEGOTIATE gets 3.1.1 with signing
    required, the multi-protocol negotiate (``SMB 2.???`` offered) the wildcard, an SMB1-only one a refusal."""
    if request[4:8] == b"\xfeSMB":
        return _netbios(encode_smb2_negotiate_response(_smb2_message_id(request), _SMB311, token=_SMB_TOKEN))
    if b"SMB 2.???" in request:
        return _netbios(encode_smb2_negotiate_response(0, _SMB2_WILDCARD, token=_SMB_TOKEN))
    return _netbios(encode_smb1_negotiate_refusal())


def _epm_page(number: int) -> bytes:
    """A valid ``ept_lookup`` page of 8 entries (null towers) whose entry handle says more follow."""
    entries = [(uuid.UUID(int=number * 8 + i), None, b"hostile page\x00") for i in range(8)]
    return encode_ept_lookup_response(b"\x01" * 20, entries, 0)


# ----------------------------------------------------------------------------------------------- TCP streams


class Stream:
    """A TCP connection's reads and writes, in plain text or inside a server-side TLS session (memory BIOs)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: ssl.SSLContext | None) -> None:
        self.reader, self.writer = reader, writer
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = tls.wrap_bio(self._in, self._out, server_side=True) if tls is not None else None

    async def _pump_in(self) -> None:
        chunk = await asyncio.wait_for(self.reader.read(65536), 5)
        if not chunk:
            raise EOFError
        self._in.write(chunk)

    async def _flush(self, *, split: bool = False) -> None:
        data = self._out.read()
        if split and len(data) > 1:
            self.writer.write(data[: len(data) // 2])
            await self.writer.drain()
            await asyncio.sleep(SPLIT_PAUSE)
            data = data[len(data) // 2 :]
        self.writer.write(data)
        await self.writer.drain()

    async def handshake(self, *, split: bool = False) -> None:
        """Complete the TLS handshake (nothing without TLS); ``split`` cuts each server flight in two."""
        if self._tls is None:
            return
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush(split=split)
                await self._pump_in()
                continue
            await self._flush(split=split)
            return

    async def read(self) -> bytes:
        """One chunk of the client's bytes (decrypted under TLS)."""
        if self._tls is None:
            chunk = await asyncio.wait_for(self.reader.read(65536), 5)
            if not chunk:
                raise EOFError
            return chunk
        while True:
            try:
                return self._tls.read(65536)
            except ssl.SSLWantReadError:
                await self._pump_in()

    async def read_pdu(self) -> bytes:
        """One whole DCE/RPC connection-oriented PDU (frag_length at offset 8)."""
        buf = b""
        while len(buf) < 10 or len(buf) < struct.unpack_from("<H", buf, 8)[0]:
            buf += await self.read()
        return buf

    async def read_netbios(self) -> bytes:
        """One whole NetBIOS session message, its 4-byte header included (24-bit length, MS-SMB2 2.1)."""
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[1:4], "big"):
            buf += await self.read()
        return buf

    async def write(self, data: bytes, *, split: bool = False) -> None:
        """Send ``data`` (encrypted under TLS); ``split``: in two segments, :data:`SPLIT_PAUSE` apart."""
        if self._tls is None:
            if split and len(data) > 1:
                self.writer.write(data[: len(data) // 2])
                await self.writer.drain()
                await asyncio.sleep(SPLIT_PAUSE)
                data = data[len(data) // 2 :]
            self.writer.write(data)
            await self.writer.drain()
            return
        if split and len(data) > 1:
            self._tls.write(data[: len(data) // 2])
            await self._flush()
            await asyncio.sleep(SPLIT_PAUSE)
            data = data[len(data) // 2 :]
        self._tls.write(data)
        await self._flush()


async def _valid_exchange(binding: str, stream: Stream, *, split: bool) -> None:
    """Answer the binding's request(s) correctly, each reply cut in two when ``split``."""
    if binding == "tls":
        return
    if binding == "rpc":
        bind = await stream.read_pdu()
        await stream.write(_bind_ack(bind), split=split)
        request = await stream.read_pdu()
        await stream.write(_co_response(request, _epm_stub()), split=split)
        return
    if binding == "smb":  # the multi-protocol then the SMB2 NEGOTIATE, or the SMB1-only one (its own connection)
        for _ in range(2):
            await stream.write(_smb_reply(await stream.read_netbios()), split=split)
        return
    request = await stream.read()
    if binding == "dns":
        reply = _dns_reply(request[2:])
        await stream.write(len(reply).to_bytes(2, "big") + reply, split=split)
    elif binding == "kerberos":
        await stream.write(frame_tcp(_krb_reply()), split=split)
    else:  # ldap, ldaps
        await stream.write(_ldap_reply(request), split=split)


def _reply_for(binding: str, request: bytes) -> bytes:
    if binding == "dns":
        reply = _dns_reply(request[2:])
        return len(reply).to_bytes(2, "big") + reply
    if binding == "kerberos":
        return frame_tcp(_krb_reply())
    if binding == "rpc":
        return _bind_ack(request)
    if binding == "smb":
        return _smb_reply(request)
    if binding in TLS_BINDINGS:  # the start of a TLS 1.2 ServerHello record
        return bytes.fromhex("160303004a0200004603030000000000000000000000000000000000000000000000000000000000000000")
    return _ldap_reply(request)


_HUGE_TCP = {
    "dns": b"\xff\xff" + bytes(10),
    "kerberos": b"\x7f\xff\xff\xff" + bytes(10),
    "ldap": b"\x30\x84\x7f\xff\xff\xff\x02\x01\x01",
    "rpc": _co_header(rpcrt.MSRPC_BINDACK, 3, 0xFFFF, 1) + bytes(10),
    "smb": b"\x00\xff\xff\xff\xfeSMB@\x00" + bytes(6),
    "ldaps": b"\x16\x03\x03\xff\xff\x02\x00",
    "tls": b"\x16\x03\x03\xff\xff\x02\x00",
}


async def _tcp_behaviour(
    binding: str, behaviour: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: ssl.SSLContext
) -> None:
    rng = random.Random(f"{binding}/{behaviour}")
    inner = behaviour in ("split", "fragment_flood") and binding in TLS_BINDINGS
    stream = Stream(reader, writer, tls if inner else None)
    if behaviour == "split":  # tls: the handshake flights are cut; ldaps: the LDAP reply inside TLS
        await stream.handshake(split=binding == "tls")
        await _valid_exchange(binding, stream, split=True)
        await stream.read()  # hold until the client closes
        return
    if behaviour == "page_flood":  # rpc: valid pages, each promising another, as long as the client asks
        await stream.write(_bind_ack(await stream.read_pdu()))
        for number in range(10_000):
            await stream.write(_co_response(await stream.read_pdu(), _epm_page(number)))
        return
    if behaviour == "fragment_flood":
        await stream.handshake()
        if binding == "rpc":
            await stream.write(_bind_ack(await stream.read_pdu()))
            call_id = _call_id(await stream.read_pdu())
            first = True
            while True:
                flags = rpcrt.PFC_FIRST_FRAG if first else 0
                first = False
                frag = _co_header(rpcrt.MSRPC_RESPONSE, flags, 24, call_id) + struct.pack("<IHBB", 1 << 20, 0, 0, 0)
                await stream.write(frag * 64)
        elif binding == "smb":  # the wildcard, then interim responses to the SMB2 NEGOTIATE, never the final one
            await stream.write(_smb_reply(await stream.read_netbios()))
            message_id = _smb2_message_id(await stream.read_netbios())
            interim = _netbios(encode_smb2_interim_response(message_id, 0x5051))
            while True:
                await stream.write(interim * 64)
        elif binding == "tls":  # the handshake, then application data forever
            chunk = _garbage(rng, 16384)
            while True:
                await stream.write(chunk)
        else:  # ldap, ldaps: entries forever, never a SearchResultDone
            msg_id = _message_id(await stream.read()) or 1
            entry = encode_search_response(msg_id, [("CN=x", [("cn", [b"x" * 40])])])
            entry = entry[: -len(encode_search_response(msg_id, []))]
            while True:
                await stream.write(entry * 64)
        return
    request = await asyncio.wait_for(reader.read(65536), 5)
    if behaviour == "garbage":
        writer.write(_garbage(rng, 4096))
        await writer.drain()
    elif behaviour == "endless":
        chunk = _garbage(rng, 65536)
        while True:
            writer.write(chunk)
            await writer.drain()
    elif behaviour == "slowloris":
        for byte in _reply_for(binding, request):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1.0)
    elif behaviour == "huge_length":
        writer.write(_HUGE_TCP[binding])
        await writer.drain()
    await reader.read(65536)  # hold the connection until the client closes it


def _tcp_handler(
    binding: str, behaviour: str, tls: ssl.SSLContext
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _tcp_behaviour(binding, behaviour, reader, writer, tls)
        except (OSError, EOFError, TimeoutError, ssl.SSLError, DecodeError, ValueError):
            pass
        finally:
            writer.close()

    return handle


# ----------------------------------------------------------------------------------------------- UDP


def _udp_id(binding: str, query: bytes) -> bytes:
    """The bytes a reply must echo to pass the probe's filter (transaction id, reply opcode), or ``b""``."""
    if binding in ("dns", "netbios"):
        return query[:2]
    if binding == "mssql":
        return b"\x05"
    return b""


def _huge_udp(binding: str, query: bytes) -> bytes:
    if binding in ("ldap", "snmp"):
        return b"\x30\x84\x7f\xff\xff\xff\x02\x01\x01"
    if binding == "kerberos":
        return b"\x7e\x84\x7f\xff\xff\xff\x30\x03"
    if binding == "dns":
        return query[:2] + b"\x84\x00" + b"\xff\xff" * 4
    if binding == "netbios":  # a NODE STATUS response whose RDLENGTH and name count promise 64 KB
        return query[:2] + b"\x84\x00\x00\x00\x00\x01\x00\x00\x00\x00" + query[12:50] + b"\x00\x00\x00\x00\xff\xff\xff"
    if binding == "mssql":
        return b"\x05\xff\xff" + b"ServerName;x;"
    pdu = clrpc.decode_pdu(query)  # rpc: a response whose len field says 65535
    (datagram,) = encode_cl_response(pdu, b"\x00" * 8)
    return datagram[:74] + b"\xff\xff" + datagram[76:]


def _tlv(tag: int, body: bytes) -> bytes:
    """One BER TLV with a definite length (X.690 8.1.3)."""
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + body


def _attribute(name: bytes, value: bytes) -> bytes:
    return _tlv(0x30, _tlv(0x04, name) + _tlv(0x31, _tlv(0x04, value)))


def _stuffing(room: int) -> bytes:
    """A rootDSE attribute list with as many one-byte attributes as fit ``room`` bytes: the most BER elements
    per byte a CLDAP reply can carry."""
    parts = [_attribute(k.encode(), v[0]) for k, v in ROOT_DSE]
    size, i = sum(map(len, parts)), 0
    while size + len(_attribute(b"a%d" % i, b"v")) <= room:
        parts.append(_attribute(b"a%d" % i, b"v"))
        size, i = size + len(parts[-1]), i + 1
    return b"".join(parts)


_STUFFED = _stuffing(OVERSIZE - 200)


def _stuffed_root_dse(msg_id: int) -> bytes:
    msg = _tlv(0x02, msg_id.to_bytes((msg_id.bit_length() + 8) // 8, "big"))
    entry = _tlv(0x30, msg + _tlv(0x64, _tlv(0x04, b"") + _tlv(0x30, _STUFFED)))
    return entry + encode_search_response(msg_id, [])


def _oversize(binding: str, query: bytes, rng: random.Random) -> bytes:
    if binding == "ldap":
        return _stuffed_root_dse(_message_id(query) or 1)
    if binding == "rpc":
        pdu = clrpc.decode_pdu(query)
        (datagram,) = encode_cl_response(pdu, _garbage(rng, OVERSIZE - clrpc.CL_HEADER_LEN))
        return datagram
    prefix = _udp_id(binding, query)
    return prefix + _garbage(rng, OVERSIZE - len(prefix))


class UdpPeer(asyncio.DatagramProtocol):
    """One hostile UDP server: answers every datagram with its behaviour."""

    def __init__(self, binding: str, behaviour: str) -> None:
        self.binding, self.behaviour = binding, behaviour
        self.rng = random.Random(f"{binding}/udp/{behaviour}")
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.ensure_future(self._answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def error_received(self, exc: Exception) -> None:
        return

    async def _answer(self, query: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        send = self.transport.sendto
        prefix = _udp_id(self.binding, query)
        loop = asyncio.get_running_loop()
        until = loop.time() + UDP_SEND_SECONDS
        try:
            if self.behaviour == "garbage":
                send(prefix + _garbage(self.rng, 200), addr)
            elif self.behaviour == "endless":
                while loop.time() < until:
                    send(prefix + _garbage(self.rng, 512), addr)
                    await asyncio.sleep(0.001)
            elif self.behaviour == "slowloris":
                while loop.time() < until:
                    send(_garbage(self.rng, 1), addr)
                    await asyncio.sleep(1.0)
            elif self.behaviour == "huge_length":
                send(_huge_udp(self.binding, query), addr)
            elif self.behaviour == "reply_flood":
                for _ in range(500):
                    send(prefix + _garbage(self.rng, 512), addr)
            elif self.behaviour == "oversize":
                send(_oversize(self.binding, query, self.rng), addr)
            elif self.behaviour == "fragment_flood":  # rpc: fragments of our call that never end
                pdu = clrpc.decode_pdu(query)
                num = 0
                while loop.time() < until:
                    for _ in range(50):
                        (frag,) = encode_cl_response(pdu, b"\x00" * 24)
                        frag = frag[:3] + bytes([clrpc.PF_FRAG | clrpc.PF_NO_FACK]) + frag[4:]
                        send(frag[:76] + struct.pack("<H", num & 0xFFFF) + frag[78:], addr)
                        num += 1
                    await asyncio.sleep(0.005)
            elif self.behaviour == "page_flood":  # rpc: every page valid and promising another
                pdu = clrpc.decode_pdu(query)
                (datagram,) = encode_cl_response(pdu, _epm_page(pdu.seqnum))
                send(datagram, addr)
            elif self.behaviour == "split":  # rpc: a valid reply in two fragments, a pause between
                pdu = clrpc.decode_pdu(query)
                first, second = encode_cl_response(pdu, _epm_stub(), fragment_size=(len(_epm_stub()) + 1) // 2)
                send(first, addr)
                await asyncio.sleep(SPLIT_PAUSE)
                send(second, addr)
        except (DecodeError, ValueError, OSError):
            return


# ----------------------------------------------------------------------------------------------- the process


def _tls_context(directory: Path) -> ssl.SSLContext:
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=hostile.portqry.test"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


async def serve() -> None:
    """Start every server on 127.0.0.1, print the port map, serve until stdin closes or SIGTERM."""
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp:
        tls = _tls_context(Path(tmp))
    ports: dict[str, int] = {}
    servers: list[asyncio.AbstractServer] = []
    for binding, transport, behaviour in cases():
        if transport == "tcp":
            server = await asyncio.start_server(_tcp_handler(binding, behaviour, tls), "127.0.0.1", 0, backlog=256)
            servers.append(server)
            ports[case_id(binding, transport, behaviour)] = server.sockets[0].getsockname()[1]
        else:
            udp, _ = await loop.create_datagram_endpoint(
                lambda b=binding, h=behaviour: UdpPeer(b, h), local_addr=("127.0.0.1", 0)
            )
            ports[case_id(binding, transport, behaviour)] = udp.get_extra_info("sockname")[1]
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 4096) else None)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())

"""The state probes: a TCP connect and a UDP datagram on a connected socket, with ICMP evidence.

The ICMP type and code come from the Linux socket error queue (``IP_RECVERR``/``IPV6_RECVERR`` and
``recvmsg(MSG_ERRQUEUE)``, see ip(7) and ipv6(7)), not from errno alone: errno merges
host-unreachable and administratively-prohibited into ``EHOSTUNREACH``.  Python 3.11 lacks the
constants, so they are defined here.

Everything here is non-blocking on the running event loop; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from exporter.errors import plain_error
from exporter.states import PortState, Reason, classify_errno, classify_icmp

IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3
_SOCK_EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err, <linux/errqueue.h>

_LINGER_ABORT = struct.pack("ii", 1, 0)  # struct linger {l_onoff = 1, l_linger = 0}
#: The most datagrams read while waiting for one that a protocol accepts (hostile or stray replies).
MAX_DATAGRAMS = 16
#: The largest datagram read, in bytes (the IPv4 UDP maximum).
MAX_DATAGRAM_BYTES = 65535


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one state probe saw.

    Attributes:
        state: the port state this evidence means.
        reason: why.
        tries: connection attempts or datagrams sent.
        data: the reply datagram (UDP ``reply``), else ``b""``.
        icmp: ``(type, code)`` of an ICMP error, if one came back.
        error: a one-line description of a local failure, else ``""``.
        local: for ``local-error``, the errno name (``EMFILE``), else ``""``.
    """

    state: PortState
    reason: Reason
    tries: int
    data: bytes = b""
    icmp: tuple[int, int] | None = None
    error: str = ""
    local: str = ""


def _enable_recverr(sock: socket.socket, family: int) -> None:
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)


def read_icmp_error(sock: socket.socket) -> tuple[int, int, int] | None:
    """Drain the socket error queue and return the first ICMP error found.

    Args:
        sock: a socket with ``IP_RECVERR``/``IPV6_RECVERR`` enabled.

    Returns:
        ``(origin, icmp_type, icmp_code)`` for an ICMP/ICMPv6 origin, else ``None`` (queue empty or only
        local errors).  Bounded: at most :data:`MAX_DATAGRAMS` entries are read.
    """
    found: tuple[int, int, int] | None = None
    for _ in range(MAX_DATAGRAMS):
        try:
            _, ancdata, _, _ = sock.recvmsg(512, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
        for level, kind, cdata in ancdata:
            if (level, kind) not in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)):
                continue
            if len(cdata) < _SOCK_EXTENDED_ERR.size:
                continue
            _errno, origin, icmp_type, icmp_code, _pad, _info, _data = _SOCK_EXTENDED_ERR.unpack_from(cdata)
            if origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6) and found is None:
                found = (origin, icmp_type, icmp_code)
    return found


def _from_icmp(family: int, icmp: tuple[int, int, int], tries: int) -> Evidence:
    _origin, icmp_type, icmp_code = icmp
    state, reason = classify_icmp(family, icmp_type, icmp_code)
    return Evidence(state, reason, tries, icmp=(icmp_type, icmp_code))


def _from_errno(exc: OSError, tries: int, what: str = "") -> Evidence:
    state, reason = classify_errno(exc.errno or 0)
    if reason is Reason.REFUSED:
        return Evidence(state, reason, tries)
    text = f"{what}{plain_error(exc)}"
    if reason is Reason.LOCAL_ERROR:
        return Evidence(state, reason, tries, error=text, local=errno.errorcode.get(exc.errno or 0, "unknown"))
    return Evidence(state, reason, tries, error=text)


def _local(exc: OSError, tries: int) -> Evidence:
    """``socket()`` or ``bind()`` failed here: ``local-error`` whatever the errno (no packet was sent)."""
    name = errno.errorcode.get(exc.errno or 0, "unknown")
    return Evidence(PortState.FILTERED, Reason.LOCAL_ERROR, tries, error=f"socket: {plain_error(exc)}", local=name)


def _new_socket(family: int, kind: int, source_port: int | None) -> socket.socket:
    sock = socket.socket(family, kind | socket.SOCK_NONBLOCK)
    try:
        _enable_recverr(sock, family)
        if source_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", source_port))
    except OSError:
        sock.close()
        raise
    return sock


async def tcp_connect(
    address: str,
    port: int,
    *,
    family: int,
    timeout: float,
    tries: int = 3,
    source_port: int | None = None,
) -> Evidence:
    """Probe a TCP port with full connects, PortQry style.

    A completed handshake is LISTENING (``syn-ack``); a RST is NOT LISTENING (``refused``); an ICMP error
    is classified by type and code; silence is retried and, after ``tries`` attempts, FILTERED
    (``timeout``).  The connection is closed at once after the handshake.

    Args:
        address: IPv4 or IPv6 literal.
        port: 1-65535.
        family: ``socket.AF_INET`` or ``socket.AF_INET6``.
        timeout: seconds per try.
        tries: attempts before FILTERED (PortQry: 3).
        source_port: bind this local port first (PortQry ``-sp``), else ephemeral.

    Returns:
        The :class:`Evidence`; never raises for network conditions (a local socket failure is
        ``local-error`` with ``error`` and ``local`` set).
    """
    loop = asyncio.get_running_loop()
    tries = max(1, tries)
    for attempt in range(1, tries + 1):
        try:
            sock = _new_socket(family, socket.SOCK_STREAM, source_port)
        except OSError as exc:
            return _local(exc, attempt - 1)
        try:
            try:
                error = await _connect(loop, sock, (address, port), timeout)
            except TimeoutError:
                continue
            except OSError as exc:
                error = exc.errno or errno.EIO
            if error:
                icmp = read_icmp_error(sock)
                if icmp is not None:
                    return _from_icmp(family, icmp, attempt)
                return _from_errno(OSError(error, os.strerror(error)), attempt)
            # Abortive close (RST): no FIN exchange and no TIME_WAIT left behind for every probe of a sweep,
            # which would otherwise pile up ephemeral ports on the exporter's host.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
            return Evidence(PortState.LISTENING, Reason.SYN_ACK, attempt)
        finally:
            sock.close()
    return Evidence(PortState.FILTERED, Reason.TIMEOUT, tries)


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _connect(loop: asyncio.AbstractEventLoop, sock: socket.socket, where: tuple[str, int], timeout: float) -> int:
    """Connect the non-blocking ``sock``; the errno of the outcome (0: connected).

    The loop's ``sock_connect`` does the same with a resolution check, a transport check and two callbacks
    more per connect; a sweep of 10,000 ports a round pays for each.

    Raises:
        TimeoutError: no outcome within ``timeout`` seconds.
    """
    error = sock.connect_ex(where)
    if error not in (errno.EINPROGRESS, errno.EAGAIN):
        return error
    # On a near peer (loopback, a veth pair into a namespace) the handshake usually completes inside
    # connect(): then there is nothing to wait for, and no writer to register and remove.
    settled = 0 if _connected(sock) else sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or None
    if settled is not None:
        await asyncio.sleep(0)  # still one turn of the loop per connect: a sweep never starves the others
        return settled
    waiter: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    loop.add_writer(fd, _wake, waiter)
    try:
        async with asyncio.timeout(timeout):  # no extra task per try, unlike wait_for
            await waiter
    finally:
        loop.remove_writer(fd)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


async def udp_exchange(
    address: str,
    port: int,
    payload: bytes,
    *,
    family: int,
    timeout: float,
    tries: int = 1,
    source_port: int | None = None,
    accept: Callable[[bytes], bool] | None = None,
) -> Evidence:
    """Send a datagram on a connected UDP socket and wait for a reply or an ICMP error.

    Any datagram that ``accept`` approves (default: any) is LISTENING (``reply``); ICMP port unreachable
    is NOT LISTENING; another ICMP unreachable is FILTERED; silence after ``tries`` sends is
    LISTENING or FILTERED (``no-reply``).  Each send is checked to have handed the whole datagram to the
    kernel; the send count is in ``tries``.

    Args:
        address: IPv4 or IPv6 literal.
        port: 1-65535.
        payload: the datagram, 0-65507 bytes (PortQry sends an unformatted one first).
        family: ``socket.AF_INET`` or ``socket.AF_INET6``.
        timeout: seconds to wait after each send.
        tries: datagrams to send before giving up (PortQry: 1).
        source_port: bind this local port first (PortQry ``-sp``).
        accept: predicate on a reply datagram; rejected datagrams are skipped (at most
            :data:`MAX_DATAGRAMS` per try), e.g. a wrong transaction id.

    Returns:
        The :class:`Evidence`, with the accepted datagram in ``data``.
    """
    loop = asyncio.get_running_loop()
    try:
        sock = _new_socket(family, socket.SOCK_DGRAM, source_port)
    except OSError as exc:
        return _local(exc, 0)
    try:
        sock.connect((address, port))
    except OSError as exc:
        sock.close()
        return _from_errno(exc, 0, "connect: ")
    rejected = b""
    rejected_count = 0
    try:
        tries = max(1, tries)
        for attempt in range(1, tries + 1):
            try:
                sent = sock.send(payload)
            except OSError as exc:
                icmp = read_icmp_error(sock)
                if icmp is not None:  # an ICMP error from a previous try surfaced on send
                    return _from_icmp(family, icmp, attempt)
                return _from_errno(exc, attempt)
            if sent != len(payload):
                return Evidence(PortState.FILTERED, Reason.LOCAL_ERROR, attempt, error="short send", local="short-send")
            deadline = loop.time() + timeout
            skipped = 0
            while skipped < MAX_DATAGRAMS:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await _wait_readable(loop, sock, remaining):
                    break
                icmp = read_icmp_error(sock)
                if icmp is not None:
                    return _from_icmp(family, icmp, attempt)
                try:
                    data = sock.recv(MAX_DATAGRAM_BYTES)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    return _from_errno(exc, attempt)
                if accept is None or accept(data):
                    return Evidence(PortState.LISTENING, Reason.REPLY, attempt, data=data)
                skipped += 1
                rejected_count += 1
                rejected = data
        if rejected_count:  # something answered, just not what the protocol expects: still LISTENING
            return Evidence(
                PortState.LISTENING,
                Reason.REPLY,
                tries,
                data=rejected,
                error=f"{rejected_count} reply datagram(s) not accepted as a reply to our query",
            )
        return Evidence(PortState.LISTENING_OR_FILTERED, Reason.NO_REPLY, tries)
    finally:
        sock.close()


async def _wait_readable(loop: asyncio.AbstractEventLoop, sock: socket.socket, timeout: float) -> bool:
    """Wait until ``sock`` is readable or has an error pending (epoll reports EPOLLERR as readable)."""
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        async with asyncio.timeout(timeout):
            await fut
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
    return True

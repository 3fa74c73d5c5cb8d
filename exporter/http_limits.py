"""Limits of the HTTP server: a connection cap enforced at accept, time limits, the descriptor budget.

aiohttp has no connection cap, and asyncio counts a TLS connection only once its handshake is done, so the
cap sits underneath both: :class:`ConnectionLimits` is the listening socket's protocol factory and sees every
accepted TCP connection before any byte of TLS.  Each one holds a descriptor until it closes; at most
``max_connections`` are open at once (Prometheus' ``--web.max-connections``, default 512).  At the cap, the
connection idle the longest (silent, sending its request head, or in keep-alive between requests; never one whose
request is being handled) is closed to make room, so idle or slow clients cannot lock Prometheus out; when every
connection is busy in a handler the new one is closed at once.

The time limits: a connection has :data:`REQUEST_HEAD_TIMEOUT_SECONDS` to send a complete request head, from
its start or from the end of its previous response (aiohttp's ``keepalive_timeout``, whose timer runs from
the connection's start and is not reset by partial data: a slowloris client is cut by it), and an idle keep-alive
connection is closed after the same time; a TLS handshake gets :data:`TLS_HANDSHAKE_TIMEOUT_SECONDS`; a response
that the client stops reading for :data:`WRITE_STALL_TIMEOUT_SECONDS` (transport paused all that time) is
aborted.  Request lines and header fields are capped by aiohttp (``max_line_size``, ``max_field_size``,
``max_headers``: :data:`HANDLER_ARGS`), answered 400 at once.

Descriptors: the probe engine needs one per probe in flight (``[exporter] concurrency``), the process a few
dozen of its own (:data:`RESERVED_DESCRIPTORS`); :func:`fit_descriptor_limit` checks that ``max_connections`` plus
those fit under ``RLIMIT_NOFILE``.  Check by hand: ``curl -s 127.0.0.1:9727/metrics | grep http_connections``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import resource
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NamedTuple

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.logs import get_logger

log = get_logger(component="http")

#: Prometheus' ``--web.max-connections`` default.
DEFAULT_MAX_CONNECTIONS = 512
#: Time to send a complete request head, and the idle keep-alive time, seconds.
REQUEST_HEAD_TIMEOUT_SECONDS = 5.0
#: Time to complete a TLS handshake, seconds.
TLS_HANDSHAKE_TIMEOUT_SECONDS = 5.0
#: Time a response may stay unread by its client (writes paused) before the connection is aborted, seconds.
WRITE_STALL_TIMEOUT_SECONDS = 30.0
#: Listen backlog: connections the kernel completes before we accept them (capped by net.core.somaxconn).
LISTEN_BACKLOG = 1024
#: Connections accepted per readiness of the listening socket (the most a burst can overshoot the cap by).
ACCEPT_BATCH = 16
#: Pause of accepting after an ``accept`` failed for want of descriptors or memory, seconds.
ACCEPT_RETRY_SECONDS = 0.1
#: Descriptors the process needs beside HTTP connections and probes: interpreter, logs, epoll, listeners, DNS.
RESERVED_DESCRIPTORS = 64
#: aiohttp's request parser limits: request line and header field bytes, header count (answered 400).
HANDLER_ARGS: dict[str, Any] = {
    "max_line_size": 8190,
    "max_field_size": 8190,
    "max_headers": 128,
    "keepalive_timeout": REQUEST_HEAD_TIMEOUT_SECONDS,
}
#: Decrypted bytes kept for a TLS connection between its handshake and its HTTP handler.
_EARLY_DATA_BYTES = 64 * 1024
_WARNING_INTERVAL_SECONDS = 60.0


class ConnectionLimits(Collector):
    """The connection cap and its counters; a prometheus_client collector of them.

    Args:
        max_connections: connections open at once (accepted, TLS handshake included), >= 1.

    Metrics: ``portqry_exporter_http_connections`` (open now), ``portqry_exporter_http_connections_max``,
    ``portqry_exporter_http_connections_accepted_total``, ``..._refused_total`` (closed at accept: the cap was
    reached and every connection was busy), ``..._evicted_total`` (idle connections closed to make room) and
    ``..._aborted_total{reason="tls-handshake|write-stall"}``.
    """

    def __init__(self, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.max_connections = max_connections
        self.idle: collections.OrderedDict[_Connection, None] = collections.OrderedDict()
        self.busy: dict[_Connection, int] = {}
        self.by_handler: dict[object, _Connection] = {}
        self.accepted = 0
        self.refused = 0
        self.evicted = 0
        self.accept_errors = 0
        self.aborted = {"tls-handshake": 0, "write-stall": 0}
        self._warned_at: dict[str, float] = {}

    @property
    def open(self) -> int:
        """Connections open now (idle and busy)."""
        return len(self.idle) + len(self.busy)

    def accept_ready(self, listener: socket.socket, server: web.Server, ssl_context: ssl.SSLContext | None) -> None:
        """Accept what ``listener`` has (up to :data:`ACCEPT_BATCH`), each admitted or closed at once.

        A connection over the cap is closed (a reset) before the next ``accept``, so the descriptors in use never
        exceed the cap by more than one batch; the admitted ones go to ``server`` (aiohttp), through TLS with
        ``ssl_context``.  Out of descriptors, accepting pauses for :data:`ACCEPT_RETRY_SECONDS`.
        """
        loop = asyncio.get_running_loop()
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _address = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                self._pause_accepting(loop, listener, exc, server, ssl_context)
                return
            conn = _Connection(self, server, ssl_context)
            if not self.admit(conn):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                continue
            sock.setblocking(False)
            conn.connecting = loop.create_task(self._connect(loop, conn, sock))

    async def _connect(self, loop: asyncio.AbstractEventLoop, conn: _Connection, sock: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(lambda: conn, sock)
        except OSError as exc:  # the peer reset it already
            log.debug("accepted connection lost before it started", error=str(exc))
            sock.close()
            self.release(conn)

    def _pause_accepting(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: socket.socket,
        exc: OSError,
        server: web.Server,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        fd = listener.fileno()
        if fd < 0:
            return
        self.accept_errors += 1
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        self._warn("accept", "accepting HTTP connections failed: pausing", error=why, open=self.open)
        loop.remove_reader(fd)

        def resume() -> None:
            if listener.fileno() >= 0:
                loop.add_reader(listener.fileno(), self.accept_ready, listener, server, ssl_context)

        loop.call_later(ACCEPT_RETRY_SECONDS, resume)

    def middleware(self) -> Middleware:
        """An aiohttp middleware marking a connection busy (not evictable) while its request is handled."""

        @web.middleware
        async def mark_busy(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            conn = self.by_handler.get(request.protocol)
            if conn is None:  # served without our factory (aiohttp's test server)
                return await handler(request)
            self._set_busy(conn, +1)
            try:
                return await handler(request)
            finally:
                self._set_busy(conn, -1)

        return mark_busy

    def close_all(self) -> None:
        """Abort every connection (at shutdown, after aiohttp closed its own)."""
        for conn in [*self.idle, *self.busy]:
            conn.abort()

    def admit(self, conn: _Connection) -> bool:
        """Count ``conn`` in, evicting the longest-idle connection at the cap; False: refuse it."""
        if self.open >= self.max_connections:
            self._warn(
                "cap",
                "HTTP connection cap reached: closing idle connections, refusing new ones while all are busy",
                max_connections=self.max_connections,
                busy=len(self.busy),
            )
            if not self.idle:
                self.refused += 1
                log.debug("connection refused: every connection busy", max_connections=self.max_connections)
                return False
            oldest, _ = self.idle.popitem(last=False)
            self.evicted += 1
            oldest.abort()
        self.accepted += 1
        self.idle[conn] = None
        return True

    def release(self, conn: _Connection) -> None:
        """Count ``conn`` out (closed); idempotent."""
        self.idle.pop(conn, None)
        self.busy.pop(conn, None)
        if conn.handler is not None:
            self.by_handler.pop(conn.handler, None)

    def _set_busy(self, conn: _Connection, delta: int) -> None:
        if conn.closed:
            return
        depth = self.busy.pop(conn, 0) + delta
        self.idle.pop(conn, None)
        if depth > 0:
            self.busy[conn] = depth
        else:
            self.idle[conn] = None  # to the end: the most recently active

    def _warn(self, kind: str, event: str, **fields: Any) -> None:
        """Log ``event`` as a warning, at most once a minute per ``kind`` (floods stay readable)."""
        now = time.monotonic()
        if now - self._warned_at.get(kind, -_WARNING_INTERVAL_SECONDS) >= _WARNING_INTERVAL_SECONDS:
            self._warned_at[kind] = now
            log.warning(event, **fields)

    def collect(self) -> Iterator[Metric]:
        """The gauges and counters named in the class docstring."""
        yield GaugeMetricFamily(
            "portqry_exporter_http_connections", "HTTP connections open now (TLS handshakes included).", self.open
        )
        yield GaugeMetricFamily(
            "portqry_exporter_http_connections_max",
            "The cap on open HTTP connections (--web.max-connections).",
            self.max_connections,
        )
        for name, text, value in (
            ("accepted", "HTTP connections accepted under the cap.", self.accepted),
            (
                "refused",
                "HTTP connections closed at accept: the cap was reached and every connection busy.",
                self.refused,
            ),
            ("evicted", "Idle HTTP connections closed to make room for a new one at the cap.", self.evicted),
            (
                "accept_errors",
                "accept() failures (out of descriptors or memory); accepting paused 0.1 s.",
                self.accept_errors,
            ),
        ):
            yield CounterMetricFamily(f"portqry_exporter_http_connections_{name}", text, value)
        aborted = CounterMetricFamily(
            "portqry_exporter_http_connections_aborted",
            "HTTP connections aborted: TLS handshake failed or timed out, or the client stopped reading.",
            labels=["reason"],
        )
        for reason, count in self.aborted.items():
            aborted.add_metric([reason], count)
        yield aborted


class _Connection(asyncio.Protocol):
    """One accepted TCP connection: admitted by :class:`ConnectionLimits`, TLS if configured, then aiohttp's."""

    def __init__(self, limits: ConnectionLimits, server: web.Server, ssl_context: ssl.SSLContext | None) -> None:
        self.limits = limits
        self.server = server
        self.ssl_context = ssl_context
        self.raw: asyncio.Transport | None = None
        self.handler: asyncio.Protocol | None = None
        self.closed = False
        self.early = bytearray()
        self.stall: asyncio.TimerHandle | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.handshake: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.raw = transport
        if self.closed:  # evicted between accept and now
            transport.abort()
            return
        if self.ssl_context is None:
            self._attach(transport)
        else:
            self.handshake = asyncio.get_running_loop().create_task(self._start_tls(transport, self.ssl_context))

    async def _start_tls(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport, self, context, server_side=True, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_SECONDS
            )
        except (OSError, EOFError) as exc:  # ssl.SSLError and TimeoutError are OSErrors
            if not self.closed:
                self.limits.aborted["tls-handshake"] += 1
                log.debug("TLS handshake failed", error=str(exc) or type(exc).__name__)
            self._lost()
            return
        if tls is None or self.closed:
            self._lost()
            return
        self._attach(tls)

    def _attach(self, transport: asyncio.Transport) -> None:
        handler = self.server()
        self.handler = handler
        self.limits.by_handler[handler] = self
        handler.connection_made(transport)
        if self.early:
            data, self.early = bytes(self.early), bytearray()
            handler.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.data_received(data)
        elif len(self.early) + len(data) <= _EARLY_DATA_BYTES:
            self.early += data
        else:
            self.abort()

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.handler is not None else None

    def pause_writing(self) -> None:
        if self.stall is None:
            self.stall = asyncio.get_running_loop().call_later(WRITE_STALL_TIMEOUT_SECONDS, self._stalled)
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.stall is not None:
            self.stall.cancel()
            self.stall = None
        if self.handler is not None:
            self.handler.resume_writing()

    def _stalled(self) -> None:
        self.stall = None
        self.limits.aborted["write-stall"] += 1
        log.debug("client stopped reading its response: connection aborted")
        self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def _lost(self) -> None:
        self.closed = True
        if self.stall is not None:
            self.stall.cancel()
            self.stall = None
        self.limits.release(self)

    def abort(self) -> None:
        """Close at once (a reset), releasing the descriptor whatever is still buffered."""
        self.closed = True
        self.limits.release(self)
        if self.raw is not None:
            self.raw.abort()


class _Listener(asyncio.AbstractServer):
    """Listening sockets whose connections :meth:`ConnectionLimits.accept_ready` accepts (what a site closes)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, socks: list[socket.socket]) -> None:
        self.loop = loop
        self.socks = socks

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(self.socks)

    def close(self) -> None:
        """Stop accepting and close the listening sockets."""
        for sock in self.socks:
            if sock.fileno() >= 0:
                self.loop.remove_reader(sock.fileno())
                sock.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop accepting."""
        return self.loop

    def is_serving(self) -> bool:
        """Still accepting."""
        return any(sock.fileno() >= 0 for sock in self.socks)

    async def wait_closed(self) -> None:
        """Nothing to wait for: :meth:`close` closes at once."""

    async def start_serving(self) -> None:
        """Already serving (from :meth:`_Site.start`)."""

    async def serve_forever(self) -> None:
        """Not used: aiohttp's runner keeps the loop running.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError


class _Site(web.BaseSite):
    """An aiohttp site whose listening sockets are accepted by a :class:`ConnectionLimits`."""

    __slots__ = ("_host", "_limits", "_port", "_tls")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, limits: ConnectionLimits, tls: ssl.SSLContext | None
    ) -> None:
        super().__init__(runner, backlog=LISTEN_BACKLOG)
        self._host = host
        self._port = port
        self._limits = limits
        self._tls = tls

    @property
    def name(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        socks = []
        infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _name, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(self._backlog)
                sock.setblocking(False)
        except OSError:
            for sock in socks:
                sock.close()
            raise
        for sock in socks:
            loop.add_reader(sock.fileno(), self._limits.accept_ready, sock, server, self._tls)
        self._server = _Listener(loop, socks)


async def serve_limited(
    app: web.Application,
    host: str,
    port: int,
    limits: ConnectionLimits,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: any free port) under ``limits``, over TLS with ``ssl_context``.

    ``app`` needs ``limits.middleware()`` (so that busy connections are not evicted).

    Returns:
        The runner (``await runner.cleanup()`` stops it and aborts what is left) and the port bound.

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    app.on_shutdown.append(lambda _app: _close_all(limits))
    await runner.setup()
    site = _Site(runner, host, port, limits, ssl_context)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)


async def _close_all(limits: ConnectionLimits) -> None:
    limits.close_all()


class DescriptorBudget(NamedTuple):
    """What the process may open (``RLIMIT_NOFILE``'s soft limit) and what it needs at most."""

    limit: int
    needed: int

    @property
    def fits(self) -> bool:
        """The cap, the probes and the reserve fit under the limit."""
        return self.needed <= self.limit


def fit_descriptor_limit(max_connections: int, concurrency: int) -> DescriptorBudget:
    """Raise ``RLIMIT_NOFILE``'s soft limit to its hard limit (as Go does), then compare with the need.

    The need is ``max_connections`` (one descriptor each) + ``concurrency`` (one per probe in flight) +
    :data:`RESERVED_DESCRIPTORS`; e.g. 512 + 256 + 64 = 832, under the usual 1,024.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return DescriptorBudget(soft, max_connections + concurrency + RESERVED_DESCRIPTORS)

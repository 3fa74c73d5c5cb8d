"""Real loopback peers for the engine and CLI tests: TCP listeners, UDP echo and silent UDP sockets, on port 0."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress


@contextmanager
def tcp_listener(host: str = "127.0.0.1", *, sources: list[int] | None = None) -> Iterator[int]:
    """A listening TCP socket; yields its port.

    Args:
        host: the loopback address to listen on.
        sources: if given, connections are accepted (and closed) and each one's source port is appended here;
            otherwise the kernel completes the handshakes and nothing accepts them.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as srv:
        srv.bind((host, 0))
        srv.listen(128)
        if sources is None:
            yield srv.getsockname()[1]
            return
        srv.settimeout(0.1)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, peer = srv.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                sources.append(peer[1])
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield srv.getsockname()[1]
        finally:
            stop.set()
            thread.join(2)


def closed_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port with no listener: bind to get a free one, then close it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


@contextmanager
def udp_peer(
    *, echo: bool, host: str = "127.0.0.1", sources: list[int] | None = None
) -> Iterator[tuple[int, list[tuple[float, bytes]]]]:
    """A UDP socket that records each datagram's arrival (monotonic seconds, payload) and echoes it if asked.

    A silent peer (``echo=False``) sends nothing back, not even ICMP: the port reads LISTENING or FILTERED.
    ``sources``, if given, receives each datagram's source port.

    Yields:
        ``(port, arrivals)``; ``arrivals`` fills while the block runs.
    """
    arrivals: list[tuple[float, bytes]] = []

    def seen(data: bytes, peer: tuple[str, int]) -> None:
        arrivals.append((time.monotonic(), data))
        if sources is not None:
            sources.append(peer[1])

    with udp_replier(lambda data: [b"pong:" + data] if echo else [], host, seen=seen) as port:
        yield port, arrivals


#: A TCP peer's behaviour: one coroutine per connection.
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def handler_peer(handler: Handler) -> AsyncIterator[int]:
    """An asyncio TCP server on 127.0.0.1 running ``handler`` per connection; yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)  # type: ignore[arg-type]
        try:
            with suppress(OSError, EOFError, asyncio.CancelledError):  # a peer gone; cancelled: the test is over
                await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@contextmanager
def udp_replier(
    reply: Callable[[bytes], list[bytes]],
    host: str = "127.0.0.1",
    *,
    seen: Callable[[bytes, tuple[str, int]], None] | None = None,
) -> Iterator[int]:
    """A UDP socket on ``host`` that answers each datagram with ``reply(datagram)`` (``seen`` sees it first).

    Yields:
        its port.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if seen is not None:
                seen(data, peer)
            for datagram in reply(data):
                sock.sendto(datagram, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        sock.close()

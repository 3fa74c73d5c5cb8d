"""Real loopback peers for the engine and CLI tests: TCP listeners, UDP echo and silent UDP sockets, on port 0."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


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
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.1)
    arrivals: list[tuple[float, bytes]] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            arrivals.append((time.monotonic(), data))
            if sources is not None:
                sources.append(peer[1])
            if echo:
                sock.sendto(b"pong:" + data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], arrivals
    finally:
        stop.set()
        thread.join(2)
        sock.close()

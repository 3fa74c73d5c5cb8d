"""Real loopback peers for engine tests: TCP listeners, UDP echo and silent UDP sockets, on port 0."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def tcp_listener(host: str = "127.0.0.1") -> Iterator[int]:
    """A listening TCP socket; yields its port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as srv:
        srv.bind((host, 0))
        srv.listen(128)
        yield srv.getsockname()[1]


def closed_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port with no listener: bind to get a free one, then close it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


@contextmanager
def udp_peer(*, echo: bool, host: str = "127.0.0.1") -> Iterator[tuple[int, list[tuple[float, bytes]]]]:
    """A UDP socket that records each datagram's arrival (monotonic seconds, payload) and echoes it if asked.

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

"""Loopback endpoint mappers, honest and hostile, for the RPC probe tests (and ``python -m tests.hostile_rpc``).

TCP (connection-oriented, C706 12.6), one thread per connection:

- ``flood``: a bind_ack, then a first response fragment and 24-byte non-last fragments for ever;
- ``bigflood``: a bind_ack, then response fragments of 65,000 bytes, a valid ``ept_lookup`` stub of null-tower
  entries, ``PFC_LAST_FRAG`` only after about 8 MB;
- ``split-bind``: the bind_ack in two TCP segments 0.2 s apart, then honest pages.

UDP (connectionless, C706 12.5): :class:`UdpMapper`, a table of N entries served page by page, honouring
``max_ents`` and the entry handle (the handle carries the offset of the next entry).

Run as a program (``python -m tests.hostile_rpc MODE``) it prints its TCP port on stdout and serves until killed,
so a test can measure its own CPU without the peer's.
"""

from __future__ import annotations

import functools
import random
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from exporter.wire import clrpc
from tests.encoders import (
    encode_bind_ack,
    encode_cl_response,
    encode_co_response,
    encode_co_response_fragment,
    encode_ept_lookup_response,
    tcp_tower,
)

Entry = tuple[uuid.UUID, bytes | None, bytes]


def mapper_entries(count: int) -> list[Entry]:
    """``count`` ``ncacn_ip_tcp`` entries on ports 49664-49671, object UUIDs 1..count."""
    return [
        (uuid.UUID(int=i + 1), tcp_tower(uuid.UUID(int=0xABC0 + i), 1, 0, 49664 + i % 8), b"\x00") for i in range(count)
    ]


def page_stub(entries: list[Entry], handle: bytes, max_ents: int) -> bytes:
    """The ``ept_lookup`` reply stub for the page after ``handle`` (null: the first), at most ``max_ents`` entries.

    The handle's UUID holds the offset of the next entry; the last page has a null handle.
    """
    start = int.from_bytes(handle[4:], "little")
    page = entries[start : start + max(max_ents, 1)]
    end = start + len(page)
    following = bytes(4) + end.to_bytes(16, "little") if end < len(entries) else bytes(20)
    return encode_ept_lookup_response(following, page, 0)


def lookup_arguments(stub: bytes) -> tuple[bytes, int]:
    """``(entry_handle, max_ents)`` of an ``ept_lookup`` request stub with null object and interface pointers."""
    return stub[16:36], int.from_bytes(stub[36:40], "little")


# --------------------------------------------------------------------------- TCP


def _recv_exact(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionError("client closed")
        data += chunk
    return data


def _recv_pdu(conn: socket.socket) -> bytes:
    header = _recv_exact(conn, 16)
    (length,) = struct.unpack_from("<H", header, 8)
    return header + _recv_exact(conn, length - 16)


def _call_id(pdu: bytes) -> int:
    return int.from_bytes(pdu[12:16], "little")


@functools.cache
def _big_stub() -> bytes:
    """A valid ``ept_lookup`` stub of 280,000 null-tower entries (7.8 MB)."""
    return encode_ept_lookup_response(bytes(20), [(uuid.UUID(int=i), None, b"") for i in range(280_000)], 0)


def _serve_connection(conn: socket.socket, mode: str, entries: list[Entry]) -> None:
    bind = _recv_pdu(conn)
    ack = encode_bind_ack(_call_id(bind))
    if mode == "split-bind":
        conn.sendall(ack[:10])
        time.sleep(0.2)
        conn.sendall(ack[10:])
    else:
        conn.sendall(ack)
    request = _recv_pdu(conn)
    call_id = _call_id(request)
    if mode == "flood":
        conn.sendall(encode_co_response_fragment(call_id, b"", first=True, last=False))
        batch = encode_co_response_fragment(call_id, b"", first=False, last=False) * 512
        while True:
            conn.sendall(batch)
    if mode == "bigflood":
        for pdu in encode_co_response(call_id, _big_stub(), fragment_size=65_000):
            conn.sendall(pdu)
        conn.recv(1)
        return
    while True:
        handle, max_ents = lookup_arguments(request[24:])
        for pdu in encode_co_response(call_id, page_stub(entries, handle, max_ents)):
            conn.sendall(pdu)
        request = _recv_pdu(conn)
        call_id = _call_id(request)


def _serve_tcp(srv: socket.socket, mode: str, entries: list[Entry]) -> None:
    while True:
        try:
            conn, _ = srv.accept()
        except OSError:
            return

        def run(conn: socket.socket = conn) -> None:
            with conn:
                try:
                    _serve_connection(conn, mode, entries)
                except OSError:
                    return

        threading.Thread(target=run, daemon=True).start()


@contextmanager
def tcp_mapper(mode: str, *, entries: int = 3) -> Iterator[int]:
    """A TCP endpoint mapper on 127.0.0.1 behaving as ``mode`` (see the module); yields its port."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        threading.Thread(target=_serve_tcp, args=(srv, mode, mapper_entries(entries)), daemon=True).start()
        yield srv.getsockname()[1]


# --------------------------------------------------------------------------- UDP


class UdpMapper:
    """A connectionless endpoint mapper on 127.0.0.1 serving ``entries`` entries, every page asked.

    Args:
        entries: the table size.
        fragment_size: body bytes per response fragment (0: unfragmented datagrams).
        drop: a fragment number never sent (every page).
        shuffle: send the fragments in a shuffled order with the first one twice.
        answer_pages: answer only this many pages (the rest get silence); ``None`` for all.
        delay: seconds to wait before each answer.

    Attributes:
        port: the UDP port.
        requests: the decoded requests, in order.
    """

    def __init__(
        self,
        entries: int,
        *,
        fragment_size: int = 0,
        drop: int | None = None,
        shuffle: bool = False,
        answer_pages: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.entries = mapper_entries(entries)
        self.fragment_size, self.drop, self.shuffle = fragment_size, drop, shuffle
        self.answer_pages, self.delay = answer_pages, delay
        self.requests: list[clrpc.ClPdu] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> UdpMapper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            request = clrpc.decode_pdu(data)
            self.requests.append(request)
            if self.answer_pages is not None and len(self.requests) > self.answer_pages:
                continue
            time.sleep(self.delay)
            handle, max_ents = lookup_arguments(request.body)
            datagrams = encode_cl_response(
                request, page_stub(self.entries, handle, max_ents), fragment_size=self.fragment_size
            )
            order = list(range(len(datagrams)))
            if self.shuffle:
                order.append(0)
                random.Random(7).shuffle(order)
            for i in order:
                if i != self.drop:
                    self.sock.sendto(datagrams[i], peer)


def main(argv: list[str]) -> int:
    """``python -m tests.hostile_rpc MODE``: serve TCP ``MODE`` on 127.0.0.1, print the port, run until killed."""
    if argv[0] == "bigflood":
        _big_stub()
    with tcp_mapper(argv[0]) as port:
        print(port, flush=True)
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

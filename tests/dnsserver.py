"""A tiny authoritative DNS server on 127.0.0.1 for tests (dnspython builds the replies).

Tests resolve names only through servers they run; this one answers A/AAAA for the names it is given (one
address or several), SRV and PTR for the names it is given, NOERROR with no answer for a known name of
another type, and NXDOMAIN for everything else.  It never forwards.  The tables may be changed while it
runs (a DC added to or removed from DNS).

With ``tcp=True`` it also answers over TCP on the same port number (RFC 7766: two-byte length prefix, several
queries per connection) and, like a real server, truncates a UDP reply that does not fit the client's limit
(512 bytes, or the EDNS payload size it offers): an empty answer with TC set, so the client retries over TCP.
Big SRV sets (an AD domain with dozens of DCs) need that; without ``tcp`` every reply goes whole over UDP.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


def _fqdn(name: str) -> str:
    return name.lower().rstrip(".") + "."


Srv = tuple[int, int, int, str]  # priority, weight, port, target


@contextmanager
def dns_server(
    records: Mapping[str, str | Sequence[str]],
    *,
    ptr: Mapping[str, str] | None = None,
    srv: MutableMapping[str, list[Srv]] | None = None,
    host: str = "127.0.0.1",
    tcp: bool = False,
) -> Iterator[tuple[str, int, list[str]]]:
    """Serve ``records`` (name -> IPv4/IPv6 literal or literals), ``ptr`` (reverse name -> name) and ``srv``
    (name -> ``[(priority, weight, port, target), ...]``, read at each query) over UDP, port 0.

    Args:
        tcp: also serve TCP on the same port and truncate UDP replies beyond the client's limit (TC set).

    Yields:
        ``(address, port, queries)``; ``queries`` collects ``"name TYPE"`` of each question asked
        (``"name TYPE tcp"`` over TCP, ``"name TYPE tc"`` for a truncated UDP reply).
    """
    table = {_fqdn(k): [v] if isinstance(v, str) else list(v) for k, v in records.items()}
    reverse = {_fqdn(k): _fqdn(v) for k, v in (ptr or {}).items()}
    services = srv if srv is not None else {}
    sock, listener = _bind(host, tcp)
    sock.settimeout(0.1)
    stop = threading.Event()
    queries: list[str] = []

    def respond(data: bytes) -> tuple[dns.message.Message, str] | None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        addresses = table.get(name)
        targets = {_fqdn(k): v for k, v in services.items()}.get(name)
        if rdtype == "PTR" and name in reverse:
            reply.answer.append(dns.rrset.from_text(name, 60, "IN", "PTR", reverse[name]))
        elif rdtype == "SRV" and targets:
            rdatas = [f"{p} {w} {port} {_fqdn(t)}" for p, w, port, t in targets]
            reply.answer.append(dns.rrset.from_text_list(name, 60, "IN", "SRV", rdatas))
        elif addresses is None and name not in reverse and targets is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif addresses is not None and rdtype in ("A", "AAAA"):
            mine = [a for a in addresses if (rdtype == "AAAA") == (":" in a)]
            if mine:
                reply.answer.append(dns.rrset.from_text_list(name, 60, "IN", rdtype, mine))
        return reply, f"{name} {rdtype}"

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            answered = respond(data)
            if answered is None:
                continue
            reply, question = answered
            wire = reply.to_wire(max_size=65535)  # the client's limit is checked below
            limit = max(512, reply.request_payload) if reply.edns >= 0 else 512
            if listener is not None and len(wire) > limit:  # RFC 2181 9: TC, the client retries over TCP
                reply.answer, reply.authority, reply.additional = [], [], []
                reply.flags |= dns.flags.TC
                wire = reply.to_wire()
                question += " tc"
            queries.append(question)
            sock.sendto(wire, peer)

    def serve_tcp() -> None:
        assert listener is not None
        while not stop.is_set():
            try:
                conn, _peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                for _ in range(64):  # queries on one connection, bounded
                    data = _read_tcp_message(conn)
                    if data is None:
                        break
                    answered = respond(data)
                    if answered is None:
                        break
                    reply, question = answered
                    queries.append(f"{question} tcp")
                    wire = reply.to_wire(max_size=65535)
                    try:
                        conn.sendall(len(wire).to_bytes(2, "big") + wire)
                    except OSError:
                        break

    threads = [threading.Thread(target=serve, daemon=True)]
    if listener is not None:
        threads.append(threading.Thread(target=serve_tcp, daemon=True))
    for thread in threads:
        thread.start()
    try:
        yield sock.getsockname()[0], sock.getsockname()[1], queries
    finally:
        stop.set()
        for thread in threads:
            thread.join(2)
        sock.close()
        if listener is not None:
            listener.close()


def _bind(host: str, tcp: bool) -> tuple[socket.socket, socket.socket | None]:
    """A UDP socket on a free port of ``host`` and, with ``tcp``, a TCP listener on the same port number."""
    for _ in range(20):  # the UDP port's TCP twin may be taken: try another pair, a bounded number of times
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        if not tcp:
            return sock, None
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, sock.getsockname()[1]))
        except OSError:
            sock.close()
            listener.close()
            continue
        listener.listen(64)
        listener.settimeout(0.1)
        return sock, listener
    raise OSError(f"no free UDP+TCP port pair on {host}")


def _read_tcp_message(conn: socket.socket) -> bytes | None:
    """One length-prefixed DNS message from a TCP connection, ``None`` at EOF, a time-out or an error."""
    buf = b""
    need = 2
    length = None
    while len(buf) < need:
        try:
            chunk = conn.recv(need - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
        if length is None and len(buf) == 2:
            length = int.from_bytes(buf, "big")
            buf, need = b"", length
            if length == 0:
                return None
    return buf

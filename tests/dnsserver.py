"""A tiny authoritative DNS server on 127.0.0.1 for tests (dnspython builds the replies).

Tests resolve names only through servers they run; this one answers A/AAAA for the names it is given
and NXDOMAIN for everything else, and never forwards.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dns.flags
import dns.message
import dns.rcode
import dns.rrset


@contextmanager
def dns_server(records: Mapping[str, str], *, host: str = "127.0.0.1") -> Iterator[tuple[str, int]]:
    """Serve ``records`` (name -> IPv4/IPv6 literal) over UDP on an ephemeral port.

    Yields:
        ``(address, port)`` of the server.  The server thread stops when the block exits.
    """
    table = {k.lower().rstrip(".") + ".": v for k, v in records.items()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.2)
    stop = threading.Event()
    queries: list[str] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text().lower()
            queries.append(name)
            address = table.get(name)
            rdtype = dns.rdatatype.to_text(question.rdtype)
            if address is None:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            elif (rdtype == "A" and ":" not in address) or (rdtype == "AAAA" and ":" in address):
                reply.answer.append(dns.rrset.from_text(name, 60, "IN", rdtype, address))
            sock.sendto(reply.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[:2]
    finally:
        stop.set()
        thread.join(2)
        sock.close()

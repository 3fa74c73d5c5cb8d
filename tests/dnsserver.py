"""A tiny authoritative DNS server on 127.0.0.1 for tests (dnspython builds the replies).

Tests resolve names only through servers they run; this one answers A/AAAA for the names it is given (one
address or several), SRV and PTR for the names it is given, NOERROR with no answer for a known name of
another type, and NXDOMAIN for everything else.  It never forwards.  The tables may be changed while it
runs (a DC added to or removed from DNS).
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
) -> Iterator[tuple[str, int, list[str]]]:
    """Serve ``records`` (name -> IPv4/IPv6 literal or literals), ``ptr`` (reverse name -> name) and ``srv``
    (name -> ``[(priority, weight, port, target), ...]``, read at each query) over UDP, port 0.

    Yields:
        ``(address, port, queries)``; ``queries`` collects ``"name TYPE"`` of each question asked.
    """
    table = {_fqdn(k): [v] if isinstance(v, str) else list(v) for k, v in records.items()}
    reverse = {_fqdn(k): _fqdn(v) for k, v in (ptr or {}).items()}
    services = srv if srv is not None else {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.1)
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
            rdtype = dns.rdatatype.to_text(question.rdtype)
            queries.append(f"{name} {rdtype}")
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
            sock.sendto(reply.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[0], sock.getsockname()[1], queries
    finally:
        stop.set()
        thread.join(2)
        sock.close()

"""A fake domain controller's CLDAP service (UDP): answers the rootDSE search and the MS-ADTS 6.3.3 LDAP ping.

For discovery tests and benchmarks that need many DCs where real Samba DCs would cost seconds each: one
thread serves any number of sockets, each bound to one address (replies must leave from the address the
client asked, or its connected socket drops them).  The replies are built by :mod:`tests.encoders` as a DC
builds them (a SearchResultEntry with ``Netlogon`` = NETLOGON_SAM_LOGON_RESPONSE_EX, then SearchResultDone).
"""

from __future__ import annotations

import selectors
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from exporter.errors import DecodeError
from exporter.wire.ber import read_tlv_header
from exporter.wire.netlogon import DS_FLAGS, NetlogonSamLogonResponseEx
from tests.encoders import encode_netlogon, encode_search_response

DC_FLAGS = ("pdc", "gc", "ldap", "ds", "kdc", "timeserv", "writable", "closest")


@dataclass(frozen=True, slots=True)
class FakeDC:
    """What one fake DC says: its names, its site, the client's site and its roles."""

    host: str
    domain: str
    site: str = "Default-First-Site-Name"
    client_site: str = "Default-First-Site-Name"
    roles: Sequence[str] = DC_FLAGS


@dataclass
class CldapService:
    """The running service: ``ports[address]`` is the UDP port of each address; ``pings`` counts LDAP pings."""

    ports: dict[str, int] = field(default_factory=dict)
    pings: dict[str, int] = field(default_factory=dict)
    filters: list[bytes] = field(default_factory=list)


def _netlogon(dc: FakeDC) -> bytes:
    bits = sum(bit for bit, name in DS_FLAGS.items() if name in dc.roles)
    label = dc.host.split(".", 1)[0]
    reply = NetlogonSamLogonResponseEx(
        opcode=23,
        opcode_name="LOGON_SAM_LOGON_RESPONSE_EX",
        flags_raw=bits,
        flags=frozenset(n for n in DS_FLAGS.values() if n in dc.roles),
        domain_guid=uuid.UUID(int=1),
        dns_forest_name=dc.domain,
        dns_domain_name=dc.domain,
        dns_host_name=dc.host,
        netbios_domain_name=dc.domain.split(".", 1)[0].upper()[:15],
        netbios_computer_name=label.upper()[:15],
        user_name="",
        dc_site_name=dc.site,
        client_site_name=dc.client_site,
        dc_address=None,
        next_closest_site_name=None,
        nt_version=5,
        lm_nt_token=0xFFFF,
        lm20_token=0xFFFF,
    )
    return encode_netlogon(reply)


def _message_id(data: bytes) -> int | None:
    """The messageID of an LDAPMessage (RFC 4511 4.1.1), read from its BER headers; ``None`` if garbled."""
    try:
        outer = read_tlv_header(data, 0)
        inner = read_tlv_header(data, outer[2]) if outer else None
    except DecodeError:
        return None
    if outer is None or inner is None or data[0] != 0x30 or inner[0] != 0x02:
        return None
    start = outer[2] + inner[2]
    return int.from_bytes(data[start : start + inner[3]], "big")


def _answer(dc: FakeDC, data: bytes, service: CldapService, address: str) -> bytes | None:
    msg_id = _message_id(data)
    if msg_id is None:
        return None  # a garbled request gets no answer, as from a DC
    if b"netlogon" in data.lower():  # the attribute list of the LDAP ping (MS-ADTS 6.3.3)
        service.filters.append(data)
        service.pings[address] = service.pings.get(address, 0) + 1
        return encode_search_response(msg_id, [("", [("Netlogon", [_netlogon(dc)])])])
    base = dc.domain.split(".")
    attrs = [
        ("dnsHostName", [dc.host.encode()]),
        ("defaultNamingContext", [",".join(f"DC={p}" for p in base).encode()]),
        ("serverName", [f"CN={dc.host.split('.')[0].upper()},CN=Servers,CN={dc.site},CN=Sites".encode()]),
        ("currentTime", [b"20261201000000.0Z"]),
    ]
    return encode_search_response(msg_id, [("", attrs)])


@contextmanager
def cldap_service(dcs: Mapping[str, FakeDC], *, port: int = 0) -> Iterator[CldapService]:
    """Serve ``dcs`` (address -> :class:`FakeDC`) on UDP, one socket per address on ``port`` (0: any).

    Yields:
        The :class:`CldapService` with each address's port.
    """
    service = CldapService()
    selector = selectors.DefaultSelector()
    socks = []
    for address, dc in dcs.items():
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, (address, dc))
        service.ports[address] = sock.getsockname()[1]
        socks.append(sock)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            for key, _ in selector.select(0.1):
                sock = key.fileobj
                address, dc = key.data
                try:
                    data, peer = sock.recvfrom(65535)  # type: ignore[union-attr]
                except OSError:
                    continue
                reply = _answer(dc, data, service, address)
                if reply is not None:
                    sock.sendto(reply, peer)  # type: ignore[union-attr]

    thread = threading.Thread(target=serve, daemon=True, name="cldap")
    thread.start()
    try:
        yield service
    finally:
        stop.set()
        thread.join(2)
        for sock in socks:
            sock.close()
        selector.close()

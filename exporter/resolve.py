"""Name resolution: async, through dnspython, with a per-call deadline.

Without configured nameservers this is "the system resolver": IP literals as they are, then the hosts
file (``/etc/hosts``), then DNS with the system's ``/etc/resolv.conf`` (servers, search list).  With
``nameservers`` only those DNS servers are asked (no hosts file, no search list).  A name that does not
resolve raises :class:`~exporter.errors.ResolveError`; callers turn that into a ``resolve-failed``
result.  dnspython is imported on first use, so probing address literals never pays for it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exporter.errors import ResolveError

HOSTS_FILE = "/etc/hosts"
#: The most SRV records read from one answer (a hostile server cannot make us plan more DCs).
MAX_SRV_RECORDS = 10000


@dataclass(frozen=True, slots=True)
class Resolved:
    """A resolved host: the address to probe and its family (``socket.AF_INET``/``AF_INET6``)."""

    address: str
    family: int


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """One SRV record (RFC 2782): ``target`` lower-case without the trailing dot."""

    priority: int
    weight: int
    port: int
    target: str


def literal(host: str) -> Resolved | None:
    """``Resolved`` for an IPv4/IPv6 literal (brackets and a zone id allowed), else ``None``."""
    text = host.strip("[]")
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    return Resolved(text, socket.AF_INET6 if ip.version == 6 else socket.AF_INET)


class Resolver:
    """Resolve target names to one address (IPv4 first, then IPv6; PortQry probes one address).

    Args:
        nameservers: DNS server addresses to ask instead of the system configuration.
        port: DNS port of those servers (53).
        timeout: seconds for the whole lookup of one name (all servers, both record types).
        prefer: ``"ipv4"`` (A, then AAAA), ``"ipv6"`` (AAAA, then A), or ``"ipv4-only"``/``"ipv6-only"``.
        hosts_file: the hosts file consulted in system mode.
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        port: int = 53,
        timeout: float = 2.0,
        prefer: str = "ipv4",
        hosts_file: str = HOSTS_FILE,
    ) -> None:
        self.nameservers = tuple(nameservers)
        self.port = port
        self.timeout = timeout
        self.prefer = prefer
        self.hosts_file = hosts_file
        self._dns: Any = None
        self._hosts: tuple[float, dict[str, list[str]]] | None = None

    def _rdtypes(self) -> tuple[str, ...]:
        return {
            "ipv4": ("A", "AAAA"),
            "ipv6": ("AAAA", "A"),
            "ipv4-only": ("A",),
            "ipv6-only": ("AAAA",),
        }.get(self.prefer, ("A", "AAAA"))

    def _resolver(self) -> Any:
        if self._dns is None:
            import dns.asyncresolver
            import dns.resolver

            try:
                res = dns.asyncresolver.Resolver(configure=not self.nameservers)
            except dns.resolver.NoResolverConfiguration as exc:
                raise ResolveError(f"no system resolver configuration: {exc}") from exc
            if self.nameservers:
                res.nameservers = list(self.nameservers)
                res.port = self.port
            res.lifetime = self.timeout
            res.timeout = min(self.timeout, 2.0)
            self._dns = res
        return self._dns

    def _from_hosts(self, name: str) -> list[str]:
        try:
            mtime = os.stat(self.hosts_file).st_mtime
        except OSError:
            return []
        if self._hosts is None or self._hosts[0] != mtime:
            table: dict[str, list[str]] = {}
            try:
                with open(self.hosts_file, encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        fields = line.split("#", 1)[0].split()
                        for alias in fields[1:]:
                            table.setdefault(alias.lower(), []).append(fields[0])
            except OSError:
                return []
            self._hosts = (mtime, table)
        return self._hosts[1].get(name.lower().rstrip("."), [])

    async def resolve(self, host: str) -> Resolved:
        """Resolve ``host`` to one address: the first of :meth:`resolve_all`.

        Raises:
            ResolveError: NXDOMAIN, no A/AAAA record, every server timed out, or no resolver configured.
        """
        return (await self.resolve_all(host, first=True))[0]

    async def resolve_all(self, host: str, *, first: bool = False) -> list[Resolved]:
        """Resolve ``host`` to every address, ``prefer``'s record type first, each type in the server's order.

        Args:
            host: a name or an address literal.
            first: stop at the first record type that answers (one lookup where one address is enough).

        Returns:
            At least one address; a literal is itself; the hosts file (system mode) gives its entries only.

        Raises:
            ResolveError: NXDOMAIN, no A/AAAA record, every server timed out, or no resolver configured.
        """
        lit = literal(host)
        if lit is not None:
            return [lit]
        if not host or len(host) > 253:
            raise ResolveError(f"{host!r}: not a valid host name")
        rdtypes = self._rdtypes()
        if not self.nameservers:
            wanted = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}
            hosts = [r for r in (literal(a) for a in self._from_hosts(host)) if r is not None]
            listed = [r for rdtype in rdtypes for r in hosts if r.family == wanted[rdtype]]
            if listed:
                return listed
        import dns.exception
        import dns.resolver

        res = self._resolver()
        last: Exception | None = None
        found: list[Resolved] = []
        for rdtype in rdtypes:
            try:
                answer = await res.resolve(host, rdtype, search=not self.nameservers)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers) as exc:
                last = exc
                if isinstance(exc, dns.resolver.NXDOMAIN):
                    break
                continue
            except dns.exception.DNSException as exc:  # Timeout, LifetimeTimeout, bad names
                if found:
                    break
                raise ResolveError(f"{host}: {exc}") from exc
            found += [r for r in (literal(rr.to_text()) for rr in answer) if r is not None and r not in found]
            if first and found:
                break
        if not found:
            raise ResolveError(f"{host}: {last or 'no address'}")
        return found

    async def srv(self, name: str) -> list[SrvRecord]:
        """The SRV records of ``name`` (RFC 2782), lowest priority first, then highest weight, then target.

        Raises:
            ResolveError: NXDOMAIN, no SRV record, a malformed reply, or every server timed out.
        """
        import dns.exception
        import dns.resolver

        try:
            answer = await self._resolver().resolve(name, "SRV", search=False)
        except dns.exception.DNSException as exc:
            raise ResolveError(f"{name} SRV: {exc}") from exc
        records = {
            SrvRecord(rr.priority, rr.weight, rr.port, rr.target.to_text(omit_final_dot=True).lower()) for rr in answer
        }
        return sorted(records, key=lambda r: (r.priority, -r.weight, r.target, r.port))

    async def reverse(self, address: str) -> str | None:
        """The PTR name of ``address`` through the same servers, or ``None`` when there is none.

        Never raises for DNS failures (PortQry: "reports an error and continues").
        """
        import dns.exception
        import dns.reversename

        try:
            answer = await self._resolver().resolve(dns.reversename.from_address(address), "PTR")
        except (dns.exception.DNSException, ResolveError, ValueError):
            return None
        for rr in answer:
            return str(rr.target).rstrip(".")
        return None

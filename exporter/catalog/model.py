"""The catalog's model: services, rows, profiles and the KB 832017 tables, and the lookups on them.

Source: Microsoft, "Service overview and network port requirements for Windows" (KB 832017, ms.date
09/08/2020), sections "System services ports" (one :class:`Service` per section, plus the "BranchCache
information" subsection), "Ports and protocols" (:attr:`Catalog.port_summary`) and "Active Directory port and
protocol requirements" (:attr:`Catalog.ad_depends_on`, :attr:`Catalog.ad_required_by`).  Inconsistencies in
the article are data too (:attr:`Catalog.errata`).  :mod:`exporter.catalog.loader` builds a :class:`Catalog`
from ``exporter/data/catalog.toml``; this module holds what it builds and never reads a file.

:meth:`Catalog.expand` turns ``services = [...]`` and ``profiles = [...]`` into the ports to probe. Ranges and
non-port protocols are never expanded into ports: dynamic RPC ranges are checked through the endpoint-mapper
follow-up on port 135, and ICMP, GRE, ESP, AH and other ranges are listed as not probed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from exporter.errors import PortqryError
from exporter.suggest import close_names, fold, hint

Protocol = Literal["tcp", "udp"]
Transport = Literal["tcp", "udp", "both", "icmp", "gre", "esp", "ah"]
UnprobedReason = Literal["dynamic_rpc", "no_port", "port_range"]

#: Transports that have no port: listed in the catalog, never probed.
NON_PORT_TRANSPORTS: frozenset[str] = frozenset({"icmp", "gre", "esp", "ah"})
#: Every transport a row may name.
TRANSPORTS: frozenset[str] = frozenset({"tcp", "udp", "both"}) | NON_PORT_TRANSPORTS
#: The RPC endpoint mapper port: where dynamic RPC ranges are checked (see :attr:`CatalogPort.dynamic_rpc`).
EPM_PORT = 135


class CatalogLookupError(PortqryError, LookupError):
    """A service or profile name is not in the catalog.

    ``str(err)`` is one line with the closest names, e.g.
    ``unknown service 'Kerberoz'; did you mean 'Kerberos'?``.

    Attributes:
        kind: ``"service"`` or ``"profile"``.
        name: the name as given.
        suggestions: up to three close names (as the catalog spells them), best first; may be empty.
    """

    def __init__(self, kind: Literal["service", "profile"], name: str, suggestions: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = tuple(suggestions)
        text = hint(self.suggestions) or f"; no close match (portqry --list-{kind}s lists them)"
        super().__init__(f"unknown {kind} {name!r}{text}")


class CatalogDataError(PortqryError):
    """The packaged catalog data is malformed (a bug in ``exporter/data/catalog.toml``, not user input).

    ``str(err)`` is one line naming the key, e.g. ``service[3].rows[2].transport: unknown transport 'tpc'``.

    Attributes:
        key: the place in the file (``service[3].rows[2]``); ``catalog.toml`` for the whole file.
        problem: what is wrong with it.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


@dataclass(frozen=True, slots=True)
class CatalogRow:
    """One row of a service's table in KB 832017 "System services ports".

    Attributes:
        app: the "Application protocol" column, verbatim (Markdown backticks dropped).
        label: the short label for the exporter's ``service`` label (``app`` unless the data gives one,
            e.g. ``LDAP Server`` for "Lightweight Directory Access Protocol (LDAP) Server").
        transport: ``tcp``, ``udp``, ``both`` (TCP and UDP), or a non-port protocol ``icmp``, ``gre``,
            ``esp``, ``ah``.
        first: the port, or the first port of a range; ``None`` for non-port protocols.
        last: equal to ``first`` for one port, the last port of a range; ``None`` for non-port protocols.
        dynamic_rpc: a randomly allocated RPC/DCOM range, checked through the endpoint mapper.
        optional: a footnote or the text says the port is optional or used only by some versions.
        prose: the row comes from the section's text or note, not its table.
        note: the footnote or text that matters; may be empty.
    """

    app: str
    label: str
    transport: Transport
    first: int | None
    last: int | None
    dynamic_rpc: bool = False
    optional: bool = False
    prose: bool = False
    note: str = ""

    @property
    def protocols(self) -> tuple[Protocol, ...]:
        """The port protocols of the row: ``("tcp",)``, ``("udp",)``, ``("tcp", "udp")`` or ``()``."""
        if self.transport == "both":
            return ("tcp", "udp")
        if self.transport in ("tcp", "udp"):
            return (self.transport,)
        return ()

    @property
    def is_range(self) -> bool:
        """True for a port range (``first < last``)."""
        return self.first is not None and self.last is not None and self.first != self.last

    @property
    def spec(self) -> str:
        """Compact text: ``tcp/389``, ``tcp+udp/1745``, ``tcp/49152-65535`` or ``icmp``."""
        if self.first is None:
            return self.transport
        proto = "tcp+udp" if self.transport == "both" else self.transport
        ports = f"{self.first}-{self.last}" if self.is_range else str(self.first)
        return f"{proto}/{ports}"


@dataclass(frozen=True, slots=True)
class Service:
    """One "System services ports" section of KB 832017 (or its "BranchCache information" subsection).

    Attributes:
        name: the section heading, verbatim (the friendly service name), e.g.
            ``Kerberos Key Distribution Center``.
        system_names: the "System service name" the article gives, e.g. ``("kdc",)``; empty for the
            sections that give none (Hyper-V, IPAM, BranchCache, ISA/TMG, SharePoint), two for Offline Files.
        aliases: short names accepted by :meth:`Catalog.find_service`, e.g. ``("Kerberos", "KDC")``.
        rows: the section's rows in the article's order.
        parent: the enclosing section for a subsection (BranchCache), else ``None``.
        note: text of the section that matters to an operator; may be empty.
    """

    name: str
    system_names: tuple[str, ...]
    aliases: tuple[str, ...]
    rows: tuple[CatalogRow, ...]
    parent: str | None = None
    note: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the service answers to: display name, system service names, aliases."""
        return (self.name, *self.system_names, *self.aliases)


@dataclass(frozen=True, slots=True)
class ProfileEntry:
    """One resolved row of a profile.

    Attributes:
        row: the catalog row, narrowed to the transport the profile asked for (``both`` → a tcp and a udp
            entry when the profile names one protocol at a time).
        origin: where the row comes from: a service name, ``summary: <service column>`` or a citation.
    """

    row: CatalogRow
    origin: str


@dataclass(frozen=True, slots=True)
class Profile:
    """A named group of catalog rows (``exporter/data/catalog.toml`` ``[[profile]]``).

    Attributes:
        name: e.g. ``domain-controller``, ``ldap``.
        description: one line.
        why: why the profile holds what it holds, with its sources.
        entries: the rows in profile order.
    """

    name: str
    description: str
    why: str
    entries: tuple[ProfileEntry, ...]


@dataclass(frozen=True, slots=True)
class PortSummaryRow:
    """One row of the KB 832017 "Ports and protocols" table, verbatim.

    Attributes:
        port_text: the Port cell as written: ``389``, ``n/a``, ``1024-65535``,
            ``random port number between 49152 - 65535``.
        protocol_text: the Protocol cell as written (``TCP``, ``UDP``, ``UPD``, ``GRE``, ``ESP``, ``AH``).
        app: the Application protocol cell.
        service_text: the System service name cell (really a friendly name).
        transport: the protocol read as a transport (``UPD`` → ``udp``; errata ``upd-typo``).
        first: first port, ``None`` for ``n/a``.
        last: last port (``== first`` for one port), ``None`` for ``n/a``.
        service: the catalog service the row belongs to (``Service.name``), or ``None`` when the article has
            no such section (errata ``summary-only-services``, ``dynamic-range-summary-row``).
        errata: ids of the :class:`Erratum` entries that explain this row.
    """

    port_text: str
    protocol_text: str
    app: str
    service_text: str
    transport: Transport
    first: int | None
    last: int | None
    service: str | None
    errata: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Erratum:
    """An inconsistency in the article, listed rather than silently fixed.

    Attributes:
        id: short stable id, e.g. ``upd-typo``.
        where: the place in the article.
        text: what is inconsistent.
        decision: what the catalog does about it.
        source: the document the erratum is about (KB 832017 unless stated).
        summary_services: summary-table service columns this erratum explains wholesale.
    """

    id: str
    where: str
    text: str
    decision: str
    source: str = "KB 832017"
    summary_services: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DependencyEntry:
    """An entry of the article's Active Directory dependency lists.

    Attributes:
        text: the list item, verbatim, e.g. ``File Replication Service (if not using DFSR ...)``.
        service: the catalog service it names (``Service.name``).
    """

    text: str
    service: str


@dataclass(frozen=True, slots=True)
class CatalogPort:
    """One port to probe, produced by :meth:`Catalog.expand`.

    Attributes:
        protocol: ``tcp`` or ``udp``.
        port: 1-65535.
        service: the catalog's application protocol label (:attr:`CatalogRow.label`), e.g. ``LDAP Server``,
            ``Kerberos``; the value of the exporter's ``service`` label.
        source: what requested it: a service's display name (``Kerberos Key Distribution Center``) or
            ``profile:<name>`` (``profile:domain-controller``).
        dynamic_rpc: True on port 135 when the same expansion also holds dynamic RPC ranges
            (:attr:`Expansion.dynamic_rpc`): the endpoint-mapper follow-up on this port is how those
            ranges are checked.
        optional: the catalog row is optional (see :attr:`CatalogRow.optional`).
        note: the row's note; may be empty.
    """

    protocol: Protocol
    port: int
    service: str
    source: str
    dynamic_rpc: bool = False
    optional: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class Unprobed:
    """A catalog row that :meth:`Catalog.expand` does not turn into ports.

    Attributes:
        row: the catalog row (``row.spec`` is e.g. ``tcp/49152-65535`` or ``icmp``).
        source: as :attr:`CatalogPort.source`.
        reason: ``dynamic_rpc`` (checked through the endpoint mapper on port 135), ``no_port`` (ICMP, GRE,
            ESP, AH) or ``port_range`` (a range that is not RPC, e.g. passive FTP data ports).
    """

    row: CatalogRow
    source: str
    reason: UnprobedReason


@dataclass(frozen=True, slots=True)
class Expansion:
    """The result of :meth:`Catalog.expand`.

    Attributes:
        ports: the ports to probe, de-duplicated on ``(protocol, port)``, the first request winning.
        dynamic_rpc: dynamic RPC ranges (de-duplicated on protocols and bounds), not swept.
        not_probed: non-port protocols (one entry per protocol) and non-RPC ranges, listed only.
    """

    ports: tuple[CatalogPort, ...]
    dynamic_rpc: tuple[Unprobed, ...]
    not_probed: tuple[Unprobed, ...]


@dataclass(frozen=True, eq=False)
class Catalog:
    """The loaded catalog. Build it with :func:`exporter.catalog.load_catalog` (cached) or
    :func:`exporter.catalog.parse_catalog`.

    Attributes:
        services: the 59 "System services ports" sections and the BranchCache subsection, article order.
        profiles: the profiles, data-file order.
        port_summary: the 183 "Ports and protocols" rows, article order.
        errata: the article's known inconsistencies.
        ad_depends_on: "The list of services on which Active Directory depends".
        ad_required_by: "The list of services that require Active Directory services".
        source: the article's metadata (title, kb, ms_date, url).
    """

    services: tuple[Service, ...]
    profiles: tuple[Profile, ...]
    port_summary: tuple[PortSummaryRow, ...]
    errata: tuple[Erratum, ...]
    ad_depends_on: tuple[DependencyEntry, ...]
    ad_required_by: tuple[DependencyEntry, ...]
    source: Mapping[str, str]
    _by_name: Mapping[str, Service] = field(init=False, repr=False, compare=False)
    _profiles_by_name: Mapping[str, Profile] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Index services by every name (first one wins; the loader refuses duplicates) and profiles by name."""
        by_name: dict[str, Service] = {}
        for service in self.services:
            for name in service.names:
                by_name.setdefault(fold(name), service)
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_profiles_by_name", {fold(p.name): p for p in self.profiles})

    def find_service(self, name: str) -> Service:
        """Look a service up by display name, system service name or alias (case-insensitive).

        Args:
            name: e.g. ``Kerberos Key Distribution Center``, ``kdc``, ``Kerberos``, ``LSASS``, ``DNS``.

        Returns:
            The service.

        Raises:
            CatalogLookupError: unknown name; ``.suggestions`` holds up to three close names.
        """
        service = self._by_name.get(fold(name))
        if service is None:
            raise CatalogLookupError("service", name, close_names(name, (n for s in self.services for n in s.names)))
        return service

    def profile(self, name: str) -> Profile:
        """Look a profile up by name (case-insensitive).

        Args:
            name: e.g. ``domain-controller``, ``ldap``.

        Returns:
            The profile.

        Raises:
            CatalogLookupError: unknown name; ``.suggestions`` holds up to three close names.
        """
        profile = self._profiles_by_name.get(fold(name))
        if profile is None:
            raise CatalogLookupError("profile", name, close_names(name, (p.name for p in self.profiles)))
        return profile

    def services_for(self, protocol: Protocol, port: int) -> tuple[Service, ...]:
        """The services with a row for ``protocol``/``port`` (ranges excluded), catalog order.

        Args:
            protocol: ``tcp`` or ``udp``.
            port: 1-65535.

        Returns:
            The matching services; empty when none.
        """
        return tuple(
            s
            for s in self.services
            if any(protocol in r.protocols and r.first == port and not r.is_range for r in s.rows)
        )

    def expand(self, services: Sequence[str] = (), profiles: Sequence[str] = ()) -> Expansion:
        """Expand service and profile names into the ports to probe.

        Services are taken first, then profiles, each in the given order; within a service or profile, rows
        keep their catalog order. A ``both`` row gives a tcp and a udp port. A port several requests need
        keeps the first (its ``service`` label and ``source``). Ranges and ICMP/GRE/ESP/AH rows are not
        expanded: see :class:`Expansion`.

        Args:
            services: service names, as :meth:`find_service` takes them.
            profiles: profile names, as :meth:`profile` takes them.

        Returns:
            The expansion.

        Raises:
            CatalogLookupError: the first unknown name, in request order (services, then profiles).
            TypeError: ``services`` or ``profiles`` is a bare string.
        """
        for arg in (services, profiles):
            if isinstance(arg, str):
                raise TypeError(f"expected a sequence of names, got the string {arg!r}")
        requests: list[tuple[str, Iterable[CatalogRow]]] = []
        for name in services:
            service = self.find_service(name)
            requests.append((service.name, service.rows))
        for name in profiles:
            profile = self.profile(name)
            requests.append((f"profile:{profile.name}", (e.row for e in profile.entries)))

        ports: dict[tuple[str, int], CatalogPort] = {}
        dynamic: dict[tuple[tuple[str, ...], int | None, int | None], Unprobed] = {}
        other: dict[tuple[str, int | None, int | None], Unprobed] = {}
        for source, rows in requests:
            for row in rows:
                if row.first is None:
                    other.setdefault((row.transport, None, None), Unprobed(row, source, "no_port"))
                elif row.is_range and row.dynamic_rpc:
                    dynamic.setdefault((row.protocols, row.first, row.last), Unprobed(row, source, "dynamic_rpc"))
                elif row.is_range:
                    other.setdefault((row.transport, row.first, row.last), Unprobed(row, source, "port_range"))
                else:
                    for protocol in row.protocols:
                        ports.setdefault(
                            (protocol, row.first),
                            CatalogPort(protocol, row.first, row.label, source, False, row.optional, row.note),
                        )
        result = list(ports.values())
        if dynamic:
            result = [dataclasses.replace(p, dynamic_rpc=True) if p.port == EPM_PORT else p for p in result]
        return Expansion(tuple(result), tuple(dynamic.values()), tuple(other.values()))

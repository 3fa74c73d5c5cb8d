"""The Windows service catalog: every service and port of KB 832017, usable by name.

Source: Microsoft, "Service overview and network port requirements for Windows" (KB 832017, ms.date
09/08/2020), sections "System services ports" (one :class:`Service` per section, plus the "BranchCache
information" subsection), "Ports and protocols" (:attr:`Catalog.port_summary`) and "Active Directory port and
protocol requirements" (:attr:`Catalog.ad_depends_on`, :attr:`Catalog.ad_required_by`). The data is the
hand-checked file ``exporter/data/catalog.toml``; this module only loads and validates it (it never reads the
article). Inconsistencies in the article are data too (:attr:`Catalog.errata`).

Profiles (:meth:`Catalog.profile`) are named groups built from the catalog: ``domain-controller``,
``member-to-dc``, ``dns-server``, ``file-server``, ``exchange``, ``sql-server`` and PortQry 2.0's interactive
shortcuts (``dns ftp imap ipsec isa ldap l2tp mail pop3 rpc smtp snmp sql tftp``). The data file says why each
holds what it holds (:attr:`Profile.why`).

:meth:`Catalog.expand` turns ``services = [...]`` and ``profiles = [...]`` into the ports to probe. Ranges and
non-port protocols are never expanded into ports: dynamic RPC ranges are checked through the endpoint-mapper
follow-up on port 135, and ICMP, GRE, ESP, AH and other ranges are listed as not probed.

Check by hand::

    python -c "from exporter.catalog import format_service_list; print(format_service_list())"
    python -c "from exporter.catalog import load_catalog as l; print(l().expand([], ['domain-controller']))"
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, cast

from exporter.errors import PortqryError

__all__ = [
    "NON_PORT_TRANSPORTS",
    "Catalog",
    "CatalogDataError",
    "CatalogLookupError",
    "CatalogPort",
    "CatalogRow",
    "DependencyEntry",
    "Erratum",
    "Expansion",
    "PortSummaryRow",
    "Profile",
    "ProfileEntry",
    "Service",
    "Unprobed",
    "format_profile_list",
    "format_service_list",
    "load_catalog",
    "parse_catalog",
]

Protocol = Literal["tcp", "udp"]
Transport = Literal["tcp", "udp", "both", "icmp", "gre", "esp", "ah"]
UnprobedReason = Literal["dynamic_rpc", "no_port", "port_range"]

#: Transports that have no port: listed in the catalog, never probed.
NON_PORT_TRANSPORTS: frozenset[str] = frozenset({"icmp", "gre", "esp", "ah"})
_TRANSPORTS: frozenset[str] = frozenset({"tcp", "udp", "both"}) | NON_PORT_TRANSPORTS
#: The RPC endpoint mapper port: where dynamic RPC ranges are checked (see :attr:`CatalogPort.dynamic_rpc`).
EPM_PORT = 135
_DATA_PACKAGE = "exporter"
_DATA_PATH = "data/catalog.toml"


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
        if len(self.suggestions) == 1:
            hint = f"; did you mean {self.suggestions[0]!r}?"
        elif self.suggestions:
            hint = "; did you mean one of " + ", ".join(repr(s) for s in self.suggestions) + "?"
        else:
            hint = f"; no close match (portqry --list-{kind}s lists them)"
        super().__init__(f"unknown {kind} {name!r}{hint}")


class CatalogDataError(PortqryError):
    """The packaged catalog data is malformed (a bug in ``exporter/data/catalog.toml``, not user input).

    ``str(err)`` names the place in the file, e.g. ``service[3].rows[2]: unknown transport 'tpc'``.
    """


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


def _norm(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass(frozen=True, eq=False)
class Catalog:
    """The loaded catalog. Build it with :func:`load_catalog` (cached) or :func:`parse_catalog`.

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
    _by_name: Mapping[str, Service] = field(repr=False, compare=False)
    _spelling: Mapping[str, str] = field(repr=False, compare=False)
    _profiles_by_name: Mapping[str, Profile] = field(repr=False, compare=False)

    def find_service(self, name: str) -> Service:
        """Look a service up by display name, system service name or alias (case-insensitive).

        Args:
            name: e.g. ``Kerberos Key Distribution Center``, ``kdc``, ``Kerberos``, ``LSASS``, ``DNS``.

        Returns:
            The service.

        Raises:
            CatalogLookupError: unknown name; ``.suggestions`` holds up to three close names.
        """
        service = self._by_name.get(_norm(name))
        if service is None:
            raise CatalogLookupError("service", name, _suggest(name, self._spelling))
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
        profile = self._profiles_by_name.get(_norm(name))
        if profile is None:
            spelling = {_norm(p.name): p.name for p in self.profiles}
            raise CatalogLookupError("profile", name, _suggest(name, spelling))
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


def _suggest(name: str, spelling: Mapping[str, str]) -> list[str]:
    """Up to three names close to ``name``: difflib matches first, then names containing it."""
    key = _norm(name)
    found = difflib.get_close_matches(key, list(spelling), n=3, cutoff=0.6)
    if len(key) >= 3:
        found += [k for k in spelling if key in k and k not in found]
    return [spelling[k] for k in found[:3]]


# --------------------------------------------------------------------------------------------------------
# Loading and validation


def _get(table: Mapping[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise CatalogDataError(f"{where}: missing {key!r}")
        return default
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CatalogDataError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _strings(table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = _get(table, key, list, where, [])
    if not all(isinstance(v, str) and v for v in values):
        raise CatalogDataError(f"{where}.{key}: expected a list of non-empty strings")
    return tuple(values)


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise CatalogDataError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _port(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise CatalogDataError(f"{where}: port must be an integer 1-65535, got {value!r}")
    return value


def _bounds(table: Mapping[str, Any], transport: str, where: str) -> tuple[int | None, int | None]:
    """``port`` or ``range`` of a row or profile item, checked against the transport."""
    if "port" in table and "range" in table:
        raise CatalogDataError(f"{where}: give port or range, not both")
    if transport in NON_PORT_TRANSPORTS:
        if "port" in table or "range" in table:
            raise CatalogDataError(f"{where}: {transport} has no port")
        return None, None
    if "port" in table:
        port = _port(table["port"], f"{where}.port")
        return port, port
    if "range" in table:
        bounds = table["range"]
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise CatalogDataError(f"{where}.range: expected [first, last]")
        first, last = _port(bounds[0], f"{where}.range"), _port(bounds[1], f"{where}.range")
        if first >= last:
            raise CatalogDataError(f"{where}.range: first must be below last")
        return first, last
    raise CatalogDataError(f"{where}: {transport} needs a port or a range")


def _transport(table: Mapping[str, Any], where: str) -> Transport:
    transport = _get(table, "transport", str, where)
    if transport not in _TRANSPORTS:
        raise CatalogDataError(f"{where}: unknown transport {transport!r}")
    return cast(Transport, transport)


def _row(raw: Any, where: str) -> CatalogRow:
    if not isinstance(raw, dict):
        raise CatalogDataError(f"{where}: expected a table")
    _only(raw, {"app", "label", "transport", "port", "range", "dynamic_rpc", "optional", "prose", "note"}, where)
    app = _get(raw, "app", str, where)
    transport = _transport(raw, where)
    first, last = _bounds(raw, transport, where)
    dynamic_rpc = _get(raw, "dynamic_rpc", bool, where, False)
    if dynamic_rpc and first == last:
        raise CatalogDataError(f"{where}: dynamic_rpc needs a range")
    return CatalogRow(
        app=app,
        label=_get(raw, "label", str, where, app),
        transport=transport,
        first=first,
        last=last,
        dynamic_rpc=dynamic_rpc,
        optional=_get(raw, "optional", bool, where, False),
        prose=_get(raw, "prose", bool, where, False),
        note=_get(raw, "note", str, where, ""),
    )


def _service(raw: Any, where: str) -> Service:
    if not isinstance(raw, dict):
        raise CatalogDataError(f"{where}: expected a table")
    _only(raw, {"name", "system_names", "aliases", "parent", "note", "rows"}, where)
    rows = _get(raw, "rows", list, where)
    if not rows:
        raise CatalogDataError(f"{where}: no rows")
    return Service(
        name=_get(raw, "name", str, where),
        system_names=_strings(raw, "system_names", where),
        aliases=_strings(raw, "aliases", where),
        rows=tuple(_row(r, f"{where}.rows[{i}]") for i, r in enumerate(rows)),
        parent=_get(raw, "parent", str, where, None),
        note=_get(raw, "note", str, where, ""),
    )


_SUMMARY_TRANSPORTS: dict[str, Transport] = {
    "TCP": "tcp",
    "UDP": "udp",
    "UPD": "udp",
    "GRE": "gre",
    "ESP": "esp",
    "AH": "ah",
}


def _summary_row(raw: Any, names: Mapping[str, str], where: str) -> PortSummaryRow:
    if not isinstance(raw, dict):
        raise CatalogDataError(f"{where}: expected a table")
    _only(raw, {"port", "protocol", "app", "service", "errata"}, where)
    port_text = _get(raw, "port", str, where)
    protocol_text = _get(raw, "protocol", str, where)
    if protocol_text not in _SUMMARY_TRANSPORTS:
        raise CatalogDataError(f"{where}: unknown protocol {protocol_text!r}")
    first: int | None
    last: int | None
    text = port_text.removeprefix("random port number between ").replace(" ", "")
    if port_text == "n/a":
        first = last = None
    elif text.isdigit():
        first = last = _port(int(text), where)
    elif text.count("-") == 1 and all(part.isdigit() for part in text.split("-")):
        lo, hi = text.split("-")
        first, last = _port(int(lo), where), _port(int(hi), where)
    else:
        raise CatalogDataError(f"{where}: cannot read port {port_text!r}")
    service_text = _get(raw, "service", str, where)
    return PortSummaryRow(
        port_text=port_text,
        protocol_text=protocol_text,
        app=_get(raw, "app", str, where),
        service_text=service_text,
        transport=_SUMMARY_TRANSPORTS[protocol_text],
        first=first,
        last=last,
        service=names.get(service_text),
        errata=_strings(raw, "errata", where),
    )


def _pick_rows(
    rows: Iterable[CatalogRow], transport: Transport, first: int | None, last: int | None
) -> list[CatalogRow]:
    """Rows matching a profile item, narrowed to the asked protocol; ``both`` picks tcp rows, then udp."""
    rows = list(rows)
    if transport in NON_PORT_TRANSPORTS:
        return [r for r in rows if r.transport == transport]
    picked: list[CatalogRow] = []
    for protocol in ("tcp", "udp") if transport == "both" else (transport,):
        for r in rows:
            if protocol in r.protocols and (r.first, r.last) == (first, last):
                picked.append(dataclasses.replace(r, transport=cast(Transport, protocol)))
    return picked


def _profile(
    raw: Any, catalog_services: Mapping[str, Service], summary: Sequence[PortSummaryRow], where: str
) -> Profile:
    if not isinstance(raw, dict):
        raise CatalogDataError(f"{where}: expected a table")
    _only(raw, {"name", "description", "why", "items"}, where)
    entries: list[ProfileEntry] = []
    for i, item in enumerate(_get(raw, "items", list, where)):
        at = f"{where}.items[{i}]"
        if not isinstance(item, dict):
            raise CatalogDataError(f"{at}: expected a table")
        _only(item, {"service", "summary", "app", "cite", "transport", "port", "range"}, at)
        kinds = [k for k in ("service", "summary", "app") if k in item]
        if len(kinds) != 1:
            raise CatalogDataError(f"{at}: give exactly one of service, summary, app")
        if "service" in item:
            service = catalog_services.get(_norm(_get(item, "service", str, at)))
            if service is None:
                raise CatalogDataError(f"{at}: unknown service {item['service']!r}")
            if "transport" not in item:
                _only(item, {"service"}, at)
                entries += [ProfileEntry(r, service.name) for r in service.rows]
                continue
            transport = _transport(item, at)
            first, last = _bounds(item, transport, at)
            picked = [ProfileEntry(r, service.name) for r in _pick_rows(service.rows, transport, first, last)]
        elif "summary" in item:
            column = _get(item, "summary", str, at)
            transport = _transport(item, at)
            first, last = _bounds(item, transport, at)
            origin = f"summary: {column}"
            rows = [
                CatalogRow(
                    s.app,
                    s.app,
                    s.transport,
                    s.first,
                    s.last,
                    note=f"KB 832017 Ports and protocols: {column}",
                )
                for s in summary
                if s.service_text == column
            ]
            picked = [ProfileEntry(r, origin) for r in _pick_rows(rows, transport, first, last)]
        else:
            app = _get(item, "app", str, at)
            cite = _get(item, "cite", str, at)
            transport = _transport(item, at)
            first, last = _bounds(item, transport, at)
            rows = [CatalogRow(app, app, transport, first, last, note=cite)]
            picked = [ProfileEntry(r, cite) for r in _pick_rows(rows, transport, first, last)]
        if not picked:
            raise CatalogDataError(f"{at}: matches no catalog row")
        entries += picked
    return Profile(
        name=_get(raw, "name", str, where),
        description=_get(raw, "description", str, where),
        why=_get(raw, "why", str, where),
        entries=tuple(entries),
    )


def _dependencies(raw: Any, services: Mapping[str, Service], where: str) -> tuple[DependencyEntry, ...]:
    if not isinstance(raw, list):
        raise CatalogDataError(f"{where}: expected a list")
    out = []
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise CatalogDataError(f"{at}: expected a table")
        _only(entry, {"text", "service"}, at)
        name = _get(entry, "service", str, at)
        if name not in {s.name for s in services.values()}:
            raise CatalogDataError(f"{at}: {name!r} is not a service display name")
        out.append(DependencyEntry(_get(entry, "text", str, at), name))
    return tuple(out)


def parse_catalog(text: str) -> Catalog:
    """Parse and validate catalog TOML (the format of ``exporter/data/catalog.toml``).

    Args:
        text: the TOML document.

    Returns:
        The catalog.

    Raises:
        CatalogDataError: the TOML is invalid, a key is unknown or mistyped, a name is duplicated across
            services, a reference (profile item, summary service name, errata id, dependency) does not
            resolve, or a profile item matches no row.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise CatalogDataError(f"catalog.toml: {err}") from err
    _only(data, {"schema", "source", "service", "profile", "errata", "active_directory", "summary"}, "catalog")
    if data.get("schema") != 1:
        raise CatalogDataError(f"catalog: unsupported schema {data.get('schema')!r}")

    services = tuple(_service(raw, f"service[{i}]") for i, raw in enumerate(_get(data, "service", list, "catalog")))
    by_name: dict[str, Service] = {}
    spelling: dict[str, str] = {}
    for service in services:
        for name in service.names:
            key = _norm(name)
            other = by_name.get(key)
            if other is not None and other is not service:
                raise CatalogDataError(f"service {service.name!r}: name {name!r} is also {other.name!r}")
            by_name[key] = service
            spelling.setdefault(key, name)
    for service in services:
        if service.parent is not None and service.parent not in {s.name for s in services}:
            raise CatalogDataError(f"service {service.name!r}: unknown parent {service.parent!r}")

    summary_table = _get(data, "summary", dict, "catalog")
    _only(summary_table, {"rows", "service_names"}, "summary")
    names = _get(summary_table, "service_names", dict, "summary")
    for column, target in names.items():
        if not isinstance(target, str) or target not in {s.name for s in services}:
            raise CatalogDataError(f"summary.service_names: {column!r} -> {target!r} is not a service name")
    summary = tuple(
        _summary_row(raw, names, f"summary.rows[{i}]")
        for i, raw in enumerate(_get(summary_table, "rows", list, "summary"))
    )

    errata = []
    for i, raw in enumerate(_get(data, "errata", list, "catalog", [])):
        at = f"errata[{i}]"
        if not isinstance(raw, dict):
            raise CatalogDataError(f"{at}: expected a table")
        _only(raw, {"id", "where", "text", "decision", "source", "summary_services"}, at)
        errata.append(
            Erratum(
                id=_get(raw, "id", str, at),
                where=_get(raw, "where", str, at),
                text=_get(raw, "text", str, at),
                decision=_get(raw, "decision", str, at),
                source=_get(raw, "source", str, at, "KB 832017"),
                summary_services=_strings(raw, "summary_services", at),
            )
        )
    ids = [e.id for e in errata]
    if len(set(ids)) != len(ids):
        raise CatalogDataError("errata: duplicate id")
    for row in summary:
        for ref in row.errata:
            if ref not in ids:
                raise CatalogDataError(f"summary row {row.port_text}/{row.protocol_text}: unknown errata {ref!r}")

    profiles = tuple(
        _profile(raw, by_name, summary, f"profile[{i}]") for i, raw in enumerate(_get(data, "profile", list, "catalog"))
    )
    profiles_by_name: dict[str, Profile] = {}
    for profile in profiles:
        if _norm(profile.name) in profiles_by_name:
            raise CatalogDataError(f"profile {profile.name!r}: duplicate name")
        profiles_by_name[_norm(profile.name)] = profile

    ad = _get(data, "active_directory", dict, "catalog")
    _only(ad, {"depends_on", "required_by"}, "active_directory")
    source = _get(data, "source", dict, "catalog")
    return Catalog(
        services=services,
        profiles=profiles,
        port_summary=summary,
        errata=tuple(errata),
        ad_depends_on=_dependencies(ad.get("depends_on"), by_name, "active_directory.depends_on"),
        ad_required_by=_dependencies(ad.get("required_by"), by_name, "active_directory.required_by"),
        source={str(k): str(v) for k, v in source.items()},
        _by_name=by_name,
        _spelling=spelling,
        _profiles_by_name=profiles_by_name,
    )


@functools.cache
def load_catalog() -> Catalog:
    """Load the packaged catalog (``exporter/data/catalog.toml``) once; later calls return the same object.

    Returns:
        The catalog.

    Raises:
        CatalogDataError: the packaged data is malformed (see :func:`parse_catalog`).
    """
    text = resources.files(_DATA_PACKAGE).joinpath(_DATA_PATH).read_text(encoding="utf-8")
    return parse_catalog(text)


# --------------------------------------------------------------------------------------------------------
# Listings for the CLI


def _specs(rows: Iterable[CatalogRow]) -> str:
    """``tcp/389, udp/500 (optional), tcp/49152-65535 (dynamic RPC), icmp (not probed)``; no duplicates."""
    seen: dict[str, None] = {}
    for row in rows:
        spec = row.spec
        if row.dynamic_rpc:
            spec += " (dynamic RPC)"
        elif row.first is None or row.is_range:
            spec += " (not probed)"
        if row.optional:
            spec += " (optional)"
        seen.setdefault(spec, None)
    return ", ".join(seen)


def format_service_list(catalog: Catalog | None = None) -> str:
    """Text for ``portqry --list-services``: one service per line with its ports, article order.

    Each line is ``<display name> [<system service names>]: <ports>``; the bracket is left out when the
    article gives no system service name. Ports read ``tcp/389``, ``tcp+udp/1745``, ``tcp/49152-65535
    (dynamic RPC)``, ``icmp (not probed)``, with `` (optional)`` after optional rows. Example line::

        Kerberos Key Distribution Center [kdc]: tcp/88, udp/88, udp/464, tcp/464, udp/389

    Args:
        catalog: the catalog; :func:`load_catalog` when ``None``.

    Returns:
        The lines joined with ``\\n``, with a trailing newline (60 lines: 59 sections and BranchCache).
    """
    catalog = catalog or load_catalog()
    lines = []
    for service in catalog.services:
        system = f" [{', '.join(service.system_names)}]" if service.system_names else ""
        lines.append(f"{service.name}{system}: {_specs(service.rows)}")
    return "\n".join(lines) + "\n"


def format_profile_list(catalog: Catalog | None = None) -> str:
    """Text for a profile listing: one profile per line, ``<name>: <ports> -- <description>``.

    Args:
        catalog: the catalog; :func:`load_catalog` when ``None``.

    Returns:
        The lines joined with ``\\n``, with a trailing newline.
    """
    catalog = catalog or load_catalog()
    return "".join(f"{p.name}: {_specs(e.row for e in p.entries)} -- {p.description}\n" for p in catalog.profiles)

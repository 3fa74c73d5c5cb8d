"""The catalog's loader: ``exporter/data/catalog.toml`` through pydantic models into a :class:`Catalog`.

Two steps.  The pydantic models below (``extra="forbid"``, strict types, like :mod:`exporter.config`) check
each table's keys, types, ports and port/range/transport rules; then :func:`parse_catalog` resolves the
references between tables (profile items, summary service names, errata ids, dependencies) and refuses
duplicate names.  Every failure is one :class:`CatalogDataError` line naming the key, with the shared
"did you mean" suggestion (:mod:`exporter.suggest`) for unknown keys and names, e.g.
``service[3].rows[2]: unknown key 'aliasses'; did you mean 'aliases'?``.

The data is hand-checked from KB 832017 (see :mod:`exporter.catalog.model`); this module never reads the
article.  Check by hand:
``python -c "from exporter.catalog import load_catalog as l; print(len(l().services))"`` (60).
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Annotated, Any, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.catalog.model import (
    NON_PORT_TRANSPORTS,
    TRANSPORTS,
    Catalog,
    CatalogDataError,
    CatalogRow,
    DependencyEntry,
    Erratum,
    PortSummaryRow,
    Profile,
    ProfileEntry,
    Service,
    Transport,
)
from exporter.suggest import did_you_mean, fold

DATA_PACKAGE = "exporter"
DATA_PATH = "data/catalog.toml"

#: The summary table's Protocol cell -> transport (``UPD`` is the article's typo, errata ``upd-typo``).
SUMMARY_TRANSPORTS: dict[str, Transport] = {
    "TCP": "tcp",
    "UDP": "udp",
    "UPD": "udp",
    "GRE": "gre",
    "ESP": "esp",
    "AH": "ah",
}


def _check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"port must be an integer 1-65535, got {value!r}")
    return value


Port = Annotated[int, AfterValidator(_check_port)]
Name = Annotated[str, StringConstraints(min_length=1)]


def _transport(value: str) -> str:
    if value not in TRANSPORTS:
        raise ValueError(f"unknown transport {value!r}{did_you_mean(value, sorted(TRANSPORTS))}")
    return value


TransportText = Annotated[str, AfterValidator(_transport)]


def _bounds(transport: str, port: int | None, bounds: Sequence[int] | None) -> tuple[int | None, int | None]:
    """``port`` or ``range`` of a row or profile item, checked against the transport.

    Raises:
        ValueError: both given, a port on icmp/gre/esp/ah, neither on tcp/udp/both, a bad range.
    """
    if port is not None and bounds is not None:
        raise ValueError("give port or range, not both")
    if transport in NON_PORT_TRANSPORTS:
        if port is not None or bounds is not None:
            raise ValueError(f"{transport} has no port")
        return None, None
    if port is not None:
        return port, port
    if bounds is not None:
        if len(bounds) != 2:
            raise ValueError("range: expected [first, last]")
        if bounds[0] >= bounds[1]:
            raise ValueError("range: first must be below last")
        return bounds[0], bounds[1]
    raise ValueError(f"{transport} needs a port or a range")


class _Table(BaseModel):
    """A TOML table: unknown keys refused (with a suggestion), no type coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = [info.alias or name for name, info in cls.model_fields.items()]
            unknown = sorted(set(data) - set(known))
            if unknown:
                raise ValueError(f"unknown key {unknown[0]!r}{did_you_mean(unknown[0], known)}")
        return data


class RowData(_Table):
    """A ``[[service]].rows`` entry (see :class:`exporter.catalog.model.CatalogRow`)."""

    app: Name
    label: Name | None = None
    transport: TransportText
    port: Port | None = None
    range: list[Port] | None = None
    dynamic_rpc: bool = False
    optional: bool = False
    prose: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _placed(self) -> RowData:
        first, last = _bounds(self.transport, self.port, self.range)
        if self.dynamic_rpc and first == last:
            raise ValueError("dynamic_rpc needs a range")
        return self

    def row(self) -> CatalogRow:
        """The catalog row."""
        first, last = _bounds(self.transport, self.port, self.range)
        return CatalogRow(
            app=self.app,
            label=self.label or self.app,
            transport=cast(Transport, self.transport),
            first=first,
            last=last,
            dynamic_rpc=self.dynamic_rpc,
            optional=self.optional,
            prose=self.prose,
            note=self.note,
        )


class ServiceData(_Table):
    """A ``[[service]]`` table (see :class:`exporter.catalog.model.Service`)."""

    name: Name
    system_names: list[Name] = Field(default_factory=list)
    aliases: list[Name] = Field(default_factory=list)
    parent: Name | None = None
    note: str = ""
    rows: list[RowData] = Field(min_length=1)

    def service(self) -> Service:
        """The catalog service."""
        return Service(
            name=self.name,
            system_names=tuple(self.system_names),
            aliases=tuple(self.aliases),
            rows=tuple(r.row() for r in self.rows),
            parent=self.parent,
            note=self.note,
        )


class SummaryRowData(_Table):
    """A ``[summary].rows`` entry, verbatim (see :class:`exporter.catalog.model.PortSummaryRow`)."""

    port: Name
    protocol: str
    app: str
    service: str
    errata: list[Name] = Field(default_factory=list)

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        if value not in SUMMARY_TRANSPORTS:
            raise ValueError(f"unknown protocol {value!r}{did_you_mean(value, list(SUMMARY_TRANSPORTS))}")
        return value

    @field_validator("port")
    @classmethod
    def _port_text(cls, value: str) -> str:
        _summary_bounds(value)
        return value

    def summary_row(self, names: Mapping[str, str]) -> PortSummaryRow:
        """The summary row; ``names`` maps the article's service column to catalog service names."""
        first, last = _summary_bounds(self.port)
        return PortSummaryRow(
            port_text=self.port,
            protocol_text=self.protocol,
            app=self.app,
            service_text=self.service,
            transport=SUMMARY_TRANSPORTS[self.protocol],
            first=first,
            last=last,
            service=names.get(self.service),
            errata=tuple(self.errata),
        )


def _summary_bounds(text: str) -> tuple[int | None, int | None]:
    """``389`` -> (389, 389); ``1024-65535`` and ``random port number between 49152 - 65535`` -> a range;
    ``n/a`` -> (None, None).

    Raises:
        ValueError: anything else, or a port outside 1-65535.
    """
    if text == "n/a":
        return None, None
    compact = text.removeprefix("random port number between ").replace(" ", "")
    parts = compact.split("-")
    if len(parts) in (1, 2) and all(p.isdigit() for p in parts):
        first, last = _check_port(int(parts[0])), _check_port(int(parts[-1]))
        return first, last
    raise ValueError(f"cannot read port {text!r}")


class SummaryData(_Table):
    """``[summary]``: the "Ports and protocols" rows and the service column -> catalog service map."""

    rows: list[SummaryRowData]
    service_names: dict[str, str]


class ProfileItemData(_Table):
    """A ``[[profile]].items`` entry: a whole service, or one service/summary/cited row by transport and port."""

    service: Name | None = None
    summary: Name | None = None
    app: Name | None = None
    cite: Name | None = None
    transport: TransportText | None = None
    port: Port | None = None
    range: list[Port] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ProfileItemData:
        if [self.service, self.summary, self.app].count(None) != 2:
            raise ValueError("give exactly one of service, summary, app")
        if self.transport is None:
            if self.service is None or self.port is not None or self.range is not None or self.cite is not None:
                raise ValueError("missing 'transport'")
            return self
        if self.app is not None and self.cite is None:
            raise ValueError("missing 'cite'")
        _bounds(self.transport, self.port, self.range)
        return self

    @property
    def bounds(self) -> tuple[int | None, int | None]:
        """``(first, last)`` of the item (``(None, None)`` for a whole service or a non-port transport)."""
        return (None, None) if self.transport is None else _bounds(self.transport, self.port, self.range)


class ProfileData(_Table):
    """A ``[[profile]]`` table (see :class:`exporter.catalog.model.Profile`)."""

    name: Name
    description: str
    why: str
    items: list[ProfileItemData]


class ErratumData(_Table):
    """An ``[[errata]]`` table (see :class:`exporter.catalog.model.Erratum`)."""

    id: Name
    where: str
    text: str
    decision: str
    source: str = "KB 832017"
    summary_services: list[Name] = Field(default_factory=list)


class DependencyData(_Table):
    """An ``[active_directory]`` list entry."""

    text: str
    service: str


class ActiveDirectoryData(_Table):
    """``[active_directory]``: the article's two dependency lists."""

    depends_on: list[DependencyData]
    required_by: list[DependencyData]


class CatalogData(_Table):
    """The whole ``catalog.toml`` document."""

    schema_: int = Field(alias="schema")
    source: dict[str, str]
    service: list[ServiceData]
    profile: list[ProfileData]
    errata: list[ErratumData] = Field(default_factory=list)
    active_directory: ActiveDirectoryData
    summary: SummaryData

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"unsupported schema {value!r}")
        return value


# --------------------------------------------------------------------------------------------------------
# From the models to the catalog


def _key(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "catalog"


_TYPE_WORDS = {"model_type": "expected a table", "dict_type": "expected a table", "list_type": "expected a list"}


def _data_error(exc: ValidationError) -> CatalogDataError:
    """The first error of ``exc`` as one line naming the key."""
    errors = exc.errors()
    first = errors[0]
    loc = list(first["loc"])
    kind = first["type"]
    if kind == "missing":
        problem = f"missing {loc.pop()!r}"
    elif kind in _TYPE_WORDS:
        problem = f"{_TYPE_WORDS[kind]}, got {first['input']!r}"
    elif kind == "value_error":
        problem = str(first["msg"]).removeprefix("Value error, ")
    else:
        problem = f"{first['msg']} (got {first['input']!r})"
    if len(errors) > 1:
        problem += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return CatalogDataError(_key(loc), problem)


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


def _profile_entries(
    item: ProfileItemData, services: Mapping[str, Service], summary: Sequence[PortSummaryRow], at: str
) -> list[ProfileEntry]:
    """The rows one profile item names.

    Raises:
        CatalogDataError: an unknown service (with a suggestion), or an item that matches no row.
    """
    first, last = item.bounds
    transport = cast(Transport, item.transport)
    if item.service is not None:
        service = services.get(fold(item.service))
        if service is None:
            known = [s.name for s in services.values()]
            raise CatalogDataError(
                f"{at}.service", f"unknown service {item.service!r}{did_you_mean(item.service, known)}"
            )
        if item.transport is None:
            return [ProfileEntry(r, service.name) for r in service.rows]
        picked = [ProfileEntry(r, service.name) for r in _pick_rows(service.rows, transport, first, last)]
    elif item.summary is not None:
        column = item.summary
        note = f"KB 832017 Ports and protocols: {column}"
        rows = [
            CatalogRow(s.app, s.app, s.transport, s.first, s.last, note=note)
            for s in summary
            if s.service_text == column
        ]
        picked = [ProfileEntry(r, f"summary: {column}") for r in _pick_rows(rows, transport, first, last)]
    else:
        app, cite = cast(str, item.app), cast(str, item.cite)
        rows = [CatalogRow(app, app, transport, first, last, note=cite)]
        picked = [ProfileEntry(r, cite) for r in _pick_rows(rows, transport, first, last)]
    if not picked:
        raise CatalogDataError(at, "matches no catalog row")
    return picked


def _services(data: CatalogData) -> tuple[tuple[Service, ...], dict[str, Service]]:
    """The services and the index of every name they answer to (folded).

    Raises:
        CatalogDataError: a name shared by two services, an unknown parent.
    """
    services = tuple(s.service() for s in data.service)
    by_name: dict[str, Service] = {}
    for i, service in enumerate(services):
        for name in service.names:
            other = by_name.setdefault(fold(name), service)
            if other is not service:
                raise CatalogDataError(f"service[{i}]", f"name {name!r} is also {other.name!r}")
    display = [s.name for s in services]
    for i, service in enumerate(services):
        if service.parent is not None and service.parent not in display:
            raise CatalogDataError(
                f"service[{i}].parent", f"unknown parent {service.parent!r}{did_you_mean(service.parent, display)}"
            )
    return services, by_name


def _summary(data: CatalogData, display: Sequence[str], errata_ids: Sequence[str]) -> tuple[PortSummaryRow, ...]:
    """The summary rows, their service column resolved.

    Raises:
        CatalogDataError: a service column mapped to no service, an unknown errata id.
    """
    names = data.summary.service_names
    for column, target in names.items():
        if target not in display:
            raise CatalogDataError(
                "summary.service_names",
                f"{column!r} -> {target!r} is not a service name{did_you_mean(target, display)}",
            )
    for i, row in enumerate(data.summary.rows):
        for ref in row.errata:
            if ref not in errata_ids:
                raise CatalogDataError(
                    f"summary.rows[{i}].errata", f"unknown errata {ref!r}{did_you_mean(ref, errata_ids)}"
                )
    return tuple(row.summary_row(names) for row in data.summary.rows)


def _dependencies(raw: Sequence[DependencyData], display: Sequence[str], where: str) -> tuple[DependencyEntry, ...]:
    for i, entry in enumerate(raw):
        if entry.service not in display:
            raise CatalogDataError(
                f"{where}[{i}].service",
                f"{entry.service!r} is not a service display name{did_you_mean(entry.service, display)}",
            )
    return tuple(DependencyEntry(e.text, e.service) for e in raw)


def parse_catalog(text: str) -> Catalog:
    """Parse and validate catalog TOML (the format of ``exporter/data/catalog.toml``).

    Args:
        text: the TOML document.

    Returns:
        The catalog.

    Raises:
        CatalogDataError: the TOML is invalid, a key is unknown or mistyped, a name is duplicated across
            services, a reference (profile item, summary service name, errata id, dependency) does not
            resolve, or a profile item matches no row.  One line naming the key.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogDataError("catalog.toml", f"not valid TOML: {exc}") from None
    try:
        data = CatalogData.model_validate(raw)
    except ValidationError as exc:
        raise _data_error(exc) from None

    services, by_name = _services(data)
    display = [s.name for s in services]
    errata = tuple(Erratum(e.id, e.where, e.text, e.decision, e.source, tuple(e.summary_services)) for e in data.errata)
    ids = [e.id for e in errata]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise CatalogDataError("errata", f"duplicate id {duplicate!r}")
    summary = _summary(data, display, ids)

    profiles: list[Profile] = []
    seen: set[str] = set()
    for i, item in enumerate(data.profile):
        if fold(item.name) in seen:
            raise CatalogDataError(f"profile[{i}].name", f"duplicate name {item.name!r}")
        seen.add(fold(item.name))
        entries = [
            entry
            for j, it in enumerate(item.items)
            for entry in _profile_entries(it, by_name, summary, f"profile[{i}].items[{j}]")
        ]
        profiles.append(Profile(item.name, item.description, item.why, tuple(entries)))

    ad = data.active_directory
    return Catalog(
        services=services,
        profiles=tuple(profiles),
        port_summary=summary,
        errata=errata,
        ad_depends_on=_dependencies(ad.depends_on, display, "active_directory.depends_on"),
        ad_required_by=_dependencies(ad.required_by, display, "active_directory.required_by"),
        source=dict(data.source),
    )


@functools.cache
def load_catalog() -> Catalog:
    """Load the packaged catalog (``exporter/data/catalog.toml``) once; later calls return the same object.

    Returns:
        The catalog.

    Raises:
        CatalogDataError: the packaged data is malformed (see :func:`parse_catalog`).
        OSError: the data file cannot be read.
    """
    text = resources.files(DATA_PACKAGE).joinpath(DATA_PATH).read_text(encoding="utf-8")
    return parse_catalog(text)

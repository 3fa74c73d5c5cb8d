"""Configuration: a TOML file validated by pydantic, with ``PORTQRY_`` environment overrides.

Environment variables override the file.  Nested keys are joined with a double underscore:
``PORTQRY_EXPORTER__LISTEN_ADDRESS=0.0.0.0:9727``, ``PORTQRY_DEFAULTS__INTERVAL_SECONDS=10``;
lists and tables are JSON: ``PORTQRY_RESOLVER__NAMESERVERS='["198.18.0.2"]'``,
``PORTQRY_TARGETS='[{"name": "dc1", "host": "dc1.example.test", "ports": ["tcp/389"]}]'``.

Unknown keys are errors.  :func:`load_config` raises :class:`~exporter.errors.ConfigError`, whose message
is one line naming the file, the key and the problem.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from exporter.errors import ConfigError, PortqryError
from exporter.model import PortSpec, ProbeOptions, ProbeParams
from exporter.probes import PROBES, port_spec
from exporter.suggest import did_you_mean

DEFAULT_CONFIG_PATHS = ("config.example.toml", "/etc/portqry-exporter/config.toml")
MAX_PORTS_PER_TARGET = 65535 * 2


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExporterSection(_Section):
    """``[exporter]``: the daemon itself."""

    listen_address: str = "127.0.0.1:9727"
    concurrency: int = Field(256, ge=1, le=65536, description="global probes in flight")
    udp_pacing_seconds: float = Field(0.25, ge=0, le=10, description="gap between UDP datagrams to one address")
    udp_recheck_max: int = Field(8, ge=0, le=1024, description="silent UDP ports re-checked per round (0 = off)")
    udp_recheck_gap_seconds: float = Field(1.0, ge=0, le=10, description="wait before each UDP re-check")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen_address(value)
        return value


class ResolverSection(_Section):
    """``[resolver]``: empty ``nameservers`` means the system resolver (hosts file, resolv.conf)."""

    nameservers: list[str] = Field(default_factory=list)
    port: int = Field(53, ge=1, le=65535)
    timeout_seconds: float = Field(2.0, gt=0, le=60)
    prefer: Literal["ipv4", "ipv6", "ipv4-only", "ipv6-only"] = "ipv4"

    @field_validator("nameservers")
    @classmethod
    def _literals(cls, value: list[str]) -> list[str]:
        from exporter.resolve import literal

        for server in value:
            if literal(server) is None:
                raise ValueError(f"{server!r} is not an IP address")
        return value


class ProbeDefaults(_Section):
    """``[defaults]``: per-target settings that a target may override."""

    interval_seconds: float = Field(30.0, ge=1, le=86400)
    timeout_seconds: float = Field(2.0, gt=0, le=60, description="per try")
    tcp_tries: int = Field(3, ge=1, le=10)
    udp_tries: int = Field(1, ge=1, le=10)
    jitter_ratio: float = Field(0.1, ge=0, le=0.5, description="interval jitter, as a fraction")
    protocol_probes: bool = True
    snmp_community: str = "public"
    snmp_version: Literal["v1", "v2c"] = "v2c"


def _check_port_spec(value: str) -> str:
    parse_port_spec(value)
    return value


class TargetConfig(_Section):
    """``[[targets]]``: one host and its ports."""

    name: str = Field(min_length=1, max_length=128)
    host: str = Field(min_length=1, max_length=253)
    ports: list[Annotated[str, AfterValidator(_check_port_spec)]] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    profiles: list[str] = Field(default_factory=list)
    interval_seconds: float | None = Field(None, ge=1, le=86400)
    timeout_seconds: float | None = Field(None, gt=0, le=60)
    tcp_tries: int | None = Field(None, ge=1, le=10)
    udp_tries: int | None = Field(None, ge=1, le=10)
    protocol_probes: bool | None = None
    snmp_community: str | None = None
    snmp_version: Literal["v1", "v2c"] | None = None
    dns_query_name: str | None = Field(None, description="DNS probe: name to ask (default: domain SOA, else PortQry's)")
    dns_query_type: str | None = Field(None, description="DNS probe: record type to ask")
    domain: str | None = Field(None, description="AD DNS domain for the LDAP ping and Kerberos realm")
    protocols: dict[str, str] = Field(
        default_factory=dict, description='bind a protocol-aware probe to a port: {"tcp/1389" = "ldap"}'
    )

    @field_validator("dns_query_type")
    @classmethod
    def _rdtype(cls, value: str | None) -> str | None:
        if value:
            import dns.rdatatype

            try:
                dns.rdatatype.from_text(value)
            except dns.rdatatype.UnknownRdatatype:
                raise ValueError(f"{value!r} is not a DNS record type") from None
        return value

    @field_validator("dns_query_name", "domain")
    @classmethod
    def _dns_name(cls, value: str | None) -> str | None:
        if value:
            import dns.exception
            import dns.name

            try:
                dns.name.from_text(value)
            except dns.exception.DNSException as exc:
                raise ValueError(f"{value!r} is not a valid DNS name: {exc}") from None
        return value

    @field_validator("protocols")
    @classmethod
    def _protocols(cls, value: dict[str, str]) -> dict[str, str]:
        for key, name in value.items():
            specs = parse_port_spec(key)
            if len(specs) != 1 and len({p for _, p in specs}) != 1:
                raise ValueError(f"{key!r}: bind a protocol to one port, not a range")
            if name and name not in PROBES:
                raise ValueError(f"{key!r}: unknown protocol {name!r}{did_you_mean(name, sorted(PROBES))}")
        return value

    @model_validator(mode="after")
    def _something(self) -> TargetConfig:
        if not (self.ports or self.services or self.profiles):
            raise ValueError("a target needs ports, services or profiles")
        return self


class Settings(BaseSettings):
    """The whole configuration file (see ``config.example.toml`` and the README's reference)."""

    model_config = SettingsConfigDict(env_prefix="PORTQRY_", env_nested_delimiter="__", extra="forbid", frozen=True)

    exporter: ExporterSection = Field(default_factory=ExporterSection)  # type: ignore[arg-type]
    resolver: ResolverSection = Field(default_factory=ResolverSection)  # type: ignore[arg-type]
    defaults: ProbeDefaults = Field(default_factory=ProbeDefaults)  # type: ignore[arg-type]
    targets: list[TargetConfig] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Priority: arguments, then ``PORTQRY_*`` environment variables, then the TOML file."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, deep_merge=True))


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """A target ready for the scheduler: resolved port list and probe options (hashable, comparable)."""

    name: str
    host: str
    specs: tuple[PortSpec, ...]
    options: ProbeOptions
    interval_seconds: float
    jitter_ratio: float

    @property
    def keys(self) -> frozenset[tuple[str, str, int]]:
        """The store keys ``(target, protocol, port)`` this target produces."""
        return frozenset((self.name, s.protocol, s.port) for s in self.specs)


def parse_port_spec(text: str) -> list[tuple[str, int]]:
    """Parse ``tcp/389``, ``udp/389``, ``both/135`` or ``tcp/49152-49160``.

    Returns:
        ``[(protocol, port), ...]``, TCP before UDP for ``both``.

    Raises:
        ValueError: with a message saying what is wrong.
    """
    proto, sep, ports = text.strip().partition("/")
    proto = proto.lower()
    if not sep or proto not in ("tcp", "udp", "both"):
        raise ValueError(f"{text!r}: write PROTOCOL/PORT with PROTOCOL tcp, udp or both, e.g. 'tcp/389'")
    low_s, dash, high_s = ports.partition("-")
    try:
        low = int(low_s)
        high = int(high_s) if dash else low
    except ValueError:
        raise ValueError(f"{text!r}: port must be a number or a range START-END") from None
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise ValueError(f"{text!r}: ports must be 1-65535")
    if high < low:
        raise ValueError(f"{text!r}: range end is below its start")
    protos = ("tcp", "udp") if proto == "both" else (proto,)
    return [(p, port) for p in protos for port in range(low, high + 1)]


def parse_listen_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9727"``, ``"[::1]:9727"`` or ``":9727"`` -> ``(host, port)``.

    Raises:
        ValueError: no port, or a port outside 0-65535.
    """
    host, sep, port_s = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r}: write HOST:PORT, e.g. 127.0.0.1:9727")
    try:
        port = int(port_s)
    except ValueError:
        raise ValueError(f"{text!r}: port must be a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port must be 0-65535")
    return host.strip("[]") or "0.0.0.0", port


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_config(path: str | os.PathLike[str]) -> Settings:
    """Read, parse and validate a config file (and the ``PORTQRY_`` environment).

    Args:
        path: the TOML file.

    Returns:
        The validated :class:`Settings`.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key, bad value; one line naming file, key, problem.
    """
    name = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(name, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, "", f"cannot read: {exc}") from None
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "", f"not valid TOML: {exc}") from None

    class _FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=Path(path))

    try:
        settings: Settings = _FileSettings()
    except SettingsError as exc:  # e.g. a PORTQRY_* variable holding bad JSON
        raise ConfigError(name, "environment", str(exc).split("\n", 1)[0]) from None
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        key = _loc(first["loc"]) or "(top level)"
        problem = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            problem = "unknown key"
        elif (
            "input" in first and first["type"] not in ("missing",) and not isinstance(first["input"], dict | list)
        ) and repr(first["input"]) not in problem:
            problem += f" (got {first['input']!r})"
        if len(errors) > 1:
            problem += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        raise ConfigError(name, key, problem) from None
    try:
        plan(settings)
    except ConfigError as exc:
        raise ConfigError(name, exc.key, exc.problem) from None
    return settings


def find_config(explicit: str | None) -> str:
    """The config path: ``explicit``, else the first of :data:`DEFAULT_CONFIG_PATHS` that exists."""
    if explicit:
        return explicit
    for candidate in DEFAULT_CONFIG_PATHS:
        if os.path.exists(candidate):
            return candidate
    return DEFAULT_CONFIG_PATHS[0]


def plan(settings: Settings) -> list[TargetPlan]:
    """Expand every target's ports, services and profiles into a :class:`TargetPlan`.

    Ports are de-duplicated keeping the first occurrence: explicit ``ports`` first, then ``services`` and
    ``profiles`` in request order (the catalog's application protocol becomes the ``service`` label).

    Raises:
        ConfigError: a duplicate target name, an unknown service or profile name (with suggestions), or
            too many ports (path ``""``).
    """
    plans: list[TargetPlan] = []
    d = settings.defaults
    seen: set[str] = set()
    for index, target in enumerate(settings.targets):
        if target.name in seen:
            raise ConfigError("", f"targets[{index}].name", f"duplicate target name {target.name!r}")
        seen.add(target.name)
        specs: dict[tuple[str, int], PortSpec] = {}
        bindings = {spec: v for k, v in target.protocols.items() for spec in parse_port_spec(k)}
        for item in target.ports:
            for proto, port in parse_port_spec(item):
                specs.setdefault((proto, port), port_spec(proto, port, "", bindings.get((proto, port))))  # type: ignore[arg-type]
        if target.services or target.profiles:
            for proto, port, label in _expand_catalog(index, target):
                specs.setdefault((proto, port), port_spec(proto, port, label, bindings.get((proto, port))))  # type: ignore[arg-type]
        if len(specs) > MAX_PORTS_PER_TARGET:
            raise ConfigError("", f"targets[{index}].ports", f"{len(specs)} ports is more than {MAX_PORTS_PER_TARGET}")
        params = ProbeParams(
            domain=target.domain or "",
            snmp_community=target.snmp_community or d.snmp_community,
            snmp_version=target.snmp_version or d.snmp_version,
            dns_query_name=target.dns_query_name or "",
            dns_query_type=target.dns_query_type or "",
        )
        options = ProbeOptions(
            timeout_seconds=target.timeout_seconds or d.timeout_seconds,
            tcp_tries=target.tcp_tries or d.tcp_tries,
            udp_tries=target.udp_tries or d.udp_tries,
            protocol_probes=d.protocol_probes if target.protocol_probes is None else target.protocol_probes,
            params=params,
        )
        plans.append(
            TargetPlan(
                name=target.name,
                host=target.host,
                specs=tuple(specs.values()),
                options=options,
                interval_seconds=target.interval_seconds or d.interval_seconds,
                jitter_ratio=d.jitter_ratio,
            )
        )
    return plans


def _expand_catalog(index: int, target: TargetConfig) -> list[tuple[str, int, str]]:
    try:
        from exporter import catalog
    except ImportError:  # pragma: no cover - the catalog ships with the package
        raise ConfigError("", f"targets[{index}].services", "the service catalog is not installed") from None
    try:
        expansion = catalog.load_catalog().expand(target.services, target.profiles)
    except catalog.CatalogLookupError as exc:
        names = target.profiles if exc.kind == "profile" else target.services
        where = f"{exc.kind}s[{names.index(exc.name)}]" if exc.name in names else f"{exc.kind}s"
        raise ConfigError("", f"targets[{index}].{where}", str(exc)) from None
    except PortqryError as exc:
        raise ConfigError("", f"targets[{index}].services", str(exc)) from None
    return [(p.protocol, p.port, p.service) for p in expansion.ports]

"""Configuration: a TOML file validated by pydantic, with ``PORTQRY_`` environment overrides.

Environment variables override the file.  Nested keys are joined with a double underscore:
``PORTQRY_EXPORTER__LISTEN_ADDRESS=0.0.0.0:9727``, ``PORTQRY_DEFAULTS__INTERVAL_SECONDS=10``;
lists and tables are JSON: ``PORTQRY_RESOLVER__NAMESERVERS='["198.18.0.2"]'``,
``PORTQRY_TARGETS='[{"name": "dc1", "host": "dc1.example.test", "ports": ["tcp/389"]}]'``.

Unknown keys are errors.  :func:`load_config` raises :class:`~exporter.errors.ConfigError`, whose message
is one line per error naming where the value came from (the file, or the ``PORTQRY_`` variable), the key and
the problem.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import json
import os
import re
import tomllib
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from exporter.configfile import check_ca_file
from exporter.configfile import read_config_file as read_config_file  # noqa: PLC0414  (re-exported: the web config)
from exporter.errors import ConfigError
from exporter.model import SHOWN_CHARS, parse_port_range, shown
from exporter.probes import PROBES
from exporter.resolve import literal
from exporter.shard import parse_shard
from exporter.suggest import did_you_mean

DEFAULT_CONFIG_PATHS = ("config.example.toml", "/etc/portqry-exporter/config.toml")
#: The longest problem text of one error line, characters (a value echoed in it is cut shorter: ``shown``).
MAX_PROBLEM_CHARS = 300
#: The most error lines one config error has (a file of 5,000 bad tables would print 10,000).
MAX_ERROR_LINES = 20
_PORT_DIGITS = re.compile(r"[0-9]{1,5}")
#: The environment variables that override the file start with this (``PORTQRY_EXPORTER__CONCURRENCY``).
ENV_PREFIX = "PORTQRY_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExporterSection(_Section):
    """``[exporter]``: the daemon itself."""

    listen_address: str = "127.0.0.1:9727"
    max_connections: int = Field(512, ge=1, le=65536, description="HTTP connections open at once (Prometheus' 512)")
    concurrency: int = Field(256, ge=1, le=65536, description="global probes in flight")
    udp_pacing_seconds: float = Field(0.25, ge=0, le=10, description="gap between UDP datagrams to one address")
    udp_recheck_max: int = Field(8, ge=0, le=1024, description="silent UDP ports re-checked per round (0 = off)")
    udp_recheck_gap_seconds: float = Field(1.0, ge=0, le=10, description="wait before each UDP re-check")
    histograms: Literal["target", "port", "none"] = Field(
        "target", description="latency histogram per (target, protocol), per port, or none"
    )
    histogram_buckets: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=list, description="histogram upper bounds, seconds (default: from timeouts and tries)"
    )
    status_history: int = Field(20, ge=0, le=1000, description="rounds kept per port for the status page (0 = none)")
    max_ports: int = Field(
        1_000_000, ge=1, le=100_000_000, description="ports of every target and domain in all, ranges counted whole"
    )
    allow_empty: bool = Field(False, description="accept a config with no targets, domains, modules or [probe] allow")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    shard: str | None = Field(None, description='"I/N": probe only the targets whose name hashmods to I (Prometheus)')

    @field_validator("listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @field_validator("histogram_buckets")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(b <= a for a, b in itertools.pairwise(value)) or len(value) > 64:
            raise ValueError("bucket bounds must increase, at most 64")
        return value

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            parse_shard(value)
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

        for server in value:
            if literal(server) is None:
                raise ValueError(f"{shown(server)} is not an IP address")
        return value


class ProbeDefaults(_Section):
    """``[defaults]``: per-target settings that a target may override."""

    interval_seconds: float = Field(30.0, ge=1, le=86400)
    timeout_seconds: float = Field(2.0, gt=0, le=60, description="per try")
    tcp_tries: int = Field(3, ge=1, le=10)
    udp_tries: int = Field(1, ge=1, le=10)
    jitter_ratio: float = Field(0.1, ge=0, le=0.5, description="interval jitter, as a fraction")
    protocol_probes: bool = True
    posture_checks: bool | None = Field(
        None,
        description="posture checks (SMB negotiate; LDAP plain-text bind and StartTLS on 389); default: on for DCs",
    )
    snmp_community: str = "public"
    snmp_version: Literal["v1", "v2c"] = "v2c"
    tls_ca_file: Annotated[str, AfterValidator(check_ca_file)] = Field(
        "", description="PEM file of the CAs TLS certificates are verified against; empty = the system store"
    )
    addresses: Literal["all", "first"] | None = Field(
        None, description="probe every address of a name, or the first; default: all for domains, first for targets"
    )


def _check_port_spec(value: str) -> str:
    parse_port_range(value)
    return value


class _ProbeKeys(_Section):
    """What to probe and how: the keys ``[[targets]]`` and ``[[domains]]`` share (``[defaults]`` fills the gaps)."""

    ports: list[Annotated[str, AfterValidator(_check_port_spec)]] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    profiles: list[str] = Field(default_factory=list)
    interval_seconds: float | None = Field(None, ge=1, le=86400)
    timeout_seconds: float | None = Field(None, gt=0, le=60)
    tcp_tries: int | None = Field(None, ge=1, le=10)
    udp_tries: int | None = Field(None, ge=1, le=10)
    protocol_probes: bool | None = None
    posture_checks: bool | None = None
    snmp_community: str | None = None
    snmp_version: Literal["v1", "v2c"] | None = None
    dns_query_name: str | None = Field(None, description="DNS probe: name to ask (default: domain SOA, else PortQry's)")
    dns_query_type: str | None = Field(None, description="DNS probe: record type to ask")
    tls_ca_file: Annotated[str | None, AfterValidator(check_ca_file)] = None
    addresses: Literal["all", "first"] | None = None
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
                raise ValueError(f"{shown(value)} is not a DNS record type") from None
        return value

    @field_validator("dns_query_name")
    @classmethod
    def _query_name(cls, value: str | None) -> str | None:
        return _dns_name(value)

    @field_validator("protocols")
    @classmethod
    def _protocols(cls, value: dict[str, str]) -> dict[str, str]:
        for key, name in value.items():
            _, low, high = parse_port_range(key)
            if low != high:
                raise ValueError(f"{shown(key)}: bind a protocol to one port, not a range")
            if name and name not in PROBES:
                raise ValueError(f"{shown(key)}: unknown protocol {shown(name)}{did_you_mean(name, sorted(PROBES))}")
        return value


class TargetConfig(_ProbeKeys):
    """``[[targets]]``: one host and its ports."""

    name: str = Field(min_length=1, max_length=128)
    host: str = Field(min_length=1, max_length=253)
    domain: str | None = Field(None, description="AD DNS domain for the LDAP ping and Kerberos realm")

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        return _dns_name(value)

    @model_validator(mode="after")
    def _something(self) -> TargetConfig:
        if not (self.ports or self.services or self.profiles):
            raise ValueError("a target needs ports, services or profiles")
        return self


class DomainConfig(_ProbeKeys):
    """``[[domains]]``: an AD domain whose DCs are found in DNS (``_ldap._tcp.dc._msdcs.<name>``, MS-ADTS 6.3.6)."""

    name: str = Field(min_length=1, max_length=253, description="the AD DNS domain")
    sites: list[str] = Field(default_factory=list, description="only DCs of these sites; empty = every DC")
    rediscover_seconds: float = Field(300.0, ge=1, le=86400)
    min_reachable_dcs: int = Field(2, ge=0, le=10000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if _dns_name(value) and ("." not in value.strip(".") or literal(value) is not None):
            raise ValueError(f"{shown(value)} is not an AD DNS domain name (e.g. 'corp.example')")
        return value.strip(".").lower()

    @field_validator("sites")
    @classmethod
    def _sites(cls, value: list[str]) -> list[str]:
        for site in value:
            if not site or len(site) > 63 or not all(c.isalnum() or c in "-_" for c in site):
                raise ValueError(f"{shown(site)} is not an AD site name (a DNS label: letters, digits, '-')")
        return value


class ModuleConfig(_ProbeKeys):
    """``[modules.NAME]``: what ``GET /probe?target=HOST&module=NAME`` probes, and how (the per-target keys)."""

    @model_validator(mode="after")
    def _module(self) -> ModuleConfig:
        if not (self.ports or self.services or self.profiles):
            raise ValueError("a module needs ports, services or profiles")
        if self.interval_seconds is not None:
            raise ValueError("a module has no interval_seconds: the scrape interval is its schedule")
        return self


class ProbeSection(_Section):
    """``[probe]``: who ``GET /probe`` may probe (besides the configured targets and discovered DCs), and limits."""

    allow: list[str] = Field(default_factory=list, description='CIDRs, addresses, names, "*.corp.example" patterns')
    max_concurrent_per_client: int = Field(4, ge=1, le=4096, description="/probe requests in flight per client")
    max_ports: int = Field(1024, ge=1, le=65535 * 2, description="ports x addresses of one /probe request")
    timeout_seconds: float = Field(30.0, gt=0, le=600, description="cap of one /probe request, seconds")
    timeout_margin_seconds: float = Field(0.5, ge=0, le=60, description="kept from the scrape timeout, seconds")

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: list[str]) -> list[str]:
        for rule in value:
            allow_rule(rule)
        return value


def allow_rule(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | str:
    """One ``[probe] allow`` entry: a network (``198.18.0.0/15``, an address is its /32 or /128) or a name pattern.

    A pattern is a DNS name, matched whole, or ``*.`` and a DNS name: any name below it (not the name itself);
    lower-case, without the trailing dot.

    Raises:
        ValueError: a network with host bits set, a bare ``*``, or not a DNS name.
    """
    rule = text.strip()
    try:
        return ipaddress.ip_network(rule.strip("[]"), strict=True)
    except ValueError as exc:
        if "/" in rule or literal(rule) is not None:
            why = exc if len(rule) <= SHOWN_CHARS else "not a network or an address"
            raise ValueError(f"{shown(text)}: {why}") from None
    name = rule.lower().rstrip(".")
    base = name.removeprefix("*.")
    if not base or "*" in base or ":" in base or "/" in base:
        raise ValueError(f"{shown(text)}: write a CIDR, an address, a name or *.name (every name below it)")
    _dns_name(base)
    return name


def _dns_name(value: str | None) -> str | None:
    if value:
        import dns.exception
        import dns.name

        try:
            dns.name.from_text(value)
        except dns.exception.DNSException as exc:
            raise ValueError(f"{shown(value)} is not a valid DNS name: {exc}") from None
    return value


class Settings(BaseSettings):
    """The whole configuration file (see ``config.example.toml`` and the README's reference)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True)

    exporter: ExporterSection = Field(default_factory=ExporterSection)  # type: ignore[arg-type]
    resolver: ResolverSection = Field(default_factory=ResolverSection)  # type: ignore[arg-type]
    defaults: ProbeDefaults = Field(default_factory=ProbeDefaults)  # type: ignore[arg-type]
    targets: list[TargetConfig] = Field(default_factory=list)
    domains: list[DomainConfig] = Field(default_factory=list)
    modules: dict[str, ModuleConfig] = Field(default_factory=dict)
    probe: ProbeSection = Field(default_factory=ProbeSection)  # type: ignore[arg-type]

    @field_validator("modules")
    @classmethod
    def _module_names(cls, value: dict[str, ModuleConfig]) -> dict[str, ModuleConfig]:
        for name in value:
            if not 0 < len(name) <= 64 or not all(c.isalnum() or c in "-_." for c in name):
                raise ValueError(f"{shown(name)}: a module name is 1-64 letters, digits, '-', '_' or '.'")
        return value

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


def parse_listen_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9727"``, ``"[::1]:9727"`` or ``":9727"`` -> ``(host, port)``.

    Raises:
        ValueError: no port, or a port outside 0-65535.
    """
    host, sep, port_s = text.rpartition(":")
    if not sep:
        raise ValueError(f"{shown(text)}: write HOST:PORT, e.g. 127.0.0.1:9727")
    if not _PORT_DIGITS.fullmatch(port_s):
        raise ValueError(f"{shown(text)}: port must be a number (digits 0-9)")
    port = int(port_s)
    if not 0 <= port <= 65535:
        raise ValueError(f"{shown(text)}: port must be 0-65535")
    return host.strip("[]") or "0.0.0.0", port


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_config(path: str | os.PathLike[str]) -> Settings:
    """Read, parse and validate a config file (and the ``PORTQRY_`` environment).

    The file is read once (:func:`read_config_file`): the bytes validated are the bytes applied.  Numbers and
    booleans in the file must be TOML's own (``interval_seconds = 5``, not ``"5"``; ``protocol_probes = true``,
    not ``"yes"``); ``PORTQRY_`` values are strings by nature and are converted.  A config with nothing to
    probe (no targets, domains, modules or ``[probe] allow``) is refused unless ``[exporter] allow_empty``.
    Blocking and CPU-bound (up to :data:`~exporter.configfile.MAX_CONFIG_BYTES` of TOML): the daemon calls it
    off its event loop.

    Args:
        path: the TOML file.

    Returns:
        The validated :class:`Settings`.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown keys, bad values: one line per error, naming the file
            (or the ``PORTQRY_`` variable that set the value), the key and the problem (a value shown in it is
            cut short).
    """
    name, text = read_config_file(path)
    try:
        return _load(name, text)
    except ConfigError as exc:
        raise _one_line_each(exc) from None


def _load(name: str, text: str) -> Settings:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "", f"not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(name, "", "not valid TOML: arrays or tables nested too deeply") from None

    class _FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, InitSettingsSource(settings_cls, document))

    env = _environment()
    lines: list[tuple[str, str, str]] = []
    settings: Settings | None = None
    try:
        settings = _FileSettings()
    except SettingsError as exc:  # e.g. a PORTQRY_* variable holding bad JSON
        raise _settings_error(exc, name, env) from None
    except ValidationError as exc:
        for error in exc.errors():
            key = _loc(error["loc"]) or "(top level)"
            problem = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                problem = "unknown key"
            elif (
                "input" in error and error["type"] not in ("missing",) and not isinstance(error["input"], dict | list)
            ) and shown(error["input"]) not in problem:
                problem += f" (got {shown(error['input'])})"
            line = (_source(error["loc"], name, env, missing=error["type"] == "missing"), key, problem)
            if line not in lines:
                lines.append(line)
    except (ValueError, TypeError, RecursionError) as exc:  # a PORTQRY_ value's JSON nested too deeply, ...
        raise ConfigError(name, "", f"cannot be loaded: {type(exc).__name__}: {exc}") from None
    keys = {key for _, key, _ in lines}
    lines += [line for line in _quoted_scalars(document, name, env) if line[1] not in keys]
    if lines or settings is None:
        raise ConfigError(*lines[0], also=lines[1:])
    from exporter.plan import domain_plans, module_plans, plan

    try:
        plan(settings)
        domain_plans(settings)
        module_plans(settings)
    except ConfigError as exc:
        raise ConfigError(_source(_parse_key(exc.key), name, env), exc.key, exc.problem) from None
    something = settings.targets or settings.domains or settings.modules or settings.probe.allow
    if not (something or settings.exporter.allow_empty):
        raise ConfigError(
            name,
            "",
            "nothing to probe: no [[targets]], [[domains]], [modules.NAME] or [probe] allow (an empty or "
            "cut-off file?); set [exporter] allow_empty = true to run with none",
        )
    return settings


#: What a TOML scalar given as a string (or of the wrong kind) should have been, by pydantic's strict error type.
_SCALAR_KINDS = {"int_type": "a whole number", "float_type": "a number", "bool_type": "true or false"}


@functools.cache
def _strict_adapter(section: str) -> TypeAdapter[object]:
    return TypeAdapter(Settings.model_fields[section].annotation)


def _quoted_scalars(
    document: dict[str, object], file: str, env: dict[tuple[str, ...], tuple[str, str]]
) -> list[tuple[str, str, str]]:
    """Numbers and booleans the file gives as strings (``"5"``, ``"yes"``), or of another kind (``3.0`` tries).

    pydantic's lax mode, which the ``PORTQRY_`` strings need, converts them; the file's values are checked again
    in strict mode, and a strict-only error is one line unless a variable sets that key.
    """
    lines: list[tuple[str, str, str]] = []
    for section, value in document.items():
        if section not in Settings.model_fields:
            continue  # an unknown key: the main validation says so
        try:
            _strict_adapter(section).validate_python(value, strict=True)
        except ValidationError as exc:
            for error in exc.errors():
                kind = _SCALAR_KINDS.get(error["type"])
                given = error.get("input")
                loc = (section, *error["loc"])
                if kind is None or isinstance(given, dict | list) or _source(loc, file, env) != file:
                    continue
                how = ", written without quotes" if isinstance(given, str) else ""
                lines.append((file, _loc(loc), f"must be {kind}{how} (got {shown(given)})"))
        except (ValueError, TypeError, RecursionError):
            continue  # the main validation reports what is wrong there
    return lines


def _one_line_each(exc: ConfigError) -> ConfigError:
    """``exc`` with every problem on one line of at most :data:`MAX_PROBLEM_CHARS` characters, and at most
    :data:`MAX_ERROR_LINES` lines (then one more saying how many were left out)."""

    def cut(text: str) -> str:
        flat = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: MAX_PROBLEM_CHARS * 2])
        return flat if len(flat) <= MAX_PROBLEM_CHARS else flat[: MAX_PROBLEM_CHARS - 3] + "..."

    lines = [(cut(path), cut(key), cut(problem)) for path, key, problem in exc.errors[:MAX_ERROR_LINES]]
    if len(exc.errors) > MAX_ERROR_LINES:
        lines.append((lines[0][0], "", f"and {len(exc.errors) - MAX_ERROR_LINES} more errors"))
    return ConfigError(*lines[0], also=lines[1:])


def _environment() -> dict[tuple[str, ...], tuple[str, str]]:
    """The ``PORTQRY_`` variables: their key path (lower case, split at ``__``) -> (variable name, value)."""
    out: dict[tuple[str, ...], tuple[str, str]] = {}
    for variable, value in os.environ.items():
        if variable.upper().startswith(ENV_PREFIX) and len(variable) > len(ENV_PREFIX):
            out[tuple(variable[len(ENV_PREFIX) :].lower().split("__"))] = (variable, value)
    return out


def _holds(value: str, rest: Sequence[int | str], *, missing: bool) -> bool:
    """Whether the JSON ``value`` of a variable holds the key path ``rest`` (its parent, for a missing key)."""
    try:
        node = json.loads(value)
    except (ValueError, RecursionError):
        return False
    for at, part in enumerate(rest):
        in_list = isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node)
        if in_list or (isinstance(part, str) and isinstance(node, dict) and part in node):
            node = node[part]
        else:
            return missing and at == len(rest) - 1 and isinstance(node, dict)
    return True


def _source(
    loc: Sequence[int | str], file: str, env: dict[tuple[str, ...], tuple[str, str]], *, missing: bool = False
) -> str:
    """Where the value at ``loc`` came from: the ``PORTQRY_`` variable that set it, else the file."""
    best: tuple[int, str] | None = None
    for parts, (variable, value) in env.items():
        size = len(parts)
        if size > len(loc) or tuple(str(p).lower() for p in loc[:size]) != parts:
            continue
        if size < len(loc) and not _holds(value, loc[size:], missing=missing):
            continue
        if best is None or size > best[0]:
            best = (size, variable)
    return best[1] if best else file


def _parse_key(key: str) -> tuple[int | str, ...]:
    """``targets[1].name`` -> ``("targets", 1, "name")`` (the inverse of :func:`_loc`)."""
    parts: list[int | str] = []
    for token in re.findall(r"\[(\d+)\]|([^.\[\]]+)", key):
        parts.append(int(token[0]) if token[0] else token[1])
    return tuple(parts)


def _settings_error(exc: SettingsError, file: str, env: dict[tuple[str, ...], tuple[str, str]]) -> ConfigError:
    """A variable pydantic-settings could not parse (JSON for a list or table), named, with the JSON error."""
    found = re.search(r'field "([^"]+)"', str(exc))
    field = found.group(1).lower() if found else ""
    cause = exc.__cause__
    why = f"not valid JSON: {cause.msg} (column {cause.colno})" if isinstance(cause, json.JSONDecodeError) else ""
    candidates = [(parts, variable, value) for parts, (variable, value) in env.items() if parts[0] == field]
    bad = [c for c in candidates if not _holds(c[2], (), missing=False)] or candidates
    if not bad:
        return ConfigError(file, "environment", str(exc).split("\n", 1)[0])
    lines = [(variable, ".".join(parts), why or "cannot be parsed") for parts, variable, _ in sorted(bad)]
    return ConfigError(*lines[0], also=lines[1:])


def find_config(explicit: str | None) -> str:
    """The config path: ``explicit``, else the first of :data:`DEFAULT_CONFIG_PATHS` that exists."""
    if explicit:
        return explicit
    for candidate in DEFAULT_CONFIG_PATHS:
        if os.path.exists(candidate):
            return candidate
    return DEFAULT_CONFIG_PATHS[0]

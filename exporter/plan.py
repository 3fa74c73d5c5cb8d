"""Plans: the configuration expanded into what the scheduler runs.

A :class:`TargetPlan` is one host with its port specs, options and labels; a :class:`DomainPlan` is an AD
domain whose DCs discovery finds, each becoming a :class:`TargetPlan` through :meth:`DomainPlan.dc_plan`.
Ports are de-duplicated keeping the first occurrence: explicit ``ports`` first, then ``services`` and
``profiles`` in request order (the catalog's application protocol becomes the ``service`` label).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from exporter.errors import ConfigError, PortqryError
from exporter.model import PortSpec, ProbeOptions, ProbeParams, count_ports, parse_port_spec, shown
from exporter.probes import POSTURE_BINDINGS, port_spec

if TYPE_CHECKING:
    from exporter.config import DomainConfig, ModuleConfig, ProbeDefaults, Settings, TargetConfig

MAX_PORTS_PER_TARGET = 65535 * 2
#: What a domain probes on each DC when its entry names no ports, services or profiles.
DEFAULT_DOMAIN_PROFILE = "domain-controller"

Addresses = Literal["all", "first"]


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """A target ready for the scheduler (hashable, comparable: a reload restarts only changed targets).

    Attributes:
        name: the ``target`` label.
        host: the name or address to resolve each round.
        specs: the ports.
        options: how to probe them.
        interval_seconds: seconds between rounds.
        jitter_ratio: each round starts ``interval x (1 +- jitter_ratio)`` after the last.
        domain: the ``domain`` label (the target's ``domain`` key, or the DC's AD domain).
        site: the ``site`` label (a discovered DC's ``DcSiteName``; empty for a configured target).
        addresses: probe ``all`` addresses of the name, or the ``first``.
    """

    name: str
    host: str
    specs: tuple[PortSpec, ...]
    options: ProbeOptions
    interval_seconds: float
    jitter_ratio: float
    domain: str = ""
    site: str = ""
    addresses: Addresses = "first"

    @property
    def keys(self) -> frozenset[tuple[str, str, int]]:
        """The ports ``(target, protocol, port)`` this target produces (on each of its addresses)."""
        return frozenset((self.name, s.protocol, s.port) for s in self.specs)


@dataclass(frozen=True, slots=True)
class DomainPlan:
    """An AD domain to watch: how to find its DCs and what to probe on each.

    Attributes:
        name: the AD DNS domain, lower-case without the trailing dot.
        sites: only DCs of these sites (``_ldap._tcp.<site>._sites.dc._msdcs.<name>``); empty = all.
        rediscover_seconds: seconds between readings of the SRV records.
        min_reachable_dcs: exported for the "too few DCs" alert.
        template: the plan every DC gets, with its own name, host and site (:meth:`dc_plan`).
    """

    name: str
    sites: tuple[str, ...]
    rediscover_seconds: float
    min_reachable_dcs: int
    template: TargetPlan

    def dc_plan(self, host: str, site: str) -> TargetPlan:
        """The plan of the DC ``host`` (its SRV target) in ``site``."""
        t = self.template
        return TargetPlan(
            host, host, t.specs, t.options, t.interval_seconds, t.jitter_ratio, self.name, site, t.addresses
        )


def check_port_total(settings: Settings) -> int:
    """Count the ports of every ``[[targets]]`` and ``[[domains]]`` entry's ``ports`` before expanding any range.

    ``tcp/1-65535`` counts 65,535 and ``both/135`` 2; a port named twice counts twice (the bound is on the work of
    expanding, which comes before de-duplication).  A domain counts once, whatever its number of DCs.

    Returns:
        The total.

    Raises:
        ConfigError: the total is more than ``[exporter] max_ports`` (key: the entry where it went over).
    """
    limit = settings.exporter.max_ports
    total = 0
    entries = [*(("targets", t) for t in settings.targets), *(("domains", d) for d in settings.domains)]
    counters = {"targets": 0, "domains": 0}
    for kind, entry in entries:
        index = counters[kind]
        counters[kind] += 1
        for spec in entry.ports:
            total += count_ports(spec)
            if total > limit:
                raise ConfigError(
                    "",
                    f"{kind}[{index}].ports",
                    f"more than [exporter] max_ports {limit} ports in all (every range counted whole); "
                    "probe fewer ports or raise max_ports",
                )
    return total


def plan(settings: Settings) -> list[TargetPlan]:
    """Expand every ``[[targets]]`` entry into a :class:`TargetPlan` (after :func:`check_port_total`).

    Raises:
        ConfigError: a duplicate target name, an unknown service or profile name (with suggestions), or
            too many ports (path ``""``).
    """
    check_port_total(settings)
    plans: list[TargetPlan] = []
    seen: set[str] = set()
    for index, target in enumerate(settings.targets):
        if target.name in seen:
            raise ConfigError("", f"targets[{index}].name", f"duplicate target name {shown(target.name)}")
        seen.add(target.name)
        plans.append(
            _plan(
                f"targets[{index}]", target, settings.defaults, target.name, target.host, target.domain or "", "first"
            )
        )
    return plans


def domain_plans(settings: Settings) -> list[DomainPlan]:
    """Expand every ``[[domains]]`` entry into a :class:`DomainPlan`.

    Raises:
        ConfigError: a duplicate domain, an unknown service or profile name, or too many ports.
    """
    out: list[DomainPlan] = []
    seen: set[str] = set()
    for index, domain in enumerate(settings.domains):
        if domain.name in seen:
            raise ConfigError("", f"domains[{index}].name", f"duplicate domain {shown(domain.name)}")
        seen.add(domain.name)
        template = _plan(f"domains[{index}]", domain, settings.defaults, "", "", domain.name, "all", dc=True)
        out.append(
            DomainPlan(domain.name, tuple(domain.sites), domain.rediscover_seconds, domain.min_reachable_dcs, template)
        )
    return out


@dataclass(frozen=True, slots=True)
class _ProfileModule:
    """The module a catalog profile is by default: the profile's ports with the ``[defaults]`` keys."""

    profiles: list[str]
    ports: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    protocols: Mapping[str, str] = field(default_factory=dict)
    interval_seconds: float | None = None
    timeout_seconds: float | None = None
    tcp_tries: int | None = None
    udp_tries: int | None = None
    protocol_probes: bool | None = None
    posture_checks: bool | None = None
    snmp_community: str | None = None
    snmp_version: Literal["v1", "v2c"] | None = None
    dns_query_name: str | None = None
    dns_query_type: str | None = None
    tls_ca_file: str | None = None
    addresses: Addresses | None = None


def module_plans(settings: Settings) -> dict[str, TargetPlan]:
    """The ``/probe`` modules by name: every ``[modules.NAME]`` entry, and every catalog profile not named so.

    Each is a template like a domain's (empty ``name`` and ``host``; ``addresses`` defaults to ``first``).

    Raises:
        ConfigError: an unknown service or profile, or a module with more ports than ``[probe] max_ports``.
    """
    from exporter import catalog

    out: dict[str, TargetPlan] = {}
    for name, module in settings.modules.items():
        where = f"modules.{name}"
        named = sum(count_ports(spec) for spec in module.ports)
        if named > settings.probe.max_ports:  # before expanding: ranges counted whole
            raise ConfigError(
                "", f"{where}.ports", f"{named} ports is more than [probe] max_ports {settings.probe.max_ports}"
            )
        out[name] = _plan(where, module, settings.defaults, "", "", "", "first")
        if len(out[name].specs) > settings.probe.max_ports:
            count = len(out[name].specs)
            raise ConfigError(
                "", f"{where}.ports", f"{count} ports is more than [probe] max_ports {settings.probe.max_ports}"
            )
    for profile in catalog.load_catalog().profiles:
        if profile.name not in out:
            entry = _ProfileModule(profiles=[profile.name])
            out[profile.name] = _plan(f"profile {profile.name}", entry, settings.defaults, "", "", "", "first")
    return out


def _plan(
    where: str,
    entry: TargetConfig | DomainConfig | ModuleConfig | _ProfileModule,
    d: ProbeDefaults,
    name: str,
    host: str,
    domain: str,
    addresses: Addresses,
    *,
    dc: bool = False,
) -> TargetPlan:
    """The plan of one entry; ``dc``: its hosts are DCs (a ``[[domains]]`` entry), so posture checks default on."""
    specs: dict[tuple[str, int], PortSpec] = {}
    bindings = {spec: v for k, v in entry.protocols.items() for spec in parse_port_spec(k)}
    for item in entry.ports:
        for proto, port in parse_port_spec(item):
            specs.setdefault((proto, port), port_spec(proto, port, "", bindings.get((proto, port))))  # type: ignore[arg-type]
    profiles = entry.profiles
    if not (entry.ports or entry.services or profiles):  # a domain with nothing named: the DC profile
        profiles = [DEFAULT_DOMAIN_PROFILE]
    if entry.services or profiles:
        for proto, port, label in _expand_catalog(where, entry.services, profiles):
            specs.setdefault((proto, port), port_spec(proto, port, label, bindings.get((proto, port))))  # type: ignore[arg-type]
    if len(specs) > MAX_PORTS_PER_TARGET:
        raise ConfigError("", f"{where}.ports", f"{len(specs)} ports is more than {MAX_PORTS_PER_TARGET}")
    posture = posture_checks(entry.posture_checks, d.posture_checks, dc=dc or DEFAULT_DOMAIN_PROFILE in profiles)
    if not posture:
        specs = {k: replace(s, binding="") if s.binding in POSTURE_BINDINGS else s for k, s in specs.items()}
    params = ProbeParams(
        domain=domain,
        snmp_community=entry.snmp_community or d.snmp_community,
        snmp_version=entry.snmp_version or d.snmp_version,
        dns_query_name=entry.dns_query_name or "",
        dns_query_type=entry.dns_query_type or "",
        tls_ca_file=entry.tls_ca_file or d.tls_ca_file,
    )
    options = ProbeOptions(
        timeout_seconds=entry.timeout_seconds or d.timeout_seconds,
        tcp_tries=entry.tcp_tries or d.tcp_tries,
        udp_tries=entry.udp_tries or d.udp_tries,
        protocol_probes=d.protocol_probes if entry.protocol_probes is None else entry.protocol_probes,
        posture_checks=posture,
        params=params,
    )
    return TargetPlan(
        name=name,
        host=host,
        specs=tuple(specs.values()),
        options=options,
        interval_seconds=entry.interval_seconds or d.interval_seconds,
        jitter_ratio=d.jitter_ratio,
        domain=domain,
        addresses=entry.addresses or d.addresses or addresses,
    )


def posture_checks(entry: bool | None, defaults: bool | None, *, dc: bool) -> bool:
    """Whether an entry runs the posture checks: its own ``posture_checks``, else ``[defaults]``'s, else ``dc``.

    ``dc`` is true for a ``[[domains]]`` entry (every host is a DC found by the DC locator) and for an entry
    with the ``domain-controller`` profile.
    """
    if entry is not None:
        return entry
    return dc if defaults is None else defaults


def _expand_catalog(where: str, services: Sequence[str], profiles: Sequence[str]) -> list[tuple[str, int, str]]:
    from exporter import catalog

    try:
        expansion = catalog.load_catalog().expand(services, profiles)
    except catalog.CatalogLookupError as exc:
        names = profiles if exc.kind == "profile" else services
        at = f"{exc.kind}s[{list(names).index(exc.name)}]" if exc.name in names else f"{exc.kind}s"
        raise ConfigError("", f"{where}.{at}", str(exc)) from None
    except PortqryError as exc:
        raise ConfigError("", f"{where}.services", str(exc)) from None
    return [(p.protocol, p.port, p.service) for p in expansion.ports]

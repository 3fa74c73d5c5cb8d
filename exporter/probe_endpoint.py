"""``GET /probe?target=HOST&module=NAME``: probe one host now, blackbox_exporter's multi-target pattern.

A Prometheus job lists the hosts; relabelling puts each in ``__param_target`` (and ``instance``) and points
``__address__`` at the exporter, which probes every port of the module concurrently, in one request, and answers
that host's series built fresh: the port families of ``/metrics`` (``portqry_port_state``,
``portqry_probe_reason``, ``portqry_probe_last_duration_seconds``, ``portqry_probe_last_timestamp_seconds``,
``portqry_probe_tries``) with the same labels, the protocol-detail families (rootDSE, endpoint mapper, DC roles,
DNS, TLS, Kerberos ...) and ``portqry_probe_module_duration_seconds{module,target}``.  Not the latency histogram
(a histogram of one probe, reset every scrape, has no rate) nor the exporter's own metrics (those are on
``/metrics``).  ``target`` is the parameter as given; ``domain`` and ``site`` are those of a configured target or
discovered DC of that host name, else empty.  Text format 0.0.4, OpenMetrics when the scraper asks for it.

Design:

- **Modules**: ``[modules.NAME]`` (ports, services, profiles, protocols and the per-target keys, no interval:
  :func:`exporter.plan.module_plans`); every catalog profile is a module too unless a ``[modules]`` entry takes
  its name (``module=domain-controller``, also the module of a request that names none, as blackbox has
  one).  Unknown module or no target: 400 with the known names.
- **Not an open proxy.**  The host is resolved once (``[resolver]``, the module's ``addresses``: the first
  address or all).  Then it is allowed when its *name* is a configured target's host, a discovered DC's name or
  matches an ``[probe] allow`` name rule (``dc1.corp.example`` exactly, ``*.corp.example`` any name below);
  otherwise *every* address to be probed must be in an ``allow`` network (``198.18.0.0/15``, an address) or be an
  address of a configured target or discovered DC (what the schedule probes, what discovery pinged).  A literal
  target is checked as an address only.  The engine then probes exactly those resolved addresses
  (``resolved=``): no second lookup, so a DNS answer that changes between the check and the probe (rebinding)
  cannot steer a packet elsewhere.  A refusal is HTTP 403 with the reason, ``portqry_probe_refused_total
  {reason="not-allowed"}`` on ``/metrics``, a log line, and no packet to the host.  A name that does not
  resolve sends nothing to any host: its ports answer ``reason="resolve-failed"``, as on ``/metrics``.
- **Limits**: the same engine as the schedule (its global concurrency limit, UDP pacing, the probe-bug guard);
  ``[probe] max_concurrent_per_client`` requests in flight per client address (the peer address of the TCP
  connection: behind a proxy every client is the proxy) -> 429; ``[probe] max_ports`` ports x addresses per
  request -> 400.
- **Time**: ``X-Prometheus-Scrape-Timeout-Seconds`` minus ``[probe] timeout_margin_seconds`` (the margin never
  takes more than half of it), capped by ``[probe] timeout_seconds`` (also the budget without the header).
  Every port runs as its own task; at the deadline the unfinished ones are cancelled and get no series (the
  ports that finished are answered), ``portqry_probe_requests_total{result="partial"}``.  A silent UDP port
  is re-checked per port (the engine's re-check after an ICMP port unreachable), inside the same deadline.
- ``&debug=true``: ``text/plain`` with the probe's log, the would-be series and the module (blackbox does this).

Check by hand: ``curl -s '127.0.0.1:9727/probe?target=127.0.0.1&module=ldap&debug=true'``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.registry import Collector

from exporter.collector import render
from exporter.config import Settings, allow_rule
from exporter.detail_metrics import _SCHEDULE as DETAIL_SCHEDULE
from exporter.detail_metrics import detail_families
from exporter.engine import Engine, resolve_failed
from exporter.errors import ResolveError
from exporter.exposition import _SCHEDULE as PORT_SCHEDULE
from exporter.exposition import Family, escape, join, render_target
from exporter.logs import get_logger
from exporter.model import ProbeOptions
from exporter.plan import DEFAULT_DOMAIN_PROFILE, TargetPlan, domain_plans, module_plans
from exporter.resolve import Resolved, literal
from exporter.result import ProbeResult
from exporter.scheduler import Scheduler
from exporter.states import Reason
from exporter.store import ResultStore

log = get_logger(component="probe")

#: The shortest probe budget, seconds, whatever the header says.
MIN_BUDGET_SECONDS = 0.05
#: How long the set of known addresses (configured targets', discovered DCs') is reused, seconds.
KNOWN_TTL_SECONDS = 1.0
#: ``portqry_probe_refused_total`` reasons.
REFUSALS = ("bad-request", "not-allowed", "client-concurrency", "max-ports")
#: The module of a request that names none (a ``[modules]`` entry of that name, else the catalog profile).
DEFAULT_MODULE = DEFAULT_DOMAIN_PROFILE
#: The query parameters ``/probe`` takes (anything else is a 400: a module's ports come from the config only).
PARAMETERS = frozenset({"target", "module", "debug"})
_FROM_PROBE = "From this /probe request."
_DOMAIN_FAMILIES = "portqry_domain_"


class ProbeHost(Protocol):
    """What the endpoint needs from the daemon (read at each request: a reload takes effect at once)."""

    settings: Settings
    engine: Engine
    scheduler: Scheduler
    store: ResultStore


class Refused(Exception):
    """A request refused before any packet: HTTP ``status``, ``reason`` (the counter's label), ``message``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class AllowList:
    """``[probe] allow`` compiled: networks, exact names and ``*.`` suffixes.

    Args:
        rules: the entries (validated by :func:`exporter.config.allow_rule`).
    """

    def __init__(self, rules: Sequence[str]) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        for text in rules:
            rule = allow_rule(text)
            if isinstance(rule, str):
                if rule.startswith("*."):
                    self.suffixes.append(rule[1:])  # ".corp.example"
                else:
                    self.names.add(rule)
            else:
                self.networks.append(rule)

    def name_rule(self, name: str) -> str | None:
        """The rule that allows the host name ``name`` (lower-case, no trailing dot), or ``None``."""
        if name in self.names:
            return name
        for suffix in self.suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                return "*" + suffix
        return None

    def address_rule(self, address: str) -> str | None:
        """The network that holds ``address`` (a zone id is ignored), or ``None``."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for net in self.networks:
            if ip.version == net.version and ip in net:
                return str(net)
        return None


@dataclass(frozen=True, slots=True)
class Known:
    """What is always allowed: configured targets' and discovered DCs' names (with labels) and addresses."""

    names: dict[str, tuple[str, str, str]]  # host -> (what, domain, site)
    addresses: frozenset[str]


def normal_name(host: str) -> str:
    """A host name as compared: lower-case, without the trailing dot."""
    return host.strip().lower().rstrip(".")


def budget_seconds(header: str | None, cap: float, margin: float) -> float:
    """The time a request may take: the scrape timeout minus the margin (at most half of it), capped.

    Args:
        header: ``X-Prometheus-Scrape-Timeout-Seconds`` (absent, unparsable or not positive: ``cap``).
        cap: ``[probe] timeout_seconds``.
        margin: ``[probe] timeout_margin_seconds``.
    """
    try:
        scrape = float(header) if header else 0.0
    except ValueError:
        scrape = 0.0
    if not (scrape > 0 and math.isfinite(scrape)):
        return cap
    return max(MIN_BUDGET_SECONDS, min(cap, scrape - min(margin, scrape / 2)))


class ProbeCounters(Collector):
    """``portqry_probe_refused_total{reason}`` and ``portqry_probe_requests_total{module,result}`` (``/metrics``)."""

    def __init__(self) -> None:
        self.refused: Counter[str] = Counter(dict.fromkeys(REFUSALS, 0))
        self.requests: Counter[tuple[str, str]] = Counter()

    def collect(self) -> Iterator[Metric]:
        """Yield both counters."""
        refused = CounterMetricFamily(
            "portqry_probe_refused",
            "/probe requests refused before any packet was sent, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(self.refused.items()):
            refused.add_metric([reason], float(count))
        yield refused
        requests = CounterMetricFamily(
            "portqry_probe_requests",
            "/probe requests by module and result: complete, partial (the deadline cut some ports), refused.",
            labels=["module", "result"],
        )
        for (module, result), count in sorted(self.requests.items()):
            requests.add_metric([module, result], float(count))
        yield requests


_MODULE_DURATION = Family(
    "portqry_probe_module_duration_seconds",
    "gauge",
    "gauge",
    "Wall time of this /probe request: resolution and every port of the module, seconds.",
)


def _module_duration(module: str, target: str, seconds: float, *, openmetrics: bool) -> bytes:
    """The ``portqry_probe_module_duration_seconds`` family (and OpenMetrics' ``# EOF``), as text."""
    sample = f'{_MODULE_DURATION.name}{{module="{escape(module)}",target="{escape(target)}"}} {seconds!r}\n'
    return _MODULE_DURATION.header(openmetrics=openmetrics) + sample.encode() + (b"# EOF\n" if openmetrics else b"")


class _ProbeFamilies(Collector):
    """The protocol-detail families of one /probe answer and its module duration."""

    def __init__(self, store: ResultStore, module: str, target: str, duration: float) -> None:
        self.store, self.module, self.target, self.duration = store, module, target, duration

    def collect(self) -> Iterator[Metric]:
        snap = self.store.snapshot(full=False)
        if snap.results:  # only families with samples: a module without protocol probes answers only its ports
            families = detail_families(snap.results, snap.labels)
            yield from (m for m in families if m.samples and not m.name.startswith(_DOMAIN_FAMILIES))
        duration = GaugeMetricFamily(_MODULE_DURATION.name, _MODULE_DURATION.help, labels=["module", "target"])
        duration.add_metric([self.module, self.target], self.duration)
        yield duration


class ProbeEndpoint:
    """The ``/probe`` handler (:meth:`handle`) and its counters (:attr:`counters`, for the daemon's registry).

    Args:
        host: the daemon (settings, engine, scheduler, store).
    """

    def __init__(self, host: ProbeHost) -> None:
        self.host = host
        self.counters = ProbeCounters()
        self._in_flight: Counter[str] = Counter()
        self._modules: tuple[Settings, dict[str, TargetPlan]] | None = None
        self._allow: tuple[Settings, AllowList] | None = None
        self._known: tuple[float, Known] | None = None

    # -- what the config says -----------------------------------------------------------------------

    def modules(self) -> dict[str, TargetPlan]:
        """The modules of the running config, by name (computed once per config)."""
        settings = self.host.settings
        if self._modules is None or self._modules[0] is not settings:
            self._modules = (settings, module_plans(settings))
        return self._modules[1]

    def allow_list(self) -> AllowList:
        """``[probe] allow`` of the running config."""
        settings = self.host.settings
        if self._allow is None or self._allow[0] is not settings:
            self._allow = (settings, AllowList(settings.probe.allow))
        return self._allow[1]

    def known(self) -> Known:
        """Configured targets' and discovered DCs' names and addresses (reused for :data:`KNOWN_TTL_SECONDS`)."""
        now = time.monotonic()
        if self._known is not None and now - self._known[0] < KNOWN_TTL_SECONDS:
            return self._known[1]
        scheduler = self.host.scheduler
        names: dict[str, tuple[str, str, str]] = {}
        addresses: set[str] = set()
        for domain in domain_plans(self.host.settings):
            for dc in scheduler.domain_controllers(domain.name):
                names.setdefault(normal_name(dc.host), ("a discovered DC", domain.name, dc.site))
                if dc.address:
                    addresses.add(dc.address)
        for plan in scheduler.static_plans.values():
            names[normal_name(plan.host)] = ("a configured target", plan.domain, "")  # a target wins, as scheduled
            lit = literal(plan.host)
            if lit is not None:
                addresses.add(lit.address)
        addresses.update(r.address for r in self.host.store.snapshot().results if r.address)
        known = Known(names, frozenset(addresses))
        self._known = (now, known)
        return known

    # -- the request --------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /probe``: see the module docstring."""
        started = time.monotonic()
        module_name = ""
        client = request.remote or ""
        lines: list[str] = []

        debug = request.query.get("debug", "").lower() in ("true", "1", "yes")

        def log_line(text: str) -> None:
            lines.append(f"{time.monotonic() - started:8.3f}s {text}")

        note: Callable[[str], None] = log_line if debug else _silent

        try:
            target, module_name, module = self._parse(request)
            limit = self.host.settings.probe.max_concurrent_per_client
            if self._in_flight[client] >= limit:
                raise Refused(429, "client-concurrency", f"{client} has {limit} /probe requests in flight already")
            self._in_flight[client] += 1
            try:
                return await self._probe(request, started, target, module_name, module, note, lines)
            finally:
                self._in_flight[client] -= 1
                if self._in_flight[client] <= 0:
                    del self._in_flight[client]
        except Refused as refusal:
            self.counters.refused[refusal.reason] += 1
            self.counters.requests[(module_name, "refused")] += 1
            log.info(
                "probe refused",
                client=client,
                target=request.query.get("target", ""),
                module=request.query.get("module", ""),
                status=refusal.status,
                reason=refusal.reason,
                detail=refusal.message,
            )
            return web.Response(status=refusal.status, text=f"{refusal.message}\n")

    def _parse(self, request: web.Request) -> tuple[str, str, TargetPlan]:
        modules = self.modules()
        known = ", ".join(sorted(modules))
        unknown = sorted(set(request.query) - PARAMETERS)
        if unknown:
            raise Refused(400, "bad-request", f"unknown parameter {unknown[0]!r}; /probe takes target, module, debug")
        module_name = request.query.get("module", "") or DEFAULT_MODULE
        target = request.query.get("target", "").strip()
        if not target:
            raise Refused(400, "bad-request", f"target parameter is missing (known modules: {known})")
        module = modules.get(module_name)
        if module is None:
            raise Refused(400, "bad-request", f"unknown module {module_name!r}; known modules: {known}")
        if len(target) > 253 or any(c.isspace() or c in "/@?#" for c in target):
            raise Refused(400, "bad-request", f"target {target[:64]!r} is not a host name or address")
        if ":" in target and literal(target) is None:
            raise Refused(400, "bad-request", f"target {target!r}: give a host without a port (the module has ports)")
        return target, module_name, module

    def _check(self, target: str, found: Sequence[Resolved], known: Known) -> str:
        """Why ``target`` (at ``found``) may be probed; raises :class:`Refused` when it may not."""
        allow = self.allow_list()
        if literal(target) is None:
            name = normal_name(target)
            if name in known.names:
                return f"the name is {known.names[name][0]}"
            rule = allow.name_rule(name)
            if rule is not None:
                return f"the name matches [probe] allow {rule!r}"
        why = []
        for where in found:
            if where.address in known.addresses:
                why.append(f"{where.address} is a configured target's or discovered DC's address")
                continue
            rule = allow.address_rule(where.address)
            if rule is None:
                shown = target if literal(target) is not None else f"{target} resolves to {where.address}, which"
                raise Refused(
                    403,
                    "not-allowed",
                    f"not allowed: {shown} is in no [probe] allow network and is no configured target or discovered DC",
                )
            why.append(f"{where.address} is in [probe] allow {rule!r}")
        return "; ".join(why)

    async def _probe(
        self,
        request: web.Request,
        started: float,
        target: str,
        module_name: str,
        module: TargetPlan,
        note: Callable[[str], None],
        lines: list[str],
    ) -> web.StreamResponse:
        settings = self.host.settings
        engine = self.host.engine
        loop = asyncio.get_running_loop()
        budget = budget_seconds(
            request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"),
            settings.probe.timeout_seconds,
            settings.probe.timeout_margin_seconds,
        )
        deadline = loop.time() + budget
        note(f"module {module_name}: {len(module.specs)} ports, addresses={module.addresses}, budget {budget:.3f}s")
        known = self.known()
        _what, domain, site = known.names.get(normal_name(target), ("", "", ""))
        results: list[ProbeResult] = []
        found: list[Resolved] = []
        resolve_error = ""
        try:
            found = await asyncio.wait_for(
                engine.resolver.resolve_all(target, first=module.addresses == "first"), max(0.0, deadline - loop.time())
            )
            if module.addresses == "first":
                found = found[:1]
        except ResolveError as exc:
            resolve_error = str(exc)
        except TimeoutError:
            resolve_error = f"{target}: no answer before the /probe deadline"
        cut = 0
        if resolve_error:
            note(f"resolve failed: {resolve_error}; nothing sent to any host")
            results = [resolve_failed(target, target, spec, 0.0, resolve_error) for spec in module.specs]
        else:
            note(f"resolved {target} to {', '.join(r.address for r in found)}")
            why = self._check(target, found, known)
            note(f"allowed: {why}")
            count = len(found) * len(module.specs)
            if count > settings.probe.max_ports:
                raise Refused(
                    400,
                    "max-ports",
                    f"{count} ports x addresses is more than [probe] max_ports {settings.probe.max_ports}",
                )
            options = module.options
            if domain:
                options = dataclasses.replace(options, params=dataclasses.replace(options.params, domain=domain))
            results, cut = await self._run(engine, target, found, module, options, deadline, note)
        took = time.monotonic() - started
        self.counters.requests[(module_name, "partial" if cut else "complete")] += 1
        debug = request.query.get("debug", "").lower() in ("true", "1", "yes")
        openmetrics = not debug and "application/openmetrics-text" in request.headers.get("Accept", "")
        if any(r.details for r in results):
            store = ResultStore((), "none", history=0)
            store.record(target, results, domain=domain, site=site)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_ProbeFamilies(store, module_name, target, took))
            body = _probe_help(render(store, registry, openmetrics=openmetrics))
        else:  # only port families and the module duration: rendered as the store renders them, no registry
            ordered = sorted(results, key=lambda r: (r.address, r.protocol, r.port))
            resolved = all(r.address for r in results)
            parts = render_target(ordered, domain, site, {}, "none", target=target, resolved=resolved)
            ports = join([parts], openmetrics=openmetrics)
            body = _probe_help(ports) + _module_duration(module_name, target, took, openmetrics=openmetrics)
        note(f"done: {len(results)} results, {cut} ports cut by the deadline, {took:.3f}s")
        if debug:
            text = (
                "Logs for the probe:\n"
                + "\n".join(lines)
                + "\n\n\nMetrics that would have been returned:\n"
                + body.decode()
                + "\n\nModule configuration:\n"
                + _describe(module_name, module)
            )
            return web.Response(text=text, content_type="text/plain")
        return web.Response(
            body=body, headers={"Content-Type": OPENMETRICS_TYPE if openmetrics else CONTENT_TYPE_LATEST}
        )

    async def _run(
        self,
        engine: Engine,
        target: str,
        found: Sequence[Resolved],
        module: TargetPlan,
        options: ProbeOptions,
        deadline: float,
        note: Callable[[str], None],
    ) -> tuple[list[ProbeResult], int]:
        """Probe every (address, port) as its own task until ``deadline``; ``(results, ports cut)``."""
        loop = asyncio.get_running_loop()
        jobs = [(where, spec) for where in found for spec in module.specs]
        tasks = [asyncio.create_task(engine.probe_port(target, target, where, spec, options)) for where, spec in jobs]
        try:
            if tasks:
                await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
        finally:
            pending = [t for t in tasks if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        results: list[ProbeResult] = []
        cut = 0
        verbose = note is not _silent  # per-port notes only for &debug=true: a scrape does not format them
        for (where, spec), task in zip(jobs, tasks, strict=True):
            if task.cancelled():
                cut += 1
                if verbose:
                    note(f"{spec.protocol}/{spec.port} on {where.address}: not finished by the deadline, no series")
                continue
            exc = task.exception()
            if exc is not None:
                name = f"{spec.protocol}/{spec.port} on {where.address}"
                log.error("probe raised; the port has no series", port=name, exc_info=exc)
                note(f"{name}: probe raised {type(exc).__name__}: {exc}")
                continue
            r = task.result()
            if r.reason is Reason.LOCAL_ERROR:  # this host failed: no state for the port, counted on /metrics
                self.host.store.count_local_error(r.error_detail)
                note(
                    f"{spec.protocol}/{spec.port} on {where.address}: failed on this host ({r.error_detail}), no series"
                )
                continue
            if verbose:
                extra = f" ({r.error})" if r.error else ""
                note(
                    f"{spec.protocol}/{spec.port} on {where.address}: {r.state.value} {r.reason.value} in "
                    f"{r.duration_seconds:.3f}s, tries {r.tries}{extra}"
                )
            results.append(r)
        return results, cut


def _silent(_text: str) -> None:
    """The note of a request without ``&debug=true``."""


def _probe_help(body: bytes) -> bytes:
    """The HELP lines say where /probe's values come from (the families' texts speak of the schedule).

    The schedule sentences occur only in HELP lines (a label value with them would be escaped text of ours).
    """
    here = _FROM_PROBE.encode()
    return body.replace(PORT_SCHEDULE.encode(), here).replace(DETAIL_SCHEDULE.encode(), here)


def _describe(name: str, module: TargetPlan) -> str:
    o = module.options
    ports = " ".join(f"{s.protocol}/{s.port}" + (f"={s.binding}" if s.binding else "") for s in module.specs)
    return (
        f"module: {name}\naddresses: {module.addresses}\ntimeout_seconds: {o.timeout_seconds}\n"
        f"tcp_tries: {o.tcp_tries}\nudp_tries: {o.udp_tries}\nprotocol_probes: {o.protocol_probes}\n"
        f"ports: {ports}\n"
    )

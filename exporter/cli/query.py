"""Run ``portqry``'s queries on the engine: resolve the name, probe the ports, print each result, the verdict.

PortQry 2.0 semantics: TCP tries 3 times and UDP once, an unformatted UDP datagram first then the protocol's
own query (``udp_unformatted_first``), ``-sp`` checked before the first query and lists run one port at a time
with it, ``-r`` without the RPC endpoint-mapper dump.  Ranges and lists run concurrently on the engine
(``--concurrency``) and print in the requested order.  The exit code is the worst port's errorlevel
(2 > 1 > 0; :func:`verdict`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import socket
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, replace

from exporter.catalog import CatalogDataError, CatalogLookupError, load_catalog
from exporter.cli import text
from exporter.cli.args import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT, DEFAULT_UDP_PACING, Options
from exporter.cli.exits import EXIT_CATALOG, EXIT_LISTENING, EXIT_RESOLVE, EXIT_SOURCE_PORT, CliError, UsageError
from exporter.cli.output import Output
from exporter.engine import Engine
from exporter.errors import ResolveError
from exporter.model import PortSpec, ProbeOptions, ProbeParams
from exporter.probes import port_spec
from exporter.resolve import Resolved, Resolver, literal
from exporter.result import ProbeResult, Protocol

#: Seconds to wait for a reverse lookup (PortQry "reports an error and continues").
REVERSE_TIMEOUT = 3.0
#: Tasks created ahead of the output, per probe slot (``--concurrency``), and at least this many.
TASK_WINDOW_PER_SLOT = 4
MIN_TASK_WINDOW = 1024


@dataclass(frozen=True)
class QuerySettings:
    """How one query runs (from the command line or the interactive ``set`` options)."""

    timeout: float = DEFAULT_TIMEOUT
    slow_link: bool = False
    no_reverse: bool = False
    source_port: int | None = None
    community: str = "public"
    concurrency: int = DEFAULT_CONCURRENCY
    udp_pacing: float = DEFAULT_UDP_PACING
    dns_servers: tuple[str, ...] = ()
    dns_port: int = 53
    domain: str = ""
    json: bool = False

    def probe_options(self) -> ProbeOptions:
        """The engine options: PortQry's tries (TCP 3, UDP 1) and its unformatted datagram first."""
        return ProbeOptions(
            timeout_seconds=self.timeout,
            tcp_tries=3,
            udp_tries=1,
            source_port=self.source_port,
            slow_link=self.slow_link,
            protocol_probes=True,
            udp_unformatted_first=True,
            params=ProbeParams(domain=self.domain or "", snmp_community=self.community),
        )


def port_pairs(protocol: str, ports: Sequence[int]) -> list[tuple[Protocol, int]]:
    """``(protocol, port)`` in query order; ``both`` queries TCP then UDP for each port, as PortQry."""
    protocols: tuple[Protocol, ...] = ("tcp", "udp") if protocol == "both" else (protocol,)  # type: ignore[assignment]
    return [(proto, port) for port in ports for proto in protocols]


def build_specs(pairs: Sequence[tuple[Protocol, int]], *, range_mode: bool) -> list[PortSpec]:
    """PortSpecs for ``pairs``; in ``-r`` mode the RPC endpoint-mapper follow-up is switched off (PortQry)."""
    specs = []
    for proto, port in pairs:
        spec = port_spec(proto, port)
        if range_mode and spec.binding == "rpc":
            spec = port_spec(proto, port, binding="")
        specs.append(spec)
    return specs


def check_source_port(port: int, family: int, protocols: set[str]) -> None:
    """Fail early, as PortQry does, if the ``-sp`` port cannot be bound for the protocols queried.

    The check binds the way the engine will (``SO_REUSEADDR``): a listener or a socket bound without
    ``SO_REUSEADDR`` on that port makes it busy.

    Raises:
        CliError: exit 5.
    """
    host = "::" if family == socket.AF_INET6 else "0.0.0.0"
    for proto in sorted(protocols):
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(family, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise CliError(
                        EXIT_SOURCE_PORT,
                        f"Cannot use specified source port {port} ({proto.upper()}). Port is already in use. "
                        "Specify a port that is not in use and run the command again.",
                    ) from None
                raise CliError(
                    EXIT_SOURCE_PORT,
                    f"Cannot use specified source port {port} ({proto.upper()}): {exc.strerror}",
                ) from None


def verdict(results: Sequence[ProbeResult]) -> int:
    """The exit code of several results: the worst PortQry errorlevel (2 > 1 > 0); 0 when empty."""
    return max((r.state.exit_code for r in results), default=EXIT_LISTENING)


async def _resolve(host: str, settings: QuerySettings, resolver: Resolver, out: Output) -> Resolved:
    lit = literal(host)
    if lit is not None:
        if not settings.no_reverse:
            try:
                name = await asyncio.wait_for(resolver.reverse(lit.address), REVERSE_TIMEOUT)
            except TimeoutError:
                name = None
            if not settings.json:
                out.lines(text.reverse_resolution_lines(name))
        return lit
    if not settings.json:
        out.lines(["Attempting to resolve name to IP address...", ""])
    try:
        resolved = await resolver.resolve(host)
    except ResolveError as exc:
        raise CliError(EXIT_RESOLVE, f"Failed to resolve name to IP address: {exc}") from None
    if not settings.json:
        out.lines([f"Name resolved to {resolved.address}", ""])
    return resolved


async def run_query(
    host: str,
    specs: Sequence[PortSpec],
    settings: QuerySettings,
    out: Output,
    *,
    notes: Sequence[str] = (),
) -> list[ProbeResult]:
    """Resolve ``host``, probe ``specs`` concurrently and print each result in order as soon as it can be.

    Args:
        host: the ``-n`` value (name, IPv4 or IPv6 literal).
        specs: the ports, in output order.
        settings: timeouts, source port, resolver, output format.
        out: the output.
        notes: text lines printed after "querying..." (e.g. catalog rows that are not probed).

    Returns:
        The results, in the order of ``specs``.

    Raises:
        CliError: the name does not resolve (exit 4), the source port is busy (exit 5).
    """
    engine = make_engine(settings)
    resolver = engine.resolver
    if not settings.json:
        out.lines(text.target_lines(host))
    resolved = await _resolve(host, settings, resolver, out)
    if settings.source_port is not None:
        check_source_port(settings.source_port, resolved.family, {s.protocol for s in specs})
    if not settings.json:
        out.lines([*text.QUERYING_LINES, *notes])
    results: list[ProbeResult] = []
    jobs = ((host, resolved, spec) for spec in specs)
    async with contextlib.aclosing(ordered_results(engine, jobs, settings)) as ordered:
        for spec in specs:
            result = await anext(ordered)
            results.append(result)
            show_result(spec, result, settings, out)
    return results


def make_engine(settings: QuerySettings) -> Engine:
    """The engine of one query: ``--concurrency`` probes in flight (one with ``-sp``), its UDP pacing, its resolver."""
    return Engine(
        concurrency=1 if settings.source_port is not None else settings.concurrency,
        udp_pacing_seconds=settings.udp_pacing,
        resolver=Resolver(settings.dns_servers, port=settings.dns_port),
    )


def show_result(spec: PortSpec, result: ProbeResult, settings: QuerySettings, out: Output) -> None:
    """Print one port's result: its JSON line, or PortQry's lines for it."""
    if settings.json:
        out.json(result.to_json())
    else:
        out.lines(
            text.port_lines(
                result,
                probe_name=spec.binding,
                source_port=settings.source_port,
                community=settings.community,
            )
        )


#: One port to probe: (target, its resolved address, the port).
Job = tuple[str, Resolved, PortSpec]


async def ordered_results(
    engine: Engine, jobs: Iterable[Job], settings: QuerySettings
) -> AsyncGenerator[ProbeResult, None]:
    """Probe ``jobs`` on ``engine`` concurrently and yield their results in the order of ``jobs``.

    With ``-sp`` the jobs run one at a time (they share the source port).  Otherwise a sliding window of
    tasks, in output order: the engine's semaphore bounds what is in flight, the window bounds memory (a
    131,070-port ``-p both -r 1:65535`` never holds more than ``window`` pending tasks).  Jobs of several
    targets (the DCs of ``--domain``) share the window, so the next target's ports run while this one's print.
    Close the generator (``contextlib.aclosing``) to cancel what is still pending.
    """
    options = settings.probe_options()
    if settings.source_port is not None:
        for target, resolved, spec in jobs:
            yield await engine.probe_port(target, target, resolved, spec, options)
        return
    window = max(TASK_WINDOW_PER_SLOT * settings.concurrency, MIN_TASK_WINDOW)
    pending: deque[asyncio.Task[ProbeResult]] = deque()
    queue = iter(jobs)
    try:
        while True:
            for target, resolved, spec in itertools.islice(queue, window - len(pending)):
                pending.append(asyncio.create_task(engine.probe_port(target, target, resolved, spec, options)))
            if not pending:
                break
            yield await pending.popleft()
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def settings_from(opts: Options) -> QuerySettings:
    """The query settings of a parsed command line."""
    return QuerySettings(
        timeout=opts.timeout,
        slow_link=opts.slow_link,
        no_reverse=opts.no_reverse,
        source_port=opts.source_port,
        community=opts.community,
        concurrency=opts.concurrency,
        udp_pacing=opts.udp_pacing,
        dns_servers=tuple(opts.dns_servers),
        dns_port=opts.dns_port,
        domain=opts.domain,
        json=opts.json,
    )


def catalog_specs(opts: Options) -> tuple[list[PortSpec], list[str]]:
    """The ports of ``--service``/``--profile`` (filtered by an explicit ``-p``) and lines about the rest.

    Raises:
        UsageError: an unknown service or profile name (with the catalog's suggestion).
        CliError: exit 8 - the catalog cannot be loaded.
    """
    try:
        expansion = load_catalog().expand(opts.services, opts.profiles)
    except CatalogLookupError as exc:
        raise UsageError(str(exc)) from None
    except (CatalogDataError, OSError) as exc:
        raise CliError(EXIT_CATALOG, f"service catalog cannot be loaded: {exc}") from None
    wanted = ("tcp", "udp") if not opts.protocol_given or opts.protocol == "both" else (opts.protocol,)
    specs = [port_spec(p.protocol, p.port, service=p.service) for p in expansion.ports if p.protocol in wanted]
    notes: list[str] = []
    for item in expansion.dynamic_rpc:
        notes.append(f"{item.row.spec} ({item.source}): dynamic RPC, checked through the endpoint mapper on TCP 135")
    for item in expansion.not_probed:
        why = "no port" if item.reason == "no_port" else "port range, not swept"
        notes.append(f"{item.row.spec} ({item.source}): not probed ({why})")
    if not specs:
        raise UsageError("the services and profiles given have no port to probe with this -p")
    return specs, [*notes, ""] if notes else []


def query_specs(opts: Options, *, default_profile: str = "") -> tuple[list[PortSpec], list[str]]:
    """The ports a command line asks for, in query order, and the lines printed after "querying...".

    ``--service``/``--profile`` (filtered by ``-p``), else ``-o``, ``-r`` or ``-e`` (default 80) with ``-p``;
    with ``default_profile`` and none of ``-e``, ``-o``, ``-r``, ``--service``, ``--profile``: that profile
    (filtered by an explicit ``-p``).

    Raises:
        UsageError: an unknown service or profile name, or no port left after ``-p``.
        CliError: exit 8 - the catalog cannot be loaded.
    """
    ports_given = opts.order is not None or opts.port_range is not None or opts.endpoint is not None
    if default_profile and not (ports_given or opts.services or opts.profiles):
        return catalog_specs(replace(opts, profiles=[default_profile]))
    if opts.services or opts.profiles:
        return catalog_specs(opts)
    if opts.order is not None:
        ports = opts.order
    elif opts.port_range is not None:
        ports = list(range(opts.port_range[0], opts.port_range[1] + 1))
    else:
        ports = [opts.endpoint or 80]
    return build_specs(port_pairs(opts.protocol, ports), range_mode=opts.port_range is not None), []


def command_mode(opts: Options, out: Output) -> int:
    """Command-line mode: query ``-n``'s ports (``-e``, ``-o``, ``-r`` or ``--service``/``--profile``).

    Returns:
        The verdict, 0/1/2 (:func:`verdict`).

    Raises:
        CliError: exit 4 (name does not resolve), 5 (source port busy), 8 (catalog).
        UsageError: an unknown service or profile name.
    """
    settings = settings_from(opts)
    specs, notes = query_specs(opts)
    assert opts.name is not None  # args._validate requires -n here
    results = asyncio.run(run_query(opts.name, specs, settings, out, notes=notes))
    return verdict(results)

"""``portqry --domain DOMAIN`` without ``-n``: find the domain's DCs in DNS, list them, query each one.

The daemon's discovery (:func:`exporter.discovery.discover`): the SRV records ``_ldap._tcp.dc._msdcs.DOMAIN``
(or ``_ldap._tcp.SITE._sites.dc._msdcs.DOMAIN`` per ``--site``) through ``--dns-server`` (else the system
resolver), then the CLDAP LDAP ping of each DC for its site and roles.  The DC list is printed first
(:func:`exporter.cli.text.domain_controller_lines`), then each DC's query exactly as ``portqry -n DC`` prints
it, DC after DC in SRV order; the ports of every DC share one engine (``--concurrency``), so the next DCs are
probed while the first prints.  Default ports: the ``domain-controller`` profile, as a ``[[domains]]`` entry
(``-p`` filters it; ``-e``, ``-o``, ``-r``, ``--service``, ``--profile`` replace it).  ``--domain`` is also the
LDAP ping's domain and the Kerberos realm of every DC's probes.

Exit code: the worst port over all DCs (2 > 1 > 0); a DC listed in DNS whose name does not resolve counts as
FILTERED (2: it cannot be reached, as in the daemon's ``resolve-failed``).  No DC found (NXDOMAIN, no SRV
record, DNS silent or garbled): exit 4 with one line on stderr.

With ``--json``: one ``{"type": "domain_controller", ...}`` object per DC (:func:`dc_json`), then the port
results as ``-n`` prints them, each with its DC's ``target``.

Check by hand: ``portqry --domain tb.test --dns-server 198.18.0.2 -e 389``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

from exporter.cli import text
from exporter.cli.args import Options
from exporter.cli.exits import EXIT_FILTERED, EXIT_RESOLVE, CliError
from exporter.cli.output import Output
from exporter.cli.query import (
    Job,
    QuerySettings,
    check_source_port,
    make_engine,
    ordered_results,
    query_specs,
    settings_from,
    show_result,
    verdict,
)
from exporter.discovery import Discovery, discover, srv_names
from exporter.engine import Engine
from exporter.model import DiscoveredDC, PortSpec
from exporter.plan import DEFAULT_DOMAIN_PROFILE, DomainPlan, TargetPlan
from exporter.resolve import literal
from exporter.result import ProbeResult


def domain_plan(domain: str, sites: tuple[str, ...], settings: QuerySettings) -> DomainPlan:
    """A :class:`~exporter.plan.DomainPlan` for :func:`~exporter.discovery.discover`, without a config file.

    Only the name, the sites and the template's options matter to discovery.  The ping is the first datagram
    (no unformatted datagram first, as the daemon sends it) and leaves from an ephemeral port (PortQry's UDP
    389 query does, even with ``-sp``).
    """
    options = replace(settings.probe_options(), udp_unformatted_first=False, source_port=None)
    template = TargetPlan("", "", (), options, 0.0, 0.0, domain=domain)
    return DomainPlan(domain, sites, 0.0, 0, template)


def dc_json(domain: str, dc: DiscoveredDC) -> dict[str, Any]:
    """The ``--json`` object of one DC found (before the port results)."""
    return {
        "type": "domain_controller",
        "domain": domain,
        "target": dc.host,
        "priority": dc.priority,
        "weight": dc.weight,
        "address": dc.address,
        "site": dc.site,
        "client_site": dc.client_site,
        "roles": text.role_names(dc.roles),
        "error": dc.error,
    }


async def find_dcs(domain: str, sites: tuple[str, ...], settings: QuerySettings, engine: Engine) -> Discovery:
    """Discover ``domain``'s DCs through ``engine``'s resolver.

    Raises:
        CliError: exit 4 - no DC found (NXDOMAIN, no record, a silent or garbled DNS server).
    """
    found = await discover(domain_plan(domain, sites, settings), engine)
    if not found.ok:
        raise CliError(EXIT_RESOLVE, f"Failed to find the domain controllers of {domain}: {text.one_line(found.error)}")
    return found


async def run_domain(
    domain: str,
    sites: tuple[str, ...],
    specs: list[PortSpec],
    settings: QuerySettings,
    out: Output,
    *,
    notes: list[str] | None = None,
) -> tuple[Discovery, list[ProbeResult]]:
    """Find ``domain``'s DCs, print them, then query ``specs`` on each, printing DC after DC in SRV order.

    Returns:
        The discovery and every port result, DC after DC.

    Raises:
        CliError: no DC found (exit 4), the source port is busy (exit 5).
    """
    engine = make_engine(settings)
    found = await find_dcs(domain, sites, settings, engine)
    if settings.json:
        for dc in found.dcs:
            out.json(dc_json(domain, dc))
    else:
        out.lines(text.domain_controller_lines(domain, srv_names(domain, sites), found.dcs))
    reachable = [(dc, resolved) for dc in found.dcs if (resolved := literal(dc.address)) is not None]
    if settings.source_port is not None:
        for family in dict.fromkeys(resolved.family for _, resolved in reachable):
            check_source_port(settings.source_port, family, {s.protocol for s in specs})
    jobs: list[Job] = [(dc.host, resolved, spec) for dc, resolved in reachable for spec in specs]
    results: list[ProbeResult] = []
    async with contextlib.aclosing(ordered_results(engine, jobs, settings)) as ordered:
        for dc in found.dcs:
            if not settings.json:
                out.lines([*text.target_lines(dc.host), *text.name_resolution_lines(dc.address or None)])
            if literal(dc.address) is None:
                continue
            if not settings.json:
                out.lines([*text.QUERYING_LINES, *(notes or [])])
            for spec in specs:
                result = await anext(ordered)
                results.append(result)
                show_result(spec, result, settings, out)
    return found, results


def domain_mode(opts: Options, out: Output) -> int:
    """``--domain`` without ``-n``: the DC list, then each DC's ports.

    Returns:
        The worst port's exit code over all DCs (0/1/2); 2 at least when a DC's name does not resolve.

    Raises:
        CliError: exit 4 (no DC found), 5 (source port busy), 8 (catalog).
        UsageError: an unknown service or profile name.
    """
    settings = settings_from(opts)
    specs, notes = query_specs(opts, default_profile=DEFAULT_DOMAIN_PROFILE)
    found, results = asyncio.run(run_domain(opts.domain, tuple(opts.sites), specs, settings, out, notes=notes))
    unresolved = any(literal(dc.address) is None for dc in found.dcs)
    return max(verdict(results), EXIT_FILTERED if unresolved else 0)

"""Domain discovery: the DCs of an AD domain from DNS, each asked its site and roles by the LDAP ping.

The DC locator's first step (MS-ADTS 6.3.6.1; ``nltest /dsgetdc``): read ``_ldap._tcp.dc._msdcs.<domain>``
(or ``_ldap._tcp.<site>._sites.dc._msdcs.<domain>`` for each named site) through the configured resolver,
afresh every time (no caching by TTL).  **The DC list is exactly the targets of those records**; priority
and weight order it.  Then each DC gets the CLDAP LDAP ping (MS-ADTS 6.3.3) on UDP at the SRV record's port
(389 in AD), through the engine (its concurrency limit and UDP pacing): ``DcSiteName`` is the DC's site,
``ClientSiteName`` the site the DC puts us in, the DS_FLAG bits its roles.  A DC whose name does not resolve,
or that does not answer the ping, stays in the list with an empty site and the error.

Check by hand: ``dig @DC SRV _ldap._tcp.dc._msdcs.DOMAIN`` and ``portqry --domain DOMAIN --dns-server DC``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

from exporter.engine import Engine
from exporter.errors import ResolveError
from exporter.model import DiscoveredDC, LdapDetails
from exporter.plan import DomainPlan
from exporter.probes import port_spec
from exporter.resolve import SrvRecord


@dataclass(frozen=True, slots=True)
class Discovery:
    """One reading of a domain's DCs.

    Attributes:
        domain: the AD DNS domain.
        ok: the SRV records were read and list at least one DC.
        dcs: the DCs in SRV order (empty when not ``ok``).
        error: why it failed, or ``""``.
        duration_seconds: wall time of the SRV reads and the pings, seconds.
        timestamp: Unix time at the end.
    """

    domain: str
    ok: bool
    dcs: tuple[DiscoveredDC, ...]
    error: str
    duration_seconds: float
    timestamp: float


def srv_names(domain: str, sites: tuple[str, ...] = ()) -> list[str]:
    """The SRV names that list the DCs: ``_ldap._tcp.dc._msdcs.<domain>``, or one per site (MS-ADTS 6.3.2.3)."""
    if sites:
        return [f"_ldap._tcp.{site}._sites.dc._msdcs.{domain}" for site in sites]
    return [f"_ldap._tcp.dc._msdcs.{domain}"]


async def discover(plan: DomainPlan, engine: Engine) -> Discovery:
    """Read the domain's SRV records and LDAP-ping every DC they list.

    Returns:
        The :class:`Discovery`; never raises for DNS or network failures: a time-out, SERVFAIL, a garbled
        answer or an empty record set is ``ok=False`` with the error (the caller keeps its last good list).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()

    def failed(error: str) -> Discovery:
        return Discovery(plan.name, False, (), error, loop.time() - started, time.time())

    names = srv_names(plan.name, plan.sites)
    try:
        answers = await asyncio.gather(*(engine.resolver.srv(name) for name in names))
    except ResolveError as exc:
        return failed(str(exc))
    records: dict[str, SrvRecord] = {}
    for record in sorted((r for answer in answers for r in answer), key=lambda r: (r.priority, -r.weight, r.target)):
        records.setdefault(record.target, record)
    if not records:
        return failed(f"no DC listed in {' '.join(names)}")
    dcs = await asyncio.gather(*(_ping(plan, engine, r) for r in records.values()))
    return Discovery(plan.name, True, tuple(dcs), "", loop.time() - started, time.time())


async def _ping(plan: DomainPlan, engine: Engine, record: SrvRecord) -> DiscoveredDC:
    dc = DiscoveredDC(record.target, record.priority, record.weight)
    options = replace(plan.template.options, protocol_probes=True)
    # CLDAP listens on the LDAP port number over UDP (MS-ADTS 6.3.3): 389, or what the SRV record says
    spec = port_spec("udp", record.port, binding="ldap")
    [result] = await engine.probe_target(record.target, record.target, [spec], options)
    ldap = result.details.get("ldap")
    dc = replace(dc, address=result.address)
    if not isinstance(ldap, LdapDetails) or ldap.netlogon is None:
        error = ldap.ping_error if isinstance(ldap, LdapDetails) else result.error
        return replace(dc, error=error or f"LDAP ping: {result.state.portqry_text} ({result.reason})")
    ping = ldap.netlogon
    return replace(dc, site=ping.dc_site_name, client_site=ping.client_site_name, roles=ping.flags)

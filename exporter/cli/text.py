"""PortQry's text for ``portqry``: the query header, each port's lines, the log file's header and footer.

Everything here is pure: functions take results and return lists of lines without newlines;
:class:`exporter.cli.output.Output` writes them.  The layout follows PortQry 2.0's documented sample outputs
(KB 310099, KB 832919, and "Using the PortQry command-line tool", 2023), e.g.::

    Querying target system called:

     dc1.example.com

    Attempting to resolve name to IP address...

    Name resolved to 198.18.1.2

    querying...

    UDP port 389 (ldap service): LISTENING or FILTERED

    <the protocol block: exporter.cli.blocks>

    UDP port 389 is LISTENING

The golden files ``tests/golden/cli_*.txt`` pin each layout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from exporter.cli.blocks import QUERY_NAMES, protocol_block
from exporter.model import DiscoveredDC
from exporter.result import ProbeResult
from exporter.services import UNKNOWN_SERVICE
from exporter.states import PortState, Reason
from exporter.wire.netlogon import DS_FLAG_NAMES

#: Reasons that say a protocol-aware follow-up ran (whatever it concluded).
PROTOCOL_REASONS = frozenset(
    {Reason.PROTOCOL_REPLY, Reason.PROTOCOL_ERROR, Reason.PROTOCOL_REFUSED, Reason.PROTOCOL_NO_REPLY}
)

#: Probes that PortQry runs from an ephemeral source port even with ``-sp`` (it prints
#: "Using ephemeral source port"): RPC TCP/UDP 135, LDAP UDP 389, NetBIOS UDP 137.
EPHEMERAL_SOURCE_PROBES = frozenset({("tcp", "rpc"), ("udp", "rpc"), ("udp", "ldap"), ("udp", "netbios")})

LOG_TITLE = "PortQry Version 2.0 Log File"
LOG_END = "========= end of log file ========="


def service_text(service: str) -> str:
    """PortQry's parenthesised service: ``ldap service``, ``unknown service``."""
    return service if service == UNKNOWN_SERVICE or service.endswith(" service") else f"{service} service"


def state_line(protocol: str, port: int, service: str, state: PortState) -> str:
    """``TCP port 389 (ldap service): LISTENING``."""
    return f"{protocol.upper()} port {port} ({service_text(service)}): {state.portqry_text}"


def verdict_line(protocol: str, port: int, state: PortState) -> str:
    """PortQry's final line after a UDP follow-up: ``UDP port 389 is LISTENING``."""
    return f"{protocol.upper()} port {port} is {state.portqry_text}"


# --------------------------------------------------------------------------------------------- header


def target_lines(target: str) -> list[str]:
    """``Querying target system called:`` and the target, as PortQry prints them."""
    return ["Querying target system called:", "", f" {target}", ""]


def name_resolution_lines(address: str | None) -> list[str]:
    """Forward resolution of a name; ``address`` ``None`` means it failed."""
    lines = ["Attempting to resolve name to IP address...", ""]
    if address is None:
        return [*lines, "Failed to resolve name to IP address", ""]
    return [*lines, f"Name resolved to {address}", ""]


def reverse_resolution_lines(name: str | None) -> list[str]:
    """Reverse resolution of an address literal; ``name`` ``None`` means it failed (PortQry continues)."""
    lines = ["Attempting to resolve IP address to a name...", ""]
    if name is None:
        return [*lines, "Failed to resolve IP address to name", ""]
    return [*lines, f"IP address resolved to {name}", ""]


QUERYING_LINES = ("querying...", "")


# --------------------------------------------------------------------------------------------- ports


def followed_up(result: ProbeResult, probe_name: str) -> bool:
    """Whether the protocol-aware follow-up ``probe_name`` ran for ``result``.

    UDP: it ran when the result carries a protocol reason or details (the engine only follows up a
    datagram that was not refused).  TCP: it ran on every LISTENING port bound to a probe.
    """
    if not probe_name:
        return False
    if result.reason in PROTOCOL_REASONS or result.details:
        return True
    return result.protocol == "tcp" and result.state is PortState.LISTENING


def port_lines(
    result: ProbeResult,
    *,
    probe_name: str = "",
    source_port: int | None = None,
    community: str = "public",
) -> list[str]:
    """Every line PortQry prints for one port: state line, protocol block, final verdict.

    Args:
        result: the engine's result for the port.
        probe_name: the protocol-aware probe bound to the port (``""`` for none).
        source_port: the ``-sp`` port, if any (prints "Using ephemeral source port" where PortQry does).
        community: the SNMP community (PortQry prints it before the SNMP query).

    Returns:
        Lines without newlines, each block followed by a blank line.  On a UDP port whose follow-up
        ran, the first line shows the unformatted datagram's outcome (``result.initial_state``, usually
        "LISTENING or FILTERED") and the last line the verdict ("UDP port 389 is LISTENING"); a TCP
        port's state line is already the verdict, as in PortQry.
    """
    proto, port = result.protocol, result.port
    ran = followed_up(result, probe_name)
    if not ran:
        lines = [state_line(proto, port, result.service, result.state), ""]
        if result.reason is Reason.LOCAL_ERROR and result.error:
            lines += [f"local error: {result.error}", ""]
        return lines
    first = result.initial_state or (result.state if proto == "tcp" else PortState.LISTENING_OR_FILTERED)
    lines = [state_line(proto, port, result.service, first), ""]
    if source_port and (proto, probe_name) in EPHEMERAL_SOURCE_PROBES:
        lines.append("Using ephemeral source port")
    lines += protocol_block(probe_name, result, community=community)
    if result.error and result.reason is not Reason.PROTOCOL_REPLY:
        lines += [f"{QUERY_NAMES.get(probe_name, probe_name.upper())} query: {result.error}", ""]
    if proto == "udp":
        lines += [verdict_line(proto, port, result.state), ""]
    return lines


# --------------------------------------------------------------------------------------------- domains


def role_names(roles: frozenset[str]) -> list[str]:
    """A DC's DS_FLAG roles in bit order (MS-ADTS 6.3.1.2): ``pdc gc ldap ds kdc ...``; unknown names last."""
    return [name for name in DS_FLAG_NAMES if name in roles] + sorted(roles - set(DS_FLAG_NAMES))


def domain_controller_lines(domain: str, srv_names: Sequence[str], dcs: Sequence[DiscoveredDC]) -> list[str]:
    """The DCs ``portqry --domain`` found, in SRV order: one aligned line each, then a summary.

    Each line: host, address, then ``site S  roles R ...`` from the LDAP ping, or ``LDAP ping failed: ...``;
    a DC whose name does not resolve has ``-`` for its address and ``name does not resolve (...)``.  The
    summary counts the DCs and the ping replies and says which site (``ClientSiteName``) the DCs put this
    computer in (each DC's when they differ); ``(none)`` when no subnet maps it to a site.
    Example::

        Domain controllers of tb.test (from _ldap._tcp.dc._msdcs.tb.test):

         dc1.tb.test  127.0.0.2  site Hub     roles pdc gc ldap ds kdc timeserv closest writable
         dc2.tb.test  127.0.0.3  site Branch  roles gc ldap ds kdc

        2 domain controllers found, 2 answered the LDAP ping; client site: Hub
    """
    lines = [f"Domain controllers of {domain} (from {', '.join(srv_names)}):", ""]
    host_width = max((len(dc.host) for dc in dcs), default=0)
    address_width = max((len(dc.address or "-") for dc in dcs), default=0)
    answered = [dc for dc in dcs if dc.address and not dc.error]
    site_width = max((len(dc.site or "(none)") for dc in answered), default=0)
    for dc in dcs:
        head = f" {dc.host:<{host_width}}  {dc.address or '-':<{address_width}}  "
        if not dc.address:
            lines.append(f"{head}name does not resolve ({one_line(dc.error.removeprefix(f'{dc.host}: '))})")
        elif dc.error:
            lines.append(f"{head}LDAP ping failed: {one_line(dc.error.removeprefix('LDAP ping: '))}")
        else:
            roles = " ".join(role_names(dc.roles)) or "(none)"
            lines.append(f"{head}site {dc.site or '(none)':<{site_width}}  roles {roles}")
    found = f"{len(dcs)} domain controller{'' if len(dcs) == 1 else 's'} found"
    summary = f"{found}, {len(answered)} answered the LDAP ping"
    sites = list(dict.fromkeys(dc.client_site for dc in answered))
    if len(sites) == 1:
        summary += f"; client site: {sites[0] or '(none)'}"
    elif sites:
        summary += "; client site: " + ", ".join(f"{dc.client_site or '(none)'} ({dc.host})" for dc in answered)
    return [*lines, "", summary, ""]


def one_line(message: str) -> str:
    """``message`` with its line breaks folded into spaces (errors are printed on one line)."""
    return " ".join(message.split())


# --------------------------------------------------------------------------------------------- log file


def system_date(now: float | None = None) -> str:
    """PortQry's ``System Date:`` text (``Thu Sep 16 10:35:03 2021``), local time."""
    return time.ctime(now)


def log_header(command: str, computer: str, now: float | None = None) -> list[str]:
    """The log file's first lines: title, system date, command run, local computer name."""
    return [
        LOG_TITLE,
        "",
        f"System Date: {system_date(now)}",
        "",
        "Command run:",
        f" {command}",
        "",
        "Local computer name:",
        "",
        f" {computer}",
        "",
    ]


def log_footer() -> list[str]:
    """The log file's last lines."""
    return ["", LOG_END]

"""PortQry's protocol blocks: what ``portqry`` prints after a port's state line when a protocol-aware follow-up ran.

One function per protocol (:func:`ldap_block`, :func:`rpc_block`, :func:`netbios_block`, :func:`snmp_block`,
:func:`dns_block`, :func:`kerberos_block`, :func:`tls_block`, :func:`mssql_block`), chosen by
:func:`protocol_block`.  Each takes the object the probe left in ``ProbeResult.details[<name>]`` and returns
lines without newlines, each block ending with a blank line.  The layouts follow PortQry 2.0's documented
sample outputs (KB 310099, KB 832919, "Using the PortQry command-line tool", 2023), e.g.::

    Sending LDAP query to UDP port 389...

    LDAP query response:

    currentdate: 10/11/2001 23:10:21 (unadjusted GMT)
    ...

    ======== End of LDAP query response ========

Blocks read details through :func:`field` (attribute or mapping key, with a default), so a partial shape
prints what is there and never crashes the command.  The golden files ``tests/golden/cli_*.txt`` pin each
layout; check one by hand with e.g. ``portqry -n dc1 -p udp -e 389 --dns-server 198.18.0.2``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from exporter.result import ProbeResult
from exporter.states import PortState

#: rootDSE attributes in the order PortQry prints them (KB 832919 sample), then the rest as received.
LDAP_ATTRIBUTE_ORDER = (
    "currentTime",
    "subschemaSubentry",
    "dsServiceName",
    "namingContexts",
    "defaultNamingContext",
    "schemaNamingContext",
    "configurationNamingContext",
    "rootDomainNamingContext",
    "supportedControl",
    "supportedLDAPVersion",
    "supportedLDAPPolicies",
    "highestCommittedUSN",
    "supportedSASLMechanisms",
    "dnsHostName",
    "ldapServiceName",
    "serverName",
    "supportedCapabilities",
    "isSynchronized",
    "isGlobalCatalogReady",
    "domainFunctionality",
    "forestFunctionality",
    "domainControllerFunctionality",
)

#: Protocol-aware probe name -> the name in PortQry's "Sending <X> query to ..." line.
QUERY_NAMES = {
    "ldap": "LDAP",
    "dns": "DNS",
    "snmp": "SNMP",
    "kerberos": "Kerberos",
    "mssql": "SQL Server",
    "tls": "TLS",
}


# --------------------------------------------------------------------------------------------- helpers


def field(obj: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` present on ``obj`` as an attribute or a mapping key, else ``default``.

    ``None`` values count as absent, so a partially filled object falls through to ``default``.
    """
    if obj is None:
        return default
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return default


def _seq(value: Any) -> tuple[Any, ...]:
    """``value`` as a tuple: sequences as they are, a lone scalar as a 1-tuple, ``None`` as ``()``."""
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        return (value,)
    return tuple(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.strftime("%m/%d/%Y %H:%M:%S")
    return str(value)


def protocol_block(name: str, result: ProbeResult, *, community: str = "public") -> list[str]:
    """The protocol block of the follow-up ``name`` for ``result`` (its details may be missing).

    Args:
        name: the probe (a key of :data:`exporter.probes.PROBES`).
        result: the port's result; ``result.details[name]`` is what the probe produced.
        community: the SNMP community (PortQry prints it before the SNMP query).
    """
    details = result.details.get(name) if result.details else None
    proto, port = result.protocol, result.port
    if name == "ldap":
        return ldap_block(details, proto, port)
    if name == "rpc":
        return rpc_block(details)
    if name == "netbios":
        return netbios_block(details, port)
    if name == "snmp":
        return snmp_block(details, port, community)
    if name == "dns":
        return dns_block(details, proto, port)
    if name == "kerberos":
        return kerberos_block(details, proto, port)
    if name == "tls":
        return tls_block(details, port)
    if name == "ldaps":  # LDAP over TLS (636, 3269): the handshake, then the rootDSE read through it
        tls = result.details.get("tls") if result.details else None
        ldap = result.details.get("ldap") if result.details else None
        return tls_block(tls, port) + ldap_block(ldap, "tcp", port, over_tls=True)
    if name == "mssql":
        return mssql_block(details, port)
    return generic_block(name, details, proto, port)


# --------------------------------------------------------------------------------------------- LDAP


def root_dse_lines(root: Any) -> list[str]:
    """``attribute: value`` lines of a rootDSE, one per value, in PortQry's order then the rest.

    ``root`` is a :class:`exporter.wire.ldap.RootDSE`: its raw ``attributes`` (name -> values) are printed,
    ``currentTime`` as PortQry's ``currentdate: MM/DD/YYYY HH:MM:SS (unadjusted GMT)`` (from the parsed
    ``current_time`` when there is one).
    """
    raw = field(root, "attributes", default={})
    if not isinstance(raw, Mapping):
        raw = {}
    by_folded: dict[str, tuple[str, tuple[Any, ...]]] = {}
    for name, values in raw.items():
        by_folded.setdefault(str(name).casefold(), (str(name), _seq(values)))
    lines: list[str] = []
    for attr in LDAP_ATTRIBUTE_ORDER:
        name, values = by_folded.pop(attr.casefold(), (attr, ()))
        if attr == "currentTime":
            typed = field(root, "current_time")
            when = typed if isinstance(typed, datetime) else _parse_generalized(values)
            if when is not None:
                lines.append(f"currentdate: {_ldap_date(when)} (unadjusted GMT)")
            elif values:
                lines.append(f"currentdate: {_text(values[0])} (unadjusted GMT)")
            continue
        lines += [f"{name}: {_text(v)}" for v in values]
    for name, values in by_folded.values():
        lines += [f"{name}: {_text(v)}" for v in values]
    return lines


def _ldap_date(when: datetime) -> str:
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%m/%d/%Y %H:%M:%S")


def _parse_generalized(values: Sequence[Any]) -> datetime | None:
    if not values:
        return None
    text = _text(values[0])
    try:
        return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def netlogon_lines(ping: Any) -> list[str]:
    """The MS-ADTS LDAP ping reply (:class:`exporter.wire.netlogon.NetlogonSamLogonResponseEx`), beyond PortQry."""
    flags = field(ping, "flags", default=())
    flag_text = " ".join(sorted(str(f).upper() for f in _seq(flags))) if flags else ""
    rows = [
        ("DC flags", flag_text or None),
        ("Domain GUID", field(ping, "domain_guid")),
        ("DNS forest name", field(ping, "dns_forest_name")),
        ("DNS domain name", field(ping, "dns_domain_name")),
        ("DNS host name", field(ping, "dns_host_name")),
        ("NetBIOS domain name", field(ping, "netbios_domain_name")),
        ("NetBIOS computer name", field(ping, "netbios_computer_name")),
        ("DC site name", field(ping, "dc_site_name")),
        ("Client site name", field(ping, "client_site_name")),
        ("DC address", field(ping, "dc_address")),
    ]
    return [f"{label}: {_text(value)}" for label, value in rows if value not in (None, "")]


def ldap_block(details: Any, protocol: str, port: int, *, over_tls: bool = False) -> list[str]:
    """``Sending LDAP query to UDP port 389...`` / ``LDAP query response:`` / rootDSE / end line.

    ``details`` is the LDAP probe's :class:`exporter.probes.ldap.LdapDetails`: ``root_dse``, and the LDAP ping's
    ``netlogon`` reply or ``ping_error``; ``None`` (no reply) prints only the query line, as PortQry does
    before its FILTERED verdict.  ``over_tls`` is LDAPS.
    """
    via = " over TLS" if over_tls else ""
    lines = [f"Sending LDAP query{via} to {protocol.upper()} port {port}...", ""]
    root = field(details, "root_dse")
    if root is not None:
        lines += ["LDAP query response:", "", *root_dse_lines(root), ""]
        lines += ["======== End of LDAP query response ========", ""]
    ping = field(details, "netlogon")
    if ping is not None:
        lines += ["LDAP ping (Netlogon) response:", "", *netlogon_lines(ping), ""]
        lines += ["======== End of LDAP ping response ========", ""]
    elif field(details, "ping_error"):
        lines += [f"LDAP ping: {field(details, 'ping_error')}", ""]
    return lines


# --------------------------------------------------------------------------------------------- RPC


def epm_entry_lines(entry: Any) -> list[str]:
    """``UUID: <uuid> <annotation>`` and the string binding of one :class:`exporter.wire.epm.EpmEntry`."""
    uuid = _text(field(entry, "interface_uuid", default=""))
    annotation = _text(field(entry, "annotation", default="")).strip()
    binding = _text(field(entry, "string_binding", default=""))
    head = f"UUID: {uuid} {annotation}" if annotation else f"UUID: {uuid}"
    return [head, binding] if binding else [head]


def _dynamic_ports(details: Any) -> list[tuple[int, str, str]]:
    """(port, PortQry state text, interfaces) of the dynamic TCP ports the RPC follow-up probed, by port.

    Each item is an :class:`exporter.probes.rpc.DynamicPort` (``port``, ``interfaces``, ``state`` as a
    :class:`~exporter.states.PortState` value such as ``"listening"``).
    """
    out: list[tuple[int, str, str]] = []
    for item in _seq(field(details, "dynamic_ports", default=())):
        port, state = field(item, "port"), field(item, "state")
        if port is None:
            continue
        interfaces = ", ".join(str(i) for i in _seq(field(item, "interfaces", default=())))
        try:
            text = PortState(str(state)).portqry_text
        except ValueError:
            text = str(state)
        out.append((int(port), text, interfaces))
    return sorted(out)


def rpc_block(details: Any) -> list[str]:
    """PortQry's endpoint-mapper dump.

    ``details`` is the RPC probe's :class:`exporter.probes.rpc.RpcDetails`: ``entries``
    (:class:`exporter.wire.epm.EpmEntry`) and, on TCP, ``dynamic_ports``: the reachability of each
    ``ncacn_ip_tcp`` port on the queried address, which PortQry lacks and is printed after PortQry's end line.
    """
    lines = ["Querying Endpoint Mapper Database..."]
    if details is None:
        return [*lines, ""]
    entries = _seq(field(details, "entries", default=()))
    lines += ["Server's response:", ""]
    for entry in entries:
        lines += [*epm_entry_lines(entry), ""]
    lines += [f"Total endpoints found: {len(entries)}", ""]
    lines += ["==== End of RPC Endpoint Mapper query response ====", ""]
    dynamic = _dynamic_ports(details)
    if dynamic:
        lines += ["Dynamic RPC endpoints (TCP, on the queried address):", ""]
        lines += [f"TCP port {port}: {text}" + (f" ({names})" if names else "") for port, text, names in dynamic]
        lines.append("")
    return lines


# --------------------------------------------------------------------------------------------- NetBIOS


def netbios_block(details: Any, port: int) -> list[str]:
    """``Attempting NETBIOS adapter status query to UDP port 137...`` / MAC / names.

    ``details`` is a :class:`exporter.wire.nbstat.NodeStatus` (``mac`` as ``00:15:5d:01:02:03``, ``names``).
    PortQry prints only the MAC address; the name table (nbtstat -A style) is ours.
    """
    lines = [f"Attempting NETBIOS adapter status query to UDP port {port}...", ""]
    if details is None:
        return lines
    mac = field(details, "mac")
    if mac is not None:
        lines += [f"Server's response: MAC address {str(mac).replace(':', '').replace('-', '').lower()}", ""]
    names = _seq(field(details, "names", default=()))
    if names:
        lines += ["NetBIOS names:", ""]
        for entry in names:
            name = str(field(entry, "name", default="")).rstrip()
            suffix = field(entry, "suffix", default=0)
            flags = int(field(entry, "flags", default=0) or 0)
            kind = "GROUP" if flags & 0x8000 else "UNIQUE"
            lines.append(f" {name:<15} <{int(suffix):02X}>  {kind}")
        lines.append("")
    return lines


# --------------------------------------------------------------------------------------------- SNMP


def snmp_block(details: Any, port: int, community: str) -> list[str]:
    """``community name for query:`` / the community / ``Sending SNMP query to UDP port 161...``.

    ``details`` is a :class:`exporter.wire.snmp.SnmpResponse`.  PortQry prints no varbinds; we add
    ``sysDescr`` when the agent sent it, and an error status other than ``noError``.
    """
    lines = ["community name for query:", "", community, "", f"Sending SNMP query to UDP port {port}...", ""]
    descr = field(details, "sys_descr")
    if descr is not None:
        lines += [f"sysDescr: {_text(descr)}", ""]
    status = field(details, "error_status_name")
    if status not in (None, "", "noError"):
        lines += [f"SNMP error status: {status}", ""]
    return lines


# --------------------------------------------------------------------------------------------- DNS


def dns_block(details: Any, protocol: str, port: int) -> list[str]:
    """``Sending DNS query to UDP port 53...`` and, beyond PortQry, the reply's rcode and AA flag.

    ``details`` is the DNS probe's :class:`exporter.probes.dns.DnsDetails` (``query_name``, ``query_type``,
    ``rcode_text``, ``authoritative``).
    """
    lines = [f"Sending DNS query to {protocol.upper()} port {port}...", ""]
    if details is None:
        return lines
    qname = field(details, "query_name")
    qtype = field(details, "query_type")
    rcode = field(details, "rcode_text")
    aa = field(details, "authoritative")
    parts = []
    if qname is not None:
        parts.append(f"query {qname} {qtype}" if qtype else f"query {qname}")
    if rcode is not None:
        parts.append(f"rcode {rcode}")
    if aa is not None:
        parts.append("authoritative" if aa else "not authoritative")
    if parts:
        lines += [f"DNS response: {', '.join(parts)}", ""]
    return lines


# --------------------------------------------------------------------------------------------- Kerberos


def kerberos_block(details: Any, protocol: str, port: int) -> list[str]:
    """Our Kerberos block (PortQry has none): the KDC's answer to an AS-REQ for a made-up principal.

    ``details`` is a :class:`exporter.wire.kerberos.KrbError` (``error_code``, ``error_name``, ``realm``,
    ``sname``, ``stime``) or a :class:`exporter.wire.kerberos.KdcRep` (``msg_type``, ``crealm``,
    ``ticket_sname``).
    """
    lines = [f"Sending Kerberos AS-REQ to {protocol.upper()} port {port}...", ""]
    if details is None:
        return lines
    lines += ["Kerberos response:", ""]
    code = field(details, "error_code")
    if code is not None:
        name = field(details, "error_name", default="")
        lines.append(f"KRB-ERROR {code} {name}".rstrip())
    elif field(details, "msg_type") is not None:
        lines.append(f"KDC reply (msg-type {field(details, 'msg_type')})")
    realm = field(details, "realm", "crealm")
    if realm:
        lines.append(f"realm: {realm}")
    sname = field(details, "sname", "ticket_sname")
    if sname:
        lines.append(f"server: {sname}")
    stime = field(details, "stime")
    if isinstance(stime, datetime):
        lines.append(f"server time: {stime.astimezone(UTC).strftime('%m/%d/%Y %H:%M:%S')} (GMT)")
    lines += ["", "======== End of Kerberos response ========", ""]
    return lines


# --------------------------------------------------------------------------------------------- TLS


def tls_block(details: Any, port: int) -> list[str]:
    """Our TLS block (PortQry has none): protocol version, cipher, the server certificate's names and dates.

    ``details`` is the TLS probe's :class:`exporter.probes.tls.TlsDetails` (``version``, ``cipher``,
    ``certificate``: a :class:`exporter.wire.x509.CertificateSummary` or ``None``).
    """
    lines = [f"Starting TLS handshake on TCP port {port}...", ""]
    if details is None:
        return lines
    cert = field(details, "certificate")
    rows = [
        ("TLS version", field(details, "version")),
        ("Cipher", field(details, "cipher")),
        ("Subject", field(cert, "subject")),
        ("Issuer", field(cert, "issuer")),
        ("Not before", field(cert, "not_before")),
        ("Not after", field(cert, "not_after")),
    ]
    body = []
    for label, value in rows:
        if value is None:
            continue
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S GMT") if isinstance(value, datetime) else _text(value)
        body.append(f"{label}: {text}")
    if body:
        lines += [
            "TLS handshake response:",
            "",
            *body,
            "",
            "======== End of TLS handshake response ========",
            "",
        ]
    return lines


# --------------------------------------------------------------------------------------------- SQL Server


def mssql_block(details: Any, port: int) -> list[str]:
    """``Sending SQL Server query to UDP port 1434...`` / ``Server's response:`` / key-value pairs / end.

    ``details`` is the SQL Server probe's tuple of :class:`exporter.wire.mssqlr.SqlInstance` (``items()``:
    the instance's key/value pairs in the order received).
    """
    lines = [f"Sending SQL Server query to UDP port {port}...", ""]
    if details is None:
        return lines
    instances = details if isinstance(details, list | tuple) else ()
    lines += ["Server's response:", ""]
    for inst in instances:
        pairs = inst.items() if hasattr(inst, "items") else ()
        lines += [f"{key} {value}" for key, value in pairs]
        lines.append("")
    lines += ["==== End of SQL Server query response ====", ""]
    return lines


def generic_block(name: str, details: Any, protocol: str, port: int) -> list[str]:
    """A probe without a dedicated layout: the query line and ``key: value`` of its details."""
    lines = [f"Sending {QUERY_NAMES.get(name, name.upper())} query to {protocol.upper()} port {port}...", ""]
    if isinstance(details, Mapping) and details:
        lines += [f"{k}: {_text(v)}" for k, v in details.items()]
        lines.append("")
    return lines

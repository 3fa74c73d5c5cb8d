"""PortQry's protocol blocks: what ``portqry`` prints after a port's state line when a protocol-aware follow-up ran.

One function per protocol (:func:`ldap_block`, :func:`rpc_block`, :func:`netbios_block`, :func:`snmp_block`,
:func:`dns_block`, :func:`kerberos_block`, :func:`tls_block`, :func:`mssql_block`, :func:`smb_block`; on tcp/389
:func:`ldap_posture_block` follows the LDAP one), chosen by :func:`protocol_block`.  Each takes the object the
probe left in ``ProbeResult.details[<name>]`` and returns lines without newlines, each block ending with a blank
line.  The layouts follow PortQry 2.0's documented
sample outputs (KB 310099, KB 832919, "Using the PortQry command-line tool", 2023), e.g.::

    Sending LDAP query to UDP port 389...

    LDAP query response:

    currentdate: 10/11/2001 23:10:21 (unadjusted GMT)
    ...

    ======== End of LDAP query response ========

Each block takes the typed detail (:data:`exporter.model.Detail`) or ``None`` when the probe kept none (no
reply), and prints what is there.  The golden files ``tests/golden/cli_*.txt`` pin each
layout; check one by hand with e.g. ``portqry -n dc1 -p udp -e 389 --dns-server 198.18.0.2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeVar

from exporter.model import (
    Detail,
    DnsDetails,
    KdcClock,
    LdapBindCheck,
    LdapDetails,
    RpcDetails,
    SmbDetails,
    StartTlsCheck,
    TlsDetails,
)
from exporter.result import ProbeResult
from exporter.states import PortState
from exporter.wire.epm import EpmEntry
from exporter.wire.kerberos import KdcRep, KrbError
from exporter.wire.mssqlr import SqlInstance
from exporter.wire.nbstat import NodeStatus
from exporter.wire.netlogon import NetlogonSamLogonResponseEx
from exporter.wire.rootdse import RootDSE
from exporter.wire.snmp import SnmpResponse

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
    "smb": "SMB",
}


T = TypeVar("T")

# --------------------------------------------------------------------------------------------- helpers


def _text(value: object) -> str:
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
        name: the binding (a key of :data:`exporter.probes.PROBES`).
        result: the port's result; ``result.details[name]`` is what the probe produced.
        community: the SNMP community (PortQry prints it before the SNMP query).
    """
    details = result.details.get(name)
    proto, port = result.protocol, result.port
    if name == "ldap":  # on tcp/389 the transport-rule checks follow the rootDSE
        posture = ldap_posture_block(
            _of(LdapBindCheck, result.details.get("ldap_bind")),
            _of(StartTlsCheck, result.details.get("ldap_starttls")),
            _of(TlsDetails, result.details.get("starttls")),
            port,
        )
        return ldap_block(_of(LdapDetails, details), proto, port) + posture
    if name == "rpc":
        return rpc_block(_of(RpcDetails, details))
    if name == "netbios":
        return netbios_block(_of(NodeStatus, details), port)
    if name == "snmp":
        return snmp_block(_of(SnmpResponse, details), port, community)
    if name == "dns":
        return dns_block(_of(DnsDetails, details), proto, port)
    if name == "kerberos":
        clock = _of(KdcClock, result.details.get("kerberos_clock"))
        return kerberos_block(details if isinstance(details, KrbError | KdcRep) else None, proto, port, clock)
    if name == "tls":
        return tls_block(_of(TlsDetails, details), port)
    if name == "ldaps":  # LDAP over TLS (636, 3269): the handshake, then the rootDSE read through it
        tls, ldap = result.details.get("tls"), result.details.get("ldap")
        return tls_block(_of(TlsDetails, tls), port) + ldap_block(_of(LdapDetails, ldap), "tcp", port, over_tls=True)
    if name == "mssql":
        return mssql_block(details if isinstance(details, tuple) else None, port)
    if name == "smb":
        return smb_block(_of(SmbDetails, details), port)
    return [f"Sending {QUERY_NAMES.get(name, name.upper())} query to {proto.upper()} port {port}...", ""]


def _of(kind: type[T], detail: Detail | None) -> T | None:
    return detail if isinstance(detail, kind) else None


# --------------------------------------------------------------------------------------------- LDAP


def root_dse_lines(root: RootDSE) -> list[str]:
    """``attribute: value`` lines of a rootDSE, one per value, in PortQry's order then the rest.

    The raw ``attributes`` (name -> values) are printed, ``currentTime`` as PortQry's
    ``currentdate: MM/DD/YYYY HH:MM:SS (unadjusted GMT)`` (from the parsed ``current_time`` when there is one).
    """
    by_folded: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, values in root.attributes.items():
        by_folded.setdefault(name.casefold(), (name, tuple(values)))
    lines: list[str] = []
    for attr in LDAP_ATTRIBUTE_ORDER:
        name, values = by_folded.pop(attr.casefold(), (attr, ()))
        if attr == "currentTime":
            when = root.current_time or _parse_generalized(values)
            if when is not None:
                lines.append(f"currentdate: {_ldap_date(when)} (unadjusted GMT)")
            elif values:
                lines.append(f"currentdate: {values[0]} (unadjusted GMT)")
            continue
        lines += [f"{name}: {v}" for v in values]
    for name, values in by_folded.values():
        lines += [f"{name}: {v}" for v in values]
    return lines


def _ldap_date(when: datetime) -> str:
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%m/%d/%Y %H:%M:%S")


def _parse_generalized(values: Sequence[str]) -> datetime | None:
    if not values:
        return None
    try:
        return datetime.strptime(values[0][:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def netlogon_lines(ping: NetlogonSamLogonResponseEx) -> list[str]:
    """The MS-ADTS 6.3.1.9 LDAP ping reply, beyond PortQry: flags, GUID, names, sites."""
    rows: list[tuple[str, object]] = [
        ("DC flags", " ".join(sorted(f.upper() for f in ping.flags))),
        ("Domain GUID", ping.domain_guid),
        ("DNS forest name", ping.dns_forest_name),
        ("DNS domain name", ping.dns_domain_name),
        ("DNS host name", ping.dns_host_name),
        ("NetBIOS domain name", ping.netbios_domain_name),
        ("NetBIOS computer name", ping.netbios_computer_name),
        ("DC site name", ping.dc_site_name),
        ("Client site name", ping.client_site_name),
        ("DC address", ping.dc_address),
    ]
    return [f"{label}: {_text(value)}" for label, value in rows if value not in (None, "")]


def ldap_block(details: LdapDetails | None, protocol: str, port: int, *, over_tls: bool = False) -> list[str]:
    """``Sending LDAP query to UDP port 389...`` / ``LDAP query response:`` / rootDSE / end line.

    ``details`` is the LDAP probe's :class:`~exporter.model.LdapDetails`: ``root_dse``, and the LDAP ping's
    ``netlogon`` reply or ``ping_error``; ``None`` (no reply) prints only the query line, as PortQry does
    before its FILTERED verdict.  ``over_tls`` is LDAPS.
    """
    via = " over TLS" if over_tls else ""
    lines = [f"Sending LDAP query{via} to {protocol.upper()} port {port}...", ""]
    if details is None:
        return lines
    lines += ["LDAP query response:", "", *root_dse_lines(details.root_dse), ""]
    lines += ["======== End of LDAP query response ========", ""]
    if details.netlogon is not None:
        lines += ["LDAP ping (Netlogon) response:", "", *netlogon_lines(details.netlogon), ""]
        lines += ["======== End of LDAP ping response ========", ""]
    elif details.ping_error:
        lines += [f"LDAP ping: {details.ping_error}", ""]
    return lines


def ldap_posture_block(
    bind: LdapBindCheck | None, starttls: StartTlsCheck | None, tls: TlsDetails | None, port: int
) -> list[str]:
    """Our LDAP transport-rule lines (PortQry has none): the made-up simple bind and StartTLS (RFC 4511 4.2, 4.14).

    Empty when the checks did not run (``posture_checks`` off, or not tcp/389); the StartTLS certificate is
    printed as :func:`tls_block` prints a TLS port's, e.g.::

        Sending LDAP simple bind (made-up DN cn=portqry-posture-check-5f0c...,dc=invalid) to TCP port 389...

        Bind response: strongerAuthRequired (8): plain-text simple binds refused
        Diagnostic: BindSimple: Transport encryption required.

        Sending LDAP StartTLS request to TCP port 389...

        StartTLS response: success (0): offered

        Starting TLS handshake on TCP port 389...
        ...
    """
    lines: list[str] = []
    if bind is not None:
        lines += [f"Sending LDAP simple bind (made-up DN {bind.dn}) to TCP port {port}...", ""]
        if bind.result_code is None:
            lines.append(f"Bind check: could not finish ({bind.error})")
        else:
            verdict = "plain-text simple binds refused" if bind.plaintext_refused else "plain-text simple binds allowed"
            if bind.result_code == 49:
                verdict = "plain-text simple binds allowed: the password would be checked"
            lines.append(f"Bind response: {bind.result_name} ({bind.result_code}): {verdict}")
            if bind.diagnostic_message:
                lines.append(f"Diagnostic: {bind.diagnostic_message}")
        lines.append("")
    if starttls is not None:
        lines += [f"Sending LDAP StartTLS request to TCP port {port}...", ""]
        if starttls.result_code is None:
            lines.append(f"StartTLS check: could not finish ({starttls.error})")
        else:
            offered = "offered" if starttls.supported else "not offered" if starttls.result_code else "no TLS after it"
            lines.append(f"StartTLS response: {starttls.result_name} ({starttls.result_code}): {offered}")
            if starttls.diagnostic_message:
                lines.append(f"Diagnostic: {starttls.diagnostic_message}")
        if starttls.tls_error:
            lines.append(f"TLS after StartTLS: {starttls.tls_error}")
        lines.append("")
        if tls is not None:
            lines += tls_block(tls, port)
    return lines


# --------------------------------------------------------------------------------------------- RPC


def epm_entry_lines(entry: EpmEntry) -> list[str]:
    """``UUID: <uuid> <annotation>`` and the string binding of one endpoint-mapper entry."""
    annotation = entry.annotation.strip()
    head = f"UUID: {entry.interface_uuid} {annotation}" if annotation else f"UUID: {entry.interface_uuid}"
    return [head, entry.string_binding] if entry.string_binding else [head]


def rpc_block(details: RpcDetails | None) -> list[str]:
    """PortQry's endpoint-mapper dump.

    ``details`` is the RPC probe's :class:`~exporter.model.RpcDetails`: ``entries`` and, on TCP,
    ``dynamic_ports``: the reachability of each ``ncacn_ip_tcp`` port on the queried address, which PortQry
    lacks and is printed after PortQry's end line.
    """
    lines = ["Querying Endpoint Mapper Database..."]
    if details is None:
        return [*lines, ""]
    lines += ["Server's response:", ""]
    for entry in details.entries:
        lines += [*epm_entry_lines(entry), ""]
    lines += [f"Total endpoints found: {details.total}", ""]
    lines += ["==== End of RPC Endpoint Mapper query response ====", ""]
    if details.dynamic_ports:
        lines += ["Dynamic RPC endpoints (TCP, on the queried address):", ""]
        for dyn in sorted(details.dynamic_ports, key=lambda d: d.port):
            names = ", ".join(dyn.interfaces)
            lines.append(f"TCP port {dyn.port}: {PortState(dyn.state).portqry_text}" + (f" ({names})" if names else ""))
        lines.append("")
    return lines


# --------------------------------------------------------------------------------------------- NetBIOS


def netbios_block(details: NodeStatus | None, port: int) -> list[str]:
    """``Attempting NETBIOS adapter status query to UDP port 137...`` / MAC / names (RFC 1002 4.2.18).

    PortQry prints only the MAC address; the name table (nbtstat -A style) is ours.
    """
    lines = [f"Attempting NETBIOS adapter status query to UDP port {port}...", ""]
    if details is None:
        return lines
    lines += [f"Server's response: MAC address {details.mac.replace(':', '').replace('-', '').lower()}", ""]
    if details.names:
        lines += ["NetBIOS names:", ""]
        for entry in details.names:
            kind = "GROUP" if entry.flags & 0x8000 else "UNIQUE"
            lines.append(f" {entry.name.rstrip():<15} <{entry.suffix:02X}>  {kind}")
        lines.append("")
    return lines


# --------------------------------------------------------------------------------------------- SNMP


def snmp_block(details: SnmpResponse | None, port: int, community: str) -> list[str]:
    """``community name for query:`` / the community / ``Sending SNMP query to UDP port 161...``.

    PortQry prints no varbinds; we add ``sysDescr`` when the agent sent it, and an error status other than
    ``noError``.
    """
    lines = ["community name for query:", "", community, "", f"Sending SNMP query to UDP port {port}...", ""]
    if details is None:
        return lines
    if details.sys_descr is not None:
        lines += [f"sysDescr: {details.sys_descr}", ""]
    if details.error_status_name not in ("", "noError"):
        lines += [f"SNMP error status: {details.error_status_name}", ""]
    return lines


# --------------------------------------------------------------------------------------------- DNS


def dns_block(details: DnsDetails | None, protocol: str, port: int) -> list[str]:
    """``Sending DNS query to UDP port 53...`` and, beyond PortQry, the reply's rcode and AA flag."""
    lines = [f"Sending DNS query to {protocol.upper()} port {port}...", ""]
    if details is None:
        return lines
    asked = f"query {details.query_name} {details.query_type}" if details.query_type else f"query {details.query_name}"
    flag = "authoritative" if details.authoritative else "not authoritative"
    return [*lines, f"DNS response: {asked}, rcode {details.rcode_text}, {flag}", ""]


# --------------------------------------------------------------------------------------------- Kerberos


def kerberos_block(
    details: KrbError | KdcRep | None, protocol: str, port: int, clock: KdcClock | None = None
) -> list[str]:
    """Our Kerberos block (PortQry has none): the KDC's answer to an AS-REQ for a made-up principal (RFC 4120).

    ``clock`` (from the KRB-ERROR's stime) adds ``clock offset: +0.012 s (KDC - us, round trip 0.8 ms)``.
    """
    lines = [f"Sending Kerberos AS-REQ to {protocol.upper()} port {port}...", ""]
    if details is None:
        return lines
    lines += ["Kerberos response:", ""]
    if isinstance(details, KrbError):
        lines.append(f"KRB-ERROR {details.error_code} {details.error_name}".rstrip())
        realm, sname = details.realm, details.sname
    else:
        lines.append(f"KDC reply (msg-type {details.msg_type})")
        realm, sname = details.crealm, details.ticket_sname
    if realm:
        lines.append(f"realm: {realm}")
    if sname:
        lines.append(f"server: {sname}")
    if isinstance(details, KrbError):
        lines.append(f"server time: {details.stime.astimezone(UTC).strftime('%m/%d/%Y %H:%M:%S')} (GMT)")
    if clock is not None:
        rtt = f"{clock.round_trip_seconds * 1000:.1f} ms"
        lines.append(f"clock offset: {clock.offset_seconds:+.3f} s (KDC - us, round trip {rtt})")
    lines += ["", "======== End of Kerberos response ========", ""]
    return lines


# --------------------------------------------------------------------------------------------- TLS


def tls_block(details: TlsDetails | None, port: int) -> list[str]:
    """Our TLS block (PortQry has none): protocol version, cipher, the server certificate's names and dates."""
    lines = [f"Starting TLS handshake on TCP port {port}...", ""]
    if details is None:
        return lines
    cert = details.certificate
    rows: list[tuple[str, str | datetime | None]] = [
        ("TLS version", details.version),
        ("Cipher", details.cipher),
        ("Subject", cert.subject if cert else None),
        ("Issuer", cert.issuer if cert else None),
        ("Not before", cert.not_before if cert else None),
        ("Not after", cert.not_after if cert else None),
    ]
    body = []
    for label, value in rows:
        if isinstance(value, datetime):
            body.append(f"{label}: {value.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S GMT')}")
        elif value:
            body.append(f"{label}: {value}")
    body += certificate_check_lines(details)
    if body:
        lines += ["TLS handshake response:", "", *body, "", "======== End of TLS handshake response ========", ""]
    return lines


def certificate_check_lines(details: TlsDetails) -> list[str]:
    """The certificate checks and the verification (RFC 5280, RFC 6125), e.g.::

    Days left: 699.9
    Server authentication: yes (extendedKeyUsage serverAuth)
    Names dc1.pqtest.test: yes (subject CN (no DNS name in subjectAltName))
    Chain depth: 1 (as sent)
    Signature algorithm: sha256WithRSAEncryption
    Key: RSA 4096 bits
    Verified: no (unable to get local issuer certificate (depth 0); trusted: system)
    """
    lines: list[str] = []
    checks = details.checks
    if checks is not None:
        eku = (
            f"extendedKeyUsage {', '.join(checks.extended_key_usage)}" if checks.eku_present else "no EKU: any purpose"
        )
        key = " ".join(p for p in (checks.key_type, checks.key_curve) if p) or "unreadable"
        lines += [
            f"Days left: {checks.days_left:.1f}",
            f"Server authentication: {_yes(checks.server_auth)} ({eku})",
        ]
        if checks.name_match is not None:
            named = "named" if checks.name_match else "not named"
            lines.append(f"Host name {checks.name}: {named} ({checks.name_source})")
        sent = "as sent" if checks.chain_as_sent else "the leaf only was readable"
        lines += [
            f"Chain depth: {checks.chain_depth} ({sent})",
            f"Signature algorithm: {checks.signature_algorithm}",
            f"Key: {key} {checks.key_size} bits" if checks.key_size else f"Key: {key}",
        ]
        if checks.error:
            lines.append(f"Certificate problems: {checks.error}")
    if details.verified is not None:
        why = f"{details.verify_error}; " if details.verify_error else ""
        lines.append(f"Verified: {_yes(details.verified)} ({why}trusted: {details.trust_store})")
    return lines


def _yes(value: bool) -> str:
    return "yes" if value else "no"


# --------------------------------------------------------------------------------------------- SQL Server


def mssql_block(details: tuple[SqlInstance, ...] | None, port: int) -> list[str]:
    """``Sending SQL Server query to UDP port 1434...`` / ``Server's response:`` / key-value pairs / end.

    ``details`` is the SQL Server probe's instances (MC-SQLR 2.2.5), each printed as its key/value pairs in
    the order received.
    """
    lines = [f"Sending SQL Server query to UDP port {port}...", ""]
    if details is None:
        return lines
    lines += ["Server's response:", ""]
    for inst in details:
        lines += [f"{key} {value}" for key, value in inst.items()]
        lines.append("")
    lines += ["==== End of SQL Server query response ====", ""]
    return lines


# --------------------------------------------------------------------------------------------- SMB


def smb_block(details: SmbDetails | None, port: int) -> list[str]:
    """Our SMB block (PortQry has none): the negotiated dialect, signing, SMB1 and the SPNEGO mechanisms.

    Two negotiates, no session setup (MS-SMB2 2.2.3/2.2.4, MS-CIFS 2.2.4.52), e.g.::

        Sending SMB negotiate to TCP port 445 (no session setup)...

        SMB negotiate response:

        Dialect: 3.1.1
        Signing: required
        SMB1 (NT LM 0.12): refused (SMB1 negotiate refused: no dialect accepted)
        Authentication mechanisms: MS-Kerberos, Kerberos, NTLMSSP

        ======== End of SMB negotiate response ========
    """
    lines = [f"Sending SMB negotiate to TCP port {port} (no session setup)...", ""]
    if details is None:
        return lines
    signing = "required" if details.signing_required else "enabled, not required"
    if not (details.signing_required or details.signing_enabled):
        signing = "not enabled"
    if details.smb1_enabled is None:
        smb1 = f"unknown ({details.smb1_note})" if details.smb1_note else "unknown"
    elif details.smb1_enabled:
        smb1 = "accepted"
    else:
        smb1 = f"refused ({details.smb1_note})" if details.smb1_note else "refused"
    mechanisms = ", ".join(details.auth_mechanisms) or f"none ({details.auth_error})"
    return [
        *lines,
        "SMB negotiate response:",
        "",
        f"Dialect: {details.dialect}",
        f"Signing: {signing}",
        f"SMB1 (NT LM 0.12): {smb1}",
        f"Authentication mechanisms: {mechanisms}",
        "",
        "======== End of SMB negotiate response ========",
        "",
    ]

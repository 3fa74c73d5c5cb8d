"""The probe model: what to probe (:class:`PortSpec`), how (:class:`ProbeOptions`, :class:`ProbeParams`) and
what the protocol-aware probes found (the detail dataclasses and their union :data:`Detail`).

Plain frozen data, shared by the config loader, the engine, the probes, the exposition and the CLI; it
imports no sockets and no probe.  Who builds a :class:`PortSpec` applies the default protocol bindings
(:func:`exporter.probes.port_spec`), so the model never reaches into the probes' table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from exporter.services import service_name
from exporter.wire.epm import EpmEntry
from exporter.wire.kerberos import KdcRep, KrbError
from exporter.wire.mssqlr import SqlInstance
from exporter.wire.nbstat import NodeStatus
from exporter.wire.netlogon import NetlogonSamLogonResponseEx
from exporter.wire.rootdse import RootDSE
from exporter.wire.snmp import SnmpResponse
from exporter.wire.x509 import CertificateChecks, CertificateSummary

Protocol = Literal["tcp", "udp"]


#: How much of a bad value an error message shows (:func:`shown`): enough to recognise it, never a whole file.
SHOWN_CHARS = 48
_PORT_NUMBER = re.compile(r"[0-9]{1,5}")


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)``, cut to about ``limit`` characters (``'tcp/xxxx...'  (1000006 characters)``) for an error."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[:limit]}...{size}"


def parse_port_range(text: str) -> tuple[tuple[Protocol, ...], int, int]:
    """Parse ``tcp/389``, ``udp/389``, ``both/135`` or ``tcp/49152-49160`` without expanding the range.

    Ports are ASCII digits only (no sign, no ``_``, no other script's digits, no spaces inside): ``int()``'s
    wider syntax would make ``tcp/1_3`` port 13.

    Returns:
        ``(protocols, first, last)``: TCP before UDP for ``both``; ``first <= last``, both 1-65535.

    Raises:
        ValueError: with a message saying what is wrong (the value cut to :data:`SHOWN_CHARS`).
    """
    proto, sep, ports = text.strip().partition("/")
    proto = proto.lower()
    if not sep or proto not in ("tcp", "udp", "both"):
        raise ValueError(f"{shown(text)}: write PROTOCOL/PORT with PROTOCOL tcp, udp or both, e.g. 'tcp/389'")
    low_s, dash, high_s = ports.partition("-")
    if not _PORT_NUMBER.fullmatch(low_s) or (dash and not _PORT_NUMBER.fullmatch(high_s)):
        raise ValueError(f"{shown(text)}: port must be a number (digits 0-9) or a range START-END")
    low = int(low_s)
    high = int(high_s) if dash else low
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise ValueError(f"{shown(text)}: ports must be 1-65535")
    if high < low:
        raise ValueError(f"{shown(text)}: range end is below its start")
    protos: tuple[Protocol, ...] = ("tcp", "udp") if proto == "both" else (proto,)  # type: ignore[assignment]
    return protos, low, high


def count_ports(text: str) -> int:
    """How many ``(protocol, port)`` pairs the spec ``text`` names, without listing them.

    Raises:
        ValueError: as :func:`parse_port_range`.
    """
    protos, low, high = parse_port_range(text)
    return len(protos) * (high - low + 1)


def parse_port_spec(text: str) -> list[tuple[str, int]]:
    """Parse ``tcp/389``, ``udp/389``, ``both/135`` or ``tcp/49152-49160`` (:func:`parse_port_range`).

    Returns:
        ``[(protocol, port), ...]``, TCP before UDP for ``both``.

    Raises:
        ValueError: with a message saying what is wrong.
    """
    protos, low, high = parse_port_range(text)
    return [(p, port) for p in protos for port in range(low, high + 1)]


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One port of a target to probe.

    Attributes:
        protocol: ``"tcp"`` or ``"udp"``.
        port: 1-65535.
        service: the ``service`` label; empty means "look it up" (:func:`exporter.services.service_name`).
        binding: the protocol-aware probe to run (a key of :data:`exporter.probes.PROBES`), or ``""`` for none.
    """

    protocol: Protocol
    port: int
    service: str = ""
    binding: str = ""

    @property
    def service_label(self) -> str:
        """The service label, looked up when not configured."""
        return self.service or service_name(self.protocol, self.port)


@dataclass(frozen=True, slots=True)
class ProbeParams:
    """Protocol parameters of a target (hashable: the scheduler compares plans).

    Attributes:
        domain: AD DNS domain: the LDAP ping's DnsDomain, the Kerberos realm, the DNS probe's SOA; ``""`` = none.
        snmp_community: SNMP community string (PortQry ``-cn``).
        snmp_version: ``"v1"`` (RFC 1157) or ``"v2c"`` (RFC 1901).
        dns_query_name: the DNS probe's name; ``""`` = the domain's SOA, else PortQry's name.
        dns_query_type: the DNS probe's record type; ``""`` = SOA with a domain, else A.
        tls_ca_file: PEM file of the CAs TLS certificates are verified against; ``""`` = the system store.
    """

    domain: str = ""
    snmp_community: str = "public"
    snmp_version: Literal["v1", "v2c"] = "v2c"
    dns_query_name: str = ""
    dns_query_type: str = ""
    tls_ca_file: str = ""


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """How to probe (per target).

    Attributes:
        timeout_seconds: wait per try, seconds.
        tcp_tries: TCP connection attempts before FILTERED (PortQry: 3).
        udp_tries: unformatted datagrams before LISTENING or FILTERED (PortQry: 1).
        source_port: local source port of the state probe (PortQry ``-sp``), or ``None``.
        slow_link: double the UDP wait (PortQry ``-sl``).
        protocol_probes: run protocol-aware follow-ups at all.
        posture_checks: the security-posture checks (the ``smb`` negotiate on 445; the LDAP bind and StartTLS
            checks on tcp/389) are on.  The plan of a target with them off has dropped their bindings
            (:data:`exporter.probes.POSTURE_BINDINGS`), so those ports get the plain state probe; a probe with a
            posture step of its own (``ldap`` on tcp/389) reads this flag.
        udp_unformatted_first: on a UDP port with a protocol-aware probe, first send PortQry's unformatted
            datagram (the CLI does, for parity); when false the protocol query is the first datagram.
        params: protocol parameters.
    """

    timeout_seconds: float = 2.0
    tcp_tries: int = 3
    udp_tries: int = 1
    source_port: int | None = None
    slow_link: bool = False
    protocol_probes: bool = True
    posture_checks: bool = True
    udp_unformatted_first: bool = False
    params: ProbeParams = ProbeParams()

    @property
    def udp_timeout(self) -> float:
        """Seconds to wait for a UDP reply (doubled on a slow link)."""
        return self.timeout_seconds * (2 if self.slow_link else 1)

    @property
    def protocol_budget(self) -> float:
        """Seconds a protocol-aware follow-up may take: every try's wait, plus one more."""
        tries = max(self.tcp_tries, self.udp_tries, 1)
        return self.timeout_seconds * tries * (2 if self.slow_link else 1) + self.timeout_seconds


@dataclass(frozen=True, slots=True)
class DnsDetails:
    """A DNS reply, summarised (RFC 1035 section 4.1.1).

    Attributes:
        query_name: the name asked.
        query_type: the type asked (``SOA``, ``A``...).
        rcode: the reply's RCODE (0 NOERROR, 3 NXDOMAIN, 5 REFUSED...).
        rcode_text: its mnemonic.
        authoritative: the AA flag.
        answers: records in the answer section.
    """

    query_name: str
    query_type: str
    rcode: int
    rcode_text: str
    authoritative: bool
    answers: int


@dataclass(frozen=True, slots=True)
class TlsDetails:
    """What a TLS handshake showed.

    Attributes:
        version: negotiated protocol (``TLSv1.3``).
        cipher: negotiated cipher suite name.
        certificate: the server certificate, or ``None`` when it could not be parsed.
        checks: purpose, host name, chain depth, signature and key of the chain sent (``None``: unreadable).
        verified: the chain verifies against ``trust_store`` (``None``: not checked).
        verify_error: why not, in OpenSSL's words, or ``""``.
        trust_store: the CA file verified against, or ``"system"``.
    """

    version: str
    cipher: str
    certificate: CertificateSummary | None
    checks: CertificateChecks | None = None
    verified: bool | None = None
    verify_error: str = ""
    trust_store: str = ""


@dataclass(frozen=True, slots=True)
class LdapDetails:
    """What the LDAP server told us (RFC 4511 rootDSE; over UDP also the MS-ADTS 6.3.3 LDAP ping).

    Attributes:
        root_dse: the parsed rootDSE.
        clock_offset_seconds: DC currentTime minus our clock at the reply, seconds (``None`` without currentTime).
        netlogon: the LDAP ping's parsed Netlogon reply (UDP only), or ``None``.
        ping_domain: the DnsDomain the ping asked about ("" when no ping was sent).
        ping_error: why the LDAP ping gave no Netlogon reply, or "".
    """

    root_dse: RootDSE
    clock_offset_seconds: float | None
    netlogon: NetlogonSamLogonResponseEx | None = None
    ping_domain: str = ""
    ping_error: str = ""


@dataclass(frozen=True, slots=True)
class LdapBindCheck:
    """A simple bind with a made-up DN and password over plain LDAP (RFC 4511 4.2), meant to fail.

    Attributes:
        dn: the made-up DN sent (``cn=portqry-posture-check-<random>,dc=invalid``; the password, random per
            probe too, is never kept).
        result_code: the BindResponse resultCode (8 strongerAuthRequired: plain-text binds refused; 49
            invalidCredentials: the password would be checked), ``None`` when the check could not finish.
        result_name: its RFC 4511 name, or ``""``.
        diagnostic_message: the server's diagnosticMessage (``""`` if none).
        error: why the check could not finish, or ``""``.
    """

    dn: str
    result_code: int | None
    result_name: str = ""
    diagnostic_message: str = ""
    error: str = ""

    @property
    def plaintext_refused(self) -> bool | None:
        """Whether the server refuses simple binds over plain LDAP (``strongerAuthRequired``); ``None``: unknown."""
        return None if self.result_code is None else self.result_code == 8


@dataclass(frozen=True, slots=True)
class StartTlsCheck:
    """A StartTLS extended request over plain LDAP (RFC 4511 4.14), and the TLS upgrade after a success.

    Attributes:
        result_code: the ExtendedResponse resultCode (0 success; 2 protocolError or 52 unavailable from a server
            without StartTLS), ``None`` when the check could not finish.
        result_name: its RFC 4511 name, or ``""``.
        diagnostic_message: the server's diagnosticMessage (``""`` if none).
        error: why the check could not finish, or ``""``.
        tls_error: why the TLS handshake after a success failed (then no ``starttls`` certificate details), or
            ``""``.
    """

    result_code: int | None
    result_name: str = ""
    diagnostic_message: str = ""
    error: str = ""
    tls_error: str = ""

    @property
    def supported(self) -> bool | None:
        """Whether StartTLS works: a success and then a TLS handshake; ``None``: the check could not finish.

        A success answered and then a reset handshake is not StartTLS (Samba with ``tls enabled = no`` does this):
        a client asking for it gets no TLS either.
        """
        return None if self.result_code is None else self.result_code == 0 and not self.tls_error


@dataclass(frozen=True, slots=True)
class DynamicPort:
    """A dynamic ``ncacn_ip_tcp`` port from an endpoint-mapper dump and what a TCP probe of it found.

    Attributes:
        port: the TCP port.
        interfaces: names (or ``UUID vX.Y``) of the interfaces registered on it.
        state: the port state's label word (``listening``...).
        reason: the reason's label word.
    """

    port: int
    interfaces: tuple[str, ...]
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class RpcDetails:
    """An endpoint-mapper dump (MS-RPCE 2.2.1.2.5 ``ept_lookup``).

    Attributes:
        via: ``tcp`` or ``udp``: the transport of the dump.
        entries: every entry, in server order.
        protocol_sequence_counts: entries per protocol sequence (``ncacn_ip_tcp``: 36, ...).
        dynamic_ports: the probed ``ncacn_ip_tcp`` ports (TCP dumps only).
        pages: ``ept_lookup`` calls answered.
        status: a fault / reject status that ended the dump, or ``None``.
        status_name: its name (``nca_s_fault_access_denied``...).
    """

    via: str
    entries: tuple[EpmEntry, ...]
    protocol_sequence_counts: Mapping[str, int]
    dynamic_ports: tuple[DynamicPort, ...] = ()
    pages: int = 0
    status: int | None = None
    status_name: str = ""

    @property
    def total(self) -> int:
        """Endpoints found."""
        return len(self.entries)


@dataclass(frozen=True, slots=True)
class SmbDetails:
    """What an SMB negotiate told us, without a session setup (MS-SMB2 2.2.4, MS-CIFS 2.2.4.52.2, RFC 4178).

    Attributes:
        dialect: the dialect negotiated: ``"3.1.1"``, ``"3.0.2"``, ``"3.0"``, ``"2.1"``, ``"2.0.2"`` or
            ``"NT LM 0.12"`` (SMB1).
        signing_enabled: the server's SecurityMode has signing enabled.
        signing_required: ... signing required (``SMB2_NEGOTIATE_SIGNING_REQUIRED``).
        smb1_enabled: whether a negotiate offering only ``NT LM 0.12`` was accepted; ``None`` when that
            check could not finish (see ``smb1_note``).
        smb1_note: why SMB1 counts as refused, or why the check could not finish (``""`` when accepted).
        auth_mechanisms: the SPNEGO mechanisms offered (``NTLMSSP``, ``Kerberos``, ``MS-Kerberos`` ...,
            an unknown one as its OID), in the server's order.
        auth_error: why the negotiate's SPNEGO token could not be decoded, or ``""``.
    """

    dialect: str
    signing_enabled: bool
    signing_required: bool
    smb1_enabled: bool | None
    smb1_note: str = ""
    auth_mechanisms: tuple[str, ...] = ()
    auth_error: str = ""


@dataclass(frozen=True, slots=True)
class KdcClock:
    """The KDC's clock against ours, from a KRB-ERROR's ``stime``/``susec`` (RFC 4120 5.9.1).

    Attributes:
        offset_seconds: KDC time minus ours at the middle of the exchange (request sent + half the round
            trip), seconds; the reading is good to +- half the round trip.
        round_trip_seconds: request sent to reply received, seconds.
    """

    offset_seconds: float
    round_trip_seconds: float


#: What one protocol-aware probe keeps, under its binding's key in ``ProbeResult.details`` (``"ldap"``, ``"tls"``,
#: ``"rpc"``, ``"dns"``, ``"kerberos"``, ``"netbios"``, ``"snmp"``, ``"mssql"``, ``"smb"``; the Kerberos probe
#: adds ``"kerberos_clock"``, the LDAP probe on tcp/389 its posture checks ``"ldap_bind"``, ``"ldap_starttls"``
#: and the StartTLS certificate ``"starttls"`` (a :class:`TlsDetails`)).
Detail = (
    LdapDetails
    | LdapBindCheck
    | StartTlsCheck
    | TlsDetails
    | RpcDetails
    | DnsDetails
    | KrbError
    | KdcRep
    | NodeStatus
    | SnmpResponse
    | SmbDetails
    | KdcClock
    | tuple[SqlInstance, ...]
)


@dataclass(frozen=True, slots=True)
class DiscoveredDC:
    """A domain controller found in DNS and asked by the LDAP ping (MS-ADTS 6.3.6 DC locator, 6.3.3 ping).

    Attributes:
        host: the SRV target, lower-case without the trailing dot: the DC's ``target`` label.
        priority: SRV priority (lower first).
        weight: SRV weight.
        address: the address the ping went to, ``""`` when the name did not resolve.
        site: the DC's ``DcSiteName``, ``""`` without a ping reply.
        client_site: ``ClientSiteName``: the site the DC puts the exporter in (``""`` when none).
        roles: DS_FLAG names set (``pdc``, ``gc``, ``kdc``, ``timeserv``, ``writable``, ``closest`` ...).
        error: why the ping gave no reply, or ``""``.
    """

    host: str
    priority: int
    weight: int
    address: str = ""
    site: str = ""
    client_site: str = ""
    roles: frozenset[str] = frozenset()
    error: str = ""


@dataclass(frozen=True, slots=True)
class DomainState:
    """What the exporter knows of one ``[[domains]]`` entry: its latest discovery and its last good DC list.

    Attributes:
        domain: the AD DNS domain.
        ok: whether the latest discovery succeeded.
        last_success: Unix time of the latest successful discovery (0 before the first).
        dcs: the last good DC list, in SRV order (never emptied by a failed discovery).
        min_reachable_dcs: the config's threshold, exported for the alert.
        error: why the latest discovery failed, or ``""``.
    """

    domain: str
    ok: bool
    last_success: float
    dcs: tuple[DiscoveredDC, ...]
    min_reachable_dcs: int
    error: str = ""

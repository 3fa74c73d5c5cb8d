"""Protocol details and domains -> metric families (endpoint mapper, rootDSE, DC roles, TLS, discovery, ...).

Each protocol-aware probe stores its parsed findings in ``ProbeResult.details[binding]`` as one of the
:data:`exporter.model.Detail` dataclasses, and each ``[[domains]]`` entry its discovery as a
:class:`~exporter.model.DomainState`; this module is the only place that turns them into ``portqry_*``
families (see the README's metric reference).  Every per-target series carries ``address``, ``domain`` and
``site``, so two addresses of one DC never collide.  Families are yielded even when empty, so that their
HELP and TYPE are always visible.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from exporter.model import (
    DnsDetails,
    DomainState,
    KdcClock,
    LdapBindCheck,
    LdapDetails,
    RpcDetails,
    SmbDetails,
    StartTlsCheck,
    TlsDetails,
)
from exporter.result import ProbeResult
from exporter.wire.kerberos import KrbError
from exporter.wire.netlogon import DS_FLAG_NAMES
from exporter.wire.spnego import MECHANISM_NAMES

_SCHEDULE = "From the latest protocol-aware probe of the schedule, not from the scrape."
_WHERE = ["target", "address", "protocol", "port", "domain", "site"]
_AT = ["target", "address", "port", "domain", "site"]
#: The mechanisms every SMB result exports, 1 offered or 0 not (others the server names are added with 1).
_MECHANISMS = tuple(MECHANISM_NAMES.values())


def _gauge(name: str, help_text: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, f"{help_text} {_SCHEDULE}", labels=labels)


def detail_families(
    results: Iterable[ProbeResult],
    labels: Mapping[str, tuple[str, str]] | None = None,
    domains: Mapping[str, DomainState] | None = None,
) -> Iterator[Metric]:
    """Yield the protocol-detail and domain families.

    Args:
        results: the latest results.
        labels: per target, its ``(domain, site)`` labels.
        domains: per ``[[domains]]`` entry, its discovery state.
    """
    labels = labels or {}
    domains = domains or {}
    ident = ["target", "address", "domain", "site"]
    rpc_endpoints = _gauge(
        "portqry_rpc_endpoints",
        "Endpoints registered in the RPC endpoint mapper, by protocol sequence; via = the dump's transport.",
        [*ident, "via", "protocol_sequence"],
    )
    rpc_reachable = _gauge(
        "portqry_rpc_endpoint_reachable",
        "1 when a dynamic ncacn_ip_tcp port from the endpoint mapper accepted a TCP connection on the queried "
        "address, else 0.",
        [*ident, "interface", "port"],
    )
    root_dse = InfoMetricFamily(
        "portqry_ldap_root_dse",
        f"The rootDSE of the LDAP server (RFC 4511, MS-ADTS 3.1.1.3.2). {_SCHEDULE}",
        labels=_WHERE,
    )
    usn = _gauge("portqry_ldap_highest_committed_usn", "rootDSE highestCommittedUSN.", _WHERE)
    synced = _gauge("portqry_ldap_synchronized", "rootDSE isSynchronized (1 TRUE, 0 FALSE).", _WHERE)
    gc_ready = _gauge("portqry_ldap_global_catalog_ready", "rootDSE isGlobalCatalogReady (1 TRUE, 0 FALSE).", _WHERE)
    clock = _gauge(
        "portqry_ldap_clock_offset_seconds",
        "DC currentTime minus the exporter's clock at the reply, seconds (Kerberos fails beyond 300).",
        _WHERE,
    )
    role = _gauge(
        "portqry_dc_role",
        "MS-ADTS 6.3.1.2 DS_FLAG roles from the LDAP ping (pdc, gc, kdc, timeserv, writable, closest ...), 1 when set.",
        ["domain", "site", "target", "role"],
    )
    client_site = _gauge(
        "portqry_client_site_info",
        "Always 1: the site (ClientSiteName) that the DC says the exporter is in, from the LDAP ping.",
        ["domain", "target", "site"],
    )
    rcode = _gauge("portqry_dns_rcode", "RCODE of the DNS reply (0 NOERROR, 3 NXDOMAIN, 5 REFUSED).", _WHERE)
    not_after = _gauge(
        "portqry_tls_cert_not_after_timestamp_seconds",
        "notAfter of the server certificate, Unix time.",
        ["target", "address", "port", "domain", "site", "subject", "issuer"],
    )
    krb = _gauge(
        "portqry_kerberos_error_code",
        "error-code of the KRB-ERROR answering our AS-REQ (RFC 4120 7.5.9; 6 = C_PRINCIPAL_UNKNOWN).",
        _WHERE,
    )
    kdc_clock = _gauge(
        "portqry_kerberos_clock_offset_seconds",
        "KDC time (KRB-ERROR stime/susec) minus the exporter's clock at the middle of the exchange, seconds "
        "(Kerberos fails beyond 300).",
        _WHERE,
    )
    tls_certs = _TlsFamilies()
    smb = _SmbFamilies()
    ldap_posture = _LdapPostureFamilies()
    pinged: set[str] = set()
    # A target may bind `rpc` to more than one port: the first dump wins per label set, so that no scrape
    # ever carries a duplicate series (Prometheus rejects such a scrape).
    rpc_seen: set[tuple[str, ...]] = set()
    for r in results:
        domain, site = labels.get(r.target, ("", ""))
        where = [r.target, r.address, r.protocol, str(r.port), domain, site]
        who = [r.target, r.address, domain, site]
        at = [r.target, r.address, str(r.port), domain, site]
        rpc = r.details.get("rpc")
        if isinstance(rpc, RpcDetails):
            for seq, count in sorted(rpc.protocol_sequence_counts.items()):
                key: tuple[str, ...] = ("endpoints", *who, seq)
                if key not in rpc_seen:
                    rpc_seen.add(key)
                    rpc_endpoints.add_metric([*who, rpc.via, seq], float(count))
            for dyn in rpc.dynamic_ports:
                for interface in dyn.interfaces:
                    key = ("reachable", *who, interface, str(dyn.port))
                    if key not in rpc_seen:
                        rpc_seen.add(key)
                        rpc_reachable.add_metric(
                            [*who, interface, str(dyn.port)], 1.0 if dyn.state == "listening" else 0.0
                        )
        ldap = r.details.get("ldap")
        if isinstance(ldap, LdapDetails):
            dse = ldap.root_dse
            root_dse.add_metric(
                where,
                {
                    "dns_host_name": dse.dns_host_name or "",
                    "default_naming_context": dse.default_naming_context or "",
                    "server_name": dse.server_name or "",
                    "domain_functionality": _text(dse.domain_functionality),
                    "forest_functionality": _text(dse.forest_functionality),
                    "domain_controller_functionality": _text(dse.domain_controller_functionality),
                },
            )
            if dse.highest_committed_usn is not None:
                usn.add_metric(where, float(dse.highest_committed_usn))
            if dse.is_synchronized is not None:
                synced.add_metric(where, 1.0 if dse.is_synchronized else 0.0)
            if dse.is_global_catalog_ready is not None:
                gc_ready.add_metric(where, 1.0 if dse.is_global_catalog_ready else 0.0)
            if ldap.clock_offset_seconds is not None:
                clock.add_metric(where, float(ldap.clock_offset_seconds))
            ping = ldap.netlogon
            if ping is not None and r.target not in pinged:
                pinged.add(r.target)
                for name in DS_FLAG_NAMES:
                    role.add_metric([domain, site, r.target, name], 1.0 if name in ping.flags else 0.0)
                client_site.add_metric([domain, r.target, ping.client_site_name], 1.0)
        dns = r.details.get("dns")
        if isinstance(dns, DnsDetails):
            rcode.add_metric(where, float(dns.rcode))
        for tls_key in ("tls", "starttls"):  # 636/3269 and the like, and the StartTLS upgrade of 389: the port tells
            tls = r.details.get(tls_key)
            if not isinstance(tls, TlsDetails):
                continue
            if tls.certificate is not None:
                cert = tls.certificate
                not_after.add_metric([*at, cert.subject, cert.issuer], cert.not_after.timestamp())
            tls_certs.add(at, tls)
        ldap_posture.add(at, r.details.get("ldap_bind"), r.details.get("ldap_starttls"))
        kerberos = r.details.get("kerberos")
        if isinstance(kerberos, KrbError):
            krb.add_metric(where, float(kerberos.error_code))
        kdc = r.details.get("kerberos_clock")
        if isinstance(kdc, KdcClock):
            kdc_clock.add_metric(where, kdc.offset_seconds)
        negotiate = r.details.get("smb")
        if isinstance(negotiate, SmbDetails):
            smb.add(at, negotiate)
    yield from (rpc_endpoints, rpc_reachable, root_dse, usn, synced, gc_ready, clock)
    yield from domain_families(domains, role, client_site, pinged)
    yield from (rcode, not_after, *tls_certs.families(), krb, kdc_clock)
    yield from smb.families()
    yield from ldap_posture.families()


class _TlsFamilies:
    """The certificate families beside ``portqry_tls_cert_not_after_timestamp_seconds`` (RFC 5280, RFC 6125)."""

    def __init__(self) -> None:
        self.not_before = _gauge(
            "portqry_tls_cert_not_before_timestamp_seconds",
            "notBefore of the server certificate, Unix time.",
            [*_AT, "subject", "issuer"],
        )
        self.server_auth = _gauge(
            "portqry_tls_cert_server_auth",
            "1 when the server certificate may serve TLS server authentication: no extendedKeyUsage (any "
            "purpose), or serverAuth or anyExtendedKeyUsage in it (RFC 5280 4.2.1.12); else 0.",
            _AT,
        )
        self.name_match = _gauge(
            "portqry_tls_cert_name_match",
            "1 when the server certificate names the probed host (subjectAltName, RFC 6125; the CN only without "
            "a DNS name in subjectAltName), else 0.",
            _AT,
        )
        self.verified = _gauge(
            "portqry_tls_cert_verified",
            "1 when the chain the server sent verifies against the trusted CAs (tls_ca_file, else the system "
            "store): path, signatures, dates (OpenSSL, in memory); else 0.",
            _AT,
        )
        self.info = _gauge(
            "portqry_tls_cert_info",
            "Always 1: chain depth as sent, the leaf's signature algorithm, key type and key size in bits.",
            [*_AT, "chain_depth", "signature_algorithm", "key_type", "key_size"],
        )

    def add(self, at: list[str], tls: TlsDetails) -> None:
        """Add one TLS result's series; ``at`` = target, address, port, domain, site."""
        cert, checks = tls.certificate, tls.checks
        if cert is not None:
            self.not_before.add_metric([*at, cert.subject, cert.issuer], cert.not_before.timestamp())
        if checks is not None:
            self.server_auth.add_metric(at, 1.0 if checks.server_auth else 0.0)
            if checks.name_match is not None:
                self.name_match.add_metric(at, 1.0 if checks.name_match else 0.0)
            depth, size = str(checks.chain_depth), str(checks.key_size)
            self.info.add_metric([*at, depth, checks.signature_algorithm, checks.key_type, size], 1.0)
        if tls.verified is not None:
            self.verified.add_metric(at, 1.0 if tls.verified else 0.0)

    def families(self) -> tuple[GaugeMetricFamily, ...]:
        """The five families, in the README's order."""
        return (self.not_before, self.server_auth, self.name_match, self.verified, self.info)


class _SmbFamilies:
    """The ``portqry_smb_*`` families: what an SMB negotiate showed (MS-SMB2 2.2.4, RFC 4178)."""

    def __init__(self) -> None:
        self.dialect = _gauge(
            "portqry_smb_dialect_info",
            "Always 1: the SMB dialect the server negotiated (3.1.1, 3.0.2, 3.0, 2.1, 2.0.2, or NT LM 0.12 = SMB1).",
            [*_AT, "dialect"],
        )
        self.signing = _gauge(
            "portqry_smb_signing_required",
            "1 when the SMB negotiate response says signing is required (SecurityMode), else 0.",
            _AT,
        )
        self.smb1 = _gauge(
            "portqry_smb1_enabled",
            "1 when a negotiate offering only SMB1 (NT LM 0.12) was accepted, 0 when refused; absent when unknown.",
            _AT,
        )
        self.mechanism = _gauge(
            "portqry_smb_auth_mechanism",
            "1 when the SMB negotiate's SPNEGO token offers the authentication mechanism, else 0.",
            [*_AT, "mechanism"],
        )

    def add(self, at: list[str], smb: SmbDetails) -> None:
        """Add one SMB result's series; ``at`` = target, address, port, domain, site."""
        self.dialect.add_metric([*at, smb.dialect], 1.0)
        self.signing.add_metric(at, 1.0 if smb.signing_required else 0.0)
        if smb.smb1_enabled is not None:
            self.smb1.add_metric(at, 1.0 if smb.smb1_enabled else 0.0)
        if smb.auth_error:
            return
        for name in (*_MECHANISMS, *(m for m in smb.auth_mechanisms if m not in _MECHANISMS)):
            self.mechanism.add_metric([*at, name], 1.0 if name in smb.auth_mechanisms else 0.0)

    def families(self) -> tuple[GaugeMetricFamily, ...]:
        """The four families, in the README's order."""
        return (self.dialect, self.signing, self.smb1, self.mechanism)


class _LdapPostureFamilies:
    """The LDAP transport-rule families of tcp/389 (RFC 4511 4.2 simple bind, 4.14 StartTLS)."""

    def __init__(self) -> None:
        self.bind_refused = _gauge(
            "portqry_ldap_plaintext_bind_refused",
            "1 when a simple bind over plain LDAP with a made-up DN and password got strongerAuthRequired (8: "
            "plain-text binds refused), 0 for any other result code (49 invalidCredentials: the password would be "
            "checked); absent when the check could not finish.",
            _AT,
        )
        self.starttls = _gauge(
            "portqry_ldap_starttls_supported",
            "1 when the StartTLS extended request (1.3.6.1.4.1.1466.20037) got success, 0 for any other result "
            "code; absent when the check could not finish.  Its certificate is in the portqry_tls_cert_* families "
            "with this port label (389).",
            _AT,
        )

    def add(self, at: list[str], bind: object, starttls: object) -> None:
        """Add one tcp/389 result's series; ``at`` = target, address, port, domain, site."""
        if isinstance(bind, LdapBindCheck) and bind.plaintext_refused is not None:
            self.bind_refused.add_metric(at, 1.0 if bind.plaintext_refused else 0.0)
        if isinstance(starttls, StartTlsCheck) and starttls.supported is not None:
            self.starttls.add_metric(at, 1.0 if starttls.supported else 0.0)

    def families(self) -> tuple[GaugeMetricFamily, ...]:
        """The two families, in the README's order."""
        return (self.bind_refused, self.starttls)


def domain_families(
    domains: Mapping[str, DomainState],
    role: GaugeMetricFamily,
    client_site: GaugeMetricFamily,
    pinged: set[str],
) -> Iterator[Metric]:
    """The ``portqry_domain_*`` families, and the roles and client site of DCs whose own probes had no LDAP ping.

    A DC's roles and client site come from the LDAP ping of its ``udp/389`` probe when it has one (every
    round), else from the discovery's ping (every rediscovery): one source per DC, never both.
    """
    found = GaugeMetricFamily(
        "portqry_domain_controllers",
        "DCs listed in the domain's SRV records at the last good discovery, by the site each says it is in.",
        labels=["domain", "site"],
    )
    success = GaugeMetricFamily(
        "portqry_domain_discovery_success",
        "1 when the latest reading of the domain's SRV records succeeded (a failure keeps the last good DC list).",
        labels=["domain"],
    )
    last = GaugeMetricFamily(
        "portqry_domain_discovery_last_timestamp_seconds",
        "Unix time of the latest successful discovery of the domain's DCs.",
        labels=["domain"],
    )
    minimum = GaugeMetricFamily(
        "portqry_domain_min_reachable_dcs",
        "The configured min_reachable_dcs of the domain (for the too-few-DCs alert).",
        labels=["domain"],
    )
    for name, state in sorted(domains.items()):
        for site, count in sorted(Counter(dc.site for dc in state.dcs).items()):
            found.add_metric([name, site], float(count))
        success.add_metric([name], 1.0 if state.ok else 0.0)
        last.add_metric([name], state.last_success)
        minimum.add_metric([name], float(state.min_reachable_dcs))
        for dc in state.dcs:
            if dc.host in pinged or not (dc.roles or dc.client_site):
                continue
            pinged.add(dc.host)
            for flag in DS_FLAG_NAMES:
                role.add_metric([name, dc.site, dc.host, flag], 1.0 if flag in dc.roles else 0.0)
            client_site.add_metric([name, dc.host, dc.client_site], 1.0)
    yield from (role, client_site, found, success, last, minimum)


def _text(value: object) -> str:
    return "" if value is None else str(value)

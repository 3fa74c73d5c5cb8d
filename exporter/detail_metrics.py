"""Protocol details -> metric families (endpoint-mapper counts, rootDSE, LDAP ping flags, TLS, ...).

Each protocol-aware probe stores its parsed findings in ``ProbeResult.details[binding]`` as one of the
:data:`exporter.model.Detail` dataclasses; this module is the only place that turns them into ``portqry_*``
families (see the README's metric reference).  Families are yielded even when empty, so that their HELP and
TYPE are always visible.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from exporter.model import DnsDetails, LdapDetails, RpcDetails, TlsDetails
from exporter.result import ProbeResult
from exporter.wire.kerberos import KrbError
from exporter.wire.netlogon import DS_FLAG_NAMES

_SCHEDULE = "From the latest protocol-aware probe of the schedule, not from the scrape."


def detail_families(results: Iterable[ProbeResult]) -> Iterator[Metric]:
    """Yield the protocol-detail families built from the latest results."""
    rpc_endpoints = GaugeMetricFamily(
        "portqry_rpc_endpoints",
        "Endpoints registered in the RPC endpoint mapper, by protocol sequence; via = the dump's transport. "
        f"{_SCHEDULE}",
        labels=["target", "via", "protocol_sequence"],
    )
    rpc_reachable = GaugeMetricFamily(
        "portqry_rpc_endpoint_reachable",
        "1 when a dynamic ncacn_ip_tcp port from the endpoint mapper accepted a TCP connection on the queried "
        f"address, else 0. {_SCHEDULE}",
        labels=["target", "address", "interface", "port"],
    )
    root_dse = InfoMetricFamily(
        "portqry_ldap_root_dse",
        f"The rootDSE of the LDAP server (RFC 4511, MS-ADTS 3.1.1.3.2). {_SCHEDULE}",
        labels=["target", "protocol", "port"],
    )
    usn = GaugeMetricFamily(
        "portqry_ldap_highest_committed_usn",
        f"rootDSE highestCommittedUSN. {_SCHEDULE}",
        labels=["target", "protocol", "port"],
    )
    synced = GaugeMetricFamily(
        "portqry_ldap_synchronized",
        f"rootDSE isSynchronized (1 TRUE, 0 FALSE). {_SCHEDULE}",
        labels=["target", "protocol", "port"],
    )
    gc_ready = GaugeMetricFamily(
        "portqry_ldap_global_catalog_ready",
        f"rootDSE isGlobalCatalogReady (1 TRUE, 0 FALSE). {_SCHEDULE}",
        labels=["target", "protocol", "port"],
    )
    clock = GaugeMetricFamily(
        "portqry_ldap_clock_offset_seconds",
        f"DC currentTime minus the exporter's clock at the reply, seconds (Kerberos fails beyond 300). {_SCHEDULE}",
        labels=["target", "protocol", "port"],
    )
    dc_flag = GaugeMetricFamily(
        "portqry_netlogon_dc_flag",
        f"MS-ADTS DS_FLAG bits from the LDAP ping (Netlogon attribute), 1 when set. {_SCHEDULE}",
        labels=["target", "flag"],
    )
    rcode = GaugeMetricFamily(
        "portqry_dns_rcode",
        f"RCODE of the DNS reply (0 NOERROR, 3 NXDOMAIN, 5 REFUSED). {_SCHEDULE}",
        labels=["target", "protocol", "port"],
    )
    not_after = GaugeMetricFamily(
        "portqry_tls_cert_not_after_timestamp_seconds",
        f"notAfter of the server certificate, Unix time. {_SCHEDULE}",
        labels=["target", "port", "subject", "issuer"],
    )
    krb = GaugeMetricFamily(
        "portqry_kerberos_error_code",
        f"error-code of the KRB-ERROR answering our AS-REQ (RFC 4120 7.5.9; 6 = C_PRINCIPAL_UNKNOWN). {_SCHEDULE}",
        labels=["target", "protocol", "port"],
    )
    flags_done: set[str] = set()
    # A target may bind `rpc` to more than one port: the first dump wins per label set, so that no scrape
    # ever carries a duplicate series (Prometheus rejects such a scrape).
    rpc_seen: set[tuple[str, ...]] = set()
    for r in results:
        where = [r.target, r.protocol, str(r.port)]
        rpc = r.details.get("rpc")
        if isinstance(rpc, RpcDetails):
            for seq, count in sorted(rpc.protocol_sequence_counts.items()):
                labels: tuple[str, ...] = (r.target, r.protocol, seq)
                if labels not in rpc_seen:
                    rpc_seen.add(labels)
                    rpc_endpoints.add_metric(list(labels), float(count))
            for dyn in rpc.dynamic_ports:
                for interface in dyn.interfaces:
                    labels = ("reachable", r.target, r.address, interface, str(dyn.port))
                    if labels not in rpc_seen:
                        rpc_seen.add(labels)
                        rpc_reachable.add_metric(list(labels[1:]), 1.0 if dyn.state == "listening" else 0.0)
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
            if ldap.netlogon is not None and r.target not in flags_done:
                flags_done.add(r.target)
                for name in DS_FLAG_NAMES:
                    dc_flag.add_metric([r.target, name], 1.0 if name in ldap.netlogon.flags else 0.0)
        dns = r.details.get("dns")
        if isinstance(dns, DnsDetails):
            rcode.add_metric(where, float(dns.rcode))
        tls = r.details.get("tls")
        if isinstance(tls, TlsDetails) and tls.certificate is not None:
            cert = tls.certificate
            not_after.add_metric([r.target, str(r.port), cert.subject, cert.issuer], cert.not_after.timestamp())
        kerberos = r.details.get("kerberos")
        if isinstance(kerberos, KrbError):
            krb.add_metric(where, float(kerberos.error_code))
    yield from (
        rpc_endpoints,
        rpc_reachable,
        root_dse,
        usn,
        synced,
        gc_ready,
        clock,
        dc_flag,
        rcode,
        not_after,
        krb,
    )


def _text(value: object) -> str:
    return "" if value is None else str(value)

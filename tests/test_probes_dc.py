"""Protocol-aware probes against the real Samba AD DC in its namespace."""

from __future__ import annotations

import asyncio
import subprocess

from exporter.engine import Engine
from exporter.model import PortSpec, ProbeOptions, ProbeParams
from exporter.probes import port_spec
from exporter.resolve import Resolver
from exporter.states import PortState, Reason
from tests import testbed

OPTS = ProbeOptions(timeout_seconds=2.0)


def engine(dc: testbed.SambaDC) -> Engine:
    return Engine(udp_pacing_seconds=0.0, resolver=Resolver([dc.address], timeout=3.0))


async def probe(dc: testbed.SambaDC, *specs: PortSpec, options: ProbeOptions = OPTS):  # type: ignore[no-untyped-def]
    return await engine(dc).probe_target("dc1", dc.fqdn, list(specs), options)


def rpcclient_epm_count(dc: testbed.SambaDC) -> int:
    """Endpoint count from an independent source: Samba's own rpcclient epmlookup over ncacn_ip_tcp."""
    out = subprocess.run(  # exit codes are asserted below
        ["rpcclient", "-U%", "-N", f"ncacn_ip_tcp:{dc.address}", "-c", "epmlookup"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert lines, out.stderr
    return len(lines)


async def test_rpc_tcp_dump_and_dynamic_ports(dc: testbed.SambaDC) -> None:
    [result] = await probe(dc, port_spec("tcp", 135))
    assert (result.state, result.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), result.error
    rpc = result.details["rpc"]
    assert rpc.via == "tcp" and rpc.total > 20
    assert sum(rpc.protocol_sequence_counts.values()) == rpc.total
    assert {"ncacn_ip_tcp", "ncacn_np"} <= set(rpc.protocol_sequence_counts)
    assert rpc.total == rpcclient_epm_count(dc)
    ports = {e.port for e in rpc.entries if e.protocol_sequence == "ncacn_ip_tcp"} - {135}
    assert ports and {d.port for d in rpc.dynamic_ports} == ports
    assert min(ports) >= 1024
    assert all(d.state == "listening" for d in rpc.dynamic_ports)
    assert any(
        "DRS" in " ".join(d.interfaces) or "drsuapi" in " ".join(d.interfaces).lower() for d in rpc.dynamic_ports
    )


async def test_ldap_udp_moves_from_listening_or_filtered_to_listening(dc: testbed.SambaDC) -> None:
    [raw] = await probe(dc, port_spec("udp", 389, binding=""))  # no protocol query: PortQry's first step
    assert raw.state is PortState.LISTENING_OR_FILTERED
    [result] = await probe(dc, port_spec("udp", 389))
    assert (result.state, result.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), result.error
    ldap = result.details["ldap"]
    assert ldap.root_dse.dns_host_name.lower() == dc.fqdn
    assert ldap.root_dse.default_naming_context.lower() == dc.base_dn.lower()
    assert abs(ldap.clock_offset_seconds) < 5  # same machine, same clock
    assert ldap.netlogon is not None, ldap.ping_error
    assert ldap.ping_domain == ""  # no domain configured: the ping asks NtVer only and the DC names its own
    assert {"gc", "ldap", "kdc", "pdc", "writable"} <= ldap.netlogon.flags
    assert ldap.netlogon.dc_site_name == "Default-First-Site-Name"
    assert ldap.netlogon.dns_domain_name.lower() == dc.dns_domain


async def test_ldap_tcp_gc_and_ldaps(dc: testbed.SambaDC) -> None:
    tcp, gc, ldaps, gcs = await probe(
        dc, port_spec("tcp", 389), port_spec("tcp", 3268), port_spec("tcp", 636), port_spec("tcp", 3269)
    )
    for r in (tcp, gc, ldaps, gcs):
        assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), (r.port, r.error)
        assert r.details["ldap"].root_dse.dns_host_name.lower() == dc.fqdn
    assert tcp.details["ldap"].root_dse.is_global_catalog_ready is True
    assert tcp.details["ldap"].root_dse.highest_committed_usn > 0
    for r in (ldaps, gcs):
        cert = r.details["tls"].certificate
        assert cert is not None and f"CN={dc.fqdn}".lower() in cert.subject.lower()
        assert cert.not_after.timestamp() > cert.not_before.timestamp()


async def test_kerberos_udp_and_tcp_answer_with_krb_error(dc: testbed.SambaDC) -> None:
    udp, tcp = await probe(dc, port_spec("udp", 88), port_spec("tcp", 88))
    for r in (udp, tcp):
        assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), r.error
        assert r.details["kerberos"].error_code == 6  # KDC_ERR_C_PRINCIPAL_UNKNOWN
        assert r.details["kerberos"].realm == dc.realm


async def test_kerberos_clock_offset_of_the_dc(dc: testbed.SambaDC) -> None:
    """Same machine, same clock: the KDC's stime/susec against ours is within a second, beside rootDSE's."""
    udp, tcp, ldap = await probe(dc, port_spec("udp", 88), port_spec("tcp", 88), port_spec("tcp", 389))
    for r in (udp, tcp):
        assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), r.error
        clock = r.details["kerberos_clock"]
        assert abs(clock.offset_seconds) < 1.0, clock
        assert 0 < clock.round_trip_seconds < 2.0
        assert r.details["kerberos"].susec == r.details["kerberos"].stime.microsecond
    assert abs(ldap.details["ldap"].clock_offset_seconds) < 2  # currentTime has whole seconds


async def test_netbios_node_status_names(dc: testbed.SambaDC) -> None:
    # Samba registers DC1/PQTEST about 2 s after it starts serving: ask again, bounded, until they are there
    for _ in range(20):
        [r] = await probe(dc, port_spec("udp", 137))
        assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), r.error
        names = {(n.name.strip(), n.suffix) for n in r.details["netbios"].names}
        if ("DC1", 0x00) in names:
            break
        await asyncio.sleep(0.5)
    assert ("DC1", 0x00) in names and ("DC1", 0x20) in names
    assert (dc.domain, 0x00) in names


async def test_dns_udp_and_tcp(dc: testbed.SambaDC) -> None:
    options = ProbeOptions(timeout_seconds=2.0, params=ProbeParams(domain=dc.dns_domain))
    udp, tcp = await probe(dc, port_spec("udp", 53), port_spec("tcp", 53), options=options)
    for r in (udp, tcp):
        assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), r.error
        dns = r.details["dns"]
        assert (dns.query_type, dns.rcode, dns.authoritative) == ("SOA", 0, True)
        assert dns.query_name.rstrip(".") == dc.dns_domain


async def test_udp_135_on_samba_is_not_listening(dc: testbed.SambaDC) -> None:
    [r] = await probe(dc, port_spec("udp", 135))
    assert (r.state, r.reason) == (PortState.NOT_LISTENING, Reason.ICMP_PORT_UNREACHABLE)


async def test_dropped_dynamic_rpc_port_turns_exactly_that_one_unreachable(
    dc: testbed.SambaDC, dc_firewall: testbed.Firewall
) -> None:
    [first] = await probe(dc, port_spec("tcp", 135))
    ports = sorted(d.port for d in first.details["rpc"].dynamic_ports)
    assert len(ports) >= 2
    victim = ports[0]
    with dc_firewall.blocked("tcp", victim):
        [r] = await probe(dc, port_spec("tcp", 135), options=ProbeOptions(timeout_seconds=1.0))
    states = {d.port: d.state for d in r.details["rpc"].dynamic_ports}
    assert states.pop(victim) == "filtered"
    assert set(states.values()) == {"listening"}


async def test_snmp_right_and_wrong_community(snmp_peer: testbed.SnmpPeer) -> None:
    eng = Engine(udp_pacing_seconds=0.0)
    for version in ("v1", "v2c"):
        [ok] = await eng.probe_target(
            "snmp",
            snmp_peer.address,
            [port_spec("udp", 161)],
            ProbeOptions(
                timeout_seconds=2.0, params=ProbeParams(snmp_community=snmp_peer.community, snmp_version=version)
            ),
        )
        assert (ok.state, ok.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), ok.error
        assert ok.details["snmp"].sys_descr == snmp_peer.sys_descr
    [bad] = await eng.probe_target(
        "snmp",
        snmp_peer.address,
        [port_spec("udp", 161)],
        ProbeOptions(timeout_seconds=1.0, params=ProbeParams(snmp_community="wrong-community")),
    )
    assert (bad.state, bad.reason) == (PortState.FILTERED, Reason.PROTOCOL_NO_REPLY)
    assert "community" in bad.error


async def test_dns_peer_dnsmasq(dns_peer: testbed.DnsPeer) -> None:
    eng = Engine(udp_pacing_seconds=0.0)
    [r] = await eng.probe_target(
        "dns",
        dns_peer.address,
        [port_spec("udp", 53)],
        ProbeOptions(timeout_seconds=2.0, params=ProbeParams(dns_query_name="www.peer.test", dns_query_type="A")),
    )
    assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), r.error
    assert (r.details["dns"].rcode, r.details["dns"].answers, r.details["dns"].authoritative) == (0, 1, True)

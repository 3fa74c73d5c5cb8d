"""The test bed is real: each peer answers (or stays silent) exactly as the fixtures promise.

Run: ``CI=true pytest tests/test_testbed.py -q`` as root. Every socket here talks only to addresses
of namespaces the fixtures created (198.18.N.2).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest

from tests import testbed
from tests.testbed import preflight

IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
"""Linux ``IP_RECVERR`` (Python's socket module exports it only from 3.12)."""

PROBE_TIMEOUT = 1.0
"""Seconds a probe in these tests waits for an answer that should not come."""


def _connect(address: str, port: int, timeout: float = PROBE_TIMEOUT) -> None:
    with socket.create_connection((address, port), timeout=timeout):
        pass


def _udp_exchange(
    address: str,
    port: int,
    payload: bytes = b"pq-probe",
    timeout: float = PROBE_TIMEOUT,
    *,
    recverr: bool = False,
) -> bytes:
    """Send one datagram on a connected socket; return the reply or raise what the kernel reports.

    Without ``IP_RECVERR`` Linux reports only "hard" ICMP errors on a UDP socket (port unreachable,
    admin prohibited); host/net unreachable are reported only with ``recverr=True``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        if recverr:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.connect((address, port))
        sock.send(payload)
        return sock.recv(65535)


def _wait_count(fw: testbed.Firewall, spec: tuple[str, ...], minimum: int, timeout: float = 2.0) -> int:
    deadline = time.monotonic() + timeout
    count = fw.packet_count(*spec)
    while count < minimum and time.monotonic() < deadline:
        time.sleep(0.02)
        count = fw.packet_count(*spec)
    return count


# -- require_netns (no root needed) -----------------------------------------------------------------


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_require_netns_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(preflight, "_REASON_CACHE", {})
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(outcome, match="root"):
        testbed.require_netns()


_ONE_COPY_SCRIPT = """
import atexit, json, sys
from pathlib import Path
hooks = []
register = atexit.register
def spy(func, *args, **kwargs):
    hooks.append(f"{func.__module__}.{func.__qualname__}")
    return register(func, *args, **kwargs)
atexit.register = spy
import tests.conftest, bench.fixture, bench.sweep, bench.cli_range, tests.capture_samba
from tests import testbed
tests_dir = Path(testbed.__file__).resolve().parent.parent
files = sorted(
    str(Path(m.__file__).resolve().relative_to(tests_dir))
    for m in list(sys.modules.values())
    if getattr(m, "__file__", None) and Path(m.__file__).resolve().is_relative_to(tests_dir)
)
print(json.dumps({
    "top_level": sorted(name for name in sys.modules if name.split(".")[0] == "testbed"),
    "hooks": [hook for hook in hooks if "testbed" in hook],
    "files": files,
    "same": bench.fixture.testbed is testbed is tests.conftest.testbed is tests.capture_samba.testbed,
}))
"""
"""Imports what loads the test bed (conftest, bench, the capture script), spying on ``atexit.register``."""


def test_one_copy_of_the_test_bed_with_one_exit_hook() -> None:
    """conftest, bench and the tests share one ``tests.testbed``: one namespace registry, one ``atexit`` hook.

    A top-level ``import testbed`` (or loading the file by path) would make a second module object with
    its own list of live namespaces and its own exit hook.
    """
    assert not [name for name in sys.modules if name.split(".")[0] == "testbed"]
    proc = subprocess.run(
        [sys.executable, "-c", _ONE_COPY_SCRIPT],
        cwd=Path(testbed.__file__).resolve().parents[2],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["top_level"] == []
    assert report["hooks"] == ["tests.testbed.netns._cleanup_at_exit"]
    assert report["same"] is True
    assert len(report["files"]) == len(set(report["files"]))
    assert "testbed/netns.py" in report["files"]
    assert "testbed.py" not in report["files"]


# -- Samba AD DC ------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [389, 88, 135, 445, 53, 636])
def test_dc_accepts_tcp(dc: testbed.SambaDC, port: int) -> None:
    _connect(dc.address, port)


def test_dc_identity(dc: testbed.SambaDC) -> None:
    assert dc.realm == "PQTEST.TEST"
    assert dc.domain == "PQTEST"
    assert dc.fqdn == "dc1.pqtest.test"
    assert dc.dns_domain == "pqtest.test"
    assert dc.base_dn == "DC=pqtest,DC=test"
    assert dc.address.startswith("198.18.")
    assert dc.address.endswith(".2")


def test_dc_dns_resolves_own_fqdn(dc: testbed.SambaDC) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dc.address]
    answer = resolver.resolve(dc.fqdn, "A", lifetime=5.0)
    assert [rr.to_text() for rr in answer] == [dc.address]
    srv = resolver.resolve(f"_ldap._tcp.{dc.dns_domain}", "SRV", lifetime=5.0)
    assert (389, f"{dc.fqdn}.") in {(rr.port, rr.target.to_text()) for rr in srv}  # dc2 too, once it runs
    pdc = resolver.resolve(f"_ldap._tcp.pdc._msdcs.{dc.dns_domain}", "SRV", lifetime=5.0)
    assert {(rr.port, rr.target.to_text()) for rr in pdc} == {(389, f"{dc.fqdn}.")}


def test_dc_has_no_dns_forwarder_and_no_default_route(dc: testbed.SambaDC) -> None:
    assert "forwarder" not in dc.smb_conf.read_text().lower()
    routes = dc.ns.run(["ip", "-4", "route", "show"]).stdout
    assert "default" not in routes
    assert routes.strip().startswith(f"{dc.address.rsplit('.', 1)[0]}.0/24")


# -- firewall ports in the DC namespace ---------------------------------------------------------------


def test_tcp_listen_accepts(dc_firewall: testbed.Firewall) -> None:
    _connect(dc_firewall.address, dc_firewall.ports.tcp_listen)


def test_tcp_drop_times_out(dc_firewall: testbed.Firewall) -> None:
    spec = dc_firewall.drop_spec("tcp", dc_firewall.ports.tcp_drop)
    before = dc_firewall.packet_count(*spec)
    with pytest.raises(TimeoutError):
        _connect(dc_firewall.address, dc_firewall.ports.tcp_drop)
    assert dc_firewall.packet_count(*spec) > before  # the SYNs did arrive and were dropped


@pytest.mark.parametrize("attr", ["tcp_reset", "tcp_closed"])
def test_tcp_refused(dc_firewall: testbed.Firewall, attr: str) -> None:
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        _connect(dc_firewall.address, getattr(dc_firewall.ports, attr))
    assert time.monotonic() - start < PROBE_TIMEOUT / 2


@pytest.mark.parametrize("attr", ["tcp_admin_prohibited", "tcp_host_unreachable"])
def test_tcp_icmp_unreachable(dc_firewall: testbed.Firewall, attr: str) -> None:
    with pytest.raises(OSError) as info:
        _connect(dc_firewall.address, getattr(dc_firewall.ports, attr))
    assert info.value.errno == errno.EHOSTUNREACH


def test_udp_echo_answers(dc_firewall: testbed.Firewall) -> None:
    assert _udp_exchange(dc_firewall.address, dc_firewall.ports.udp_echo, b"hello") == b"hello"


def test_udp_closed_refused(dc_firewall: testbed.Firewall) -> None:
    with pytest.raises(ConnectionRefusedError):
        _udp_exchange(dc_firewall.address, dc_firewall.ports.udp_closed)


@pytest.mark.parametrize("recverr", [False, True])
def test_udp_admin_prohibited(dc_firewall: testbed.Firewall, recverr: bool) -> None:
    with pytest.raises(OSError) as info:
        _udp_exchange(dc_firewall.address, dc_firewall.ports.udp_admin_prohibited, recverr=recverr)
    assert info.value.errno == errno.EHOSTUNREACH


def test_udp_host_unreachable_needs_ip_recverr(dc_firewall: testbed.Firewall) -> None:
    """ICMP host unreachable is a "soft" error for UDP: silent unless the socket sets IP_RECVERR."""
    with pytest.raises(TimeoutError):
        _udp_exchange(dc_firewall.address, dc_firewall.ports.udp_host_unreachable, timeout=0.5)
    with pytest.raises(OSError) as info:
        _udp_exchange(dc_firewall.address, dc_firewall.ports.udp_host_unreachable, recverr=True)
    assert info.value.errno == errno.EHOSTUNREACH


def test_udp_drop_counts_exactly_one_datagram(dc_firewall: testbed.Firewall) -> None:
    spec = dc_firewall.drop_spec("udp", dc_firewall.ports.udp_drop)
    before = dc_firewall.packet_count(*spec)
    with pytest.raises(TimeoutError):
        _udp_exchange(dc_firewall.address, dc_firewall.ports.udp_drop, timeout=0.5)
    assert _wait_count(dc_firewall, spec, before + 1) == before + 1


def test_udp_closed_answers_every_probe(dc_firewall: testbed.Firewall) -> None:
    """ICMP rate limits are lifted in the DC namespace: 100 fast probes, 100 port-unreachables."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(100)]
    refused = 0
    try:
        for sock in socks:
            sock.connect((dc_firewall.address, dc_firewall.ports.udp_closed))
            sock.send(b"x")
        for sock in socks:
            sock.settimeout(PROBE_TIMEOUT)
            try:
                sock.recv(16)
            except ConnectionRefusedError:
                refused += 1
            except TimeoutError:
                pass
    finally:
        for sock in socks:
            sock.close()
    assert refused == 100


def test_blocked_drops_then_restores(dc: testbed.SambaDC, dc_firewall: testbed.Firewall) -> None:
    with dc_firewall.blocked("tcp", 389) as spec:
        with pytest.raises(TimeoutError):
            _connect(dc.address, 389, timeout=0.5)
        assert dc_firewall.packet_count(*spec) >= 1
    _connect(dc.address, 389)
    assert "--dport 389" not in dc.ns.iptables("-S", "INPUT")


# -- the second DC, in another site -------------------------------------------------------------------

LDAPSEARCH_TIMEOUT = 15.0
"""Seconds an ``ldapsearch`` or ``dig`` here may take."""

_FINDDC_SCRIPT = r"""
import sys
from samba import credentials, net, param
from samba.dcerpc import nbt
lp = param.LoadParm()
lp.load(sys.argv[1])
creds = credentials.Credentials()
creds.guess(lp)
creds.set_anonymous()
finder = net.Net(creds, lp)
for address in sys.argv[2:]:
    reply = finder.finddc(address=address, flags=nbt.NBT_SERVER_LDAP | nbt.NBT_SERVER_DS)
    print(address, reply.pdc_dns_name, reply.server_site, reply.client_site)
"""
"""Samba's own CLDAP "LDAP ping" (``net.finddc``), run with the system python3 from the root namespace."""


def _dig(server: str, name: str, rtype: str) -> list[str]:
    """``dig @server +short name rtype``: the answer lines, sorted (only our DC's DNS is ever asked)."""
    testbed.require_netns("dig")
    proc = subprocess.run(
        ["dig", f"@{server}", "-p", "53", "+short", "+time=2", "+tries=2", "+norecurse", name, rtype],
        capture_output=True, text=True, timeout=LDAPSEARCH_TIMEOUT, check=True,
    )  # fmt: skip
    return sorted(line for line in proc.stdout.splitlines() if line and not line.startswith(";"))


def _dig_srv_targets(server: str, name: str) -> set[str]:
    return {line.split()[3].rstrip(".").lower() for line in _dig(server, name, "SRV")}


def _root_dse(address: str, *attrs: str) -> str:
    """Anonymous rootDSE over TCP 389 with ``ldapsearch``; the LDIF (lines unfolded)."""
    testbed.require_netns("ldapsearch")
    proc = subprocess.run(
        ["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-o", "nettimeout=5", "-l", "10",
         "-H", f"ldap://{address}", "-b", "", "-s", "base", *attrs],
        capture_output=True, text=True, timeout=LDAPSEARCH_TIMEOUT, check=True,
    )  # fmt: skip
    return proc.stdout


def test_dc2_identity(dc: testbed.SambaDC, dc2: testbed.JoinedDC) -> None:
    assert dc2.fqdn == "dc2.pqtest.test"
    assert (dc2.realm, dc2.domain, dc2.dns_domain) == (dc.realm, dc.domain, dc.dns_domain)
    assert (dc.site, dc2.site) == ("Default-First-Site-Name", "Branch-Site")
    assert dc2.partner is dc
    assert dc2.ns.subnet != dc.ns.subnet
    assert dc2.address.startswith("198.18.") and dc2.address.endswith(".2")
    assert dc2.address2 == dc2.address.rsplit(".", 1)[0] + ".3"
    assert "forwarder" not in dc2.smb_conf.read_text().lower()
    assert "default" not in dc2.ns.run(["ip", "-4", "route", "show"]).stdout


@pytest.mark.parametrize("port", [389, 88, 135, 445, 53, 636])
def test_dc2_accepts_tcp_from_the_root_namespace(dc2: testbed.JoinedDC, port: int) -> None:
    _connect(dc2.address, port)
    _connect(dc2.address2, port)


def test_dc_dns_lists_both_dcs_and_one_per_site(dc: testbed.SambaDC, dc2: testbed.JoinedDC) -> None:
    """dig at dc1:53: both DCs in ``_ldap._tcp.dc._msdcs``, one in each site's record, A for both."""
    domain = dc.dns_domain
    assert _dig_srv_targets(dc.address, f"_ldap._tcp.dc._msdcs.{domain}") == {dc.fqdn, dc2.fqdn}
    assert _dig_srv_targets(dc.address, f"_ldap._tcp.Default-First-Site-Name._sites.dc._msdcs.{domain}") == {dc.fqdn}
    assert _dig_srv_targets(dc.address, f"_ldap._tcp.Branch-Site._sites.dc._msdcs.{domain}") == {dc2.fqdn}
    assert _dig_srv_targets(dc.address, f"_ldap._tcp.pdc._msdcs.{domain}") == {dc.fqdn}
    assert _dig(dc.address, dc.fqdn, "A") == [dc.address]
    assert _dig(dc.address, dc2.fqdn, "A") == [dc2.address]  # address2 only on request
    assert dc.srv_targets(dc.ldap_srv_all) == {dc.fqdn, dc2.fqdn}  # the helper agrees with dig


def test_dc2_rootdse_is_in_its_own_site(dc: testbed.SambaDC, dc2: testbed.JoinedDC) -> None:
    dse = _root_dse(dc2.address, "serverName", "dnsHostName", "defaultNamingContext")
    assert "serverName: CN=DC2,CN=Servers,CN=Branch-Site,CN=Sites,CN=Configuration,DC=pqtest,DC=test" in dse
    assert "dnsHostName: dc2.pqtest.test" in dse
    assert f"defaultNamingContext: {dc.base_dn}" in dse
    assert "CN=Default-First-Site-Name," in _root_dse(dc.address, "serverName")


def test_ldap_ping_reports_each_dcs_own_site(dc: testbed.SambaDC, dc2: testbed.JoinedDC) -> None:
    """From the root namespace, each DC's LDAP ping says: the client is in my site (subnet mapping)."""
    python = "/usr/bin/python3"  # samba-tool's interpreter: it has samba's bindings
    conf = dc2.target_dir / "base.conf"
    proc = subprocess.run(
        [python, "-c", _FINDDC_SCRIPT, str(conf), dc.address, dc2.address, dc2.address2],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows == [
        [dc.address, dc.fqdn, dc.site, dc.site],
        [dc2.address, dc2.fqdn, dc2.site, dc2.site],
        [dc2.address2, dc2.fqdn, dc2.site, dc2.site],
    ]


def test_dcs_replicate_both_ways(dc: testbed.SambaDC, dc2: testbed.JoinedDC) -> None:
    """Over the DC-to-DC veth: dc2 pulls from dc1 and dc1 pulls from dc2 (DRS, Kerberos, RPC)."""
    creds = ("-U", "Administrator", f"--password={dc.admin_password}")
    for runner, dest, source in ((dc2, dc2, dc), (dc, dc, dc2)):
        proc = runner.samba_tool("drs", "replicate", dest.host_name, source.host_name, dc.base_dn, *creds)
        assert "was successful" in proc.stdout, proc.stdout + proc.stderr


def test_dc2_retire_and_reinstate(dc: testbed.SambaDC, dc2: testbed.JoinedDC) -> None:
    all_dcs = f"_ldap._tcp.dc._msdcs.{dc.dns_domain}"
    branch = f"_ldap._tcp.Branch-Site._sites.dc._msdcs.{dc.dns_domain}"
    with dc2.retired():
        assert _dig_srv_targets(dc.address, all_dcs) == {dc.fqdn}
        assert _dig_srv_targets(dc.address, branch) == set()
        assert _dig(dc.address, dc2.fqdn, "A") == [dc2.address]  # retired from discovery, still named
        _connect(dc2.address, 389)  # and still running
    assert _dig_srv_targets(dc.address, all_dcs) == {dc.fqdn, dc2.fqdn}
    assert _dig_srv_targets(dc.address, branch) == {dc2.fqdn}
    dc2.retire(site_record=False)
    try:
        assert _dig_srv_targets(dc.address, all_dcs) == {dc.fqdn}
        assert _dig_srv_targets(dc.address, branch) == {dc2.fqdn}
    finally:
        dc2.reinstate(site_record=False)
    assert _dig_srv_targets(dc.address, all_dcs) == {dc.fqdn, dc2.fqdn}


def test_dc2_second_a_record(dc: testbed.SambaDC, dc2: testbed.JoinedDC) -> None:
    with dc2.two_addresses() as records:
        assert records == sorted([dc2.address, dc2.address2])
        assert _dig(dc.address, dc2.fqdn, "A") == sorted([dc2.address, dc2.address2])
        _connect(dc2.address2, 389)
    assert _dig(dc.address, dc2.fqdn, "A") == [dc2.address]
    name = f"extra.{dc.dns_domain}"  # any name: add_a_record/remove_a_record on the DNS server's DC
    dc.add_a_record(name, dc2.address2)
    try:
        assert _dig(dc.address, name, "A") == [dc2.address2]
    finally:
        dc.remove_a_record(name, dc2.address2)
    assert _dig(dc.address, name, "A") == []


def test_dc2_firewall_blocks_dc2_only(
    dc: testbed.SambaDC, dc2: testbed.JoinedDC, dc2_firewall: testbed.Firewall
) -> None:
    assert dc2_firewall.address == dc2.address
    _connect(dc2_firewall.address, dc2_firewall.ports.tcp_listen)
    with dc2_firewall.blocked("tcp", 389) as spec:
        with pytest.raises(TimeoutError):
            _connect(dc2.address, 389, timeout=0.5)
        assert dc2_firewall.packet_count(*spec) >= 1
        _connect(dc.address, 389)
    _connect(dc2.address, 389)
    assert "--dport 389" not in dc2.ns.iptables("-S", "INPUT")
    assert "--dport 389" not in dc.ns.iptables("-S", "INPUT")


# -- SNMP and DNS peers -------------------------------------------------------------------------------


def test_snmp_right_community_returns_sysdescr(snmp_peer: testbed.SnmpPeer) -> None:
    assert snmp_peer.get(snmp_peer.SYS_DESCR_OID) == snmp_peer.sys_descr


def test_snmp_wrong_community_times_out(snmp_peer: testbed.SnmpPeer) -> None:
    proc = subprocess.run(
        ["snmpget", "-v2c", "-c", "public", "-t", "1", "-r", "0", f"udp:{snmp_peer.address}:161",
         snmp_peer.SYS_DESCR_OID],
        capture_output=True, text=True, timeout=15, check=False, env=snmp_peer.client_env(),
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Timeout: No Response" in proc.stderr + proc.stdout


def test_dns_peer_answers_authoritatively(dns_peer: testbed.DnsPeer) -> None:
    query = dns.message.make_query(dns_peer.name, "A")
    reply = dns.query.udp(query, dns_peer.address, port=dns_peer.port, timeout=2.0)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert [rr.to_text() for rrset in reply.answer for rr in rrset] == [dns_peer.a_record]


def test_dns_peer_never_forwards(dns_peer: testbed.DnsPeer) -> None:
    query = dns.message.make_query("outside.invalid", "A")
    reply = dns.query.udp(query, dns_peer.address, port=dns_peer.port, timeout=2.0)
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer


# -- Namespace lifecycle --------------------------------------------------------------------------------


@pytest.mark.testbed
def test_namespace_teardown_leaves_nothing() -> None:
    testbed.require_netns()
    ns = testbed.Namespace.create("t")
    try:
        ns.start_listeners(tcp=[7000], udp_echo=[7001])
        _connect(ns.address, 7000)
        assert ns.pids()
    finally:
        ns.teardown()
    assert ns.name not in testbed.run(["ip", "netns", "list"]).stdout
    assert ns.veth_host not in testbed.run(["ip", "-o", "link", "show"]).stdout


def _blackhole_routes() -> str:
    return testbed.run(["ip", "-4", "route", "show", "type", "blackhole"]).stdout


@pytest.mark.testbed
def test_blackhole_outlives_its_namespace() -> None:
    """``blackhole=True``: once the namespace is gone its /24 goes nowhere (EINVAL, no packet sent)."""
    testbed.require_netns()
    ns = testbed.Namespace.create("bh", blackhole=True)
    try:
        second = ns.add_address(3)
        ns.start_listeners(tcp=[7003])
        _connect(ns.address, 7003)  # the veth's connected route wins while the namespace lives
        _connect(second, 7003)
        assert f"blackhole {ns.subnet} metric {os.getpid()}" in _blackhole_routes()
    finally:
        ns.teardown()
    try:
        assert ns.veth_host not in testbed.run(["ip", "-o", "link", "show"]).stdout
        assert f"blackhole {ns.subnet} metric {os.getpid()}" in _blackhole_routes()
        assert ns.subnet in testbed.blackholes()
        for address in (ns.address, second):
            with pytest.raises(OSError) as info:
                _connect(address, 7003)
            assert info.value.errno == errno.EINVAL
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(OSError) as info:
            sock.sendto(b"x", (ns.address, 53))
        assert info.value.errno == errno.EINVAL
        other = testbed.Namespace.create("bh2")  # a blackholed /24 is never handed out again
        try:
            assert other.subnet != ns.subnet
        finally:
            other.teardown()
    finally:
        testbed.release_blackhole(ns.subnet)
    assert ns.subnet not in _blackhole_routes()
    assert ns.subnet not in testbed.blackholes()


@pytest.mark.testbed
def test_leftover_blackhole_of_a_dead_session_is_removed() -> None:
    testbed.require_netns()
    ns = testbed.Namespace.create("bh", blackhole=True)
    ns.teardown()
    testbed.release_blackhole(ns.subnet)
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=10)
    testbed.run(["ip", "-4", "route", "add", "blackhole", ns.subnet, "metric", str(dead.pid)])
    try:
        removed = testbed.cleanup_leftovers()
    finally:
        testbed.run(["ip", "-4", "route", "del", "blackhole", ns.subnet, "metric", str(dead.pid)], check=False)
    assert f"blackhole {ns.subnet}" in removed
    assert ns.subnet not in _blackhole_routes()


@pytest.mark.testbed
def test_link_to_joins_two_namespaces_without_forwarding() -> None:
    testbed.require_netns()
    probe = "import socket, sys; socket.create_connection((sys.argv[1], 7004), timeout=2).close()"
    a = testbed.Namespace.create("la")
    try:
        b = testbed.Namespace.create("lb")
        try:
            here, there = a.link_to(b)
            b.start_listeners(tcp=[7004])
            a.start_listeners(tcp=[7004])
            a.run([sys.executable, "-c", probe, b.address])
            b.run([sys.executable, "-c", probe, a.address])
            assert f"{b.address} dev {here} scope link src {a.address}" in a.run(["ip", "-4", "route"]).stdout
            assert "PERMANENT" in b.run(["ip", "neigh", "show", "dev", there]).stdout
            for runner in (testbed.run, a.run, b.run):
                assert runner(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "0"
        finally:
            b.teardown()
        assert here not in a.run(["ip", "-o", "link", "show"]).stdout  # the pair went with b
        assert b.address not in a.run(["ip", "-4", "route"]).stdout
    finally:
        a.teardown()


@dataclass
class _FailingPeer:
    ns: testbed.Namespace
    work_dir: Path
    timings: dict[str, float] = field(default_factory=dict)

    def close(self) -> None:
        testbed.close_peer(self.ns, self.work_dir)


@pytest.mark.testbed
def test_failed_start_leaves_nothing() -> None:
    """start_peer closes the peer when its launch fails: no namespace, no veth, no work directory."""
    testbed.require_netns()
    built: list[_FailingPeer] = []

    def launch(peer: _FailingPeer) -> None:
        built.append(peer)
        peer.ns.start_listeners(tcp=[7002])
        raise testbed.TestbedError("launch failed on purpose")

    with pytest.raises(testbed.TestbedError, match="on purpose"):
        testbed.start_peer("fail", _FailingPeer, launch)
    (peer,) = built
    assert "namespace" in peer.timings
    assert not peer.work_dir.exists()
    assert peer.ns.name not in testbed.run(["ip", "netns", "list"]).stdout
    assert peer.ns.veth_host not in testbed.run(["ip", "-o", "link", "show"]).stdout


# -- benchmark namespace -------------------------------------------------------------------------------


def _observe_tcp(address: str, ports: list[int], timeout: float) -> dict[int, str]:
    """Non-blocking connects to every port at once; pending at ``timeout`` seconds means filtered."""
    seen: dict[int, str] = {}
    pending: dict[socket.socket, int] = {}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, len(ports) + 1024)), hard))
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex((address, port))
            pending[sock] = port
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], list(pending), [], max(deadline - time.monotonic(), 0))
            for sock in writable:
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                seen[pending.pop(sock)] = {0: "listening", errno.ECONNREFUSED: "not_listening"}.get(err, str(err))
                sock.close()
        for sock, port in pending.items():
            seen[port] = "filtered"
            sock.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return seen


def _observe_udp(address: str, ports: list[int], timeout: float) -> dict[int, str]:
    """One datagram to every port at once; silence at ``timeout`` seconds means listening_or_filtered."""
    seen: dict[int, str] = {}
    pending: dict[socket.socket, int] = {}
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect((address, port))
            sock.send(b"bench")
            pending[sock] = port
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            readable, _, _ = select.select(list(pending), [], [], max(deadline - time.monotonic(), 0))
            for sock in readable:
                port = pending.pop(sock)
                try:
                    sock.recv(64)
                    seen[port] = "listening"
                except ConnectionRefusedError:
                    seen[port] = "not_listening"
                sock.close()
    finally:
        for sock, port in pending.items():
            seen.setdefault(port, "listening_or_filtered")
            sock.close()
    return seen


@pytest.mark.testbed
def test_bench_namespace_matches_truth() -> None:
    testbed.require_netns()
    from bench.fixture import bench_namespace

    with bench_namespace(icmp_deterministic=True) as (address, truth):
        assert len(truth) == 1300
        tcp = _observe_tcp(address, [port for proto, port in truth if proto == "tcp"], timeout=1.0)
        udp = _observe_udp(address, [port for proto, port in truth if proto == "udp"], timeout=1.0)
    observed = {("tcp", port): state for port, state in tcp.items()} | {
        ("udp", port): state for port, state in udp.items()
    }
    assert observed == truth


@pytest.mark.testbed
def test_bench_namespace_default_icmp_limits_hide_closed_udp() -> None:
    testbed.require_netns()
    from bench.fixture import bench_namespace

    with bench_namespace(icmp_deterministic=False) as (address, truth):
        closed = [port for (proto, port), state in truth.items() if proto == "udp" and state == "not_listening"]
        udp = _observe_udp(address, closed, timeout=1.0)
    refused = sum(state == "not_listening" for state in udp.values())
    assert 0 < refused < len(closed)  # the kernel's rate limit answered only a few

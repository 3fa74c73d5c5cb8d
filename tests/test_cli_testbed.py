"""``portqry`` against the Samba AD DC test bed (marked ``testbed``; network namespaces, see tests/testbed.py)."""

from __future__ import annotations

import json

from tests import testbed
from tests.clirun import run


def test_testbed_dc_ldap_tcp_quiet_exits_0(dc: testbed.SambaDC) -> None:
    r = run("-n", dc.fqdn, "--dns-server", dc.address, "-p", "tcp", "-e", "389", "-q")
    assert r.code == 0, r.err
    assert r.out == ""


def test_testbed_closed_tcp_exits_1_and_dropped_udp_exits_2(dc: testbed.SambaDC, dc_firewall: testbed.Firewall) -> None:
    closed = run("-n", dc.fqdn, "--dns-server", dc.address, "-e", str(dc_firewall.ports.tcp_closed), "-q")
    dropped = run(
        "-n",
        dc.fqdn,
        "--dns-server",
        dc.address,
        "-p",
        "udp",
        "-e",
        str(dc_firewall.ports.udp_drop),
        "-q",
        "--timeout",
        "1",
    )
    filtered = run("-n", dc.address, "-nr", "-e", str(dc_firewall.ports.tcp_drop), "-q", "--timeout", "0.5")
    usage = run("-n", dc.fqdn, "-q", "-p", "both")
    assert (closed.code, dropped.code, filtered.code, usage.code) == (1, 2, 2, 3)


def test_testbed_udp_389_prints_the_rootdse(dc: testbed.SambaDC) -> None:
    r = run("-n", dc.fqdn, "--dns-server", dc.address, "-p", "udp", "-e", "389")
    assert r.code == 0, r.err
    assert "LDAP query response:" in r.out
    assert f"dnsHostName: {dc.fqdn}" in r.out
    assert r.out.rstrip().splitlines()[-1] == "UDP port 389 is LISTENING"


def test_testbed_range_concurrency(dc: testbed.SambaDC, dc_firewall: testbed.Firewall) -> None:
    """A range with DROPped ports finishes in about one timeout x tries, not ports x timeout x tries."""
    fw = dc_firewall.ports
    r = run("-n", dc.address, "-nr", "-r", f"{fw.tcp_drop}:{fw.tcp_listen}", "--timeout", "0.5", "--json")
    rows = {x["port"]: x["state"] for x in map(json.loads, r.lines)}
    assert rows[fw.tcp_drop] == "filtered" and rows[fw.tcp_listen] == "listening"
    assert rows[fw.tcp_closed] == "not_listening"
    assert r.seconds < 3 * 0.5 * 2 + 1.0


def test_testbed_snmp_community(snmp_peer: testbed.SnmpPeer) -> None:
    """``-cn !community!`` reaches the SNMP probe: the right one answers, a wrong one is FILTERED."""
    base = ["-n", snmp_peer.address, "-nr", "-p", "udp", "-e", str(snmp_peer.port), "--timeout", "1"]
    right = run(*base, "-cn", f"!{snmp_peer.community}!")
    wrong = run(*base, "-cn", "!not-the-community!")
    assert right.code == 0, right.out
    assert f"community name for query:\n\n{snmp_peer.community}\n" in right.out
    assert f"sysDescr: {snmp_peer.sys_descr}" in right.out
    assert right.lines[-2] == "UDP port 161 is LISTENING"
    assert wrong.code == 2
    assert wrong.lines[-2] == "UDP port 161 is FILTERED"

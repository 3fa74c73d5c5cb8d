"""IPv6 targets: TCP and UDP states and ICMPv6 reasons (IPV6_RECVERR) against a namespace of our own.

The namespace gets a documentation address (RFC 3849, 2001:db8::/32) on its veth link; ip6tables inside it
DROPs, resets and rejects with ICMPv6 administratively prohibited (RFC 4443 3.1, code 1).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from exporter.engine import Engine
from exporter.model import ProbeOptions
from exporter.probes import port_spec
from exporter.states import PortState, Reason
from tests import testbed

LISTENER = """
import socket, select
t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("::", 9300)); t.listen(64)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.bind(("::", 9305))
while True:
    ready, _, _ = select.select([t, u], [], [])
    if t in ready:
        c, _ = t.accept(); c.close()
    if u in ready:
        data, peer = u.recvfrom(2048); u.sendto(data, peer)
"""


@dataclass
class V6Host:
    ns: testbed.Namespace
    address: str


@pytest.fixture(scope="module")
def v6_host() -> Iterator[V6Host]:
    testbed.require_netns("ip6tables")
    ns = testbed.Namespace.create("v6")
    listener: subprocess.Popen[str] | None = None
    try:
        prefix = f"2001:db8:{ns.index:x}::"
        # the test bed turns IPv6 off on its links; on this pair only, turn it on quietly: no router
        # solicitations, no router advertisements taken, no link-local address, static addresses only
        for dev, runner in ((ns.veth_host, testbed.run), (ns.veth_ns, ns.run)):
            for key, value in (
                ("router_solicitations", 0),
                ("accept_ra", 0),
                ("addr_gen_mode", 1),
                ("disable_ipv6", 0),
            ):
                runner(["sysctl", "-qw", f"net.ipv6.conf.{dev}.{key}={value}"])
        testbed.run(["ip", "-6", "addr", "add", f"{prefix}1/64", "dev", ns.veth_host, "nodad"])
        ns.run(["ip", "-6", "addr", "add", f"{prefix}2/64", "dev", ns.veth_ns, "nodad"])
        ns.run(["sysctl", "-qw", "net.ipv6.icmp.ratelimit=0"])
        for rule in (
            ["-A", "INPUT", "-p", "tcp", "--dport", "9301", "-j", "DROP"],
            ["-A", "INPUT", "-p", "tcp", "--dport", "9302", "-j", "REJECT", "--reject-with", "tcp-reset"],
            ["-A", "INPUT", "-p", "udp", "--dport", "9303", "-j", "REJECT", "--reject-with", "icmp6-adm-prohibited"],
        ):
            ns.run(["ip6tables", *rule])
        listener = ns.popen([sys.executable, "-c", LISTENER])
        deadline = time.monotonic() + 10
        while "9300" not in ns.run(["ss", "-Hltn"]).stdout:
            assert time.monotonic() < deadline, "IPv6 listener did not start"
            time.sleep(0.05)
        yield V6Host(ns, f"{prefix}2")
    finally:
        if listener is not None:
            ns.stop_process(listener)
        ns.teardown()


async def test_ipv6_states_and_icmpv6_reasons(v6_host: V6Host) -> None:
    specs = [
        port_spec("tcp", 9300),
        port_spec("tcp", 9301),
        port_spec("tcp", 9302),
        port_spec("udp", 9303),
        port_spec("udp", 9304),
        port_spec("udp", 9305),
    ]
    results = await Engine(udp_pacing_seconds=0).probe_target(
        "v6", v6_host.address, specs, ProbeOptions(timeout_seconds=0.5, tcp_tries=2)
    )
    assert {r.address for r in results} == {v6_host.address}
    assert [(r.protocol, r.port, r.state, r.reason) for r in results] == [
        ("tcp", 9300, PortState.LISTENING, Reason.SYN_ACK),
        ("tcp", 9301, PortState.FILTERED, Reason.TIMEOUT),
        ("tcp", 9302, PortState.NOT_LISTENING, Reason.REFUSED),
        ("udp", 9303, PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
        ("udp", 9304, PortState.NOT_LISTENING, Reason.ICMP_PORT_UNREACHABLE),
        ("udp", 9305, PortState.LISTENING, Reason.REPLY),
    ]


def test_portqry_cli_on_an_ipv6_literal(v6_host: V6Host) -> None:
    def run(*args: str) -> int:
        proc = subprocess.run(
            [sys.executable, "-m", "exporter.cli", "-n", v6_host.address, "-nr", *args, "--timeout", "0.5"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in proc.stderr
        return proc.returncode

    assert run("-p", "tcp", "-e", "9300", "-q") == 0
    assert run("-p", "udp", "-e", "9304", "-q") == 1
    assert run("-p", "udp", "-e", "9303", "-q") == 2

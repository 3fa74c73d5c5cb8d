"""``portqry --domain DOMAIN`` without ``-n``: the DC list from DNS and the LDAP ping, then every DC's ports.

Loopback only: SRV and A records from the test's own DNS server (:func:`tests.dnsserver.dns_server`, always
``--dns-server 127.0.0.1 --dns-port N``: the system-resolver path is never taken here), fake DCs answering
the LDAP ping on 127.0.0.2 and 127.0.0.3 (:func:`tests.cldap.cldap_service`; the SRV record's port is their
CLDAP port), TCP and UDP peers on those addresses (:mod:`tests.peers`).  The DC list layout is pinned by
``tests/golden/cli_domain.txt`` (built from :class:`~exporter.model.DiscoveredDC` values) and
``tests/golden/cli_domain_run.txt`` (a real run, port numbers masked); regenerate with
``PORTQRY_UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.catalog import load_catalog
from exporter.cli import text
from exporter.model import DiscoveredDC
from tests.cldap import CldapService, FakeDC, cldap_service
from tests.clirun import Run, run
from tests.dnsserver import Srv, dns_server
from tests.peers import closed_port, tcp_listener
from tests.test_discovery import garbage_dns

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("PORTQRY_UPDATE_GOLDEN") == "1"

DOMAIN = "tb.test"
ALL_DCS = f"_ldap._tcp.dc._msdcs.{DOMAIN}"
BRANCH_DCS = f"_ldap._tcp.Branch._sites.dc._msdcs.{DOMAIN}"
DC1, DC2 = "127.0.0.2", "127.0.0.3"
HOST1, HOST2, HOST3 = f"dc1.{DOMAIN}", f"dc2.{DOMAIN}", f"dc3.{DOMAIN}"


@dataclass
class Domain:
    """The running test domain: its DNS server's port and tables, the fake DCs, a TCP listener on DC1."""

    dns_port: int
    srv: dict[str, list[Srv]]
    queries: list[str]
    cldap: CldapService
    tcp_port: int

    def run(self, *argv: str, timeout: float = 0.3) -> Run:
        """``portqry --domain tb.test --dns-server 127.0.0.1 --dns-port N --timeout T --udp-pacing 0 ARGV``."""
        dns = ["--dns-server", "127.0.0.1", "--dns-port", str(self.dns_port)]
        return run("--domain", DOMAIN, *dns, "--timeout", str(timeout), "--udp-pacing", "0", *argv)


@pytest.fixture
def domain() -> Iterator[Domain]:
    """Two fake DCs in two sites (dc1: Hub, every role; dc2: Branch, no PDC), SRV order dc1 then dc2."""
    dcs = {
        DC1: FakeDC(HOST1, DOMAIN, site="Hub", client_site="Hub"),
        DC2: FakeDC(HOST2, DOMAIN, site="Branch", client_site="Hub", roles=("ldap", "ds", "kdc", "gc")),
    }
    with cldap_service(dcs) as cldap:
        srv: dict[str, list[Srv]] = {
            ALL_DCS: [(0, 100, cldap.ports[DC1], HOST1), (0, 50, cldap.ports[DC2], HOST2)],
            BRANCH_DCS: [(0, 100, cldap.ports[DC2], HOST2)],
        }
        with (
            dns_server({HOST1: DC1, HOST2: DC2, HOST3: "127.0.0.4"}, srv=srv) as (_host, dns_port, queries),
            tcp_listener(DC1) as tcp_port,
        ):
            yield Domain(dns_port, srv, queries, cldap, tcp_port)


@contextmanager
def same_port(kind: int, hosts: tuple[str, ...]) -> Iterator[int]:
    """Sockets of ``kind`` bound to one port number on each of ``hosts`` (TCP: listening; UDP: silent)."""
    for _ in range(20):
        with contextlib.ExitStack() as stack:
            socks = [stack.enter_context(socket.socket(socket.AF_INET, kind)) for _ in hosts]
            socks[0].bind((hosts[0], 0))
            port: int = socks[0].getsockname()[1]
            try:
                for sock, host in zip(socks[1:], hosts[1:], strict=True):
                    sock.bind((host, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            if kind == socket.SOCK_STREAM:
                for sock in socks:
                    sock.listen(16)
            yield port
            return
    raise AssertionError("no port number free on every address")


def dc_list(r: Run) -> list[str]:
    """The DC lines of the list (between the header's blank line and the summary's)."""
    start = r.lines.index(f"Domain controllers of {DOMAIN} (from {ALL_DCS}):") + 2
    return r.lines[start : r.lines.index("", start)]


def port_lines_by_target(r: Run) -> list[tuple[str, str]]:
    """``(target, state line)`` for each port line, in output order."""
    out: list[tuple[str, str]] = []
    target = ""
    for i, line in enumerate(r.lines):
        if line == "Querying target system called:":
            target = r.lines[i + 2].strip()
        elif re.match(r"^(TCP|UDP) port \d+ \(", line):
            out.append((target, line))
    return out


# --------------------------------------------------------------------------------------------- the DC list


def test_lists_each_dc_with_address_site_and_roles(domain: Domain) -> None:
    r = domain.run("-e", str(domain.tcp_port))
    assert r.lines[:2] == [f"Domain controllers of {DOMAIN} (from {ALL_DCS}):", ""]
    assert dc_list(r) == [
        f" {HOST1}  {DC1}  site Hub     roles pdc gc ldap ds kdc timeserv closest writable",
        f" {HOST2}  {DC2}  site Branch  roles gc ldap ds kdc",
    ]
    assert "2 domain controllers found, 2 answered the LDAP ping; client site: Hub" in r.lines
    assert domain.cldap.pings == {DC1: 1, DC2: 1}
    assert all(DOMAIN.encode() in f for f in domain.cldap.filters)  # --domain is the ping's DnsDomain
    assert domain.queries[0] == f"{ALL_DCS}. SRV"
    assert r.err == ""


def test_dc_ports_print_dc_after_dc_in_srv_order(domain: Domain) -> None:
    closed = closed_port(host=DC1)
    r = domain.run("-o", f"{domain.tcp_port},{closed}")
    assert port_lines_by_target(r) == [
        (HOST1, f"TCP port {domain.tcp_port} (unknown service): LISTENING"),
        (HOST1, f"TCP port {closed} (unknown service): NOT LISTENING"),
        (HOST2, f"TCP port {domain.tcp_port} (unknown service): NOT LISTENING"),
        (HOST2, f"TCP port {closed} (unknown service): NOT LISTENING"),
    ]
    # each DC's block is the one "portqry -n DC" prints: target, name resolution, querying...
    at = r.lines.index(f" {HOST2}")
    assert r.lines[at - 2 : at + 7] == [
        "Querying target system called:",
        "",
        f" {HOST2}",
        "",
        "Attempting to resolve name to IP address...",
        "",
        f"Name resolved to {DC2}",
        "",
        "querying...",
    ]
    # SRV order, not address order: dc2 first once its priority is lower
    domain.srv[ALL_DCS] = [(1, 100, domain.cldap.ports[DC1], HOST1), (0, 50, domain.cldap.ports[DC2], HOST2)]
    swapped = domain.run("-e", str(domain.tcp_port))
    assert [line.split()[0] for line in dc_list(swapped)] == [HOST2, HOST1]
    assert [t for t, _ in port_lines_by_target(swapped)] == [HOST2, HOST1]


def test_site_reads_only_the_site_record(domain: Domain) -> None:
    r = domain.run("--site", "Branch", "-e", str(domain.tcp_port))
    assert r.lines[0] == f"Domain controllers of {DOMAIN} (from {BRANCH_DCS}):"
    assert [t for t, _ in port_lines_by_target(r)] == [HOST2]
    assert domain.cldap.pings == {DC2: 1} and r.code == 1


def test_a_dc_that_does_not_resolve_or_answer_is_listed_with_its_error(domain: Domain) -> None:
    domain.srv[ALL_DCS] += [(1, 0, 389, f"ghost.{DOMAIN}")]
    r = domain.run("-e", str(domain.tcp_port))
    ghost = dc_list(r)[-1]
    assert ghost.startswith(f" ghost.{DOMAIN}  -") and "name does not resolve (" in ghost
    assert "3 domain controllers found, 2 answered the LDAP ping; client site: Hub" in r.lines
    at = r.lines.index(f" ghost.{DOMAIN}")
    assert r.lines[at + 2 : at + 5] == [
        "Attempting to resolve name to IP address...",
        "",
        "Failed to resolve name to IP address",
    ]
    assert r.code == 2  # dc1 LISTENING, dc2 NOT LISTENING, ghost unreachable: FILTERED


def test_default_ports_are_the_domain_controller_profile_and_p_filters_them(domain: Domain) -> None:
    expansion = load_catalog().expand([], ["domain-controller"])
    profile = [f"{p.protocol.upper()} port {p.port} " for p in expansion.ports]
    r = domain.run(timeout=0.2)
    for host in (HOST1, HOST2):
        lines = [line for t, line in port_lines_by_target(r) if t == host]
        assert [line[: len(p)] for line, p in zip(lines, profile, strict=True)] == profile
    assert (
        "tcp/49152-65535 (profile:domain-controller): dynamic RPC, checked through the endpoint mapper on TCP 135"
        in r.lines
    )
    udp = domain.run("-p", "udp", timeout=0.2)
    assert {line.split()[0] for _, line in port_lines_by_target(udp)} == {"UDP"}
    assert len(port_lines_by_target(udp)) == 2 * sum(p.protocol == "udp" for p in expansion.ports)


def test_dcs_are_probed_concurrently(domain: Domain) -> None:
    """A silent UDP port on each of three DCs at 0.5 s each: one DC after the other would take 1.5 s."""
    dc3 = "127.0.0.4"  # in DNS but no CLDAP service: listed with its ping error, probed all the same
    domain.srv[ALL_DCS].append((0, 10, domain.cldap.ports[DC1], HOST3))
    with same_port(socket.SOCK_DGRAM, (DC1, DC2, dc3)) as port:
        r = domain.run("-p", "udp", "-e", str(port), timeout=0.5)
    assert port_lines_by_target(r) == [
        (host, f"UDP port {port} (unknown service): LISTENING or FILTERED") for host in (HOST1, HOST2, HOST3)
    ]
    assert "LDAP ping failed: NOT LISTENING (icmp-port-unreachable)" in dc_list(r)[2]
    assert r.seconds < 1.2, f"DCs not probed concurrently: {r.seconds:.2f} s"


# --------------------------------------------------------------------------------------------- exit codes


def test_exit_0_when_every_port_of_every_dc_listens(domain: Domain) -> None:
    with same_port(socket.SOCK_STREAM, (DC1, DC2)) as port:
        r = domain.run("-e", str(port))
    assert r.code == 0, r.out
    assert [state.rsplit(": ", 1)[1] for _, state in port_lines_by_target(r)] == ["LISTENING", "LISTENING"]


def test_exit_1_when_the_worst_port_is_not_listening(domain: Domain) -> None:
    assert domain.run("-e", str(domain.tcp_port)).code == 1  # listening on dc1 only


def test_exit_2_with_filtered_and_not_listening_mixed(domain: Domain) -> None:
    with contextlib.ExitStack() as stack:
        silent = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        silent.bind((DC1, 0))  # dc1: silent (LISTENING or FILTERED); dc2: ICMP port unreachable
        port = silent.getsockname()[1]
        r = domain.run("-p", "udp", "-e", str(port))
    assert [state.rsplit(": ", 1)[1] for _, state in port_lines_by_target(r)] == [
        "LISTENING or FILTERED",
        "NOT LISTENING",
    ]
    assert r.code == 2


def test_exit_4_with_one_line_when_the_srv_name_does_not_exist() -> None:
    with dns_server({}) as (_host, dns_port, queries):
        for extra in ([], ["--json"]):
            r = run("--domain", DOMAIN, "--dns-server", "127.0.0.1", "--dns-port", str(dns_port), *extra)
            assert (r.code, r.out) == (4, "")
            assert r.err.startswith(f"portqry: Failed to find the domain controllers of {DOMAIN}: {ALL_DCS}")
            assert r.err.count("\n") == 1
    assert set(queries) == {f"{ALL_DCS}. SRV"}


def test_exit_4_when_the_dns_server_answers_garbage() -> None:
    with garbage_dns(b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\xff\xff\xff") as dns_port:
        r = run("--domain", DOMAIN, "--dns-server", "127.0.0.1", "--dns-port", str(dns_port))
    assert (r.code, r.out) == (4, "")
    assert r.err.startswith("portqry: Failed to find the domain controllers") and r.err.count("\n") == 1


# --------------------------------------------------------------------------------------------- --json, -n, usage


def test_json_has_a_domain_controller_object_per_dc_then_the_ports(domain: Domain) -> None:
    r = domain.run("-e", str(domain.tcp_port), "--json")
    objects = [json.loads(line) for line in r.lines]
    dcs, ports = objects[:2], objects[2:]
    assert [(d["type"], d["target"], d["address"], d["site"], d["client_site"]) for d in dcs] == [
        ("domain_controller", HOST1, DC1, "Hub", "Hub"),
        ("domain_controller", HOST2, DC2, "Branch", "Hub"),
    ]
    assert dcs[0]["roles"] == ["pdc", "gc", "ldap", "ds", "kdc", "timeserv", "closest", "writable"]
    assert dcs[1]["roles"] == ["gc", "ldap", "ds", "kdc"]
    assert (dcs[0]["domain"], dcs[0]["priority"], dcs[0]["weight"], dcs[0]["error"]) == (DOMAIN, 0, 100, "")
    assert [(p["target"], p["address"], p["port"], p["state"]) for p in ports] == [
        (HOST1, DC1, domain.tcp_port, "listening"),
        (HOST2, DC2, domain.tcp_port, "not_listening"),
    ]
    assert "type" not in ports[0]  # port results as with -n
    assert r.code == 1


def test_with_n_domain_keeps_its_meaning(domain: Domain) -> None:
    dns = ["--dns-server", "127.0.0.1", "--dns-port", str(domain.dns_port)]
    with_domain = run("-n", HOST1, *dns, "--domain", DOMAIN, "-e", str(domain.tcp_port))
    without = run("-n", HOST1, *dns, "-e", str(domain.tcp_port))
    assert with_domain.code == without.code == 0
    assert with_domain.out == without.out
    assert with_domain.lines[:3] == ["Querying target system called:", "", f" {HOST1}"]
    assert not any(q.endswith(" SRV") for q in domain.queries) and domain.cldap.pings == {}


@pytest.mark.parametrize(
    "argv",
    [
        ["--site", "Hub"],
        ["-n", "127.0.0.1", "--domain", DOMAIN, "--site", "Hub"],
        ["-i", "--domain", DOMAIN, "--site", "Hub"],
        ["--domain", DOMAIN, "--site", "a.b"],
        ["--dns-server", "127.0.0.1"],
        ["--domain", DOMAIN, "--profile", "domain-controller", "-e", "389"],
        ["--domain", DOMAIN, "-e", "1", "-o", "2,3"],
    ],
)
def test_usage_errors(argv: list[str]) -> None:
    r = run(*argv)
    assert r.code == 3, (argv, r.code, r.err)
    assert r.out == "" and r.err.count("\n") == 1


def test_help_explains_domain_discovery() -> None:
    r = run("-h")
    assert "portqry --domain DOMAIN [--dns-server ADDR]" in r.out
    assert "Without -n: find the domain's DCs" in r.out and "--site NAME" in r.out
    assert "no DC found in DNS" in r.out


# --------------------------------------------------------------------------------------------- golden layout


def _golden_cases() -> list[str]:
    full = frozenset({"pdc", "gc", "ldap", "ds", "kdc", "timeserv", "closest", "writable", "dns_controller"})
    two_sites = [
        DiscoveredDC("dc1.tb.test", 0, 100, "198.18.1.2", "Hub", "Hub", full),
        DiscoveredDC("dc2.tb.test", 0, 50, "198.18.2.2", "Branch", "Hub", frozenset({"gc", "ldap", "ds", "kdc"})),
    ]
    failures = [
        DiscoveredDC("dc1.tb.test", 0, 100, "198.18.1.2", "Hub", "Hub", full),
        DiscoveredDC("rodc.tb.test", 0, 100, "2001:db8::5", "Branch", "Branch", frozenset({"ldap", "ds", "kdc"})),
        DiscoveredDC("dc3.tb.test", 10, 0, "198.18.3.2", error="no reply to the LDAP query"),
        DiscoveredDC("dc4.tb.test", 10, 0, "198.18.4.2", error="LDAP ping: NOT LISTENING (icmp-port-unreachable)"),
        DiscoveredDC("ghost.tb.test", 20, 0, error="ghost.tb.test: The DNS query name does not exist: ghost.tb.test."),
    ]
    alone = [DiscoveredDC("dc1.tb.test", 0, 100, "198.18.1.2", "Default-First-Site-Name", "", full)]
    sites = [BRANCH_DCS, f"_ldap._tcp.Hub._sites.dc._msdcs.{DOMAIN}"]
    return [
        "----- two_sites",
        *text.domain_controller_lines(DOMAIN, [ALL_DCS], two_sites),
        "----- failures_and_client_sites_that_differ",
        *text.domain_controller_lines(DOMAIN, [ALL_DCS], failures),
        "----- one_dc_no_client_site",
        *text.domain_controller_lines(DOMAIN, [ALL_DCS], alone),
        "----- site_records",
        *text.domain_controller_lines(DOMAIN, sites, two_sites[::-1]),
    ]


def _check_golden(name: str, content: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(content)
    assert path.exists(), f"{path} missing: run with PORTQRY_UPDATE_GOLDEN=1"
    assert content == path.read_text()


def test_golden_dc_list_layout() -> None:
    _check_golden("cli_domain.txt", "\n".join(_golden_cases()) + "\n")


def test_real_run_layout_matches_the_golden_file(domain: Domain) -> None:
    """The whole text of a real run: the DC list, then both DCs' blocks, one LISTENING port on dc1."""
    r = domain.run("-e", str(domain.tcp_port))
    _check_golden(
        "cli_domain_run.txt", re.sub(rf"TCP port {domain.tcp_port} \(unknown service\)", "TCP port <PORT>", r.out)
    )

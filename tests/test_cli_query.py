"""``portqry``'s queries: port states and exit codes, lists and ranges (concurrent, in order), ``-sp``, ``-sl``,
``-q``, ``--json``, name resolution and reverse lookups, ``--service``/``--profile``.

Everything runs against loopback peers the tests open themselves (:mod:`tests.peers`, port 0); names resolve
only through the tests' DNS server (:func:`tests.clirun.dns_server`, ``--dns-server 127.0.0.1 --dns-port N``),
and reverse lookups use ``-nr`` or that server.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator

import pytest

from exporter import probes
from exporter.cli import args, exits, query
from tests.clirun import FAST, dns_server, ipv6_loopback, run
from tests.peers import closed_port, tcp_listener, udp_peer


@pytest.fixture
def dns_args() -> Iterator[list[str]]:
    """``--dns-server 127.0.0.1 --dns-port N`` of a running :func:`tests.clirun.dns_server`."""
    with dns_server() as (address, port, _queries):
        yield ["--dns-server", address, "--dns-port", str(port)]


def test_tcp_listening_exits_0_with_portqry_lines() -> None:
    with tcp_listener() as peer:
        r = run("-n", "127.0.0.1", "-nr", "-e", str(peer))
    assert r.code == 0, r.err
    assert r.lines[:5] == ["Querying target system called:", "", " 127.0.0.1", "", "querying..."]
    assert re.search(rf"^TCP port {peer} \(.+\): LISTENING$", r.out, re.MULTILINE)
    assert r.err == ""


def test_tcp_closed_exits_1() -> None:
    port = closed_port()
    r = run("-n", "127.0.0.1", "-nr", "-e", str(port))
    assert r.code == 1
    assert f"TCP port {port} (" in r.out and "): NOT LISTENING" in r.out


def test_udp_echo_listening_closed_and_silent() -> None:
    with udp_peer(echo=True) as (echo, _), udp_peer(echo=False) as (silent, _):
        closed = closed_port(socket.SOCK_DGRAM)
        ok = run("-n", "127.0.0.1", "-nr", "-p", "udp", "-e", str(echo), *FAST)
        refused = run("-n", "127.0.0.1", "-nr", "-p", "UDP", "-e", str(closed), *FAST)
        quiet = run("-n", "127.0.0.1", "-nr", "-p", "udp", "-e", str(silent), *FAST)
    assert (ok.code, refused.code, quiet.code) == (0, 1, 2)
    assert "): LISTENING" in ok.out
    assert "): NOT LISTENING" in refused.out
    assert f"UDP port {silent} (unknown service): LISTENING or FILTERED" in quiet.out or (
        f"UDP port {silent} (" in quiet.out and "): LISTENING or FILTERED" in quiet.out
    )


def test_default_port_is_80_tcp() -> None:
    r = run("-n", "127.0.0.1", "-nr", "--timeout", "0.2")
    assert r.code in (0, 1, 2)
    assert "TCP port 80 (http service): " in r.out


def test_both_queries_tcp_then_udp_for_each_port() -> None:
    with tcp_listener() as peer:
        r = run("-n", "127.0.0.1", "-nr", "-p", "both", "-e", str(peer), *FAST)
    state_lines = [line for line in r.lines if " port " in line]
    assert [line.split()[0] for line in state_lines] == ["TCP", "UDP"]
    assert r.code == 1  # TCP listening, UDP refused: the worst wins


def test_order_list_keeps_the_given_order_and_worst_exit_code() -> None:
    with tcp_listener() as a, tcp_listener() as b:
        closed = closed_port()
        ports = [b, closed, a]
        r = run("-n", "127.0.0.1", "-nr", "-o", ",".join(map(str, ports)))
    seen = [int(m) for m in re.findall(r"^TCP port (\d+) ", r.out, re.MULTILINE)]
    assert seen == ports
    assert r.code == 1


def test_range_colon_and_semicolon_forms() -> None:
    with tcp_listener() as peer:
        p = peer
        colon = run("-n", "127.0.0.1", "-nr", "-r", f"{p}:{p + 2}", *FAST)
        semi = run("-n", "127.0.0.1", "-nr", "-r", f"{p};{p + 2}", *FAST)
    for r in (colon, semi):
        assert [int(m) for m in re.findall(r"^TCP port (\d+) ", r.out, re.MULTILINE)] == [p, p + 1, p + 2]


def test_range_of_one_port() -> None:
    """``-r 389:389`` is a range of one port, queried as ``-e 389`` would be (without the RPC follow-up)."""
    with tcp_listener() as peer:
        r = run("-n", "127.0.0.1", "-nr", "-r", f"{peer}:{peer}", *FAST)
    assert r.code == 0, r.err
    assert [int(m) for m in re.findall(r"^TCP port (\d+) ", r.out, re.MULTILINE)] == [peer]
    assert args.parse_args(["-n", "x", "-r", "389:389"]).port_range == (389, 389)


def test_range_runs_concurrently_and_prints_in_port_order() -> None:
    """20 silent UDP ports at 0.5 s each: serially 10 s; the engine runs them at once."""
    ports: list[int] = []
    with contextlib.ExitStack() as stack:
        for _ in range(20):
            ports.append(stack.enter_context(udp_peer(echo=False))[0])
        ports.sort()
        r = run(
            "-n",
            "127.0.0.1",
            "-nr",
            "-p",
            "udp",
            "-o",
            ",".join(map(str, ports)),
            "--timeout",
            "0.5",
            "--udp-pacing",
            "0",
            "--json",
        )
    results = [json.loads(line) for line in r.lines]
    assert [x["port"] for x in results] == ports
    assert {x["state"] for x in results} == {"listening_or_filtered"}
    assert r.seconds < 4.0, f"not concurrent: {r.seconds:.1f} s for 20 x 0.5 s"


def test_concurrency_1_is_serial() -> None:
    with udp_peer(echo=False) as (a, _), udp_peer(echo=False) as (b, _), udp_peer(echo=False) as (c, _):
        ports = ",".join(map(str, (a, b, c)))
        r = run(
            "-n",
            "127.0.0.1",
            "-nr",
            "-p",
            "udp",
            "-o",
            ports,
            "--timeout",
            "0.3",
            "--udp-pacing",
            "0",
            "--concurrency",
            "1",
        )
    assert r.code == 2
    assert r.seconds >= 0.85


def test_range_does_not_query_the_endpoint_mapper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(probes.DEFAULT_BINDINGS, ("tcp", 135), "rpc")
    monkeypatch.setitem(probes.DEFAULT_BINDINGS, ("udp", 389), "ldap")
    in_range = query.build_specs([("tcp", 135), ("udp", 389)], range_mode=True)
    listed = query.build_specs([("tcp", 135)], range_mode=False)
    assert [s.binding for s in in_range] == ["", "ldap"]
    assert [s.binding for s in listed] == ["rpc"]


def test_quiet_prints_nothing_and_returns_errorlevels() -> None:
    with tcp_listener() as peer, udp_peer(echo=False) as (silent, _):
        listening = run("-n", "127.0.0.1", "-nr", "-e", str(peer), "-q")
        filtered = run("-n", "127.0.0.1", "-nr", "-p", "udp", "-e", str(silent), "-q", *FAST)
    closed = run("-n", "127.0.0.1", "-nr", "-e", str(closed_port()), "-q")
    assert (listening.code, closed.code, filtered.code) == (0, 1, 2)
    assert listening.out == closed.out == filtered.out == ""
    assert listening.err == closed.err == filtered.err == ""


def test_y_without_l_is_ignored_as_in_portqry() -> None:
    with tcp_listener() as peer:
        r = run("-n", "127.0.0.1", "-nr", "-e", str(peer), "-y")
    assert r.code == 0


def test_slow_link_doubles_the_udp_wait() -> None:
    with udp_peer(echo=False) as (silent, _):
        normal = run("-n", "127.0.0.1", "-nr", "-p", "udp", "-e", str(silent), "--timeout", "0.4", "--json")
        slow = run("-n", "127.0.0.1", "-nr", "-p", "udp", "-e", str(silent), "--timeout", "0.4", "--json", "-sl")
    t_normal = json.loads(normal.out)["duration_seconds"]
    t_slow = json.loads(slow.out)["duration_seconds"]
    assert 0.35 <= t_normal < 0.75
    assert t_slow >= 0.78
    assert args.parse_args(["-n", "x", "-s"]).slow_link  # PortQry 1.22's /s


def test_source_port_is_used_and_lists_run_one_at_a_time() -> None:
    sport = closed_port()
    a_sources: list[int] = []
    b_sources: list[int] = []
    with tcp_listener(sources=a_sources) as a, tcp_listener(sources=b_sources) as b:
        r = run("-n", "127.0.0.1", "-nr", "-o", f"{a},{b}", "-sp", str(sport))
        time.sleep(0.2)
    assert r.code == 0, r.err
    assert a_sources == [sport] and b_sources == [sport]
    udp_sources: list[int] = []
    with udp_peer(echo=True, sources=udp_sources) as (echo, _):
        usport = closed_port(socket.SOCK_DGRAM)
        u = run("-n", "127.0.0.1", "-nr", "-p", "udp", "-e", str(echo), "-sp", str(usport), *FAST)
    assert u.code == 0 and udp_sources[:1] == [usport]
    with udp_peer(echo=False) as (s1, _), udp_peer(echo=False) as (s2, _), udp_peer(echo=False) as (s3, _):
        ports = ",".join(map(str, (s1, s2, s3)))
        serial = run(
            "-n",
            "127.0.0.1",
            "-nr",
            "-p",
            "udp",
            "-o",
            ports,
            "-sp",
            str(closed_port(socket.SOCK_DGRAM)),
            "--timeout",
            "0.3",
            "--udp-pacing",
            "0",
        )
    assert serial.code == 2 and serial.seconds >= 0.85


def test_busy_source_port_is_refused() -> None:
    target_sources: list[int] = []
    with tcp_listener() as busy, tcp_listener(sources=target_sources) as target:
        r = run("-n", "127.0.0.1", "-nr", "-e", str(target), "-sp", str(busy))
    assert r.code == exits.EXIT_SOURCE_PORT == 5
    assert "Cannot use specified source port" in r.err and "Port is already in use" in r.err
    assert r.err.count("\n") == 1
    assert target_sources == []


def test_json_lines_have_the_issue_keys() -> None:
    with tcp_listener() as peer:
        r = run("-n", "127.0.0.1", "-nr", "-o", f"{peer},{closed_port()}", "--json")
    rows = [json.loads(line) for line in r.lines]
    assert len(rows) == 2
    for row in rows:
        assert {
            "target",
            "address",
            "protocol",
            "port",
            "service",
            "state",
            "reason",
            "duration_seconds",
        } <= set(row)
    assert [(x["state"], x["reason"]) for x in rows] == [
        ("listening", "syn-ack"),
        ("not_listening", "refused"),
    ]


def test_name_resolves_through_our_dns_server() -> None:
    with dns_server() as (address, port, queries), tcp_listener() as peer:
        r = run("-n", "host.portqry.test", "--dns-server", address, "--dns-port", str(port), "-e", str(peer))
    assert r.code == 0, r.err
    assert r.lines[:9] == [
        "Querying target system called:",
        "",
        " host.portqry.test",
        "",
        "Attempting to resolve name to IP address...",
        "",
        "Name resolved to 127.0.0.1",
        "",
        "querying...",
    ]
    assert "host.portqry.test. A" in queries


def test_unresolvable_name_exits_4_with_one_line(dns_args: list[str]) -> None:
    r = run("-n", "nothere.portqry.test", *dns_args, "-e", "80")
    assert r.code == exits.EXIT_RESOLVE == 4
    assert r.err.startswith("portqry: Failed to resolve name to IP address") and r.err.count("\n") == 1
    assert "TCP port" not in r.out
    quiet = run("-n", "nothere.portqry.test", *dns_args, "-q")
    assert quiet.code == 4 and quiet.out == ""


def test_reverse_lookup_and_nr(dns_args: list[str]) -> None:
    with tcp_listener() as peer:
        looked = run("-n", "127.0.0.1", *dns_args, "-e", str(peer))
        skipped = run("-n", "127.0.0.1", *dns_args, "-e", str(peer), "-nr")
    with tcp_listener("127.0.0.2") as other:
        failed = run("-n", "127.0.0.2", *dns_args, "-e", str(other))
    assert "Attempting to resolve IP address to a name..." in looked.out
    assert "IP address resolved to host.portqry.test" in looked.out
    assert "Attempting to resolve IP address" not in skipped.out
    assert "Failed to resolve IP address to name" in failed.out and failed.code == 0  # PortQry continues


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_targets(dns_args: list[str]) -> None:
    with tcp_listener("::1") as peer:
        plain = run("-n", "::1", "-nr", "-e", str(peer))
        bracketed = run("-n", "[::1]", "-nr", "-e", str(peer), "--json")
        named = run("-n", "host6.portqry.test", *dns_args, "-e", str(peer))
    assert plain.code == bracketed.code == named.code == 0, (plain.err, named.err)
    assert json.loads(bracketed.out)["address"] == "::1"
    assert "Name resolved to ::1" in named.out


def test_list_services_and_profiles() -> None:
    r = run("--list-services")
    assert r.code == 0
    assert len(r.lines) == 60
    assert any(line.startswith("Kerberos Key Distribution Center [kdc]: tcp/88") for line in r.lines)
    p = run("--list-profiles")
    assert p.code == 0 and any(line.startswith("domain-controller: ") for line in p.lines)


def test_service_expands_to_catalog_ports_with_labels() -> None:
    r = run("-n", "127.0.0.1", "-nr", "--service", "kdc", "-p", "tcp", "--json", "--timeout", "0.2")
    rows = [json.loads(line) for line in r.lines]
    assert [(x["protocol"], x["port"], x["service"]) for x in rows] == [
        ("tcp", 88, "Kerberos"),
        ("tcp", 464, "Kerberos Password V5"),
    ]


def test_profile_text_lists_what_is_not_probed() -> None:
    r = run("-n", "127.0.0.1", "-nr", "--profile", "dns-server", "-p", "udp", *FAST)
    assert "UDP port 53 (DNS service): " in r.out or "UDP port 53 (" in r.out
    assert "TCP port 53" not in r.out
    dc = run("-n", "127.0.0.1", "-nr", "--profile", "domain-controller", "-p", "tcp", "--timeout", "0.2")
    assert "dynamic RPC, checked through the endpoint mapper on TCP 135" in dc.out
    assert "icmp (profile:domain-controller): not probed (no port)" in dc.out

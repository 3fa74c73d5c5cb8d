"""The probe engine against real loopback peers: states, reasons, tries, pacing, concurrency, resolution."""

from __future__ import annotations

import asyncio
import itertools
import socket

import pytest

from exporter.engine import Engine
from exporter.model import ProbeOptions
from exporter.probes import port_spec
from exporter.resolve import Resolver
from exporter.states import PortState, Reason
from tests.cldap import FakeDC, cldap_service
from tests.dnsserver import dns_server
from tests.peers import closed_port, tcp_listener, udp_peer

FAST = ProbeOptions(timeout_seconds=0.3, tcp_tries=3, udp_tries=1)


def engine(**kw: object) -> Engine:
    kw.setdefault("udp_pacing_seconds", 0.0)
    kw.setdefault("udp_recheck_gap_seconds", 0.05)
    return Engine(**kw)  # type: ignore[arg-type]


async def test_tcp_listening_and_refused() -> None:
    with tcp_listener() as open_port:
        closed = closed_port()
        results = await engine().probe_target(
            "lo", "127.0.0.1", [port_spec("tcp", open_port), port_spec("tcp", closed)], FAST
        )
    assert [(r.port, r.state, r.reason, r.tries) for r in results] == [
        (open_port, PortState.LISTENING, Reason.SYN_ACK, 1),
        (closed, PortState.NOT_LISTENING, Reason.REFUSED, 1),
    ]
    assert all(r.address == "127.0.0.1" and r.target == "lo" for r in results)


async def test_udp_reply_icmp_and_silence() -> None:
    with udp_peer(echo=True) as (echo_port, echo_seen), udp_peer(echo=False) as (silent_port, silent_seen):
        closed = closed_port(socket.SOCK_DGRAM)
        results = await engine().probe_target(
            "lo",
            "127.0.0.1",
            [port_spec("udp", echo_port), port_spec("udp", closed), port_spec("udp", silent_port)],
            FAST,
        )
    states = [(r.state, r.reason) for r in results]
    assert states == [
        (PortState.LISTENING, Reason.REPLY),
        (PortState.NOT_LISTENING, Reason.ICMP_PORT_UNREACHABLE),
        (PortState.LISTENING_OR_FILTERED, Reason.NO_REPLY),
    ]
    # the datagram we think we send is really sent: each peer saw exactly one per try; the silent port was
    # re-checked once because the same host sent an ICMP port unreachable in this round
    assert len(echo_seen) == 1
    assert (results[2].tries, len(silent_seen)) == (2, 2)
    assert results[2].duration_seconds >= 0.6


async def test_no_recheck_without_icmp_from_the_host_or_when_off() -> None:
    with udp_peer(echo=False) as (silent_port, seen):
        closed = closed_port(socket.SOCK_DGRAM)
        [alone] = await engine().probe_target("lo", "127.0.0.1", [port_spec("udp", silent_port)], FAST)
        off = await engine(udp_recheck_max=0).probe_target(
            "lo", "127.0.0.1", [port_spec("udp", silent_port), port_spec("udp", closed)], FAST
        )
        await asyncio.sleep(0.05)
    assert alone.tries == 1 and off[0].tries == 1
    assert len(seen) == 2


async def test_udp_tries_send_that_many_datagrams() -> None:
    with udp_peer(echo=False) as (port, seen):
        [result] = await engine().probe_target(
            "lo", "127.0.0.1", [port_spec("udp", port)], ProbeOptions(timeout_seconds=0.1, udp_tries=3)
        )
        await asyncio.sleep(0.05)
    assert result.tries == 3
    assert len(seen) == 3


async def test_tries_count_the_protocol_probes_datagrams() -> None:
    """A protocol-probed UDP port: the query is the first datagram, so ``tries`` counts the probe's datagrams."""
    dc = FakeDC("dc1.pqtest.test", "pqtest.test")
    with udp_peer(echo=False) as (silent, seen), cldap_service({"127.0.0.1": dc}) as cldap:
        options = ProbeOptions(timeout_seconds=0.3, udp_tries=1)
        specs = [port_spec("udp", silent, binding="snmp"), port_spec("udp", cldap.ports["127.0.0.1"], binding="ldap")]
        quiet, ldap = await engine(udp_recheck_max=0).probe_target("lo", "127.0.0.1", specs, options)
        first = ProbeOptions(timeout_seconds=0.3, udp_tries=1, udp_unformatted_first=True)
        [both] = await engine(udp_recheck_max=0).probe_target("lo", "127.0.0.1", specs[:1], first)
        await asyncio.sleep(0.05)
    assert (quiet.state, quiet.reason, quiet.tries) == (PortState.FILTERED, Reason.PROTOCOL_NO_REPLY, 1)
    assert (ldap.reason, ldap.tries) == (Reason.PROTOCOL_REPLY, 2)  # the rootDSE search, then the LDAP ping
    assert cldap.pings["127.0.0.1"] == 1
    assert both.tries == 2  # PortQry's unformatted datagram, then the SNMP query
    assert len(seen) == 1 + 2


async def test_one_pacing_slot_per_datagram_sent() -> None:
    """Every pacing slot a probe takes is a datagram it sends: a protocol-bound UDP port takes one, not two."""
    dc = FakeDC("dc1.pqtest.test", "pqtest.test")
    with udp_peer(echo=False) as (silent, seen), cldap_service({"127.0.0.1": dc}) as cldap:
        eng = engine(udp_recheck_max=0, udp_pacing_seconds=0.01)
        slots = 0
        pace = eng.pace_udp

        async def counted(address: str) -> None:
            nonlocal slots
            slots += 1
            await pace(address)

        eng.pace_udp = counted  # type: ignore[method-assign]
        specs = [
            port_spec("udp", silent, binding="snmp"),
            port_spec("udp", cldap.ports["127.0.0.1"], binding="ldap"),
            port_spec("udp", silent),
        ]
        results = await eng.probe_target("lo", "127.0.0.1", specs, ProbeOptions(timeout_seconds=0.3, udp_tries=1))
        await asyncio.sleep(0.05)
    assert [r.tries for r in results] == [1, 2, 1]  # the SNMP query; the rootDSE search and LDAP ping; one
    assert len(seen) == 2
    assert slots == sum(r.tries for r in results)


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        cm = tcp_listener("::1")
        port = cm.__enter__()
    except OSError as exc:
        pytest.skip(f"::1 not usable: {exc}")
    try:
        [result] = await engine().probe_target("lo6", "::1", [port_spec("tcp", port)], FAST)
    finally:
        cm.__exit__(None, None, None)
    assert (result.address, result.state) == ("::1", PortState.LISTENING)


async def test_concurrency_limit_bounds_probes_in_flight() -> None:
    with udp_peer(echo=False) as (port, _seen):
        eng = engine(concurrency=4)
        specs = [port_spec("udp", port)] * 12
        results = await eng.probe_target("lo", "127.0.0.1", specs, ProbeOptions(timeout_seconds=0.2))
    assert len(results) == 12
    assert eng.max_in_flight == 4
    assert all(r.state is PortState.LISTENING_OR_FILTERED for r in results)


async def test_udp_pacing_spaces_datagrams_to_one_address() -> None:
    with udp_peer(echo=True) as (port, seen):
        eng = engine(udp_pacing_seconds=0.15)
        await eng.probe_target("lo", "127.0.0.1", [port_spec("udp", port)] * 4, FAST)
    times = sorted(t for t, _ in seen)
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.14, gaps


async def test_udp_pacing_is_per_address() -> None:
    with (
        udp_peer(echo=True, host="127.0.0.1") as (p1, seen1),
        udp_peer(echo=True, host="127.0.0.2") as (p2, seen2),
    ):
        eng = engine(udp_pacing_seconds=0.5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(
            eng.probe_target("a", "127.0.0.1", [port_spec("udp", p1)], FAST),
            eng.probe_target("b", "127.0.0.2", [port_spec("udp", p2)], FAST),
        )
        took = loop.time() - started
    assert len(seen1) == len(seen2) == 1
    assert took < 0.4  # the two addresses did not wait for each other


async def test_resolution_through_configured_nameserver() -> None:
    with tcp_listener() as port, dns_server({"dc1.portqry.test": "127.0.0.1"}) as (ns, ns_port, _):
        eng = engine(resolver=Resolver([ns], port=ns_port, timeout=2.0))
        [ok] = await eng.probe_target("dc1", "dc1.portqry.test", [port_spec("tcp", port)], FAST)
        missing = await eng.probe_target(
            "ghost", "ghost.portqry.test", [port_spec("tcp", port), port_spec("udp", 53)], FAST
        )
    assert (ok.address, ok.state) == ("127.0.0.1", PortState.LISTENING)
    assert [(r.state, r.reason, r.address) for r in missing] == [
        (PortState.FILTERED, Reason.RESOLVE_FAILED, ""),
        (PortState.FILTERED, Reason.RESOLVE_FAILED, ""),
    ]
    assert "ghost.portqry.test" in missing[0].error


async def test_resolver_timeout_is_a_result_not_an_exception() -> None:
    with udp_peer(echo=False) as (silent_dns, _):  # a "DNS server" that never answers
        eng = engine(resolver=Resolver(["127.0.0.1"], port=silent_dns, timeout=0.3))
        [result] = await eng.probe_target("slow", "slow.portqry.test", [port_spec("tcp", 1)], FAST)
    assert result.reason is Reason.RESOLVE_FAILED
    assert result.duration_seconds < 2.0


async def test_service_labels() -> None:
    results = await engine().probe_target(
        "lo",
        "127.0.0.1",
        [
            port_spec("udp", 135),
            port_spec("tcp", 389),
            port_spec("tcp", 47999),
            port_spec("tcp", 1, service="LDAP Server"),
        ],
        ProbeOptions(timeout_seconds=0.2, protocol_probes=False),
    )
    assert [r.service for r in results] == ["epmap", "ldap", "unknown service", "LDAP Server"]


async def test_every_address_of_a_name_or_the_first() -> None:
    with (
        dns_server({"multi.test": ["127.0.0.2", "127.0.0.3"]}) as (_h, dns_port, queries),
        tcp_listener("127.0.0.2") as port,
    ):
        resolver = Resolver(["127.0.0.1"], port=dns_port, timeout=1.0)
        both = await engine(resolver=resolver).probe_target(
            "multi", "multi.test", [port_spec("tcp", port)], FAST, addresses="all"
        )
        first = await engine(resolver=resolver).probe_target("multi", "multi.test", [port_spec("tcp", port)], FAST)
    assert sorted((r.address, r.state) for r in both) == [
        ("127.0.0.2", PortState.LISTENING),
        ("127.0.0.3", PortState.NOT_LISTENING),
    ]
    assert len(first) == 1 and first[0].address in {"127.0.0.2", "127.0.0.3"}  # the server's order decides
    # "all" asks A and AAAA; "first" stops at the first record type that answers
    assert queries == ["multi.test. A", "multi.test. AAAA", "multi.test. A"]

"""UDP against a host that keeps the kernel's ICMP rate limit (a burst of 6, then one error per second)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from exporter.engine import Engine
from exporter.model import ProbeOptions
from exporter.probes import port_spec
from exporter.states import PortState
from tests import testbed

CLOSED = list(range(31000, 31014))  # 14 closed UDP ports: more than the ICMP burst
DROPPED = 31100


@pytest.fixture(scope="module")
def limited_host() -> Iterator[testbed.Namespace]:
    testbed.require_netns()
    ns = testbed.Namespace.create("icmplim", icmp_deterministic=False)
    try:
        ns.add_rule("-p", "udp", "--dport", str(DROPPED), "-j", "DROP")
        yield ns
    finally:
        ns.teardown()


async def sweep(ns: testbed.Namespace, recheck: int) -> dict[int, PortState]:
    engine = Engine(udp_pacing_seconds=0.0, udp_recheck_max=recheck, udp_recheck_gap_seconds=1.0)
    specs = [port_spec("udp", p, binding="") for p in [*CLOSED, DROPPED]]
    results = await engine.probe_target("limited", ns.address, specs, ProbeOptions(timeout_seconds=0.5))
    return {r.port: r.state for r in results}


@pytest.mark.testbed
async def test_rate_limited_icmp_makes_closed_ports_look_silent_without_recheck(
    limited_host: testbed.Namespace,
) -> None:
    states = await sweep(limited_host, recheck=0)
    closed_right = sum(states[p] is PortState.NOT_LISTENING for p in CLOSED)
    assert closed_right < len(CLOSED)  # the kernel's limit hid some: what a fast UDP sweep sees
    assert states[DROPPED] is PortState.LISTENING_OR_FILTERED


@pytest.mark.testbed
async def test_recheck_recovers_the_closed_ports_and_keeps_the_dropped_one(
    limited_host: testbed.Namespace,
) -> None:
    await asyncio.sleep(7)  # the previous sweep emptied the host's ICMP bucket; a daemon round is 30 s apart
    states = await sweep(limited_host, recheck=32)
    assert [p for p in CLOSED if states[p] is not PortState.NOT_LISTENING] == []
    assert states[DROPPED] is PortState.LISTENING_OR_FILTERED

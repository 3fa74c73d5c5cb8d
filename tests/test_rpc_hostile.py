"""The endpoint-mapper probe against hostile and awkward mappers on loopback (issue 13).

- TCP fragment floods (C706 12.6.3.1: fragments until ``PFC_LAST_FRAG``): the probe stops at the response caps,
  reports a protocol error, and the engine loop that runs it stays far from a pinned core.  The flooding peer runs
  in its own process, so the CPU measured is the probe's.
- A bind_ack split over two TCP segments is read whole by its ``frag_length``.
- A UDP mapper with a long table is paged within the deadline (larger pages, no pacing between pages), and the
  pages read before a silence or the deadline are kept.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from exporter.engine import Engine
from exporter.model import ProbeOptions, Protocol, RpcDetails
from exporter.plan import TargetPlan
from exporter.probes import port_spec
from exporter.result import ProbeResult
from exporter.scheduler import Scheduler
from exporter.states import PortState, Reason
from exporter.store import ResultStore
from tests.helpers import REPO
from tests.hostile_rpc import UdpMapper, tcp_mapper

FAST = ProbeOptions(timeout_seconds=1.0, tcp_tries=1)


@pytest.fixture
def hostile_process(request: pytest.FixtureRequest) -> Iterator[int]:
    """``python -m tests.hostile_rpc MODE`` in its own process (its CPU is not ours); yields its TCP port."""
    with subprocess.Popen(
        [sys.executable, "-m", "tests.hostile_rpc", request.param], cwd=REPO, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            yield int(proc.stdout.readline())
        finally:
            proc.kill()


def _rpc(result: ProbeResult) -> RpcDetails:
    rpc = result.details["rpc"]
    assert isinstance(rpc, RpcDetails)
    return rpc


async def _probe(protocol: Protocol, port: int, options: ProbeOptions = FAST, *, pacing: float = 0.25) -> ProbeResult:
    [result] = await Engine(udp_pacing_seconds=pacing).probe_target(
        "epm", "127.0.0.1", [port_spec(protocol, port, binding="rpc")], options
    )
    return result


# --------------------------------------------------------------------------- TCP fragment floods


@pytest.mark.parametrize(
    ("hostile_process", "cap"),
    [("flood", "more than 768 fragments in one response"), ("bigflood", "response larger than 1048576 bytes")],
    indirect=["hostile_process"],
)
async def test_a_fragment_flood_ends_at_the_caps_without_pinning_a_core(hostile_process: int, cap: str) -> None:
    """The daemon's engine loop probes a flooding mapper every second for 3 s: under half a core, every round a
    protocol error at the response cap, each well inside its deadline."""
    store = ResultStore((0.1, 1.0))
    scheduler = Scheduler(Engine(udp_pacing_seconds=0), store, first_round_spread_seconds=0)
    plan = TargetPlan("flood", "127.0.0.1", (port_spec("tcp", hostile_process, binding="rpc"),), FAST, 1.0, 0)
    wall, cpu = time.monotonic(), time.process_time()
    scheduler.apply([plan])
    try:
        await asyncio.sleep(3.3)
    finally:
        await scheduler.stop()
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    print(f"{hostile_process}: {cpu:.3f} s CPU in {wall:.2f} s wall ({100 * cpu / wall:.1f} % of a core)")
    assert scheduler.rounds("flood") >= 3
    [result] = store.snapshot().results
    assert (result.state, result.reason) == (PortState.LISTENING, Reason.PROTOCOL_ERROR)
    assert cap in result.error
    assert result.duration_seconds < FAST.protocol_budget / 2
    assert cpu < wall / 2


async def test_one_flood_probe_reads_a_bounded_number_of_bytes() -> None:
    with tcp_mapper("flood") as port:
        started = time.monotonic()
        result = await _probe("tcp", port)
    assert (result.state, result.reason) == (PortState.LISTENING, Reason.PROTOCOL_ERROR)
    assert result.error == (
        "endpoint mapper reply: more than 768 fragments in one response (at byte 18432)"
    )  # 768 x 24 bytes read, not one more fragment
    assert time.monotonic() - started < FAST.protocol_budget / 2


# --------------------------------------------------------------------------- bind_ack in two segments


async def test_a_bind_ack_split_over_two_segments_is_read_whole() -> None:
    with tcp_mapper("split-bind", entries=3) as port:
        result = await _probe("tcp", port)
    assert (result.state, result.reason, result.error) == (PortState.LISTENING, Reason.PROTOCOL_REPLY, "")
    rpc = _rpc(result)
    assert (rpc.via, rpc.pages, rpc.total) == ("tcp", 1, 3)
    assert [p.port for p in rpc.dynamic_ports] == [49664, 49665, 49666]


async def test_a_long_table_is_paged_over_tcp() -> None:
    with tcp_mapper("pages", entries=1200) as port:
        result = await _probe("tcp", port)
    assert (result.state, result.reason, result.error) == (PortState.LISTENING, Reason.PROTOCOL_REPLY, "")
    rpc = _rpc(result)
    assert (rpc.pages, rpc.total) == (3, 1200)  # 500 entries asked per page


# --------------------------------------------------------------------------- UDP paging


async def test_a_udp_mapper_answering_every_page_of_500_entries_is_listening() -> None:
    """With the default 0.25 s UDP pacing, 63 paced pages of 8 entries outlasted the 2 s budget (FILTERED)."""
    with UdpMapper(500) as mapper:
        started = time.monotonic()
        result = await _probe("udp", mapper.port)
    assert (result.state, result.reason, result.error) == (PortState.LISTENING, Reason.PROTOCOL_REPLY, "")
    rpc = _rpc(result)
    assert (rpc.via, rpc.total) == ("udp", 500)
    assert [str(e.object_uuid) for e in rpc.entries[:2]] == [
        "00000000-0000-0000-0000-000000000001",
        "00000000-0000-0000-0000-000000000002",
    ]
    asked = [int.from_bytes(r.body[36:40], "little") for r in mapper.requests]
    assert asked == [8, 16, 32, 64, 64, 64, 64, 64, 64, 64]
    assert rpc.pages == len(mapper.requests) == 10
    assert time.monotonic() - started < 1.5  # one pacing slot, not ten


async def test_fragmented_udp_pages_stay_small() -> None:
    with UdpMapper(40, fragment_size=200) as mapper:
        result = await _probe("udp", mapper.port)
    assert (result.state, result.reason, result.error) == (PortState.LISTENING, Reason.PROTOCOL_REPLY, "")
    assert [int.from_bytes(r.body[36:40], "little") for r in mapper.requests] == [8] * 5
    assert _rpc(result).total == 40


async def test_a_udp_mapper_that_falls_silent_keeps_the_pages_read() -> None:
    with UdpMapper(500, answer_pages=3) as mapper:
        result = await _probe("udp", mapper.port)
    assert (result.state, result.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY)
    assert result.error == "partial endpoint-mapper dump: no reply to page 4 after 3 pages"
    rpc = _rpc(result)
    assert (rpc.pages, rpc.total) == (3, 8 + 16 + 32)


async def test_a_slow_udp_mapper_keeps_the_pages_read_by_the_deadline() -> None:
    """Every page answered after 0.3 s: the 2 s budget ends the dump part-way, LISTENING with the pages read."""
    with UdpMapper(500, delay=0.3) as mapper:
        started = time.monotonic()
        result = await _probe("udp", mapper.port)
    elapsed = time.monotonic() - started
    assert (result.state, result.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY)
    rpc = _rpc(result)
    assert result.error == f"partial endpoint-mapper dump: deadline after {rpc.pages} pages"
    assert 3 <= rpc.pages < 10
    asked: list[int] = [8, 16, 32, 64, 64, 64, 64, 64, 64]
    assert rpc.total == sum(asked[: rpc.pages])
    assert elapsed < FAST.protocol_budget + 0.5

"""Our errors become results; bugs surface: in tests they raise, in the daemon they cost one port one round.

A probe that meets a hostile reply raises ``DecodeError`` (ours): that is LISTENING/``protocol-error``.  A
``TypeError`` or ``LookupError`` is a bug: without a guard (the CLI, these tests) it propagates; with the
scheduler's guard it is logged with its traceback, counted in ``portqry_exporter_probe_errors_total``, and the
port keeps its previous result while the target's other ports publish as usual.
"""

from __future__ import annotations

import asyncio

import pytest
import structlog.testing
from prometheus_client import CollectorRegistry

from exporter import probes
from exporter.collector import ExporterStatus, PortqryCollector, render
from exporter.engine import Engine
from exporter.errors import DecodeError
from exporter.model import ProbeOptions
from exporter.plan import TargetPlan
from exporter.probes import port_spec
from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.scheduler import Scheduler
from exporter.states import Finding, PortState, Reason
from exporter.store import ResultStore
from tests.peers import tcp_listener

FAST = ProbeOptions(timeout_seconds=0.3, tcp_tries=1)


class Flaky:
    """A protocol probe whose behaviour the test switches: ``"ok"``, ``"bug"`` (TypeError) or ``"garbled"``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0

    async def __call__(self, ctx: ProbeContext) -> ProtocolOutcome:
        self.calls += 1
        if self.mode == "bug":
            raise TypeError("unsupported operand type(s)")
        if self.mode == "garbled":
            raise DecodeError("length byte past the end", 7)
        return ctx.outcome(Finding.PARSED)


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> Flaky:
    probe = Flaky()
    monkeypatch.setitem(probes.PROBES, "flaky", probe)
    return probe


async def test_a_bug_propagates_without_a_guard(flaky: Flaky) -> None:
    flaky.mode = "bug"
    with tcp_listener() as port, pytest.raises(TypeError, match="unsupported operand"):
        await Engine(udp_pacing_seconds=0).probe_target(
            "lo", "127.0.0.1", [port_spec("tcp", port, binding="flaky")], FAST
        )


async def test_our_decode_error_is_a_protocol_error_result(flaky: Flaky) -> None:
    flaky.mode = "garbled"
    with tcp_listener() as port:
        [result] = await Engine(udp_pacing_seconds=0).probe_target(
            "lo", "127.0.0.1", [port_spec("tcp", port, binding="flaky")], FAST
        )
    assert (result.state, result.reason) == (PortState.LISTENING, Reason.PROTOCOL_ERROR)
    assert "DecodeError" in result.error and "at byte 7" in result.error


async def test_the_daemon_guard_keeps_the_previous_result(flaky: Flaky) -> None:
    store = ResultStore((0.1, 1.0))
    engine = Engine(udp_pacing_seconds=0)
    scheduler = Scheduler(engine, store, first_round_spread_seconds=0)
    engine.on_probe_error = scheduler.probe_failed
    registry = CollectorRegistry()
    registry.register(PortqryCollector(store, ExporterStatus()))
    with tcp_listener() as buggy_port, tcp_listener() as plain_port, structlog.testing.capture_logs() as logs:
        specs = (port_spec("tcp", buggy_port, binding="flaky"), port_spec("tcp", plain_port, binding=""))
        scheduler.apply([TargetPlan("lo", "127.0.0.1", specs, FAST, interval_seconds=0.2, jitter_ratio=0)])
        try:
            await _wait(lambda: scheduler.rounds("lo") >= 1)
            before = {r.port: r for r in store.snapshot().results}
            assert before[buggy_port].reason is Reason.PROTOCOL_REPLY
            flaky.mode = "bug"
            calls = flaky.calls
            rounds = scheduler.rounds("lo")
            await _wait(lambda: scheduler.rounds("lo") >= rounds + 2 and flaky.calls >= calls + 2)
        finally:
            await scheduler.stop()
    after = {r.port: r for r in store.snapshot().results}
    assert after[buggy_port] == before[buggy_port]  # the very same result object: nothing was published
    assert after[plain_port].timestamp > before[plain_port].timestamp  # the other port went on
    errors = store.snapshot().probe_errors_total
    assert errors >= 2
    text = render(store, registry).decode()
    assert f"portqry_exporter_probe_errors_total {float(errors)}" in text
    logged = [e for e in logs if e["event"].startswith("probe raised")]
    assert len(logged) == errors
    assert logged[0]["log_level"] == "error" and isinstance(logged[0]["exc_info"], TypeError)
    assert logged[0]["port"] == buggy_port


async def _wait(done, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not done():
            await asyncio.sleep(0.02)

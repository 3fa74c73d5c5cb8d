"""Our errors become results; bugs surface: in tests they raise, in the daemon they cost one port one round.

A probe that meets a hostile reply raises ``DecodeError`` (ours): that is LISTENING/``protocol-error``.  A
``TypeError`` or ``LookupError`` is a bug: without a guard (the CLI, these tests) it propagates; with the
scheduler's guard it is logged with its traceback, counted in ``portqry_exporter_probe_errors_total``, and the
port keeps its previous result while the target's other ports publish as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading

import pytest
import structlog.testing
from prometheus_client import CollectorRegistry

from exporter import probes
from exporter.collector import ExporterStatus, PortqryCollector, render
from exporter.engine import Engine
from exporter.errors import DecodeError, error_detail, plain_error
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
    """A protocol probe whose behaviour the test switches: ``"ok"``, ``"bug"`` (TypeError), ``"garbled"`` or
    ``"struct"`` (a library's ``struct.error``)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0

    async def __call__(self, ctx: ProbeContext) -> ProtocolOutcome:
        self.calls += 1
        if self.mode == "bug":
            raise TypeError("unsupported operand type(s)")
        if self.mode == "garbled":
            raise DecodeError("length byte past the end", 7)
        if self.mode == "struct":  # what impacket's Structure.fromString raises on a short reply
            raise struct.error("unpack requires a buffer of 1 bytes", "When unpacking field 'ver_minor | B | b''[:1]'")
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
    assert result.error == "flaky: length byte past the end (at byte 7)"  # no class name


async def test_a_library_error_is_a_plain_sentence_with_the_detail_kept(flaky: Flaky) -> None:
    """impacket's ``struct.error`` text (a tuple repr) never reaches ``error``; it is the debug-only detail."""
    flaky.mode = "struct"
    with tcp_listener() as port:
        [result] = await Engine(udp_pacing_seconds=0).probe_target(
            "lo", "127.0.0.1", [port_spec("tcp", port, binding="flaky")], FAST
        )
    assert (result.state, result.reason) == (PortState.LISTENING, Reason.PROTOCOL_ERROR)
    assert result.error == "flaky: truncated or malformed reply"
    assert "unpack requires" in result.error_detail and "When unpacking field" in result.error_detail
    assert "error_detail" not in result.to_json()


def _short_bind_ack_server() -> tuple[socket.socket, int]:
    """A TCP 135 that answers the bind with a bind_ack of 16 bytes (a header, ``frag_length`` 16, no body): impacket's
    Structure reads past the end."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(2)
                conn.recv(4096)
                conn.sendall(bytes.fromhex("05000c03100000001000000001000000"))

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


async def test_impacket_struct_text_stays_out_of_the_error_and_goes_to_the_debug_log() -> None:
    server, port = _short_bind_ack_server()
    store = ResultStore((0.1, 1.0))
    scheduler = Scheduler(Engine(udp_pacing_seconds=0), store, first_round_spread_seconds=0)
    options = ProbeOptions(timeout_seconds=1.0, tcp_tries=1)
    with server, structlog.testing.capture_logs() as logs:
        scheduler.apply([TargetPlan("lo", "127.0.0.1", (port_spec("tcp", port, binding="rpc"),), options, 60, 0)])
        try:
            await _wait(lambda: scheduler.rounds("lo") >= 1)
        finally:
            await scheduler.stop()
    [result] = store.snapshot().results
    assert result.state is PortState.LISTENING
    assert result.error == "endpoint mapper bind reply is truncated or malformed"
    assert "unpack requires a buffer" in result.error_detail
    info = [e for e in logs if e["event"] == "port state changed"]
    assert info and "error_detail" not in info[0] and "unpack" not in info[0]["error"]
    [debug] = [e for e in logs if e["event"] == "probe error detail"]
    assert debug["log_level"] == "debug" and "When unpacking field" in debug["error_detail"]


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


def test_plain_error_names_no_python_internals() -> None:
    reset = ConnectionResetError(104, "Connection reset by peer")
    tls = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    tls.reason = "WRONG_VERSION_NUMBER"
    assert plain_error(reset) == "Connection reset by peer" and "Errno" in error_detail(reset)
    assert plain_error(tls) == "wrong version number"
    assert plain_error(TimeoutError()) == "no reply in time"
    assert (
        plain_error(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")) == "reply text is not valid utf-8"
    )
    assert plain_error(DecodeError("bad", 3, detail="pyasn1 says")) == "bad (at byte 3)"
    assert error_detail(DecodeError("bad", 3, detail="pyasn1 says")) == "pyasn1 says"

"""Every protocol binding against every hostile peer of tests/hostile.py, through the engine, with budgets.

Each case is one ``Engine.probe_port`` with a :class:`PortSpec` bound to the binding, 0.5 s per try and one try,
against a server of ``python3 -m tests.hostile`` (its own process, so its CPU is not ours).  Each case runs in
a fresh forked process of its own (a pool runs many at once), so the CPU, descriptor and thread figures are the
probe's alone.  Asserted for each case:

- no exception: the probe ends in a result;
- the probe ends by its deadline (the state probe's tries x timeout plus the protocol budget) plus
  :data:`MARGIN` (the engine's own 0.5 s grace on a protocol probe, and scheduling noise);
- a flood (fragments, pages, replies or interim responses that never end) is cut by a count bound within
  :data:`FLOOD_CUT`, not left to run to the deadline: the CPU check alone misses a probe that parses a flood
  flat out when the machine is busy and gives it less than half a core;
- CPU (``time.process_time``, every thread) at most half the wall time plus :data:`CPU_SLACK`, over the probe
  and again over the probe plus the wait for its threads to end: this catches a pinned core, not noise;
- descriptors (``/proc/self/fd``) and threads (``threading.active_count``) return to their count before the
  probe within :data:`SETTLE` seconds;
- the reason is a protocol reason (README "Port states": with the protocol query as the first datagram, a UDP
  port's result is always one of them unless ICMP answers); a valid reply cut in two is ``protocol-reply``, and
  so is an endpoint mapper that answers every page validly (the pages read by the deadline are kept).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.engine import Engine
from exporter.model import ProbeOptions
from exporter.probes import DEFAULT_BINDINGS, PROBES, port_spec
from exporter.resolve import Resolved
from exporter.states import Reason
from tests import hostile

OPTIONS = ProbeOptions(timeout_seconds=0.5, tcp_tries=1, udp_tries=1)
#: The state probe's tries x timeout, then the protocol budget, seconds.
DEADLINE = OPTIONS.timeout_seconds * max(OPTIONS.tcp_tries, OPTIONS.udp_tries) + OPTIONS.protocol_budget
MARGIN = 0.75
CPU_SLACK = 0.2
SETTLE = 2.0
FLOODS = ("fragment_flood", "page_flood", "reply_flood")
#: Seconds by which a flood must have been cut (one try's timeout; the bounded ones take 0.01-0.1 s).
FLOOD_CUT = OPTIONS.timeout_seconds
#: Cases run at once (each mostly waits on a deadline; the machine may have two cores).
WORKERS = 6
PROTOCOL_REASONS = {Reason.PROTOCOL_ERROR, Reason.PROTOCOL_NO_REPLY, Reason.PROTOCOL_REFUSED, Reason.PROTOCOL_REPLY}
ROOT = Path(__file__).resolve().parent.parent

CASES = hostile.cases()
#: Cases that find a bug not fixed yet (strict: the fix makes them pass, and then this entry must go).
KNOWN_BUGS: dict[str, str] = {}  # case -> the bug that makes it fail, as a strict xfail until fixed


def _case_param(case: tuple[str, str, str]) -> Any:
    key = hostile.case_id(*case)
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[key])] if key in KNOWN_BUGS else []
    return pytest.param(case, id=key, marks=marks)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def measure(binding: str, transport: str, behaviour: str, port: int) -> dict[str, Any]:
    """Probe one hostile server (in this process) and return the figures; runs in a pool worker."""

    async def run() -> dict[str, Any]:
        engine = Engine()
        spec = port_spec(transport, port, binding=binding)  # type: ignore[arg-type]
        where = Resolved("127.0.0.1", socket.AF_INET)
        await asyncio.sleep(0)
        fds0, threads0 = _fds(), threading.active_count()
        cpu0, wall0 = time.process_time(), time.monotonic()
        out: dict[str, Any] = {"fds0": fds0, "threads0": threads0, "exception": None}
        try:
            result = await engine.probe_port("hostile", "127.0.0.1", where, spec, OPTIONS)
            out.update(reason=result.reason.value, state=result.state.value, error=result.error)
        except Exception:  # noqa: BLE001 - reported by the test, which fails on it
            out["exception"] = traceback.format_exc()
        out["wall"], out["cpu"] = time.monotonic() - wall0, time.process_time() - cpu0
        until = time.monotonic() + SETTLE
        while (_fds(), threading.active_count()) != (fds0, threads0) and time.monotonic() < until:
            await asyncio.sleep(0.05)
        out["fds"], out["threads"] = _fds(), threading.active_count()
        out["wall_total"], out["cpu_total"] = time.monotonic() - wall0, time.process_time() - cpu0
        return out

    return asyncio.run(run())


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    """The hostile servers' process; yields its port map."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hostile"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # its peers' broken pipes; run `python3 -m tests.hostile` by hand to see them
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"tests.hostile exited ({proc.poll()})"
        yield json.loads(line)
    finally:
        proc.terminate()
        proc.wait(10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture(scope="module")
def figures(request: pytest.FixtureRequest, ports: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Every selected case, run concurrently in forked worker processes: ``{case id: figures}``."""
    wanted = [
        item.callspec.params["case"]  # type: ignore[attr-defined]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params
    ]
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(WORKERS, maxtasksperchild=1) as pool:
        jobs = {
            hostile.case_id(*case): pool.apply_async(measure, (*case, ports[hostile.case_id(*case)])) for case in wanted
        }
        out = {key: job.get(timeout=120) for key, job in jobs.items()}
    took = time.monotonic() - started
    print(f"\n{len(out)} hostile cases in {took:.1f} s")
    return out


def test_every_binding_and_transport_is_covered() -> None:
    """A new binding in ``PROBES`` (or a new default transport) must get its hostile cases here."""
    assert set(hostile.TCP_BINDINGS) | set(hostile.UDP_BINDINGS) == set(PROBES)
    for protocol, _port in DEFAULT_BINDINGS:
        binding = DEFAULT_BINDINGS[(protocol, _port)]
        assert binding in (hostile.TCP_BINDINGS if protocol == "tcp" else hostile.UDP_BINDINGS)


@pytest.mark.parametrize("case", [_case_param(c) for c in CASES])
def test_hostile_peer(case: tuple[str, str, str], figures: dict[str, dict[str, Any]]) -> None:
    _binding, _transport, behaviour = case
    got = figures[hostile.case_id(*case)]
    assert got["exception"] is None, got["exception"]
    summary = f"{got['state']}/{got['reason']} {got['error']!r}"
    assert got["wall"] <= DEADLINE + MARGIN, f"took {got['wall']:.2f} s, deadline {DEADLINE} s: {summary}"
    assert got["cpu"] <= got["wall"] / 2 + CPU_SLACK, f"CPU {got['cpu']:.2f} s in {got['wall']:.2f} s: {summary}"
    assert got["cpu_total"] <= got["wall_total"] / 2 + CPU_SLACK, (
        f"CPU {got['cpu_total']:.2f} s in {got['wall_total']:.2f} s with the wait for threads: {summary}"
    )
    if behaviour in FLOODS:
        assert got["wall"] <= FLOOD_CUT, f"a flood read for {got['wall']:.2f} s, not cut by a count: {summary}"
    assert got["fds"] == got["fds0"], f"descriptors {got['fds0']} -> {got['fds']}: {summary}"
    assert got["threads"] == got["threads0"], f"threads {got['threads0']} -> {got['threads']}: {summary}"
    assert Reason(got["reason"]) in PROTOCOL_REASONS, summary
    if behaviour == "split":
        assert got["reason"] == Reason.PROTOCOL_REPLY, f"a valid reply in two segments: {summary}"
    if behaviour == "page_flood":  # the pages read by the deadline are kept, not thrown away
        assert got["reason"] == Reason.PROTOCOL_REPLY, f"valid pages until the deadline: {summary}"

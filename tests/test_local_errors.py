"""A probe that fails on this host (no descriptor left) publishes no port state: the port keeps its result.

The descriptors really run out: the test lowers its own ``RLIMIT_NOFILE`` to what it has open and fills the
rest, so ``socket()`` fails with the kernel's ``EMFILE``, as in a daemon under a descriptor flood.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
from collections.abc import Iterator

from prometheus_client import CollectorRegistry

from exporter.collector import ExporterStatus, PortqryCollector, render
from exporter.engine import Engine
from exporter.model import ProbeOptions
from exporter.probes import port_spec
from exporter.states import PortState, Reason
from exporter.store import ResultStore
from tests.peers import tcp_listener, udp_peer

FAST = ProbeOptions(timeout_seconds=0.3, tcp_tries=1, udp_tries=1)


@contextlib.contextmanager
def no_descriptors_left() -> Iterator[None]:
    """Every descriptor of this process in use until the block ends (the soft limit restored after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
    try:
        for _ in range(64):
            try:
                held.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        else:
            raise AssertionError("the descriptor limit was not reached")
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def body(store: ResultStore) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortqryCollector(store, ExporterStatus()))
    return render(store, registry).decode()


async def test_no_descriptor_keeps_the_last_state_and_is_counted() -> None:
    engine = Engine(udp_pacing_seconds=0.0)
    store = ResultStore((0.1, 1.0))
    with tcp_listener() as port, udp_peer(echo=False) as (udp_port, _s), udp_peer(echo=False) as (snmp_port, _t):
        specs = [port_spec("tcp", port), port_spec("udp", udp_port), port_spec("udp", snmp_port, binding="snmp")]
        before = await engine.probe_target("lo", "127.0.0.1", specs, FAST)
        store.record("lo", before)
        with no_descriptors_left():
            during = await engine.probe_target("lo", "127.0.0.1", specs, FAST)
        changes = store.record("lo", during)
    assert [r.state for r in before] == [PortState.LISTENING, PortState.LISTENING_OR_FILTERED, PortState.FILTERED]
    assert [(r.reason, r.error_detail) for r in during] == [(Reason.LOCAL_ERROR, "EMFILE")] * 3
    assert changes == []  # nothing published: no state change, no new result
    snap = store.snapshot()
    assert {r.key: r.state for r in snap.results} == {r.key: r.state for r in before}
    assert snap.local_errors_total == {"EMFILE": 3}
    text = body(store)
    assert 'portqry_exporter_local_errors_total{reason="EMFILE"} 3.0' in text
    assert f'port="{port}",domain="",site="",service="unknown service",portqry_port_state="listening"}} 1.0' in text
    assert "local-error" not in text


async def test_no_descriptor_before_any_result_leaves_the_port_without_series() -> None:
    engine = Engine(udp_pacing_seconds=0.0)
    store = ResultStore((0.1, 1.0))
    with tcp_listener() as port:
        with no_descriptors_left():
            during = await engine.probe_target("lo", "127.0.0.1", [port_spec("tcp", port)], FAST)
        store.record("lo", during)
    assert during[0].reason is Reason.LOCAL_ERROR
    assert store.snapshot().results == ()
    assert "portqry_port_state{" not in body(store)


def test_errno_without_icmp_keeps_its_own_reasons() -> None:
    """No route and a local netfilter refusal are facts about reaching the port from here, not local errors."""
    from exporter.states import classify_errno

    assert classify_errno(errno.ENETUNREACH) == (PortState.FILTERED, Reason.NO_ROUTE)
    assert classify_errno(errno.EPERM) == (PortState.FILTERED, Reason.LOCAL_PROHIBITED)
    assert classify_errno(errno.ENOBUFS) == (PortState.FILTERED, Reason.LOCAL_ERROR)

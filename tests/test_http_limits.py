"""The HTTP server holds up under hostile clients (issue 13): idle floods, many scrapers, slowloris, the cap.

The daemon runs as a subprocess with ``RLIMIT_NOFILE`` lowered to 1,024 (soft and hard, so it cannot raise it
again), probing loopback ports of listeners made here: some listening, some bound but not listening (closed).
Against it, on 127.0.0.1 only: 1,100 idle TCP connections (``/-/healthy`` and ``/metrics`` keep answering, the
probed ports keep their states, no ``Too many open files``), 200 concurrent scrapers (all 200), a slowloris client
(cut after the request-head timeout), a cap of 4 with every connection busy (the fifth refused and counted),
request size limits, and, in process, a client that stops reading its response (aborted) and a TLS client that
never starts its handshake (aborted).

Check by hand: ``python3 -m pytest -q tests/test_http_limits.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import resource
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from aiohttp import web

from exporter import http_limits
from exporter.http_limits import REQUEST_HEAD_TIMEOUT_SECONDS, ConnectionLimits, serve_limited
from tests.daemon import RunningDaemon, run_daemon
from tests.webtls import make_pki

NOFILE = 1024
IDLE_CONNECTIONS = 1100


def _limit_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@pytest.fixture(scope="module", autouse=True)
def _enough_descriptors_here() -> None:
    """This process holds the attack's sockets: it needs more than the daemon's 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * IDLE_CONNECTIONS
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}: cannot hold the attack's connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@pytest.fixture(scope="module")
def loopback_ports() -> Iterator[dict[int, str]]:
    """Port -> expected state: 5 listening, 5 bound but not listening (refused)."""
    with ExitStack() as stack:
        yield loopback_listeners(stack)


def loopback_listeners(stack: ExitStack) -> dict[int, str]:
    """Port -> expected state: 5 listening (accepted and closed by a thread, so no queue fills), 5 refused."""
    expected: dict[int, str] = {}
    sel = stack.enter_context(selectors.DefaultSelector())
    for listening in (True,) * 5 + (False,) * 5:
        sock = stack.enter_context(socket.socket())
        sock.bind(("127.0.0.1", 0))
        if listening:
            sock.listen(64)
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
        expected[sock.getsockname()[1]] = "listening" if listening else "not_listening"
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            for key, _ in sel.select(0.1):
                with contextlib.suppress(OSError):
                    key.fileobj.accept()[0].close()  # type: ignore[union-attr]

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    stack.callback(thread.join, 5)
    stack.callback(stop.set)
    return expected


def _config(path: Path, ports: dict[int, str], extra: str = "") -> Path:
    specs = ", ".join(f'"tcp/{port}"' for port in ports)
    path.write_text(
        f"""
[exporter]
udp_pacing_seconds = 0.0
[defaults]
interval_seconds = 1
timeout_seconds = 0.5
tcp_tries = 1
jitter_ratio = 0.0
protocol_probes = false
[[targets]]
name = "lo"
host = "127.0.0.1"
ports = [{specs}]
{extra}"""
    )
    return path


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, loopback_ports: dict[int, str]) -> Iterator[RunningDaemon]:
    config = _config(tmp_path_factory.mktemp("limits") / "config.toml", loopback_ports)
    with run_daemon(config, preexec_fn=_limit_nofile) as running:
        running.wait_for(lambda d: len(d.states()) == len(loopback_ports), timeout=20)
        yield running


def _port(d: RunningDaemon) -> int:
    return int(d.url.rsplit(":", 1)[1])


def _states(d: RunningDaemon, timeout: float = 3.0) -> dict[int, tuple[str, str]]:
    """Port -> (state, reason), from one scrape that must answer within ``timeout``."""
    conn = http.client.HTTPConnection("127.0.0.1", _port(d), timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        assert resp.status == 200
        text = resp.read().decode()
    finally:
        conn.close()
    from prometheus_client.parser import text_string_to_metric_families

    state: dict[int, str] = {}
    reason: dict[int, str] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "portqry_port_state" and s.value == 1:
                state[int(s.labels["port"])] = s.labels["portqry_port_state"]
            elif s.name == "portqry_probe_reason" and s.value == 1:
                reason[int(s.labels["port"])] = s.labels["reason"]
    return {port: (state[port], reason.get(port, "")) for port in state}


def _value(d: RunningDaemon, name: str) -> float:
    return sum(value for _labels, value in d.samples().get(name, []))


@contextmanager
def _idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` TCP connections to ``port`` that never send a byte (each connect waited for, 10 s in all)."""
    socks: list[socket.socket] = []
    try:
        with selectors.DefaultSelector() as sel:
            for _ in range(count):
                sock = socket.socket()
                socks.append(sock)
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                sel.register(sock, selectors.EVENT_WRITE)
            pending = len(socks)
            deadline = time.monotonic() + 10
            while pending and time.monotonic() < deadline:
                for key, _ in sel.select(0.5):
                    sel.unregister(key.fileobj)
                    pending -= 1
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _get(port: int, path: str, timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.monotonic() - started
    finally:
        conn.close()


def test_idle_connections_starve_neither_http_nor_the_probes(
    daemon: RunningDaemon, loopback_ports: dict[int, str]
) -> None:
    """1,100 idle connections under a 1,024 descriptor limit: HTTP answers, no port changes state."""
    expected = {port: state for port, state in loopback_ports.items()}
    before = _states(daemon)
    assert {port: state for port, (state, _) in before.items()} == expected
    changes_before = sum("port state changed" in line for line in daemon.log_lines)
    port = _port(daemon)
    with _idle_connections(port, IDLE_CONNECTIONS):
        attacked = time.time()
        seen_rounds_after = 0.0
        for _ in range(8):  # 8 x (two requests + 0.5 s): about 4 s of attack, 4 probe rounds
            status, elapsed = _get(port, "/-/healthy", timeout=2.0)
            assert status == 200 and elapsed < 2.0
            states = _states(daemon, timeout=3.0)
            assert {p: state for p, (state, _) in states.items()} == expected
            assert all(reason != "local-error" for _, reason in states.values()), states
            time.sleep(0.5)
        samples = daemon.samples()
        seen_rounds_after = min(v for _, v in samples["portqry_probe_last_timestamp_seconds"])
        evicted = _value(daemon, "portqry_exporter_http_connections_evicted_total")
        open_now = _value(daemon, "portqry_exporter_http_connections")
    assert seen_rounds_after > attacked + 1, "no probe round ran during the attack"
    assert evicted >= IDLE_CONNECTIONS - 512, "the cap did not hold"
    assert open_now <= 512
    assert sum("port state changed" in line for line in daemon.log_lines) == changes_before
    assert not [line for line in daemon.log_lines if "Too many open files" in line or "EMFILE" in line]


def test_200_concurrent_scrapers_all_get_200(daemon: RunningDaemon) -> None:
    port = _port(daemon)
    barrier = threading.Barrier(200, timeout=10)

    def scrape(_: int) -> int:
        barrier.wait()
        return _get(port, "/metrics", timeout=10.0)[0]

    with ThreadPoolExecutor(max_workers=200) as pool:
        statuses = list(pool.map(scrape, range(200)))
    assert statuses == [200] * 200


def test_slowloris_is_cut_after_the_request_head_timeout(daemon: RunningDaemon) -> None:
    """A client that sends one header byte a second is disconnected after the head timeout, not served."""
    head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 30
    with socket.create_connection(("127.0.0.1", _port(daemon)), timeout=2) as sock:
        started = time.monotonic()
        cut_after = None
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(1.0)
                if sock.recv(1024) == b"":
                    cut_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                cut_after = time.monotonic() - started
                break
    assert cut_after is not None, "never disconnected"
    assert REQUEST_HEAD_TIMEOUT_SECONDS - 0.5 <= cut_after <= REQUEST_HEAD_TIMEOUT_SECONDS + 2.5


def test_long_urls_and_header_floods_are_refused_at_once(daemon: RunningDaemon) -> None:
    port = _port(daemon)
    for request in (
        b"GET /metrics?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(500)) + b"\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            started = time.monotonic()
            sock.sendall(request)
            reply = sock.recv(4096)
            assert reply.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")), reply[:80]
            assert time.monotonic() - started < 1.0


def test_the_cap_refuses_when_every_connection_is_busy(tmp_path: Path, loopback_ports: dict[int, str]) -> None:
    """``--web.max-connections 4``, four ``/probe`` requests in their handlers: the fifth is closed and counted."""
    with socket.socket() as silent:  # accepts (the kernel does) and never answers: the LDAP probe waits
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        slow = silent.getsockname()[1]
        extra = f"""
[modules.slow]
ports = ["tcp/{slow}"]
protocols = {{ "tcp/{slow}" = "ldap" }}
protocol_probes = true
timeout_seconds = 3.0
[probe]
allow = ["127.0.0.0/8"]
max_concurrent_per_client = 8
"""
        config = _config(tmp_path / "config.toml", loopback_ports, extra)
        with run_daemon(config, preexec_fn=_limit_nofile, args=["--web.max-connections", "4"]) as d:
            port = _port(d)
            with ThreadPoolExecutor(max_workers=4) as pool:
                probes = [pool.submit(_get, port, "/probe?target=127.0.0.1&module=slow", 10.0) for _ in range(4)]
                time.sleep(1.0)  # the four are in their handlers, waiting for the silent LDAP server
                with socket.create_connection(("127.0.0.1", port), timeout=2) as fifth:
                    try:
                        fifth.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
                        reply = fifth.recv(1024)
                    except (BrokenPipeError, ConnectionResetError):
                        reply = b""
                assert reply == b"", reply
                assert [f.result()[0] for f in probes] == [200] * 4
            assert _value(d, "portqry_exporter_http_connections_refused_total") >= 1
            assert _value(d, "portqry_exporter_http_connections_accepted_total") >= 5
            assert _value(d, "portqry_exporter_http_connections_max") == 4
            assert d.get("/-/healthy")[0] == 200  # slots free again


async def _serve(app: web.Application, limits: ConnectionLimits, **kw: ssl.SSLContext) -> tuple[web.AppRunner, int]:
    app.middlewares.append(limits.middleware())
    return await serve_limited(app, "127.0.0.1", 0, limits, **kw)


async def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def test_a_client_that_stops_reading_is_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 32 MB response nobody reads: the write stalls and the connection is aborted after the stall timeout."""
    monkeypatch.setattr(http_limits, "WRITE_STALL_TIMEOUT_SECONDS", 0.5)

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(512):
            await response.write(b"x" * 65536)
        return response

    async def run() -> ConnectionLimits:
        limits = ConnectionLimits(8)
        app = web.Application()
        app.router.add_get("/big", big)
        runner, port = await _serve(app, limits)
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
            writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
            assert await _wait(lambda: limits.aborted["write-stall"] == 1, 5.0)
            assert await _wait(lambda: limits.open == 0, 2.0)
            writer.close()
        finally:
            await runner.cleanup()
        return limits

    asyncio.run(run())


def test_a_tls_client_that_never_shakes_hands_is_counted_and_aborted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections in their TLS handshake count against the cap; a silent one is aborted after the timeout."""
    monkeypatch.setattr(http_limits, "TLS_HANDSHAKE_TIMEOUT_SECONDS", 0.5)
    pki = make_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    client = ssl.create_default_context(cafile=str(pki.ca.cert))

    async def healthy(_request: web.Request) -> web.StreamResponse:
        return web.Response(text="Healthy\n")

    async def run() -> None:
        limits = ConnectionLimits(2)
        app = web.Application()
        app.router.add_get("/-/healthy", healthy)
        runner, port = await _serve(app, limits, ssl_context=context)
        try:
            _r, silent = await asyncio.open_connection("127.0.0.1", port)  # no ClientHello
            assert await _wait(lambda: limits.open == 1, 2.0)
            assert await _wait(lambda: limits.aborted["tls-handshake"] == 1 and limits.open == 0, 3.0)
            silent.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="127.0.0.1")
            writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200")
            writer.close()
        finally:
            await runner.cleanup()

    asyncio.run(run())


def _soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


def test_a_cap_that_does_not_fit_the_descriptor_limit_is_warned_about(
    tmp_path: Path, loopback_ports: dict[int, str]
) -> None:
    """1,000 connections + 256 probes + the reserve > 1,024: a warning at start, naming the numbers."""
    config = _config(tmp_path / "config.toml", loopback_ports)
    with run_daemon(config, preexec_fn=_limit_nofile, args=["--web.max-connections", "1000"]) as d:
        warnings = [line for line in d.log_lines if "descriptors may run out" in line]
        assert len(warnings) == 1, d.log_lines[:20]
        assert '"rlimit_nofile": 1024' in warnings[0] and '"needed": 1320' in warnings[0]


def test_the_soft_descriptor_limit_is_raised_to_the_hard_limit(tmp_path: Path, loopback_ports: dict[int, str]) -> None:
    """Soft 1,024 under a hard 4,096 (systemd's usual shape, smaller): the daemon raises its soft limit, no warning."""
    config = _config(tmp_path / "config.toml", loopback_ports)

    def low_soft() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, 4096))

    with run_daemon(config, preexec_fn=low_soft) as d:
        assert _soft_nofile(d.proc.pid) == 4096
        assert not [line for line in d.log_lines if "descriptors may run out" in line]

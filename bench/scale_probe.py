"""The scale benchmark's ``/probe`` part: the exporter's multi-target ``GET /probe`` against blackbox_exporter.

Both servers probe the same 20 TCP ports of one namespace address (13 listening, 7 closed, DC port numbers):
the exporter with one ``GET /probe?target=ADDR&module=bench-dc`` per 20 ports (``[modules.bench-dc]`` in its
config: the TCP ports of the ``domain-controller`` profile and the first of the dynamic RPC range, protocol probes
off so that both servers only connect; ``[probe] allow`` the address), blackbox_exporter
(the Debian package ``prometheus-blackbox-exporter``, our own config with one ``tcp_connect`` module) with one
``GET /probe?target=ADDR:PORT&module=tcp_connect`` per port.  The same client threads drive both, alternately,
in rounds; both servers run pinned to the same CPUs.  Per server: ports probed per second (wall) and CPU seconds
per port (the server process's utime + stime over its batches).

Until the daemon has ``/probe`` (or ``[modules]`` in its config) this part is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.scale_util import Server, cpu_seconds, free_port, running

ROOT: Final = Path(__file__).resolve().parent.parent
MODULE: Final = "bench-dc"
LISTENING: Final = (53, 88, 135, 389, 445, 464, 636, 3268, 3269, 9389, 49152, 49153, 49154)
CLOSED: Final = (49155, 49156, 49157, 49158, 49159, 49160, 49161)
PORTS: Final = LISTENING + CLOSED
"""The module's 20 TCP ports: a DC's TCP ports and the start of the dynamic RPC range."""
BLACKBOX: Final = "prometheus-blackbox-exporter"
BLACKBOX_CONFIG: Final = "modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n"


@dataclass
class Batch:
    """The figures of one server over all its batches."""

    name: str
    requests: int = 0
    ports: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    errors: int = 0
    wrong: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ports_per_second(self) -> float:
        """Ports probed per wall second."""
        return self.ports / self.wall if self.wall else 0.0

    @property
    def cpu_per_port(self) -> float:
        """Server CPU seconds per port probed."""
        return self.cpu / self.ports if self.ports else float("nan")

    def row(self) -> str:
        """One Markdown table row."""
        ok = self.ports - self.wrong - self.errors
        return (
            f"| {self.name} | {self.requests} | {self.ports} | {self.wall:.2f} | {self.ports_per_second:.0f} "
            f"| {self.cpu:.2f} | {1e6 * self.cpu_per_port:.0f} | {100.0 * ok / max(1, self.ports):.1f} % "
            f"| {self.errors} |"
        )


@dataclass
class ProbeReport:
    """What the ``/probe`` part found: the two batches, or why it was skipped."""

    skipped: str = ""
    error: str = ""
    unchecked: str = ""
    ours: Batch | None = None
    blackbox: Batch | None = None

    @property
    def ratio(self) -> float | None:
        """Our CPU per port over blackbox_exporter's."""
        if self.ours is None or self.blackbox is None or not self.blackbox.cpu_per_port:
            return None
        return self.ours.cpu_per_port / self.blackbox.cpu_per_port


def exporter_config(address: str, clients: int) -> str:
    """The exporter's config for the ``/probe`` part: no scheduled targets, the 20-port module, ``address`` allowed."""
    ports = ", ".join(f'"tcp/{p}"' for p in PORTS)
    return (
        "[exporter]\nconcurrency = 512\n\n"
        f'[probe]\nallow = ["{address}/32"]\nmax_concurrent_per_client = {max(4, clients)}\n\n'
        f"# probed as GET /probe?target={address}&module={MODULE}\n"
        f"[modules.{MODULE}]\nports = [{ports}]\nprotocol_probes = false\n"
    )


_SUCCESS_RE: Final = re.compile(rb"^portqry_probe_success\{[^}]*\} (\S+)", re.M)
_STATE_RE: Final = re.compile(rb'^portqry_port_state\{[^}]*portqry_port_state="listening"[^}]*\} (\S+)', re.M)


def check_ours(body: bytes) -> int:
    """Ports of one exporter ``/probe`` answer whose result disagrees with the fixture (listening count)."""
    values = [float(v) for v in _SUCCESS_RE.findall(body)] or [float(v) for v in _STATE_RE.findall(body)]
    if len(values) != len(PORTS):
        return len(PORTS)
    return abs(sum(1 for v in values if v == 1.0) - len(LISTENING))


def check_blackbox(port: int, body: bytes) -> int:
    """1 when blackbox_exporter's ``probe_success`` for ``port`` disagrees with the fixture, else 0."""
    match = re.search(rb"^probe_success (\S+)", body, re.M)
    if match is None:
        return 1
    return int((float(match.group(1)) == 1.0) != (port in LISTENING))


def load(
    port: int, jobs: Sequence[tuple[str, Callable[[bytes], int]]], clients: int, timeout: float
) -> tuple[float, int, int]:
    """GET every path of ``jobs`` from 127.0.0.1:``port`` with ``clients`` threads (keep-alive connections).

    Returns:
        ``(wall seconds, errors, wrong ports)``; each job's checker counts its wrong ports.
    """
    lock = threading.Lock()
    queue = iter(jobs)
    totals = [0, 0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            while True:
                with lock:
                    job = next(queue, None)
                if job is None:
                    return
                path, check = job
                for attempt in (1, 2):  # a keep-alive connection the server closed: once more on a new one
                    try:
                        conn.putrequest("GET", path, skip_accept_encoding=True)
                        conn.endheaders()
                        resp = conn.getresponse()
                        body = resp.read()
                    except (OSError, http.client.HTTPException):
                        conn.close()
                        if attempt == 2:
                            with lock:
                                totals[0] += 1
                        continue
                    wrong = check(body) if resp.status == 200 else 1
                    with lock:
                        totals[1] += wrong
                    break
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout * len(jobs) + 60)
    return time.perf_counter() - started, totals[0], totals[1]


def _measure(
    batch: Batch, server: Server, port: int, jobs: list[tuple[str, Callable[[bytes], int]]], **kw: int
) -> None:
    before = cpu_seconds(server.pid)
    wall, errors, wrong = load(port, jobs, clients=kw["clients"], timeout=30.0)
    batch.cpu += cpu_seconds(server.pid) - before
    batch.wall += wall
    batch.requests += len(jobs)
    batch.errors += errors
    batch.wrong += wrong


def exporter_supports_probe(config: Path) -> str:
    """Empty when the exporter accepts the ``[modules]`` config, else why not (``--config.check``'s words)."""
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--config", str(config), "--config.check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        return (proc.stderr or proc.stdout).strip().splitlines()[-1] if (proc.stderr or proc.stdout) else "refused"
    return ""


def run_probe_part(address: str, tmp: Path, cpus: set[int], requests: int, clients: int, rounds: int) -> ProbeReport:
    """Run the ``/probe`` comparison (see the module docstring).

    Without ``/probe`` in the exporter, blackbox_exporter alone is measured and the report says why ours is
    skipped; without blackbox_exporter the whole part is skipped.
    """
    binary = shutil.which(BLACKBOX)
    if binary is None:
        return ProbeReport(skipped=f"{BLACKBOX} not installed (apt-get install -y {BLACKBOX})")
    config = tmp / "probe.toml"
    config.write_text(exporter_config(address, clients))
    reason = exporter_supports_probe(config)
    report = ProbeReport(skipped=f"the exporter has no /probe modules yet ({reason})" if reason else "")
    bb_config = tmp / "blackbox.yml"
    bb_config.write_text(BLACKBOX_CONFIG)
    bb_port = free_port()
    bb_argv = [binary, f"--config.file={bb_config}", f"--web.listen-address=127.0.0.1:{bb_port}", "--log.level=warn"]
    argv = [sys.executable, "-m", "exporter", "--config", str(config), "--web.listen-address", "127.0.0.1:0"]
    probe_path = f"/probe?target={address}&module={MODULE}"
    with contextlib.ExitStack() as stack:
        bb = stack.enter_context(running(Server(bb_argv, tmp / "blackbox.log", cpus)))
        _wait_http(bb, bb_port, "/-/healthy", 20.0)
        ours: Server | None = None
        our_port = 0
        if not report.skipped:
            log = tmp / "probe-daemon.log"
            ours = stack.enter_context(running(Server([*argv, "--log.format", "json"], log, cpus, cwd=ROOT)))
            started = ours.wait_log(lambda e: e.get("event") == "portqry-exporter started", timeout=60.0)
            our_port = int(str(started["listen_address"]).rpartition(":")[2])
            report.skipped = _probe_answer(our_port, probe_path)
            if report.skipped:
                ours.stop()
                ours = None
        per_round = max(1, requests // rounds)
        check, report.unchecked = _checker(our_port, probe_path) if ours is not None else (check_ours, "")
        ours_jobs: list[tuple[str, Callable[[bytes], int]]] = [(probe_path, check)] * per_round
        bb_jobs: list[tuple[str, Callable[[bytes], int]]] = [
            (f"/probe?target={address}:{p}&module=tcp_connect", lambda body, p=p: check_blackbox(p, body))
            for p in PORTS
        ] * per_round
        if ours is not None:
            load(our_port, ours_jobs[:5], clients, 30.0)  # warm-up: imports, first connections
            report.ours = Batch("portqry-exporter /probe (20 ports a request)")
        load(bb_port, bb_jobs[:100], clients, 30.0)
        report.blackbox = Batch(f"{BLACKBOX} tcp_connect (1 port a request)")
        for _ in range(rounds):  # alternate, so that drift of the machine hits both alike
            if ours is not None and report.ours is not None:
                _measure(report.ours, ours, our_port, ours_jobs, clients=clients)
            _measure(report.blackbox, bb, bb_port, bb_jobs, clients=clients)
        if report.ours is not None:
            report.ours.ports = report.ours.requests * len(PORTS)
        report.blackbox.ports = report.blackbox.requests
        if not bb.alive() or (ours is not None and not ours.alive()):
            raise RuntimeError(f"a /probe server died:\n{bb.tail()}\n{ours.tail() if ours else ''}")
        return report


def _probe_answer(port: int, path: str) -> str:
    """Empty when ``GET path`` answers 200 with the 20 ports' states as the fixture has them, else why not."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return f"GET /probe failed: {exc}"
    if resp.status != 200:
        head = body.decode(errors="replace").strip().splitlines()[:1]
        return f"GET /probe answers {resp.status} ({' '.join(head)})"
    return ""


def _checker(port: int, path: str) -> tuple[Callable[[bytes], int], str]:
    """:func:`check_ours`, or a checker that accepts everything (and why) when the answer's format is not known."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    if check_ours(body) == 0:
        return check_ours, ""
    found = len(_SUCCESS_RE.findall(body)) or len(_STATE_RE.findall(body))
    return (lambda _body: 0), f"answers not checked: {found} per-port samples, not 20 with 13 listening"


def _wait_http(server: Server, port: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
        if not server.alive():
            break
        time.sleep(0.1)
    raise RuntimeError(f"{server.argv[0]} not answering {path} on 127.0.0.1:{port}:\n{server.tail()}")

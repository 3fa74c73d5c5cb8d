"""Memory of the status history (issue 12) at 10,000 ports x 20 rounds, and of the process that holds it.

    python3 -m bench.status_memory                 # history alone, then the store in a child process (fast)
    python3 -m bench.status_memory --daemon        # also the real daemon probing 10,000 loopback ports

1. The history alone: :class:`exporter.history.PortHistory` rings of 10,000 ports filled with 20 rounds,
   measured with ``tracemalloc`` (every Python allocation: the objects, their ``bytearray``, their ``since``
   float, and the dicts that hold them).
2. The store: a child process records 20 rounds of 10,000 results (100 targets x 100 ports) into a
   :class:`exporter.store.ResultStore`, renders ``/metrics`` and the status page ``/`` and ``/api/v1/status``,
   and reports its peak RSS (``ru_maxrss``: interpreter and imports included), with ``status_history`` 20 and 0.
3. ``--daemon``: ``python -m exporter`` probing 127.0.0.1 tcp/20000-29999 (10,000 closed ports, one target)
   every 5 s until every port has 20 rounds, scraped and its status pages fetched meanwhile; its peak RSS is
   the kernel's ``VmHWM``.  Loopback only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORTS = 10_000
ROUNDS = 20


def history_alone(ports: int = PORTS, rounds: int = ROUNDS) -> tuple[float, int]:
    """MB allocated by ``ports`` rings of ``rounds`` rounds, and the ring payload per port in bytes."""
    from exporter.history import PortHistory
    from exporter.states import PortState, Reason

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    rings = {("t", "127.0.0.1", "tcp", p): PortHistory(rounds) for p in range(ports)}
    for r in range(rounds):
        state = PortState.LISTENING if r % 2 else PortState.FILTERED
        for ring in rings.values():
            ring.add(1_700_000_000.0 + r, state, Reason.SYN_ACK, 0.0123, 1)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / 1e6, next(iter(rings.values())).nbytes()


def _store_child(history: int) -> None:
    from exporter.collector import ExporterStatus
    from exporter.config import Settings
    from exporter.result import ProbeResult
    from exporter.states import PortState, Reason
    from exporter.status_html import index_chunks
    from exporter.status_view import build_view
    from exporter.store import ResultStore

    class Source:
        settings = Settings()
        status = ExporterStatus()

        def __init__(self) -> None:
            self.store = ResultStore((0.001, 0.01, 0.1, 1.0, 2.0), history=history)

    src = Source()
    for r in range(ROUNDS):
        for t in range(100):
            results = [
                ProbeResult(f"target-{t}", f"host-{t}.example.test", f"198.18.{t}.1", "tcp", 1000 + p, "unknown",
                            PortState.LISTENING if (p + r) % 7 else PortState.NOT_LISTENING, Reason.SYN_ACK, 0.0123, 1,
                            1_700_000_000.0 + r * 30)
                for p in range(PORTS // 100)
            ]  # fmt: skip
            src.store.record(f"target-{t}", results)
    metrics = len(src.store.exposition(openmetrics=False))
    view = build_view(src)
    assert view is not None
    page = sum(len(c) for c in index_chunks(view))  # as the server writes them: piece by piece
    api = sum(len(c) for c in view.json_chunks())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"history": history, "peak_rss_mb": rss, "metrics_bytes": metrics, "page_bytes": page,
                      "api_bytes": api}))  # fmt: skip


def store_process(history: int) -> dict[str, float]:
    """Peak RSS and output sizes of a child holding 10,000 ports x 20 rounds (see the module docstring)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.status_memory", "--child", str(history)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    data: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return data


def daemon_process(history: int = ROUNDS, *, pages: bool = True, interval: float = 5.0) -> dict[str, float]:
    """The real daemon on 10,000 closed loopback ports for 20 rounds: peak RSS (VmHWM) and timings.

    Args:
        history: ``[exporter] status_history``.
        pages: fetch ``/`` and ``/api/v1/targets/loopback`` after every round besides ``/metrics``.
        interval: seconds between rounds.
    """
    from tests.daemon import run_daemon

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "c.toml"
        config.write_text(
            f"""
[exporter]
concurrency = 512
status_history = {history}
[defaults]
interval_seconds = {interval}
timeout_seconds = 0.5
tcp_tries = 1
jitter_ratio = 0.0
[[targets]]
name = "loopback"
host = "127.0.0.1"
ports = ["tcp/20000-{20000 + PORTS - 1}"]
"""
        )
        started = time.monotonic()
        with run_daemon(config, timeout=60, args=["--log.level", "info"]) as daemon:
            pid = daemon.proc.pid
            page_bytes = 0
            rounds = 0
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and rounds < ROUNDS:
                time.sleep(interval)
                with urllib.request.urlopen(daemon.url + "/metrics", timeout=30) as resp:
                    text = resp.read().decode()
                rounds = int(float(_sample(text, "portqry_probes_total") or 0) // PORTS)
                if pages:
                    with urllib.request.urlopen(daemon.url + "/", timeout=60) as resp:
                        page_bytes = len(resp.read())
                    with urllib.request.urlopen(daemon.url + "/api/v1/targets/loopback", timeout=60) as resp:
                        json.loads(resp.read())
            status = Path(f"/proc/{pid}/status").read_text()
            hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return {"peak_rss_mb": hwm / 1024, "rss_mb": rss / 1024, "rounds": rounds, "page_bytes": page_bytes,
                "seconds": time.monotonic() - started}  # fmt: skip


def _sample(text: str, name: str) -> float | None:
    """The sum of every sample of ``name`` in an exposition."""
    total = None
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


def main(argv: list[str] | None = None) -> int:
    """Print the figures as a Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m bench.status_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--daemon", action="store_true", help="also run the real daemon on 10,000 loopback ports")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _store_child(args.child)
        return 0
    mb, payload = history_alone()
    print(f"history alone: {PORTS} ports x {ROUNDS} rounds = {mb:.2f} MB ({mb * 1e6 / PORTS:.0f} B per port, "
          f"{payload} B of records)")  # fmt: skip
    print("| process | status_history | peak RSS MB | /metrics bytes | / bytes | /api/v1/status bytes |")
    print("|---|---|---|---|---|---|")
    for history in (ROUNDS, 0):
        d = store_process(history)
        print(f"| store, 10,000 ports x 20 rounds | {history} | {d['peak_rss_mb']:.1f} | {d['metrics_bytes']:.0f} | "
              f"{d['page_bytes']:.0f} | {d['api_bytes']:.0f} |")  # fmt: skip
    if args.daemon:
        for history, pages in ((ROUNDS, True), (ROUNDS, False), (0, False)):
            d = daemon_process(history, pages=pages)
            what = "pages and /metrics fetched" if pages else "/metrics only"
            print(f"| daemon, 10,000 loopback ports, {d['rounds']:.0f} rounds, {what} | {history} | "
                  f"{d['peak_rss_mb']:.1f} (at the end {d['rss_mb']:.1f}) | | {d['page_bytes']:.0f} | |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

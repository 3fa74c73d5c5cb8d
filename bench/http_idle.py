"""Benchmark: ``/metrics`` latency while idle TCP connections flood the HTTP port (issue 13).

    python3 -m bench.http_idle                                  # 1,100 idle connections, 300 scrapes per phase
    python3 -m bench.http_idle --connections 1100 --scrapes 300 --nofile 1024

What it runs, all on 127.0.0.1 (no root needed): the real daemon (``python -m exporter``) under
``RLIMIT_NOFILE`` = ``--nofile`` (soft and hard), probing 10 loopback ports made here every second (5 listening,
5 closed), then scraped by curl in a loop (one curl process per scrape, so a new connection each time:
``time_total`` recorded, ``--max-time 5``) in three phases:

- ``quiet``: no attack;
- ``idle flood``: ``--connections`` TCP connections opened at once and held, never sending a byte;
- ``reconnecting flood``: the same number held open, each one the server closes opened again at once
  (an attacker that keeps the cap full).

Output per phase: scrapes answered, time-outs or errors, p50, p99 and max milliseconds, and the daemon's
``portqry_exporter_http_connections_*`` counters and whether every probed port kept its state.
"""

from __future__ import annotations

import argparse
import resource
import selectors
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.daemon import RunningDaemon, run_daemon
from tests.test_http_limits import loopback_listeners


def _config(path: Path, ports: dict[int, str]) -> Path:
    specs = ", ".join(f'"tcp/{port}"' for port in ports)
    path.write_text(
        "[exporter]\nudp_pacing_seconds = 0.0\n[defaults]\ninterval_seconds = 1\ntimeout_seconds = 0.5\n"
        "tcp_tries = 1\njitter_ratio = 0.0\nprotocol_probes = false\n"
        f'[[targets]]\nname = "lo"\nhost = "127.0.0.1"\nports = [{specs}]\n'
    )
    return path


@contextmanager
def _flood(port: int, count: int, *, reconnect: bool) -> Iterator[list[int]]:
    """Hold ``count`` idle connections to ``port``; with ``reconnect``, reopen each one the server closes."""
    stop = threading.Event()
    reopened = [0]

    def hold() -> None:
        with selectors.DefaultSelector() as sel:

            def connect() -> None:
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                sel.register(sock, selectors.EVENT_READ)

            for _ in range(count):
                connect()
            deadline = time.monotonic() + 600
            while not stop.is_set() and time.monotonic() < deadline:
                for key, _ in sel.select(0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    sel.unregister(sock)
                    sock.close()
                    if reconnect:
                        reopened[0] += 1
                        connect()
            for key in list(sel.get_map().values()):
                sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    time.sleep(1.0)  # the flood is in place
    try:
        yield reopened
    finally:
        stop.set()
        thread.join(10)


def _scrapes(url: str, count: int) -> tuple[list[float], int]:
    times: list[float] = []
    failed = 0
    for _ in range(count):
        out = subprocess.run(
            ["curl", "-s", "--noproxy", "*", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
             url + "/metrics"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        code, _, total = out.stdout.partition(" ")
        if code == "200":
            times.append(float(total))
        else:
            failed += 1
    return times, failed


def _report(name: str, times: list[float], failed: int, d: RunningDaemon, expected: dict[int, str]) -> None:
    if times:
        ms = sorted(t * 1000 for t in times)
        p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        figures = f"p50 {statistics.median(ms):6.1f} ms  p99 {p99:6.1f} ms  max {ms[-1]:6.1f} ms"
    else:
        figures = "no scrape answered"
    try:
        samples = d.samples()
        counters = {
            key.removeprefix("portqry_exporter_http_connections_"): int(sum(v for _, v in samples.get(key, [])))
            for key in (
                "portqry_exporter_http_connections_evicted_total",
                "portqry_exporter_http_connections_refused_total",
                "portqry_exporter_http_connections_accept_errors_total",
            )
        }
        states = {
            int(labels["port"]): labels["portqry_port_state"]
            for labels, value in samples.get("portqry_port_state", [])
            if value == 1
        }
        kept = "kept" if states == expected else f"CHANGED: {states}"
    except (AssertionError, OSError) as exc:
        counters, kept = {}, f"unknown ({exc})"
    print(f"{name:20s} {len(times):4d} ok {failed:4d} failed  {figures}  {counters}  port states {kept}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1100, help="idle connections held (default 1,100)")
    parser.add_argument("--scrapes", type=int, default=300, help="curl scrapes per phase (default 300)")
    parser.add_argument("--nofile", type=int, default=1024, help="the daemon's RLIMIT_NOFILE (default 1,024)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.connections)), hard))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))

    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        expected = loopback_listeners(stack)
        d = stack.enter_context(run_daemon(_config(Path(tmp) / "config.toml", expected), preexec_fn=limit))
        d.wait_for(lambda x: len(x.states()) == len(expected), timeout=20)
        port = int(d.url.rsplit(":", 1)[1])
        _report("quiet", *_scrapes(d.url, args.scrapes), d, expected)
        with _flood(port, args.connections, reconnect=False):
            _report("idle flood", *_scrapes(d.url, args.scrapes), d, expected)
        with _flood(port, args.connections, reconnect=True) as reopened:
            _report("reconnecting flood", *_scrapes(d.url, args.scrapes), d, expected)
            print(f"{'':20s} attacker reopened {reopened[0]} connections")
        emfile = sum("Too many open files" in line for line in d.log_lines)
        print(f"'Too many open files' in the daemon's log: {emfile} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

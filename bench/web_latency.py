"""Benchmark: ``/metrics`` latency under 50 concurrent clients, plain and with TLS and basic auth on.

    python3 -m bench.web_latency                              # 50 clients, 2,000 scrapes per scenario
    python3 -m bench.web_latency --clients 50 --scrapes 2000 --targets 20 --ports 10 --cost 10

What it runs, all on 127.0.0.1 (no root needed): the real daemon (``python -m exporter``) probing
``targets x ports`` closed loopback ports (so ``/metrics`` carries ``targets x ports x 8`` port series plus the
rest), with a web config made here: a certificate from ``openssl`` (EC P-256, its own CA) and one
``basic_auth_users`` entry hashed with bcrypt at ``--cost`` (10: ``htpasswd -B``'s default).  The client is
curl, ``--parallel --parallel-max CLIENTS`` over ``SCRAPES`` URLs, each transfer's ``time_total`` recorded.

Scenarios, each against a fresh daemon:

- ``plain``: HTTP, no auth (the baseline);
- ``tls+auth keep-alive``: TLS and basic auth, connections reused (what Prometheus does: one keep-alive
  connection per target);
- ``tls+auth new conn``: TLS and basic auth, ``Connection: close``: a TLS handshake for every scrape.

Two loads: ``flat out`` (curl ``--parallel``: every client sends its next scrape as soon as the last one is
answered, so the figures are mostly queueing on the one event loop: throughput is the number to read) and
``paced`` (``CLIENTS`` curl processes, each on one keep-alive connection at ``--rate``, 1/s by default: 50
scrapers, as 50 Prometheus servers at a 1 s interval would be, their start times spread over one second).

Output: per scenario p50, p90, p99 and max milliseconds, scrapes per second, and the exporter's own
``portqry_exporter_scrape_duration_seconds`` mean; exit 1 when a scrape failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests.webtls import bcrypt_hash, make_ca, make_leaf

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password"


def _config(path: Path, targets: int, ports: int) -> Path:
    lines = ["[exporter]", "udp_pacing_seconds = 0.0", "[defaults]", "interval_seconds = 30", "timeout_seconds = 0.5"]
    for t in range(targets):
        port_list = ", ".join(f'"tcp/{40000 + t * ports + p}"' for p in range(ports))
        lines += ["[[targets]]", f'name = "t{t}"', f'host = "127.0.{t // 250}.{t % 250 + 1}"', f"ports = [{port_list}]"]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def _daemon(config: Path, web: Path | None) -> Iterator[str]:
    argv = [sys.executable, "-m", "exporter", "--config", str(config), "--web.listen-address", "127.0.0.1:0"]
    argv += ["--log.format", "json"] + (["--web.config.file", str(web)] if web is not None else [])
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        stdout = proc.stdout
        found: queue.Queue[str] = queue.Queue()

        def pump() -> None:  # read every line, so that the daemon never blocks on a full pipe
            for line in stdout:
                with contextlib.suppress(ValueError, AttributeError):
                    event = json.loads(line)
                    if event.get("event") == "portqry-exporter started":
                        found.put(f"{event['scheme']}://{event['listen_address']}")

        threading.Thread(target=pump, daemon=True).start()
        try:
            url = found.get(timeout=30)
        except queue.Empty:
            raise SystemExit(f"daemon did not start: {proc.poll()}") from None
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _curl(url: str, scrapes: int, clients: int, extra: list[str]) -> tuple[list[float], int, float]:
    argv = ["curl", "-s", "--noproxy", "*", "--parallel", "--parallel-immediate", "--parallel-max", str(clients)]
    argv += [*extra, "-w", "%{http_code} %{time_total}\n"]
    for _ in range(scrapes):
        argv += [url + "/metrics", "-o", "/dev/null"]
    started = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600).stdout
    wall = time.perf_counter() - started
    times, failed = [], 0
    for line in out.splitlines():
        code, _, seconds = line.partition(" ")
        if code == "200":
            times.append(float(seconds))
        else:
            failed += 1
    failed += scrapes - len(times) - failed
    return times, failed, wall


def _paced(url: str, scrapes: int, clients: int, rate: str, extra: list[str]) -> tuple[list[float], int, float]:
    """``clients`` curl processes, each ``scrapes / clients`` times at ``rate`` on one keep-alive connection."""
    each = max(1, scrapes // clients)
    argv = ["curl", "-s", "--noproxy", "*", "--rate", rate, *extra, "-w", "%{http_code} %{time_total}\n"]
    for _ in range(each):
        argv += [url + "/metrics", "-o", "/dev/null"]
    started = time.perf_counter()
    procs = []
    for _ in range(clients):  # start times spread over one interval, as Prometheus spreads its scrape offsets
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
        time.sleep(1.0 / clients)
    outs = [p.communicate(timeout=600)[0] for p in procs]
    wall = time.perf_counter() - started
    times, failed = [], 0
    for out in outs:
        for line in out.splitlines():
            code, _, seconds = line.partition(" ")
            if code == "200":
                times.append(float(seconds))
            else:
                failed += 1
    return times, failed + each * clients - len(times) - failed, wall


def _server_mean(url: str, extra: list[str]) -> float:
    out = subprocess.run(
        ["curl", "-s", "--noproxy", "*", *extra, url + "/metrics?name[]=portqry_exporter_scrape_duration_seconds"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    values = {}
    for line in out.splitlines():
        if line.startswith("portqry_exporter_scrape_duration_seconds_"):
            name, value = line.split()
            values[name.rsplit("_", 1)[1]] = float(value)
    return values.get("sum", 0.0) / values["count"] if values.get("count") else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--scrapes", type=int, default=2000)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--ports", type=int, default=10)
    parser.add_argument("--cost", type=int, default=10, help="bcrypt cost of the password hash")
    parser.add_argument("--rate", default="1/s", help="paced runs: each client's scrape rate (curl --rate)")
    parser.add_argument("--paced-scrapes", type=int, default=1000, help="paced runs: scrapes in all")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pq-web-bench-") as tmp:
        work = Path(tmp)
        ca = make_ca(work, "bench-ca")
        server = make_leaf(work, ca, "server")
        web = work / "web.yml"
        web.write_text(
            f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n"
            "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
            f"basic_auth_users:\n  prometheus: '{bcrypt_hash(PASSWORD, cost=args.cost)}'\n"
        )
        config = _config(work / "c.toml", args.targets, args.ports)
        secure = ["--cacert", str(ca.cert), "-u", f"prometheus:{PASSWORD}"]
        scenarios = [
            ("plain", None, []),
            ("tls+auth keep-alive", web, secure),
            ("tls+auth new conn", web, [*secure, "-H", "Connection: close"]),
        ]
        print(
            f"{args.clients} clients, {args.scrapes} scrapes each scenario, {args.targets} x {args.ports} ports, "
            f"bcrypt cost {args.cost}"
        )
        head = f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'/s':>6} {'server ms':>9} fail"
        print(f"{'scenario':<34} {head}")
        bad = 0
        for load in ("flat out", f"paced {args.rate}"):
            for name, web_file, extra in scenarios:
                if load != "flat out" and "new conn" in name:
                    continue
                with _daemon(config, web_file) as url:
                    time.sleep(2.0)  # the first round lands
                    _curl(url, 50, 10, extra)  # warm up: imports, the first bcrypt
                    if load == "flat out":
                        times, failed, wall = _curl(url, args.scrapes, args.clients, extra)
                    else:
                        times, failed, wall = _paced(url, args.paced_scrapes, args.clients, args.rate, extra)
                    server = _server_mean(url, extra)
                bad += failed
                q = statistics.quantiles(times, n=100) if len(times) > 1 else [0.0] * 99
                label = f"{name}, {load}"
                print(
                    f"{label:<34} {q[49] * 1e3:7.1f} {q[89] * 1e3:7.1f} {q[98] * 1e3:7.1f} {max(times) * 1e3:7.1f} "
                    f"{len(times) / wall:6.0f} {server * 1e3:9.2f} {failed}"
                )
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

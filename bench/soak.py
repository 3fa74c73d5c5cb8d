"""Soak benchmark (issue 13): the daemon against a test-bed DC behind a flipping firewall, beside hostile peers.

    sudo python3 -m bench.soak --minutes 2        # a quick check: about 3.5 min with the DC's start-up
    sudo python3 -m bench.soak                    # the README figure: 10 minutes

What it does.  A Samba AD DC in its own network namespace (``tests.testbed.SambaDC``, about 1 min to provision
and start; its namespace and directory are removed also after an error or Ctrl-C) and the hostile peers of
``tests/hostile.py`` on 127.0.0.1 (their own process): the endpoint mapper that answers with fragments that
never end (``rpc/tcp/fragment_flood``) and the LDAP server that answers garbage (``ldap/tcp/garbage``).  One
daemon, started as bench/scale.py starts it (``python3 -m exporter --config CFG --web.listen-address
127.0.0.1:0 --log.format json``), probes

| target    | ports                                                                          | expected          |
|-----------|--------------------------------------------------------------------------------|-------------------|
| ``dc``    | tcp/389, udp/389 (LDAP, CLDAP)                                                 | flip with the rule |
| ``dc``    | tcp/53, tcp/88, tcp/135, tcp/445, udp/53, udp/88                               | never change       |
| ``hostile`` | the two hostile ports, bound to ``rpc`` and ``ldap``                         | never change       |

every ``--interval`` seconds (default 3; timeout 1 s, one try).  An iptables rule in the DC's namespace, DROP on
tcp/389 and udp/389, goes on and off every ``--flip`` seconds (default 15), each flip's wall-clock time recorded.
``--clients`` threads (default 20) ``GET /metrics`` back to back for the whole run, each on a new connection,
timed from connect to the last byte.  Every ``--sample`` seconds (default 60, or a tenth of the run when that is
shorter) the daemon's RSS (``/proc/PID/status`` VmRSS), descriptors (``/proc/PID/fd``) and threads
(``/proc/PID/status`` Threads) are sampled.

Checked at the end (exit status 1 when one fails, the tables printed first):

- **No false state change.**  Every ``port state changed`` line of the daemon's JSON log after a port's first
  result: on tcp/389 and udp/389 it must come after a flip, within one probe interval plus the probe's own
  deadline (the timeout and the protocol budget) plus 1 s for the log, and go the flip's way (rule on:
  ``filtered``, off: ``listening``); on any other port every change is false.
- **No growth.**  The least-squares slope per hour of RSS, descriptors and threads, from the second sample on
  (the first round's imports and caches are not a leak); a slope is clearly positive when the fitted growth over
  the run exceeds 10 MB (RSS), 10 descriptors or 3 threads.
- Reported, not judged: scrape p50/p99 and failed scrapes, how many flips were followed by a change.

Exit status 2: the fixture could not be built (not root, no ``ip netns``, no Samba) or the daemon failed;
130: Ctrl-C.

Nothing is sent anywhere but 127.0.0.1 (the hostile peers and the daemon) and the DC's namespace address; no
name is resolved (targets are addresses).  Check by hand while it runs (the namespace is ``pq-<pid>-<n>-dc``)::

    ip netns exec pq-<pid>-<n>-dc iptables -S INPUT               # the two DROP rules, while the rule is on
    ps -o pid,rss,nlwp,pcpu,args -C python3 | grep exporter        # the daemon: RSS, threads, CPU
    ls /proc/<daemon pid>/fd | wc -l                               # its descriptors
    curl -s 127.0.0.1:<port>/metrics | grep 'portqry_port_state{.*389' | grep ' 1'   # port: the log's line
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.scale_util import Server, memory_mb, percentile, running, timed_get
from tests import testbed

ROOT = Path(__file__).resolve().parent.parent
FLIPPING = (("tcp", 389), ("udp", 389))
STEADY = (("tcp", 53), ("tcp", 88), ("tcp", 135), ("tcp", 445), ("udp", 53), ("udp", 88))
HOSTILE = {"rpc/tcp/fragment_flood": "rpc", "ldap/tcp/garbage": "ldap"}
TIMEOUT = 1.0
#: The fitted growth over the run above which a slope is "clearly positive".
GROWTH_LIMITS = {"rss_mb": 10.0, "fds": 10.0, "threads": 3.0}
SCRAPE_TIMEOUT = 30.0


@dataclass
class Run:
    """What one soak run saw."""

    flips: list[tuple[float, bool]] = field(default_factory=list)  # (wall-clock time, rule on)
    samples: list[tuple[float, float, int, int]] = field(default_factory=list)  # (time, RSS MB, fds, threads)
    scrapes: list[float] = field(default_factory=list)
    scrape_errors: list[str] = field(default_factory=list)
    changes: list[dict[str, object]] = field(default_factory=list)
    false_changes: list[str] = field(default_factory=list)


def daemon_config(dc_address: str, hostile_ports: dict[str, int], interval: float) -> str:
    """The daemon's TOML: the DC target and the hostile target (addresses only: nothing is resolved)."""
    dc_ports = ", ".join(f'"{p}/{n}"' for p, n in (*FLIPPING, *STEADY))
    hostile = ", ".join(f'"tcp/{hostile_ports[k]}"' for k in HOSTILE)
    bindings = ", ".join(f'"tcp/{hostile_ports[k]}" = "{b}"' for k, b in HOSTILE.items())
    return f"""
[exporter]
udp_pacing_seconds = 0.05
[defaults]
interval_seconds = {interval:g}
timeout_seconds = {TIMEOUT:g}
tcp_tries = 1
udp_tries = 1
jitter_ratio = 0.0
[[targets]]
name = "dc"
host = "{dc_address}"
ports = [{dc_ports}]
[[targets]]
name = "hostile"
host = "127.0.0.1"
ports = [{hostile}]
protocols = {{ {bindings} }}
"""


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per hour (0 with fewer than two points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return 0.0
    return 3600.0 * sum((t - mx) * (v - my) for t, v in points) / sxx


def _proc_counts(pid: int) -> tuple[int, int]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            threads = int(line.split()[1])
    return fds, threads


def _flipper(ns: testbed.Namespace, period: float, stop: threading.Event, run: Run) -> None:
    """Toggle the DROP rules every ``period`` s until ``stop``; leaves them off."""
    rules = [("-p", proto, "--dport", str(port), "-j", "DROP") for proto, port in FLIPPING]
    on = False
    try:
        while not stop.wait(period):
            for rule in rules:
                if on:
                    ns.delete_rule(*rule)
                else:
                    ns.add_rule(*rule)
            on = not on
            run.flips.append((time.time(), on))
    finally:
        if on:  # the rule goes off at the end: a flip like the others
            for rule in rules:
                with contextlib.suppress(Exception):
                    ns.delete_rule(*rule)
            run.flips.append((time.time(), False))


def _scraper(url: tuple[str, int], until: float, run: Run, lock: threading.Lock) -> None:
    while time.monotonic() < until:  # bounded: the run's length
        try:
            got = timed_get(url[0], url[1], "/metrics", timeout=SCRAPE_TIMEOUT)
        except (OSError, http.client.HTTPException) as exc:
            with lock:
                run.scrape_errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.1)
            continue
        with lock:
            if got.status == 200:
                run.scrapes.append(got.seconds)
            else:
                run.scrape_errors.append(f"HTTP {got.status}")


def _state_changes(log: Path) -> list[dict[str, object]]:
    out = []
    for raw in log.read_bytes().splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(raw)
            if isinstance(event, dict) and event.get("event") == "port state changed":
                event["at"] = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()
                out.append(event)
    return out


def judge_changes(run: Run, window: float) -> None:
    """Fill ``run.false_changes``: each change not explained by a flip ``window`` s before it (see the docstring)."""
    for change in run.changes:
        if change.get("previous") is None:
            continue  # the port's first result
        key = (str(change["protocol"]), int(str(change["port"])))
        where = f"{change['target']} {key[0]}/{key[1]} {change['previous']} -> {change['state']} ({change['reason']})"
        at = float(str(change["at"]))
        if change["target"] != "dc" or key not in FLIPPING:
            run.false_changes.append(f"{where}: this port never changes")
            continue
        before = [(t, on) for t, on in run.flips if t <= at]
        if not before or at - before[-1][0] > window:
            late = f"no flip in the {window:.1f} s before"
            run.false_changes.append(f"{where} at {datetime.fromtimestamp(at).time()}: {late}")
            continue
        expected = "filtered" if before[-1][1] else "listening"
        if change["state"] != expected:
            run.false_changes.append(f"{where}: the last flip made it {expected}")


def print_report(run: Run, args: argparse.Namespace, window: float) -> int:
    """The tables; returns the exit status (1: a false change or a clearly positive slope)."""
    t0 = run.samples[0][0] if run.samples else 0.0
    print(f"\nsoak: {args.minutes:g} min, interval {args.interval:g} s, flip every {args.flip:g} s", end="")
    print(f", {args.clients} clients")
    print("\n| minute | RSS MB | descriptors | threads |\n|---:|---:|---:|---:|")
    for t, rss, fds, threads in run.samples:
        print(f"| {(t - t0) / 60:.2f} | {rss:.1f} | {fds} | {threads} |")
    status = 0
    fitted = run.samples[1:] if len(run.samples) > 2 else run.samples
    span = (fitted[-1][0] - fitted[0][0]) if len(fitted) > 1 else 0.0
    print("\n| figure | slope per hour | fitted growth over the run | verdict |\n|---|---:|---:|---|")
    for index, name in ((1, "rss_mb"), (2, "fds"), (3, "threads")):
        slope = slope_per_hour([(s[0], float(s[index])) for s in fitted])
        growth = slope * span / 3600.0
        bad = growth > GROWTH_LIMITS[name]
        status |= bad
        verdict = "GROWS" if bad else "flat"
        print(f"| {name} | {slope:+.2f} | {growth:+.2f} (limit {GROWTH_LIMITS[name]:g}) | {verdict} |")
    if run.scrapes:
        p50, p99 = percentile(run.scrapes, 0.5) * 1000, percentile(run.scrapes, 0.99) * 1000
        print(f"\nscrapes: {len(run.scrapes)} ok, p50 {p50:.1f} ms, p99 {p99:.1f} ms; {len(run.scrape_errors)} failed")
    else:
        print(f"\nscrapes: none succeeded; {len(run.scrape_errors)} failed")
    for error in sorted(set(run.scrape_errors))[:5]:
        print(f"  scrape error: {error}")
    later = [c for c in run.changes if c.get("previous") is not None]
    followed = sum(
        any(0 <= float(str(c["at"])) - t <= window for c in later if c["target"] == "dc") for t, _ in run.flips
    )
    print(
        f"\nfirewall flips: {len(run.flips)} ({followed} followed by a change within {window:.1f} s); "
        f"state changes after the first result: {len(later)}; false: {len(run.false_changes)}"
    )
    for line in run.false_changes[:20]:
        print(f"  FALSE: {line}")
    status |= bool(run.false_changes)
    print("\nresult:", "FAIL" if status else "ok")
    return int(status)


def soak(args: argparse.Namespace, tmp: Path) -> int:
    """Build the fixture, run the daemon for ``args.minutes``, judge; returns the exit status."""
    run = Run()
    hostile = subprocess.Popen(
        [sys.executable, "-m", "tests.hostile"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert hostile.stdout is not None
        ports = json.loads(hostile.stdout.readline() or "{}")
        if not ports:
            raise RuntimeError("tests.hostile did not start")
        print("starting the test-bed DC (about a minute) ...", flush=True)
        dc = testbed.SambaDC.start()
        try:
            return _with_dc(args, tmp, dc, ports, run)
        finally:
            dc.close()
    finally:
        hostile.terminate()
        hostile.wait(10)


def _with_dc(args: argparse.Namespace, tmp: Path, dc: testbed.SambaDC, ports: dict[str, int], run: Run) -> int:
    config = tmp / "soak.toml"
    config.write_text(daemon_config(dc.address, ports, args.interval))
    argv = [sys.executable, "-m", "exporter", "--config", str(config), "--web.listen-address", "127.0.0.1:0"]
    daemon = Server([*argv, "--log.format", "json"], tmp / "soak.log", set(), cwd=ROOT)
    sample_every = min(60.0, args.minutes * 6.0)
    with running(daemon):
        event = daemon.wait_log(lambda e: e.get("event") == "portqry-exporter started", timeout=120.0)
        host, _, port = str(event["listen_address"]).rpartition(":")
        url = (host, int(port))
        print(f"DC {dc.address} in {dc.ns.name}; daemon pid {daemon.pid} on {host}:{port}", flush=True)
        time.sleep(2 * args.interval)  # the first rounds
        stop = threading.Event()
        lock = threading.Lock()
        until = time.monotonic() + args.minutes * 60.0
        flipper = threading.Thread(target=_flipper, args=(dc.ns, args.flip, stop, run), daemon=True)
        clients = [
            threading.Thread(target=_scraper, args=(url, until, run, lock), daemon=True) for _ in range(args.clients)
        ]
        flipper.start()
        for client in clients:
            client.start()
        next_sample = time.monotonic()
        last = until - 1.0  # the last sample while the clients still scrape
        while True:  # bounded: the run's length
            if not daemon.alive():
                raise RuntimeError(f"the daemon exited:\n{daemon.tail()}")
            now = time.monotonic()
            if now >= next_sample or now >= last:
                fds, threads = _proc_counts(daemon.pid)
                run.samples.append((time.time(), memory_mb(daemon.pid)[0], fds, threads))
                next_sample += sample_every
            if now >= last:
                break
            time.sleep(0.2)
        stop.set()
        flipper.join(30)
        for client in clients:
            client.join(SCRAPE_TIMEOUT + 5)
        time.sleep(args.interval + 2 * TIMEOUT + 1)  # the changes of the last flip reach the log
    run.changes = _state_changes(daemon.log)
    # one interval, then the probe's own deadline (its try and the protocol budget), then the log line
    window = args.interval + 3 * TIMEOUT + 1.0
    judge_changes(run, window)
    return print_report(run, args, window)


def main() -> int:
    """Parse the arguments and run the soak."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to soak (default 10)")
    parser.add_argument("--interval", type=float, default=3.0, help="probe interval, seconds (default 3)")
    parser.add_argument("--flip", type=float, default=15.0, help="seconds between firewall flips (default 15)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent scrapers (default 20)")
    args = parser.parse_args()
    if not (0 < args.minutes <= 24 * 60 and 1 <= args.interval <= 60 and 1 <= args.clients <= 200):
        parser.error("--minutes 0-1440, --interval 1-60, --clients 1-200")
    if args.flip < args.interval + 3 * TIMEOUT + 1:
        parser.error("--flip must exceed one interval plus the probe deadline (else flips cannot be told apart)")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces): sudo python3 -m bench.soak")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    tmp = testbed.make_tempdir("soak")
    try:
        return soak(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, testbed.TestbedError) as exc:
        print(f"bench.soak: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("bench.soak: interrupted; fixture removed", file=sys.stderr)
        sys.exit(130)

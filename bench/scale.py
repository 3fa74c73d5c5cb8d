"""Scale benchmark (issue 11): the daemon at 10 to 10,000 targets, and ``/probe`` against blackbox_exporter.

    sudo python3 -m bench.scale --quick        # about 7 min: 100 x 100 (4 runs) and 10,000 x 10, one interval each
    sudo python3 -m bench.scale                # about 15 min: every point, two intervals each
    sudo python3 -m bench.scale --points 100x100 --window 1 --no-probe
    sudo python3 -m bench.scale --baseline none                    # our daemon only
    sudo python3 -m bench.scale --baseline 8680628 --baseline-points 100x100,1000x10

What it does.  One network namespace (``tests.testbed.Namespace``: its registry and exit hook remove it also
after an error, Ctrl-C or SIGTERM) with 10 addresses in its own /24 (``198.18.N.2`` and ``.10``-``.17``
plain, ``.3`` with DROPs), one listener process inside (accept and close) and iptables DROP rules:

| ports                 | plain addresses            | the DROP address ``.3``   |
|-----------------------|----------------------------|---------------------------|
| tcp 20000-20099 even  | listening                  | listening                 |
| tcp 20000-20099 odd   | closed (RST)               | closed                    |
| tcp 20008, 20009      | as above                   | DROPped (filtered)        |
| tcp 53 88 135 389 ... | the ``/probe`` part's 20 ports: 13 listening, 7 closed                 |

Each point runs its own daemon, ``python3 -m exporter --config CFG --web.listen-address 127.0.0.1:0
--log.format json`` (the address from its ``portqry-exporter started`` log line), with ``[exporter] concurrency
= 512`` and one ``[[targets]]`` entry per target (distinct names, hosts spread over the plain addresses, each
``tcp/20000-20009`` or ``tcp/20000-20099``).  At the 10-port points enough targets sit on the DROP address that
2 % of all ports are DROPped (``--drop-percent``; each costs 3 tries x 2 s, so a round of 10,000 x 10 needs about
``2,000 x 6 s / 512`` = 23 s of its 60 s); 100 x 100 has no DROP (half listening, half closed).  The default
points: 10, 100, 1,000 x 10 at 30 s, 10,000 x 10 at 60 s, 100 x 100 at 30 s.

Per point, after ``/-/ready`` (every target finished one round) and from half an interval off the rounds'
phase (every target starts within the first second): a window of ``--window`` intervals with no HTTP request:
CPU % of one core (``/proc/PID/stat`` utime + stime over the window), and the machine's other busy CPU
(``/proc/stat``: a busy machine makes the scrape figures noisy); one scrape just before and just after it gives
the probes finished in the window (``portqry_probes_total``: "rounds" is that over ports x window / interval,
about 1 when rounds keep their interval) and the schedule lag p50/p99 (``portqry_exporter_schedule_lag_seconds``,
Prometheus' ``histogram_quantile`` over the window's observations; "n/a" when the daemon has no such histogram).
Then ``--scrapes`` timed ``GET /metrics`` in each format (text,
then ``Accept: application/openmetrics-text; version=1.0.0``), each on a new connection without
``Accept-Encoding`` (no compression), timed from connect to the last byte: median and p99 (nearest rank), the
series (sample lines) and body size; last, VmRSS and VmHWM (peak RSS) from ``/proc/PID/status``.

The baseline (``--baseline REV``, default ``8680628``, release 1: the code issue 11 calls "today"): the
benchmark extracts a pristine copy of that revision (``git -C ROOT archive REV | tar -x`` into its temp dir, no
worktree, removed at exit) and runs the very same daemon command with that copy as working directory, so that
``python3 -m exporter`` imports the old package; before that, ``python3 -c 'import exporter;
print(exporter.__file__)'`` run in each tree must name that tree's own ``exporter/__init__.py`` (an editable or
installed copy, or ``PYTHONSAFEPATH``, would otherwise be measured: the benchmark stops with the path it found),
each daemon's ``/proc/PID/cwd`` is checked, and the old daemon must accept the point's config
(``--config.check``; release 1 knows every key written: ``[exporter] concurrency``, ``[defaults]
interval_seconds``, ``[[targets]]`` name/host/ports).  At each ``--baseline-points`` point (default ``100x100``)
the two daemons run in turn, ours, baseline, ours, baseline, each measured as above (the first run of ours is the
point's row of the main table), so that drift of a busy machine hits both alike; printed: every run and the CPU
ratio ours / baseline of each pair, and their median.  The CPU goal is that median ratio: issue 11's absolute
"2 % of a core" is not reproducible on this machine (release 1 itself measures about 4 % here), so it is printed
as information only.

Then ``/probe`` (``bench/scale_probe.py``): the exporter's ``GET /probe?target=ADDR&module=bench-dc``
(20 ports a request) against ``prometheus-blackbox-exporter``'s ``tcp_connect`` (one port a request) on the
same 20 ports, ``--clients`` client threads, alternating rounds; ports/s and CPU per port of each server and
the ratio.  Skipped, with the reason, while the exporter has no ``/probe``.

Every server (the daemons, blackbox_exporter) is pinned to ``--cpus`` (default: the last CPU), this process
and the namespace's listener to the others, so probing and serving are measured on the same core(s).

Goals (issue 11; exit status 1 when one is missed, every table printed first):
100 x 100 at 512 in flight, 30 s: a scrape (median, each format) <= 100 ms; VmHWM <= 100 MB; probing CPU, ours /
release 1 in the same run (median of the pairs) <= 1.00 (the % of a core against the issue's 2 % is an INFO row).
100,000 ports (10,000 x 10): a scrape <= 1 s.  ``/probe``: CPU per port <= 1/3 of blackbox_exporter's.  A
baseline run that fails, or overruns its rounds, fails the benchmark too.
Exit status 2: the fixture could not be built (not root, no ``ip netns``) or a server failed; 130: Ctrl-C.

Nothing is sent anywhere but 127.0.0.1 (the servers) and the namespace's addresses.  Check by hand while it
runs (the namespace is ``pq-<pid>-<n>-scale``, its /24 ``198.18.N.0/24``)::

    ip netns exec pq-<pid>-<n>-scale ss -Hltn | wc -l              # 63 listening sockets
    ip netns exec pq-<pid>-<n>-scale iptables -S INPUT              # the 2 DROP rules on 198.18.N.3
    ps -o pid,psr,pcpu,rss,args -C python3 | grep exporter          # the daemon, its CPU (psr = --cpus)
    curl -s 127.0.0.1:<port>/metrics | grep -vc '^#'                # series (port: the daemon log's line)
    curl -so /dev/null -w '%{time_total}\\n' 127.0.0.1:<port>/metrics
    ls -l /proc/<daemon pid>/cwd                                    # the baseline runs: $TMPDIR/pq-*-scale-*/baseline
    cd $TMPDIR/pq-*-scale-*/baseline && python3 -c 'import exporter; print(exporter.__file__)'   # that copy's
    git -C /work/main worktree list                                 # no worktree added by the benchmark
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench import scale_probe
from bench.scale_util import (
    Server,
    bucket_delta,
    check_tree,
    count_series,
    counter_sum,
    cpu_seconds,
    histogram_buckets,
    histogram_quantile,
    machine_busy_seconds,
    median,
    memory_mb,
    percentile,
    pristine_copy,
    running,
    timed_get,
)
from tests import testbed

ROOT: Final = Path(__file__).resolve().parent.parent
PORT_BASE: Final = 20000
MAX_PORTS: Final = 100
DROPPED: Final = (20008, 20009)
"""DROPped on the DROP address: one listening, one closed port of every 10-port target there."""
PLAIN_HOSTS: Final = (2, *range(10, 18))
DROP_HOST: Final = 3
CONCURRENCY: Final = 512
LAG: Final = "portqry_exporter_schedule_lag_seconds"
PROBES: Final = "portqry_probes_total"
OPENMETRICS: Final = {"Accept": "application/openmetrics-text; version=1.0.0"}
ROUNDS_MIN: Final = 0.8
"""Below this share of the expected probes in the window a point fails: its rounds overrun the interval (the
jitter of +-10 % alone moves the share by a few per cent over one interval)."""
SCRAPE_TIMEOUT: Final = 300.0
"""Seconds one scrape may take (today's daemon needs 110 s for 100,000 ports in OpenMetrics)."""
SCRAPE_BUDGET: Final = 60.0
"""Seconds of scraping per format and point after which no further scrape starts (at least one is made)."""
GOAL_SCRAPE_10K: Final = 0.100
GOAL_SCRAPE_100K: Final = 1.0
GOAL_HWM_MB: Final = 100.0
GOAL_CPU_PCT: Final = 2.0
"""The issue's absolute figure (information only: release-1 itself measures about 4 % on this machine)."""
GOAL_CPU_RATIO: Final = 1.0
GOAL_PROBE_RATIO: Final = 1 / 3
DEFAULT_BASELINE: Final = "8680628"
"""Release 1: the code issue 11 calls "today"."""
BASELINE_RUNS: Final = 2
"""Runs of each daemon at a baseline point, alternating ours, baseline, ours, baseline."""


@dataclass(frozen=True)
class Point:
    """One daemon setting: targets x ports per target, interval, share of DROPped ports."""

    targets: int
    ports: int
    interval: float
    drop_percent: float

    @property
    def label(self) -> str:
        """``1000x10``."""
        return f"{self.targets}x{self.ports}"

    @property
    def total(self) -> int:
        """Ports probed per round."""
        return self.targets * self.ports

    @property
    def drop_targets(self) -> int:
        """Targets on the DROP address (2 DROPped ports each; 10-port points only)."""
        if self.ports != 10 or self.drop_percent <= 0:
            return 0
        return min(self.targets, max(1, round(self.total * self.drop_percent / 100 / len(DROPPED))))


@dataclass
class Result:
    """The figures of one point."""

    point: Point
    started_s: float = math.nan
    ready_s: float | None = None
    window_s: float = 0.0
    cpu_pct: float = math.nan
    other_pct: float = math.nan
    rss_mb: float = math.nan
    hwm_mb: float = math.nan
    series: int = 0
    body_mb: float = 0.0
    text: list[float] = field(default_factory=list)
    om: list[float] = field(default_factory=list)
    lag: tuple[float, float] | None = None
    rounds: float | None = None
    errors: list[str] = field(default_factory=list)

    def row(self) -> str:
        """One Markdown table row."""
        p = self.point
        dropped = 100.0 * p.drop_targets * len(DROPPED) / p.total
        lag = f"{self.lag[0]:.3f} / {self.lag[1]:.3f}" if self.lag else "n/a"
        ready = f"{self.ready_s:.1f}" if self.ready_s is not None else "never"
        rounds = f"{self.rounds:.2f}" if self.rounds is not None else "n/a"
        return (
            f"| {p.targets:,} x {p.ports} | {p.total:,} | {p.interval:g} | {dropped:.1f} | {ready} "
            f"| {self.cpu_pct:.2f} | {self.other_pct:.0f} | {self.rss_mb:.1f} | {self.hwm_mb:.1f} "
            f"| {self.series:,} | {self.body_mb:.1f} "
            f"| {_ms(self.text)} | {_ms(self.om)} | {lag} | {rounds} |"
        )


@dataclass
class Comparison:
    """One point run by both daemons in turn (ours, baseline, ours, baseline): ``runs`` as ``(daemon, result)``."""

    point: Point
    baseline: str
    runs: list[tuple[str, Result]] = field(default_factory=list)

    def cpu(self, daemon: str) -> list[float]:
        """CPU % of a core of ``daemon``'s runs, in order (NaN for a run that failed)."""
        return [r.cpu_pct for name, r in self.runs if name == daemon]

    @property
    def ratios(self) -> list[float]:
        """CPU ours / baseline of each pair of consecutive runs (pairs with a failed run left out)."""
        pairs = zip(self.cpu("ours"), self.cpu(self.baseline), strict=False)
        return [o / b for o, b in pairs if not (math.isnan(o) or math.isnan(b)) and b > 0]

    @property
    def ratio(self) -> float | None:
        """The median of :attr:`ratios`; None without a complete pair."""
        return median(self.ratios) if self.ratios else None

    def rows(self) -> list[str]:
        """One Markdown table row per run."""
        out = []
        for i, (name, r) in enumerate(self.runs, 1):
            rounds = f"{r.rounds:.2f}" if r.rounds is not None else "n/a"
            out.append(
                f"| {i} | {name} | {r.cpu_pct:.2f} | {r.other_pct:.0f} | {r.rss_mb:.1f} | {r.hwm_mb:.1f} "
                f"| {r.series:,} | {_ms(r.text)} | {_ms(r.om)} | {rounds} |"
            )
        return out


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{1000 * median(values):.0f} / {1000 * percentile(values, 0.99):.0f}"


@dataclass
class Fixture:
    """The namespace and its addresses."""

    ns: testbed.Namespace
    plain: list[str]
    drop: str


DEFAULT_POINTS: Final = ("10x10", "100x10", "1000x10", "10000x10", "100x100")
QUICK_POINTS: Final = ("100x100", "10000x10")


def parse_point(text: str, drop_percent: float) -> Point:
    """``TARGETSxPORTS`` -> a point (interval 60 s from 100,000 ports on, else 30 s)."""
    targets_s, _, ports_s = text.lower().partition("x")
    targets, ports = int(targets_s), int(ports_s)
    if not 1 <= targets <= 20000 or ports not in (10, 100):
        raise ValueError(f"{text!r}: TARGETSxPORTS with 1-20000 targets and 10 or 100 ports")
    interval = 60.0 if targets * ports >= 100_000 else 30.0
    return Point(targets, ports, interval, drop_percent if ports == 10 else 0.0)


def listening_ports() -> list[int]:
    """Every port the listener binds: the even ones of the range and the ``/probe`` part's listening ones."""
    return [PORT_BASE + i for i in range(0, MAX_PORTS, 2)] + list(scale_probe.LISTENING)


@contextlib.contextmanager
def scale_namespace() -> Iterator[Fixture]:
    """Build the namespace (addresses, listener, DROP rules), check it, tear it down on exit."""
    reason = testbed.netns_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"bench namespace unavailable: {reason}")
    ns = testbed.Namespace.create("scale", icmp_deterministic=True)  # registered: the exit hook is a backstop
    try:
        plain = [ns.address if host == 2 else ns.add_address(host) for host in PLAIN_HOSTS]
        drop = ns.add_address(DROP_HOST)
        ns.start_listeners(tcp=listening_ports(), timeout=30.0)
        rules = "*filter\n" + "".join(
            f"-A INPUT -d {drop}/32 -p tcp -m tcp --dport {port} -j DROP\n" for port in DROPPED
        )
        ns.run(["iptables-restore", "--noflush", "-w", "5"], input_text=rules + "COMMIT\n")
        _self_check(plain, drop)
        yield Fixture(ns, plain, drop)
    finally:
        ns.teardown()


def _self_check(plain: list[str], drop: str) -> None:
    for address in (*plain, drop):
        with socket.create_connection((address, PORT_BASE), timeout=2.0):
            pass
        with contextlib.suppress(ConnectionRefusedError), socket.create_connection((address, PORT_BASE + 1), 2.0):
            raise RuntimeError(f"{address}: tcp/{PORT_BASE + 1} accepted; it should be closed")
    try:
        with socket.create_connection((drop, DROPPED[1]), timeout=0.3):
            raise RuntimeError(f"{drop}: tcp/{DROPPED[1]} answered; it should be DROPped")
    except TimeoutError:
        pass


def daemon_config(point: Point, fixture: Fixture) -> str:
    """The daemon's TOML for ``point``: one ``[[targets]]`` entry per target."""
    last = PORT_BASE + point.ports - 1
    lines = [
        "[exporter]",
        f"concurrency = {CONCURRENCY}",
        "",
        "[defaults]",
        f"interval_seconds = {point.interval:g}",
        "",
    ]
    drops = point.drop_targets
    for i in range(point.targets):
        host = fixture.drop if i < drops else fixture.plain[i % len(fixture.plain)]
        lines += ["[[targets]]", f'name = "t{i:05d}"', f'host = "{host}"', f'ports = ["tcp/{PORT_BASE}-{last}"]', ""]
    return "\n".join(lines)


def _try_scrape(
    url: tuple[str, int],
    result: Result,
    what: str,
    headers: dict[str, str] | None = None,
    times: list[float] | None = None,
) -> bytes:
    """One timed ``GET /metrics`` (its seconds appended to ``times``); a failure is noted and gives ``b""``."""
    try:
        got = timed_get(url[0], url[1], "/metrics", headers, timeout=SCRAPE_TIMEOUT)
    except (OSError, http.client.HTTPException) as exc:
        result.errors.append(f"{result.point.label}: scrape {what}: {exc or type(exc).__name__}")
        return b""
    if got.status != 200:
        result.errors.append(f"{result.point.label}: scrape {what}: {got.status} {got.body[:200]!r}")
        return b""
    if times is not None:
        times.append(got.seconds)
    return got.body


def wait_ready(daemon: Server, url: tuple[str, int], timeout: float) -> bool:
    """Poll ``/-/ready`` (bounded by ``timeout`` s) until 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if timed_get(url[0], url[1], "/-/ready", timeout=10.0).status == 200:
                return True
        if not daemon.alive():
            raise RuntimeError(f"the daemon exited:\n{daemon.tail()}")
        time.sleep(0.5)
    return False


def point_config(point: Point, fixture: Fixture, tmp: Path) -> Path:
    """Write :func:`daemon_config` for ``point`` (the same file for every daemon run at that point)."""
    config = tmp / f"scale-{point.label}.toml"
    config.write_text(daemon_config(point, fixture))
    return config


def baseline_accepts(tree: Path, config: Path) -> None:
    """Check that the daemon in ``tree`` accepts ``config`` (``--config.check``).

    Raises:
        RuntimeError: it refuses the file (its message names the key).
    """
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--config", str(config), "--config.check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tree,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the baseline daemon refuses {config.name}: {(proc.stderr or proc.stdout).strip()[-600:]}")


def run_point(
    point: Point, fixture: Fixture, tmp: Path, args: argparse.Namespace, tree: Path = ROOT, name: str = ""
) -> Result:
    """Start a daemon for ``point`` (``python3 -m exporter`` run in ``tree``), wait for readiness, measure, stop it.

    ``name`` tells runs of the same point apart (``ours 1``, ``release-1 2``: its log file and progress lines).

    Raises:
        RuntimeError: the daemon exited, did not start, or does not run in ``tree``.
    """
    result = Result(point)
    config = point_config(point, fixture, tmp)
    tag = f"{point.label}-{name.replace(' ', '-')}" if name else point.label
    shown = f"{point.label} {name}" if name else point.label
    argv = [sys.executable, "-m", "exporter", "--config", str(config), "--web.listen-address", "127.0.0.1:0"]
    daemon = Server([*argv, "--log.format", "json"], tmp / f"scale-{tag}.log", args.server_cpus, cwd=tree)
    print(f"{shown}: {point.total:,} ports every {point.interval:g} s ...", flush=True)
    started = time.monotonic()
    with running(daemon):
        event = daemon.wait_log(lambda e: e.get("event") == "portqry-exporter started", timeout=300.0)
        result.started_s = time.monotonic() - started
        cwd = Path(os.readlink(f"/proc/{daemon.pid}/cwd"))
        if cwd != tree.resolve():
            raise RuntimeError(f"{shown}: the daemon runs in {cwd}, not in {tree}")
        host, _, port = str(event["listen_address"]).rpartition(":")
        url = (host, int(port))
        if wait_ready(daemon, url, timeout=3 * point.interval + 120.0):
            result.ready_s = time.monotonic() - started
        else:
            result.errors.append(f"{point.label}: not ready after {3 * point.interval + 120:.0f} s")
        # Rounds keep the phase of the first one (every target starts within 1 s): the window starts half an
        # interval off that phase, so that its ends do not cut the rounds' ends in two (a biased "rounds").
        phase = math.ceil((time.monotonic() - started) / point.interval - 0.5) + 0.5
        time.sleep(max(0.0, started + phase * point.interval - time.monotonic()))
        before = _try_scrape(url, result, "before the window")
        cpu0, busy0, wall0 = cpu_seconds(daemon.pid), machine_busy_seconds(), time.monotonic()
        window = args.window * point.interval
        while time.monotonic() - wall0 < window:  # bounded: the window's length
            time.sleep(min(1.0, max(0.0, window - (time.monotonic() - wall0))))
            if not daemon.alive():
                raise RuntimeError(f"the daemon exited:\n{daemon.tail()}")
        cpu1, busy1, wall1 = cpu_seconds(daemon.pid), machine_busy_seconds(), time.monotonic()
        after = _try_scrape(url, result, "after the window")
        result.window_s = wall1 - wall0
        result.cpu_pct = 100.0 * (cpu1 - cpu0) / result.window_s
        result.other_pct = 100.0 * (busy1 - busy0 - (cpu1 - cpu0)) / result.window_s
        probes0, probes1 = counter_sum(before, PROBES), counter_sum(after, PROBES)
        if probes0 is not None and probes1 is not None:
            result.rounds = (probes1 - probes0) / (point.total * result.window_s / point.interval)
        lag = bucket_delta(histogram_buckets(after, LAG), histogram_buckets(before, LAG))
        p50, p99 = histogram_quantile(0.5, lag), histogram_quantile(0.99, lag)
        if p50 is not None and p99 is not None:
            result.lag = (p50, p99)
        for headers, times in ((None, result.text), (OPENMETRICS, result.om)):
            for _ in range(args.scrapes):
                if sum(times) > SCRAPE_BUDGET:  # a slow exposition: fewer scrapes, the run stays bounded
                    break
                body = _try_scrape(url, result, "OpenMetrics" if headers else "text", headers, times)
                if not body:
                    break
                if headers is None:
                    result.series = count_series(body)
                    result.body_mb = len(body) / 2**20
                elif not body.rstrip().endswith(b"# EOF"):
                    result.errors.append(f"{point.label}: the OpenMetrics answer does not end with '# EOF'")
                    break
        result.rss_mb, result.hwm_mb = memory_mb(daemon.pid)
    took = time.monotonic() - started
    print(f"{shown}: done in {took:.0f} s (ready after {result.ready_s or math.nan:.1f} s)", flush=True)
    return result


def run_compared(point: Point, fixture: Fixture, tmp: Path, args: argparse.Namespace, tree: Path) -> Comparison:
    """Run ``point`` with our daemon and the baseline's (from ``tree``) in turn, :data:`BASELINE_RUNS` times each.

    Ours first, so that ``runs[0]`` is also the point's row of the main table.  A run that fails is kept as a
    result with the error (its pair then leaves the ratio); a config the baseline refuses fails its runs alike.
    """
    comparison = Comparison(point, args.baseline_name)
    try:
        baseline_accepts(tree, point_config(point, fixture, tmp))
        refused = ""
    except RuntimeError as exc:
        refused = str(exc)
    for i in range(1, BASELINE_RUNS + 1):
        for name, where in (("ours", ROOT), (args.baseline_name, tree)):
            if where == tree and refused:
                comparison.runs.append((name, Result(point, errors=[refused])))
                continue
            try:
                result = run_point(point, fixture, tmp, args, where, f"{name} {i}")
            except RuntimeError as exc:
                result = Result(point, errors=[f"{point.label}: {exc}"])
            comparison.runs.append((name, result))
    return comparison


def goals(
    results: dict[str, Result], probe: scale_probe.ProbeReport, compared: dict[str, Comparison], baseline: str
) -> list[tuple[str, str, str, str]]:
    """``(goal, measured, limit, PASS|FAIL|SKIP|INFO)`` rows; ``baseline`` names the baseline daemon."""
    rows: list[tuple[str, str, str, str]] = []

    def add(goal: str, value: float | None, limit: float, fmt: str) -> None:
        if value is None or math.isnan(value):
            rows.append((goal, "not measured", fmt.format(limit), "SKIP"))
        else:
            rows.append((goal, fmt.format(value), fmt.format(limit), "PASS" if value <= limit else "FAIL"))

    main_ = results.get("100x100")
    worst = max(median(main_.text), median(main_.om)) if main_ else None
    add("scrape of 10,000 ports (100 x 100), median, worse format, s", worst, GOAL_SCRAPE_10K, "{:.3f}")
    big = next((r for r in results.values() if r.point.total >= 100_000), None)
    worst_big = max(median(big.text), median(big.om)) if big else None
    label = f"scrape of {big.point.total:,} ports ({big.point.label})" if big else "scrape of 100,000 ports"
    add(f"{label}, median, worse format, s", worst_big, GOAL_SCRAPE_100K, "{:.3f}")
    add("peak RSS (VmHWM) at 10,000 ports (100 x 100), MB", main_.hwm_mb if main_ else None, GOAL_HWM_MB, "{:.1f}")
    against = compared.get("100x100")
    add(
        f"probing CPU, 10,000 ports per 30 s (100 x 100), ours / {baseline} (same run)",
        against.ratio if against else None,
        GOAL_CPU_RATIO,
        "{:.2f}",
    )
    ours_cpu = median(against.cpu("ours")) if against else (main_.cpu_pct if main_ else math.nan)
    runs = f", median of {len(against.cpu('ours'))} runs" if against else ""
    rows.append(
        (
            f"probing CPU, 10,000 ports per 30 s (100 x 100), % of a core{runs} (the issue's 2 %: information)",
            "not measured" if math.isnan(ours_cpu) else f"{ours_cpu:.2f}",
            f"{GOAL_CPU_PCT:.2f}",
            "INFO",
        )
    )
    add("/probe CPU per port, ours / blackbox_exporter", probe.ratio, GOAL_PROBE_RATIO, "{:.3f}")
    return rows


def print_report(
    results: dict[str, Result],
    probe: scale_probe.ProbeReport,
    compared: dict[str, Comparison],
    args: argparse.Namespace,
) -> int:
    """Print the tables and the failures; the exit status."""
    cpus = ",".join(map(str, sorted(args.server_cpus))) or "any"
    print(
        f"\n## The daemon at scale ({CONCURRENCY} in flight, TCP 3 tries x 2 s, servers on CPU {cpus} of "
        f"{os.cpu_count()}, window {args.window:g} interval(s), {args.scrapes} scrapes per format)\n"
    )
    print(
        "| targets x ports | ports | interval s | DROP % | ready s | CPU % core | others' CPU % | RSS MB | VmHWM MB "
        "| series | body MB | text scrape ms p50 / p99 | OpenMetrics ms p50 / p99 | schedule lag s p50 / p99 | rounds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for result in results.values():
        print(result.row())
    for comparison in compared.values():
        p = comparison.point
        print(
            f"\n## {p.targets:,} x {p.ports}: ours against {comparison.baseline} ({args.baseline_commit}, a pristine "
            f"copy), same fixture, same CPU, alternating\n"
        )
        print(
            "| run | daemon | CPU % core | others' CPU % | RSS MB | VmHWM MB | series "
            "| text scrape ms p50 / p99 | OpenMetrics ms p50 / p99 | rounds |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for line in comparison.rows():
            print(line)
        pairs = ", ".join(f"pair {i}: {r:.2f}" for i, r in enumerate(comparison.ratios, 1)) or "no complete pair"
        ratio = f"{comparison.ratio:.2f}" if comparison.ratio is not None else "n/a"
        print(f"\nCPU ours / {comparison.baseline}: {pairs}; median {ratio} (goal <= {GOAL_CPU_RATIO:.2f})")
    if args.baseline == "none":
        print("\nbaseline SKIPPED (--baseline none): the CPU goal against release 1 is not measured")
    print(f"\n## /probe against {scale_probe.BLACKBOX} (same 20 ports of one address, {args.clients} clients)\n")
    if probe.error:
        print(f"FAILED: {probe.error}")
    if probe.blackbox is not None:
        print("| server | requests | ports | wall s | ports/s | CPU s | CPU us / port | right | errors |")
        print("|---|---|---|---|---|---|---|---|---|")
        for batch in (probe.ours, probe.blackbox):
            if batch is not None:
                print(batch.row())
    if probe.skipped:
        print(f"\nportqry-exporter /probe SKIPPED: {probe.skipped}")
    if probe.unchecked:
        print(f"\nportqry-exporter /probe: {probe.unchecked}")
    if probe.ratio is not None:
        print(f"\nCPU per port, ours / blackbox_exporter: {probe.ratio:.3f} (goal <= {GOAL_PROBE_RATIO:.3f})")
    print("\n## Goals\n")
    print("| goal | measured | limit | result |")
    print("|---|---|---|---|")
    rows = goals(results, probe, compared, args.baseline_name)
    for row in rows:
        print("| " + " | ".join(row) + " |")
    failed = [f"{goal}: {value} > {limit}" for goal, value, limit, verdict in rows if verdict == "FAIL"]
    failed += [e for r in results.values() for e in r.errors]
    if probe.error:
        failed.append(f"/probe part: {probe.error.splitlines()[0]}")
    failed += [f"{name}: {e}" for c in compared.values() for name, r in c.runs[1:] for e in r.errors]
    runs = [(r.point.label, r) for r in results.values()]
    runs += [(f"{c.point.label} {name}", r) for c in compared.values() for name, r in c.runs[1:]]
    for label, result in runs:
        if result.rounds is not None and result.rounds < ROUNDS_MIN and args.window >= 1:
            failed.append(f"{label}: rounds {result.rounds:.2f} of the expected: a round overruns")
    for batch in (probe.ours, probe.blackbox):
        if batch is not None and (batch.errors or batch.wrong):
            failed.append(f"{batch.name}: {batch.errors} failed requests, {batch.wrong} wrong ports")
    print()
    for line in failed:
        print(f"FAIL: {line}")
    if not failed:
        print("OK: every goal measured was met")
    return 1 if failed else 0


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the run like Ctrl-C: through the ``finally`` blocks, servers and namespace gone."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def _cpu_split(spec: str) -> tuple[set[int], set[int]]:
    """``--cpus`` -> (server CPUs, the rest for this process); ``""`` = no pinning."""
    available = os.sched_getaffinity(0)
    if spec == "none" or len(available) < 2:
        return set(), set()
    servers = {max(available)} if spec == "last" else {int(c) for c in spec.split(",")}
    if not servers <= available:
        raise ValueError(f"--cpus {spec}: not all of them are available ({sorted(available)})")
    return servers, (available - servers) or available


def main() -> int:
    """Parse the arguments, build the fixture, run the points and the ``/probe`` part, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100x100 and 10000x10, one interval, 3 scrapes")
    parser.add_argument("--points", help=f"comma-separated TARGETSxPORTS, or none (default {','.join(DEFAULT_POINTS)})")
    parser.add_argument("--window", type=float, help="measuring window, in intervals (default 2; --quick 1)")
    parser.add_argument("--scrapes", type=int, help="timed scrapes per format (default 5; --quick 3)")
    parser.add_argument("--drop-percent", type=float, default=2.0, help="DROPped ports at the 10-port points")
    parser.add_argument("--probe-requests", type=int, help="/probe requests of 20 ports (default 500; --quick 150)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of the /probe part")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the /probe part")
    parser.add_argument("--no-probe", action="store_true", help="skip the /probe part")
    parser.add_argument("--cpus", default="last", help="CPUs of the servers: 'last', a list '1,2', or 'none'")
    parser.add_argument(
        "--baseline",
        default=DEFAULT_BASELINE,
        help=f"git revision whose daemon is the CPU baseline, or none (default {DEFAULT_BASELINE}, release 1)",
    )
    parser.add_argument(
        "--baseline-points",
        default="100x100",
        help="comma-separated points (of those run) measured against the baseline too (default 100x100)",
    )
    args = parser.parse_args()
    args.window = args.window if args.window is not None else (1.0 if args.quick else 2.0)
    args.scrapes = args.scrapes if args.scrapes is not None else (3 if args.quick else 5)
    requests = args.probe_requests if args.probe_requests is not None else (150 if args.quick else 500)
    names = args.points.split(",") if args.points else list(QUICK_POINTS if args.quick else DEFAULT_POINTS)
    names = [] if names == ["none"] else names
    try:
        points = [parse_point(name, args.drop_percent) for name in names]
        wanted = [parse_point(name, 0.0).label for name in args.baseline_points.split(",") if name]
        args.server_cpus, own_cpus = _cpu_split(args.cpus)
    except ValueError as exc:
        parser.error(str(exc))
    baseline_labels = set(wanted) if args.baseline != "none" else set()
    for label in sorted(baseline_labels - {p.label for p in points}):
        print(f"--baseline-points {label}: not among the points run, not compared", flush=True)
    args.baseline_name, args.baseline_commit = "baseline", ""
    if not (0 < args.window <= 10 and 1 <= args.scrapes <= 100 and 1 <= requests <= 10000):
        parser.error("--window 0-10 intervals, --scrapes 1-100, --probe-requests 1-10000")
    if not (1 <= args.clients <= 64 and 1 <= args.rounds <= 10 and 0 <= args.drop_percent <= 20):
        parser.error("--clients 1-64, --rounds 1-10, --drop-percent 0-20")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces): sudo python3 -m bench.scale")
    _stop_on_signals()
    if own_cpus:
        os.sched_setaffinity(0, own_cpus)  # the listener inherits it
    results: dict[str, Result] = {}
    compared: dict[str, Comparison] = {}
    probe = scale_probe.ProbeReport(skipped="--no-probe")
    tmp = testbed.make_tempdir("scale")  # the baseline's copy too: removed below, also after an error or a signal
    try:
        print(f"ours: {ROOT}, python3 -m exporter imports {check_tree(ROOT)}", flush=True)
        tree = tmp / "baseline"
        if baseline_labels:
            args.baseline_commit = pristine_copy(ROOT, args.baseline, tree)
            if args.baseline_commit.startswith(DEFAULT_BASELINE):
                args.baseline_name = "release-1"
            print(
                f"{args.baseline_name}: {args.baseline} = {args.baseline_commit} copied to {tree} (git archive), "
                f"python3 -m exporter imports {check_tree(tree)}",
                flush=True,
            )
        with scale_namespace() as fixture:
            print(f"namespace {fixture.ns.name}: plain {', '.join(fixture.plain)}; DROP {fixture.drop}", flush=True)
            for point in points:
                if point.label in baseline_labels:
                    compared[point.label] = run_compared(point, fixture, tmp, args, tree)
                    results[point.label] = compared[point.label].runs[0][1]
                    continue
                try:
                    results[point.label] = run_point(point, fixture, tmp, args)
                except RuntimeError as exc:  # a server failed: note it, go on with the next point
                    results[point.label] = Result(point, errors=[f"{point.label}: {exc}"])
            if not args.no_probe:
                print("/probe against blackbox_exporter ...", flush=True)
                try:
                    probe = scale_probe.run_probe_part(
                        fixture.plain[0], tmp, args.server_cpus, requests, args.clients, args.rounds
                    )
                except RuntimeError as exc:
                    probe = scale_probe.ProbeReport(error=str(exc))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return print_report(results, probe, compared, args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, testbed.TestbedError) as exc:  # the fixture could not be built or a server failed
        print(f"bench.scale: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # the with blocks have run: servers, namespace and temp dir are gone
        print("bench.scale: interrupted; fixture removed", file=sys.stderr)
        sys.exit(130)

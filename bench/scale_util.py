"""Helpers of the scale benchmark (``bench/scale.py``): server processes, /proc figures, timed HTTP GETs, and
the pristine copy of an older revision that the baseline daemon runs from.

Everything here talks only to 127.0.0.1 (the servers the benchmark starts) and reads ``/proc`` of processes it
started; nothing is left running: :class:`Server` stops its process on exit (TERM, then KILL), also after an error.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
NOFILE: Final = 65536
"""Open-file limit asked for the servers (512 probes in flight, HTTP clients, the log)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (all threads), from ``/proc/PID/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": fields 3.. of proc(5)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every CPU, not idle or iowait), from ``/proc/stat``."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


def memory_mb(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of ``pid`` in MB (1 MB = 2**20 bytes), from ``/proc/PID/status``."""
    found = {"VmRSS": 0.0, "VmHWM": 0.0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in found:
            found[key] = int(value.split()[0]) / 1024.0
    return found["VmRSS"], found["VmHWM"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank (p99 of 5 values is the largest)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers that cannot report the port they bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pristine_copy(repo: Path, rev: str, dest: Path) -> str:
    """Extract the tree of commit ``rev`` of the git repository ``repo`` into the new directory ``dest``.

    ``git -C REPO archive COMMIT | tar -x -C DEST``: files only, no ``.git`` and no worktree registered in
    ``repo`` (removing ``dest`` removes every trace).

    Returns:
        The full commit id that ``rev`` names.

    Raises:
        RuntimeError: ``rev`` is not a commit of ``repo``, or ``git archive`` or ``tar`` failed.
    """
    found = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if found.returncode != 0:
        raise RuntimeError(f"{rev!r} is not a commit of {repo}")
    commit = found.stdout.strip()
    dest.mkdir(parents=True)
    with subprocess.Popen(["git", "-C", str(repo), "archive", commit], stdout=subprocess.PIPE) as archive:
        assert archive.stdout is not None
        tar = subprocess.run(
            ["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True, timeout=120, check=False
        )
        archive.stdout.close()
        archive.wait(30)
    if archive.returncode != 0 or tar.returncode != 0:
        raise RuntimeError(f"git archive {commit} | tar -x -C {dest} failed: {tar.stderr.decode(errors='replace')}")
    return commit


def imported_package(tree: Path, package: str = "exporter") -> Path:
    """The ``__init__.py`` that ``python3 -m PACKAGE`` started in ``tree`` imports (this interpreter, environment).

    ``-m`` puts the working directory first on ``sys.path`` and ``-c`` the empty entry, the same directory, so
    the one-line check ``python3 -c 'import PACKAGE; print(PACKAGE.__file__)'`` run in ``tree`` finds what the
    daemon will import: ``tree``'s own copy, unless it has none or ``PYTHONSAFEPATH`` drops that entry (then an
    installed or editable one).

    Raises:
        RuntimeError: the import fails.
    """
    proc = subprocess.run(
        [sys.executable, "-c", f"import {package}; print({package}.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tree,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"import {package} in {tree} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return Path(proc.stdout.strip().splitlines()[-1]).resolve()


def check_tree(tree: Path, package: str = "exporter") -> Path:
    """:func:`imported_package`, checked to be ``tree``'s own copy of ``package``.

    Raises:
        RuntimeError: ``python3 -m PACKAGE`` run in ``tree`` would import another tree (named in the message).
    """
    found = imported_package(tree, package)
    want = (tree / package / "__init__.py").resolve()
    if found != want:
        raise RuntimeError(
            f"python3 -m {package} run in {tree} would import {found}, not {want} (PYTHONSAFEPATH set, or no "
            f"{package}/ there?): the daemon measured would not be the one asked for"
        )
    return found


@dataclass
class Timed:
    """One HTTP GET: status, body, seconds from connect to the body's last byte."""

    status: int
    body: bytes
    seconds: float


def timed_get(host: str, port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 60.0) -> Timed:
    """GET ``path`` on a new connection, with no ``Accept-Encoding`` (no compression), timed to the last byte."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        return Timed(resp.status, body, time.perf_counter() - started)
    finally:
        conn.close()


def count_series(body: bytes) -> int:
    """Sample lines of a text or OpenMetrics exposition (not ``#`` lines, not blank)."""
    lines = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    comments = body.count(b"\n#") + (1 if body.startswith(b"#") else 0)
    blanks = body.count(b"\n\n")
    return lines - comments - blanks


_BUCKET_RE: Final = rb'^%s_bucket\{[^}]*?le="([^"]+)"[^}]*\} (\S+)'


def histogram_buckets(body: bytes, family: str) -> dict[float, float]:
    """Cumulative bucket counts of histogram ``family``, summed over every label set: ``{le: count}``."""
    out: dict[float, float] = {}
    for match in re.finditer(_BUCKET_RE % re.escape(family.encode()), body, re.M):
        le = float(match.group(1))
        out[le] = out.get(le, 0.0) + float(match.group(2))
    return out


def counter_sum(body: bytes, name: str) -> float | None:
    """The sum of every sample of ``name`` (any labels), None when there is none."""
    values = [
        float(m.group(1)) for m in re.finditer(rb"^%s(?:\{[^}]*\})? (\S+)" % re.escape(name.encode()), body, re.M)
    ]
    return sum(values) if values else None


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` on cumulative buckets (linear in a bucket); None without observations."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower  # the highest finite bound, as Prometheus answers
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def bucket_delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    """Observations between two scrapes, bucket by bucket."""
    return {le: count - before.get(le, 0.0) for le, count in after.items()}


class Server:
    """A server process started by the benchmark: pinned to ``cpus``, its output in ``log``, stopped on exit.

    Args:
        argv: the command.
        log: file that receives stdout and stderr.
        cpus: CPUs the process may run on (``sched_setaffinity``); empty: no pinning.
        cwd: working directory.
    """

    def __init__(self, argv: Sequence[str], log: Path, cpus: set[int], cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        self.cpus = set(cpus)
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (after :meth:`start`)."""
        assert self.proc is not None
        return self.proc.pid

    def _prepare(self) -> None:  # runs in the child between fork and exec
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    def start(self) -> None:
        """Start the process (stdin closed, output to the log file)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                preexec_fn=self._prepare,  # noqa: PLW1509 - no threads of ours hold locks the child needs
            )

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        """The last lines of its log (for error messages)."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def wait_log(self, predicate: Callable[[dict[str, object]], bool], timeout: float) -> dict[str, object]:
        """Wait (at most ``timeout`` s) for a JSON log line that ``predicate`` accepts; return it.

        Raises:
            RuntimeError: the process exited or the time ran out first.
        """
        deadline = time.monotonic() + timeout
        offset = 0
        pending = b""
        while time.monotonic() < deadline:
            with self.log.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            offset += len(chunk)
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                with contextlib.suppress(ValueError):
                    event = json.loads(raw)
                    if isinstance(event, dict) and predicate(event):
                        return event
            if not self.alive():
                raise RuntimeError(f"{self.argv[0]} exited ({self.proc and self.proc.returncode}):\n{self.tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"{' '.join(self.argv[:4])}: no expected log line in {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait ``timeout`` s, then SIGKILL. Safe to call twice."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start ``server``; stop it on exit (also after an error or Ctrl-C)."""
    try:
        server.start()
        yield server
    finally:
        server.stop()

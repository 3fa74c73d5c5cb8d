"""Run the real daemon as a subprocess and scrape it (helpers for tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import REPO

ROOT = REPO
"""The repository root (the daemon runs from there)."""


@dataclass
class RunningDaemon:
    """A daemon subprocess and the base URL it serves."""

    proc: subprocess.Popen[str]
    url: str
    config: Path
    log_lines: list[str] = field(default_factory=list)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET ``path``; returns ``(status, body)``."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def post(self, path: str, timeout: float = 30.0) -> tuple[int, str]:
        """POST ``path`` with an empty body; returns ``(status, body)``."""
        req = urllib.request.Request(self.url + path, data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Scrape ``/metrics``: sample name -> [(labels, value), ...]."""
        status, text = self.get("/metrics")
        assert status == 200, text
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.setdefault(s.name, []).append((dict(s.labels), s.value))
        return out

    def states(self) -> dict[tuple[str, str, str], str]:
        """``(target, protocol, port) -> state`` from ``portqry_port_state``."""
        out: dict[tuple[str, str, str], str] = {}
        for labels, value in self.samples().get("portqry_port_state", []):
            if value == 1:
                out[(labels["target"], labels["protocol"], labels["port"])] = labels["portqry_port_state"]
        return out

    def wait_for(self, predicate, timeout: float = 30.0, interval: float = 0.2):  # type: ignore[no-untyped-def]
        """Poll ``predicate(self)`` until truthy; returns its value or raises AssertionError."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate(self)
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"condition not met in {timeout}s; last={last!r}; log tail={self.log_lines[-5:]}")


@contextmanager
def run_daemon(
    config: Path,
    *,
    extra_env: dict[str, str] | None = None,
    timeout: float = 20.0,
    args: Sequence[str] = (),
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[RunningDaemon]:
    """Start ``python -m exporter --config CONFIG --web.listen-address 127.0.0.1:0 ARGS`` and wait until it serves.

    The actual port (and the scheme: ``https`` with a TLS web config) comes from the JSON "portqry-exporter
    started" log line.  ``preexec_fn`` runs in the child before the exec (e.g. to lower a resource limit).
    """
    env = dict(os.environ, **(extra_env or {}))
    env.pop("PORTQRY_EXPORTER__LISTEN_ADDRESS", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "--config",
            str(config),
            "--web.listen-address",
            "127.0.0.1:0",
            "--log.format",
            "json",
            "--log.level",
            "debug",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
        preexec_fn=preexec_fn,  # noqa: PLW1509 (callers pass one syscall, e.g. setrlimit; no lock is taken)
    )
    lines: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    url = ""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline and not url:
        while seen < len(lines) and not url:
            try:
                event = json.loads(lines[seen])
            except ValueError:
                event = {}
            seen += 1
            if event.get("event") == "portqry-exporter started":
                url = event.get("scheme", "http") + "://" + event["listen_address"]
        if not url:
            if proc.poll() is not None and seen >= len(lines):
                break
            time.sleep(0.05)
    if not url:
        proc.kill()
        proc.wait(5)
        reader.join(5)
        stdout.close()
        raise AssertionError(f"daemon did not start: rc={proc.poll()} output={lines}")
    daemon = RunningDaemon(proc, url, config, lines)
    try:
        yield daemon
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        reader.join(5)
        stdout.close()

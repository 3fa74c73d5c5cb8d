"""Helpers for the end-to-end alerting test: a webhook receiver, a real Alertmanager and a real Prometheus.

Everything listens on 127.0.0.1 only:

- :class:`WebhookReceiver`: an ``http.server`` thread that records every JSON body POSTed to it (what
  Alertmanager's ``webhook_configs`` sends).
- :func:`run_alertmanager`: Debian's ``prometheus-alertmanager`` with clustering disabled
  (``--cluster.listen-address=`` empty: no gossip listener, no peers), routing everything to a webhook URL
  with one group per alert (``group_by: ['...']``) and short ``group_wait``/``group_interval``.
- :func:`prometheus_config`: the shipped ``deploy/prometheus/prometheus.yml`` with only its timings, its
  ``rule_files``, its Alertmanager and its scrape target rewritten (job name, metrics path and the rest kept).
- :func:`run_prometheus`: ``/usr/bin/prometheus`` with that config, a temporary TSDB and a short
  ``--rules.alert.resend-delay``.

Every process is terminated (then killed) when its context manager exits, also after a failure; its log is
kept in the work directory and its tail is available for diagnostics.

Check by hand while a test runs: ``curl -s 127.0.0.1:<port>/api/v1/alerts`` (Prometheus),
``curl -s 127.0.0.1:<port>/api/v2/alerts`` (Alertmanager).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.helpers import find_promtool, run_promtool

T = TypeVar("T")

PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"


# --------------------------------------------------------------------------------------------------
# small helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def http_get_json(url: str, timeout: float = 5.0) -> Any:
    """GET ``url`` and decode its JSON body (also for HTTP error statuses that carry JSON)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as err:
        body = err.read().decode()
        try:
            return json.loads(body)
        except ValueError:
            return {"status": "error", "error": f"HTTP {err.code}: {body[:500]}"}


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    diagnostics: Callable[[], str] | None = None,
    interval: float = 0.5,
) -> T:
    """Poll ``predicate()`` until it returns something truthy; return that.

    Raises:
        AssertionError: not within ``timeout`` seconds; the message has ``what`` and ``diagnostics()``.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            error = None
        except (OSError, ValueError, KeyError) as exc:  # a server not up yet, a half-written answer
            error = exc
            last = None
        if last:
            return last
        time.sleep(interval)
    extra = ""
    if diagnostics is not None:
        try:
            extra = diagnostics()
        except Exception as exc:  # noqa: BLE001 - diagnostics must never hide the real failure
            extra = f"(diagnostics failed: {exc!r})"
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last={last!r}, error={error!r})\n{extra}")


@dataclass
class Process:
    """A server subprocess with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of its log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL (bounded)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)


@contextlib.contextmanager
def run_process(name: str, argv: list[str], log: Path) -> Iterator[Process]:
    """Start ``argv`` with stdout and stderr to ``log``; stop it on exit (also on error)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    process = Process(name, proc, log)
    try:
        yield process
    finally:
        process.stop()


@contextlib.contextmanager
def run_server(
    name: str, argv: Callable[[int], list[str]], log: Path, timeout: float, attempts: int = 3
) -> Iterator[tuple[Process, str]]:
    """Start a server listening on ``127.0.0.1:<free port>`` (``argv(port)``) and wait for ``/-/ready``.

    The port is picked free just before the start; if another process takes it meanwhile (the server exits
    with "address already in use"), the start is retried on a new port, up to ``attempts`` times.

    Yields:
        The process and its base URL; the process is stopped on exit (also on error).
    """
    for attempt in range(attempts):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with run_process(name, argv(port), log) as process:

            def ready(process: Process = process, url: str = url) -> bool:
                if not process.alive():
                    raise ServerExited(f"{name} exited ({process.proc.returncode}):\n{process.tail()}")
                with urllib.request.urlopen(url + "/-/ready", timeout=2) as resp:
                    status: int = resp.status
                return status == 200

            try:
                wait_until(ready, timeout, f"{name} ready on {url}", process.tail, interval=0.2)
            except ServerExited as exc:
                if "address already in use" in str(exc) and attempt + 1 < attempts:
                    continue
                raise AssertionError(str(exc)) from None
            yield process, url
            return


class ServerExited(Exception):
    """A server process exited while the test waited for it to become ready."""


def require_binary(name: str) -> str:
    """Path of ``name``; raises AssertionError naming the Debian package when it is missing."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise AssertionError(f"{name} not installed (Debian packages `prometheus`, `prometheus-alertmanager`)")
    return path


# --------------------------------------------------------------------------------------------------
# webhook receiver


@dataclass
class WebhookReceiver:
    """Records every JSON body POSTed to ``url`` (Alertmanager webhook notifications)."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}/alertmanager"

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification received so far (a copy)."""
        with self.lock:
            return list(self.bodies)

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification, in arrival order (``status``, ``labels``, ``annotations``)."""
        return [alert for body in self.notifications() for alert in body.get("alerts", [])]

    def find(self, alertname: str, status: str, after: int = 0, **labels: str) -> list[dict[str, Any]]:
        """Alerts named ``alertname`` with ``status`` (``firing``/``resolved``) and these label values.

        Only the alerts received after the first ``after`` ones count (``after=len(receiver.alerts())`` taken
        before a change).
        """
        return [
            alert
            for alert in self.alerts()[after:]
            if alert.get("status") == status
            and alert.get("labels", {}).get("alertname") == alertname
            and all(alert.get("labels", {}).get(k) == v for k, v in labels.items())
        ]

    def summary(self, last: int = 20) -> str:
        """A short text of the last alerts received, for failure messages."""
        rows = [
            f"{a.get('status')} {a.get('labels', {}).get('alertname')} "
            f"{ {k: v for k, v in a.get('labels', {}).items() if k != 'alertname'} }"
            for a in self.alerts()[-last:]
        ]
        return f"webhook got {len(self.notifications())} notification(s); last alerts:\n  " + "\n  ".join(rows)


@contextlib.contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A :class:`WebhookReceiver` on 127.0.0.1 (ephemeral port), shut down on exit."""
    bodies: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw.decode())
            except ValueError:
                body = {"unparsable": raw.decode(errors="replace")}
            with lock:
                bodies.append(body)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # silence the per-request stderr line
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    receiver = WebhookReceiver(server, thread, bodies, lock)
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --------------------------------------------------------------------------------------------------
# Alertmanager


@dataclass
class Alertmanager:
    process: Process
    url: str

    def alerts(self) -> Any:
        return http_get_json(self.url + "/api/v2/alerts")


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """Route every alert, one group per alert, to ``webhook_url`` with resolved notifications."""
    return {
        "route": {
            "receiver": "webhook",
            "group_by": ["..."],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]},
        ],
    }


@contextlib.contextmanager
def run_alertmanager(work_dir: Path, webhook_url: str, timeout: float = 30.0) -> Iterator[Alertmanager]:
    """Start ``prometheus-alertmanager`` on 127.0.0.1 (clustering disabled) and wait until it is ready."""
    binary = require_binary(ALERTMANAGER_BIN)
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config(webhook_url), sort_keys=False))
    (work_dir / "data").mkdir(exist_ok=True)

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config}",
            f"--storage.path={work_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # empty: no cluster listener, no gossip
            "--log.level=debug",
        ]

    with run_server("alertmanager", argv, work_dir / "alertmanager.log", timeout) as (process, url):
        yield Alertmanager(process, url)


# --------------------------------------------------------------------------------------------------
# Prometheus


def prometheus_config(
    shipped: Path,
    *,
    rules: Path,
    scrape_target: str,
    alertmanager: str,
    interval: str = "1s",
    job_name: str = "portqry",
) -> dict[str, Any]:
    """The shipped scrape config, rewritten only where a test must differ.

    Kept: the job name, metrics path and every other key of the job. Rewritten: the global and per-job
    intervals (``interval``; ``scrape_timeout`` = ``interval``), ``rule_files`` (the copy with shortened
    ``for:``), the Alertmanager target and the job's ``static_configs`` target (the test's exporter).

    Raises:
        AssertionError: the shipped file does not have exactly one scrape job named ``job_name``, or no
            Alertmanager, so the rewrite would not test what ships.
    """
    config: dict[str, Any] = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    jobs = config.get("scrape_configs") or []
    assert [job.get("job_name") for job in jobs] == [job_name], f"{shipped}: expected one job {job_name!r}: {jobs}"
    assert config.get("alerting", {}).get("alertmanagers"), f"{shipped}: no alerting.alertmanagers"
    config.setdefault("global", {}).update(
        scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval
    )
    config["rule_files"] = [str(rules)]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    job = jobs[0]
    job.update(scrape_interval=interval, scrape_timeout=interval, static_configs=[{"targets": [scrape_target]}])
    return config


@dataclass
class Prometheus:
    process: Process
    url: str

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>?params``; returns the decoded JSON (``status``, ``data``/``error``)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return http_get_json(f"{self.url}/api/v1/{path}{query}", timeout=10)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (raises AssertionError on an API error)."""
        answer = self.api("query", query=expr)
        assert answer.get("status") == "success", f"query failed: {expr!r}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """``/api/v1/alerts``: every pending or firing alert."""
        answer = self.api("alerts")
        alerts: list[dict[str, Any]] = answer["data"]["alerts"]
        return alerts

    def firing(self, alertname: str, **labels: str) -> list[dict[str, Any]]:
        """Firing alerts named ``alertname`` with these label values."""
        return [
            a
            for a in self.alerts()
            if a["state"] == "firing"
            and a["labels"].get("alertname") == alertname
            and all(a["labels"].get(k) == v for k, v in labels.items())
        ]

    def targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.api("targets")["data"]["activeTargets"]
        return targets

    def alerts_text(self) -> str:
        """Pending and firing alerts, one line each, for failure messages."""
        try:
            rows = [f"{a['state']} {a['labels'].get('alertname')} {a['labels']}" for a in self.alerts()]
        except (OSError, ValueError, KeyError) as exc:
            return f"(prometheus /api/v1/alerts failed: {exc!r})"
        return "prometheus alerts:\n  " + ("\n  ".join(rows) or "(none)")


@contextlib.contextmanager
def run_prometheus(work_dir: Path, config: dict[str, Any], timeout: float = 60.0) -> Iterator[Prometheus]:
    """Start ``prometheus`` on 127.0.0.1 with ``config`` and a temporary TSDB; wait until it is ready.

    ``promtool check config`` validates the written config first when promtool is installed.
    """
    binary = require_binary(PROMETHEUS_BIN)
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    if find_promtool() is not None:
        run_promtool("check", "config", str(config_path), timeout=60)

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={work_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
            "--log.level=info",
        ]

    with run_server("prometheus", argv, work_dir / "prometheus.log", timeout) as (process, url):
        yield Prometheus(process, url)

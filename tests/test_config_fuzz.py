"""Config fuzz (issue 13): random TOML documents, mutated configs and random bytes through ``--config.check``
(in process, and a few through the real subprocess) and through the daemon's reload.

Every outcome is a success, or exit status 1 with one line per error, each ``portqry-exporter: config error:
FILE: ...``: never a traceback, never a line that spills over.  The reload keeps the daemon and sets the reload
gauge.  The daemon under reload sends nothing off loopback: its resolver is pinned to a closed loopback port by
``PORTQRY_`` variables, which win over the file, and a document naming a non-loopback address is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import json
import os
import random
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from exporter import daemon as daemon_module
from exporter.resolve import literal
from tests.helpers import config_check
from tests.peers import closed_port

PREFIX = "portqry-exporter: config error: "
VALID = (
    "[exporter]\nudp_pacing_seconds = 0.0\n[defaults]\ninterval_seconds = 60\ntimeout_seconds = 0.3\n"
    '[[targets]]\nname = "a"\nhost = "127.0.0.1"\nports = ["tcp/9", "udp/9"]\n'
)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SECTION_KEYS = {
    "exporter": ["listen_address", "concurrency", "udp_pacing_seconds", "histograms", "histogram_buckets",
                 "status_history", "log_level", "shard", "max_ports", "allow_empty"],
    "resolver": ["nameservers", "port", "timeout_seconds", "prefer"],
    "defaults": ["interval_seconds", "timeout_seconds", "tcp_tries", "udp_tries", "jitter_ratio",
                 "protocol_probes", "snmp_community", "addresses"],
    "probe": ["allow", "max_concurrent_per_client", "max_ports", "timeout_seconds"],
}  # fmt: skip
ENTRY_KEYS = ["name", "host", "ports", "services", "profiles", "interval_seconds", "tcp_tries", "protocols",
              "domain", "sites", "dns_query_type", "addresses", "snmp_version"]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# documents


def toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    for section, body in doc.items():
        if isinstance(body, list):
            for entry in body:
                lines.append(f"[[{toml_key(section)}]]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in entry.items()]
        else:
            lines.append(f"[{toml_key(section)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


port_texts = st.one_of(
    st.sampled_from(["tcp/9", "udp/9", "both/135", "tcp/1-3", "tcp/0", "tcp/70000", "tcp/1_3", "tcp/\uff19", "x"]),
    st.builds(lambda p, a, b: f"{p}/{a}-{b}", st.sampled_from(["tcp", "udp", "both"]), st.integers(-2, 70000),
              st.integers(-2, 70000)),
    st.text(max_size=12),
)  # fmt: skip
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    port_texts,
    st.sampled_from(["127.0.0.1", "localhost", "5", "true", "ldap", "domain-controller", "corp.example", "1/3"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
entries = st.dictionaries(st.one_of(st.sampled_from(ENTRY_KEYS), st.text(max_size=8)), values, max_size=6)
sections = st.dictionaries(
    st.one_of(st.sampled_from(sorted({k for keys in SECTION_KEYS.values() for k in keys})), st.text(max_size=8)),
    values,
    max_size=5,
)
documents = st.dictionaries(
    st.one_of(st.sampled_from([*SECTION_KEYS, "targets", "domains", "modules"]), st.text(min_size=1, max_size=8)),
    st.one_of(sections, st.lists(entries, min_size=1, max_size=3)),
    max_size=5,
).map(toml_document)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """The valid config with a few random insertions (ASCII, TOML punctuation and other scripts' digits)."""
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        piece = draw(st.one_of(st.text(max_size=6), st.sampled_from(['"', "[", "]", "=", "\n", "_", "\uff11", "#"])))
        text = text[:at] + piece + text[at:]
    return text


contents = st.one_of(documents, mutated(), st.binary(max_size=200).map(lambda b: b.decode("latin-1")))


# ---------------------------------------------------------------------------------------------------------------
# --config.check


def assert_outcome(code: int, out: str, err: str, path: Path) -> None:
    assert "Traceback" not in out + err
    if code == 0:
        assert out.startswith(f"{path}: OK (") and err == "", (out, err)
        return
    assert code == 1, (code, out, err)
    lines = err.splitlines()
    assert lines and out == "", (out, err)
    for line in lines:
        assert line.startswith(f"{PREFIX}{path}: ") or line.startswith(PREFIX + "PORTQRY_"), repr(line[:300])
        assert len(line) < 1000, line[:300]


def check_in_process(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = daemon_module.main(["--config", str(path), "--config.check"])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def no_portqry_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("PORTQRY_"):
            monkeypatch.delenv(key)


@FUZZ
@given(text=contents)
def test_config_check_is_ok_or_one_line_per_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        code, out, err = check_in_process(path)
        event(f"exit {code}")
        assert_outcome(code, out, err, path)


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_are_ok_or_one_line_per_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_bytes(data)
        assert_outcome(*check_in_process(path), path)


def test_a_few_through_the_real_subprocess(tmp_path: Path) -> None:
    rng = random.Random(13)
    samples = [
        bytes(rng.randrange(256) for _ in range(300)),
        b"\xef\xbb\xbf" + VALID.encode(),
        VALID.replace("tcp/9", "tcp/\u0669").encode(),
        VALID.replace("60", '"60"').encode(),
        b"a = " + b"{ b = " * 3000 + b"1" + b" }" * 3000,
        b"[[targets]]\n" * 5000,
        b"\x00" * 100,
    ]
    for data in samples:
        path = tmp_path / "c.toml"
        path.write_bytes(data)
        result = config_check("--config", path)
        assert_outcome(result.returncode, result.stdout, result.stderr, path)
        assert result.returncode == 1 and len(result.stderr.splitlines()) <= 21, result.stderr[-1000:]


# ---------------------------------------------------------------------------------------------------------------
# the daemon's reload


class LoopThread:
    """An event loop in a thread, with a :class:`~exporter.daemon.Daemon` on it (hypothesis tests are sync)."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.daemon: daemon_module.Daemon = self.run(self._start(path))

    async def _start(self, path: Path) -> daemon_module.Daemon:
        from exporter.config import load_config

        settings = load_config(path)
        d = daemon_module.Daemon(str(path), settings)
        d.apply(settings)
        return d

    def run(self, coro: Any, timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.daemon.scheduler.stop(timeout=3.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def reloading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopThread]:
    for key in list(os.environ):
        if key.startswith("PORTQRY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PORTQRY_RESOLVER__NAMESERVERS", '["127.0.0.1"]')
    monkeypatch.setenv("PORTQRY_RESOLVER__PORT", str(closed_port()))
    monkeypatch.setenv("PORTQRY_RESOLVER__TIMEOUT_SECONDS", "0.2")
    monkeypatch.setenv("PORTQRY_EXPORTER__MAX_PORTS", "64")
    path = tmp_path / "c.toml"
    path.write_text(VALID, encoding="utf-8")
    running = LoopThread(path)
    try:
        yield running
    finally:
        running.close()


def loopback_only(text: str) -> bool:
    """No address literal off loopback in the document's targets (names go to the pinned loopback resolver)."""
    try:
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return True
    targets = doc.get("targets")
    for entry in targets if isinstance(targets, list) else []:
        host = entry.get("host") if isinstance(entry, dict) else None
        found = literal(host) if isinstance(host, str) else None
        if found is not None and not ipaddress.ip_address(found.address.split("%")[0]).is_loopback:
            return False
    return True


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(text=contents)
def test_reload_is_ok_or_one_line_per_error(reloading: LoopThread, text: str) -> None:
    assume(loopback_only(text))
    path = Path(reloading.daemon.config_path)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    ok, message = reloading.run(reloading.daemon.reload_async())
    assert reloading.daemon.status.reload_successful is ok
    event("reloaded" if ok else "refused")
    if ok:
        assert message == "config reloaded"
    else:
        lines = message.splitlines()
        assert lines and all(line.startswith((f"{path}: ", "PORTQRY_")) for line in lines), message[:2000]
        assert all(len(line) < 1000 for line in lines)
    path.write_text(VALID, encoding="utf-8")
    assert reloading.run(reloading.daemon.reload_async()) == (True, "config reloaded")

"""The README's two commands are true: CI runs the test command; the run command serves real states."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README must open with a sh code block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_two_commands_and_ci_runs_the_test_one() -> None:
    run, test = readme_commands()
    assert "portqry-exporter" in run and "config.example.toml" in run
    assert "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in [line.strip() for line in ci]


def test_readme_run_command_serves_real_states() -> None:
    run, _ = readme_commands()
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 9727)) == 0:
            raise AssertionError("127.0.0.1:9727 is already in use; the README's run command needs it")
    proc = subprocess.Popen(
        ["bash", "-c", run],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        states: dict[tuple[str, str], str] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"run command exited with {proc.returncode}"
            try:
                with urllib.request.urlopen("http://127.0.0.1:9727/metrics", timeout=2) as resp:
                    text = resp.read().decode()
            except OSError:
                time.sleep(0.5)
                continue
            for family in text_string_to_metric_families(text):
                if family.name == "portqry_port_state":
                    for s in family.samples:
                        if s.value == 1 and s.labels["address"] == "127.0.0.1":
                            states[(s.labels["protocol"], s.labels["port"])] = s.labels["portqry_port_state"]
            if "listening" in states.values() and "not_listening" in states.values():
                break
            time.sleep(0.5)
        assert states.get(("tcp", "9727")) == "listening", states  # the exporter's own port
        assert "not_listening" in states.values(), states
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)

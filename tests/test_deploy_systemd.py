"""deploy/systemd: the shipped unit passes ``systemd-analyze verify`` and keeps its hardening.

``systemd-analyze verify`` checks that ExecStart's binary exists and is executable. The unit runs
``/usr/local/bin/portqry-exporter``, where pip as root puts the console script on Debian 12 (the container
image, tests/test_deploy_container.py, shows it), and a test machine may have it elsewhere (pyenv here). So
the shipped file, unchanged, is verified in a private mount namespace (``unshare --mount``) where a temporary
directory holding a link to this machine's ``portqry-exporter`` is bind-mounted over /usr/local/bin: nothing is
written outside the test's temporary directory. verify exits 0 even for unknown keys or unparsable values, so
any warning it prints about the unit fails the test too.

``systemd-analyze security --offline=yes`` rates the shipped unit: 1.3 (1.5 before PrivateMounts=yes).
``ProcSubset=pid`` is left out on purpose, and a test shows why: under a /proc mounted with ``subset=pid`` the
daemon still probes (it reads no /proc/net), but prometheus_client's process collector finds no /proc/stat and
every ``process_*`` metric goes.

systemd-analyze comes from Debian's ``systemd`` package, unshare and mount from ``util-linux``, and the
namespace tests need root: without them these tests skip, except under ``CI=true``, where they fail. The unit
is never started here (no systemd as PID 1 in CI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import REPO, config_check, require_tool
from tests.testbed.preflight import is_ci

SYSTEMD_DIR = REPO / "deploy" / "systemd"
UNIT = SYSTEMD_DIR / "portqry-exporter.service"
DEFAULTS = SYSTEMD_DIR / "portqry-exporter.default"
EXEC_PATH = "/usr/local/bin/portqry-exporter"
EXEC_START = f"{EXEC_PATH} --config /etc/portqry-exporter/config.toml"
EXPOSURE_BEFORE, EXPOSURE_AFTER = 1.5, 1.3
"""``systemd-analyze security --offline=yes`` before and after PrivateMounts=yes (issue 12), as in the README."""


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values in order]}}``; comments and blank lines dropped, repeated keys kept."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def systemd_analyze() -> str:
    """Path of systemd-analyze; skips the test when it is missing outside CI, fails in CI."""
    return require_tool("systemd-analyze", "systemd")


def _missing(message: str) -> None:
    if is_ci():
        pytest.fail(message)
    pytest.skip(message)


def _unshare() -> str:
    """Path of unshare, when this process may make mount namespaces (root); skips or fails otherwise."""
    path = require_tool("unshare", "util-linux")
    if os.geteuid() != 0:
        _missing("a private mount namespace needs root")
    probe = subprocess.run([path, "--mount", "true"], capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        _missing(f"unshare --mount is not possible here: {probe.stderr.strip()}")
    return path


def with_exec_path(tmp_path: Path, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``command`` where ``/usr/local/bin/portqry-exporter`` is this machine's console script.

    A private mount namespace bind-mounts a temporary directory holding only that link over /usr/local/bin;
    the host's /usr/local/bin is untouched.
    """
    script = shutil.which("portqry-exporter")
    if script is None:
        _missing("the portqry-exporter console script is not installed (pip install -e .)")
    assert script is not None
    bindir = tmp_path / "usr-local-bin"
    bindir.mkdir()
    (bindir / "portqry-exporter").symlink_to(script)
    return subprocess.run(
        [
            _unshare(),
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount --bind "$0" /usr/local/bin && exec "$@"',
            str(bindir),
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """The shipped file, unchanged, with its ExecStart binary present at /usr/local/bin."""
    result = with_exec_path(tmp_path, systemd_analyze(), "verify", str(UNIT))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # warnings about our unit (unknown key, bad value) do not change the exit code; other units' noise is
    # ignored
    ours = [line for line in output.splitlines() if UNIT.name in line]
    assert not ours, "\n".join(ours)


def test_verify_needs_the_binary_at_usr_local_bin(tmp_path: Path) -> None:
    """Without /usr/local/bin/portqry-exporter verify fails: the namespace above is what makes it pass."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(
        [
            _unshare(),
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount --bind "$0" /usr/local/bin && exec "$@"',
            str(empty),
            systemd_analyze(),
            "verify",
            str(UNIT),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert f"Command {EXEC_PATH} is not executable" in result.stdout + result.stderr


def test_verify_catches_a_bad_key(tmp_path: Path) -> None:
    """The warning filter above is not vacuous."""
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text(encoding="utf-8").replace("[Service]\n", "[Service]\nProtectSistem=strict\n"))
    result = with_exec_path(tmp_path, systemd_analyze(), "verify", str(copy))
    assert "ProtectSistem" in result.stdout + result.stderr


def exposure(unit_file: Path) -> float:
    """``systemd-analyze security --offline=yes`` (systemd >= 250): 0 is best, 10 worst."""
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", str(unit_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    if match is None:
        pytest.skip(f"this systemd-analyze has no --offline security: {result.stderr.strip()[:200]}")
    return float(match.group(1))


def test_offline_security_exposure(tmp_path: Path) -> None:
    """The shipped unit scores what the README says; without PrivateMounts=yes it scored the old value."""
    assert exposure(UNIT) <= EXPOSURE_AFTER
    before = tmp_path / UNIT.name
    before.write_text(UNIT.read_text(encoding="utf-8").replace("PrivateMounts=yes\n", ""), encoding="utf-8")
    assert exposure(before) == EXPOSURE_BEFORE


def test_readme_states_the_scores() -> None:
    """The README's Deploy block (the lead's file) quotes both scores, when it has them."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    if "systemd-analyze security" not in readme or "exposure" not in readme:
        pytest.skip("README has no exposure score yet")
    assert f"{EXPOSURE_BEFORE}" in readme and f"{EXPOSURE_AFTER}" in readme


def test_exec_start_reload_restart(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    (exec_start,) = service["ExecStart"]
    assert exec_start.startswith(EXEC_START)
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["Restart"] == ["on-failure"]
    assert service["EnvironmentFile"] == ["-/etc/default/portqry-exporter"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_exec_start_command_line_is_accepted(tmp_path: Path, unit: dict[str, dict[str, list[str]]]) -> None:
    """The daemon accepts ExecStart's arguments: the same command line with ``--config.check`` exits 0.

    The config path is swapped for a copy of the shipped config.example.toml, and $PORTQRY_EXPORTER_ARGS
    expands to nothing, as with the shipped portqry-exporter.default.
    """
    (exec_start,) = unit["Service"]["ExecStart"]
    args = exec_start.split()[1:]
    assert args[-1] == "$PORTQRY_EXPORTER_ARGS"
    config = tmp_path / "config.toml"
    shutil.copy(REPO / "config.example.toml", config)
    args = [str(config) if arg == "/etc/portqry-exporter/config.toml" else arg for arg in args[:-1]]
    result = config_check(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_console_script_is_declared() -> None:
    """ExecStart runs the `portqry-exporter` console script that pyproject.toml installs."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "portqry-exporter" in pyproject["project"]["scripts"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX AF_NETLINK"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallArchitectures", "native"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("PrivateMounts", "yes"),
        ("ProtectProc", "invisible"),
    ],
)
def test_hardening(unit: dict[str, dict[str, list[str]]], key: str, value: str) -> None:
    assert value in unit["Service"].get(key, []), f"{key}={value} missing"


def test_no_capability_and_no_raw_socket(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    assert service["CapabilityBoundingSet"] == [""]
    assert "AF_PACKET" not in " ".join(service["RestrictAddressFamilies"])
    # how to grant CAP_NET_BIND_SERVICE for a source port below 1024 is documented in the file
    text = UNIT.read_text(encoding="utf-8")
    assert "#   CapabilityBoundingSet=CAP_NET_BIND_SERVICE" in text
    assert "#   AmbientCapabilities=CAP_NET_BIND_SERVICE" in text
    assert "PrivateUsers" not in service


def test_proc_subset_is_left_out_and_says_why(unit: dict[str, dict[str, list[str]]]) -> None:
    assert "ProcSubset" not in unit["Service"]
    assert "# ProcSubset=pid is left out on purpose: it hides /proc/stat" in UNIT.read_text(encoding="utf-8")


@contextmanager
def daemon_under_proc(tmp_path: Path, proc_options: str) -> Iterator[str]:
    """The daemon in new mount and PID namespaces whose /proc is mounted with ``proc_options``; yields its URL.

    It listens on 127.0.0.1 (the host's network namespace) and probes 127.0.0.1:9 only.
    """
    config = tmp_path / "config.toml"
    config.write_text(
        '[defaults]\ninterval_seconds = 1\n\n[[targets]]\nname = "lo"\nhost = "127.0.0.1"\nports = ["tcp/9"]\n',
        encoding="utf-8",
    )
    script = shutil.which("portqry-exporter")
    if script is None:
        _missing("the portqry-exporter console script is not installed (pip install -e .)")
    assert script is not None
    env = {key: value for key, value in os.environ.items() if not key.startswith("PORTQRY_")}
    proc = subprocess.Popen(
        [
            _unshare(),
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount -t proc -o "$0" proc /proc && exec "$@"',
            proc_options,
            script,
            "--config",
            str(config),
            "--web.listen-address",
            "127.0.0.1:0",
            "--log.format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    try:
        url = ""
        lines = []
        for line in proc.stdout:
            lines.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "portqry-exporter started":
                url = f"http://{event['listen_address']}"
                break
        assert url, f"daemon did not start: {''.join(lines)}"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()


def _scrape_when_probed(url: str) -> str:
    """/metrics once the loopback port has a state (the first round has run)."""
    import time

    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            text = response.read().decode()
        if re.search(r'^portqry_port_state\{[^}]*port="9"[^}]*\} 1\.0$', text, re.M):
            return text
        time.sleep(0.2)
    raise AssertionError(f"no port state in 30 s:\n{text[-2000:]}")


@pytest.mark.parametrize(
    ("proc_options", "process_metrics"),
    [("hidepid=invisible", True), ("hidepid=invisible,subset=pid", False)],
    ids=["ProtectProc=invisible", "ProtectProc=invisible+ProcSubset=pid"],
)
def test_proc_subset_pid_costs_the_process_metrics(tmp_path: Path, proc_options: str, process_metrics: bool) -> None:
    """The /proc systemd mounts for ProtectProc=invisible (what the unit sets), and with ProcSubset=pid besides
    (what it leaves out): the daemon probes and serves under both, but subset=pid hides /proc/stat, so
    prometheus_client's process collector has no boot time and exports no process_* metric at all."""
    with daemon_under_proc(tmp_path, proc_options) as url:
        text = _scrape_when_probed(url)
    # _scrape_when_probed saw the probe's state: the daemon needs no /proc/net or other non-process file
    assert ("process_cpu_seconds_total " in text) is process_metrics, text[-2000:]
    assert ("process_resident_memory_bytes " in text) is process_metrics


def test_defaults_file_is_shell_assignments() -> None:
    """EnvironmentFile syntax: comments and KEY=value lines; the variable ExecStart expands is defined."""
    names = []
    for line in DEFAULTS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r'([A-Z_][A-Z0-9_]*)=("[^"]*"|\S*)', line)
        assert match, f"not KEY=value: {line!r}"
        names.append(match.group(1))
    assert "PORTQRY_EXPORTER_ARGS" in names

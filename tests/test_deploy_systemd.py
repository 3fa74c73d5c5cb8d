"""deploy/systemd: the unit passes ``systemd-analyze verify`` and keeps its hardening.

``systemd-analyze verify`` checks that ExecStart's binary exists and is executable, and the exporter is not
installed at /usr/bin on a test machine. The test verifies a temporary copy whose ExecStart points at the
installed ``portqry-exporter`` console script when there is one (else /bin/true); every other line is the
shipped file. verify exits 0 even for unknown keys or unparsable values, so any warning it prints about the
unit fails the test too.

systemd-analyze comes from Debian's ``systemd`` package: without it these tests skip, except under
``CI=true``, where they fail. The unit is never started here (no systemd as PID 1 in CI).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.helpers import REPO, config_check, require_tool

SYSTEMD_DIR = REPO / "deploy" / "systemd"
UNIT = SYSTEMD_DIR / "portqry-exporter.service"
DEFAULTS = SYSTEMD_DIR / "portqry-exporter.default"
EXEC_START = "/usr/bin/portqry-exporter --config /etc/portqry-exporter/config.toml"


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


def verifiable_copy(directory: Path) -> Path:
    """The unit with ExecStart's binary replaced by one that exists on this machine."""
    binary = shutil.which("portqry-exporter") or "/bin/true"
    text = UNIT.read_text(encoding="utf-8")
    assert text.count("ExecStart=/usr/bin/portqry-exporter ") == 1
    copy = directory / UNIT.name
    copy.write_text(text.replace("ExecStart=/usr/bin/portqry-exporter ", f"ExecStart={binary} "), encoding="utf-8")
    return copy


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    copy = verifiable_copy(tmp_path)
    result = subprocess.run(
        [systemd_analyze(), "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # warnings about our unit (unknown key, bad value) do not change the exit code; other units' noise is
    # ignored
    ours = [line for line in output.splitlines() if UNIT.name in line or str(copy) in line]
    assert not ours, "\n".join(ours)


def test_verify_catches_a_bad_key(tmp_path: Path) -> None:
    """The warning filter above is not vacuous."""
    copy = verifiable_copy(tmp_path)
    copy.write_text(copy.read_text(encoding="utf-8").replace("[Service]\n", "[Service]\nProtectSistem=strict\n"))
    result = subprocess.run(
        [systemd_analyze(), "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "ProtectSistem" in result.stdout + result.stderr


def test_offline_security_exposure_is_low(tmp_path: Path) -> None:
    """``systemd-analyze security --offline`` (systemd >= 250) rates the unit; 0 is best, 10 worst."""
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", str(verifiable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    if match is None:
        pytest.skip(f"this systemd-analyze has no --offline security: {result.stderr.strip()[:200]}")
    assert float(match.group(1)) <= 2.0, result.stdout


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

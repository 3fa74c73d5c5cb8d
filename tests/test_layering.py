"""The layering written down in pyproject.toml ([tool.importlinter]) holds, and its contracts can fail.

Check by hand: ``lint-imports`` in the repository root.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports is not installed (pip install -e '.[test]')")
    return subprocess.run([exe, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_contracts_are_kept() -> None:
    proc = _lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout
    assert proc.stdout.count(" KEPT") >= 5


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # the release-1 cycle: a probe reaching up into the engine for its context
        ("exporter/probes/dns.py", "import exporter.engine", "exporter.probes is not allowed to import exporter.eng"),
        ("exporter/wire/nbstat.py", "import socket", "exporter.wire is not allowed to import socket"),
        ("exporter/detail_metrics.py", "import exporter.probes", "exporter.detail_metrics is not allowed"),
        ("exporter/catalog/__init__.py", "import exporter.engine", "exporter.catalog is not allowed"),
    ],
)
def test_a_contract_fails_on_an_upward_import(tmp_path: Path, module: str, line: str, broken: str) -> None:
    shutil.copytree(REPO / "exporter", tmp_path / "exporter", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    if not target.exists():  # a module that is a file in one layout and a package in another
        target = target.parent.with_suffix(".py")
    target.write_text(target.read_text() + f"\n{line}  # injected by the test\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    assert broken in proc.stdout, proc.stdout

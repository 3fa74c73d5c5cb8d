"""Headless Chromium (Debian package ``chromium``) for the status page tests: the rendered DOM and a screenshot.

Loopback only: every run passes a dead proxy (``--proxy-server=127.0.0.1:9``) and bypasses it for
127.0.0.1, localhost and ::1 alone, so a page can load what the exporter serves on loopback and nothing else
(any other address fails with ``ERR_PROXY_CONNECTION_FAILED``, and Chromium resolves no name itself).
Background networking (updates, sync, translate, metrics) is off, and each run gets a fresh profile.
JavaScript stays on: ``--dump-dom`` needs it to serialise the page (with ``--blink-settings=scriptEnabled=false``
it prints nothing, and ``--disable-javascript`` changes nothing).  The status pages prove they need none
otherwise: they contain no script and their ``Content-Security-Policy`` would block one.

Check by hand: ``python -c 'from tests.chromium import dump_dom; print(dump_dom("http://127.0.0.1:9727/"))'``.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
from pathlib import Path

from tests.helpers import require_tool

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
"""Where screenshots go (ignored by git; ``.ci/run`` leaves them there)."""

FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--metrics-recording-only",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1;localhost;[::1]",
    "--hide-scrollbars",
)


def chromium() -> str:
    """The Chromium executable; skips without it, fails under ``CI=true``."""
    return require_tool("chromium", "chromium")


def _run(args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="pq-chromium-") as profile:
        argv = [chromium(), *FLAGS, f"--user-data-dir={profile}"]
        proc = subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    if proc.returncode != 0:
        raise AssertionError(f"chromium {args} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def dump_dom(url: str, *, timeout: float = 60.0) -> str:
    """The DOM after load, serialised (``--dump-dom``)."""
    assert url.startswith(("http://127.", "http://localhost", "http://[::1]")), url
    out = _run(["--dump-dom", url], timeout=timeout).stdout
    assert out.strip(), f"chromium --dump-dom {url} printed nothing"
    return out


def screenshot(url: str, path: Path, *, width: int = 1280, height: int = 1600, timeout: float = 60.0) -> Path:
    """A PNG of ``url`` at ``width`` x ``height`` written to ``path``."""
    assert url.startswith(("http://127.", "http://localhost", "http://[::1]")), url
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    _run([f"--screenshot={path}", f"--window-size={width},{height}", url], timeout=timeout)
    return path


def png_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from a PNG's IHDR; raises AssertionError when it is not a PNG."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height

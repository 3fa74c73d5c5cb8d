"""Commands in the root namespace and small process helpers shared by every peer module.

Everything here runs in the root namespace (``run``) or looks at processes by pid; nothing opens a
socket except :func:`wait_tcp`, which connects only to the address it is given (one of our
namespaces, 198.18.N.2).

Check by hand: ``ip netns pids pq-<pid>-<n>-<tag>`` lists what :func:`kill_ns_processes` would stop;
``ls -d $TMPDIR/pq-<pid>-*`` the directories :func:`make_tempdir` created.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Final

PREFIX: Final = "pq-"
"""Prefix of every namespace and temporary directory the test bed creates."""

CMD_TIMEOUT: Final = 30.0
"""Seconds a test-bed command may take before it is killed."""


class TestbedError(RuntimeError):
    """A test-bed step failed (a command, a timeout, a peer that did not come up)."""


def run(
    cmd: Sequence[str],
    *,
    timeout: float = CMD_TIMEOUT,
    check: bool = True,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command in the root namespace, capturing text output.

    Args:
        cmd: argv.
        timeout: seconds before the command is killed.
        check: raise :class:`TestbedError` on a non-zero exit status.
        input_text: text fed to stdin.
        env: full environment (default: inherited).

    Returns:
        The completed process (``stdout``/``stderr`` as text).

    Raises:
        TestbedError: non-zero exit with ``check``, or the timeout expired.
    """
    try:
        proc = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise TestbedError(
            f"exit {proc.returncode}: {' '.join(cmd)}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
        )
    return proc


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ns_pids(name: str) -> list[int]:
    """Pids of every process inside namespace ``name`` (``ip netns pids``); empty when it is gone."""
    proc = run(["ip", "netns", "pids", name], check=False, timeout=10)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def kill_ns_processes(name: str, timeout: float = 10.0) -> None:
    """TERM every process in namespace ``name``, wait up to ``timeout`` seconds, then KILL."""
    pids = ns_pids(name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = ns_pids(name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = ns_pids(name)


def wait_tcp(address: str, port: int, timeout: float, *, alive: Sequence[int] = ()) -> float:
    """Wait until a TCP connect to ``address:port`` succeeds.

    Args:
        address: IPv4 literal (one of our namespaces).
        port: TCP port.
        timeout: seconds to wait in total.
        alive: pids that must stay alive while waiting (fail fast when the daemon died).

    Returns:
        Seconds waited.

    Raises:
        TestbedError: not accepting within ``timeout`` seconds, or a watched pid exited.
    """
    start = time.monotonic()
    deadline = start + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return time.monotonic() - start
        except OSError as exc:
            last = exc
        for pid in alive:
            if not pid_alive(pid):
                raise TestbedError(f"pid {pid} exited while waiting for {address}:{port}")
        time.sleep(0.05)
    raise TestbedError(f"{address}:{port}/tcp not accepting after {timeout:.0f} s ({last})")


def read_line(stream: IO[str], deadline: float) -> str:
    """Read one line from a pipe, giving up at ``deadline`` (a ``time.monotonic()`` value)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return ""
    ready, _, _ = select.select([stream], [], [], remaining)
    if not ready:
        return ""
    return stream.readline()


def make_tempdir(tag: str) -> Path:
    """Create ``$TMPDIR/pq-<pid>-<tag>-XXXX`` (removed by ``cleanup_leftovers`` if we crash)."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{tag}-"))


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing (for error messages)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])

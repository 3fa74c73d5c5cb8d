"""PortQry's watch modes: ``-wport PORT`` and ``-wpid PID`` report each change of a local port or process.

Source: PortQry 2.0's help and KB 832919.  The watch prints the table of the watched port or process at start
and, at each change (polled every ``-wt`` seconds, default 60), a dated "============" section listing what
appeared, disappeared or changed state; ``--json`` prints one object per change instead.  Esc or ``q`` (on a
terminal), Ctrl+C, ``--duration`` or the watched process exiting stops it.

Check by hand: ``portqry -wport 8080 -wt 1`` while starting and stopping ``python3 -m http.server 8080``.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import psutil

from exporter.cli.local import (
    LocalModeError,
    LocalSocket,
    port_table,
    process_details,
    process_name,
    snapshot,
    statistics,
)
from exporter.cli.text import system_date

#: Longest watch when no ``--duration`` is given, seconds (a bound on the loop; stop earlier with Esc
#: or Ctrl+C).
MAX_WATCH_SECONDS = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two polls: ``kind`` is ``new``, ``closed`` or ``changed``."""

    kind: str
    socket: LocalSocket
    before: str = ""

    def line(self) -> str:
        """``new: TCP 8080 127.0.0.1 LISTENING 0.0.0.0:0 (PID 12:python3)``."""
        port, local, state, remote = self.socket.row()
        if self.kind == "changed":
            state = f"{self.before or '-'} -> {state or '-'}"
        text = " ".join(p for p in (port, local, state, remote) if p)
        return f"{self.kind}: {text} (PID {self.socket.owner()})"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (``--json`` watch events)."""
        out = {"event": self.kind, **self.socket.to_json()}
        if self.kind == "changed":
            out["previous_state"] = self.before
        return out


def diff(before: Iterable[LocalSocket], after: Iterable[LocalSocket]) -> list[Change]:
    """What appeared, disappeared or changed state between two snapshots, in port order."""
    old = {s.key: s for s in before}
    new = {s.key: s for s in after}
    changes = [Change("closed", s) for k, s in old.items() if k not in new]
    changes += [Change("new", s) for k, s in new.items() if k not in old]
    changes += [Change("changed", s, old[k].state) for k, s in new.items() if k in old and old[k].state != s.state]
    changes.sort(key=lambda c: (c.socket.local_port, c.socket.protocol, c.socket.key, c.kind))
    return changes


def pid_exists(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie counts as exited)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, OSError):
        return False


@contextlib.contextmanager
def _esc_watcher(stream: TextIO) -> Iterator[Callable[[float], bool]]:
    """A ``wait(seconds) -> stop?`` function: sleeps, returning True early if Esc (or q) was pressed.

    On a terminal, stdin goes to cbreak mode for the duration so one key press is seen; elsewhere
    (pipes, tests) it only sleeps.
    """
    fd: int | None = None
    saved: Any = None
    with contextlib.suppress(AttributeError, OSError, ValueError):
        if stream.isatty():
            fd = stream.fileno()
            saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
    stop = threading.Event()

    def wait(seconds: float) -> bool:
        if fd is None:
            return stop.wait(seconds)
        ready, _, _ = select.select([fd], [], [], max(0.0, seconds))
        if ready:
            key = os.read(fd, 32)
            return b"\x1b" in key or b"q" in key.lower()
        return False

    try:
        yield wait
    finally:
        if fd is not None and saved is not None:
            with contextlib.suppress(OSError):
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def watch(
    *,
    emit: Callable[[list[str]], None],
    emit_json: Callable[[dict[str, Any]], None] | None,
    port: int | None = None,
    pid: int | None = None,
    interval: float = 60.0,
    duration: float | None = None,
    verbose: bool = False,
    stdin: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Watch a local port (``-wport``) or process (``-wpid``) and report every change.

    Polls psutil every ``interval`` seconds until ``duration`` seconds have passed, Esc (or ``q``) is
    pressed on a terminal, Ctrl+C, or the watched process exits.

    Args:
        emit: receives text lines to print (and log).
        emit_json: with ``--json``, receives one dict per change instead of text sections.
        port: the local port to watch (TCP and UDP), or ``None``.
        pid: the process to watch, or ``None``.
        interval: seconds between polls (PortQry ``-wt``, 1-1200).
        duration: stop after this many seconds (``None``: until stopped, at most a week).
        verbose: add the per-process details (``-v``).
        stdin: where Esc is read from (default ``sys.stdin``).
        clock: monotonic clock, seconds.

    Returns:
        Why the watch stopped (``"duration reached"``, ``"escape key pressed"``, ``"interrupted"``,
        ``"process exited"``).

    Raises:
        LocalModeError: the PID does not exist at start, or sockets cannot be listed.
    """
    what = f"port {port}" if port is not None else f"PID {pid}"
    if pid is not None and not pid_exists(pid):
        raise LocalModeError(f"Process ID {pid} not found")

    def select_sockets() -> list[LocalSocket]:
        return [
            s for s in snapshot() if (port is not None and s.local_port == port) or (pid is not None and s.pid == pid)
        ]

    def section(sockets: list[LocalSocket], changes: list[Change] | None) -> list[str]:
        lines = ["============", f"System Date: {system_date()}", ""]
        if changes:
            lines += [f"Changes on {what}:", *(f" {c.line()}" for c in changes), ""]
        if sockets:
            lines += port_table(sockets, with_owner=True)
            lines += ["", *statistics(sockets)]
        else:
            lines += [f"No active ports on {what}", ""]
        if verbose:
            for owner in sorted({s.pid for s in sockets if s.pid is not None}):
                lines += [f"Process ID: {owner} ({process_name(owner) or '?'})", "", *process_details(owner)]
        return lines

    head = [f"Watching {'port' if port is not None else 'PID'}: {port if port is not None else pid}", ""]
    head += [f"Checking for changes every {interval:g} seconds", ""]
    if verbose:
        head += ["verbose output requested", ""]
    limit = MAX_WATCH_SECONDS if duration is None else min(duration, MAX_WATCH_SECONDS)
    current = select_sockets()
    if emit_json is None:
        emit(head + section(current, None))
    else:
        for sock in current:
            emit_json({"event": "present", **sock.to_json()})
    start = clock()
    reason = "duration reached"
    with _esc_watcher(stdin or sys.stdin) as wait:
        try:
            while True:
                left = limit - (clock() - start)
                if left <= 0:
                    break
                if wait(min(interval, left)):
                    reason = "escape key pressed"
                    break
                if pid is not None and not pid_exists(pid):
                    reason = "process exited"
                    break
                latest = select_sockets()
                changes = diff(current, latest)
                current = latest
                if not changes:
                    continue
                if emit_json is None:
                    emit(section(current, changes))
                else:
                    for change in changes:
                        emit_json(change.to_json())
        except KeyboardInterrupt:
            reason = "interrupted"
    if emit_json is None:
        emit([f"{reason}: stopped watching {what}", f"System Date: {system_date()}", ""])
    else:
        emit_json({"event": "stopped", "reason": reason})
    return reason

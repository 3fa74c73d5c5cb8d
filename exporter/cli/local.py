"""PortQry's local mode: ``-local`` lists this machine's TCP/UDP sockets (``-wport``/``-wpid``: :mod:`.watch`).

Built on psutil (``net_connections`` and ``Process``).  Run as root to see every socket's owning process;
otherwise sockets of other users' processes show PID ``-`` (PortQry: "restrictions applied to some
processes may prevent Portqry from accessing more information").

Layouts follow PortQry 2.0's samples (KB 832919): "TCP/UDP Port Usage", "N active ports found", a
``Port / Local IP / State / Remote IP:Port`` table, "Port Statistics" with counts and percentages per TCP
state, then "TCP/UDP Port to Process Mappings"; ``-v`` adds "Port and Module Information by Process"
(systemd service name, command line, loaded modules).  The watch modes (``-wport``, ``-wpid``) are in
:mod:`exporter.cli.watch`.

Check by hand: ``portqry -local`` next to ``ss -tunap``.
"""

from __future__ import annotations

import re
import socket
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import psutil

#: psutil status -> PortQry's words ("TIME WAIT", "CLOSE WAIT" as in its sample output).
STATE_TEXT = {
    "LISTEN": "LISTENING",
    "ESTABLISHED": "ESTABLISHED",
    "SYN_SENT": "SYN SENT",
    "SYN_RECV": "SYN RECEIVED",
    "FIN_WAIT1": "FIN WAIT 1",
    "FIN_WAIT2": "FIN WAIT 2",
    "TIME_WAIT": "TIME WAIT",
    "CLOSE": "CLOSED",
    "CLOSE_WAIT": "CLOSE WAIT",
    "LAST_ACK": "LAST ACK",
    "CLOSING": "CLOSING",
    "NEW_SYN_RECV": "SYN RECEIVED",
    "NONE": "",
}

#: Most modules listed per process with ``-v``.
MAX_MODULES = 200


class LocalModeError(Exception):
    """Local mode cannot run: psutil refused, the PID does not exist."""


@dataclass(frozen=True, slots=True)
class LocalSocket:
    """One local socket, as PortQry's local mode lists it.

    Attributes:
        protocol: ``"TCP"`` or ``"UDP"``.
        local_address: local IP (``0.0.0.0``, ``::``, ...).
        local_port: local port, 0-65535.
        remote_address: peer IP, ``""`` when unconnected.
        remote_port: peer port, 0 when unconnected.
        state: PortQry's state text (``LISTENING``, ``TIME WAIT``...); ``""`` for UDP.
        pid: owning process id, or ``None`` when not visible to us.
        process: process name, ``""`` when unknown.
    """

    protocol: str
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    state: str
    pid: int | None
    process: str

    @property
    def key(self) -> tuple[str, str, int, str, int]:
        """Identity of the socket across polls (its state may change)."""
        return (self.protocol, self.local_address, self.local_port, self.remote_address, self.remote_port)

    def row(self) -> tuple[str, str, str, str]:
        """``("TCP 80", "0.0.0.0", "LISTENING", "0.0.0.0:0")`` - PortQry's four columns."""
        if self.protocol == "UDP" and not self.remote_address:
            remote = ":"
        else:
            remote = f"{_bracket(self.remote_address or _any_address(self.local_address))}:{self.remote_port}"
        return (f"{self.protocol} {self.local_port}", self.local_address, self.state, remote)

    def owner(self) -> str:
        """``1234:python3`` (PID and name), ``1234`` or ``-``."""
        if self.pid is None:
            return "-"
        return f"{self.pid}:{self.process}" if self.process else str(self.pid)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (``portqry -local --json``)."""
        return asdict(self)


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _any_address(local: str) -> str:
    return "::" if ":" in local else "0.0.0.0"


def snapshot() -> list[LocalSocket]:
    """This machine's TCP and UDP sockets (IPv4 and IPv6), sorted by port, protocol and addresses.

    Raises:
        LocalModeError: psutil cannot list sockets (e.g. permission denied on this platform).
    """
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError) as exc:
        raise LocalModeError(f"cannot list local sockets: {exc}") from exc
    names: dict[int, str] = {}
    out: list[LocalSocket] = []
    for conn in conns:
        proto = "TCP" if conn.type == socket.SOCK_STREAM else "UDP"
        laddr = conn.laddr if conn.laddr else ("", 0)
        raddr = conn.raddr if conn.raddr else ("", 0)
        pid = conn.pid
        if pid is not None and pid not in names:
            names[pid] = process_name(pid)
        out.append(
            LocalSocket(
                protocol=proto,
                local_address=str(laddr[0]),
                local_port=int(laddr[1]),
                remote_address=str(raddr[0]),
                remote_port=int(raddr[1]),
                state=STATE_TEXT.get(conn.status, conn.status.replace("_", " ")) if proto == "TCP" else "",
                pid=pid,
                process=names.get(pid, "") if pid is not None else "",
            )
        )
    out.sort(key=lambda s: (s.local_port, s.protocol, s.local_address, s.remote_address, s.remote_port))
    return out


def process_name(pid: int) -> str:
    """The process name of ``pid``, or ``""`` when it is gone or not accessible."""
    try:
        return str(psutil.Process(pid).name())
    except (psutil.Error, OSError):
        return ""


def _table(rows: Iterable[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    rows = list(rows)
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) for i in range(len(row) - 1)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return lines


def port_table(sockets: Iterable[LocalSocket], *, with_owner: bool) -> list[str]:
    """The socket table: ``Port  Local IP  State  Remote IP:Port``, with ``PID:Process`` first if asked."""
    if with_owner:
        return _table(
            ((s.owner(), *s.row()) for s in sockets),
            ("PID:Process", "Port", "Local IP", "State", "Remote IP:Port"),
        )
    return _table((s.row() for s in sockets), ("Port", "Local IP", "State", "Remote IP:Port"))


def statistics(sockets: Iterable[LocalSocket]) -> list[str]:
    """PortQry's "Port Statistics": mappings per protocol and TCP states with percentages."""
    sockets = list(sockets)
    tcp = [s for s in sockets if s.protocol == "TCP"]
    udp = len(sockets) - len(tcp)
    lines = ["Port Statistics", "", f"TCP mappings: {len(tcp)}", f"UDP mappings: {udp}", ""]
    counts = Counter(s.state for s in tcp)
    for state, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"TCP ports in a {state} state: {count} = {100.0 * count / len(tcp):.2f}%")
    if counts:
        lines.append("")
    return lines


def service_of(pid: int) -> str:
    """The systemd unit a process runs in (``ssh.service``), from ``/proc/<pid>/cgroup``, or ``""``."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as fh:
            text = fh.read(4096)
    except OSError:
        return ""
    match = re.search(r"/([^/\s]+\.service)(?:/|$)", text, re.MULTILINE)
    return match.group(1) if match else ""


def process_details(pid: int) -> list[str]:
    """``-v`` details of one process: service, command line and loaded modules (mapped files)."""
    lines: list[str] = []
    service = service_of(pid)
    if service:
        lines += [f"Service Name: {service}", ""]
    try:
        proc = psutil.Process(pid)
        cmdline = " ".join(proc.cmdline())
        if cmdline:
            lines += [f"Command line: {cmdline}", ""]
        modules: list[str] = []
        seen: set[str] = set()
        for mapping in proc.memory_maps(grouped=True):
            path = mapping.path
            if path.startswith("/") and path not in seen:
                seen.add(path)
                modules.append(path)
            if len(modules) >= MAX_MODULES:
                break
    except (psutil.Error, OSError):
        return [*lines, "Could not access module information for this process", ""]
    if modules:
        lines += ["Loaded modules:", *modules, ""]
    return lines


def local_lines(sockets: list[LocalSocket], *, verbose: bool = False) -> list[str]:
    """The whole ``portqry -local`` output (``-v``: per-process sections too)."""
    lines = ["TCP/UDP Port Usage", "", f"{len(sockets)} active ports found", ""]
    lines += port_table(sockets, with_owner=False)
    lines += ["", *statistics(sockets)]
    by_pid = sorted(sockets, key=lambda s: (-1 if s.pid is None else s.pid, s.local_port, s.protocol))
    lines += ["TCP/UDP Port to Process Mappings", "", f"{len(by_pid)} mappings found", ""]
    lines += port_table(by_pid, with_owner=True)
    lines.append("")
    if verbose:
        lines += [
            "Port and Module Information by Process",
            "",
            "Note: restrictions applied to some processes may",
            "prevent Portqry from accessing more information",
            "",
            "For best results run Portqry as root",
            "",
        ]
        pids = sorted({s.pid for s in sockets if s.pid is not None})
        for pid in pids:
            own = [s for s in sockets if s.pid == pid]
            lines += ["=" * 54, "", f"Process ID: {pid} ({own[0].process or '?'})", ""]
            lines += port_table(own, with_owner=False)
            lines += ["", *statistics(own), *process_details(pid)]
        lines += ["=" * 54, ""]
    return lines

"""``portqry -local``, ``-wport``, ``-wpid``, ``-wt``, ``-v``: this machine's sockets through psutil.

The tests open and close loopback listeners themselves and assert that the listing shows them with our PID,
and that the watch modes report them appearing and disappearing.  Watches run with ``-wt 1`` and a
``--duration`` bound, so each takes a few seconds at most.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from exporter.cli import entry, exits, local, watch


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(*argv: str, stdin: str = "") -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = entry.main(list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())


def listener(kind: int = socket.SOCK_STREAM) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen(4)
    return sock


def me() -> str:
    return f"{os.getpid()}:{psutil.Process().name()}"


def test_local_lists_our_tcp_and_udp_sockets_with_pid() -> None:
    with listener() as tcp, listener(socket.SOCK_DGRAM) as udp:
        tport, uport = tcp.getsockname()[1], udp.getsockname()[1]
        r = run("-local")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == "TCP/UDP Port Usage"
    assert lines[2].endswith("active ports found")
    assert "Port Statistics" in lines and "TCP/UDP Port to Process Mappings" in lines
    assert any(line.split()[:5] == ["TCP", str(tport), "127.0.0.1", "LISTENING", "0.0.0.0:0"] for line in lines)
    assert any(line.split()[:4] == ["UDP", str(uport), "127.0.0.1", ":"] for line in lines)
    owned = [line for line in lines if line.startswith(me() + " ")]
    assert any(f"TCP {tport} " in line for line in owned) and any(f"UDP {uport} " in line for line in owned)
    assert any(line.startswith("TCP ports in a LISTENING state: ") and line.endswith("%") for line in lines)


def test_local_json_and_verbose() -> None:
    with listener() as tcp:
        port = tcp.getsockname()[1]
        as_json = run("-local", "--json")
        verbose = run("/LOCAL", "/v")
    rows = [json.loads(line) for line in as_json.out.splitlines()]
    mine = [r for r in rows if r["local_port"] == port and r["protocol"] == "TCP"]
    assert mine and mine[0]["pid"] == os.getpid() and mine[0]["state"] == "LISTENING"
    assert verbose.code == 0
    assert f"Process ID: {os.getpid()} (" in verbose.out
    assert "Port and Module Information by Process" in verbose.out
    assert "Loaded modules:" in verbose.out and "Command line: " in verbose.out


def test_watch_port_reports_a_listener_closing_and_opening() -> None:
    sock = listener()
    port = sock.getsockname()[1]
    reopened: list[socket.socket] = []

    def close_then_reopen() -> None:
        sock.close()
        time.sleep(1.5)
        again = socket.socket()
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen(1)
        reopened.append(again)

    timer = threading.Timer(1.2, close_then_reopen)
    timer.start()
    try:
        r = run("-wport", str(port), "-wt", "1", "--duration", "4.5")
    finally:
        timer.join(5)
        for s in reopened:
            s.close()
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[:4] == [f"Watching port: {port}", "", "Checking for changes every 1 seconds", ""]
    closed = [i for i, line in enumerate(lines) if line.startswith(f" closed: TCP {port} 127.0.0.1 LISTENING")]
    opened = [i for i, line in enumerate(lines) if line.startswith(f" new: TCP {port} 127.0.0.1 LISTENING")]
    assert closed and opened and closed[0] < opened[0], r.out
    assert f"(PID {me()})" in lines[closed[0]]
    assert lines[-3] == f"duration reached: stopped watching port {port}"
    assert f"No active ports on port {port}" in r.out


def test_watch_pid_reports_new_sockets_and_json_events() -> None:
    holder: list[socket.socket] = []
    timer = threading.Timer(1.3, lambda: holder.append(listener()))
    timer.start()
    try:
        r = run("-wpid", str(os.getpid()), "-wt", "1", "--duration", "3", "--json")
    finally:
        timer.join(5)
    try:
        port = holder[0].getsockname()[1]
        events = [json.loads(line) for line in r.out.splitlines()]
    finally:
        holder[0].close()
    assert r.code == 0, r.err
    news = [e for e in events if e["event"] == "new" and e["local_port"] == port]
    assert news and news[0]["pid"] == os.getpid() and news[0]["state"] == "LISTENING"
    assert events[-1] == {"event": "stopped", "reason": "duration reached"}


def test_watch_pid_that_does_not_exist_exits_7() -> None:
    pid = 1
    while psutil.pid_exists(pid):
        pid += 7919
    r = run("-wpid", str(pid), "-wt", "1", "--duration", "1")
    assert r.code == exits.EXIT_LOCAL == 7
    assert r.err == f"portqry: Process ID {pid} not found\n"


def test_watch_stops_when_the_process_exits() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    try:
        r = run("-wpid", str(child.pid), "-wt", "1", "--duration", "6")
    finally:
        child.wait(10)
    assert r.code == 0
    assert f"process exited: stopped watching PID {child.pid}" in r.out


def test_watch_with_log_file_and_verbose(tmp_path: Path) -> None:
    log = tmp_path / "watch.txt"
    with listener() as sock:
        port = sock.getsockname()[1]
        r = run("-wport", str(port), "-wt", "1", "--duration", "1.2", "-v", "-l", str(log), "-y")
    text = log.read_text()
    assert r.code == 0
    assert text.startswith("PortQry Version 2.0 Log File")
    assert f"Watching port: {port}" in text and "verbose output requested" in text
    assert f"Process ID: {os.getpid()}" in text
    assert text.rstrip().endswith("========= end of log file =========")


@pytest.mark.parametrize("seconds", ["0", "1201", "x"])
def test_watch_time_range(seconds: str) -> None:
    assert run("-wport", "80", "-wt", seconds).code == 3


def test_diff_kinds() -> None:
    a = local.LocalSocket("TCP", "127.0.0.1", 80, "", 0, "LISTENING", 1, "x")
    b = local.LocalSocket("TCP", "127.0.0.1", 80, "127.0.0.1", 5000, "ESTABLISHED", 1, "x")
    b2 = local.LocalSocket("TCP", "127.0.0.1", 80, "127.0.0.1", 5000, "CLOSE WAIT", 1, "x")
    changes = watch.diff([a, b], [b2])
    assert sorted((c.kind, c.socket.state) for c in changes) == [
        ("changed", "CLOSE WAIT"),
        ("closed", "LISTENING"),
    ]
    changed = next(c for c in changes if c.kind == "changed")
    assert changed.line() == "changed: TCP 80 127.0.0.1 ESTABLISHED -> CLOSE WAIT 127.0.0.1:5000 (PID 1:x)"

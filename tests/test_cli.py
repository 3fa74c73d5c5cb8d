"""The ``portqry`` command line: every flag, the exit codes, the text layout (golden files), the log file.

Everything runs against loopback peers the tests open themselves (listeners on port 0); names resolve only
through :func:`dns_server`, a DNS server run here (``--dns-server 127.0.0.1 --dns-port N``), and reverse
lookups use ``-nr`` or that server.  Acceptance tests against the Samba DC test bed are marked ``testbed``.

Regenerate the golden files after a deliberate layout change with ``PORTQRY_UPDATE_GOLDEN=1 pytest
tests/test_cli.py`` and review the diff.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import testbed

from exporter import cli, engine
from exporter import cli_format as fmt
from exporter.result import ProbeResult
from exporter.states import PortState, Reason
from exporter.wire.epm import EpmEntry
from exporter.wire.kerberos import KrbError
from exporter.wire.ldap import SearchEntry
from exporter.wire.mssqlr import SqlInstance
from exporter.wire.nbstat import NetbiosName, NodeStatus
from exporter.wire.netlogon import NetlogonSamLogonResponseEx
from exporter.wire.rootdse import RootDSE
from exporter.wire.snmp import SnmpResponse, VarBind
from tests.dnsserver import dns_server as serve_dns

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("PORTQRY_UPDATE_GOLDEN") == "1"
FAST = ["--timeout", "0.3", "--udp-pacing", "0"]


# --------------------------------------------------------------------------------------------- peers


@dataclass
class Run:
    """One ``main()`` run: exit code, stdout, stderr, wall seconds."""

    code: int
    out: str
    err: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def run(*argv: str, stdin: str = "") -> Run:
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    code = cli.main(list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue(), time.monotonic() - start)


@dataclass
class TcpPeer:
    """A TCP listener on loopback that accepts and records each peer's source port."""

    port: int
    sock: socket.socket
    peers: list[int] = field(default_factory=list)


@contextmanager
def tcp_listener(host: str = "127.0.0.1", port: int = 0) -> Iterator[TcpPeer]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, port))
    sock.listen(64)
    sock.settimeout(0.1)
    peer = TcpPeer(sock.getsockname()[1], sock)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, addr = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            peer.peers.append(addr[1])
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        stop.set()
        thread.join(2)
        sock.close()


@contextmanager
def udp_peer(*, echo: bool, host: str = "127.0.0.1") -> Iterator[TcpPeer]:
    """A bound UDP socket: echoes every datagram (``echo``) or stays silent (no reply, no ICMP)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.1)
    peer = TcpPeer(sock.getsockname()[1], sock)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            peer.peers.append(addr[1])
            if echo:
                sock.sendto(data or b"\0", addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        stop.set()
        thread.join(2)
        sock.close()


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


#: Names our DNS server knows (A/AAAA), and the reverse name of 127.0.0.1.
DNS_TABLE = {"host.portqry.test": "127.0.0.1", "host6.portqry.test": "::1"}
PTR_TABLE = {"1.0.0.127.in-addr.arpa": "host.portqry.test"}


@contextmanager
def dns_server() -> Iterator[tuple[str, int, list[str]]]:
    """The tests' DNS server (:mod:`tests.dnsserver`) with :data:`DNS_TABLE` and :data:`PTR_TABLE`."""
    with serve_dns(DNS_TABLE, ptr=PTR_TABLE) as server:
        yield server


@pytest.fixture
def dns_args() -> Iterator[list[str]]:
    """``--dns-server 127.0.0.1 --dns-port N`` of a running :func:`dns_server`."""
    with dns_server() as (address, port, _queries):
        yield ["--dns-server", address, "--dns-port", str(port)]


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------------------------- states


def test_tcp_listening_exits_0_with_portqry_lines() -> None:
    with tcp_listener() as peer:
        r = run("-n", "127.0.0.1", "-nr", "-e", str(peer.port))
    assert r.code == 0, r.err
    assert r.lines[:5] == ["Querying target system called:", "", " 127.0.0.1", "", "querying..."]
    assert re.search(rf"^TCP port {peer.port} \(.+\): LISTENING$", r.out, re.MULTILINE)
    assert r.err == ""


def test_tcp_closed_exits_1() -> None:
    port = free_port()
    r = run("-n", "127.0.0.1", "-nr", "-e", str(port))
    assert r.code == 1
    assert f"TCP port {port} (" in r.out and "): NOT LISTENING" in r.out


def test_udp_echo_listening_closed_and_silent() -> None:
    with udp_peer(echo=True) as echo, udp_peer(echo=False) as silent:
        closed = free_port(socket.SOCK_DGRAM)
        ok = run("-n", "127.0.0.1", "-nr", "-p", "udp", "-e", str(echo.port), *FAST)
        refused = run("-n", "127.0.0.1", "-nr", "-p", "UDP", "-e", str(closed), *FAST)
        quiet = run("-n", "127.0.0.1", "-nr", "-p", "udp", "-e", str(silent.port), *FAST)
    assert (ok.code, refused.code, quiet.code) == (0, 1, 2)
    assert "): LISTENING" in ok.out
    assert "): NOT LISTENING" in refused.out
    assert f"UDP port {silent.port} (unknown service): LISTENING or FILTERED" in quiet.out or (
        f"UDP port {silent.port} (" in quiet.out and "): LISTENING or FILTERED" in quiet.out
    )


def test_default_port_is_80_tcp() -> None:
    r = run("-n", "127.0.0.1", "-nr", "--timeout", "0.2")
    assert r.code in (0, 1, 2)
    assert "TCP port 80 (http service): " in r.out


def test_both_queries_tcp_then_udp_for_each_port() -> None:
    with tcp_listener() as peer:
        r = run("-n", "127.0.0.1", "-nr", "-p", "both", "-e", str(peer.port), *FAST)
    state_lines = [line for line in r.lines if " port " in line]
    assert [line.split()[0] for line in state_lines] == ["TCP", "UDP"]
    assert r.code == 1  # TCP listening, UDP refused: the worst wins


def test_order_list_keeps_the_given_order_and_worst_exit_code() -> None:
    with tcp_listener() as a, tcp_listener() as b:
        closed = free_port()
        ports = [b.port, closed, a.port]
        r = run("-n", "127.0.0.1", "-nr", "-o", ",".join(map(str, ports)))
    seen = [int(m) for m in re.findall(r"^TCP port (\d+) ", r.out, re.MULTILINE)]
    assert seen == ports
    assert r.code == 1


def test_range_colon_and_semicolon_forms() -> None:
    with tcp_listener() as peer:
        p = peer.port
        colon = run("-n", "127.0.0.1", "-nr", "-r", f"{p}:{p + 2}", *FAST)
        semi = run("-n", "127.0.0.1", "-nr", "-r", f"{p};{p + 2}", *FAST)
    for r in (colon, semi):
        assert [int(m) for m in re.findall(r"^TCP port (\d+) ", r.out, re.MULTILINE)] == [p, p + 1, p + 2]


def test_range_runs_concurrently_and_prints_in_port_order() -> None:
    """20 silent UDP ports at 0.5 s each: serially 10 s; the engine runs them at once."""
    peers = []
    with contextlib.ExitStack() as stack:
        for _ in range(20):
            peers.append(stack.enter_context(udp_peer(echo=False)))
        ports = sorted(p.port for p in peers)
        r = run(
            "-n",
            "127.0.0.1",
            "-nr",
            "-p",
            "udp",
            "-o",
            ",".join(map(str, ports)),
            "--timeout",
            "0.5",
            "--udp-pacing",
            "0",
            "--json",
        )
    results = [json.loads(line) for line in r.lines]
    assert [x["port"] for x in results] == ports
    assert {x["state"] for x in results} == {"listening_or_filtered"}
    assert r.seconds < 4.0, f"not concurrent: {r.seconds:.1f} s for 20 x 0.5 s"


def test_concurrency_1_is_serial() -> None:
    with udp_peer(echo=False) as a, udp_peer(echo=False) as b, udp_peer(echo=False) as c:
        ports = ",".join(str(p.port) for p in (a, b, c))
        r = run(
            "-n",
            "127.0.0.1",
            "-nr",
            "-p",
            "udp",
            "-o",
            ports,
            "--timeout",
            "0.3",
            "--udp-pacing",
            "0",
            "--concurrency",
            "1",
        )
    assert r.code == 2
    assert r.seconds >= 0.85


def test_range_does_not_query_the_endpoint_mapper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(engine.DEFAULT_BINDINGS, ("tcp", 135), "rpc")
    monkeypatch.setitem(engine.DEFAULT_BINDINGS, ("udp", 389), "ldap")
    in_range = cli.build_specs([("tcp", 135), ("udp", 389)], range_mode=True)
    listed = cli.build_specs([("tcp", 135)], range_mode=False)
    assert [s.probe_name for s in in_range] == ["", "ldap"]
    assert [s.probe_name for s in listed] == ["rpc"]


# --------------------------------------------------------------------------------------------- flags


def test_slash_and_upper_case_spellings() -> None:
    with tcp_listener() as peer:
        r = run("/N", "127.0.0.1", "/nr", "/P", "TCP", "/e", str(peer.port))
    assert r.code == 0
    assert "): LISTENING" in r.out


def test_quiet_prints_nothing_and_returns_errorlevels() -> None:
    with tcp_listener() as peer, udp_peer(echo=False) as silent:
        listening = run("-n", "127.0.0.1", "-nr", "-e", str(peer.port), "-q")
        filtered = run("-n", "127.0.0.1", "-nr", "-p", "udp", "-e", str(silent.port), "-q", *FAST)
    closed = run("-n", "127.0.0.1", "-nr", "-e", str(free_port()), "-q")
    assert (listening.code, closed.code, filtered.code) == (0, 1, 2)
    assert listening.out == closed.out == filtered.out == ""
    assert listening.err == closed.err == filtered.err == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "80,81"], "-q cannot be used with -o or -r"),
        (["-r", "80:81"], "-q cannot be used with -o or -r"),
        (["-p", "both"], "-q cannot be used with -p both"),
    ],
)
def test_quiet_is_refused_with_lists_ranges_and_both(args: list[str], message: str) -> None:
    r = run("-n", "127.0.0.1", "-q", *args)
    assert r.code == cli.EXIT_USAGE == 3
    assert r.out == ""
    assert r.err.count("\n") == 1 and message in r.err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["-e", "80"],
        ["-n", "127.0.0.1", "-e", "0"],
        ["-n", "127.0.0.1", "-e", "65536"],
        ["-n", "127.0.0.1", "-e", "http"],
        ["-n", "127.0.0.1", "-p", "icmp"],
        ["-n", "127.0.0.1", "-e", "80", "-o", "81"],
        ["-n", "127.0.0.1", "-r", "90:80"],
        ["-n", "127.0.0.1", "-r", "80-90"],
        ["-n", "127.0.0.1", "-o", "80, 81"],
        ["-n", "127.0.0.1", "-cn", "public"],
        ["-n", "127.0.0.1", "-sp", "70000"],
        ["-n", "127.0.0.1", "-wt", "5"],
        ["-n", "127.0.0.1", "--timeout", "0"],
        ["-n", "127.0.0.1", "--timeout", "soon"],
        ["-n", "127.0.0.1", "--concurrency", "0"],
        ["-n", "127.0.0.1", "--dns-server", "dns.example"],
        ["-n", "127.0.0.1", "--dns-port", "0"],
        ["-n", "127.0.0.1", "stray"],
        ["-n", "127.0.0.1", "-x"],
        ["-n"],
        ["-n", "127.0.0.1", "-n", "127.0.0.2"],
        ["-local", "-n", "127.0.0.1"],
        ["-local", "-wport", "80"],
        ["-local", "-wt", "5"],
        ["-local", "-q"],
        ["-wport", "80", "-wt", "0"],
        ["-wport", "80", "-wt", "1201"],
        ["-wpid", "abc"],
        ["-n", "127.0.0.1", "--duration", "3"],
        ["-i", "-q"],
        ["-i", "-o", "80,81"],
        ["-n", "127.0.0.1", "--service", "kdc", "-e", "88"],
        ["--list-services", "-n", "127.0.0.1"],
        ["-n", "127.0.0.1", "--json", "-q"],
    ],
)
def test_usage_errors_exit_3_with_one_line(argv: list[str]) -> None:
    r = run(*argv)
    assert r.code == 3, (argv, r.code, r.err)
    assert r.out == ""
    assert r.err.startswith("portqry: ") and r.err.count("\n") == 1
    assert "Traceback" not in r.err


def test_help_lists_flags_and_exit_codes() -> None:
    for flag in ("-h", "/?", "--help"):
        r = run(flag)
        assert r.code == 0
        for word in (
            "-n NAME",
            "-sp PORT",
            "-cn !COMMUNITY!",
            "-wport",
            "--json",
            "Exit codes",
            "usage error",
        ):
            assert word in r.out


def test_version() -> None:
    r = run("--version")
    assert r.code == 0 and r.out.startswith("portqry (portqry-exporter) ")


def test_y_without_l_is_ignored_as_in_portqry() -> None:
    with tcp_listener() as peer:
        r = run("-n", "127.0.0.1", "-nr", "-e", str(peer.port), "-y")
    assert r.code == 0


def test_slow_link_doubles_the_udp_wait() -> None:
    with udp_peer(echo=False) as silent:
        normal = run("-n", "127.0.0.1", "-nr", "-p", "udp", "-e", str(silent.port), "--timeout", "0.4", "--json")
        slow = run("-n", "127.0.0.1", "-nr", "-p", "udp", "-e", str(silent.port), "--timeout", "0.4", "--json", "-sl")
    t_normal = json.loads(normal.out)["duration_seconds"]
    t_slow = json.loads(slow.out)["duration_seconds"]
    assert 0.35 <= t_normal < 0.75
    assert t_slow >= 0.78
    assert cli.parse_args(["-n", "x", "-s"]).slow_link  # PortQry 1.22's /s


def test_community_between_exclamation_marks() -> None:
    opts = cli.parse_args(["-n", "127.0.0.1", "-cn", "!s3cret!"])
    assert cli.settings_from(opts).probe_options().params["snmp_community"] == "s3cret"
    spaced = cli.parse_args(["-n", "127.0.0.1", "-cn", "!my", "snmp", "string!", "-e", "161"])
    assert spaced.community == "my snmp string" and spaced.endpoint == 161
    assert cli.parse_args(["-n", "x"]).community == "public"


def test_domain_is_passed_to_the_probes() -> None:
    opts = cli.parse_args(["-n", "dc1", "--domain", "pqtest.test."])
    assert cli.settings_from(opts).probe_options().params["domain"] == "pqtest.test"
    assert "domain" not in cli.settings_from(cli.parse_args(["-n", "dc1"])).probe_options().params
    assert run("-n", "dc1", "--domain", "").code == 3


def test_probe_options_are_portqrys() -> None:
    options = cli.settings_from(cli.parse_args(["-n", "x", "--timeout", "1.5", "-sp", "3000", "-sl"])).probe_options()
    assert (options.tcp_tries, options.udp_tries, options.udp_unformatted_first) == (3, 1, True)
    assert (options.timeout_seconds, options.source_port, options.slow_link) == (1.5, 3000, True)


def test_source_port_is_used_and_lists_run_one_at_a_time() -> None:
    sport = free_port()
    with tcp_listener() as a, tcp_listener() as b:
        r = run("-n", "127.0.0.1", "-nr", "-o", f"{a.port},{b.port}", "-sp", str(sport))
        time.sleep(0.2)
    assert r.code == 0, r.err
    assert a.peers == [sport] and b.peers == [sport]
    with udp_peer(echo=True) as echo:
        usport = free_port(socket.SOCK_DGRAM)
        u = run("-n", "127.0.0.1", "-nr", "-p", "udp", "-e", str(echo.port), "-sp", str(usport), *FAST)
    assert u.code == 0 and echo.peers[:1] == [usport]
    with udp_peer(echo=False) as s1, udp_peer(echo=False) as s2, udp_peer(echo=False) as s3:
        ports = ",".join(str(p.port) for p in (s1, s2, s3))
        serial = run(
            "-n",
            "127.0.0.1",
            "-nr",
            "-p",
            "udp",
            "-o",
            ports,
            "-sp",
            str(free_port(socket.SOCK_DGRAM)),
            "--timeout",
            "0.3",
            "--udp-pacing",
            "0",
        )
    assert serial.code == 2 and serial.seconds >= 0.85


def test_busy_source_port_is_refused() -> None:
    with tcp_listener() as busy, tcp_listener() as target:
        r = run("-n", "127.0.0.1", "-nr", "-e", str(target.port), "-sp", str(busy.port))
    assert r.code == cli.EXIT_SOURCE_PORT == 5
    assert "Cannot use specified source port" in r.err and "Port is already in use" in r.err
    assert r.err.count("\n") == 1
    assert target.peers == []


def test_ephemeral_note_for_protocol_followups_with_sp() -> None:
    result = _result(
        "udp", 389, PortState.LISTENING, Reason.PROTOCOL_REPLY, service="ldap", details={"ldap": _root_dse()}
    )
    lines = fmt.port_lines(result, probe_name="ldap", source_port=3000)
    assert lines[2] == "Using ephemeral source port"
    assert "Using ephemeral source port" not in fmt.port_lines(result, probe_name="ldap")


def test_json_lines_have_the_issue_keys() -> None:
    with tcp_listener() as peer:
        r = run("-n", "127.0.0.1", "-nr", "-o", f"{peer.port},{free_port()}", "--json")
    rows = [json.loads(line) for line in r.lines]
    assert len(rows) == 2
    for row in rows:
        assert {
            "target",
            "address",
            "protocol",
            "port",
            "service",
            "state",
            "reason",
            "duration_seconds",
        } <= set(row)
    assert [(x["state"], x["reason"]) for x in rows] == [
        ("listening", "syn-ack"),
        ("not_listening", "refused"),
    ]


# --------------------------------------------------------------------------------------------- names


def test_name_resolves_through_our_dns_server() -> None:
    with dns_server() as (address, port, queries), tcp_listener() as peer:
        r = run("-n", "host.portqry.test", "--dns-server", address, "--dns-port", str(port), "-e", str(peer.port))
    assert r.code == 0, r.err
    assert r.lines[:9] == [
        "Querying target system called:",
        "",
        " host.portqry.test",
        "",
        "Attempting to resolve name to IP address...",
        "",
        "Name resolved to 127.0.0.1",
        "",
        "querying...",
    ]
    assert "host.portqry.test. A" in queries


def test_unresolvable_name_exits_4_with_one_line(dns_args: list[str]) -> None:
    r = run("-n", "nothere.portqry.test", *dns_args, "-e", "80")
    assert r.code == cli.EXIT_RESOLVE == 4
    assert r.err.startswith("portqry: Failed to resolve name to IP address") and r.err.count("\n") == 1
    assert "TCP port" not in r.out
    quiet = run("-n", "nothere.portqry.test", *dns_args, "-q")
    assert quiet.code == 4 and quiet.out == ""


def test_reverse_lookup_and_nr(dns_args: list[str]) -> None:
    with tcp_listener() as peer:
        looked = run("-n", "127.0.0.1", *dns_args, "-e", str(peer.port))
        skipped = run("-n", "127.0.0.1", *dns_args, "-e", str(peer.port), "-nr")
    with tcp_listener("127.0.0.2") as other:
        failed = run("-n", "127.0.0.2", *dns_args, "-e", str(other.port))
    assert "Attempting to resolve IP address to a name..." in looked.out
    assert "IP address resolved to host.portqry.test" in looked.out
    assert "Attempting to resolve IP address" not in skipped.out
    assert "Failed to resolve IP address to name" in failed.out and failed.code == 0  # PortQry continues


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_targets(dns_args: list[str]) -> None:
    with tcp_listener("::1") as peer:
        plain = run("-n", "::1", "-nr", "-e", str(peer.port))
        bracketed = run("-n", "[::1]", "-nr", "-e", str(peer.port), "--json")
        named = run("-n", "host6.portqry.test", *dns_args, "-e", str(peer.port))
    assert plain.code == bracketed.code == named.code == 0, (plain.err, named.err)
    assert json.loads(bracketed.out)["address"] == "::1"
    assert "Name resolved to ::1" in named.out


# --------------------------------------------------------------------------------------------- log file


def test_log_file_has_header_same_lines_and_footer(tmp_path: Path) -> None:
    log = tmp_path / "pq.log"
    log.write_text("old\n")
    with tcp_listener() as peer:
        argv = ["-n", "127.0.0.1", "-nr", "-e", str(peer.port), "-l", str(log), "-y"]
        r = run(*argv)
    assert r.code == 0
    text = log.read_text()
    lines = text.splitlines()
    assert lines[0] == "PortQry Version 2.0 Log File"
    assert lines[2].startswith("System Date: ")
    assert lines[4:6] == ["Command run:", " portqry " + " ".join(argv)]
    assert lines[7:10] == ["Local computer name:", "", f" {socket.gethostname()}"]
    assert r.out in text  # the same lines as stdout
    assert lines[-1] == "========= end of log file ========="
    assert "old" not in text


def test_log_file_asks_before_overwriting(tmp_path: Path) -> None:
    log = tmp_path / "pq.log"
    log.write_text("keep me\n")
    with tcp_listener() as peer:
        declined = run("-n", "127.0.0.1", "-nr", "-e", str(peer.port), "-l", str(log), stdin="n\n")
        assert declined.code == cli.EXIT_LOG_FILE == 6
        assert log.read_text() == "keep me\n"
        assert "Overwrite it? (y/n)" in declined.err
        accepted = run("-n", "127.0.0.1", "-nr", "-e", str(peer.port), "-l", str(log), stdin="y\n")
        assert accepted.code == 0 and log.read_text().startswith("PortQry Version 2.0 Log File")
        log.write_text("again\n")
        quiet = run("-n", "127.0.0.1", "-nr", "-e", str(peer.port), "-l", str(log), "-q")  # -q: no question
    assert quiet.code == 0 and quiet.out == "" and quiet.err == ""
    assert "): LISTENING" in log.read_text()


def test_log_file_that_cannot_be_written_exits_6(tmp_path: Path) -> None:
    r = run("-n", "127.0.0.1", "-nr", "-l", str(tmp_path / "no" / "such" / "dir.log"))
    assert r.code == 6 and r.err.count("\n") == 1


def test_log_file_gets_errors_and_footer_on_failure(tmp_path: Path, dns_args: list[str]) -> None:
    log = tmp_path / "pq.log"
    r = run("-n", "nothere.portqry.test", *dns_args, "-l", str(log))
    assert r.code == 4
    text = log.read_text()
    assert "Failed to resolve name to IP address" in text
    assert text.rstrip().endswith("========= end of log file =========")


# --------------------------------------------------------------------------------------------- interactive


def test_interactive_mode_from_stdin(dns_args: list[str]) -> None:
    with tcp_listener() as peer, udp_peer(echo=True) as echo:
        script = "\n".join(
            [
                "set nr",
                f"set e={peer.port}",
                "q",
                "set p=udp",
                f"set port={echo.port}",
                "set timeout=0.3",
                "set cn=!s3cret!",
                "set all",
                "query",
                "n nothere.portqry.test",
                "q",
                "bogus",
                "q nosuch",
                "node 127.0.0.1",
                "set sl",
                "set all",
                "exit",
                "q",  # never read: exit came first
            ]
        )
        r = run("-i", *dns_args, stdin=script + "\n")
    assert r.code == 0
    assert r.out.startswith("Portqry Interactive Mode\n\nType 'help' for a list of commands\n\nDefault Node: 127.0.0.1")
    assert re.search(rf"^TCP port {peer.port} \(.+\): LISTENING$", r.out, re.MULTILINE)
    assert re.search(rf"^UDP port {echo.port} \(.+\): LISTENING$", r.out, re.MULTILINE)
    assert "   protocol= UDP" in r.out and "   community= s3cret" in r.out
    assert "   slow link delay= on" in r.out
    assert "Default Node: nothere.portqry.test" in r.out
    err = r.err.splitlines()
    assert any("Failed to resolve name to IP address" in line for line in err)
    assert any("unknown command 'bogus'" in line for line in err)
    assert any("unknown shortcut 'nosuch'" in line for line in err)
    assert r.out.count("querying...") == 2


def test_interactive_shortcut_queries_its_ports() -> None:
    r = run("-i", "-nr", "--timeout", "0.2", stdin="q smtp\nexit\n")
    assert "TCP port 25 (smtp service): " in r.out
    assert cli.SHORTCUTS["sql"] == (("tcp", 1433), ("udp", 1434))
    assert set(cli.SHORTCUTS) == {
        "dns",
        "ftp",
        "imap",
        "ipsec",
        "isa",
        "ldap",
        "l2tp",
        "mail",
        "pop3",
        "rpc",
        "smtp",
        "snmp",
        "sql",
        "tftp",
    }


def test_interactive_options_from_the_command_line() -> None:
    r = run("-i", "-n", "127.0.0.2", "-e", "53", "-p", "both", "-sp", "2030", stdin="")
    assert "Default Node: 127.0.0.2" in r.out
    assert "   end port= 53\n   protocol= BOTH\n   source port= 2030" in r.out


# --------------------------------------------------------------------------------------------- catalog


def test_list_services_and_profiles() -> None:
    r = run("--list-services")
    assert r.code == 0
    assert len(r.lines) == 60
    assert any(line.startswith("Kerberos Key Distribution Center [kdc]: tcp/88") for line in r.lines)
    p = run("--list-profiles")
    assert p.code == 0 and any(line.startswith("domain-controller: ") for line in p.lines)


def test_service_expands_to_catalog_ports_with_labels() -> None:
    r = run("-n", "127.0.0.1", "-nr", "--service", "kdc", "-p", "tcp", "--json", "--timeout", "0.2")
    rows = [json.loads(line) for line in r.lines]
    assert [(x["protocol"], x["port"], x["service"]) for x in rows] == [
        ("tcp", 88, "Kerberos"),
        ("tcp", 464, "Kerberos Password V5"),
    ]


def test_profile_text_lists_what_is_not_probed() -> None:
    r = run("-n", "127.0.0.1", "-nr", "--profile", "dns-server", "-p", "udp", *FAST)
    assert "UDP port 53 (DNS service): " in r.out or "UDP port 53 (" in r.out
    assert "TCP port 53" not in r.out
    dc = run("-n", "127.0.0.1", "-nr", "--profile", "domain-controller", "-p", "tcp", "--timeout", "0.2")
    assert "dynamic RPC, checked through the endpoint mapper on TCP 135" in dc.out
    assert "icmp (profile:domain-controller): not probed (no port)" in dc.out


def test_unknown_service_is_a_usage_error_with_a_suggestion() -> None:
    r = run("-n", "127.0.0.1", "--service", "Kerberoz")
    assert r.code == 3
    assert "unknown service 'Kerberoz'; did you mean" in r.err and r.err.count("\n") == 1


# --------------------------------------------------------------------------------------------- robustness


def test_internal_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    async def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cli, "run_query", boom)
    r = run("-n", "127.0.0.1", "-nr")
    assert r.code == cli.EXIT_INTERNAL == 9
    assert r.err == "portqry: internal error: RuntimeError: kaboom\n"


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    with tcp_listener() as peer:
        ok = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from exporter.cli import main; sys.exit(main())",
                "-n",
                "127.0.0.1",
                "-nr",
                "-e",
                str(peer.port),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    bad = subprocess.run(
        [sys.executable, "-c", "import sys; from exporter.cli import main; sys.exit(main())", "-p", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ok.returncode == 0 and "LISTENING" in ok.stdout
    assert bad.returncode == 3 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


# --------------------------------------------------------------------------------------------- golden layouts


def _result(
    protocol: str,
    port: int,
    state: PortState,
    reason: Reason,
    *,
    service: str = "unknown service",
    details: dict[str, object] | None = None,
    error: str = "",
) -> ProbeResult:
    return ProbeResult(
        target="dc1.pqtest.test",
        host="dc1.pqtest.test",
        address="198.18.1.2",
        protocol=protocol,  # type: ignore[arg-type]
        port=port,
        service=service,
        state=state,
        reason=reason,
        duration_seconds=0.01,
        tries=1,
        timestamp=0.0,
        details=details or {},
        error=error,
    )


def _root_dse() -> RootDSE:
    attrs = [
        ("configurationNamingContext", [b"CN=Configuration,DC=pqtest,DC=test"]),
        ("currentTime", [b"20011011231021.0Z"]),
        ("defaultNamingContext", [b"DC=pqtest,DC=test"]),
        ("dnsHostName", [b"dc1.pqtest.test"]),
        ("domainControllerFunctionality", [b"7"]),
        ("domainFunctionality", [b"4"]),
        (
            "dsServiceName",
            [
                b"CN=NTDS Settings,CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,"
                b"CN=Configuration,DC=pqtest,DC=test"
            ],
        ),
        ("forestFunctionality", [b"4"]),
        ("highestCommittedUSN", [b"4259431"]),
        ("isGlobalCatalogReady", [b"TRUE"]),
        ("isSynchronized", [b"TRUE"]),
        ("ldapServiceName", [b"pqtest.test:dc1$@PQTEST.TEST"]),
        ("namingContexts", [b"DC=pqtest,DC=test", b"CN=Configuration,DC=pqtest,DC=test"]),
        ("rootDomainNamingContext", [b"DC=pqtest,DC=test"]),
        ("schemaNamingContext", [b"CN=Schema,CN=Configuration,DC=pqtest,DC=test"]),
        (
            "serverName",
            [b"CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=pqtest,DC=test"],
        ),
        ("subschemaSubentry", [b"CN=Aggregate,CN=Schema,CN=Configuration,DC=pqtest,DC=test"]),
        ("supportedCapabilities", [b"1.2.840.113556.1.4.800"]),
        ("supportedControl", [b"1.2.840.113556.1.4.319", b"1.2.840.113556.1.4.801"]),
        ("supportedLDAPPolicies", [b"MaxPoolThreads"]),
        ("supportedLDAPVersion", [b"3", b"2"]),
        ("supportedSASLMechanisms", [b"GSSAPI", b"GSS-SPNEGO"]),
        ("vendorName", [b"Samba Team (https://www.samba.org)"]),
    ]
    entry = SearchEntry("", tuple((name, tuple(values)) for name, values in attrs))
    return RootDSE.from_entry(entry)


def _netlogon() -> NetlogonSamLogonResponseEx:
    return NetlogonSamLogonResponseEx(
        opcode=23,
        opcode_name="LOGON_SAM_LOGON_RESPONSE_EX",
        flags_raw=0x3F1FD,
        flags=frozenset({"pdc", "gc", "ldap", "ds", "kdc", "timeserv", "writable"}),
        domain_guid=uuid.UUID("6f1c7a52-6b3f-4b8e-9a3e-3c2f1d0e9b7a"),
        dns_forest_name="pqtest.test",
        dns_domain_name="pqtest.test",
        dns_host_name="dc1.pqtest.test",
        netbios_domain_name="PQTEST",
        netbios_computer_name="DC1",
        user_name="",
        dc_site_name="Default-First-Site-Name",
        client_site_name="Default-First-Site-Name",
        dc_address=None,
        next_closest_site_name=None,
        nt_version=5,
        lm_nt_token=0xFFFF,
        lm20_token=0xFFFF,
    )


def _epm(uuid_text: str, annotation: str, binding: str, port: int | None) -> EpmEntry:
    protseq = binding.split(":", 1)[0]
    return EpmEntry(
        object_uuid="00000000-0000-0000-0000-000000000000",
        interface_uuid=uuid_text,
        interface_version="1.0",
        annotation=annotation,
        protocol_sequence=protseq,
        string_binding=binding,
        address="",
        endpoint=str(port or ""),
        port=port,
        transfer_syntax="8a885d04-1ceb-11c9-9fe8-08002b104860",
        interface_name="",
        provider="",
        floors=(),
        unknown_floors=(),
    )


EPM_ENTRIES = (
    _epm("ecec0d70-a603-11d0-96b1-00a0c91ece30", "NTDS Backup Interface", r"ncacn_np:\\DC1[\PIPE\lsass]", None),
    _epm(
        "e3514235-4b06-11d1-ab04-00c04fc2dcd2",
        "MS NT Directory DRS Interface",
        "ncacn_ip_tcp:198.18.1.2[49153]",
        49153,
    ),
    _epm("12345778-1234-abcd-ef00-0123456789ab", "", "ncacn_ip_tcp:198.18.1.2[49152]", 49152),
)


@dataclass(frozen=True)
class DynPort:
    """A probed dynamic RPC port, shaped as ``exporter.probes.rpc.DynamicPort``."""

    port: int
    interfaces: tuple[str, ...]
    state: str
    reason: str


@dataclass(frozen=True)
class RpcDump:
    """What the RPC probe may carry: the entries and the reachability of the dynamic ports."""

    entries: tuple[EpmEntry, ...]
    dynamic_ports: object


@dataclass(frozen=True)
class LdapDetails:
    """What the LDAP probe carries: rootDSE and LDAP ping (as ``exporter.probes.ldap.LdapDetails``)."""

    root_dse: RootDSE
    clock_offset_seconds: float | None = None
    netlogon: NetlogonSamLogonResponseEx | None = None


@dataclass(frozen=True)
class Cert:
    """A certificate summary, shaped as ``exporter.wire.x509.CertificateSummary``."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime


def _golden_cases() -> dict[str, list[str]]:
    udp, tcp = "udp", "tcp"
    krb = KrbError(
        error_code=6,
        error_name="KDC_ERR_C_PRINCIPAL_UNKNOWN",
        realm="PQTEST.TEST",
        sname="krbtgt/PQTEST.TEST",
        sname_type=2,
        stime=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        susec=0,
        ctime=None,
        cusec=None,
        crealm=None,
        cname=None,
        e_text=None,
        e_data=None,
        padata_types=(),
        etype_info2=(),
    )
    snmp = SnmpResponse(
        "v2c", "s3cret", 7, 0, "noError", 0, (VarBind("1.3.6.1.2.1.1.1.0", "octet-string", "Linux peer"),)
    )
    nbstat = NodeStatus(
        transaction_id=1,
        names=(
            NetbiosName("DC1", 0x00, 0x0400),
            NetbiosName("PQTEST", 0x1C, 0x8400),
            NetbiosName("DC1", 0x20, 0x0400),
        ),
        mac="00:15:5d:01:02:03",
        question_name="*",
        statistics=b"",
    )
    sql = (
        SqlInstance(
            (
                ("ServerName", "SQL1"),
                ("InstanceName", "MSSQLSERVER"),
                ("IsClustered", "No"),
                ("Version", "8.00.194"),
                ("tcp", "1433"),
                ("np", r"\\SQL1\pipe\sql\query"),
            )
        ),
    )
    dns_details = {
        "query_name": "portqry.microsoft.com.",
        "query_type": "A",
        "rcode_text": "NXDOMAIN",
        "authoritative": False,
    }
    tls = {
        "version": "TLSv1.3",
        "subject": "CN=dc1.pqtest.test",
        "issuer": "CN=PQTEST CA",
        "not_after": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    tls_probe = {
        "version": "TLSv1.2",
        "cipher": "ECDHE-RSA-AES256-GCM-SHA384",
        "certificate": Cert(
            "CN=dc1.pqtest.test",
            "CN=dc1.pqtest.test",
            datetime(2024, 1, 1, tzinfo=UTC),
            datetime(2026, 1, 1, tzinfo=UTC),
        ),
    }
    lor = PortState.LISTENING_OR_FILTERED
    cases: dict[tuple[str, str], tuple[ProbeResult, str]] = {
        ("states", "tcp_listening"): (
            _result(tcp, 80, PortState.LISTENING, Reason.SYN_ACK, service="http"),
            "",
        ),
        ("states", "tcp_not_listening"): (_result(tcp, 81, PortState.NOT_LISTENING, Reason.REFUSED), ""),
        ("states", "tcp_filtered"): (_result(tcp, 9101, PortState.FILTERED, Reason.TIMEOUT), ""),
        ("states", "udp_listening"): (_result(udp, 9205, PortState.LISTENING, Reason.REPLY), ""),
        ("states", "udp_not_listening"): (
            _result(udp, 9202, PortState.NOT_LISTENING, Reason.ICMP_PORT_UNREACHABLE),
            "",
        ),
        ("states", "udp_listening_or_filtered"): (_result(udp, 9201, lor, Reason.NO_REPLY), ""),
        ("states", "udp_filtered_admin"): (
            _result(udp, 9203, PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
            "",
        ),
        ("states", "local_error"): (
            _result(
                tcp,
                80,
                PortState.FILTERED,
                Reason.LOCAL_ERROR,
                service="http",
                error="Network is unreachable",
            ),
            "",
        ),
        ("ldap", "udp_rootdse"): (
            _result(
                udp,
                389,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="ldap",
                details={"ldap": _root_dse()},
            ),
            "ldap",
        ),
        ("ldap", "udp_rootdse_and_ping"): (
            _result(
                udp,
                389,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="ldap",
                details={"ldap": LdapDetails(_root_dse(), 0.5, _netlogon())},
            ),
            "ldap",
        ),
        ("ldap", "tcp_rootdse"): (
            _result(
                tcp,
                389,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="ldap",
                details={"ldap": _root_dse()},
            ),
            "ldap",
        ),
        ("ldap", "udp_no_reply"): (
            _result(udp, 389, PortState.FILTERED, Reason.PROTOCOL_NO_REPLY, service="ldap"),
            "ldap",
        ),
        ("rpc", "udp_dump"): (
            _result(
                udp,
                135,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="epmap",
                details={"rpc": EPM_ENTRIES},
            ),
            "rpc",
        ),
        ("rpc", "tcp_dump_dynamic"): (
            _result(
                tcp,
                135,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="epmap",
                details={"rpc": RpcDump(EPM_ENTRIES, {49153: PortState.LISTENING, 49152: PortState.FILTERED})},
            ),
            "rpc",
        ),
        ("rpc", "tcp_dump_probe_shape"): (
            _result(
                tcp,
                135,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="epmap",
                details={
                    "rpc": RpcDump(
                        EPM_ENTRIES[1:2],
                        (
                            DynPort(49153, ("drsuapi", "lsarpc"), "listening", "syn-ack"),
                            DynPort(49154, ("samr",), "filtered", "timeout"),
                        ),
                    )
                },
            ),
            "rpc",
        ),
        ("rpc", "tcp_refused"): (
            _result(
                tcp,
                135,
                PortState.LISTENING,
                Reason.PROTOCOL_REFUSED,
                service="epmap",
                error="endpoint mapper refused: nca_s_op_rng_error",
            ),
            "rpc",
        ),
        ("netbios", "udp_node_status"): (
            _result(
                udp,
                137,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="netbios-ns",
                details={"netbios": nbstat},
            ),
            "netbios",
        ),
        ("snmp", "udp_sysdescr"): (
            _result(udp, 161, PortState.LISTENING, Reason.PROTOCOL_REPLY, service="snmp", details={"snmp": snmp}),
            "snmp",
        ),
        ("snmp", "udp_wrong_community"): (
            _result(udp, 161, PortState.FILTERED, Reason.PROTOCOL_NO_REPLY, service="snmp"),
            "snmp",
        ),
        ("dns", "udp_reply"): (
            _result(
                udp,
                53,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="domain",
                details={"dns": dns_details},
            ),
            "dns",
        ),
        ("kerberos", "udp_krb_error"): (
            _result(
                udp,
                88,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="kerberos",
                details={"kerberos": krb},
            ),
            "kerberos",
        ),
        ("tls", "tcp_certificate"): (
            _result(tcp, 636, PortState.LISTENING, Reason.PROTOCOL_REPLY, service="ldaps", details={"tls": tls}),
            "tls",
        ),
        ("tls", "tcp_ldaps"): (
            _result(
                tcp,
                636,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="ldaps",
                details={"tls": tls_probe, "ldap": LdapDetails(_root_dse())},
            ),
            "ldaps",
        ),
        ("mssql", "udp_instances"): (
            _result(
                udp,
                1434,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="ms-sql-m",
                details={"mssql": sql},
            ),
            "mssql",
        ),
    }
    out: dict[str, list[str]] = {}
    for (group, name), (result, probe) in cases.items():
        out.setdefault(group, []).append(f"----- {name}")
        out[group] += fmt.port_lines(result, probe_name=probe, community="s3cret")
    out["header"] = [
        "----- name",
        *fmt.target_lines("dc1.pqtest.test"),
        *fmt.name_resolution_lines("198.18.1.2"),
        *fmt.QUERYING_LINES,
        "----- address",
        *fmt.target_lines("198.18.1.2"),
        *fmt.reverse_resolution_lines("dc1.pqtest.test"),
        *fmt.QUERYING_LINES,
        "----- address_without_ptr",
        *fmt.reverse_resolution_lines(None),
        "----- log",
        *fmt.log_header("portqry -n 198.18.1.2 -e 443 -nr -l pqlog.txt -q", "SOURCESERVER", now=0),
        "TCP port 443 (https service): LISTENING",
        *fmt.log_footer(),
    ]
    return out


@pytest.mark.parametrize(
    "group", ["states", "ldap", "rpc", "netbios", "snmp", "dns", "kerberos", "tls", "mssql", "header"]
)
def test_golden_layout(group: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        text = "\n".join(_golden_cases()[group]) + "\n"
    finally:
        monkeypatch.undo()
        time.tzset()
    path = GOLDEN / f"cli_{group}.txt"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with PORTQRY_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def test_golden_ldap_follows_portqrys_order() -> None:
    lines = fmt.root_dse_lines(_root_dse())
    names = [line.split(":", 1)[0] for line in lines]
    assert names[:3] == ["currentdate", "subschemaSubentry", "dsServiceName"]
    assert lines[0] == "currentdate: 10/11/2001 23:10:21 (unadjusted GMT)"
    assert names[-1] == "vendorName"  # attributes PortQry does not list come last, as received
    assert names.count("namingContexts") == 2


def test_blocks_tolerate_missing_and_foreign_shapes() -> None:
    for name in ("ldap", "rpc", "netbios", "snmp", "dns", "kerberos", "tls", "mssql", "isa"):
        for details in (None, {}, object(), {"unexpected": 1}, [1, 2]):
            result = _result("udp", 1000, PortState.LISTENING, Reason.PROTOCOL_REPLY, details={name: details})
            lines = fmt.port_lines(result, probe_name=name)
            assert lines[-2] == "UDP port 1000 is LISTENING"
    mapping_dse = {"attributes": {"dnsHostName": ["dc1"], "currentTime": ["20240102030405.0Z"]}}
    lines = fmt.ldap_block({"root_dse": mapping_dse, "ping_error": "no reply to the LDAP ping"}, "udp", 389)
    assert "currentdate: 01/02/2024 03:04:05 (unadjusted GMT)" in lines and "dnsHostName: dc1" in lines
    assert "LDAP ping: no reply to the LDAP ping" in lines


def test_real_run_layout_matches_the_golden_file() -> None:
    """The whole text of a real run: name resolution, one LISTENING and one NOT LISTENING port."""
    with dns_server() as (address, dport, _queries), tcp_listener() as peer:
        closed = free_port()
        r = run(
            "-n",
            "host.portqry.test",
            "--dns-server",
            address,
            "--dns-port",
            str(dport),
            "-o",
            f"{peer.port},{closed}",
        )
    text = r.out
    for port, tag in ((peer.port, "<OPEN>"), (closed, "<CLOSED>")):
        text = re.sub(rf"TCP port {port} \([^)]*\)", f"TCP port {tag} (<service>)", text)
    path = GOLDEN / "cli_run.txt"
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text()


# --------------------------------------------------------------------------------------------- test bed


def test_testbed_dc_ldap_tcp_quiet_exits_0(dc: testbed.SambaDC) -> None:
    r = run("-n", dc.fqdn, "--dns-server", dc.address, "-p", "tcp", "-e", "389", "-q")
    assert r.code == 0, r.err
    assert r.out == ""


def test_testbed_closed_tcp_exits_1_and_dropped_udp_exits_2(dc: testbed.SambaDC, dc_firewall: testbed.Firewall) -> None:
    closed = run("-n", dc.fqdn, "--dns-server", dc.address, "-e", str(dc_firewall.ports.tcp_closed), "-q")
    dropped = run(
        "-n",
        dc.fqdn,
        "--dns-server",
        dc.address,
        "-p",
        "udp",
        "-e",
        str(dc_firewall.ports.udp_drop),
        "-q",
        "--timeout",
        "1",
    )
    filtered = run("-n", dc.address, "-nr", "-e", str(dc_firewall.ports.tcp_drop), "-q", "--timeout", "0.5")
    usage = run("-n", dc.fqdn, "-q", "-p", "both")
    assert (closed.code, dropped.code, filtered.code, usage.code) == (1, 2, 2, 3)


def test_testbed_udp_389_prints_the_rootdse(dc: testbed.SambaDC) -> None:
    if "ldap" not in engine.PROTOCOL_MODULES:
        pytest.skip("the LDAP protocol probe has not landed yet (engine.PROTOCOL_MODULES)")
    r = run("-n", dc.fqdn, "--dns-server", dc.address, "-p", "udp", "-e", "389")
    assert r.code == 0, r.err
    assert "LDAP query response:" in r.out
    assert f"dnsHostName: {dc.fqdn}" in r.out
    assert r.out.rstrip().splitlines()[-1] == "UDP port 389 is LISTENING"


def test_testbed_range_concurrency(dc: testbed.SambaDC, dc_firewall: testbed.Firewall) -> None:
    """A range with DROPped ports finishes in about one timeout x tries, not ports x timeout x tries."""
    fw = dc_firewall.ports
    r = run("-n", dc.address, "-nr", "-r", f"{fw.tcp_drop}:{fw.tcp_listen}", "--timeout", "0.5", "--json")
    rows = {x["port"]: x["state"] for x in map(json.loads, r.lines)}
    assert rows[fw.tcp_drop] == "filtered" and rows[fw.tcp_listen] == "listening"
    assert rows[fw.tcp_closed] == "not_listening"
    assert r.seconds < 3 * 0.5 * 2 + 1.0


def test_testbed_snmp_community(snmp_peer: testbed.SnmpPeer) -> None:
    """``-cn !community!`` reaches the SNMP probe: the right one answers, a wrong one is FILTERED."""
    if "snmp" not in engine.PROTOCOL_MODULES:
        pytest.skip("the SNMP protocol probe has not landed yet (engine.PROTOCOL_MODULES)")
    base = ["-n", snmp_peer.address, "-nr", "-p", "udp", "-e", str(snmp_peer.port), "--timeout", "1"]
    right = run(*base, "-cn", f"!{snmp_peer.community}!")
    wrong = run(*base, "-cn", "!not-the-community!")
    assert right.code == 0, right.out
    assert f"community name for query:\n\n{snmp_peer.community}\n" in right.out
    assert f"sysDescr: {snmp_peer.sys_descr}" in right.out
    assert right.lines[-2] == "UDP port 161 is LISTENING"
    assert wrong.code == 2
    assert wrong.lines[-2] == "UDP port 161 is FILTERED"

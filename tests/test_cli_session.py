"""``portqry`` around the queries: the ``-l`` log file, interactive mode (``-i``), and one-line failures
(internal errors, the console script without a traceback).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.cli import exits, interactive, query
from tests.clirun import dns_server, run
from tests.peers import tcp_listener, udp_peer


@pytest.fixture
def dns_args() -> Iterator[list[str]]:
    """``--dns-server 127.0.0.1 --dns-port N`` of a running :func:`tests.clirun.dns_server`."""
    with dns_server() as (address, port, _queries):
        yield ["--dns-server", address, "--dns-port", str(port)]


def test_log_file_has_header_same_lines_and_footer(tmp_path: Path) -> None:
    log = tmp_path / "pq.log"
    log.write_text("old\n")
    with tcp_listener() as peer:
        argv = ["-n", "127.0.0.1", "-nr", "-e", str(peer), "-l", str(log), "-y"]
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
        declined = run("-n", "127.0.0.1", "-nr", "-e", str(peer), "-l", str(log), stdin="n\n")
        assert declined.code == exits.EXIT_LOG_FILE == 6
        assert log.read_text() == "keep me\n"
        assert "Overwrite it? (y/n)" in declined.err
        accepted = run("-n", "127.0.0.1", "-nr", "-e", str(peer), "-l", str(log), stdin="y\n")
        assert accepted.code == 0 and log.read_text().startswith("PortQry Version 2.0 Log File")
        log.write_text("again\n")
        quiet = run("-n", "127.0.0.1", "-nr", "-e", str(peer), "-l", str(log), "-q")  # -q: no question
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


def test_interactive_mode_from_stdin(dns_args: list[str]) -> None:
    with tcp_listener() as peer, udp_peer(echo=True) as (echo, _):
        script = "\n".join(
            [
                "set nr",
                f"set e={peer}",
                "q",
                "set p=udp",
                f"set port={echo}",
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
    assert re.search(rf"^TCP port {peer} \(.+\): LISTENING$", r.out, re.MULTILINE)
    assert re.search(rf"^UDP port {echo} \(.+\): LISTENING$", r.out, re.MULTILINE)
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
    assert interactive.SHORTCUTS["sql"] == (("tcp", 1433), ("udp", 1434))
    assert set(interactive.SHORTCUTS) == {
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


def test_internal_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    async def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(query, "run_query", boom)
    r = run("-n", "127.0.0.1", "-nr")
    assert r.code == exits.EXIT_INTERNAL == 9
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
                str(peer),
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

"""``portqry``'s command line: PortQry's flags in both spellings, the rules on combining them, help, version.

Most cases parse only (:func:`exporter.cli.args.parse_args`); the rest run ``main()`` in-process
(:func:`tests.clirun.run`) against loopback listeners (:mod:`tests.peers`).
"""

from __future__ import annotations

import platform
from importlib import metadata

import pytest

from exporter import __version__
from exporter.cli import args, exits, query
from tests.clirun import run
from tests.peers import tcp_listener


def test_slash_and_upper_case_spellings() -> None:
    with tcp_listener() as peer:
        r = run("/N", "127.0.0.1", "/nr", "/P", "TCP", "/e", str(peer))
    assert r.code == 0
    assert "): LISTENING" in r.out


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
    assert r.code == exits.EXIT_USAGE == 3
    assert r.out == ""
    assert r.err.count("\n") == 1 and message in r.err


@pytest.mark.parametrize(
    "argv",
    [
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


def test_no_arguments_prints_the_help_as_h_does() -> None:
    r = run()
    assert (r.code, r.out, r.err) == (0, run("-h").out, "")
    assert "Exit codes" in r.out


def test_version() -> None:
    r = run("--version")
    assert r.code == 0 and r.out.startswith("portqry (portqry-exporter) ")
    name, python, libraries = r.lines
    assert name == f"portqry (portqry-exporter) {__version__}"
    assert python.startswith(f"Python {platform.python_version()} (")
    for library in ("impacket", "pyasn1", "dnspython", "pydantic", "prometheus-client", "aiohttp"):
        assert f"{library} {metadata.version(library)}" in libraries


def test_community_between_exclamation_marks() -> None:
    opts = args.parse_args(["-n", "127.0.0.1", "-cn", "!s3cret!"])
    assert query.settings_from(opts).probe_options().params.snmp_community == "s3cret"
    spaced = args.parse_args(["-n", "127.0.0.1", "-cn", "!my", "snmp", "string!", "-e", "161"])
    assert spaced.community == "my snmp string" and spaced.endpoint == 161
    assert args.parse_args(["-n", "x"]).community == "public"


def test_domain_is_passed_to_the_probes() -> None:
    opts = args.parse_args(["-n", "dc1", "--domain", "pqtest.test."])
    assert query.settings_from(opts).probe_options().params.domain == "pqtest.test"
    assert query.settings_from(args.parse_args(["-n", "dc1"])).probe_options().params.domain == ""
    assert run("-n", "dc1", "--domain", "").code == 3


def test_probe_options_are_portqrys() -> None:
    options = query.settings_from(
        args.parse_args(["-n", "x", "--timeout", "1.5", "-sp", "3000", "-sl"])
    ).probe_options()
    assert (options.tcp_tries, options.udp_tries, options.udp_unformatted_first) == (3, 1, True)
    assert (options.timeout_seconds, options.source_port, options.slow_link) == (1.5, 3000, True)


def test_unknown_service_is_a_usage_error_with_a_suggestion() -> None:
    r = run("-n", "127.0.0.1", "--service", "Kerberoz")
    assert r.code == 3
    assert "unknown service 'Kerberoz'; did you mean" in r.err and r.err.count("\n") == 1

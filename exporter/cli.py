"""``portqry``: Microsoft PortQry 2.0's command line on Linux, on the exporter's concurrent probe engine.

Usage::

    portqry -n NAME [-p tcp|udp|both] [-e PORT | -o P1,P2,... | -r START:END] [-l FILE [-y]] [-sl] [-nr]
            [-sp PORT] [-cn !COMMUNITY!] [-q] [--json] [--timeout S] [--concurrency N]
            [--dns-server ADDR [--dns-port PORT]] [--domain NAME] [--service NAME] [--profile NAME]
    portqry -i [-n NAME] [-e PORT] [-p PROTO] [-sp PORT]        interactive mode (commands on stdin)
    portqry -local | -wport PORT | -wpid PID [-wt S] [-v] [-l FILE [-y]] [--duration S] [--json]
    portqry --list-services | --list-profiles

Flags are PortQry's, in either spelling (``-n`` or ``/n``; case does not matter); see :data:`HELP` for each.
Ranges and lists are probed concurrently (``--concurrency``, default 256 probes in flight) and printed in the
requested order; with ``-sp`` they run one port at a time, as they must share the source port.

Exit codes:
    0: LISTENING (every port queried is LISTENING); local and interactive modes finished.
    1: NOT LISTENING (the worst port is NOT LISTENING).
    2: FILTERED or LISTENING or FILTERED (at least one port).  PortQry's ``-q`` errorlevels 0/1/2,
       returned with or without ``-q``; for several ports the worst wins (2 > 1 > 0).
    3: usage error (bad or conflicting flags, unknown service or profile).  Never argparse's 2.
    4: the name given with ``-n`` does not resolve.
    5: the ``-sp`` source port is in use or cannot be bound.
    6: the log file cannot be written, or overwriting it was declined.
    7: local mode failed (no such PID for ``-wpid``, sockets cannot be listed).
    8: the service catalog cannot be loaded.
    9: internal error (a bug; reported as one line, never a traceback).
    130: interrupted (Ctrl+C).
    141: stdout was closed by its reader (broken pipe).

Errors are one line on stderr (``portqry: ...``).  Network rule for tests: resolve names only through a DNS
server the test runs (``--dns-server``), and use ``-nr`` or that server for reverse lookups.

Check by hand: ``portqry -n 127.0.0.1 -nr -e 22``; ``portqry -n 127.0.0.1 -nr -p udp -r 1:1024 --json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import os
import shlex
import socket
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from exporter import __version__, local
from exporter import cli_format as fmt
from exporter.catalog import (
    CatalogDataError,
    CatalogLookupError,
    format_profile_list,
    format_service_list,
    load_catalog,
)
from exporter.engine import Engine
from exporter.errors import ResolveError
from exporter.model import PortSpec, ProbeOptions, ProbeParams
from exporter.probes import port_spec
from exporter.resolve import Resolved, Resolver, literal
from exporter.result import ProbeResult, Protocol

EXIT_LISTENING = 0
EXIT_NOT_LISTENING = 1
EXIT_FILTERED = 2
EXIT_USAGE = 3
EXIT_RESOLVE = 4
EXIT_SOURCE_PORT = 5
EXIT_LOG_FILE = 6
EXIT_LOCAL = 7
EXIT_CATALOG = 8
EXIT_INTERNAL = 9
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

#: Seconds per try when ``--timeout`` is not given (PortQry's own wait is not documented).
DEFAULT_TIMEOUT = 2.0
#: Probes in flight at most when ``--concurrency`` is not given.
DEFAULT_CONCURRENCY = 256
#: Minimum gap between two UDP datagrams to the target, seconds (``--udp-pacing``): targets rate-limit ICMP.
DEFAULT_UDP_PACING = 0.25
#: Seconds to wait for a reverse lookup (PortQry "reports an error and continues").
REVERSE_TIMEOUT = 3.0
#: Tasks created ahead of the output, per probe slot (``--concurrency``), and at least this many.
TASK_WINDOW_PER_SLOT = 4
MIN_TASK_WINDOW = 1024
#: Most commands read in one interactive session (a bound on the loop).
MAX_INTERACTIVE_COMMANDS = 100_000

#: PortQry's interactive ``query`` shortcuts ("Using the PortQry command-line tool", 2023).
SHORTCUTS: dict[str, tuple[tuple[Protocol, int], ...]] = {
    "dns": (("tcp", 53), ("udp", 53)),
    "ftp": (("tcp", 21),),
    "imap": (("tcp", 143),),
    "ipsec": (("udp", 500),),
    "isa": (("tcp", 1745), ("udp", 1745)),
    "ldap": (("tcp", 389), ("udp", 389)),
    "l2tp": (("udp", 1701),),
    "mail": (("tcp", 25), ("tcp", 110), ("tcp", 143)),
    "pop3": (("tcp", 110),),
    "rpc": (("tcp", 135), ("udp", 135)),
    "smtp": (("tcp", 25),),
    "snmp": (("udp", 161),),
    "sql": (("tcp", 1433), ("udp", 1434)),
    "tftp": (("udp", 69),),
}

HELP = """\
portqry - PortQry 2.0's port query on the exporter's engine

Command-line mode:
  portqry -n name [-p protocol] [-e port | -o ports | -r range] [options]

  -n NAME            target host name, IPv4 or IPv6 address (required)
  -p tcp|udp|both    protocol (default tcp)
  -e PORT            port 1-65535 (default 80)
  -o P1,P2,...       ports in this order (no spaces)
  -r START:END       range of ports (START;END also accepted); the RPC endpoint mapper is not queried
  -l FILE            log file: PortQry header, the same output, footer; asks before overwriting
  -y                 overwrite the log file without asking (ignored without -l, as in PortQry)
  -sl                slow link: double the wait for UDP replies
  -nr                no reverse lookup of an IP address given with -n
  -sp PORT           source port of the first query (0 = ephemeral); lists and ranges run one at a time
  -cn !COMMUNITY!    SNMP community, between exclamation marks (default public)
  -q                 quiet: print nothing but errors, exit with the port's state (not with -o, -r, -p both)
  -i                 interactive mode: node NAME, query [shortcut], set option=value, set all, help, exit
  --json             one JSON object per port result instead of PortQry's text
  --timeout S        seconds to wait per try (default 2; TCP tries 3 times, UDP once)
  --concurrency N    probes in flight at most (default 256)
  --udp-pacing S     minimum gap between UDP datagrams to the target, seconds (default 0.25; 1 keeps
                     closed UDP ports exact against Linux's one-ICMP-error-per-second limit)
  --dns-server ADDR  resolve through this DNS server (repeatable) instead of the system resolver
  --dns-port PORT    port of the --dns-server servers (default 53)
  --domain NAME      AD domain for the LDAP ping and the DNS SOA query (default: from the rootDSE)
  --service NAME     probe the ports a Windows service needs (catalog; repeatable); -p filters them
  --profile NAME     probe a profile's ports, e.g. domain-controller (repeatable)
  --list-services    list the catalog's services and their ports
  --list-profiles    list the catalog's profiles

Local mode:
  portqry -local | -wport PORT | -wpid PID [-wt SECONDS] [-v] [-l FILE [-y]]

  -local             this machine's TCP/UDP sockets with owning PID and process name
  -wport PORT        watch a local port (TCP and UDP) for changes
  -wpid PID          watch a process's sockets for changes
  -wt SECONDS        seconds between checks, 1-1200 (default 60; only with -wport/-wpid)
  -v                 verbose: systemd service, command line and loaded modules per process
  --duration S       stop watching after S seconds (else Esc, q or Ctrl+C stops)

Flags may be written -x or /x, in any case.  Use portqry -h for this text.

Exit codes:
  0  LISTENING          1  NOT LISTENING      2  FILTERED or LISTENING or FILTERED
     (several ports: the worst, 2 > 1 > 0; local and interactive modes: 0)
  3  usage error        4  name does not resolve                 5  source port in use
  6  log file error     7  local mode failed (e.g. no such PID)  8  service catalog unavailable
  9  internal error     130 interrupted                          141 broken pipe (stdout closed)
"""


class UsageError(Exception):
    """A bad or conflicting command line (exit code 3)."""


class CliError(Exception):
    """A failure with its exit code; ``str(err)`` is the one-line message."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


# --------------------------------------------------------------------------------------------- options


@dataclass
class Options:
    """The parsed command line (defaults are PortQry's)."""

    name: str | None = None
    protocol: str = "tcp"
    protocol_given: bool = False
    endpoint: int | None = None
    order: list[int] | None = None
    port_range: tuple[int, int] | None = None
    log_file: str | None = None
    overwrite: bool = False
    slow_link: bool = False
    no_reverse: bool = False
    source_port: int | None = None
    community: str = "public"
    quiet: bool = False
    interactive: bool = False
    local: bool = False
    watch_port: int | None = None
    watch_pid: int | None = None
    watch_time: int | None = None
    verbose: bool = False
    json: bool = False
    timeout: float = DEFAULT_TIMEOUT
    concurrency: int = DEFAULT_CONCURRENCY
    udp_pacing: float = DEFAULT_UDP_PACING
    dns_servers: list[str] = field(default_factory=list)
    dns_port: int = 53
    domain: str = ""
    services: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    list_services: bool = False
    list_profiles: bool = False
    duration: float | None = None
    help: bool = False
    version: bool = False


#: PortQry flags (without the leading - or /, lower case) -> (Options attribute, takes a value).
_SHORT_FLAGS: dict[str, tuple[str, bool]] = {
    "n": ("name", True),
    "p": ("protocol", True),
    "e": ("endpoint", True),
    "o": ("order", True),
    "r": ("port_range", True),
    "l": ("log_file", True),
    "y": ("overwrite", False),
    "sl": ("slow_link", False),
    "s": ("slow_link", False),  # PortQry 1.22's /s
    "nr": ("no_reverse", False),
    "sp": ("source_port", True),
    "cn": ("community", True),
    "q": ("quiet", False),
    "i": ("interactive", False),
    "local": ("local", False),
    "wport": ("watch_port", True),
    "wpid": ("watch_pid", True),
    "wt": ("watch_time", True),
    "v": ("verbose", False),
    "h": ("help", False),
    "?": ("help", False),
    "help": ("help", False),
}

_LONG_FLAGS: dict[str, tuple[str, bool]] = {
    "json": ("json", False),
    "timeout": ("timeout", True),
    "concurrency": ("concurrency", True),
    "udp-pacing": ("udp_pacing", True),
    "dns-server": ("dns_servers", True),
    "dns-port": ("dns_port", True),
    "domain": ("domain", True),
    "service": ("services", True),
    "profile": ("profiles", True),
    "list-services": ("list_services", False),
    "list-profiles": ("list_profiles", False),
    "duration": ("duration", True),
    "help": ("help", False),
    "version": ("version", False),
}


def _port(text: str, flag: str, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if not text.isdigit() or not low <= int(text) <= 65535:
        raise UsageError(f"{flag}: {text!r} is not a port number ({low}-65535)")
    return int(text)


def _number(text: str, flag: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not a number") from None
    if not low <= value <= high:
        raise UsageError(f"{flag}: {text!r} must be between {low:g} and {high:g}")
    return value


def _community(text: str) -> str:
    if len(text) < 2 or not (text.startswith("!") and text.endswith("!")):
        raise UsageError(f"-cn: the community must be enclosed in exclamation marks, e.g. -cn !public! (got {text!r})")
    return text[1:-1]


def _set(opts: Options, attr: str, flag: str, value: str | None) -> None:
    """Store one flag's value on ``opts``, validated."""
    if value is None:
        setattr(opts, attr, True)
        return
    if attr == "name":
        if not value or any(c.isspace() for c in value):
            raise UsageError(f"{flag}: the name cannot be empty or contain spaces")
        opts.name = value
    elif attr == "protocol":
        if value.lower() not in ("tcp", "udp", "both"):
            raise UsageError(f"{flag}: protocol must be tcp, udp or both (got {value!r})")
        opts.protocol, opts.protocol_given = value.lower(), True
    elif attr == "endpoint":
        opts.endpoint = _port(value, flag)
    elif attr == "order":
        parts = value.split(",")
        ports = [_port(p, flag) for p in parts]
        opts.order = list(dict.fromkeys(ports))
    elif attr == "port_range":
        sep = ":" if ":" in value else ";"
        start_text, _, end_text = value.partition(sep)
        start, end = _port(start_text, flag), _port(end_text, flag)
        if start >= end:
            raise UsageError(f"{flag}: the starting port must be lower than the ending port (got {value!r})")
        opts.port_range = (start, end)
    elif attr == "source_port":
        port = _port(value, flag, allow_zero=True)
        opts.source_port = port or None
    elif attr in ("watch_port",):
        opts.watch_port = _port(value, flag)
    elif attr == "watch_pid":
        if not value.isdigit():
            raise UsageError(f"{flag}: {value!r} is not a process id")
        opts.watch_pid = int(value)
    elif attr == "watch_time":
        if not value.isdigit() or not 1 <= int(value) <= 1200:
            raise UsageError(f"{flag}: the watch time must be 1-1200 seconds (got {value!r})")
        opts.watch_time = int(value)
    elif attr == "community":
        opts.community = _community(value)
    elif attr == "timeout":
        opts.timeout = _number(value, flag, 0.001, 600)
    elif attr == "concurrency":
        if not value.isdigit() or not 1 <= int(value) <= 65536:
            raise UsageError(f"{flag}: must be an integer 1-65536 (got {value!r})")
        opts.concurrency = int(value)
    elif attr == "udp_pacing":
        opts.udp_pacing = _number(value, flag, 0, 10)
    elif attr == "dns_servers":
        if literal(value) is None:
            raise UsageError(f"{flag}: {value!r} is not an IP address")
        opts.dns_servers.append(value.strip("[]"))
    elif attr == "dns_port":
        opts.dns_port = _port(value, flag)
    elif attr == "domain":
        if not value or any(c.isspace() for c in value) or len(value) > 253:
            raise UsageError(f"{flag}: {value!r} is not a DNS domain name")
        opts.domain = value.rstrip(".")
    elif attr in ("services", "profiles"):
        getattr(opts, attr).append(value)
    elif attr == "log_file":
        if not value:
            raise UsageError(f"{flag}: the log file name cannot be empty")
        opts.log_file = value
    elif attr == "duration":
        opts.duration = _number(value, flag, 0.001, 7 * 24 * 3600)
    else:  # pragma: no cover - the tables above and this function are kept in step
        raise UsageError(f"{flag}: unsupported")


def parse_args(argv: Sequence[str]) -> Options:
    """Parse PortQry's command line.

    Flags are ``-x`` or ``/x`` (case-insensitive) for PortQry's own, ``--name`` or ``--name=value`` for ours.
    Values are taken as they are (a log path may start with ``/``).  ``-cn`` joins words until the one
    ending in ``!`` (``-cn !my community!``).

    Raises:
        UsageError: unknown flag, missing or bad value, conflicting flags.
    """
    opts = Options()
    tokens = list(argv)
    i = 0
    seen: set[str] = set()
    while i < len(tokens):
        token = tokens[i]
        i += 1
        inline: str | None = None
        if token.startswith("--"):
            name, eq, rest = token[2:].partition("=")
            spec = _LONG_FLAGS.get(name.lower())
            inline = rest if eq else None
            flag = f"--{name}"
        elif token[:1] in ("-", "/") and len(token) > 1:
            spec = _SHORT_FLAGS.get(token[1:].lower())
            flag = f"-{token[1:].lower()}"
        else:
            raise UsageError(f"unexpected argument {token!r}")
        if spec is None:
            raise UsageError(f"unknown option {token!r}")
        attr, takes_value = spec
        repeatable = attr in ("dns_servers", "services", "profiles")
        if attr in seen and not repeatable and takes_value:
            raise UsageError(f"{flag} given twice")
        seen.add(attr)
        if not takes_value:
            if inline is not None:
                raise UsageError(f"{flag} takes no value")
            _set(opts, attr, flag, None)
            continue
        if inline is None:
            if i >= len(tokens):
                raise UsageError(f"{flag} needs a value")
            inline = tokens[i]
            i += 1
            if attr == "community" and inline.startswith("!") and (inline == "!" or not inline.endswith("!")):
                words = [inline]
                while i < len(tokens):  # -cn !my community!: join words up to the closing !
                    words.append(tokens[i])
                    i += 1
                    if words[-1].endswith("!"):
                        break
                inline = " ".join(words)
        _set(opts, attr, flag, inline)
    _validate(opts, seen)
    return opts


def _validate(opts: Options, seen: set[str]) -> None:
    """PortQry's rules on combinations (and ours).

    Raises:
        UsageError: the first broken rule.
    """
    if opts.help or opts.version:
        return
    ports_given = [f for f, a in (("-e", "endpoint"), ("-o", "order"), ("-r", "port_range")) if a in seen]
    local_modes = [f for f, a in (("-local", "local"), ("-wport", "watch_port"), ("-wpid", "watch_pid")) if a in seen]
    catalog = bool(opts.services or opts.profiles)
    if len(ports_given) > 1:
        raise UsageError(f"{' and '.join(ports_given)} cannot be used together (use one of -e, -o, -r)")
    if catalog and ports_given:
        raise UsageError(f"--service/--profile cannot be used with {ports_given[0]}")
    if len(local_modes) > 1:
        raise UsageError(f"{' and '.join(local_modes)} cannot be used together")
    if "watch_time" in seen and not (opts.watch_port is not None or opts.watch_pid is not None):
        raise UsageError("-wt is only used with -wport or -wpid")
    if opts.duration is not None and not (opts.watch_port is not None or opts.watch_pid is not None):
        raise UsageError("--duration is only used with -wport or -wpid")
    if opts.list_services or opts.list_profiles:
        if opts.name or local_modes or opts.interactive:
            raise UsageError("--list-services/--list-profiles take no target")
        return
    if local_modes:
        if opts.name is not None:
            raise UsageError(f"-n cannot be used with {local_modes[0]} (local mode)")
        if opts.quiet:
            raise UsageError("-q does not work in local mode")
        if opts.interactive:
            raise UsageError(f"-i cannot be used with {local_modes[0]}")
        if ports_given or catalog:
            raise UsageError(f"{local_modes[0]} takes no -e, -o, -r, --service or --profile")
        return
    if opts.quiet:
        if opts.order is not None or opts.port_range is not None:
            raise UsageError("-q cannot be used with -o or -r")
        if opts.protocol == "both":
            raise UsageError("-q cannot be used with -p both")
        if opts.interactive:
            raise UsageError("-q cannot be used with -i")
        if opts.json:
            raise UsageError("-q cannot be used with --json")
    if opts.interactive:
        if opts.order is not None or opts.port_range is not None or catalog:
            raise UsageError("-i takes -e, not -o, -r, --service or --profile")
        return
    if opts.name is None:
        raise UsageError("-n NAME is required (or -i, -local, -wport, -wpid, --list-services)")


# --------------------------------------------------------------------------------------------- output


class Output:
    """Where the command's lines go: stdout (unless quiet) and the log file (always), errors to stderr.

    Args:
        stdout: the text stream for results.
        stderr: the text stream for errors and prompts.
        quiet: ``-q``: nothing on stdout.
        log: the open log file, or ``None``.
    """

    def __init__(self, stdout: TextIO, stderr: TextIO, *, quiet: bool = False, log: TextIO | None = None) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.quiet = quiet
        self.log = log

    def lines(self, lines: Sequence[str]) -> None:
        """Write text lines."""
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        if not self.quiet:
            self.stdout.write(text)
            self.stdout.flush()
        if self.log is not None:
            self.log.write(text)
            self.log.flush()

    def json(self, obj: dict[str, Any]) -> None:
        """Write one JSON object as one line."""
        self.lines([json.dumps(obj, separators=(",", ":"), default=str)])

    def error(self, message: str) -> None:
        """One line on stderr (``portqry: ...``), also in the log file."""
        self.stderr.write(f"portqry: {message}\n")
        self.stderr.flush()
        if self.log is not None:
            self.log.write(f"{message}\n")
            self.log.flush()

    def prompt(self, text: str) -> None:
        """An interactive prompt (stdout only, never logged)."""
        if not self.quiet:
            self.stdout.write(text)
            self.stdout.flush()


def open_log(path: str, *, overwrite: bool, stdin: TextIO, stderr: TextIO) -> TextIO:
    """Open the ``-l`` log file for writing, asking before overwriting an existing file.

    Args:
        path: the file (relative to the working directory, as PortQry).
        overwrite: ``-y`` (or ``-q``): do not ask.
        stdin: where the answer is read (one line; ``y`` or ``yes`` overwrites).
        stderr: where the question is asked.

    Raises:
        CliError: exit 6 - the answer was not yes, or the file cannot be opened.
    """
    if os.path.exists(path) and not overwrite:
        stderr.write(f"Log file {path} already exists. Overwrite it? (y/n) ")
        stderr.flush()
        answer = stdin.readline()
        if answer.strip().lower() not in ("y", "yes"):
            raise CliError(EXIT_LOG_FILE, f"log file {path} exists and was not overwritten (use -y)")
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise CliError(EXIT_LOG_FILE, f"cannot write log file {path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class QuerySettings:
    """How one query runs (from the command line or the interactive ``set`` options)."""

    timeout: float = DEFAULT_TIMEOUT
    slow_link: bool = False
    no_reverse: bool = False
    source_port: int | None = None
    community: str = "public"
    concurrency: int = DEFAULT_CONCURRENCY
    udp_pacing: float = DEFAULT_UDP_PACING
    dns_servers: tuple[str, ...] = ()
    dns_port: int = 53
    domain: str = ""
    json: bool = False

    def probe_options(self) -> ProbeOptions:
        """The engine options: PortQry's tries (TCP 3, UDP 1) and its unformatted datagram first."""
        return ProbeOptions(
            timeout_seconds=self.timeout,
            tcp_tries=3,
            udp_tries=1,
            source_port=self.source_port,
            slow_link=self.slow_link,
            protocol_probes=True,
            udp_unformatted_first=True,
            params=ProbeParams(domain=self.domain or "", snmp_community=self.community),
        )


def port_pairs(protocol: str, ports: Sequence[int]) -> list[tuple[Protocol, int]]:
    """``(protocol, port)`` in query order; ``both`` queries TCP then UDP for each port, as PortQry."""
    protocols: tuple[Protocol, ...] = ("tcp", "udp") if protocol == "both" else (protocol,)  # type: ignore[assignment]
    return [(proto, port) for port in ports for proto in protocols]


def build_specs(pairs: Sequence[tuple[Protocol, int]], *, range_mode: bool) -> list[PortSpec]:
    """PortSpecs for ``pairs``; in ``-r`` mode the RPC endpoint-mapper follow-up is switched off (PortQry)."""
    specs = []
    for proto, port in pairs:
        spec = port_spec(proto, port)
        if range_mode and spec.binding == "rpc":
            spec = port_spec(proto, port, binding="")
        specs.append(spec)
    return specs


def check_source_port(port: int, family: int, protocols: set[str]) -> None:
    """Fail early, as PortQry does, if the ``-sp`` port cannot be bound for the protocols queried.

    The check binds the way the engine will (``SO_REUSEADDR``): a listener or a socket bound without
    ``SO_REUSEADDR`` on that port makes it busy.

    Raises:
        CliError: exit 5.
    """
    host = "::" if family == socket.AF_INET6 else "0.0.0.0"
    for proto in sorted(protocols):
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(family, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise CliError(
                        EXIT_SOURCE_PORT,
                        f"Cannot use specified source port {port} ({proto.upper()}). Port is already in use. "
                        "Specify a port that is not in use and run the command again.",
                    ) from None
                raise CliError(
                    EXIT_SOURCE_PORT,
                    f"Cannot use specified source port {port} ({proto.upper()}): {exc.strerror}",
                ) from None


def verdict(results: Sequence[ProbeResult]) -> int:
    """The exit code of several results: the worst PortQry errorlevel (2 > 1 > 0); 0 when empty."""
    return max((r.state.exit_code for r in results), default=EXIT_LISTENING)


async def _resolve(host: str, settings: QuerySettings, resolver: Resolver, out: Output) -> Resolved:
    lit = literal(host)
    if lit is not None:
        if not settings.no_reverse:
            try:
                name = await asyncio.wait_for(resolver.reverse(lit.address), REVERSE_TIMEOUT)
            except TimeoutError:
                name = None
            if not settings.json:
                out.lines(fmt.reverse_resolution_lines(name))
        return lit
    if not settings.json:
        out.lines(["Attempting to resolve name to IP address...", ""])
    try:
        resolved = await resolver.resolve(host)
    except ResolveError as exc:
        raise CliError(EXIT_RESOLVE, f"Failed to resolve name to IP address: {exc}") from None
    if not settings.json:
        out.lines([f"Name resolved to {resolved.address}", ""])
    return resolved


async def run_query(
    host: str,
    specs: Sequence[PortSpec],
    settings: QuerySettings,
    out: Output,
    *,
    notes: Sequence[str] = (),
) -> list[ProbeResult]:
    """Resolve ``host``, probe ``specs`` concurrently and print each result in order as soon as it can be.

    Args:
        host: the ``-n`` value (name, IPv4 or IPv6 literal).
        specs: the ports, in output order.
        settings: timeouts, source port, resolver, output format.
        out: the output.
        notes: text lines printed after "querying..." (e.g. catalog rows that are not probed).

    Returns:
        The results, in the order of ``specs``.

    Raises:
        CliError: the name does not resolve (exit 4), the source port is busy (exit 5).
    """
    resolver = Resolver(settings.dns_servers, port=settings.dns_port)
    serial = settings.source_port is not None
    engine = Engine(
        concurrency=1 if serial else settings.concurrency,
        udp_pacing_seconds=settings.udp_pacing,
        resolver=resolver,
    )
    if not settings.json:
        out.lines(fmt.target_lines(host))
    resolved = await _resolve(host, settings, resolver, out)
    if settings.source_port is not None:
        check_source_port(settings.source_port, resolved.family, {s.protocol for s in specs})
    if not settings.json:
        out.lines([*fmt.QUERYING_LINES, *notes])
    options = settings.probe_options()
    results: list[ProbeResult] = []

    def show(spec: PortSpec, result: ProbeResult) -> None:
        results.append(result)
        if settings.json:
            out.json(result.to_json())
        else:
            out.lines(
                fmt.port_lines(
                    result,
                    probe_name=spec.binding,
                    source_port=settings.source_port,
                    community=settings.community,
                )
            )

    if serial:
        for spec in specs:
            show(spec, await engine.probe_port(host, host, resolved, spec, options))
        return results
    # A sliding window of tasks, in output order: the engine's semaphore bounds what is in flight, the window
    # bounds memory (a 131,070-port "-p both -r 1:65535" never holds more than `window` pending tasks).
    window = max(TASK_WINDOW_PER_SLOT * settings.concurrency, MIN_TASK_WINDOW)
    pending: deque[tuple[PortSpec, asyncio.Task[ProbeResult]]] = deque()
    queue = iter(specs)
    try:
        while True:
            for spec in itertools.islice(queue, window - len(pending)):
                pending.append((spec, asyncio.create_task(engine.probe_port(host, host, resolved, spec, options))))
            if not pending:
                break
            spec, task = pending.popleft()
            show(spec, await task)
    finally:
        for _, task in pending:
            task.cancel()
        await asyncio.gather(*(task for _, task in pending), return_exceptions=True)
    return results


def settings_from(opts: Options) -> QuerySettings:
    """The query settings of a parsed command line."""
    return QuerySettings(
        timeout=opts.timeout,
        slow_link=opts.slow_link,
        no_reverse=opts.no_reverse,
        source_port=opts.source_port,
        community=opts.community,
        concurrency=opts.concurrency,
        udp_pacing=opts.udp_pacing,
        dns_servers=tuple(opts.dns_servers),
        dns_port=opts.dns_port,
        domain=opts.domain,
        json=opts.json,
    )


def catalog_specs(opts: Options) -> tuple[list[PortSpec], list[str]]:
    """The ports of ``--service``/``--profile`` (filtered by an explicit ``-p``) and lines about the rest.

    Raises:
        UsageError: an unknown service or profile name (with the catalog's suggestion).
        CliError: exit 8 - the catalog cannot be loaded.
    """
    try:
        expansion = load_catalog().expand(opts.services, opts.profiles)
    except CatalogLookupError as exc:
        raise UsageError(str(exc)) from None
    except (CatalogDataError, OSError) as exc:
        raise CliError(EXIT_CATALOG, f"service catalog cannot be loaded: {exc}") from None
    wanted = ("tcp", "udp") if not opts.protocol_given or opts.protocol == "both" else (opts.protocol,)
    specs = [port_spec(p.protocol, p.port, service=p.service) for p in expansion.ports if p.protocol in wanted]
    notes: list[str] = []
    for item in expansion.dynamic_rpc:
        notes.append(f"{item.row.spec} ({item.source}): dynamic RPC, checked through the endpoint mapper on TCP 135")
    for item in expansion.not_probed:
        why = "no port" if item.reason == "no_port" else "port range, not swept"
        notes.append(f"{item.row.spec} ({item.source}): not probed ({why})")
    if not specs:
        raise UsageError("the services and profiles given have no port to probe with this -p")
    return specs, [*notes, ""] if notes else []


def _command_mode(opts: Options, out: Output) -> int:
    settings = settings_from(opts)
    notes: list[str] = []
    if opts.services or opts.profiles:
        specs, notes = catalog_specs(opts)
    else:
        if opts.order is not None:
            ports = opts.order
        elif opts.port_range is not None:
            ports = list(range(opts.port_range[0], opts.port_range[1] + 1))
        else:
            ports = [opts.endpoint or 80]
        specs = build_specs(port_pairs(opts.protocol, ports), range_mode=opts.port_range is not None)
    assert opts.name is not None  # _validate
    results = asyncio.run(run_query(opts.name, specs, settings, out, notes=notes))
    return verdict(results)


# --------------------------------------------------------------------------------------------- interactive


@dataclass
class InteractiveState:
    """The interactive mode's current node and options (``set all`` shows them)."""

    node: str = "127.0.0.1"
    port: int = 80
    protocol: str = "tcp"
    settings: QuerySettings = field(default_factory=QuerySettings)

    def lines(self) -> list[str]:
        """``Current option values:`` as PortQry prints them, plus our extra options."""
        sport = self.settings.source_port
        return [
            "Current option values:",
            f"   end port= {self.port}",
            f"   protocol= {self.protocol.upper()}",
            f"   source port= {sport} " if sport else "   source port= 0 (ephemeral)",
            f"   community= {self.settings.community}",
            f"   reverse name lookup= {'off' if self.settings.no_reverse else 'on'}",
            f"   slow link delay= {'on' if self.settings.slow_link else 'off'}",
            f"   timeout= {self.settings.timeout:g} seconds",
            "",
        ]


INTERACTIVE_HELP = [
    "Commands:",
    "   node <name>, n <name>     set the destination (name, IPv4 or IPv6 address)",
    "   query, q                  query the current node with the current options",
    "   q <shortcut>              " + " ".join(SHORTCUTS),
    "   set all                   show the current option values",
    "   set port=<n>, set e=<n>   target port",
    "   set sport=<n>, set sp=<n> source port (0 = ephemeral)",
    "   set protocol=<p>, p=<p>   tcp, udp or both",
    "   set cn=<community>        SNMP community",
    "   set nr                    turn reverse name lookup off or on",
    "   set sl                    turn slow link delay on or off",
    "   set timeout=<seconds>     wait per try",
    "   exit                      leave interactive mode",
    "",
]


def _interactive_set(state: InteractiveState, arg: str, out: Output) -> None:
    key, eq, value = arg.partition("=")
    key = key.strip().lower()
    value = value.strip()
    settings = state.settings
    try:
        if key == "all" and not eq:
            out.lines(state.lines())
        elif key == "nr" and not eq:
            state.settings = replace(settings, no_reverse=not settings.no_reverse)
            out.lines([f"reverse name lookup {'off' if state.settings.no_reverse else 'on'}", ""])
        elif key == "sl" and not eq:
            state.settings = replace(settings, slow_link=not settings.slow_link)
            out.lines([f"slow link delay {'on' if state.settings.slow_link else 'off'}", ""])
        elif not eq:
            raise UsageError(f"set {arg}: expected option=value (type 'help')")
        elif key in ("port", "e"):
            state.port = _port(value, "set port")
        elif key in ("sport", "sp"):
            state.settings = replace(settings, source_port=_port(value, "set sport", allow_zero=True) or None)
        elif key in ("protocol", "p"):
            if value.lower() not in ("tcp", "udp", "both"):
                raise UsageError(f"set protocol: must be tcp, udp or both (got {value!r})")
            state.protocol = value.lower()
        elif key == "cn":
            community = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == "!" else value
            state.settings = replace(settings, community=community)
        elif key == "timeout":
            state.settings = replace(settings, timeout=_number(value, "set timeout", 0.001, 600))
        else:
            raise UsageError(f"set: unknown option {key!r} (type 'help')")
    except UsageError as exc:
        out.error(str(exc))


def interactive(opts: Options, out: Output, stdin: TextIO) -> int:
    """PortQry's interactive mode: read commands from ``stdin`` until ``exit`` or end of input.

    Commands: ``node|n NAME``, ``query|q [shortcut]``, ``set option=value``, ``set all``, ``set nr``,
    ``set sl``, ``help``, ``exit``.  A failing query (name that does not resolve, busy source port) prints
    its error and the session goes on.

    Returns:
        0 (the exit code of interactive mode).
    """
    state = InteractiveState(
        node=opts.name or "127.0.0.1",
        port=opts.endpoint or 80,
        protocol=opts.protocol,
        settings=settings_from(opts),
    )
    out.lines(
        [
            "Portqry Interactive Mode",
            "",
            "Type 'help' for a list of commands",
            "",
            f"Default Node: {state.node}",
            "",
        ]
    )
    out.lines(state.lines()[:4])
    for _ in range(MAX_INTERACTIVE_COMMANDS):
        out.prompt("> ")
        line = stdin.readline()
        if not line:
            out.prompt("\n")
            break
        words = line.split()
        if not words:
            continue
        verb, args = words[0].lower(), words[1:]
        if verb in ("exit", "quit", "bye"):
            break
        if verb in ("help", "?", "h"):
            out.lines(INTERACTIVE_HELP)
        elif verb in ("node", "n", "server"):
            if len(args) != 1:
                out.error("usage: node <name>")
                continue
            state.node = args[0]
            out.lines([f"Default Node: {state.node}", ""])
        elif verb in ("query", "q"):
            if len(args) > 1:
                out.error("usage: query [shortcut]")
                continue
            if args:
                pairs = SHORTCUTS.get(args[0].lower())
                if pairs is None:
                    out.error(f"unknown shortcut {args[0]!r}; shortcuts: {' '.join(SHORTCUTS)}")
                    continue
                specs = build_specs(pairs, range_mode=False)
            else:
                specs = build_specs(port_pairs(state.protocol, [state.port]), range_mode=False)
            try:
                asyncio.run(run_query(state.node, specs, state.settings, out))
            except CliError as exc:
                out.error(str(exc))
        elif verb == "set":
            if not args:
                out.error("usage: set option=value, set all, set nr, set sl")
                continue
            _interactive_set(state, " ".join(args), out)
        else:
            out.error(f"unknown command {words[0]!r}; type 'help' for a list of commands")
    return 0


# --------------------------------------------------------------------------------------------- local mode


def _local_mode(opts: Options, out: Output, stdin: TextIO) -> int:
    try:
        if opts.local:
            sockets = local.snapshot()
            if opts.json:
                for sock in sockets:
                    out.json(sock.to_json())
            else:
                out.lines(local.local_lines(sockets, verbose=opts.verbose))
            return 0
        local.watch(
            emit=out.lines,
            emit_json=out.json if opts.json else None,
            port=opts.watch_port,
            pid=opts.watch_pid,
            interval=float(opts.watch_time or 60),
            duration=opts.duration,
            verbose=opts.verbose,
            stdin=stdin,
        )
    except local.LocalModeError as exc:
        raise CliError(EXIT_LOCAL, str(exc)) from None
    return 0


# --------------------------------------------------------------------------------------------- main


def _catalog_listing(opts: Options) -> str:
    try:
        text = format_service_list() if opts.list_services else ""
        return text + (format_profile_list() if opts.list_profiles else "")
    except (CatalogDataError, OSError) as exc:
        raise CliError(EXIT_CATALOG, f"service catalog cannot be loaded: {exc}") from None


def _run(opts: Options, argv: Sequence[str], stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    if opts.list_services or opts.list_profiles:
        stdout.write(_catalog_listing(opts))
        return 0
    log: TextIO | None = None
    if opts.log_file:
        log = open_log(opts.log_file, overwrite=opts.overwrite or opts.quiet, stdin=stdin, stderr=stderr)
        command = shlex.join(["portqry", *argv])
        log.write("\n".join(fmt.log_header(command, socket.gethostname())) + "\n")
    out = Output(stdout, stderr, quiet=opts.quiet, log=log)
    try:
        if opts.local or opts.watch_port is not None or opts.watch_pid is not None:
            return _local_mode(opts, out, stdin)
        if opts.interactive:
            return interactive(opts, out, stdin)
        return _command_mode(opts, out)
    except CliError as exc:
        out.error(str(exc))
        return exc.code
    finally:
        if log is not None:
            with contextlib.suppress(OSError):
                log.write("\n".join(fmt.log_footer()) + "\n")
                log.close()


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``portqry``.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).
        stdin: interactive commands and the log-overwrite answer (default ``sys.stdin``).
        stdout: results (default ``sys.stdout``).
        stderr: errors and prompts (default ``sys.stderr``).

    Returns:
        The exit code (see the module docstring): 0/1/2 the ports' verdict, 3 usage, 4 name does not
        resolve, 5 source port in use, 6 log file, 7 local mode, 8 catalog, 9 internal, 130 interrupted,
        141 broken pipe.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr

    def err(message: str) -> None:
        stderr.write(f"portqry: {message}\n")
        stderr.flush()

    try:
        opts = parse_args(args)
    except UsageError as exc:
        err(f"{exc} (portqry -h for help)")
        return EXIT_USAGE
    if opts.help:
        stdout.write(HELP)
        return 0
    if opts.version:
        stdout.write(f"portqry (portqry-exporter) {__version__}\n")
        return 0
    try:
        return _run(opts, args, stdin, stdout, stderr)
    except UsageError as exc:
        err(f"{exc} (portqry -h for help)")
        return EXIT_USAGE
    except CliError as exc:
        err(str(exc))
        return exc.code
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (portqry ... | head)
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush at exit
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - the last guard: one line, never a traceback
        err(f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``portqry``'s command line: PortQry 2.0's flags in either spelling (``-n`` or ``/n``, any case), our long
flags, the rules on combining them, and the help text.

Source: PortQry 2.0's own help (``portqry /?``) and "Using the PortQry command-line tool" (2023).
:func:`parse_args` turns ``argv`` into :class:`Options` or raises :class:`~exporter.cli.exits.UsageError`
(exit 3, never argparse's 2).  Check by hand: ``portqry -h``; ``portqry /N 127.0.0.1 /E 22 /NR``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from exporter.cli.exits import UsageError
from exporter.resolve import literal

#: Seconds per try when ``--timeout`` is not given (PortQry's own wait is not documented).
DEFAULT_TIMEOUT = 2.0
#: Probes in flight at most when ``--concurrency`` is not given.
DEFAULT_CONCURRENCY = 256
#: Minimum gap between two UDP datagrams to the target, seconds (``--udp-pacing``): targets rate-limit ICMP.
DEFAULT_UDP_PACING = 0.25


HELP = """\
portqry - PortQry 2.0's port query on the exporter's engine

Command-line mode:
  portqry -n name [-p protocol] [-e port | -o ports | -r range] [options]
  portqry --domain DOMAIN [--dns-server ADDR] [-p protocol] [-e port | -o ports | -r range] [options]

  -n NAME            target host name, IPv4 or IPv6 address (required, unless --domain finds the targets)
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
  --json             one JSON object per port result instead of PortQry's text (--domain without -n:
                     first a {"type": "domain_controller", ...} object per DC found)
  --timeout S        seconds to wait per try (default 2; TCP tries 3 times, UDP once)
  --concurrency N    probes in flight at most (default 256)
  --udp-pacing S     minimum gap between UDP datagrams to the target, seconds (default 0.25; 1 keeps
                     closed UDP ports exact against Linux's one-ICMP-error-per-second limit)
  --dns-server ADDR  resolve through this DNS server (repeatable) instead of the system resolver
  --dns-port PORT    port of the --dns-server servers (default 53)
  --domain NAME      with -n: AD domain for the LDAP ping, the Kerberos realm and the DNS SOA query
                     (default: from the rootDSE).  Without -n: find the domain's DCs (DNS SRV records
                     _ldap._tcp.dc._msdcs.NAME through --dns-server, else the system resolver, then the
                     LDAP ping of each), list them with site and roles, then query each DC in SRV order
                     (default ports: the domain-controller profile; -p, -e, -o, -r, --service and
                     --profile choose others).  No DC found: exit 4
  --site NAME        with --domain and no -n: only this site's DCs (_ldap._tcp.NAME._sites...; repeatable)
  --service NAME     probe the ports a Windows service needs (catalog; repeatable); -p filters them
  --profile NAME     probe a profile's ports, e.g. domain-controller (repeatable)
  --list-services    list the catalog's services and their ports
  --list-profiles    list the catalog's profiles
  --version          print the version, Python's and the key libraries' (impacket, pyasn1, ...)

Local mode:
  portqry -local | -wport PORT | -wpid PID [-wt SECONDS] [-v] [-l FILE [-y]]

  -local             this machine's TCP/UDP sockets with owning PID and process name
  -wport PORT        watch a local port (TCP and UDP) for changes
  -wpid PID          watch a process's sockets for changes
  -wt SECONDS        seconds between checks, 1-1200 (default 60; only with -wport/-wpid)
  -v                 verbose: systemd service, command line and loaded modules per process
  --duration S       stop watching after S seconds (else Esc, q or Ctrl+C stops)

Flags may be written -x or /x, in any case.  portqry -h (or portqry alone) prints this text.

Exit codes:
  0  LISTENING          1  NOT LISTENING      2  FILTERED or LISTENING or FILTERED
     (several ports, or several DCs: the worst, 2 > 1 > 0; local and interactive modes: 0)
  3  usage error        4  name does not resolve (--domain without -n: no DC found in DNS)
  5  source port in use 6  log file error     7  local mode failed (e.g. no such PID)
  8  service catalog unavailable            9  internal error
  130 interrupted       141 broken pipe (stdout closed)
"""


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
    sites: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    list_services: bool = False
    list_profiles: bool = False
    duration: float | None = None
    help: bool = False
    version: bool = False

    @property
    def discovery(self) -> bool:
        """``--domain`` without ``-n`` in command-line mode: find the domain's DCs and query each."""
        return self.name is None and bool(self.domain) and not (self.interactive or self.local_mode)

    @property
    def local_mode(self) -> bool:
        """``-local``, ``-wport`` or ``-wpid``."""
        return self.local or self.watch_port is not None or self.watch_pid is not None


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
    "site": ("sites", True),
    "service": ("services", True),
    "profile": ("profiles", True),
    "list-services": ("list_services", False),
    "list-profiles": ("list_profiles", False),
    "duration": ("duration", True),
    "help": ("help", False),
    "version": ("version", False),
}


def parse_port(text: str, flag: str, *, allow_zero: bool = False) -> int:
    """``text`` as a port number 1-65535 (0 too with ``allow_zero``).

    Raises:
        UsageError: not a number, or out of range; the message names ``flag``.
    """
    low = 0 if allow_zero else 1
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= 65535:
        raise UsageError(f"{flag}: {text!r} is not a port number ({low}-65535)")
    return int(text)


def parse_number(text: str, flag: str, low: float, high: float) -> float:
    """``text`` as a number in ``[low, high]``.

    Raises:
        UsageError: not a number, or out of range; the message names ``flag``.
    """
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
        opts.endpoint = parse_port(value, flag)
    elif attr == "order":
        parts = value.split(",")
        ports = [parse_port(p, flag) for p in parts]
        opts.order = list(dict.fromkeys(ports))
    elif attr == "port_range":
        sep = ":" if ":" in value else ";"
        start_text, _, end_text = value.partition(sep)
        start, end = parse_port(start_text, flag), parse_port(end_text, flag)
        if start > end:
            raise UsageError(f"{flag}: the starting port must not be higher than the ending port (got {value!r})")
        opts.port_range = (start, end)
    elif attr == "source_port":
        port = parse_port(value, flag, allow_zero=True)
        opts.source_port = port or None
    elif attr in ("watch_port",):
        opts.watch_port = parse_port(value, flag)
    elif attr == "watch_pid":
        if not (value.isascii() and value.isdigit()):
            raise UsageError(f"{flag}: {value!r} is not a process id")
        opts.watch_pid = int(value)
    elif attr == "watch_time":
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 1200:
            raise UsageError(f"{flag}: the watch time must be 1-1200 seconds (got {value!r})")
        opts.watch_time = int(value)
    elif attr == "community":
        opts.community = _community(value)
    elif attr == "timeout":
        opts.timeout = parse_number(value, flag, 0.001, 600)
    elif attr == "concurrency":
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65536:
            raise UsageError(f"{flag}: must be an integer 1-65536 (got {value!r})")
        opts.concurrency = int(value)
    elif attr == "udp_pacing":
        opts.udp_pacing = parse_number(value, flag, 0, 10)
    elif attr == "dns_servers":
        if literal(value) is None:
            raise UsageError(f"{flag}: {value!r} is not an IP address")
        opts.dns_servers.append(value.strip("[]"))
    elif attr == "dns_port":
        opts.dns_port = parse_port(value, flag)
    elif attr == "domain":
        if not value or any(c.isspace() for c in value) or len(value) > 253:
            raise UsageError(f"{flag}: {value!r} is not a DNS domain name")
        opts.domain = value.rstrip(".")
    elif attr == "sites":
        if not value or any(c.isspace() or c == "." for c in value) or len(value) > 63:
            raise UsageError(f"{flag}: {value!r} is not a site name (one DNS label)")
        opts.sites.append(value)
    elif attr in ("services", "profiles"):
        getattr(opts, attr).append(value)
    elif attr == "log_file":
        if not value:
            raise UsageError(f"{flag}: the log file name cannot be empty")
        opts.log_file = value
    elif attr == "duration":
        opts.duration = parse_number(value, flag, 0.001, 7 * 24 * 3600)
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
        repeatable = attr in ("dns_servers", "sites", "services", "profiles")
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
    if opts.sites and (opts.name is not None or not opts.domain or opts.interactive or local_modes):
        raise UsageError("--site is only used with --domain and no -n (domain discovery)")
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
    if opts.name is None and not opts.domain:
        raise UsageError("-n NAME is required (or --domain, -i, -local, -wport, -wpid, --list-services)")

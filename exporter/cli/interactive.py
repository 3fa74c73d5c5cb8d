"""PortQry 2.0's interactive mode (``portqry -i``): commands read from stdin until ``exit``.

Commands (PortQry's): ``node|n NAME``, ``query|q [shortcut]``, ``set option=value``, ``set all``, ``set nr``,
``set sl``, ``help``, ``exit``; the ``query`` shortcuts are PortQry's (:data:`SHORTCUTS`, "Using the PortQry
command-line tool", 2023).  Check by hand: ``printf 'q smtp\\nexit\\n' | portqry -i -nr``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import TextIO

from exporter.cli.args import Options, parse_number, parse_port
from exporter.cli.exits import CliError, UsageError
from exporter.cli.output import Output
from exporter.cli.query import QuerySettings, build_specs, port_pairs, run_query, settings_from
from exporter.result import Protocol

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
            state.port = parse_port(value, "set port")
        elif key in ("sport", "sp"):
            state.settings = replace(settings, source_port=parse_port(value, "set sport", allow_zero=True) or None)
        elif key in ("protocol", "p"):
            if value.lower() not in ("tcp", "udp", "both"):
                raise UsageError(f"set protocol: must be tcp, udp or both (got {value!r})")
            state.protocol = value.lower()
        elif key == "cn":
            community = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == "!" else value
            state.settings = replace(settings, community=community)
        elif key == "timeout":
            state.settings = replace(settings, timeout=parse_number(value, "set timeout", 0.001, 600))
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

"""``portqry``: Microsoft PortQry 2.0's command line on Linux, on the exporter's concurrent probe engine.

Usage::

    portqry -n NAME [-p tcp|udp|both] [-e PORT | -o P1,P2,... | -r START:END] [-l FILE [-y]] [-sl] [-nr]
            [-sp PORT] [-cn !COMMUNITY!] [-q] [--json] [--timeout S] [--concurrency N]
            [--dns-server ADDR [--dns-port PORT]] [--domain NAME] [--service NAME] [--profile NAME]
    portqry --domain DOMAIN [--site SITE] [--dns-server ADDR [--dns-port PORT]] [-p ...] [-e | -o | -r | --profile]
            the domain's DCs from DNS SRV records and the LDAP ping, listed, then each one queried
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
    4: the name given with ``-n`` does not resolve; ``--domain`` without ``-n``: no DC found in DNS.
    5: the ``-sp`` source port is in use or cannot be bound.
    6: the log file cannot be written, or overwriting it was declined.
    7: local mode failed (no such PID for ``-wpid``, sockets cannot be listed).
    8: the service catalog cannot be loaded.
    9: internal error (a bug; reported as one line, never a traceback).
    130: interrupted (Ctrl+C).
    141: stdout was closed by its reader (broken pipe).

Errors are one line on stderr (``portqry: ...``).  Network rule for tests: resolve names only through a DNS
server the test runs (``--dns-server``), and use ``-nr`` or that server for reverse lookups.

Modules: :mod:`~exporter.cli.args` (flags, help), :mod:`~exporter.cli.query` (queries, verdict),
:mod:`~exporter.cli.domain` (``--domain`` without ``-n``: discovery, the DC list, every DC's query),
:mod:`~exporter.cli.interactive`, :mod:`~exporter.cli.text` and :mod:`~exporter.cli.blocks` (PortQry's text),
:mod:`~exporter.cli.output` (stdout, JSON lines, log file), :mod:`~exporter.cli.local` and
:mod:`~exporter.cli.watch` (local mode), :mod:`~exporter.cli.entry` (:func:`main`), :mod:`~exporter.cli.exits`.

Check by hand: ``portqry -n 127.0.0.1 -nr -e 22``; ``python -m exporter.cli -n 127.0.0.1 -nr -p udp -r 1:1024 --json``.
"""

from __future__ import annotations

from exporter.cli.entry import main

__all__ = ["main"]

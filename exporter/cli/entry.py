"""``portqry``'s entry point: parse the command line, pick the mode, turn every failure into an exit code.

Modes: command line (:mod:`exporter.cli.query`; ``--domain`` without ``-n``: :mod:`exporter.cli.domain`),
interactive (:mod:`exporter.cli.interactive`), local and watch (:mod:`exporter.cli.local`,
:mod:`exporter.cli.watch`), catalog listings.  Errors are one line on
stderr (``portqry: ...``), never a traceback; see :mod:`exporter.cli` for the exit codes.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import sys
from collections.abc import Sequence
from typing import TextIO

from exporter import version_text
from exporter.catalog import CatalogDataError, format_profile_list, format_service_list
from exporter.cli import domain, local, query, text, watch
from exporter.cli.args import HELP, Options, parse_args
from exporter.cli.exits import (
    EXIT_BROKEN_PIPE,
    EXIT_CATALOG,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_LOCAL,
    EXIT_USAGE,
    CliError,
    UsageError,
)
from exporter.cli.interactive import interactive
from exporter.cli.output import Output, open_log


def local_mode(opts: Options, out: Output, stdin: TextIO) -> int:
    """``-local`` (one listing) or ``-wport``/``-wpid`` (a watch until stopped); returns 0.

    Raises:
        CliError: exit 7 - no such PID, or the sockets cannot be listed.
    """
    try:
        if opts.local:
            sockets = local.snapshot()
            if opts.json:
                for sock in sockets:
                    out.json(sock.to_json())
            else:
                out.lines(local.local_lines(sockets, verbose=opts.verbose))
            return 0
        watch.watch(
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
        log.write("\n".join(text.log_header(command, socket.gethostname())) + "\n")
    out = Output(stdout, stderr, quiet=opts.quiet, log=log)
    try:
        if opts.local_mode:
            return local_mode(opts, out, stdin)
        if opts.interactive:
            return interactive(opts, out, stdin)
        if opts.discovery:
            return domain.domain_mode(opts, out)
        return query.command_mode(opts, out)
    except CliError as exc:
        out.error(str(exc))
        return exc.code
    finally:
        if log is not None:
            with contextlib.suppress(OSError):
                log.write("\n".join(text.log_footer()) + "\n")
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

    if not args:  # PortQry without arguments prints its usage
        stdout.write(HELP)
        return 0
    try:
        opts = parse_args(args)
    except UsageError as exc:
        err(f"{exc} (portqry -h for help)")
        return EXIT_USAGE
    if opts.help:
        stdout.write(HELP)
        return 0
    if opts.version:
        stdout.write(version_text("portqry (portqry-exporter)"))
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

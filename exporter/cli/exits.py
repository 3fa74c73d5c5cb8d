"""``portqry``'s exit codes and the two errors that carry them to :func:`exporter.cli.main`.

Exit codes 0/1/2 are PortQry 2.0's ``-q`` errorlevels (LISTENING, NOT LISTENING, FILTERED or LISTENING or
FILTERED; "Using the PortQry command-line tool", 2023), returned with or without ``-q``; the rest are ours.
"""

from __future__ import annotations

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


class UsageError(Exception):
    """A bad or conflicting command line (exit code 3)."""


class CliError(Exception):
    """A failure with its exit code; ``str(err)`` is the one-line message."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)

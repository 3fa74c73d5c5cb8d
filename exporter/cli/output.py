"""Where ``portqry``'s lines go: stdout (unless ``-q``), the ``-l`` log file (always), errors to stderr.

:class:`Output` writes text lines and JSON lines (``--json``: one compact object per line); :func:`open_log`
opens the log file as PortQry does (asking before overwriting, unless ``-y``).  The text itself comes from
:mod:`exporter.cli.text` and :mod:`exporter.cli.blocks`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, TextIO

from exporter.cli.exits import EXIT_LOG_FILE, CliError


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

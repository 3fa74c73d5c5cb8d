"""Logging through structlog: JSON lines when stdout is not a TTY, readable key=value otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_state = {"level": logging.INFO}  # the configured level, for debug_enabled()


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog for the process.

    Args:
        level: ``debug`` (each probe), ``info`` (state changes, reloads), ``warning``, ``error``.
        fmt: ``json``, ``console`` (key=value), or ``auto`` (JSON unless stdout is a TTY).
    """
    _state["level"] = _LEVELS.get(level, logging.INFO)
    as_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )


def get_logger(**bind: Any) -> Any:
    """A lazy structlog logger with ``bind`` context (configuration is read at first use, not at import)."""
    return structlog.get_logger("portqry", **bind)


def debug_enabled() -> bool:
    """Whether debug lines are written (to skip building a line per probe that nobody will see)."""
    return _state["level"] <= logging.DEBUG

"""Typed errors.  The root is :class:`PortqryError`; nothing in the package raises bare ``Exception``.

Probes never let these escape to the scheduler: a probe turns every failure into a
:class:`~exporter.result.ProbeResult` with a :class:`~exporter.states.Reason`.
"""

from __future__ import annotations


class PortqryError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(PortqryError):
    """A configuration file is missing, unreadable, not TOML, or fails validation.

    ``str(err)`` is one line naming the file, the key and the problem, e.g.
    ``config.toml: targets[0].ports[1]: 'tcp/70000' port must be 1-65535``.
    """

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(f"{where}{problem}")


class ResolveError(PortqryError):
    """A host name did not resolve (NXDOMAIN, no address records, resolver timeout)."""


class DecodeError(PortqryError, ValueError):
    """A reply could not be decoded: truncated, malformed or hostile bytes.

    Attributes:
        offset: byte offset in the input where decoding failed (``-1`` when unknown).
    """

    def __init__(self, message: str, offset: int = -1) -> None:
        self.offset = offset
        super().__init__(f"{message} (at byte {offset})" if offset >= 0 else message)


class ProtocolError(PortqryError):
    """A protocol exchange failed after the port answered (a fault, a reject, an unexpected PDU)."""

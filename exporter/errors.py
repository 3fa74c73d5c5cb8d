"""Typed errors.  The root is :class:`PortqryError`; nothing in the package raises bare ``Exception``.

Probes never let these escape to the scheduler: a probe turns every failure into a
:class:`~exporter.result.ProbeResult` with a :class:`~exporter.states.Reason`.

User-facing error texts are plain sentences: a library's own exception text (impacket's
``('unpack requires a buffer of 1 bytes', "When unpacking field ...")``, pyasn1's, ``[Errno 104] ...``) goes
into ``detail`` (:func:`error_detail`), which the daemon logs at debug level; :func:`plain_error` is the sentence.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence


class PortqryError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(PortqryError):
    """A configuration file is missing, unreadable, not TOML, or fails validation.

    Each error is one line naming its source (the file, or the ``PORTQRY_`` variable that set the value), the
    key and the problem, e.g. ``config.toml: targets[0].ports[1]: 'tcp/70000' port must be 1-65535``;
    ``str(err)`` is every error, one line each.  ``path``, ``key`` and ``problem`` are the first error's.

    Args:
        path: the file (or variable) of the first error.
        key: its key (``""`` for the whole file).
        problem: what is wrong.
        also: more errors, each ``(path, key, problem)``.
    """

    def __init__(self, path: str, key: str, problem: str, *, also: Sequence[tuple[str, str, str]] = ()) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        self.errors: tuple[tuple[str, str, str], ...] = ((path, key, problem), *also)
        self.lines = tuple(f"{p}: {k}: {m}" if k else f"{p}: {m}" for p, k, m in self.errors)
        super().__init__("\n".join(self.lines))


class ResolveError(PortqryError):
    """A host name did not resolve (NXDOMAIN, no address records, resolver timeout)."""


class DecodeError(PortqryError, ValueError):
    """A reply could not be decoded: truncated, malformed or hostile bytes.

    Attributes:
        offset: byte offset in the input where decoding failed (``-1`` when unknown).
        detail: the decoding library's own text, for the debug log (``""`` when none).
    """

    def __init__(self, message: str, offset: int = -1, *, detail: str = "") -> None:
        self.offset = offset
        self.detail = detail
        super().__init__(f"{message} (at byte {offset})" if offset >= 0 else message)


class ProtocolError(PortqryError):
    """A protocol exchange failed after the port answered (a fault, a reject, an unexpected PDU).

    Attributes:
        detail: the library's own text behind the message, for the debug log (``""`` when none).
    """

    def __init__(self, message: str, *, detail: str = "") -> None:
        self.detail = detail
        super().__init__(message)


#: What an ``OSError`` without ``strerror`` (raised by asyncio or ssl, not the kernel) means; first match wins.
_OS_ERROR_KINDS: tuple[tuple[type[OSError], str], ...] = (
    (ConnectionResetError, "connection reset by the peer"),  # asyncio's: the peer closed mid-handshake
    (ConnectionRefusedError, "connection refused"),
    (ConnectionAbortedError, "connection aborted"),
    (BrokenPipeError, "connection closed by the peer"),
)
#: The same for :mod:`ssl`'s errors, by class name (the wire codecs import this module, and no ``ssl``).
_SSL_ERROR_KINDS = {
    "SSLEOFError": "TLS session closed by the peer",
    "SSLZeroReturnError": "TLS session closed by the peer",
}


def plain_error(exc: BaseException, *, waited: float | None = None) -> str:
    """A plain sentence for ``exc``, without a library's internals (their text is :func:`error_detail`); never empty.

    Our own errors are already sentences; a ``struct.error`` (impacket's and ours: a field read past the end)
    is a truncated or malformed reply; an ``OSError`` is its ``strerror``; a timeout (whose ``str()`` is
    empty) is "no reply within 2.0 s" when the caller gives ``waited``, the seconds it waited, else
    "no reply in time".  An exception without text (asyncio's ``ConnectionResetError()``, ``EOFError()``)
    is named by its kind.
    """
    if isinstance(exc, PortqryError):
        return str(exc) or ("malformed reply" if isinstance(exc, DecodeError) else "protocol error")
    if isinstance(exc, TimeoutError):
        return "no reply in time" if waited is None else f"no reply within {waited:.1f} s"
    if isinstance(exc, EOFError):
        return str(exc) or "connection closed"
    reason = getattr(exc, "reason", None)  # ssl.SSLError: OpenSSL's reason code; its strerror names _ssl.c
    if isinstance(exc, OSError) and isinstance(reason, str) and reason:
        return reason.replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, OSError) and type(exc).__module__ == "ssl":
        return _SSL_ERROR_KINDS.get(type(exc).__name__, "TLS error")
    if isinstance(exc, OSError):
        return next((text for kind, text in _OS_ERROR_KINDS if isinstance(exc, kind)), "connection error")
    if isinstance(exc, struct.error):
        return "truncated or malformed reply"
    if isinstance(exc, UnicodeDecodeError):
        return f"reply text is not valid {exc.encoding}"
    if isinstance(exc, UnicodeError):
        return "text that cannot be encoded"
    return "malformed reply"


def error_detail(exc: BaseException) -> str:
    """The text behind :func:`plain_error`, for the debug log: a library's own words (``""`` for ours without)."""
    if isinstance(exc, DecodeError | ProtocolError):
        return exc.detail
    if isinstance(exc, PortqryError):
        return ""
    return f"{type(exc).__name__}: {exc}"

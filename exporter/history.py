"""A port's recent rounds for the status page: a bounded ring of 15-byte records in one ``bytearray``.

One :class:`PortHistory` per (target, address, protocol, port), written by :meth:`exporter.store.ResultStore.record`
and read by the status page (:mod:`exporter.status`); ``/metrics`` never reads it.  A record is
``struct`` ``<dfBBB``: the probe's Unix timestamp (double), its duration in seconds (float32), the state and the
reason as indexes into :class:`~exporter.states.PortState` and :class:`~exporter.states.Reason`, and the tries
(capped at 255).  Beside the ring each port keeps when its state last changed (``since``).  At 20 rounds a port
costs about 0.5 kB, so 10,000 ports about 5 MB.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from exporter.states import PortState, Reason

RECORD = struct.Struct("<dfBBB")
"""timestamp, duration_seconds, state index, reason index, tries."""

_STATES = tuple(PortState)
_REASONS = tuple(Reason)
_STATE_INDEX = {s: i for i, s in enumerate(_STATES)}
_REASON_INDEX = {r: i for i, r in enumerate(_REASONS)}


@dataclass(frozen=True, slots=True)
class Round:
    """One round of one port, as the ring keeps it (no error text, no details: those are the latest result's)."""

    timestamp: float
    state: PortState
    reason: Reason
    duration_seconds: float
    tries: int


class PortHistory:
    """The last ``size`` rounds of one port, oldest first, and when its state last changed.

    Args:
        size: rounds kept (0: none, only ``since``).
    """

    __slots__ = ("_count", "_next", "_ring", "since", "state")

    def __init__(self, size: int) -> None:
        self._ring = bytearray(RECORD.size * size)
        self._next = 0  # the slot the next round goes to
        self._count = 0  # rounds held (<= size)
        self.since = 0.0
        """Unix time of the first round in the current state (the first round seen, when it never changed)."""
        self.state: PortState | None = None
        """The latest round's state."""

    @property
    def count(self) -> int:
        """Rounds held now."""
        return self._count

    @property
    def size(self) -> int:
        """Rounds kept at most."""
        return len(self._ring) // RECORD.size

    def add(self, timestamp: float, state: PortState, reason: Reason, duration_seconds: float, tries: int) -> None:
        """Append one round, dropping the oldest when full."""
        if state is not self.state:
            self.since = timestamp
            self.state = state
        size = self.size
        if not size:
            return
        RECORD.pack_into(
            self._ring,
            self._next * RECORD.size,
            timestamp,
            duration_seconds,
            _STATE_INDEX[state],
            _REASON_INDEX[reason],
            min(max(tries, 0), 255),
        )
        self._next = (self._next + 1) % size
        self._count = min(self._count + 1, size)

    def rounds(self) -> list[Round]:
        """The rounds kept, oldest first."""
        size = self.size
        first = (self._next - self._count) % size if size else 0
        out = []
        for i in range(self._count):
            ts, duration, state, reason, tries = RECORD.unpack_from(self._ring, ((first + i) % size) * RECORD.size)
            out.append(Round(ts, _STATES[state], _REASONS[reason], duration, tries))
        return out

    def copy(self, *, rounds: bool = True) -> PortHistory:
        """An independent copy (the store hands these out under its lock); ``rounds=False``: ``since`` only."""
        other = PortHistory(0)
        if rounds:
            other._ring = bytearray(self._ring)
            other._next = self._next
            other._count = self._count
        other.since = self.since
        other.state = self.state
        return other

    def nbytes(self) -> int:
        """The ring's payload in bytes (for the memory figure)."""
        return len(self._ring)

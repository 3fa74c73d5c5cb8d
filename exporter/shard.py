"""Shards: ``--shard I/N`` keeps the targets whose name hashes to ``I`` with Prometheus' ``hashmod``.

Prometheus' relabel action ``hashmod`` (``model/relabel/relabel.go``, ``case HashMod``)::

    hash := md5.Sum([]byte(val))
    // Use only the last 8 bytes of the hash to give the same result as earlier versions of this code.
    mod := binary.BigEndian.Uint64(hash[8:]) % cfg.Modulus

:func:`hashmod` is that, so a relabel rule ``{source_labels: [target], action: hashmod, modulus: N}``
followed by ``keep`` on ``I`` picks the same names as the replica started with ``--shard I/N``.  With a
single source label, ``val`` is that label's value (the ``separator`` only joins several).

Pure: no I/O, no clock.  Check by hand::

    python3 -c 'from exporter.shard import hashmod; print(hashmod("dc1.example.test", 3))'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``total`` (``0 <= index < total``); ``Shard(0, 1)`` keeps every name."""

    index: int
    total: int

    def __post_init__(self) -> None:
        if self.total < 1:
            raise ValueError(f"shard {self.index}/{self.total}: N must be at least 1")
        if not 0 <= self.index < self.total:
            raise ValueError(f"shard {self.index}/{self.total}: I must be 0..{self.total - 1}")

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


UNSHARDED = Shard(0, 1)
"""No sharding: every name hashes to 0 modulo 1."""


def parse_shard(text: str) -> Shard:
    """``"I/N"`` -> :class:`Shard`.

    Raises:
        ValueError: not ``I/N`` with decimal integers, ``N < 1``, or ``I`` outside ``0..N-1`` (one line).
    """
    match = _SHARD.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r}: write I/N, e.g. 0/3 (shard I of N, I in 0..N-1)")
    return Shard(int(match.group(1)), int(match.group(2)))


def hashmod(name: str, modulus: int) -> int:
    """Prometheus' relabel ``hashmod``: the last 8 bytes of ``name``'s MD5, a big-endian integer, mod ``modulus``.

    Raises:
        ValueError: ``modulus < 1`` (Prometheus refuses a zero modulus at config load).
    """
    if modulus < 1:
        raise ValueError(f"hashmod: modulus must be at least 1 (got {modulus})")
    digest = hashlib.md5(name.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % modulus


def keeps(shard: Shard, name: str) -> bool:
    """True when target ``name`` belongs to ``shard``: ``hashmod(name, total) == index``."""
    return shard.total == 1 or hashmod(name, shard.total) == shard.index

"""Shared hypothesis helpers for the wire codecs' robustness tests."""

from __future__ import annotations

from hypothesis import strategies as st


def mutated(data: st.DataObject, sample: bytes, *, max_edits: int = 4) -> bytes:
    """``sample`` with 1..``max_edits`` bytes overwritten at random, then cut at a random length."""
    raw = bytearray(sample)
    for _ in range(data.draw(st.integers(min_value=1, max_value=max_edits))):
        raw[data.draw(st.integers(min_value=0, max_value=len(raw) - 1))] = data.draw(st.integers(0, 255))
    return bytes(raw[: data.draw(st.integers(min_value=0, max_value=len(raw)))])

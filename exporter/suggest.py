"""The one "did you mean" helper: close names for a misspelt key, service, profile or protocol.

Used by :mod:`exporter.config` (protocol names), :mod:`exporter.catalog` (service and profile names, unknown
keys of the data file) and so by ``portqry --service``.  Names compare case-insensitively with runs of
whitespace folded; a name given back is spelt as in ``known``.

Check by hand: ``python -c "from exporter.suggest import did_you_mean as d; print(d('Kerberoz', ['Kerberos']))"``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

#: How many suggestions at most.
MAX_SUGGESTIONS = 3
#: difflib similarity ratio (0-1) a name needs to be suggested.
CUTOFF = 0.6
#: A name at least this long is also suggested wherever a known name contains it (``ldap`` -> ``ldaps``).
MIN_SUBSTRING = 3


def fold(name: str) -> str:
    """``name`` compared as the helper compares it: case-folded, whitespace runs made one space."""
    return " ".join(name.split()).casefold()


def close_names(name: str, known: Iterable[str]) -> tuple[str, ...]:
    """Up to :data:`MAX_SUGGESTIONS` names of ``known`` close to ``name``, best first.

    difflib matches (ratio >= :data:`CUTOFF`) come first, then, for a ``name`` of 3 characters or more, the
    known names that contain it.  Comparison is on :func:`fold`; the first spelling of a folded name wins.

    Args:
        name: what was given, e.g. ``Kerberoz``.
        known: the valid names, e.g. a catalog's service names; any iterable, read once.

    Returns:
        The suggestions as ``known`` spells them; empty when nothing is close.
    """
    spelling: dict[str, str] = {}
    for candidate in known:
        spelling.setdefault(fold(candidate), candidate)
    key = fold(name)
    found = difflib.get_close_matches(key, list(spelling), n=MAX_SUGGESTIONS, cutoff=CUTOFF)
    if len(key) >= MIN_SUBSTRING:
        found += [k for k in spelling if key in k and k not in found]
    return tuple(spelling[k] for k in found[:MAX_SUGGESTIONS])


def hint(suggestions: Sequence[str]) -> str:
    """The text after an error: ``"; did you mean 'x'?"``, ``"; did you mean one of 'a', 'b'?"`` or ``""``."""
    if len(suggestions) == 1:
        return f"; did you mean {suggestions[0]!r}?"
    if suggestions:
        return "; did you mean one of " + ", ".join(repr(s) for s in suggestions) + "?"
    return ""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """:func:`hint` of :func:`close_names`: ``"; did you mean 'ldap'?"`` or ``""`` when nothing is close."""
    return hint(close_names(name, known))

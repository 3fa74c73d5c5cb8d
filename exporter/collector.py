"""Exposition: a custom Collector that builds every family from the store at scrape time.

Prometheus' "writing exporters" guide: build new metrics on each collect(), so that removed targets leave
no stale series and concurrent scrapes do not race.  No sockets here; protocol details are turned into
metrics by :mod:`exporter.detail_metrics`.
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
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.detail_metrics import detail_families
from exporter.shard import UNSHARDED
from exporter.states import PortState
from exporter.store import ResultStore

_SCHEDULE = "Results come from the exporter's probe schedule (each target at its interval), not from the scrape."
PORT_LABELS = ["target", "address", "protocol", "port", "service", "domain", "site"]
PROBE_LABELS = ["target", "address", "protocol", "port", "domain", "site"]


class ExporterStatus:
    """The daemon's own state that the collector exports (set by the daemon, read at scrape time)."""

    def __init__(self) -> None:
        self.reload_successful = False
        self.reload_success_timestamp = 0.0
        self.targets = 0
        self.ready: Callable[[], bool] = lambda: False
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
        """Yield the families for one scrape (see the README's metric reference)."""
        snap = self.store.snapshot()
        state = StateSetMetricFamily(
            "portqry_port_state",
            f"Port state, PortQry's words as a StateSet. {_SCHEDULE}",
            labels=PORT_LABELS,
        )
        success = GaugeMetricFamily(
            "portqry_probe_success", f"1 when the port is LISTENING, else 0. {_SCHEDULE}", labels=PORT_LABELS
        )
        reason = GaugeMetricFamily(
            "portqry_probe_reason",
            f"1 for the reason of the current state (one series per port). {_SCHEDULE}",
            labels=[*PORT_LABELS, "reason"],
        )
        last = GaugeMetricFamily(
            "portqry_probe_last_timestamp_seconds",
            f"Unix time at which the latest result of this port was produced. {_SCHEDULE}",
            labels=PROBE_LABELS,
        )
        tries = GaugeMetricFamily(
            "portqry_probe_tries",
            f"Connection attempts or datagrams the latest state probe sent. {_SCHEDULE}",
            labels=PROBE_LABELS,
        )
        for r in snap.results:
            domain, site = snap.labels.get(r.target, ("", ""))
            labels = [r.target, r.address, r.protocol, str(r.port), r.service, domain, site]
            state.add_metric(labels, {s.value: s is r.state for s in PortState})
            success.add_metric(labels, 1.0 if r.state is PortState.LISTENING else 0.0)
            reason.add_metric([*labels, r.reason.value], 1.0)
            short = [r.target, r.address, r.protocol, str(r.port), domain, site]
            last.add_metric(short, r.timestamp)
            tries.add_metric(short, float(r.tries))
        yield from (state, success, reason)

        duration = HistogramMetricFamily(
            "portqry_probe_duration_seconds",
            f"Wall time of each probe, all tries and the protocol follow-up, seconds. {_SCHEDULE}",
            labels=PROBE_LABELS,
        )
        for (target, address, protocol, port), hist in sorted(snap.histograms.items()):
            domain, site = snap.labels.get(target, ("", ""))
            duration.add_metric([target, address, protocol, str(port), domain, site], hist.cumulative(), hist.total)
        yield from (duration, last, tries)

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

        resolve = GaugeMetricFamily(
            "portqry_target_resolve_success",
            f"1 when the target's host resolved in its latest round. {_SCHEDULE}",
            labels=["target"],
        )
        for target, ok in sorted(snap.resolve_ok.items()):
            resolve.add_metric([target], 1.0 if ok else 0.0)
        yield resolve

        yield from detail_families(snap.results, snap.labels, snap.domains)

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

"""The results store: the latest result per (target, address, protocol, port), histograms, counters, domains.

Written by the scheduler on the event loop, read by the collector on HTTP threads: one lock, and readers
get copies.  Keys that a reload removes are dropped at once (:meth:`ResultStore.retain`), so their
series vanish from the next scrape; so are a target's addresses that its latest round no longer had.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from exporter.model import DomainState
from exporter.result import ProbeResult
from exporter.states import PortState

#: ``(target, address, protocol, port)``.
Key = tuple[str, str, str, int]


def duration_buckets(max_probe_seconds: float) -> tuple[float, ...]:
    """Histogram bucket bounds in seconds: 1 ms up to past the longest probe (timeout x tries).

    Args:
        max_probe_seconds: the longest a probe can take (timeout per try x tries, plus a follow-up).

    Returns:
        Increasing upper bounds, the last one above ``max_probe_seconds``.
    """
    base = [
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.0,
        3.0,
        4.0,
        5.0,
        7.5,
        10.0,
        15.0,
        20.0,
        30.0,
        60.0,
    ]
    bounds = [b for b in base if b <= max_probe_seconds * 1.5] or [0.001]
    top = bounds[-1]
    while top <= max_probe_seconds:
        top *= 2
        bounds.append(top)
    if bounds[-1] <= max_probe_seconds * 1.2:
        bounds.append(round(max_probe_seconds * 1.5, 3))
    return tuple(bounds)


@dataclass(slots=True)
class Histogram:
    """Cumulative-free bucket counts (converted to cumulative on export), sum in seconds and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        """Add one observation in seconds."""
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, cumulative count), ..., ("+Inf", count)]`` as Prometheus expects."""
        out: list[tuple[str, int]] = []
        running = 0
        counts = self.counts or [0] * (len(self.bounds) + 1)
        for bound, n in zip(self.bounds, counts, strict=False):
            running += n
            out.append((repr(float(bound)), running))
        out.append(("+Inf", self.count))
        return out


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A consistent copy of the store for one scrape.

    Attributes:
        results: the latest result of every key, ordered by key.
        histograms: probe durations per key.
        probes_total: probes finished since start, by state.
        resolve_ok: per target, whether its host resolved in its latest round.
        labels: per target, its ``(domain, site)`` labels.
        domains: per ``[[domains]]`` entry, its discovery state.
        probe_errors_total: probes that raised a bug.
    """

    results: tuple[ProbeResult, ...]
    histograms: dict[Key, Histogram]
    probes_total: dict[PortState, int]
    resolve_ok: dict[str, bool]
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)
    domains: dict[str, DomainState] = field(default_factory=dict)
    probe_errors_total: int = 0


class ResultStore:
    """Thread-safe latest results.

    Args:
        buckets: histogram bucket bounds, seconds (see :func:`duration_buckets`).
    """

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self._lock = threading.Lock()
        self._latest: dict[Key, ProbeResult] = {}
        self._hist: dict[Key, Histogram] = {}
        self._total: dict[PortState, int] = dict.fromkeys(PortState, 0)
        self._resolve_ok: dict[str, bool] = {}
        self._labels: dict[str, tuple[str, str]] = {}
        self._domains: dict[str, DomainState] = {}
        self._probe_errors = 0

    def count_probe_error(self) -> None:
        """Count a probe that raised a bug instead of producing a result (``portqry_exporter_probe_errors_total``)."""
        with self._lock:
            self._probe_errors += 1

    def record(
        self, target: str, results: Iterable[ProbeResult], *, domain: str = "", site: str = ""
    ) -> list[tuple[ProbeResult | None, ProbeResult]]:
        """Store one round of a target's results, with its ``domain`` and ``site`` labels.

        The target's results on addresses that this round did not probe are dropped (the name resolves
        elsewhere now, or not at all); a port missing from an address probed this round keeps its result.

        Returns:
            ``[(previous or None, new), ...]`` so that the caller can log state changes.
        """
        changes: list[tuple[ProbeResult | None, ProbeResult]] = []
        results = list(results)
        addresses = {r.address for r in results}
        with self._lock:
            for stale in [k for k in self._latest if k[0] == target and results and k[1] not in addresses]:
                del self._latest[stale]
                self._hist.pop(stale, None)
            resolved = True
            for result in results:
                previous = self._latest.get(result.key)
                self._latest[result.key] = result
                hist = self._hist.get(result.key)
                if hist is None:
                    hist = self._hist[result.key] = Histogram(self.buckets)
                hist.observe(result.duration_seconds)
                self._total[result.state] += 1
                resolved = resolved and bool(result.address)
                changes.append((previous, result))
            self._resolve_ok[target] = resolved
            self._labels[target] = (domain, site)
        return changes

    def record_domain(self, state: DomainState) -> None:
        """Store a domain's discovery state (``portqry_domain_*``)."""
        with self._lock:
            self._domains[state.domain] = state

    def retain(self, ports: Iterable[tuple[str, str, int]], targets: Iterable[str], domains: Iterable[str] = ()) -> int:
        """Drop every result and histogram whose ``(target, protocol, port)`` is not in ``ports`` (after a reload).

        Also drops the resolve flags and labels of targets, and the states of domains, no longer configured.

        Returns:
            How many keys were dropped.
        """
        keep = set(ports)
        names = set(targets)
        with self._lock:
            gone = {k for k in [*self._latest, *self._hist] if (k[0], k[2], k[3]) not in keep}
            for k in gone:
                self._latest.pop(k, None)
                self._hist.pop(k, None)
            for name in [n for n in self._resolve_ok if n not in names]:
                del self._resolve_ok[name]
            for name in [n for n in self._labels if n not in names]:
                del self._labels[name]
            wanted = set(domains)
            for name in [n for n in self._domains if n not in wanted]:
                del self._domains[name]
        return len(gone)

    def forget(self, targets: Iterable[str]) -> None:
        """Drop every result, histogram, resolve flag and label of ``targets`` (restarted with a new plan)."""
        names = set(targets)
        with self._lock:
            for key in [k for k in self._latest if k[0] in names]:
                del self._latest[key]
            for key in [k for k in self._hist if k[0] in names]:
                del self._hist[key]
            for name in names:
                self._resolve_ok.pop(name, None)
                self._labels.pop(name, None)

    def snapshot(self) -> Snapshot:
        """A copy for a scrape, ordered by key."""
        with self._lock:
            return Snapshot(
                results=tuple(self._latest[k] for k in sorted(self._latest)),
                histograms={k: Histogram(h.bounds, list(h.counts), h.total, h.count) for k, h in self._hist.items()},
                probes_total=dict(self._total),
                resolve_ok=dict(self._resolve_ok),
                labels=dict(self._labels),
                domains=dict(self._domains),
                probe_errors_total=self._probe_errors,
            )

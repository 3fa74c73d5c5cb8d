"""The results store: the latest result per (target, address, protocol, port), histograms, counters, domains.

Written by the scheduler, read by scrapes: one lock, and readers get copies.  When a target's round lands its
port families are rendered once (:mod:`exporter.exposition`); a scrape joins the ready parts.  Keys that a
reload removes are dropped at once (:meth:`ResultStore.retain`), so their series vanish from the next scrape;
so are a target's addresses that its latest round no longer had.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from exporter.exposition import Histogram, HistogramMode, chunks, gzip_chunks, histogram_key, render_packed
from exporter.history import PortHistory
from exporter.model import DomainState
from exporter.result import ProbeResult
from exporter.states import PortState, Reason

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


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A consistent copy of the store (for the collector and the status views).

    Attributes:
        results: the latest result of every key, ordered by key.
        probes_total: probes finished since start, by state.
        resolve_ok: per target, whether its host resolved in its latest round.
        labels: per target, its ``(domain, site)`` labels.
        domains: per ``[[domains]]`` entry, its discovery state.
        probe_errors_total: probes that raised a bug.
        local_errors_total: probes that failed on this host (``local-error``), by errno name.
    """

    results: tuple[ProbeResult, ...]
    probes_total: dict[PortState, int]
    resolve_ok: dict[str, bool]
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)
    domains: dict[str, DomainState] = field(default_factory=dict)
    probe_errors_total: int = 0
    local_errors_total: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Target:
    """One target's latest results (by ``(address, protocol, port)``), histograms, labels and rendering."""

    name: str
    results: dict[tuple[str, str, int], ProbeResult] = field(default_factory=dict)
    histograms: dict[tuple[str, ...], Histogram] = field(default_factory=dict)
    domain: str = ""
    site: str = ""
    resolved: bool = True
    rendered: dict[str, bytes] = field(default_factory=dict)
    detailed: tuple[ProbeResult, ...] = ()
    history: dict[tuple[str, str, int], PortHistory] = field(default_factory=dict)


class ResultStore:
    """Thread-safe latest results, with each target's port families pre-rendered.

    Args:
        buckets: histogram bucket bounds, seconds (see :func:`duration_buckets`).
        histograms: ``"target"`` (per target and protocol), ``"port"`` (per port) or ``"none"``.
        history: rounds kept per port for the status page (:class:`~exporter.history.PortHistory`; 0: none,
            only when the state last changed).
    """

    def __init__(self, buckets: Sequence[float], histograms: HistogramMode = "target", history: int = 20) -> None:
        self.buckets = tuple(buckets)
        self.history_rounds = history
        self.histogram_mode: HistogramMode = histograms
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = {}
        self._total: dict[PortState, int] = dict.fromkeys(PortState, 0)
        self._domains: dict[str, DomainState] = {}
        self._probe_errors = 0
        self._local_errors: dict[str, int] = {}

    def count_probe_error(self) -> None:
        """Count a probe that raised a bug instead of producing a result (``portqry_exporter_probe_errors_total``)."""
        with self._lock:
            self._probe_errors += 1

    def count_local_error(self, name: str) -> None:
        """Count a probe that failed on this host, by errno name (``portqry_exporter_local_errors_total``)."""
        with self._lock:
            key = name or "unknown"
            self._local_errors[key] = self._local_errors.get(key, 0) + 1

    def record(
        self, target: str, results: Iterable[ProbeResult], *, domain: str = "", site: str = ""
    ) -> list[tuple[ProbeResult | None, ProbeResult]]:
        """Store one round of a target's results, with its ``domain`` and ``site`` labels, and render it.

        The target's results on addresses that this round did not probe are dropped (the name resolves
        elsewhere now, or not at all); a port missing from an address probed this round keeps its result.
        A ``local-error`` result is no port state: it is counted (``portqry_exporter_local_errors_total``, by
        the errno name in its ``error_detail``) and the port keeps its previous result, or has none yet.

        Returns:
            ``[(previous or None, new), ...]`` so that the caller can log state changes.
        """
        changes: list[tuple[ProbeResult | None, ProbeResult]] = []
        results = list(results)
        addresses = {r.address for r in results}
        local = [r for r in results if r.reason is Reason.LOCAL_ERROR]
        if local:
            results = [r for r in results if r.reason is not Reason.LOCAL_ERROR]
        for r in local:
            self.count_local_error(r.error_detail)
        with self._lock:
            entry = self._targets.get(target) or self._targets.setdefault(target, _Target(target))
            if addresses:
                for stale in [k for k in entry.results if k[0] not in addresses]:
                    del entry.results[stale]
                    entry.history.pop(stale, None)
            for result in results:
                key = (result.address, result.protocol, result.port)
                changes.append((entry.results.get(key), result))
                entry.results[key] = result
                ring = entry.history.get(key) or entry.history.setdefault(key, PortHistory(self.history_rounds))
                ring.add(result.timestamp, result.state, result.reason, result.duration_seconds, result.tries)
                hist = histogram_key(result, self.histogram_mode)
                if hist is not None:
                    entry.histograms.setdefault(hist, Histogram(self.buckets)).observe(result.duration_seconds)
                self._total[result.state] += 1
            entry.resolved = all(r.address for r in results)
            entry.domain, entry.site = domain, site
            self._render(entry)
        return changes

    def _render(self, entry: _Target) -> None:
        if self.histogram_mode == "port":  # a gone address or port leaves its histogram too
            live = {(a, p, str(n)) for a, p, n in entry.results}
            entry.histograms = {k: h for k, h in entry.histograms.items() if k in live}
        ordered = [entry.results[k] for k in sorted(entry.results)]
        entry.rendered = render_packed(
            ordered,
            entry.domain,
            entry.site,
            entry.histograms,
            self.histogram_mode,
            target=entry.name,
            resolved=entry.resolved,
        )
        entry.detailed = tuple(r for r in ordered if r.details)

    def record_domain(self, state: DomainState) -> None:
        """Store a domain's discovery state (``portqry_domain_*``)."""
        with self._lock:
            self._domains[state.domain] = state

    def retain(self, ports: Iterable[tuple[str, str, int]], targets: Iterable[str], domains: Iterable[str] = ()) -> int:
        """Drop every result whose ``(target, protocol, port)`` is not in ``ports`` (after a reload).

        Also drops targets, and domains, no longer configured.

        Returns:
            How many results were dropped.
        """
        keep = set(ports)
        names = set(targets)
        gone = 0
        with self._lock:
            for name in [n for n in self._targets if n not in names]:
                gone += len(self._targets.pop(name).results)
            for name, entry in self._targets.items():
                stale = [k for k in entry.results if (name, k[1], k[2]) not in keep]
                for k in stale:
                    del entry.results[k]
                    entry.history.pop(k, None)
                if stale:
                    gone += len(stale)
                    if self.histogram_mode == "target":
                        protocols = {k[1] for k in entry.results}
                        entry.histograms = {k: h for k, h in entry.histograms.items() if k[0] in protocols}
                    self._render(entry)
            wanted = set(domains)
            for name in [n for n in self._domains if n not in wanted]:
                del self._domains[name]
        return gone

    def forget(self, targets: Iterable[str]) -> None:
        """Drop every result, histogram and label of ``targets`` (restarted with a new plan)."""
        with self._lock:
            for name in targets:
                self._targets.pop(name, None)

    def exposition(self, *, openmetrics: bool, names: frozenset[str] | None = None) -> bytes:
        """The port families of every target, joined from their renderings (no ``# EOF``)."""
        return b"".join(self.exposition_chunks(openmetrics=openmetrics, names=names))

    def exposition_chunks(self, *, openmetrics: bool, names: frozenset[str] | None = None) -> Iterator[bytes]:
        """The port families of every target in pieces of about a megabyte (no ``# EOF``).

        Args:
            openmetrics: OpenMetrics headers instead of the text format's.
            names: ``?name[]=`` filters; ``None`` = every family.
        """
        return chunks(self._parts(), openmetrics=openmetrics, names=names, packed=True)

    def exposition_gzip(
        self, *, openmetrics: bool, names: frozenset[str] | None = None, tail: Iterable[bytes] = ()
    ) -> Iterator[bytes]:
        """The port families of every target, then ``tail``, as one gzip member in pieces (see
        :func:`exporter.exposition.gzip_chunks`: the kept deflate blocks are sent as they are)."""
        return gzip_chunks(self._parts(), openmetrics=openmetrics, names=names, tail=tail)

    def _parts(self) -> list[dict[str, bytes]]:
        with self._lock:
            return [self._targets[name].rendered for name in sorted(self._targets)]

    def history(self, target: str | None = None, *, rounds: bool = True) -> dict[Key, PortHistory]:
        """Copies of the port histories of ``target`` (``None``: all), for the status page; ``rounds=False``: since."""
        with self._lock:
            names = [target] if target is not None else list(self._targets)
            return {
                (name, *k): h.copy(rounds=rounds)
                for name in names
                if name in self._targets
                for k, h in self._targets[name].history.items()
            }

    def snapshot(self, *, full: bool = True) -> Snapshot:
        """A copy, ordered by key; ``full=False`` copies only the results that carry protocol details."""
        with self._lock:
            if full:
                results = tuple(
                    entry.results[k] for _name, entry in sorted(self._targets.items()) for k in sorted(entry.results)
                )
            else:
                results = tuple(r for _name, entry in sorted(self._targets.items()) for r in entry.detailed)
            return Snapshot(
                results=results,
                probes_total=dict(self._total),
                resolve_ok={n: t.resolved for n, t in self._targets.items()},
                labels={n: (t.domain, t.site) for n, t in self._targets.items()},
                domains=dict(self._domains),
                probe_errors_total=self._probe_errors,
                local_errors_total=dict(self._local_errors),
            )

"""The port families as exposition text, rendered once per target and round, joined at scrape time.

A scrape of 10,000 ports must not cost work proportional to what did not change: when a target's round lands
(:meth:`exporter.store.ResultStore.record`), its sample lines are rendered here once, family by family; a
scrape only joins the ready parts under one ``# HELP``/``# TYPE`` header per family.  The store keeps each part
deflated (:func:`render_packed`): a target's lines repeat their labels, so a part keeps 1/10 to 1/30 of its
size (10,000 ports: 12 MB of text, 0.7 MB packed), and :func:`chunks` inflates it while joining, in C, at 1-2 ms
per megabyte of text.  The sample lines of these families are the same in the Prometheus text format (0.0.4)
and in OpenMetrics 1.0; only the headers differ
(``stateset`` vs ``gauge``), so one rendering serves both.  What is rendered is always built from the store's
latest results, never from a registry that could keep stale series.

Series per port (the budget is 8): ``portqry_port_state`` (a StateSet: 4), ``portqry_probe_reason`` (1),
``portqry_probe_last_duration_seconds`` (1), ``portqry_probe_last_timestamp_seconds`` (1),
``portqry_probe_tries`` (1); the latency histogram ``portqry_probe_duration_seconds`` is per
``(target, protocol)`` by default (``[exporter] histograms``).
"""

from __future__ import annotations

import bisect
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client.utils import floatToGoString as _go_float

from exporter.result import ProbeResult
from exporter.states import PortState

HistogramMode = Literal["target", "port", "none"]


def _num(value: float) -> str:
    """A sample value as prometheus_client writes it (Go's float formatting)."""
    return str(_go_float(value))  # type: ignore[no-untyped-call]


_SCHEDULE = "Results come from the exporter's probe schedule (each target at its interval), not from the scrape."


@dataclass(frozen=True, slots=True)
class Family:
    """One pre-rendered family: its name, its text-format and OpenMetrics types, and its help."""

    name: str
    text_type: str
    om_type: str
    help: str

    def header(self, *, openmetrics: bool) -> bytes:
        """The ``# HELP`` and ``# TYPE`` lines."""
        kind = self.om_type if openmetrics else self.text_type
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} {kind}\n".encode()


STATE = Family("portqry_port_state", "gauge", "stateset", f"Port state, PortQry's words as a StateSet. {_SCHEDULE}")
REASON = Family(
    "portqry_probe_reason",
    "gauge",
    "gauge",
    f"1 for the reason of the current state (one series per port). {_SCHEDULE}",
)
LAST_DURATION = Family(
    "portqry_probe_last_duration_seconds",
    "gauge",
    "gauge",
    f"Wall time of the latest probe of this port, all tries and the protocol follow-up, seconds. {_SCHEDULE}",
)
LAST_TIMESTAMP = Family(
    "portqry_probe_last_timestamp_seconds",
    "gauge",
    "gauge",
    f"Unix time at which the latest result of this port was produced. {_SCHEDULE}",
)
TRIES = Family(
    "portqry_probe_tries",
    "gauge",
    "gauge",
    f"TCP: connection attempts of the latest state probe; UDP: datagrams the latest probe sent. {_SCHEDULE}",
)
DURATION = Family(
    "portqry_probe_duration_seconds",
    "histogram",
    "histogram",
    f"Wall time of each probe, all tries and the protocol follow-up, seconds. {_SCHEDULE}",
)
RESOLVED = Family(
    "portqry_target_resolve_success",
    "gauge",
    "gauge",
    f"1 when the target's host resolved in its latest round. {_SCHEDULE}",
)
#: In exposition order.
FAMILIES: tuple[Family, ...] = (STATE, REASON, LAST_DURATION, LAST_TIMESTAMP, TRIES, DURATION, RESOLVED)
#: The size of the pieces a scrape is sent in, bytes.
CHUNK_BYTES = 1 << 18
_STATES = tuple(sorted(PortState, key=lambda s: s.value))


def escape(value: str) -> str:
    """A label value escaped for the text format and OpenMetrics (backslash, double quote, newline)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def histogram_key(result: ProbeResult, mode: HistogramMode) -> tuple[str, ...] | None:
    """Which histogram a result's duration goes to: ``(protocol,)`` per target, ``(address, protocol, port)``."""
    if mode == "none":
        return None
    if mode == "target":
        return (result.protocol,)
    return (result.address, result.protocol, str(result.port))


@dataclass(slots=True)
class Histogram:
    """Bucket counts (made cumulative on export), sum in seconds and count."""

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

    def cumulative(self) -> list[tuple[float, int]]:
        """``[(upper bound, cumulative count), ...]`` without ``+Inf`` (that is ``count``)."""
        out: list[tuple[float, int]] = []
        running = 0
        counts = self.counts or [0] * (len(self.bounds) + 1)
        for bound, n in zip(self.bounds, counts, strict=False):
            running += n
            out.append((bound, running))
        return out


def render_target(
    results: Iterable[ProbeResult],
    domain: str,
    site: str,
    histograms: Mapping[tuple[str, ...], Histogram],
    mode: HistogramMode,
    *,
    target: str = "",
    resolved: bool | None = None,
) -> dict[str, bytes]:
    """One target's sample lines, per family name (see :data:`FAMILIES`).

    Args:
        results: the target's latest results, in exposition order.
        domain: its ``domain`` label.
        site: its ``site`` label.
        histograms: its duration histograms, keyed as :func:`histogram_key` says.
        mode: the histogram mode.
        target: its name (for ``portqry_target_resolve_success``).
        resolved: whether its host resolved in its latest round; ``None`` leaves that family out.
    """
    state, reason, last_duration, last_ts, tries = [], [], [], [], []
    dom, sit = escape(domain), escape(site)
    for r in results:
        target = target or r.target
        short = (
            f'{{target="{escape(r.target)}",address="{escape(r.address)}",protocol="{r.protocol}",port="{r.port}",'
            f'domain="{dom}",site="{sit}"'
        )
        full = f'{short},service="{escape(r.service)}"'
        for s in _STATES:
            state.append(f'{STATE.name}{full},portqry_port_state="{s.value}"}} {"1.0" if s is r.state else "0.0"}\n')
        reason.append(f'{REASON.name}{full},reason="{r.reason.value}"}} 1.0\n')
        last_duration.append(f"{LAST_DURATION.name}{short}}} {_num(r.duration_seconds)}\n")
        last_ts.append(f"{LAST_TIMESTAMP.name}{short}}} {_num(r.timestamp)}\n")
        tries.append(f"{TRIES.name}{short}}} {_num(r.tries)}\n")
    out = {
        STATE.name: "".join(state).encode(),
        REASON.name: "".join(reason).encode(),
        LAST_DURATION.name: "".join(last_duration).encode(),
        LAST_TIMESTAMP.name: "".join(last_ts).encode(),
        TRIES.name: "".join(tries).encode(),
    }
    if mode != "none" and histograms and target:
        out[DURATION.name] = _render_histograms(target, dom, sit, histograms, mode).encode()
    if resolved is not None and target:
        out[RESOLVED.name] = f'{RESOLVED.name}{{target="{escape(target)}"}} {"1.0" if resolved else "0.0"}\n'.encode()
    return out


def _render_histograms(
    target: str, domain: str, site: str, histograms: Mapping[tuple[str, ...], Histogram], mode: HistogramMode
) -> str:
    lines = []
    for key in sorted(histograms):
        hist = histograms[key]
        if mode == "target":
            where = f'target="{escape(target)}",protocol="{key[0]}",domain="{domain}",site="{site}"'
        else:
            address, protocol, port = key
            where = (
                f'target="{escape(target)}",address="{escape(address)}",protocol="{protocol}",port="{port}",'
                f'domain="{domain}",site="{site}"'
            )
        for bound, count in hist.cumulative():
            lines.append(f'{DURATION.name}_bucket{{{where},le="{_num(bound)}"}} {float(count)}\n')
        lines.append(f'{DURATION.name}_bucket{{{where},le="+Inf"}} {float(hist.count)}\n')
        lines.append(f"{DURATION.name}_count{{{where}}} {float(hist.count)}\n")
        lines.append(f"{DURATION.name}_sum{{{where}}} {_num(hist.total)}\n")
    return "".join(lines)


PACK_LEVEL = 1
"""zlib level of :func:`render_packed`: level 1 compresses these lines about as tightly as 6, at about 1 GB/s."""

PACK_SLICE = 256
"""Ports rendered at a time by :func:`render_packed`."""

#: RFC 1952 2.3: ID1 ID2, CM=8 (deflate), no flags, no MTIME, no XFL, OS=255 (unknown).
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _deflater() -> zlib._Compress:
    return zlib.compressobj(PACK_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)


def render_packed(
    results: Sequence[ProbeResult],
    domain: str,
    site: str,
    histograms: Mapping[tuple[str, ...], Histogram],
    mode: HistogramMode,
    *,
    target: str = "",
    resolved: bool | None = None,
) -> dict[str, bytes]:
    """:func:`render_target`'s parts deflated, for keeping until the next round.

    Each part is raw deflate (RFC 1951) that ends in a sync flush, with no final block and no reference before
    its own start: it can be inflated alone (:func:`chunks`) or sent as it is inside a gzip member
    (:func:`gzip_chunks`).  Rendered and deflated :data:`PACK_SLICE` ports at a time, so that a 10,000-port
    target never holds its 12 MB of text at once.  Arguments as :func:`render_target`'s.

    Returns:
        the keys of :func:`render_target`; an empty part is ``b""``.
    """

    def rendered() -> Iterator[dict[str, bytes]]:
        for start in range(0, len(results), PACK_SLICE):
            yield render_target(results[start : start + PACK_SLICE], domain, site, {}, "none", target=target)
        yield render_target((), domain, site, histograms, mode, target=target, resolved=resolved)

    packers: dict[str, zlib._Compress] = {}
    out: dict[str, list[bytes]] = {}
    for parts in rendered():
        for name, body in parts.items():
            out.setdefault(name, [])
            if body:
                packer = packers.get(name) or packers.setdefault(name, _deflater())
                out[name].append(packer.compress(body))
    return {
        name: b"".join([*pieces, packers[name].flush(zlib.Z_SYNC_FLUSH)]) if name in packers else b""
        for name, pieces in out.items()
    }


def join(parts: Sequence[Mapping[str, bytes]], *, openmetrics: bool, names: frozenset[str] | None = None) -> bytes:
    """The families of every target's unpacked ``parts`` at once (see :func:`chunks`)."""
    return b"".join(chunks(parts, openmetrics=openmetrics, names=names))


def chunks(
    parts: Sequence[Mapping[str, bytes]],
    *,
    openmetrics: bool,
    names: frozenset[str] | None = None,
    packed: bool = False,
) -> Iterator[bytes]:
    """The families of every target's ``parts``, each family under one header, in :data:`FAMILIES` order.

    Yields pieces of about :data:`CHUNK_BYTES`.

    Args:
        parts: per target (in output order) its family name -> sample lines.
        openmetrics: OpenMetrics headers (no ``# EOF``: the caller ends the exposition).
        names: ``?name[]=`` filters (sample or family names); ``None`` = every family.
        packed: the parts are :func:`render_packed`'s (inflated here, :data:`CHUNK_BYTES` at a time).

    Raises:
        zlib.error: a packed part is not raw deflate (never one of :func:`render_packed`'s).
    """
    batch: list[bytes] = []
    size = 0
    for is_header, data in _families(parts, openmetrics, names):
        for piece in _inflated(data) if packed and not is_header else (data,):
            batch.append(piece)
            size += len(piece)
            if size >= CHUNK_BYTES:
                yield b"".join(batch)
                batch, size = [], 0
    if batch:
        yield b"".join(batch)


def gzip_chunks(
    parts: Sequence[Mapping[str, bytes]],
    *,
    openmetrics: bool,
    names: frozenset[str] | None = None,
    tail: Iterable[bytes] = (),
) -> Iterator[bytes]:
    """:func:`chunks`'s text of :func:`render_packed` ``parts``, then ``tail``, as one gzip member (RFC 1952).

    The packed parts go into the member's deflate stream as they are kept; only the family headers and ``tail``
    are deflated here (after a full flush before each part, so that nothing refers across a part).  The
    member's CRC-32 needs the text, so the parts are inflated once more, which costs a third of deflating them.
    Yields pieces of about :data:`CHUNK_BYTES`.

    Raises:
        zlib.error: a part is not raw deflate (never one of :func:`render_packed`'s).
    """
    deflater = _deflater()
    crc = length = 0
    flushed = True  # the deflater holds nothing since its last full flush
    batch: list[bytes] = [GZIP_HEADER]
    size = len(GZIP_HEADER)

    def texts() -> Iterator[tuple[bool, bytes]]:
        yield from _families(parts, openmetrics, names)
        for data in tail:
            yield True, data

    for is_text, data in texts():
        if is_text:
            crc, length = zlib.crc32(data, crc), length + len(data)
            pieces = [deflater.compress(data)]
            flushed = False
        else:
            for piece in _inflated(data):
                crc, length = zlib.crc32(piece, crc), length + len(piece)
            pieces = [data] if flushed else [deflater.flush(zlib.Z_FULL_FLUSH), data]
            flushed = True
        for piece in pieces:
            batch.append(piece)
            size += len(piece)
        if size >= CHUNK_BYTES:
            yield b"".join(batch)
            batch, size = [], 0
    batch += [deflater.flush(zlib.Z_FINISH), struct.pack("<II", crc, length & 0xFFFFFFFF)]
    yield b"".join(batch)


def _families(
    parts: Sequence[Mapping[str, bytes]], openmetrics: bool, names: frozenset[str] | None
) -> Iterator[tuple[bool, bytes]]:
    """``(True, header)`` and ``(False, part)`` in exposition order; empty parts left out."""
    for family in FAMILIES:
        if names is not None and not _wanted(family, names):
            continue
        body = [p[family.name] for p in parts if p.get(family.name)]
        if not body and family is DURATION:
            continue
        yield True, family.header(openmetrics=openmetrics)
        for part in body:
            yield False, part


#: Packed parts under this size are inflated at once (at most about 30 times as much text).
_SMALL_PACKED = 4096


def _inflated(part: bytes) -> Iterator[bytes]:
    """A packed part's text, at most :data:`CHUNK_BYTES` at a time (one 10,000-port target's states are 6 MB)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    if len(part) < _SMALL_PACKED:
        yield inflater.decompress(part)
        return
    piece = inflater.decompress(part, CHUNK_BYTES)
    while piece:
        yield piece
        piece = inflater.decompress(inflater.unconsumed_tail, CHUNK_BYTES)


def _wanted(family: Family, names: frozenset[str]) -> bool:
    if family.name in names:
        return True
    return family is DURATION and bool({f"{family.name}{s}" for s in ("_bucket", "_count", "_sum")} & names)

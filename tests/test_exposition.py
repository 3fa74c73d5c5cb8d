"""The pre-rendered port families: parseable text and OpenMetrics, 8 series per port, filters, no re-rendering."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import exposition, store
from exporter.collector import ExporterStatus, PortqryCollector, render, render_gzip_chunks
from exporter.result import ProbeResult
from exporter.states import PortState, Reason
from exporter.store import ResultStore, duration_buckets

PORT_SERIES = (
    "portqry_port_state",
    "portqry_probe_reason",
    "portqry_probe_last_duration_seconds",
    "portqry_probe_last_timestamp_seconds",
    "portqry_probe_tries",
)


def result(target: str, port: int, state: PortState = PortState.LISTENING, **kw: object) -> ProbeResult:
    fields: dict[str, object] = {
        "target": target,
        "host": target,
        "address": "198.18.0.2",
        "protocol": "tcp",
        "port": port,
        "service": 'odd "service"\\name',
        "state": state,
        "reason": Reason.SYN_ACK if state is PortState.LISTENING else Reason.REFUSED,
        "duration_seconds": 0.0123,
        "tries": 1,
        "timestamp": time.time(),
    }
    fields.update(kw)
    return ProbeResult(**fields)  # type: ignore[arg-type]


def scraped(mode: exposition.HistogramMode = "target") -> tuple[ResultStore, CollectorRegistry]:
    s = ResultStore(duration_buckets(2.0), mode)
    registry = CollectorRegistry()
    registry.register(PortqryCollector(s, ExporterStatus()))
    s.record("dc1", [result("dc1", 389), result("dc1", 81, PortState.NOT_LISTENING)], domain="corp.test", site="Hub")
    s.record("web", [result("web", 443, protocol="udp")])
    return s, registry


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_both_formats_parse_with_the_same_series(openmetrics: bool) -> None:
    s, registry = scraped()
    body = render(s, registry, openmetrics=openmetrics).decode()
    families = {f.name: f for f in (parse_openmetrics(body) if openmetrics else parse_text(body))}
    assert families["portqry_port_state"].type == ("stateset" if openmetrics else "gauge")
    per_port: dict[tuple[str, str], int] = {}
    for name in PORT_SERIES:
        for sample in families[name].samples:
            key = (sample.labels["target"], sample.labels["port"])
            per_port[key] = per_port.get(key, 0) + 1
            assert sample.labels["domain"] == ("corp.test" if key[0] == "dc1" else "")
    assert per_port == {("dc1", "389"): 8, ("dc1", "81"): 8, ("web", "443"): 8}  # the series budget
    service = {x.labels["service"] for x in families["portqry_probe_reason"].samples}
    assert service == {'odd "service"\\name'}  # escaped on the way out, read back intact
    assert "portqry_probe_success" not in families
    # the histogram is per (target, protocol): dc1 has one tcp histogram for both of its ports
    counts = {
        (x.labels["target"], x.labels["protocol"]): x.value
        for x in families["portqry_probe_duration_seconds"].samples
        if x.name.endswith("_count")
    }
    assert counts == {("dc1", "tcp"): 2, ("web", "udp"): 1}
    assert "portqry_exporter_probes_in_flight" in families  # the collector's families follow
    if openmetrics:
        assert body.endswith("# EOF\n") and body.count("# EOF") == 1


@pytest.mark.parametrize(("mode", "keys"), [("port", {"address", "port"}), ("none", None)])
def test_histogram_modes(mode: exposition.HistogramMode, keys: set[str] | None) -> None:
    s, registry = scraped(mode)
    families = {f.name: f for f in parse_text(render(s, registry).decode())}
    if keys is None:
        assert "portqry_probe_duration_seconds" not in families
    else:
        labels = {k for x in families["portqry_probe_duration_seconds"].samples for k in x.labels}
        assert keys <= labels


def test_name_filters_keep_only_the_families_asked() -> None:
    s, registry = scraped()
    names = frozenset({"portqry_probe_tries", "portqry_probes_total", "portqry_probe_duration_seconds_count"})
    body = render(s, registry, names=names).decode()
    assert {f.name for f in parse_text(body)} == {
        "portqry_probe_tries",
        "portqry_probes",
        "portqry_probe_duration_seconds",
    }


def test_a_scrape_renders_nothing_and_a_round_renders_its_target_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = exposition.render_packed

    def counting(results, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(results[0].target if results else "")
        return real(results, *args, **kwargs)

    monkeypatch.setattr(store, "render_packed", counting)
    s, registry = scraped()
    assert calls == ["dc1", "web"]
    for _ in range(5):
        render(s, registry)
        render(s, registry, openmetrics=True)
    assert calls == ["dc1", "web"]  # scrapes join what is ready
    s.record("web", [result("web", 443, protocol="udp")])
    assert calls == ["dc1", "web", "web"]  # one round re-renders its own target only


@pytest.mark.parametrize("ports", [100, 2 * exposition.PACK_SLICE + 7])
def test_the_store_keeps_a_targets_lines_deflated_and_a_scrape_inflates_them_exactly(ports: int) -> None:
    s = ResultStore(duration_buckets(2.0), "target")
    now = time.time()
    results = [
        result("dc1", p, PortState.LISTENING if p % 2 else PortState.NOT_LISTENING, timestamp=now + p / 1000)
        for p in range(20000, 20000 + ports)
    ]
    s.record("dc1", results, domain="corp.test", site="Hub")
    plain = exposition.render_target(
        sorted(results, key=lambda r: (r.address, r.protocol, r.port)),
        "corp.test",
        "Hub",
        s._targets["dc1"].histograms,
        "target",
        target="dc1",
        resolved=True,
    )
    kept = s._targets["dc1"].rendered
    assert kept.keys() == plain.keys()
    assert sum(map(len, kept.values())) * 8 < sum(map(len, plain.values()))  # about 1/18 kept
    assert s.exposition(openmetrics=False) == exposition.join([plain], openmetrics=False)
    assert s.exposition(openmetrics=True, names=frozenset({"portqry_probe_tries"})) == exposition.join(
        [plain], openmetrics=True, names=frozenset({"portqry_probe_tries"})
    )


def test_a_10000_port_target_never_holds_its_text_at_once() -> None:
    s = ResultStore(duration_buckets(2.0), "target", history=0)
    results = [result("big", p, timestamp=1.7e9 + p) for p in range(10000, 20000)]
    tracemalloc.start()
    try:
        s.record("big", results)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # rendered and deflated 256 ports at a time: about 3 MB above what is kept (30 MB when rendered whole)
    assert peak - kept < 5_000_000, (peak, kept)
    tracemalloc.start()
    try:
        sizes = [len(piece) for piece in s.exposition_chunks(openmetrics=False)]
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(sizes) > 11_000_000 and max(sizes) < 2 * exposition.CHUNK_BYTES
    assert peak - kept < 8 * exposition.CHUNK_BYTES, (peak, kept)  # its 6 MB of states inflated piece by piece


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_a_gzip_scrape_sends_the_kept_blocks_and_decodes_to_the_same_body(openmetrics: bool) -> None:
    s = ResultStore(duration_buckets(2.0), "target")
    now = time.time()
    for t, ports in (("big", 3 * exposition.PACK_SLICE), ("dc1", 3), ("web", 40)):
        s.record(t, [result(t, p, timestamp=now + p / 1000) for p in range(20000, 20000 + ports)], domain="corp.test")
    registry = CollectorRegistry()
    registry.register(PortqryCollector(s, ExporterStatus()))
    for names in (None, frozenset({"portqry_probe_tries", "portqry_exporter_probes_in_flight"})):
        plain = render(s, registry, openmetrics=openmetrics, names=names)
        pieces = list(render_gzip_chunks(s, registry, openmetrics=openmetrics, names=names))
        body = b"".join(pieces)
        assert gzip.decompress(body) == plain  # CRC-32 and length checked by the gzip module
        member = zlib.decompressobj(31)
        assert member.decompress(body) == plain and member.eof and not member.unused_data  # one member, whole
        kept = [p for e in s._targets.values() for p in e.rendered.values() if p]
        if names is None:
            assert all(part in body for part in kept)  # the kept blocks, not a new compression
            assert len(body) < len(plain) / 8

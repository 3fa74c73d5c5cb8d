"""Exposition from stored results: no duplicate series, whatever the probes found."""

from __future__ import annotations

import dataclasses
import time

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import ExporterStatus, PortqryCollector, render
from exporter.model import DynamicPort, RpcDetails
from exporter.result import ProbeResult
from exporter.states import PortState, Reason
from exporter.store import ResultStore, duration_buckets


def rpc_result(port: int) -> ProbeResult:
    details = RpcDetails(
        via="tcp",
        entries=(),
        protocol_sequence_counts={"ncacn_ip_tcp": 3, "ncalrpc": 5},
        dynamic_ports=(DynamicPort(49152, ("[MS-DRSR]", "[MS-LSAT]"), "listening", "syn-ack"),),
    )
    return ProbeResult(
        target="dc1",
        host="dc1",
        address="198.18.0.2",
        protocol="tcp",
        port=port,
        service="epmap",
        state=PortState.LISTENING,
        reason=Reason.PROTOCOL_REPLY,
        duration_seconds=0.01,
        tries=1,
        timestamp=time.time(),
        details={"rpc": details},
    )


def test_rpc_bound_to_two_ports_gives_no_duplicate_series() -> None:
    store = ResultStore(duration_buckets(6.0))
    store.record("dc1", [rpc_result(135), rpc_result(1135)])
    registry = CollectorRegistry()
    registry.register(PortqryCollector(store, ExporterStatus()))
    text = render(store, registry).decode()
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for family in text_string_to_metric_families(text):  # the parser itself accepts duplicates: count them
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, key
            seen.add(key)
    endpoints = {
        k[1]: v
        for k, v in [
            ((s.name, tuple(sorted(s.labels.items()))), s.value)
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "portqry_rpc_endpoints"
        ]
    }
    assert sorted(endpoints.values()) == [3.0, 5.0]
    reachable = [
        s for f in text_string_to_metric_families(text) for s in f.samples if s.name == "portqry_rpc_endpoint_reachable"
    ]
    assert {s.labels["interface"] for s in reachable} == {"[MS-DRSR]", "[MS-LSAT]"}


def test_two_addresses_never_collide_and_a_gone_address_leaves() -> None:
    store = ResultStore(duration_buckets(1.0))
    registry = CollectorRegistry()
    registry.register(PortqryCollector(store, ExporterStatus()))
    a = rpc_result(135)
    b = dataclasses.replace(a, address="198.18.0.3")
    store.record("dc1", [a, b], domain="corp.test", site="Hub")
    text = render(store, registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for family in families.values():
        keys = [(s.name, tuple(sorted(s.labels.items()))) for s in family.samples]
        assert len(keys) == len(set(keys)), family.name
    states = {
        (s.labels["address"], s.labels["domain"], s.labels["site"]) for s in families["portqry_port_state"].samples
    }
    assert states == {("198.18.0.2", "corp.test", "Hub"), ("198.18.0.3", "corp.test", "Hub")}
    assert {s.labels["address"] for s in families["portqry_rpc_endpoints"].samples} == {"198.18.0.2", "198.18.0.3"}
    store.record("dc1", [b], domain="corp.test", site="Hub")  # the name no longer resolves to .2
    text = render(store, registry).decode()
    assert 'address="198.18.0.2"' not in text and 'address="198.18.0.3"' in text

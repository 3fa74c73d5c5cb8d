"""Issue 11 acceptance, shards: three daemons ``--shard 0/3``, ``1/3``, ``2/3`` over the same 30 targets.

Every target appears exactly once across the three ``/metrics``, and a real Prometheus' ``hashmod`` relabel
rule with ``modulus: 3`` picks the same shard for every target name.

All of it on loopback:

- one TCP listener on 127.0.0.1 (accepts and closes), the one port every target probes;
- 30 configured targets named ``host00.shard.test`` ... ``host29.shard.test``, each with ``host = "127.0.0.1"``
  (an IP literal: no name is ever resolved);
- three ``python -m exporter --shard I/3`` subprocesses on 127.0.0.1, each with that same config file;
- Debian's ``prometheus`` on 127.0.0.1 with one job per shard: ``static_configs`` lists the 30 names as
  ``__address__``, ``hashmod`` (modulus 3) into ``__tmp_shard``, ``keep`` on ``I``, then ``__address__`` is
  replaced by shard I's exporter (127.0.0.1:<port>) before any scrape, so Prometheus never dials a name; and
  one job that writes the ``hashmod`` of a few names for several moduli into labels (:data:`PINNED`, also
  checked without Prometheus in ``tests/test_shard.py``).

Run: ``python -m pytest tests/test_shard_e2e.py -q`` (about 10 s; no root needed).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from exporter.shard import hashmod
from tests.alerting import Prometheus, require_binary, run_prometheus, wait_until
from tests.daemon import RunningDaemon, run_daemon
from tests.peers import tcp_listener
from tests.test_shard import PINNED, PINNED_MODULI

N = 3
NAMES = [f"host{i:02d}.shard.test" for i in range(30)]
WAIT = 60.0


@dataclass
class Stack:
    daemons: list[RunningDaemon]
    prometheus: Prometheus


def _config(port: int) -> str:
    lines = [
        "[exporter]",
        "[defaults]",
        "interval_seconds = 5",
        "timeout_seconds = 1.0",
        "tcp_tries = 1",
        "jitter_ratio = 0.0",
    ]
    for name in NAMES:
        lines += ["[[targets]]", f'name = "{name}"', 'host = "127.0.0.1"', f'ports = ["tcp/{port}"]']
    return "\n".join(lines) + "\n"


def _shard_job(index: int, address: str) -> dict[str, Any]:
    """The Prometheus side of shard ``index``: hashmod of the target name, keep ``index``, then loopback only."""
    return {
        "job_name": f"shard-{index}",
        "scrape_interval": "2s",
        "scrape_timeout": "1s",
        "static_configs": [{"targets": NAMES}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "target"},
            {"source_labels": ["__address__"], "action": "hashmod", "modulus": N, "target_label": "__tmp_shard"},
            {"source_labels": ["__tmp_shard"], "regex": str(index), "action": "keep"},
            {"target_label": "__address__", "replacement": address},
        ],
    }


def _pin_job(address: str) -> dict[str, Any]:
    """Every name of :data:`PINNED` with its ``hashmod`` for each modulus of :data:`PINNED_MODULI` as labels."""
    relabel: list[dict[str, Any]] = [{"source_labels": ["__address__"], "target_label": "name"}]
    relabel += [
        {"source_labels": ["__address__"], "action": "hashmod", "modulus": m, "target_label": f"m_{m}"}
        for m in PINNED_MODULI
    ]
    relabel.append({"target_label": "__address__", "replacement": address})
    return {
        "job_name": "hashmod-pins",
        "scrape_interval": "1h",
        "static_configs": [{"targets": list(PINNED)}],
        "relabel_configs": relabel,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_binary("prometheus")
    work = tmp_path_factory.mktemp("shard")
    with contextlib.ExitStack() as stack, tcp_listener(sources=[]) as port:
        config = work / "config.toml"
        config.write_text(_config(port), encoding="utf-8")
        daemons = [stack.enter_context(run_daemon(config, args=["--shard", f"{i}/{N}"])) for i in range(N)]
        for daemon in daemons:
            daemon.wait_for(lambda d: d.get("/-/ready")[0] == 200, timeout=WAIT)
        addresses = [daemon.url.removeprefix("http://") for daemon in daemons]
        prom_config = {
            "global": {"scrape_interval": "2s", "scrape_timeout": "1s", "evaluation_interval": "1h"},
            "scrape_configs": [*(_shard_job(i, addresses[i]) for i in range(N)), _pin_job(addresses[0])],
        }
        prometheus = stack.enter_context(run_prometheus(work / "prometheus", prom_config))
        yield Stack(daemons, prometheus)


def _scraped_targets(daemon: RunningDaemon) -> set[str]:
    return {labels["target"] for labels, _ in daemon.samples().get("portqry_port_state", [])}


def _targets_api(prometheus: Prometheus) -> dict[str, Any]:
    answer = prometheus.api("targets", state="any")
    assert answer.get("status") == "success", answer
    data: dict[str, Any] = answer["data"]
    return data


def test_every_target_appears_exactly_once_across_the_shards(stack: Stack) -> None:
    seen: dict[str, list[int]] = {}
    for index, daemon in enumerate(stack.daemons):
        names = _scraped_targets(daemon)
        assert names, f"shard {index}/{N} exports no target"
        assert names == {n for n in NAMES if hashmod(n, N) == index}
        for name in names:
            seen.setdefault(name, []).append(index)
    assert sorted(seen) == sorted(NAMES)
    assert all(len(shards) == 1 for shards in seen.values()), {n: s for n, s in seen.items() if len(s) != 1}


def test_each_daemon_exports_its_shard(stack: Stack) -> None:
    for index, daemon in enumerate(stack.daemons):
        assert daemon.samples()["portqry_exporter_shard"] == [({"index": str(index), "total": str(N)}, 1.0)]


def test_sd_lists_every_target_on_every_shard(stack: Stack) -> None:
    """``/sd`` is not sharded (a Prometheus fleet shards for itself): each replica lists all 30 targets."""
    for daemon in stack.daemons:
        status, body = daemon.get("/sd")
        assert status == 200
        assert len(json.loads(body)) == len(NAMES)


def test_prometheus_hashmod_picks_the_same_shard_for_every_name(stack: Stack) -> None:
    def settled() -> dict[str, Any] | None:
        data = _targets_api(stack.prometheus)
        jobs = {t["labels"]["job"] for t in data["activeTargets"]}
        if not {f"shard-{i}" for i in range(N)} <= jobs:
            return None
        if any(t["health"] != "up" for t in data["activeTargets"] if t["labels"]["job"].startswith("shard-")):
            return None  # every kept target scraped once, so the scrape URLs below were really dialled
        return data

    data = wait_until(settled, WAIT, "Prometheus scraped every shard job", stack.prometheus.process.tail)
    assert data is not None
    picked: dict[str, int] = {}
    for index, daemon in enumerate(stack.daemons):
        job = f"shard-{index}"
        active = [t for t in data["activeTargets"] if t["labels"]["job"] == job]
        dropped = [t for t in data["droppedTargets"] if t["discoveredLabels"]["job"] == job]
        kept = {t["labels"]["target"] for t in active}
        assert kept == _scraped_targets(daemon), f"{job}: Prometheus keeps {sorted(kept)}"
        assert {t["discoveredLabels"]["__address__"] for t in dropped} == set(NAMES) - kept
        assert {t["scrapeUrl"] for t in active} == {f"{daemon.url}/metrics"}  # loopback only
        for name in kept:
            assert name not in picked, f"{name}: kept by shard-{picked[name]} and {job}"
            picked[name] = index
    assert sorted(picked) == sorted(NAMES)


def test_prometheus_hashmod_matches_the_pinned_values(stack: Stack) -> None:
    def pins() -> list[dict[str, Any]]:
        return [t for t in _targets_api(stack.prometheus)["activeTargets"] if t["labels"]["job"] == "hashmod-pins"]

    active = wait_until(pins, WAIT, "Prometheus lists the hashmod-pins job")
    got = {t["labels"]["name"]: tuple(int(t["labels"][f"m_{m}"]) for m in PINNED_MODULI) for t in active}
    assert got == PINNED
    for name, values in got.items():
        assert tuple(hashmod(name, m) for m in PINNED_MODULI) == values, name

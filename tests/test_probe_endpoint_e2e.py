"""``GET /probe`` end to end: no packet to a refused address (an iptables counter), and a real Prometheus.

- ``test_refused_probe_sends_no_packet``: a namespace of the test's own (``198.18.N.2``, a TCP listener) with
  an INPUT rule that matches, and so counts, every packet to its address; the daemon (a subprocess) refuses
  ``/probe`` of that address with 403 while ``[probe] allow`` does not hold it, and the counter stays 0; after a
  reload that allows the namespace's /24 the same request is answered and the counter grows.  Test bed: root.
- ``test_prometheus_scrapes_probe_through_relabelling``: ``/usr/bin/prometheus`` on 127.0.0.1 with the
  blackbox-style job (target in ``__param_target``, ``instance`` from it, ``__address__`` the exporter), two
  targets (an address and a name the test's DNS server answers), a module with a listening, a closed and a
  silent port; the 1 s scrape timeout reaches the exporter as ``X-Prometheus-Scrape-Timeout-Seconds``, so the
  silent port (5 s UDP wait) is cut and every scrape succeeds.  Loopback only.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests import testbed
from tests.alerting import run_prometheus, wait_until
from tests.daemon import RunningDaemon, run_daemon
from tests.dnsserver import dns_server
from tests.peers import closed_port, tcp_listener, udp_peer

LISTEN_PORT = 9106


def _config(module_ports: str, allow: str, extra: str = "", module_extra: str = "") -> str:
    return f"""
[exporter]
udp_pacing_seconds = 0.0
udp_recheck_max = 0
[defaults]
timeout_seconds = 0.5
tcp_tries = 1
{extra}
[probe]
allow = [{allow}]
[modules.m]
ports = [{module_ports}]
{module_extra}
"""


def _refused(daemon: RunningDaemon) -> dict[str, float]:
    return {x["reason"]: v for x, v in daemon.samples().get("portqry_probe_refused_total", [])}


@pytest.mark.testbed
def test_refused_probe_sends_no_packet(tmp_path: Path) -> None:
    testbed.require_netns()
    with testbed.Namespace.create("prb") as ns:
        listener = ns.start_listeners(tcp=[LISTEN_PORT])
        counting = ("-d", ns.address)  # no target: the rule only counts, every packet to the address
        try:
            ns.add_rule(*counting)
            config = tmp_path / "c.toml"
            config.write_text(_config(f'"tcp/{LISTEN_PORT}", "udp/{LISTEN_PORT}"', '"127.0.0.0/8"'))
            with run_daemon(config) as daemon:
                path = f"/probe?target={ns.address}&module=m"
                status, body = daemon.get(path)
                assert status == 403, body
                assert f"not allowed: {ns.address} is in no [probe] allow network" in body
                time.sleep(0.5)
                assert ns.packet_count(*counting) == 0
                assert _refused(daemon)["not-allowed"] == 1

                config.write_text(_config(f'"tcp/{LISTEN_PORT}", "udp/{LISTEN_PORT}"', f'"{ns.subnet}"'))
                assert daemon.post("/-/reload")[0] == 200
                status, body = daemon.get(path)
                assert status == 200, body
                assert re.search(
                    rf'portqry_port_state\{{target="{re.escape(ns.address)}",address="{re.escape(ns.address)}",'
                    rf'protocol="tcp",port="{LISTEN_PORT}",[^}}]*portqry_port_state="listening"\}} 1\.0',
                    body,
                ), body
                assert ns.packet_count(*counting) > 0
                assert _refused(daemon)["not-allowed"] == 1
        finally:
            ns.stop_process(listener)


def _prometheus_config(exporter: str, targets: list[str]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "portqry-probe",
                "metrics_path": "/probe",
                "params": {"module": ["m"]},
                "static_configs": [{"targets": targets}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": exporter},
                ],
            }
        ],
    }


def test_prometheus_scrapes_probe_through_relabelling(tmp_path: Path) -> None:
    closed = closed_port()
    name = "lo.probe.test"
    with (
        tcp_listener() as port,
        udp_peer(echo=False) as (silent, _),
        dns_server({name: "127.0.0.1"}) as (_addr, dns_port, _queries),
    ):
        config = tmp_path / "c.toml"
        resolver = f'[resolver]\nnameservers = ["127.0.0.1"]\nport = {dns_port}\n'
        ports = f'"tcp/{port}", "tcp/{closed}", "udp/{silent}"'
        config.write_text(_config(ports, '"127.0.0.1/32"', resolver, "timeout_seconds = 5.0"))
        with run_daemon(config) as daemon:
            exporter = daemon.url.removeprefix("http://")
            with run_prometheus(tmp_path / "prometheus", _prometheus_config(exporter, ["127.0.0.1", name])) as prom:

                def listening() -> list[dict[str, Any]]:
                    rows = prom.query('portqry_port_state{job="portqry-probe",portqry_port_state="listening"} == 1')
                    return rows if len({r["metric"]["instance"] for r in rows}) == 2 else []

                rows = wait_until(listening, 60, "both /probe targets scraped", prom.process.tail)
                for row in rows:
                    m = row["metric"]
                    assert m["instance"] == m["target"] and m["instance"] in ("127.0.0.1", name)
                    assert (m["address"], m["protocol"], m["port"]) == ("127.0.0.1", "tcp", str(port))
                closed_rows = prom.query(
                    f'portqry_port_state{{job="portqry-probe",port="{closed}",portqry_port_state="not_listening"}}'
                )
                assert {r["metric"]["instance"]: r["value"][1] for r in closed_rows} == {"127.0.0.1": "1", name: "1"}
                # the scrape timeout (1 s) went to the exporter as a header: the silent port is cut, every scrape ok
                time.sleep(2)
                assert prom.query(f'portqry_port_state{{job="portqry-probe",port="{silent}"}}') == []
                up = {r["metric"]["instance"]: r["value"][1] for r in prom.query('up{job="portqry-probe"}')}
                assert up == {"127.0.0.1": "1", name: "1"}
                took = prom.query('max(portqry_probe_module_duration_seconds{job="portqry-probe"})')
                assert 0.3 < float(took[0]["value"][1]) < 0.9
                targets = prom.targets()
                assert {t["health"] for t in targets} == {"up"}, targets
            requests = daemon.samples()["portqry_probe_requests_total"]
            assert sum(v for x, v in requests if x == {"module": "m", "result": "partial"}) >= 2

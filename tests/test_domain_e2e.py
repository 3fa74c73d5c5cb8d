"""Issue 10 acceptance: a domain of two real Samba DCs in two AD sites, discovered, probed and alerted on.

One module-scoped stack, all real: ``dc`` (``Default-First-Site-Name``) and ``dc2`` (``Branch-Site``) in their
namespaces; the exporter with one ``[[domains]]`` entry and no target, asking dc1's DNS; Prometheus with the
shipped rules (``for:`` shortened) scraping it, and Alertmanager with a webhook.  The tests run in file order:
both DCs found with site, roles and client site; ``/sd``; every address of dc2's name; DROP tcp/389 on dc2 only
(its state, and the own-site alerts of the Branch site through Prometheus); dc2's SRV records removed (its
series leave after one rediscovery) and restored; dc1's DNS unreachable (the last good list stays, discovery
success 0); the dashboard's domain panels answer.

Network: the exporter sends only to dc1's and dc2's addresses (its resolver is dc1); Prometheus and
Alertmanager are on 127.0.0.1.  Run: ``CI=true python -m pytest tests/test_domain_e2e.py -x -q`` as root.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests import testbed
from tests.alerting import (
    Alertmanager,
    Prometheus,
    WebhookReceiver,
    prometheus_config,
    run_alertmanager,
    run_prometheus,
    wait_until,
    webhook_receiver,
)
from tests.daemon import RunningDaemon, run_daemon
from tests.dashboards import DOMAIN_PANELS, RULES, dashboard_queries, runnable
from tests.test_deploy_prometheus import SCRAPE_CONFIG, rules_with_for

WAIT = 90.0
REDISCOVER = 2
SITE1, SITE2 = "Default-First-Site-Name", "Branch-Site"


@dataclass
class Stack:
    dc: testbed.SambaDC
    dc2: Any
    firewall1: testbed.Firewall
    firewall2: testbed.Firewall
    daemon: RunningDaemon
    receiver: WebhookReceiver
    alertmanager: Alertmanager
    prometheus: Prometheus

    def samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        return self.daemon.samples()

    def states(self) -> dict[tuple[str, str, str, str], str]:
        """``(target, address, protocol, port) -> state`` from the exporter."""
        return {
            (x["target"], x["address"], x["protocol"], x["port"]): x["portqry_port_state"]
            for x, v in self.samples().get("portqry_port_state", [])
            if v == 1
        }

    def targets(self) -> set[str]:
        return {x["target"] for x, _ in self.samples().get("portqry_port_state", [])}

    def diagnostics(self) -> str:
        parts = [self.prometheus.alerts_text()]
        try:
            parts.append(f"exporter states: {sorted(self.states().items())}")
            parts.append(f"domains: {self.samples().get('portqry_domain_controllers')}")
        except (OSError, AssertionError, ValueError) as exc:
            parts.append(f"(exporter /metrics failed: {exc!r})")
        parts.append(self.receiver.summary())
        parts.append(f"exporter log tail: {self.daemon.log_lines[-8:]}")
        return "\n".join(parts)

    def wait(self, predicate: Any, what: str, timeout: float = WAIT) -> Any:
        return wait_until(predicate, timeout, what, self.diagnostics)


@pytest.fixture(scope="module")
def stack(
    dc: testbed.SambaDC,
    dc2: Any,
    dc_firewall: testbed.Firewall,
    dc2_firewall: testbed.Firewall,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("domain")
    config = work / "exporter.toml"
    config.write_text(
        f"""
[exporter]
udp_pacing_seconds = 0.05
[resolver]
nameservers = ["{dc.address}"]
timeout_seconds = 1.0
[defaults]
interval_seconds = 2
timeout_seconds = 1.0
tcp_tries = 2
jitter_ratio = 0.0
[[domains]]
name = "{dc.dns_domain}"
ports = ["tcp/389", "udp/389", "tcp/88", "udp/88", "tcp/135"]
rediscover_seconds = {REDISCOVER}
min_reachable_dcs = 2
"""
    )
    rules = rules_with_for(RULES, work / "portqry-alerts.yml", "4s")
    with run_daemon(config) as daemon:
        daemon.wait_for(lambda d: d.get("/-/ready")[0] == 200, timeout=60)
        with (
            webhook_receiver() as receiver,
            run_alertmanager(work / "alertmanager", receiver.url) as alertmanager,
            run_prometheus(
                work / "prometheus",
                prometheus_config(
                    SCRAPE_CONFIG,
                    rules=rules,
                    scrape_target=daemon.url.removeprefix("http://"),
                    alertmanager=alertmanager.url.removeprefix("http://"),
                ),
            ) as prometheus,
        ):
            s = Stack(dc, dc2, dc_firewall, dc2_firewall, daemon, receiver, alertmanager, prometheus)
            s.wait(lambda: prometheus.targets() and prometheus.targets()[0]["health"] == "up", "target up")
            yield s


def test_both_dcs_are_found_with_site_roles_and_client_site(stack: Stack) -> None:
    dc1, dc2 = stack.dc.fqdn, stack.dc2.fqdn
    stack.wait(lambda: stack.targets() == {dc1, dc2}, "both DCs probed")
    samples = stack.samples()
    found = {(x["domain"], x["site"]): v for x, v in samples["portqry_domain_controllers"]}
    assert found == {(stack.dc.dns_domain, SITE1): 1, (stack.dc.dns_domain, SITE2): 1}
    assert samples["portqry_domain_discovery_success"] == [({"domain": stack.dc.dns_domain}, 1.0)]
    sites = {x["target"]: x["site"] for x, _ in samples["portqry_port_state"]}
    assert sites == {dc1: SITE1, dc2: SITE2}
    roles = {(x["target"], x["role"]): v for x, v in samples["portqry_dc_role"]}
    assert roles[(dc1, "pdc")] == 1 and roles[(dc2, "pdc")] == 0
    assert roles[(dc1, "kdc")] == 1 and roles[(dc2, "kdc")] == 1
    # each DC sees the exporter come from the root end of its own veth, whose subnet is mapped to its site
    client = {x["target"]: x["site"] for x, _ in samples["portqry_client_site_info"]}
    assert client == {dc1: SITE1, dc2: SITE2}
    states = stack.states()
    for target, address in ((dc1, stack.dc.address), (dc2, stack.dc2.address)):
        assert states[(target, address, "tcp", "389")] == "listening"
        assert states[(target, address, "udp", "389")] == "listening"


def test_sd_serves_the_domain(stack: Stack) -> None:
    status, body = stack.daemon.get(f"/sd?domain={stack.dc.dns_domain}")
    assert status == 200
    groups = {g["targets"][0]: g["labels"] for g in json.loads(body)}
    assert set(groups) == {stack.dc.fqdn, stack.dc2.fqdn}
    assert groups[stack.dc2.fqdn]["__meta_portqry_site"] == SITE2
    assert ",pdc," in groups[stack.dc.fqdn]["__meta_portqry_roles"]
    status, body = stack.daemon.get(f"/sd?site={SITE2}")
    assert [g["targets"] for g in json.loads(body)] == [[stack.dc2.fqdn]]


def test_every_address_of_a_dc_is_probed(stack: Stack) -> None:
    dc2 = stack.dc2.fqdn
    with stack.dc2.two_addresses() as addresses:
        stack.wait(
            lambda: {a for (t, a, p, n) in stack.states() if t == dc2 and (p, n) == ("tcp", "389")} == set(addresses),
            "both addresses of dc2 probed",
        )
        states = stack.states()
        assert all(states[(dc2, a, "tcp", "389")] == "listening" for a in addresses)
        roots = {x["address"] for x, _ in stack.samples()["portqry_ldap_root_dse_info"] if x["target"] == dc2}
        assert roots == set(addresses)  # detail series carry the address too: no collision
    stack.wait(
        lambda: {a for (t, a, p, n) in stack.states() if t == dc2 and n == "389"} == {stack.dc2.address},
        "the second address leaves with its record",
    )


def test_ldap_dropped_on_dc2_only_pages_its_site(stack: Stack) -> None:
    dc1, dc2 = stack.dc.fqdn, stack.dc2.fqdn
    with stack.firewall2.blocked("tcp", 389):
        stack.wait(lambda: stack.states().get((dc2, stack.dc2.address, "tcp", "389")) == "filtered", "dc2 389 filtered")
        assert stack.states()[(dc1, stack.dc.address, "tcp", "389")] == "listening"
        stack.wait(lambda: stack.prometheus.firing("PortqryOwnSiteNoLdapDc", site=SITE2), "no LDAP DC in Branch-Site")
        stack.wait(
            lambda: stack.prometheus.firing("PortqryOwnSiteDcPortDown", target=dc2, port="389"), "dc2 own-site alert"
        )
        stack.wait(lambda: stack.prometheus.firing("PortqryDomainTooFewReachableDcs"), "too few reachable DCs (1 < 2)")
        assert not stack.prometheus.firing("PortqryOwnSiteNoLdapDc", site=SITE1)  # dc1's site still has its DC
        stack.wait(lambda: stack.receiver.find("PortqryOwnSiteNoLdapDc", "firing", site=SITE2), "webhook notified")
    stack.wait(lambda: stack.states().get((dc2, stack.dc2.address, "tcp", "389")) == "listening", "dc2 389 back")
    stack.wait(lambda: not stack.prometheus.firing("PortqryOwnSiteNoLdapDc"), "site alert resolved")


def test_a_retired_dc_leaves_metrics_within_one_rediscovery(stack: Stack) -> None:
    dc1, dc2 = stack.dc.fqdn, stack.dc2.fqdn
    with stack.dc2.retired():
        started = time.monotonic()
        stack.wait(lambda: stack.targets() == {dc1}, "dc2's series leave /metrics")
        assert time.monotonic() - started < 3 * REDISCOVER + 5
        found = {x["site"]: v for x, v in stack.samples()["portqry_domain_controllers"]}
        assert found == {SITE1: 1}
        assert [g["targets"] for g in json.loads(stack.daemon.get("/sd")[1])] == [[dc1]]
    stack.wait(lambda: stack.targets() == {dc1, dc2}, "dc2 back after its records return")


def test_dns_unreachable_keeps_the_last_good_list(stack: Stack) -> None:
    dc1, dc2 = stack.dc.fqdn, stack.dc2.fqdn
    with stack.firewall1.blocked("udp", 53), stack.firewall1.blocked("tcp", 53):
        stack.wait(
            lambda: stack.samples()["portqry_domain_discovery_success"][0][1] == 0, "discovery fails", timeout=30
        )
        time.sleep(REDISCOVER + 1)
        assert stack.samples()["portqry_domain_discovery_success"][0][1] == 0
        found = {x["site"]: v for x, v in stack.samples()["portqry_domain_controllers"]}
        assert found == {SITE1: 1, SITE2: 1}  # the last good list stays
        assert {dc1, dc2} <= stack.targets()
        assert any("discovery failed" in line for line in stack.daemon.log_lines[-50:])
    stack.wait(lambda: stack.samples()["portqry_domain_discovery_success"][0][1] == 1, "discovery back")


def test_the_domain_panels_answer(stack: Stack) -> None:
    panels = DOMAIN_PANELS | {"Domain matrix (domain / site / DC x port)"}
    queries = [(title, runnable(expr)) for title, expr in dashboard_queries() if title in panels]
    assert {title for title, _ in queries} == panels
    empty = [title for title, expr in queries if not stack.prometheus.query(expr)]
    assert not empty, empty

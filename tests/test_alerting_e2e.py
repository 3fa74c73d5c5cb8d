"""Issue 6 acceptance, end to end: DC -> exporter -> Prometheus -> Alertmanager -> webhook, and the dashboard.

One module-scoped stack, all of it real and on loopback:

- the test bed's Samba AD DC in its namespace (``dc``, ``dc_firewall``);
- the exporter (``python -m exporter``) probing it every 2 s with a 1 s timeout, with the posture checks on
  and Samba's own CA as ``tls_ca_file`` (so the healthy DC raises no posture alert either);
- a webhook receiver thread on 127.0.0.1 recording what Alertmanager POSTs;
- ``prometheus-alertmanager`` on 127.0.0.1 with clustering disabled, one group per alert, 1 s group timings;
- ``prometheus`` on 127.0.0.1 with ``deploy/prometheus/prometheus.yml`` rewritten only in its timings (1 s),
  its target (the exporter), its rule file (the shipped rules with every ``for:`` shortened by
  ``rules_with_for``) and its Alertmanager.

The tests run in file order against that stack: healthy (no port alert), every dashboard query through
``/api/v1/query``, TCP 389 DROPped in the DC namespace (PortqryLdapPortDown fires and resolves at the
webhook), TCP 135 DROPped (PortqryRpcEndpointMapperDown), one dynamic RPC port DROPped (the unreachable
panel fills, PortqryRpcDynamicEndpointUnreachable fires and resolves).

Network: the exporter talks to the DC's address only (its resolver is the DC); Prometheus scrapes one target
(the exporter) and alerts one Alertmanager; Alertmanager has no cluster listener and one webhook; everything
else is 127.0.0.1.

Run: ``CI=true python -m pytest tests/test_alerting_e2e.py -x -q`` as root (about 50 s besides the DC's
start-up). Each wait is bounded (``WAIT`` seconds) and fails with Prometheus' alerts, the exporter's states,
the webhook's notifications and the process logs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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
from tests.dashboards import DASHBOARD, EMPTY_WHEN_HEALTHY, RULES, dashboard_queries, metric_names, runnable
from tests.test_deploy_prometheus import SCRAPE_CONFIG, rules_with_for

TARGET = "dc1"
JOB = "portqry"
FOR = "4s"
"""``for:`` of every rule in the copy Prometheus loads (the shipped file says minutes)."""
WAIT = 90.0
"""Upper bound of every wait for a state, an alert or a notification (seconds)."""
PORTS = ["tcp/389", "udp/389", "tcp/636", "tcp/3268", "tcp/135", "tcp/88", "udp/88",
         "tcp/53", "udp/53", "udp/137", "tcp/445"]  # fmt: skip
UNREACHABLE_PANEL = "Unreachable dynamic RPC endpoints"
STATE_MATRIX_PANEL = "State matrix (target x port)"
NOT_LISTENING_PANEL = "Ports not listening (with reason)"
PENDING_METRICS = frozenset({"portqry_ldap_plaintext_bind_refused", "portqry_ldap_starttls_supported"})
"""Issue 14's LDAP transport metrics, landing separately: their panels may be empty only while the exporter emits
neither (every other panel, and these once either is emitted, must fill)."""


def exporter_config(dc: testbed.SambaDC) -> str:
    ports = ", ".join(f'"{p}"' for p in PORTS)
    return f"""
[exporter]
udp_pacing_seconds = 0.05
[resolver]
nameservers = ["{dc.address}"]
[defaults]
interval_seconds = 2
timeout_seconds = 1.0
tcp_tries = 2
udp_tries = 2
jitter_ratio = 0.0
[[targets]]
name = "{TARGET}"
host = "{dc.fqdn}"
domain = "{dc.dns_domain}"
ports = [{ports}]
posture_checks = true
tls_ca_file = "{dc.target_dir / "private" / "tls" / "ca.pem"}"
"""


@dataclass
class Stack:
    dc: testbed.SambaDC
    firewall: testbed.Firewall
    daemon: RunningDaemon
    receiver: WebhookReceiver
    alertmanager: Alertmanager
    prometheus: Prometheus
    work_dir: Path

    def states(self) -> dict[tuple[str, str], str]:
        """``(protocol, port) -> state`` of the DC target, read from the exporter directly."""
        return {(proto, port): state for (target, proto, port), state in self.daemon.states().items()
                if target == TARGET}  # fmt: skip

    def diagnostics(self) -> str:
        """Everything useful when a wait fails."""
        parts = [self.prometheus.alerts_text()]
        try:
            parts.append(f"exporter states: {sorted(self.states().items())}")
        except (OSError, AssertionError, ValueError) as exc:
            parts.append(f"(exporter /metrics failed: {exc!r})")
        try:
            reachable = self.daemon.samples().get("portqry_rpc_endpoint_reachable", [])
            parts.append(f"exporter rpc reachable: {sorted({(x['port'], v) for x, v in reachable})}")
        except (OSError, AssertionError, ValueError):
            pass
        parts.append(self.receiver.summary())
        try:
            am = [(a["labels"].get("alertname"), a["status"]) for a in self.alertmanager.alerts()]
            parts.append(f"alertmanager alerts: {am}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parts.append(f"(alertmanager /api/v2/alerts failed: {exc!r})")
        parts.append(f"exporter log tail: {self.daemon.log_lines[-5:]}")
        parts.append(f"prometheus log tail:\n{self.prometheus.process.tail(10)}")
        parts.append(f"alertmanager log tail:\n{self.alertmanager.process.tail(10)}")
        return "\n".join(parts)

    def wait(self, predicate: Any, what: str, timeout: float = WAIT) -> Any:
        return wait_until(predicate, timeout, what, self.diagnostics)


@pytest.fixture(scope="module")
def stack(
    dc: testbed.SambaDC, dc_firewall: testbed.Firewall, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("alerting")
    config = work / "exporter.toml"
    config.write_text(exporter_config(dc))
    rules = rules_with_for(RULES, work / "portqry-alerts.yml", FOR)
    started = time.monotonic()
    with run_daemon(config) as daemon:
        daemon.wait_for(lambda d: d.get("/-/ready")[0] == 200, timeout=60)
        host_port = daemon.url.removeprefix("http://")
        with (
            webhook_receiver() as receiver,
            run_alertmanager(work / "alertmanager", receiver.url) as alertmanager,
            run_prometheus(
                work / "prometheus",
                prometheus_config(
                    SCRAPE_CONFIG,
                    rules=rules,
                    scrape_target=host_port,
                    alertmanager=alertmanager.url.removeprefix("http://"),
                ),
            ) as prometheus,
        ):
            s = Stack(dc, dc_firewall, daemon, receiver, alertmanager, prometheus, work)

            def target_up() -> bool:
                targets = prometheus.targets()
                return len(targets) == 1 and targets[0]["health"] == "up"

            s.wait(target_up, "prometheus scrapes the exporter (target up)")
            print(f"\nstack up in {time.monotonic() - started:.1f} s")
            yield s


def test_prometheus_scrapes_only_the_exporter_as_job_portqry(stack: Stack) -> None:
    [target] = stack.prometheus.targets()
    assert target["labels"]["job"] == JOB
    assert target["scrapeUrl"] == f"{stack.daemon.url}/metrics"
    # the rules loaded are the shipped ones (only for: differs) and Prometheus knows our Alertmanager
    groups = stack.prometheus.api("rules")["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert {
        "PortqryLdapPortDown",
        "PortqryRpcEndpointMapperDown",
        "PortqryRpcDynamicEndpointUnreachable",
    } <= set(loaded)
    assert all(rule["health"] == "ok" for rule in loaded.values()), {n: r.get("lastError") for n, r in loaded.items()}
    managers = stack.prometheus.api("alertmanagers")["data"]["activeAlertmanagers"]
    assert [m["url"] for m in managers] == [f"{stack.alertmanager.url}/api/v2/alerts"]
    stack.wait(
        lambda: stack.prometheus.query(f'portqry_port_state{{job="{JOB}", target="{TARGET}"}}'),
        "portqry_port_state in Prometheus",
    )


def test_healthy_dc_pages_nothing(stack: Stack) -> None:
    states = stack.wait(lambda: len(s := stack.states()) == len(PORTS) and s, "a state for every port")
    for key in [
        ("tcp", "389"),
        ("udp", "389"),
        ("tcp", "636"),
        ("tcp", "3268"),
        ("tcp", "135"),
        ("tcp", "88"),
        ("udp", "88"),
        ("tcp", "53"),
        ("udp", "53"),
        ("tcp", "445"),
    ]:
        assert states[key] == "listening", (key, states)
    # The posture series the posture rules read exist and read healthy on the Samba DC (so their silence below
    # is the DC's answer, not a missing series)
    samples = stack.daemon.samples()

    def values(name: str) -> dict[str, float]:
        return {labels["port"]: value for labels, value in samples.get(name, []) if labels["target"] == TARGET}

    assert values("portqry_smb_signing_required") == {"445": 1.0}, samples.get("portqry_smb_signing_required")
    assert values("portqry_smb1_enabled") == {"445": 0.0}, samples.get("portqry_smb1_enabled")
    for check in ("verified", "server_auth", "name_match"):
        assert values(f"portqry_tls_cert_{check}").get("636") == 1.0, (check, samples.get(f"portqry_tls_cert_{check}"))
    offsets = [value for labels, value in samples.get("portqry_kerberos_clock_offset_seconds", [])]
    assert offsets and all(abs(value) < 240 for value in offsets), offsets
    # Several evaluations with every for: elapsed: no rule fires, nothing was paged (the exporter was ready
    # before Prometheus started, so not even PortqryExporterNotReady).
    time.sleep(6)
    assert [a for a in stack.prometheus.alerts() if a["state"] == "firing"] == [], stack.diagnostics()
    assert stack.receiver.alerts() == [], stack.diagnostics()


def test_every_dashboard_query_runs_and_fills(stack: Stack) -> None:
    queries = dashboard_queries(DASHBOARD)
    assert queries
    pending = {(title, expr) for title, expr in queries}
    emitted = set(stack.daemon.samples())
    may_be_empty = set(EMPTY_WHEN_HEALTHY)
    if not emitted & PENDING_METRICS:
        may_be_empty |= {title for title, expr in queries if metric_names(runnable(expr)) <= PENDING_METRICS}
    errors: dict[tuple[str, str], str] = {}

    def all_filled() -> bool:
        for title, expr in sorted(pending):
            answer = stack.prometheus.api("query", query=runnable(expr))
            if answer.get("status") != "success":
                errors[(title, expr)] = str(answer)
                pending.discard((title, expr))
            elif answer["data"]["result"] or title in may_be_empty:
                pending.discard((title, expr))
        return not pending

    # rate() and delta() need a few scrapes; every query gets up to WAIT seconds to show data
    filled = True
    try:
        stack.wait(all_filled, "every panel query returns data")
    except AssertionError:
        filled = False
    assert not errors, f"queries failed in Prometheus: {errors}"
    assert filled, f"panels with no data on a healthy DC: {sorted(pending)}\n{stack.diagnostics()}"


def _assert_notification(alert: dict[str, Any], stack: Stack, port: str, reason: str | None) -> None:
    labels, annotations = alert["labels"], alert["annotations"]
    assert labels["target"] == TARGET and labels["port"] == port, labels
    assert labels["severity"] in {"critical", "warning"}, labels
    for key in ("summary", "description", "runbook"):
        assert annotations.get(key), (key, annotations)
    text = annotations["summary"] + " " + annotations["description"]
    assert TARGET in text and port in text, annotations
    if reason is not None:
        assert stack.dc.address in annotations["description"], annotations
        # the description's query (current reason) ran inside Prometheus and found the exporter's reason
        match = re.search(r"current reason:\s*([\w-]+)", annotations["description"])
        assert match and match.group(1) == reason, annotations["description"]


def _panel(title: str) -> str:
    """The runnable query of the dashboard panel ``title`` (which has exactly one)."""
    [expr] = [expr for panel, expr in dashboard_queries(DASHBOARD) if panel == title]
    query: str = runnable(expr)
    return query


def _assert_panels_show_blocked_port(stack: Stack, proto: str, port: str, reason: str) -> None:
    """The overview panels show the blocked port: filtered (2) in the state matrix, listed with its reason."""
    endpoint = f"{proto}/{port}"
    matrix = stack.prometheus.query(_panel(STATE_MATRIX_PANEL))
    values = {r["metric"].get("endpoint"): r["value"][1] for r in matrix if r["metric"].get("target") == TARGET}
    assert values.get(endpoint) == "2", (endpoint, values)  # 0 listening ... 2 filtered, 3 not listening
    assert {v for k, v in values.items() if k != endpoint} <= {"0", "1", "3"}, values
    rows = stack.prometheus.query(_panel(NOT_LISTENING_PANEL))
    reasons = {(r["metric"]["protocol"], r["metric"]["port"]): r["metric"]["reason"] for r in rows}
    assert reasons.get((proto, port)) == reason, reasons


def _page_and_resolve(stack: Stack, alertname: str, proto: str, port: int, reason: str) -> dict[str, float]:
    """DROP ``proto/port`` in the DC namespace; the webhook gets ``alertname`` firing, then resolved."""
    timings: dict[str, float] = {}
    first = seen = len(stack.receiver.alerts())
    start = time.monotonic()
    with stack.firewall.blocked(proto, port):
        stack.wait(
            lambda: stack.states().get((proto, str(port))) in {"filtered", "not_listening"},
            f"exporter sees {proto}/{port} filtered",
        )
        timings["exporter"] = time.monotonic() - start
        [firing] = stack.wait(
            lambda: stack.receiver.find(alertname, "firing", seen, target=TARGET, protocol=proto, port=str(port))[:1],
            f"webhook gets {alertname} firing for {proto}/{port}",
        )
        timings["firing"] = time.monotonic() - start
        _assert_notification(firing, stack, str(port), reason)
        _assert_panels_show_blocked_port(stack, proto, str(port), reason)
        seen = len(stack.receiver.alerts())
    unblocked = time.monotonic()
    stack.wait(
        lambda: stack.states().get((proto, str(port))) == "listening",
        f"exporter sees {proto}/{port} listening",
    )
    [resolved] = stack.wait(
        lambda: stack.receiver.find(alertname, "resolved", seen, target=TARGET, protocol=proto, port=str(port))[:1],
        f"webhook gets {alertname} resolved for {proto}/{port}",
    )
    timings["resolved"] = time.monotonic() - unblocked
    assert resolved["labels"] == firing["labels"]
    assert not stack.prometheus.firing(alertname, target=TARGET, port=str(port)), stack.diagnostics()
    # the blocked port paged once, as itself, and nothing else paged meanwhile
    paged = {(a["labels"]["alertname"], a["labels"].get("port")) for a in stack.receiver.alerts()[first:]}
    assert paged == {(alertname, str(port))}, stack.diagnostics()
    print(f"\n{alertname} {proto}/{port}: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return timings


def test_ldap_389_dropped_pages_and_resolves(stack: Stack) -> None:
    _page_and_resolve(stack, "PortqryLdapPortDown", "tcp", 389, "timeout")


def test_rpc_endpoint_mapper_135_dropped_pages_and_resolves(stack: Stack) -> None:
    _page_and_resolve(stack, "PortqryRpcEndpointMapperDown", "tcp", 135, "timeout")


def test_dropped_dynamic_rpc_port_fills_panel_and_pages(stack: Stack) -> None:
    title, panel = UNREACHABLE_PANEL, _panel(UNREACHABLE_PANEL)
    # after the 135 test the endpoint list comes back: every dynamic port reachable again
    reachable = stack.wait(
        lambda: [
            r
            for r in stack.prometheus.query(f'portqry_rpc_endpoint_reachable{{target="{TARGET}"}} == 1')
            if int(r["metric"]["port"]) >= 1024
        ],
        "reachable dynamic RPC ports in Prometheus",
    )
    stack.wait(lambda: not stack.prometheus.query(panel), "unreachable panel empty before the DROP")
    port = min(int(r["metric"]["port"]) for r in reachable)
    first = seen = len(stack.receiver.alerts())
    start = time.monotonic()
    with stack.firewall.blocked("tcp", port):
        rows = stack.wait(lambda: stack.prometheus.query(panel), f"{title!r} panel shows dynamic port {port}")
        filled = time.monotonic() - start
        assert {r["metric"]["port"] for r in rows} == {str(port)}, rows
        assert all(r["metric"]["target"] == TARGET for r in rows), rows
        [firing] = stack.wait(
            lambda: stack.receiver.find("PortqryRpcDynamicEndpointUnreachable", "firing", seen,
                                        target=TARGET, port=str(port))[:1],
            f"webhook gets PortqryRpcDynamicEndpointUnreachable firing for tcp/{port}",
        )  # fmt: skip
        fired = time.monotonic() - start
        _assert_notification(firing, stack, str(port), None)
        seen = len(stack.receiver.alerts())
        # the endpoint mapper itself stayed up: no 135 page because of one dynamic port
        assert stack.states()[("tcp", "135")] == "listening"
    unblocked = time.monotonic()
    stack.wait(
        lambda: stack.receiver.find("PortqryRpcDynamicEndpointUnreachable", "resolved", seen,
                                    target=TARGET, port=str(port))[:1],
        f"webhook gets PortqryRpcDynamicEndpointUnreachable resolved for tcp/{port}",
    )  # fmt: skip
    resolved = time.monotonic() - unblocked
    assert not stack.prometheus.query(panel)
    paged = {(a["labels"]["alertname"], a["labels"].get("port")) for a in stack.receiver.alerts()[first:]}
    assert paged == {("PortqryRpcDynamicEndpointUnreachable", str(port))}, stack.diagnostics()
    print(f"\ndynamic tcp/{port}: panel {filled:.1f} s, firing {fired:.1f} s, resolved {resolved:.1f} s")

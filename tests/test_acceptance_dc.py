"""The main job end to end: the daemon (a subprocess) probes the real Samba DC; tests scrape /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.engine import Engine
from exporter.model import ProbeOptions
from exporter.probes import port_spec
from exporter.states import PortState, Reason
from tests import testbed
from tests.daemon import RunningDaemon, run_daemon
from tests.test_probes_dc import rpcclient_epm_count


def dc_config(dc: testbed.SambaDC, fw: testbed.Firewall, extra: str = "") -> str:
    p = fw.ports
    return f"""
[exporter]
udp_pacing_seconds = 0.05
[resolver]
nameservers = ["{dc.address}"]
[defaults]
interval_seconds = 4
timeout_seconds = 1.0
tcp_tries = 3
udp_tries = 1
jitter_ratio = 0.0
[[targets]]
name = "dc1"
host = "{dc.fqdn}"
domain = "{dc.dns_domain}"
ports = ["tcp/389", "tcp/88", "tcp/135", "tcp/445",
         "tcp/{p.tcp_drop}", "tcp/{p.tcp_reset}", "tcp/{p.tcp_closed}",
         "tcp/{p.tcp_admin_prohibited}", "tcp/{p.tcp_host_unreachable}",
         "udp/{p.udp_closed}", "udp/{p.udp_drop}", "udp/{p.udp_admin_prohibited}", "udp/{p.udp_echo}"]
[[targets]]
name = "ghost"
host = "ghost.{dc.dns_domain}"
ports = ["tcp/389"]
{extra}
"""


@pytest.fixture(scope="module")
def daemon(
    dc: testbed.SambaDC, dc_firewall: testbed.Firewall, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningDaemon]:
    cfg = tmp_path_factory.mktemp("acceptance") / "config.toml"
    cfg.write_text(dc_config(dc, dc_firewall))
    with run_daemon(cfg) as d:
        d.wait_for(lambda d: d.get("/-/ready")[0] == 200, timeout=60)
        yield d


def test_states_of_the_dc_ports(daemon: RunningDaemon, dc: testbed.SambaDC, dc_firewall: testbed.Firewall) -> None:
    p = dc_firewall.ports
    states = daemon.states()
    expected = {
        ("tcp", 389): "listening",
        ("tcp", 88): "listening",
        ("tcp", 135): "listening",
        ("tcp", 445): "listening",
        ("tcp", p.tcp_drop): "filtered",
        ("tcp", p.tcp_reset): "not_listening",
        ("tcp", p.tcp_closed): "not_listening",
        ("tcp", p.tcp_admin_prohibited): "filtered",
        ("tcp", p.tcp_host_unreachable): "filtered",
        ("udp", p.udp_closed): "not_listening",
        ("udp", p.udp_drop): "listening_or_filtered",
        ("udp", p.udp_admin_prohibited): "filtered",
        ("udp", p.udp_echo): "listening",
    }
    assert {k: states.get(("dc1", k[0], str(k[1]))) for k in expected} == expected
    samples = daemon.samples()
    reasons = {
        (x["protocol"], int(x["port"])): x["reason"] for x, _ in samples["portqry_probe_reason"] if x["target"] == "dc1"
    }
    assert reasons[("tcp", p.tcp_drop)] == "timeout"
    assert reasons[("tcp", p.tcp_reset)] == "refused"
    assert reasons[("tcp", p.tcp_admin_prohibited)] == "icmp-admin-prohibited"
    assert reasons[("tcp", p.tcp_host_unreachable)] == "icmp-host-unreachable"
    assert reasons[("udp", p.udp_closed)] == "icmp-port-unreachable"
    assert reasons[("udp", p.udp_admin_prohibited)] == "icmp-admin-prohibited"
    assert reasons[("udp", p.udp_drop)] == "no-reply"
    assert reasons[("tcp", 389)] == "protocol-reply"  # the rootDSE was read
    tries = {(x["protocol"], int(x["port"])): v for x, v in samples["portqry_probe_tries"] if x["target"] == "dc1"}
    assert tries[("tcp", p.tcp_drop)] == 3
    addresses = {x["address"] for x, _ in samples["portqry_probe_reason"] if x["target"] == "dc1"}
    assert addresses == {dc.address}


def test_protocol_details_reach_metrics(daemon: RunningDaemon, dc: testbed.SambaDC) -> None:
    samples = daemon.samples()
    endpoints = sum(v for x, v in samples["portqry_rpc_endpoints"] if x["target"] == "dc1" and x["via"] == "tcp")
    assert endpoints == rpcclient_epm_count(dc)  # an independent count: Samba's own rpcclient epmlookup
    reachable = [v for x, v in samples["portqry_rpc_endpoint_reachable"] if x["target"] == "dc1"]
    assert reachable and all(v == 1 for v in reachable)
    info = [x for x, _ in samples["portqry_ldap_root_dse_info"] if x["target"] == "dc1"]
    assert info and info[0]["dns_host_name"].lower() == dc.fqdn
    krb = {x["protocol"]: v for x, v in samples["portqry_kerberos_error_code"] if x["target"] == "dc1"}
    assert krb == {"tcp": 6.0}


def test_unresolvable_target_is_a_result(daemon: RunningDaemon) -> None:
    samples = daemon.samples()
    reasons = {x["target"]: x["reason"] for x, _ in samples["portqry_probe_reason"]}
    assert reasons["ghost"] == "resolve-failed"
    resolve = {x["target"]: v for x, v in samples["portqry_target_resolve_success"]}
    assert resolve == {"dc1": 1.0, "ghost": 0.0}
    assert daemon.get("/-/healthy")[0] == 200
    assert daemon.proc.poll() is None


async def test_udp_datagrams_really_sent(dc: testbed.SambaDC, dc_firewall: testbed.Firewall) -> None:
    """A counting firewall rule in the DC namespace sees exactly the datagrams the engine says it sent."""
    port = 9299  # a port no other test probes
    with dc_firewall.blocked("udp", port) as spec:
        before = dc_firewall.packet_count(*spec)
        [r] = await Engine(udp_pacing_seconds=0.0).probe_target(
            "dc1", dc.address, [port_spec("udp", port)], ProbeOptions(timeout_seconds=0.3, udp_tries=3)
        )
        after = dc_firewall.packet_count(*spec)
    assert (r.state, r.reason, r.tries) == (PortState.LISTENING_OR_FILTERED, Reason.NO_REPLY, 3)
    assert after - before == 3


def test_domain_controller_profile_against_samba(dc: testbed.SambaDC, tmp_path: Path) -> None:
    cfg = tmp_path / "profile.toml"
    cfg.write_text(
        f"""
[resolver]
nameservers = ["{dc.address}"]
[defaults]
interval_seconds = 30
timeout_seconds = 1.0
[[targets]]
name = "dc1"
host = "{dc.fqdn}"
domain = "{dc.dns_domain}"
profiles = ["domain-controller"]
"""
    )
    with run_daemon(cfg) as d:
        d.wait_for(lambda d: d.get("/-/ready")[0] == 200, timeout=60)
        samples = d.samples()
    rows = {
        (x["protocol"], int(x["port"])): (x["service"], x["portqry_port_state"])
        for x, v in samples["portqry_port_state"]
        if v == 1
    }
    for key in [
        ("tcp", 389),
        ("tcp", 88),
        ("tcp", 135),
        ("tcp", 445),
        ("tcp", 636),
        ("tcp", 3268),
        ("tcp", 3269),
        ("tcp", 53),
        ("udp", 53),
        ("udp", 389),
        ("udp", 88),
        ("tcp", 464),
    ]:
        assert rows[key][1] == "listening", (key, rows[key])
    assert rows[("tcp", 389)][0] == "LDAP Server"
    assert rows[("tcp", 88)][0] == "Kerberos"
    assert rows[("tcp", 9389)][1] == "not_listening"  # ADWS: Samba does not serve it


def test_reload_with_broken_file_keeps_dc_probing(
    dc: testbed.SambaDC, dc_firewall: testbed.Firewall, tmp_path: Path
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(dc_config(dc, dc_firewall))
    with run_daemon(cfg) as d:
        d.wait_for(lambda d: d.get("/-/ready")[0] == 200, timeout=60)
        cfg.write_text(
            dc_config(dc, dc_firewall).replace('[[targets]]\nname = "ghost"', '[[targets]]\nname = "ghost"\nbogus = 1')
        )
        status, body = d.post("/-/reload")
        assert status == 500 and "unknown key" in body
        before = max(v for x, v in d.samples()["portqry_probe_last_timestamp_seconds"] if x["target"] == "dc1")
        d.wait_for(
            lambda d: (
                max(v for x, v in d.samples()["portqry_probe_last_timestamp_seconds"] if x["target"] == "dc1") > before
            ),
            timeout=30,
        )
        cfg.write_text(dc_config(dc, dc_firewall).split('[[targets]]\nname = "ghost"')[0])
        assert d.post("/-/reload")[0] == 200
        assert {k[0] for k in d.states()} == {"dc1"}

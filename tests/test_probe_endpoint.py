"""``GET /probe`` on loopback: modules from ports and profiles, the allow check, limits, the deadline, debug.

The daemon runs in-process (its engine, scheduler and store on the test's loop) behind aiohttp's test server
on 127.0.0.1; peers are real sockets on 127.0.0.1 (``tests.peers``), names resolve only through the test's own
DNS server (``tests.dnsserver``).  "No packet" is shown on loopback by a listener that records every
connection: a refused request leaves it empty.  The namespace version (an iptables counter) and the real
Prometheus are in ``tests/test_probe_endpoint_e2e.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from exporter.catalog import load_catalog
from exporter.config import Settings, load_config
from exporter.daemon import Daemon
from exporter.errors import ConfigError
from exporter.exposition import DURATION, FAMILIES, RESOLVED
from exporter.http import build_app
from exporter.probe_endpoint import AllowList, budget_seconds
from tests.dnsserver import dns_server
from tests.peers import closed_port, tcp_listener, udp_peer

PORT_FAMILIES = [f.name for f in FAMILIES if f not in (DURATION, RESOLVED)]
Samples = dict[str, list[tuple[dict[str, str], float]]]


def settings_text(body: str, *, dns_port: int | None = None, timeout: float = 0.5) -> str:
    resolver = (
        f'[resolver]\nnameservers = ["127.0.0.1"]\nport = {dns_port}\ntimeout_seconds = 1.0\n' if dns_port else ""
    )
    return f"""
[exporter]
udp_pacing_seconds = 0.0
udp_recheck_max = 0
[defaults]
interval_seconds = 1
timeout_seconds = {timeout}
tcp_tries = 1
jitter_ratio = 0.0
{resolver}
{body}
"""


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, text: str) -> AsyncIterator[tuple[TestClient, Daemon]]:  # type: ignore[type-arg]
    path = tmp_path / "c.toml"
    path.write_text(text)
    settings = load_config(path)
    daemon = Daemon(str(path), settings)
    daemon.apply(settings)
    app = build_app(daemon, extra_routes={"/probe": daemon.probe.handle})
    async with TestClient(TestServer(app)) as client:
        try:
            yield client, daemon
        finally:
            await daemon.scheduler.stop()


def samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def states(s: Samples) -> dict[tuple[str, str], str]:
    return {(x["protocol"], x["port"]): x["portqry_port_state"] for x, v in s.get("portqry_port_state", []) if v == 1}


async def probe(client: TestClient, query: str, **headers: str) -> tuple[int, str]:  # type: ignore[type-arg]
    resp = await client.get(f"/probe?{query}", headers=headers)
    return resp.status, await resp.text()


async def metric(client: TestClient, name: str) -> list[tuple[dict[str, str], float]]:  # type: ignore[type-arg]
    resp = await client.get("/metrics")
    return samples(await resp.text()).get(name, [])


# -- a module from ports ------------------------------------------------------------------------------------


async def test_module_from_ports_listening_closed_silent(tmp_path: Path) -> None:
    closed_tcp = closed_port()
    closed_udp = closed_port(socket.SOCK_DGRAM)
    with tcp_listener() as open_port, udp_peer(echo=False) as (silent, _):
        text = settings_text(
            f"""
[probe]
allow = ["127.0.0.0/8"]
[modules.lo]
ports = ["tcp/{open_port}", "tcp/{closed_tcp}", "udp/{closed_udp}", "udp/{silent}"]
"""
        )
        async with serving(tmp_path, text) as (client, _daemon):
            resp = await client.get("/probe?target=127.0.0.1&module=lo")
            assert resp.status == 200
            assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST  # the text format, as /metrics
            body = await resp.text()
    s = samples(body)
    assert states(s) == {
        ("tcp", str(open_port)): "listening",
        ("tcp", str(closed_tcp)): "not_listening",
        ("udp", str(closed_udp)): "not_listening",
        ("udp", str(silent)): "listening_or_filtered",
    }
    reasons = {(x["protocol"], x["port"]): x["reason"] for x, _ in s["portqry_probe_reason"]}
    assert reasons[("udp", str(closed_udp))] == "icmp-port-unreachable"
    assert reasons[("udp", str(silent))] == "no-reply"
    for family in PORT_FAMILIES:
        assert family in s, family
        assert {x["target"] for x, _ in s[family]} == {"127.0.0.1"}
        assert {(x["domain"], x["site"], x["address"]) for x, _ in s[family]} == {("", "", "127.0.0.1")}
    ((labels, took),) = s["portqry_probe_module_duration_seconds"]
    assert labels == {"module": "lo", "target": "127.0.0.1"} and 0 < took < 5
    # only the port, detail and module families: no self-metrics, no histogram, no domain families
    assert not [n for n in s if n.startswith(("portqry_exporter_", "portqry_probes_total", "portqry_domain_"))]
    assert "portqry_probe_duration_seconds_bucket" not in s
    assert s["portqry_target_resolve_success"] == [({"target": "127.0.0.1"}, 1.0)]
    assert "# HELP portqry_port_state" in body and "schedule" not in body and "From this /probe request." in body


async def test_each_scrape_probes_afresh(tmp_path: Path) -> None:
    sources: list[int] = []
    with tcp_listener(sources=sources) as port:
        text = settings_text(f'[probe]\nallow = ["127.0.0.1"]\n[modules.one]\nports = ["tcp/{port}"]\n')
        async with serving(tmp_path, text) as (client, _daemon):
            stamps = []
            for _ in range(2):
                status, body = await probe(client, "target=127.0.0.1&module=one")
                assert status == 200
                stamps.append(samples(body)["portqry_probe_last_timestamp_seconds"][0][1])
                await asyncio.sleep(0.01)
            deadline = time.monotonic() + 2
            while len(sources) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
    assert stamps[1] > stamps[0]
    assert len(sources) == 2  # one connection per request: nothing cached, nothing scheduled


async def test_openmetrics_when_asked(tmp_path: Path) -> None:
    with tcp_listener() as port:
        text = settings_text(f'[probe]\nallow = ["127.0.0.1"]\n[modules.one]\nports = ["tcp/{port}"]\n')
        async with serving(tmp_path, text) as (client, _daemon):
            resp = await client.get(
                "/probe?target=127.0.0.1&module=one", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            )
            body = await resp.text()
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")
    families = {f.name: f for f in om_families(body)}
    assert families["portqry_port_state"].type == "stateset"
    listening = [s for s in families["portqry_port_state"].samples if s.value == 1]
    assert [s.labels["portqry_port_state"] for s in listening] == ["listening"]


# -- modules from profiles and the config ------------------------------------------------------------------


async def test_profile_is_a_module_by_default(tmp_path: Path) -> None:
    text = settings_text('[probe]\nallow = ["127.0.0.1"]\n', timeout=0.3)
    expected = {(p.protocol, str(p.port)): p.service for p in load_catalog().expand([], ["ldap"]).ports}
    async with serving(tmp_path, text) as (client, _daemon):
        status, body = await probe(client, "target=127.0.0.1&module=ldap")
    assert status == 200, body
    s = samples(body)
    got = {(x["protocol"], x["port"]): x["service"] for x, _ in s["portqry_probe_reason"]}
    assert got == expected and got


async def test_without_module_the_domain_controller_profile(tmp_path: Path) -> None:
    text = settings_text('[probe]\nallow = ["127.0.0.1"]\n', timeout=0.3)
    expected = {(p.protocol, str(p.port)) for p in load_catalog().expand([], ["domain-controller"]).ports}
    async with serving(tmp_path, text) as (client, _daemon):
        status, body = await probe(client, "target=127.0.0.1")
    assert status == 200, body
    s = samples(body)
    assert {(x["protocol"], x["port"]) for x, _ in s["portqry_probe_reason"]} == expected
    assert s["portqry_probe_module_duration_seconds"][0][0]["module"] == "domain-controller"


async def test_a_module_named_like_a_profile_wins(tmp_path: Path) -> None:
    with tcp_listener() as port:
        text = settings_text(f'[probe]\nallow = ["127.0.0.1"]\n[modules.ldap]\nports = ["tcp/{port}"]\n')
        async with serving(tmp_path, text) as (client, _daemon):
            status, body = await probe(client, "target=127.0.0.1&module=ldap")
    assert status == 200 and states(samples(body)) == {("tcp", str(port)): "listening"}


async def test_module_keys_set_the_options_and_bindings(tmp_path: Path) -> None:
    """A module binds the dns probe to the test's DNS server port: the detail family comes along."""
    with dns_server({"x.corp.test": "127.0.0.1"}) as (_addr, dns_port, _queries):
        text = settings_text(
            f"""
[probe]
allow = ["127.0.0.1"]
[modules.dns]
ports = ["udp/{dns_port}"]
protocols = {{ "udp/{dns_port}" = "dns" }}
udp_tries = 2
timeout_seconds = 0.4
"""
        )
        async with serving(tmp_path, text) as (client, _daemon):
            status, body = await probe(client, "target=127.0.0.1&module=dns")
    assert status == 200, body
    s = samples(body)
    assert states(s) == {("udp", str(dns_port)): "listening"}
    ((labels, rcode),) = s["portqry_dns_rcode"]
    assert labels["target"] == "127.0.0.1" and labels["port"] == str(dns_port) and rcode == 3  # NXDOMAIN
    assert "From this /probe request." in body.split("# HELP portqry_dns_rcode", 1)[1].split("\n", 1)[0]


# -- debug ---------------------------------------------------------------------------------------------------


async def test_debug_returns_the_log_and_the_would_be_series(tmp_path: Path) -> None:
    closed = closed_port()
    with tcp_listener() as port:
        text = settings_text(
            f'[probe]\nallow = ["127.0.0.0/8"]\n[modules.two]\nports = ["tcp/{port}", "tcp/{closed}"]\n'
        )
        async with serving(tmp_path, text) as (client, _daemon):
            resp = await client.get("/probe?target=127.0.0.1&module=two&debug=true")
            body = await resp.text()
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    logs, rest = body.split("Metrics that would have been returned:\n", 1)
    metrics, config = rest.split("Module configuration:\n", 1)
    assert logs.startswith("Logs for the probe:\n")
    assert "resolved 127.0.0.1 to 127.0.0.1" in logs and "allowed: 127.0.0.1 is in [probe] allow '127.0.0.0/8'" in logs
    assert f"tcp/{port} on 127.0.0.1: listening" in logs and f"tcp/{closed} on 127.0.0.1: not_listening refused" in logs
    assert states(samples(metrics)) == {("tcp", str(port)): "listening", ("tcp", str(closed)): "not_listening"}
    assert f"ports: tcp/{port} tcp/{closed}" in config and "module: two" in config


# -- 400 ------------------------------------------------------------------------------------------------------


async def test_bad_requests_are_400_with_the_known_modules(tmp_path: Path) -> None:
    text = settings_text('[modules.mine]\nports = ["tcp/1"]\n')
    async with serving(tmp_path, text) as (client, _daemon):
        missing_target = await probe(client, "module=mine")
        unknown = await probe(client, "target=127.0.0.1&module=nope")
        with_port = await probe(client, "target=dc1.corp.test:389&module=mine")
        junk = await probe(client, "target=a/b&module=mine")
        extra = await probe(client, "target=127.0.0.1&module=mine&ports=tcp/22")
        refused = await metric(client, "portqry_probe_refused_total")
    for status, body in (missing_target, unknown, with_port, junk, extra):
        assert status == 400, body
    assert "target parameter is missing" in missing_target[1]
    assert "unknown module 'nope'" in unknown[1] and "mine" in unknown[1] and "domain-controller" in unknown[1]
    assert "without a port" in with_port[1]
    assert "unknown parameter 'ports'" in extra[1]
    assert dict((x["reason"], v) for x, v in refused)["bad-request"] == 5


# -- the allow check -----------------------------------------------------------------------------------------


async def test_refused_address_gets_403_and_no_packet(tmp_path: Path) -> None:
    sources: list[int] = []
    with tcp_listener(sources=sources) as port:
        text = settings_text(
            f'[probe]\nallow = ["127.0.0.2/32", "*.corp.test"]\n[modules.one]\nports = ["tcp/{port}"]\n'
        )
        async with serving(tmp_path, text) as (client, _daemon):
            status, body = await probe(client, "target=127.0.0.1&module=one")
            await asyncio.sleep(0.3)  # a connection, had one been made, would be accepted by now
            refused = dict((x["reason"], v) for x, v in await metric(client, "portqry_probe_refused_total"))
            requests = await metric(client, "portqry_probe_requests_total")
    assert status == 403
    assert "not allowed: 127.0.0.1 is in no [probe] allow network" in body
    assert sources == []
    assert refused["not-allowed"] == 1
    assert ({"module": "one", "result": "refused"}, 1.0) in requests


async def test_names_checked_after_resolution(tmp_path: Path) -> None:
    """A name rule allows a name; a name outside the rules is checked by every address it resolves to."""
    sources: list[int] = []
    records = {"ok.corp.test": "127.0.0.1", "evil.other.test": "127.0.0.1", "lab.other.test": "127.0.0.3"}
    with tcp_listener(sources=sources) as port, dns_server(records) as (_addr, dns_port, queries):
        text = settings_text(
            f'[probe]\nallow = ["*.corp.test", "127.0.0.3"]\n[modules.one]\nports = ["tcp/{port}"]\n',
            dns_port=dns_port,
        )
        async with serving(tmp_path, text) as (client, _daemon):
            evil = await probe(client, "target=evil.other.test&module=one")
            apex = await probe(client, "target=corp.test&module=one")  # NXDOMAIN: nothing sent anywhere
            await asyncio.sleep(0.2)
            assert sources == []
            ok = await probe(client, "target=OK.corp.test.&module=one&debug=true")
            lab = await probe(client, "target=lab.other.test&module=one&debug=true")
    assert evil[0] == 403 and "evil.other.test resolves to 127.0.0.1, which is in no [probe] allow network" in evil[1]
    assert apex[0] == 200 and {x["reason"] for x, _ in samples(apex[1])["portqry_probe_reason"]} == {"resolve-failed"}
    assert ok[0] == 200 and "the name matches [probe] allow '*.corp.test'" in ok[1]
    assert 'target="OK.corp.test."' in ok[1] and "listening" in ok[1]
    assert lab[0] == 200 and "127.0.0.3 is in [probe] allow '127.0.0.3/32'" in lab[1]
    assert len(sources) == 1
    # one lookup per request (addresses = first: A only): the engine got the checked address, asked nothing
    assert queries.count("evil.other.test. A") == 1 and queries.count("ok.corp.test. A") == 1


async def test_configured_targets_and_their_addresses_are_always_allowed(tmp_path: Path) -> None:
    with tcp_listener() as port, dns_server({"lo.corp.test": "127.0.0.1"}) as (_addr, dns_port, _queries):
        text = settings_text(
            f"""
[[targets]]
name = "lo"
host = "lo.corp.test"
domain = "corp.test"
ports = ["tcp/{port}"]
[modules.one]
ports = ["tcp/{port}"]
""",
            dns_port=dns_port,
        )
        async with serving(tmp_path, text) as (client, daemon):
            by_name = await probe(client, "target=lo.corp.test&module=one")
            deadline = time.monotonic() + 5
            while daemon.scheduler.rounds("lo") == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            daemon.probe._known = None  # the known addresses are reused for a second; do not wait for it
            by_address = await probe(client, "target=127.0.0.1&module=one")
            other = await probe(client, "target=127.0.0.2&module=one")
    assert by_name[0] == 200 and by_address[0] == 200, (by_name, by_address)
    labels = {(x["target"], x["domain"], x["site"]) for x, _ in samples(by_name[1])["portqry_port_state"]}
    assert labels == {("lo.corp.test", "corp.test", "")}  # the known target's domain label
    labels = {(x["target"], x["domain"]) for x, _ in samples(by_address[1])["portqry_port_state"]}
    assert labels == {("127.0.0.1", "")}  # an address is not the target's name: no labels of it
    assert other[0] == 403


async def test_max_ports_counts_every_address(tmp_path: Path) -> None:
    with dns_server({"two.corp.test": ["127.0.0.1", "127.0.0.2"]}) as (_addr, dns_port, _queries):
        text = settings_text(
            '[probe]\nallow = ["*.corp.test"]\nmax_ports = 3\n'
            '[modules.all]\nports = ["tcp/1-2"]\naddresses = "all"\n[modules.first]\nports = ["tcp/1-2"]\n',
            dns_port=dns_port,
        )
        async with serving(tmp_path, text) as (client, _daemon):
            too_many = await probe(client, "target=two.corp.test&module=all")
            fine = await probe(client, "target=two.corp.test&module=first")
            refused = dict((x["reason"], v) for x, v in await metric(client, "portqry_probe_refused_total"))
    assert too_many[0] == 400 and "4 ports x addresses is more than [probe] max_ports 3" in too_many[1]
    assert fine[0] == 200 and refused["max-ports"] == 1


# -- per-client concurrency ------------------------------------------------------------------------------------


async def test_per_client_concurrency_is_429(tmp_path: Path) -> None:
    with udp_peer(echo=False) as (silent, _):
        text = settings_text(
            f'[probe]\nallow = ["127.0.0.1"]\nmax_concurrent_per_client = 1\n'
            f'[modules.slow]\nports = ["udp/{silent}"]\n',
            timeout=1.0,
        )
        async with serving(tmp_path, text) as (client, _daemon):
            first = asyncio.create_task(probe(client, "target=127.0.0.1&module=slow"))
            await asyncio.sleep(0.3)
            second = await probe(client, "target=127.0.0.1&module=slow")
            assert (await first)[0] == 200
            third = await probe(client, "target=127.0.0.1&module=slow")  # the slot is free again
            refused = dict((x["reason"], v) for x, v in await metric(client, "portqry_probe_refused_total"))
    assert second[0] == 429 and "1 /probe requests in flight already" in second[1]
    assert third[0] == 200 and refused["client-concurrency"] == 1


# -- the deadline ---------------------------------------------------------------------------------------------


async def test_scrape_timeout_header_trims_a_silent_port(tmp_path: Path) -> None:
    with tcp_listener() as port, udp_peer(echo=False) as (silent, _):
        text = settings_text(
            f'[probe]\nallow = ["127.0.0.1"]\n[modules.m]\nports = ["tcp/{port}", "udp/{silent}"]\n', timeout=5.0
        )
        async with serving(tmp_path, text) as (client, _daemon):
            started = time.monotonic()
            status, body = await probe(
                client, "target=127.0.0.1&module=m", **{"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
            )
            took = time.monotonic() - started
            _, debug = await probe(
                client, "target=127.0.0.1&module=m&debug=1", **{"X-Prometheus-Scrape-Timeout-Seconds": "1"}
            )
            requests = await metric(client, "portqry_probe_requests_total")
    assert status == 200
    assert 0.9 < took < 1.4  # 1.5 s minus the 0.5 s margin, well before the 5 s UDP wait
    assert states(samples(body)) == {("tcp", str(port)): "listening"}  # the unfinished port has no series
    assert samples(body)["portqry_probe_module_duration_seconds"][0][1] < 1.4
    assert "budget 0.500s" in debug and f"udp/{silent} on 127.0.0.1: not finished by the deadline" in debug
    assert ({"module": "m", "result": "partial"}, 2.0) in requests


def test_budget_seconds() -> None:
    assert budget_seconds("10", 30, 0.5) == 9.5
    assert budget_seconds("10", 5, 0.5) == 5  # capped by [probe] timeout_seconds
    assert budget_seconds(None, 30, 0.5) == 30 and budget_seconds("junk", 7, 0.5) == 7
    assert budget_seconds("0", 7, 0.5) == 7 and budget_seconds("nan", 7, 0.5) == 7
    assert budget_seconds("0.4", 30, 0.5) == 0.2  # the margin takes at most half
    assert budget_seconds("0.01", 30, 0.5) == 0.05  # never below the floor


# -- /probe and /metrics agree -----------------------------------------------------------------------------


async def test_same_families_and_labels_as_metrics(tmp_path: Path) -> None:
    closed_tcp = closed_port()
    closed_udp = closed_port(socket.SOCK_DGRAM)
    with tcp_listener() as port, udp_peer(echo=True) as (echo, _):
        ports = f'["tcp/{port}", "tcp/{closed_tcp}", "udp/{closed_udp}", "udp/{echo}"]'
        text = settings_text(
            f"""
[[targets]]
name = "127.0.0.1"
host = "127.0.0.1"
domain = "corp.test"
ports = {ports}
[modules.same]
ports = {ports}
"""
        )
        async with serving(tmp_path, text) as (client, daemon):
            deadline = time.monotonic() + 5
            while daemon.scheduler.rounds("127.0.0.1") == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            scheduled = samples(await (await client.get("/metrics")).text())
            status, body = await probe(client, "target=127.0.0.1&module=same")
    assert status == 200
    probed = samples(body)

    def label_sets(s: Samples, family: str) -> set[frozenset[tuple[str, str]]]:
        return {frozenset(x.items()) for x, _ in s[family] if x.get("target") == "127.0.0.1"}

    for family in PORT_FAMILIES:
        assert label_sets(probed, family) == label_sets(scheduled, family), family
        assert label_sets(probed, family)
    assert states(probed) == {k: v for k, v in states(scheduled).items()}
    assert {x["domain"] for x, _ in probed["portqry_port_state"]} == {"corp.test"}


# -- config -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[probe]\nallow = ["198.18.2.3/15"]\n', "probe.allow", "has host bits set"),
        ('[probe]\nallow = ["*"]\n', "probe.allow", "write a CIDR"),
        ('[probe]\nallow = ["a.*.corp"]\n', "probe.allow", "write a CIDR"),
        ('[probe]\nallow = ["198.18.0.0/33"]\n', "probe.allow", "198.18.0.0/33"),
        ("[probe]\nmax_concurrent_per_client = 0\n", "probe.max_concurrent_per_client", "greater than or equal"),
        ("[modules.m]\ntimeout_seconds = 1\n", "modules.m", "a module needs ports"),
        ('[modules.m]\nports = ["tcp/1"]\ninterval_seconds = 5\n', "modules.m", "no interval_seconds"),
        ('[modules."a b"]\nports = ["tcp/1"]\n', "modules", "a module name is"),
        ('[modules.m]\nprofiles = ["domain-controler"]\n', "modules.m.profiles[0]", "domain-controller"),
        (
            '[probe]\nmax_ports = 2\n[modules.m]\nports = ["tcp/1-3"]\n',
            "modules.m.ports",
            "more than [probe] max_ports",
        ),
    ],
)
def test_config_errors(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key.startswith(key), str(info.value)
    assert problem in info.value.problem, str(info.value)


def test_allow_list_matching() -> None:
    allow = AllowList(["198.18.0.0/15", "2001:db8::/32", "192.0.2.7", "dc1.corp.example", "*.lab.example"])
    assert allow.address_rule("198.19.8.7") == "198.18.0.0/15" and allow.address_rule("198.20.0.1") is None
    assert allow.address_rule("192.0.2.7") == "192.0.2.7/32" and allow.address_rule("192.0.2.8") is None
    assert (
        allow.address_rule("2001:db8::1") == "2001:db8::/32"
        and allow.address_rule("::ffff:198.18.0.1") == "198.18.0.0/15"
    )
    assert allow.name_rule("dc1.corp.example") == "dc1.corp.example" and allow.name_rule("dc2.corp.example") is None
    assert allow.name_rule("a.b.lab.example") == "*.lab.example" and allow.name_rule("lab.example") is None
    assert allow.name_rule("evillab.example") is None
    assert Settings().probe.max_concurrent_per_client == 4 and Settings().probe.allow == []

"""Domain discovery on loopback: SRV records from a DNS server of the test's own, fake DCs answering the LDAP ping.

The two real Samba DCs (tests/test_domain_dc.py) check the same against AD; here the DNS side can be made
to fail in every way: records added and removed while the daemon runs, NXDOMAIN, silence and garbage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import ExporterStatus, PortqryCollector, render
from exporter.config import load_config
from exporter.discovery import discover
from exporter.engine import Engine
from exporter.plan import domain_plans
from exporter.resolve import Resolver
from exporter.scheduler import Scheduler
from exporter.store import ResultStore
from tests.cldap import CldapService, FakeDC, cldap_service
from tests.dnsserver import Srv, dns_server
from tests.peers import tcp_listener, udp_replier

DOMAIN = "corp.test"
ALL_DCS = f"_ldap._tcp.dc._msdcs.{DOMAIN}"
DC1, DC2 = "127.0.0.2", "127.0.0.3"


def write_config(tmp_path: Path, dns_port: int, body: str) -> Path:
    path = tmp_path / "domains.toml"
    path.write_text(
        f"""
[exporter]
udp_pacing_seconds = 0.0
[resolver]
nameservers = ["127.0.0.1"]
port = {dns_port}
timeout_seconds = 0.5
[defaults]
timeout_seconds = 0.3
jitter_ratio = 0.0
{body}
"""
    )
    return path


@contextmanager
def two_dcs() -> Iterator[tuple[CldapService, dict[str, list[Srv]], int, int]]:
    """Two fake DCs in two sites, their SRV and A records; yields (cldap, srv table, dns port, tcp port)."""
    dcs = {
        DC1: FakeDC(f"dc1.{DOMAIN}", DOMAIN, site="Hub", client_site="Hub"),
        DC2: FakeDC(f"dc2.{DOMAIN}", DOMAIN, site="Branch", client_site="Hub", roles=("ldap", "ds", "kdc", "gc")),
    }
    with cldap_service(dcs) as cldap:
        # both fake DCs on one port number (the SRV port is the CLDAP port): bind the second where the first is
        srv: dict[str, list[Srv]] = {
            ALL_DCS: [(0, 100, cldap.ports[DC1], f"dc1.{DOMAIN}"), (0, 50, cldap.ports[DC2], f"dc2.{DOMAIN}")],
            f"_ldap._tcp.Branch._sites.dc._msdcs.{DOMAIN}": [(0, 100, cldap.ports[DC2], f"dc2.{DOMAIN}")],
        }
        records = {f"dc1.{DOMAIN}": DC1, f"dc2.{DOMAIN}": DC2}
        with dns_server(records, srv=srv) as (_host, dns_port, _queries), tcp_listener(DC1) as tcp_port:
            yield cldap, srv, dns_port, tcp_port


def domain_plan(tmp_path: Path, dns_port: int, extra: str = ""):  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path, dns_port, f'[[domains]]\nname = "{DOMAIN}"\nports = ["tcp/9"]\n{extra}')
    settings = load_config(cfg)
    [plan] = domain_plans(settings)
    return plan, Resolver(["127.0.0.1"], port=dns_port, timeout=0.5)


async def test_discover_lists_every_dc_of_the_srv_record_with_site_and_roles(tmp_path: Path) -> None:
    with two_dcs() as (cldap, _srv, dns_port, _tcp):
        plan, resolver = domain_plan(tmp_path, dns_port)
        found = await discover(plan, Engine(resolver=resolver, udp_pacing_seconds=0))
    assert found.ok, found.error
    assert [(d.host, d.address, d.site, d.client_site) for d in found.dcs] == [
        (f"dc1.{DOMAIN}", DC1, "Hub", "Hub"),  # weight 100 before 50
        (f"dc2.{DOMAIN}", DC2, "Branch", "Hub"),
    ]
    assert {"pdc", "gc", "closest"} <= found.dcs[0].roles and "pdc" not in found.dcs[1].roles
    assert cldap.pings == {DC1: 1, DC2: 1}


async def test_sites_read_only_the_site_records(tmp_path: Path) -> None:
    with two_dcs() as (cldap, _srv, dns_port, _tcp):
        plan, resolver = domain_plan(tmp_path, dns_port, 'sites = ["Branch"]')
        found = await discover(plan, Engine(resolver=resolver, udp_pacing_seconds=0))
    assert [d.host for d in found.dcs] == [f"dc2.{DOMAIN}"]
    assert cldap.pings == {DC2: 1}


async def test_a_dc_name_that_does_not_resolve_is_listed_with_its_error(tmp_path: Path) -> None:
    with two_dcs() as (_cldap, srv, dns_port, _tcp):
        srv[ALL_DCS].append((0, 10, 389, f"ghost.{DOMAIN}"))
        plan, resolver = domain_plan(tmp_path, dns_port)
        found = await discover(plan, Engine(resolver=resolver, udp_pacing_seconds=0))
    ghost = found.dcs[-1]
    assert found.ok and (ghost.host, ghost.address, ghost.site) == (f"ghost.{DOMAIN}", "", "")
    assert "NXDOMAIN" in ghost.error or "does not exist" in ghost.error


async def test_no_record_is_a_failed_discovery(tmp_path: Path) -> None:
    with dns_server({}) as (_h, dns_port, queries):
        plan, resolver = domain_plan(tmp_path, dns_port)
        found = await discover(plan, Engine(resolver=resolver, udp_pacing_seconds=0))
    assert not found.ok and found.dcs == () and ALL_DCS in found.error
    assert queries == [f"{ALL_DCS}. SRV"]


def garbage_dns(reply: bytes | None) -> AbstractContextManager[int]:
    """A UDP "DNS server" on 127.0.0.1 that answers every query with its ID then ``reply`` (``None``: never)."""
    return udp_replier(lambda query: [] if reply is None else [query[:2] + reply])


@pytest.mark.parametrize(
    "reply", [b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\xff\xff\xff", None], ids=["garbage", "silent"]
)
async def test_a_dns_server_that_answers_garbage_or_nothing_is_a_failed_discovery(
    tmp_path: Path, reply: bytes | None
) -> None:
    with garbage_dns(reply) as dns_port:
        plan, resolver = domain_plan(tmp_path, dns_port)
        found = await asyncio.wait_for(discover(plan, Engine(resolver=resolver, udp_pacing_seconds=0)), 5)
    assert not found.ok and found.dcs == () and found.error


def scrape(store: ResultStore, registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(render(store, registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


async def _until(check, timeout: float = 8.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def test_the_daemon_follows_dns_and_keeps_the_last_good_list(tmp_path: Path) -> None:
    with two_dcs() as (_cldap, srv, dns_port, tcp_port):
        cfg = write_config(
            tmp_path,
            dns_port,
            f'[[domains]]\nname = "{DOMAIN}"\nports = ["tcp/{tcp_port}"]\nrediscover_seconds = 1\n'
            "interval_seconds = 1\nmin_reachable_dcs = 2\n",
        )
        settings = load_config(cfg)
        store = ResultStore((0.1, 1.0))
        engine = Engine(resolver=Resolver(["127.0.0.1"], port=dns_port, timeout=0.5), udp_pacing_seconds=0)
        scheduler = Scheduler(engine, store, first_round_spread_seconds=0)
        registry = CollectorRegistry()
        registry.register(PortqryCollector(store, ExporterStatus()))

        def targets() -> set[str]:
            return {x["target"] for x, _ in scrape(store, registry).get("portqry_port_state", [])}

        scheduler.apply([], domain_plans(settings))
        try:
            await _until(lambda: scheduler.ready and targets() == {f"dc1.{DOMAIN}", f"dc2.{DOMAIN}"})
            samples = scrape(store, registry)
            states = {
                (x["target"], x["site"], x["domain"], x["portqry_port_state"]): v
                for x, v in samples["portqry_port_state"]
            }
            assert states[(f"dc1.{DOMAIN}", "Hub", DOMAIN, "listening")] == 1  # the listener is on dc1's address
            assert states[(f"dc2.{DOMAIN}", "Branch", DOMAIN, "not_listening")] == 1
            assert {(x["site"], v) for x, v in samples["portqry_domain_controllers"]} == {("Hub", 1), ("Branch", 1)}
            assert samples["portqry_domain_discovery_success"] == [({"domain": DOMAIN}, 1.0)]
            assert samples["portqry_domain_min_reachable_dcs"] == [({"domain": DOMAIN}, 2.0)]
            roles = {(x["target"], x["role"]): v for x, v in samples["portqry_dc_role"]}
            assert roles[(f"dc1.{DOMAIN}", "pdc")] == 1 and roles[(f"dc2.{DOMAIN}", "pdc")] == 0
            assert {(x["target"], x["site"]) for x, _ in samples["portqry_client_site_info"]} == {
                (f"dc1.{DOMAIN}", "Hub"),
                (f"dc2.{DOMAIN}", "Hub"),
            }
            # a retired DC leaves DNS: its series leave /metrics within one rediscovery
            srv[ALL_DCS] = srv[ALL_DCS][:1]
            await _until(lambda: targets() == {f"dc1.{DOMAIN}"}, timeout=4)
            # DNS stops answering: the last good list stays, success 0
            srv.clear()
            await _until(lambda: scrape(store, registry)["portqry_domain_discovery_success"][0][1] == 0, timeout=4)
            await asyncio.sleep(1.2)
            assert targets() == {f"dc1.{DOMAIN}"}
            assert scheduler.domain_controllers(DOMAIN)[0].host == f"dc1.{DOMAIN}"
        finally:
            await scheduler.stop()


def test_sd_lists_the_discovered_dcs_and_the_configured_targets(tmp_path: Path) -> None:
    import json
    import urllib.request

    from tests.daemon import run_daemon

    with two_dcs() as (_cldap, _srv, dns_port, tcp_port):
        cfg = write_config(
            tmp_path,
            dns_port,
            f'[[domains]]\nname = "{DOMAIN}"\nports = ["tcp/{tcp_port}"]\n'
            f'[[targets]]\nname = "web"\nhost = "127.0.0.1"\ndomain = "{DOMAIN}"\nports = ["tcp/{tcp_port}"]\n',
        )
        with run_daemon(cfg) as d:
            d.wait_for(lambda x: x.get("/-/ready")[0] == 200, timeout=15)

            def sd(query: str = "") -> list[dict[str, object]]:
                with urllib.request.urlopen(d.url + "/sd" + query, timeout=5) as reply:
                    assert reply.headers["Content-Type"].startswith("application/json")
                    return json.loads(reply.read())  # type: ignore[no-any-return]

            groups = sd()
            assert {g["targets"][0] for g in groups} == {"127.0.0.1", f"dc1.{DOMAIN}", f"dc2.{DOMAIN}"}  # type: ignore[index]
            dc1 = next(g for g in groups if g["targets"] == [f"dc1.{DOMAIN}"])
            assert dc1["labels"]["__meta_portqry_domain"] == DOMAIN  # type: ignore[index]
            assert dc1["labels"]["__meta_portqry_site"] == "Hub"  # type: ignore[index]
            assert ",pdc," in dc1["labels"]["__meta_portqry_roles"]  # type: ignore[index]
            assert [g["targets"] for g in sd("?site=branch")] == [[f"dc2.{DOMAIN}"]]
            assert {g["targets"][0] for g in sd(f"?domain={DOMAIN.upper()}")} == {  # type: ignore[index]
                "127.0.0.1",
                f"dc1.{DOMAIN}",
                f"dc2.{DOMAIN}",
            }
            assert sd("?domain=other.test") == []

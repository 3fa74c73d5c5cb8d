"""The status pages (issue 12): the history ring, the store's history, masking, escaping, filters and the routes.

In process: :mod:`exporter.history`, :meth:`ResultStore.record`'s history, :mod:`exporter.status_view`'s masking
and filters, :mod:`exporter.status_html`'s escaping of hostile names, errors, rootDSE values and RPC annotations,
and every route through aiohttp's test server.  Then the real daemon as a subprocess on loopback.  The headless
Chromium test against the Samba DC is ``tests/test_status_chromium.py``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.collector import ExporterStatus
from exporter.config import Settings
from exporter.history import RECORD, PortHistory
from exporter.http import build_app
from exporter.model import DiscoveredDC, DomainState, LdapDetails, RpcDetails
from exporter.result import ProbeResult
from exporter.states import PortState, Reason
from exporter.status_html import e, index, target_href, tree
from exporter.status_view import MASK, Filter, build_view, mask, masked_config, secret_key
from exporter.store import ResultStore
from exporter.wire.ldap import SearchEntry
from exporter.wire.rootdse import RootDSE
from exporter.wire.snmp import SnmpResponse, VarBind
from tests.daemon import run_daemon
from tests.test_cli_layout import EPM_ENTRIES, _epm, _netlogon

HOSTILE = '<script>alert("x")</script>'
L, N, F = PortState.LISTENING, PortState.NOT_LISTENING, PortState.FILTERED


def result(
    target: str = "dc1",
    port: int = 389,
    state: PortState = L,
    reason: Reason = Reason.SYN_ACK,
    *,
    protocol: str = "tcp",
    address: str = "127.0.0.1",
    timestamp: float = 1_700_000_000.0,
    error: str = "",
    details: dict[str, Any] | None = None,
) -> ProbeResult:
    return ProbeResult(
        target=target,
        host="dc1.example.test",
        address=address,
        protocol=protocol,  # type: ignore[arg-type]
        port=port,
        service="ldap",
        state=state,
        reason=reason,
        duration_seconds=0.0123,
        tries=2,
        timestamp=timestamp,
        details=details or {},
        error=error,
    )


def hostile_root_dse() -> RootDSE:
    attrs = [
        ("dnsHostName", [HOSTILE.encode()]),
        ("defaultNamingContext", [b"DC=pqtest,DC=test"]),
        ("vendorName", [b"<img src=x onerror=alert(1)>"]),
    ]
    return RootDSE.from_entry(SearchEntry("", tuple((n, tuple(v)) for n, v in attrs)))


@dataclass
class Source:
    """What :func:`exporter.http.build_app` and the status pages need, without a daemon."""

    settings: Settings
    store: ResultStore = field(default_factory=lambda: ResultStore((0.1, 1.0)))
    status: ExporterStatus = field(default_factory=ExporterStatus)
    registry: Any = None

    @property
    def ready(self) -> bool:
        return True

    async def reload_async(self) -> tuple[bool, str]:
        return True, "ok"

    def sd_groups(self, **_kw: Any) -> list[dict[str, Any]]:
        return []


def settings(**extra: Any) -> Settings:
    data: dict[str, Any] = {
        "defaults": {"snmp_community": "s3cret-default"},
        "targets": [
            {"name": "dc1", "host": "dc1.example.test", "ports": ["tcp/389"], "snmp_community": "s3cret-target"},
            {"name": HOSTILE, "host": "127.0.0.1", "ports": ["tcp/1"]},
            {"name": "pending", "host": "127.0.0.2", "ports": ["tcp/1"]},
        ],
        "domains": [{"name": "pqtest.test", "ports": ["tcp/389"], "snmp_community": "s3cret-domain"}],
        "modules": {"snmp": {"ports": ["udp/161"], "snmp_community": "s3cret-module"}},
        **extra,
    }
    return Settings(**data)


def populated() -> Source:
    from prometheus_client import CollectorRegistry

    src = Source(settings(), registry=CollectorRegistry())
    sys_descr = VarBind("1.3.6.1.2.1.1.1.0", "octet-string", HOSTILE)
    snmp = SnmpResponse("v2c", "s3cret-echoed", 7, 0, "noError", 0, (sys_descr,))
    hostile_epm = _epm("12345678-1234-abcd-ef00-0123456789ab", HOSTILE, "ncacn_ip_tcp:1.2.3.4[49155]", 49155)
    rpc = RpcDetails("tcp", (*EPM_ENTRIES, hostile_epm), {"ncacn_ip_tcp": 3})
    ldap = LdapDetails(hostile_root_dse(), 0.25, _netlogon())
    for i, state in enumerate([L, L, F]):
        reason = Reason.SYN_ACK if state is L else Reason.TIMEOUT
        ts = 1_700_000_000 + i
        src.store.record(
            "dc1",
            [
                result(timestamp=ts, state=state, reason=reason, details={"ldap": ldap}),
                result(port=135, timestamp=ts, details={"rpc": rpc}),
                result(port=161, protocol="udp", timestamp=ts, details={"snmp": snmp}),
            ],
        )
    src.store.record(HOSTILE, [result(HOSTILE, 1, N, Reason.REFUSED, error=f"boom {HOSTILE}")])
    dc = DiscoveredDC("dc9.pqtest.test", 0, 100, "198.18.0.9", "Site<b>", "", frozenset({"pdc", "gc"}), HOSTILE)
    src.store.record_domain(DomainState("pqtest.test", True, 1_700_000_000.0, (dc,), 2))
    return src


# --- the history ring -------------------------------------------------------------------------------------------


def test_history_record_is_15_bytes_and_the_ring_keeps_the_last_rounds_oldest_first() -> None:
    assert RECORD.size == 15
    ring = PortHistory(3)
    assert ring.nbytes() == 45 and ring.rounds() == []
    for i, state in enumerate([L, L, N, N, F]):
        ring.add(1000.0 + i, state, Reason.SYN_ACK, 0.5 + i, i + 1)
    rounds = ring.rounds()
    assert [r.timestamp for r in rounds] == [1002.0, 1003.0, 1004.0]
    assert [r.state for r in rounds] == [N, N, F]
    assert [r.tries for r in rounds] == [3, 4, 5]
    assert rounds[0].duration_seconds == pytest.approx(2.5)
    assert ring.since == 1004.0 and ring.state is F


def test_history_since_is_the_first_round_of_the_current_state() -> None:
    ring = PortHistory(2)
    ring.add(10.0, L, Reason.SYN_ACK, 0.1, 1)
    ring.add(20.0, L, Reason.SYN_ACK, 0.1, 1)
    assert ring.since == 10.0
    ring.add(30.0, F, Reason.TIMEOUT, 2.0, 3)
    ring.add(40.0, F, Reason.TIMEOUT, 2.0, 300)
    assert ring.since == 30.0
    assert ring.rounds()[-1].tries == 255  # capped to one byte


def test_history_off_keeps_only_since_and_copies_are_independent() -> None:
    ring = PortHistory(0)
    ring.add(5.0, N, Reason.REFUSED, 0.1, 1)
    assert ring.rounds() == [] and ring.since == 5.0 and ring.nbytes() == 0
    full = PortHistory(4)
    full.add(1.0, L, Reason.SYN_ACK, 0.1, 1)
    copy = full.copy()
    full.add(2.0, F, Reason.TIMEOUT, 0.1, 1)
    assert len(copy.rounds()) == 1 and copy.state is L and len(full.rounds()) == 2


def test_store_records_history_per_port_and_drops_it_with_the_result() -> None:
    store = ResultStore((1.0,), history=5)
    for i in range(7):
        store.record("t", [result("t", 1, L if i < 4 else N, timestamp=100.0 + i), result("t", 2, timestamp=100.0 + i)])
    hist = store.history("t")
    ring = hist[("t", "127.0.0.1", "tcp", 1)]
    assert [r.timestamp for r in ring.rounds()] == [102.0, 103.0, 104.0, 105.0, 106.0]
    assert ring.since == 104.0
    assert hist[("t", "127.0.0.1", "tcp", 2)].since == 100.0
    store.record("t", [result("t", 1, address="127.0.0.2", timestamp=200.0)])  # the name moved: old address gone
    assert set(store.history("t")) == {("t", "127.0.0.2", "tcp", 1)}
    store.retain([], ["t"])
    assert store.history("t") == {} and store.history() == {}
    assert store.history("unknown") == {}


def test_store_history_zero_rounds_still_knows_when_the_state_changed() -> None:
    store = ResultStore((1.0,), history=0)
    store.record("t", [result("t", 1, L, timestamp=1.0)])
    store.record("t", [result("t", 1, F, timestamp=2.0)])
    ring = store.history("t")[("t", "127.0.0.1", "tcp", 1)]
    assert ring.rounds() == [] and ring.since == 2.0


# --- masking ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("snmp_community", True),
        ("communities", True),
        ("password", True),
        ("admin_password", True),
        ("basic_auth_users", True),
        ("bearer_token", True),
        ("password_hash", True),
        ("private_key", True),
        ("key_file", False),
        ("key", True),
        ("Authorization", True),
        ("cert", False),
        ("authoritative", False),
        ("domain", False),
        ("host", False),
        ("snmp_version", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    assert secret_key(key) is secret


def test_mask_hides_leaves_under_secret_keys_and_bcrypt_hashes_anywhere() -> None:
    data = {
        "snmp_community": "public",
        "web": {"basic_auth_users": {"alice": "plain?"}, "other": "$2y$10$abcdefghijklmnopqrstuv"},
        "targets": [{"name": "dc1", "snmp_community": None}, {"name": "x", "password": ""}],
        "nested": {"credentials": ["a", "b"]},
    }
    out = mask(data)
    assert out["snmp_community"] == MASK
    assert out["web"] == {"basic_auth_users": {"alice": MASK}, "other": MASK}
    assert out["targets"] == [{"name": "dc1", "snmp_community": None}, {"name": "x", "password": ""}]
    assert out["nested"] == {"credentials": [MASK, MASK]}


def test_masked_config_shows_the_web_config_with_hashes_and_the_inline_key_masked(tmp_path: Path) -> None:
    from exporter.webconfig import WebState, load_web_config

    hashed = "$2y$10$" + "a" * 53
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: '{hashed}'\n")
    cfg = masked_config(settings(), WebState(load_web_config(str(path))))
    assert cfg["web_config"]["path"] == str(path)
    assert cfg["web_config"]["basic_auth_users"] == {"alice": MASK}
    assert hashed not in json.dumps(cfg)
    assert "web_config" not in masked_config(settings(), WebState())


def test_masked_config_hides_every_snmp_community() -> None:
    cfg = masked_config(settings())
    text = json.dumps(cfg)
    assert "s3cret" not in text
    assert cfg["defaults"]["snmp_community"] == MASK
    assert cfg["targets"][0]["snmp_community"] == MASK
    assert cfg["domains"][0]["snmp_community"] == MASK
    assert cfg["modules"]["snmp"]["snmp_community"] == MASK
    assert cfg["targets"][0]["host"] == "dc1.example.test"  # the rest is shown


# --- filters ----------------------------------------------------------------------------------------------------


def test_filter_from_query() -> None:
    from multidict import MultiDict

    assert Filter.from_query(MultiDict()) == Filter()
    f = Filter.from_query(MultiDict([("hide", "listening")]))
    assert f.keeps(N) and f.keeps(F) and not f.keeps(L) and f.query() == "?hide=listening"
    f = Filter.from_query(MultiDict([("state", "filtered,not-listening")]))
    assert f.keeps(F) and f.keeps(N) and not f.keeps(L) and not f.keeps(PortState.LISTENING_OR_FILTERED)
    with pytest.raises(ValueError, match="not a state"):
        Filter.from_query(MultiDict([("state", "open")]))


def test_view_hides_targets_with_nothing_to_show_and_lists_pending_ones() -> None:
    src = populated()
    view = build_view(src, flt=Filter(hide=frozenset({L})))
    assert view is not None
    names = [t.name for t in view.targets]
    assert "dc1" in names and HOSTILE in names  # dc1's 389 is filtered
    assert "pending" in names  # configured, no round yet: shown with no ports
    by_name = {t.name: t for t in view.targets}
    assert [p.result.port for p in by_name["dc1"].ports] == [389]
    assert by_name["dc1"].total_ports == 3
    assert by_name["dc9.pqtest.test"].kind == "dc" and by_name["dc9.pqtest.test"].site == "Site<b>"
    only_l = build_view(src, flt=Filter(only=frozenset({PortState.LISTENING_OR_FILTERED})))
    assert only_l is not None and only_l.hidden_targets == 2


# --- rendering --------------------------------------------------------------------------------------------------


def _no_markup_from_the_network(page: str) -> None:
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "<b>" not in page  # the DC's hostile site name


def test_index_escapes_target_names_errors_and_dc_fields() -> None:
    src = populated()
    view = build_view(src)
    assert view is not None
    page = index(view)
    _no_markup_from_the_network(page)
    assert e(HOSTILE) in page
    assert f"boom {e(HOSTILE)}" in page
    assert "Site&lt;b&gt;" in page
    assert f'href="{target_href(HOSTILE)}"' in page
    assert target_href(HOSTILE) == "/targets/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E"
    assert "s3cret" not in page
    assert re.search(r'data-state="filtered"', page)
    assert 'href="/?hide=listening"' in page


def test_target_page_escapes_root_dse_rpc_annotation_and_masks_the_echoed_community() -> None:
    from exporter.status_html import target

    src = populated()
    view = build_view(src, target="dc1")
    assert view is not None
    page = target(view, view.targets[0])
    _no_markup_from_the_network(page)
    assert e(HOSTILE) in page  # rootDSE dnsHostName, the RPC annotation, the sysDescr
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "s3cret-echoed" not in page and MASK in page
    assert re.search(r'class="endpoints">4<', page)  # endpoint count
    assert "DC=pqtest,DC=test" in page
    for flag in ("pdc", "gc", "kdc", "writable"):
        assert flag in page  # DC flags from the LDAP ping
    assert page.count('class="h s-') == 9  # 3 ports x 3 rounds
    assert "+0.250 s" in page  # clock offset


def test_json_chunks_are_the_json() -> None:
    view = build_view(populated())
    assert view is not None
    assert json.loads("".join(view.json_chunks())) == json.loads(json.dumps(view.to_json()))
    one = build_view(populated(), target="dc1")
    assert one is not None
    t = one.targets[0]
    assert json.loads("".join(t.json_chunks(details=True))) == json.loads(json.dumps(t.to_json(details=True)))


def test_tree_folds_long_lists_and_escapes_keys() -> None:
    html = tree({HOSTILE: list(range(30))})
    assert "<script" not in html and "<details>" in html and "18 more" in html


# --- routes (in process) ----------------------------------------------------------------------------------------


async def test_routes_in_process() -> None:
    src = populated()
    async with TestClient(TestServer(build_app(src))) as client:
        r = await client.get("/")
        body = await r.text()
        assert r.status == 200 and r.content_type == "text/html"
        assert "script-src" not in r.headers["Content-Security-Policy"]
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
        _no_markup_from_the_network(body)
        r = await client.get("/?hide=listening")
        assert r.status == 200 and 'data-port="135"' not in await r.text()
        r = await client.get("/?state=bogus")
        assert r.status == 400
        r = await client.get("/targets/dc1")
        assert r.status == 200 and "Recent rounds" in await r.text()
        r = await client.get(target_href(HOSTILE).replace("&amp;", "&"))
        assert r.status == 200
        _no_markup_from_the_network(await r.text())
        r = await client.get("/targets/dc9.pqtest.test")  # a discovered DC without results yet
        assert r.status == 200
        r = await client.get("/targets/nope")
        assert r.status == 404 and "Unknown target" in await r.text()
        r = await client.get("/config")
        cfg = await r.text()
        assert r.status == 200 and "s3cret" not in cfg and "&quot;***&quot;" in cfg
        r = await client.get("/api/v1/status")
        data = await r.json()
        assert r.status == 200 and "s3cret" not in json.dumps(data)
        assert {t["name"] for t in data["targets"]} >= {"dc1", HOSTILE, "pending", "dc9.pqtest.test"}
        dc1 = next(t for t in data["targets"] if t["name"] == "dc1")
        assert {p["port"]: p["state"] for p in dc1["ports"]} == {389: "filtered", 135: "listening", 161: "listening"}
        assert next(p for p in dc1["ports"] if p["port"] == 389)["state_since"] == 1_700_000_002.0
        r = await client.get("/api/v1/status?hide=listening")
        data = await r.json()
        assert all(p["state"] != "listening" for t in data["targets"] for p in t["ports"])
        r = await client.get("/api/v1/targets/dc1")
        data = await r.json()
        port = next(p for p in data["ports"] if p["port"] == 389)
        assert [x["state"] for x in port["rounds"]] == ["listening", "listening", "filtered"]
        snmp = next(p for p in data["ports"] if p["port"] == 161)
        assert snmp["details"]["snmp"]["community"] == MASK
        assert (await client.get("/api/v1/targets/nope")).status == 404
        r = await client.get("/api/v1/config")
        assert (await r.json())["defaults"]["snmp_community"] == MASK
        assert (await client.get("/metrics")).status == 200
        r = await client.head("/")
        assert r.status == 200 and await r.read() == b""


async def test_large_store_renders_every_port() -> None:
    """1,000 ports of 10 targets: / lists them all, and the filtered page only the closed ones."""
    src = Source(Settings(), registry=None)
    for t in range(10):
        src.store.record(f"t{t}", [result(f"t{t}", p, N if p % 10 == 0 else L) for p in range(1, 101)])
    view = build_view(src)
    assert view is not None and sum(len(t.ports) for t in view.targets) == 1000
    page = index(view)
    assert page.count('<tr class="port"') == 1000
    closed = build_view(src, flt=Filter(hide=frozenset({L})))
    assert closed is not None and sum(len(t.ports) for t in closed.targets) == 100


# --- the real daemon --------------------------------------------------------------------------------------------


def test_daemon_serves_the_status_pages(tmp_path: Path) -> None:
    config = tmp_path / "status.toml"
    config.write_text(
        f"""
[exporter]
udp_pacing_seconds = 0.01
status_history = 5
[defaults]
interval_seconds = 1
timeout_seconds = 0.3
tcp_tries = 1
snmp_community = "s3cret-daemon"
jitter_ratio = 0.0
[[targets]]
name = '{HOSTILE}'
host = "127.0.0.1"
ports = ["tcp/1", "udp/9"]
[[targets]]
name = "unresolved"
host = "no-such-host.invalid"
ports = ["tcp/389"]
"""
    )
    with run_daemon(config) as daemon:
        daemon.wait_for(lambda d: d.get("/-/ready")[0] == 200, timeout=30)
        status, body = daemon.get("/")
        assert status == 200
        _no_markup_from_the_network(body)
        assert e(HOSTILE) in body and 'data-state="not_listening"' in body
        assert "resolve-failed" in body
        status, body = daemon.get("/?hide=listening")
        assert status == 200
        # a few rounds, then the page shows them
        daemon.wait_for(lambda d: d.get(target_href(HOSTILE))[1].count('class="h s-not_listening"') >= 6, timeout=30)
        status, body = daemon.get(target_href(HOSTILE))
        assert status == 200
        _no_markup_from_the_network(body)
        assert daemon.get("/targets/no-such-target")[0] == 404
        status, body = daemon.get("/config")
        assert status == 200 and "s3cret" not in body and "***" in body
        status, body = daemon.get("/api/v1/status")
        data = json.loads(body)
        assert status == 200 and "s3cret" not in body
        ports = {(t["name"], p["port"]): p for t in data["targets"] for p in t["ports"]}
        assert ports[(HOSTILE, 1)]["state"] == "not_listening" and ports[(HOSTILE, 1)]["reason"] == "refused"
        assert ports[("unresolved", 389)]["reason"] == "resolve-failed" and ports[("unresolved", 389)]["error"]
        assert ports[(HOSTILE, 1)]["state_since"] <= ports[(HOSTILE, 1)]["timestamp"] <= time.time()
        status, body = daemon.get("/api/v1/targets/unresolved")
        assert status == 200 and json.loads(body)["name"] == "unresolved"


def test_status_history_is_a_config_key() -> None:
    assert Settings().exporter.status_history == 20
    with pytest.raises(ValueError, match="status_history"):
        Settings(exporter={"status_history": -1})

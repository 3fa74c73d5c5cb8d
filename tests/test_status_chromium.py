"""Issue 12 acceptance: the status page in a real headless Chromium, against the test bed's Samba DC.

The exporter probes the DC (``dc``) as a configured target, with the firewall ports of ``dc_firewall`` giving
every state (tcp/9106 listening, tcp/9103 not listening, tcp/9101 DROP = filtered, udp/9201 DROP = listening
or filtered), and finds it again through ``[[domains]]`` (a discovered DC).  Chromium loads ``/``,
``/?hide=listening``, ``/targets/dc1`` and ``/config`` from 127.0.0.1; the tests read the DOM it built: the
states, reasons, the rootDSE, the endpoint count, the DC flags, the discovered DC, and the SNMP community
masked everywhere.  ``artifacts/status-page.png`` (``/``) and ``artifacts/status-target.png``
(``/targets/dc1``) are the screenshots, kept for a person to look at (``artifacts/`` is git-ignored).

Network: the exporter talks to the DC's address only (its resolver is the DC); Chromium gets a dead proxy for
everything but loopback (:mod:`tests.chromium`).  Run: ``CI=true python -m pytest tests/test_status_chromium.py``
as root (about 20 s besides the DC's start-up).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests import testbed
from tests.chromium import ARTIFACTS, dump_dom, png_size, screenshot
from tests.daemon import RunningDaemon, run_daemon

TARGET = "dc1"
COMMUNITY = "pq-status-s3cret"
WAIT = 60.0


def exporter_config(dc: testbed.SambaDC, fw: testbed.Firewall) -> str:
    p = fw.ports
    ports = ["tcp/389", "udp/389", "tcp/135", "tcp/88", "udp/161", f"tcp/{p.tcp_listen}", f"tcp/{p.tcp_closed}",
             f"tcp/{p.tcp_drop}", f"udp/{p.udp_drop}"]  # fmt: skip
    listed = ", ".join(f'"{x}"' for x in ports)
    return f"""
[exporter]
udp_pacing_seconds = 0.05
[resolver]
nameservers = ["{dc.address}"]
timeout_seconds = 1.0
[defaults]
interval_seconds = 2
timeout_seconds = 1.0
tcp_tries = 1
udp_tries = 1
jitter_ratio = 0.0
snmp_community = "{COMMUNITY}"
[[targets]]
name = "{TARGET}"
host = "{dc.fqdn}"
domain = "{dc.dns_domain}"
ports = [{listed}]
[[domains]]
name = "{dc.dns_domain}"
ports = ["tcp/389", "udp/389"]
rediscover_seconds = 300
min_reachable_dcs = 1
"""


class Dom(HTMLParser):
    """The elements of a serialised DOM with their attributes and text (enough for these pages)."""

    VOID = frozenset({"br", "meta", "link", "img", "input", "hr", "col", "wbr"})

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = {"tag": tag, "attrs": {k: v or "" for k, v in attrs}, "text": "", "children": []}
        if self._open:
            self._open[-1]["children"].append(el)
        self.elements.append(el)
        if tag not in self.VOID:
            self._open.append(el)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        for el in self._open:
            el["text"] += data

    def find(self, tag: str, **attrs: str) -> list[dict[str, Any]]:
        """Elements ``tag`` whose attributes include ``attrs`` (``class_`` matches one class)."""
        out = []
        for el in self.elements:
            if el["tag"] != tag:
                continue
            a = el["attrs"]
            ok = all(
                (k == "class_" and v in a.get("class", "").split()) or a.get(k.replace("_", "-")) == v
                for k, v in attrs.items()
            )
            if ok:
                out.append(el)
        return out


def cells(row: dict[str, Any]) -> list[str]:
    return [" ".join(c["text"].split()) for c in row["children"] if c["tag"] == "td"]


@dataclass
class Bed:
    dc: testbed.SambaDC
    firewall: testbed.Firewall
    daemon: RunningDaemon

    def url(self, path: str) -> str:
        return self.daemon.url + path

    def api(self, path: str) -> Any:
        status, body = self.daemon.get(path)
        assert status == 200, body
        assert COMMUNITY not in body
        return json.loads(body)


@pytest.fixture(scope="module")
def bed(dc: testbed.SambaDC, dc_firewall: testbed.Firewall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    config = tmp_path_factory.mktemp("status") / "exporter.toml"
    config.write_text(exporter_config(dc, dc_firewall))
    with run_daemon(config) as daemon:
        daemon.wait_for(lambda d: d.get("/-/ready")[0] == 200, timeout=WAIT)
        b = Bed(dc, dc_firewall, daemon)

        def settled(_d: RunningDaemon) -> bool:
            target = b.api(f"/api/v1/targets/{TARGET}")
            by_port = {(p["protocol"], p["port"]): p for p in target["ports"]}
            ldap = by_port.get(("tcp", 389), {}).get("details", {}).get("ldap")
            rpc = by_port.get(("tcp", 135), {}).get("details", {}).get("rpc")
            ping = by_port.get(("udp", 389), {}).get("details", {}).get("ldap", {}).get("netlogon")
            dcs = [t for t in b.api("/api/v1/status")["targets"] if t["kind"] == "dc" and t["ports"]]
            return bool(ldap and rpc and ping and dcs and len(by_port[("tcp", 389)]["rounds"]) >= 2)

        daemon.wait_for(settled, timeout=WAIT, interval=1.0)
        yield b


def test_index_dom_shows_every_state_reason_and_the_discovered_dc(bed: Bed) -> None:
    dom = Dom(dump_dom(bed.url("/")))
    assert not dom.find("script"), "the page needs no script (and its CSP would block one)"
    p = bed.firewall.ports
    rows = {(r["attrs"]["data-protocol"], int(r["attrs"]["data-port"])): r
            for r in dom.find("tr", class_="port", data_target=TARGET)}  # fmt: skip
    expected = {
        ("tcp", 389): ("listening", "LISTENING", "protocol-reply"),
        ("tcp", p.tcp_listen): ("listening", "LISTENING", "syn-ack"),
        ("tcp", p.tcp_closed): ("not_listening", "NOT LISTENING", "refused"),
        ("tcp", p.tcp_drop): ("filtered", "FILTERED", "timeout"),
        ("udp", p.udp_drop): ("listening_or_filtered", "LISTENING or FILTERED", "no-reply"),
    }
    for key, (state, text, reason) in expected.items():
        row = rows[key]
        assert row["attrs"]["data-state"] == state, (key, row["attrs"])
        tds = cells(row)
        # address, port, service, state, reason, tries, duration, state since, last probe, last error
        assert tds[0] == bed.dc.address and tds[1] == f"{key[0]}/{key[1]}"
        assert tds[3].startswith(text) and tds[4] == reason, (key, tds)
        assert tds[5].isdigit() and tds[6].endswith(("ms", " s")) and tds[7].startswith("20"), tds
    assert int(cells(rows[("tcp", p.tcp_drop)])[5]) == 1  # tcp_tries = 1
    link = [a for a in dom.find("a") if a["attrs"].get("href") == f"/targets/{TARGET}"]
    assert link, "each target links to its page"
    dc_rows = dom.find("tr", class_="dc", data_dc=bed.dc.fqdn.lower())
    assert dc_rows and bed.dc.address in cells(dc_rows[0])[1]
    assert "pdc" in cells(dc_rows[0])[3]
    assert dom.find("section", class_="target", data_target=bed.dc.fqdn.lower()), "the discovered DC's section"
    assert COMMUNITY not in json.dumps(dom.elements)


def test_filter_shows_only_ports_not_listening(bed: Bed) -> None:
    dom = Dom(dump_dom(bed.url("/?hide=listening")))
    states = {r["attrs"]["data-state"] for r in dom.find("tr", class_="port")}
    assert states and "listening" not in states
    assert {"not_listening", "filtered", "listening_or_filtered"} <= states
    on = [a for a in dom.find("a", class_="on") if a["attrs"].get("href") == "/?hide=listening"]
    assert on, "the filter link is marked as the one in force"


def test_target_page_dom_has_rounds_root_dse_endpoints_and_dc_flags(bed: Bed) -> None:
    dom = Dom(dump_dom(bed.url(f"/targets/{TARGET}")))
    assert dom.find("h1", class_="target-name")[0]["text"] == TARGET
    history = [r for r in dom.find("tr") if r["attrs"].get("data-port") == "389" and r["attrs"].get("data-protocol")]
    strips = [c for r in history for c in r["children"] if "h" in c["attrs"].get("class", "").split()]
    assert len(strips) >= 2 and all(c["attrs"]["data-state"] for c in strips)
    root = dom.find("div", class_="rootdse")[0]["text"]
    assert bed.dc.fqdn.lower() in root.lower() and bed.dc.base_dn.lower() in root.lower()
    endpoints = int(dom.find("b", class_="endpoints")[0]["text"])
    assert endpoints > 0
    flags = dom.find("div", class_="netlogon")[0]["text"]
    for flag in ("pdc", "ldap", "kdc"):
        assert flag in flags
    api = bed.api(f"/api/v1/targets/{TARGET}")
    rpc = next(p for p in api["ports"] if p["port"] == 135)["details"]["rpc"]
    assert endpoints == len(rpc["entries"])


def test_community_is_masked_in_the_config_page_and_the_api(bed: Bed) -> None:
    text = dump_dom(bed.url("/config"))
    assert COMMUNITY not in text
    config = json.loads(Dom(text).find("pre", class_="config")[0]["text"])
    assert config["defaults"]["snmp_community"] == "***"
    assert config["targets"][0]["host"] == bed.dc.fqdn
    for path in ("/", f"/targets/{TARGET}", "/api/v1/status", "/api/v1/config", f"/api/v1/targets/{TARGET}"):
        status, body = bed.daemon.get(path)
        assert status == 200 and COMMUNITY not in body, path
    assert bed.daemon.get("/targets/no-such-dc")[0] == 404


def test_screenshots(bed: Bed) -> None:
    for path, name in (("/", "status-page.png"), (f"/targets/{TARGET}", "status-target.png")):
        png = screenshot(bed.url(path), ARTIFACTS / name)
        assert png_size(png) == (1280, 1600)
        assert png.stat().st_size > 30_000, f"{png} is too small to show the page ({png.stat().st_size} bytes)"
    assert Path(ARTIFACTS / "status-page.png").exists()

"""The status pages' HTML (:mod:`exporter.status_view` collects what they show).

Plain HTML and inline CSS, no script.  Every text that is not a literal of this module goes through :func:`e`
(``html.escape`` with quotes): target names and hosts, error texts, rootDSE values, RPC annotations, SNMP
replies and config values all come from the network or a file.  Links to a target quote its name.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from exporter.model import DomainState
from exporter.states import PortState
from exporter.status_view import NOT_LISTENING, Filter, PortRow, StatusView, TargetView, mask

#: How many items of a list the details tree shows before folding the rest into a ``<details>``.
FOLD_AFTER = 12

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.2em;margin:1.4em 0 .3em}h3{font-size:1.05em;margin:1em 0 .3em}
nav a{margin-right:1em}table{border-collapse:collapse;margin:.3em 0 1em}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#777}.err{color:#a00}
.s-listening{background:#d9f2d9}.s-not_listening{background:#f6d0d0}.s-filtered{background:#fbe3c2}
.s-listening_or_filtered{background:#f3efc4}td.h{width:1.4em;text-align:center;padding:2px 0;font-size:12px}
.filter a.on{font-weight:bold;text-decoration:none;color:#222}code,pre{font-family:ui-monospace,monospace}
time{white-space:nowrap}pre{background:#f7f7f7;border:1px solid #ddd;padding:.6em;overflow:auto}
table.kv th{font-weight:normal}
"""
_SHORT = {
    PortState.LISTENING: "L",
    PortState.NOT_LISTENING: "N",
    PortState.FILTERED: "F",
    PortState.LISTENING_OR_FILTERED: "?",
}


def e(value: object) -> str:
    """``value`` as text, escaped for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def target_href(name: str) -> str:
    """The link to a target's page (the name quoted, then escaped)."""
    return e("/targets/" + quote(name, safe=""))


def when(ts: float, now: float | None = None) -> str:
    """``<time>`` of a Unix time, UTC, with its age; ``-`` for 0."""
    if not ts:
        return '<span class="muted">-</span>'
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    return f'<time datetime="{iso}">{stamp}Z</time><br><span class="muted">{_age(now - ts)}</span>'


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} d ago"


def duration(seconds: float) -> str:
    """``12.3 ms`` or ``2.00 s``."""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _head(title: str) -> str:
    nav = (
        '<nav><a href="/">Status</a><a href="/?hide=listening">Not listening</a><a href="/config">Config</a>'
        '<a href="/api/v1/status">JSON</a><a href="/metrics">Metrics</a><a href="/-/healthy">Healthy</a>'
        '<a href="/-/ready">Ready</a><a href="/sd">Service discovery</a></nav>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head>\n<body>{nav}\n"
    )


_TAIL = "\n</body></html>\n"


def _page(title: str, body: str) -> str:
    return _head(title) + body + _TAIL


def _state_cell(row: PortRow) -> str:
    r = row.result
    first = ""
    if r.initial_state is not None and r.initial_state is not r.state:
        first = f' <span class="muted">(first {e(r.initial_state.portqry_text)})</span>'
    return (
        f'<td class="state s-{e(r.state.value)}" data-state="{e(r.state.value)}">{e(r.state.portqry_text)}{first}</td>'
    )


_PORT_HEAD = (
    "<tr><th>address</th><th>port</th><th>service</th><th>state</th><th>reason</th><th>tries</th>"
    "<th>duration</th><th>state since</th><th>last probe</th><th>last error</th></tr>"
)


def _port_rows(target: TargetView, now: float) -> Iterator[str]:
    for row in target.ports:
        r = row.result
        address = e(r.address) if r.address else '<span class="err">(not resolved)</span>'
        yield (
            f'<tr class="port" data-target="{e(target.name)}" data-address="{e(r.address)}" '
            f'data-protocol="{e(r.protocol)}" data-port="{r.port}" data-state="{e(r.state.value)}">'
            f"<td>{address}</td><td>{e(r.protocol)}/{r.port}</td><td>{e(r.service)}</td>{_state_cell(row)}"
            f'<td>{e(r.reason.value)}</td><td class="num">{r.tries}</td>'
            f'<td class="num">{e(duration(r.duration_seconds))}</td><td>{when(row.since, now)}</td>'
            f'<td>{when(r.timestamp, now)}</td><td class="err error">{e(r.error)}</td></tr>\n'
        )


def _counts(target: TargetView) -> str:
    counts = target.counts()
    return " ".join(
        f'<span class="s-{e(s.value)}">{counts[s.value]} {e(s.portqry_text)}</span>'
        for s in PortState
        if counts[s.value]
    )


def _target_head(target: TargetView) -> str:
    facts = [f"host <code>{e(target.host)}</code>" if target.host else ""]
    facts.append("discovered DC" if target.kind == "dc" else "configured target")
    if target.domain:
        facts.append(f"domain <code>{e(target.domain)}</code>")
    if target.site:
        facts.append(f"site <code>{e(target.site)}</code>")
    if not target.resolved:
        facts.append('<span class="err">the name did not resolve in the latest round</span>')
    return " &middot; ".join(f for f in facts if f)


def _domains(domains: Sequence[DomainState], now: float) -> str:
    if not domains:
        return ""
    out = ["<h2>Domains</h2>"]
    for d in domains:
        health = "discovery OK" if d.ok else f'<span class="err">discovery failing: {e(d.error)}</span>'
        out.append(
            f'<h3 class="domain" data-domain="{e(d.domain)}">{e(d.domain)}</h3><p>{health} &middot; last success '
            f"{when(d.last_success, now)} &middot; {len(d.dcs)} DCs (alert below {d.min_reachable_dcs} reachable)</p>"
        )
        if d.dcs:
            out.append(
                "<table><tr><th>DC</th><th>address</th><th>site</th><th>roles</th><th>puts us in site</th>"
                "<th>SRV priority/weight</th><th>LDAP ping error</th></tr>"
            )
            for dc in d.dcs:
                out.append(
                    f'<tr class="dc" data-dc="{e(dc.host)}"><td><a href="{target_href(dc.host)}">{e(dc.host)}</a></td>'
                    f"<td>{e(dc.address)}</td><td>{e(dc.site)}</td><td>{e(', '.join(sorted(dc.roles)))}</td>"
                    f"<td>{e(dc.client_site)}</td><td>{dc.priority}/{dc.weight}</td>"
                    f'<td class="err">{e(dc.error)}</td></tr>'
                )
            out.append("</table>")
    return "\n".join(out)


def _filter_links(flt: Filter) -> str:
    def link(href: str, text: str, on: bool) -> str:
        return f'<a href="{e(href)}"{" class=on" if on else ""}>{e(text)}</a>'

    links = [
        link("/", "all ports", not flt.active),
        link("/" + NOT_LISTENING.query(), "only ports not listening", flt == NOT_LISTENING),
    ]
    links += [link(f"/?state={s.value}", s.portqry_text, flt == Filter(only=frozenset({s}))) for s in PortState]
    return '<p class="filter">Show: ' + " | ".join(links) + "</p>"


def index(view: StatusView) -> str:
    """``/`` as one string (:func:`index_chunks` joined)."""
    return "".join(index_chunks(view))


def index_chunks(view: StatusView) -> Iterator[str]:
    """``/``: the summary, the domains, every target and its ports, in pieces (one per row at most)."""
    now = view.generated
    ports = sum(len(t.ports) for t in view.targets)
    totals = dict.fromkeys((s.value for s in PortState), 0)
    for t in view.targets:
        for k, n in t.counts().items():
            totals[k] += n
    summary = ", ".join(f"{totals[s.value]} {e(s.portqry_text)}" for s in PortState)
    ready = "ready" if view.ready else '<span class="err">not ready: first probe round running</span>'
    yield _head("portqry-exporter: status")
    yield "<h1>portqry-exporter</h1>\n"
    yield (
        f'<p class="summary">{len(view.targets)} targets, {ports} ports shown: {summary} &middot; {ready} &middot; '
        f"page built {when(now, now)}</p>\n"
    )
    yield _filter_links(view.filter)
    if view.hidden_targets:
        yield f'<p class="muted">{view.hidden_targets} targets with no port to show are hidden.</p>\n'
    yield _domains(view.domains, now)
    yield '<h2>Targets</h2><table class="targets"><tr><th>target</th><th>host</th><th>ports</th></tr>\n'
    for t in view.targets:
        yield (
            f'<tr><td><a href="{target_href(t.name)}">{e(t.name)}</a></td><td>{e(t.host)}</td>'
            f"<td>{_counts(t) or '<span class=muted>no result yet</span>'}</td></tr>\n"
        )
    yield "</table>\n"
    for t in view.targets:
        yield (
            f'<section class="target" data-target="{e(t.name)}"><h2><a href="{target_href(t.name)}">{e(t.name)}</a>'
            f"</h2><p>{_target_head(t)}</p>\n"
        )
        if t.ports:
            yield f'<table class="ports">{_PORT_HEAD}\n'
            yield from _port_rows(t, now)
            yield "</table>\n"
        elif not t.total_ports:
            yield '<p class="muted">No probe round has finished yet.</p>\n'
        yield "</section>\n"
    yield _TAIL


def _history(target: TargetView) -> Iterator[str]:
    width = max((r.round_count for r in target.ports), default=0)
    if not width:
        yield '<p class="muted">No recent rounds kept ([exporter] status_history = 0).</p>'
        return
    yield (
        f'<p class="muted">The last {width} rounds kept per port, oldest first: L listening, N not listening, '
        "F filtered, ? listening or filtered (hover for time, reason, duration and tries).</p>"
        f'<table class="history"><tr><th>address</th><th>port</th><th colspan="{width}">rounds</th></tr>\n'
    )
    for row in target.ports:
        r = row.result
        cells = []
        rounds = row.rounds
        for x in rounds:
            stamp = time.strftime("%H:%M:%S", time.gmtime(x.timestamp))
            tip = f"{stamp}Z {x.state.portqry_text} {x.reason.value} {duration(x.duration_seconds)} {x.tries} tries"
            cells.append(
                f'<td class="h s-{e(x.state.value)}" data-state="{e(x.state.value)}" title="{e(tip)}">'
                f"{_SHORT[x.state]}</td>"
            )
        cells += ["<td></td>"] * (width - len(rounds))
        yield (
            f'<tr data-protocol="{e(r.protocol)}" data-port="{r.port}"><td>{e(r.address)}</td>'
            f"<td>{e(r.protocol)}/{r.port}</td>{''.join(cells)}</tr>\n"
        )
    yield "</table>\n"


def tree(value: Any) -> str:
    """Any JSON-able value as nested HTML (tables for mappings, lists folded after :data:`FOLD_AFTER`)."""
    if isinstance(value, Mapping):
        if not value:
            return '<span class="muted">-</span>'
        rows = "".join(f"<tr><th>{e(k)}</th><td>{tree(v)}</td></tr>" for k, v in value.items())
        return f'<table class="kv">{rows}</table>'
    if isinstance(value, list | tuple):
        if not value:
            return '<span class="muted">-</span>'
        if all(not isinstance(v, Mapping | list | tuple) for v in value) and len(value) <= FOLD_AFTER:
            return "<br>".join(e(v) for v in value)
        items = [f"<li>{tree(v)}</li>" for v in value]
        head = "".join(items[:FOLD_AFTER])
        rest = "".join(items[FOLD_AFTER:])
        more = f"<details><summary>{len(items) - FOLD_AFTER} more</summary><ol>{rest}</ol></details>" if rest else ""
        return f"<ol>{head}</ol>{more}"
    if value is None:
        return '<span class="muted">-</span>'
    return e(value)


_ROOT_DSE_SUMMARY = (
    "dns_host_name",
    "default_naming_context",
    "root_domain_naming_context",
    "server_name",
    "ldap_service_name",
    "current_time",
    "is_synchronized",
    "is_global_catalog_ready",
    "domain_functionality",
    "forest_functionality",
    "domain_controller_functionality",
    "highest_committed_usn",
)


def _ldap(d: Mapping[str, Any]) -> str:
    out = []
    root = d.get("root_dse") or {}
    facts = {k: root.get(k) for k in _ROOT_DSE_SUMMARY if root.get(k) not in (None, "", [])}
    if d.get("clock_offset_seconds") is not None:
        facts["clock offset (DC - us)"] = f"{d['clock_offset_seconds']:+.3f} s"
    out.append(f'<h4>rootDSE</h4><div class="rootdse">{tree(facts)}</div>')
    attrs = root.get("attributes") or {}
    if attrs:
        out.append(f"<details><summary>all {len(attrs)} rootDSE attributes</summary>{tree(attrs)}</details>")
    netlogon = d.get("netlogon")
    if netlogon:
        flags = ", ".join(str(f) for f in sorted(netlogon.get("flags") or []))
        ping = {
            "DC flags": f"{flags} ({netlogon.get('flags_raw', 0):#010x})"
            if isinstance(netlogon.get("flags_raw"), int)
            else flags,
            "DNS domain": netlogon.get("dns_domain_name"),
            "DNS forest": netlogon.get("dns_forest_name"),
            "DC host": netlogon.get("dns_host_name"),
            "NetBIOS domain": netlogon.get("netbios_domain_name"),
            "NetBIOS computer": netlogon.get("netbios_computer_name"),
            "DC site": netlogon.get("dc_site_name"),
            "client site": netlogon.get("client_site_name"),
        }
        out.append(f'<h4>LDAP ping (Netlogon)</h4><div class="netlogon">{tree(ping)}</div>')
    if d.get("ping_error"):
        out.append(f'<p class="err">LDAP ping: {e(d["ping_error"])}</p>')
    return "\n".join(out)


def _rpc(d: Mapping[str, Any]) -> str:
    entries = d.get("entries") or []
    status = f" &middot; ended by {e(d.get('status_name') or d.get('status'))}" if d.get("status") is not None else ""
    out = [
        f'<p class="rpc">endpoint mapper over {e(d.get("via", ""))}: <b class="endpoints">{len(entries)}</b> '
        f"endpoints in {e(d.get('pages', 0))} pages{status}</p>",
        tree(d.get("protocol_sequence_counts") or {}),
    ]
    dynamic = d.get("dynamic_ports") or []
    if dynamic:
        rows = "".join(
            f'<tr><td>tcp/{e(p.get("port"))}</td><td class="s-{e(p.get("state"))}">{e(p.get("state"))}</td>'
            f"<td>{e(p.get('reason'))}</td><td>{'<br>'.join(e(i) for i in p.get('interfaces') or [])}</td></tr>"
            for p in dynamic
        )
        out.append(
            "<h4>dynamic ports</h4><table><tr><th>port</th><th>state</th><th>reason</th><th>interfaces</th></tr>"
            f"{rows}</table>"
        )
    if entries:
        rows = "".join(
            f"<tr><td>{e(x.get('interface_uuid'))} v{e(x.get('interface_version'))}</td>"
            f"<td>{e(x.get('interface_name') or x.get('provider') or '')}</td><td>{e(x.get('annotation'))}</td>"
            f"<td><code>{e(x.get('string_binding'))}</code></td></tr>"
            for x in entries
        )
        out.append(
            f"<details><summary>all {len(entries)} endpoints</summary><table><tr><th>interface</th><th>name</th>"
            f"<th>annotation</th><th>binding</th></tr>{rows}</table></details>"
        )
    return "\n".join(out)


def _details(target: TargetView) -> Iterator[str]:
    shown = False
    for row in target.ports:
        details = mask(row.result.to_json().get("details") or {})
        for binding, d in details.items():
            shown = True
            yield (
                f'<h3 class="detail" data-binding="{e(binding)}">{e(row.result.protocol)}/{row.result.port} on '
                f"{e(row.result.address)}: {e(binding)}</h3>\n"
            )
            if binding in ("ldap", "ldaps") and isinstance(d, Mapping):
                yield _ldap(d)
            elif binding == "rpc" and isinstance(d, Mapping):
                yield _rpc(d)
            else:
                yield tree(d)
    if not shown:
        yield '<p class="muted">No protocol-aware probe has reported details.</p>'


def target(view: StatusView, t: TargetView) -> str:
    """``/targets/NAME`` as one string (:func:`target_chunks` joined)."""
    return "".join(target_chunks(view, t))


def target_chunks(view: StatusView, t: TargetView) -> Iterator[str]:
    """``/targets/NAME``: one target's ports, their recent rounds and the protocol details, in pieces."""
    now = view.generated
    yield _head(f"portqry-exporter: {t.name}")
    yield f'<h1 class="target-name">{e(t.name)}</h1><p>{_target_head(t)}</p>\n'
    if t.dc is not None:
        dc = t.dc
        yield (
            f"<p>DC of <code>{e(t.domain)}</code>: address {e(dc.address)}, roles "
            f"<code>{e(', '.join(sorted(dc.roles)))}</code>, puts us in site <code>{e(dc.client_site)}</code>"
            + (f' &middot; <span class="err">LDAP ping: {e(dc.error)}</span>' if dc.error else "")
            + "</p>\n"
        )
    yield (
        f'<p><a href="/api/v1/targets/{e(quote(t.name, safe=""))}">as JSON</a> &middot; {_counts(t)}</p><h2>Ports</h2>'
    )
    if t.ports:
        yield f'<table class="ports">{_PORT_HEAD}\n'
        yield from _port_rows(t, now)
        yield "</table>\n"
    else:
        yield '<p class="muted">No probe round has finished yet.</p>\n'
    yield "<h2>Recent rounds</h2>\n"
    yield from _history(t)
    yield "<h2>Protocol details</h2>\n"
    yield from _details(t)
    yield _TAIL


def config(data: Mapping[str, Any]) -> str:
    """``/config``: the running config (already masked) as JSON."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    body = (
        "<h1>Running config</h1><p>Secrets (SNMP communities, passwords, hashes) are shown as <code>***</code>. "
        '<a href="/api/v1/config">as JSON</a></p>'
        f'<pre class="config">{e(text)}</pre>'
    )
    return _page("portqry-exporter: config", body)


def not_found(name: str) -> str:
    """The 404 page for an unknown target."""
    return _page(
        "portqry-exporter: unknown target",
        f"<h1>Unknown target</h1><p>No target or discovered DC is named <code>{e(name)}</code>. "
        '<a href="/">All targets</a></p>',
    )

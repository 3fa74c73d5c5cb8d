"""What the status pages show, collected from the store and the config (:mod:`exporter.status_page` serves it).

:func:`build_view` walks every port of the store's snapshot (never at scrape time) and adds the targets that
have no result yet (configured ones, and DCs of the domains' last good lists).  :func:`mask` hides secrets:
every key that looks secret (SNMP communities, passwords, tokens, hashes, basic-auth users) and every bcrypt
hash, in the config and in protocol details (an SNMP reply echoes its community).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from multidict import MultiMapping

from exporter.collector import ExporterStatus
from exporter.config import Settings
from exporter.history import PortHistory, Round
from exporter.model import DiscoveredDC, DomainState
from exporter.result import ProbeResult
from exporter.shard import keeps
from exporter.states import PortState
from exporter.store import ResultStore

MASK = "***"
_SECRET_WORDS = frozenset(
    {
        "community",
        "communities",
        "password",
        "passwords",
        "passwd",
        "secret",
        "secrets",
        "token",
        "tokens",
        "credential",
        "credentials",
        "hash",
        "hashes",
        "apikey",
        "privkey",
        "authorization",
    }
)
_SECRET_EXACT = frozenset({"key"})  # the web config's inline TLS private key (``key_file`` is a path)
_SECRET_KEYS = ("basic_auth", "private_key", "api_key", "auth_users")
_BCRYPT = re.compile(r"^\$2[abxy]?\$\d\d\$")


class StatusSource(Protocol):
    """What the status page reads from the daemon."""

    store: ResultStore
    status: ExporterStatus

    @property
    def settings(self) -> Settings:
        """The running config."""


def secret_key(key: str) -> bool:
    """Whether a config or detail key names a secret (``snmp_community``, ``password``, ``basic_auth_users``...)."""
    folded = key.lower().replace("-", "_").replace(".", "_")
    if folded in _SECRET_EXACT or any(k in folded for k in _SECRET_KEYS):
        return True
    return any(word in _SECRET_WORDS for word in folded.split("_"))


def mask(value: Any, *, secret: bool = False) -> Any:
    """A copy of a JSON-able ``value`` with every secret replaced by ``***``.

    Under a secret-looking key every leaf is masked (a table of users and hashes keeps its user names); an empty
    string or ``None`` stays as it is (nothing to hide, and "no community" is worth seeing).
    """
    if isinstance(value, Mapping):
        return {str(k): mask(v, secret=secret or secret_key(str(k))) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v, secret=secret) for v in value]
    if value is None or value == "":
        return value
    if secret or (isinstance(value, str) and _BCRYPT.match(value)):
        return MASK
    return value


def masked_config(settings: Settings, web: Any = None) -> dict[str, Any]:
    """The running config as JSON-able data, secrets masked.

    Args:
        settings: the TOML config.
        web: the daemon's :class:`~exporter.webconfig.WebState`, if any: with a ``--web.config.file`` its
            contents are added under ``web_config`` (``path`` and the file), basic-auth hashes and an inline TLS key
            masked.
    """
    data: dict[str, Any] = mask(settings.model_dump(mode="json"))
    config: Any = getattr(web, "config", None)
    path: str = config.path if config is not None else ""
    if path:
        data["web_config"] = {"path": path, **mask(config.file.model_dump(mode="json"))}
    return data


@dataclass(frozen=True, slots=True)
class PortRow:
    """One port of one target as the status page shows it."""

    result: ProbeResult
    since: float
    history: PortHistory | None = None
    """The port's ring (one target's page only), decoded row by row as the page is written."""

    @property
    def rounds(self) -> list[Round]:
        """The recent rounds, oldest first (``[]`` without a history)."""
        return self.history.rounds() if self.history is not None else []

    @property
    def round_count(self) -> int:
        """How many recent rounds :attr:`rounds` has, without decoding them."""
        return self.history.count if self.history is not None else 0

    def to_json(self, *, details: bool = False) -> dict[str, Any]:
        """The port as JSON (``details``: with protocol details and recent rounds)."""
        r = self.result
        out: dict[str, Any] = {
            "address": r.address,
            "protocol": r.protocol,
            "port": r.port,
            "service": r.service,
            "state": str(r.state),
            "reason": str(r.reason),
            "tries": r.tries,
            "duration_seconds": round(r.duration_seconds, 6),
            "timestamp": r.timestamp,
            "state_since": self.since,
            "error": r.error,
        }
        if r.initial_state is not None:
            out["initial_state"] = str(r.initial_state)
        if details:
            out["details"] = mask(r.to_json().get("details", {}))
            out["rounds"] = [
                {
                    "timestamp": x.timestamp,
                    "state": str(x.state),
                    "reason": str(x.reason),
                    "duration_seconds": round(x.duration_seconds, 6),
                    "tries": x.tries,
                }
                for x in self.rounds
            ]
        return out


@dataclass(slots=True)
class TargetView:
    """One target (configured or a discovered DC) and its ports."""

    name: str
    host: str = ""
    kind: str = "target"  # "target" | "dc"
    domain: str = ""
    site: str = ""
    resolved: bool = True
    ports: list[PortRow] = field(default_factory=list)
    total_ports: int = 0
    dc: DiscoveredDC | None = None

    def counts(self) -> dict[str, int]:
        """Ports per state (of the ports shown)."""
        out = dict.fromkeys((str(s) for s in PortState), 0)
        for row in self.ports:
            out[str(row.result.state)] += 1
        return out

    def to_json(self, *, details: bool = False, ports: bool = True) -> dict[str, Any]:
        """The target as JSON (``ports=False``: without its ports)."""
        out: dict[str, Any] = {
            "name": self.name,
            "host": self.host,
            "kind": self.kind,
            "domain": self.domain,
            "site": self.site,
            "resolved": self.resolved,
            "total_ports": self.total_ports,
            "counts": self.counts(),
        }
        if self.dc is not None:
            out["dc"] = dc_json(self.dc)
        if ports:
            out["ports"] = [p.to_json(details=details) for p in self.ports]
        return out

    def json_chunks(self, *, details: bool = False) -> Iterator[str]:
        """:meth:`to_json` serialised in pieces, one per port (a page of 10,000 ports is never one string)."""
        yield _dumps(self.to_json(details=details, ports=False))[:-1] + ', "ports": ['
        for i, port in enumerate(self.ports):
            yield ("," if i else "") + _dumps(port.to_json(details=details))
        yield "]}"


@dataclass(frozen=True, slots=True)
class Filter:
    """Which ports ``/`` shows: ``hide`` states, or only ``only`` states (empty: all)."""

    hide: frozenset[PortState] = frozenset()
    only: frozenset[PortState] = frozenset()

    @classmethod
    def from_query(cls, query: MultiMapping[str]) -> Filter:
        """From ``?hide=listening`` and ``?state=filtered`` (repeatable or comma-separated).

        Raises:
            ValueError: an unknown state word.
        """

        def states(name: str) -> frozenset[PortState]:
            words = [w.strip() for v in query.getall(name, []) for w in v.split(",") if w.strip()]
            out = set()
            for word in words:
                try:
                    out.add(PortState(word.replace("-", "_").lower()))
                except ValueError:
                    valid = ", ".join(s.value for s in PortState)
                    raise ValueError(f"{name}={word!r}: not a state (one of {valid})") from None
            return frozenset(out)

        return cls(hide=states("hide"), only=states("state"))

    @property
    def active(self) -> bool:
        """Whether the filter hides anything."""
        return bool(self.hide or self.only)

    def keeps(self, state: PortState) -> bool:
        """Whether a port in ``state`` is shown."""
        return state not in self.hide and (not self.only or state in self.only)

    def query(self) -> str:
        """The query string that gives this filter (``""`` when none)."""
        parts = [f"hide={s.value}" for s in sorted(self.hide)] + [f"state={s.value}" for s in sorted(self.only)]
        return "?" + "&".join(parts) if parts else ""


NOT_LISTENING = Filter(hide=frozenset({PortState.LISTENING}))


def dc_json(dc: DiscoveredDC) -> dict[str, Any]:
    """A discovered DC as JSON."""
    return {
        "host": dc.host,
        "address": dc.address,
        "site": dc.site,
        "client_site": dc.client_site,
        "roles": sorted(dc.roles),
        "priority": dc.priority,
        "weight": dc.weight,
        "error": dc.error,
    }


def domain_json(state: DomainState) -> dict[str, Any]:
    """A domain's discovery state as JSON."""
    return {
        "domain": state.domain,
        "ok": state.ok,
        "last_success": state.last_success,
        "error": state.error,
        "min_reachable_dcs": state.min_reachable_dcs,
        "dcs": [dc_json(dc) for dc in state.dcs],
    }


@dataclass(slots=True)
class StatusView:
    """Everything ``/`` (or one target's page) shows."""

    generated: float
    ready: bool
    targets: list[TargetView]
    domains: list[DomainState]
    filter: Filter = Filter()
    hidden_targets: int = 0
    probes_total: dict[str, int] = field(default_factory=dict)

    def to_json(self, *, details: bool = False, targets: bool = True) -> dict[str, Any]:
        """The view as JSON (``/api/v1/status``; ``targets=False``: without its targets)."""
        out = {
            "generated": self.generated,
            "ready": self.ready,
            "filter": {
                "hide": sorted(s.value for s in self.filter.hide),
                "state": sorted(s.value for s in self.filter.only),
            },
            "hidden_targets": self.hidden_targets,
            "probes_total": self.probes_total,
            "domains": [domain_json(d) for d in self.domains],
        }
        if targets:
            out["targets"] = [t.to_json(details=details) for t in self.targets]
        return out

    def json_chunks(self) -> Iterator[str]:
        """:meth:`to_json` serialised in pieces (the targets first, each port a piece)."""
        yield '{"targets": ['
        for i, t in enumerate(self.targets):
            if i:
                yield ","
            yield from t.json_chunks()
        yield "], " + _dumps(self.to_json(targets=False))[1:]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def build_view(
    source: StatusSource, *, flt: Filter = Filter(), target: str | None = None, ready: bool | None = None
) -> StatusView | None:
    """Collect the view from the store (and the config, for targets without results yet).

    Args:
        source: the daemon.
        flt: which ports to keep.
        target: one target only, with its recent rounds; ``None`` for all.
        ready: the daemon's readiness, read on the event loop by the caller (the scheduler's state is the loop's
            alone); ``None``: read it here.

    Returns:
        The view, or ``None`` when ``target`` is given and unknown.
    """
    snap = source.store.snapshot()
    histories = source.store.history(target, rounds=target is not None)
    settings = source.settings
    shard = source.status.shard
    dcs: dict[str, tuple[str, DiscoveredDC]] = {}
    for name, state in sorted(snap.domains.items()):
        for dc in state.dcs:
            dcs.setdefault(dc.host, (name, dc))
    configured = {t.name: t for t in settings.targets}
    views: dict[str, TargetView] = {}

    def view(name: str) -> TargetView:
        if name not in views:
            v = TargetView(name)
            if name in configured:
                v.host, v.domain = configured[name].host, configured[name].domain or ""
            elif name in dcs:
                v.kind, v.host, v.domain = "dc", name, dcs[name][0]
                v.dc, v.site = dcs[name][1], dcs[name][1].site
            domain, site = snap.labels.get(name, (v.domain, v.site))
            v.domain, v.site = domain or v.domain, site or v.site
            v.resolved = snap.resolve_ok.get(name, True)
            views[name] = v
        return views[name]

    for result in snap.results:
        if target is not None and result.target != target:
            continue
        v = view(result.target)
        v.host = v.host or result.host
        v.total_ports += 1
        if not flt.keeps(result.state):
            continue
        ring = histories.get(result.key) or PortHistory(0)
        since = ring.since or result.timestamp
        v.ports.append(PortRow(result, since, ring if target is not None else None))
    for name in [*configured, *dcs]:
        if (target is None or name == target) and keeps(shard, name):
            view(name)
    if target is not None and target not in views:
        return None
    hidden = 0
    shown = []
    for name in sorted(views):
        v = views[name]
        if flt.active and target is None and not v.ports and v.total_ports:
            hidden += 1
            continue
        shown.append(v)
    return StatusView(
        generated=time.time(),
        ready=bool(source.status.ready()) if ready is None else ready,
        targets=shown,
        domains=[snap.domains[d] for d in sorted(snap.domains)],
        filter=flt,
        hidden_targets=hidden,
        probes_total={str(k): v for k, v in snap.probes_total.items()},
    )

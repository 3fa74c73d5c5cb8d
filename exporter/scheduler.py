"""The schedule: one asyncio task per target, probing at its interval with jitter, and one per domain.

A reload hands the scheduler new :class:`~exporter.plan.TargetPlan` and :class:`~exporter.plan.DomainPlan`
objects: unchanged targets keep running untouched, changed ones restart, removed ones stop and their
results leave the store at once.  Each domain's task rediscovers its DCs every ``rediscover_seconds``
(:func:`exporter.discovery.discover`); the DCs found are targets like the configured ones (a configured
target of the same name wins), a DC that leaves DNS leaves ``/metrics``, and a failed discovery keeps the
last good DC list.  A replica started with ``--shard I/N`` schedules only the names that
:func:`exporter.shard.keeps` (configured targets and DCs alike); ``/sd`` still lists them all.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from exporter.discovery import Discovery, discover
from exporter.engine import Engine
from exporter.exposition import Histogram
from exporter.logs import debug_enabled, get_logger
from exporter.model import DiscoveredDC, DomainState, PortSpec
from exporter.plan import DomainPlan, TargetPlan
from exporter.result import ProbeResult
from exporter.shard import UNSHARDED, Shard, keeps
from exporter.states import Reason
from exporter.store import ResultStore

log = get_logger(component="scheduler")

#: Bounds of ``portqry_exporter_schedule_lag_seconds``, seconds.
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)


class Scheduler:
    """Runs every target's probe rounds forever (until :meth:`stop`).

    Args:
        engine: the probe engine (concurrency limit, pacing, resolver).
        store: where results go.
        first_round_spread_seconds: the first rounds start spread over this many seconds (jitter at start,
            so that many targets do not fire at once), capped by each target's interval.
        shard: probe only the targets (configured and discovered) whose name this shard keeps
            (:func:`exporter.shard.keeps`); :attr:`static_plans` and :meth:`domain_controllers` stay whole.
    """

    def __init__(
        self,
        engine: Engine,
        store: ResultStore,
        *,
        first_round_spread_seconds: float = 1.0,
        shard: Shard = UNSHARDED,
    ) -> None:
        self.engine = engine
        self.store = store
        self.first_round_spread_seconds = first_round_spread_seconds
        self._rng = random.Random()  # its own: the process-wide generator is the application's (and tests')
        self.shard = shard
        self._plans: dict[str, TargetPlan] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._rounds: dict[str, int] = {}
        self._static: dict[str, TargetPlan] = {}
        self._domains: dict[str, DomainPlan] = {}
        self._domain_tasks: dict[str, asyncio.Task[None]] = {}
        self._dcs: dict[str, tuple[DiscoveredDC, ...]] = {}  # domain -> its last good DC list
        self._discovered: set[str] = set()  # domains whose first discovery has ended (well or not)
        self.lag = Histogram(LAG_BUCKETS)
        """How late each round started against its plan, seconds (``portqry_exporter_schedule_lag_seconds``)."""

    @property
    def ready(self) -> bool:
        """True once every current target has finished a round and every domain its first discovery."""
        return all(self._rounds.get(name, 0) > 0 for name in self._plans) and set(self._domains) <= self._discovered

    @property
    def plans(self) -> dict[str, TargetPlan]:
        """The targets running now (configured and discovered), by name."""
        return dict(self._plans)

    @property
    def static_plans(self) -> dict[str, TargetPlan]:
        """The configured ``[[targets]]``, by name."""
        return dict(self._static)

    def domain_controllers(self, domain: str) -> tuple[DiscoveredDC, ...]:
        """The last good DC list of ``domain`` (empty before its first successful discovery)."""
        return self._dcs.get(domain, ())

    def rounds(self, name: str) -> int:
        """Rounds finished by target ``name`` since it was (re)started."""
        return self._rounds.get(name, 0)

    def apply(self, plans: Sequence[TargetPlan], domains: Sequence[DomainPlan] = ()) -> None:
        """Switch to a new set of targets and domains (start, restart, stop); drop results that no longer belong.

        A domain whose entry changed is rediscovered at once; until then its DCs run on the new entry.
        """
        self._static = {p.name: p for p in plans}
        new = {d.name: d for d in domains}
        for name in list(self._domain_tasks):
            if name not in new or new[name] != self._domains[name]:
                self._domain_tasks.pop(name).cancel()
                self._discovered.discard(name)
                if name not in new:
                    self._dcs.pop(name, None)
        self._domains = new
        for name, domain in new.items():
            if name not in self._domain_tasks:
                self._domain_tasks[name] = asyncio.create_task(self._watch(domain), name=f"domain:{name}")
        self._sync()

    def _desired(self) -> dict[str, TargetPlan]:
        desired = dict(self._static)
        for name, domain in self._domains.items():
            for dc in self._dcs.get(name, ()):
                if dc.host in desired:
                    continue  # a configured target (or a DC of an earlier domain) of that name wins
                desired[dc.host] = domain.dc_plan(dc.host, dc.site)
        # sharded after the merge, so that a configured target shadows a DC of its name in every shard
        return {name: p for name, p in desired.items() if keeps(self.shard, name)}

    def _sync(self) -> None:
        new = self._desired()
        restarted = [name for name in self._plans if name in new and new[name] != self._plans[name]]
        for name in list(self._plans):
            if name not in new or new[name] != self._plans[name]:
                self._cancel(name)
        if restarted:  # a changed host or port set must not keep showing the old address or state
            self.store.forget(restarted)
        for name, plan in new.items():
            if name not in self._tasks:
                self._plans[name] = plan
                self._rounds[name] = 0
                self._tasks[name] = asyncio.create_task(self._run(plan), name=f"target:{name}")
        self._plans = new
        keys = frozenset().union(*(p.keys for p in new.values())) if new else frozenset()
        dropped = self.store.retain(keys, new, self._domains)
        if dropped:
            log.info("results dropped", series_keys=dropped)

    async def _watch(self, domain: DomainPlan) -> None:
        while True:
            try:
                found = await discover(domain, self.engine)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: log it, count it, keep the last good list
                self.store.count_probe_error()
                log.error("discovery raised; keeping the last good DC list", domain=domain.name, exc_info=exc)
                found = Discovery(domain.name, False, (), f"internal error: {type(exc).__name__}", 0.0, 0.0)
            if self._domain_tasks.get(domain.name) is not asyncio.current_task():
                return  # replaced by a reload
            self._discovered_round(domain, found)
            await asyncio.sleep(domain.rediscover_seconds)

    def _discovered_round(self, domain: DomainPlan, found: Discovery) -> None:
        before = {dc.host for dc in self._dcs.get(domain.name, ())}
        previous = self.store.snapshot().domains.get(domain.name)
        if found.ok:
            self._dcs[domain.name] = found.dcs
            now = {dc.host for dc in found.dcs}
            log.info(
                "domain discovered",
                domain=domain.name,
                dcs=len(found.dcs),
                added=sorted(now - before),
                removed=sorted(before - now),
                duration_seconds=round(found.duration_seconds, 3),
            )
            for dc in found.dcs:
                if dc.error:
                    log.warning("LDAP ping failed", domain=domain.name, dc=dc.host, address=dc.address, error=dc.error)
        else:
            log.warning("discovery failed; keeping the last good DC list", domain=domain.name, error=found.error)
        self.store.record_domain(
            DomainState(
                domain=domain.name,
                ok=found.ok,
                last_success=found.timestamp if found.ok else (previous.last_success if previous else 0.0),
                dcs=self._dcs.get(domain.name, ()),
                min_reachable_dcs=domain.min_reachable_dcs,
                error=found.error,
            )
        )
        self._discovered.add(domain.name)
        self._sync()

    def probe_failed(self, spec: PortSpec, exc: Exception) -> None:
        """The engine's ``on_probe_error``: a bug in one port's probe is logged with its traceback and counted.

        The port publishes nothing this round, so it keeps its previous result.
        """
        self.store.count_probe_error()
        log.error(
            "probe raised; the port keeps its previous result",
            protocol=spec.protocol,
            port=spec.port,
            binding=spec.binding,
            exc_info=exc,
        )

    def _cancel(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        self._plans.pop(name, None)
        self._rounds.pop(name, None)

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel every target and domain task and wait for them (bounded by ``timeout`` seconds)."""
        tasks = [*self._tasks.values(), *self._domain_tasks.values()]
        for task in tasks:
            task.cancel()
        self._tasks.clear()
        self._domain_tasks.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def _run(self, plan: TargetPlan) -> None:
        loop = asyncio.get_running_loop()
        first = self._rng.uniform(0, min(self.first_round_spread_seconds, plan.interval_seconds))
        planned = loop.time() + first
        await asyncio.sleep(first)
        while True:
            started = loop.time()
            self.lag.observe(max(0.0, started - planned))
            try:
                results = await self.engine.probe_target(
                    plan.name, plan.host, plan.specs, plan.options, addresses=plan.addresses
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("probe round failed; retrying next interval", target=plan.name)
                await asyncio.sleep(plan.interval_seconds)
                continue
            if self._tasks.get(plan.name) is not asyncio.current_task():
                return  # replaced by a reload while probing: these results are not ours to publish
            self._publish(plan, results)
            self._rounds[plan.name] = self._rounds.get(plan.name, 0) + 1
            jitter = plan.interval_seconds * plan.jitter_ratio
            planned = started + plan.interval_seconds + self._rng.uniform(-jitter, jitter)
            await asyncio.sleep(max(0.0, planned - loop.time()))

    def _publish(self, plan: TargetPlan, results: list[ProbeResult]) -> None:
        debug = debug_enabled()
        local = [r for r in results if r.reason is Reason.LOCAL_ERROR]
        if local:
            log.warning(
                "probes failed on this host; those ports keep their last result",
                target=plan.name,
                ports=len(local),
                errno=sorted({r.error_detail for r in local}),
                error=local[0].error,
            )
        for previous, result in self.store.record(plan.name, results, domain=plan.domain, site=plan.site):
            changed = previous is None or previous.state is not result.state
            if not (changed or debug):
                continue
            fields = {
                "target": result.target,
                "address": result.address,
                "protocol": result.protocol,
                "port": result.port,
                "service": result.service,
                "state": result.state.value,
                "reason": result.reason.value,
                "duration_seconds": round(result.duration_seconds, 4),
                "tries": result.tries,
            }
            if result.error:
                fields["error"] = result.error
            detail = {"error_detail": result.error_detail} if result.error_detail else {}
            if changed:
                log.info(
                    "port state changed",
                    previous=previous.state.value if previous else None,
                    **fields,
                )
                if detail:
                    log.debug("probe error detail", **fields, **detail)
            else:
                log.debug("probe", **fields, **detail)

"""The schedule: one asyncio task per target, probing at its interval with jitter.

A reload hands the scheduler new :class:`~exporter.config.TargetPlan` objects: unchanged targets keep
running untouched, changed ones restart, removed ones stop and their results leave the store at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from exporter.config import TargetPlan
from exporter.engine import Engine
from exporter.logs import get_logger
from exporter.model import PortSpec
from exporter.result import ProbeResult
from exporter.store import ResultStore

log = get_logger(component="scheduler")


class Scheduler:
    """Runs every target's probe rounds forever (until :meth:`stop`).

    Args:
        engine: the probe engine (concurrency limit, pacing, resolver).
        store: where results go.
        first_round_spread_seconds: the first rounds start spread over this many seconds (jitter at start,
            so that many targets do not fire at once), capped by each target's interval.
    """

    def __init__(self, engine: Engine, store: ResultStore, *, first_round_spread_seconds: float = 1.0) -> None:
        self.engine = engine
        self.store = store
        self.first_round_spread_seconds = first_round_spread_seconds
        self._plans: dict[str, TargetPlan] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._rounds: dict[str, int] = {}

    @property
    def ready(self) -> bool:
        """True once every current target has finished at least one round."""
        return all(self._rounds.get(name, 0) > 0 for name in self._plans)

    def rounds(self, name: str) -> int:
        """Rounds finished by target ``name`` since it was (re)started."""
        return self._rounds.get(name, 0)

    def apply(self, plans: Sequence[TargetPlan]) -> None:
        """Switch to a new set of targets (start, restart, stop) and drop results that no longer belong."""
        new = {p.name: p for p in plans}
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
        keys = frozenset().union(*(p.keys for p in plans)) if plans else frozenset()
        dropped = self.store.retain(keys, new)
        if dropped:
            log.info("results dropped after reload", series_keys=dropped)

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
        """Cancel every target task and wait for them (bounded by ``timeout`` seconds)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        self._tasks.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def _run(self, plan: TargetPlan) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(random.uniform(0, min(self.first_round_spread_seconds, plan.interval_seconds)))
        while True:
            started = loop.time()
            try:
                results = await self.engine.probe_target(plan.name, plan.host, plan.specs, plan.options)
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
            delay = plan.interval_seconds + random.uniform(-jitter, jitter) - (loop.time() - started)
            await asyncio.sleep(max(0.0, delay))

    def _publish(self, plan: TargetPlan, results: list[ProbeResult]) -> None:
        for previous, result in self.store.record(plan.name, results):
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
            if previous is None or previous.state is not result.state:
                log.info(
                    "port state changed",
                    previous=previous.state.value if previous else None,
                    **fields,
                )
            else:
                log.debug("probe", **fields)

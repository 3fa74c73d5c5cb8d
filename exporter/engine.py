"""The probe engine: resolves a target once per round and probes its ports concurrently.

One global concurrency limit (probes in flight) and per-address pacing of UDP datagrams (targets
rate-limit their ICMP errors: Linux sends about one "port unreachable" per second per peer after a
burst of 6; a fast UDP sweep reads silence as LISTENING or FILTERED).  The engine knows nothing about
Prometheus; the daemon and the ``portqry`` CLI both drive it.

Protocol-aware follow-ups (LDAP, RPC endpoint mapper, DNS, ...) are the :data:`exporter.probes.PROBES` bound
to each :class:`~exporter.model.PortSpec`; the engine hands each a :class:`~exporter.probes.context.ProbeContext`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import time
from collections.abc import Callable, Sequence
from typing import Literal

from exporter.errors import PortqryError, ResolveError, plain_error
from exporter.model import PortSpec, ProbeOptions
from exporter.probes import PROBES
from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.probes.sockets import Evidence, tcp_connect, udp_exchange
from exporter.resolve import Resolved, Resolver
from exporter.result import NO_DETAILS, ProbeResult
from exporter.states import Finding, PortState, Reason

#: Follow-up connections (endpoint-mapper dynamic ports) in flight at most, across all targets.
FOLLOW_UP_CONCURRENCY = 64
#: How long an address that sent an ICMP port unreachable is known to send them (UDP re-checks), seconds.
ICMP_MEMORY_SECONDS = 600.0
#: Errors of ours that a protocol probe can meet on a hostile or odd reply: they become ``protocol-error``.
#: Anything else (``TypeError``, ``LookupError`` ...) is a bug and propagates (see ``on_probe_error``).
PROBE_ERRORS = (PortqryError, struct.error, UnicodeError)

#: Called with the spec and the exception when probing one port raised a bug; the port then has no result.
ProbeErrorHandler = Callable[[PortSpec, Exception], None]


class Engine:
    """Runs probes with one concurrency limit and per-address UDP pacing.

    Args:
        concurrency: probes in flight at most (default 256).
        udp_pacing_seconds: minimum gap between two UDP datagrams to the same address, seconds.
        resolver: the :class:`~exporter.resolve.Resolver` (default: the system resolver).
        udp_recheck_max: silent UDP ports re-checked per round when the same host sent an ICMP port
            unreachable in that round (its silence may be ICMP rate limiting, not a firewall); 0 = never.
        udp_recheck_gap_seconds: wait before each re-check, seconds (Linux refills one ICMP error per second).
        on_probe_error: the daemon's guard for bugs: called when probing one port raised something other than
            a network result; that port then has no result this round (it keeps its previous one).  ``None``
            (the CLI, tests): the exception propagates.
    """

    def __init__(
        self,
        *,
        concurrency: int = 256,
        udp_pacing_seconds: float = 0.25,
        resolver: Resolver | None = None,
        udp_recheck_max: int = 8,
        udp_recheck_gap_seconds: float = 1.0,
        on_probe_error: ProbeErrorHandler | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.udp_recheck_max = udp_recheck_max
        self.udp_recheck_gap_seconds = udp_recheck_gap_seconds
        self.udp_pacing_seconds = udp_pacing_seconds
        self.resolver = resolver or Resolver()
        self.on_probe_error = on_probe_error
        self._slots = asyncio.Semaphore(concurrency)
        self.follow_up_slots = asyncio.Semaphore(FOLLOW_UP_CONCURRENCY)
        self._udp_next: dict[str, float] = {}
        self._icmp_seen: dict[str, float] = {}  # address -> loop time of its latest ICMP port unreachable
        self.in_flight = 0
        self.max_in_flight = 0

    async def pace_udp(self, address: str) -> None:
        """Wait for this address's next UDP slot (slots are ``udp_pacing_seconds`` apart, FIFO)."""
        if self.udp_pacing_seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._udp_next.get(address, now))
        self._udp_next[address] = slot + self.udp_pacing_seconds
        if len(self._udp_next) > 65536:  # bound the table: forget slots already past
            self._udp_next = {a: t for a, t in self._udp_next.items() if t > now}
        if slot > now:
            await asyncio.sleep(slot - now)

    async def resolve(self, host: str) -> Resolved:
        """Resolve ``host`` through the engine's resolver.

        Raises:
            ResolveError: the name does not resolve.
        """
        return await self.resolver.resolve(host)

    async def probe_target(
        self,
        target: str,
        host: str,
        specs: Sequence[PortSpec],
        options: ProbeOptions,
        *,
        resolved: Resolved | None = None,
        addresses: Literal["all", "first"] = "first",
    ) -> list[ProbeResult]:
        """Resolve ``host`` once and probe every port concurrently, on its first address or on all of them.

        Args:
            target: the ``target`` label.
            host: the name or literal to resolve.
            specs: the ports.
            options: how to probe.
            resolved: an address already resolved (skips the lookup).
            addresses: ``"all"``: every A/AAAA record of the name, in the resolver's ``prefer`` order
                (blackbox_exporter probes one); ``"first"``: the first, as PortQry does.

        Returns:
            One result per spec and address, address by address, each in the order of ``specs``.  An
            unresolvable host gives every port a FILTERED / ``resolve-failed`` result with ``address=""``.
            A port whose probe raised a bug is left out when ``on_probe_error`` is set.

        Raises:
            Exception: a bug in a probe, when ``on_probe_error`` is ``None``.
        """
        loop = asyncio.get_running_loop()
        if resolved is not None:
            found = [resolved]
        else:
            started = loop.time()
            try:
                found = await self.resolver.resolve_all(host, first=addresses == "first")
            except ResolveError as exc:
                took = loop.time() - started
                return [resolve_failed(target, host, spec, took, str(exc)) for spec in specs]
            if addresses == "first":
                found = found[:1]
        jobs = [(where, spec) for where in found for spec in specs]
        results: list[ProbeResult | None] = [None] * len(jobs)
        await self._run_jobs(target, host, jobs, options, results)
        done = [r for r in results if r is not None]
        for where in found:
            await self._recheck_silent_udp(where, options, done)
        return done

    async def _run_jobs(
        self,
        target: str,
        host: str,
        jobs: Sequence[tuple[Resolved, PortSpec]],
        options: ProbeOptions,
        results: list[ProbeResult | None],
    ) -> None:
        """Probe ``jobs`` into ``results`` (same index) with workers that each run one probe at a time.

        A target starts with one worker; a worker that takes a slot while another is free starts one more.
        So a target never has more workers than probes it can run now (plus one waiting), and 1,000 targets
        waiting for 512 slots hold 1,000 small waiters, not a worker per port each (memory), nor one task
        per port (CPU).  A bug in a probe goes to ``on_probe_error``, or cancels the rest and propagates.
        """
        queue = iter(enumerate(jobs))
        left = len(jobs)
        workers: list[asyncio.Task[None]] = []

        async def worker() -> None:
            nonlocal left
            for index, (where, spec) in queue:
                left -= 1
                if _paced(spec, options):
                    await self.pace_udp(where.address)
                async with self._slots:
                    if left > 0 and not self._slots.locked():
                        workers.append(asyncio.create_task(worker()))
                    try:
                        results[index] = await self._probe_held(target, host, where, spec, options)
                    except Exception as exc:
                        if self.on_probe_error is None:
                            raise
                        self.on_probe_error(spec, exc)

        if not jobs:
            return
        workers.append(asyncio.create_task(worker()))
        try:
            while workers:
                await workers.pop()
        finally:
            for task in workers:
                task.cancel()
            if workers:
                await asyncio.gather(*workers, return_exceptions=True)

    async def _recheck_silent_udp(self, resolved: Resolved, options: ProbeOptions, results: list[ProbeResult]) -> None:
        """Ask silent UDP ports once more, slowly, when the host proved it sends ICMP port unreachables.

        Targets rate-limit ICMP errors (Linux: a burst of 6, then one per second per peer), so in a round
        with many closed UDP ports some are read as silence.  If the address sent us an ICMP port unreachable
        in this round or within :data:`ICMP_MEMORY_SECONDS` before (its bucket may be empty now), up to
        ``udp_recheck_max`` ports that stayed silent (``no-reply``,
        ``protocol-no-reply``) get one more unformatted datagram, each after ``udp_recheck_gap_seconds``;
        an ICMP error or a reply replaces the result, silence keeps it (``tries`` counts every datagram).
        Only the results of ``resolved``'s address are looked at; ``results`` is updated in place.
        """
        if self.udp_recheck_max <= 0:
            return
        loop = asyncio.get_running_loop()
        udp = [i for i, r in enumerate(results) if r.protocol == "udp" and r.address == resolved.address]
        if any(results[i].reason is Reason.ICMP_PORT_UNREACHABLE for i in udp):
            self._icmp_seen[resolved.address] = loop.time()
            if len(self._icmp_seen) > 65536:  # bound the table: forget the oldest half
                keep = sorted(self._icmp_seen.items(), key=lambda kv: kv[1])[32768:]
                self._icmp_seen = dict(keep)
        seen = self._icmp_seen.get(resolved.address)
        if seen is None or loop.time() - seen > ICMP_MEMORY_SECONDS:
            return
        silent = [i for i in udp if results[i].reason in (Reason.NO_REPLY, Reason.PROTOCOL_NO_REPLY)]
        for i in silent[: self.udp_recheck_max]:
            await asyncio.sleep(self.udp_recheck_gap_seconds)
            await self.pace_udp(resolved.address)
            before = results[i]
            started = loop.time()
            async with self._slots:
                evidence = await udp_exchange(
                    resolved.address,
                    before.port,
                    b"",
                    family=resolved.family,
                    timeout=options.udp_timeout,
                    tries=1,
                )
            took = loop.time() - started
            if evidence.icmp is None and evidence.state is not PortState.LISTENING:
                results[i] = dataclasses.replace(
                    before,
                    tries=before.tries + evidence.tries,
                    duration_seconds=before.duration_seconds + took,
                )
                continue
            results[i] = dataclasses.replace(
                before,
                state=evidence.state,
                reason=evidence.reason,
                tries=before.tries + evidence.tries,
                duration_seconds=before.duration_seconds + took,
                timestamp=time.time(),
                error=evidence.error,
            )

    async def probe_port(
        self, target: str, host: str, resolved: Resolved, spec: PortSpec, options: ProbeOptions
    ) -> ProbeResult:
        """Probe one port: the TCP/UDP state probe, then its protocol-aware follow-up if bound.

        Returns:
            The :class:`~exporter.result.ProbeResult`; network failures are results, never exceptions.
        """
        if _paced(spec, options):
            await self.pace_udp(resolved.address)
        async with self._slots:
            return await self._probe_held(target, host, resolved, spec, options)

    async def _probe_held(
        self, target: str, host: str, resolved: Resolved, spec: PortSpec, options: ProbeOptions
    ) -> ProbeResult:
        """:meth:`probe_port` once its UDP pacing is done and it holds a concurrency slot."""
        loop = asyncio.get_running_loop()
        binding = spec.binding if options.protocol_probes and spec.binding in PROBES else ""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        started = loop.time()
        try:
            evidence = await self._state_probe(resolved, spec, options, bool(binding))
            outcome = ProtocolOutcome(evidence.state, evidence.reason, error=evidence.error)
            initial: PortState | None = None
            tries = evidence.tries
            if binding and _follow_up(spec.protocol, evidence.state):
                initial = evidence.state
                ctx = ProbeContext(
                    engine=self,
                    target=target,
                    host=host,
                    address=resolved.address,
                    family=resolved.family,
                    protocol=spec.protocol,
                    port=spec.port,
                    options=options,
                    evidence=evidence,
                    deadline=loop.time() + options.protocol_budget,
                    binding=binding,
                )
                found = await self._protocol(ctx)
                outcome = dataclasses.replace(found, error=found.error or evidence.error)
                if spec.protocol == "udp":  # the protocol query may be the first datagram: count them all
                    tries += ctx.datagrams_sent
                if ctx.local_error:  # this host failed, not the port: no state to publish
                    outcome = ProtocolOutcome(
                        PortState.FILTERED, Reason.LOCAL_ERROR, error=found.error, error_detail=ctx.local_error
                    )
            elif evidence.reason is Reason.LOCAL_ERROR:
                outcome = dataclasses.replace(outcome, error_detail=evidence.local)
        finally:
            self.in_flight -= 1
        return ProbeResult(
            target=target,
            host=host,
            address=resolved.address,
            protocol=spec.protocol,
            port=spec.port,
            service=spec.service_label,
            state=outcome.state,
            reason=outcome.reason,
            duration_seconds=loop.time() - started,
            tries=tries,
            timestamp=time.time(),
            details=outcome.details or NO_DETAILS,
            error=outcome.error,
            initial_state=initial,
            error_detail=outcome.error_detail,
        )

    async def _state_probe(
        self, resolved: Resolved, spec: PortSpec, options: ProbeOptions, has_protocol: bool
    ) -> Evidence:
        if spec.protocol == "tcp":
            return await tcp_connect(
                resolved.address,
                spec.port,
                family=resolved.family,
                timeout=options.timeout_seconds,
                tries=options.tcp_tries,
                source_port=options.source_port,
            )
        if has_protocol and not options.udp_unformatted_first:
            # The protocol query is the first datagram; PortQry's "LISTENING or FILTERED" is the start state.
            return Evidence(PortState.LISTENING_OR_FILTERED, Reason.NO_REPLY, 0)
        return await udp_exchange(
            resolved.address,
            spec.port,
            b"",
            family=resolved.family,
            timeout=options.udp_timeout,
            tries=options.udp_tries,
            source_port=options.source_port,
        )

    async def _protocol(self, ctx: ProbeContext) -> ProtocolOutcome:
        """Run the bound protocol probe by its deadline; our own decode errors become outcomes, bugs propagate."""
        probe = PROBES[ctx.binding]
        try:
            return await asyncio.wait_for(probe(ctx), ctx.remaining() + 0.5)
        except PROBE_ERRORS as exc:
            # a codec or library refused our own request or the reply: the port answered TCP/ICMP as before
            finding = Finding.GARBLED if ctx.evidence.state is PortState.LISTENING else Finding.UNREACHED
            return ctx.outcome(finding, error=f"{ctx.binding}: {plain_error(exc)}", cause=exc)
        except TimeoutError:
            error = f"{ctx.binding}: no reply within {ctx.options.protocol_budget:.1f} s"
            return ctx.outcome(Finding.SILENT if ctx.protocol == "udp" else Finding.UNREACHED, error=error)


def _paced(spec: PortSpec, options: ProbeOptions) -> bool:
    """Whether the state probe sends a datagram, and so takes a UDP pacing slot.

    A UDP port with a protocol probe sends the protocol query as its first datagram (unless
    ``udp_unformatted_first``); that query takes its own slot (:meth:`ProbeContext.udp_exchange`).
    """
    if spec.protocol != "udp":
        return False
    return not (options.protocol_probes and spec.binding in PROBES) or options.udp_unformatted_first


def _follow_up(protocol: str, state: PortState) -> bool:
    if protocol == "tcp":
        return state is PortState.LISTENING
    return state in (PortState.LISTENING, PortState.LISTENING_OR_FILTERED)


def resolve_failed(target: str, host: str, spec: PortSpec, took: float, error: str) -> ProbeResult:
    """The result of a port whose host did not resolve: FILTERED, ``resolve-failed``, ``address=""``."""
    return ProbeResult(
        target=target,
        host=host,
        address="",
        protocol=spec.protocol,
        port=spec.port,
        service=spec.service_label,
        state=PortState.FILTERED,
        reason=Reason.RESOLVE_FAILED,
        duration_seconds=took,
        tries=0,
        timestamp=time.time(),
        error=error,
    )

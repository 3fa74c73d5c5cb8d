"""The probe engine: resolves a target once per round and probes its ports concurrently.

One global concurrency limit (probes in flight) and per-address pacing of UDP datagrams (targets
rate-limit their ICMP errors: Linux sends about one "port unreachable" per second per peer after a
burst of 6; a fast UDP sweep reads silence as LISTENING or FILTERED).  The engine knows nothing about
Prometheus; the daemon and the ``portqry`` CLI both drive it.

Protocol-aware follow-ups (LDAP, RPC endpoint mapper, DNS, ...) are bound to ports by
:data:`DEFAULT_BINDINGS` or by the target's config, and live one module each in ``exporter.probes``,
imported only when first used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.errors import DecodeError, PortqryError, ResolveError
from exporter.probes.sockets import Evidence, tcp_connect, udp_exchange
from exporter.resolve import Resolved, Resolver
from exporter.result import ProbeResult, Protocol
from exporter.services import service_name
from exporter.states import PortState, Reason

#: Follow-up connections (endpoint-mapper dynamic ports) in flight at most, across all targets.
FOLLOW_UP_CONCURRENCY = 64
#: How long an address that sent an ICMP port unreachable is known to send them (UDP re-checks), seconds.
ICMP_MEMORY_SECONDS = 600.0
#: The most bytes a protocol probe reads from one TCP stream (hostile servers cannot make us buffer more).
MAX_STREAM_BYTES = 4 * 1024 * 1024

#: (protocol, port) -> protocol-aware probe name, for the well-known ports PortQry speaks to.
DEFAULT_BINDINGS: dict[tuple[str, int], str] = {
    ("tcp", 53): "dns",
    ("udp", 53): "dns",
    ("tcp", 88): "kerberos",
    ("udp", 88): "kerberos",
    ("tcp", 135): "rpc",
    ("udp", 135): "rpc",
    ("udp", 137): "netbios",
    ("udp", 161): "snmp",
    ("tcp", 389): "ldap",
    ("udp", 389): "ldap",
    ("tcp", 636): "ldaps",
    ("udp", 1434): "mssql",
    ("tcp", 3268): "ldap",
    ("tcp", 3269): "ldaps",
}
#: protocol-aware probe name -> module implementing ``async def probe(ctx) -> ProtocolOutcome``.
PROTOCOL_MODULES: dict[str, str] = {
    "dns": "exporter.probes.dns",
    "kerberos": "exporter.probes.kerberos",
    "ldap": "exporter.probes.ldap",
    "ldaps": "exporter.probes.ldap",
    "mssql": "exporter.probes.mssql",
    "netbios": "exporter.probes.netbios",
    "rpc": "exporter.probes.rpc",
    "snmp": "exporter.probes.snmp",
    "tls": "exporter.probes.tls",
}


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One port of a target to probe.

    Attributes:
        protocol: ``"tcp"`` or ``"udp"``.
        port: 1-65535.
        service: the ``service`` label; empty means "look it up" (:func:`exporter.services.service_name`).
        protocol_probe: the protocol-aware probe to run (a key of :data:`PROTOCOL_MODULES`); ``None`` means
            the default binding for the port, ``""`` means none.
    """

    protocol: Protocol
    port: int
    service: str = ""
    protocol_probe: str | None = None

    @property
    def service_label(self) -> str:
        """The service label, looked up when not configured."""
        return self.service or service_name(self.protocol, self.port)

    @property
    def probe_name(self) -> str:
        """The protocol-aware probe bound to this port, or ``""``."""
        if self.protocol_probe is not None:
            return self.protocol_probe
        return DEFAULT_BINDINGS.get((self.protocol, self.port), "")


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """How to probe (per target).

    Attributes:
        timeout_seconds: wait per try, seconds.
        tcp_tries: TCP connection attempts before FILTERED (PortQry: 3).
        udp_tries: unformatted datagrams before LISTENING or FILTERED (PortQry: 1).
        source_port: local source port of the state probe (PortQry ``-sp``), or ``None``.
        slow_link: double the UDP wait (PortQry ``-sl``).
        protocol_probes: run protocol-aware follow-ups at all.
        udp_unformatted_first: on a UDP port with a protocol-aware probe, first send PortQry's unformatted
            datagram (the CLI does, for parity); when false the protocol query is the first datagram.
        params: protocol parameters (``domain``, ``snmp_community``, ``dns_query_name``, ...).
    """

    timeout_seconds: float = 2.0
    tcp_tries: int = 3
    udp_tries: int = 1
    source_port: int | None = None
    slow_link: bool = False
    protocol_probes: bool = True
    udp_unformatted_first: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def udp_timeout(self) -> float:
        """Seconds to wait for a UDP reply (doubled on a slow link)."""
        return self.timeout_seconds * (2 if self.slow_link else 1)


@dataclass(frozen=True, slots=True)
class ProtocolOutcome:
    """What a protocol-aware probe concluded: the port's final state, reason and parsed details."""

    state: PortState
    reason: Reason
    details: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(slots=True)
class ProbeContext:
    """What a protocol-aware probe gets: where to go, the first evidence, the options and helpers.

    ``deadline`` is an absolute ``loop.time()``; protocol probes must finish by then.
    """

    engine: Engine
    target: str
    host: str
    address: str
    family: int
    protocol: Protocol
    port: int
    options: ProbeOptions
    evidence: Evidence
    deadline: float
    binding: str = ""

    @property
    def server_name(self) -> str | None:
        """The host name for TLS SNI, or ``None`` when the target was given as an address."""
        from exporter.resolve import literal

        return None if literal(self.host) is not None else self.host

    def remaining(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    async def udp(self, payload: bytes, *, accept: Callable[[bytes], bool] | None = None) -> Evidence:
        """Send ``payload`` to this port over UDP (paced, one try, waiting at most the UDP timeout)."""
        await self.engine.pace_udp(self.address)
        return await udp_exchange(
            self.address,
            self.port,
            payload,
            family=self.family,
            timeout=min(self.options.udp_timeout, max(self.remaining(), 0.001)),
            tries=1,
            accept=accept,
        )

    def unanswered(self, evidence: Evidence, what: str) -> ProtocolOutcome:
        """The outcome of a UDP protocol query that got no accepted reply.

        ICMP evidence keeps its state (NOT LISTENING / FILTERED); silence is FILTERED with
        ``protocol-no-reply``: PortQry's rule once a protocol-aware query went unanswered.
        """
        if evidence.state is PortState.LISTENING_OR_FILTERED:
            return ProtocolOutcome(PortState.FILTERED, Reason.PROTOCOL_NO_REPLY, error=f"no reply to the {what} query")
        return ProtocolOutcome(evidence.state, evidence.reason, error=evidence.error)

    async def open_tcp(
        self, *, ssl: Any = None, server_hostname: str | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a TCP (optionally TLS) stream to this port, bounded by the deadline.

        Raises:
            OSError: connection failed.  TimeoutError: the deadline passed.  ssl.SSLError: handshake failed.
        """
        return await asyncio.wait_for(
            asyncio.open_connection(
                self.address,
                self.port,
                ssl=ssl,
                server_hostname=server_hostname if ssl else None,
                limit=MAX_STREAM_BYTES,
            ),
            max(self.remaining(), 0.001),
        )

    async def tcp_exchange(
        self,
        request: bytes,
        complete: Callable[[bytes], int | None],
        *,
        what: str,
        limit: int = MAX_STREAM_BYTES,
        tls: ssl.SSLContext | None = None,
        on_open: Callable[[asyncio.StreamWriter], None] | None = None,
    ) -> bytes | ProtocolOutcome:
        """Open a stream to this port (TLS when ``tls`` is given), send ``request`` and read one whole reply.

        The one place where a protocol probe's TCP failures become outcomes:

        - the connection fails or times out: the state probe's own state and reason (it already spoke);
        - the TLS handshake fails, or the framing says garbage or more than ``limit`` bytes: LISTENING,
          ``protocol-error``;
        - the peer closes or stays silent after connecting: LISTENING with the state probe's reason.

        Args:
            request: bytes to send (already framed for the protocol).
            complete: see :meth:`read_message`.
            what: protocol name for error messages (``"DNS"``).
            limit: the most bytes read.
            tls: a TLS client context, for LDAPS and friends.
            on_open: called with the writer once connected (e.g. to record the TLS session).

        Returns:
            The reply buffer (at least one whole message), or the :class:`ProtocolOutcome` of the failure.
        """
        try:
            reader, writer = await self.open_tcp(ssl=tls, server_hostname=self.server_name)
        except ssl.SSLError as exc:
            return ProtocolOutcome(
                PortState.LISTENING,
                Reason.PROTOCOL_ERROR,
                error=f"{what}: TLS handshake: {exc.reason or exc}",
            )
        except (OSError, TimeoutError) as exc:
            return ProtocolOutcome(
                self.evidence.state, self.evidence.reason, error=f"{what}: connect: {exc or 'timeout'}"
            )
        try:
            if on_open is not None:
                on_open(writer)
            writer.write(request)
            await writer.drain()
            return await self.read_message(reader, complete, limit=limit)
        except DecodeError as exc:
            return ProtocolOutcome(PortState.LISTENING, Reason.PROTOCOL_ERROR, error=f"{what} reply: {exc}")
        except (OSError, TimeoutError, EOFError) as exc:
            return ProtocolOutcome(
                PortState.LISTENING, self.evidence.reason, error=f"{what}: {exc or type(exc).__name__}"
            )
        finally:
            writer.close()

    async def read_message(
        self,
        reader: asyncio.StreamReader,
        complete: Callable[[bytes], int | None],
        *,
        limit: int = MAX_STREAM_BYTES,
    ) -> bytes:
        """Read from ``reader`` until ``complete(buffer)`` returns the length of a whole message.

        Args:
            reader: the stream.
            complete: returns the byte length of the first whole message in the buffer, or ``None`` when more
                bytes are needed (it may raise ``DecodeError`` on garbage).
            limit: the most bytes read, in bytes.

        Returns:
            The buffer, at least one whole message long.

        Raises:
            TimeoutError: the deadline passed.  EOFError: the peer closed first.  DecodeError: too big.
        """
        buf = b""
        while True:
            need = complete(buf) if buf else None
            if need is not None and len(buf) >= need:
                return buf
            if len(buf) >= limit:
                raise DecodeError(f"reply larger than {limit} bytes", len(buf))
            chunk = await asyncio.wait_for(reader.read(min(65536, limit - len(buf))), max(self.remaining(), 0.001))
            if not chunk:
                raise EOFError(f"connection closed after {len(buf)} bytes")
            buf += chunk

    async def tcp(self, port: int, *, tries: int | None = None) -> Evidence:
        """A TCP state probe of another port on the same address (e.g. an endpoint-mapper dynamic port).

        Runs under the engine's follow-up limit (:data:`FOLLOW_UP_CONCURRENCY` connections at most, across
        all targets), with the target's TCP tries, each try bounded by the deadline.
        """
        async with self.engine.follow_up_slots:
            return await tcp_connect(
                self.address,
                port,
                family=self.family,
                timeout=min(
                    self.options.timeout_seconds,
                    max(self.remaining() / max(tries or self.options.tcp_tries, 1), 0.001),
                ),
                tries=tries or self.options.tcp_tries,
            )


ProtocolProbe = Callable[[ProbeContext], Awaitable[ProtocolOutcome]]


def protocol_probe(name: str) -> ProtocolProbe | None:
    """The ``probe`` coroutine function of the protocol-aware probe ``name``, or ``None`` if unknown."""
    module = PROTOCOL_MODULES.get(name)
    if not module:
        return None
    fn: ProtocolProbe = importlib.import_module(module).probe
    return fn


class Engine:
    """Runs probes with one concurrency limit and per-address UDP pacing.

    Args:
        concurrency: probes in flight at most (default 256).
        udp_pacing_seconds: minimum gap between two UDP datagrams to the same address, seconds.
        resolver: the :class:`~exporter.resolve.Resolver` (default: the system resolver).
        udp_recheck_max: silent UDP ports re-checked per round when the same host sent an ICMP port
            unreachable in that round (its silence may be ICMP rate limiting, not a firewall); 0 = never.
        udp_recheck_gap_seconds: wait before each re-check, seconds (Linux refills one ICMP error per second).
    """

    def __init__(
        self,
        *,
        concurrency: int = 256,
        udp_pacing_seconds: float = 0.25,
        resolver: Resolver | None = None,
        udp_recheck_max: int = 8,
        udp_recheck_gap_seconds: float = 1.0,
    ) -> None:
        self.concurrency = concurrency
        self.udp_recheck_max = udp_recheck_max
        self.udp_recheck_gap_seconds = udp_recheck_gap_seconds
        self.udp_pacing_seconds = udp_pacing_seconds
        self.resolver = resolver or Resolver()
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
    ) -> list[ProbeResult]:
        """Resolve ``host`` once and probe every port concurrently.

        Returns:
            One result per spec, in the order of ``specs``.  An unresolvable host gives every port a
            FILTERED / ``resolve-failed`` result with ``address=""``; nothing is raised.
        """
        loop = asyncio.get_running_loop()
        if resolved is None:
            started = loop.time()
            try:
                resolved = await self.resolve(host)
            except ResolveError as exc:
                took = loop.time() - started
                return [_resolve_failed(target, host, spec, took, str(exc)) for spec in specs]
        # A pool of at most `concurrency` workers per target, each taking the global slot per probe: far fewer
        # tasks and semaphore waiters than one task per port (1,000 waiters cost O(n) per wake-up in 3.11).
        found = resolved
        results: list[ProbeResult | None] = [None] * len(specs)
        queue = iter(enumerate(specs))

        async def worker() -> None:
            for index, spec in queue:
                results[index] = await self.probe_port(target, host, found, spec, options)

        await asyncio.gather(*(worker() for _ in range(min(len(specs), self.concurrency))))
        done = [r for r in results if r is not None]
        await self._recheck_silent_udp(found, options, done)
        return done

    async def _recheck_silent_udp(self, resolved: Resolved, options: ProbeOptions, results: list[ProbeResult]) -> None:
        """Ask silent UDP ports once more, slowly, when the host proved it sends ICMP port unreachables.

        Targets rate-limit ICMP errors (Linux: a burst of 6, then one per second per peer), so in a round
        with many closed UDP ports some are read as silence.  If the address sent us an ICMP port unreachable
        in this round or within :data:`ICMP_MEMORY_SECONDS` before (its bucket may be empty now), up to
        ``udp_recheck_max`` ports that stayed silent (``no-reply``,
        ``protocol-no-reply``) get one more unformatted datagram, each after ``udp_recheck_gap_seconds``;
        an ICMP error or a reply replaces the result, silence keeps it (``tries`` counts every datagram).
        Updates ``results`` in place.
        """
        if self.udp_recheck_max <= 0:
            return
        loop = asyncio.get_running_loop()
        udp = [i for i, r in enumerate(results) if r.protocol == "udp"]
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
        loop = asyncio.get_running_loop()
        probe_name = spec.probe_name if options.protocol_probes else ""
        if spec.protocol == "udp":
            await self.pace_udp(resolved.address)
        async with self._slots:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            started = loop.time()
            try:
                evidence = await self._state_probe(resolved, spec, options, bool(probe_name))
                state, reason, error = evidence.state, evidence.reason, evidence.error
                details: Mapping[str, Any] = {}
                initial: PortState | None = None
                if probe_name and _follow_up(spec.protocol, evidence.state):
                    initial = evidence.state
                    outcome = await self._protocol(target, host, resolved, spec, options, evidence, probe_name)
                    if outcome is not None:
                        state, reason, details = outcome.state, outcome.reason, outcome.details
                        error = outcome.error or error
            finally:
                self.in_flight -= 1
            return ProbeResult(
                target=target,
                host=host,
                address=resolved.address,
                protocol=spec.protocol,
                port=spec.port,
                service=spec.service_label,
                state=state,
                reason=reason,
                duration_seconds=loop.time() - started,
                tries=evidence.tries,
                timestamp=time.time(),
                details=details,
                error=error,
                initial_state=initial,
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

    async def _protocol(
        self,
        target: str,
        host: str,
        resolved: Resolved,
        spec: PortSpec,
        options: ProbeOptions,
        evidence: Evidence,
        name: str,
    ) -> ProtocolOutcome | None:
        probe = protocol_probe(name)
        if probe is None:
            return None
        loop = asyncio.get_running_loop()
        budget = (
            options.timeout_seconds * max(options.tcp_tries, options.udp_tries, 1) * (2 if options.slow_link else 1)
        )
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
            deadline=loop.time() + budget + options.timeout_seconds,
            binding=name,
        )
        try:
            return await asyncio.wait_for(probe(ctx), ctx.remaining() + 0.5)
        except (PortqryError, ValueError, LookupError, TypeError, struct.error, UnicodeError) as exc:
            # a codec or library refused our own request or the reply: the port answered TCP/ICMP as before
            state = PortState.LISTENING if evidence.state is PortState.LISTENING else evidence.state
            reason = Reason.PROTOCOL_ERROR if state is PortState.LISTENING else evidence.reason
            return ProtocolOutcome(state, reason, error=f"{name}: {type(exc).__name__}: {exc}")
        except TimeoutError:
            if spec.protocol == "udp":
                return ProtocolOutcome(PortState.FILTERED, Reason.PROTOCOL_NO_REPLY, error=f"{name}: deadline")
            return ProtocolOutcome(evidence.state, evidence.reason, error=f"{name}: no reply before deadline")


def _follow_up(protocol: str, state: PortState) -> bool:
    if protocol == "tcp":
        return state is PortState.LISTENING
    return state in (PortState.LISTENING, PortState.LISTENING_OR_FILTERED)


def _resolve_failed(target: str, host: str, spec: PortSpec, took: float, error: str) -> ProbeResult:
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

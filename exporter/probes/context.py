"""The protocol-probe interface: what a probe gets (:class:`ProbeContext`) and returns (:class:`ProtocolOutcome`).

Every protocol-aware probe is ``async def probe(ctx: ProbeContext) -> ProtocolOutcome`` (:data:`ProtocolProbe`),
listed in :data:`exporter.probes.PROBES`.  A probe says what it sends and what it keeps; the context does the
I/O (this port over UDP or TCP, another TCP port of the same address) and maps each way a query can end to a
:class:`~exporter.states.Finding`, whose state :func:`~exporter.states.protocol_verdict` decides.  The context
needs two things of the engine, named by :class:`EngineServices`: UDP pacing and the follow-up slots.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol as TypingProtocol
from typing import TypeVar

from exporter.errors import DecodeError, ProtocolError, error_detail, plain_error
from exporter.model import Detail, ProbeOptions, ProbeParams, Protocol
from exporter.probes.sockets import Evidence, tcp_connect, udp_exchange
from exporter.states import Finding, PortState, Reason, classify_errno, protocol_verdict

#: The most bytes a protocol probe reads from one TCP stream (hostile servers cannot make us buffer more).
MAX_STREAM_BYTES = 4 * 1024 * 1024

T = TypeVar("T")


def _now() -> float:
    return asyncio.get_running_loop().time()


class EngineServices(TypingProtocol):
    """What a probe context needs from the engine that runs it."""

    follow_up_slots: asyncio.Semaphore
    """Bounds follow-up connections (endpoint-mapper dynamic ports) across all targets."""

    async def pace_udp(self, address: str) -> None:
        """Wait for this address's next UDP datagram slot."""


@dataclass(frozen=True, slots=True)
class ProtocolOutcome:
    """What a protocol-aware probe concluded: the port's final state, reason and parsed details.

    Attributes:
        state: the final port state.
        reason: why (``protocol-reply``, ``protocol-error`` ...).
        details: the findings under their binding's key (``{"ldap": LdapDetails(...)}``).
        error: a one-line description of what went wrong, in plain words, or ``""``.
        error_detail: the library's own text behind ``error`` (the daemon's debug log only), or ``""``.
    """

    state: PortState
    reason: Reason
    details: Mapping[str, Detail] = field(default_factory=dict)
    error: str = ""
    error_detail: str = ""

    @classmethod
    def of(
        cls,
        finding: Finding,
        evidence: Evidence,
        details: Mapping[str, Detail] | None = None,
        error: str = "",
        *,
        cause: BaseException | None = None,
    ) -> ProtocolOutcome:
        """The outcome of ``finding`` resting on ``evidence`` (see :func:`~exporter.states.protocol_verdict`).

        ``cause``, the exception behind ``error``, gives :attr:`error_detail`.
        """
        state, reason = protocol_verdict(finding, evidence.state, evidence.reason)
        return cls(state, reason, details or {}, error, error_detail(cause) if cause is not None else "")


ProtocolProbe = Callable[["ProbeContext"], Awaitable[ProtocolOutcome]]


@dataclass(slots=True)
class ProbeContext:
    """What a protocol-aware probe gets: where to go, the state probe's evidence, the options and the I/O.

    Attributes:
        engine: UDP pacing and follow-up slots.
        target: the target name.
        host: the configured host (name or literal; the TLS SNI when a name).
        address: the address probed.
        family: ``socket.AF_INET`` or ``AF_INET6``.
        protocol: the port's protocol.
        port: the port.
        options: the target's probe options.
        evidence: what the state probe saw.
        deadline: absolute ``loop.time()`` by which the probe must finish.
        binding: the binding name that chose this probe (``ldap`` or ``ldaps`` ...).
        datagrams_sent: UDP datagrams this probe has sent to the port (:meth:`udp_exchange` counts them; the
            engine adds them to the result's ``tries``).
        local_error: the errno name of a failure of this host met on the way (``EMFILE``), else ``""``: the
            engine then publishes no state for the port (a local failure says nothing about it).
    """

    engine: EngineServices
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
    datagrams_sent: int = 0
    local_error: str = ""

    @property
    def params(self) -> ProbeParams:
        """The target's protocol parameters."""
        return self.options.params

    @property
    def server_name(self) -> str | None:
        """The host name for TLS SNI, or ``None`` when the target was given as an address."""
        from exporter.resolve import literal

        return None if literal(self.host) is not None else self.host

    def remaining(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def outcome(
        self,
        finding: Finding,
        details: Mapping[str, Detail] | None = None,
        error: str = "",
        *,
        evidence: Evidence | None = None,
        cause: BaseException | None = None,
    ) -> ProtocolOutcome:
        """The outcome of ``finding``, resting on ``evidence`` (default: the state probe's).

        ``error`` is plain words; ``cause``, the exception behind it, goes to the outcome's ``error_detail``.
        """
        return ProtocolOutcome.of(finding, evidence or self.evidence, details, error, cause=cause)

    def unanswered(self, evidence: Evidence, what: str) -> ProtocolOutcome:
        """The outcome of a UDP query that got no accepted reply: ``SILENT`` on the query's own ``evidence``."""
        silent = evidence.state is PortState.LISTENING_OR_FILTERED
        return self.outcome(
            Finding.SILENT, error=f"no reply to the {what} query" if silent else evidence.error, evidence=evidence
        )

    async def udp_exchange(
        self, payload: bytes, *, accept: Callable[[bytes], bool] | None = None, paced: bool = True
    ) -> Evidence:
        """Send ``payload`` to this port over UDP (one datagram, waiting at most the UDP timeout).

        Args:
            payload: the datagram.
            accept: which reply datagrams are ours (others are read past, bounded).
            paced: wait for the address's UDP pacing slot first; ``False`` for the later datagrams of one exchange
                the peer is answering (pacing spaces datagrams to ports that may answer with ICMP).

        Returns:
            The evidence: LISTENING with ``data`` for an accepted reply, an ICMP state, or silence.
        """
        if paced:
            await self.engine.pace_udp(self.address)
        evidence = await udp_exchange(
            self.address,
            self.port,
            payload,
            family=self.family,
            timeout=min(self.options.udp_timeout, max(self.remaining(), 0.001)),
            tries=1,
            accept=accept,
        )
        self.datagrams_sent += evidence.tries
        if evidence.reason is Reason.LOCAL_ERROR:
            self.local_error = evidence.local
        return evidence

    async def udp_query(
        self,
        payload: bytes,
        decode: Callable[[bytes], T],
        *,
        what: str,
        accept: Callable[[bytes], bool] | None = None,
    ) -> T | ProtocolOutcome:
        """Send one UDP query to this port, then decode its reply: send, accept, decode, map.

        Args:
            payload: the query datagram.
            decode: parses the reply datagram; raises ``DecodeError`` (garbled) or ``ProtocolError`` (the
                server refused, e.g. an LDAP error result).
            what: the query's name for error texts (``"SNMP v2c"``).
            accept: which reply datagrams are ours.

        Returns:
            ``decode``'s value, or the outcome: silence ``SILENT`` (FILTERED/``protocol-no-reply``), an ICMP
            error its own state, a refusal ``REFUSED``, garbage ``GARBLED``.
        """
        evidence = await self.udp_exchange(payload, accept=accept)
        if evidence.state is not PortState.LISTENING:
            return self.unanswered(evidence, what)
        try:
            return decode(evidence.data)
        except ProtocolError as exc:
            return self.outcome(Finding.REFUSED, error=str(exc), cause=exc)
        except DecodeError as exc:
            return self.outcome(Finding.GARBLED, error=f"{what} reply: {exc}", cause=exc)

    async def open_tcp(self, *, tls: ssl.SSLContext | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a TCP stream to this port (TLS with SNI when ``tls`` is given), bounded by the deadline.

        Raises:
            OSError: connection failed.  TimeoutError: the deadline passed.  ssl.SSLError: handshake failed.
        """
        return await asyncio.wait_for(
            asyncio.open_connection(
                self.address,
                self.port,
                ssl=tls,
                server_hostname=self.server_name if tls else None,
                limit=MAX_STREAM_BYTES,
            ),
            max(self.remaining(), 0.001),
        )

    async def connect(
        self, *, what: str, tls: ssl.SSLContext | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | ProtocolOutcome:
        """Open a stream to this port (TLS when ``tls`` is given); the caller closes the writer.

        The TCP connect and the TLS handshake are two steps, so that a port that accepts TCP but never finishes
        the handshake is told from one that cannot be reached.

        Returns:
            The stream, or the outcome: a failed connect ``UNREACHED``; a failed TLS handshake ``GARBLED``; a
            handshake the peer never answers (or closes) ``STALLED``.
        """
        started = _now()
        try:
            reader, writer = await self.open_tcp()
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, OSError) and exc.errno and classify_errno(exc.errno)[1] is Reason.LOCAL_ERROR:
                self.local_error = errno.errorcode.get(exc.errno, "unknown")
            error = f"{what}: connect: {plain_error(exc, waited=_now() - started)}"
            return self.outcome(Finding.UNREACHED, error=error, cause=exc)
        if tls is None:
            return reader, writer
        started = _now()
        try:
            await asyncio.wait_for(
                writer.start_tls(tls, server_hostname=self.server_name), max(self.remaining(), 0.001)
            )
        except ssl.SSLError as exc:
            writer.transport.abort()
            return self.outcome(Finding.GARBLED, error=f"{what}: TLS handshake: {plain_error(exc)}", cause=exc)
        except (OSError, TimeoutError, EOFError) as exc:
            writer.transport.abort()
            error = f"{what}: TLS handshake: {plain_error(exc, waited=_now() - started)}"
            return self.outcome(Finding.STALLED, error=error, cause=exc)
        return reader, writer

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

        The one place where a protocol probe's TCP failures become outcomes: the connection fails or times
        out ``UNREACHED``; the TLS handshake fails, the framing says garbage or more than ``limit`` bytes, or the
        peer stops part-way through a reply, ``GARBLED``; the peer closes or stays silent without a byte of a
        reply (or of the TLS handshake) ``STALLED``.

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
        opened = await self.connect(what=what, tls=tls)
        if isinstance(opened, ProtocolOutcome):
            return opened
        reader, writer = opened
        started = _now()
        try:
            if on_open is not None:
                on_open(writer)
            writer.write(request)
            await writer.drain()
            return await self.read_message(reader, complete, limit=limit)
        except DecodeError as exc:
            return self.outcome(Finding.GARBLED, error=f"{what} reply: {exc}", cause=exc)
        except (OSError, TimeoutError, EOFError) as exc:
            return self.outcome(
                Finding.STALLED, error=f"{what}: {plain_error(exc, waited=_now() - started)}", cause=exc
            )
        finally:
            # abort, not close: a TLS close waits up to 30 s for the peer's close_notify, and a hostile peer that
            # keeps sending holds the descriptor that long
            writer.transport.abort()

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
            TimeoutError: the deadline passed before a byte came.  EOFError: the peer closed before a byte came.
            DecodeError: too big, or the peer closed or stalled part-way through the message.
        """
        started = _now()
        buf = b""
        while True:
            need = complete(buf) if buf else None
            if need is not None and len(buf) >= need:
                return buf
            if len(buf) >= limit:
                raise DecodeError(f"reply larger than {limit} bytes", len(buf))
            try:
                chunk = await asyncio.wait_for(reader.read(min(65536, limit - len(buf))), max(self.remaining(), 0.001))
            except TimeoutError:
                if buf:
                    raise DecodeError(f"reply stopped after {len(buf)} bytes in {_now() - started:.1f} s") from None
                raise
            if not chunk:
                if buf:
                    raise DecodeError(f"connection closed after {len(buf)} bytes of a reply")
                raise EOFError("connection closed before a reply")
            buf += chunk

    async def follow_up_tcp(self, port: int, *, tries: int | None = None) -> Evidence:
        """A TCP state probe of **another** port on the same address (an endpoint-mapper dynamic port).

        Runs under the engine's follow-up slots, with the target's TCP tries, each try bounded by the deadline.
        """
        tries = tries or self.options.tcp_tries
        async with self.engine.follow_up_slots:
            return await tcp_connect(
                self.address,
                port,
                family=self.family,
                timeout=min(self.options.timeout_seconds, max(self.remaining() / max(tries, 1), 0.001)),
                tries=tries,
            )

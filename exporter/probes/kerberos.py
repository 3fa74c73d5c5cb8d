"""Kerberos (88 UDP/TCP): an AS-REQ for a principal that does not exist; a KRB-ERROR means LISTENING.

RFC 4120 section 5.4.1 (AS-REQ) and 5.9.1 (KRB-ERROR); over TCP each message has a 4-byte length prefix
(section 7.2.2).  The realm is the target's domain in upper case, else the host name's domain; a KDC
answers a wrong realm with a KRB-ERROR too (WRONG_REALM).  Windows KDCs omit optional fields.

The KRB-ERROR carries the KDC's clock (``stime`` + ``susec``, microseconds): :func:`kdc_clock` sets it against
ours at the middle of the exchange, ``offset = kdc_time - (received - round_trip / 2)``, good to +- half the
round trip (Kerberos fails beyond 5 minutes of skew, RFC 4120 1.6).  The round trip runs from the request
written (after the TCP connect; after the UDP pacing wait) to the reply read.
"""

from __future__ import annotations

import secrets
import time

from exporter.errors import DecodeError
from exporter.model import KdcClock
from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.resolve import literal
from exporter.states import Finding, PortState
from exporter.wire.kerberos import KdcRep, KrbError, decode_kdc_reply, encode_as_req, frame_tcp, tcp_record_length

#: The client principal asked for: it must not exist, so the KDC answers C_PRINCIPAL_UNKNOWN.
PROBE_PRINCIPAL = "portqry-exporter-probe"


def realm_for(domain: str, host: str) -> str:
    """The realm to ask: the domain upper-cased, else the host name's parent domain, else ``PORTQRY.INVALID``."""
    if domain:
        return domain.upper()
    if literal(host) is None and "." in host:
        return host.split(".", 1)[1].upper()
    return "PORTQRY.INVALID"


def kdc_clock(error: KrbError, sent: float, received: float, received_wall: float) -> KdcClock:
    """The KDC's clock against ours from one exchange.

    Args:
        error: the KRB-ERROR (its ``stime`` already holds ``susec``).
        sent: monotonic time the request was written, seconds.
        received: monotonic time the reply was read, seconds.
        received_wall: our Unix time when the reply was read, seconds.
    """
    round_trip = max(0.0, received - sent)
    offset = error.stime.timestamp() - (received_wall - round_trip / 2)
    return KdcClock(round(offset, 6), round(round_trip, 6))


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Send the AS-REQ.

    Returns:
        Details ``details["kerberos"]`` (``KrbError`` or ``KdcRep``) and, for a KRB-ERROR,
        ``details["kerberos_clock"]`` (:class:`~exporter.model.KdcClock`).
    """
    realm = realm_for(ctx.params.domain, ctx.host)
    request = encode_as_req(realm, PROBE_PRINCIPAL, 1 + secrets.randbelow((1 << 31) - 1))
    sent = time.monotonic()
    what = "Kerberos"
    if ctx.protocol == "udp":
        what = "Kerberos AS-REQ"
        await ctx.engine.pace_udp(ctx.address)  # before the clock starts: pacing is no part of the round trip
        sent = time.monotonic()
        evidence = await ctx.udp_exchange(request, paced=False)
        received, received_wall = time.monotonic(), time.time()
        if evidence.state is not PortState.LISTENING:
            return ctx.unanswered(evidence, what)
        data = evidence.data
    else:

        def started(_writer: object) -> None:
            nonlocal sent
            sent = time.monotonic()

        framed = await ctx.tcp_exchange(frame_tcp(request), tcp_record_length, what=what, on_open=started)
        received, received_wall = time.monotonic(), time.time()
        if isinstance(framed, ProtocolOutcome):
            return framed
        data = framed[4 : tcp_record_length(framed)]  # the record length includes the 4-byte prefix
    try:
        reply = decode_kdc_reply(data)
    except DecodeError as exc:
        return ctx.outcome(Finding.GARBLED, error=f"{what} reply: {exc}", cause=exc)
    if isinstance(reply, KdcRep):
        return ctx.outcome(Finding.PARSED, {"kerberos": reply})
    return ctx.outcome(
        Finding.PARSED, {"kerberos": reply, "kerberos_clock": kdc_clock(reply, sent, received, received_wall)}
    )

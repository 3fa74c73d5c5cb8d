"""DNS (53 UDP/TCP): one query through dnspython; any well-formed reply means LISTENING.

PortQry queries ``portqry.microsoft.com`` and treats any answer, positive or negative, as LISTENING
(KB 832919, "DNS").  We ask for the target's own zone SOA when the target has a ``domain``, else
PortQry's name; the query is non-recursive (RD clear), so a server never recurses on our behalf.
The UDP query goes through the engine's connected socket, so ICMP evidence is kept.
Configurable with the target params ``dns_query_name`` and ``dns_query_type``.
"""

from __future__ import annotations

import secrets

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from exporter.errors import DecodeError, plain_error
from exporter.model import DnsDetails
from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.states import Finding

PORTQRY_NAME = "portqry.microsoft.com"


def build_query(name: str, rdtype: str, query_id: int) -> dns.message.Message:
    """A non-recursive query for ``name``/``rdtype`` with the given 16-bit id."""
    q = dns.message.make_query(name, rdtype)
    q.id = query_id
    q.flags &= ~dns.flags.RD
    return q


def summarise(query: dns.message.Message, reply_wire: bytes) -> DnsDetails:
    """Parse a reply to ``query``.

    Raises:
        DecodeError: not a well-formed DNS message, or not a reply to our query.
    """
    try:
        reply = dns.message.from_wire(reply_wire, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
        raise DecodeError("malformed DNS reply", detail=f"{type(exc).__name__}: {exc}") from None
    if not query.is_response(reply):
        raise DecodeError("the DNS message is not a reply to our query")
    question = query.question[0]
    return DnsDetails(
        query_name=question.name.to_text(),
        query_type=dns.rdatatype.to_text(question.rdtype),
        rcode=int(reply.rcode()),
        rcode_text=dns.rcode.to_text(reply.rcode()),
        authoritative=bool(reply.flags & dns.flags.AA),
        answers=sum(len(rrset) for rrset in reply.answer),
    )


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Query the DNS server on ``ctx.address:ctx.port`` over ``ctx.protocol``.

    Returns:
        LISTENING/``protocol-reply`` with ``details["dns"]`` (:class:`~exporter.model.DnsDetails`) for any
        well-formed reply; UDP silence is FILTERED/``protocol-no-reply``; a malformed reply is
        LISTENING/``protocol-error``.
    """
    params = ctx.params
    name = params.dns_query_name or params.domain or PORTQRY_NAME
    rdtype = params.dns_query_type or ("SOA" if params.domain and not params.dns_query_name else "A")
    query = build_query(name, rdtype, secrets.randbelow(1 << 16))
    wire = query.to_wire()
    if ctx.protocol == "udp":
        details = await ctx.udp_query(
            wire, lambda data: summarise(query, data), what="DNS", accept=lambda d: d[:2] == wire[:2]
        )
    else:
        reply = await ctx.tcp_exchange(
            len(wire).to_bytes(2, "big") + wire,
            lambda b: 2 + int.from_bytes(b[:2], "big") if len(b) >= 2 else None,
            what="DNS over TCP",
            limit=65537,
        )
        if isinstance(reply, ProtocolOutcome):
            return reply
        try:
            details = summarise(query, reply[2 : 2 + int.from_bytes(reply[:2], "big")])
        except DecodeError as exc:
            return ctx.outcome(Finding.GARBLED, error=plain_error(exc), cause=exc)
    if isinstance(details, ProtocolOutcome):
        return details
    return ctx.outcome(Finding.PARSED, {"dns": details})

"""Kerberos (88 UDP/TCP): an AS-REQ for a principal that does not exist; a KRB-ERROR means LISTENING.

RFC 4120 section 5.4.1 (AS-REQ) and 5.9.1 (KRB-ERROR); over TCP each message has a 4-byte length prefix
(section 7.2.2).  The realm is the target's domain in upper case, else the host name's domain; a KDC
answers a wrong realm with a KRB-ERROR too (WRONG_REALM).  Windows KDCs omit optional fields.
"""

from __future__ import annotations

import random

from exporter.errors import DecodeError
from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.resolve import literal
from exporter.states import Finding
from exporter.wire.kerberos import decode_kdc_reply, encode_as_req, frame_tcp, tcp_record_length

#: The client principal asked for: it must not exist, so the KDC answers C_PRINCIPAL_UNKNOWN.
PROBE_PRINCIPAL = "portqry-exporter-probe"


def realm_for(domain: str, host: str) -> str:
    """The realm to ask: the domain upper-cased, else the host name's parent domain, else ``PORTQRY.INVALID``."""
    if domain:
        return domain.upper()
    if literal(host) is None and "." in host:
        return host.split(".", 1)[1].upper()
    return "PORTQRY.INVALID"


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Send the AS-REQ; details: ``details["kerberos"]`` (``KrbError`` or ``KdcRep``)."""
    realm = realm_for(ctx.params.domain, ctx.host)
    request = encode_as_req(realm, PROBE_PRINCIPAL, random.randrange(1, 1 << 31))
    if ctx.protocol == "udp":
        reply = await ctx.udp_query(request, decode_kdc_reply, what="Kerberos AS-REQ")
    else:
        framed = await ctx.tcp_exchange(frame_tcp(request), tcp_record_length, what="Kerberos")
        if isinstance(framed, ProtocolOutcome):
            return framed
        try:  # the record length includes the 4-byte prefix
            reply = decode_kdc_reply(framed[4 : tcp_record_length(framed)])
        except DecodeError as exc:
            return ctx.outcome(Finding.GARBLED, error=f"Kerberos reply: {exc}", cause=exc)
    if isinstance(reply, ProtocolOutcome):
        return reply
    return ctx.outcome(Finding.PARSED, {"kerberos": reply})

"""SNMP (161 UDP): a GetRequest for sysDescr.0 with a community (RFC 1157 v1, RFC 3416 v2c).

PortQry's ``-cn !community!`` (default ``public``).  An agent that does not know the community usually
sends no reply at all, so the port then reads FILTERED (PortQry's rule for an unanswered protocol query):
the error says so honestly.
"""

from __future__ import annotations

import random

from exporter.engine import ProbeContext, ProtocolOutcome
from exporter.errors import DecodeError
from exporter.states import PortState, Reason
from exporter.wire.snmp import decode_response, encode_get_request


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Ask sysDescr.0; details: ``details["snmp"]`` (``SnmpResponse``)."""
    params = ctx.options.params
    community = str(params.get("snmp_community") or "public")
    version = str(params.get("snmp_version") or "v2c")
    request_id = random.randrange(1, 1 << 31)

    def ours(data: bytes) -> bool:
        try:
            return decode_response(data).request_id == request_id
        except DecodeError:
            return False

    evidence = await ctx.udp(encode_get_request(community, request_id, version), accept=ours)  # type: ignore[arg-type]
    if evidence.state is not PortState.LISTENING:
        outcome = ctx.unanswered(evidence, f"SNMP {version}")
        if outcome.reason is Reason.PROTOCOL_NO_REPLY:
            return ProtocolOutcome(
                outcome.state, outcome.reason, error=f"no reply to SNMP {version}: the community may be wrong"
            )
        return outcome
    try:
        response = decode_response(evidence.data)
        if response.request_id != request_id:
            raise DecodeError(f"request-id {response.request_id}, not ours")
    except DecodeError as exc:
        return ProtocolOutcome(PortState.LISTENING, Reason.PROTOCOL_ERROR, error=f"SNMP reply: {exc}")
    return ProtocolOutcome(PortState.LISTENING, Reason.PROTOCOL_REPLY, {"snmp": response})

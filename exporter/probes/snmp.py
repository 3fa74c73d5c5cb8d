"""SNMP (161 UDP): a GetRequest for sysDescr.0 with a community (RFC 1157 v1, RFC 3416 v2c).

PortQry's ``-cn !community!`` (default ``public``).  An agent that does not know the community usually
sends no reply at all, so the port then reads FILTERED (PortQry's rule for an unanswered protocol query):
the error says so honestly.
"""

from __future__ import annotations

import secrets

from exporter.errors import DecodeError
from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.states import Finding, Reason
from exporter.wire.snmp import SnmpResponse, decode_response, encode_get_request


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Ask sysDescr.0; details: ``details["snmp"]`` (``SnmpResponse``)."""
    version = ctx.params.snmp_version
    request_id = 1 + secrets.randbelow((1 << 31) - 1)

    def ours(data: bytes) -> bool:
        try:
            return decode_response(data).request_id == request_id
        except DecodeError:
            return False

    def decode(data: bytes) -> SnmpResponse:
        response = decode_response(data)
        if response.request_id != request_id:
            raise DecodeError(f"request-id {response.request_id}, not ours")
        return response

    what = f"SNMP {version}"
    response = await ctx.udp_query(
        encode_get_request(ctx.params.snmp_community, request_id, version), decode, what=what, accept=ours
    )
    if isinstance(response, ProtocolOutcome):
        if response.reason is Reason.PROTOCOL_NO_REPLY:
            return ctx.outcome(Finding.SILENT, error=f"no reply to {what}: the community may be wrong")
        return response
    return ctx.outcome(Finding.PARSED, {"snmp": response})

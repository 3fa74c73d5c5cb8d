"""SQL Server Browser (1434 UDP): MC-SQLR CLNT_UCAST_EX, answered by SVR_RESP with the instance list.

PortQry's "SQL Server 2000 named instances" query: ServerName, InstanceName, IsClustered, Version,
tcp port and named pipe of every instance (MC-SQLR 2.2.2 and 2.2.5), parsed by :mod:`exporter.wire.mssqlr`.
"""

from __future__ import annotations

from exporter.engine import ProbeContext, ProtocolOutcome
from exporter.errors import DecodeError
from exporter.states import PortState, Reason
from exporter.wire.mssqlr import decode_svr_resp, encode_clnt_ucast_ex


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Ask for every instance; details: ``details["mssql"]`` (a tuple of ``SqlInstance``)."""
    evidence = await ctx.udp(encode_clnt_ucast_ex(), accept=lambda d: d[:1] == b"\x05")
    if evidence.state is not PortState.LISTENING:
        return ctx.unanswered(evidence, "SQL Server Browser")
    try:
        instances = decode_svr_resp(evidence.data)
    except DecodeError as exc:
        return ProtocolOutcome(PortState.LISTENING, Reason.PROTOCOL_ERROR, error=f"SVR_RESP: {exc}")
    return ProtocolOutcome(PortState.LISTENING, Reason.PROTOCOL_REPLY, {"mssql": instances})

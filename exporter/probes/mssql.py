"""SQL Server Browser (1434 UDP): MC-SQLR CLNT_UCAST_EX, answered by SVR_RESP with the instance list.

PortQry's "SQL Server 2000 named instances" query: ServerName, InstanceName, IsClustered, Version,
tcp port and named pipe of every instance (MC-SQLR 2.2.2 and 2.2.5), parsed by :mod:`exporter.wire.mssqlr`.
"""

from __future__ import annotations

from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.states import Finding
from exporter.wire.mssqlr import decode_svr_resp, encode_clnt_ucast_ex


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Ask for every instance; details: ``details["mssql"]`` (a tuple of ``SqlInstance``)."""
    instances = await ctx.udp_query(
        encode_clnt_ucast_ex(), decode_svr_resp, what="SQL Server Browser", accept=lambda d: d[:1] == b"\x05"
    )
    if isinstance(instances, ProtocolOutcome):
        return instances
    return ctx.outcome(Finding.PARSED, {"mssql": instances})

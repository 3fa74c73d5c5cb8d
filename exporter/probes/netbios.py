"""NetBIOS name service (137 UDP): a node-status query, RFC 1002 sections 4.2.17 and 4.2.18.

PortQry sends a NetBIOS adapter-status query and prints the MAC address.  We send it on the engine's
connected UDP socket (impacket's ``NetBIOS`` would retry silently and lose the ICMP evidence) and parse
the names, their suffixes and group flags, and the MAC with :mod:`exporter.wire.nbstat`.
"""

from __future__ import annotations

import secrets

from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.states import Finding
from exporter.wire.nbstat import decode_node_status_response, encode_node_status_request


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Ask the node status of ``*``; details: ``details["netbios"]`` (:class:`~exporter.wire.nbstat.NodeStatus`)."""
    tid = 1 + secrets.randbelow((1 << 16) - 1)
    status = await ctx.udp_query(
        encode_node_status_request(tid),
        decode_node_status_response,
        what="NetBIOS node status",
        accept=lambda d: len(d) >= 2 and int.from_bytes(d[:2], "big") == tid,
    )
    if isinstance(status, ProtocolOutcome):
        return status
    return ctx.outcome(Finding.PARSED, {"netbios": status})

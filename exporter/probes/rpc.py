"""RPC endpoint mapper (135 TCP and UDP): dump every registered endpoint, then probe the dynamic ports.

TCP: impacket binds to the endpoint mapper and we page through ``ept_lookup`` (see
:mod:`exporter.adapters.impacket`).  UDP: connectionless DCE/RPC (protocol version 4, C706 chapter 12),
which impacket lacks, built by :mod:`exporter.wire.clrpc`.  Each entry keeps its interface UUID and
version, annotation, known interface name and string binding.

The follow-up probes every distinct ``ncacn_ip_tcp`` port the mapper returned, **on the address we
queried**: a binding's own address may be 0.0.0.0, NATed, or one we must never contact.  "135 is open
but the dynamic RPC port is filtered" is the classic AD failure this catches.  PortQry prints the dump; it
does not check the ports.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable

from exporter.adapters.impacket import EpmSession
from exporter.errors import DecodeError, ProtocolError
from exporter.model import DynamicPort, RpcDetails
from exporter.probes.blocking import run_blocking
from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.states import Finding, PortState
from exporter.wire import clrpc, dcerpc, epm

#: The most distinct dynamic ports probed after one dump.
MAX_DYNAMIC_PORTS = 256
#: The most interface labels kept per dynamic port (a hostile mapper cannot explode the series count).
MAX_INTERFACES_PER_PORT = 32
#: Entries asked in the first connectionless page: small enough for one unfragmented datagram from any mapper.
CL_FIRST_ENTS = 8
#: The most entries asked per connectionless page: the ask doubles after each page the peer answered in one
#: datagram (a Windows DC's 300-430 entries take about 10 pages instead of 54).
CL_MAX_ENTS = 64
CL_MAX_PAGES = 64


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Dump the endpoint mapper over ``ctx.protocol`` and probe the dynamic TCP ports it lists."""
    if ctx.protocol == "udp":
        return await _probe_udp(ctx)
    return await _probe_tcp(ctx)


async def _probe_tcp(ctx: ProbeContext) -> ProtocolOutcome:
    budget = max(ctx.remaining() - ctx.options.timeout_seconds, ctx.remaining() / 2, 0.001)
    session = EpmSession(ctx.address, ctx.port, timeout=ctx.options.timeout_seconds)
    deadline = time.monotonic() + budget
    try:
        dump = await run_blocking(
            lambda: session.lookup_all(deadline=deadline), timeout=budget + 0.2, cancel=session.close
        )
    except ProtocolError as exc:
        return ctx.outcome(Finding.REFUSED, error=str(exc), cause=exc)
    except DecodeError as exc:
        return ctx.outcome(Finding.GARBLED, error=f"endpoint mapper reply: {exc}", cause=exc)
    except TimeoutError:
        if session.connected:  # connected, then silent or too slow: a mapper that does not answer (as LDAP's)
            return ctx.outcome(Finding.STALLED, error="endpoint mapper: connected, no whole reply in time")
        return ctx.outcome(Finding.UNREACHED, error="endpoint mapper: no connection in time")
    entries = tuple(e for page in dump.pages for e in page.entries)
    dynamic = await _probe_dynamic(ctx, entries)
    details = RpcDetails(
        via="tcp",
        entries=entries,
        protocol_sequence_counts=epm.protocol_sequence_counts(entries),
        dynamic_ports=dynamic,
        pages=len(dump.pages),
        status=dump.fault_status,
        status_name=dcerpc.status_name(dump.fault_status) if dump.fault_status is not None else "",
    )
    if dump.fault_status is not None and not entries:
        return ctx.outcome(Finding.REFUSED, {"rpc": details}, f"endpoint mapper fault {details.status_name}")
    return ctx.outcome(Finding.PARSED, {"rpc": details}, dump.error)


async def _probe_dynamic(ctx: ProbeContext, entries: Iterable[epm.EpmEntry]) -> tuple[DynamicPort, ...]:
    by_port = dict(
        epm.dynamic_tcp_ports(
            entries, mapper_port=ctx.port, max_ports=MAX_DYNAMIC_PORTS, max_labels=MAX_INTERFACES_PER_PORT
        )
    )
    evidence = await asyncio.gather(*(ctx.follow_up_tcp(p) for p in by_port))
    return tuple(
        DynamicPort(p, labels, ev.state.value, ev.reason.value)
        for (p, labels), ev in zip(by_port.items(), evidence, strict=True)
    )


def _ours(act_id: uuid.UUID, seqnum: int, fragments: clrpc.Reassembly) -> Callable[[bytes], bool]:
    want = str(act_id)

    def accept(data: bytes) -> bool:
        try:
            pdu = clrpc.decode_pdu(data)
        except DecodeError:
            return False
        if pdu.act_id != want or pdu.seqnum != seqnum:
            return False
        if pdu.ptype != clrpc.PTYPE_RESPONSE or not pdu.flags1 & clrpc.PF_FRAG:
            return True
        try:  # a fragment: keep waiting for the rest (the reply is accepted once complete)
            return fragments.add(pdu)
        except DecodeError:
            return True  # past the caps: the probe reports fragments.failure

    return accept


async def _probe_udp(ctx: ProbeContext) -> ProtocolOutcome:
    """Page through ``ept_lookup`` over connectionless RPC (C706 12.5), one activity, ``seqnum`` 0, 1, ... per page.

    Only the first datagram waits for the address's UDP pacing slot: the later pages are one conversation the
    peer is answering.  A page left unanswered (or the deadline) after earlier pages ends the dump with the
    entries read so far: LISTENING, with ``error`` saying the dump is partial and ``details.pages`` how far it got.
    """
    act_id = uuid.uuid4()
    handle = epm.NULL_ENTRY_HANDLE
    server_boot = 0
    entries: list[epm.EpmEntry] = []
    pages = 0
    max_ents = CL_FIRST_ENTS
    partial = f"partial endpoint-mapper dump: stopped after {CL_MAX_PAGES} pages"
    for seqnum in range(CL_MAX_PAGES):
        if seqnum and ctx.remaining() <= 0:
            partial = f"partial endpoint-mapper dump: deadline after {pages} pages"
            break
        payload = clrpc.encode_ept_lookup_request(
            act_id, seqnum=seqnum, max_ents=max_ents, entry_handle=handle, server_boot=server_boot
        )
        fragments = clrpc.Reassembly()
        evidence = await ctx.udp_exchange(payload, accept=_ours(act_id, seqnum, fragments), paced=seqnum == 0)
        if evidence.state is not PortState.LISTENING:
            if seqnum == 0:
                return ctx.unanswered(evidence, "RPC endpoint mapper")
            why = "deadline" if ctx.remaining() <= 0 else f"no reply to page {seqnum + 1}"
            partial = f"partial endpoint-mapper dump: {why} after {pages} pages"
            break
        try:
            pdu = clrpc.decode_pdu(evidence.data)
        except DecodeError as exc:
            return ctx.outcome(Finding.GARBLED, error=f"endpoint mapper reply: {exc}", cause=exc)
        if pdu.act_id != str(act_id):
            return ctx.outcome(Finding.GARBLED, error="reply for another activity")
        if pdu.ptype in (clrpc.PTYPE_REJECT, clrpc.PTYPE_FAULT):
            details = RpcDetails(
                "udp",
                tuple(entries),
                epm.protocol_sequence_counts(entries),
                (),
                pages,
                pdu.status,
                pdu.status_name,
            )
            finding = Finding.REFUSED if not entries else Finding.PARSED
            return ctx.outcome(finding, {"rpc": details}, f"endpoint mapper {pdu.ptype_name}: {pdu.status_name}")
        if pdu.ptype != clrpc.PTYPE_RESPONSE:
            return ctx.outcome(Finding.GARBLED, error=f"unexpected {pdu.ptype_name} PDU")
        fragmented = bool(pdu.flags1 & clrpc.PF_FRAG)
        try:
            body = fragments.body() if fragmented else pdu.body
            page = epm.decode_ept_lookup_response(body, little_endian=pdu.little_endian, max_ents=max_ents)
        except DecodeError as exc:
            return ctx.outcome(Finding.GARBLED, error=f"endpoint mapper reply: {exc}", cause=exc)
        pages += 1
        entries.extend(page.entries)
        handle, server_boot = page.entry_handle, pdu.server_boot
        if page.is_last:
            partial = ""
            break
        if not fragmented:
            max_ents = min(max_ents * 2, CL_MAX_ENTS)
    details = RpcDetails("udp", tuple(entries), epm.protocol_sequence_counts(entries), (), pages)
    return ctx.outcome(Finding.PARSED, {"rpc": details}, partial)

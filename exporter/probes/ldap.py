"""LDAP (389 UDP/TCP, 3268 TCP; 636 and 3269 over TLS): the rootDSE, and over UDP the LDAP ping.

An anonymous base-object search of the rootDSE (RFC 4511 section 4.5.1; AD's attributes in MS-ADTS
3.1.1.3.2), which PortQry prints.  Over UDP (CLDAP) we also send the MS-ADTS 6.3.3 "LDAP ping" (the
``Netlogon`` attribute with a ``(&(DnsDomain=...)(NtVer=...))`` filter), parsed into the DC's DS_FLAG bits,
domain, forest, DC name and site names.  Without a configured ``domain`` the filter is ``(NtVer=...)`` alone
(MS-ADTS 6.3.3.2) and any DC answers for its own domain.  The clock offset (DC ``currentTime`` minus our
clock at the reply) is kept: Kerberos fails beyond five minutes.  Bindings: ``ldap`` (plain) and ``ldaps``
(TLS first; also records the TLS details, the certificate checked against the target's
:class:`~exporter.probes.tls.CertificatePolicy`).  On tcp/389, with ``posture_checks`` on, the rootDSE reply
is followed by the transport-rule checks of :mod:`exporter.probes.ldap_posture` (a simple bind meant to fail,
StartTLS), which add their details and never change the port's state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time

from exporter.errors import DecodeError, ProtocolError, plain_error
from exporter.model import Detail, LdapDetails
from exporter.probes import ldap_posture
from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.probes.tls import CertificatePolicy, client_context, describe
from exporter.states import Finding, PortState
from exporter.wire.ldap import (
    MAX_REPLY_BYTES,
    SearchReplyEnd,
    decode_search_response,
    encode_ldap_ping,
    encode_root_dse_search,
)
from exporter.wire.netlogon import decode_netlogon
from exporter.wire.rootdse import RootDSE, parse_root_dse

#: NtVer asked in the LDAP ping: V5 | V5EX | V5EX_WITH_CLOSEST_SITE (MS-ADTS 6.3.1.1), as Windows clients send
#: (without V5EX_WITH_IP, so the reply carries no DC address: we already know the address we asked).
NT_VERSION = 0x16


def _offset(dse: RootDSE, received: float) -> float | None:
    return None if dse.current_time is None else round(dse.current_time.timestamp() - received, 3)


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Read the rootDSE over ``ctx.protocol`` (and TLS for ``ldaps``); over UDP also send the LDAP ping."""
    if ctx.protocol == "udp":
        return await _probe_udp(ctx)
    return await _probe_tcp(ctx, tls=ctx.binding == "ldaps")


async def _probe_udp(ctx: ProbeContext) -> ProtocolOutcome:
    msg_id = 1 + secrets.randbelow((1 << 31) - 1)
    dse = await ctx.udp_query(
        encode_root_dse_search(msg_id), lambda data: parse_root_dse(decode_search_response(data)), what="LDAP"
    )
    if isinstance(dse, ProtocolOutcome):
        return dse
    received = time.time()
    # MS-ADTS 6.3.3.2: without DnsDomain in the filter the DC answers for its own domain
    domain = ctx.params.domain
    netlogon = None
    ping_error = ""
    ping = await ctx.udp_exchange(encode_ldap_ping(msg_id + 1, domain or None, NT_VERSION))
    if ping.state is not PortState.LISTENING:
        ping_error = f"no reply to the LDAP ping ({ping.reason.value})"
    else:
        try:
            raw = decode_search_response(ping.data).netlogon
            if raw is None:
                ping_error = "LDAP ping reply without a Netlogon attribute"
            else:
                netlogon = decode_netlogon(raw)
        except DecodeError as exc:
            ping_error = f"LDAP ping reply: {plain_error(exc)}"
    details = LdapDetails(dse, _offset(dse, received), netlogon, domain, ping_error)
    return ctx.outcome(Finding.PARSED, {"ldap": details}, ping_error)


async def _probe_tcp(ctx: ProbeContext, *, tls: bool) -> ProtocolOutcome:
    details: dict[str, Detail] = {}
    notes: list[str] = []

    def record_tls(writer: asyncio.StreamWriter) -> None:
        tls_details, error = describe(writer.get_extra_info("ssl_object"), CertificatePolicy.of(ctx))
        if tls_details is not None:
            details["tls"] = tls_details
        if error:
            notes.append(error)

    reply_end = SearchReplyEnd()
    reply = await ctx.tcp_exchange(
        encode_root_dse_search(1 + secrets.randbelow((1 << 31) - 1)),
        reply_end,
        what="LDAP",
        limit=MAX_REPLY_BYTES,
        tls=client_context() if tls else None,
        on_open=record_tls if tls else None,
    )
    if isinstance(reply, ProtocolOutcome):
        return dataclasses.replace(reply, details=details)
    received = time.time()
    if ldap_posture.applies(ctx):
        details.update(await ldap_posture.posture_details(ctx))
    try:  # on the event loop: the decoder's caps bound a reply to a few milliseconds of CPU
        dse = parse_root_dse(decode_search_response(reply[: reply_end.end]))
    except ProtocolError as exc:
        return ctx.outcome(Finding.REFUSED, details, plain_error(exc), cause=exc)
    except DecodeError as exc:
        return ctx.outcome(Finding.GARBLED, details, f"LDAP reply: {plain_error(exc)}", cause=exc)
    details["ldap"] = LdapDetails(dse, _offset(dse, received))
    return ctx.outcome(Finding.PARSED, details, "; ".join(notes))

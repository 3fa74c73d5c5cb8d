"""SMB (445 TCP): the security posture a negotiate shows, with no session setup, no user and no password.

Two negotiates, each on its own connection (see :mod:`exporter.adapters.smb`): the multi-protocol negotiate
Windows clients send (then the SMB2 NEGOTIATE offering 2.0.2 to 3.1.1) gives the dialect, whether the server
requires signing (MS-SMB2 2.2.4 ``SecurityMode``) and the authentication mechanisms of its SPNEGO token
(RFC 4178, :mod:`exporter.wire.spnego`); a second negotiate offering only ``NT LM 0.12`` tells whether SMB1
is still accepted.  The second one runs only when the first did not already land on SMB1.

Signing not required on a DC (relay attacks, KB 887429) and SMB1 still enabled (MS17-010) are the two
findings an AD operator alerts on; both are read from what the server says before any authentication.

Check by hand::

    nmap -p445 --script smb-protocols,smb2-security-mode 198.18.0.2
"""

from __future__ import annotations

import time

from exporter.adapters.smb import SMB1_DIALECT, SmbConnectionLost, SmbNegotiate, SmbNegotiator, SmbUnreachable
from exporter.errors import DecodeError, ProtocolError, plain_error
from exporter.model import SmbDetails
from exporter.probes.blocking import run_blocking
from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.states import Finding
from exporter.wire.spnego import decode_neg_token_init


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Negotiate twice with the SMB server on ``ctx.port`` and keep :class:`~exporter.model.SmbDetails`.

    Findings: both negotiates answered ``PARSED``; the first refused (an error status, no dialect)
    ``REFUSED``; garbage, or a reply that stops part-way, ``GARBLED``; no reply by the deadline, or the
    connection closed without a reply, ``STALLED``; the port could not be reached again ``UNREACHED``.
    """
    budget = max(ctx.remaining() - 0.1, 0.001)
    negotiator = SmbNegotiator(ctx.address, ctx.port, timeout=ctx.options.timeout_seconds)
    deadline = time.monotonic() + budget

    def both() -> tuple[SmbNegotiate, bool | None, str]:
        first = negotiator.negotiate(deadline=deadline)
        if first.dialect == SMB1_DIALECT:
            return first, True, ""
        try:
            accepted, why = negotiator.smb1_accepted(deadline=deadline)
        except (TimeoutError, ProtocolError) as exc:
            return first, None, f"SMB1 check: {plain_error(exc)}"
        return first, accepted, why

    try:
        first, smb1, note = await run_blocking(both, timeout=budget + 0.2, cancel=negotiator.close)
    except SmbUnreachable as exc:
        return ctx.outcome(Finding.UNREACHED, error=str(exc), cause=exc)
    except SmbConnectionLost as exc:
        return ctx.outcome(Finding.STALLED, error=str(exc), cause=exc)
    except ProtocolError as exc:
        return ctx.outcome(Finding.REFUSED, error=str(exc), cause=exc)
    except DecodeError as exc:
        return ctx.outcome(Finding.GARBLED, error=f"SMB negotiate reply: {exc}", cause=exc)
    except TimeoutError:
        return ctx.outcome(Finding.STALLED, error="SMB negotiate: no reply in time")
    mechanisms: tuple[str, ...] = ()
    auth_error = ""
    if first.security_blob:
        try:
            mechanisms = decode_neg_token_init(first.security_blob)
        except DecodeError as exc:
            auth_error = f"SPNEGO token: {exc}"
    else:
        auth_error = "the negotiate response carries no SPNEGO token"
    details = SmbDetails(
        dialect=first.dialect,
        signing_enabled=first.signing_enabled,
        signing_required=first.signing_required,
        smb1_enabled=smb1,
        smb1_note=note,
        auth_mechanisms=mechanisms,
        auth_error=auth_error,
    )
    error = "; ".join(part for part in (note if smb1 is None else "", auth_error) if part)
    return ctx.outcome(Finding.PARSED, {"smb": details}, error)

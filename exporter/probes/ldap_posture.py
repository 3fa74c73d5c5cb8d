"""LDAP transport rules on tcp/389 (a posture check): are simple binds over plain text refused, is StartTLS offered.

Run by the ``ldap`` probe of tcp/389 after its rootDSE reply, when ``posture_checks`` is on, in every round.
Two checks, each on its own connection, concurrently, each step bounded by the probe's deadline:

- **bind**: one simple BindRequest (RFC 4511 4.2) with a made-up DN, ``cn=portqry-posture-check-<16 hex>,
  dc=invalid`` (``dc=invalid``: RFC 2606's reserved name, no directory holds it), and a made-up password,
  16 random bytes as 32 hex characters, both new for every probe and never configurable.  No SASL, no other
  bind.  The BindResponse's resultCode is the finding: ``strongerAuthRequired`` (8) means the server refuses
  plain-text simple binds (Samba's default; LDAP signing required on Windows); ``invalidCredentials`` (49)
  means it would check a password sent in clear text.
- **StartTLS**: the extended request 1.3.6.1.4.1.1466.20037 (RFC 4511 4.14).  ``success`` (0) means offered;
  then the same connection is upgraded to TLS with the observing client context and its certificate described
  under the target's :class:`~exporter.probes.tls.CertificatePolicy`, as on 636.  A server without StartTLS
  answers ``protocolError`` (2) or ``unavailable`` (52).

Neither changes the port's state or reason (the rootDSE search decides them): a check that cannot finish keeps
its error text in its detail.  Check by hand: see :mod:`exporter.wire.ldap_bind`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import ssl

from exporter.errors import DecodeError, plain_error
from exporter.model import Detail, LdapBindCheck, StartTlsCheck, TlsDetails
from exporter.probes.context import ProbeContext
from exporter.probes.tls import CertificatePolicy, client_context, describe
from exporter.wire.ldap import message_length
from exporter.wire.ldap_bind import (
    MAX_RESPONSE_BYTES,
    OP_BIND_RESPONSE,
    OP_EXTENDED_RESPONSE,
    LdapResponse,
    decode_response,
    encode_simple_bind,
    encode_start_tls,
)

#: The port whose ``ldap`` probe runs the checks (plain LDAP; 3268 is the global catalog, 636/3269 are TLS).
POSTURE_PORT = 389
#: The made-up DN's suffix: the reserved TLD ``invalid`` (RFC 2606), in no directory.
MADE_UP_SUFFIX = "dc=invalid"

_FAILURES = (OSError, TimeoutError, EOFError, DecodeError)


def applies(ctx: ProbeContext) -> bool:
    """Whether ``ctx`` runs the checks: ``posture_checks`` on, and the ``ldap`` binding of tcp/:data:`POSTURE_PORT`."""
    return ctx.options.posture_checks and ctx.binding == "ldap" and ctx.protocol == "tcp" and ctx.port == POSTURE_PORT


def made_up_credentials() -> tuple[str, bytes]:
    """A new made-up bind DN and password: ``cn=portqry-posture-check-<16 hex>,dc=invalid`` and 32 hex characters."""
    return f"cn=portqry-posture-check-{secrets.token_hex(8)},{MADE_UP_SUFFIX}", secrets.token_hex(16).encode()


async def posture_details(ctx: ProbeContext) -> dict[str, Detail]:
    """Run both checks; returns ``{"ldap_bind": ..., "ldap_starttls": ...}`` plus ``"starttls"`` after a handshake.

    Never raises for what the peer does: every failure is an error text in its detail.
    """
    bind, (starttls, tls) = await asyncio.gather(check_bind(ctx), check_start_tls(ctx))
    details: dict[str, Detail] = {"ldap_bind": bind, "ldap_starttls": starttls}
    if tls is not None:
        details["starttls"] = tls
    return details


async def check_bind(ctx: ProbeContext) -> LdapBindCheck:
    """Send one simple bind with made-up credentials (:func:`made_up_credentials`) and read its resultCode."""
    dn, password = made_up_credentials()
    message_id = 1 + secrets.randbelow((1 << 31) - 1)
    started = _now()
    try:
        reader, writer = await ctx.open_tcp()
    except (OSError, TimeoutError) as exc:
        return LdapBindCheck(dn, None, error=f"bind: connect: {plain_error(exc, waited=_now() - started)}")
    try:
        response, _rest = await _ask(
            ctx, reader, writer, encode_simple_bind(message_id, dn, password), message_id, OP_BIND_RESPONSE
        )
    except _FAILURES as exc:
        return LdapBindCheck(dn, None, error=_failed("bind", exc, _now() - started))
    finally:
        writer.transport.abort()
    if response.disconnected:
        return LdapBindCheck(dn, None, error=_notice("bind", response))
    return LdapBindCheck(dn, response.result_code, response.result_name, response.diagnostic_message)


async def check_start_tls(ctx: ProbeContext) -> tuple[StartTlsCheck, TlsDetails | None]:
    """Send the StartTLS request; after ``success`` upgrade the connection to TLS and describe its certificate."""
    message_id = 1 + secrets.randbelow((1 << 31) - 1)
    started = _now()
    try:
        reader, writer = await ctx.open_tcp()
    except (OSError, TimeoutError) as exc:
        return StartTlsCheck(None, error=f"StartTLS: connect: {plain_error(exc, waited=_now() - started)}"), None
    try:
        try:
            response, rest = await _ask(
                ctx, reader, writer, encode_start_tls(message_id), message_id, OP_EXTENDED_RESPONSE
            )
        except _FAILURES as exc:
            return StartTlsCheck(None, error=_failed("StartTLS", exc, _now() - started)), None
        if response.disconnected:
            return StartTlsCheck(None, error=_notice("StartTLS", response)), None
        check = StartTlsCheck(response.result_code, response.result_name, response.diagnostic_message)
        if response.result_code != 0:
            return check, None
        if rest:
            return _tls_failed(check, f"{len(rest)} bytes after the StartTLS response, before the TLS handshake")
        started = _now()
        try:
            await asyncio.wait_for(
                writer.start_tls(client_context(), server_hostname=ctx.server_name), max(ctx.remaining(), 0.001)
            )
        except ssl.SSLError as exc:
            return _tls_failed(check, f"TLS handshake: {plain_error(exc)}")
        except (OSError, TimeoutError, EOFError) as exc:
            return _tls_failed(check, f"TLS handshake: {plain_error(exc, waited=_now() - started)}")
        tls, error = describe(writer.get_extra_info("ssl_object"), CertificatePolicy.of(ctx))
        return (dataclasses.replace(check, tls_error=error) if error else check), tls
    finally:
        writer.transport.abort()  # no close_notify wait (see ProbeContext.tcp_exchange)


async def _ask(
    ctx: ProbeContext,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    message_id: int,
    operation: int,
) -> tuple[LdapResponse, bytes]:
    """Send ``request``, read one LDAPMessage: ``(its response, the bytes read after it)``."""
    writer.write(request)
    await asyncio.wait_for(writer.drain(), max(ctx.remaining(), 0.001))
    buf = await ctx.read_message(
        reader, lambda b: message_length(b, limit=MAX_RESPONSE_BYTES), limit=MAX_RESPONSE_BYTES
    )
    end = message_length(buf, limit=MAX_RESPONSE_BYTES) or len(buf)
    return decode_response(buf[:end], message_id=message_id, operation=operation), buf[end:]


def _tls_failed(check: StartTlsCheck, error: str) -> tuple[StartTlsCheck, None]:
    return dataclasses.replace(check, tls_error=error), None


def _failed(what: str, exc: BaseException, waited: float) -> str:
    if isinstance(exc, DecodeError):
        return f"{what} reply: {exc}"
    return f"{what}: {plain_error(exc, waited=waited)}"


def _notice(what: str, response: LdapResponse) -> str:
    said = f": {response.diagnostic_message}" if response.diagnostic_message else ""
    return f"{what}: the server disconnected (notice of disconnection, {response.result_name}{said})"


def _now() -> float:
    return asyncio.get_running_loop().time()

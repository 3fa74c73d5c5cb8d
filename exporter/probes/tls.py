"""TLS (636 LDAPS, 3269 GC over TLS, and any port bound to ``tls``): handshake and certificate.

We observe, we do not trust: no certificate or host name verification; a self-signed certificate is fine.
Details: protocol version, cipher, and the server certificate's subject, issuer and notAfter
(``portqry_tls_cert_not_after_timestamp_seconds``).  Bind another port with ``protocols = {"tcp/8443" = "tls"}``.
"""

from __future__ import annotations

import ssl

from exporter.errors import DecodeError, plain_error
from exporter.model import TlsDetails
from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.states import Finding
from exporter.wire.x509 import CertificateSummary, parse_certificate


def client_context() -> ssl.SSLContext:
    """An observing TLS client context: no verification, old protocol versions allowed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return context


def describe(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> tuple[TlsDetails | None, str]:
    """Summarise an established TLS connection; returns ``(details, error)``."""
    if ssl_object is None:
        return None, "no TLS session"
    der = ssl_object.getpeercert(binary_form=True) or b""
    cipher = ssl_object.cipher()
    error = ""
    cert: CertificateSummary | None = None
    try:
        cert = parse_certificate(der)
    except DecodeError as exc:
        error = plain_error(exc)
    return TlsDetails(ssl_object.version() or "", cipher[0] if cipher else "", cert), error


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Complete a TLS handshake on the port and read the certificate.

    Returns:
        LISTENING/``protocol-reply`` with ``details["tls"]`` (:class:`~exporter.model.TlsDetails`);
        LISTENING/``protocol-error`` when the port accepted TCP but the handshake failed.
    """
    opened = await ctx.connect(what="TLS", tls=client_context())
    if isinstance(opened, ProtocolOutcome):
        return opened
    _reader, writer = opened
    try:
        details, error = describe(writer.get_extra_info("ssl_object"))
    finally:
        writer.transport.abort()  # no 30 s wait for a close_notify (see ProbeContext.tcp_exchange)
    if details is None:
        return ctx.outcome(Finding.GARBLED, error=error)
    return ctx.outcome(Finding.PARSED, {"tls": details}, error)

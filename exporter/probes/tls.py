"""TLS (636 LDAPS, 3269 GC over TLS, and any port bound to ``tls``): handshake and certificate.

We observe, we do not trust: the handshake verifies nothing, so a self-signed, expired or wrong-name certificate
still gives LISTENING with its details.  From the chain the server sent (no packet more) :func:`describe_chain`
reads the certificate's dates, purpose (server-authentication EKU), host name (RFC 6125), chain depth, signature
algorithm and key, then verifies the chain in memory with OpenSSL against the system store or the target's
``tls_ca_file`` (:func:`exporter.adapters.openssl.verify_chain`): a separate 1/0, never a failed probe.  Bind
another port with ``protocols = {"tcp/8443" = "tls"}``.

The chain as sent: Python 3.11's :mod:`ssl` has no public ``get_unverified_chain`` (3.13 has); its
``SSLObject._sslobj.get_unverified_chain()`` gives it (checked in 3.11.7).  Without either, only the leaf is
read and ``chain_as_sent`` is false (depth 1).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from exporter.adapters.openssl import verify_chain
from exporter.errors import DecodeError, plain_error
from exporter.model import TlsDetails
from exporter.probes.context import ProbeContext, ProtocolOutcome
from exporter.states import Finding
from exporter.wire.x509 import CertificateChecks, CertificateSummary, check_certificates, parse_certificate

_ENCODING_DER = 2  # _ssl.ENCODING_DER


@dataclass(frozen=True, slots=True)
class CertificatePolicy:
    """What a server's certificate is checked against.

    Attributes:
        name: the host the certificate should name (a DNS name, or an IP literal); ``""``: no name check.
        ca_file: a PEM file of trusted CAs; ``""``: the system store.
    """

    name: str = ""
    ca_file: str = ""

    @classmethod
    def of(cls, ctx: ProbeContext) -> CertificatePolicy:
        """The target's policy: its configured host (name or address) and its ``tls_ca_file``."""
        return cls(ctx.host, ctx.params.tls_ca_file)


def client_context() -> ssl.SSLContext:
    """An observing TLS client context: no verification, old protocol versions allowed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return context


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[tuple[bytes, ...], bool]:
    """The DER certificates the server sent, leaf first, and whether that is the whole chain as sent.

    Python 3.13's ``get_unverified_chain()``, else 3.10-3.12's private ``_sslobj.get_unverified_chain()``,
    else the leaf only (``False``).  OpenSSL bounds the list (its certificate-list limit, 100 KiB).
    """
    public = getattr(ssl_object, "get_unverified_chain", None)
    private = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    try:
        if public is not None:
            return tuple(bytes(der) for der in public() or ()), True
        if private is not None:
            return tuple(cert.public_bytes(_ENCODING_DER) for cert in private() or ()), True
    except (ssl.SSLError, ValueError, AttributeError):
        pass
    leaf = ssl_object.getpeercert(binary_form=True)
    return ((leaf,) if leaf else ()), False


def describe(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None, policy: CertificatePolicy | None = None
) -> tuple[TlsDetails | None, str]:
    """Summarise an established TLS connection (see :func:`describe_chain`); returns ``(details, error)``.

    Args:
        ssl_object: the connection's TLS object (``writer.get_extra_info("ssl_object")``), or ``None``.
        policy: what to check the certificate against (:meth:`CertificatePolicy.of` the probe's context);
            default: the SNI name sent and the system store.
    """
    if ssl_object is None:
        return None, "no TLS session"
    policy = policy or CertificatePolicy(ssl_object.server_hostname or "")
    chain, as_sent = peer_chain(ssl_object)
    cipher = ssl_object.cipher()
    return describe_chain(
        chain, policy, version=ssl_object.version() or "", cipher=cipher[0] if cipher else "", chain_as_sent=as_sent
    )


def describe_chain(
    chain: Sequence[bytes],
    policy: CertificatePolicy,
    *,
    version: str = "",
    cipher: str = "",
    chain_as_sent: bool = True,
    now: datetime | None = None,
) -> tuple[TlsDetails, str]:
    """The details of a server's certificate chain: identity and dates, checks, and the in-memory verification.

    Args:
        chain: DER certificates as the server sent them, leaf first (empty: none sent).
        policy: the host name to match and the CA file to verify against.
        version: the negotiated TLS version (``TLSv1.3``).
        cipher: the negotiated cipher suite.
        chain_as_sent: ``chain`` is the whole chain as sent (false: the leaf only).
        now: the time ``days_left`` counts from (default: now).

    Returns:
        ``(details, error)``: ``error`` says why the leaf could not be read (then ``certificate`` and ``checks``
        are ``None``), or is ``""``.  Never raises on bad certificates.
    """
    now = now or datetime.now(UTC)
    certificate: CertificateSummary | None = None
    checks: CertificateChecks | None = None
    if not chain:
        return TlsDetails(version, cipher, None), "no server certificate"
    error = ""
    try:
        certificate = parse_certificate(chain[0])
        checks = check_certificates(chain, name=policy.name, now=now, chain_as_sent=chain_as_sent)
    except DecodeError as exc:
        error = f"server certificate: {plain_error(exc)}"
    verification = verify_chain(chain, policy.ca_file)
    details = TlsDetails(
        version,
        cipher,
        certificate,
        checks,
        verification.verified,
        verification.error,
        verification.store,
    )
    return details, error


async def probe(ctx: ProbeContext) -> ProtocolOutcome:
    """Complete a TLS handshake on the port and read the certificate chain.

    Returns:
        LISTENING/``protocol-reply`` with ``details["tls"]`` (:class:`~exporter.model.TlsDetails`);
        LISTENING/``protocol-error`` when the port accepted TCP but the handshake failed.
    """
    opened = await ctx.connect(what="TLS", tls=client_context())
    if isinstance(opened, ProtocolOutcome):
        return opened
    _reader, writer = opened
    try:
        details, error = describe(writer.get_extra_info("ssl_object"), CertificatePolicy.of(ctx))
    finally:
        writer.transport.abort()  # no 30 s wait for a close_notify (see ProbeContext.tcp_exchange)
    if details is None:
        return ctx.outcome(Finding.GARBLED, error=error)
    return ctx.outcome(Finding.PARSED, {"tls": details}, error)

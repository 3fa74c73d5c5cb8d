"""X.509 certificates (RFC 5280 section 4.1): the few fields an operator watches, from DER.

:func:`parse_certificate` (pyasn1-modules' RFC 5280 ASN.1) gives the identity and validity;
:func:`check_certificates` (``cryptography``'s x509) what a verifying client looks at in the chain a server sent:
the server-authentication purpose (RFC 5280 4.2.1.12), the host name (RFC 6125 6.4), the signature algorithm
and the key.  Pure bytes -> dataclass: no socket, no clock (the caller gives ``now``), no trust store.

Check by hand::

    openssl s_client -connect dc1.example.test:636 -showcerts </dev/null | openssl x509 -noout -text
"""

from __future__ import annotations

import functools
import ipaddress
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.error import PyAsn1Error
from pyasn1_modules import rfc5280

from exporter.errors import DecodeError

_SHORT = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.5": "serialNumber",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
}
MAX_CERT_BYTES = 64 * 1024
#: The most subjectAltName entries kept (all are matched).
MAX_NAMES = 64
#: Fit for TLS server authentication: serverAuth (1.3.6.1.5.5.7.3.1), or anyExtendedKeyUsage (2.5.29.37.0).
_SERVER_PURPOSES = frozenset({ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE})
_EKU_OID = ExtensionOID.EXTENDED_KEY_USAGE.dotted_string
_SAN_OID = ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string
#: The name source when a certificate without a DNS name in its subjectAltName is matched on its CN.
CN_FALLBACK = "subject CN, no DNS name in subjectAltName"


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    """A certificate's identity and validity.

    Attributes:
        subject: RFC 4514 string, most specific first (``CN=dc1.example.test,O=...``).
        issuer: RFC 4514 string.
        not_before: start of validity, UTC.
        not_after: end of validity, UTC.
        serial_number: the serial, as a hex string.
        self_signed: subject equals issuer.
    """

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    serial_number: str
    self_signed: bool


def _name(name: rfc5280.Name) -> str:
    parts: list[str] = []
    for rdn in name["rdnSequence"]:
        for atv in rdn:
            oid = str(atv["type"])
            try:
                value, _ = der_decoder.decode(bytes(atv["value"]))
                text = str(value.getComponent() if hasattr(value, "getComponent") else value)
            except (PyAsn1Error, UnicodeError, ValueError):
                text = bytes(atv["value"]).hex()
            text = text.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+")
            parts.append(f"{_SHORT.get(oid, oid)}={text}")
    return ",".join(reversed(parts))


def _time(t: rfc5280.Time) -> datetime:
    value = t.getComponent()
    dt: datetime = value.asDateTime
    return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)


#: Certificates up to this size are kept parsed (:func:`parse_certificate`): 256 of them, at most 1 MiB.
CACHED_CERT_BYTES = 4096


def parse_certificate(der: bytes) -> CertificateSummary:
    """Parse a DER certificate; one of at most :data:`CACHED_CERT_BYTES` seen lately is not decoded again.

    A server presents the same certificate every round, and pyasn1 takes about 1 ms for one.

    Args:
        der: the certificate, at most 64 KiB.

    Raises:
        DecodeError: not a DER X.509 certificate.
    """
    return _parse_cached(der) if len(der) <= CACHED_CERT_BYTES else _parse(der)


@functools.lru_cache(maxsize=256)
def _parse_cached(der: bytes) -> CertificateSummary:
    return _parse(der)


def _parse(der: bytes) -> CertificateSummary:
    if not der or len(der) > MAX_CERT_BYTES:
        raise DecodeError(f"certificate of {len(der)} bytes", 0)
    try:
        cert, _rest = der_decoder.decode(der, asn1Spec=rfc5280.Certificate())
        tbs = cert["tbsCertificate"]
        subject = _name(tbs["subject"])
        issuer = _name(tbs["issuer"])
        validity = tbs["validity"]
        return CertificateSummary(
            subject=subject,
            issuer=issuer,
            not_before=_time(validity["notBefore"]),
            not_after=_time(validity["notAfter"]),
            serial_number=format(int(tbs["serialNumber"]), "x"),
            self_signed=subject == issuer,
        )
    except (PyAsn1Error, ValueError, TypeError, KeyError) as exc:
        raise DecodeError("not an X.509 certificate", detail=f"{type(exc).__name__}: {exc}") from None


@dataclass(frozen=True, slots=True)
class CertificateChecks:
    """What a verifying TLS client looks at in the chain a server sent, read without trusting it.

    Attributes:
        chain_depth: certificates the server sent, leaf first (1 when only the leaf could be read).
        chain_as_sent: the chain is the one the server sent; false when the TLS library gave the leaf only.
        days_left: the leaf's notAfter minus ``now``, days (negative once expired).
        extended_key_usage: the leaf's extendedKeyUsage purposes (``serverAuth``, ``clientAuth``; an unknown
            one as its OID), in certificate order; empty when the extension is absent.
        eku_present: the leaf has an extendedKeyUsage extension (an unreadable one counts, with no purpose).
        server_auth: fit for TLS server authentication (RFC 5280 4.2.1.12): no extendedKeyUsage extension
            (no restriction: any purpose), or ``serverAuth`` (1.3.6.1.5.5.7.3.1) or ``anyExtendedKeyUsage``
            (2.5.29.37.0) among its purposes.
        names: the leaf's subjectAltName ``dNSName`` and ``iPAddress`` entries (the first :data:`MAX_NAMES`).
        name: the reference identity checked (the host we asked for, or its address), ``""`` for none.
        name_match: the leaf names ``name`` (RFC 6125 6.4); ``None`` without a name.
        name_source: where the match looked: ``"subjectAltName"``, or :data:`CN_FALLBACK` when the
            subjectAltName has no DNS name (RFC 6125 6.4.4), or ``"subjectAltName unreadable"`` (no match);
            ``""`` without a name.
        signature_algorithm: the leaf's signature algorithm (``sha256WithRSAEncryption``; unknown: the OID).
        key_type: ``RSA``, ``EC``, ``Ed25519``, ``Ed448`` or ``DSA``; ``""`` when the key could not be read.
        key_size: the public key's size in bits (RSA modulus, EC curve, DSA p; Ed25519 256, Ed448 456); 0 unknown.
        key_curve: the EC curve (``secp256r1``), else ``""``.
        error: why a fact could not be read (a malformed extension, an unsupported key), or ``""``.
    """

    chain_depth: int
    chain_as_sent: bool
    days_left: float
    extended_key_usage: tuple[str, ...]
    eku_present: bool
    server_auth: bool
    names: tuple[str, ...]
    name: str
    name_match: bool | None
    name_source: str
    signature_algorithm: str
    key_type: str
    key_size: int
    key_curve: str = ""
    error: str = ""


def load_certificate(der: bytes) -> x509.Certificate:
    """Load a DER certificate with ``cryptography``, tolerating a negative serial number.

    Samba's self-made certificates have negative serials (RFC 5280 4.1.2.2 forbids them); ``cryptography``
    loads them with a deprecation warning, silenced here.

    Raises:
        DecodeError: empty, over 64 KiB, or not a DER X.509 certificate.
    """
    if not der or len(der) > MAX_CERT_BYTES:
        raise DecodeError(f"certificate of {len(der)} bytes", 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise DecodeError("not an X.509 certificate", detail=f"{type(exc).__name__}: {exc}") from None


def check_certificates(
    chain: Sequence[bytes], *, name: str, now: datetime, chain_as_sent: bool = True
) -> CertificateChecks:
    """Read what a verifying client checks in a server's chain (no signature or trust check here).

    Args:
        chain: DER certificates as the server sent them, leaf first (only the leaf is decoded).
        name: the host we asked for (a DNS name or an IP literal); ``""`` skips the name check.
        now: the time ``days_left`` counts from (aware).
        chain_as_sent: ``chain`` is the whole chain as sent (false: the leaf only).

    Returns:
        The checks.  A malformed extension or key leaves its facts empty and says why in ``error``.

    Raises:
        DecodeError: the leaf is missing or not a DER certificate.
    """
    if not chain:
        raise DecodeError("no certificate", 0)
    cert = load_certificate(chain[0])
    errors: list[str] = []
    ext = _read_extensions(cert, chain[0], errors)
    purposes, eku_present, dns_names, ips = ext.purposes, ext.eku_present, ext.dns_names, ext.ips
    match: bool | None = None
    source = ""
    if name and ext.san_unreadable:
        match, source = False, "subjectAltName unreadable"
    elif name:
        match, source = _match(name, dns_names, ips, _common_names(cert, errors))
    key_type, key_size, curve = _key(cert, errors)
    oid = cert.signature_algorithm_oid
    return CertificateChecks(
        chain_depth=len(chain),
        chain_as_sent=chain_as_sent,
        days_left=round((cert.not_valid_after_utc - now).total_seconds() / 86400, 3),
        extended_key_usage=tuple(_oid_name(p) for p in purposes),
        eku_present=eku_present,
        server_auth=not eku_present or any(p in _SERVER_PURPOSES for p in purposes),
        names=(*dns_names, *(str(ip) for ip in ips))[:MAX_NAMES],
        name=name,
        name_match=match,
        name_source=source,
        signature_algorithm=_oid_name(oid),
        key_type=key_type,
        key_size=key_size,
        key_curve=curve,
        error="; ".join(errors),
    )


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    name = oid._name  # cryptography's table of names, "Unknown OID" for the rest
    return oid.dotted_string if name == "Unknown OID" else name


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(slots=True)
class _Extensions:
    """The leaf's extendedKeyUsage and subjectAltName facts."""

    purposes: list[x509.ObjectIdentifier] = field(default_factory=list)
    eku_present: bool = False
    dns_names: list[str] = field(default_factory=list)
    ips: list[IPAddress] = field(default_factory=list)
    san_unreadable: bool = False


def _read_extensions(cert: x509.Certificate, der: bytes, errors: list[str]) -> _Extensions:
    """EKU and SAN through ``cryptography``; when it refuses any extension (it parses them all at once, and more
    strictly than OpenSSL), the two through pyasn1, so that a quirk elsewhere does not hide them."""
    try:
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        errors.append(f"extensions: {str(exc)[:200]} (extendedKeyUsage and subjectAltName read with pyasn1)")
        return _asn1_extensions(der, errors)
    out = _Extensions()
    try:
        out.purposes = list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        out.eku_present = True
    except x509.ExtensionNotFound:
        pass
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return out
    out.dns_names = [n for n in san.get_values_for_type(x509.DNSName) if isinstance(n, str)]
    out.ips = [ip for ip in san.get_values_for_type(x509.IPAddress) if isinstance(ip, IPAddress)]
    return out


def _asn1_extensions(der: bytes, errors: list[str]) -> _Extensions:
    """RFC 5280 4.2.1.6 and 4.2.1.12 with pyasn1-modules; an unreadable one counts as present and unfit."""
    out = _Extensions()
    try:
        cert, _rest = der_decoder.decode(der, asn1Spec=rfc5280.Certificate())
        extensions = cert["tbsCertificate"]["extensions"]
        items = list(extensions) if extensions.isValue else []
    except (PyAsn1Error, ValueError, TypeError, KeyError):
        errors.append("extensions unreadable")
        out.eku_present = out.san_unreadable = True
        return out
    for item in items:
        oid, value = str(item["extnID"]), bytes(item["extnValue"])
        if oid == _EKU_OID:
            out.eku_present = True
            try:
                usage, _ = der_decoder.decode(value, asn1Spec=rfc5280.ExtKeyUsageSyntax())
                out.purposes += [x509.ObjectIdentifier(str(purpose)) for purpose in usage]
            except (PyAsn1Error, ValueError, TypeError):
                errors.append("extendedKeyUsage unreadable")
        elif oid == _SAN_OID:
            try:
                names, _ = der_decoder.decode(value, asn1Spec=rfc5280.SubjectAltName())
                for general in names:
                    kind = general.getName()
                    if kind == "dNSName":
                        out.dns_names.append(str(general[kind]))
                    elif kind == "iPAddress" and len(bytes(general[kind])) in (4, 16):
                        out.ips.append(ipaddress.ip_address(bytes(general[kind])))
            except (PyAsn1Error, ValueError, TypeError, UnicodeError):
                errors.append("subjectAltName unreadable")
                out.san_unreadable = True
    return out


def _common_names(cert: x509.Certificate, errors: list[str]) -> list[str]:
    try:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    except ValueError as exc:
        errors.append(f"subject: {str(exc)[:200]}")
        return []


def _key(cert: x509.Certificate, errors: list[str]) -> tuple[str, int, str]:
    try:
        key = cert.public_key()
    except (ValueError, TypeError) as exc:  # an unsupported algorithm or curve, or a malformed key
        errors.append(f"public key: {str(exc)[:200]}")
        return "", 0, ""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, ""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, ""
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, ""
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, ""
    return type(key).__name__, 0, ""


def _match(
    name: str,
    dns_names: Sequence[str],
    ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address],
    cns: Sequence[str],
) -> tuple[bool, str]:
    """RFC 6125 6.4: an IP literal against iPAddress entries; a DNS name against dNSName entries, else the CN."""
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return address in ips, "subjectAltName"
    reference = _fold(name)
    if dns_names:
        return any(_dns_match(reference, _fold(n)) for n in dns_names), "subjectAltName"
    return any(_dns_match(reference, _fold(n)) for n in cns), CN_FALLBACK


def _fold(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        return name


def _dns_match(reference: str, presented: str) -> bool:
    """RFC 6125 6.4.1/6.4.3: equal, or a left-most ``*`` label standing for exactly one label.

    Only a whole ``*`` label (``*.example.test``), not a partial one (``w*.example.test``, which RFC 6125
    allows clients to refuse), and never over fewer than two labels (``*.test``).
    """
    if not presented or not reference:
        return False
    if "*" not in presented:
        return presented == reference
    first, _, rest = presented.partition(".")
    if first != "*" or "*" in rest or rest.count(".") < 1:
        return False
    head, _, tail = reference.partition(".")
    return bool(head) and tail == rest

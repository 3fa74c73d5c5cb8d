"""X.509 certificates (RFC 5280 section 4.1): the few fields an operator watches, from DER.

Uses pyasn1-modules' RFC 5280 ASN.1 definitions; pure bytes -> dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

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


def parse_certificate(der: bytes) -> CertificateSummary:
    """Parse a DER certificate.

    Args:
        der: the certificate, at most 64 KiB.

    Raises:
        DecodeError: not a DER X.509 certificate.
    """
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

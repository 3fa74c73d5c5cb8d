"""Kerberos AS-REQ and KRB-ERROR (RFC 4120) for the port 88 probe.

Pure codec using impacket's RFC 4120 ASN.1 (:mod:`impacket.krb5.asn1`, pyasn1); every decode
failure raises :class:`~exporter.errors.DecodeError`. Hostile bytes are bounded by
:func:`exporter.wire.ber.check_ber` before pyasn1 sees them.

The probe sends an AS-REQ for a principal that does not exist (:func:`encode_as_req`); any KDC
answers with a KRB-ERROR (RFC 4120 5.9.1): 6 KDC_ERR_C_PRINCIPAL_UNKNOWN for its own realm, 68
KDC_ERR_WRONG_REALM for another, 25 PREAUTH_REQUIRED if the name happens to exist, 52
KRB_ERR_RESPONSE_TOO_BIG on UDP when the reply needs TCP. Windows KDCs leave out ctime, cusec,
crealm, cname and e-text; they are optional here.

Replies that are not KRB-ERRORs: :func:`decode_krb_error` raises :class:`DecodeError` for them
(naming the message type); :func:`decode_kdc_reply` returns a :class:`KdcRep` for an AS-REP or
TGS-REP (e.g. a principal without pre-authentication), still proof of a KDC.

Over TCP (RFC 4120 7.2.2) each message has a 4-byte big-endian length prefix: :func:`frame_tcp`
and :func:`tcp_record_length`.

Check by hand::

    kinit nosuchuser@EXAMPLE.COM     # "Client not found in Kerberos database" = error 6
    tshark -Y kerberos -V -r capture.pcap
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from types import MappingProxyType

from impacket.krb5 import asn1 as krb_asn1
from impacket.krb5 import constants as krb_constants
from impacket.krb5.types import KerberosTime
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ

from exporter.errors import DecodeError
from exporter.wire.ber import check_ber, parse_generalized_time, tlv_length

__all__ = [
    "ERROR_NAMES",
    "MAX_MESSAGE_BYTES",
    "EtypeInfo2",
    "KdcRep",
    "KrbError",
    "decode_kdc_reply",
    "decode_krb_error",
    "encode_as_req",
    "frame_tcp",
    "tcp_record_length",
]

#: RFC 4120 7.5.9 error codes -> names (``6`` -> ``"KDC_ERR_C_PRINCIPAL_UNKNOWN"``).
ERROR_NAMES: Mapping[int, str] = MappingProxyType(
    {int(member.value): str(member.name) for member in krb_constants.ErrorCodes}
)

#: Largest Kerberos message accepted (bytes); a KRB-ERROR is 100-300 bytes, an AS-REP a few KiB.
MAX_MESSAGE_BYTES = 256 * 1024
_MAX_DEPTH = 16
_MAX_ELEMENTS = 5_000

_APP = krb_constants.ApplicationTagNumbers


def _app_tag(number: Enum) -> int:
    """First identifier octet of ``[APPLICATION n]`` constructed (X.690 8.1.2): 0x60 | n."""
    return 0x60 | int(number.value)


_TAG_AS_REP = _app_tag(_APP.AS_REP)
_TAG_TGS_REP = _app_tag(_APP.TGS_REP)
_TAG_KRB_ERROR = _app_tag(_APP.KRB_ERROR)
_MSG_TYPE_NAMES = {
    _app_tag(member): member.name.replace("_", "-")
    for member in (
        _APP.AS_REQ,
        _APP.AS_REP,
        _APP.TGS_REQ,
        _APP.TGS_REP,
        _APP.AP_REQ,
        _APP.AP_REP,
        _APP.KRB_SAFE,
        _APP.KRB_PRIV,
        _APP.KRB_CRED,
        _APP.KRB_ERROR,
    )
}
_PA_ETYPE_INFO2 = int(krb_constants.PreAuthenticationDataTypes.PA_ETYPE_INFO2.value)
_NT_PRINCIPAL = int(krb_constants.PrincipalNameType.NT_PRINCIPAL.value)
_NT_SRV_INST = int(krb_constants.PrincipalNameType.NT_SRV_INST.value)
_KDC = krb_constants.KDCOptions
#: forwardable | renewable | canonicalize | renewable-ok, as MIT kinit sends (0x40810010).
_DEFAULT_KDC_OPTIONS = (_KDC.forwardable, _KDC.renewable, _KDC.canonicalize, _KDC.renewable_ok)
#: A ``till`` far in the future without reading a clock (MIT kinit's choice).
DEFAULT_TILL = datetime(2037, 9, 13, 2, 48, 5, tzinfo=UTC)
_ETYPE = krb_constants.EncryptionTypes
#: aes256-cts-hmac-sha1-96 (18), aes128-cts-hmac-sha1-96 (17), rc4-hmac (23).
DEFAULT_ETYPES: tuple[int, ...] = tuple(
    int(e.value) for e in (_ETYPE.aes256_cts_hmac_sha1_96, _ETYPE.aes128_cts_hmac_sha1_96, _ETYPE.rc4_hmac)
)


# --------------------------------------------------------------------------- framing


def frame_tcp(message: bytes) -> bytes:
    """Prefix ``message`` with its 4-byte big-endian length for TCP (RFC 4120 7.2.2).

    Raises:
        ValueError: longer than 2**31-1 bytes (the high bit is reserved).
    """
    if len(message) >= 1 << 31:
        raise ValueError("Kerberos message too long for TCP framing")
    return struct.pack(">I", len(message)) + message


def tcp_record_length(buf: bytes, *, limit: int = MAX_MESSAGE_BYTES) -> int | None:
    """Total length (prefix included) of the TCP record ``buf`` starts with (RFC 4120 7.2.2).

    Args:
        buf: bytes received so far.
        limit: largest message accepted, in bytes (prefix excluded).

    Returns:
        ``4 + length``, or ``None`` while fewer than 4 bytes have arrived.

    Raises:
        DecodeError: the reserved high bit is set, or the length exceeds ``limit``.
    """
    if len(buf) < 4:
        return None
    length = int.from_bytes(buf[:4], "big")
    if length & 0x80000000:
        raise DecodeError("Kerberos TCP length has the reserved high bit set", 0)
    if length > limit:
        raise DecodeError(f"Kerberos TCP record of {length} bytes exceeds limit {limit}", 0)
    return 4 + length


# --------------------------------------------------------------------------- encoding


def _principal(target: univ.Sequence, name_type: int, components: Sequence[str]) -> None:
    target["name-type"] = name_type
    strings = target["name-string"]
    for i, part in enumerate(components):
        strings[i] = part


def _kerberos_time(value: datetime) -> str:
    """KerberosTime (RFC 4120 5.2.3: GeneralizedTime, UTC, no fraction) via impacket's ``KerberosTime``."""
    if value.tzinfo is None:
        raise ValueError("Kerberos times must be timezone-aware")
    return str(KerberosTime.to_asn1(value.astimezone(UTC)))


def encode_as_req(
    realm: str,
    client_name: str,
    nonce: int,
    till: datetime = DEFAULT_TILL,
    etypes: Sequence[int] = DEFAULT_ETYPES,
) -> bytes:
    """Encode an AS-REQ without pre-authentication (RFC 4120 5.4.1).

    cname is ``client_name`` (NT-PRINCIPAL, ``/`` separates components), sname is
    ``krbtgt/REALM`` (NT-SRV-INST); no padata, no addresses. For UDP send as is; for TCP wrap
    in :func:`frame_tcp`.

    Args:
        realm: the realm, usually the AD domain in upper case (``"EXAMPLE.COM"``).
        client_name: a principal that should not exist, e.g. ``"portqry-probe-3f2a"``.
        nonce: 0..2**32-1; the KDC does not echo it in a KRB-ERROR.
        till: requested ticket end time (aware); the default needs no clock.
        etypes: requested encryption types, most preferred first.

    Returns:
        The DER-encoded AS-REQ ([APPLICATION 10]), about 150 bytes.

    Raises:
        ValueError: empty names, ``nonce`` out of range, or a naive ``till``.
    """
    if not realm or not client_name:
        raise ValueError("realm and client_name must not be empty")
    if not 0 <= nonce <= 0xFFFFFFFF:
        raise ValueError(f"nonce {nonce} outside 0..2**32-1")
    req = krb_asn1.AS_REQ()
    req["pvno"] = 5
    req["msg-type"] = int(krb_constants.ApplicationTagNumbers.AS_REQ.value)
    body = req["req-body"]
    body["kdc-options"] = krb_constants.encodeFlags([int(option.value) for option in _DEFAULT_KDC_OPTIONS])
    _principal(body["cname"], _NT_PRINCIPAL, client_name.split("/"))
    body["realm"] = realm
    _principal(body["sname"], _NT_SRV_INST, ["krbtgt", realm])
    body["till"] = _kerberos_time(till)
    body["nonce"] = nonce
    body["etype"].setComponents(*etypes)
    return bytes(der_encoder.encode(req))


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class EtypeInfo2:
    """One ETYPE-INFO2-ENTRY (RFC 4120 5.2.7.5): an etype the KDC accepts and its salt."""

    etype: int
    salt: str | None


@dataclass(frozen=True, slots=True)
class KrbError:
    """A decoded KRB-ERROR (RFC 4120 5.9.1).

    Attributes:
        error_code: e.g. 6, 25, 68.
        error_name: e.g. ``"KDC_ERR_C_PRINCIPAL_UNKNOWN"`` (``"UNKNOWN"`` if not in the table).
        realm: the server's realm (``realm [9]``).
        sname: the server principal, components joined by ``/`` (``"krbtgt/EXAMPLE.COM"``).
        sname_type: its name-type (2 = NT-SRV-INST).
        stime: the KDC's clock, aware UTC, with ``susec`` added.
        susec: microseconds part of stime.
        ctime: the echoed client time, or ``None`` (Windows leaves it out).
        cusec: microseconds of ctime, or ``None``.
        crealm: client realm, or ``None``.
        cname: client principal joined by ``/``, or ``None``.
        e_text: error text (decoded as UTF-8, bad bytes replaced), or ``None``.
        e_data: raw e-data bytes, or ``None``.
        padata_types: padata-types listed in e-data when it is a METHOD-DATA (e.g. ``(19, 2,
            16, 15)`` for PREAUTH_REQUIRED), else ``()``.
        etype_info2: the PA-ETYPE-INFO2 entries in e-data, else ``()``.
    """

    error_code: int
    error_name: str
    realm: str
    sname: str
    sname_type: int
    stime: datetime
    susec: int
    ctime: datetime | None
    cusec: int | None
    crealm: str | None
    cname: str | None
    e_text: str | None
    e_data: bytes | None
    padata_types: tuple[int, ...]
    etype_info2: tuple[EtypeInfo2, ...]


@dataclass(frozen=True, slots=True)
class KdcRep:
    """The clear-text part of an AS-REP or TGS-REP (RFC 4120 5.4.2).

    Attributes:
        msg_type: 11 (AS-REP) or 13 (TGS-REP).
        crealm: client realm.
        cname: client principal joined by ``/``.
        ticket_realm: realm of the ticket.
        ticket_sname: the ticket's server principal joined by ``/``.
        enc_part_etype: encryption type of the reply's encrypted part.
        padata_types: padata-types in the reply.
    """

    msg_type: int
    crealm: str
    cname: str
    ticket_realm: str
    ticket_sname: str
    enc_part_etype: int
    padata_types: tuple[int, ...]


def _kstr(value: univ.OctetString, what: str) -> str:
    try:
        return bytes(value.asOctets()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"Kerberos {what} is not UTF-8: {exc.reason}") from exc


def _principal_text(value: univ.Sequence) -> str:
    return "/".join(_kstr(part, "principal name") for part in value["name-string"])


def _ktime(value: univ.OctetString) -> datetime:
    return parse_generalized_time(_kstr(value, "time"))


def _decode(data: bytes, spec: univ.Sequence) -> univ.Sequence:
    check_ber(data, max_depth=_MAX_DEPTH, max_elements=_MAX_ELEMENTS)
    try:
        obj, tail = ber_decoder.decode(data, asn1Spec=spec)
    except PyAsn1Error as exc:
        raise DecodeError("malformed Kerberos message", 0, detail=str(exc)[:400]) from exc
    if tail:
        raise DecodeError("trailing bytes after Kerberos message", len(data) - len(tail))
    return obj


def _method_data(raw: bytes) -> tuple[tuple[int, ...], tuple[EtypeInfo2, ...]]:
    """padata types and ETYPE-INFO2 from e-data; ``((), ())`` if it is not METHOD-DATA.

    e-data is opaque by RFC 4120 5.9.1 (Windows may send KERB-ERROR-DATA instead), so a
    failure here is not an error.
    """
    try:
        methods = _decode(raw, krb_asn1.METHOD_DATA())
        types = tuple(int(pa["padata-type"]) for pa in methods)
        infos: list[EtypeInfo2] = []
        for pa in methods:
            if int(pa["padata-type"]) != _PA_ETYPE_INFO2:
                continue
            entries = _decode(pa["padata-value"].asOctets(), krb_asn1.ETYPE_INFO2())
            for entry in entries:
                salt = entry["salt"]
                infos.append(EtypeInfo2(int(entry["etype"]), _kstr(salt, "salt") if salt.hasValue() else None))
    except (DecodeError, PyAsn1Error):
        return (), ()
    return types, tuple(infos)


def _reply_tag(data: bytes) -> int:
    if not data:
        raise DecodeError("empty Kerberos reply", 0)
    tlv_length(data, 0, limit=MAX_MESSAGE_BYTES)  # bad length forms and size
    return data[0]


def _krb_error(data: bytes) -> KrbError:
    err = _decode(data, krb_asn1.KRB_ERROR())
    try:
        code = int(err["error-code"])
        susec = int(err["susec"])
        if not 0 <= susec <= 999_999:
            raise DecodeError(f"KRB-ERROR susec {susec} out of range")
        stime = _ktime(err["stime"]).replace(microsecond=susec)
        ctime = cusec = None
        if err["ctime"].hasValue():
            ctime = _ktime(err["ctime"])
        if err["cusec"].hasValue():
            cusec = int(err["cusec"])
            if not 0 <= cusec <= 999_999:
                raise DecodeError(f"KRB-ERROR cusec {cusec} out of range")
            if ctime is not None:
                ctime = ctime.replace(microsecond=cusec)
        e_data = err["e-data"].asOctets() if err["e-data"].hasValue() else None
        padata_types, etype_info2 = _method_data(e_data) if e_data else ((), ())
        return KrbError(
            error_code=code,
            error_name=ERROR_NAMES.get(code, "UNKNOWN"),
            realm=_kstr(err["realm"], "realm"),
            sname=_principal_text(err["sname"]),
            sname_type=int(err["sname"]["name-type"]),
            stime=stime,
            susec=susec,
            ctime=ctime,
            cusec=cusec,
            crealm=_kstr(err["crealm"], "crealm") if err["crealm"].hasValue() else None,
            cname=_principal_text(err["cname"]) if err["cname"].hasValue() else None,
            e_text=(bytes(err["e-text"].asOctets()).decode("utf-8", "replace") if err["e-text"].hasValue() else None),
            e_data=e_data,
            padata_types=padata_types,
            etype_info2=etype_info2,
        )
    except PyAsn1Error as exc:
        raise DecodeError("incomplete KRB-ERROR", 0, detail=str(exc)[:400]) from exc


def _kdc_rep(data: bytes, spec: univ.Sequence) -> KdcRep:
    rep = _decode(data, spec)
    try:
        padata = rep["padata"]
        return KdcRep(
            msg_type=int(rep["msg-type"]),
            crealm=_kstr(rep["crealm"], "crealm"),
            cname=_principal_text(rep["cname"]),
            ticket_realm=_kstr(rep["ticket"]["realm"], "ticket realm"),
            ticket_sname=_principal_text(rep["ticket"]["sname"]),
            enc_part_etype=int(rep["enc-part"]["etype"]),
            padata_types=tuple(int(pa["padata-type"]) for pa in padata) if padata.hasValue() else (),
        )
    except PyAsn1Error as exc:
        raise DecodeError("incomplete KDC reply", 0, detail=str(exc)[:400]) from exc


def decode_krb_error(data: bytes) -> KrbError:
    """Decode a KRB-ERROR (RFC 4120 5.9.1) from one UDP datagram or one unframed TCP record.

    Args:
        data: the message bytes, without the TCP length prefix.

    Returns:
        The :class:`KrbError`.

    Raises:
        DecodeError: empty, truncated, trailing bytes, too big or too deep, not DER/BER, or a
            different Kerberos message (the text names it, e.g. ``"AS-REP, not KRB-ERROR"``;
            use :func:`decode_kdc_reply` to accept those).
    """
    tag = _reply_tag(data)
    if tag != _TAG_KRB_ERROR:
        kind = _MSG_TYPE_NAMES.get(tag, f"tag 0x{tag:02x}")
        raise DecodeError(f"{kind}, not KRB-ERROR", 0)
    return _krb_error(data)


def decode_kdc_reply(data: bytes) -> KrbError | KdcRep:
    """Decode any KDC reply to an AS-REQ: a KRB-ERROR or an AS-REP/TGS-REP.

    Both prove a KDC listens. The AS-REP's encrypted parts are not touched.

    Raises:
        DecodeError: as :func:`decode_krb_error`, or a message that no KDC sends in reply.
    """
    tag = _reply_tag(data)
    if tag == _TAG_KRB_ERROR:
        return _krb_error(data)
    if tag == _TAG_AS_REP:
        return _kdc_rep(data, krb_asn1.AS_REP())
    if tag == _TAG_TGS_REP:
        return _kdc_rep(data, krb_asn1.TGS_REP())
    kind = _MSG_TYPE_NAMES.get(tag, f"tag 0x{tag:02x}")
    raise DecodeError(f"{kind} is not a KDC reply", 0)

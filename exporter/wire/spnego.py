"""The SPNEGO negTokenInit of an SMB negotiate response: which authentication mechanisms the server offers.

An SMB2 NEGOTIATE response (MS-SMB2 2.2.4) and an SMB1 extended-security negotiate response (MS-SMB
2.2.4.5.2) carry a GSS-API initial context token (RFC 2743 3.1: ``[APPLICATION 0]`` with the SPNEGO OID
1.3.6.1.5.5.2) whose inner token is a ``negTokenInit`` (RFC 4178 4.2.1; Windows and Samba send the
``NegTokenInit2`` form of MS-SPNG 2.2.1, with ``negHints`` at ``[3]`` and ``mechListMIC`` at ``[4]``).
Its ``mechTypes`` list is what the server accepts for a session setup: NTLMSSP, Kerberos, NEGOEX.

Pure codec with pyasn1; hostile bytes are bounded by :func:`exporter.wire.ber.check_ber` first, and every
failure raises :class:`~exporter.errors.DecodeError`.

Check by hand::

    tshark -r capture.pcap -Y smb2.cmd==0 -O spnego     # "mechTypes: 4 items" in the Negotiate Protocol Response
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, tag, univ

from exporter.errors import DecodeError
from exporter.wire.ber import check_ber

__all__ = ["MAX_MECHANISMS", "MAX_TOKEN_BYTES", "MECHANISM_NAMES", "SPNEGO_OID", "decode_neg_token_init"]

#: The SPNEGO mechanism OID (RFC 4178 3), the GSS-API token's ``thisMech``.
SPNEGO_OID = "1.3.6.1.5.5.2"
#: Mechanism OID -> the name kept in ``SmbDetails.auth_mechanisms`` and the ``mechanism`` label.
MECHANISM_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "1.3.6.1.4.1.311.2.2.10": "NTLMSSP",  # MS-NLMP 1.9
        "1.2.840.113554.1.2.2": "Kerberos",  # RFC 4121 1
        "1.2.840.48018.1.2.2": "MS-Kerberos",  # MS-SPNG 3.3.5.2: Windows 2000's mis-encoded Kerberos OID
        "1.2.840.113554.1.2.2.3": "Kerberos-U2U",  # draft-swift-win2k-krb-user2user
        "1.3.6.1.4.1.311.2.2.30": "NEGOEX",  # MS-NEGOEX 1.9
    }
)
#: Largest token accepted (bytes): a Windows or Samba negotiate token is 70-120 bytes.
MAX_TOKEN_BYTES = 16 * 1024
#: The most mechanisms kept from one token (a hostile list cannot multiply the series).
MAX_MECHANISMS = 16
_MAX_DEPTH = 8
_MAX_ELEMENTS = 256


def _ctx(number: int, *, constructed: bool = True) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed if constructed else tag.tagFormatSimple, number)


class _MechTypeList(univ.SequenceOf):  # type: ignore[misc]  # pyasn1 is untyped
    componentType = univ.ObjectIdentifier()


class _NegTokenInit(univ.Sequence):  # type: ignore[misc]  # pyasn1 is untyped
    """RFC 4178 4.2.1 ``NegTokenInit`` / MS-SPNG 2.2.1 ``NegTokenInit2``; ``[3]`` left undecoded.

    ``[3]`` is ``negHints`` in NegTokenInit2 and ``mechListMIC`` in RFC 4178: either is accepted.
    """

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("mechTypes", _MechTypeList().subtype(explicitTag=_ctx(0))),
        namedtype.OptionalNamedType("reqFlags", univ.BitString().subtype(explicitTag=_ctx(1))),
        namedtype.OptionalNamedType("mechToken", univ.OctetString().subtype(explicitTag=_ctx(2))),
        namedtype.OptionalNamedType("negHintsOrMic", univ.Any().subtype(explicitTag=_ctx(3, constructed=False))),
        namedtype.OptionalNamedType("mechListMIC", univ.OctetString().subtype(explicitTag=_ctx(4))),
    )


class _InitialContextToken(univ.Sequence):  # type: ignore[misc]  # pyasn1 is untyped
    """RFC 2743 3.1 ``InitialContextToken`` holding an RFC 4178 ``negTokenInit`` (``NegotiationToken`` choice 0)."""

    tagSet = univ.Sequence.tagSet.tagImplicitly(tag.Tag(tag.tagClassApplication, tag.tagFormatConstructed, 0))
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("thisMech", univ.ObjectIdentifier()),
        namedtype.NamedType("negTokenInit", _NegTokenInit().subtype(explicitTag=_ctx(0))),
    )


def decode_neg_token_init(token: bytes) -> tuple[str, ...]:
    """The mechanisms a negotiate response's SPNEGO token offers, by name, in the server's order of preference.

    Args:
        token: the SMB2 NEGOTIATE response's security buffer (or SMB1's ``SecurityBlob``); GSS-API framed
            (RFC 2743 3.1) or a bare ``negTokenInit`` ``[0]`` (some servers leave the framing out).

    Returns:
        Names from :data:`MECHANISM_NAMES` (``("MS-Kerberos", "Kerberos", "NTLMSSP")`` for Samba), an unknown
        mechanism as its dotted OID; at most :data:`MAX_MECHANISMS`, duplicates dropped.

    Raises:
        DecodeError: empty, larger than :data:`MAX_TOKEN_BYTES`, not well-formed BER, not SPNEGO, or not a
            negTokenInit.
    """
    if not token:
        raise DecodeError("empty SPNEGO token", 0)
    if len(token) > MAX_TOKEN_BYTES:
        raise DecodeError(f"SPNEGO token larger than {MAX_TOKEN_BYTES} bytes", MAX_TOKEN_BYTES)
    check_ber(token, max_depth=_MAX_DEPTH, max_elements=_MAX_ELEMENTS)
    try:
        if token[0] == 0x60:
            outer, tail = ber_decoder.decode(token, asn1Spec=_InitialContextToken())
            if str(outer["thisMech"]) != SPNEGO_OID:
                raise DecodeError(f"GSS-API token for mechanism {outer['thisMech']}, not SPNEGO", 0)
            init = outer["negTokenInit"]
        elif token[0] == 0xA0:
            init, tail = ber_decoder.decode(token, asn1Spec=_NegTokenInit().subtype(explicitTag=_ctx(0)))
        else:
            raise DecodeError(f"not a SPNEGO negTokenInit (first byte 0x{token[0]:02x})", 0)
    except PyAsn1Error as exc:
        raise DecodeError("malformed SPNEGO negTokenInit", 0, detail=str(exc)[:400]) from exc
    if tail:
        raise DecodeError("trailing bytes after SPNEGO token", len(token) - len(tail))
    names: list[str] = []
    for oid in init["mechTypes"]:
        name = MECHANISM_NAMES.get(str(oid), str(oid))
        if name not in names:
            names.append(name)
        if len(names) >= MAX_MECHANISMS:
            break
    return tuple(names)

"""LDAP requests of the transport-rule checks: a simple bind meant to fail, and StartTLS (RFC 4511 4.2, 4.14).

Pure codec, as :mod:`exporter.wire.ldap`: impacket's RFC 4511 ASN.1 (:mod:`impacket.ldap.ldapasn1`, pyasn1)
encodes the requests; the one-message replies (BindResponse, ExtendedResponse, or an unsolicited Notice of
Disconnection, RFC 4511 4.4.1) are read by the same bounded single-pass BER reader as the search replies.
Every decode failure raises :class:`~exporter.errors.DecodeError`.

Check by hand (a DC on 389; ``ldapwhoami`` exits with the result code)::

    ldapwhoami -x -H ldap://DC -D cn=portqry-posture-check-x,dc=invalid -w made-up   # 8 or 49
    ldapwhoami -x -ZZ -H ldap://DC                                                   # StartTLS
    python -c "from exporter.wire.ldap_bind import encode_start_tls as e; print(e(1).hex())"
"""

from __future__ import annotations

from dataclasses import dataclass

from impacket.ldap import ldapasn1

from exporter.errors import DecodeError
from exporter.wire.ldap import (
    _OP_NAMES,
    RESULT_CODE_NAMES,
    _expect,
    _integer,
    _tlv,
    encode_message,
    message_length,
    utf8,
)

__all__ = [
    "INVALID_CREDENTIALS",
    "MAX_RESPONSE_BYTES",
    "OP_BIND_RESPONSE",
    "OP_EXTENDED_RESPONSE",
    "STARTTLS_OID",
    "STRONGER_AUTH_REQUIRED",
    "LdapResponse",
    "decode_response",
    "encode_simple_bind",
    "encode_start_tls",
]

#: RFC 4511 4.14.1: the StartTLS extended operation's requestName.
STARTTLS_OID = "1.3.6.1.4.1.1466.20037"
#: RFC 4511 4.1.9 resultCodes the bind check reads.
STRONGER_AUTH_REQUIRED = 8
INVALID_CREDENTIALS = 49
#: Largest reply accepted (bytes): a BindResponse or ExtendedResponse is under 200 bytes; AD's diagnostic
#: messages are one line.
MAX_RESPONSE_BYTES = 16 * 1024
#: protocolOp identifier octets: [APPLICATION 1] BindResponse, [APPLICATION 24] ExtendedResponse.
OP_BIND_RESPONSE = 0x61
OP_EXTENDED_RESPONSE = 0x78

_SEQUENCE = 0x30
_INTEGER = 0x02
_ENUMERATED = 0x0A
_OCTET_STRING = 0x04
_CONTROLS = 0xA0
_REFERRAL = 0xA3
_SERVER_SASL_CREDS = 0x87  # [7] in a BindResponse
_RESPONSE_NAME, _RESPONSE_VALUE = 0x8A, 0x8B  # [10], [11] in an ExtendedResponse
#: Optional components after diagnosticMessage, in their RFC 4511 order, per response operation.
_OPTIONAL = {
    OP_BIND_RESPONSE: (_REFERRAL, _SERVER_SASL_CREDS),
    OP_EXTENDED_RESPONSE: (_REFERRAL, _RESPONSE_NAME, _RESPONSE_VALUE),
}


def encode_simple_bind(message_id: int, dn: str, password: bytes) -> bytes:
    """Encode an LDAPv3 simple BindRequest (RFC 4511 4.2: version 3, ``name``, ``authentication simple``).

    Args:
        message_id: 1..2**31-1.
        dn: the bind DN (LDAPDN).
        password: the simple password octets.

    Returns:
        The BER LDAPMessage.

    Raises:
        ValueError: ``message_id`` out of range.
    """
    request = ldapasn1.BindRequest()
    request["version"] = 3
    request["name"] = dn
    request["authentication"]["simple"] = password
    return encode_message(message_id, "bindRequest", request)


def encode_start_tls(message_id: int) -> bytes:
    """Encode the StartTLS ExtendedRequest (RFC 4511 4.14.1: requestName :data:`STARTTLS_OID`, no value).

    Returns:
        The BER LDAPMessage (31 bytes for a one-octet message ID).

    Raises:
        ValueError: ``message_id`` out of range.
    """
    request = ldapasn1.ExtendedRequest()
    request["requestName"] = STARTTLS_OID
    return encode_message(message_id, "extendedReq", request)


@dataclass(frozen=True, slots=True)
class LdapResponse:
    """The LDAPResult of a one-message reply (RFC 4511 4.1.9).

    Attributes:
        message_id: the messageID answered (0 for a Notice of Disconnection).
        result_code: the resultCode (0 success, 2 protocolError, 8 strongerAuthRequired, 49 invalidCredentials).
        result_name: its RFC 4511 name, or ``"unknown"``.
        diagnostic_message: the server's diagnosticMessage (``""`` if none).
        disconnected: the reply is an unsolicited Notice of Disconnection (RFC 4511 4.4.1), not the answer.
    """

    message_id: int
    result_code: int
    result_name: str
    diagnostic_message: str
    disconnected: bool = False


def decode_response(data: bytes, *, message_id: int, operation: int) -> LdapResponse:
    """Decode the one LDAPMessage that answers a request: ``operation``'s response, or a Notice of Disconnection.

    Args:
        data: exactly one LDAPMessage (frame a stream with :func:`exporter.wire.ldap.message_length`).
        message_id: the request's messageID.
        operation: the response's protocolOp identifier octet (:data:`OP_BIND_RESPONSE`,
            :data:`OP_EXTENDED_RESPONSE`).

    Returns:
        The :class:`LdapResponse`.

    Raises:
        DecodeError: truncated, not BER, over :data:`MAX_RESPONSE_BYTES`, trailing bytes, another operation,
            another message ID, or a non-UTF-8 diagnosticMessage.
    """
    total = message_length(data, limit=MAX_RESPONSE_BYTES)
    if total is None or total > len(data):
        raise DecodeError("truncated LDAPMessage", 0)
    if total != len(data):
        raise DecodeError("trailing bytes after the LDAPMessage", total)
    pos, end = _expect(data, 0, total, _SEQUENCE, "LDAPMessage")
    id_start, pos = _expect(data, pos, end, _INTEGER, "messageID")
    got_id = _integer(data, id_start, pos, "messageID")
    if pos >= end:
        raise DecodeError("LDAPMessage without a protocolOp", pos)
    op, body, body_end = _tlv(data, pos, end, "protocolOp")
    if body_end < end and data[body_end] == _CONTROLS:
        body_end = _tlv(data, body_end, end, "controls")[2]
    if body_end != end:
        raise DecodeError("trailing bytes inside LDAPMessage", body_end)
    notice = op == OP_EXTENDED_RESPONSE and got_id == 0
    if not notice and op != operation:
        name = _OP_NAMES.get(op, f"with tag 0x{op:02x}")
        raise DecodeError(f"unexpected LDAP operation {name}, expected {_OP_NAMES[operation]}", pos)
    if not notice and got_id != message_id:
        raise DecodeError(f"message ID {got_id} in a reply to {message_id}", id_start)
    code, diagnostic = _result(data, body, end, _OPTIONAL[OP_EXTENDED_RESPONSE if notice else operation])
    return LdapResponse(got_id, code, RESULT_CODE_NAMES.get(code, "unknown"), diagnostic, notice)


def _result(buf: bytes, start: int, stop: int, optional: tuple[int, ...]) -> tuple[int, str]:
    """``(resultCode, diagnosticMessage)`` of an LDAPResult whose optional components are ``optional``."""
    code_start, pos = _expect(buf, start, stop, _ENUMERATED, "resultCode")
    code = _integer(buf, code_start, pos, "resultCode")
    pos = _expect(buf, pos, stop, _OCTET_STRING, "matchedDN")[1]
    diagnostic_start, pos = _expect(buf, pos, stop, _OCTET_STRING, "diagnosticMessage")
    diagnostic = utf8(buf[diagnostic_start:pos], "diagnosticMessage")
    for tag in optional:
        if pos < stop and buf[pos] == tag:
            pos = _tlv(buf, pos, stop, "LDAPResult component")[2]
    if pos != stop:
        raise DecodeError("trailing bytes in an LDAPResult", pos)
    return code, diagnostic

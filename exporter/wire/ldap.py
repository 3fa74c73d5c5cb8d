"""LDAP and CLDAP messages for the rootDSE search and the MS-ADTS "LDAP ping" (RFC 4511; MS-ADTS 6.3.3).

Pure codec: bytes in, frozen dataclasses out; no sockets, no clocks. Encoding and decoding use
impacket's RFC 4511 ASN.1 (:mod:`impacket.ldap.ldapasn1`, pyasn1). Every decode failure raises
:class:`~exporter.errors.DecodeError`; every message is bounded by :func:`exporter.wire.ber.check_ber`
before pyasn1 sees it. The rootDSE itself is read by :mod:`exporter.wire.rootdse`.

Check by hand (a DC or ``slapd`` on 389)::

    ldapsearch -x -H ldap://DC -b "" -s base "(objectClass=*)"
    python -c "from exporter.wire.ldap import encode_root_dse_search as e; print(e(1).hex())"
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from impacket.ldap import ldapasn1
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.ber import encoder as ber_encoder
from pyasn1.error import PyAsn1Error

from exporter.errors import DecodeError
from exporter.wire.ber import check_ber, tlv_length

__all__ = [
    "MAX_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "RESULT_CODE_NAMES",
    "SearchEntry",
    "SearchResult",
    "decode_search_response",
    "encode_ldap_ping",
    "encode_message",
    "encode_root_dse_search",
    "message_length",
    "split_messages",
    "utf8",
]

#: Largest LDAP message accepted (bytes). An AD rootDSE is 3-10 KiB; a CLDAP datagram is < 64 KiB.
MAX_MESSAGE_BYTES = 256 * 1024
#: Most LDAPMessages accepted in one search reply (a rootDSE search gets 2).
MAX_MESSAGES = 256

#: RFC 4511 4.1.9 resultCode -> name (``0`` success, ``49`` invalidCredentials, ...).
RESULT_CODE_NAMES: Mapping[int, str] = MappingProxyType(
    {int(value): str(name) for name, value in ldapasn1.ResultCode.namedValues.items()}
)

_TAG_SEQUENCE = 0x30


# --------------------------------------------------------------------------- framing


def message_length(buf: bytes, pos: int = 0, *, limit: int = MAX_MESSAGE_BYTES) -> int | None:
    """Length of the LDAPMessage (a BER SEQUENCE) that ``buf`` starts with (RFC 4511 4.1.1).

    Args:
        buf: bytes received so far.
        pos: offset of the message in ``buf``.
        limit: largest message accepted, in bytes.

    Returns:
        The message's total length in bytes, or ``None`` if the header is still incomplete.

    Raises:
        DecodeError: not a SEQUENCE, a bad length, or longer than ``limit``.
    """
    return tlv_length(buf, pos, expected_first=_TAG_SEQUENCE, limit=limit)


def split_messages(buf: bytes, *, limit: int = MAX_MESSAGE_BYTES) -> tuple[list[bytes], bytes]:
    """Split concatenated LDAPMessages (one datagram, or a TCP stream so far).

    Args:
        buf: received bytes.
        limit: largest single message accepted, in bytes.

    Returns:
        ``(complete_messages, rest)``; ``rest`` is an incomplete trailing message (or ``b""``).

    Raises:
        DecodeError: see :func:`message_length`.
    """
    messages: list[bytes] = []
    pos = 0
    while pos < len(buf):
        total = message_length(buf, pos, limit=limit)
        if total is None or pos + total > len(buf):
            break
        messages.append(buf[pos : pos + total])
        pos += total
    return messages, buf[pos:]


# --------------------------------------------------------------------------- encoding


def _search_request(base: str, filt: ldapasn1.Filter, attributes: Iterable[str]) -> ldapasn1.SearchRequest:
    req = ldapasn1.SearchRequest()
    req["baseObject"] = base
    req["scope"] = ldapasn1.Scope("baseObject")
    req["derefAliases"] = ldapasn1.DerefAliases("neverDerefAliases")
    req["sizeLimit"] = 0
    req["timeLimit"] = 0
    req["typesOnly"] = False
    req["filter"] = filt
    req["attributes"].setComponents(*attributes)
    return req


def encode_message(message_id: int, op_name: str, op: object) -> bytes:
    """BER-encode an LDAPMessage (RFC 4511 4.2) carrying ``op`` as the ``protocolOp`` choice ``op_name``.

    Args:
        message_id: 0..2**31-1.
        op_name: the ``protocolOp`` alternative (``"searchRequest"``, ``"searchResEntry"``, ...).
        op: the :mod:`impacket.ldap.ldapasn1` value.

    Returns:
        The encoded message.

    Raises:
        ValueError: ``message_id`` out of range.
    """
    if not 0 <= message_id <= 2**31 - 1:
        raise ValueError(f"message_id {message_id} outside 0..2147483647")
    msg = ldapasn1.LDAPMessage()
    msg["messageID"] = message_id
    msg["protocolOp"][op_name] = op
    return bytes(ber_encoder.encode(msg))


def encode_root_dse_search(message_id: int, attributes: Sequence[str] = ()) -> bytes:
    """Encode an anonymous rootDSE search (RFC 4511 4.5.1; MS-ADTS 3.1.1.3.2).

    base ``""``, scope baseObject, derefAliases never, no limits, filter ``(objectClass=*)``.
    Send as is over TCP (after no bind: anonymous) or as one UDP datagram (CLDAP).

    Args:
        message_id: 1..2**31-1 (RFC 4511 4.1.1.1; 0 is reserved for notifications).
        attributes: attribute names to ask for; empty means all user attributes, which for a
            rootDSE is everything PortQry prints.

    Returns:
        The BER LDAPMessage, e.g. 39 bytes for the default.

    Raises:
        ValueError: ``message_id`` out of range.
    """
    filt = ldapasn1.Filter()
    filt["present"] = "objectClass"
    return encode_message(message_id, "searchRequest", _search_request("", filt, attributes))


#: MS-ADTS 6.3.1.1 NETLOGON_NT_VERSION bits.
NT_VERSION_1 = 0x00000001
NT_VERSION_5 = 0x00000002
NT_VERSION_5EX = 0x00000004
NT_VERSION_5EX_WITH_IP = 0x00000008
NT_VERSION_WITH_CLOSEST_SITE = 0x00000010
NT_VERSION_AVOID_NT4EMUL = 0x01000000
NT_VERSION_PDC = 0x10000000
NT_VERSION_IP = 0x20000000
NT_VERSION_LOCAL = 0x40000000
NT_VERSION_GC = 0x80000000


def encode_ldap_ping(
    message_id: int,
    dns_domain: str | None,
    nt_version: int = NT_VERSION_5 | NT_VERSION_5EX | NT_VERSION_WITH_CLOSEST_SITE,
    dns_host_name: str | None = None,
    *,
    host: str | None = None,
    user: str | None = None,
    aac: int | None = None,
    domain_guid: uuid.UUID | None = None,
    domain_sid: bytes | None = None,
) -> bytes:
    """Encode an MS-ADTS "LDAP ping" (MS-ADTS 6.3.3; 7.3.3.2 for the attribute).

    A rootDSE search (base ``""``, scope base) whose filter is an AND of equality matches
    (in this order, each only if given): ``DnsDomain``, ``Host``, ``DnsHostName``, ``User``,
    ``AAC``, ``DomainSid``, ``DomainGuid``, then always ``NtVer``; it asks for the single
    attribute ``Netlogon``. Send over UDP 389 (CLDAP). Decode the reply with
    :func:`decode_search_response` and :func:`exporter.wire.netlogon.decode_netlogon`.

    Args:
        message_id: 1..2**31-1.
        dns_domain: the domain's DNS name, e.g. ``"example.com"``; ``None`` leaves it out
            (the DC then answers for its own domain).
        nt_version: NETLOGON_NT_VERSION bits (MS-ADTS 6.3.1.1), sent as 4 bytes little-endian;
            the default 0x16 (V5, V5EX, WITH_CLOSEST_SITE) asks for
            NETLOGON_SAM_LOGON_RESPONSE_EX. Add 0x8 (V5EX_WITH_IP) to get the DC's address.
        dns_host_name: the client's DNS host name (``DnsHostName``).
        host: the client's NetBIOS name (``Host``).
        user: an account name (``User``); the reply says whether it exists.
        aac: account-control bits for ``User`` (``AAC``, 4 bytes little-endian).
        domain_guid: ``DomainGuid`` (sent in the little-endian GUID layout).
        domain_sid: ``DomainSid`` as binary SID bytes.

    Returns:
        The BER LDAPMessage (79 bytes for ``dns_domain="example.com"`` and the default NtVer).

    Raises:
        ValueError: ``message_id``, ``nt_version`` or ``aac`` out of range.
    """
    if not 0 <= nt_version <= 0xFFFFFFFF:
        raise ValueError(f"nt_version {nt_version:#x} is not a 32-bit value")
    terms: list[tuple[str, bytes]] = []
    if dns_domain is not None:
        terms.append(("DnsDomain", dns_domain.encode()))
    if host is not None:
        terms.append(("Host", host.encode()))
    if dns_host_name is not None:
        terms.append(("DnsHostName", dns_host_name.encode()))
    if user is not None:
        terms.append(("User", user.encode()))
    if aac is not None:
        if not 0 <= aac <= 0xFFFFFFFF:
            raise ValueError(f"aac {aac:#x} is not a 32-bit value")
        terms.append(("AAC", aac.to_bytes(4, "little")))
    if domain_sid is not None:
        terms.append(("DomainSid", domain_sid))
    if domain_guid is not None:
        terms.append(("DomainGuid", domain_guid.bytes_le))
    terms.append(("NtVer", nt_version.to_bytes(4, "little")))

    filt = ldapasn1.Filter()
    and_set = filt["and"]
    for i, (attr, value) in enumerate(terms):
        item = ldapasn1.Filter()
        item["equalityMatch"]["attributeDesc"] = attr
        item["equalityMatch"]["assertionValue"] = value
        and_set[i] = item
    return encode_message(message_id, "searchRequest", _search_request("", filt, ["Netlogon"]))


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class SearchEntry:
    """One SearchResultEntry (RFC 4511 4.5.2).

    Attributes:
        object_name: the entry's DN (``""`` for the rootDSE).
        attributes: ``((type, (value_bytes, ...)), ...)`` in the server's order and spelling.
    """

    object_name: str
    attributes: tuple[tuple[str, tuple[bytes, ...]], ...]

    def get(self, name: str) -> tuple[bytes, ...]:
        """All values of attribute ``name`` (case-insensitive, RFC 4512 2.5), or ``()``."""
        key = name.casefold()
        for attr_type, values in self.attributes:
            if attr_type.casefold() == key:
                return values
        return ()


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The decoded reply to one search: entries plus the final result (RFC 4511 4.5.2).

    Attributes:
        message_id: the message ID the server answered (compare with the request's).
        entries: the SearchResultEntry messages in order.
        result_code: the SearchResultDone resultCode (0 success; non-zero means the server
            refused, e.g. 1 operationsError); ``None`` if no SearchResultDone was in the bytes.
            An unsolicited Notice of Disconnection (RFC 4511 4.4.1) also ends the search;
            its resultCode is taken.
        result_name: the RFC 4511 name of ``result_code`` (``"success"``), or ``None``.
        diagnostic_message: the server's diagnosticMessage (``""`` if none).
        references: number of SearchResultReference messages seen (their URIs are dropped).
        disconnected: ``True`` if the search ended with a Notice of Disconnection.
    """

    message_id: int
    entries: tuple[SearchEntry, ...]
    result_code: int | None
    result_name: str | None
    diagnostic_message: str
    references: int = 0
    disconnected: bool = False

    @property
    def done(self) -> bool:
        """``True`` when the search is complete (a SearchResultDone or a disconnection arrived)."""
        return self.result_code is not None

    @property
    def netlogon(self) -> bytes | None:
        """The first ``Netlogon`` attribute value (the LDAP ping answer), or ``None``."""
        for entry in self.entries:
            values = entry.get("Netlogon")
            if values:
                return values[0]
        return None


def utf8(raw: bytes, what: str) -> str:
    """``raw`` decoded as UTF-8 (LDAPString, RFC 4511 4.1.2).

    Raises:
        DecodeError: not UTF-8; the message names ``what``.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not UTF-8: {exc.reason}") from exc


def _decode_message(raw: bytes, offset: int) -> ldapasn1.LDAPMessage:
    check_ber(raw)
    try:
        msg, tail = ber_decoder.decode(raw, asn1Spec=ldapasn1.LDAPMessage())
    except PyAsn1Error as exc:
        raise DecodeError("malformed LDAPMessage", offset, detail=str(exc)[:400]) from exc
    if tail:
        raise DecodeError("trailing bytes inside LDAPMessage", offset + len(raw) - len(tail))
    return msg


def decode_search_response(data: bytes, *, limit: int = MAX_MESSAGE_BYTES) -> SearchResult:
    """Decode the reply to a search: SearchResultEntry* then SearchResultDone (RFC 4511 4.5.2).

    Works on one CLDAP datagram (MS-ADTS 3.1.1.3.1.11: entries and the Done in one datagram,
    short or 4-byte long-form BER lengths) or on a TCP byte stream cut at the end of the Done
    (use :func:`split_messages` to find that point). SearchResultReference messages are counted
    and skipped. Unsolicited notifications (messageID 0, ExtendedResponse) end the search.

    Args:
        data: one or more complete LDAPMessages.
        limit: largest single message accepted, in bytes.

    Returns:
        The :class:`SearchResult`; check ``result_code`` (``None`` = no Done in ``data``).

    Raises:
        DecodeError: empty, truncated, not BER, not an LDAPMessage, too big or too deep, more
            than :data:`MAX_MESSAGES` messages, a
            non-search operation, mixed message IDs, a message after the Done, or non-UTF-8
            names (attribute *values* stay bytes).
    """
    messages, rest = split_messages(data, limit=limit)
    if rest:
        raise DecodeError("truncated LDAPMessage", len(data) - len(rest))
    if not messages:
        raise DecodeError("no LDAPMessage", 0)
    if len(messages) > MAX_MESSAGES:
        raise DecodeError(f"more than {MAX_MESSAGES} LDAPMessages in one reply", 0)
    message_id: int | None = None
    entries: list[SearchEntry] = []
    references = 0
    result_code: int | None = None
    diagnostic = ""
    disconnected = False
    offset = 0
    for raw in messages:
        if result_code is not None:
            raise DecodeError("LDAPMessage after the end of the search", offset)
        msg = _decode_message(raw, offset)
        try:
            mid = int(msg["messageID"])
            op = msg["protocolOp"]
            name = op.getName()
            body = op.getComponent()
            if name == "extendedResp" and mid == 0:
                result_code = int(body["resultCode"])
                diagnostic = utf8(body["diagnosticMessage"].asOctets(), "diagnosticMessage")
                disconnected = True
                continue
            if message_id is None:
                message_id = mid
            elif mid != message_id:
                raise DecodeError(f"message ID {mid} in a reply to {message_id}", offset)
            if name == "searchResEntry":
                attrs = tuple(
                    (
                        utf8(part["type"].asOctets(), "attribute type"),
                        tuple(v.asOctets() for v in part["vals"]),
                    )
                    for part in body["attributes"]
                )
                entries.append(SearchEntry(utf8(body["objectName"].asOctets(), "objectName"), attrs))
            elif name == "searchResRef":
                references += 1
            elif name == "searchResDone":
                result_code = int(body["resultCode"])
                diagnostic = utf8(body["diagnosticMessage"].asOctets(), "diagnosticMessage")
            else:
                raise DecodeError(f"unexpected LDAP operation {name} in a search reply", offset)
        except PyAsn1Error as exc:  # an absent mandatory component
            raise DecodeError("incomplete LDAPMessage", offset, detail=str(exc)[:400]) from exc
        offset += len(raw)
    if message_id is None:  # only a notice of disconnection
        message_id = 0
    return SearchResult(
        message_id=message_id,
        entries=tuple(entries),
        result_code=result_code,
        result_name=None if result_code is None else RESULT_CODE_NAMES.get(result_code, "unknown"),
        diagnostic_message=diagnostic,
        references=references,
        disconnected=disconnected,
    )

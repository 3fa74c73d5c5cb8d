"""LDAP and CLDAP messages for the rootDSE search and the MS-ADTS "LDAP ping" (RFC 4511; MS-ADTS 6.3.3).

Pure codec: bytes in, frozen dataclasses out; no sockets, no clocks. Encoding uses impacket's RFC 4511
ASN.1 (:mod:`impacket.ldap.ldapasn1`, pyasn1). Decoding reads the few search-reply messages in one
iterative pass of our own (:func:`decode_search_response`): pyasn1 builds an object per TLV, about
10 us each, so a 64 KiB CLDAP datagram cost 0.25 s of the event loop and a 1 MiB TCP reply 4.5 s.
Every decode failure raises :class:`~exporter.errors.DecodeError`; a reply is capped in bytes,
messages, attributes and values. The rootDSE itself is read by :mod:`exporter.wire.rootdse`.

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
from pyasn1.codec.ber import encoder as ber_encoder

from exporter.errors import DecodeError
from exporter.wire.ber import read_tlv_header, tlv_length

__all__ = [
    "MAX_ATTRIBUTES",
    "MAX_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "MAX_REPLY_BYTES",
    "MAX_VALUES",
    "RESULT_CODE_NAMES",
    "SearchEntry",
    "SearchReplyEnd",
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
#: Most bytes accepted in one search reply (an AD rootDSE is 3-10 KiB).
MAX_REPLY_BYTES = 1024 * 1024
#: Most attributes accepted in one search reply, over all its entries (an AD rootDSE has about 25).
MAX_ATTRIBUTES = 1024
#: Most attribute values accepted in one search reply (an AD rootDSE has about 150).
MAX_VALUES = 4096

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


_INTEGER = 0x02
_OCTET_STRING = 0x04
_ENUMERATED = 0x0A
_SET = 0x31
_OP_ENTRY = 0x64  # [APPLICATION 4] SearchResultEntry
_OP_DONE = 0x65  # [APPLICATION 5] SearchResultDone
_OP_REFERENCE = 0x73  # [APPLICATION 19] SearchResultReference
_OP_EXTENDED = 0x78  # [APPLICATION 24] ExtendedResponse; with messageID 0 a Notice of Disconnection (4.4.1)
_CONTROLS = 0xA0  # [0] Controls
_REFERRAL = 0xA3  # [3] Referral, in an LDAPResult
_RESPONSE_NAME_VALUE = (0x8A, 0x8B)  # [10] responseName, [11] responseValue, in an ExtendedResponse
_MAX_MESSAGE_ID = 2**31 - 1

#: protocolOp identifier octet -> its RFC 4511 name (``0x64`` searchResEntry ...), from impacket's ASN.1.
_OP_NAMES: Mapping[int, str] = MappingProxyType(
    {
        (tag.tagClass | tag.tagFormat | tag.tagId): str(named.name)
        for named in ldapasn1.LDAPMessage().componentType["protocolOp"].asn1Object.componentType.namedTypes
        for tag in named.asn1Object.tagSet[-1:]
    }
)


def _tlv(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int, int]:
    """``(identifier octet, content start, content end)`` of the TLV at ``pos``, which must end by ``end``."""
    if pos + 2 <= end and buf[pos + 1] < 0x80 and buf[pos] & 0x1F != 0x1F:  # short form: most TLVs
        start = pos + 2
        stop = start + buf[pos + 1]
    else:
        hdr = read_tlv_header(buf, pos) if pos < end else None
        if hdr is None:
            raise DecodeError(f"truncated {what}", pos)
        start = pos + hdr[2]
        stop = start + hdr[3]
    if stop > end:
        raise DecodeError(f"{what} overruns its container", pos)
    return buf[pos], start, stop


def _expect(buf: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    """Content ``(start, end)`` of the TLV at ``pos``, which must have identifier octet ``tag``."""
    got, start, stop = _tlv(buf, pos, end, what)
    if got != tag:
        raise DecodeError(f"{what}: expected BER tag 0x{tag:02x}, got 0x{got:02x}", pos)
    return start, stop


def _integer(buf: bytes, start: int, stop: int, what: str) -> int:
    """A BER INTEGER or ENUMERATED content (X.690 8.3), at most 8 octets."""
    if not 1 <= stop - start <= 8:
        raise DecodeError(f"{what} of {stop - start} octets", start)
    return int.from_bytes(buf[start:stop], "big", signed=True)


class _Budget:
    """What one reply may still hold: :data:`MAX_ATTRIBUTES` attributes, :data:`MAX_VALUES` values."""

    __slots__ = ("attributes", "values")

    def __init__(self) -> None:
        self.attributes = MAX_ATTRIBUTES
        self.values = MAX_VALUES


def _entry(buf: bytes, start: int, stop: int, budget: _Budget) -> SearchEntry:
    """SearchResultEntry ::= SEQUENCE { objectName LDAPDN, attributes PartialAttributeList } (RFC 4511 4.5.2)."""
    name_start, pos = _expect(buf, start, stop, _OCTET_STRING, "objectName")
    object_name = utf8(buf[name_start:pos], "objectName")
    pos, list_end = _expect(buf, pos, stop, _TAG_SEQUENCE, "attribute list")
    if list_end != stop:
        raise DecodeError("trailing bytes in a SearchResultEntry", list_end)
    attributes: list[tuple[str, tuple[bytes, ...]]] = []
    while pos < list_end:
        budget.attributes -= 1
        if budget.attributes < 0:
            raise DecodeError(f"more than {MAX_ATTRIBUTES} attributes in one reply", pos)
        attr_start, attr_end = _expect(buf, pos, list_end, _TAG_SEQUENCE, "PartialAttribute")
        type_start, type_end = _expect(buf, attr_start, attr_end, _OCTET_STRING, "attribute type")
        at, vals_end = _expect(buf, type_end, attr_end, _SET, "attribute values")
        if vals_end != attr_end:
            raise DecodeError("trailing bytes in a PartialAttribute", vals_end)
        values: list[bytes] = []
        while at < vals_end:
            budget.values -= 1
            if budget.values < 0:
                raise DecodeError(f"more than {MAX_VALUES} attribute values in one reply", at)
            value_start, value_end = _expect(buf, at, vals_end, _OCTET_STRING, "attribute value")
            values.append(buf[value_start:value_end])
            at = value_end
        attributes.append((utf8(buf[type_start:type_end], "attribute type"), tuple(values)))
        pos = attr_end
    return SearchEntry(object_name, tuple(attributes))


def _reference(buf: bytes, pos: int, stop: int, budget: _Budget) -> None:
    """Check a SearchResultReference ::= SEQUENCE SIZE (1..MAX) OF URI (RFC 4511 4.5.3); its URIs are dropped."""
    if pos == stop:
        raise DecodeError("SearchResultReference without a URI", pos)
    while pos < stop:
        budget.values -= 1
        if budget.values < 0:
            raise DecodeError(f"more than {MAX_VALUES} attribute values in one reply", pos)
        pos = _expect(buf, pos, stop, _OCTET_STRING, "reference URI")[1]


def _result(buf: bytes, start: int, stop: int, *, extended: bool) -> tuple[int, str]:
    """``(resultCode, diagnosticMessage)`` of an LDAPResult or ExtendedResponse (RFC 4511 4.1.9, 4.12)."""
    code_start, pos = _expect(buf, start, stop, _ENUMERATED, "resultCode")
    code = _integer(buf, code_start, pos, "resultCode")
    _matched, pos = _expect(buf, pos, stop, _OCTET_STRING, "matchedDN")
    diagnostic_start, pos = _expect(buf, pos, stop, _OCTET_STRING, "diagnosticMessage")
    diagnostic = utf8(buf[diagnostic_start:pos], "diagnosticMessage")
    for optional in (_REFERRAL, *(_RESPONSE_NAME_VALUE if extended else ())):
        if pos < stop and buf[pos] == optional:
            pos = _tlv(buf, pos, stop, "LDAPResult component")[2]
    if pos != stop:
        raise DecodeError("trailing bytes in an LDAPResult", pos)
    return code, diagnostic


def _message_ends(data: bytes, limit: int) -> list[int]:
    """The end offset of each LDAPMessage in ``data``; a header walk of at most :data:`MAX_MESSAGES` + 1."""
    ends: list[int] = []
    pos = 0
    while pos < len(data):
        if len(ends) == MAX_MESSAGES:
            raise DecodeError(f"more than {MAX_MESSAGES} LDAPMessages in one reply", pos)
        total = message_length(data, pos, limit=limit)
        if total is None or pos + total > len(data):
            raise DecodeError("truncated LDAPMessage", pos)
        pos += total
        ends.append(pos)
    return ends


def decode_search_response(data: bytes, *, limit: int = MAX_MESSAGE_BYTES) -> SearchResult:
    """Decode the reply to a search: SearchResultEntry* then SearchResultDone (RFC 4511 4.5.2).

    Works on one CLDAP datagram (MS-ADTS 3.1.1.3.1.11: entries and the Done in one datagram,
    short or 4-byte long-form BER lengths) or on a TCP byte stream cut at the end of the Done
    (:class:`SearchReplyEnd` finds that point). SearchResultReference messages are counted and
    skipped; controls are skipped. Unsolicited notifications (messageID 0, ExtendedResponse) end
    the search.

    One pass over the BER (X.690 8.1), no recursion, no object per TLV; the caps (:data:`MAX_REPLY_BYTES`,
    ``limit``, :data:`MAX_MESSAGES`, :data:`MAX_ATTRIBUTES`, :data:`MAX_VALUES`) are checked as it goes,
    so a 64 KiB datagram costs about 2 ms. Definite lengths and primitive strings only (RFC 4511 5.1).

    Args:
        data: one or more complete LDAPMessages.
        limit: largest single message accepted, in bytes.

    Returns:
        The :class:`SearchResult`; check ``result_code`` (``None`` = no Done in ``data``).

    Raises:
        DecodeError: empty, truncated, not BER, not an LDAPMessage, over a cap, a non-search
            operation, mixed message IDs, a message after the Done, or non-UTF-8 names (attribute
            *values* stay bytes).
    """
    if len(data) > MAX_REPLY_BYTES:
        raise DecodeError(f"search reply of {len(data)} bytes exceeds limit {MAX_REPLY_BYTES}", 0)
    ends = _message_ends(data, limit)
    if not ends:
        raise DecodeError("no LDAPMessage", 0)
    budget = _Budget()
    message_id: int | None = None
    entries: list[SearchEntry] = []
    references = 0
    result_code: int | None = None
    diagnostic = ""
    disconnected = False
    offset = 0
    for message_end in ends:
        if result_code is not None:
            raise DecodeError("LDAPMessage after the end of the search", offset)
        pos, end = _expect(data, offset, message_end, _TAG_SEQUENCE, "LDAPMessage")
        id_start, pos = _expect(data, pos, end, _INTEGER, "messageID")
        mid = _integer(data, id_start, pos, "messageID")
        if not 0 <= mid <= _MAX_MESSAGE_ID:
            raise DecodeError(f"messageID {mid} outside 0..{_MAX_MESSAGE_ID}", id_start)
        if pos >= end:
            raise DecodeError("LDAPMessage without a protocolOp", pos)
        op, body, body_end = _tlv(data, pos, end, "protocolOp")
        if body_end < end and data[body_end] == _CONTROLS:
            body_end = _tlv(data, body_end, end, "controls")[2]
        if body_end != end:
            raise DecodeError("trailing bytes inside LDAPMessage", body_end)
        if op == _OP_EXTENDED and mid == 0:
            result_code, diagnostic = _result(data, body, end, extended=True)
            disconnected = True
            offset = end
            continue
        if message_id is None:
            message_id = mid
        elif mid != message_id:
            raise DecodeError(f"message ID {mid} in a reply to {message_id}", offset)
        if op == _OP_ENTRY:
            entries.append(_entry(data, body, end, budget))
        elif op == _OP_REFERENCE:
            _reference(data, body, end, budget)
            references += 1
        elif op == _OP_DONE:
            result_code, diagnostic = _result(data, body, end, extended=False)
        else:
            name = _OP_NAMES.get(op, f"with tag 0x{op:02x}")
            raise DecodeError(f"unexpected LDAP operation {name} in a search reply", offset)
        offset = end
    return SearchResult(
        message_id=0 if message_id is None else message_id,  # 0: only a notice of disconnection
        entries=tuple(entries),
        result_code=result_code,
        result_name=None if result_code is None else RESULT_CODE_NAMES.get(result_code, "unknown"),
        diagnostic_message=diagnostic,
        references=references,
        disconnected=disconnected,
    )


class SearchReplyEnd:
    """Where a search reply ends in a TCP stream: a ``complete`` callable for a stream reader.

    Called with the bytes received so far (each call's buffer extends the last one's), it returns the
    length up to and including the SearchResultDone, or a Notice of Disconnection (RFC 4511 4.5.2,
    4.4.1), or ``None`` while more bytes are needed. It reads the BER headers of each LDAPMessage once
    (its messageID and protocolOp tags), never a whole message, and remembers where it stopped: the
    cost of a reply is linear in its messages, however many reads it arrives in.

    Args:
        limit: largest single message accepted, in bytes.

    Attributes:
        end: the length found (what the last call returned), or ``None``.

    Raises:
        DecodeError: (from a call) not an LDAPMessage, a message over ``limit``, or more than
            :data:`MAX_MESSAGES` messages before the end.
    """

    __slots__ = ("_count", "_limit", "_pos", "end")

    def __init__(self, *, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.end: int | None = None
        self._pos = 0
        self._count = 0
        self._limit = limit

    def __call__(self, buf: bytes) -> int | None:
        """The end of the search reply in ``buf``, or ``None`` (more bytes needed)."""
        while True:
            start = self._pos
            total = message_length(buf, start, limit=self._limit)
            if total is None or start + total > len(buf):
                return None
            self._count += 1
            if self._count > MAX_MESSAGES:
                raise DecodeError(f"more than {MAX_MESSAGES} LDAPMessages in one reply", start)
            end = self._pos = start + total
            content = _tlv(buf, start, end, "LDAPMessage")[1]
            try:
                id_start, op_at = _expect(buf, content, end, _INTEGER, "messageID")
            except DecodeError:
                raise DecodeError("not an LDAPMessage", start) from None
            if op_at >= end:
                raise DecodeError("LDAPMessage without a protocolOp", start)
            zero_id = op_at - id_start == 1 and buf[id_start] == 0
            if buf[op_at] == _OP_DONE or (buf[op_at] == _OP_EXTENDED and zero_id):
                self.end = end
                return end

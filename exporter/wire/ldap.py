"""LDAP and CLDAP messages for the rootDSE search and the MS-ADTS "LDAP ping".

Pure codec: bytes in, frozen dataclasses out; no sockets, no clocks. Encoding and decoding use
impacket's RFC 4511 ASN.1 (:mod:`impacket.ldap.ldapasn1`, pyasn1). Every decode failure raises
:class:`~exporter.errors.DecodeError`.

Hostile input is bounded before pyasn1 sees it: :func:`check_ber` walks the TLV tree iteratively
and refuses indefinite lengths, nesting deeper than ``max_depth`` and more than ``max_elements``
TLVs, so no reply can recurse deeply, allocate much or take long. The BER helpers here
(:func:`read_tlv_header`, :func:`tlv_length`, :func:`check_ber`, :func:`parse_generalized_time`)
are shared with :mod:`exporter.wire.kerberos` and :mod:`exporter.wire.snmp`.

Check by hand (a DC or ``slapd`` on 389)::

    ldapsearch -x -H ldap://DC -b "" -s base "(objectClass=*)"
    python -c "from exporter.wire.ldap import encode_root_dse_search as e; print(e(1).hex())"
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

from impacket.ldap import ldapasn1
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.ber import encoder as ber_encoder
from pyasn1.error import PyAsn1Error

from exporter.errors import DecodeError, ProtocolError

__all__ = [
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "RESULT_CODE_NAMES",
    "RootDSE",
    "SearchEntry",
    "SearchResult",
    "check_ber",
    "decode_search_response",
    "encode_ldap_ping",
    "encode_root_dse_search",
    "encode_search_response",
    "message_length",
    "parse_generalized_time",
    "parse_root_dse",
    "read_tlv_header",
    "split_messages",
    "tlv_length",
]

#: Largest LDAP message accepted (bytes). An AD rootDSE is 3-10 KiB; a CLDAP datagram is < 64 KiB.
MAX_MESSAGE_BYTES = 256 * 1024
#: Deepest TLV nesting accepted. A SearchResultEntry nests 6 deep.
MAX_DEPTH = 16
#: Most TLVs accepted in one message. An AD rootDSE has about 300.
MAX_ELEMENTS = 20_000
#: Most LDAPMessages accepted in one search reply (a rootDSE search gets 2).
MAX_MESSAGES = 256

#: RFC 4511 4.1.9 resultCode -> name (``0`` success, ``49`` invalidCredentials, ...).
RESULT_CODE_NAMES: Mapping[int, str] = MappingProxyType(
    {int(value): str(name) for name, value in ldapasn1.ResultCode.namedValues.items()}
)

_TAG_SEQUENCE = 0x30
_MAX_LENGTH_OCTETS = 4


# --------------------------------------------------------------------------- BER helpers


def read_tlv_header(buf: bytes, pos: int = 0) -> tuple[int, bool, int, int] | None:
    """Read one BER identifier and definite length (X.690 8.1.2, 8.1.3).

    Args:
        buf: the bytes.
        pos: offset of the identifier octet.

    Returns:
        ``(first_identifier_octet, constructed, header_length, content_length)``, or ``None``
        when ``buf`` ends inside the header (more bytes needed).

    Raises:
        DecodeError: indefinite length (forbidden by RFC 4511 5.1, RFC 4120 5.1 DER and
            RFC 3417 8), a length of more than 4 octets, or a tag number of more than 4 octets.
    """
    end = len(buf)
    if pos >= end:
        return None
    first = buf[pos]
    i = pos + 1
    if first & 0x1F == 0x1F:  # high-tag-number form
        for _ in range(_MAX_LENGTH_OCTETS):
            if i >= end:
                return None
            more = buf[i] & 0x80
            i += 1
            if not more:
                break
        else:
            raise DecodeError("BER tag number too long", pos)
    if i >= end:
        return None
    lb = buf[i]
    i += 1
    if lb < 0x80:
        length = lb
    elif lb == 0x80:
        raise DecodeError("BER indefinite length not allowed", i - 1)
    else:
        n = lb & 0x7F
        if n > _MAX_LENGTH_OCTETS:
            raise DecodeError(f"BER length of {n} octets too long", i - 1)
        if i + n > end:
            return None
        length = int.from_bytes(buf[i : i + n], "big")
        i += n
    return first, bool(first & 0x20), i - pos, length


def tlv_length(
    buf: bytes, pos: int = 0, *, expected_first: int | None = None, limit: int = MAX_MESSAGE_BYTES
) -> int | None:
    """Total length (header + content) of the TLV at the start of ``buf``.

    For a TCP reader: call it on the bytes received so far; ``None`` means "read more".

    Args:
        buf: received bytes.
        pos: offset of the TLV in ``buf`` (no copy is made).
        expected_first: the identifier octet required (e.g. ``0x30``), or ``None`` for any.
        limit: largest total length accepted, in bytes.

    Returns:
        The TLV's total length in bytes (possibly more than ``len(buf)``), or ``None`` when
        even the header is incomplete.

    Raises:
        DecodeError: wrong identifier, bad length form, or total length above ``limit``.
    """
    if pos < len(buf) and expected_first is not None and buf[pos] != expected_first:
        raise DecodeError(f"expected BER tag 0x{expected_first:02x}, got 0x{buf[pos]:02x}", pos)
    hdr = read_tlv_header(buf, pos)
    if hdr is None:
        return None
    _first, _constructed, hlen, clen = hdr
    total = hlen + clen
    if total > limit:
        raise DecodeError(f"BER message of {total} bytes exceeds limit {limit}", pos)
    return total


def check_ber(data: bytes, *, max_depth: int = MAX_DEPTH, max_elements: int = MAX_ELEMENTS) -> None:
    """Check that ``data`` is exactly one well-nested definite-length BER TLV tree, cheaply.

    Iterative (no recursion), O(number of TLVs). Run it before handing hostile bytes to pyasn1,
    whose decoder recurses into constructed values.

    Args:
        data: one complete TLV.
        max_depth: deepest constructed nesting accepted (the outer TLV is depth 1).
        max_elements: most TLVs accepted.

    Raises:
        DecodeError: truncated, trailing bytes, a child overrunning its parent, indefinite
            length, too deep, or too many elements.
    """
    if not data:
        raise DecodeError("empty BER input", 0)
    count = 0
    ends = [len(data)]  # stack of enclosing ends; the outer "parent" is the buffer
    pos = 0
    top_level_seen = False
    while pos < len(data):
        while pos == ends[-1] and len(ends) > 1:
            ends.pop()
        if len(ends) == 1:
            if top_level_seen:
                raise DecodeError("trailing bytes after BER value", pos)
            top_level_seen = True
        hdr = read_tlv_header(data, pos)
        if hdr is None:
            raise DecodeError("truncated BER header", pos)
        _first, constructed, hlen, clen = hdr
        end = pos + hlen + clen
        if end > ends[-1]:
            raise DecodeError("BER value overruns its container", pos)
        count += 1
        if count > max_elements:
            raise DecodeError(f"more than {max_elements} BER elements", pos)
        if constructed:
            if len(ends) > max_depth:
                raise DecodeError(f"BER nesting deeper than {max_depth}", pos)
            ends.append(end)
            pos += hlen
        else:
            pos = end


_GENERALIZED_TIME = re.compile(
    r"(\d{4})(\d{2})(\d{2})(\d{2})(?:(\d{2})(\d{2})?)?(?:[.,](\d{1,9}))?(Z|[+-]\d{2}(?:\d{2})?)?"
)


def parse_generalized_time(text: str) -> datetime:
    """Parse an ASN.1 GeneralizedTime (X.680 46; RFC 4517 3.3.13) to an aware UTC datetime.

    Accepts ``YYYYMMDDHH[MM[SS]][.fraction](Z|+hhmm|-hhmm)``; a value without a zone is taken
    as UTC (AD always sends ``Z``), e.g. ``20240131235959.0Z``.

    Raises:
        DecodeError: the text does not match or names an impossible date.
    """
    m = _GENERALIZED_TIME.fullmatch(text)
    if m is None:
        raise DecodeError(f"not a GeneralizedTime: {text[:40]!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    tz = UTC
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5] or 0))
        tz = timezone(sign * offset)
    try:
        value = datetime(int(year), int(month), int(day), int(hour), int(minute or 0), int(second or 0), tzinfo=tz)
    except ValueError as exc:
        raise DecodeError(f"impossible GeneralizedTime {text!r}: {str(exc)[:160]}") from exc
    try:
        if frac:
            value += timedelta(microseconds=int(frac.ljust(6, "0")[:6]))
        return value.astimezone(UTC)
    except OverflowError as exc:  # year 9999 with a negative offset, year 1 with a positive one
        raise DecodeError(f"GeneralizedTime {text!r} out of range") from exc


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


def _message(message_id: int, op_name: str, op: object) -> bytes:
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
    return _message(message_id, "searchRequest", _search_request("", filt, attributes))


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
    return _message(message_id, "searchRequest", _search_request("", filt, ["Netlogon"]))


def encode_search_response(
    message_id: int,
    entries: Sequence[tuple[str, Sequence[tuple[str, Sequence[bytes]]]]],
    result_code: int = 0,
    diagnostic_message: str = "",
) -> bytes:
    """Encode SearchResultEntry messages followed by a SearchResultDone (RFC 4511 4.5.2).

    For test servers (a fake DC on port 0) and round-trip tests; the probes never send it.

    Args:
        message_id: the request's message ID.
        entries: ``[(object_name, [(attribute, [value_bytes, ...]), ...]), ...]``.
        result_code: SearchResultDone resultCode (RFC 4511 4.1.9).
        diagnostic_message: SearchResultDone diagnosticMessage.

    Returns:
        The concatenated LDAPMessages (one datagram, or a TCP stream).

    Raises:
        ValueError: ``message_id`` out of range.
    """
    out = []
    for object_name, attributes in entries:
        entry = ldapasn1.SearchResultEntry()
        entry["objectName"] = object_name
        attrs = entry["attributes"]
        for i, (attr_type, values) in enumerate(attributes):
            partial = ldapasn1.PartialAttribute()
            partial["type"] = attr_type
            partial["vals"].setComponents(*values)
            attrs[i] = partial
        out.append(_message(message_id, "searchResEntry", entry))
    done = ldapasn1.SearchResultDone()
    done["resultCode"] = result_code
    done["matchedDN"] = ""
    done["diagnosticMessage"] = diagnostic_message
    out.append(_message(message_id, "searchResDone", done))
    return b"".join(out)


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


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not UTF-8: {exc.reason}") from exc


def _decode_message(raw: bytes, offset: int) -> ldapasn1.LDAPMessage:
    check_ber(raw)
    try:
        msg, tail = ber_decoder.decode(raw, asn1Spec=ldapasn1.LDAPMessage())
    except PyAsn1Error as exc:
        raise DecodeError(f"malformed LDAPMessage: {str(exc)[:160]}", offset) from exc
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
                diagnostic = _text(body["diagnosticMessage"].asOctets(), "diagnosticMessage")
                disconnected = True
                continue
            if message_id is None:
                message_id = mid
            elif mid != message_id:
                raise DecodeError(f"message ID {mid} in a reply to {message_id}", offset)
            if name == "searchResEntry":
                attrs = tuple(
                    (
                        _text(part["type"].asOctets(), "attribute type"),
                        tuple(v.asOctets() for v in part["vals"]),
                    )
                    for part in body["attributes"]
                )
                entries.append(SearchEntry(_text(body["objectName"].asOctets(), "objectName"), attrs))
            elif name == "searchResRef":
                references += 1
            elif name == "searchResDone":
                result_code = int(body["resultCode"])
                diagnostic = _text(body["diagnosticMessage"].asOctets(), "diagnosticMessage")
            else:
                raise DecodeError(f"unexpected LDAP operation {name} in a search reply", offset)
        except PyAsn1Error as exc:  # an absent mandatory component
            raise DecodeError(f"incomplete LDAPMessage: {str(exc)[:160]}", offset) from exc
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


# --------------------------------------------------------------------------- rootDSE


def _single(attrs: Mapping[str, tuple[str, ...]], name: str) -> str | None:
    values = attrs.get(name.casefold())
    return values[0] if values else None


def _int(attrs: Mapping[str, tuple[str, ...]], name: str) -> int | None:
    value = _single(attrs, name)
    if value is None:
        return None
    if not re.fullmatch(r"-?\d{1,20}", value.strip()):
        raise DecodeError(f"rootDSE {name} is not an integer: {value[:40]!r}")
    return int(value)


def _bool(attrs: Mapping[str, tuple[str, ...]], name: str) -> bool | None:
    value = _single(attrs, name)
    if value is None:
        return None
    upper = value.strip().upper()
    if upper not in ("TRUE", "FALSE"):  # RFC 4517 3.3.3
        raise DecodeError(f"rootDSE {name} is not a Boolean: {value[:40]!r}")
    return upper == "TRUE"


@dataclass(frozen=True, slots=True)
class RootDSE:
    """The rootDSE of an LDAP server, as PortQry prints it (RFC 4512 5.1; MS-ADTS 3.1.1.3.2).

    Every field but ``attributes`` is ``None`` (or ``()``) when the server did not send the
    attribute; OpenLDAP, for one, sends none of the AD-specific ones.

    Attributes:
        attributes: every attribute as received: name (server's spelling) -> string values.
        current_time: ``currentTime`` (PortQry's ``currentdate``), aware UTC.
        subschema_subentry: ``subschemaSubentry`` DN.
        ds_service_name: ``dsServiceName``, the DC's NTDS Settings DN.
        naming_contexts: ``namingContexts`` DNs.
        default_naming_context: ``defaultNamingContext``, the domain DN.
        schema_naming_context: ``schemaNamingContext``.
        configuration_naming_context: ``configurationNamingContext``.
        root_domain_naming_context: ``rootDomainNamingContext``, the forest root DN.
        supported_control: ``supportedControl`` OIDs.
        supported_ldap_version: ``supportedLDAPVersion`` (e.g. ``(3, 2)``).
        supported_ldap_policies: ``supportedLDAPPolicies`` names.
        highest_committed_usn: ``highestCommittedUSN``.
        supported_sasl_mechanisms: ``supportedSASLMechanisms``.
        dns_host_name: ``dnsHostName``, the DC's FQDN.
        ldap_service_name: ``ldapServiceName`` (``domain:host$@REALM``).
        server_name: ``serverName``, the DC's server object DN.
        supported_capabilities: ``supportedCapabilities`` OIDs.
        is_synchronized: ``isSynchronized``.
        is_global_catalog_ready: ``isGlobalCatalogReady``.
        domain_functionality: ``domainFunctionality`` (MS-ADTS 6.1.4.4: 7 = 2016).
        forest_functionality: ``forestFunctionality``.
        domain_controller_functionality: ``domainControllerFunctionality``.
    """

    attributes: Mapping[str, tuple[str, ...]] = field(hash=False)
    current_time: datetime | None
    subschema_subentry: str | None
    ds_service_name: str | None
    naming_contexts: tuple[str, ...]
    default_naming_context: str | None
    schema_naming_context: str | None
    configuration_naming_context: str | None
    root_domain_naming_context: str | None
    supported_control: tuple[str, ...]
    supported_ldap_version: tuple[int, ...]
    supported_ldap_policies: tuple[str, ...]
    highest_committed_usn: int | None
    supported_sasl_mechanisms: tuple[str, ...]
    dns_host_name: str | None
    ldap_service_name: str | None
    server_name: str | None
    supported_capabilities: tuple[str, ...]
    is_synchronized: bool | None
    is_global_catalog_ready: bool | None
    domain_functionality: int | None
    forest_functionality: int | None
    domain_controller_functionality: int | None

    def get(self, name: str) -> tuple[str, ...]:
        """All values of ``name`` (case-insensitive), or ``()``."""
        key = name.casefold()
        for attr, values in self.attributes.items():
            if attr.casefold() == key:
                return values
        return ()

    @classmethod
    def from_entry(cls, entry: SearchEntry) -> RootDSE:
        """Build from the rootDSE's SearchResultEntry; values are decoded as UTF-8.

        Raises:
            DecodeError: a value is not UTF-8, or a typed attribute (time, integer, Boolean)
                is malformed. The raw entry stays available for a LISTENING verdict.
        """
        raw: dict[str, tuple[str, ...]] = {}
        folded: dict[str, tuple[str, ...]] = {}
        for attr, values in entry.attributes:
            texts = tuple(_text(v, f"rootDSE {attr}") for v in values)
            raw[attr] = raw.get(attr, ()) + texts
            folded[attr.casefold()] = folded.get(attr.casefold(), ()) + texts

        def many(name: str) -> tuple[str, ...]:
            return folded.get(name.casefold(), ())

        current = _single(folded, "currentTime")
        versions = []
        for v in many("supportedLDAPVersion"):
            if not re.fullmatch(r"\d{1,3}", v.strip()):
                raise DecodeError(f"rootDSE supportedLDAPVersion is not an integer: {v[:40]!r}")
            versions.append(int(v))
        return cls(
            attributes=MappingProxyType(raw),
            current_time=None if current is None else parse_generalized_time(current),
            subschema_subentry=_single(folded, "subschemaSubentry"),
            ds_service_name=_single(folded, "dsServiceName"),
            naming_contexts=many("namingContexts"),
            default_naming_context=_single(folded, "defaultNamingContext"),
            schema_naming_context=_single(folded, "schemaNamingContext"),
            configuration_naming_context=_single(folded, "configurationNamingContext"),
            root_domain_naming_context=_single(folded, "rootDomainNamingContext"),
            supported_control=many("supportedControl"),
            supported_ldap_version=tuple(versions),
            supported_ldap_policies=many("supportedLDAPPolicies"),
            highest_committed_usn=_int(folded, "highestCommittedUSN"),
            supported_sasl_mechanisms=many("supportedSASLMechanisms"),
            dns_host_name=_single(folded, "dnsHostName"),
            ldap_service_name=_single(folded, "ldapServiceName"),
            server_name=_single(folded, "serverName"),
            supported_capabilities=many("supportedCapabilities"),
            is_synchronized=_bool(folded, "isSynchronized"),
            is_global_catalog_ready=_bool(folded, "isGlobalCatalogReady"),
            domain_functionality=_int(folded, "domainFunctionality"),
            forest_functionality=_int(folded, "forestFunctionality"),
            domain_controller_functionality=_int(folded, "domainControllerFunctionality"),
        )


def parse_root_dse(result: SearchResult) -> RootDSE:
    """The rootDSE from a search reply: its entry with objectName ``""``.

    Raises:
        ProtocolError: the server refused the search (non-zero resultCode, e.g. after a
            Notice of Disconnection) or sent no rootDSE entry; the port still answered.
        DecodeError: no SearchResultDone, or see :meth:`RootDSE.from_entry`.
    """
    if result.result_code is None:
        raise DecodeError("search reply has no SearchResultDone")
    if result.result_code != 0:
        raise ProtocolError(
            f"LDAP search refused: {result.result_name} ({result.result_code}) {result.diagnostic_message}"
        )
    for entry in result.entries:
        if entry.object_name == "":
            return RootDSE.from_entry(entry)
    raise ProtocolError("LDAP search reply has no rootDSE entry")

"""BER helpers shared by the LDAP, Kerberos and SNMP codecs (X.690 8.1; GeneralizedTime X.680 46).

Hostile input is bounded before pyasn1 sees it: :func:`check_ber` walks the TLV tree iteratively and
refuses indefinite lengths, nesting deeper than ``max_depth`` and more than ``max_elements`` TLVs, so no
reply can make pyasn1's recursive decoder recurse deeply, allocate much or take long.
:func:`read_tlv_header` and :func:`tlv_length` frame BER messages on TCP streams.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pyasn1.error import PyAsn1Error
from pyasn1.type import useful

from exporter.errors import DecodeError

__all__ = [
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_MESSAGE_BYTES",
    "check_ber",
    "parse_generalized_time",
    "read_tlv_header",
    "tlv_length",
]

#: Largest BER message accepted by default (bytes).
MAX_MESSAGE_BYTES = 256 * 1024
#: Deepest TLV nesting accepted by default. A SearchResultEntry nests 6 deep.
MAX_DEPTH = 16
#: Most TLVs accepted in one message by default. An AD rootDSE has about 300.
MAX_ELEMENTS = 20_000

_MAX_LENGTH_OCTETS = 4


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


#: X.680 46.2 forms: local time, UTC (``Z``) or an offset; minutes, seconds and a fraction optional.
_GENERALIZED_TIME = re.compile(r"\d{10}(?:\d{2}(?:\d{2})?)?(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}(?:\d{2})?)?")


def parse_generalized_time(text: str) -> datetime:
    """Parse an ASN.1 GeneralizedTime (X.680 46; RFC 4517 3.3.13) to an aware UTC datetime.

    Accepts ``YYYYMMDDHH[MM[SS]][.fraction](Z|+hh[mm]|-hh[mm])``, e.g. ``20240131235959.0Z``; the
    conversion is :attr:`pyasn1.type.useful.GeneralizedTime.asDateTime`, after a strict syntax check
    (strptime alone accepts unpadded fields).  A value without a zone is taken as UTC (AD always sends
    ``Z``); the fraction is truncated to microseconds.

    Raises:
        DecodeError: the text does not match, names an impossible date, or is out of range once in UTC.
    """
    if _GENERALIZED_TIME.fullmatch(text) is None:
        raise DecodeError(f"not a GeneralizedTime: {text[:40]!r}")
    try:
        value: datetime = useful.GeneralizedTime(text).asDateTime
    except (PyAsn1Error, ValueError) as exc:
        raise DecodeError(f"impossible GeneralizedTime {text!r}", detail=str(exc)[:400]) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # year 9999 with a negative offset, year 1 with a positive one
        raise DecodeError(f"GeneralizedTime {text!r} out of range") from exc

"""SNMP v1/v2c GetRequest and GetResponse (RFC 1157 4.1; RFC 3416 3; RFC 1901) for UDP 161.

Pure codec on a minimal pyasn1 spec defined here (community-based messages only; SNMPv3 is
not spoken). Every decode failure raises :class:`~exporter.errors.DecodeError`; hostile bytes
are bounded by :func:`exporter.wire.ber.check_ber` first.

An agent that does not know the community usually sends nothing at all (RFC 3584 4.1; net-snmp
just counts snmpInBadCommunityNames), so "no reply" is the usual symptom of a wrong community.

Check by hand::

    snmpget -v2c -c public HOST 1.3.6.1.2.1.1.1.0
    python -c "from exporter.wire.snmp import encode_get_request as e; print(e('public', 1, 'v1').hex())"
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.ber import encoder as ber_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import constraint, namedtype, tag, univ

from exporter.errors import DecodeError
from exporter.wire.ber import check_ber

__all__ = [
    "ERROR_STATUS_NAMES",
    "SYS_DESCR",
    "SnmpResponse",
    "VarBind",
    "decode_response",
    "encode_get_request",
    "encode_response",
]

Version = Literal["v1", "v2c"]
VarBindValue = int | str | bytes | None

#: sysDescr.0 (RFC 3418).
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
#: Largest message accepted; RFC 3417 3.2 requires agents to accept 484, UDP caps at 65507.
MAX_MESSAGE_BYTES = 65_535
_MAX_DEPTH = 8
_MAX_ELEMENTS = 4_000

_VERSIONS: Mapping[str, int] = MappingProxyType({"v1": 0, "v2c": 1})
_VERSION_NAMES: Mapping[int, Version] = MappingProxyType({0: "v1", 1: "v2c"})

#: RFC 3416 3 error-status values (0-5 are also RFC 1157's).
ERROR_STATUS_NAMES: Mapping[int, str] = MappingProxyType(
    {
        0: "noError",
        1: "tooBig",
        2: "noSuchName",
        3: "badValue",
        4: "readOnly",
        5: "genErr",
        6: "noAccess",
        7: "wrongType",
        8: "wrongLength",
        9: "wrongEncoding",
        10: "wrongValue",
        11: "noCreation",
        12: "inconsistentValue",
        13: "resourceUnavailable",
        14: "commitFailed",
        15: "undoFailed",
        16: "authorizationError",
        17: "notWritable",
        18: "inconsistentName",
    }
)

# --------------------------------------------------------------------------- ASN.1 spec


def _app(number: int, fmt: int = tag.tagFormatSimple) -> tag.Tag:
    return tag.Tag(tag.tagClassApplication, fmt, number)


def _ctx(number: int, fmt: int = tag.tagFormatSimple) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, fmt, number)


class _IpAddress(univ.OctetString):  # type: ignore[misc]  # pyasn1 is untyped
    tagSet = univ.OctetString.tagSet.tagImplicitly(_app(0))
    subtypeSpec = constraint.ValueSizeConstraint(4, 4)


class _Counter32(univ.Integer):  # type: ignore[misc]  # pyasn1 is untyped
    tagSet = univ.Integer.tagSet.tagImplicitly(_app(1))


class _Gauge32(univ.Integer):  # type: ignore[misc]  # pyasn1 is untyped
    tagSet = univ.Integer.tagSet.tagImplicitly(_app(2))


class _TimeTicks(univ.Integer):  # type: ignore[misc]  # pyasn1 is untyped
    tagSet = univ.Integer.tagSet.tagImplicitly(_app(3))


class _Opaque(univ.OctetString):  # type: ignore[misc]  # pyasn1 is untyped
    tagSet = univ.OctetString.tagSet.tagImplicitly(_app(4))


class _Counter64(univ.Integer):  # type: ignore[misc]  # pyasn1 is untyped
    tagSet = univ.Integer.tagSet.tagImplicitly(_app(6))


class _NoSuchObject(univ.Null):  # type: ignore[misc]  # pyasn1 is untyped
    tagSet = univ.Null.tagSet.tagImplicitly(_ctx(0))


class _NoSuchInstance(univ.Null):  # type: ignore[misc]  # pyasn1 is untyped
    tagSet = univ.Null.tagSet.tagImplicitly(_ctx(1))


class _EndOfMibView(univ.Null):  # type: ignore[misc]  # pyasn1 is untyped
    tagSet = univ.Null.tagSet.tagImplicitly(_ctx(2))


# (kind, spec, (lowest, highest) for integers)
_VALUE_KINDS: tuple[tuple[str, univ.Asn1Type, tuple[int, int] | None], ...] = (
    ("integer", univ.Integer(), (-(2**31), 2**31 - 1)),
    ("octet-string", univ.OctetString(), None),
    ("object-identifier", univ.ObjectIdentifier(), None),
    ("null", univ.Null(), None),
    ("ip-address", _IpAddress(), None),
    ("counter32", _Counter32(), (0, 2**32 - 1)),
    ("gauge32", _Gauge32(), (0, 2**32 - 1)),
    ("timeticks", _TimeTicks(), (0, 2**32 - 1)),
    ("opaque", _Opaque(), None),
    ("counter64", _Counter64(), (0, 2**64 - 1)),
    ("no-such-object", _NoSuchObject(), None),
    ("no-such-instance", _NoSuchInstance(), None),
    ("end-of-mib-view", _EndOfMibView(), None),
)
_KIND_RANGE = {kind: bounds for kind, _spec, bounds in _VALUE_KINDS}


class _Value(univ.Choice):  # type: ignore[misc]  # pyasn1 is untyped
    componentType = namedtype.NamedTypes(*(namedtype.NamedType(k, s) for k, s, _b in _VALUE_KINDS))


class _VarBind(univ.Sequence):  # type: ignore[misc]  # pyasn1 is untyped
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("name", univ.ObjectIdentifier()),
        namedtype.NamedType("value", _Value()),
    )


class _VarBindList(univ.SequenceOf):  # type: ignore[misc]  # pyasn1 is untyped
    componentType = _VarBind()


class _PDU(univ.Sequence):  # type: ignore[misc]  # pyasn1 is untyped
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("request-id", univ.Integer()),
        namedtype.NamedType("error-status", univ.Integer()),
        namedtype.NamedType("error-index", univ.Integer()),
        namedtype.NamedType("variable-bindings", _VarBindList()),
    )


def _pdu(number: int) -> _PDU:
    pdu: _PDU = _PDU().subtype(implicitTag=_ctx(number, tag.tagFormatConstructed))
    return pdu


# RFC 3416 3 PDU tags; [4] is the v1 Trap-PDU (another layout) and is left out on purpose.
_PDU_NAMES = {
    0: "get-request",
    1: "get-next-request",
    2: "response",
    3: "set-request",
    5: "get-bulk-request",
    6: "inform-request",
    7: "snmpV2-trap",
    8: "report",
}


class _PDUs(univ.Choice):  # type: ignore[misc]  # pyasn1 is untyped
    componentType = namedtype.NamedTypes(*(namedtype.NamedType(n, _pdu(t)) for t, n in _PDU_NAMES.items()))


class _Message(univ.Sequence):  # type: ignore[misc]  # pyasn1 is untyped
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", univ.Integer()),
        namedtype.NamedType("community", univ.OctetString()),
        namedtype.NamedType("data", _PDUs()),
    )


# --------------------------------------------------------------------------- API


@dataclass(frozen=True, slots=True)
class VarBind:
    """One variable binding (RFC 3416 3).

    Attributes:
        oid: dotted OID, e.g. ``"1.3.6.1.2.1.1.1.0"``.
        kind: the value's type: ``integer``, ``octet-string``, ``object-identifier``, ``null``,
            ``ip-address``, ``counter32``, ``gauge32``, ``timeticks``, ``opaque``, ``counter64``,
            or a v2c exception ``no-such-object``, ``no-such-instance``, ``end-of-mib-view``.
        value: ``int`` for the integer kinds; ``str`` for OIDs, IP addresses and for octet
            strings that are printable UTF-8 (sysDescr); ``bytes`` for other octet strings and
            opaque; ``None`` for null and the exceptions.
    """

    oid: str
    kind: str
    value: VarBindValue


@dataclass(frozen=True, slots=True)
class SnmpResponse:
    """A decoded GetResponse / Response-PDU (RFC 1157 4.1.4; RFC 3416 4.2.1).

    Attributes:
        version: ``"v1"`` or ``"v2c"``.
        community: the community echoed by the agent.
        request_id: compare with the request's.
        error_status: 0 noError; see :data:`ERROR_STATUS_NAMES`.
        error_status_name: its name (``"unknown"`` if not in the table).
        error_index: 1-based index of the failing varbind, 0 if none.
        varbinds: the variable bindings in order.
    """

    version: Version
    community: str
    request_id: int
    error_status: int
    error_status_name: str
    error_index: int
    varbinds: tuple[VarBind, ...]

    def value(self, oid: str) -> VarBindValue:
        """The value bound to ``oid`` (``None`` if absent or an exception)."""
        for vb in self.varbinds:
            if vb.oid == oid:
                return vb.value
        return None

    @property
    def sys_descr(self) -> str | None:
        """sysDescr.0 as text, if the response carries it."""
        value = self.value(SYS_DESCR)
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return value if isinstance(value, str) else None


def _check_version(version: str) -> int:
    try:
        return _VERSIONS[version]
    except KeyError:
        raise ValueError(f"SNMP version {version!r} is not 'v1' or 'v2c'") from None


def _message(
    *,
    version: str,
    community: str,
    pdu_name: str,
    request_id: int,
    error_status: int,
    error_index: int,
    varbinds: list[tuple[str, univ.Asn1Type]],
) -> bytes:
    if not -(2**31) <= request_id <= 2**31 - 1:
        raise ValueError(f"request_id {request_id} outside Integer32")
    msg = _Message()
    msg["version"] = _check_version(version)
    msg["community"] = community.encode()
    pdu = msg["data"][pdu_name]
    pdu["request-id"] = request_id
    pdu["error-status"] = error_status
    pdu["error-index"] = error_index
    vbl = pdu["variable-bindings"]
    for i, (oid, value) in enumerate(varbinds):
        vb = _VarBind()
        vb["name"] = univ.ObjectIdentifier(oid)
        vb["value"] = value
        vbl[i] = vb
    return bytes(ber_encoder.encode(msg))


def encode_get_request(community: str, request_id: int, version: Version = "v2c", oid: str = SYS_DESCR) -> bytes:
    """Encode a GetRequest for one OID (RFC 1157 4.1.2; RFC 3416 4.2.1).

    Args:
        community: the community string (PortQry's ``-cn``, default ``public``).
        request_id: Integer32; match it against :attr:`SnmpResponse.request_id`.
        version: ``"v1"`` (version 0) or ``"v2c"`` (version 1).
        oid: dotted OID to get; default sysDescr.0.

    Returns:
        The BER message (40 bytes for v1, ``public``, id 1, sysDescr.0).

    Raises:
        ValueError: unknown version, bad OID, or request_id outside Integer32.
    """
    try:
        null_value = _Value()
        null_value["null"] = univ.Null("")
        return _message(
            version=version,
            community=community,
            pdu_name="get-request",
            request_id=request_id,
            error_status=0,
            error_index=0,
            varbinds=[(oid, null_value)],
        )
    except PyAsn1Error as exc:
        raise ValueError(f"cannot encode GetRequest: {str(exc)[:160]}") from exc


def encode_response(
    community: str,
    request_id: int,
    varbinds: list[tuple[str, int | str | bytes | None]],
    *,
    version: Version = "v2c",
    error_status: int = 0,
    error_index: int = 0,
) -> bytes:
    """Encode a Response-PDU (for test agents and round-trip tests; the probe never sends it).

    ``int`` values become INTEGER, ``str`` and ``bytes`` OCTET STRING, ``None`` NULL.

    Raises:
        ValueError: unknown version or a bad OID.
    """
    values = []
    for oid, value in varbinds:
        v = _Value()
        if value is None:
            v["null"] = univ.Null("")
        elif isinstance(value, int):
            v["integer"] = value
        else:
            v["octet-string"] = value.encode() if isinstance(value, str) else value
        values.append((oid, v))
    try:
        return _message(
            version=version,
            community=community,
            pdu_name="response",
            request_id=request_id,
            error_status=error_status,
            error_index=error_index,
            varbinds=values,
        )
    except PyAsn1Error as exc:
        raise ValueError(f"cannot encode Response: {str(exc)[:160]}") from exc


def _octets(raw: bytes) -> str | bytes:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return text
    return raw


def _varbind(vb: univ.Sequence) -> VarBind:
    oid = str(vb["name"])
    choice = vb["value"]
    kind = choice.getName()
    value = choice.getComponent()
    bounds = _KIND_RANGE[kind]
    out: VarBindValue
    if bounds is not None:
        number = int(value)
        if not bounds[0] <= number <= bounds[1]:
            raise DecodeError(f"SNMP {kind} value out of range for {oid}")
        out = number
    elif kind == "octet-string":
        out = _octets(value.asOctets())
    elif kind == "opaque":
        out = value.asOctets()
    elif kind == "object-identifier":
        out = str(value)
    elif kind == "ip-address":
        out = str(ipaddress.IPv4Address(value.asOctets()))
    else:  # null and the v2c exceptions
        out = None
    return VarBind(oid, kind, out)


def decode_response(data: bytes) -> SnmpResponse:
    """Decode an SNMP v1/v2c GetResponse (RFC 1157 4.1; RFC 3416 3, 4.2.1).

    Args:
        data: one UDP datagram.

    Returns:
        The :class:`SnmpResponse`; a non-zero ``error_status`` is still a reply (LISTENING).

    Raises:
        DecodeError: empty, truncated, trailing bytes, too big or too deep, not BER, a version
            other than v1/v2c (SNMPv3 included), a PDU other than Response (the text names it),
            a v1 Trap, OIDs with huge arcs, or integers out of their type's range.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"SNMP message of {len(data)} bytes too long", 0)
    check_ber(data, max_depth=_MAX_DEPTH, max_elements=_MAX_ELEMENTS)
    try:
        msg, tail = ber_decoder.decode(data, asn1Spec=_Message())
    except PyAsn1Error as exc:
        raise DecodeError(f"malformed SNMP message: {str(exc)[:160]}", 0) from exc
    if tail:
        raise DecodeError("trailing bytes after SNMP message", len(data) - len(tail))
    try:
        version = int(msg["version"])
        if version not in _VERSION_NAMES:
            raise DecodeError(f"SNMP version {version} not supported (v1=0, v2c=1)", 0)
        pdus = msg["data"]
        pdu_name = pdus.getName()
        if pdu_name != "response":
            raise DecodeError(f"SNMP {pdu_name} PDU, not a response", 0)
        pdu = pdus.getComponent()
        ints = [int(pdu[k]) for k in ("request-id", "error-status", "error-index")]
        if not all(-(2**31) <= v <= 2**31 - 1 for v in ints):
            raise DecodeError("SNMP PDU integer outside Integer32", 0)
        request_id, error_status, error_index = ints
        community = msg["community"].asOctets().decode("utf-8", "replace")
        varbinds = tuple(_varbind(vb) for vb in pdu["variable-bindings"])
    except PyAsn1Error as exc:
        raise DecodeError(f"incomplete SNMP message: {str(exc)[:160]}", 0) from exc
    except ValueError as exc:  # int->str limit on absurd OID arcs; DecodeError passes through
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"unrepresentable SNMP value: {str(exc)[:160]}", 0) from exc
    return SnmpResponse(
        version=_VERSION_NAMES[version],
        community=community,
        request_id=request_id,
        error_status=error_status,
        error_status_name=ERROR_STATUS_NAMES.get(error_status, "unknown"),
        error_index=error_index,
        varbinds=varbinds,
    )

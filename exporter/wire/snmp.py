"""SNMP v1/v2c GetRequest and GetResponse (RFC 1157 4.1; RFC 3416 3; RFC 1901) for UDP 161.

Pure codec on pyasn1-modules' specs: :mod:`pyasn1_modules.rfc1157` (v1 Message and PDUs, RFC 1155
values) and :mod:`pyasn1_modules.rfc1901` / :mod:`~pyasn1_modules.rfc1905` / :mod:`~pyasn1_modules.rfc1902`
(v2c). Community-based messages only; SNMPv3 is not spoken. Every decode failure raises
:class:`~exporter.errors.DecodeError`; hostile bytes are bounded by :func:`exporter.wire.ber.check_ber`
and a size cap before pyasn1 sees them.

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
from pyasn1.type import univ
from pyasn1.type.error import ValueConstraintError
from pyasn1_modules import rfc1157, rfc1901, rfc1905

from exporter.errors import DecodeError
from exporter.wire.ber import check_ber

__all__ = [
    "ERROR_STATUS_NAMES",
    "SYS_DESCR",
    "SnmpResponse",
    "VarBind",
    "decode_response",
    "encode_get_request",
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

# pyasn1-modules' alternative path -> our kind.  v1: RFC 1155 ObjectSyntax; v2c: RFC 1905 VarBind choice over
# RFC 1902 ObjectSyntax.
_V1_KINDS: Mapping[tuple[str, ...], str] = MappingProxyType(
    {
        ("simple", "number"): "integer",
        ("simple", "string"): "octet-string",
        ("simple", "object"): "object-identifier",
        ("simple", "empty"): "null",
        ("application-wide", "address", "internet"): "ip-address",
        ("application-wide", "counter"): "counter32",
        ("application-wide", "gauge"): "gauge32",
        ("application-wide", "ticks"): "timeticks",
        ("application-wide", "arbitrary"): "opaque",
    }
)
_V2C_KINDS: Mapping[tuple[str, ...], str] = MappingProxyType(
    {
        ("value", "simple", "integer-value"): "integer",
        ("value", "simple", "string-value"): "octet-string",
        ("value", "simple", "objectID-value"): "object-identifier",
        ("value", "application-wide", "ipAddress-value"): "ip-address",
        ("value", "application-wide", "counter-value"): "counter32",
        ("value", "application-wide", "gauge32-value"): "gauge32",
        ("value", "application-wide", "timeticks-value"): "timeticks",
        ("value", "application-wide", "arbitrary-value"): "opaque",
        ("value", "application-wide", "big-counter-value"): "counter64",
        ("unSpecified",): "null",
        ("noSuchObject",): "no-such-object",
        ("noSuchInstance",): "no-such-instance",
        ("endOfMibView",): "end-of-mib-view",
    }
)
_KIND_RANGE: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "integer": (-(2**31), 2**31 - 1),
        "counter32": (0, 2**32 - 1),
        "gauge32": (0, 2**32 - 1),
        "timeticks": (0, 2**32 - 1),
        "counter64": (0, 2**64 - 1),
    }
)
#: The response PDU's alternative name: RFC 1157 GetResponse-PDU, RFC 3416 Response-PDU.
_RESPONSE_PDU = MappingProxyType({0: "get-response", 1: "response"})


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


def encode_get_request(community: str, request_id: int, version: Version = "v2c", oid: str = SYS_DESCR) -> bytes:
    """Encode a GetRequest for one OID (RFC 1157 4.1.2; RFC 3416 4.2.1), its value NULL.

    v1 is a :class:`pyasn1_modules.rfc1157.Message`; v2c a :class:`pyasn1_modules.rfc1901.Message`
    whose ``data`` is an :class:`pyasn1_modules.rfc1905.PDUs` ``get-request``.

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
    number = _check_version(version)
    if not -(2**31) <= request_id <= 2**31 - 1:
        raise ValueError(f"request_id {request_id} outside Integer32")
    try:
        if number == 0:
            msg = rfc1157.Message()
            pdu = msg["data"]["get-request"]
            vb = rfc1157.VarBind()
            vb["value"]["simple"]["empty"] = univ.Null("")
        else:
            msg = rfc1901.Message()
            pdus = rfc1905.PDUs()
            pdu = pdus["get-request"]
            vb = rfc1905.VarBind()
            vb[""]["unSpecified"] = univ.Null("")
        vb["name"] = oid
        pdu["request-id"] = request_id
        pdu["error-status"] = 0
        pdu["error-index"] = 0
        pdu["variable-bindings"][0] = vb
        msg["version"] = number
        msg["community"] = community.encode()
        if number == 1:
            msg["data"] = univ.Any(ber_encoder.encode(pdus))
        return bytes(ber_encoder.encode(msg))
    except (PyAsn1Error, KeyError) as exc:  # pyasn1 turns a bad component value into KeyError
        raise ValueError(f"cannot encode GetRequest: {str(exc)[:160]}") from exc


def _octets(raw: bytes) -> str | bytes:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return text
    return raw


def _path(choice: univ.Choice) -> tuple[tuple[str, ...], object]:
    """The names of the nested CHOICE alternatives down to the value, and the value."""
    names: list[str] = []
    value: object = choice
    while isinstance(value, univ.Choice):
        names.append(value.getName())
        value = value.getComponent()
    return tuple(names), value


def _varbind(vb: univ.Sequence, v1: bool) -> VarBind:
    oid = str(vb["name"])
    path, value = _path(vb.getComponentByPosition(1))
    kind = (_V1_KINDS if v1 else _V2C_KINDS).get(path)
    if kind is None:
        raise DecodeError(f"SNMP value {'/'.join(path)} not understood for {oid}", 0)
    bounds = _KIND_RANGE.get(kind)
    out: VarBindValue
    if bounds is not None:
        number = int(value)  # type: ignore[call-overload]
        if not bounds[0] <= number <= bounds[1]:
            raise DecodeError(f"SNMP {kind} value out of range for {oid}")
        out = number
    elif kind == "octet-string":
        out = _octets(value.asOctets())  # type: ignore[attr-defined]
    elif kind == "opaque":
        out = value.asOctets()  # type: ignore[attr-defined]
    elif kind == "object-identifier":
        out = str(value)
    elif kind == "ip-address":
        out = str(ipaddress.IPv4Address(value.asOctets()))  # type: ignore[attr-defined]
    else:  # null and the v2c exceptions
        out = None
    return VarBind(oid, kind, out)


def _decode(data: bytes, spec: univ.Asn1Item, what: str) -> univ.Asn1Item:
    try:
        value, tail = ber_decoder.decode(data, asn1Spec=spec)
    except ValueConstraintError as exc:
        raise DecodeError(f"SNMP {what} value out of range", 0, detail=str(exc)[:400]) from exc
    except PyAsn1Error as exc:
        raise DecodeError(f"malformed SNMP {what}", 0, detail=str(exc)[:400]) from exc
    if tail:
        raise DecodeError(f"trailing bytes after SNMP {what}", len(data) - len(tail))
    return value


def decode_response(data: bytes) -> SnmpResponse:
    """Decode an SNMP v1/v2c GetResponse (RFC 1157 4.1; RFC 3416 3, 4.2.1).

    The message is read as an :class:`pyasn1_modules.rfc1901.Message` (its ``data`` left open), then the
    PDU against :class:`pyasn1_modules.rfc1157.Pdus` (version 0) or :class:`pyasn1_modules.rfc1905.PDUs`
    (version 1).

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
    msg = _decode(data, rfc1901.Message(), "message")
    try:
        version = int(msg["version"])
        if version not in _VERSION_NAMES:
            raise DecodeError(f"SNMP version {version} not supported (v1=0, v2c=1)", 0)
        raw_pdu = msg["data"].asOctets()
        pdus = _decode(raw_pdu, rfc1157.Pdus() if version == 0 else rfc1905.PDUs(), "PDU")
        pdu_name = pdus.getName()
        if pdu_name != _RESPONSE_PDU[version]:
            raise DecodeError(f"SNMP {pdu_name} PDU, not a response", 0)
        pdu = pdus.getComponent()
        ints = [int(pdu[k]) for k in ("request-id", "error-status", "error-index")]
        if not all(-(2**31) <= v <= 2**31 - 1 for v in ints):
            raise DecodeError("SNMP PDU integer outside Integer32", 0)
        request_id, error_status, error_index = ints
        community = msg["community"].asOctets().decode("utf-8", "replace")
        varbinds = tuple(_varbind(vb, version == 0) for vb in pdu["variable-bindings"])
    except PyAsn1Error as exc:
        raise DecodeError("incomplete SNMP message", 0, detail=str(exc)[:400]) from exc
    except ValueError as exc:  # int->str limit on absurd OID arcs; DecodeError passes through
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError("unrepresentable SNMP value", 0, detail=str(exc)[:400]) from exc
    return SnmpResponse(
        version=_VERSION_NAMES[version],
        community=community,
        request_id=request_id,
        error_status=error_status,
        error_status_name=ERROR_STATUS_NAMES.get(error_status, "unknown"),
        error_index=error_index,
        varbinds=varbinds,
    )

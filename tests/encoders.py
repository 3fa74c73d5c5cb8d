"""Server-side encoders for the wire codecs: what a test peer sends back (never sent by the probes).

Each builds a reply with the same library types the decoder reads it with (impacket's ldapasn1, krb5
ASN.1, SMB/SMB2 structures and SPNEGO, pyasn1-modules' SNMP) or by hand for our own formats (EPM NDR
stubs and towers, connectionless RPC fragments, NBSTAT, Netlogon, MC-SQLR).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from impacket import smb, smb3structs, spnego
from impacket.krb5 import asn1 as krb_asn1
from impacket.krb5 import constants
from impacket.krb5.types import KerberosTime
from impacket.ldap import ldapasn1
from pyasn1.codec.ber import encoder as ber_encoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc1157, rfc1901, rfc1905

from exporter.wire import clrpc, epm, mssqlr
from exporter.wire.ldap import encode_message
from exporter.wire.mssqlr import SqlInstance
from exporter.wire.netlogon import NetlogonSamLogonResponseEx

# --------------------------------------------------------------------------- LDAP


def encode_search_response(
    message_id: int,
    entries: Sequence[tuple[str, Sequence[tuple[str, Sequence[bytes]]]]],
    result_code: int = 0,
    diagnostic_message: str = "",
) -> bytes:
    """Encode SearchResultEntry messages followed by a SearchResultDone (RFC 4511 4.5.2).

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
        out.append(encode_message(message_id, "searchResEntry", entry))
    done = ldapasn1.SearchResultDone()
    done["resultCode"] = result_code
    done["matchedDN"] = ""
    done["diagnosticMessage"] = diagnostic_message
    out.append(encode_message(message_id, "searchResDone", done))
    return b"".join(out)


# --------------------------------------------------------------------------- SNMP


def encode_snmp_response(
    community: str,
    request_id: int,
    varbinds: Sequence[tuple[str, int | str | bytes | None]],
    *,
    version: str = "v2c",
    error_status: int = 0,
    error_index: int = 0,
) -> bytes:
    """Encode a GetResponse-PDU (RFC 1157 4.1.4, v1) or Response-PDU (RFC 3416 4.2.1, v2c) with pyasn1-modules.

    ``int`` values become INTEGER, ``str`` and ``bytes`` OCTET STRING, ``None`` NULL.
    """
    v1 = version == "v1"
    if v1:
        msg = rfc1157.Message()
        pdu = msg["data"]["get-response"]
    else:
        msg = rfc1901.Message()
        pdus = rfc1905.PDUs()
        pdu = pdus["response"]
    pdu["request-id"] = request_id
    pdu["error-status"] = error_status
    pdu["error-index"] = error_index
    pdu["variable-bindings"].clear()
    for i, (oid, value) in enumerate(varbinds):
        vb = rfc1157.VarBind() if v1 else rfc1905.VarBind()
        vb["name"] = oid
        syntax = vb["value"] if v1 else vb[""]
        if value is None:
            (syntax["simple"] if v1 else syntax)["empty" if v1 else "unSpecified"] = univ.Null("")
        else:
            simple = syntax["simple"] if v1 else syntax["value"]["simple"]
            if isinstance(value, int):
                simple["number" if v1 else "integer-value"] = value
            else:
                simple["string" if v1 else "string-value"] = value.encode() if isinstance(value, str) else value
        pdu["variable-bindings"][i] = vb
    msg["version"] = 0 if v1 else 1
    msg["community"] = community.encode()
    if not v1:
        msg["data"] = univ.Any(ber_encoder.encode(pdus))
    return bytes(ber_encoder.encode(msg))


# --------------------------------------------------------------------------- Kerberos


def encode_krb_error(
    error_code: int,
    realm: str,
    stime: datetime,
    *,
    susec: int = 0,
    sname: Sequence[str] | None = None,
    e_text: str | None = None,
    e_data: bytes | None = None,
) -> bytes:
    """Encode a Windows-style KRB-ERROR (RFC 4120 5.9.1; no ctime, cusec, crealm, cname).

    Args:
        error_code: RFC 4120 7.5.9 code.
        realm: the KDC's realm.
        stime: the KDC's time (aware; whole seconds are sent, the rest goes in ``susec``).
        susec: microseconds 0..999999.
        sname: server name components; default ``krbtgt/REALM``.
        e_text: optional text.
        e_data: optional DER bytes (METHOD-DATA).

    Returns:
        The DER-encoded KRB-ERROR ([APPLICATION 30]).

    Raises:
        ValueError: a naive ``stime``.
    """
    err = krb_asn1.KRB_ERROR()
    err["pvno"] = 5
    err["msg-type"] = int(constants.ApplicationTagNumbers.KRB_ERROR.value)
    if stime.tzinfo is None:
        raise ValueError("Kerberos times must be timezone-aware")
    err["stime"] = KerberosTime.to_asn1(stime.astimezone(UTC))
    err["susec"] = susec
    err["error-code"] = error_code
    err["realm"] = realm
    err["sname"]["name-type"] = constants.PrincipalNameType.NT_SRV_INST.value
    for i, part in enumerate(list(sname) if sname is not None else ["krbtgt", realm]):
        err["sname"]["name-string"][i] = part
    if e_text is not None:
        err["e-text"] = e_text
    if e_data is not None:
        err["e-data"] = e_data
    return bytes(der_encoder.encode(err))


# --------------------------------------------------------------------------- Netlogon


def _dns_name(name: str) -> bytes:
    out = bytearray()
    for label in name.split(".") if name else []:
        raw = label.encode("utf-8")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS label {label!r} in {name!r}")
        out += bytes([len(raw)]) + raw
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"DNS name {name!r} longer than 255 bytes")
    return bytes(out)


def encode_netlogon(resp: NetlogonSamLogonResponseEx) -> bytes:
    """Encode ``resp`` without name compression (MS-ADTS 6.3.1.9).

    ``flags`` is ignored in favour of ``flags_raw``; ``dc_address`` adds a sockaddr_in with
    port 0; ``next_closest_site_name`` is written when not ``None``.

    Raises:
        ValueError: a name with an empty or over-long label, or fields out of range.
    """
    out = bytearray(struct.pack("<HHI", resp.opcode, 0, resp.flags_raw))
    out += resp.domain_guid.bytes_le
    for name in (
        resp.dns_forest_name,
        resp.dns_domain_name,
        resp.dns_host_name,
        resp.netbios_domain_name,
        resp.netbios_computer_name,
        resp.user_name,
        resp.dc_site_name,
        resp.client_site_name,
    ):
        out += _dns_name(name)
    if resp.dc_address is not None:
        out += bytes([16])
        out += struct.pack("<HH", 2, 0) + ipaddress.IPv4Address(resp.dc_address).packed + bytes(8)
    if resp.next_closest_site_name is not None:
        out += _dns_name(resp.next_closest_site_name)
    out += struct.pack("<IHH", resp.nt_version, resp.lm_nt_token, resp.lm20_token)
    return bytes(out)


# --------------------------------------------------------------------------- MC-SQLR


def encode_svr_resp(instances: Iterable[SqlInstance]) -> bytes:
    """Encode an SVR_RESP ([MC-SQLR] 2.2.5).

    Args:
        instances: the instance blocks.

    Returns:
        ``0x05`` + RESP_SIZE (little-endian) + ``key;value;...;;`` per instance, UTF-8.

    Raises:
        ValueError: a key or value containing ``;``, an empty key, or more than 65535 bytes.
    """
    parts: list[str] = []
    for inst in instances:
        for key, value in inst.fields:
            if not key or ";" in key or ";" in value:
                raise ValueError(f"bad pair {key!r}={value!r}")
            parts.append(f"{key};{value};")
        parts.append(";")
    body = "".join(parts).encode("utf-8")
    if len(body) > 0xFFFF:
        raise ValueError(f"RESP_DATA of {len(body)} bytes exceeds 65535")
    return bytes([mssqlr.SVR_RESP]) + struct.pack("<H", len(body)) + body


# --------------------------------------------------------------------------- EPM and connectionless RPC


def encode_tower(floors: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A tower octet string (C706 appendix L) from ``(lhs, rhs)`` floors."""
    out = struct.pack("<H", len(floors))
    for lhs, rhs in floors:
        out += struct.pack("<H", len(lhs)) + lhs + struct.pack("<H", len(rhs)) + rhs
    return out


def tcp_tower(interface: uuid.UUID, major: int, minor: int, port: int, address: str = "198.18.0.2") -> bytes:
    """The five-floor ``ncacn_ip_tcp`` tower Windows registers ([MS-RPCE] 2.2.1.1)."""
    return encode_tower(
        [
            (b"\x0d" + interface.bytes_le + struct.pack("<H", major), struct.pack("<H", minor)),
            (b"\x0d" + uuid.UUID(epm.NDR_TRANSFER_SYNTAX_UUID).bytes_le + b"\x02\x00", b"\x00\x00"),
            (b"\x0b", b"\x00\x00"),
            (b"\x07", struct.pack(">H", port)),
            (b"\x09", ipaddress.IPv4Address(address).packed),
        ]
    )


def encode_ept_lookup_response(
    handle: bytes, entries: Sequence[tuple[uuid.UUID, bytes | None, bytes]], status: int
) -> bytes:
    """The little-endian NDR stub of an ``ept_lookup`` response (C706 appendix L).

    Args:
        handle: the 20-byte entry handle.
        entries: ``(object_uuid, tower_octets or None for a null tower, annotation bytes incl. NUL)``.
        status: ``error_status_t``.
    """
    out = bytearray(handle + struct.pack("<IIII", len(entries), len(entries) + 3, 0, len(entries)))
    for i, (obj, tower, annotation) in enumerate(entries):
        out += obj.bytes_le + struct.pack("<I", 0 if tower is None else 0x20000 + i)
        out += struct.pack("<II", 0, len(annotation)) + annotation
        out += bytes(-len(out) % 4)
    for _obj, tower, _ann in entries:
        if tower is not None:
            out += struct.pack("<II", len(tower), len(tower)) + tower + bytes(-len(tower) % 4)
    out += bytes(-len(out) % 4) + struct.pack("<I", status)
    return bytes(out)


def encode_cl_response(request: clrpc.ClPdu, body: bytes, *, fragment_size: int = 0) -> list[bytes]:
    """The response datagrams to a connectionless request (C706 12.5.3.3), fragmented when asked.

    Args:
        request: the decoded request (its activity, sequence number, interface and opnum are echoed).
        body: the response stub.
        fragment_size: body bytes per fragment; 0 for one unfragmented datagram.

    Returns:
        The datagrams in fragment order: ``PF_FRAG`` on each, ``PF_LAST_FRAG`` on the last.
    """
    size = fragment_size or max(len(body), 1)
    chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    out = []
    for num, chunk in enumerate(chunks):
        flags = clrpc.PF_NO_FACK
        if fragment_size:
            flags |= clrpc.PF_FRAG | (clrpc.PF_LAST_FRAG if num == len(chunks) - 1 else 0)
        pdu = dataclasses.replace(
            request,
            ptype=clrpc.PTYPE_RESPONSE,
            flags1=flags,
            server_boot=0x65000000,
            fragnum=num,
            body=chunk,
            status=None,
        )
        out.append(clrpc.encode_pdu(pdu))
    return out


# --------------------------------------------------------------------------- connection-oriented RPC (TCP 135)

_CO_HEADER = struct.Struct("<BBBB4sHHI")
_LITTLE_ENDIAN_DREP = b"\x10\x00\x00\x00"


def encode_bind_ack(call_id: int, *, max_frag: int = 4280, secondary_address: bytes = b"135\x00") -> bytes:
    """A bind_ack accepting one presentation context with NDR 2.0 (C706 12.6.4.4; little-endian).

    Args:
        call_id: the bind's call id.
        max_frag: ``max_xmit_frag`` and ``max_recv_frag``, bytes.
        secondary_address: ``sec_addr`` port_spec, NUL included.

    Returns:
        The whole PDU (``frag_length`` = its length).
    """
    body = struct.pack("<HHIH", max_frag, max_frag, 0x12345, len(secondary_address)) + secondary_address
    body += bytes(-(_CO_HEADER.size + len(body)) % 4)
    body += struct.pack("<BBHHH", 1, 0, 0, 0, 0)  # n_results, reserved, reserved2; result acceptance, reason 0
    body += uuid.UUID(epm.NDR_TRANSFER_SYNTAX_UUID).bytes_le + struct.pack("<I", 2)
    flags = 0x03  # PFC_FIRST_FRAG | PFC_LAST_FRAG
    return _CO_HEADER.pack(5, 0, 12, flags, _LITTLE_ENDIAN_DREP, _CO_HEADER.size + len(body), 0, call_id) + body


def encode_co_response_fragment(call_id: int, stub: bytes, *, first: bool, last: bool, alloc_hint: int = 0) -> bytes:
    """One response PDU (C706 12.6.4.10; little-endian, context 0, no authentication) carrying ``stub``.

    Args:
        call_id: the request's call id.
        stub: this fragment's stub bytes.
        first: set ``PFC_FIRST_FRAG``.
        last: set ``PFC_LAST_FRAG``.
        alloc_hint: the ``alloc_hint`` field (0 = unknown).
    """
    flags = (0x01 if first else 0) | (0x02 if last else 0)
    header = _CO_HEADER.pack(5, 0, 2, flags, _LITTLE_ENDIAN_DREP, 24 + len(stub), 0, call_id)
    return header + struct.pack("<IHBB", alloc_hint, 0, 0, 0) + stub


def encode_co_response(call_id: int, stub: bytes, *, fragment_size: int = 4256) -> list[bytes]:
    """The response PDUs of one call, ``fragment_size`` stub bytes each (C706 12.6.3.1 ``PFC_*_FRAG``)."""
    chunks = [stub[i : i + fragment_size] for i in range(0, len(stub), fragment_size)] or [b""]
    return [
        encode_co_response_fragment(call_id, chunk, first=i == 0, last=i == len(chunks) - 1, alloc_hint=len(stub))
        for i, chunk in enumerate(chunks)
    ]


# --------------------------------------------------------------------------- SMB (TCP 445)

#: The NegTokenInit mechanisms a DC offers (MS-SPNG 3.3.5.2), as impacket names them.
DC_MECHANISMS = (
    "MS KRB5 - Microsoft Kerberos 5",
    "KRB5 - Kerberos 5",
    "NTLMSSP - Microsoft NTLM Security Support Provider",
)
_SMB2_HEADER_LEN = 64
_NEGOTIATE_RESPONSE_FIXED = 64  # MS-SMB2 2.2.4: StructureSize 65 counts the first byte of the buffer
_SHA512 = 0x0001  # MS-SMB2 2.2.3.1.1 HashAlgorithms
_AES128_GCM = 0x0002  # MS-SMB2 2.2.3.1.2 Ciphers


def encode_spnego_init(mechanisms: Sequence[str] = DC_MECHANISMS) -> bytes:
    """A GSS-API framed SPNEGO ``negTokenInit`` (RFC 4178 4.2.1) listing ``mechanisms`` (impacket's names)."""
    token = spnego.SPNEGO_NegTokenInit()
    token["MechTypes"] = [spnego.TypesMech[name] for name in mechanisms]
    data: bytes = token.getData()
    return data


def _smb2_context(context_type: int, data: bytes) -> bytes:
    context = smb3structs.SMB2NegotiateContext()
    context["ContextType"] = context_type
    context["DataLength"] = len(data)
    context["Data"] = data
    out: bytes = context.getData()
    return out


def _smb311_contexts() -> list[bytes]:
    """The preauth integrity (SHA-512, 32-byte salt) and encryption (AES-128-GCM) contexts (MS-SMB2 2.2.4.1)."""
    preauth = smb3structs.SMB2PreAuthIntegrityCapabilities()
    preauth["HashAlgorithmCount"] = 1
    preauth["SaltLength"] = 32
    preauth["HashAlgorithms"] = struct.pack("<H", _SHA512)
    preauth["Salt"] = bytes(range(32))
    ciphers = smb3structs.SMB2EncryptionCapabilities()
    ciphers["CipherCount"] = 1
    ciphers["Ciphers"] = struct.pack("<H", _AES128_GCM)
    return [
        _smb2_context(smb3structs.SMB2_PREAUTH_INTEGRITY_CAPABILITIES, preauth.getData()),
        _smb2_context(smb3structs.SMB2_ENCRYPTION_CAPABILITIES, ciphers.getData()),
    ]


def encode_smb2_negotiate_response(
    message_id: int,
    dialect: int,
    *,
    security_mode: int = smb3structs.SMB2_NEGOTIATE_SIGNING_ENABLED | smb3structs.SMB2_NEGOTIATE_SIGNING_REQUIRED,
    token: bytes = b"",
) -> bytes:
    """An SMB2 NEGOTIATE response (MS-SMB2 2.2.4) with impacket's structures, without its NetBIOS header.

    Args:
        message_id: the request's ``MessageId`` (0 for the answer to a multi-protocol negotiate).
        dialect: ``DialectRevision``: 0x02FF (wildcard) to ask for the SMB2 NEGOTIATE, 0x0202 ... 0x0311.
        security_mode: ``SecurityMode`` (0x01 signing enabled, 0x02 signing required).
        token: the SPNEGO token of the security buffer (``b""`` for none).

    Returns:
        The SMB2 header and the response; 3.1.1 carries the preauth integrity and encryption contexts.
    """
    response = smb3structs.SMB2Negotiate_Response()
    response["SecurityMode"] = security_mode
    response["DialectRevision"] = dialect
    response["ServerGuid"] = b"PQ-HOSTILE-GUID!"
    response["Capabilities"] = smb3structs.SMB2_GLOBAL_CAP_LARGE_MTU
    response["MaxTransactSize"] = response["MaxReadSize"] = response["MaxWriteSize"] = 8 * 1024 * 1024
    response["SecurityBufferOffset"] = _SMB2_HEADER_LEN + _NEGOTIATE_RESPONSE_FIXED
    response["SecurityBufferLength"] = len(token)
    response["Buffer"] = token
    if dialect == smb3structs.SMB2_DIALECT_311:
        contexts = _smb311_contexts()
        end = response["SecurityBufferOffset"] + len(token)
        response["NegotiateContextCount"] = len(contexts)
        response["NegotiateContextOffset"] = end + (-end % 8)
        response["Padding"] = bytes(-end % 8)
        response["NegotiateContextList"] = b"".join(c + bytes(-len(c) % 8) for c in contexts[:-1]) + contexts[-1]
    packet = smb3structs.SMB2Packet()
    packet["Command"] = smb3structs.SMB2_NEGOTIATE
    packet["Flags"] = smb3structs.SMB2_FLAGS_SERVER_TO_REDIR
    packet["CreditRequestResponse"] = 1
    packet["MessageID"] = message_id
    packet["Data"] = response.getData()
    data: bytes = packet.getData()
    return data


def encode_smb2_interim_response(message_id: int, async_id: int) -> bytes:
    """An SMB2 interim response (MS-SMB2 3.3.4.2): async header, ``STATUS_PENDING``, an empty ERROR body."""
    packet = smb3structs.SMB2PacketAsync()
    packet["Status"] = 0x00000103  # STATUS_PENDING (MS-ERREF 2.3.1)
    packet["Command"] = smb3structs.SMB2_NEGOTIATE
    packet["Flags"] = smb3structs.SMB2_FLAGS_SERVER_TO_REDIR | smb3structs.SMB2_FLAGS_ASYNC_COMMAND
    packet["MessageID"] = message_id
    packet["AsyncID"] = async_id
    packet["Data"] = smb3structs.SMB2Error().getData()
    data: bytes = packet.getData()
    return data


def encode_smb1_negotiate_refusal() -> bytes:
    """An SMB1 negotiate response accepting no dialect (MS-CIFS 2.2.4.52.2: ``DialectIndex`` 0xFFFF)."""
    packet = smb.NewSMBPacket()
    packet["Flags1"] = smb.SMB.FLAGS1_REPLY
    packet["Flags2"] = smb.SMB.FLAGS2_NT_STATUS | smb.SMB.FLAGS2_LONG_NAMES
    command = smb.SMBCommand(smb.SMB.SMB_COM_NEGOTIATE)
    command["Parameters"] = struct.pack("<H", 0xFFFF)
    command["Data"] = b""
    packet.addCommand(command)
    data: bytes = packet.getData()
    return data

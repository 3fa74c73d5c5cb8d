"""The ``Netlogon`` attribute of an LDAP ping: NETLOGON_SAM_LOGON_RESPONSE_EX (MS-ADTS 6.3.1.9).

Pure codec: bytes in, a frozen dataclass out; every failure raises
:class:`~exporter.errors.DecodeError`. The value comes from
:attr:`exporter.wire.ldap.SearchResult.netlogon` after an :func:`~exporter.wire.ldap.encode_ldap_ping`.

Layout (all integers little-endian)::

    Opcode(2) Sbz(2) Flags(4) DomainGuid(16)
    DnsForestName DnsDomainName DnsHostName NetbiosDomainName NetbiosComputerName
    UserName DcSiteName ClientSiteName          (RFC 1035 names, compressed, 4.1.4)
    [DcSockAddrSize(1) DcSockAddr(16)]           (if NtVer had V5EX_WITH_IP)
    [NextClosestSiteName]                        (if NtVer had WITH_CLOSEST_SITE)
    NtVersion(4) LmNtToken(2) Lm20Token(2)

Whether the two optional parts are present depends on the *request's* NtVer, and servers differ
(Samba 4 leaves NextClosestSiteName out although the client asked for it), so the parser anchors
on the fixed 8-byte tail and recognises what lies between ClientSiteName and it: a sockaddr is
a size byte 16 followed by AF_INET (2, little-endian); anything else must be exactly one name.

Check by hand::

    nltest /dsgetdc:example.com          # Windows
    ldbsearch -H cldap://DC --cross-ncs ...   # or: tshark -Y cldap -V
"""

from __future__ import annotations

import ipaddress
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from exporter.errors import DecodeError

__all__ = [
    "DS_FLAGS",
    "DS_FLAG_NAMES",
    "OPCODE_NAMES",
    "NetlogonSamLogonResponseEx",
    "decode_netlogon",
    "encode_netlogon",
    "flag_names",
]

#: MS-ADTS 6.3.1.2 DS_FLAG bits -> lower-case names (the ``flag`` label of
#: ``portqry_netlogon_dc_flag``).
DS_FLAGS: Mapping[int, str] = MappingProxyType(
    {
        0x00000001: "pdc",
        0x00000004: "gc",
        0x00000008: "ldap",
        0x00000010: "ds",
        0x00000020: "kdc",
        0x00000040: "timeserv",
        0x00000080: "closest",
        0x00000100: "writable",
        0x00000200: "good_timeserv",
        0x00000400: "ndnc",
        0x00000800: "select_secret_domain_6",
        0x00001000: "full_secret_domain_6",
        0x00002000: "ws",
        0x00004000: "ds_8",
        0x00008000: "ds_9",
        0x00010000: "ds_10",
        0x00020000: "key_list",
        0x20000000: "dns_controller",
        0x40000000: "dns_domain",
        0x80000000: "dns_forest",
    }
)

#: Every DS_FLAG name in bit order (for a metric series per flag, 0 or 1).
DS_FLAG_NAMES: tuple[str, ...] = tuple(DS_FLAGS[bit] for bit in sorted(DS_FLAGS))

#: MS-ADTS 6.3.1.9 / 6.3.1.8 operation codes with this layout.
OPCODE_NAMES: Mapping[int, str] = MappingProxyType(
    {
        23: "LOGON_SAM_LOGON_RESPONSE_EX",
        24: "LOGON_SAM_PAUSE_RESPONSE_EX",
        25: "LOGON_SAM_USER_UNKNOWN_EX",
    }
)

_FIXED_HEAD = 24  # opcode, sbz, flags, guid
_FIXED_TAIL = 8  # NtVersion, LmNtToken, Lm20Token
_SOCKADDR_IN_SIZE = 16
_AF_INET = 2
_MAX_NAME = 255  # RFC 1035 2.3.4
_MAX_POINTERS = 32
_MAX_INPUT = 4096  # real values are ~100-200 bytes


def flag_names(flags: int) -> frozenset[str]:
    """Names of the known DS_FLAG bits set in ``flags`` (MS-ADTS 6.3.1.2); unknown bits are dropped."""
    return frozenset(name for bit, name in DS_FLAGS.items() if flags & bit)


@dataclass(frozen=True, slots=True)
class NetlogonSamLogonResponseEx:
    """A decoded NETLOGON_SAM_LOGON_RESPONSE_EX (MS-ADTS 6.3.1.9).

    Attributes:
        opcode: 23 (LOGON_SAM_LOGON_RESPONSE_EX), 24 (paused) or 25 (user unknown).
        opcode_name: the opcode's MS-ADTS name.
        flags_raw: the DS_FLAG word, e.g. ``0x000033fd``.
        flags: names of its known bits (``{"pdc", "gc", "ldap", "ds", "kdc", ...}``).
        domain_guid: the domain's GUID.
        dns_forest_name: e.g. ``"example.com"``.
        dns_domain_name: e.g. ``"example.com"``.
        dns_host_name: the DC's FQDN.
        netbios_domain_name: e.g. ``"EXAMPLE"``.
        netbios_computer_name: the DC's NetBIOS name.
        user_name: the ``User`` asked about (``""`` if none).
        dc_site_name: the DC's site.
        client_site_name: the site the client's address maps to (``""`` if none).
        dc_address: the DC's IPv4 address from DcSockAddr (dotted quad), or ``None``.
        next_closest_site_name: NextClosestSiteName, or ``None`` if absent.
        nt_version: the NtVersion field (usually 5 = V1|V5EX, 0xd with WITH_IP).
        lm_nt_token: LmNtToken (0xffff).
        lm20_token: Lm20Token (0xffff).
    """

    opcode: int
    opcode_name: str
    flags_raw: int
    flags: frozenset[str]
    domain_guid: uuid.UUID
    dns_forest_name: str
    dns_domain_name: str
    dns_host_name: str
    netbios_domain_name: str
    netbios_computer_name: str
    user_name: str
    dc_site_name: str
    client_site_name: str
    dc_address: str | None
    next_closest_site_name: str | None
    nt_version: int
    lm_nt_token: int
    lm20_token: int


def _read_name(data: bytes, pos: int) -> tuple[str, int]:
    """Read one RFC 1035 (4.1.4) compressed name at ``pos``; return ``(name, next_pos)``.

    Compression pointers may only point strictly before every earlier pointer target and before
    the pointer itself, so a name cannot loop; at most ``_MAX_POINTERS`` hops and 255 bytes.
    """
    labels: list[str] = []
    cur = pos
    next_pos: int | None = None
    lowest = pos
    hops = 0
    size = 0
    while True:
        if cur >= len(data):
            raise DecodeError("truncated DNS name", cur)
        length = data[cur]
        if length == 0:
            cur += 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if cur + 1 >= len(data):
                raise DecodeError("truncated DNS compression pointer", cur)
            target = ((length & 0x3F) << 8) | data[cur + 1]
            if next_pos is None:
                next_pos = cur + 2
            if target >= lowest:
                raise DecodeError("DNS compression pointer does not point backwards", cur)
            hops += 1
            if hops > _MAX_POINTERS:
                raise DecodeError("too many DNS compression pointers", cur)
            lowest = target
            cur = target
            continue
        if kind:
            raise DecodeError(f"reserved DNS label type 0x{length:02x}", cur)
        end = cur + 1 + length
        if end > len(data):
            raise DecodeError("truncated DNS label", cur)
        size += length + 1
        if size > _MAX_NAME:
            raise DecodeError("DNS name longer than 255 bytes", cur)
        try:
            labels.append(data[cur + 1 : end].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise DecodeError(f"DNS label is not UTF-8: {exc.reason}", cur) from exc
        cur = end
    return ".".join(labels), (next_pos if next_pos is not None else cur)


def decode_netlogon(data: bytes) -> NetlogonSamLogonResponseEx:
    """Decode a ``Netlogon`` attribute value (MS-ADTS 6.3.1.9 NETLOGON_SAM_LOGON_RESPONSE_EX).

    Args:
        data: the attribute value bytes (no BER header), typically 90-200 bytes.

    Returns:
        The decoded response; flags as names per MS-ADTS 6.3.1.2.

    Raises:
        DecodeError: too short or long, an opcode other than 23/24/25 (e.g. 19, the pre-EX
            LOGON_SAM_LOGON_RESPONSE sent when NtVer lacks V5EX), a bad or looping DNS name,
            non-UTF-8 labels, bytes left between the names and the fixed tail, or tokens other than 0xFFFF.
    """
    if len(data) > _MAX_INPUT:
        raise DecodeError(f"Netlogon value of {len(data)} bytes is implausibly long", 0)
    if len(data) < _FIXED_HEAD + 8 + _FIXED_TAIL:
        raise DecodeError(f"Netlogon value of {len(data)} bytes is too short", len(data))
    opcode, _sbz, flags = struct.unpack_from("<HHI", data, 0)
    if opcode not in OPCODE_NAMES:
        raise DecodeError(f"unsupported Netlogon opcode {opcode} (want 23, 24 or 25)", 0)
    guid = uuid.UUID(bytes_le=data[8:24])
    tail_at = len(data) - _FIXED_TAIL
    body = data[:tail_at]  # names may only point into the head and each other
    pos = _FIXED_HEAD
    names: list[str] = []
    for _ in range(8):
        name, pos = _read_name(body, pos)
        names.append(name)
    dc_address: str | None = None
    next_closest: str | None = None
    if pos < tail_at and body[pos] == _SOCKADDR_IN_SIZE and pos + 1 + _SOCKADDR_IN_SIZE <= tail_at:
        family = int.from_bytes(body[pos + 1 : pos + 3], "little")
        if family == _AF_INET:
            dc_address = str(ipaddress.IPv4Address(body[pos + 5 : pos + 9]))
            pos += 1 + _SOCKADDR_IN_SIZE
    if pos < tail_at:
        next_closest, pos = _read_name(body, pos)
    if pos != tail_at:
        raise DecodeError(f"{tail_at - pos} unexpected bytes before NtVersion", pos)
    nt_version, lm_nt, lm20 = struct.unpack_from("<IHH", data, tail_at)
    if lm_nt != 0xFFFF or lm20 != 0xFFFF:
        # MS-ADTS 6.3.1.9: both tokens MUST be 0xFFFF; anything else means the tail is not where we read it
        raise DecodeError(f"LmNtToken/Lm20Token 0x{lm_nt:04x}/0x{lm20:04x}, want 0xffff/0xffff", tail_at + 4)
    return NetlogonSamLogonResponseEx(
        opcode=opcode,
        opcode_name=OPCODE_NAMES[opcode],
        flags_raw=flags,
        flags=flag_names(flags),
        domain_guid=guid,
        dns_forest_name=names[0],
        dns_domain_name=names[1],
        dns_host_name=names[2],
        netbios_domain_name=names[3],
        netbios_computer_name=names[4],
        user_name=names[5],
        dc_site_name=names[6],
        client_site_name=names[7],
        dc_address=dc_address,
        next_closest_site_name=next_closest,
        nt_version=nt_version,
        lm_nt_token=lm_nt,
        lm20_token=lm20,
    )


def _encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.split(".") if name else []:
        raw = label.encode("utf-8")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS label {label!r} in {name!r}")
        out += bytes([len(raw)]) + raw
    out.append(0)
    if len(out) > _MAX_NAME:
        raise ValueError(f"DNS name {name!r} longer than 255 bytes")
    return bytes(out)


def encode_netlogon(resp: NetlogonSamLogonResponseEx) -> bytes:
    """Encode ``resp`` without name compression (for test servers and round-trip tests).

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
        out += _encode_name(name)
    if resp.dc_address is not None:
        out += bytes([_SOCKADDR_IN_SIZE])
        out += struct.pack("<HH", _AF_INET, 0) + ipaddress.IPv4Address(resp.dc_address).packed + bytes(8)
    if resp.next_closest_site_name is not None:
        out += _encode_name(resp.next_closest_site_name)
    out += struct.pack("<IHH", resp.nt_version, resp.lm_nt_token, resp.lm20_token)
    return bytes(out)

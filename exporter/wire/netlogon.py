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
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from exporter.errors import DecodeError
from exporter.wire.reader import Reader

__all__ = [
    "DS_FLAGS",
    "DS_FLAG_NAMES",
    "OPCODE_NAMES",
    "NetlogonSamLogonResponseEx",
    "decode_netlogon",
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


def _read_name(r: Reader) -> str:
    """One RFC 1035 (4.1.4) compressed name, labels UTF-8 (MS-ADTS 6.3.1.9); pointers stay inside ``r``."""
    at = r.pos
    labels = r.name("DNS name")
    try:
        return ".".join(label.decode("utf-8") for label in labels)
    except UnicodeDecodeError as exc:
        raise r.error(f"DNS label is not UTF-8: {exc.reason}", at) from exc


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
    head = Reader(data, little_endian=True)
    opcode, _sbz, flags = head.u16(), head.u16(), head.u32()
    if opcode not in OPCODE_NAMES:
        raise DecodeError(f"unsupported Netlogon opcode {opcode} (want 23, 24 or 25)", 0)
    guid = uuid.UUID(bytes_le=head.bytes(16, "DomainGuid"))
    tail_at = len(data) - _FIXED_TAIL
    body = Reader(data[:tail_at], little_endian=True)  # names may only point into the head and each other
    body.skip(_FIXED_HEAD)
    names = [_read_name(body) for _ in range(8)]
    dc_address: str | None = None
    next_closest: str | None = None
    at = body.pos
    if (
        body.remaining >= 1 + _SOCKADDR_IN_SIZE
        and body.data[at] == _SOCKADDR_IN_SIZE
        and int.from_bytes(body.data[at + 1 : at + 3], "little") == _AF_INET
    ):
        body.skip(1, "DcSockAddrSize")
        sockaddr = body.sub(_SOCKADDR_IN_SIZE, "DcSockAddr")
        sockaddr.skip(4)  # sin_family, sin_port
        dc_address = str(ipaddress.IPv4Address(sockaddr.bytes(4, "sin_addr")))
    if body.remaining:
        next_closest = _read_name(body)
    if body.remaining:
        raise body.error(f"{body.remaining} unexpected bytes before NtVersion")
    tail = Reader(data[tail_at:], little_endian=True, base=tail_at)
    nt_version, lm_nt, lm20 = tail.u32(), tail.u16(), tail.u16()
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

"""NetBIOS name service NODE STATUS (NBSTAT) codec, UDP 137.

Pure bytes <-> frozen dataclasses; no sockets, no clocks.

Specifications:
    * RFC 1001 14.1 (first-level name encoding: 16 bytes -> 32 letters ``A``-``P``).
    * RFC 1002 4.2.1 (header), 4.2.17 NODE STATUS REQUEST, 4.2.18 NODE STATUS RESPONSE.

Response RDATA (RFC 1002 4.2.18): ``NUM_NAMES`` (1 byte), then per name 15 bytes of name (space
padded), 1 suffix byte and a 2-byte big-endian ``NAME_FLAGS`` word, then the ``STATISTICS`` block,
whose first 6 bytes (the "unit ID") Windows fills with the adapter's MAC address.  Samba 4.17 leaves the
statistics uninitialised (heap bytes that change on every restart), so its "MAC" means nothing.

Check by hand::

    tshark -r nbstat-winxpsp2.pcap -V -Y nbns
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from impacket import nmb

from exporter.errors import DecodeError
from exporter.wire.reader import Reader

__all__ = [
    "NBSTAT_TYPE",
    "NB_FLAG_ACT",
    "NB_FLAG_CNF",
    "NB_FLAG_DRG",
    "NB_FLAG_GROUP",
    "NB_FLAG_PRM",
    "NetbiosName",
    "NodeStatus",
    "decode_node_status_response",
    "encode_netbios_name",
    "encode_node_status_request",
]

NBSTAT_TYPE = 0x0021
CLASS_IN = 0x0001
_HEADER_LEN = 12
_RESPONSE_BIT = 0x8000

# NAME_FLAGS (RFC 1002 4.2.18)
NB_FLAG_GROUP = 0x8000
NB_FLAG_ONT = 0x6000  # owner node type: 0 B, 1 P, 2 M, 3 H (Microsoft)
NB_FLAG_DRG = 0x1000  # deregistering
NB_FLAG_CNF = 0x0800  # in conflict
NB_FLAG_ACT = 0x0400  # active
NB_FLAG_PRM = 0x0200  # permanent (the node's own name)
_NODE_TYPES = ("B", "P", "M", "H")

_MAX_QUESTIONS = 4
_UNIT_ID_LEN = 6


@dataclass(frozen=True)
class NetbiosName:
    """One entry of the node's name table.

    Attributes:
        name: the 15-byte name with trailing spaces removed (bytes decoded as Latin-1).
        suffix: the 16th byte (0x00 workstation, 0x20 server, 0x1c domain controllers, ...).
        flags: the raw 16-bit ``NAME_FLAGS`` word (e.g. 0x0400 unique active, 0x8400 group).
    """

    name: str
    suffix: int
    flags: int

    @property
    def group(self) -> bool:
        """True for a group name (G bit, 0x8000)."""
        return bool(self.flags & NB_FLAG_GROUP)

    @property
    def node_type(self) -> str:
        """Owner node type: ``"B"``, ``"P"``, ``"M"`` or ``"H"`` (ONT bits 0x6000)."""
        return _NODE_TYPES[(self.flags & NB_FLAG_ONT) >> 13]

    @property
    def active(self) -> bool:
        """ACT bit (0x0400): the name is active."""
        return bool(self.flags & NB_FLAG_ACT)

    @property
    def conflict(self) -> bool:
        """CNF bit (0x0800): the name is in conflict."""
        return bool(self.flags & NB_FLAG_CNF)

    @property
    def deregistering(self) -> bool:
        """DRG bit (0x1000): the name is being deregistered."""
        return bool(self.flags & NB_FLAG_DRG)

    @property
    def permanent(self) -> bool:
        """PRM bit (0x0200): the permanent node name."""
        return bool(self.flags & NB_FLAG_PRM)

    def __str__(self) -> str:
        return f"{self.name}<{self.suffix:02x}>"


@dataclass(frozen=True)
class NodeStatus:
    """A decoded NODE STATUS RESPONSE.

    Attributes:
        transaction_id: NAME_TRN_ID, to match against the request.
        names: the name table, in the order sent.
        mac: unit ID as ``"aa:bb:cc:dd:ee:ff"`` (meaningless from Samba 4.17: uninitialised bytes).
        question_name: the RR_NAME, decoded (``"*"`` style names keep NULs stripped).
        statistics: the whole STATISTICS block (unit ID first), bytes.
    """

    transaction_id: int
    names: tuple[NetbiosName, ...]
    mac: str
    question_name: str
    statistics: bytes


def encode_netbios_name(name: str = "*", suffix: int = 0x00, scope: str = "") -> bytes:
    """Encode a NetBIOS name as a compression-free domain name (RFC 1001 14.1) with impacket's ``nmb.encode_name``.

    ``"*"`` (the wildcard) is padded with NULs (``suffix`` ignored); any other name is upper-cased and
    padded with spaces to 15 bytes, followed by ``suffix``.

    Args:
        name: up to 15 Latin-1 characters.
        suffix: the 16th byte.
        scope: NetBIOS scope (dotted), usually empty.

    Returns:
        The length-prefixed labels, ending with a zero byte (34 bytes without scope).

    Raises:
        ValueError: a name longer than 15 bytes, a non-Latin-1 name, a bad suffix or scope label.
    """
    if not 0 <= suffix <= 0xFF:
        raise ValueError(f"suffix {suffix} out of range 0-255")
    try:
        raw = name.encode("latin-1") if name == "*" else name.upper().encode("latin-1")
    except UnicodeEncodeError as err:
        raise ValueError(f"NetBIOS name {name!r} is not Latin-1") from err
    if len(raw) > 15:
        raise ValueError(f"NetBIOS name {name!r} longer than 15 bytes")
    for label in scope.split(".") if scope else ():
        if not (label.isascii() and 0 < len(label) < 64):
            raise ValueError(f"bad scope label {label!r}")
    encoded: bytes = nmb.encode_name(raw.decode("latin-1"), suffix, scope)
    return encoded


def encode_node_status_request(transaction_id: int, name: str = "*", *, scope: str = "") -> bytes:
    """Encode a NODE STATUS REQUEST (RFC 1002 4.2.17).

    Header: the transaction ID, flags 0x0000 (query, unicast, no recursion), QDCOUNT 1; question:
    the encoded name, QUESTION_TYPE NBSTAT (0x0021), QUESTION_CLASS IN (0x0001).  This is what
    ``nbtstat -A`` and nmap's ``NBTStat`` probe send.

    Args:
        transaction_id: 0-65535, chosen by the caller.
        name: the name to query; ``"*"`` asks whoever receives it.
        scope: NetBIOS scope, usually empty.

    Returns:
        The datagram payload (50 bytes without scope).

    Raises:
        ValueError: a transaction ID out of range or a bad name (see :func:`encode_netbios_name`).
    """
    if not 0 <= transaction_id <= 0xFFFF:
        raise ValueError(f"transaction_id {transaction_id} out of range 0-65535")
    header = struct.pack(">HHHHHH", transaction_id, 0x0000, 1, 0, 0, 0)
    return header + encode_netbios_name(name, 0x00, scope) + struct.pack(">HH", NBSTAT_TYPE, CLASS_IN)


def _read_name(r: Reader) -> str:
    """Read a (possibly compressed) name (RFC 1002 4.1, RFC 1035 4.1.4) and decode its first level (RFC 1001 14.1)."""
    labels = r.name("NetBIOS name")
    if not labels:
        return ""
    first = labels[0]
    text = first.decode("latin-1")
    if len(first) == 32 and all(0x41 <= c <= 0x50 for c in first):
        raw = bytes((first[i] - 0x41) << 4 | (first[i + 1] - 0x41) for i in range(0, 32, 2))
        text = f"{raw[:15].rstrip(b' ').rstrip(bytes(1)).decode('latin-1')}<{raw[15]:02x}>"
    scope = ".".join(lab.decode("latin-1") for lab in labels[1:])
    return f"{text}.{scope}" if scope else text


def decode_node_status_response(data: bytes) -> NodeStatus:
    """Decode a NODE STATUS RESPONSE (RFC 1002 4.2.18).

    Args:
        data: the UDP payload from port 137, bytes.

    Returns:
        The node status.

    Raises:
        DecodeError: not a response, a non-zero opcode, no answer record (e.g. a negative
            response; the message includes the rcode), an answer that is not NBSTAT, an RDLENGTH
            past the end, or fewer bytes than ``NUM_NAMES`` entries plus a 6-byte unit ID.
    """
    if len(data) < _HEADER_LEN:
        raise DecodeError(f"NetBIOS header needs 12 bytes, got {len(data)}", len(data))
    r = Reader(data)
    trn_id, flags, qdcount, ancount = r.u16(), r.u16(), r.u16(), r.u16()
    r.skip(4)  # NSCOUNT, ARCOUNT
    if not flags & _RESPONSE_BIT:
        raise DecodeError("not a response (R bit clear)", 2)
    if (flags >> 11) & 0x0F != 0:
        raise DecodeError(f"opcode {(flags >> 11) & 0x0F} is not a query", 2)
    if ancount < 1:
        raise DecodeError(f"no answer record (rcode {flags & 0x0F})", 6)
    if qdcount > _MAX_QUESTIONS:
        raise DecodeError(f"{qdcount} questions in a response", 4)
    for _ in range(qdcount):  # RFC 1002 says 0; tolerate echoed questions
        _read_name(r)
        r.skip(4, "question type and class")
    qname = _read_name(r)
    rr_at = r.pos
    if r.remaining < 10:
        raise r.error("truncated resource record header")
    rr_type, _rr_class, _ttl, rdlength = r.u16(), r.u16(), r.u32(), r.u16()
    if rr_type != NBSTAT_TYPE:
        raise DecodeError(f"answer type 0x{rr_type:04x} is not NBSTAT", rr_at)
    if rdlength > r.remaining:
        raise r.error(f"RDLENGTH {rdlength} exceeds the {r.remaining} bytes left", r.pos - 2)
    rdata = r.sub(rdlength, "RDATA")
    if not rdlength:
        raise rdata.error("empty RDATA")
    num_names = rdata.u8()
    if 18 * num_names + _UNIT_ID_LEN > rdata.remaining:
        raise rdata.error(
            f"{num_names} names and a unit ID need {1 + 18 * num_names + 6} bytes, RDATA has {rdlength}", 0
        )
    names = []
    for _ in range(num_names):
        raw = rdata.bytes(15, "name")
        suffix, nflags = rdata.u8(), rdata.u16()
        names.append(NetbiosName(raw.rstrip(b" ").decode("latin-1"), suffix, nflags))
    stats = rdata.rest()
    mac = ":".join(f"{b:02x}" for b in stats[:_UNIT_ID_LEN])
    return NodeStatus(trn_id, tuple(names), mac, qname, stats)

"""One bounded byte reader for the binary codecs (NDR/EPM, connectionless RPC, NBSTAT, Netlogon, MC-SQLR).

Every read checks its bounds first; a short read raises :class:`~exporter.errors.DecodeError` with the
absolute byte offset where the read started (a sub-reader keeps its parent's offsets).  Compressed
domain names (RFC 1035 4.1.4) are read by :func:`dns.name.from_wire`, whose pointer rules (backwards
only, the target never overlapping the name, a bounded chain, 255 bytes at most) are the ones we need.
"""

from __future__ import annotations

import builtins
import struct

import dns.exception
import dns.name

from exporter.errors import DecodeError

__all__ = ["Reader"]

_U16 = (struct.Struct(">H"), struct.Struct("<H"))
_U32 = (struct.Struct(">I"), struct.Struct("<I"))


class Reader:
    """A cursor over ``data`` that never reads past its end.

    Args:
        data: the bytes to read.
        little_endian: default byte order of :meth:`u16` and :meth:`u32`.
        base: absolute offset of ``data[0]`` in the enclosing message, for error offsets.

    Attributes:
        data: the bytes.
        pos: the cursor, relative to ``data`` (0 <= pos <= len(data)).
        little_endian: the default byte order.
    """

    __slots__ = ("base", "data", "little_endian", "pos")

    def __init__(self, data: bytes, *, little_endian: bool = False, base: int = 0) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.little_endian = little_endian
        self.base = base

    @property
    def offset(self) -> int:
        """Absolute offset of the cursor (``base + pos``)."""
        return self.base + self.pos

    @property
    def remaining(self) -> int:
        """Bytes left after the cursor."""
        return len(self.data) - self.pos

    def error(self, message: str, pos: int | None = None) -> DecodeError:
        """A :class:`DecodeError` at ``pos`` (relative; default the cursor), offset made absolute."""
        return DecodeError(message, self.base + (self.pos if pos is None else pos))

    def need(self, n: int, what: str) -> None:
        """Check that ``n`` more bytes are there.

        Raises:
            DecodeError: ``n`` is negative or runs past the end.
        """
        if n < 0 or n > self.remaining:
            raise self.error(f"truncated {what}: need {n} bytes, have {self.remaining}")

    def bytes(self, n: int, what: str = "bytes") -> bytes:
        """The next ``n`` bytes.  Raises: DecodeError: fewer than ``n`` left."""
        self.need(n, what)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def skip(self, n: int, what: str = "bytes") -> None:
        """Move past ``n`` bytes.  Raises: DecodeError: fewer than ``n`` left."""
        self.need(n, what)
        self.pos += n

    def align(self, n: int, what: str = "alignment padding") -> None:
        """Skip to the next multiple of ``n`` (relative to ``data[0]``; NDR 14.2.2).  Raises: DecodeError."""
        self.skip(-self.pos % n, what)

    def rest(self) -> builtins.bytes:
        """Every byte left; the cursor moves to the end."""
        return self.bytes(self.remaining)

    def u8(self, what: str = "byte") -> int:
        """One unsigned byte.  Raises: DecodeError: at the end."""
        self.need(1, what)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self, what: str = "uint16", *, little_endian: bool | None = None) -> int:
        """An unsigned 16-bit integer in the reader's byte order (or ``little_endian``).  Raises: DecodeError."""
        self.need(2, what)
        le = self.little_endian if little_endian is None else little_endian
        (value,) = _U16[le].unpack_from(self.data, self.pos)
        self.pos += 2
        return int(value)

    def u32(self, what: str = "uint32", *, little_endian: bool | None = None) -> int:
        """An unsigned 32-bit integer in the reader's byte order (or ``little_endian``).  Raises: DecodeError."""
        self.need(4, what)
        le = self.little_endian if little_endian is None else little_endian
        (value,) = _U32[le].unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)

    def sub(self, n: int, what: str = "field") -> Reader:
        """A reader over the next ``n`` bytes (same byte order, absolute offsets); the cursor moves past them.

        Raises:
            DecodeError: fewer than ``n`` left.
        """
        start = self.offset
        return Reader(self.bytes(n, what), little_endian=self.little_endian, base=start)

    def name(self, what: str = "DNS name") -> tuple[builtins.bytes, ...]:
        """A possibly compressed domain name (RFC 1035 3.1, 4.1.4) at the cursor, via :func:`dns.name.from_wire`.

        Pointers are resolved within ``data`` (so a sub-reader confines them); the cursor moves past the
        name as it is stored (past the first pointer).

        Returns:
            The labels without the root label (``()`` for the root name), as bytes.

        Raises:
            DecodeError: truncated, a pointer that does not point backwards (this also forbids loops), a
                reserved label type, a pointer chain too long, or a name over 255 bytes.
        """
        start = self.pos
        try:
            name, used = dns.name.from_wire(self.data, start)
        except dns.name.BadPointer:
            raise self.error(f"{what} compression pointer does not point backwards", start) from None
        except dns.name.BadLabelType:
            raise self.error(f"reserved DNS label type in {what}", start) from None
        except dns.name.NameTooLong:
            raise self.error(f"{what} longer than 255 bytes", start) from None
        except dns.exception.DNSException as exc:  # FormError (truncated), PointerChainTooLong
            raise self.error(f"truncated or looping {what}: {type(exc).__name__}", start) from None
        self.pos = start + used
        return tuple(label for label in name.labels if label)

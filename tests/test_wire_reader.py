"""The bounded reader (``exporter.wire.reader``): every short read is a DecodeError at the right offset."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.errors import DecodeError
from exporter.wire.reader import Reader


def test_integers_both_byte_orders() -> None:
    r = Reader(bytes.fromhex("01 0203 04050607 0809 0a0b0c0d"))
    assert (r.u8(), r.u16(), r.u32()) == (1, 0x0203, 0x04050607)
    assert r.u16(little_endian=True) == 0x0908
    r.little_endian = True
    assert r.u32() == 0x0D0C0B0A
    assert (r.remaining, r.offset) == (0, 13)


def test_short_reads_name_the_offset() -> None:
    r = Reader(b"\x00\x01\x02", base=100)
    r.skip(2)
    with pytest.raises(DecodeError, match=r"truncated uint16: need 2 bytes, have 1 \(at byte 102\)") as info:
        r.u16()
    assert info.value.offset == 102
    assert r.pos == 2  # a failed read does not move the cursor
    with pytest.raises(DecodeError):
        r.bytes(-1)


def test_sub_reader_keeps_absolute_offsets_and_bounds() -> None:
    r = Reader(b"\xaa\xbb\x01\x02\x03\xcc")
    r.skip(2)
    sub = r.sub(3, "field")
    assert (sub.base, r.pos) == (2, 5)
    assert sub.bytes(2) == b"\x01\x02"
    with pytest.raises(DecodeError) as info:
        sub.u16()
    assert info.value.offset == 4
    assert r.u8() == 0xCC


def test_align() -> None:
    r = Reader(bytes(10))
    r.skip(1)
    r.align(4)
    assert r.pos == 4
    r.align(4)
    assert r.pos == 4
    r.skip(5)
    with pytest.raises(DecodeError, match="alignment"):
        r.align(4)


def test_compressed_names() -> None:
    data = b"\x07example\x03com\x00" + b"\x03www\xc0\x00" + b"\xc0\x0c"
    r = Reader(data)
    assert r.name() == (b"example", b"com")
    assert r.name() == (b"www", b"example", b"com")
    assert r.name() == ()  # a pointer to the root label at offset 12
    assert r.remaining == 0
    with pytest.raises(DecodeError, match="backwards"):
        Reader(b"\xc0\x00").name()
    with pytest.raises(DecodeError, match="reserved DNS label"):
        Reader(b"\x41abc").name()
    with pytest.raises(DecodeError, match="truncated"):
        Reader(b"\x05ab").name()
    long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00"
    with pytest.raises(DecodeError, match="255"):
        Reader(long_name).name()


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64), ops=st.lists(st.sampled_from("bBhHiInsa"), max_size=20), base=st.integers(0, 9))
def test_random_reads_raise_only_decode_error_in_bounds(data: bytes, ops: list[str], base: int) -> None:
    r = Reader(data, base=base)
    for op in ops:
        try:
            if op in "bB":
                r.u8()
            elif op in "hH":
                r.u16(little_endian=op == "h")
            elif op in "iI":
                r.u32(little_endian=op == "i")
            elif op == "n":
                r.name()
            elif op == "s":
                r.sub(3).bytes(2)
            else:
                r.align(4)
        except DecodeError as err:
            assert base <= err.offset <= base + len(data)
        assert 0 <= r.pos <= len(data)

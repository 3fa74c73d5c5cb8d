"""SQL Server Resolution Protocol (SQL Server Browser, UDP 1434) codec.

Pure bytes <-> frozen dataclasses; no sockets, no clocks.

Specification: [MC-SQLR] 2.2.2 CLNT_UCAST_EX (one byte 0x03), 2.2.3 CLNT_UCAST_INST (0x04 +
instance name + NUL), 2.2.4 CLNT_UCAST_DAC (0x0F 0x01 + instance name + NUL), 2.2.5 SVR_RESP (0x05,
RESP_SIZE as a little-endian uint16, then RESP_DATA: an MBCS string of ``key;value;`` pairs, each
instance ended by an extra ``;``), 2.2.6 SVR_RESP (DAC) (0x05, size 6, version 1, uint16 port).

Example ([MC-SQLR] section 4)::

    05 58 00 "ServerName;ILSUNG1;InstanceName;YUKONSTD;IsClustered;No;Version;9.00.1399.06;tcp;57137;;"

Check by hand (no SQL Server in the test bed)::

    printf '\\x03' | nc -u -w1 SQLHOST 1434 | xxd
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from exporter.errors import DecodeError
from exporter.wire.reader import Reader

__all__ = [
    "CLNT_BCAST_EX",
    "CLNT_UCAST_DAC",
    "CLNT_UCAST_EX",
    "CLNT_UCAST_INST",
    "SVR_RESP",
    "SqlInstance",
    "decode_dac_response",
    "decode_svr_resp",
    "encode_clnt_ucast_dac",
    "encode_clnt_ucast_ex",
    "encode_clnt_ucast_inst",
]

CLNT_BCAST_EX = 0x02
CLNT_UCAST_EX = 0x03
CLNT_UCAST_INST = 0x04
CLNT_UCAST_DAC = 0x0F
SVR_RESP = 0x05
_MAX_INSTANCE_NAME = 32  # bytes, without the NUL ([MC-SQLR] 2.2.3)


@dataclass(frozen=True)
class SqlInstance:
    """One instance block of an SVR_RESP, as ordered ``(key, value)`` pairs.

    Dict-like: ``inst["tcp"]``, ``inst.get("np")``, ``"via" in inst``, ``dict(inst.items())``;
    keys match case-insensitively.  Typed shortcuts cover the fields [MC-SQLR] 2.2.5 defines.

    Attributes:
        fields: the pairs in the order sent (``ServerName``, ``InstanceName``, ``IsClustered``,
            ``Version``, then protocol pairs such as ``tcp``/``np``/``via``/``rpc``/``spx``/``adsp``/``bv``).
    """

    fields: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str | None = None) -> str | None:
        """Value of the first pair whose key equals ``key`` (case-insensitive), else ``default``."""
        low = key.lower()
        return next((v for k, v in self.fields if k.lower() == low), default)

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def keys(self) -> list[str]:
        """Keys in order."""
        return [k for k, _ in self.fields]

    def items(self) -> list[tuple[str, str]]:
        """``(key, value)`` pairs in order."""
        return list(self.fields)

    @property
    def server_name(self) -> str:
        """``ServerName`` (``""`` if absent)."""
        return self.get("ServerName") or ""

    @property
    def instance_name(self) -> str:
        """``InstanceName`` (``MSSQLSERVER`` for the default instance)."""
        return self.get("InstanceName") or ""

    @property
    def is_clustered(self) -> bool | None:
        """``IsClustered``: ``Yes`` -> True, ``No`` -> False, anything else -> None."""
        value = (self.get("IsClustered") or "").lower()
        return {"yes": True, "no": False}.get(value)

    @property
    def version(self) -> str:
        """``Version``, e.g. ``9.00.1399.06``."""
        return self.get("Version") or ""

    @property
    def tcp_port(self) -> int | None:
        """The ``tcp`` port as an int, or None when absent or not a number in 0-65535."""
        value = self.get("tcp")
        if value is None or not value.isdigit() or int(value) > 0xFFFF:
            return None
        return int(value)

    @property
    def np_pipe(self) -> str | None:
        """The ``np`` pipe name (``\\\\HOST\\pipe\\sql\\query``), or None."""
        return self.get("np")


def encode_clnt_ucast_ex() -> bytes:
    """CLNT_UCAST_EX ([MC-SQLR] 2.2.2): ask one server for all its instances.

    Returns:
        ``b"\\x03"``.
    """
    return bytes([CLNT_UCAST_EX])


def _instance_bytes(instance: str) -> bytes:
    try:
        raw = instance.encode("ascii")
    except UnicodeEncodeError as err:
        raise ValueError(f"instance name {instance!r} is not ASCII") from err
    if not raw or len(raw) > _MAX_INSTANCE_NAME or b"\x00" in raw:
        raise ValueError(f"instance name must be 1-32 bytes without NUL, got {instance!r}")
    return raw + b"\x00"


def encode_clnt_ucast_inst(instance: str) -> bytes:
    """CLNT_UCAST_INST ([MC-SQLR] 2.2.3): ask for one instance.

    Args:
        instance: instance name, 1-32 ASCII bytes.

    Returns:
        ``0x04`` + name + NUL.

    Raises:
        ValueError: an empty, too long or non-ASCII name.
    """
    return bytes([CLNT_UCAST_INST]) + _instance_bytes(instance)


def encode_clnt_ucast_dac(instance: str) -> bytes:
    """CLNT_UCAST_DAC ([MC-SQLR] 2.2.4): ask for an instance's dedicated admin connection port.

    Args:
        instance: instance name, 1-32 ASCII bytes.

    Returns:
        ``0x0F 0x01`` + name + NUL.

    Raises:
        ValueError: an empty, too long or non-ASCII name.
    """
    return bytes([CLNT_UCAST_DAC, 0x01]) + _instance_bytes(instance)


def _text(raw: bytes) -> str:
    # RESP_DATA is "MBCS" in the server's code page; UTF-8 covers ASCII, Latin-1 never fails.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def decode_svr_resp(data: bytes) -> tuple[SqlInstance, ...]:
    """Decode an SVR_RESP to CLNT_UCAST_EX / CLNT_BCAST_EX / CLNT_UCAST_INST ([MC-SQLR] 2.2.5).

    Args:
        data: the UDP payload from port 1434, bytes.

    Returns:
        The instances in order (may be empty when RESP_DATA is empty).

    Raises:
        DecodeError: first byte not 0x05, fewer or more bytes than RESP_SIZE announces, a key
            without a value, an instance not ended by ``;;``, or an instance without
            ``ServerName`` or ``InstanceName``.
    """
    if len(data) < 3:
        raise DecodeError(f"SVR_RESP needs 3 header bytes, got {len(data)}", len(data))
    r = Reader(data, little_endian=True)
    kind, size = r.u8(), r.u16()
    if kind != SVR_RESP:
        raise DecodeError(f"first byte 0x{kind:02x} is not SVR_RESP (0x05)", 0)
    if size != r.remaining:
        raise DecodeError(f"RESP_SIZE {size} but {r.remaining} bytes follow", 1)
    text = _text(r.rest())
    if text and not text.endswith(";"):
        raise DecodeError("RESP_DATA does not end with ';'", len(data) - 1)
    # Drop the final ';' so that an instance's closing ";;" leaves one empty key token.
    tokens = text[:-1].split(";") if text else []
    instances: list[SqlInstance] = []
    current: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        key = tokens[i]
        if key == "":
            if current:
                instances.append(_checked(current))
                current = []
            i += 1
            continue
        if i + 1 >= len(tokens):
            raise DecodeError(f"key {key!r} without a value", len(data))
        current.append((key, tokens[i + 1]))
        i += 2
    if current:
        raise DecodeError("last instance is not terminated by ';;'", len(data))
    return tuple(instances)


def _checked(pairs: list[tuple[str, str]]) -> SqlInstance:
    inst = SqlInstance(tuple(pairs))
    if "ServerName" not in inst or "InstanceName" not in inst:
        raise DecodeError(f"instance block without ServerName/InstanceName: {inst.keys()}")
    return inst


def decode_dac_response(data: bytes) -> int:
    """Decode the SVR_RESP to a CLNT_UCAST_DAC ([MC-SQLR] 2.2.6).

    Args:
        data: 6 bytes: 0x05, size 0x0006 (little-endian), version 0x01, TCP port (little-endian).

    Returns:
        The DAC TCP port.

    Raises:
        DecodeError: any other length or header value.
    """
    if len(data) != 6:
        raise DecodeError(f"DAC response must be 6 bytes, got {len(data)}", 0)
    r = Reader(data, little_endian=True)
    kind, size, version, port = r.u8(), r.u16(), r.u8(), r.u16()
    if kind != SVR_RESP or size != 6 or version != 1:
        raise DecodeError(f"bad DAC response header {data[:4].hex()}", 0)
    return int(port)

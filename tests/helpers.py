"""Shared test helpers: captures and the pcap reader, fuzz settings, promtool, ``--config.check``.

One home for what several test modules used to carry a private copy of:

- **captures**: :data:`CAPTURES` (``$PORTQRY_CAPTURES``, default ``<repo>/../shared/captures``),
  :data:`needs_captures`, :func:`capture`;
- **pcap reader**: :func:`frames` (the UDP/TCP layer of every frame), :func:`payloads` (their payload
  bytes), :func:`tcp_streams` (each direction of a TCP connection reassembled);
- **pcap writer and tshark**: :func:`write_udp_pcap`, :func:`tshark_verbose`, :data:`needs_tshark`
  (the datagram is only written to a file, never sent);
- **fuzz settings**: :data:`FUZZ`, :func:`fuzz_settings`, :func:`mutated`;
- **promtool**: :func:`promtool` (skips outside CI when missing, fails under ``CI=true``),
  :func:`find_promtool`, :func:`run_promtool`; :func:`require_tool` does the same for any executable;
- **``--config.check``**: :func:`config_check` runs ``python -m exporter ... --config.check`` as a
  subprocess from the repository root, without the caller's ``PORTQRY_*`` variables.

Check by hand: ``python -c 'from tests import helpers; print(helpers.CAPTURES, helpers.find_promtool())'``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Final

import dpkt
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.testbed.preflight import is_ci

REPO: Final = Path(__file__).resolve().parent.parent
"""The repository root (the directory holding ``pyproject.toml``)."""

# --------------------------------------------------------------------------------------------------
# captures

CAPTURES: Final = Path(os.environ.get("PORTQRY_CAPTURES", REPO.parent / "shared" / "captures"))
"""Directory of the shared real-world captures (its README says where each comes from)."""

needs_captures: Final = pytest.mark.skipif(not CAPTURES.is_dir(), reason=f"capture directory {CAPTURES} absent")
"""Marker: skip the test when :data:`CAPTURES` is not there."""


def capture(name: str | Path) -> Path:
    """Path of a capture: ``name`` inside :data:`CAPTURES`, or ``name`` itself when it is a path with a directory."""
    path = Path(name)
    return path if path.parent != Path() else CAPTURES / path


# --------------------------------------------------------------------------------------------------
# pcap reader


def frames(name: str | Path) -> list[dpkt.udp.UDP | dpkt.tcp.TCP | None]:
    """The UDP or TCP layer of every Ethernet/IPv4 frame of a capture, in order (``None`` for other frames).

    Args:
        name: a file name inside :data:`CAPTURES`, or a path (see :func:`capture`).
    """
    out: list[dpkt.udp.UDP | dpkt.tcp.TCP | None] = []
    with capture(name).open("rb") as fh:
        for _ts, frame in dpkt.pcap.Reader(fh):
            l4 = dpkt.ethernet.Ethernet(frame).data.data
            out.append(l4 if isinstance(l4, dpkt.udp.UDP | dpkt.tcp.TCP) else None)
    return out


def payloads(name: str | Path, *, tcp: bool = True) -> list[bytes]:
    """The UDP (and, with ``tcp``, TCP) payload of every frame of a capture, ``b""`` for other frames."""
    return [
        bytes(l4.data) if isinstance(l4, dpkt.udp.UDP) or (tcp and isinstance(l4, dpkt.tcp.TCP)) else b""
        for l4 in frames(name)
    ]


def tcp_streams(name: str | Path) -> dict[int, bytes]:
    """Reassemble each direction of the (single) TCP connection in a capture, keyed by source port.

    Segments are ordered by sequence number; retransmitted bytes are kept once.
    """
    segments: dict[int, list[tuple[int, bytes]]] = {}
    for l4 in frames(name):
        if isinstance(l4, dpkt.tcp.TCP) and l4.data:
            segments.setdefault(l4.sport, []).append((l4.seq, bytes(l4.data)))
    streams: dict[int, bytes] = {}
    for port, segs in segments.items():
        segs.sort(key=lambda s: s[0])
        data = bytearray()
        nxt = segs[0][0]
        for seq, payload in segs:
            if seq + len(payload) <= nxt:
                continue  # retransmission
            data += payload[max(nxt - seq, 0) :]
            nxt = seq + len(payload)
        streams[port] = bytes(data)
    return streams


# --------------------------------------------------------------------------------------------------
# pcap writer and tshark

needs_tshark: Final = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
"""Marker: skip the test when ``tshark`` is not installed, also in CI (:func:`tshark_verbose` fails there)."""


def write_udp_pcap(
    path: Path, payload: bytes, *, sport: int, dport: int, src: str = "127.0.0.1", dst: str = "127.0.0.2"
) -> Path:
    """Write one UDP datagram as a one-frame Ethernet pcap (nothing is sent).

    Args:
        path: the file to write.
        payload: the UDP payload.
        sport: UDP source port.
        dport: UDP destination port (what tshark picks the dissector by).
        src: IPv4 source, a loopback address.
        dst: IPv4 destination, a loopback address.

    Returns:
        ``path``.
    """
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=dpkt.ip.IP_PROTO_UDP, data=udp)
    ip.len = len(ip)
    eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x02" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
    with path.open("wb") as fh:
        dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB).writepkt(bytes(eth), ts=0)
    return path


def tshark_verbose(path: Path, *options: str, timeout: float = 60.0) -> str:
    """``tshark -r PATH -V OPTIONS``: the full dissection of a capture file, as text.

    Skips the test when tshark is missing outside CI, fails under ``CI=true`` (see :func:`require_tool`).

    Args:
        path: the capture file.
        *options: more tshark options, e.g. ``"-O", "dcerpc,epm"``.
        timeout: seconds.

    Raises:
        subprocess.CalledProcessError: tshark exited non-zero.
    """
    tshark = require_tool("tshark", "tshark")
    return subprocess.run(
        [tshark, "-r", str(path), "-V", *options], capture_output=True, text=True, check=True, timeout=timeout
    ).stdout


# --------------------------------------------------------------------------------------------------
# fuzz settings


def fuzz_settings(max_examples: int = 300) -> settings:
    """Hypothesis settings for decoder fuzzing: ``max_examples``, no deadline, no too-slow health check."""
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


FUZZ: Final = fuzz_settings()
"""The default fuzz settings (300 examples); use as a decorator, ``@FUZZ``."""


def mutated(data: st.DataObject, sample: bytes, *, max_edits: int = 4) -> bytes:
    """``sample`` with 1..``max_edits`` bytes overwritten at random, then cut at a random length."""
    raw = bytearray(sample)
    for _ in range(data.draw(st.integers(min_value=1, max_value=max_edits))):
        raw[data.draw(st.integers(min_value=0, max_value=len(raw) - 1))] = data.draw(st.integers(0, 255))
    return bytes(raw[: data.draw(st.integers(min_value=0, max_value=len(raw)))])


# --------------------------------------------------------------------------------------------------
# promtool


def require_tool(name: str, package: str) -> str:
    """Path of executable ``name``; skips the test when it is missing outside CI, fails under ``CI=true``.

    Args:
        name: the executable.
        package: the Debian package that ships it (named in the skip reason).
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name} not installed (Debian package `{package}`)"
        if is_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def find_promtool() -> str | None:
    """Path of promtool, or ``None`` when it is not installed."""
    return shutil.which("promtool")


def promtool() -> str:
    """Path of promtool; skips the test when it is missing outside CI, fails in CI."""
    return require_tool("promtool", "prometheus")


def run_promtool(
    *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``promtool ARGS`` (see :func:`promtool` for when it skips).

    Args:
        *args: promtool's arguments, e.g. ``"check", "rules", "portqry-alerts.yml"``.
        cwd: working directory (promtool resolves rule files relative to it).
        check: fail the test, with promtool's output, when it exits non-zero.
        timeout: seconds.

    Returns:
        The completed process (text output).
    """
    result = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


# --------------------------------------------------------------------------------------------------
# --config.check


def config_check(*args: str | Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m exporter ARGS --config.check`` from the repository root.

    The caller's ``PORTQRY_*`` environment variables are left out, so only ``ARGS`` and the config file
    decide the outcome.

    Args:
        *args: the daemon's arguments, e.g. ``"--config", path``.
        timeout: seconds.

    Returns:
        The completed process (text output); exit status 0 means the config is valid.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PORTQRY_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *map(str, args), "--config.check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

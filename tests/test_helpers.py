"""tests/helpers.py: the pcap reader reads what the writer wrote, captures resolve, ``--config.check`` runs.

Nothing here sends a packet: the pcap files are written to a temporary directory and read back.
"""

from __future__ import annotations

from pathlib import Path

import dpkt
from hypothesis import given
from hypothesis import strategies as st

from tests import helpers


def test_capture_resolves_names_in_the_capture_directory_and_keeps_paths(tmp_path: Path) -> None:
    assert helpers.capture("x.pcap") == helpers.CAPTURES / "x.pcap"
    assert helpers.capture(tmp_path / "x.pcap") == tmp_path / "x.pcap"


def test_written_udp_pcap_reads_back(tmp_path: Path) -> None:
    path = helpers.write_udp_pcap(tmp_path / "one.pcap", b"payload", sport=40000, dport=135)
    (udp,) = helpers.frames(path)
    assert isinstance(udp, dpkt.udp.UDP)
    assert (udp.sport, udp.dport, bytes(udp.data)) == (40000, 135, b"payload")
    assert helpers.payloads(path) == helpers.payloads(path, tcp=False) == [b"payload"]


def test_tshark_reads_the_written_pcap(tmp_path: Path) -> None:
    path = helpers.write_udp_pcap(tmp_path / "one.pcap", b"\x00" * 12, sport=40000, dport=9)
    out = helpers.tshark_verbose(path, "-O", "udp")
    assert "Src Port: 40000" in out and "Dst Port: 9" in out


def _write_tcp(path: Path, segments: list[tuple[int, int, bytes]]) -> None:
    """Frames of one TCP connection: ``(sport, seq, data)`` each, loopback addresses, no handshake."""
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for sport, seq, data in segments:
            dport = 135 if sport != 135 else 50000
            tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, flags=dpkt.tcp.TH_ACK, data=data)
            ip = dpkt.ip.IP(src=b"\x7f\x00\x00\x01", dst=b"\x7f\x00\x00\x01", p=dpkt.ip.IP_PROTO_TCP, data=tcp)
            ip.len = len(ip)
            writer.writepkt(bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)), ts=0)


def test_tcp_streams_reorder_and_drop_retransmissions(tmp_path: Path) -> None:
    path = tmp_path / "tcp.pcap"
    _write_tcp(path, [(50000, 100, b"abc"), (135, 7, b"XY"), (50000, 106, b"ghi"), (50000, 103, b"def"),
                      (50000, 103, b"def"), (135, 9, b"Z")])  # fmt: skip
    assert helpers.tcp_streams(path) == {50000: b"abcdefghi", 135: b"XYZ"}
    assert helpers.payloads(path, tcp=False) == [b""] * 6


@helpers.fuzz_settings(max_examples=50)
@given(sample=st.binary(min_size=1, max_size=64), data=st.data())
def test_mutated_is_no_longer_than_the_sample(sample: bytes, data: st.DataObject) -> None:
    assert len(helpers.mutated(data, sample)) <= len(sample)


def test_config_check_accepts_the_example_config() -> None:
    proc = helpers.config_check("--config", helpers.REPO / "config.example.toml", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout

"""Protocol probes against loopback peers: binding to non-standard ports, hostile and slow servers."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exporter.engine import Engine
from exporter.model import ProbeOptions
from exporter.probes import port_spec
from exporter.states import PortState, Reason
from tests.daemon import run_daemon
from tests.peers import handler_peer


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "20",
            "-subj",
            "/O=portqry test/CN=tls.portqry.test",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[int]:
    """``openssl s_server`` on 127.0.0.1 (an independent TLS peer); yields its port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            "openssl",
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(certificate[0]),
            "-key",
            str(certificate[1]),
            "-quiet",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as c:
                if c.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, "openssl s_server exited"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_protocol_bound_to_a_nonstandard_port_by_config(
    tls_server: int, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f"""
[defaults]
interval_seconds = 2
timeout_seconds = 1.0
[[targets]]
name = "web"
host = "127.0.0.1"
ports = ["tcp/{tls_server}"]
protocols = {{ "tcp/{tls_server}" = "tls" }}
"""
    )
    not_after = (
        subprocess.run(
            ["openssl", "x509", "-noout", "-enddate", "-in", str(certificate[0])],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .split("=", 1)[1]
    )
    expected = datetime.strptime(not_after, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC).timestamp()
    with run_daemon(cfg) as d:
        d.wait_for(lambda d: d.get("/-/ready")[0] == 200)
        samples = d.samples()
    [(labels, value)] = samples["portqry_tls_cert_not_after_timestamp_seconds"]
    assert labels["port"] == str(tls_server)
    assert "CN=tls.portqry.test" in labels["subject"]
    assert value == expected
    reasons = {x["port"]: x["reason"] for x, _ in samples["portqry_probe_reason"]}
    assert reasons[str(tls_server)] == "protocol-reply"


async def test_binding_can_be_switched_off(tls_server: int) -> None:
    [r] = await Engine().probe_target(
        "web",
        "127.0.0.1",
        [port_spec("tcp", tls_server, binding="")],
        ProbeOptions(timeout_seconds=1.0),
    )
    assert (r.state, r.reason, dict(r.details)) == (PortState.LISTENING, Reason.SYN_ACK, {})


async def test_garbage_dns_reply_is_a_protocol_error_not_a_crash() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3)

    def answer() -> None:
        data, peer = sock.recvfrom(4096)
        sock.sendto(data[:2] + b"\xff" * 40, peer)  # our id, then nonsense

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    [r] = await Engine(udp_pacing_seconds=0).probe_target(
        "dns",
        "127.0.0.1",
        [port_spec("udp", sock.getsockname()[1], binding="dns")],
        ProbeOptions(timeout_seconds=1.0),
    )
    thread.join(2)
    sock.close()
    assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_ERROR)
    assert "DNS" in r.error


async def test_endless_ldap_stream_is_bounded() -> None:
    """A server that answers the rootDSE search with an endless BER length: the read stops at a bound."""

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"\x30\x84\x7f\xff\xff\xff")  # a SEQUENCE claiming 2 GiB
        for _ in range(2000):
            writer.write(b"\x00" * 8192)
            await writer.drain()

    loop = asyncio.get_running_loop()
    async with handler_peer(endless) as port:
        started = loop.time()
        [r] = await Engine().probe_target(
            "ldap",
            "127.0.0.1",
            [port_spec("tcp", port, binding="ldap")],
            ProbeOptions(timeout_seconds=1.0),
        )
    assert r.state is PortState.LISTENING
    assert r.reason is Reason.PROTOCOL_ERROR
    assert loop.time() - started < 5


async def test_silent_ldap_server_gives_a_result_by_the_deadline() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    loop = asyncio.get_running_loop()
    async with handler_peer(silent) as port:
        started = loop.time()
        [r] = await Engine().probe_target(
            "ldap",
            "127.0.0.1",
            [port_spec("tcp", port, binding="ldap")],
            ProbeOptions(timeout_seconds=0.5),
        )
        took = loop.time() - started
    # the handshake completed, the LDAP query got no reply: a protocol reason, not the handshake's syn-ack
    assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_NO_REPLY)
    assert r.error == "LDAP: no reply within 2.0 s"  # the protocol budget: 0.5 s x 3 tries + 0.5 s
    assert took < 3.5  # timeout x tries + one more timeout, with a margin


async def test_ldaps_that_completes_tls_but_never_answers_ldap(tls_server: int) -> None:
    """``openssl s_server`` finishes the TLS handshake and never answers the rootDSE search."""
    [r] = await Engine().probe_target(
        "ldaps", "127.0.0.1", [port_spec("tcp", tls_server, binding="ldaps")], ProbeOptions(timeout_seconds=0.5)
    )
    assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_NO_REPLY)
    assert r.error in ("LDAP: no reply within 2.0 s", "LDAP: connection closed before a reply")  # s_server may close
    assert "tls" in r.details  # the TLS session was recorded before the LDAP query


@pytest.mark.parametrize("handler", ["silent", "close"])
async def test_ldaps_that_never_finishes_the_tls_handshake(handler: str) -> None:
    """TCP completes, the TLS handshake gets no answer: the query got no reply (not ``syn-ack``, not unreached)."""

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # the ClientHello
        if handler == "close":
            writer.close()
            return
        await asyncio.sleep(30)

    async with handler_peer(peer) as port:
        [r] = await Engine().probe_target(
            "ldaps", "127.0.0.1", [port_spec("tcp", port, binding="ldaps")], ProbeOptions(timeout_seconds=0.5)
        )
    assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_NO_REPLY)
    assert r.error.startswith("LDAP: TLS handshake: ") and "_ssl.c" not in r.error and "Errno" not in r.error


@pytest.mark.parametrize("then", ["close", "stall"])
async def test_a_partial_ldap_reply_is_a_protocol_error(then: str) -> None:
    async def partial(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"\x30\x20\x02\x01")  # the start of an LDAPMessage, 34 bytes promised
        await writer.drain()
        if then == "close":
            writer.close()
            return
        await asyncio.sleep(30)

    async with handler_peer(partial) as port:
        [r] = await Engine().probe_target(
            "ldap", "127.0.0.1", [port_spec("tcp", port, binding="ldap")], ProbeOptions(timeout_seconds=0.5)
        )
    assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_ERROR)
    assert "after 4 bytes" in r.error


async def test_many_ldap_entries_do_not_block_the_event_loop() -> None:
    """A server that sends 100 large entries one segment at a time: the loop keeps ticking.

    Before the fix the probe decoded everything received so far after every read (minutes of CPU here).
    """
    from tests.encoders import encode_search_response

    entries = [("", [("namingContexts", [f"DC=x{i},DC=test".encode()] * 500)]) for i in range(100)]
    whole = encode_search_response(1, entries)  # about 900 KB; encoded before the loop is measured

    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(200)
        step = len(whole) // 100  # about one entry per segment
        for i in range(0, len(whole), step):
            writer.write(whole[i : i + step])
            await writer.drain()
            await asyncio.sleep(0.001)

    loop = asyncio.get_running_loop()
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - before - 0.01)

    tick = asyncio.create_task(ticker())
    async with handler_peer(chatty) as port:
        [r] = await Engine().probe_target(
            "ldap",
            "127.0.0.1",
            [port_spec("tcp", port, binding="ldap")],
            ProbeOptions(timeout_seconds=5.0),
        )
    tick.cancel()
    assert r.state is PortState.LISTENING
    assert max(lags) < 0.5, max(lags)


async def test_garbage_snmp_reply_is_listening_not_filtered() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3)

    def answer() -> None:
        _, peer = sock.recvfrom(4096)
        sock.sendto(b"\x30\x03\x02\x01\x07", peer)  # BER, but no SNMP message

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    [r] = await Engine(udp_pacing_seconds=0).probe_target(
        "snmp",
        "127.0.0.1",
        [port_spec("udp", sock.getsockname()[1], binding="snmp")],
        ProbeOptions(timeout_seconds=0.5),
    )
    thread.join(2)
    sock.close()
    assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_ERROR)


async def test_kdc_clock_offset_from_a_fake_kdc_600_s_ahead() -> None:
    """A loopback KDC answering every AS-REQ with a KRB-ERROR whose stime is 600.25 s ahead of our clock."""
    from exporter.cli.blocks import protocol_block
    from exporter.detail_metrics import detail_families
    from exporter.model import KdcClock
    from exporter.wire.kerberos import frame_tcp
    from tests.encoders import encode_krb_error

    skew = 600.25
    delay = 0.2  # the KDC answers after this: the offset is taken at the middle of the exchange

    def ahead() -> bytes:
        kdc_time = datetime.fromtimestamp(time.time() + skew, UTC)
        return encode_krb_error(6, "FAKE.TEST", kdc_time.replace(microsecond=0), susec=kdc_time.microsecond)

    class Kdc(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            reply = ahead()  # stamped when the request arrives, sent `delay` later
            asyncio.get_running_loop().call_later(delay, self.transport.sendto, reply, addr)  # type: ignore[attr-defined]

    async def tcp_kdc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        reply = ahead()
        await asyncio.sleep(delay)
        writer.write(frame_tcp(reply))
        await writer.drain()
        await reader.read(1)

    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(Kdc, local_addr=("127.0.0.1", 0))
    try:
        async with handler_peer(tcp_kdc) as port:
            udp_port = udp.get_extra_info("sockname")[1]
            results = await Engine(udp_pacing_seconds=0).probe_target(
                "kdc",
                "127.0.0.1",
                [port_spec("udp", udp_port, binding="kerberos"), port_spec("tcp", port, binding="kerberos")],
                ProbeOptions(timeout_seconds=2.0),
            )
    finally:
        udp.close()
    for r in results:
        assert (r.state, r.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), r.error
        clock = r.details["kerberos_clock"]
        assert isinstance(clock, KdcClock)
        assert delay <= clock.round_trip_seconds < delay + 0.5
        # stamped at arrival, i.e. about half a round trip before the reply: offset = skew - delay/2 (+- jitter)
        assert abs(clock.offset_seconds - (skew - delay / 2)) < 0.05, clock
        line = next(x for x in protocol_block("kerberos", r) if x.startswith("clock offset:"))
        assert line.startswith("clock offset: +600.")
    samples = {
        (s.labels["protocol"], s.labels["port"]): s.value
        for family in detail_families(results)
        if family.name == "portqry_kerberos_clock_offset_seconds"
        for s in family.samples
    }
    assert set(samples) == {("udp", str(udp_port)), ("tcp", str(port))}
    assert all(599.5 < v < 600.5 for v in samples.values())

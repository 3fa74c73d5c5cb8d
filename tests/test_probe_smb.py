"""The SMB posture probe (tcp/445): real Samba peers in both polarities, hostile loopback peers, no credentials.

Real peers: the test bed's first DC (SMB 3.1.1, signing required, SMB1 refused), the second DC (started with
``server min protocol = NT1``: SMB1 accepted) and a standalone ``smbd`` with ``server signing = disabled``.
Hostile peers are asyncio servers on 127.0.0.1.  What the probe sends is recorded by a loopback relay in
front of a real server and parsed: every request must be a NEGOTIATE, none a SESSION_SETUP.
"""

from __future__ import annotations

import asyncio
import random
import struct
import subprocess
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from impacket import smb as impacket_smb

from exporter.cli.blocks import smb_block
from exporter.config import Settings, load_config
from exporter.detail_metrics import detail_families
from exporter.engine import Engine
from exporter.errors import ConfigError, DecodeError
from exporter.model import ProbeOptions, SmbDetails
from exporter.plan import TargetPlan, domain_plans, plan
from exporter.probes import port_spec
from exporter.result import ProbeResult
from exporter.states import PortState, Reason
from exporter.wire.spnego import decode_neg_token_init
from tests import testbed
from tests.helpers import fuzz_settings, mutated
from tests.peers import Handler, handler_peer

OPTS = ProbeOptions(timeout_seconds=2.0, tcp_tries=1)
FAST = ProbeOptions(timeout_seconds=0.5, tcp_tries=1)
#: Samba 4.17's negotiate token (from the test bed's DC): MS-Kerberos, Kerberos, NTLMSSP, negHints.
SAMBA_TOKEN = bytes.fromhex(
    "605e06062b0601050502a0543052a024302206092a864882f71201020206092a864886f712010202060a2b0601040182"
    "3702020aa32a3028a0261b246e6f745f646566696e65645f696e5f5246433431373840706c656173655f69676e6f7265"
)
SMB2_SESSION_SETUP = 0x0001
SMB1_SESSION_SETUP_ANDX = 0x73


async def probe_smb(address: str, port: int = 445, options: ProbeOptions = OPTS) -> ProbeResult:
    [result] = await Engine().probe_target("smb", address, [port_spec("tcp", port, binding="smb")], options)
    return result


def sample(results: Iterable[ProbeResult], name: str, **labels: str) -> float | None:
    """The value of the one ``name`` series whose labels include ``labels``, or ``None`` when there is none."""
    found = [
        s.value
        for family in detail_families(results)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def smb_details(result: ProbeResult) -> SmbDetails:
    assert (result.state, result.reason) == (PortState.LISTENING, Reason.PROTOCOL_REPLY), result.error
    details = result.details["smb"]
    assert isinstance(details, SmbDetails)
    return details


# --------------------------------------------------------------------------------------------- real peers


async def test_dc_requires_signing_refuses_smb1_offers_kerberos_and_ntlm(dc: testbed.SambaDC) -> None:
    result = await probe_smb(dc.address)
    details = smb_details(result)
    assert (details.dialect, details.signing_required, details.smb1_enabled) == ("3.1.1", True, False)
    assert details.smb1_note == "SMB1 negotiate refused: no dialect accepted"
    assert {"NTLMSSP", "Kerberos"} <= set(details.auth_mechanisms), details.auth_mechanisms
    at = {"target": "smb", "address": dc.address, "port": "445"}
    assert sample([result], "portqry_smb_dialect_info", **at, dialect="3.1.1") == 1
    assert sample([result], "portqry_smb_signing_required", **at) == 1
    assert sample([result], "portqry_smb1_enabled", **at) == 0
    assert sample([result], "portqry_smb_auth_mechanism", **at, mechanism="NTLMSSP") == 1
    assert sample([result], "portqry_smb_auth_mechanism", **at, mechanism="Kerberos") == 1
    assert sample([result], "portqry_smb_auth_mechanism", **at, mechanism="NEGOEX") == 0


async def test_dc2_started_with_nt1_accepts_smb1(dc2: testbed.JoinedDC) -> None:
    result = await probe_smb(dc2.address)
    details = smb_details(result)
    assert (details.dialect, details.signing_required, details.smb1_enabled) == ("3.1.1", True, True)
    at = {"address": dc2.address, "port": "445"}
    assert sample([result], "portqry_smb1_enabled", **at) == 1
    assert sample([result], "portqry_smb_signing_required", **at) == 1


async def test_standalone_smbd_with_signing_disabled_does_not_require_it(smbd_peer: testbed.SmbdPeer) -> None:
    result = await probe_smb(smbd_peer.address)
    details = smb_details(result)
    assert (details.dialect, details.signing_required, details.smb1_enabled) == ("3.1.1", False, False)
    assert details.auth_mechanisms == ("NTLMSSP",)  # a standalone server has no KDC behind it
    at = {"address": smbd_peer.address, "port": "445"}
    assert sample([result], "portqry_smb_signing_required", **at) == 0
    assert sample([result], "portqry_smb_auth_mechanism", **at, mechanism="Kerberos") == 0
    assert sample([result], "portqry_smb_auth_mechanism", **at, mechanism="NTLMSSP") == 1


# --------------------------------------------------------------------------------------------- no credentials


def smb_commands(stream: bytes) -> list[tuple[str, int]]:
    """The SMB requests in one client-to-server byte stream: ``("smb1", command)`` / ``("smb2", command)``."""
    out: list[tuple[str, int]] = []
    pos = 0
    while pos + 4 <= len(stream):
        length = int.from_bytes(stream[pos + 1 : pos + 4], "big")
        message = stream[pos + 4 : pos + 4 + length]
        if message.startswith(b"\xffSMB"):
            out.append(("smb1", message[4]))
        elif message.startswith(b"\xfeSMB"):
            out.append(("smb2", struct.unpack_from("<H", message, 12)[0]))
        else:
            out.append(("other", stream[pos]))
        pos += 4 + length
    assert pos == len(stream), f"stream of {len(stream)} bytes ends inside a message at {pos}"
    return out


@asynccontextmanager
async def relay(upstream: tuple[str, int]) -> AsyncIterator[tuple[int, list[bytearray]]]:
    """A loopback TCP relay to ``upstream`` recording what each client sends; yields (port, streams)."""
    streams: list[bytearray] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray | None) -> None:
        try:
            while chunk := await reader.read(65536):
                if record is not None:
                    record += chunk
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        record = bytearray()
        streams.append(record)
        server_r, server_w = await asyncio.open_connection(*upstream)
        await asyncio.gather(pipe(client_r, server_w, record), pipe(server_r, client_w, None))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], streams


async def test_probe_sends_only_negotiates_to_a_server_that_accepts_smb1(dc2: testbed.JoinedDC) -> None:
    async with relay((dc2.address, 445)) as (port, streams):
        result = await probe_smb("127.0.0.1", port)
    assert smb_details(result).smb1_enabled is True  # both negotiates were answered: the path a login would follow
    commands = [smb_commands(bytes(s)) for s in streams]
    # the state probe's connect (nothing sent), the multi-protocol + SMB2 negotiate, the SMB1-only negotiate
    assert commands == [[], [("smb1", 0x72), ("smb2", 0x0000)], [("smb1", 0x72)]]
    sent = [c for stream in commands for c in stream]
    assert ("smb2", SMB2_SESSION_SETUP) not in sent and ("smb1", SMB1_SESSION_SETUP_ANDX) not in sent


def share_level_negotiate_response() -> bytes:
    """An SMB1 NT LM 0.12 negotiate response of a share-level server without extended security (MS-CIFS 2.2.4.52.2).

    impacket's ``SMB`` class answers such a server with ``login('', '')``: a SESSION_SETUP_ANDX.
    """
    packet = impacket_smb.NewSMBPacket()
    packet["Flags1"] = impacket_smb.SMB.FLAGS1_REPLY
    command = impacket_smb.SMBCommand(impacket_smb.SMB.SMB_COM_NEGOTIATE)
    params = impacket_smb.SMBNTLMDialect_Parameters()
    fields = {"DialectIndex": 0, "SecurityMode": 0, "MaxMpxCount": 1, "MaxNumberVcs": 1, "MaxBufferSize": 4356}
    fields |= {"MaxRawSize": 65536, "SessionKey": 0, "Capabilities": 0, "LowDateTime": 0, "HighDateTime": 0}
    fields |= {"ServerTimeZone": 0, "ChallengeLength": 8}  # SecurityMode 0: share level, no signing
    for key, value in fields.items():
        params[key] = value
    command["Parameters"] = params
    command["Data"] = b"\x11" * 8 + b"PQSHARE\x00"
    packet.addCommand(command)
    data: bytes = packet.getData()
    return len(data).to_bytes(4, "big") + data


async def test_share_level_smb1_server_gets_no_session_setup() -> None:
    requests: list[bytes] = []
    reply = share_level_negotiate_response()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            header = await reader.readexactly(4)
            requests.append(header + await reader.readexactly(int.from_bytes(header[1:], "big")))
            writer.write(reply)
            await writer.drain()

    async with handler_peer(handle) as port:
        result = await probe_smb("127.0.0.1", port, FAST)
    details = smb_details(result)
    assert (details.dialect, details.smb1_enabled, details.signing_required) == ("NT LM 0.12", True, False)
    assert details.auth_error == "the negotiate response carries no SPNEGO token"
    assert [smb_commands(r) for r in requests] == [[("smb1", 0x72)]]  # one negotiate, and nothing after it


# --------------------------------------------------------------------------------------------- hostile peers


async def _random_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    writer.write(random.Random(445).randbytes(300))
    await writer.drain()


async def _truncated_negotiate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    header = b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ16s", 64, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, b"")
    writer.write((200).to_bytes(4, "big") + header + b"\x41\x00\x01\x00\x11\x03")  # says 200 bytes, sends 74
    await writer.drain()


async def _short_negotiate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    header = b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ16s", 64, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, b"")
    body = b"\x41\x00\x01\x00\xff\x02"  # a complete message whose NEGOTIATE response stops after 6 bytes
    writer.write(len(header + body).to_bytes(4, "big") + header + body)
    await writer.drain()
    await asyncio.sleep(5)


async def _endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    chunk = random.Random(139).randbytes(16384)
    for _ in range(4096):  # 64 MiB at most; the probe stops reading long before
        writer.write(chunk)
        await writer.drain()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    await asyncio.sleep(5)


@pytest.mark.parametrize(
    ("handler", "reasons"),
    [
        (_random_then_close, {Reason.PROTOCOL_ERROR}),
        (_truncated_negotiate, {Reason.PROTOCOL_ERROR}),
        (_short_negotiate, {Reason.PROTOCOL_ERROR}),
        (_endless, {Reason.PROTOCOL_ERROR}),
        (_silent, {Reason.PROTOCOL_NO_REPLY}),
    ],
    ids=["random-bytes", "truncated-negotiate", "short-negotiate", "endless-bytes", "silent"],
)
async def test_garbage_445_peer_gives_a_protocol_reason_by_the_deadline(handler: Handler, reasons: set[Reason]) -> None:
    loop = asyncio.get_running_loop()
    async with handler_peer(handler) as port:
        began = loop.time()
        result = await probe_smb("127.0.0.1", port, FAST)
        took = loop.time() - began
    assert result.state is PortState.LISTENING
    assert result.reason in reasons, (result.reason, result.error)
    assert "smb" not in result.details
    assert result.error
    assert took < FAST.protocol_budget + 0.5, took


# --------------------------------------------------------------------------------------------- SPNEGO codec


def test_spnego_samba_token_names_the_mechanisms_in_order() -> None:
    assert decode_neg_token_init(SAMBA_TOKEN) == ("MS-Kerberos", "Kerberos", "NTLMSSP")
    bare = SAMBA_TOKEN[10:]  # the negTokenInit [0] without the GSS-API framing
    assert decode_neg_token_init(bare) == ("MS-Kerberos", "Kerberos", "NTLMSSP")


@pytest.mark.parametrize(
    "token",
    [
        b"",
        b"\x60",
        SAMBA_TOKEN[:-1],
        SAMBA_TOKEN + b"\x00",
        b"\x30\x00",
        SAMBA_TOKEN.replace(b"\x05\x05\x02", b"\x05\x05\x03"),
    ],
    ids=["empty", "one-byte", "truncated", "trailing", "not-spnego", "other-mechanism"],
)
def test_spnego_bad_tokens_raise_decode_error(token: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_neg_token_init(token)


@fuzz_settings()
@given(st.data())
def test_spnego_mutated_tokens_raise_only_decode_error(data: st.DataObject) -> None:
    try:
        names = decode_neg_token_init(mutated(data, SAMBA_TOKEN))
    except DecodeError:
        return
    assert len(names) <= 16


# --------------------------------------------------------------------------------------------- the switch


def _load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path)


def _binding(target: TargetPlan, port: int = 445) -> str:
    [spec] = [s for s in target.specs if (s.protocol, s.port) == ("tcp", port)]
    return spec.binding


def test_posture_checks_default_on_for_domains_and_dc_profile_off_otherwise(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        """
[[targets]]
name = "plain"
host = "198.18.0.9"
ports = ["tcp/445"]
[[targets]]
name = "dc"
host = "198.18.0.9"
profiles = ["domain-controller"]
[[targets]]
name = "dc-off"
host = "198.18.0.9"
profiles = ["domain-controller"]
posture_checks = false
[[targets]]
name = "plain-on"
host = "198.18.0.9"
ports = ["tcp/445"]
posture_checks = true
[[domains]]
name = "pqtest.test"
[[domains]]
name = "off.test"
posture_checks = false
""",
    )
    assert {p.name: (_binding(p), p.options.posture_checks) for p in plan(settings)} == {
        "plain": ("", False),
        "dc": ("smb", True),
        "dc-off": ("", False),
        "plain-on": ("smb", True),
    }
    on, off = domain_plans(settings)
    assert (_binding(on.dc_plan("dc1.pqtest.test", "")), on.template.options.posture_checks) == ("smb", True)
    assert (_binding(off.dc_plan("dc1.off.test", "")), off.template.options.posture_checks) == ("", False)


def test_posture_checks_in_defaults_apply_unless_an_entry_says_otherwise(tmp_path: Path) -> None:
    body = """
[[targets]]
name = "dc"
host = "198.18.0.9"
profiles = ["domain-controller"]
[[targets]]
name = "plain"
host = "198.18.0.9"
ports = ["tcp/445"]
[[targets]]
name = "on"
host = "198.18.0.9"
ports = ["tcp/445"]
posture_checks = true
[[domains]]
name = "pqtest.test"
"""
    off = _load(tmp_path, "[defaults]\nposture_checks = false\n" + body)
    assert [_binding(p) for p in plan(off)] == ["", "", "smb"]
    assert _binding(domain_plans(off)[0].template) == ""
    on = _load(tmp_path, "[defaults]\nposture_checks = true\n" + body)
    assert [_binding(p) for p in plan(on)] == ["smb", "smb", "smb"]


def test_posture_checks_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"targets\[0\]\.posture_checks"):
        _load(tmp_path, '[[targets]]\nname = "t"\nhost = "h"\nports = ["tcp/445"]\nposture_checks = "sometimes"\n')


async def test_posture_checks_off_leaves_445_a_plain_tcp_probe(dc: testbed.SambaDC, tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        f'[[targets]]\nname = "dc"\nhost = "{dc.address}"\nprofiles = ["domain-controller"]\nposture_checks = false\n',
    )
    [target] = plan(settings)
    spec = next(s for s in target.specs if (s.protocol, s.port) == ("tcp", 445))
    [result] = await Engine().probe_target("dc", dc.address, [spec], target.options)
    assert (result.state, result.reason, dict(result.details)) == (PortState.LISTENING, Reason.SYN_ACK, {})


def test_dc2_checks_plain_text_simple_binds_while_dc_refuses_them(dc: testbed.SambaDC, dc2: testbed.JoinedDC) -> None:
    """The test bed's LDAP knob for the later posture check: a made-up DN and password, never a real one."""
    codes = {}
    for name, peer in (("dc", dc), ("dc2", dc2)):
        proc = subprocess.run(  # the exit code is the LDAP result code, asserted below
            [
                "ldapwhoami",
                "-x",
                "-H",
                f"ldap://{peer.address}",
                "-D",
                "cn=nobody,dc=pqtest,dc=test",
                "-w",
                "x-not-a-pw",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        codes[name] = proc.returncode
    assert codes == {"dc": 8, "dc2": 49}  # strongerAuthRequired, invalidCredentials


def test_portqry_smb_block_and_json_fields() -> None:
    details = SmbDetails(
        "3.1.1", True, True, False, "SMB1 negotiate refused: no dialect accepted", ("Kerberos", "NTLMSSP")
    )
    assert smb_block(details, 445) == [
        "Sending SMB negotiate to TCP port 445 (no session setup)...",
        "",
        "SMB negotiate response:",
        "",
        "Dialect: 3.1.1",
        "Signing: required",
        "SMB1 (NT LM 0.12): refused (SMB1 negotiate refused: no dialect accepted)",
        "Authentication mechanisms: Kerberos, NTLMSSP",
        "",
        "======== End of SMB negotiate response ========",
        "",
    ]
    result = ProbeResult(
        target="dc1", host="dc1", address="198.18.0.2", protocol="tcp", port=445, service="SMB",
        state=PortState.LISTENING, reason=Reason.PROTOCOL_REPLY, duration_seconds=0.01, tries=1, timestamp=0.0,
        details={"smb": details},
    )  # fmt: skip
    smb = result.to_json()["details"]["smb"]
    assert (smb["dialect"], smb["signing_required"], smb["smb1_enabled"], smb["auth_mechanisms"]) == (
        "3.1.1", True, False, ["Kerberos", "NTLMSSP"],
    )  # fmt: skip

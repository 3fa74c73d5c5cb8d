"""Parser tests against real replies of the Samba AD DC test bed (issue 3).

The bytes in ``tests/data/samba/`` were captured by ``tests/capture_samba.py`` from the project's own
Samba AD DC (see that directory's README for the Samba version and how). ``facts.json`` holds what
the test bed knew at capture time, obtained without the codecs under test (test-bed configuration,
``sam.ldb``, impacket's NDR decoder, ``rpcclient``), so every assertion compares a codec's output
with an independent value. No live DC and no network are needed.

The second half mutates every capture (every truncation, every single-byte flip, and hypothesis-chosen
multi-byte edits) and checks that the decoders raise nothing but :class:`exporter.errors.DecodeError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.errors import DecodeError
from exporter.wire import dcerpc, epm, kerberos, ldap, nbstat, netlogon, rootdse
from tests.encoders import encode_netlogon

DATA = Path(__file__).resolve().parent / "data" / "samba"
FACTS: dict[str, Any] = json.loads((DATA / "facts.json").read_text())
CAPTURE_START = datetime.fromisoformat(FACTS["captured_from"].replace("Z", "+00:00"))
CAPTURE_END = datetime.fromisoformat(FACTS["captured_until"].replace("Z", "+00:00"))
SLACK = timedelta(seconds=5)  # facts times are whole seconds; the DC shares our clock

CLDAP_ROOTDSE = "cldap_rootdse.bin"
CLDAP_PING = "cldap_netlogon_ping.bin"
CLDAP_PING_WITH_IP = "cldap_netlogon_ping_with_ip.bin"
LDAP_TCP_ROOTDSE = "ldap_tcp_rootdse.bin"
NBSTAT = "nbstat_response.bin"
KRB_UDP = "krb_error_udp.bin"
KRB_TCP = "krb_error_tcp.bin"
EPM_PAGE1_PDUS = "epm_lookup_page1_pdus.bin"
EPM_PAGE1_STUB = "epm_lookup_page1_stub.bin"
EPM_PAGE2_PDUS = "epm_lookup_page2_not_registered_pdus.bin"
EPM_PAGE2_STUB = "epm_lookup_page2_not_registered_stub.bin"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def in_capture_window(value: datetime) -> bool:
    return CAPTURE_START - SLACK <= value <= CAPTURE_END + SLACK


# ================================================================================= the data itself


def test_files_match_facts() -> None:
    """Every capture listed in facts.json is present with the recorded size and SHA-256 (and no others)."""
    on_disk = {p.name for p in DATA.glob("*.bin")}
    assert on_disk == set(FACTS["files"])
    for name, info in FACTS["files"].items():
        data = load(name)
        assert len(data) == info["bytes"], name
        assert hashlib.sha256(data).hexdigest() == info["sha256"], name


def test_readme_describes_every_file() -> None:
    readme = (DATA / "README.md").read_text()
    assert FACTS["samba_version"] in readme
    for name in [*FACTS["files"], "facts.json"]:
        assert f"`{name}`" in readme, name


# ================================================================================= LDAP / CLDAP


def check_root_dse(dse: rootdse.RootDSE) -> None:
    assert dse.dns_host_name == FACTS["fqdn"]
    assert dse.default_naming_context == FACTS["base_dn"]
    assert dse.root_domain_naming_context == FACTS["base_dn"]
    assert dse.configuration_naming_context == f"CN=Configuration,{FACTS['base_dn']}"
    assert dse.schema_naming_context == f"CN=Schema,CN=Configuration,{FACTS['base_dn']}"
    assert set(dse.naming_contexts) >= {
        FACTS["base_dn"],
        f"CN=Configuration,{FACTS['base_dn']}",
        f"CN=Schema,CN=Configuration,{FACTS['base_dn']}",
    }
    assert dse.is_global_catalog_ready is True
    assert dse.is_synchronized is True
    server = f"CN={FACTS['dc_netbios_name']},CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,"
    assert dse.server_name == server + FACTS["base_dn"]
    assert dse.ds_service_name == "CN=NTDS Settings," + server + FACTS["base_dn"]
    assert dse.ldap_service_name == (f"{FACTS['dns_domain']}:{FACTS['dc_netbios_name'].lower()}$@{FACTS['realm']}")
    assert dse.domain_functionality == FACTS["domain_behavior_version"]
    assert dse.forest_functionality is not None and dse.domain_controller_functionality is not None
    assert dse.domain_controller_functionality >= FACTS["domain_behavior_version"]
    assert dse.supported_ldap_version and set(dse.supported_ldap_version) <= {2, 3}
    assert 3 in dse.supported_ldap_version
    assert dse.highest_committed_usn is not None and dse.highest_committed_usn > 0
    assert "1.2.840.113556.1.4.800" in dse.supported_capabilities  # LDAP_CAP_ACTIVE_DIRECTORY_OID
    assert "1.2.840.113556.1.4.319" in dse.supported_control  # paged results
    assert dse.current_time is not None and in_capture_window(dse.current_time)
    assert dse.get("DNSHOSTNAME") == (FACTS["fqdn"],)  # case-insensitive access


def test_cldap_rootdse() -> None:
    result = ldap.decode_search_response(load(CLDAP_ROOTDSE))
    assert result.message_id == FACTS["ldap"]["cldap_rootdse_message_id"]
    assert (result.result_code, result.result_name, result.done) == (0, "success", True)
    assert (result.references, result.disconnected) == (0, False)
    assert [e.object_name for e in result.entries] == [""]
    assert result.netlogon is None
    dse = rootdse.parse_root_dse(result)
    check_root_dse(dse)
    assert dse.supported_sasl_mechanisms == ()  # Samba's CLDAP rootDSE leaves them out


def test_ldap_tcp_rootdse() -> None:
    data = load(LDAP_TCP_ROOTDSE)
    messages, rest = ldap.split_messages(data)
    assert rest == b"" and len(messages) == 2
    assert ldap.message_length(data) == len(messages[0])
    result = ldap.decode_search_response(data)
    assert result.message_id == FACTS["ldap"]["tcp_rootdse_message_id"]
    assert (result.result_code, result.done, len(result.entries)) == (0, True, 1)
    dse = rootdse.parse_root_dse(result)
    check_root_dse(dse)
    assert {"GSSAPI", "GSS-SPNEGO", "NTLM"} <= set(dse.supported_sasl_mechanisms)


def test_rootdse_is_the_same_over_udp_and_tcp() -> None:
    udp = rootdse.parse_root_dse(ldap.decode_search_response(load(CLDAP_ROOTDSE))).attributes
    tcp = rootdse.parse_root_dse(ldap.decode_search_response(load(LDAP_TCP_ROOTDSE))).attributes
    volatile = {"currentTime", "highestCommittedUSN"}
    assert set(tcp) - set(udp) == {"supportedSASLMechanisms"}
    for name in set(udp) - volatile:
        assert udp[name] == tcp[name], name


def decode_ping(name: str) -> tuple[ldap.SearchResult, netlogon.NetlogonSamLogonResponseEx]:
    result = ldap.decode_search_response(load(name))
    assert result.netlogon is not None
    return result, netlogon.decode_netlogon(result.netlogon)


def check_netlogon(resp: netlogon.NetlogonSamLogonResponseEx) -> None:
    assert (resp.opcode, resp.opcode_name) == (23, "LOGON_SAM_LOGON_RESPONSE_EX")
    assert {"pdc", "gc", "ldap", "ds", "kdc", "writable"} <= resp.flags
    assert netlogon.flag_names(resp.flags_raw) == resp.flags
    assert str(resp.domain_guid) == FACTS["domain_guid"]
    assert resp.dns_forest_name == FACTS["dns_domain"]
    assert resp.dns_domain_name == FACTS["dns_domain"]
    assert resp.dns_host_name == FACTS["fqdn"]
    assert resp.netbios_domain_name == FACTS["netbios_domain"]
    assert resp.netbios_computer_name == FACTS["dc_netbios_name"]
    assert resp.user_name == ""
    assert resp.dc_site_name == "Default-First-Site-Name"
    assert resp.client_site_name == "Default-First-Site-Name"
    assert resp.next_closest_site_name is None  # Samba leaves it out although NtVer asked for it
    assert (resp.lm_nt_token, resp.lm20_token) == (0xFFFF, 0xFFFF)


def test_cldap_netlogon_ping() -> None:
    result, resp = decode_ping(CLDAP_PING)
    assert result.message_id == FACTS["ldap"]["cldap_ping_message_id"]
    assert (result.result_code, result.done) == (0, True)
    assert [attr for attr, _ in result.entries[0].attributes] == ["netlogon"]  # Samba's spelling
    check_netlogon(resp)
    assert resp.dc_address is None  # NtVer 0x16 has no V5EX_WITH_IP
    assert resp.nt_version == 0x5  # V1 | V5EX
    # an uncompressed re-encoding decodes to the same thing
    assert netlogon.decode_netlogon(encode_netlogon(resp)) == resp


def test_cldap_netlogon_ping_with_ip() -> None:
    result, resp = decode_ping(CLDAP_PING_WITH_IP)
    assert result.message_id == FACTS["ldap"]["cldap_ping_with_ip_message_id"]
    check_netlogon(resp)
    assert resp.dc_address == FACTS["address"]
    assert resp.nt_version == 0xD  # V1 | V5EX | V5EX_WITH_IP
    _, plain = decode_ping(CLDAP_PING)
    assert resp.flags_raw == plain.flags_raw


# ================================================================================= NetBIOS


def test_nbstat_names_and_unit_id() -> None:
    status = nbstat.decode_node_status_response(load(NBSTAT))
    assert status.transaction_id == FACTS["netbios"]["transaction_id"]
    assert status.question_name == "*<00>"
    assert [[n.name, n.suffix, n.flags] for n in status.names] == FACTS["netbios"]["names"]
    shown = {str(n) for n in status.names}
    host, domain = FACTS["dc_netbios_name"], FACTS["netbios_domain"]
    assert {f"{host}<00>", f"{host}<20>", f"{domain}<00>", f"{domain}<1c>"} <= shown
    by_name = {str(n): n for n in status.names}
    assert not by_name[f"{host}<00>"].group and by_name[f"{host}<00>"].active
    assert by_name[f"{domain}<00>"].group and by_name[f"{domain}<1c>"].group
    assert not any(n.conflict or n.deregistering for n in status.names)
    # The unit ID is what Samba sent: uninitialised heap bytes, not the interface's MAC (README).
    assert status.mac == FACTS["netbios"]["mac"]
    assert status.mac != FACTS["netbios"]["interface_mac"]
    assert len(status.statistics) == 46  # RFC 1002 4.2.18 STATISTICS


# ================================================================================= Kerberos


def check_krb_error(err: kerberos.KrbError) -> None:
    assert (err.error_code, err.error_name) == (6, "KDC_ERR_C_PRINCIPAL_UNKNOWN")
    assert err.error_code == FACTS["kerberos"]["error_code"]
    assert err.realm == FACTS["realm"]
    assert (err.sname, err.sname_type) == (f"krbtgt/{FACTS['realm']}", 2)
    assert in_capture_window(err.stime) and err.stime.microsecond == err.susec
    # Samba's KDC (Heimdal) echoes the client; Windows leaves these out
    assert err.crealm == FACTS["realm"]
    assert err.cname == FACTS["kerberos"]["client_principal"]
    assert (err.e_text, err.e_data, err.padata_types, err.etype_info2) == (None, None, (), ())


def test_krb_error_udp() -> None:
    data = load(KRB_UDP)
    err = kerberos.decode_krb_error(data)
    check_krb_error(err)
    assert kerberos.decode_kdc_reply(data) == err


def test_krb_error_tcp() -> None:
    data = load(KRB_TCP)
    assert kerberos.tcp_record_length(data) == len(data)
    assert kerberos.tcp_record_length(data[:3]) is None
    err = kerberos.decode_krb_error(data[4:])
    check_krb_error(err)
    assert kerberos.decode_kdc_reply(data[4:]) == err
    with pytest.raises(DecodeError):  # the record mark is not part of the message
        kerberos.decode_krb_error(data)


# ================================================================================= endpoint mapper


def test_epm_page1_stub() -> None:
    page = epm.decode_ept_lookup_response(load(EPM_PAGE1_STUB))
    facts = FACTS["epm"]["page1"]
    assert page.num_ents == len(page.entries) == FACTS["epm"]["entries"] == facts["num_ents"]
    if FACTS["epm"]["rpcclient_epmlookup_entries"] is not None:
        assert len(page.entries) == FACTS["epm"]["rpcclient_epmlookup_entries"]
    assert page.status == 0 and not page.is_last
    assert page.entry_handle.hex() == facts["handle_hex"] and page.entry_handle[4:] != bytes(16)
    assert epm.protocol_sequence_counts(page.entries) == facts["protocol_sequences"]
    assert epm.tcp_ports(page.entries) == facts["ncacn_ip_tcp_ports"]
    tcp = [e for e in page.entries if e.protocol_sequence == "ncacn_ip_tcp"]
    assert tcp and all(e.port is not None and e.string_binding == f"ncacn_ip_tcp:{e.address}[{e.port}]" for e in tcp)
    assert all(e.transfer_syntax == epm.NDR_TRANSFER_SYNTAX_UUID for e in page.entries)
    assert not any(e.unknown_floors for e in page.entries)
    epmapper = [e for e in tcp if e.interface_uuid == epm.EPM_INTERFACE_UUID]
    assert [(e.port, e.interface_version, e.annotation) for e in epmapper] == [(135, "3.0", "epmapper")]
    drs = [e for e in tcp if e.interface_uuid == "e3514235-4b06-11d1-ab04-00c04fc2dcd2"]
    assert drs and drs[0].port in facts["ncacn_ip_tcp_ports"]
    assert drs[0].port is not None and drs[0].port >= 1024
    assert "Directory Replication" in drs[0].interface_name


def test_epm_page1_matches_impacket() -> None:
    """impacket's own NDR decoder and string bindings agree entry by entry."""
    from impacket.dcerpc.v5 import epm as impacket_epm

    stub = load(EPM_PAGE1_STUB)
    theirs = impacket_epm.ept_lookupResponse()
    theirs.fromString(stub)
    ours = epm.decode_ept_lookup_response(stub)
    assert len(theirs["entries"]) == len(ours.entries)
    for mine, their in zip(ours.entries, theirs["entries"], strict=True):
        tower = impacket_epm.EPMTower(b"".join(their["tower"]["tower_octet_string"]))
        assert mine.string_binding == impacket_epm.PrintStringBinding(tower["Floors"])
        assert mine.annotation == b"".join(their["annotation"]).rstrip(b"\x00").decode()


def test_epm_page1_pdus() -> None:
    pdus = dcerpc.decode_co_pdus(load(EPM_PAGE1_PDUS))
    assert len(pdus) >= 2  # Samba fragments at impacket's max_xmit of 4280
    assert all(p.ptype_name == "response" and p.little_endian and p.status is None for p in pdus)
    assert len({p.call_id for p in pdus}) == 1
    assert pdus[0].pfc_flags & 0x03 == 0x01 and pdus[-1].pfc_flags & 0x03 == 0x02
    assert pdus[0].alloc_hint == FACTS["files"][EPM_PAGE1_STUB]["bytes"]
    assert sum(p.frag_length for p in pdus) == len(load(EPM_PAGE1_PDUS))
    assert dcerpc.co_response_stub(pdus) == load(EPM_PAGE1_STUB)


def test_epm_page2_not_registered() -> None:
    page = epm.decode_ept_lookup_response(load(EPM_PAGE2_STUB))
    assert page.status == epm.EPT_S_NOT_REGISTERED == 0x16C9A0D6 == FACTS["epm"]["page2"]["status"]
    assert (page.num_ents, page.entries) == (0, ())
    assert page.entry_handle == epm.NULL_ENTRY_HANDLE and page.is_last
    (pdu,) = dcerpc.decode_co_pdus(load(EPM_PAGE2_PDUS))
    assert (pdu.ptype_name, pdu.pfc_flags & 0x03, pdu.status) == ("response", 0x03, None)
    page1_call = dcerpc.decode_co_pdus(load(EPM_PAGE1_PDUS))[0].call_id
    assert pdu.call_id == page1_call + 1  # same connection, next call
    assert dcerpc.co_response_stub([pdu]) == load(EPM_PAGE2_STUB)


# ================================================================================= robustness
#
# Decoding pipelines that use only decoding functions; all of them must raise nothing but DecodeError.
# (parse_root_dse is left out on purpose: it raises ProtocolError for a well-formed refusal.)


def _ldap_rootdse(data: bytes) -> None:
    for entry in ldap.decode_search_response(data).entries:
        if entry.object_name == "":
            rootdse.RootDSE.from_entry(entry)


def _ldap_ping(data: bytes) -> None:
    value = ldap.decode_search_response(data).netlogon
    if value is not None:
        netlogon.decode_netlogon(value)


def _krb_udp(data: bytes) -> None:
    kerberos.decode_kdc_reply(data)
    kerberos.decode_krb_error(data)


def _krb_tcp(data: bytes) -> None:
    total = kerberos.tcp_record_length(data)
    kerberos.decode_kdc_reply(data[4:total])


def _epm_stub(data: bytes) -> None:
    with contextlib.suppress(DecodeError):  # the same bytes read as big-endian NDR: hostile input too
        epm.decode_ept_lookup_response(data, little_endian=False)
    epm.decode_ept_lookup_response(data)


def _epm_pdus(data: bytes) -> None:
    pdus = dcerpc.decode_co_pdus(data)
    stub = dcerpc.co_response_stub(pdus)
    epm.decode_ept_lookup_response(stub, little_endian=pdus[0].little_endian)


DECODERS: dict[str, Callable[[bytes], object]] = {
    CLDAP_ROOTDSE: _ldap_rootdse,
    CLDAP_PING: _ldap_ping,
    CLDAP_PING_WITH_IP: _ldap_ping,
    LDAP_TCP_ROOTDSE: _ldap_rootdse,
    NBSTAT: nbstat.decode_node_status_response,
    KRB_UDP: _krb_udp,
    KRB_TCP: _krb_tcp,
    EPM_PAGE1_STUB: _epm_stub,
    EPM_PAGE2_STUB: _epm_stub,
    EPM_PAGE1_PDUS: _epm_pdus,
    EPM_PAGE2_PDUS: _epm_pdus,
}


def test_decoders_cover_every_capture() -> None:
    assert set(DECODERS) == set(FACTS["files"])


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_unmodified_capture_decodes(name: str) -> None:
    DECODERS[name](load(name))


# -------------------------------------------------------------------------------- truncation

STRICT_PREFIX: dict[str, Callable[[bytes], object]] = {
    # every strict prefix of these must be refused
    CLDAP_ROOTDSE: lambda b: rootdse.parse_root_dse(ldap.decode_search_response(b)),
    LDAP_TCP_ROOTDSE: lambda b: rootdse.parse_root_dse(ldap.decode_search_response(b)),
    NBSTAT: nbstat.decode_node_status_response,
    KRB_UDP: kerberos.decode_kdc_reply,
    EPM_PAGE1_STUB: epm.decode_ept_lookup_response,
    EPM_PAGE2_STUB: epm.decode_ept_lookup_response,
    EPM_PAGE1_PDUS: _epm_pdus,
    EPM_PAGE2_PDUS: _epm_pdus,
}


@pytest.mark.parametrize("name", sorted(STRICT_PREFIX))
def test_every_truncation_raises_decode_error(name: str) -> None:
    data, decode = load(name), STRICT_PREFIX[name]
    accepted = []
    for n in range(len(data)):
        try:
            decode(data[:n])
        except DecodeError:
            continue
        accepted.append(n)
    assert accepted == []


@pytest.mark.parametrize("name", [CLDAP_PING, CLDAP_PING_WITH_IP])
def test_truncated_ldap_ping(name: str) -> None:
    """A cut datagram is refused, except exactly after the SearchResultEntry: then it is a search
    that has not ended (``done`` False), which is what the decoder documents."""
    data = load(name)
    entry_len = ldap.message_length(data)
    for n in range(len(data)):
        try:
            result = ldap.decode_search_response(data[:n])
        except DecodeError:
            continue
        assert n == entry_len and not result.done and result.netlogon is not None


def test_truncated_krb_tcp() -> None:
    data = load(KRB_TCP)
    for n in range(len(data)):
        total = kerberos.tcp_record_length(data[:n])
        assert total is None or total > n  # a reader would wait for more
        if n >= 4:
            with pytest.raises(DecodeError):
                kerberos.decode_krb_error(data[4:n])


def _netlogon_value(name: str) -> bytes:
    value = ldap.decode_search_response(load(name)).netlogon
    assert value is not None
    return value


@pytest.mark.parametrize("name", [CLDAP_PING, CLDAP_PING_WITH_IP])
def test_truncated_netlogon_value(name: str) -> None:
    value = _netlogon_value(name)
    accepted = set()
    for n in range(len(value)):
        try:
            netlogon.decode_netlogon(value[:n])
        except DecodeError:
            continue
        accepted.add(n)
    assert accepted == set()  # no proper prefix decodes (the 0xFFFF tokens anchor the fixed tail)


def test_netlogon_cut_inside_sockaddr_is_refused() -> None:
    value = _netlogon_value(CLDAP_PING_WITH_IP)
    with pytest.raises(DecodeError):
        netlogon.decode_netlogon(value[: len(value) - 17])


# -------------------------------------------------------------------------------- byte flips


def _decodes_or_decode_error(decode: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


def _flip_positions(name: str, data: bytes) -> list[int]:
    """Byte offsets to flip: all of them, except in the two big EPM captures (a decode there costs
    ~2 ms): the fragment headers of the PDU stream (its stubs are the stub file's bytes), and in the
    stub its head, its tail and every 4th byte between."""
    if name == EPM_PAGE1_PDUS:
        out: list[int] = []
        pos = 0
        while pos + dcerpc.CO_HEADER_LEN <= len(data):
            out.extend(range(pos, pos + 24))
            pos += int.from_bytes(data[pos + 8 : pos + 10], "little")
        return out
    if len(data) <= 2048:
        return list(range(len(data)))
    return sorted({*range(1024), *range(len(data) - 512, len(data)), *range(0, len(data), 4)})


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_single_byte_flips(name: str) -> None:
    """Each chosen byte XOR 0xff (and XOR 0x80, 0x01 where there are few): only DecodeError may come out."""
    data, decode = load(name), DECODERS[name]
    positions = _flip_positions(name, data)
    masks = (0xFF, 0x80, 0x01) if len(positions) < 1024 else (0xFF,)
    for i in positions:
        for mask in masks:
            mutated = bytearray(data)
            mutated[i] ^= mask
            _decodes_or_decode_error(decode, bytes(mutated))


@st.composite
def _mutations(draw: st.DrawFn, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["xor", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "xor" and buf:
            buf[at] ^= draw(st.integers(1, 255))
        elif op == "set" and buf:
            buf[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x84, 0xFF]))
        elif op == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del buf[at : at + draw(st.integers(1, 8))]
        else:
            del buf[at:]
    return bytes(buf)


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_mutations(name: str, data: st.DataObject) -> None:
    mutated = data.draw(_mutations(load(name)), label="mutated")
    _decodes_or_decode_error(DECODERS[name], mutated)

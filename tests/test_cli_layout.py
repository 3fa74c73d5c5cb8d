"""PortQry's text layout: the golden files ``tests/golden/cli_*.txt`` for every state and protocol block.

The cases are built from the probes' own detail classes (and a few partial shapes) and printed with
:mod:`exporter.cli.text`/:mod:`exporter.cli.blocks`; one real run against loopback peers is compared too.
Regenerate after a deliberate layout change with ``PORTQRY_UPDATE_GOLDEN=1 pytest tests/test_cli_layout.py``
and review the diff.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exporter.cli import blocks
from exporter.cli import text as fmt
from exporter.model import DnsDetails, DynamicPort, LdapDetails, RpcDetails, TlsDetails
from exporter.result import ProbeResult
from exporter.states import PortState, Reason
from exporter.wire.epm import EpmEntry
from exporter.wire.kerberos import KrbError
from exporter.wire.ldap import SearchEntry
from exporter.wire.mssqlr import SqlInstance
from exporter.wire.nbstat import NetbiosName, NodeStatus
from exporter.wire.netlogon import NetlogonSamLogonResponseEx
from exporter.wire.rootdse import RootDSE
from exporter.wire.snmp import SnmpResponse, VarBind
from exporter.wire.x509 import CertificateSummary
from tests.clirun import dns_server, run
from tests.peers import closed_port, tcp_listener

GOLDEN = Path(__file__).resolve().parent / "golden"


UPDATE = os.environ.get("PORTQRY_UPDATE_GOLDEN") == "1"


def _result(
    protocol: str,
    port: int,
    state: PortState,
    reason: Reason,
    *,
    service: str = "unknown service",
    details: dict[str, object] | None = None,
    error: str = "",
) -> ProbeResult:
    return ProbeResult(
        target="dc1.pqtest.test",
        host="dc1.pqtest.test",
        address="198.18.1.2",
        protocol=protocol,  # type: ignore[arg-type]
        port=port,
        service=service,
        state=state,
        reason=reason,
        duration_seconds=0.01,
        tries=1,
        timestamp=0.0,
        details=details or {},
        error=error,
    )


def _root_dse() -> RootDSE:
    attrs = [
        ("configurationNamingContext", [b"CN=Configuration,DC=pqtest,DC=test"]),
        ("currentTime", [b"20011011231021.0Z"]),
        ("defaultNamingContext", [b"DC=pqtest,DC=test"]),
        ("dnsHostName", [b"dc1.pqtest.test"]),
        ("domainControllerFunctionality", [b"7"]),
        ("domainFunctionality", [b"4"]),
        (
            "dsServiceName",
            [
                b"CN=NTDS Settings,CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,"
                b"CN=Configuration,DC=pqtest,DC=test"
            ],
        ),
        ("forestFunctionality", [b"4"]),
        ("highestCommittedUSN", [b"4259431"]),
        ("isGlobalCatalogReady", [b"TRUE"]),
        ("isSynchronized", [b"TRUE"]),
        ("ldapServiceName", [b"pqtest.test:dc1$@PQTEST.TEST"]),
        ("namingContexts", [b"DC=pqtest,DC=test", b"CN=Configuration,DC=pqtest,DC=test"]),
        ("rootDomainNamingContext", [b"DC=pqtest,DC=test"]),
        ("schemaNamingContext", [b"CN=Schema,CN=Configuration,DC=pqtest,DC=test"]),
        (
            "serverName",
            [b"CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=pqtest,DC=test"],
        ),
        ("subschemaSubentry", [b"CN=Aggregate,CN=Schema,CN=Configuration,DC=pqtest,DC=test"]),
        ("supportedCapabilities", [b"1.2.840.113556.1.4.800"]),
        ("supportedControl", [b"1.2.840.113556.1.4.319", b"1.2.840.113556.1.4.801"]),
        ("supportedLDAPPolicies", [b"MaxPoolThreads"]),
        ("supportedLDAPVersion", [b"3", b"2"]),
        ("supportedSASLMechanisms", [b"GSSAPI", b"GSS-SPNEGO"]),
        ("vendorName", [b"Samba Team (https://www.samba.org)"]),
    ]
    entry = SearchEntry("", tuple((name, tuple(values)) for name, values in attrs))
    return RootDSE.from_entry(entry)


def _netlogon() -> NetlogonSamLogonResponseEx:
    return NetlogonSamLogonResponseEx(
        opcode=23,
        opcode_name="LOGON_SAM_LOGON_RESPONSE_EX",
        flags_raw=0x3F1FD,
        flags=frozenset({"pdc", "gc", "ldap", "ds", "kdc", "timeserv", "writable"}),
        domain_guid=uuid.UUID("6f1c7a52-6b3f-4b8e-9a3e-3c2f1d0e9b7a"),
        dns_forest_name="pqtest.test",
        dns_domain_name="pqtest.test",
        dns_host_name="dc1.pqtest.test",
        netbios_domain_name="PQTEST",
        netbios_computer_name="DC1",
        user_name="",
        dc_site_name="Default-First-Site-Name",
        client_site_name="Default-First-Site-Name",
        dc_address=None,
        next_closest_site_name=None,
        nt_version=5,
        lm_nt_token=0xFFFF,
        lm20_token=0xFFFF,
    )


def _epm(uuid_text: str, annotation: str, binding: str, port: int | None) -> EpmEntry:
    protseq = binding.split(":", 1)[0]
    return EpmEntry(
        object_uuid="00000000-0000-0000-0000-000000000000",
        interface_uuid=uuid_text,
        interface_version="1.0",
        annotation=annotation,
        protocol_sequence=protseq,
        string_binding=binding,
        address="",
        endpoint=str(port or ""),
        port=port,
        transfer_syntax="8a885d04-1ceb-11c9-9fe8-08002b104860",
        interface_name="",
        provider="",
        floors=(),
        unknown_floors=(),
    )


EPM_ENTRIES = (
    _epm("ecec0d70-a603-11d0-96b1-00a0c91ece30", "NTDS Backup Interface", r"ncacn_np:\\DC1[\PIPE\lsass]", None),
    _epm(
        "e3514235-4b06-11d1-ab04-00c04fc2dcd2",
        "MS NT Directory DRS Interface",
        "ncacn_ip_tcp:198.18.1.2[49153]",
        49153,
    ),
    _epm("12345778-1234-abcd-ef00-0123456789ab", "", "ncacn_ip_tcp:198.18.1.2[49152]", 49152),
)


def rpc_details(entries: tuple[EpmEntry, ...], dynamic_ports: tuple[DynamicPort, ...]) -> RpcDetails:
    """The RPC probe's details over TCP: the entries and the reachability of the dynamic ports."""
    return RpcDetails("tcp", entries, {}, dynamic_ports)


def _golden_cases() -> dict[str, list[str]]:
    udp, tcp = "udp", "tcp"
    krb = KrbError(
        error_code=6,
        error_name="KDC_ERR_C_PRINCIPAL_UNKNOWN",
        realm="PQTEST.TEST",
        sname="krbtgt/PQTEST.TEST",
        sname_type=2,
        stime=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        susec=0,
        ctime=None,
        cusec=None,
        crealm=None,
        cname=None,
        e_text=None,
        e_data=None,
        padata_types=(),
        etype_info2=(),
    )
    snmp = SnmpResponse(
        "v2c", "s3cret", 7, 0, "noError", 0, (VarBind("1.3.6.1.2.1.1.1.0", "octet-string", "Linux peer"),)
    )
    nbstat = NodeStatus(
        transaction_id=1,
        names=(
            NetbiosName("DC1", 0x00, 0x0400),
            NetbiosName("PQTEST", 0x1C, 0x8400),
            NetbiosName("DC1", 0x20, 0x0400),
        ),
        mac="00:15:5d:01:02:03",
        question_name="*",
        statistics=b"",
    )
    sql = (
        SqlInstance(
            (
                ("ServerName", "SQL1"),
                ("InstanceName", "MSSQLSERVER"),
                ("IsClustered", "No"),
                ("Version", "8.00.194"),
                ("tcp", "1433"),
                ("np", r"\\SQL1\pipe\sql\query"),
            )
        ),
    )
    dns_details = DnsDetails("portqry.microsoft.com.", "A", 3, "NXDOMAIN", authoritative=False, answers=0)
    tls = TlsDetails(  # no cipher name: the line is left out
        "TLSv1.3",
        "",
        CertificateSummary(
            "CN=dc1.pqtest.test",
            "CN=PQTEST CA",
            datetime(2028, 1, 2, 3, 4, 5, tzinfo=UTC),
            datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
            serial_number="01",
            self_signed=False,
        ),
    )
    tls_probe = TlsDetails(
        "TLSv1.2",
        "ECDHE-RSA-AES256-GCM-SHA384",
        CertificateSummary(
            "CN=dc1.pqtest.test",
            "CN=dc1.pqtest.test",
            datetime(2024, 1, 1, tzinfo=UTC),
            datetime(2026, 1, 1, tzinfo=UTC),
            serial_number="02",
            self_signed=True,
        ),
    )
    lor = PortState.LISTENING_OR_FILTERED
    cases: dict[tuple[str, str], tuple[ProbeResult, str]] = {
        ("states", "tcp_listening"): (
            _result(tcp, 80, PortState.LISTENING, Reason.SYN_ACK, service="http"),
            "",
        ),
        ("states", "tcp_not_listening"): (_result(tcp, 81, PortState.NOT_LISTENING, Reason.REFUSED), ""),
        ("states", "tcp_filtered"): (_result(tcp, 9101, PortState.FILTERED, Reason.TIMEOUT), ""),
        ("states", "udp_listening"): (_result(udp, 9205, PortState.LISTENING, Reason.REPLY), ""),
        ("states", "udp_not_listening"): (
            _result(udp, 9202, PortState.NOT_LISTENING, Reason.ICMP_PORT_UNREACHABLE),
            "",
        ),
        ("states", "udp_listening_or_filtered"): (_result(udp, 9201, lor, Reason.NO_REPLY), ""),
        ("states", "udp_filtered_admin"): (
            _result(udp, 9203, PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
            "",
        ),
        ("states", "local_error"): (
            _result(
                tcp,
                80,
                PortState.FILTERED,
                Reason.LOCAL_ERROR,
                service="http",
                error="Network is unreachable",
            ),
            "",
        ),
        ("ldap", "udp_rootdse"): (
            _result(
                udp,
                389,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="ldap",
                details={"ldap": LdapDetails(_root_dse(), None)},
            ),
            "ldap",
        ),
        ("ldap", "udp_rootdse_and_ping"): (
            _result(
                udp,
                389,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="ldap",
                details={"ldap": LdapDetails(_root_dse(), 0.5, _netlogon())},
            ),
            "ldap",
        ),
        ("ldap", "tcp_rootdse"): (
            _result(
                tcp,
                389,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="ldap",
                details={"ldap": LdapDetails(_root_dse(), None)},
            ),
            "ldap",
        ),
        ("ldap", "udp_no_reply"): (
            _result(udp, 389, PortState.FILTERED, Reason.PROTOCOL_NO_REPLY, service="ldap"),
            "ldap",
        ),
        ("rpc", "udp_dump"): (
            _result(
                udp,
                135,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="epmap",
                details={"rpc": rpc_details(EPM_ENTRIES, ())},
            ),
            "rpc",
        ),
        ("rpc", "tcp_dump_dynamic"): (
            _result(
                tcp,
                135,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="epmap",
                details={
                    "rpc": rpc_details(
                        EPM_ENTRIES,
                        (DynamicPort(49153, (), "listening", "syn-ack"), DynamicPort(49152, (), "filtered", "timeout")),
                    )
                },
            ),
            "rpc",
        ),
        ("rpc", "tcp_dump_probe_shape"): (
            _result(
                tcp,
                135,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="epmap",
                details={
                    "rpc": rpc_details(
                        EPM_ENTRIES[1:2],
                        (
                            DynamicPort(49153, ("drsuapi", "lsarpc"), "listening", "syn-ack"),
                            DynamicPort(49154, ("samr",), "filtered", "timeout"),
                        ),
                    )
                },
            ),
            "rpc",
        ),
        ("rpc", "tcp_refused"): (
            _result(
                tcp,
                135,
                PortState.LISTENING,
                Reason.PROTOCOL_REFUSED,
                service="epmap",
                error="endpoint mapper refused: nca_s_op_rng_error",
            ),
            "rpc",
        ),
        ("netbios", "udp_node_status"): (
            _result(
                udp,
                137,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="netbios-ns",
                details={"netbios": nbstat},
            ),
            "netbios",
        ),
        ("snmp", "udp_sysdescr"): (
            _result(udp, 161, PortState.LISTENING, Reason.PROTOCOL_REPLY, service="snmp", details={"snmp": snmp}),
            "snmp",
        ),
        ("snmp", "udp_wrong_community"): (
            _result(udp, 161, PortState.FILTERED, Reason.PROTOCOL_NO_REPLY, service="snmp"),
            "snmp",
        ),
        ("dns", "udp_reply"): (
            _result(
                udp,
                53,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="domain",
                details={"dns": dns_details},
            ),
            "dns",
        ),
        ("kerberos", "udp_krb_error"): (
            _result(
                udp,
                88,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="kerberos",
                details={"kerberos": krb},
            ),
            "kerberos",
        ),
        ("tls", "tcp_certificate"): (
            _result(tcp, 636, PortState.LISTENING, Reason.PROTOCOL_REPLY, service="ldaps", details={"tls": tls}),
            "tls",
        ),
        ("tls", "tcp_ldaps"): (
            _result(
                tcp,
                636,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="ldaps",
                details={"tls": tls_probe, "ldap": LdapDetails(_root_dse(), None)},
            ),
            "ldaps",
        ),
        ("mssql", "udp_instances"): (
            _result(
                udp,
                1434,
                PortState.LISTENING,
                Reason.PROTOCOL_REPLY,
                service="ms-sql-m",
                details={"mssql": sql},
            ),
            "mssql",
        ),
    }
    out: dict[str, list[str]] = {}
    for (group, name), (result, probe) in cases.items():
        out.setdefault(group, []).append(f"----- {name}")
        out[group] += fmt.port_lines(result, probe_name=probe, community="s3cret")
    out["header"] = [
        "----- name",
        *fmt.target_lines("dc1.pqtest.test"),
        *fmt.name_resolution_lines("198.18.1.2"),
        *fmt.QUERYING_LINES,
        "----- address",
        *fmt.target_lines("198.18.1.2"),
        *fmt.reverse_resolution_lines("dc1.pqtest.test"),
        *fmt.QUERYING_LINES,
        "----- address_without_ptr",
        *fmt.reverse_resolution_lines(None),
        "----- log",
        *fmt.log_header("portqry -n 198.18.1.2 -e 443 -nr -l pqlog.txt -q", "SOURCESERVER", now=0),
        "TCP port 443 (https service): LISTENING",
        *fmt.log_footer(),
    ]
    return out


@pytest.mark.parametrize(
    "group", ["states", "ldap", "rpc", "netbios", "snmp", "dns", "kerberos", "tls", "mssql", "header"]
)
def test_golden_layout(group: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        text = "\n".join(_golden_cases()[group]) + "\n"
    finally:
        monkeypatch.undo()
        time.tzset()
    path = GOLDEN / f"cli_{group}.txt"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with PORTQRY_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def test_golden_ldap_follows_portqrys_order() -> None:
    lines = blocks.root_dse_lines(_root_dse())
    names = [line.split(":", 1)[0] for line in lines]
    assert names[:3] == ["currentdate", "subschemaSubentry", "dsServiceName"]
    assert lines[0] == "currentdate: 10/11/2001 23:10:21 (unadjusted GMT)"
    assert names[-1] == "vendorName"  # attributes PortQry does not list come last, as received
    assert names.count("namingContexts") == 2


def test_blocks_without_details_print_the_query_line_and_the_verdict() -> None:
    for name in ("ldap", "rpc", "netbios", "snmp", "dns", "kerberos", "tls", "mssql", "isa"):
        result = _result("udp", 1000, PortState.FILTERED, Reason.PROTOCOL_NO_REPLY)
        lines = fmt.port_lines(result, probe_name=name)
        assert lines[-2] == "UDP port 1000 is FILTERED"
        assert len(lines) <= 12, lines  # the query lines only: nothing is made up
    dse = RootDSE.from_entry(SearchEntry("", (("dnsHostName", (b"dc1",)), ("currentTime", (b"20240102030405.0Z",)))))
    lines = blocks.ldap_block(LdapDetails(dse, None, ping_error="no reply to the LDAP ping"), "udp", 389)
    assert "currentdate: 01/02/2024 03:04:05 (unadjusted GMT)" in lines and "dnsHostName: dc1" in lines
    assert "LDAP ping: no reply to the LDAP ping" in lines


def test_ephemeral_note_for_protocol_followups_with_sp() -> None:
    result = _result(
        "udp",
        389,
        PortState.LISTENING,
        Reason.PROTOCOL_REPLY,
        service="ldap",
        details={"ldap": LdapDetails(_root_dse(), None)},
    )
    lines = fmt.port_lines(result, probe_name="ldap", source_port=3000)
    assert lines[2] == "Using ephemeral source port"
    assert "Using ephemeral source port" not in fmt.port_lines(result, probe_name="ldap")


def test_real_run_layout_matches_the_golden_file() -> None:
    """The whole text of a real run: name resolution, one LISTENING and one NOT LISTENING port."""
    with dns_server() as (address, dport, _queries), tcp_listener() as peer:
        closed = closed_port()
        r = run(
            "-n",
            "host.portqry.test",
            "--dns-server",
            address,
            "--dns-port",
            str(dport),
            "-o",
            f"{peer},{closed}",
        )
    text = r.out
    for port, tag in ((peer, "<OPEN>"), (closed, "<CLOSED>")):
        text = re.sub(rf"TCP port {port} \([^)]*\)", f"TCP port {tag} (<service>)", text)
    path = GOLDEN / "cli_run.txt"
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text()

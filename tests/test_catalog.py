"""Tests for the Windows service catalog (exporter/catalog/, exporter/data/catalog.toml).

The cross-check tests read Microsoft's "Service overview and network port requirements for Windows"
(KB 832017, seed ``003_*.txt`` in ``../shared/seeds/`` beside the repository) and skip when it is absent.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from exporter.catalog import (
    Catalog,
    CatalogDataError,
    CatalogLookupError,
    Expansion,
    format_profile_list,
    format_service_list,
    load_catalog,
    parse_catalog,
)
from exporter.errors import PortqryError

SEEDS = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def seed() -> list[str]:
    found = sorted(SEEDS.glob("003_*.txt"))
    if not found:
        pytest.skip(f"KB 832017 seed (003_*.txt) not found in {SEEDS}")
    return found[0].read_text(encoding="utf-8").splitlines()


# --------------------------------------------------------------------------------------------------------
# Reading the seed (test-only: the package never parses the article)

_SUPERSCRIPTS = "¹²³"


def _clean(cell: str) -> str:
    cell = cell.replace("`", "").replace("**", "")
    cell = re.sub(r"\(note[^)]*\)", "", cell)
    return cell.strip(" " + _SUPERSCRIPTS)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_data_row(line: str) -> bool:
    return line.startswith("|") and not line.startswith(("|---", "||")) and "Protocol" not in line.split("|")[2]


def _sections(seed: list[str]) -> dict[str, list[str]]:
    """'### ' sections (and '#### BranchCache information') of "System services ports", heading -> lines."""
    start, end = seed.index("## System services ports"), seed.index("## Ports and protocols")
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in seed[start:end]:
        if line.startswith(("### ", "#### ")):
            current = sections.setdefault(line.split(" ", 1)[1].strip(), [])
        else:
            current.append(line)
    return sections


def _seed_rows(lines: list[str]) -> set[tuple[str, str, int | None, int | None]]:
    """(app, transport, first, last) for every port or range a section's tables list."""
    rows: set[tuple[str, str, int | None, int | None]] = set()
    for line in lines:
        if not _is_data_row(line):
            continue
        app_cell, proto_cell, ports_cell = [*_cells(line), ""][:3]  # Group Policy's ICMP row has 2 cells
        app, proto = _clean(app_cell), _clean(proto_cell).upper()
        if "TCP" in proto and "UDP" in proto:
            transport = "both"
        elif proto.startswith("UDP"):
            transport = "udp"
        elif proto in ("TCP", "TP"):  # "TP": errata winrm-tp
            transport = "tcp"
        elif proto in ("ICMP", "GRE", "ESP", "AH"):
            transport = proto.lower()
        elif proto == "" and app.startswith("ICMP"):  # the AD table leaves the ICMP protocol cell empty
            transport = "icmp"
        else:
            raise AssertionError(f"unexpected protocol cell {proto_cell!r}")
        if transport in ("icmp", "gre", "esp", "ah"):
            rows.add((app, transport, None, None))
            continue
        ports = _clean(ports_cell)
        for first, last in re.findall(r"([0-9]+)\s*(?:-|and)\s*([0-9]+)", ports):
            rows.add((app, transport, int(first), int(last)))
        ports = re.sub(r"([0-9]+)\s*(?:-|and)\s*([0-9]+)", "", ports)
        for port in re.findall(r"(?<![.0-9])[0-9]+(?![0-9]|\.[0-9])", ports):
            rows.add((app, transport, int(port), int(port)))
    return rows


def _summary(seed: list[str]) -> list[tuple[str, str, str, str]]:
    start = seed.index("## Ports and protocols")
    end = seed.index("### Active Directory port and protocol requirements")
    return [
        tuple(c.replace("`", "") for c in _cells(line)[:4])  # type: ignore[misc]
        for line in seed[start:end]
        if line.startswith("|") and not line.startswith(("|---", "||", "|Port|"))
    ]


def _bullets_after(seed: list[str], intro: str) -> list[str]:
    i = seed.index(intro) + 1
    while not seed[i].startswith("- "):
        i += 1
    out = []
    while i < len(seed) and seed[i].startswith("- "):
        out.append(seed[i][2:].strip())
        i += 1
    return out


# --------------------------------------------------------------------------------------------------------
# Cross-check against KB 832017


def test_every_section_is_a_service_with_its_system_names(catalog: Catalog, seed: list[str]) -> None:
    sections = _sections(seed)
    assert len(sections) == 60
    assert len([s for s in catalog.services if s.parent is None]) == 59
    assert [s.name for s in catalog.services] == list(sections)
    assert catalog.find_service("BranchCache").parent == "IP Address Management (IPAM)"
    for service in catalog.services:
        named = [ln for ln in sections[service.name] if "System service name" in ln]
        text = named[0].split("System service name")[1] if named else ""
        names = re.findall(r"\*\*([^*]+)\*\*|`([^`]+)`", text)
        assert [a or b for a, b in names] == list(service.system_names), service.name
    assert catalog.find_service("LSASS").system_names == ("LSASS",)
    assert catalog.find_service("ProfSvc").system_names == ("ProfSvc", "CscService")
    assert [s.name for s in catalog.services if not s.system_names] == [
        "Hyper-V service",
        "IP Address Management (IPAM)",
        "BranchCache information",
        "ISA/TMG Server",
        "SharePoint Portal Server",
    ]


def test_every_table_row_matches_the_section(catalog: Catalog, seed: list[str]) -> None:
    """Each service's table rows equal the article's section tables (rows from prose are flagged)."""
    sections = _sections(seed)
    for service in catalog.services:
        ours = {(r.app.replace("`", ""), r.transport, r.first, r.last) for r in service.rows if not r.prose}
        assert ours == _seed_rows(sections[service.name]), service.name
    prose = {(s.name, r.spec) for s in catalog.services for r in s.rows if r.prose}
    assert prose == {
        ("Active Directory (local security authority)", "esp"),
        ("Cluster service", "icmp"),
        ("Cluster service", "tcp/445"),
        ("IP Address Management (IPAM)", "tcp/48885"),
        ("BranchCache information", "udp/3702"),
        ("BranchCache information", "tcp/80"),
        ("BranchCache information", "tcp/443"),
        ("World Wide Web Publishing Service", "tcp/8098"),
    }


def test_summary_table_is_verbatim_with_its_counts(catalog: Catalog, seed: list[str]) -> None:
    rows = _summary(seed)
    assert len(rows) == 183
    assert [(r.port_text, r.protocol_text, r.app, r.service_text) for r in catalog.port_summary] == rows
    counts = {p: sum(1 for r in catalog.port_summary if r.protocol_text == p) for p in ("TCP", "UDP", "UPD")}
    assert counts == {"TCP": 122, "UDP": 57, "UPD": 1}
    assert [r.protocol_text for r in catalog.port_summary if r.first is None] == ["GRE", "ESP", "AH"]
    (upd,) = [r for r in catalog.port_summary if r.protocol_text == "UPD"]
    assert (upd.transport, upd.first, upd.errata) == ("udp", 2703, ("upd-typo",))


def test_every_summary_row_is_in_a_service_or_explained(catalog: Catalog) -> None:
    summary_only = {name for e in catalog.errata for name in e.summary_services}
    matched, by_errata, by_summary_only = 0, 0, 0
    for row in catalog.port_summary:
        if row.service_text in summary_only:
            assert row.service is None
            by_summary_only += 1
            continue
        service = catalog.find_service(row.service) if row.service else None
        present = service is not None and any(
            r.first == row.first
            and r.last == row.last
            and (r.transport == row.transport or (r.transport == "both" and row.transport in ("tcp", "udp")))
            and row.app.casefold() in (r.app.casefold(), r.label.casefold())
            for r in service.rows
        )
        if present:
            matched += 1
        else:
            assert row.errata, f"unexplained summary row {row}"
            by_errata += 1
    assert (matched, by_errata, by_summary_only) == (134, 14, 35)


def test_errata_are_listed(catalog: Catalog) -> None:
    ids = {e.id for e in catalog.errata}
    assert {
        "upd-typo",
        "summary-only-services",
        "dfsr-5722-2008-only",
        "dfsr-ldap-smb-summary-only",
        "ldaps-udp-636",
        "dc-locator-label",
        "quotd-spelling",
        "winrm-tp",
        "dynamic-range-summary-row",
        "dynamic-low-range",
    } <= ids
    dfsr = catalog.find_service("DFSR")
    (r5722,) = [r for r in dfsr.rows if r.first == 5722]
    assert r5722.optional and "2008" in r5722.note


def test_active_directory_lists_match_the_article(catalog: Catalog, seed: list[str]) -> None:
    depends = _bullets_after(seed, "The list of services on which Active Directory depends:")
    required = _bullets_after(seed, "The list of services that require Active Directory services:")
    assert [e.text for e in catalog.ad_depends_on] == depends
    assert [e.text for e in catalog.ad_required_by] == required
    assert (len(depends), len(required)) == (13, 23)
    for entry in (*catalog.ad_depends_on, *catalog.ad_required_by):
        assert catalog.find_service(entry.service).name == entry.service


# --------------------------------------------------------------------------------------------------------
# Data shape (no seed needed)


def test_load_is_cached_and_counts(catalog: Catalog) -> None:
    assert load_catalog() is catalog
    assert len(catalog.services) == 60
    assert len(catalog.port_summary) == 183


def test_every_port_row_has_a_port_and_non_port_rows_none(catalog: Catalog) -> None:
    for service in catalog.services:
        for row in service.rows:
            if row.transport in ("icmp", "gre", "esp", "ah"):
                assert row.first is None and row.last is None
            else:
                assert row.first is not None and row.last is not None and 1 <= row.first <= row.last <= 65535
            if row.dynamic_rpc:
                assert row.is_range


def test_dynamic_rpc_ranges_are_the_article_ranges(catalog: Catalog) -> None:
    ranges = {(r.first, r.last) for s in catalog.services for r in s.rows if r.dynamic_rpc}
    assert ranges == {(1024, 5000), (1024, 65535), (49152, 65535), (10000, 65535)}


# --------------------------------------------------------------------------------------------------------
# Lookups


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("kdc", "Kerberos Key Distribution Center"),
        ("Kerberos", "Kerberos Key Distribution Center"),
        ("KERBEROS KEY DISTRIBUTION CENTER", "Kerberos Key Distribution Center"),
        ("LSASS", "Active Directory (local security authority)"),
        ("lsass", "Active Directory (local security authority)"),
        ("Active Directory (local security authority)", "Active Directory (local security authority)"),
        ("DNS", "DNS Server"),
        ("netlogon", "Net Logon"),
        ("  Net   Logon ", "Net Logon"),
        ("CscService", "Offline Files, User Profile Service, Folder Redirection, and Primary Computer"),
        ("ProfSvc", "Offline Files, User Profile Service, Folder Redirection, and Primary Computer"),
        ("W32Time", "Windows Time"),
        ("lanmanserver", "Server"),
        ("BranchCache", "BranchCache information"),
        ("Group Policy", "Group Policy"),
    ],
)
def test_find_service_by_name_system_name_or_alias(catalog: Catalog, name: str, expected: str) -> None:
    assert catalog.find_service(name).name == expected


def test_unknown_service_suggests_close_names(catalog: Catalog) -> None:
    with pytest.raises(CatalogLookupError) as info:
        catalog.find_service("Kerberoz")
    err = info.value
    assert isinstance(err, PortqryError)
    assert isinstance(err, LookupError)
    assert (err.kind, err.name) == ("service", "Kerberoz")
    assert err.suggestions[0] == "Kerberos"
    assert str(err).startswith("unknown service 'Kerberoz'; did you mean 'Kerberos'")


def test_unknown_service_without_close_names(catalog: Catalog) -> None:
    with pytest.raises(CatalogLookupError) as info:
        catalog.find_service("zzzzqqq")
    assert info.value.suggestions == ()
    assert "no close match" in str(info.value)


def test_unknown_profile_suggests_close_names(catalog: Catalog) -> None:
    with pytest.raises(CatalogLookupError) as info:
        catalog.profile("domain-controler")
    assert info.value.kind == "profile"
    assert info.value.suggestions[0] == "domain-controller"
    assert "did you mean 'domain-controller'" in str(info.value)


def test_services_for_port(catalog: Catalog) -> None:
    assert [s.name for s in catalog.services_for("tcp", 88)] == ["Kerberos Key Distribution Center"]
    assert catalog.services_for("udp", 88) == catalog.services_for("tcp", 88)
    assert catalog.services_for("tcp", 7777) == ()


# --------------------------------------------------------------------------------------------------------
# Profiles: every profile's ports pinned


def _specs(expansion: Expansion) -> tuple[list[str], list[str], list[str]]:
    return (
        [f"{p.protocol}/{p.port}" for p in expansion.ports],
        [u.row.spec for u in expansion.dynamic_rpc],
        [u.row.spec for u in expansion.not_probed],
    )


PROFILES: dict[str, tuple[list[str], list[str], list[str]]] = {
    "domain-controller": (
        [
            "tcp/389", "udp/389", "tcp/636", "tcp/3268", "tcp/3269", "tcp/88", "udp/88", "tcp/464", "udp/464",
            "tcp/53", "udp/53", "tcp/135", "tcp/445", "udp/123", "tcp/9389",
        ],
        ["tcp/49152-65535", "tcp/1024-5000"],
        ["icmp"],
    ),
    "member-to-dc": (
        [
            "tcp/53", "udp/53", "tcp/88", "udp/88", "udp/389", "tcp/389", "tcp/445", "tcp/135", "tcp/464",
            "udp/464", "tcp/3268", "udp/123",
        ],
        ["tcp/1024-65535", "tcp/49152-65535"],
        [],
    ),
    "dns-server": (["udp/53", "tcp/53"], [], []),
    "file-server": (["tcp/445", "tcp/139", "udp/137", "udp/138"], [], []),
    "exchange": (
        [
            "tcp/25", "tcp/102", "tcp/110", "tcp/135", "tcp/143", "tcp/443", "tcp/593", "tcp/993", "tcp/995",
            "tcp/6001", "tcp/6002", "tcp/6004",
        ],
        [],
        [],
    ),
    "sql-server": (["tcp/1433", "udp/1434"], [], []),
    "dns": (["tcp/53", "udp/53"], [], []),
    "ftp": (["tcp/21"], [], []),
    "imap": (["tcp/143"], [], []),
    "ipsec": (["udp/500"], [], []),
    "isa": (["tcp/1745", "udp/1745"], [], []),
    "ldap": (["tcp/389", "udp/389"], [], []),
    "l2tp": (["udp/1701"], [], []),
    "mail": (["tcp/25", "tcp/110", "tcp/143"], [], []),
    "pop3": (["tcp/110"], [], []),
    "rpc": (["tcp/135", "udp/135"], [], []),
    "smtp": (["tcp/25"], [], []),
    "snmp": (["udp/161"], [], []),
    "sql": (["tcp/1433", "udp/1434"], [], []),
    "tftp": (["udp/69"], [], []),
}  # fmt: skip


def test_profile_names(catalog: Catalog) -> None:
    assert [p.name for p in catalog.profiles] == list(PROFILES)


@pytest.mark.parametrize("name", list(PROFILES))
def test_profile_ports(catalog: Catalog, name: str) -> None:
    expansion = catalog.expand([], [name])
    assert _specs(expansion) == PROFILES[name]
    assert all(p.source == f"profile:{name}" for p in expansion.ports)
    profile = catalog.profile(name)
    assert profile.why and profile.description


def test_domain_controller_labels(catalog: Catalog) -> None:
    labels = {f"{p.protocol}/{p.port}": p.service for p in catalog.expand([], ["domain-controller"]).ports}
    assert labels["tcp/389"] == "LDAP Server"
    assert labels["udp/88"] == "Kerberos"
    assert labels["tcp/464"] == "Kerberos Password V5"
    assert labels["tcp/9389"] == "Active Directory Web Services (ADWS)"
    assert labels["udp/123"] == "NTP"


def test_profile_lookup_is_case_insensitive(catalog: Catalog) -> None:
    assert catalog.profile("Domain-Controller").name == "domain-controller"


# --------------------------------------------------------------------------------------------------------
# Expansion


def test_expand_dedups_keeping_the_first_request(catalog: Catalog) -> None:
    first_kdc = {(p.protocol, p.port): p for p in catalog.expand(["kdc", "LSASS"]).ports}
    assert first_kdc[("udp", 389)].service == "DC Locator"
    assert first_kdc[("udp", 389)].source == "Kerberos Key Distribution Center"
    first_ad = {(p.protocol, p.port): p for p in catalog.expand(["LSASS", "kdc"]).ports}
    assert first_ad[("udp", 389)].service == "LDAP Server"
    assert first_ad[("udp", 389)].source == "Active Directory (local security authority)"
    ports = [(p.protocol, p.port) for p in catalog.expand(["LSASS", "kdc"]).ports]
    assert len(ports) == len(set(ports))


def test_expand_services_before_profiles_in_request_order(catalog: Catalog) -> None:
    expansion = catalog.expand(["DNS Server", "kdc"], ["ldap", "dns"])
    assert [f"{p.protocol}/{p.port}" for p in expansion.ports] == [
        "udp/53", "tcp/53", "tcp/88", "udp/88", "udp/464", "tcp/464", "udp/389", "tcp/389",
    ]  # fmt: skip
    assert [p.source for p in expansion.ports][-1] == "profile:ldap"
    assert expansion.ports[6].source == "Kerberos Key Distribution Center"


def test_expand_both_gives_tcp_and_udp(catalog: Catalog) -> None:
    ports = catalog.expand(["ISA/TMG Server"]).ports
    assert [p.protocol for p in ports if p.port == 1745] == ["tcp", "udp"]
    assert {p.service for p in ports if p.port == 1745} == {"Firewall Client Control Channel"}


def test_dynamic_rpc_ranges_are_not_expanded(catalog: Catalog) -> None:
    expansion = catalog.expand(["Net Logon", "DFSR"])
    assert [f"{p.protocol}/{p.port}" for p in expansion.ports] == [
        "udp/138", "udp/137", "tcp/139", "tcp/445", "udp/389", "tcp/135", "tcp/5722",
    ]  # fmt: skip
    assert [(u.row.spec, u.source, u.reason) for u in expansion.dynamic_rpc] == [
        ("tcp/1024-65535", "Net Logon", "dynamic_rpc"),
        ("tcp/49152-65535", "Net Logon", "dynamic_rpc"),
    ]
    epm = [p for p in expansion.ports if p.port == 135]
    assert [p.dynamic_rpc for p in epm] == [True]
    assert not any(p.dynamic_rpc for p in expansion.ports if p.port != 135)


def test_port_135_without_dynamic_ranges_is_plain(catalog: Catalog) -> None:
    expansion = catalog.expand(["Message Queuing"])
    assert expansion.dynamic_rpc == ()
    assert [p.dynamic_rpc for p in expansion.ports if p.port == 135] == [False]


def test_non_port_protocols_and_other_ranges_are_not_probed(catalog: Catalog) -> None:
    expansion = catalog.expand(["Routing and Remote Access", "FTP", "Group Policy"])
    assert [f"{p.protocol}/{p.port}" for p in expansion.ports] == [
        "udp/1701", "tcp/1723", "tcp/21", "tcp/20", "tcp/389", "tcp/445", "tcp/135",
    ]  # fmt: skip
    assert [(u.row.spec, u.reason) for u in expansion.not_probed] == [
        ("gre", "no_port"),
        ("ah", "no_port"),
        ("esp", "no_port"),
        ("tcp/1024-65535", "port_range"),
        ("tcp/49152-65535", "port_range"),
        ("icmp", "no_port"),
    ]
    assert [u.row.spec for u in expansion.dynamic_rpc] == [
        "tcp+udp/1024-65535",
        "tcp+udp/49152-65535",
        "tcp/1024-65535",
        "tcp/49152-65535",
    ]


def test_expand_optional_flag_and_note(catalog: Catalog) -> None:
    (netbios,) = [p for p in catalog.expand(["Net Logon"]).ports if p.port == 139]
    assert netbios.optional and "optional" in netbios.note


def test_expand_unknown_names_raise(catalog: Catalog) -> None:
    with pytest.raises(CatalogLookupError) as info:
        catalog.expand(["kdc", "Kerberoz"], ["ldap"])
    assert info.value.name == "Kerberoz"
    with pytest.raises(CatalogLookupError) as info:
        catalog.expand(["kdc"], ["ldapp"])
    assert (info.value.kind, info.value.suggestions[0]) == ("profile", "ldap")


def test_expand_refuses_a_bare_string(catalog: Catalog) -> None:
    with pytest.raises(TypeError):
        catalog.expand("kdc")


# --------------------------------------------------------------------------------------------------------
# Listings


def test_format_service_list(catalog: Catalog) -> None:
    lines = format_service_list(catalog).splitlines()
    assert len(lines) == 60
    assert [ln.split(" [")[0].split(": ")[0] for ln in lines] == [s.name for s in catalog.services]
    assert "Kerberos Key Distribution Center [kdc]: tcp/88, udp/88, udp/464, tcp/464, udp/389" in lines
    assert "Windows Time [W32Time]: udp/123" in lines
    (rras,) = [ln for ln in lines if ln.startswith("Routing and Remote Access")]
    assert rras.endswith("gre (not probed), ah (not probed), esp (not probed), udp/1701, tcp/1723")
    (dfsr,) = [ln for ln in lines if ln.startswith("Distributed File System Replication")]
    assert "tcp/5722 (optional)" in dfsr and "tcp/49152-65535 (dynamic RPC)" in dfsr
    assert format_service_list() == format_service_list(catalog)


def test_format_profile_list(catalog: Catalog) -> None:
    lines = format_profile_list(catalog).splitlines()
    assert [ln.split(":")[0] for ln in lines] == list(PROFILES)
    assert "ldap: tcp/389, udp/389 -- PortQry shortcut 'ldap': TCP and UDP 389" in lines


# --------------------------------------------------------------------------------------------------------
# Validation of the data file


def _mutated(old: str, new: str) -> str:
    text = resources.files("exporter").joinpath("data/catalog.toml").read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'transport = "tcp", port = 9389',
            'transport = "tpc", port = 9389',
            "].transport: unknown transport 'tpc'; did you mean 'tcp'?",
        ),
        (
            'transport = "tcp", port = 9389',
            'transport = "tcp", port = 99999',
            "port must be an integer 1-65535",
        ),
        ('aliases = ["RADIUS"]', 'aliases = ["kdc"]', "name 'kdc' is also 'Internet Authentication Service'"),
        ('{ app = "X.400", transport', '{ app = "X.400", colour = "red", transport', "rows[0]: unknown key 'colour'"),
        ('aliases = ["RADIUS"]', 'aliasses = ["RADIUS"]', "unknown key 'aliasses'; did you mean 'aliases'?"),
        ('transport = "tcp", port = 9389', 'transport = "tcp", port = "9389"', "port: Input should be a valid integer"),
        ('transport = "tcp", port = 9389', 'transport = "tcp", port = true', "port: Input should be a valid integer"),
        ("schema = 1", "schema = 2", "schema: unsupported schema 2"),
        (
            '{ service = "Trivial FTP Daemon", transport = "udp", port = 69 }',
            '{ service = "Trivial FTP Daemon", transport = "tcp", port = 69 }',
            "matches no catalog row",
        ),
        ('errata = ["upd-typo"]', 'errata = ["upd-typ0"]', "unknown errata 'upd-typ0'"),
        ('"DHCP Failover" = "Dynamic', '"DHCP Failover" = "Dinamic', "is not a service name"),
        (
            '{ app = "ICMP", transport = "icmp",',
            '{ app = "ICMP", transport = "icmp", port = 1,',
            "icmp has no port",
        ),
    ],
)
def test_malformed_data_is_refused(old: str, new: str, message: str) -> None:
    with pytest.raises(CatalogDataError, match=re.escape(message)):
        parse_catalog(_mutated(old, new))


def test_data_errors_are_one_line_naming_the_key() -> None:
    with pytest.raises(CatalogDataError) as info:
        parse_catalog(_mutated('transport = "tcp", port = 9389', 'transport = "tpc", port = 9389'))
    err = info.value
    assert re.fullmatch(r"service\[\d+\]\.rows\[\d+\]\.transport", err.key), err.key
    assert str(err) == f"{err.key}: unknown transport 'tpc'; did you mean 'tcp'?"
    assert "\n" not in str(err) and isinstance(err, PortqryError)


def test_invalid_toml_is_a_data_error() -> None:
    with pytest.raises(CatalogDataError) as info:
        parse_catalog("schema = ")
    assert info.value.key == "catalog.toml" and "not valid TOML" in str(info.value)

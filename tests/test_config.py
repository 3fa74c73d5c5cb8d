"""Config loading: the documented shape, environment overrides, and one clear line per bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import load_config
from exporter.errors import ConfigError
from exporter.model import parse_port_spec
from exporter.plan import domain_plans, plan

DATA = Path(__file__).parent / "data" / "config"
ROOT = Path(__file__).parent.parent

ISSUE_SHAPE = """
[exporter]
listen_address = "127.0.0.1:9727"
concurrency = 256
[resolver]
nameservers = ["198.18.0.2"]
[defaults]
interval_seconds = 30
timeout_seconds = 2.0
tcp_tries = 3
udp_tries = 1
[[targets]]
name = "dc1"
host = "dc1.example.test"
ports = ["tcp/389", "udp/389", "both/135", "tcp/49152-49160"]
interval_seconds = 15
"""


def test_documented_shape_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(ISSUE_SHAPE)
    settings = load_config(path)
    [target] = plan(settings)
    assert settings.resolver.nameservers == ["198.18.0.2"]
    assert target.interval_seconds == 15
    assert [(s.protocol, s.port) for s in target.specs] == [
        ("tcp", 389),
        ("udp", 389),
        ("tcp", 135),
        ("udp", 135),
        *[("tcp", p) for p in range(49152, 49161)],
    ]
    assert (target.options.timeout_seconds, target.options.tcp_tries, target.options.udp_tries) == (2.0, 3, 1)


def test_shipped_example_config_is_valid() -> None:
    settings = load_config(ROOT / "config.example.toml")
    assert settings.exporter.listen_address == "127.0.0.1:9727"
    [target] = plan(settings)
    assert target.host == "127.0.0.1"
    assert ("tcp", 9727) in {(s.protocol, s.port) for s in target.specs}


def test_environment_overrides_nested_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text(ISSUE_SHAPE)
    monkeypatch.setenv("PORTQRY_EXPORTER__LISTEN_ADDRESS", "127.0.0.1:19727")
    monkeypatch.setenv("PORTQRY_DEFAULTS__TCP_TRIES", "1")
    monkeypatch.setenv("PORTQRY_RESOLVER__NAMESERVERS", '["127.0.0.53"]')
    settings = load_config(path)
    assert settings.exporter.listen_address == "127.0.0.1:19727"
    assert settings.exporter.concurrency == 256  # untouched keys of the same table survive
    assert settings.defaults.tcp_tries == 1
    assert settings.resolver.nameservers == ["127.0.0.53"]
    assert plan(settings)[0].options.tcp_tries == 1


def test_environment_can_replace_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text(ISSUE_SHAPE)
    monkeypatch.setenv("PORTQRY_TARGETS", '[{"name": "web", "host": "127.0.0.1", "ports": ["tcp/80"]}]')
    [target] = plan(load_config(path))
    assert (target.name, [(s.protocol, s.port) for s in target.specs]) == ("web", [("tcp", 80)])


def test_bad_environment_value_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text(ISSUE_SHAPE)
    monkeypatch.setenv("PORTQRY_DEFAULTS__TCP_TRIES", "many")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "defaults.tcp_tries"


EXPECTED = {
    "invalid-unknown-key.toml": ("exporter.listen_adress", "unknown key"),
    "invalid-port-range.toml": ("targets[0].ports[1]", "'tcp/70000': ports must be 1-65535"),
    "invalid-port-no-protocol.toml": ("targets[0].ports[0]", "'389': write PROTOCOL/PORT"),
    "invalid-port-range-reversed.toml": ("targets[0].ports[0]", "range end is below its start"),
    "invalid-toml-syntax.toml": ("", "not valid TOML"),
    "invalid-duplicate-target.toml": ("targets[1].name", "duplicate target name 'dc1'"),
    "invalid-negative-timeout.toml": ("defaults.timeout_seconds", "greater than 0 (got -1)"),
    "invalid-target-without-ports.toml": ("targets[0]", "a target needs ports, services or profiles"),
    "invalid-nameserver-not-ip.toml": ("resolver.nameservers", "'dns.example.test' is not an IP address"),
    "invalid-unknown-protocol.toml": ("targets[0].protocols", "unknown protocol 'ldapp'"),
    "invalid-listen-address.toml": ("exporter.listen_address", "write HOST:PORT"),
    "invalid-dns-query-type.toml": ("targets[0].dns_query_type", "'BOGUS' is not a DNS record type"),
    "invalid-unknown-service.toml": (
        "targets[0].services[0]",
        "unknown service 'Kerberoz'; did you mean 'Kerberos'",
    ),
    "invalid-unknown-profile.toml": ("targets[0].profiles[1]", "did you mean 'domain-controller'"),
    "invalid-domain-single-label.toml": ("domains[0].name", "'localhost' is not an AD DNS domain name"),
    "invalid-domain-rediscover.toml": ("domains[0].rediscover_seconds", "greater than or equal to 1 (got 0)"),
    "invalid-domain-site.toml": ("domains[0].sites", "'Hub Site' is not an AD site name"),
    "invalid-duplicate-domain.toml": ("domains[1].name", "duplicate domain 'corp.example'"),
    "invalid-domain-addresses.toml": ("domains[0].addresses", "'all' or 'first'"),
    "invalid-domain-unknown-profile.toml": ("domains[0].profiles[0]", "did you mean 'domain-controller'"),
}


def test_every_invalid_file_has_an_expectation() -> None:
    assert {p.name for p in DATA.glob("invalid-*.toml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_config_message(name: str) -> None:
    key, problem = EXPECTED[name]
    path = DATA / name
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(path) + ": ")
    assert err.value.key == key
    assert problem in err.value.problem


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config("/nonexistent/portqry.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp/389", [("tcp", 389)]),
        ("UDP/53", [("udp", 53)]),
        ("both/135", [("tcp", 135), ("udp", 135)]),
        ("tcp/1-3", [("tcp", 1), ("tcp", 2), ("tcp", 3)]),
    ],
)
def test_parse_port_spec(text: str, expected: list[tuple[str, int]]) -> None:
    assert parse_port_spec(text) == expected


@pytest.mark.parametrize("text", ["tcp/0", "sctp/1", "tcp/", "tcp/a-b", "tcp/5-1", "/80"])
def test_parse_port_spec_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).strip("'") if "/" in text else ""):
        parse_port_spec(text)


def test_services_and_profiles_expand_with_catalog_labels(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[targets]]\nname = "dc1"\nhost = "198.18.0.2"\nports = ["tcp/389"]\nservices = ["kdc"]\nprofiles = ["dns"]\n'
    )
    [target] = plan(load_config(path))
    labels = {(s.protocol, s.port): s.service for s in target.specs}
    assert labels[("tcp", 389)] == ""  # an explicit port keeps the services-file name, and comes first
    assert labels[("tcp", 88)] == labels[("udp", 88)] == "Kerberos"
    assert ("tcp", 53) in labels and ("udp", 53) in labels
    assert len(labels) == len(target.specs)  # de-duplicated


def test_bad_json_in_environment_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text(ISSUE_SHAPE)
    monkeypatch.setenv("PORTQRY_TARGETS", "[{not json")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert (err.value.path, err.value.key) == ("PORTQRY_TARGETS", "targets")
    assert str(err.value).startswith("PORTQRY_TARGETS: targets: not valid JSON: Expecting property name")
    assert "\n" not in str(err.value) and "EnvSettingsSource" not in str(err.value)


def test_several_errors_are_each_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[exporter]\nconcurrency = 0\nudp_pacing_seconds = 99\n"
        '[[targets]]\nname = "dc1"\nhost = "dc1.example.test"\nports = ["tcp/70000"]\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).splitlines() == [
        f"{path}: exporter.concurrency: Input should be greater than or equal to 1 (got 0)",
        f"{path}: exporter.udp_pacing_seconds: Input should be less than or equal to 10 (got 99)",
        f"{path}: targets[0].ports[0]: 'tcp/70000': ports must be 1-65535",
    ]
    assert "more error" not in str(err.value)
    assert (err.value.key, len(err.value.lines)) == ("exporter.concurrency", 3)  # the first error's key


def test_an_environment_error_names_the_variable_not_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[exporter]\nudp_pacing_seconds = 99\n[[targets]]\nname = "a"\nhost = "h"\nports = ["tcp/1"]\n')
    monkeypatch.setenv("PORTQRY_EXPORTER__CONCURRENCY", "0")
    monkeypatch.setenv("PORTQRY_EXPORTER__BOGUS", "1")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert sorted(str(err.value).splitlines()) == sorted(
        [
            "PORTQRY_EXPORTER__BOGUS: exporter.bogus: unknown key",
            "PORTQRY_EXPORTER__CONCURRENCY: exporter.concurrency: Input should be greater than or equal to 1 (got '0')",
            f"{path}: exporter.udp_pacing_seconds: Input should be less than or equal to 10 (got 99)",
        ]
    )
    # inside a JSON variable, and a check after validation (duplicate names): the variable too
    monkeypatch.delenv("PORTQRY_EXPORTER__CONCURRENCY")
    monkeypatch.delenv("PORTQRY_EXPORTER__BOGUS")
    path.write_text('[[targets]]\nname = "a"\nhost = "h"\nports = ["tcp/1"]\n')
    monkeypatch.setenv(
        "PORTQRY_TARGETS", '[{"name": "a", "host": "h", "ports": ["tcp/0"]}, {"name": "b", "ports": []}]'
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).splitlines() == [
        "PORTQRY_TARGETS: targets[0].ports[0]: 'tcp/0': ports must be 1-65535",
        "PORTQRY_TARGETS: targets[1].host: Field required",
    ]
    monkeypatch.setenv(
        "PORTQRY_TARGETS",
        '[{"name": "a", "host": "h", "ports": ["tcp/1"]}, {"name": "a", "host": "h", "ports": ["tcp/2"]}]',
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == "PORTQRY_TARGETS: targets[1].name: duplicate target name 'a'"


def test_both_binding_binds_tcp_and_udp(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[targets]]\nname = "d"\nhost = "127.0.0.1"\nports = ["both/1389"]\nprotocols = { "both/1389" = "ldap" }\n'
    )
    [target] = plan(load_config(path))
    assert {(s.protocol, s.port): s.binding for s in target.specs} == {
        ("tcp", 1389): "ldap",
        ("udp", 1389): "ldap",
    }


def test_a_domain_entry_plans_every_dc_alike(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(
        '[defaults]\ninterval_seconds = 20\n[[domains]]\nname = "Corp.Example."\nsites = ["Hub"]\n'
        "min_reachable_dcs = 1\nrediscover_seconds = 1\n"
        '[[targets]]\nname = "t"\nhost = "127.0.0.1"\nports = ["tcp/1"]\n'
    )
    settings = load_config(path)
    [domain] = domain_plans(settings)
    [target] = plan(settings)
    assert (domain.name, domain.sites, domain.min_reachable_dcs, domain.rediscover_seconds) == (
        "corp.example",
        ("Hub",),
        1,
        1.0,
    )
    dc = domain.dc_plan("dc1.corp.example", "Hub")
    assert (dc.name, dc.host, dc.domain, dc.site, dc.addresses, dc.interval_seconds) == (
        "dc1.corp.example",
        "dc1.corp.example",
        "corp.example",
        "Hub",
        "all",  # every address of a DC by default
        20.0,
    )
    # nothing named: the domain-controller profile, the ping and the realm ask the domain
    assert {("tcp", 389), ("udp", 389), ("tcp", 88), ("tcp", 135)} <= {(s.protocol, s.port) for s in dc.specs}
    assert dc.options.params.domain == "corp.example"
    assert (target.addresses, target.domain, target.site) == ("first", "", "")

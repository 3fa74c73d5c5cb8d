"""exporter/shard.py: Prometheus' ``hashmod`` pinned to what Prometheus computes, ``I/N`` parsing, ``keeps``.

:data:`PINNED` holds the ``hashmod`` that Debian's Prometheus 2.42 wrote into relabelled labels for these names
and moduli; ``tests/test_shard_e2e.py`` asks a real Prometheus again on every run and compares.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.config import load_config
from exporter.daemon import main
from exporter.errors import ConfigError
from exporter.shard import UNSHARDED, Shard, hashmod, keeps, parse_shard

PINNED_MODULI = (1, 2, 3, 7, 1000, 4294967296, 18446744073709551615)
"""The moduli of :data:`PINNED`: small ones, 2**32 and 2**64-1 (the whole unsigned 64-bit value less one)."""

# fmt: off
PINNED: dict[str, tuple[int, ...]] = {
    "a":                 (0, 1, 1, 2, 697, 1769416289, 3585878926028121697),
    "dc1.example.test":  (0, 1, 1, 3, 557, 3395657245, 16362765927213014557),
    "DC1.EXAMPLE.TEST":  (0, 0, 2, 3, 38, 3466891286, 8535054413891670038),
    "dc2.example.test":  (0, 1, 2, 0, 611, 1405161091, 12914332594455252611),
    "fs1":               (0, 0, 0, 1, 694, 1710982646, 15578489396741768694),
    "198.18.0.20":       (0, 0, 2, 6, 738, 1913047258, 4492935246962411738),
    "dc-ü.example.test": (0, 0, 1, 4, 798, 2642382430, 12277052920339336798),
}
"""name -> Prometheus' ``hashmod(name, m)`` for each ``m`` of :data:`PINNED_MODULI` (names are case-sensitive,
hashed as UTF-8)."""
# fmt: on


@pytest.mark.parametrize("name", sorted(PINNED))
def test_hashmod_matches_prometheus(name: str) -> None:
    assert tuple(hashmod(name, m) for m in PINNED_MODULI) == PINNED[name]


def test_hashmod_refuses_a_zero_modulus() -> None:
    with pytest.raises(ValueError, match="modulus must be at least 1"):
        hashmod("dc1", 0)


@given(st.text(max_size=64), st.integers(min_value=1, max_value=2**64 - 1))
def test_hashmod_is_in_range_and_keeps_picks_exactly_one_shard(name: str, modulus: int) -> None:
    value = hashmod(name, modulus)
    assert 0 <= value < modulus
    total = min(modulus, 16)
    assert [i for i in range(total) if keeps(Shard(i, total), name)] == [hashmod(name, total)]


def test_unsharded_keeps_everything() -> None:
    assert UNSHARDED == Shard(0, 1) == parse_shard("0/1")
    assert all(keeps(UNSHARDED, name) for name in PINNED)


@pytest.mark.parametrize(("text", "shard"), [("0/3", Shard(0, 3)), ("2/3", Shard(2, 3)), (" 1 / 2 ", Shard(1, 2))])
def test_parse_shard(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard
    assert str(shard) == text.replace(" ", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3/3", "shard 3/3: I must be 0..2"),
        ("0/0", "shard 0/0: N must be at least 1"),
        ("-1/3", "'-1/3': write I/N, e.g. 0/3 (shard I of N, I in 0..N-1)"),
        ("1", "'1': write I/N, e.g. 0/3 (shard I of N, I in 0..N-1)"),
        ("a/b", "'a/b': write I/N, e.g. 0/3 (shard I of N, I in 0..N-1)"),
        ("", "'': write I/N, e.g. 0/3 (shard I of N, I in 0..N-1)"),
    ],
)
def test_parse_shard_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_shard(text)
    assert str(info.value) == message


def _config(tmp_path: Path, exporter: str = "") -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[exporter]\n{exporter}\n[[targets]]\nname = "dc1"\nhost = "127.0.0.1"\nports = ["tcp/1"]\n')
    return path


def test_config_shard_key(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path)).exporter.shard is None
    assert load_config(_config(tmp_path, 'shard = "1/3"')).exporter.shard == "1/3"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"3/3"', "exporter.shard: shard 3/3: I must be 0..2 (got '3/3')"),
        ('"1-3"', "exporter.shard: '1-3': write I/N, e.g. 0/3 (shard I of N, I in 0..N-1)"),
        ("3", "exporter.shard: Input should be a valid string (got 3)"),
    ],
)
def test_config_shard_errors(tmp_path: Path, value: str, problem: str) -> None:
    path = _config(tmp_path, f"shard = {value}")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {problem}"


def test_config_shard_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``PORTQRY_EXPORTER__SHARD`` (what the Helm chart's StatefulSet could set) overrides the file."""
    monkeypatch.setenv("PORTQRY_EXPORTER__SHARD", "2/5")
    assert load_config(_config(tmp_path, 'shard = "1/3"')).exporter.shard == "2/5"


@pytest.mark.parametrize(
    ("flag", "message"),
    [("3/3", "--shard: shard 3/3: I must be 0..2"), ("x", "--shard: 'x': write I/N")],
)
def test_shard_flag_errors_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, flag: str, message: str
) -> None:
    monkeypatch.delenv("PORTQRY_EXPORTER__SHARD", raising=False)
    assert main(["--config", str(_config(tmp_path)), "--shard", flag, "--config.check"]) == 3
    assert f"portqry-exporter: {message}" in capsys.readouterr().err


def test_shard_flag_passes_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(_config(tmp_path, 'shard = "0/2"')), "--shard", "1/2", "--config.check"]) == 0
    assert "OK (1 targets)" in capsys.readouterr().out


def test_discovered_dcs_are_sharded_by_name_and_sd_lists_them_all(tmp_path: Path) -> None:
    """Two fake DCs found in DNS and one configured target over ``--shard I/3``: each DC is probed by the
    shard its name hashmods to (dc1 -> 0, dc2 -> 2, ``web`` -> 2), while every replica's ``/sd`` lists both DCs."""
    import json

    from tests.daemon import run_daemon
    from tests.test_discovery import DOMAIN, two_dcs, write_config

    dcs = {f"dc1.{DOMAIN}", f"dc2.{DOMAIN}"}
    assert {name: hashmod(name, 3) for name in [*sorted(dcs), "web"]} == {
        f"dc1.{DOMAIN}": 0,
        f"dc2.{DOMAIN}": 2,
        "web": 2,
    }
    with two_dcs() as (_cldap, _srv, dns_port, tcp_port):
        cfg = write_config(
            tmp_path,
            dns_port,
            f'[[domains]]\nname = "{DOMAIN}"\nports = ["tcp/{tcp_port}"]\n'
            f'[[targets]]\nname = "web"\nhost = "127.0.0.1"\nports = ["tcp/{tcp_port}"]\n',
        )
        probed: list[set[str]] = []
        for index in range(3):
            with run_daemon(cfg, args=["--shard", f"{index}/3"]) as daemon:
                daemon.wait_for(lambda d: d.get("/-/ready")[0] == 200, timeout=15)
                probed.append({x["target"] for x, _ in daemon.samples().get("portqry_port_state", [])})
                status, body = daemon.get("/sd")
                assert status == 200
                assert {g["targets"][0] for g in json.loads(body)} == {"127.0.0.1", *dcs}
                # the domain's own series are not sharded: every replica counts both DCs
                counts = daemon.samples()["portqry_domain_controllers"]
                assert sum(v for _, v in counts) == 2
    assert probed == [{f"dc1.{DOMAIN}"}, set(), {f"dc2.{DOMAIN}", "web"}]

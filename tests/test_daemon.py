"""The daemon as a subprocess on loopback: /metrics, health, readiness, reload, bad config, prompt stop."""

from __future__ import annotations

import json
import platform
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from exporter import __version__
from tests.daemon import ROOT, RunningDaemon, run_daemon
from tests.helpers import config_check
from tests.peers import closed_port, tcp_listener, udp_peer


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def config(targets: str, *, interval: float = 1.0, timeout: float = 0.3) -> str:
    return f"""
[exporter]
udp_pacing_seconds = 0.0
[defaults]
interval_seconds = {interval}
timeout_seconds = {timeout}
jitter_ratio = 0.0
{targets}
"""


def test_metrics_show_real_states(tmp_path: Path) -> None:
    closed_tcp = closed_port()
    closed_udp = closed_port(socket.SOCK_DGRAM)
    with tcp_listener() as open_port, udp_peer(echo=True) as (echo, _):
        cfg = write(
            tmp_path / "c.toml",
            config(
                f"""
[[targets]]
name = "lo"
host = "127.0.0.1"
ports = ["tcp/{open_port}", "tcp/{closed_tcp}", "udp/{closed_udp}", "udp/{echo}"]
"""
            ),
        )
        with run_daemon(cfg) as d:
            d.wait_for(lambda d: d.get("/-/ready")[0] == 200)
            assert d.states() == {
                ("lo", "tcp", str(open_port)): "listening",
                ("lo", "tcp", str(closed_tcp)): "not_listening",
                ("lo", "udp", str(closed_udp)): "not_listening",
                ("lo", "udp", str(echo)): "listening",
            }
            s = d.samples()
            reasons = {(x["protocol"], x["port"]): x["reason"] for x, _ in s["portqry_probe_reason"]}
            assert reasons[("tcp", str(closed_tcp))] == "refused"
            assert reasons[("udp", str(closed_udp))] == "icmp-port-unreachable"
            last = {(x["protocol"], x["port"]): v for x, v in s["portqry_probe_last_duration_seconds"]}
            assert 0 < last[("tcp", str(open_port))] < 1
            # the histogram is per (target, protocol): two TCP ports probed once each count 2 after one round
            counts = {x["protocol"]: v for x, v in s["portqry_probe_duration_seconds_count"]}
            assert set(counts) == {"tcp", "udp"} and counts["tcp"] >= 2
            assert "portqry_probe_success" not in s
            assert s["portqry_exporter_config_last_reload_successful"][0][1] == 1
            assert s["portqry_exporter_build_info"][0][0]["version"]
            total = {x["state"]: v for x, v in s["portqry_probes_total"]}
            assert set(total) == {"listening", "not_listening", "filtered", "listening_or_filtered"}
            assert total["listening"] >= 2

            # results come from the schedule: the timestamp advances between rounds
            def ts(d: RunningDaemon) -> float:
                return max(v for _, v in d.samples()["portqry_probe_last_timestamp_seconds"])

            first = ts(d)
            d.wait_for(lambda d: ts(d) > first, timeout=10)
            assert d.get("/-/healthy")[0] == 200
            # state changes are logged at info as JSON lines
            changes = [json.loads(x) for x in d.log_lines if "port state changed" in x]
            assert {c["port"] for c in changes} >= {open_port, closed_tcp}


def test_ready_only_after_first_round(tmp_path: Path) -> None:
    with udp_peer(echo=False) as (silent, _):
        cfg = write(
            tmp_path / "c.toml",
            config(f'[[targets]]\nname = "slow"\nhost = "127.0.0.1"\nports = ["udp/{silent}"]\n', timeout=3.0),
        )
        with run_daemon(cfg) as d:
            assert d.get("/-/ready")[0] == 503
            d.wait_for(lambda d: d.get("/-/ready")[0] == 200, timeout=15)
            assert d.states() == {("slow", "udp", str(silent)): "listening_or_filtered"}


def test_reload_removes_series_and_bad_reload_keeps_old_config(tmp_path: Path) -> None:
    with tcp_listener() as port:
        two = config(
            f"""
[[targets]]
name = "a"
host = "127.0.0.1"
ports = ["tcp/{port}"]
[[targets]]
name = "b"
host = "127.0.0.1"
ports = ["tcp/{port}", "tcp/1"]
"""
        )
        cfg = write(tmp_path / "c.toml", two)
        with run_daemon(cfg) as d:
            d.wait_for(lambda d: len(d.states()) == 3)
            # POST /-/reload with target b removed: its series vanish at once
            write(cfg, config(f'[[targets]]\nname = "a"\nhost = "127.0.0.1"\nports = ["tcp/{port}"]\n'))
            assert d.post("/-/reload")[0] == 200
            assert set(d.states()) == {("a", "tcp", str(port))}
            samples = d.samples()
            assert all(x["target"] == "a" for x, _ in samples["portqry_probe_duration_seconds_count"])
            assert all(x["target"] == "a" for x, _ in samples["portqry_probe_last_timestamp_seconds"])

            # a broken file is refused; the old targets keep probing
            write(cfg, "[[targets]]\nname = 'a'\nports = [\n")
            status, body = d.post("/-/reload")
            assert status == 500 and "not valid TOML" in body and str(cfg) in body
            assert d.samples()["portqry_exporter_config_last_reload_successful"][0][1] == 0
            before = max(v for _, v in d.samples()["portqry_probe_last_timestamp_seconds"])
            d.wait_for(lambda d: max(v for _, v in d.samples()["portqry_probe_last_timestamp_seconds"]) > before)
            assert set(d.states()) == {("a", "tcp", str(port))}

            # SIGHUP reloads too
            write(cfg, two)
            d.proc.send_signal(signal.SIGHUP)
            d.wait_for(lambda d: len(d.states()) == 3)
            assert d.samples()["portqry_exporter_config_last_reload_successful"][0][1] == 1


def exporter_run(*args: str) -> subprocess.CompletedProcess[str]:
    """``python3 -m exporter ARGS`` to its end (30 s at most); its exit code is the caller's to assert."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], check=False, capture_output=True, text=True, timeout=30, cwd=ROOT
    )


def test_bad_config_at_start_exits_with_one_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "bad.toml", '[[targets]]\nname = "dc1"\nhost = "x"\nports = ["tcp/99999"]\n')
    proc = exporter_run("--config", str(cfg))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(cfg) in lines[0] and "targets[0].ports[0]" in lines[0] and "1-65535" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_several_config_errors_at_start_are_one_line_each(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "bad.toml",
        '[exporter]\nconcurrency = 0\n[[targets]]\nname = "dc1"\nhost = "x"\nports = ["tcp/99999", "tcp/0"]\n',
    )
    proc = exporter_run("--config", str(cfg))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert [line.split(": ")[3] for line in lines] == [
        "exporter.concurrency",
        "targets[0].ports[0]",
        "targets[0].ports[1]",
    ]
    assert all(line.startswith(f"portqry-exporter: config error: {cfg}: ") for line in lines)
    assert "more error" not in proc.stderr


def test_listen_address_in_use_is_one_line_on_stderr_and_a_log_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", config('[[targets]]\nname = "a"\nhost = "127.0.0.1"\nports = ["tcp/9"]\n'))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        proc = exporter_run("--config", str(cfg), "--web.listen-address", address, "--log.format", "json")
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == [f"portqry-exporter: cannot listen on {address}: Address already in use"]
    logged = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in logged if e["level"] == "error"] == ["cannot listen"]


def test_version_names_python_and_the_key_libraries() -> None:
    proc = exporter_run("--version")
    assert proc.returncode == 0, proc.stderr
    name, python, libraries = proc.stdout.splitlines()
    assert name == f"portqry-exporter {__version__}"
    assert python.startswith(f"Python {platform.python_version()} (")
    for library in ("impacket", "pyasn1", "dnspython", "pydantic", "prometheus-client", "aiohttp"):
        assert f"{library} {metadata.version(library)}" in libraries


def test_config_check_flag(tmp_path: Path) -> None:
    proc = config_check("--config", ROOT / "config.example.toml", timeout=30)
    assert proc.returncode == 0 and "OK (1 targets)" in proc.stdout


def test_sigterm_stops_promptly_while_probes_are_in_flight(tmp_path: Path) -> None:
    with udp_peer(echo=False) as (silent, _):
        cfg = write(
            tmp_path / "c.toml",
            config(f'[[targets]]\nname = "s"\nhost = "127.0.0.1"\nports = ["udp/{silent}"]\n', timeout=20.0),
        )
        with run_daemon(cfg) as d:
            time.sleep(1.5)  # the first round is now waiting on a 20 s UDP timeout
            started = time.monotonic()
            d.proc.send_signal(signal.SIGTERM)
            rc = d.proc.wait(10)
            took = time.monotonic() - started
    assert rc == 0
    assert took < 3.0


def test_reload_that_changes_a_host_drops_its_old_series_at_once(tmp_path: Path) -> None:
    with tcp_listener() as port, tcp_listener("127.0.0.2") as port2:
        one = config(f'[[targets]]\nname = "a"\nhost = "127.0.0.1"\nports = ["tcp/{port}"]\n', interval=30)
        cfg = write(tmp_path / "c.toml", one)
        with run_daemon(cfg) as d:
            d.wait_for(lambda d: d.get("/-/ready")[0] == 200)
            write(
                cfg,
                config(f'[[targets]]\nname = "a"\nhost = "127.0.0.2"\nports = ["tcp/{port2}"]\n', interval=30),
            )
            assert d.post("/-/reload")[0] == 200
            addresses = {x["address"] for x, _ in d.samples().get("portqry_probe_reason", [])}
            assert "127.0.0.1" not in addresses
            d.wait_for(lambda d: d.states() == {("a", "tcp", str(port2)): "listening"})


def test_a_reload_names_the_keys_that_wait_for_a_restart_and_not_the_flags_overrides(tmp_path: Path) -> None:
    with tcp_listener() as port:
        targets = f'[[targets]]\nname = "a"\nhost = "127.0.0.1"\nports = ["tcp/{port}"]\n'
        cfg = write(tmp_path / "c.toml", config(targets))
        with run_daemon(cfg, args=("--shard", "0/1", "--web.max-connections", "64")) as d:
            d.wait_for(lambda d: len(d.states()) == 1)
            # the file has none of the flags' keys: the overrides are no change
            assert d.post("/-/reload") == (200, "config reloaded\n")
            changed = config(targets).replace(
                "[exporter]\n", '[exporter]\nmax_connections = 100\nshard = "1/2"\nconcurrency = 7\n'
            )
            write(cfg, changed)
            status, body = d.post("/-/reload")
            assert status == 200
            assert "[exporter] concurrency, max_connections, shard: changes take effect at restart" in body, body
            wanted = {f"{key} changes take effect at restart" for key in ("concurrency", "max_connections", "shard")}
            d.wait_for(lambda d: wanted <= {json.loads(x).get("event") for x in d.log_lines if "restart" in x})
            # the running shard stays the one started with: target "a" is still probed and exposed
            assert d.samples()["portqry_exporter_shard"] == [({"index": "0", "total": "1"}, 1.0)]
            assert set(d.states()) == {("a", "tcp", str(port))}
            assert d.post("/-/reload") == (200, "config reloaded\n")  # said once


def test_curl_compressed_gets_the_same_metrics_gzipped(tmp_path: Path) -> None:
    """curl asks for gzip: the body is one gzip member (the kept deflate blocks) that decodes to the same series."""
    from prometheus_client.parser import text_string_to_metric_families

    closed = closed_port()
    with tcp_listener() as port:
        ports = f'["tcp/{port}", "tcp/{closed}"]'
        cfg = write(tmp_path / "c.toml", config(f'[[targets]]\nname = "a"\nhost = "127.0.0.1"\nports = {ports}\n'))
        with run_daemon(cfg) as d:
            d.wait_for(lambda d: len(d.states()) == 2)
            head, body = tmp_path / "head", tmp_path / "body"
            curl = ["curl", "-sS", "--max-time", "20"]
            subprocess.run([*curl, "--compressed", "-D", str(head), "-o", str(body), d.url + "/metrics"], check=True)
            plain = subprocess.run([*curl, d.url + "/metrics"], capture_output=True, check=True).stdout.decode()
            assert "content-encoding: gzip" in head.read_text().lower()
            inflated = {f.name: f for f in text_string_to_metric_families(body.read_text())}  # curl inflated it
            assert inflated.keys() == {f.name for f in text_string_to_metric_families(plain)}
            states = {
                (s.labels["port"], s.labels["portqry_port_state"]): s.value
                for s in inflated["portqry_port_state"].samples
            }
            assert len(states) == 8
            assert states[(str(port), "listening")] == 1 and states[(str(closed), "not_listening")] == 1

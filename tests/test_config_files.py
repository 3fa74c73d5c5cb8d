"""Hostile config files (issue 13): what the file may be, how much of it, how it is parsed, and reloads onto it.

Each case is one line of error output and a daemon that keeps running: a FIFO (it would block the open), a
character device (``/dev/zero`` never ends), a directory, a file over ``MAX_CONFIG_BYTES``, TOML nested 20,000
levels deep (``RecursionError`` in tomllib), an empty file, 3.3 M ports in ranges, ``tcp/1_3`` and full-width
digits (``int()`` takes both), numbers and booleans written as strings, a 1 MB value echoed back.  A Kubernetes
ConfigMap mount (a chain of symlinks, swapped atomically) is read and reloaded.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Generator
from pathlib import Path

import pytest

from exporter.config import load_config
from exporter.configfile import MAX_CONFIG_BYTES, read_config_file
from exporter.errors import ConfigError
from exporter.plan import plan
from tests.daemon import ROOT, RunningDaemon, run_daemon
from tests.helpers import config_check

TARGET = '[[targets]]\nname = "a"\nhost = "127.0.0.1"\nports = ["tcp/9"]\n'
QUIET = "[exporter]\nudp_pacing_seconds = 0.0\n[defaults]\ninterval_seconds = 60\ntimeout_seconds = 0.3\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path | str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.lines) == 1, info.value.lines
    return info.value


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The ``--config.check`` run failed with exactly one line on stderr (no traceback) and nothing on stdout."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr[-2000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("portqry-exporter: config error: "), result.stderr[-2000:]
    assert result.stdout == ""
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# what the file may be


def read_bounded(path: Path, fifo: Path) -> ConfigError:
    """``read_config_file(path)`` in a thread, 3 s at most: a reader stuck on ``fifo`` is let go by a writer that
    closes at once (old code), and the test fails rather than hangs."""
    outcome: list[BaseException | tuple[str, str]] = []

    def load() -> None:
        try:
            outcome.append(read_config_file(path))
        except ConfigError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(3.0)
    blocked = reader.is_alive()
    if blocked:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(5.0)
    assert not blocked, "reading a FIFO blocked"
    [error] = outcome
    assert isinstance(error, ConfigError), error
    return error


def test_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    """A FIFO's open() blocks until a writer comes; O_NONBLOCK and fstat refuse it at once."""
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    error = read_bounded(fifo, fifo)
    assert str(error) == f"{fifo}: not a regular file (a FIFO): give a file or a symlink to one"


def test_dev_zero_is_refused_in_bounded_memory() -> None:
    """``/dev/zero`` never reaches EOF: the old reader grew until MemoryError (here: under a 1 GiB address limit)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    env = {key: value for key, value in os.environ.items() if not key.startswith("PORTQRY_")}
    result = subprocess.run(  # the status and output are asserted below
        [sys.executable, "-m", "exporter", "--config", "/dev/zero", "--config.check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        check=False,
    )
    line = one_error_line(result)
    assert line.endswith("/dev/zero: not a regular file (a character device): give a file or a symlink to one")


def test_directory_is_refused_by_kind(tmp_path: Path) -> None:
    assert str(refused(tmp_path)) == f"{tmp_path}: not a regular file (a directory): give a file or a symlink to one"


def test_configmap_symlink_chain_is_read_and_swapped(tmp_path: Path) -> None:
    """A ConfigMap volume: ``config.toml -> ..data/config.toml``, ``..data -> ..<timestamp>``; the kubelet swaps
    ``..data`` with a rename, and the next read sees the new file whole."""
    mount = tmp_path / "mount"
    first = mount / "..2024_01_01_00_00_00.1"
    first.mkdir(parents=True)
    write(first / "config.toml", QUIET + TARGET)
    (mount / "..data").symlink_to(first.name)
    (mount / "config.toml").symlink_to("..data/config.toml")
    assert [t.name for t in plan(load_config(mount / "config.toml"))] == ["a"]

    second = mount / "..2024_01_01_00_01_00.2"
    second.mkdir()
    write(second / "config.toml", QUIET + TARGET.replace('"a"', '"b"'))
    (mount / "..data_tmp").symlink_to(second.name)
    os.rename(mount / "..data_tmp", mount / "..data")
    assert [t.name for t in plan(load_config(mount / "config.toml"))] == ["b"]


def test_symlink_to_a_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "config.toml").symlink_to("fifo")
    error = read_bounded(tmp_path / "config.toml", tmp_path / "fifo")
    assert str(error) == f"{tmp_path / 'config.toml'}: not a regular file (a FIFO): give a file or a symlink to one"


def test_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    """A valid config padded past ``MAX_CONFIG_BYTES`` with comment lines: the old reader took any size."""
    pad = ("# " + "x" * 77 + "\n") * (MAX_CONFIG_BYTES // 80 + 2)
    path = write(tmp_path / "c.toml", QUIET + TARGET + pad)
    assert str(refused(path)) == f"{path}: larger than {MAX_CONFIG_BYTES} bytes: not a config file?"
    write(path, QUIET + TARGET + pad[: MAX_CONFIG_BYTES - 4096])
    assert load_config(path).targets[0].name == "a"


def test_file_is_read_once(tmp_path: Path) -> None:
    """One open() of the file per load: the bytes validated are the bytes applied (the old code opened it twice)."""
    path = write(tmp_path / "c.toml", QUIET + TARGET)
    opened: list[str] = []
    watching = [True]

    def hook(event: str, args: tuple[object, ...]) -> None:
        if watching and event == "open" and args and str(args[0]) == str(path):
            opened.append(event)

    sys.addaudithook(hook)  # hooks cannot be removed: this one goes quiet after the test
    try:
        load_config(path)
    finally:
        watching.clear()
    assert len(opened) == 1


def test_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(TARGET.encode() + b"# \xff\xfe\n")
    assert str(refused(path)) == f"{path}: not UTF-8 text: byte {len(TARGET) + 2} (invalid start byte)"


# ---------------------------------------------------------------------------------------------------------------
# what is in it


def test_deep_nesting_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", TARGET + "x = " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert str(refused(path)) == f"{path}: not valid TOML: arrays or tables nested too deeply"
    assert one_error_line(config_check("--config", path)).endswith("nested too deeply")


def test_deep_json_in_an_environment_variable_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "c.toml", QUIET + TARGET)
    monkeypatch.setenv("PORTQRY_TARGETS", "[" * 20_000 + "]" * 20_000)
    error = refused(path)
    assert error.path in (str(path), "PORTQRY_TARGETS") and len(str(error)) < 400


def test_empty_file_is_refused(tmp_path: Path) -> None:
    for text in ("", "\n# all comments\n", "[exporter]\nconcurrency = 8\n"):
        path = write(tmp_path / "c.toml", text)
        assert str(refused(path)) == (
            f"{path}: nothing to probe: no [[targets]], [[domains]], [modules.NAME] or [probe] allow (an empty or "
            "cut-off file?); set [exporter] allow_empty = true to run with none"
        )


def test_allow_empty_and_probe_only_configs_are_accepted(tmp_path: Path) -> None:
    assert load_config(write(tmp_path / "a.toml", "[exporter]\nallow_empty = true\n")).targets == []
    assert load_config(write(tmp_path / "b.toml", '[probe]\nallow = ["198.18.0.0/15"]\n')).probe.allow
    assert load_config(write(tmp_path / "c.toml", '[modules.dc]\nports = ["tcp/389"]\n')).modules


def test_max_ports_is_counted_before_expanding(tmp_path: Path) -> None:
    """50 targets x tcp/1-65535 (3.3 M ports) is refused in well under a second, naming where it went over."""
    text = "".join(f'[[targets]]\nname = "t{i}"\nhost = "127.0.0.1"\nports = ["tcp/1-65535"]\n' for i in range(50))
    path = write(tmp_path / "c.toml", text)
    started = time.perf_counter()
    error = refused(path)
    assert time.perf_counter() - started < 1.0
    assert str(error) == (
        f"{path}: targets[15].ports: more than [exporter] max_ports 1000000 ports in all (every range counted "
        "whole); probe fewer ports or raise max_ports"
    )


def test_max_ports_counts_both_and_domains(tmp_path: Path) -> None:
    head = "[exporter]\nmax_ports = 10\n"
    ok = head + '[[targets]]\nname = "a"\nhost = "127.0.0.1"\nports = ["both/1-3"]\n'
    assert len(plan(load_config(write(tmp_path / "c.toml", ok)))[0].specs) == 6
    over = ok + '[[domains]]\nname = "corp.example"\nports = ["tcp/1-5"]\n'
    assert refused(write(tmp_path / "c.toml", over)).key == "domains[0].ports"


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        ("tcp/1_3", "'tcp/1_3': port must be a number (digits 0-9) or a range START-END"),
        ("tcp/\uff11\uff13", "'tcp/\uff11\uff13': port must be a number (digits 0-9) or a range START-END"),
        ("tcp/\u0661\u0663", "'tcp/\u0661\u0663': port must be a number (digits 0-9) or a range START-END"),
        ("tcp/+13", "'tcp/+13': port must be a number (digits 0-9) or a range START-END"),
        ("tcp/ 13", "'tcp/ 13': port must be a number (digits 0-9) or a range START-END"),
        ("tcp/10-2_0", "'tcp/10-2_0': port must be a number (digits 0-9) or a range START-END"),
    ],
)
def test_port_syntax_is_ascii_digits(tmp_path: Path, port: str, problem: str) -> None:
    text = f'[[targets]]\nname = "a"\nhost = "127.0.0.1"\nports = ["{port}"]\n'
    path = write(tmp_path / "c.toml", text)
    assert refused(path).lines == (f"{path}: targets[0].ports[0]: {problem}",)


def test_listen_address_port_is_ascii_digits(tmp_path: Path) -> None:
    error = refused(write(tmp_path / "c.toml", '[exporter]\nlisten_address = "127.0.0.1:9_727"\n' + TARGET))
    assert error.problem == "'127.0.0.1:9_727': port must be a number (digits 0-9)"


@pytest.mark.parametrize(
    ("line", "key", "problem"),
    [
        ('interval_seconds = "5"', "targets[0].interval_seconds", "must be a number, written without quotes (got '5')"),
        ('tcp_tries = "3"', "targets[0].tcp_tries", "must be a whole number, written without quotes (got '3')"),
        ("tcp_tries = 3.0", "targets[0].tcp_tries", "must be a whole number (got 3.0)"),
        (
            'protocol_probes = "yes"',
            "targets[0].protocol_probes",
            "must be true or false, written without quotes (got 'yes')",
        ),
        ("protocol_probes = 1", "targets[0].protocol_probes", "must be true or false (got 1)"),
    ],
)
def test_numbers_and_booleans_as_strings_are_refused(tmp_path: Path, line: str, key: str, problem: str) -> None:
    error = refused(write(tmp_path / "c.toml", TARGET + line + "\n"))
    assert (error.key, error.problem) == (key, problem)


def test_quoted_numbers_in_every_section(tmp_path: Path) -> None:
    text = (
        '[exporter]\nconcurrency = "8"\nhistogram_buckets = [0.1, "1"]\n[defaults]\ninterval_seconds = "5"\n'
        '[modules.m]\nports = ["tcp/1"]\nudp_tries = "2"\n' + TARGET
    )
    error = refused_all(write(tmp_path / "c.toml", text))
    assert [k for _, k, _ in error.errors] == [
        "exporter.concurrency",
        "exporter.histogram_buckets[1]",
        "defaults.interval_seconds",
        "modules.m.udp_tries",
    ]


def refused_all(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def test_environment_values_stay_strings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``PORTQRY_`` values are strings by nature: converted as before, and they override a quoted file value."""
    path = write(tmp_path / "c.toml", TARGET + '[defaults]\ninterval_seconds = "5"\n')
    monkeypatch.setenv("PORTQRY_DEFAULTS__INTERVAL_SECONDS", "10")
    monkeypatch.setenv("PORTQRY_DEFAULTS__PROTOCOL_PROBES", "false")
    settings = load_config(path)
    assert (settings.defaults.interval_seconds, settings.defaults.protocol_probes) == (10.0, False)


@pytest.mark.parametrize(
    "entry",
    [
        'ports = ["tcp/{big}"]',
        'host = "{big}"\nports = ["tcp/1"]',
        'ports = ["tcp/1"]\nprotocols = {{ "tcp/{big}" = "ldap" }}',
        'ports = ["tcp/1"]\ndns_query_name = "{big}"',
        'ports = ["tcp/1"]\nsnmp_version = "{big}"',
    ],
)
def test_a_long_value_is_not_echoed_whole(tmp_path: Path, entry: str) -> None:
    big = "9" * 1_000_000
    text = '[[targets]]\nname = "a"\n' + ("" if "host" in entry else 'host = "h"\n') + entry.format(big=big) + "\n"
    result = config_check("--config", write(tmp_path / "c.toml", text))
    line = one_error_line(result)
    assert len(line) < 400, line[:500]


def test_a_long_listen_address_and_allow_rule_are_cut(tmp_path: Path) -> None:
    big = "x" * 100_000
    text = f'[exporter]\nlisten_address = "{big}"\n[probe]\nallow = ["{big}/8"]\n' + TARGET
    error = refused_all(write(tmp_path / "c.toml", text))
    assert len(error.lines) == 2 and all(len(line) < 400 for line in error.lines)


# ---------------------------------------------------------------------------------------------------------------
# the daemon: reloads onto bad files keep it running, and SIGHUP at start does not kill it


def _reload_gauge(d: RunningDaemon) -> float:
    return d.samples()["portqry_exporter_config_last_reload_successful"][0][1]


def _refusals(d: RunningDaemon) -> list[str]:
    out = []
    for line in d.log_lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "reload refused, keeping the last good config":
            out.append(event["error"])
    return out


def test_sighup_onto_a_fifo_keeps_serving_and_stopping(tmp_path: Path) -> None:
    """Old code: the reload opened the FIFO on the event loop and waited there for a writer: no probes, no
    /-/healthy, SIGTERM ignored."""
    path = write(tmp_path / "c.toml", QUIET + TARGET)
    with run_daemon(path) as d:
        path.unlink()
        os.mkfifo(path)
        d.proc.send_signal(signal.SIGHUP)
        d.wait_for(_refusals, timeout=10)
        assert d.get("/-/healthy", timeout=2)[0] == 200
        assert _reload_gauge(d) == 0
        assert _refusals(d) == [f"{path}: not a regular file (a FIFO): give a file or a symlink to one"]
        started = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(10) == 0 and time.monotonic() - started < 5
        if d.proc.poll() is None:  # old code: unblock the loop so the fixture can end it
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def test_reload_onto_deep_nesting_empty_and_huge_files_is_refused(tmp_path: Path) -> None:
    """POST /-/reload: each bad file is a 500 with one line, the gauge 0, and the target stays; a good file after
    sets the gauge back to 1."""
    path = write(tmp_path / "c.toml", QUIET + TARGET)
    deep = "x = " + "[" * 20_000 + "]" * 20_000 + "\n"
    huge = "".join(f'[[targets]]\nname = "t{i}"\nhost = "127.0.0.1"\nports = ["tcp/1-65535"]\n' for i in range(50))
    with run_daemon(path) as d:
        d.wait_for(lambda x: ("a", "tcp", "9") in x.states(), timeout=15)
        for text, problem in [
            (TARGET + deep, "not valid TOML: arrays or tables nested too deeply"),
            ("", "nothing to probe"),
            (huge, "more than [exporter] max_ports 1000000 ports"),
        ]:
            write(path, text)
            started = time.monotonic()
            status, body = d.post("/-/reload", timeout=10)
            assert time.monotonic() - started < 5
            assert status == 500 and problem in body and len(body.splitlines()) == 1, body[:2000]
            assert _reload_gauge(d) == 0
            assert ("a", "tcp", "9") in d.states()
        write(path, QUIET + TARGET)
        assert d.post("/-/reload")[0] == 200 and _reload_gauge(d) == 1


def test_allow_empty_reload_drops_every_target(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", QUIET + TARGET)
    with run_daemon(path) as d:
        d.wait_for(lambda x: ("a", "tcp", "9") in x.states(), timeout=15)
        write(path, "[exporter]\nallow_empty = true\n")
        assert d.post("/-/reload")[0] == 200
        assert d.states() == {} and _reload_gauge(d) == 1


def _started(argv: list[str], config: Path) -> Generator[subprocess.Popen[bytes], None, None]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PORTQRY_")}
    proc = subprocess.Popen(  # ended in the finally below
        [sys.executable, "-m", "exporter", "--config", str(config), "--web.listen-address", "127.0.0.1:0", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def _serving_after(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until the process logs "portqry-exporter started" (AssertionError when it exits first)."""
    assert proc.stdout is not None
    started = time.monotonic()
    for line in proc.stdout:
        if b"portqry-exporter started" in line:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout
    raise AssertionError(f"the daemon exited with {proc.wait(5)} before serving")


def _catches_sighup(pid: int) -> bool:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    return False


def test_sighup_during_start_up_does_not_kill(tmp_path: Path) -> None:
    """SIGHUP at moments through start-up (a fraction of the time to serve, measured first; and the first moment
    the process catches it) leaves a daemon that serves and stops with 0.  Old code: the handler came after the
    imports and the config, about 90 % of the way, so every moment but the last killed the process."""
    config = write(tmp_path / "c.toml", QUIET + TARGET)
    argv = ["--log.format", "json"]
    gen = _started(argv, config)
    proc = next(gen)
    to_serve = _serving_after(proc, timeout=30)
    gen.close()
    for fraction in (None, 0.35, 0.5, 0.7, 0.85):
        gen = _started(argv, config)
        proc = next(gen)
        try:
            if fraction is None:
                deadline = time.monotonic() + 10
                while not _catches_sighup(proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.001)
            else:
                time.sleep(to_serve * fraction)
            proc.send_signal(signal.SIGHUP)
            _serving_after(proc, timeout=30)
            assert proc.poll() is None, f"SIGHUP at {fraction} of {to_serve:.2f} s ended the daemon"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            gen.close()


def test_thousands_of_errors_are_twenty_lines_and_a_count(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[[targets]]\n" * 5000)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.lines) == 21
    assert info.value.lines[-1] == f"{path}: and 9980 more errors"


def test_control_characters_in_keys_are_escaped_on_the_line(tmp_path: Path) -> None:
    """A key holding CR, LF or U+2028 would split the error line; it is shown escaped (old code: two lines)."""
    path = write(tmp_path / "c.toml", TARGET + '"a\\rb" = 1\n"c\\u2028d" = 2\n')
    error = refused_all(path)
    assert error.lines == (
        f"{path}: targets[0].a\\rb: unknown key",
        f"{path}: targets[0].c\\u2028d: unknown key",
    )
    assert all(len(line.splitlines()) == 1 for line in error.lines)


def test_web_config_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    """A YAML web config 20,000 levels deep is a one-line ConfigError, not a RecursionError traceback."""
    from exporter.webconfig import load_web_config

    path = tmp_path / "web.yml"
    path.write_text("a: " + "[" * 20000 + "]" * 20000 + "\n")
    with pytest.raises(ConfigError) as raised:
        load_web_config(str(path))
    assert "nested too deeply" in str(raised.value) and "\n" not in str(raised.value)


def test_portqry_ports_take_ascii_digits_only() -> None:
    """``portqry -e`` with full-width digits (U+FF11 U+FF13) is refused, as the config's port syntax is."""
    from exporter.cli.args import UsageError, parse_port

    with pytest.raises(UsageError, match="is not a port number"):
        parse_port("\uff11\uff13", "-e")
    assert parse_port("13", "-e") == 13

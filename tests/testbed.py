"""Integration test bed: network namespaces with real peers (Samba AD DC, snmpd, dnsmasq).

A library, not a test module. Everything here needs root and ``ip netns``; call :func:`require_netns`
first (the fixtures in ``conftest.py`` do).

Network rule: every namespace gets its own /24 inside 198.18.0.0/15 (RFC 2544 benchmarking range):
the host end of its veth pair is ``198.18.N.1``, the namespace end ``198.18.N.2``. Nothing here sends
traffic anywhere else. No namespace has a default route, so a peer that tries to reach the outside
world gets ``ENETUNREACH`` instead of a packet on the wire. The Samba DC's ``dns forwarder`` line is
removed right after provisioning and its absence is checked.

Names: namespaces are ``pq-<pid>-<n>-<tag>``, host veth ends ``pq<pid>h<n>``, temporary directories
``$TMPDIR/pq-<pid>-*``. Leftovers of earlier runs whose pid no longer exists are removed at the first
namespace creation of a session (:func:`cleanup_leftovers`).

Check by hand while a session runs::

    ip netns list                       # pq-<pid>-...
    ip netns exec pq-<pid>-0-dc ss -ltnup
    ip netns exec pq-<pid>-0-dc iptables -v -S INPUT
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar, Final

PREFIX: Final = "pq-"
"""Prefix of every namespace and temporary directory this module creates."""

SUBNET_FMT: Final = "198.18.{index}.{host}"
"""Addresses: ``198.18.N.1`` is the host end, ``198.18.N.2`` the namespace end (one /24 each)."""

ICMP_DETERMINISTIC_SYSCTLS: Final = (
    ("net.ipv4.icmp_ratelimit", "0"),
    ("net.ipv4.icmp_ratemask", "0"),
    ("net.ipv4.icmp_msgs_per_sec", "100000"),
    ("net.ipv4.icmp_msgs_burst", "10000"),
)
"""Sysctls that make a namespace send every ICMP error (no rate limit)."""

_CMD_TIMEOUT: Final = 30.0
_LOCK_PATH: Final = Path(tempfile.gettempdir()) / "pq-testbed.lock"
_NS_RE: Final = re.compile(r"^pq-(\d+)-")
_VETH_RE: Final = re.compile(r"^pq(\d+)[hn]\d+")
_TMP_RE: Final = re.compile(r"^pq-(\d+)-")
_COUNTER_RE: Final = re.compile(r"\s-c (\d+) (\d+)")

_LIVE_NAMESPACES: list[Namespace] = []
_LEFTOVERS_DONE: list[bool] = []


class TestbedError(RuntimeError):
    """A test-bed step failed (a command, a timeout, a peer that did not come up)."""


# --------------------------------------------------------------------------------------------------
# small helpers


def run(
    cmd: Sequence[str],
    *,
    timeout: float = _CMD_TIMEOUT,
    check: bool = True,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command in the root namespace, capturing text output.

    Args:
        cmd: argv.
        timeout: seconds before the command is killed.
        check: raise :class:`TestbedError` on a non-zero exit status.
        input_text: text fed to stdin.
        env: full environment (default: inherited).

    Returns:
        The completed process (``stdout``/``stderr`` as text).

    Raises:
        TestbedError: non-zero exit with ``check``, or the timeout expired.
    """
    try:
        proc = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise TestbedError(
            f"exit {proc.returncode}: {' '.join(cmd)}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
        )
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ns_pids(name: str) -> list[int]:
    proc = run(["ip", "netns", "pids", name], check=False, timeout=10)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def _kill_ns_processes(name: str, timeout: float = 10.0) -> None:
    """TERM every process in namespace ``name``, wait up to ``timeout`` seconds, then KILL."""
    pids = _ns_pids(name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = _ns_pids(name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = _ns_pids(name)


def wait_tcp(address: str, port: int, timeout: float, *, alive: Sequence[int] = ()) -> float:
    """Wait until a TCP connect to ``address:port`` succeeds.

    Args:
        address: IPv4 literal (one of our namespaces).
        port: TCP port.
        timeout: seconds to wait in total.
        alive: pids that must stay alive while waiting (fail fast when the daemon died).

    Returns:
        Seconds waited.

    Raises:
        TestbedError: not accepting within ``timeout`` seconds, or a watched pid exited.
    """
    start = time.monotonic()
    deadline = start + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return time.monotonic() - start
        except OSError as exc:
            last = exc
        for pid in alive:
            if not _pid_alive(pid):
                raise TestbedError(f"pid {pid} exited while waiting for {address}:{port}")
        time.sleep(0.05)
    raise TestbedError(f"{address}:{port}/tcp not accepting after {timeout:.0f} s ({last})")


def _read_line(stream: IO[str], deadline: float) -> str:
    """Read one line from a pipe, giving up at ``deadline`` (a ``time.monotonic()`` value)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return ""
    ready, _, _ = select.select([stream], [], [], remaining)
    if not ready:
        return ""
    return stream.readline()


# --------------------------------------------------------------------------------------------------
# leftovers


def cleanup_leftovers() -> list[str]:
    """Remove namespaces, veth links and temp dirs of earlier runs whose pid is gone.

    Only names with our prefix and a pid that no longer exists are touched, so parallel sessions
    leave each other alone.

    Returns:
        Names of what was removed.
    """
    removed: list[str] = []
    listing = run(["ip", "netns", "list"], check=False, timeout=10).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NS_RE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _kill_ns_processes(name, timeout=5.0)
            run(["ip", "netns", "del", name], check=False, timeout=10)
            removed.append(name)
    links = run(["ip", "-o", "link", "show"], check=False, timeout=10).stdout
    for line in links.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        ifname = parts[1].strip().split("@")[0]
        match = _VETH_RE.match(ifname)
        if match and not _pid_alive(int(match.group(1))):
            run(["ip", "link", "del", ifname], check=False, timeout=10)
            removed.append(ifname)
    tmp = Path(tempfile.gettempdir())
    for entry in tmp.iterdir():
        match = _TMP_RE.match(entry.name)
        if match and entry.is_dir() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
    return removed


def _cleanup_at_exit() -> None:
    for ns in list(reversed(_LIVE_NAMESPACES)):
        with contextlib.suppress(TestbedError, OSError):
            ns.teardown()


atexit.register(_cleanup_at_exit)


# --------------------------------------------------------------------------------------------------
# require_netns


def _is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def netns_unavailable_reason(extra_tools: Sequence[str] = ()) -> str | None:
    """Say why the test bed cannot run here, or ``None`` when it can.

    Args:
        extra_tools: executables needed besides ip, iptables, unshare, samba and samba-tool.

    Returns:
        A human-readable reason, or ``None``.
    """
    if os.geteuid() != 0:
        return "test bed needs root (network namespaces, iptables)"
    tools = ["ip", "iptables", "iptables-restore", "unshare", "samba", "samba-tool", *extra_tools]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"test bed needs these executables: {', '.join(missing)} (Debian: samba samba-ad-dc iptables ...)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        proc = run(["ip", "netns", "add", probe], check=False, timeout=10)
    except TestbedError as exc:
        return f"'ip netns add' hangs: {exc}"
    if proc.returncode != 0:
        return f"'ip netns add' is not possible here: {proc.stderr.strip()}"
    try:
        check = run(["ip", "netns", "exec", probe, "iptables", "-S", "INPUT"], check=False, timeout=10)
    finally:
        run(["ip", "netns", "del", probe], check=False, timeout=10)
    if check.returncode != 0:
        return f"iptables does not work inside a namespace: {check.stderr.strip()}"
    return None


_REASON_CACHE: dict[tuple[str, ...], str | None] = {}


def require_netns(*extra_tools: str) -> None:
    """Skip (or fail, when ``CI=true``) unless the test bed can run.

    Needs root, a working ``ip netns add``, iptables inside a namespace, and samba.

    Args:
        *extra_tools: more executables the caller needs (e.g. ``"snmpd"``).

    Raises:
        pytest.skip.Exception: outside CI when something is missing.
        pytest.fail.Exception: in CI (``CI=true``) when something is missing.
    """
    import pytest

    key = tuple(extra_tools)
    if key not in _REASON_CACHE:
        _REASON_CACHE[key] = netns_unavailable_reason(extra_tools)
    reason = _REASON_CACHE[key]
    if reason is None:
        return
    if _is_ci():
        pytest.fail(f"CI=true but the test bed cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------------------------------
# listener helper process (runs inside a namespace)

_LISTENER_SCRIPT: Final = textwrap.dedent(
    """
    import json, resource, selectors, socket, sys
    cfg = json.loads(sys.argv[1])
    need = len(cfg["tcp"]) + len(cfg["udp"]) + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    sel = selectors.DefaultSelector()
    for port in cfg["tcp"]:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((cfg["addr"], port)); s.listen(512); s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "tcp")
    for port in cfg["udp"]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((cfg["addr"], port)); s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "udp")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print("READY", flush=True)
    while True:
        for key, _ in sel.select(timeout=5.0):
            if key.data == "stdin":
                if not sys.stdin.readline():
                    sys.exit(0)  # parent went away: never outlive the test session
                continue
            s = key.fileobj
            try:
                if key.data == "tcp":
                    conn, _ = s.accept(); conn.close()
                else:
                    data, peer = s.recvfrom(65535); s.sendto(data, peer)
            except (BlockingIOError, ConnectionError):
                pass
    """
)
"""Listens on TCP ports (accept, close) and echoes UDP datagrams; exits when stdin closes."""


# --------------------------------------------------------------------------------------------------
# Namespace


class Namespace:
    """A network namespace with a veth pair to the root namespace.

    Attributes:
        tag: short role name (``dc``, ``snmp``...).
        index: N in ``198.18.N.0/24``.
        name: namespace name, ``pq-<pid>-<N>-<tag>``.
        veth_host: interface name in the root namespace (``198.18.N.1``).
        veth_ns: interface name inside the namespace (``198.18.N.2``).
        address: the namespace's address, ``198.18.N.2``.
        host_address: the root namespace's address on the link, ``198.18.N.1``.
        icmp_deterministic: whether the ICMP rate limits were lifted inside.
    """

    def __init__(self, tag: str, index: int, *, icmp_deterministic: bool) -> None:
        self.tag = tag
        self.index = index
        pid = os.getpid()
        self.name = f"{PREFIX}{pid}-{index}-{tag}"
        self.veth_host = f"pq{pid}h{index}"
        self.veth_ns = f"pq{pid}n{index}"
        self.address = SUBNET_FMT.format(index=index, host=2)
        self.host_address = SUBNET_FMT.format(index=index, host=1)
        self.icmp_deterministic = icmp_deterministic
        self._procs: list[subprocess.Popen[str]] = []
        self._rules: dict[tuple[str, tuple[str, ...]], str] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"Namespace({self.name!r}, address={self.address!r})"

    # -- creation ---------------------------------------------------------------------------------

    @classmethod
    def create(cls, tag: str, *, icmp_deterministic: bool = True) -> Namespace:
        """Create a namespace with a veth pair, addresses, links up, ``lo`` up, no default route.

        Args:
            tag: short role name, part of the namespace name (keep it short).
            icmp_deterministic: lift the ICMP error rate limits inside (see
                :data:`ICMP_DETERMINISTIC_SYSCTLS`); ``False`` keeps kernel defaults.

        Returns:
            The namespace, registered for teardown at interpreter exit.

        Raises:
            TestbedError: a command failed (the partial namespace is removed).
        """
        if not _LEFTOVERS_DONE:
            _LEFTOVERS_DONE.append(True)
            cleanup_leftovers()
        _LOCK_PATH.touch(exist_ok=True)
        with _LOCK_PATH.open("r+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions pick distinct /24s
            index = cls._free_index()
            ns = cls(tag, index, icmp_deterministic=icmp_deterministic)
            _LIVE_NAMESPACES.append(ns)
            try:
                ns._setup()
            except BaseException:
                ns.teardown()
                raise
        return ns

    @staticmethod
    def _free_index() -> int:
        used: set[int] = set()
        out = run(["ip", "-4", "-o", "addr", "show"], timeout=10).stdout
        used.update(int(m.group(1)) for m in re.finditer(r"inet 198\.18\.(\d+)\.\d+/", out))
        routes = run(["ip", "-4", "route", "show"], timeout=10).stdout
        used.update(int(m.group(1)) for m in re.finditer(r"^198\.18\.(\d+)\.0/24", routes, re.M))
        start = os.getpid() % 254
        for offset in range(254):
            index = (start + offset) % 254 + 1
            if index not in used:
                return index
        raise TestbedError("no free /24 left in 198.18.0.0/16")

    def _setup(self) -> None:
        run(["ip", "netns", "add", self.name])
        run(
            [
                "ip",
                "link",
                "add",
                self.veth_host,
                "type",
                "veth",
                "peer",
                "name",
                self.veth_ns,
                "netns",
                self.name,
            ]
        )
        # no IPv6 on the veth: no router solicitations, no link-local noise
        run(["sysctl", "-q", "-w", f"net.ipv6.conf.{self.veth_host}.disable_ipv6=1"], check=False)
        self.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{self.veth_ns}.disable_ipv6=1"], check=False)
        run(["ip", "addr", "add", f"{self.host_address}/24", "dev", self.veth_host])
        run(["ip", "link", "set", self.veth_host, "up"])
        self.run(["ip", "addr", "add", f"{self.address}/24", "dev", self.veth_ns])
        self.run(["ip", "link", "set", self.veth_ns, "up"])
        self.run(["ip", "link", "set", "lo", "up"])
        if self.icmp_deterministic:
            self._lift_icmp_limits()
        routes = self.run(["ip", "-4", "route", "show"]).stdout
        if "default" in routes:
            raise TestbedError(f"namespace {self.name} has a default route: {routes}")

    def _lift_icmp_limits(self) -> None:
        """Set the ICMP sysctls inside; never leave a change in the root namespace.

        On kernels where ``icmp_msgs_per_sec``/``icmp_msgs_burst`` are still global (before about
        6.3) writing them inside would change the host: detect that, restore the host's value and
        rely on ``icmp_ratemask=0``, which alone exempts ICMP errors from the global limiter.
        """
        for key, value in ICMP_DETERMINISTIC_SYSCTLS:
            before = run(["sysctl", "-n", key]).stdout.strip()
            self.run(["sysctl", "-q", "-w", f"{key}={value}"])
            after = run(["sysctl", "-n", key]).stdout.strip()
            if after != before:
                run(["sysctl", "-q", "-w", f"{key}={before}"])

    # -- running things inside ----------------------------------------------------------------------

    def exec_argv(self, cmd: Sequence[str]) -> list[str]:
        """Return ``cmd`` wrapped in ``ip netns exec``."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(
        self,
        cmd: Sequence[str],
        *,
        timeout: float = _CMD_TIMEOUT,
        check: bool = True,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace (see :func:`run` for the arguments)."""
        return run(self.exec_argv(cmd), timeout=timeout, check=check, input_text=input_text)

    def popen(
        self, cmd: Sequence[str], *, stdout: IO[str] | int | None = None, **kwargs: object
    ) -> subprocess.Popen[str]:
        """Start a long-running process inside the namespace; it is killed at teardown.

        Args:
            cmd: argv.
            stdout: where stdout goes (default: a pipe).
            **kwargs: passed to :class:`subprocess.Popen`.

        Returns:
            The process (text mode, stdin is a pipe held open until teardown).
        """
        proc: subprocess.Popen[str] = subprocess.Popen(
            self.exec_argv(cmd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,  # type: ignore[call-overload]
        )
        self._procs.append(proc)
        return proc

    def start_listeners(
        self, *, tcp: Sequence[int] = (), udp_echo: Sequence[int] = (), timeout: float = 15.0
    ) -> subprocess.Popen[str]:
        """Start one helper process inside that listens on TCP ports and echoes on UDP ports.

        TCP connections are accepted and closed at once; every UDP datagram is sent back unchanged.
        The helper exits when its stdin closes (our process went away) or at :meth:`teardown`.

        Args:
            tcp: TCP ports to listen on (all addresses of the namespace).
            udp_echo: UDP ports that answer every datagram.
            timeout: seconds to wait until every socket is bound.

        Returns:
            The helper process.

        Raises:
            TestbedError: the helper did not report ready within ``timeout`` seconds.
        """
        cfg = json.dumps({"addr": "0.0.0.0", "tcp": list(tcp), "udp": list(udp_echo)})
        proc = self.popen([sys.executable, "-c", _LISTENER_SCRIPT, cfg])
        assert proc.stdout is not None
        line = _read_line(proc.stdout, time.monotonic() + timeout)
        if line.strip() != "READY":
            self.stop_process(proc)
            rest = proc.stdout.read() if proc.poll() is not None else ""
            raise TestbedError(f"listener helper in {self.name} failed: {line}{rest}")
        return proc

    def stop_process(self, proc: subprocess.Popen[str], timeout: float = 5.0) -> None:
        """Terminate a process started with :meth:`popen`, wait ``timeout`` seconds, then kill it."""
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=timeout)
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
        if proc in self._procs:
            self._procs.remove(proc)

    def pids(self) -> list[int]:
        """Pids of every process inside the namespace (``ip netns pids``)."""
        return _ns_pids(self.name)

    def tracked_pids(self) -> set[int]:
        """Pids of the processes started with :meth:`popen` that are still running."""
        return {proc.pid for proc in self._procs if proc.poll() is None}

    # -- iptables -----------------------------------------------------------------------------------

    def iptables(self, *args: str, check: bool = True) -> str:
        """Run ``iptables ARGS`` inside the namespace (``-w``: wait for the xtables lock).

        Returns:
            stdout.
        """
        return self.run(["iptables", "-w", "5", *args], check=check).stdout

    def add_rule(self, *spec: str, chain: str = "INPUT") -> str:
        """Insert a rule at the top of ``chain`` (``iptables -I CHAIN 1 SPEC``).

        Args:
            *spec: the rule, e.g. ``"-p", "tcp", "--dport", "389", "-j", "DROP"``.
            chain: the chain (filter table).

        Returns:
            The rule as iptables prints it (``-A INPUT -p tcp -m tcp --dport 389 -j DROP``); this is
            what :meth:`packet_count` looks for.

        Raises:
            TestbedError: the rule is already there, or iptables refused it.
        """
        key = (chain, tuple(spec))
        if key in self._rules:
            raise TestbedError(f"rule already installed in {self.name}: {chain} {' '.join(spec)}")
        self.iptables("-I", chain, "1", *spec)
        listing = self.iptables("-S", chain).splitlines()
        canonical = listing[1]  # line 0 is the policy (-P) or the -N line
        self._rules[key] = canonical
        return canonical

    def delete_rule(self, *spec: str, chain: str = "INPUT") -> None:
        """Delete a rule added with :meth:`add_rule` (``iptables -D CHAIN SPEC``, same spec)."""
        self.iptables("-D", chain, *spec)
        self._rules.pop((chain, tuple(spec)), None)

    @contextlib.contextmanager
    def rule(self, *spec: str, chain: str = "INPUT") -> Iterator[str]:
        """Context manager: :meth:`add_rule` on entry, :meth:`delete_rule` on exit (also on error)."""
        canonical = self.add_rule(*spec, chain=chain)
        try:
            yield canonical
        finally:
            self.delete_rule(*spec, chain=chain)

    def packet_count(self, *spec: str, chain: str = "INPUT") -> int:
        """Packets that matched a rule added with :meth:`add_rule` (iptables counters).

        Args:
            *spec: exactly the spec given to :meth:`add_rule`.
            chain: the chain.

        Returns:
            The rule's packet counter.

        Raises:
            TestbedError: the rule was not added through :meth:`add_rule` or is gone.
        """
        canonical = self._rules.get((chain, tuple(spec)))
        if canonical is None:
            raise TestbedError(f"packet_count: rule not added with add_rule: {chain} {' '.join(spec)}")
        for line in self.iptables("-v", "-S", chain).splitlines():
            match = _COUNTER_RE.search(line)
            if match and _COUNTER_RE.sub("", line) == canonical:
                return int(match.group(1))
        raise TestbedError(f"packet_count: rule not found in {self.name}: {canonical}")

    # -- teardown -----------------------------------------------------------------------------------

    def teardown(self, timeout: float = 10.0) -> None:
        """Kill every process inside (TERM, then KILL after ``timeout`` seconds), delete veth and namespace.

        Safe to call twice.
        """
        if self._closed:
            return
        self._closed = True
        for proc in list(self._procs):
            self.stop_process(proc, timeout=min(timeout, 5.0))
        _kill_ns_processes(self.name, timeout=timeout)
        run(["ip", "link", "del", self.veth_host], check=False, timeout=10)
        run(["ip", "netns", "del", self.name], check=False, timeout=10)
        if self in _LIVE_NAMESPACES:
            _LIVE_NAMESPACES.remove(self)

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()


def make_tempdir(tag: str) -> Path:
    """Create ``$TMPDIR/pq-<pid>-<tag>-XXXX`` (removed by :func:`cleanup_leftovers` if we crash)."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{tag}-"))


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------------
# Samba AD DC

_WRAPPER: Final = """set -e
mount --bind "$PQ_DIR/resolv.conf" /etc/resolv.conf
mount --bind "$PQ_DIR/hosts" /etc/hosts
mount --bind "$PQ_DIR/run-samba" /run/samba
hostname "$PQ_HOSTNAME"
exec "$@"
"""
"""Runs inside ``unshare --mount --uts``: private resolv.conf, hosts, /run/samba and hostname."""


@dataclass
class SambaDC:
    """A real Samba AD DC inside its own namespace, provisioned into a temp dir.

    Attributes:
        ns: the namespace (``ns.address`` is the DC's address).
        target_dir: the provision's ``--targetdir`` (smb.conf in ``etc/``, logs in ``log/``).
        realm: Kerberos realm, ``PQTEST.TEST``.
        domain: NetBIOS domain name, ``PQTEST``.
        host_name: NetBIOS/host name, ``dc1``.
        admin_password: the Administrator password (expires 42 days after provisioning).
        timings: seconds per start-up step (``namespace``, ``provision``, ``start``, ``dns``).
    """

    ns: Namespace
    target_dir: Path
    realm: str = "PQTEST.TEST"
    domain: str = "PQTEST"
    host_name: str = "dc1"
    admin_password: str = "Pq-Testbed-Passw0rd"
    timings: dict[str, float] = field(default_factory=dict)

    PORTS_TCP: ClassVar[tuple[int, ...]] = (53, 88, 135, 139, 389, 445, 464, 636, 3268, 3269)
    """TCP ports the DC listens on once started (dynamic RPC ports come on top)."""

    @property
    def address(self) -> str:
        """The DC's IPv4 address, ``198.18.N.2``."""
        return self.ns.address

    @property
    def dns_domain(self) -> str:
        """DNS domain, ``pqtest.test``."""
        return self.realm.lower()

    @property
    def fqdn(self) -> str:
        """The DC's DNS name, ``dc1.pqtest.test``."""
        return f"{self.host_name}.{self.dns_domain}"

    @property
    def base_dn(self) -> str:
        """``DC=pqtest,DC=test``."""
        return ",".join(f"DC={part}" for part in self.dns_domain.split("."))

    @property
    def smb_conf(self) -> Path:
        """The provisioned ``smb.conf``."""
        return self.target_dir / "etc" / "smb.conf"

    @property
    def log_path(self) -> Path:
        """Samba's main log file."""
        return self.target_dir / "log" / "samba.log"

    @property
    def pid_file(self) -> Path:
        """Pid file of the main ``samba`` process."""
        return self.target_dir / "pid" / "samba.pid"

    # -- lifecycle ----------------------------------------------------------------------------------

    @classmethod
    def start(cls, *, provision_timeout: float = 180.0, start_timeout: float = 120.0) -> SambaDC:
        """Create a namespace, provision a DC, start ``samba -D`` and wait until it serves.

        Args:
            provision_timeout: seconds allowed for ``samba-tool domain provision``.
            start_timeout: seconds allowed from ``samba -D`` until TCP 389 (and 53, 88, 135,
                445) accept and DNS resolves the DC's own name.

        Returns:
            The running DC.

        Raises:
            TestbedError: any step failed; the message carries the log tail. Nothing is left behind.
        """
        t0 = time.monotonic()
        ns = Namespace.create("dc")
        target = make_tempdir("dc")
        dc = cls(ns=ns, target_dir=target)
        dc.timings["namespace"] = time.monotonic() - t0
        try:
            t1 = time.monotonic()
            dc.provision(timeout=provision_timeout)
            t2 = time.monotonic()
            dc.timings["provision"] = t2 - t1
            dc.start_daemon(timeout=start_timeout)
            dc.timings["start"] = time.monotonic() - t2
        except BaseException:
            dc.close()
            raise
        return dc

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        """Wrap ``cmd`` to run in the DC namespace with private /etc files and hostname."""
        return self.ns.exec_argv(["unshare", "--mount", "--uts", "sh", "-c", _WRAPPER, "pq-dc-wrapper", *cmd])

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KRB5", "SMB_", "LDB"))}
        env.update(PQ_DIR=str(self.target_dir), PQ_HOSTNAME=self.host_name, LANG="C.UTF-8")
        return env

    def provision(self, timeout: float = 180.0) -> None:
        """Write the private files and run ``samba-tool domain provision`` (testbed.md step 4).

        Removes the ``dns forwarder`` line afterwards and checks that it is gone.

        Raises:
            TestbedError: provision failed or timed out (the message has its output).
        """
        d = self.target_dir
        for sub in ("etc", "pid", "log", "run-samba"):  # samba creates the rest with the modes it wants
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "run-samba").chmod(0o755)
        (d / "base.conf").write_text("[global]\n")
        (d / "resolv.conf").write_text(f"search {self.dns_domain}\nnameserver {self.address}\n")
        (d / "hosts").write_text(f"127.0.0.1\tlocalhost\n{self.address}\t{self.fqdn} {self.host_name}\n")
        options = {
            "interfaces": f"lo {self.ns.veth_ns}",
            "bind interfaces only": "yes",
            "pid directory": str(d / "pid"),
            "ncalrpc dir": str(d / "ncalrpc"),
            "ntp signd socket directory": str(d / "ntp_signd"),
            "log file": str(self.log_path),
            "log level": "1",
            "max log size": "0",
            "winbindd socket directory": str(d / "run-samba" / "winbindd"),
        }
        cmd = [
            "samba-tool", "domain", "provision",
            "-s", str(d / "base.conf"),
            f"--targetdir={d}",
            "--server-role=dc",
            "--dns-backend=SAMBA_INTERNAL",
            f"--realm={self.realm}",
            f"--domain={self.domain}",
            f"--adminpass={self.admin_password}",
            f"--host-name={self.host_name}",
            f"--host-ip={self.address}",
            *[f"--option={key}={value}" for key, value in options.items()],
        ]  # fmt: skip
        log = d / "log" / "provision.log"
        with log.open("w") as out:
            try:
                proc = subprocess.run(
                    self.wrap(cmd),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    env=self._env(),
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise TestbedError(f"provision timed out after {timeout:.0f} s; {log}:\n{_log_tail(log)}") from exc
        if proc.returncode != 0:
            raise TestbedError(f"provision failed (exit {proc.returncode}); {log}:\n{_log_tail(log)}")
        conf = self.smb_conf.read_text()
        cleaned = "".join(
            line for line in conf.splitlines(keepends=True) if not line.strip().lower().startswith("dns forwarder")
        )
        self.smb_conf.write_text(cleaned)
        if "forwarder" in self.smb_conf.read_text().lower():
            raise TestbedError(f"could not remove 'dns forwarder' from {self.smb_conf}")

    def main_pid(self) -> int | None:
        """Pid of the main ``samba`` process from its pid file, or ``None``."""
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start_daemon(self, timeout: float = 60.0) -> None:
        """Run ``samba -D`` and wait until TCP 389, 53, 88, 135, 445 accept and DNS answers.

        Args:
            timeout: seconds in total.

        Raises:
            TestbedError: samba exited or did not serve in time (the message has the log tail).
        """
        deadline = time.monotonic() + timeout
        start_log = self.target_dir / "log" / "samba-start.log"
        with start_log.open("a") as out:
            try:
                proc = subprocess.run(
                    self.wrap(["samba", "-D", "-s", str(self.smb_conf)]),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    env=self._env(),
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise TestbedError(f"'samba -D' did not return in {timeout:.0f} s\n{self.log_tail()}") from exc
        if proc.returncode != 0:
            raise TestbedError(f"'samba -D' exit {proc.returncode}\n{self.log_tail()}")
        pid: int | None = None
        while pid is None and time.monotonic() < deadline:
            pid = self.main_pid()
            if pid is None:
                time.sleep(0.05)
        if pid is None:
            raise TestbedError(f"samba wrote no pid file {self.pid_file}\n{self.log_tail()}")
        try:
            for port in (389, 53, 88, 135, 445):
                wait_tcp(self.address, port, max(deadline - time.monotonic(), 0.1), alive=[pid])
            self.wait_dns(max(deadline - time.monotonic(), 0.1))
        except TestbedError as exc:
            raise TestbedError(f"{exc}\n{self.log_tail()}") from exc

    def wait_dns(self, timeout: float) -> None:
        """Wait until the DC's DNS answers an A query for its own FQDN with its address.

        Raises:
            TestbedError: no correct answer within ``timeout`` seconds.
        """
        import dns.exception
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.address]
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                answer = resolver.resolve(self.fqdn, "A", lifetime=min(2.0, max(deadline - time.monotonic(), 0.1)))
                addresses = [rr.to_text() for rr in answer]
                if self.address in addresses:
                    return
                last = f"answer {addresses}"
            except dns.exception.DNSException as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TestbedError(f"DC DNS did not resolve {self.fqdn} within {timeout:.0f} s: {last}")

    def log_tail(self, lines: int = 40) -> str:
        """Last ``lines`` lines of Samba's logs (for error messages)."""
        parts = [f"--- {path}\n{_log_tail(path, lines)}" for path in sorted((self.target_dir / "log").glob("*"))]
        return "\n".join(parts) or "(no samba logs)"

    def stop(self, timeout: float = 20.0) -> None:
        """TERM samba by pid file and wait until all its processes are gone (KILL after ``timeout`` s)."""
        pid = self.main_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        keep = self.ns.tracked_pids()
        deadline = time.monotonic() + timeout
        pids = [p for p in self.ns.pids() if p not in keep]
        while pids and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = [p for p in self.ns.pids() if p not in keep]
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.pid_file.unlink()

    def close(self) -> None:
        """Stop samba, delete the namespace and the temp dir. Safe to call twice."""
        try:
            self.stop()
        finally:
            self.ns.teardown()
            shutil.rmtree(self.target_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Firewall fixture ports inside the DC namespace


@dataclass(frozen=True)
class FirewallPorts:
    """Dedicated ports with a known firewall behaviour (none collides with Samba's).

    TCP ports with a rule also have a listener behind the rule, so the rule is the only reason for
    what a client sees; the ``*_closed`` ports have neither listener nor rule.
    """

    tcp_drop: int = 9101
    """iptables DROP (listener behind it): connect times out -> FILTERED."""
    tcp_reset: int = 9102
    """REJECT --reject-with tcp-reset (listener behind it): ECONNREFUSED -> NOT LISTENING."""
    tcp_closed: int = 9103
    """No listener, no rule: the kernel sends RST -> NOT LISTENING."""
    tcp_admin_prohibited: int = 9104
    """REJECT icmp-admin-prohibited (listener behind it): EHOSTUNREACH -> FILTERED."""
    tcp_host_unreachable: int = 9105
    """REJECT icmp-host-unreachable (listener behind it): EHOSTUNREACH -> FILTERED."""
    tcp_listen: int = 9106
    """A plain TCP listener (accepts and closes) -> LISTENING."""
    udp_drop: int = 9201
    """iptables DROP (echo listener behind it): silence -> LISTENING or FILTERED."""
    udp_closed: int = 9202
    """No listener: ICMP port unreachable (ECONNREFUSED on a connected socket) -> NOT LISTENING."""
    udp_admin_prohibited: int = 9203
    """REJECT icmp-admin-prohibited (echo listener behind it): EHOSTUNREACH -> FILTERED."""
    udp_host_unreachable: int = 9204
    """REJECT icmp-host-unreachable (echo listener behind it) -> FILTERED.

    Linux reports this "soft" ICMP error on a UDP socket only with ``IP_RECVERR`` set (then
    EHOSTUNREACH); without it the client sees silence."""
    udp_echo: int = 9205
    """Answers every datagram with the same bytes -> LISTENING."""

    def rules(self) -> list[tuple[str, ...]]:
        """The iptables specs (INPUT chain) that implement these ports."""
        return [
            ("-p", "tcp", "--dport", str(self.tcp_drop), "-j", "DROP"),
            ("-p", "tcp", "--dport", str(self.tcp_reset), "-j", "REJECT", "--reject-with", "tcp-reset"),
            ("-p", "tcp", "--dport", str(self.tcp_admin_prohibited), "-j", "REJECT",
             "--reject-with", "icmp-admin-prohibited"),
            ("-p", "tcp", "--dport", str(self.tcp_host_unreachable), "-j", "REJECT",
             "--reject-with", "icmp-host-unreachable"),
            ("-p", "udp", "--dport", str(self.udp_drop), "-j", "DROP"),
            ("-p", "udp", "--dport", str(self.udp_admin_prohibited), "-j", "REJECT",
             "--reject-with", "icmp-admin-prohibited"),
            ("-p", "udp", "--dport", str(self.udp_host_unreachable), "-j", "REJECT",
             "--reject-with", "icmp-host-unreachable"),
        ]  # fmt: skip

    def tcp_listeners(self) -> list[int]:
        """TCP ports with a listener (behind a rule or plain)."""
        return [
            self.tcp_drop,
            self.tcp_reset,
            self.tcp_admin_prohibited,
            self.tcp_host_unreachable,
            self.tcp_listen,
        ]

    def udp_listeners(self) -> list[int]:
        """UDP ports with an echo listener (behind a rule or plain)."""
        return [self.udp_drop, self.udp_admin_prohibited, self.udp_host_unreachable, self.udp_echo]


@dataclass
class Firewall:
    """:class:`FirewallPorts` installed in a namespace (usually the DC's).

    Attributes:
        ns: the namespace holding the rules and listeners.
        ports: the port numbers.
    """

    ns: Namespace
    ports: FirewallPorts = field(default_factory=FirewallPorts)
    _listener: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        """Address to probe, ``198.18.N.2``."""
        return self.ns.address

    @classmethod
    def install(cls, ns: Namespace, ports: FirewallPorts | None = None) -> Firewall:
        """Start the listeners and insert the rules.

        Raises:
            TestbedError: a listener or a rule could not be set up (the rest is rolled back).
        """
        fw = cls(ns=ns, ports=ports or FirewallPorts())
        try:
            fw._listener = ns.start_listeners(tcp=fw.ports.tcp_listeners(), udp_echo=fw.ports.udp_listeners())
            for spec in fw.ports.rules():
                ns.add_rule(*spec)
        except BaseException:
            fw.remove()
            raise
        return fw

    def add_rule(self, *spec: str) -> str:
        """Insert a rule in INPUT (see :meth:`Namespace.add_rule`); undo it with :meth:`delete_rule`."""
        return self.ns.add_rule(*spec)

    def delete_rule(self, *spec: str) -> None:
        """Delete a rule added with :meth:`add_rule` (same spec)."""
        self.ns.delete_rule(*spec)

    def packet_count(self, *spec: str) -> int:
        """Packets matched so far by a rule (see :meth:`Namespace.packet_count`)."""
        return self.ns.packet_count(*spec)

    def drop_spec(self, proto: str, port: int) -> tuple[str, ...]:
        """The spec of a DROP rule for ``proto``/``port`` (e.g. ``drop_spec("udp", ports.udp_drop)``)."""
        return ("-p", proto, "--dport", str(port), "-j", "DROP")

    @contextlib.contextmanager
    def blocked(self, proto: str, port: int) -> Iterator[tuple[str, ...]]:
        """Temporarily DROP ``proto``/``port`` (e.g. ``with fw.blocked("tcp", 389): ...``); restored on exit.

        Yields:
            The spec, usable with :meth:`packet_count`.
        """
        spec = self.drop_spec(proto, port)
        with self.ns.rule(*spec):
            yield spec

    def remove(self) -> None:
        """Delete the rules this firewall installed and stop its listener."""
        for spec in self.ports.rules():
            with contextlib.suppress(TestbedError):
                self.ns.delete_rule(*spec)
        if self._listener is not None:
            self.ns.stop_process(self._listener)
            self._listener = None


# --------------------------------------------------------------------------------------------------
# SNMP and DNS peers


@dataclass
class SnmpPeer:
    """net-snmp ``snmpd`` in its own namespace, answering SNMPv1/v2c on ``udp:198.18.N.2:161``.

    Only ``community`` from the peer's /24 gets answers; any other community gets no reply at all.

    Attributes:
        ns: the namespace.
        work_dir: config, persistent dir and log.
        community: the read-only community, ``pqsecret``.
        sys_descr: the value of sysDescr.0 (1.3.6.1.2.1.1.1.0).
        port: UDP port, 161.
    """

    ns: Namespace
    work_dir: Path
    community: str = "pqsecret"
    sys_descr: str = "portqry-testbed snmpd (PQTEST)"
    port: int = 161
    _proc: subprocess.Popen[str] | None = None

    SYS_DESCR_OID: ClassVar[str] = "1.3.6.1.2.1.1.1.0"

    @property
    def address(self) -> str:
        """The agent's address, ``198.18.N.2``."""
        return self.ns.address

    @property
    def log_path(self) -> Path:
        """snmpd's log (``-Lo`` output)."""
        return self.work_dir / "snmpd.log"

    def client_env(self) -> dict[str, str]:
        """Environment for net-snmp clients: no MIB loading, no writes outside ``work_dir``."""
        env = dict(os.environ)
        client = str(self.work_dir / "client")
        env.update(SNMP_PERSISTENT_DIR=client, SNMPCONFPATH=client, MIBS="", MIBDIRS=client)
        return env

    @classmethod
    def start(cls, timeout: float = 20.0) -> SnmpPeer:
        """Create the namespace, write the config, start ``snmpd -f`` and wait until it answers.

        Args:
            timeout: seconds until a GET for sysDescr.0 with the right community answers.

        Raises:
            TestbedError: snmpd exited or did not answer (the message has its log).
        """
        ns = Namespace.create("snmp")
        peer = cls(ns=ns, work_dir=make_tempdir("snmp"))
        try:
            peer._start(timeout)
        except BaseException:
            peer.close()
            raise
        return peer

    def _start(self, timeout: float) -> None:
        d = self.work_dir
        for sub in ("persist", "client"):
            (d / sub).mkdir(exist_ok=True)
        conf = d / "snmpd.conf"
        subnet = f"{self.address.rsplit('.', 1)[0]}.0/24"
        conf.write_text(
            f"agentAddress udp:{self.address}:{self.port}\n"
            f"rocommunity {self.community} {subnet}\n"
            f"sysDescr {self.sys_descr}\n"
            "sysName snmp1.pqtest.test\n"
            "sysLocation portqry test bed\n"
            "sysContact nobody@pqtest.test\n"
            "master no\n"
            f"agentXSocket {d / 'agentx'}\n"
        )
        with self.log_path.open("w") as log:
            self._proc = self.ns.popen(
                ["env", f"SNMP_PERSISTENT_DIR={d / 'persist'}", f"SNMPCONFPATH={d}", "MIBS=",
                 "snmpd", "-f", "-Lo", "-C", "-c", str(conf), "-I", "-smux,mteTrigger,mteTriggerConf",
                 "-p", str(d / "snmpd.pid")],
                stdout=log,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise TestbedError(f"snmpd exited with {self._proc.returncode}:\n{_log_tail(self.log_path)}")
            bound = self.ns.run(["ss", "-Hlun", f"sport = :{self.port}"], check=False).stdout.strip()
            if bound and self.get(self.SYS_DESCR_OID, timeout_s=1) is not None:
                return
            time.sleep(0.1)
        raise TestbedError(f"snmpd did not answer within {timeout:.0f} s:\n{_log_tail(self.log_path)}")

    def get(self, oid: str, *, community: str | None = None, timeout_s: int = 1) -> str | None:
        """``snmpget -v2c`` one OID from the host namespace (no retries).

        Args:
            oid: numeric OID, e.g. ``1.3.6.1.2.1.1.1.0``.
            community: defaults to :attr:`community`.
            timeout_s: snmpget's timeout in whole seconds.

        Returns:
            The value as printed by ``snmpget -Oqv``, or ``None`` on "Timeout: No Response".

        Raises:
            TestbedError: snmpget failed for another reason.
        """
        proc = run(
            ["snmpget", "-v2c", "-c", community or self.community, "-t", str(timeout_s), "-r", "0",
             "-Oqv", "-On", f"udp:{self.address}:{self.port}", oid],
            check=False, timeout=timeout_s + 10, env=self.client_env(),
        )  # fmt: skip
        if proc.returncode == 0:
            return proc.stdout.strip().strip('"')
        if "Timeout" in proc.stderr or "Timeout" in proc.stdout:
            return None
        raise TestbedError(f"snmpget failed (exit {proc.returncode}): {proc.stderr.strip()}")

    def close(self) -> None:
        """Stop snmpd, delete the namespace and the work dir. Safe to call twice."""
        try:
            if self._proc is not None:
                self.ns.stop_process(self._proc)
                self._proc = None
        finally:
            self.ns.teardown()
            shutil.rmtree(self.work_dir, ignore_errors=True)


@dataclass
class DnsPeer:
    """dnsmasq in its own namespace, authoritative for :attr:`zone`, never forwarding.

    Attributes:
        ns: the namespace.
        work_dir: pid file and log.
        zone: the authoritative zone, ``peer.test``.
        name: a name with an A record, ``www.peer.test``.
        port: UDP and TCP port, 53.
    """

    ns: Namespace
    work_dir: Path
    zone: str = "peer.test"
    name: str = "www.peer.test"
    port: int = 53
    _proc: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        """The server's address, ``198.18.N.2``."""
        return self.ns.address

    @property
    def a_record(self) -> str:
        """The address :attr:`name` resolves to (the peer's own address)."""
        return self.ns.address

    @property
    def log_path(self) -> Path:
        """dnsmasq's log (queries included)."""
        return self.work_dir / "dnsmasq.log"

    @classmethod
    def start(cls, timeout: float = 20.0) -> DnsPeer:
        """Create the namespace, start ``dnsmasq -k`` and wait until it answers authoritatively.

        Args:
            timeout: seconds until an A query for :attr:`name` gets an answer.

        Raises:
            TestbedError: dnsmasq exited or did not answer (the message has its log).
        """
        ns = Namespace.create("dns")
        peer = cls(ns=ns, work_dir=make_tempdir("dns"))
        try:
            peer._start(timeout)
        except BaseException:
            peer.close()
            raise
        return peer

    def _start(self, timeout: float) -> None:
        import dns.exception
        import dns.flags
        import dns.message
        import dns.query

        cmd = [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--no-poll", "--bind-interfaces", f"--listen-address={self.address}", f"--port={self.port}",
            f"--auth-server=ns1.{self.zone},{self.address}", f"--auth-zone={self.zone}",
            f"--host-record={self.name},{self.a_record}", f"--host-record=ns1.{self.zone},{self.address}",
            f"--pid-file={self.work_dir / 'dnsmasq.pid'}", f"--log-facility={self.log_path}", "--log-queries",
            "--user=root", "--group=root",
        ]  # fmt: skip
        self._proc = self.ns.popen(cmd)
        query = dns.message.make_query(self.name, "A")
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                out = self._proc.stdout.read() if self._proc.stdout else ""
                raise TestbedError(f"dnsmasq exited with {self._proc.returncode}: {out}\n{_log_tail(self.log_path)}")
            if not self.ns.run(["ss", "-Hlun", f"sport = :{self.port}"], check=False).stdout.strip():
                time.sleep(0.05)
                continue
            try:
                reply = dns.query.udp(query, self.address, port=self.port, timeout=1.0)
                if reply.answer and reply.flags & dns.flags.AA:
                    return
                last = reply.to_text()
            except (dns.exception.DNSException, OSError) as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TestbedError(f"dnsmasq did not answer within {timeout:.0f} s: {last}\n{_log_tail(self.log_path)}")

    def close(self) -> None:
        """Stop dnsmasq, delete the namespace and the work dir. Safe to call twice."""
        try:
            if self._proc is not None:
                self.ns.stop_process(self._proc)
                self._proc = None
        finally:
            self.ns.teardown()
            shutil.rmtree(self.work_dir, ignore_errors=True)

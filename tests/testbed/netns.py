"""Network namespaces: one veth pair to the root namespace, one /24 of 198.18.0.0/15 each.

The host end of namespace N is ``198.18.N.1``, the namespace end ``198.18.N.2``. No namespace has a
default route, so a peer that tries to reach the outside world gets ``ENETUNREACH`` instead of a packet
on the wire (checked at creation). IPv6 is off on the veth pair (no router solicitations).

Names: ``pq-<pid>-<N>-<tag>`` for the namespace, ``pq<pid>h<N>``/``pq<pid>n<N>`` for the veth ends.

This module holds the one registry of live namespaces (``_LIVE_NAMESPACES``) and the one ``atexit``
hook that tears down whatever a session left open; it must be imported as ``tests.testbed.netns`` only
(``tests/test_testbed.py`` checks that no second copy of the test bed is loaded).

Check by hand while a session runs::

    ip netns list                                   # pq-<pid>-...
    ip netns exec pq-<pid>-<N>-<tag> ip -4 addr     # 198.18.N.2/24, no default route
    ip netns exec pq-<pid>-<N>-<tag> iptables -v -S INPUT
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Final

from tests.testbed.commands import (
    CMD_TIMEOUT,
    PREFIX,
    TestbedError,
    kill_ns_processes,
    ns_pids,
    read_line,
    run,
)
from tests.testbed.leftovers import cleanup_leftovers
from tests.testbed.listener import LISTENER_SCRIPT

SUBNET_FMT: Final = "198.18.{index}.{host}"
"""Addresses: ``198.18.N.1`` is the host end, ``198.18.N.2`` the namespace end (one /24 each)."""

ICMP_DETERMINISTIC_SYSCTLS: Final = (
    ("net.ipv4.icmp_ratelimit", "0"),
    ("net.ipv4.icmp_ratemask", "0"),
    ("net.ipv4.icmp_msgs_per_sec", "100000"),
    ("net.ipv4.icmp_msgs_burst", "10000"),
)
"""Sysctls that make a namespace send every ICMP error (no rate limit)."""

_LOCK_PATH: Final = Path(tempfile.gettempdir()) / "pq-testbed.lock"
_COUNTER_RE: Final = re.compile(r"\s-c (\d+) (\d+)")

_LIVE_NAMESPACES: list[Namespace] = []
"""Namespaces created and not yet torn down, in creation order (the one registry)."""
_LEFTOVERS_DONE: list[bool] = []


def _cleanup_at_exit() -> None:
    """Tear down every namespace still registered (newest first); the one ``atexit`` hook."""
    for ns in list(reversed(_LIVE_NAMESPACES)):
        with contextlib.suppress(TestbedError, OSError):
            ns.teardown()


atexit.register(_cleanup_at_exit)


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
        timeout: float = CMD_TIMEOUT,
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
        proc = self.popen([sys.executable, "-c", LISTENER_SCRIPT, cfg])
        assert proc.stdout is not None
        line = read_line(proc.stdout, time.monotonic() + timeout)
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
        return ns_pids(self.name)

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
        kill_ns_processes(self.name, timeout=timeout)
        run(["ip", "link", "del", self.veth_host], check=False, timeout=10)
        run(["ip", "netns", "del", self.name], check=False, timeout=10)
        if self in _LIVE_NAMESPACES:
            _LIVE_NAMESPACES.remove(self)

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

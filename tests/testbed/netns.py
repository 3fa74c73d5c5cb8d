"""Network namespaces: one veth pair to the root namespace, one /24 of 198.18.0.0/15 each.

The host end of namespace N is ``198.18.N.1``, the namespace end ``198.18.N.2``. No namespace has a
default route, so a peer that tries to reach the outside world gets ``ENETUNREACH`` instead of a packet
on the wire (checked at creation). IPv6 is off on the veth pair (no router solicitations).

Names: ``pq-<pid>-<N>-<tag>`` for the namespace, ``pq<pid>h<N>``/``pq<pid>n<N>`` for the veth ends.

A namespace created with ``blackhole=True`` (the second DC's) also gets a root-namespace route
``blackhole 198.18.N.0/24 metric <pid>`` at creation. While the namespace lives, its veth's connected
route (metric 0) wins; from the moment the veth is gone, the blackhole does, so a name that still
resolves to the old address (DNS records the namespace left on another DC) sends no packet anywhere:
``connect()`` fails with ``EINVAL`` instead of following the machine's default route. The blackhole stays
until the session ends (or :func:`release_blackhole`); the metric carries the owner's pid so that
``cleanup_leftovers`` can remove those of a killed session, and :meth:`Namespace.create` never picks a
/24 that has one.

Two namespaces can be joined directly with :meth:`Namespace.link_to`: a veth pair between them with no
addresses, only /32 routes and permanent neighbour entries (the two DCs talk over it; nothing is
forwarded anywhere, since Linux accepts a packet for any local address on any interface).

This module holds the one registry of live namespaces (``_LIVE_NAMESPACES``), the one registry of
blackholed /24s (``_BLACKHOLES``) and the one ``atexit`` hook that tears down whatever a session left
open (namespaces first, then the blackholes); it must be imported as ``tests.testbed.netns`` only
(``tests/test_testbed.py`` checks that no second copy of the test bed is loaded).

Check by hand while a session runs::

    ip netns list                                   # pq-<pid>-...
    ip netns exec pq-<pid>-<N>-<tag> ip -4 addr     # 198.18.N.2/24, no default route
    ip netns exec pq-<pid>-<N>-<tag> iptables -v -S INPUT
    ip -4 route show type blackhole                 # blackhole 198.18.N.0/24 metric <pid>
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
_BLACKHOLES: list[str] = []
"""``198.18.N.0/24`` prefixes this session routes to a blackhole in the root namespace."""
_LEFTOVERS_DONE: list[bool] = []
_INDEX_RE: Final = re.compile(r"^(?:blackhole |unreachable |prohibit )?198\.18\.(\d+)\.0/24", re.M)


def _cleanup_at_exit() -> None:
    """Tear down every namespace still registered (newest first), then the blackholes; the one ``atexit`` hook."""
    for ns in list(reversed(_LIVE_NAMESPACES)):
        with contextlib.suppress(TestbedError, OSError):
            ns.teardown()
    for prefix in list(_BLACKHOLES):
        with contextlib.suppress(TestbedError, OSError):
            release_blackhole(prefix)


def _blackhole_argv(prefix: str) -> list[str]:
    return ["ip", "-4", "route", "add", "blackhole", prefix, "metric", str(os.getpid())]


def blackholes() -> list[str]:
    """The ``198.18.N.0/24`` prefixes this session holds blackholed (see the module docstring)."""
    return list(_BLACKHOLES)


def release_blackhole(prefix: str) -> None:
    """Delete this session's blackhole route for ``prefix`` (normally done at exit). Safe to call twice."""
    if prefix in _BLACKHOLES:
        run(["ip", "-4", "route", "del", "blackhole", prefix, "metric", str(os.getpid())], check=False, timeout=10)
        _BLACKHOLES.remove(prefix)


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
        subnet: ``198.18.N.0/24``.
        icmp_deterministic: whether the ICMP rate limits were lifted inside.
        blackhole: whether ``subnet`` is routed to a blackhole in the root namespace once the veth is
            gone (until the session ends).
    """

    def __init__(self, tag: str, index: int, *, icmp_deterministic: bool, blackhole: bool = False) -> None:
        self.tag = tag
        self.index = index
        pid = os.getpid()
        self.name = f"{PREFIX}{pid}-{index}-{tag}"
        self.veth_host = f"pq{pid}h{index}"
        self.veth_ns = f"pq{pid}n{index}"
        self.address = SUBNET_FMT.format(index=index, host=2)
        self.host_address = SUBNET_FMT.format(index=index, host=1)
        self.subnet = SUBNET_FMT.format(index=index, host=0) + "/24"
        self.icmp_deterministic = icmp_deterministic
        self.blackhole = blackhole
        self._procs: list[subprocess.Popen[str]] = []
        self._links: list[str] = []
        self._rules: dict[tuple[str, tuple[str, ...]], str] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"Namespace({self.name!r}, address={self.address!r})"

    # -- creation ---------------------------------------------------------------------------------

    @classmethod
    def create(cls, tag: str, *, icmp_deterministic: bool = True, blackhole: bool = False) -> Namespace:
        """Create a namespace with a veth pair, addresses, links up, ``lo`` up, no default route.

        Args:
            tag: short role name, part of the namespace name (keep it short).
            icmp_deterministic: lift the ICMP error rate limits inside (see
                :data:`ICMP_DETERMINISTIC_SYSCTLS`); ``False`` keeps kernel defaults.
            blackhole: route the namespace's /24 to a blackhole in the root namespace, in force from
                the moment the veth is gone until the session ends (see the module docstring).

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
            ns = cls(tag, index, icmp_deterministic=icmp_deterministic, blackhole=blackhole)
            _LIVE_NAMESPACES.append(ns)
            try:
                if blackhole:  # before the veth: no moment without one or the other
                    run(_blackhole_argv(ns.subnet), timeout=10)
                    _BLACKHOLES.append(ns.subnet)
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
        used.update(int(m.group(1)) for m in _INDEX_RE.finditer(routes))
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

    def add_address(self, host: int) -> str:
        """Add ``198.18.N.host/24`` to the namespace end of the veth (a second address of the peer).

        The root namespace reaches it over the same veth (the /24 is connected there); it is inside
        the namespace's /24, so a blackhole (``blackhole=True``) covers it too.

        Returns:
            The address.
        """
        if not 3 <= host <= 254:
            raise TestbedError(f"host part {host} is not free in {self.subnet} (.1 and .2 are the veth ends)")
        address = SUBNET_FMT.format(index=self.index, host=host)
        self.run(["ip", "addr", "add", f"{address}/24", "dev", self.veth_ns])
        return address

    def link_to(self, other: Namespace) -> tuple[str, str]:
        """Join this namespace and ``other`` directly: a veth pair, /32 routes, permanent neighbours.

        No addresses on the pair: inside this namespace ``other.address/32 dev X src self.address``,
        inside ``other`` the way back, each with a permanent neighbour entry for the far end's MAC.
        Nothing is forwarded: each side accepts the packet for its own (veth) address on the new
        interface. Only the two ``.2`` addresses are routed; ``other``'s further addresses are not.
        The pair goes when either namespace is torn down.

        Returns:
            ``(name here, name in other)`` of the two interfaces (``pq<pid>a<other.index>``,
            ``pq<pid>b<self.index>``).

        Raises:
            TestbedError: a command failed (the pair is removed again).
        """
        pid = os.getpid()
        here, there = f"pq{pid}a{other.index}", f"pq{pid}b{self.index}"
        run(["ip", "-n", self.name, "link", "add", here, "type", "veth", "peer", "name", there, "netns", other.name])
        self._links.append(here)
        other._links.append(there)
        try:
            for ns, dev in ((self, here), (other, there)):
                ns.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.disable_ipv6=1"], check=False)
                ns.run(["ip", "link", "set", dev, "up"])
            sides = ((self, here, other, other._mac(there)), (other, there, self, self._mac(here)))
            for ns, dev, far, far_mac in sides:
                ns.run(["ip", "-4", "route", "add", f"{far.address}/32", "dev", dev, "src", ns.address])
                ns.run(["ip", "neigh", "replace", far.address, "lladdr", far_mac, "dev", dev, "nud", "permanent"])
        except BaseException:
            run(["ip", "-n", self.name, "link", "del", here], check=False, timeout=10)
            raise
        return here, there

    def _mac(self, dev: str) -> str:
        info = json.loads(self.run(["ip", "-j", "link", "show", "dev", dev]).stdout)
        return str(info[0]["address"])

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
        for dev in self._links:  # a link_to pair (also gone with either namespace)
            run(["ip", "-n", self.name, "link", "del", dev], check=False, timeout=10)
        run(["ip", "link", "del", self.veth_host], check=False, timeout=10)
        run(["ip", "netns", "del", self.name], check=False, timeout=10)
        if self in _LIVE_NAMESPACES:
            _LIVE_NAMESPACES.remove(self)

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

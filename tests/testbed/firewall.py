"""Firewall ports in the DC's namespace: iptables rules with listeners behind them, one port per behaviour.

:class:`FirewallPorts` names the ports (TCP 9101-9106, UDP 9201-9205; none collides with Samba's) and
what a client sees on each: DROP (timeout -> FILTERED), REJECT with tcp-reset or an ICMP code, a closed
port, a plain listener. :class:`Firewall` installs the rules in the INPUT chain of a namespace (the
``dc_firewall`` fixture uses the DC's), starts one listener helper for the ports behind the rules, and can
DROP any port for the length of a ``with`` block (:meth:`Firewall.blocked`); iptables counters tell how
many packets a rule matched.

Check by hand while a session runs::

    ip netns exec pq-<pid>-<N>-dc iptables -v -S INPUT      # the rules and their counters
    ip netns exec pq-<pid>-<N>-dc ss -Hltnu | grep ':9[12]0'  # the listeners behind them
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.testbed.commands import TestbedError
from tests.testbed.netns import Namespace


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

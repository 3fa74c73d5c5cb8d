"""Shared pytest fixtures: the network-namespace test bed (see ``tests/testbed/``).

Session-scoped and lazy: a peer starts the first time a test asks for it and is torn down at the
end of the session (also after failures; the one ``atexit`` hook in
``tests.testbed.netns`` catches the rest, and the
next session removes leftovers of a killed one). Tests that use any of these fixtures get the
``testbed`` marker automatically, so ``pytest -m "not testbed"`` runs everything else.

Without root or ``ip netns`` the test-bed fixtures skip; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests import testbed

T = TypeVar("T")

TESTBED_FIXTURES = frozenset({"dc", "dc_firewall", "dc2", "dc2_firewall", "snmp_peer", "dns_peer", "smbd_peer"})
"""Fixtures that need root and network namespaces; tests using them are marked ``testbed``."""

STARTUP_SECONDS: dict[str, float] = {}
"""Start-up time of each test-bed fixture in this session (seconds), shown in the terminal summary."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Add the ``testbed`` marker to every test that (indirectly) uses a test-bed fixture."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & TESTBED_FIXTURES:
            item.add_marker(pytest.mark.testbed)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report how long each test-bed peer took to start (seconds)."""
    if STARTUP_SECONDS:
        parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in STARTUP_SECONDS.items())
        terminalreporter.write_line(f"testbed start-up: {parts}")


@contextlib.contextmanager
def _started(name: str, tools: tuple[str, ...], start: Callable[[], T], stop: Callable[[T], None]) -> Iterator[T]:
    """Skip unless the test bed can run, start a peer, record its start-up time, stop it at the end.

    Steps the peer timed itself (``peer.timings``) are recorded as ``<name>.<step>``.
    """
    testbed.require_netns(*tools)
    began = time.monotonic()
    peer = start()
    STARTUP_SECONDS[name] = time.monotonic() - began
    timings: dict[str, float] = getattr(peer, "timings", {})
    STARTUP_SECONDS.update({f"{name}.{step}": seconds for step, seconds in timings.items()})
    try:
        yield peer
    finally:
        stop(peer)


@pytest.fixture(scope="session")
def dc() -> Iterator[testbed.SambaDC]:
    """A real Samba AD DC (realm ``PQTEST.TEST``, ``dc1.pqtest.test``) in its own namespace.

    Attributes to use: ``address``, ``fqdn``, ``realm``, ``domain``, ``dns_domain``, ``base_dn``,
    ``admin_password``, ``ns``, ``target_dir``. Provisioned once per session: about 9 s on an idle
    2-core machine, up to about 40 s when it is busy.
    """
    with _started("dc", (), testbed.SambaDC.start, testbed.SambaDC.close) as server:
        yield server


@pytest.fixture(scope="session")
def dc_firewall(dc: testbed.SambaDC) -> Iterator[testbed.Firewall]:
    """:class:`testbed.FirewallPorts` installed in the DC's namespace (rules plus listeners).

    Use ``dc_firewall.address``, ``dc_firewall.ports.tcp_drop`` ..., and ``dc_firewall.blocked("tcp",
    389)`` to DROP a DC port for the length of a ``with`` block.
    """
    with _started("dc_firewall", (), lambda: testbed.Firewall.install(dc.ns), testbed.Firewall.remove) as firewall:
        yield firewall


@pytest.fixture(scope="session")
def dc2(dc: testbed.SambaDC) -> Iterator[testbed.JoinedDC]:
    """A second Samba AD DC, ``dc2.pqtest.test``, joined to ``dc``'s domain in the AD site ``Branch-Site``.

    Its own namespace and /24 (reached from the root namespace over its own veth, like ``dc``), a direct
    veth to ``dc``'s namespace for the join and replication; ``dc`` stays in ``Default-First-Site-Name``
    and each DC's root-side /24 is mapped to its own site, so an LDAP ping from here reports each DC's
    own site as ``ClientSiteName``. Unlike ``dc`` it runs with ``server min protocol = NT1`` (SMB1 accepted)
    and ``ldap server require strong auth = no`` (a simple bind over plain LDAP is checked, not refused), so
    the posture checks see both polarities. Once it has started, ``dc``'s DNS lists both DCs in
    ``_ldap._tcp.dc._msdcs.pqtest.test`` (and ``dc2`` in ``_ldap._tcp.Branch-Site._sites.dc._msdcs``)
    for the rest of the session. About 6 s cold on an idle 2-core machine; ``dc`` pays nothing extra
    when ``dc2`` is not used.

    Attributes: those of ``dc`` (``address``, ``fqdn``, ``site``, ``ns``, ``target_dir`` ...) plus
    ``address2`` (a second address Samba answers on, in no DNS record until ``add_address2_record()``
    or ``with dc2.two_addresses():``), ``partner`` (``dc``). ``retire()``/``reinstate()``/``with
    dc2.retired():`` take it out of (and back into) the SRV records in ``dc``'s DNS. When it is torn
    down its /24 stays blackholed in the root namespace until the session ends.
    """
    with _started("dc2", (), lambda: testbed.JoinedDC.join(dc), testbed.JoinedDC.close) as server:
        yield server


@pytest.fixture(scope="session")
def dc2_firewall(dc2: testbed.JoinedDC) -> Iterator[testbed.Firewall]:
    """:class:`testbed.FirewallPorts` installed in ``dc2``'s namespace (as ``dc_firewall`` in ``dc``'s).

    ``with dc2_firewall.blocked("tcp", 389):`` DROPs LDAP on dc2 only (both its addresses, and from
    ``dc`` too) for the length of the block.
    """
    with _started("dc2_firewall", (), lambda: testbed.Firewall.install(dc2.ns), testbed.Firewall.remove) as firewall:
        yield firewall


@pytest.fixture(scope="session")
def snmp_peer() -> Iterator[testbed.SnmpPeer]:
    """snmpd in its own namespace: community ``pqsecret``, sysDescr ``snmp_peer.sys_descr``."""
    with _started("snmp_peer", ("snmpd", "snmpget"), testbed.SnmpPeer.start, testbed.SnmpPeer.close) as peer:
        yield peer


@pytest.fixture(scope="session")
def smbd_peer() -> Iterator[testbed.SmbdPeer]:
    """A standalone ``smbd`` (not a DC) with ``server signing = disabled``, in its own namespace, on 445."""
    with _started("smbd_peer", ("smbd",), testbed.SmbdPeer.start, testbed.SmbdPeer.close) as peer:
        yield peer


@pytest.fixture(scope="session")
def dns_peer() -> Iterator[testbed.DnsPeer]:
    """dnsmasq in its own namespace, authoritative for ``peer.test`` (``www.peer.test`` A)."""
    with _started("dns_peer", ("dnsmasq",), testbed.DnsPeer.start, testbed.DnsPeer.close) as peer:
        yield peer


@pytest.fixture
def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0 where you can instead)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port

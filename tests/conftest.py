"""Shared pytest fixtures: the network-namespace test bed (see ``testbed.py``).

Session-scoped and lazy: a peer starts the first time a test asks for it and is torn down at the
end of the session (also after failures; an ``atexit`` hook in ``testbed`` catches the rest, and the
next session removes leftovers of a killed one). Tests that use any of these fixtures get the
``testbed`` marker automatically, so ``pytest -m "not testbed"`` runs everything else.

Without root or ``ip netns`` the test-bed fixtures skip; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
_REPO_DIR = str(Path(__file__).resolve().parent.parent)
for _path in (_TESTS_DIR, _REPO_DIR):  # testbed.py and bench/ (pytest's importlib mode adds neither)
    if _path not in sys.path:
        sys.path.insert(0, _path)

import testbed  # noqa: E402

TESTBED_FIXTURES = frozenset({"dc", "dc_firewall", "snmp_peer", "dns_peer"})
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


@pytest.fixture(scope="session")
def dc() -> Iterator[testbed.SambaDC]:
    """A real Samba AD DC (realm ``PQTEST.TEST``, ``dc1.pqtest.test``) in its own namespace.

    Attributes to use: ``address``, ``fqdn``, ``realm``, ``domain``, ``dns_domain``, ``base_dn``,
    ``admin_password``, ``ns``, ``target_dir``. Provisioned once per session: about 9 s on an idle
    2-core machine, up to about 40 s when it is busy.
    """
    testbed.require_netns()
    start = time.monotonic()
    server = testbed.SambaDC.start()
    STARTUP_SECONDS["dc"] = time.monotonic() - start
    STARTUP_SECONDS.update({f"dc.{step}": seconds for step, seconds in server.timings.items()})
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def dc_firewall(dc: testbed.SambaDC) -> Iterator[testbed.Firewall]:
    """:class:`testbed.FirewallPorts` installed in the DC's namespace (rules plus listeners).

    Use ``dc_firewall.address``, ``dc_firewall.ports.tcp_drop`` ..., and ``dc_firewall.blocked("tcp",
    389)`` to DROP a DC port for the length of a ``with`` block.
    """
    testbed.require_netns()
    start = time.monotonic()
    firewall = testbed.Firewall.install(dc.ns)
    STARTUP_SECONDS["dc_firewall"] = time.monotonic() - start
    try:
        yield firewall
    finally:
        firewall.remove()


@pytest.fixture(scope="session")
def snmp_peer() -> Iterator[testbed.SnmpPeer]:
    """snmpd in its own namespace: community ``pqsecret``, sysDescr ``snmp_peer.sys_descr``."""
    testbed.require_netns("snmpd", "snmpget")
    start = time.monotonic()
    peer = testbed.SnmpPeer.start()
    STARTUP_SECONDS["snmp_peer"] = time.monotonic() - start
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture(scope="session")
def dns_peer() -> Iterator[testbed.DnsPeer]:
    """dnsmasq in its own namespace, authoritative for ``peer.test`` (``www.peer.test`` A)."""
    testbed.require_netns("dnsmasq")
    start = time.monotonic()
    peer = testbed.DnsPeer.start()
    STARTUP_SECONDS["dns_peer"] = time.monotonic() - start
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture
def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0 where you can instead)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port

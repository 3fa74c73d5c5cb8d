"""Integration test bed: network namespaces with real peers (Samba AD DC, snmpd, dnsmasq).

A library, not a test module. Everything here needs root and ``ip netns``; call :func:`require_netns`
first (the fixtures in ``tests/conftest.py`` do). Import it as ``from tests import testbed`` (or from its
modules, ``tests.testbed.netns`` ...), never as a top-level ``testbed``: there is one registry of live
namespaces and one exit hook, and ``tests/test_testbed.py`` checks that no second copy is loaded.

One module per part:

=============  ==================================================================================
``netns``      :class:`Namespace`: a veth pair, one /24, iptables rules, processes inside, a direct
               link to another namespace; the registry of live namespaces and blackholed /24s
               and the ``atexit`` hook that tears them down
``samba``      :class:`SambaDC`: a provisioned Samba AD DC (``PQTEST.TEST``, ``dc1.pqtest.test``)
``samba_join`` :class:`JoinedDC`: a second DC (``dc2.pqtest.test``) joined to it, site ``Branch-Site``
``firewall``   :class:`FirewallPorts`, :class:`Firewall`: DROP/REJECT rules with listeners behind them
``snmpd``      :class:`SnmpPeer`: net-snmp ``snmpd``, community ``pqsecret``
``smbd``       :class:`SmbdPeer`: a standalone ``smbd`` with SMB signing disabled (not a DC)
``dnsmasq``    :class:`DnsPeer`: ``dnsmasq`` authoritative for ``peer.test``
``start``      :func:`start_peer`, :func:`close_peer`: the one start and stop routine of every peer
``preflight``  :func:`require_netns`, :func:`netns_unavailable_reason`: can the test bed run here?
``commands``   :func:`run`, :func:`wait_tcp`, :func:`make_tempdir`, :class:`TestbedError`
``leftovers``  :func:`cleanup_leftovers`: what killed sessions left behind
``listener``   the TCP-listen / UDP-echo helper process run inside a namespace
=============  ==================================================================================

Network rule: every namespace gets its own /24 inside 198.18.0.0/15 (RFC 2544 benchmarking range):
the host end of its veth pair is ``198.18.N.1``, the namespace end ``198.18.N.2``. Nothing here sends
traffic anywhere else. No namespace has a default route, so a peer that tries to reach the outside
world gets ``ENETUNREACH`` instead of a packet on the wire. The second DC's /24 is routed to a
blackhole in the root namespace once its veth is gone (its records outlive it in the first DC's
DNS). The Samba DCs' ``dns forwarder`` line is removed right after provisioning (or joining) and its
absence is checked. IP forwarding is never enabled.

Names: namespaces are ``pq-<pid>-<n>-<tag>``, host veth ends ``pq<pid>h<n>``, temporary directories
``$TMPDIR/pq-<pid>-*``. Leftovers of earlier runs whose pid no longer exists are removed at the first
namespace creation of a session (:func:`cleanup_leftovers`).

Check by hand while a session runs::

    ip netns list                       # pq-<pid>-...
    ip netns exec pq-<pid>-0-dc ss -ltnup
    ip netns exec pq-<pid>-0-dc iptables -v -S INPUT
    ip -4 route show type blackhole     # 198.18.M.0/24 metric <pid> (the second DC's)
"""

from __future__ import annotations

from tests.testbed.commands import PREFIX, TestbedError, make_tempdir, run, wait_tcp
from tests.testbed.dnsmasq import DnsPeer
from tests.testbed.firewall import Firewall, FirewallPorts
from tests.testbed.leftovers import cleanup_leftovers
from tests.testbed.netns import ICMP_DETERMINISTIC_SYSCTLS, SUBNET_FMT, Namespace, blackholes, release_blackhole
from tests.testbed.preflight import is_ci, netns_unavailable_reason, require_netns
from tests.testbed.samba import DEFAULT_SITE, SambaDC
from tests.testbed.samba_join import BRANCH_SITE, JoinedDC
from tests.testbed.smbd import SmbdPeer
from tests.testbed.snmpd import SnmpPeer
from tests.testbed.start import Peer, close_peer, start_peer

__all__ = [
    "BRANCH_SITE",
    "DEFAULT_SITE",
    "ICMP_DETERMINISTIC_SYSCTLS",
    "PREFIX",
    "SUBNET_FMT",
    "DnsPeer",
    "Firewall",
    "FirewallPorts",
    "JoinedDC",
    "Namespace",
    "Peer",
    "SambaDC",
    "SmbdPeer",
    "SnmpPeer",
    "TestbedError",
    "blackholes",
    "cleanup_leftovers",
    "close_peer",
    "is_ci",
    "make_tempdir",
    "netns_unavailable_reason",
    "release_blackhole",
    "require_netns",
    "run",
    "start_peer",
    "wait_tcp",
]

"""The one start routine of every peer (namespace, work directory, launch, rollback) and its stop routine.

:func:`start_peer` is what ``SambaDC.start``, ``SnmpPeer.start`` and ``DnsPeer.start`` call. It
creates the namespace ``pq-<pid>-<N>-<tag>`` and ``$TMPDIR/pq-<pid>-<tag>-XXXX``, builds the peer
from the two, runs the peer's launch step (write config, start the daemon, wait until it answers),
and records how long the steps took in ``peer.timings`` (seconds: ``namespace``, ``start`` and any
step the peer's launch records itself, such as the DC's ``provision``). If anything fails, also on
``KeyboardInterrupt``, the peer is closed, which stops its processes and removes the namespace and the
directory: nothing is left behind.

:func:`close_peer` is the way back, used by every peer's ``close``: the peer's own stop step (if any),
then the namespace (every process still inside is stopped) and the work directory.

Check by hand after a failed start or a close: ``ip netns list | grep "pq-$PID-"`` and ``ls -d $TMPDIR/pq-$PID-*``
print nothing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from tests.testbed.commands import make_tempdir
from tests.testbed.netns import Namespace


class Peer(Protocol):
    """What :func:`start_peer` needs of a peer: step timings and a ``close`` that undoes everything."""

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per start-up step."""
        ...

    def close(self) -> None:
        """Stop the peer's processes, delete its namespace and its work directory; safe to call twice."""
        ...


P = TypeVar("P", bound=Peer)


def start_peer(
    tag: str, build: Callable[[Namespace, Path], P], launch: Callable[[P], None], *, blackhole: bool = False
) -> P:
    """Create a namespace and a work directory, build the peer, launch it; close it on any failure.

    Args:
        tag: short role name (``dc``, ``snmp``, ``dns``): part of the namespace and directory names.
        build: makes the peer object from its namespace and work directory (usually the class).
        launch: starts the peer's daemon and waits until it serves (raises ``TestbedError`` if not).
        blackhole: create the namespace with ``blackhole=True`` (its /24 stays blackholed in the root
            namespace after the peer is closed, until the session ends; see ``tests.testbed.netns``).

    Returns:
        The running peer; ``peer.timings["namespace"]`` is the time spent creating the namespace,
        ``peer.timings["start"]`` the launch (unless the launch set it itself).

    Raises:
        TestbedError: a step failed; the namespace and the directory are gone again.
    """
    start = time.monotonic()
    ns = Namespace.create(tag, blackhole=blackhole)
    try:
        work_dir = make_tempdir(tag)
    except BaseException:
        ns.teardown()
        raise
    peer = build(ns, work_dir)
    peer.timings["namespace"] = time.monotonic() - start
    launched = time.monotonic()
    try:
        launch(peer)
    except BaseException:
        peer.close()
        raise
    peer.timings.setdefault("start", time.monotonic() - launched)
    return peer


def close_peer(ns: Namespace, work_dir: Path, stop: Callable[[], None] | None = None) -> None:
    """Stop a peer: run ``stop`` (if given), then tear the namespace down and remove the work directory.

    The namespace teardown stops every process started with :meth:`Namespace.popen` and kills whatever
    else is left inside, so ``stop`` is only for a daemon that needs a gentler shutdown first (samba).
    Safe to call twice; the namespace and the directory go even when ``stop`` raises.
    """
    try:
        if stop is not None:
            stop()
    finally:
        ns.teardown()
        shutil.rmtree(work_dir, ignore_errors=True)

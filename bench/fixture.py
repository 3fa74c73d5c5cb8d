"""Benchmark target: one network namespace with 1,000 TCP and 300 UDP ports of known state.

Layout (ports shuffled with a fixed seed so that states are interleaved, identical on every run):

| proto | ports         | count | what is there                   | expected state          |
|-------|---------------|-------|---------------------------------|-------------------------|
| tcp   | 20000-20999   | 300   | listener (accepts, closes)      | listening               |
|       |               | 600   | nothing                         | not_listening           |
|       |               | 100   | iptables DROP                   | filtered                |
| udp   | 30000-30299   | 100   | echo listener                   | listening               |
|       |               | 150   | nothing (ICMP port unreachable) | not_listening           |
|       |               | 50    | iptables DROP                   | listening_or_filtered   |

``icmp_deterministic=False`` keeps the kernel's ICMP rate limits inside the namespace, as on a real
host: the ground truth stays the same, but a prober that does not pace UDP will see many closed
UDP ports as silent (testbed.md, "ICMP rate limiting").

Usage (root)::

    from bench.fixture import bench_namespace
    with bench_namespace(icmp_deterministic=True) as (address, truth):
        ...  # probe address; compare with truth[("tcp", 20000)] etc.

Check by hand while it runs: ``ip netns exec pq-<pid>-<n>-bench ss -Hltn | wc -l`` (300) and
``... iptables -S INPUT | grep -c DROP`` (150).
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Iterator
from typing import Final, Literal

from tests import testbed

State = Literal["listening", "not_listening", "filtered", "listening_or_filtered"]
"""Expected port state, in the exporter's words (``portqry_port_state`` values)."""

Truth = dict[tuple[str, int], State]
"""``{(proto, port): expected state}``, proto ``"tcp"`` or ``"udp"``."""

TCP_BASE: Final = 20000
UDP_BASE: Final = 30000
TCP_COUNTS: Final[dict[str, int]] = {"listening": 300, "not_listening": 600, "filtered": 100}
UDP_COUNTS: Final[dict[str, int]] = {"listening": 100, "not_listening": 150, "listening_or_filtered": 50}
SEED: Final = 1701
"""Seed of the port shuffle; the layout is the same on every run."""


def build_truth(seed: int = SEED) -> Truth:
    """The ground truth for every port (pure: no namespace needed).

    Args:
        seed: shuffle seed.

    Returns:
        1,300 entries: 1,000 TCP ports from :data:`TCP_BASE`, 300 UDP ports from :data:`UDP_BASE`.
    """
    rng = random.Random(seed)
    truth: Truth = {}
    for proto, base, counts in (("tcp", TCP_BASE, TCP_COUNTS), ("udp", UDP_BASE, UDP_COUNTS)):
        states: list[State] = []
        for state, count in counts.items():
            states.extend([state] * count)  # type: ignore[list-item]
        rng.shuffle(states)
        truth.update({(proto, base + offset): state for offset, state in enumerate(states)})
    return truth


def _drop_rules(truth: Truth) -> str:
    lines = ["*filter"]
    for (proto, port), state in sorted(truth.items()):
        if state in ("filtered", "listening_or_filtered"):
            lines.append(f"-A INPUT -p {proto} -m {proto} --dport {port} -j DROP")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _self_check(address: str, truth: Truth) -> None:
    """Probe one port of each cheap kind (no DROP: that would cost a timeout)."""
    tcp_open = next(port for (proto, port), s in truth.items() if proto == "tcp" and s == "listening")
    tcp_closed = next(port for (proto, port), s in truth.items() if proto == "tcp" and s == "not_listening")
    udp_open = next(port for (proto, port), s in truth.items() if proto == "udp" and s == "listening")
    with socket.create_connection((address, tcp_open), timeout=2.0):
        pass
    try:
        with socket.create_connection((address, tcp_closed), timeout=2.0):
            raise RuntimeError(f"bench: tcp/{tcp_closed} should be closed but accepted")
    except ConnectionRefusedError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.connect((address, udp_open))
        sock.send(b"bench-self-check")
        if sock.recv(64) != b"bench-self-check":
            raise RuntimeError(f"bench: udp/{udp_open} echo returned something else")


@contextlib.contextmanager
def bench_namespace(icmp_deterministic: bool = True) -> Iterator[tuple[str, Truth]]:
    """Build the benchmark namespace; tear it down on exit, also after an error.

    Needs root and ``ip netns`` (raises otherwise; under pytest call ``testbed.require_netns()``
    first to skip cleanly). Start-up takes about 0.2-0.5 s.

    Args:
        icmp_deterministic: lift the ICMP error rate limits inside the namespace; ``False`` keeps
            the kernel defaults (``icmp_ratelimit=1000`` ms, ``icmp_msgs_per_sec=1000``, burst 50).

    Yields:
        ``(address, truth)``: the namespace's IPv4 address (``198.18.N.2``, reachable from the root
        namespace) and the ground truth (see :func:`build_truth`).

    Raises:
        RuntimeError: not root, or the namespace could not be built (``testbed.TestbedError``).
    """
    reason = testbed.netns_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"bench namespace unavailable: {reason}")
    truth = build_truth()
    ns = testbed.Namespace.create("bench", icmp_deterministic=icmp_deterministic)
    try:
        ns.start_listeners(
            tcp=sorted(port for (proto, port), s in truth.items() if proto == "tcp" and s == "listening"),
            udp_echo=sorted(port for (proto, port), s in truth.items() if proto == "udp" and s == "listening"),
            timeout=30.0,
        )
        ns.run(["iptables-restore", "--noflush", "-w", "5"], input_text=_drop_rules(truth))
        _self_check(ns.address, truth)
        yield ns.address, truth
    finally:
        ns.teardown()


def main() -> int:
    """Build the namespace, print a summary and the start-up time, tear it down (a manual check)."""
    import time

    for deterministic in (True, False):
        start = time.monotonic()
        with bench_namespace(icmp_deterministic=deterministic) as (address, truth):
            ready = time.monotonic() - start
            counts: dict[tuple[str, str], int] = {}
            for (proto, _port), state in truth.items():
                counts[(proto, state)] = counts.get((proto, state), 0) + 1
            print(f"icmp_deterministic={deterministic} address={address} ready in {ready:.2f} s: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: ``portqry -n ADDRESS -r START:END`` against the bench namespace, next to the serial bound.

PortQry probes a range one port at a time ("its performance has not been optimized", PortQry Remarks): a
silent TCP port costs ``timeout x 3`` tries, so the serial bound of a range is ``ports x timeout x tries``.
Our ``portqry`` runs the range through the engine (``--concurrency`` probes in flight), printing in port
order.

Scenarios (all against :func:`bench.fixture.bench_namespace`, a network namespace with known port states):

* ``tcp 1:1024``       the literal ``-r 1:1024``: nothing listens there, every port answers RST at once;
* ``tcp 20000:21023``  1,024 ports: 300 listening, 624 closed, 100 DROPped (silent, the slow kind);
* ``udp 30000:30299``  (with ``--udp``) 300 ports: 100 echo, 150 closed, 50 DROPped; paced per
  ``--udp-pacing`` (the CLI default 0.25 s keeps Linux's ICMP rate limit from turning closed into silent).

Each scenario runs the real command in a subprocess (interpreter start included), with ``--json``, and the
states are checked against the namespace's ground truth.

Run (root, ``ip netns``; about 10-20 s for TCP, plus ~75 s for ``--udp`` at the default pacing)::

    python -m bench.cli_range                      # timeout 1 s, concurrency 256
    python -m bench.cli_range --timeout 2 --concurrency 1024 --udp --udp-pacing 0
    python -m bench.cli_range --real-icmp --udp    # keep the kernel's ICMP rate limits in the namespace

Output: one line per scenario: ports, wall seconds, serial bound seconds, speed-up, states right / total.

Measured on the development VM (wall seconds; serial bound in brackets):

=========================================  ===============  =================  ==================
run                                        tcp 1:1024       tcp 20000:21023    udp 30000:30299
=========================================  ===============  =================  ==================
timeout 1, concurrency 256, pacing 0.25    0.4 (3,072)      3.4 (3,072)        75 (300), 300/300
timeout 2, concurrency 1024, pacing 0      0.4 (6,144)      6.6 (6,144)        2.3 (600), 300/300
kernel ICMP limits, pacing 0               0.4              3.4                1.4, 156/300 right
kernel ICMP limits, pacing 0.25            0.4              3.4                75, 230/300 right
=========================================  ===============  =================  ==================

Every TCP state was right in every run.  UDP under the kernel's ICMP rate limit (about one port unreachable
per second per peer after a burst) needs ``--udp-pacing 1`` to keep every closed port NOT LISTENING; faster
pacing turns some closed ports into LISTENING or FILTERED.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.fixture import Truth, bench_namespace

#: PortQry's tries per port: TCP 3, UDP 1.
TRIES = {"tcp": 3, "udp": 1}


@dataclass(frozen=True)
class Outcome:
    """One scenario's figures (seconds)."""

    label: str
    ports: int
    wall: float
    serial_bound: float
    right: int
    checked: int
    exit_code: int


def portqry_command() -> list[str]:
    """The installed ``portqry`` console script, else ``python -m exporter.cli``."""
    found = shutil.which("portqry")
    return [found] if found else [sys.executable, "-m", "exporter.cli"]


def run_scenario(
    address: str,
    truth: Truth,
    proto: str,
    first: int,
    last: int,
    *,
    timeout: float,
    concurrency: int,
    udp_pacing: float,
) -> Outcome:
    """Run ``portqry -n address -p proto -r first:last --json`` once and score it against ``truth``.

    Ports absent from ``truth`` (``1:1024``) are expected NOT LISTENING (nothing there, no rule).
    """
    argv = [
        *portqry_command(),
        "-n", address, "-nr", "-p", proto, "-r", f"{first}:{last}", "--json",
        "--timeout", str(timeout), "--concurrency", str(concurrency), "--udp-pacing", str(udp_pacing),
    ]  # fmt: skip
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
    wall = time.monotonic() - start
    states = {}
    for line in done.stdout.splitlines():
        row = json.loads(line)
        states[row["port"]] = row["state"]
    right = sum(1 for port, state in states.items() if truth.get((proto, port), "not_listening") == state)
    ports = last - first + 1
    return Outcome(
        label=f"{proto} {first}:{last}",
        ports=ports,
        wall=wall,
        serial_bound=ports * timeout * TRIES[proto],
        right=right,
        checked=ports if len(states) == ports else len(states),
        exit_code=done.returncode,
    )


def main(argv: list[str] | None = None) -> int:
    """Build the namespace, run the scenarios, print the table; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per try (default 1)")
    parser.add_argument("--concurrency", type=int, default=256, help="probes in flight (default 256)")
    parser.add_argument("--udp", action="store_true", help="also run the UDP scenario (slow when paced)")
    parser.add_argument("--udp-pacing", type=float, default=0.25, help="seconds between UDP datagrams")
    parser.add_argument("--real-icmp", action="store_true", help="keep the kernel's ICMP rate limits")
    args = parser.parse_args(argv)
    scenarios = [("tcp", 1, 1024), ("tcp", 20000, 21023)]
    if args.udp:
        scenarios.append(("udp", 30000, 30299))
    icmp = "kernel limits" if args.real_icmp else "deterministic"
    print(
        f"portqry -r benchmark: timeout {args.timeout:g} s, concurrency {args.concurrency}, "
        f"udp pacing {args.udp_pacing:g} s, icmp {icmp}"
    )
    head = f"{'scenario':<18}{'ports':>6}{'wall s':>9}{'serial bound s':>16}{'speed-up':>10}"
    print(f"{head}{'states right':>15}")
    with bench_namespace(icmp_deterministic=not args.real_icmp) as (address, truth):
        for proto, first, last in scenarios:
            o = run_scenario(
                address, truth, proto, first, last,
                timeout=args.timeout, concurrency=args.concurrency, udp_pacing=args.udp_pacing,
            )  # fmt: skip
            speedup = o.serial_bound / o.wall
            print(
                f"{o.label:<18}{o.ports:>6}{o.wall:>9.2f}{o.serial_bound:>16.0f}{speedup:>9.0f}x"
                f"{o.right:>9}/{o.checked:<5} (exit {o.exit_code})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

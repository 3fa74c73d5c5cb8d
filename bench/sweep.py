"""Benchmark: one sweep of the bench namespace through the engine, and nmap on the same fixture.

    sudo python -m bench.sweep                     # deterministic ICMP in the namespace
    sudo python -m bench.sweep --icmp-default      # the kernel's ICMP rate limits, as on a real host

The fixture (``bench/fixture.py``): 1,000 TCP ports (300 listening, 600 closed, 100 DROPped) and 300 UDP
ports (100 answering, 150 closed, 50 DROPped).  Each sweep runs as a child process; wall seconds, CPU
seconds (user + system) and peak RSS come from ``wait4()`` of that child, so interpreter start and
imports are included.  Accuracy is the share of ports whose state equals the ground truth (nmap's
open/closed/filtered/open|filtered are mapped to ours).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from bench.fixture import TCP_BASE, TCP_COUNTS, UDP_BASE, UDP_COUNTS, Truth, bench_namespace

ROOT = Path(__file__).resolve().parent.parent
NMAP_STATES = {
    "open": "listening",
    "closed": "not_listening",
    "filtered": "filtered",
    "open|filtered": "listening_or_filtered",
}


@dataclass
class Run:
    """Figures of one measured child process."""

    name: str
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    ports: int
    correct: int
    note: str = ""

    @property
    def probes_per_second(self) -> float:
        """Ports probed per wall second."""
        return self.ports / self.wall_seconds if self.wall_seconds else 0.0

    def line(self) -> str:
        """One table row."""
        accuracy = 100.0 * self.correct / self.ports if self.ports else 0.0
        return (
            f"| {self.name} | {self.ports} | {self.wall_seconds:.2f} | {self.cpu_seconds:.2f} | {self.peak_rss_mb:.1f} "
            f"| {self.probes_per_second:.0f} | {accuracy:.1f} % | {self.note} |"
        )


def measure(argv: list[str]) -> tuple[float, float, float, bytes]:
    """Run ``argv``; return (wall s, CPU s, peak RSS MB, stdout) from wait4()."""
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        data = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, data


def engine_run(
    address: str,
    proto: str,
    first: int,
    last: int,
    truth: Truth,
    args: argparse.Namespace,
) -> Run:
    """Sweep with the engine in a child process."""
    argv = [
        sys.executable,
        "-m",
        "bench.engine_sweep",
        address,
        proto,
        str(first),
        str(last),
        "--timeout",
        str(args.timeout),
        "--tries",
        str(args.tries),
        "--concurrency",
        str(args.concurrency),
        "--udp-pacing",
        str(args.udp_pacing if proto == "udp" else 0.0),
    ]
    wall, cpu, rss, out = measure(argv)
    doc = json.loads(out)
    states = doc["states"]
    correct = sum(1 for port, state in states.items() if truth[(proto, int(port))] == state)
    note = f"{args.tries} tries x {args.timeout:g} s, {args.concurrency} in flight (max seen {doc['max_in_flight']})"
    if proto == "udp":
        note = f"1 try x {args.timeout:g} s, pacing {args.udp_pacing:g} s/address"
    return Run(f"engine {proto}", wall, cpu, rss, len(states), correct, note)


def nmap_run(
    address: str,
    proto: str,
    first: int,
    last: int,
    truth: Truth,
    args: argparse.Namespace,
) -> Run | None:
    """The same sweep with nmap -sT / -sU."""
    nmap = shutil.which("nmap")
    if nmap is None:
        return None
    scan = "-sT" if proto == "tcp" else "-sU"
    with tempfile.NamedTemporaryFile(suffix=".xml") as xml:
        argv = [
            nmap,
            scan,
            "-Pn",
            "-n",
            "--max-retries",
            str(args.tries - 1 if proto == "tcp" else 0),
            "-p",
            f"{first}-{last}",
            "-oX",
            xml.name,
            address,
        ]
        wall, cpu, rss, _ = measure(argv)
        root = ET.parse(xml.name).getroot()
    found: dict[int, str] = {}
    for host in root.iter("host"):
        for extra in host.iter("extraports"):  # collapsed ports: their lists are in <extrareasons ports=...>
            state = NMAP_STATES.get(extra.get("state", ""), "?")
            for reasons in extra.iter("extrareasons"):
                for part in filter(None, reasons.get("ports", "").split(",")):
                    low, _, high = part.partition("-")
                    for port in range(int(low), int(high or low) + 1):
                        found[port] = state
        for port_el in host.iter("port"):
            state_el = port_el.find("state")
            if state_el is not None:
                found[int(port_el.get("portid", "0"))] = NMAP_STATES.get(state_el.get("state", ""), "?")
    ports = range(first, last + 1)
    correct = sum(1 for p in ports if found.get(p) == truth[(proto, p)])
    return Run(f"nmap {scan}", wall, cpu, rss, len(ports), correct, f"--max-retries {argv[5]}")


def main() -> int:
    """Build the fixture, run the sweeps, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--icmp-default", action="store_true", help="keep the kernel's ICMP rate limits")
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--udp-pacing", type=float, default=0.0, help="seconds between UDP datagrams to the address")
    parser.add_argument("--no-nmap", action="store_true")
    args = parser.parse_args()
    tcp_last = TCP_BASE + sum(TCP_COUNTS.values()) - 1
    udp_last = UDP_BASE + sum(UDP_COUNTS.values()) - 1
    runs: list[Run] = []
    with bench_namespace(icmp_deterministic=not args.icmp_default) as (address, truth):
        runs.append(engine_run(address, "tcp", TCP_BASE, tcp_last, truth, args))
        runs.append(engine_run(address, "udp", UDP_BASE, udp_last, truth, args))
        if not args.no_nmap:
            for proto, first, last in (("tcp", TCP_BASE, tcp_last), ("udp", UDP_BASE, udp_last)):
                run = nmap_run(address, proto, first, last, truth, args)
                if run is not None:
                    runs.append(run)
    print(f"ICMP limits in the namespace: {'kernel defaults' if args.icmp_default else 'lifted (deterministic)'}")
    print("| sweep | ports | wall s | CPU s | peak RSS MB | probes/s | accuracy | settings |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(run.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The two child processes of the discovery benchmark (``bench/discovery.py``).

    ip netns exec NS python3 -m bench.discovery_child serve SPEC.json   # the fake DCs, inside the namespace
    python3 -m bench.discovery_child discover --dns-port P --runs 5 ... # the measured discovery, root namespace

``serve`` binds one UDP socket per address (``tests/cldap.py``, ``cldap_service``), prints ``READY <n>`` and
then answers on stdin: ``stats`` prints one JSON line ``{"pings": {address: count}}`` (LDAP pings so far);
end of input, SIGTERM or ``--max-seconds`` ends it.

``discover`` builds the domain plan and the engine the way the daemon does (a config TOML, ``load_config``,
``domain_plans``, the engine from ``[exporter]`` and ``[resolver]``), runs :func:`exporter.discovery.discover`
``--runs`` times (one resolver for all runs as in the daemon, a fresh engine per run so that each run's
``max_in_flight`` is its own) and prints one JSON document on stdout.  Its only peers are the DNS server on
127.0.0.1 and the addresses the SRV records name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import select
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONFIG = """\
[exporter]
concurrency = {concurrency}
udp_pacing_seconds = {pacing}
[resolver]
nameservers = ["127.0.0.1"]
port = {dns_port}
timeout_seconds = 2.0
[[domains]]
name = "{domain}"
"""


def serve(args: argparse.Namespace) -> int:
    """Serve the fake DCs of ``args.spec`` until stdin closes, SIGTERM, or ``args.max_seconds``."""
    from tests.cldap import FakeDC, cldap_service

    spec = json.loads(Path(args.spec).read_text())
    dcs = {
        address: FakeDC(d["host"], d["domain"], d["site"], d["client_site"], tuple(d["roles"]))
        for address, d in spec["dcs"].items()
    }
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deadline = time.monotonic() + args.max_seconds
    with cldap_service(dcs, port=spec["port"]) as service:
        print(f"READY {len(service.ports)}", flush=True)
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sys.stdin], [], [], min(left, 1.0))
            if not ready:
                continue
            line = sys.stdin.readline()
            if not line:
                break
            if line.strip() == "stats":
                print(json.dumps({"pings": dict(service.pings)}), flush=True)
    return 0


async def _discover(args: argparse.Namespace) -> dict[str, Any]:
    from exporter.config import load_config
    from exporter.discovery import discover, srv_names
    from exporter.engine import Engine
    from exporter.plan import domain_plans
    from exporter.resolve import Resolver

    with tempfile.TemporaryDirectory(prefix="pq-bench-discovery-") as tmp:
        path = Path(tmp) / "discovery.toml"
        path.write_text(
            CONFIG.format(
                concurrency=args.concurrency, pacing=args.udp_pacing, dns_port=args.dns_port, domain=args.domain
            )
        )
        settings = load_config(path)
    [plan] = domain_plans(settings)
    r = settings.resolver
    resolver = Resolver(r.nameservers, port=r.port, timeout=r.timeout_seconds, prefer=r.prefer)  # as the daemon
    runs = []
    for _ in range(args.runs):
        engine = Engine(
            concurrency=settings.exporter.concurrency,
            udp_pacing_seconds=settings.exporter.udp_pacing_seconds,
            resolver=resolver,
            udp_recheck_max=settings.exporter.udp_recheck_max,
            udp_recheck_gap_seconds=settings.exporter.udp_recheck_gap_seconds,
        )
        started = time.perf_counter()
        found = await asyncio.wait_for(discover(plan, engine), timeout=args.timeout)
        wall = time.perf_counter() - started
        started = time.perf_counter()
        records = await resolver.srv(srv_names(plan.name)[0])  # the SRV read alone (UDP, TC, again over TCP)
        srv_seconds = time.perf_counter() - started
        runs.append(
            {
                "wall": wall,
                "duration": found.duration_seconds,
                "srv_seconds": srv_seconds,
                "srv_records": len(records),
                "ok": found.ok,
                "error": found.error,
                "max_in_flight": engine.max_in_flight,
                "concurrency": engine.concurrency,
                "dcs": [
                    {
                        "host": dc.host,
                        "address": dc.address,
                        "site": dc.site,
                        "client_site": dc.client_site,
                        "roles": sorted(dc.roles),
                        "error": dc.error,
                    }
                    for dc in found.dcs
                ],
            }
        )
        await asyncio.sleep(args.gap)
    return {"runs": runs}


def main() -> int:
    """Entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="the fake DCs (run inside the namespace)")
    s.add_argument("spec", help="JSON file: {port, dcs: {address: {host, domain, site, client_site, roles}}}")
    s.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long whatever happens")
    d = sub.add_parser("discover", help="the measured discovery runs")
    d.add_argument("--dns-port", type=int, required=True)
    d.add_argument("--domain", default="bench.test")
    d.add_argument("--runs", type=int, default=5)
    d.add_argument("--concurrency", type=int, default=256)
    d.add_argument("--udp-pacing", type=float, default=0.25)
    d.add_argument("--gap", type=float, default=0.2, help="seconds between runs")
    d.add_argument("--timeout", type=float, default=30.0, help="seconds one discover() may take")
    args = parser.parse_args()
    if args.command == "serve":
        return serve(args)
    json.dump(asyncio.run(_discover(args)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

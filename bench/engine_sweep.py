"""One sweep through the engine, as its own process (so the benchmark measures interpreter start too).

    python -m bench.engine_sweep ADDRESS PROTO FIRST LAST --timeout 1 --tries 3 --concurrency 256

Prints one JSON object: ``{"states": {"PORT": "state", ...}, "max_in_flight": N}``.  Imports only the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from exporter.engine import Engine
from exporter.model import ProbeOptions
from exporter.probes import port_spec
from exporter.resolve import literal


async def sweep(args: argparse.Namespace) -> dict[str, object]:
    """Probe ``args.first..args.last`` of ``args.proto`` on ``args.address``; returns the JSON document."""
    engine = Engine(
        concurrency=args.concurrency,
        udp_pacing_seconds=args.udp_pacing,
        udp_recheck_max=args.udp_recheck_max,
    )
    resolved = literal(args.address)
    assert resolved is not None, "ADDRESS must be an IP literal"
    specs = [port_spec(args.proto, port, service="-", binding="") for port in range(args.first, args.last + 1)]
    options = ProbeOptions(
        timeout_seconds=args.timeout, tcp_tries=args.tries, udp_tries=args.udp_tries, protocol_probes=False
    )
    results = await engine.probe_target("bench", args.address, specs, options, resolved=resolved)
    return {"states": {str(r.port): r.state.value for r in results}, "max_in_flight": engine.max_in_flight}


def main() -> int:
    """Entry point; prints the JSON document on stdout."""
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("proto", choices=["tcp", "udp"])
    parser.add_argument("first", type=int)
    parser.add_argument("last", type=int)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--udp-tries", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--udp-pacing", type=float, default=0.0)
    parser.add_argument("--udp-recheck-max", type=int, default=0, help="0: one pass, as the benchmark measures")
    args = parser.parse_args()
    json.dump(asyncio.run(sweep(args)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

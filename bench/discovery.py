"""Benchmark: domain discovery (issue 10) of N fake DCs: the SRV records, then one LDAP ping per DC.

    sudo python3 -m bench.discovery                                    # N=100, 5 runs, 256 and 16 in flight
    sudo python3 -m bench.discovery --dcs 100 --runs 5 --concurrency 256 --udp-pacing 0.25 --also-concurrency 16

What it measures: :func:`exporter.discovery.discover` (read ``_ldap._tcp.dc._msdcs.bench.test``, resolve every
target, send each DC the CLDAP LDAP ping of MS-ADTS 6.3.3 at the SRV port, through the engine's concurrency
limit and UDP pacing), with the plan and the engine built the way the daemon builds them (a config TOML,
``load_config``, ``domain_plans``, the engine from ``[exporter]``, the resolver from ``[resolver]``).  Per run:
the wall time of ``discover()``, accuracy (DCs listed with the right address, site, client site and roles and
no error, out of N),
the engine's ``max_in_flight`` (it must not exceed the limit).  The runs of one setting share one child process,
measured with ``wait4()`` (CPU seconds, peak RSS, interpreter start and imports included); its first run is cold
(dnspython and the probes are imported lazily inside ``discover()``).  Exit status 1 when a run is below 100 %,
``max_in_flight`` exceeds the limit, or the median of the main setting exceeds 2 s (the issue's goal); 2 when the
fixture could not be built (not root, the subnet taken) or a child failed; 130 after Ctrl-C.

Reading the figures: each DC costs two paced UDP slots before its ping leaves (the slot the engine reserves for
the UDP state probe, which sends nothing when a protocol probe follows, then the rootDSE search, then the ping),
so at ``--udp-pacing P`` with every DC in flight a run takes about ``2 P`` + 0.1 s; at 16 in flight the later
waves find their first slots already past and add ``P`` each: about ``2 P + (ceil(N / 16) - 1) P`` + 0.1 s.

The fixture, all of it built here and removed on exit (also after an error, Ctrl-C or SIGTERM):

- one network namespace (``tests.testbed.Namespace``: its registry and exit hook) whose veth pair also carries
  ``198.19.200.0/24`` (``--subnet``; the test bed uses 198.18.0.0/16): the root end ``.1``, the N DCs
  ``.10`` .. ``.(9+N)`` on the namespace end; no default route, no forwarding;
- inside it, one process (``bench.discovery_child serve``: ``tests/cldap.py``) answering the LDAP ping on UDP
  389 of every DC address, as ``dcI.bench.test`` in one of three sites (Hub 50 %, Branch-East 30 %,
  Branch-West 20 %; the client's site is Hub);
- a DNS server on 127.0.0.1 (``tests/dnsserver.py`` with ``tcp=True``): ``dcI.bench.test`` A records and the SRV
  set, N targets at port 389.  100 records are about 3.5 kB, more than a UDP reply may carry (512 bytes without
  EDNS), so the server truncates (TC) and the resolver reads the set again over TCP, as from AD DNS.

Nothing is sent anywhere but 127.0.0.1 and the namespace's addresses; the one name server is ours.

Check by hand while it runs (the namespace is ``pq-<pid>-<n>-disc``)::

    ip netns list | grep disc
    ip netns exec pq-<pid>-<n>-disc ss -Hlun 'sport = :389' | wc -l       # N sockets
    ip netns exec pq-<pid>-<n>-disc ip -4 -o addr show | grep -c 198.19.  # N addresses
    dig +tcp @127.0.0.1 -p <dns port> SRV _ldap._tcp.dc._msdcs.bench.test | grep -c 'IN SRV'
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tests import testbed
from tests.dnsserver import Srv, dns_server
from tests.testbed.commands import read_line

ROOT: Final = Path(__file__).resolve().parent.parent
DOMAIN: Final = "bench.test"
SRV_NAME: Final = f"_ldap._tcp.dc._msdcs.{DOMAIN}"
CLDAP_PORT: Final = 389
FIRST_HOST: Final = 10
"""The first DC's last octet; the DCs are ``.10`` .. ``.(9+N)`` of the subnet."""
SITES: Final = ("Hub",) * 5 + ("Branch-East",) * 3 + ("Branch-West",) * 2
"""Site of DC I is ``SITES[I % 10]``: 50 / 30 / 20 %."""
CLIENT_SITE: Final = "Hub"
GOAL_SECONDS: Final = 2.0


@dataclass(frozen=True)
class DC:
    """One fake DC: its SRV target, address, site and roles (what discovery must report)."""

    host: str
    address: str
    site: str
    roles: tuple[str, ...]


@dataclass
class Setting:
    """The figures of one setting (one child process, ``runs`` discoveries)."""

    concurrency: int
    pacing: float
    walls: list[float] = field(default_factory=list)
    srv_reads: list[float] = field(default_factory=list)
    correct: list[int] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu: float = 0.0
    rss_mb: float = 0.0
    process_wall: float = 0.0
    pings: int = 0

    def row(self, dcs: int) -> str:
        """One Markdown table row."""
        runs = len(self.walls)
        accuracy = 100.0 * sum(self.correct) / (dcs * runs) if runs else 0.0
        walls = self.walls or [0.0]
        return (
            f"| {self.concurrency} | {self.pacing:g} | {runs} | {statistics.median(walls):.3f} | {min(walls):.3f} "
            f"| {max(walls):.3f} | {walls[0]:.3f} | {1000 * statistics.median(self.srv_reads or [0.0]):.1f} "
            f"| {accuracy:.1f} % | {max(self.in_flight or [0])} "
            f"| {self.pings} | {self.process_wall:.2f} | {self.cpu:.2f} | {self.rss_mb:.1f} |"
        )


def fleet(dcs: int, network: ipaddress.IPv4Network) -> list[DC]:
    """The N fake DCs (pure): ``dcI.bench.test`` at ``network[9+I]``, sites by :data:`SITES`."""
    out = []
    for i in range(1, dcs + 1):
        site = SITES[i % len(SITES)]
        roles = ["ldap", "ds", "kdc", "timeserv", "writable"]
        if i == 1:
            roles.append("pdc")
        if site == "Hub":
            roles += ["gc", "closest"]
        out.append(DC(f"dc{i}.{DOMAIN}", str(network[FIRST_HOST - 1 + i]), site, tuple(roles)))
    return out


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the benchmark like Ctrl-C: through the ``finally`` blocks, namespace removed."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


@contextlib.contextmanager
def _subnet_lock(network: ipaddress.IPv4Network) -> Iterator[None]:
    """Hold ``$TMPDIR/pq-bench-discovery-<subnet>.lock`` for the whole run: two benchmarks, two subnets."""
    path = Path(tempfile.gettempdir()) / f"pq-bench-discovery-{network.network_address}.lock"
    with path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another bench.discovery uses {network}: pick another --subnet") from None
        yield


def _subnet_free(network: ipaddress.IPv4Network) -> None:
    prefix = ".".join(str(network.network_address).split(".")[:3]) + "."
    listing = testbed.run(["ip", "-4", "-o", "addr", "show"], timeout=10).stdout
    routes = testbed.run(["ip", "-4", "route", "show"], timeout=10).stdout
    if f"inet {prefix}" in listing or any(line.startswith(prefix) for line in routes.splitlines()):
        raise RuntimeError(f"{network} is already in use in the root namespace (another benchmark?): pick --subnet")


@contextlib.contextmanager
def fake_dcs(fleet_: list[DC], network: ipaddress.IPv4Network) -> Iterator[tuple[testbed.Namespace, Any]]:
    """The namespace with every DC address and the CLDAP service inside; torn down on exit.

    Yields:
        ``(namespace, helper process)``.
    """
    reason = testbed.netns_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"bench namespace unavailable: {reason}")
    with _subnet_lock(network):
        _subnet_free(network)
        with _namespace(fleet_, network) as found:
            yield found


@contextlib.contextmanager
def _namespace(fleet_: list[DC], network: ipaddress.IPv4Network) -> Iterator[tuple[testbed.Namespace, Any]]:
    """The namespace, its addresses and the fake DCs; :meth:`Namespace.teardown` and the temp dir's removal on exit."""
    tmp = testbed.make_tempdir("disc")
    ns = None
    try:
        ns = testbed.Namespace.create("disc", icmp_deterministic=True)  # registered: the exit hook is a backstop
        testbed.run(["ip", "addr", "add", f"{network[1]}/{network.prefixlen}", "dev", ns.veth_host])
        batch = "".join(f"addr add {dc.address}/{network.prefixlen} dev {ns.veth_ns}\n" for dc in fleet_)
        ns.run(["ip", "-batch", "-"], input_text=batch)
        spec = {
            "port": CLDAP_PORT,
            "dcs": {
                dc.address: {
                    "host": dc.host,
                    "domain": DOMAIN,
                    "site": dc.site,
                    "client_site": CLIENT_SITE,
                    "roles": list(dc.roles),
                }
                for dc in fleet_
            },
        }
        (tmp / "dcs.json").write_text(json.dumps(spec))
        proc = ns.popen([sys.executable, "-m", "bench.discovery_child", "serve", str(tmp / "dcs.json")], cwd=ROOT)
        assert proc.stdout is not None
        line = read_line(proc.stdout, time.monotonic() + 20.0)
        if line.split() != ["READY", str(len(fleet_))]:
            raise RuntimeError(f"fake DCs in {ns.name} did not start: {line!r}")
        bound = ns.run(["ss", "-Hlun", f"sport = :{CLDAP_PORT}"]).stdout.splitlines()
        if len(bound) != len(fleet_):
            raise RuntimeError(f"{len(bound)} UDP sockets on :{CLDAP_PORT} in {ns.name}, expected {len(fleet_)}")
        yield ns, proc
    finally:
        if ns is not None:
            ns.teardown()  # the helper, the veth pair (with it every address and route of the subnet), the namespace
        shutil.rmtree(tmp, ignore_errors=True)


def ping_counts(proc: Any) -> dict[str, int]:
    """Ask the fake DCs how many LDAP pings each address has answered so far."""
    proc.stdin.write("stats\n")
    proc.stdin.flush()
    line = read_line(proc.stdout, time.monotonic() + 5.0)
    if not line.startswith("{"):
        raise RuntimeError(f"fake DCs: no stats ({line!r})")
    return dict(json.loads(line)["pings"])


def measure(argv: list[str], timeout: float) -> tuple[float, float, float, bytes]:
    """Run ``argv`` (at most ``timeout`` s); return (wall s, CPU s, peak RSS MB, stdout) from ``wait4()``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        pid = 0
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT)
        try:
            while True:  # poll (WNOHANG) so the wait is bounded; Popen.wait() would reap before wait4()
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() - started > timeout:
                    raise RuntimeError(f"{' '.join(argv[:4])} still running after {timeout:.0f} s")
                time.sleep(0.01)
        finally:
            if not pid:
                proc.kill()
                os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        data, errors = out.read(), err.read()
    if code != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} exited {code}: {errors.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, data


def run_setting(fleet_: list[DC], dns_port: int, helper: Any, concurrency: int, args: argparse.Namespace) -> Setting:
    """``args.runs`` discoveries in one child process at ``concurrency``; every DC checked against the fleet."""
    argv = [
        sys.executable,
        "-m",
        "bench.discovery_child",
        "discover",
        "--dns-port",
        str(dns_port),
        "--domain",
        DOMAIN,
        "--runs",
        str(args.runs),
        "--concurrency",
        str(concurrency),
        "--udp-pacing",
        str(args.udp_pacing),
    ]
    before = ping_counts(helper)
    wall, cpu, rss, out = measure(argv, timeout=30.0 * args.runs + 30.0)
    after = ping_counts(helper)
    setting = Setting(concurrency, args.udp_pacing, cpu=cpu, rss_mb=rss, process_wall=wall)
    setting.pings = sum(after.values()) - sum(before.values())
    expected = {dc.host: dc for dc in fleet_}
    for run in json.loads(out)["runs"]:
        setting.walls.append(run["wall"])
        setting.srv_reads.append(run["srv_seconds"])
        if run["srv_records"] != len(fleet_):
            setting.errors.append(f"SRV read alone: {run['srv_records']} records, {len(fleet_)} in DNS")
        setting.in_flight.append(run["max_in_flight"])
        good = 0
        for found in run["dcs"]:
            want = expected.get(found["host"])
            if want and not found["error"] and (found["address"], found["site"]) == (want.address, want.site):
                good += 1
                if found["client_site"] != CLIENT_SITE or set(found["roles"]) != set(want.roles):
                    good -= 1
                    setting.errors.append(f"{found['host']}: {found['client_site']!r} {found['roles']}")
            elif found["error"] or not found["site"]:
                setting.errors.append(f"{found['host']}: {found['error'] or 'no site'}")
        if not run["ok"]:
            setting.errors.append(f"discovery failed: {run['error']}")
        if len(run["dcs"]) != len(fleet_):
            setting.errors.append(f"{len(run['dcs'])} DCs listed, {len(fleet_)} in DNS")
        setting.correct.append(good)
    return setting


def srv_wire_size(srv: dict[str, list[Srv]]) -> int:
    """Bytes of the SRV reply (question + N records), as the DNS server renders it."""
    import dns.message
    import dns.rrset

    query = dns.message.make_query(SRV_NAME, "SRV")
    reply = dns.message.make_response(query)
    rdatas = [f"{p} {w} {port} {t}." for p, w, port, t in srv[SRV_NAME]]
    reply.answer.append(dns.rrset.from_text_list(SRV_NAME + ".", 60, "IN", "SRV", rdatas))
    return len(reply.to_wire(max_size=65535))


def main() -> int:
    """Build the fixture, run each setting, print a Markdown table; 1 when a goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dcs", type=int, default=100, help="fake DCs (1-245)")
    parser.add_argument("--runs", type=int, default=5, help="discoveries per setting (1-50)")
    parser.add_argument("--concurrency", type=int, default=256, help="the engine's limit of the main setting")
    parser.add_argument("--udp-pacing", type=float, default=0.25, help="seconds between datagrams to one address")
    parser.add_argument("--also-concurrency", type=int, default=16, help="a second setting's limit (0: none)")
    parser.add_argument("--subnet", default="198.19.200.0/24", help="a /24 of 198.19.0.0/16 for the DCs")
    args = parser.parse_args()
    network = ipaddress.IPv4Network(args.subnet)
    if network.prefixlen != 24 or not network.subnet_of(ipaddress.IPv4Network("198.19.0.0/16")):
        parser.error("--subnet must be a /24 of 198.19.0.0/16 (198.18.0.0/16 is the test bed's)")
    if not 1 <= args.dcs <= 245 or not 1 <= args.runs <= 50 or args.concurrency < 1 or args.also_concurrency < 0:
        parser.error("--dcs 1-245, --runs 1-50, --concurrency >= 1")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces): sudo python3 -m bench.discovery")
    _stop_on_signals()
    fleet_ = fleet(args.dcs, network)
    records = {dc.host: dc.address for dc in fleet_}
    srv: dict[str, list[Srv]] = {SRV_NAME: [(0, 100, CLDAP_PORT, dc.host) for dc in fleet_]}
    limits = [args.concurrency] + ([args.also_concurrency] if args.also_concurrency else [])
    started = time.monotonic()
    with fake_dcs(fleet_, network) as (ns, helper), dns_server(records, srv=srv, tcp=True) as (_, dns_port, queries):
        print(f"namespace {ns.name}: {args.dcs} fake DCs at {fleet_[0].address}-{fleet_[-1].address} udp/{CLDAP_PORT}")
        print(f"DNS 127.0.0.1:{dns_port} (udp+tcp); ready in {time.monotonic() - started:.2f} s", flush=True)
        settings = [run_setting(fleet_, dns_port, helper, limit, args) for limit in limits]
    srv_udp = sum(1 for q in queries if q.startswith(SRV_NAME.lower()) and q.endswith("SRV tc"))
    srv_tcp = sum(1 for q in queries if q.startswith(SRV_NAME.lower()) and q.endswith("SRV tcp"))
    runs_total = sum(len(s.walls) for s in settings)
    size = srv_wire_size(srv)
    print(
        f"\nSRV reply: {args.dcs} records, {size} bytes: "
        + (f"truncated over UDP {srv_udp}x, read over TCP {srv_tcp}x" if size > 512 else "fits in UDP")
        + f" ({runs_total} runs, each discover() and the timed SRV read alone); DNS queries: {len(queries)}"
    )
    sites = {site: sum(1 for dc in fleet_ if dc.site == site) for site in dict.fromkeys(SITES)}
    print(f"sites: {', '.join(f'{s} {n}' for s, n in sites.items())}; client site {CLIENT_SITE}\n")
    print(
        "| concurrency | pacing s | runs | median s | min s | max s | first (cold) s | SRV read ms | accuracy "
        "| max in flight | LDAP pings | process wall s | CPU s | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    failed = []
    for s in settings:
        print(s.row(args.dcs))
        if sum(s.correct) != args.dcs * len(s.walls):
            failed.append(f"concurrency {s.concurrency}: accuracy below 100 % ({'; '.join(s.errors[:5])})")
        if max(s.in_flight) > s.concurrency:
            failed.append(f"concurrency {s.concurrency}: {max(s.in_flight)} probes in flight")
    main_median = statistics.median(settings[0].walls)
    if main_median > GOAL_SECONDS:
        failed.append(f"median {main_median:.3f} s at concurrency {settings[0].concurrency} > {GOAL_SECONDS:g} s")
    print()
    for line in failed:
        print(f"FAIL: {line}")
    if not failed:
        print(f"OK: 100 % accuracy, limits held, median {main_median:.3f} s <= {GOAL_SECONDS:g} s")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, testbed.TestbedError) as exc:  # the fixture could not be built or a child failed
        print(f"bench.discovery: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # the with blocks have run: namespace, helper, DNS server and temp dir are gone
        print("bench.discovery: interrupted; fixture removed", file=sys.stderr)
        sys.exit(130)

"""The Samba AD DC peer: ``samba-tool domain provision`` and ``samba -D`` in a namespace of its own.

Realm ``PQTEST.TEST``, NetBIOS domain ``PQTEST``, DC ``dc1.pqtest.test`` at ``198.18.N.2``, internal DNS
(SAMBA_INTERNAL). Samba runs inside ``unshare --mount --uts`` with a private ``/etc/resolv.conf`` and
``/etc/hosts`` (both name only the DC itself), a private ``/run/samba`` and the hostname ``dc1``, so it
never touches the host's files. The ``dns forwarder`` line is removed right after provisioning and its
absence is checked: the DC never forwards a query anywhere.

Provisioning takes about 9 s on an idle 2-core machine, up to about 40 s when it is busy
(``SambaDC.timings`` has the steps).

Check by hand while a session runs::

    ip netns exec pq-<pid>-<N>-dc ss -ltnup                      # 53 88 135 139 389 445 464 636 3268 3269
    dig @198.18.N.2 dc1.pqtest.test +short                       # 198.18.N.2
    grep -i forwarder $TMPDIR/pq-<pid>-dc-*/etc/smb.conf          # nothing
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Final

from tests.testbed.commands import TestbedError, wait_tcp
from tests.testbed.commands import log_tail as log_tail_of
from tests.testbed.netns import Namespace
from tests.testbed.start import close_peer, start_peer

_WRAPPER: Final = """set -e
mount --bind "$PQ_DIR/resolv.conf" /etc/resolv.conf
mount --bind "$PQ_DIR/hosts" /etc/hosts
mount --bind "$PQ_DIR/run-samba" /run/samba
if [ -f "$PQ_DIR/krb5.conf" ]; then mount --bind "$PQ_DIR/krb5.conf" /etc/krb5.conf; fi
hostname "$PQ_HOSTNAME"
exec "$@"
"""
"""Runs inside ``unshare --mount --uts``: private resolv.conf, hosts, /run/samba, hostname (and krb5.conf if any)."""

DEFAULT_SITE: Final = "Default-First-Site-Name"
"""The AD site a provision creates; the first DC's site."""


_SITES_SCRIPT: Final = r"""
import os
import ldb
from samba import sites, subnets
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

lp = LoadParm()
lp.load(os.environ["PQ_SMB_CONF"])
samdb = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
config = samdb.get_config_basedn()
site = os.environ["PQ_SITE"]
samdb.transaction_start()
try:
    try:
        sites.create_site(samdb, config, site)
        print("created site", site)
    except sites.SiteAlreadyExistsException:
        print("site exists", site)
    for pair in filter(None, os.environ["PQ_SUBNETS"].split(";")):
        cidr, owner = pair.split("=", 1)
        try:
            subnets.create_subnet(samdb, config, cidr, owner)
            print("created subnet", cidr, owner)
        except subnets.SubnetAlreadyExists:
            subnets.set_subnet_site(samdb, config, cidr, owner)
            print("subnet moved", cidr, owner)
    link = f"CN=DEFAULTIPSITELINK,CN=IP,CN=Inter-Site Transports,CN=Sites,{config}"
    site_dn = f"CN={site},CN=Sites,{config}"
    res = samdb.search(base=link, scope=ldb.SCOPE_BASE, attrs=["siteList"])
    present = {str(v).lower() for v in res[0].get("siteList", [])}
    if site_dn.lower() not in present:
        msg = ldb.Message(ldb.Dn(samdb, link))
        msg["siteList"] = ldb.MessageElement(site_dn, ldb.FLAG_MOD_ADD, "siteList")
        samdb.modify(msg)
        print("added to DEFAULTIPSITELINK", site)
    samdb.transaction_commit()
except BaseException:
    samdb.transaction_cancel()
    raise
"""
"""Run with the system python3 (samba's bindings): create ``$PQ_SITE``, map ``$PQ_SUBNETS``, add the site
to ``DEFAULTIPSITELINK``, on the sam.ldb of ``$PQ_SMB_CONF``, in one transaction."""


@dataclass
class SambaDC:
    """A real Samba AD DC inside its own namespace, provisioned into a temp dir.

    Attributes:
        ns: the namespace (``ns.address`` is the DC's address).
        target_dir: the provision's ``--targetdir`` (smb.conf in ``etc/``, logs in ``log/``).
        realm: Kerberos realm, ``PQTEST.TEST``.
        domain: NetBIOS domain name, ``PQTEST``.
        host_name: NetBIOS/host name, ``dc1``.
        admin_password: the Administrator password (expires 42 days after provisioning).
        site: the DC's AD site, ``Default-First-Site-Name``.
        timings: seconds per start-up step (``namespace``, ``provision``, ``start``, ``dns``).

    The ``dns_*`` and ``*_a_record`` methods edit and query *this* DC's DNS server (the first DC's is
    the one the tests use); each is bounded in time.
    """

    ns: Namespace
    target_dir: Path
    realm: str = "PQTEST.TEST"
    domain: str = "PQTEST"
    host_name: str = "dc1"
    admin_password: str = "Pq-Testbed-Passw0rd"
    site: str = DEFAULT_SITE
    timings: dict[str, float] = field(default_factory=dict)

    PORTS_TCP: ClassVar[tuple[int, ...]] = (53, 88, 135, 139, 389, 445, 464, 636, 3268, 3269)
    """TCP ports the DC listens on once started (dynamic RPC ports come on top)."""

    @property
    def address(self) -> str:
        """The DC's IPv4 address, ``198.18.N.2``."""
        return self.ns.address

    @property
    def dns_domain(self) -> str:
        """DNS domain, ``pqtest.test``."""
        return self.realm.lower()

    @property
    def fqdn(self) -> str:
        """The DC's DNS name, ``dc1.pqtest.test``."""
        return f"{self.host_name}.{self.dns_domain}"

    @property
    def base_dn(self) -> str:
        """``DC=pqtest,DC=test``."""
        return ",".join(f"DC={part}" for part in self.dns_domain.split("."))

    @property
    def msdcs_zone(self) -> str:
        """The forest's ``_msdcs`` zone, ``_msdcs.pqtest.test``."""
        return f"_msdcs.{self.dns_domain}"

    @property
    def ldap_srv_all(self) -> str:
        """``_ldap._tcp.dc._msdcs.pqtest.test``: the SRV name that lists every DC of the domain."""
        return f"_ldap._tcp.dc.{self.msdcs_zone}"

    def ldap_srv_site(self, site: str | None = None) -> str:
        """``_ldap._tcp.<site>._sites.dc._msdcs.pqtest.test``: the DCs of one site (default: this DC's)."""
        return f"_ldap._tcp.{site or self.site}._sites.dc.{self.msdcs_zone}"

    @property
    def smb_conf(self) -> Path:
        """The provisioned ``smb.conf``."""
        return self.target_dir / "etc" / "smb.conf"

    @property
    def log_path(self) -> Path:
        """Samba's main log file."""
        return self.target_dir / "log" / "samba.log"

    @property
    def pid_file(self) -> Path:
        """Pid file of the main ``samba`` process."""
        return self.target_dir / "pid" / "samba.pid"

    # -- lifecycle ----------------------------------------------------------------------------------

    @classmethod
    def start(cls, *, provision_timeout: float = 180.0, start_timeout: float = 120.0) -> SambaDC:
        """Create a namespace, provision a DC, start ``samba -D`` and wait until it serves.

        Args:
            provision_timeout: seconds allowed for ``samba-tool domain provision``.
            start_timeout: seconds allowed from ``samba -D`` until TCP 389 (and 53, 88, 135,
                445) accept and DNS resolves the DC's own name.

        Returns:
            The running DC.

        Raises:
            TestbedError: any step failed; the message carries the log tail. Nothing is left behind.
        """

        def launch(dc: SambaDC) -> None:
            t1 = time.monotonic()
            dc.provision(timeout=provision_timeout)
            t2 = time.monotonic()
            dc.timings["provision"] = t2 - t1
            dc.start_daemon(timeout=start_timeout)
            dc.timings["start"] = time.monotonic() - t2

        return start_peer("dc", cls, launch)

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        """Wrap ``cmd`` to run in the DC namespace with private /etc files and hostname."""
        return self.ns.exec_argv(["unshare", "--mount", "--uts", "sh", "-c", _WRAPPER, "pq-dc-wrapper", *cmd])

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KRB5", "SMB_", "LDB"))}
        env.update(PQ_DIR=str(self.target_dir), PQ_HOSTNAME=self.host_name, LANG="C.UTF-8")
        return env

    def provision(self, timeout: float = 180.0) -> None:
        """Write the private files and run ``samba-tool domain provision`` (testbed.md step 4).

        Removes the ``dns forwarder`` line afterwards and checks that it is gone.

        Raises:
            TestbedError: provision failed or timed out (the message has its output).
        """
        d = self.target_dir
        for sub in ("etc", "pid", "log", "run-samba"):  # samba creates the rest with the modes it wants
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "run-samba").chmod(0o755)
        (d / "base.conf").write_text("[global]\n")
        (d / "resolv.conf").write_text(f"search {self.dns_domain}\nnameserver {self.address}\n")
        (d / "hosts").write_text(f"127.0.0.1\tlocalhost\n{self.address}\t{self.fqdn} {self.host_name}\n")
        options = {
            "interfaces": f"lo {self.ns.veth_ns}",
            "bind interfaces only": "yes",
            "pid directory": str(d / "pid"),
            "ncalrpc dir": str(d / "ncalrpc"),
            "ntp signd socket directory": str(d / "ntp_signd"),
            "log file": str(self.log_path),
            "log level": "1",
            "max log size": "0",
            "winbindd socket directory": str(d / "run-samba" / "winbindd"),
        }
        cmd = [
            "samba-tool", "domain", "provision",
            "-s", str(d / "base.conf"),
            f"--targetdir={d}",
            "--server-role=dc",
            "--dns-backend=SAMBA_INTERNAL",
            f"--realm={self.realm}",
            f"--domain={self.domain}",
            f"--adminpass={self.admin_password}",
            f"--host-name={self.host_name}",
            f"--host-ip={self.address}",
            *[f"--option={key}={value}" for key, value in options.items()],
        ]  # fmt: skip
        log = d / "log" / "provision.log"
        status = self._run_logged(cmd, log, timeout, "provision")
        if status != 0:
            raise TestbedError(f"provision failed (exit {status}); {log}:\n{log_tail_of(log)}")
        conf = self.smb_conf.read_text()
        cleaned = "".join(
            line for line in conf.splitlines(keepends=True) if not line.strip().lower().startswith("dns forwarder")
        )
        self.smb_conf.write_text(cleaned)
        if "forwarder" in self.smb_conf.read_text().lower():
            raise TestbedError(f"could not remove 'dns forwarder' from {self.smb_conf}")

    def _run_logged(self, cmd: Sequence[str], log: Path, timeout: float, what: str) -> int:
        """Run ``cmd`` through :meth:`wrap`, stdout and stderr appended to ``log``; return its exit status.

        Raises:
            TestbedError: it did not return within ``timeout`` seconds (the message has the log tails).
        """
        with log.open("a") as out:
            try:
                return subprocess.run(
                    self.wrap(cmd),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    env=self._env(),
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired as exc:
                raise TestbedError(f"{what} did not return within {timeout:.0f} s\n{self.log_tail()}") from exc

    def main_pid(self) -> int | None:
        """Pid of the main ``samba`` process from its pid file, or ``None``."""
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start_daemon(self, timeout: float = 60.0) -> None:
        """Run ``samba -D`` and wait until TCP 389, 53, 88, 135, 445 accept and DNS answers.

        Args:
            timeout: seconds in total.

        Raises:
            TestbedError: samba exited or did not serve in time (the message has the log tail).
        """
        deadline = time.monotonic() + timeout
        start_log = self.target_dir / "log" / "samba-start.log"
        status = self._run_logged(["samba", "-D", "-s", str(self.smb_conf)], start_log, timeout, "'samba -D'")
        if status != 0:
            raise TestbedError(f"'samba -D' exit {status}\n{self.log_tail()}")
        pid: int | None = None
        while pid is None and time.monotonic() < deadline:
            pid = self.main_pid()
            if pid is None:
                time.sleep(0.05)
        if pid is None:
            raise TestbedError(f"samba wrote no pid file {self.pid_file}\n{self.log_tail()}")
        try:
            for port in (389, 53, 88, 135, 445):
                wait_tcp(self.address, port, max(deadline - time.monotonic(), 0.1), alive=[pid])
            self.wait_dns(max(deadline - time.monotonic(), 0.1))
        except TestbedError as exc:
            raise TestbedError(f"{exc}\n{self.log_tail()}") from exc

    def wait_dns(self, timeout: float) -> None:
        """Wait until the DC's DNS answers an A query for its own FQDN with its address.

        Raises:
            TestbedError: no correct answer within ``timeout`` seconds.
        """
        import dns.exception
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.address]
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                answer = resolver.resolve(self.fqdn, "A", lifetime=min(2.0, max(deadline - time.monotonic(), 0.1)))
                addresses = [rr.to_text() for rr in answer]
                if self.address in addresses:
                    return
                last = f"answer {addresses}"
            except dns.exception.DNSException as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TestbedError(f"DC DNS did not resolve {self.fqdn} within {timeout:.0f} s: {last}")

    # -- samba-tool and DNS records -------------------------------------------------------------------

    def samba_tool(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``samba-tool ARGS -s smb.conf`` inside the DC's namespace and private files.

        Args:
            *args: the subcommand and its arguments (credentials are the caller's to add).
            timeout: seconds before it is killed.
            check: raise on a non-zero exit.

        Raises:
            TestbedError: it timed out, or (with ``check``) exited non-zero (the message has its output).
        """
        cmd = self.wrap(["samba-tool", *args, "-s", str(self.smb_conf)])
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=self._env(), check=False,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise TestbedError(f"samba-tool {' '.join(args[:3])} did not return within {timeout:.0f} s") from exc
        if check and proc.returncode != 0:
            raise TestbedError(f"samba-tool {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc

    def _zone_of(self, owner: str) -> tuple[str, str]:
        """Split an owner name into (zone, name relative to it) for ``samba-tool dns``."""
        owner = owner.rstrip(".").lower()
        for zone in (self.msdcs_zone, self.dns_domain):
            if owner == zone:
                return zone, "@"
            if owner.endswith("." + zone):
                return zone, owner[: -len(zone) - 1]
        raise TestbedError(f"{owner} is in none of this DC's zones ({self.msdcs_zone}, {self.dns_domain})")

    def _dns_edit(self, verb: str, owner: str, rtype: str, data: str, timeout: float) -> None:
        zone, name = self._zone_of(owner)
        self.samba_tool(
            "dns", verb, self.address, zone, name, rtype, data,
            "-U", "Administrator", f"--password={self.admin_password}", "--use-kerberos=off",
            timeout=timeout,
        )  # fmt: skip

    def dns_add(self, owner: str, rtype: str, data: str, *, timeout: float = 60.0) -> None:
        """Add a record to this DC's DNS (``samba-tool dns add``, RPC as Administrator).

        Args:
            owner: full owner name, e.g. ``_ldap._tcp.dc._msdcs.pqtest.test`` or ``dc2.pqtest.test``
                (the zone, ``_msdcs.pqtest.test`` or ``pqtest.test``, is found from it).
            rtype: ``A``, ``SRV``, ``CNAME`` ...
            data: samba-tool's form: ``198.18.N.3`` for A, ``"dc2.pqtest.test 389 0 100"`` (target port
                priority weight) for SRV.
            timeout: seconds for samba-tool.

        Raises:
            TestbedError: samba-tool failed (e.g. the record exists already) or timed out.
        """
        self._dns_edit("add", owner, rtype, data, timeout)

    def dns_delete(self, owner: str, rtype: str, data: str, *, timeout: float = 60.0) -> None:
        """Delete one record from this DC's DNS (``samba-tool dns delete``); arguments as :meth:`dns_add`.

        Raises:
            TestbedError: samba-tool failed (e.g. no such record) or timed out.
        """
        self._dns_edit("delete", owner, rtype, data, timeout)

    def dns_lookup(self, owner: str, rtype: str, *, timeout: float = 5.0) -> list[str]:
        """Ask this DC's DNS server (UDP 53) for ``owner``/``rtype``; the records as text, sorted.

        SRV records come as ``"0 100 389 dc2.pqtest.test."`` (priority weight port target), A as the
        address. No such name or no such type gives ``[]``.

        Raises:
            TestbedError: the server did not answer within ``timeout`` seconds, or answered an error.
        """
        import dns.exception
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.address]
        resolver.cache = None
        try:
            answer = resolver.resolve(owner, rtype, lifetime=timeout, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise TestbedError(f"{self.fqdn} DNS: {owner} {rtype}: {exc!r}") from exc
        return sorted(rr.to_text() for rr in answer)

    def srv_targets(self, owner: str, *, timeout: float = 5.0) -> set[str]:
        """Target host names (lower case, no trailing dot) of the SRV records ``owner`` has in this DC's DNS."""
        return {rr.split()[3].rstrip(".").lower() for rr in self.dns_lookup(owner, "SRV", timeout=timeout)}

    def wait_lookup(
        self, owner: str, rtype: str, until: Callable[[list[str]], bool], *, timeout: float = 30.0
    ) -> list[str]:
        """Poll :meth:`dns_lookup` (every 0.1 s) until ``until(records)`` holds; return those records.

        Raises:
            TestbedError: it did not hold within ``timeout`` seconds (the message has the last answer).
        """
        deadline = time.monotonic() + timeout
        last: list[str] | str = "no answer"
        while True:
            try:
                records = self.dns_lookup(owner, rtype, timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
                if until(records):
                    return records
                last = records
            except TestbedError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise TestbedError(f"{self.fqdn} DNS: {owner} {rtype} not as expected after {timeout:.0f} s: {last}")
            time.sleep(0.1)

    def add_a_record(self, name: str, address: str, *, timeout: float = 60.0) -> None:
        """Give ``name`` (e.g. ``dc2.pqtest.test``) one more A record ``address``; wait until it resolves.

        Nothing happens when the record is there already.

        Raises:
            TestbedError: samba-tool failed, or the record did not show within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        if address not in self.dns_lookup(name, "A"):
            self.dns_add(name, "A", address, timeout=timeout)
        self.wait_lookup(name, "A", lambda rrs: address in rrs, timeout=max(deadline - time.monotonic(), 1.0))

    def remove_a_record(self, name: str, address: str, *, timeout: float = 60.0) -> None:
        """Delete the A record ``name`` -> ``address``; wait until it no longer resolves. No-op if absent.

        Raises:
            TestbedError: samba-tool failed, or the record was still there after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        if address in self.dns_lookup(name, "A"):
            self.dns_delete(name, "A", address, timeout=timeout)
        self.wait_lookup(name, "A", lambda rrs: address not in rrs, timeout=max(deadline - time.monotonic(), 1.0))

    def add_site(self, site: str, subnets: Sequence[tuple[str, str]] = (), *, timeout: float = 60.0) -> None:
        """Create an AD site (if missing), map subnets to sites, and put the site in ``DEFAULTIPSITELINK``.

        Works on this DC's ``sam.ldb`` directly (what ``samba-tool sites create`` / ``sites subnet
        create`` do, in one process), so it is in the directory before a new DC joins. Idempotent.

        Args:
            site: the site's name, e.g. ``Branch-Site``.
            subnets: ``(cidr, site)`` pairs, e.g. ``("198.18.7.0/24", "Branch-Site")``; a subnet that
                exists already is moved to the given site.
            timeout: seconds in total.

        Raises:
            TestbedError: the script failed or timed out.

        Check by hand: ``samba-tool sites list -s DIR/etc/smb.conf`` (4.17 has no ``list``; use
        ``ldbsearch -H DIR/private/sam.ldb -b CN=Subnets,CN=Sites,CN=Configuration,DC=pqtest,DC=test``).
        """
        pairs = ";".join(f"{cidr}={name}" for cidr, name in subnets)
        log = self.target_dir / "log" / "sites.log"
        python = shutil.which("python3", path="/usr/bin") or "python3"
        env = self._env()
        env.update(PQ_SMB_CONF=str(self.smb_conf), PQ_SITE=site, PQ_SUBNETS=pairs)
        try:
            proc = subprocess.run(
                [python, "-c", _SITES_SCRIPT], capture_output=True, text=True, timeout=timeout, env=env,
                check=False, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise TestbedError(f"add_site {site} did not return within {timeout:.0f} s") from exc
        with log.open("a") as out:
            out.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise TestbedError(f"add_site {site}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")

    def log_tail(self, lines: int = 40) -> str:
        """Last ``lines`` lines of Samba's logs (for error messages)."""
        parts = [f"--- {path}\n{log_tail_of(path, lines)}" for path in sorted((self.target_dir / "log").glob("*"))]
        return "\n".join(parts) or "(no samba logs)"

    def stop(self, timeout: float = 20.0) -> None:
        """TERM samba by pid file and wait until all its processes are gone (KILL after ``timeout`` s)."""
        pid = self.main_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        keep = self.ns.tracked_pids()
        deadline = time.monotonic() + timeout
        pids = [p for p in self.ns.pids() if p not in keep]
        while pids and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = [p for p in self.ns.pids() if p not in keep]
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.pid_file.unlink()

    def close(self) -> None:
        """Stop samba, delete the namespace and the temp dir. Safe to call twice."""
        close_peer(self.ns, self.target_dir, self.stop)

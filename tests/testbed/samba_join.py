"""The second DC: a Samba AD DC joined to the first DC's domain, in its own namespace and its own AD site.

``dc2.pqtest.test`` at ``198.18.M.2`` (its own /24, its own veth to the root namespace, so the exporter
reaches it as it reaches the first DC), in the site ``Branch-Site``; the first DC stays in
``Default-First-Site-Name``. Start-up (testbed.md, "A second DC in another site"):

1. The namespace, created with ``blackhole=True``: ``198.18.M.0/24`` is routed to a blackhole in the
   root namespace from the moment its veth is gone until the session ends, because the DC's records
   stay in the first DC's DNS (see ``tests.testbed.netns``).
2. A veth pair directly between the two DC namespaces (:meth:`Namespace.link_to`): /32 routes and
   permanent neighbour entries only, nothing forwarded.
3. On the first DC (:meth:`SambaDC.add_site`): the site, the two root-side /24s mapped to the two
   sites (so an LDAP ping from the root namespace to each DC reports ``ClientSiteName`` = that DC's
   own site), and the site added to ``DEFAULTIPSITELINK``.
4. ``samba-tool domain join pqtest.test DC --site=Branch-Site --machinepass=...`` inside the new
   namespace, with a private resolv.conf naming the first DC and a private krb5.conf for the realm, and
   the posture settings opposite to the first DC's: ``server min protocol = NT1`` (SMB1 accepted) and
   ``ldap server require strong auth = no`` (a simple bind over plain LDAP is checked, not refused).
5. A second address ``198.18.M.3`` on the DC's veth (Samba listens on it too, but it is in no DNS
   record until a test adds one: ``samba_dnsupdate`` runs with ``--current-ip=198.18.M.2``), then
   ``samba -D``; wait until TCP 389/53/88/135/445 accept and the first DC's DNS lists the new DC
   (A record, ``_ldap._tcp.dc._msdcs`` and the site's ``_ldap._tcp.Branch-Site._sites.dc._msdcs``).
   ``samba_dnsupdate`` exits 26 (``tsig verify failure``) while its records are in fact applied, so
   only the first DC's answers count.

The DC's own ``samba_dnsupdate`` is not re-run every 10 minutes (``dnsupdate:name interval`` is a day),
so a record a test removed with :meth:`JoinedDC.retire` stays removed until :meth:`JoinedDC.reinstate`.

Check by hand while a session runs::

    dig @<dc1> _ldap._tcp.dc._msdcs.pqtest.test SRV +short                       # dc1 and dc2
    dig @<dc1> _ldap._tcp.Branch-Site._sites.dc._msdcs.pqtest.test SRV +short    # dc2 only
    ldapsearch -x -H ldap://198.18.M.2 -b "" -s base serverName                  # CN=Branch-Site
    ip -4 route show type blackhole                                              # 198.18.M.0/24
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.testbed.commands import TestbedError
from tests.testbed.commands import log_tail as log_tail_of
from tests.testbed.netns import Namespace
from tests.testbed.samba import SambaDC
from tests.testbed.start import start_peer

BRANCH_SITE: Final = "Branch-Site"
"""The second DC's AD site."""

LDAP_PORT: Final = 389

POSTURE_OPTIONS: Final = {"server min protocol": "NT1", "ldap server require strong auth": "no"}
"""The second DC's posture, opposite to the first DC's: SMB1 accepted, simple binds over plain LDAP checked.

Not ``tls enabled = no``: Samba 4.17 then answers StartTLS with success and resets the connection, and in a
full test run its LDAP server stopped answering later tests (the StartTLS-refused side is a loopback server)."""


@dataclass
class JoinedDC(SambaDC):
    """A second Samba AD DC joined to ``partner``'s domain, in its own namespace and AD site.

    Everything :class:`SambaDC` has (``address``, ``fqdn``, ``site``, ``ns``, ``target_dir``, ``realm``,
    ``domain``, ``dns_domain``, ``base_dn``, ``admin_password``, ``stop``/``start_daemon``, the
    ``dns_*`` methods, which act on *this* DC's DNS), plus:

    Attributes:
        partner: the first DC (whose DNS the tests use and whose records the helpers here edit).
        machine_password: the machine account's fixed password (``--machinepass``).
        address2: a second address of the DC (``198.18.M.3``, same veth; Samba answers on it too) that
            is in no DNS record until :meth:`add_address2_record`; ``""`` before the start.
        link: the DC-to-DC veth pair's interface names (in the partner's namespace, in this one).
    """

    partner: SambaDC | None = None
    host_name: str = "dc2"
    site: str = BRANCH_SITE
    machine_password: str = "Pq-Dc2-Machine-Passw0rd"
    address2: str = ""
    link: tuple[str, str] = ("", "")

    @property
    def first(self) -> SambaDC:
        """The partner DC (raises if this object was built without one)."""
        if self.partner is None:
            raise TestbedError("JoinedDC without a partner DC")
        return self.partner

    @classmethod
    def join(
        cls,
        partner: SambaDC,
        *,
        site: str = BRANCH_SITE,
        host_name: str = "dc2",
        join_timeout: float = 180.0,
        start_timeout: float = 120.0,
    ) -> JoinedDC:
        """Create the namespace, link it to ``partner``, add the site, join, start, wait for DNS.

        Args:
            partner: the running first DC.
            site: the new DC's AD site (created on ``partner`` if missing).
            host_name: the new DC's host name.
            join_timeout: seconds allowed for ``samba-tool domain join``.
            start_timeout: seconds from ``samba -D`` until it serves and ``partner``'s DNS lists it.

        Returns:
            The running DC; ``timings`` has ``namespace``, ``link``, ``sites``, ``join``, ``start``
            (samba until its ports accept) and ``dns`` (until the partner's DNS lists it).

        Raises:
            TestbedError: a step failed (the message has the log tail). The namespace, the link and
                the work directory are gone again; the blackhole stays; the site and subnets stay on
                ``partner`` (harmless, and reused by a later attempt).
        """

        def build(ns: Namespace, work_dir: Path) -> JoinedDC:
            return cls(
                ns=ns, target_dir=work_dir, realm=partner.realm, domain=partner.domain, host_name=host_name,
                admin_password=partner.admin_password, site=site, partner=partner,
            )  # fmt: skip

        def launch(dc: JoinedDC) -> None:
            t0 = time.monotonic()
            dc.link = partner.ns.link_to(dc.ns)
            t1 = time.monotonic()
            partner.add_site(site, [(partner.ns.subnet, partner.site), (dc.ns.subnet, site)])
            t2 = time.monotonic()
            dc.join_domain(timeout=join_timeout)
            t3 = time.monotonic()
            dc.address2 = dc.ns.add_address(3)
            dc.start_daemon(timeout=start_timeout)
            t4 = time.monotonic()
            dc.timings.update(link=t1 - t0, sites=t2 - t1, join=t3 - t2, start=t4 - t3)

        return start_peer("dc2", build, launch, blackhole=True)

    def provision(self, timeout: float = 180.0) -> None:
        """A joined DC is not provisioned: see :meth:`join_domain`."""
        raise TestbedError("a JoinedDC joins an existing domain; use join_domain()")

    def join_domain(self, timeout: float = 180.0) -> None:
        """Write the private files and run ``samba-tool domain join REALM DC`` against the partner.

        Removes any ``dns forwarder`` line afterwards and checks that it is gone.

        Raises:
            TestbedError: the join failed or timed out (the message has its output).
        """
        first = self.first
        d = self.target_dir
        for sub in ("etc", "pid", "log", "run-samba"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "run-samba").chmod(0o755)
        (d / "base.conf").write_text("[global]\n")
        (d / "resolv.conf").write_text(f"search {self.dns_domain}\nnameserver {first.address}\n")
        (d / "hosts").write_text(
            f"127.0.0.1\tlocalhost\n{self.address}\t{self.fqdn} {self.host_name}\n"
            f"{first.address}\t{first.fqdn} {first.host_name}\n"
        )
        (d / "krb5.conf").write_text(
            f"[libdefaults]\n\tdefault_realm = {self.realm}\n\tdns_lookup_realm = false\n"
            f"\tdns_lookup_kdc = false\n\trdns = false\n"
            f"[realms]\n\t{self.realm} = {{\n\t\tkdc = {first.address}\n\t\tkdc = {self.address}\n\t}}\n"
            f"[domain_realm]\n\t.{self.dns_domain} = {self.realm}\n\t{self.dns_domain} = {self.realm}\n"
        )
        dnsupdate = shutil.which("samba_dnsupdate") or "/usr/sbin/samba_dnsupdate"
        options = {
            "netbios name": self.host_name.upper(),
            "interfaces": f"lo {self.ns.veth_ns}",
            "bind interfaces only": "yes",
            "pid directory": str(d / "pid"),
            "ncalrpc dir": str(d / "ncalrpc"),
            "ntp signd socket directory": str(d / "ntp_signd"),
            "log file": str(self.log_path),
            "log level": "1",
            "max log size": "0",
            "winbindd socket directory": str(d / "run-samba" / "winbindd"),
            "dns update command": f"{dnsupdate} --current-ip {self.address}",
            "dnsupdate:name interval": "86400",
            **POSTURE_OPTIONS,
        }
        cmd = [
            "samba-tool", "domain", "join", self.dns_domain, "DC",
            "-s", str(d / "base.conf"),
            f"--targetdir={d}",
            f"--server={first.fqdn}",
            f"--site={self.site}",
            "--dns-backend=SAMBA_INTERNAL",
            "-U", "Administrator",
            f"--password={self.admin_password}",
            f"--machinepass={self.machine_password}",
            *[f"--option={key}={value}" for key, value in options.items()],
        ]  # fmt: skip
        log = d / "log" / "join.log"
        status = self._run_logged(cmd, log, timeout, "join")
        if status != 0:
            raise TestbedError(f"join failed (exit {status}); {log}:\n{log_tail_of(log)}")
        conf = self.smb_conf.read_text()
        cleaned = "".join(
            line for line in conf.splitlines(keepends=True) if not line.strip().lower().startswith("dns forwarder")
        )
        lower = cleaned.lower()
        absent = "".join(f"\t{key} = {value}\n" for key, value in POSTURE_OPTIONS.items() if key not in lower)
        cleaned = cleaned.replace("[global]\n", f"[global]\n{absent}", 1)  # the join may leave some out
        self.smb_conf.write_text(cleaned)
        if "forwarder" in cleaned.lower():
            raise TestbedError(f"could not remove 'dns forwarder' from {self.smb_conf}")
        written = ("dns update command", "dnsupdate:name interval", *POSTURE_OPTIONS)
        missing = [key for key in written if key not in cleaned.lower()]
        if missing:
            raise TestbedError(f"join did not write {missing} into {self.smb_conf}")

    # -- DNS on the first DC ------------------------------------------------------------------------

    @property
    def srv_data(self) -> str:
        """This DC's LDAP SRV record in ``samba-tool dns`` form: ``"dc2.pqtest.test 389 0 100"``."""
        return f"{self.fqdn} {LDAP_PORT} 0 100"

    def srv_names(self, *, site_record: bool = True) -> list[str]:
        """The LDAP SRV names that list this DC: the all-DCs one (and its site's)."""
        names = [self.ldap_srv_all]
        if site_record:
            names.append(self.ldap_srv_site())
        return names

    def wait_dns(self, timeout: float) -> None:
        """Wait until the partner's DNS has this DC's A record and its LDAP SRV records (all-DCs, site).

        Raises:
            TestbedError: they did not all show within ``timeout`` seconds.
        """
        first = self.first
        began = time.monotonic()
        deadline = began + timeout
        first.wait_lookup(self.fqdn, "A", lambda rrs: self.address in rrs, timeout=timeout)
        for name in self.srv_names():
            first.wait_lookup(name, "SRV", self._listed, timeout=max(deadline - time.monotonic(), 0.5))
        self.timings["dns"] = time.monotonic() - began

    def _listed(self, records: list[str]) -> bool:
        return any(rr.split()[3].rstrip(".").lower() == self.fqdn for rr in records)

    def retire(self, *, site_record: bool = True, timeout: float = 60.0) -> None:
        """Take this DC out of ``_ldap._tcp.dc._msdcs`` (and its site's record) in the partner's DNS.

        "A retired DC": the DC still runs and answers, but DC discovery by DNS no longer finds it.
        Waits until the partner's DNS no longer lists it. A record already absent is left alone.

        Args:
            site_record: also remove it from ``_ldap._tcp.<site>._sites.dc._msdcs``.
            timeout: seconds in total.

        Raises:
            TestbedError: samba-tool failed or the record was still listed after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        first = self.first
        for name in self.srv_names(site_record=site_record):
            if self._listed(first.dns_lookup(name, "SRV")):
                first.dns_delete(name, "SRV", self.srv_data, timeout=max(deadline - time.monotonic(), 1.0))
            remaining = max(deadline - time.monotonic(), 1.0)
            first.wait_lookup(name, "SRV", lambda rrs: not self._listed(rrs), timeout=remaining)

    def reinstate(self, *, site_record: bool = True, timeout: float = 60.0) -> None:
        """Put this DC back into ``_ldap._tcp.dc._msdcs`` (and its site's record); undoes :meth:`retire`.

        Waits until the partner's DNS lists it again. A record already present is left alone.

        Raises:
            TestbedError: samba-tool failed or the record was not listed after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        first = self.first
        for name in self.srv_names(site_record=site_record):
            if not self._listed(first.dns_lookup(name, "SRV")):
                first.dns_add(name, "SRV", self.srv_data, timeout=max(deadline - time.monotonic(), 1.0))
            remaining = max(deadline - time.monotonic(), 1.0)
            first.wait_lookup(name, "SRV", self._listed, timeout=remaining)

    @contextlib.contextmanager
    def retired(self, *, site_record: bool = True, timeout: float = 60.0) -> Iterator[None]:
        """Context manager: :meth:`retire` on entry, :meth:`reinstate` on exit (also on error)."""
        self.retire(site_record=site_record, timeout=timeout)
        try:
            yield
        finally:
            self.reinstate(site_record=site_record, timeout=timeout)

    def add_address2_record(self, *, timeout: float = 60.0) -> None:
        """Give this DC's name a second A record, :attr:`address2`, in the partner's DNS (waits for it)."""
        self.first.add_a_record(self.fqdn, self.address2, timeout=timeout)

    def remove_address2_record(self, *, timeout: float = 60.0) -> None:
        """Remove the A record :attr:`address2` of this DC's name from the partner's DNS (waits for it)."""
        self.first.remove_a_record(self.fqdn, self.address2, timeout=timeout)

    @contextlib.contextmanager
    def two_addresses(self, *, timeout: float = 60.0) -> Iterator[list[str]]:
        """Context manager: this DC's name has two A records (``address``, ``address2``) inside the block.

        Yields:
            The A records of this DC's name in the partner's DNS (sorted), both addresses.
        """
        self.add_address2_record(timeout=timeout)
        try:
            yield self.first.dns_lookup(self.fqdn, "A")
        finally:
            self.remove_address2_record(timeout=timeout)

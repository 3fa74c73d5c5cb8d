"""The SNMP peer: net-snmp ``snmpd`` in a namespace of its own, SNMPv1/v2c on ``udp:198.18.N.2:161``.

Read-only community ``pqsecret``, accepted only from the peer's own /24 (the host end of the veth);
any other community gets no reply at all, as on a real agent. ``sysDescr.0`` is
``portqry-testbed snmpd (PQTEST)``. snmpd runs in the foreground (``-f``) as a child of the session, with
its config, persistent directory and log in ``$TMPDIR/pq-<pid>-snmp-XXXX``; no MIB files are loaded.

Check by hand while a session runs::

    ip netns exec pq-<pid>-<N>-snmp ss -Hlun                                  # udp 198.18.N.2:161
    MIBS= snmpget -v2c -c pqsecret -On udp:198.18.N.2:161 1.3.6.1.2.1.1.1.0    # the sysDescr
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tests.testbed.commands import TestbedError, log_tail, run
from tests.testbed.netns import Namespace
from tests.testbed.start import close_peer, start_peer


@dataclass
class SnmpPeer:
    """net-snmp ``snmpd`` in its own namespace, answering SNMPv1/v2c on ``udp:198.18.N.2:161``.

    Only ``community`` from the peer's /24 gets answers; any other community gets no reply at all.

    Attributes:
        ns: the namespace.
        work_dir: config, persistent dir and log.
        community: the read-only community, ``pqsecret``.
        sys_descr: the value of sysDescr.0 (1.3.6.1.2.1.1.1.0).
        port: UDP port, 161.
        timings: seconds per start-up step (``namespace``, ``start``).
    """

    ns: Namespace
    work_dir: Path
    community: str = "pqsecret"
    sys_descr: str = "portqry-testbed snmpd (PQTEST)"
    port: int = 161
    timings: dict[str, float] = field(default_factory=dict)
    _proc: subprocess.Popen[str] | None = None

    SYS_DESCR_OID: ClassVar[str] = "1.3.6.1.2.1.1.1.0"

    @property
    def address(self) -> str:
        """The agent's address, ``198.18.N.2``."""
        return self.ns.address

    @property
    def log_path(self) -> Path:
        """snmpd's log (``-Lo`` output)."""
        return self.work_dir / "snmpd.log"

    def client_env(self) -> dict[str, str]:
        """Environment for net-snmp clients: no MIB loading, no writes outside ``work_dir``."""
        env = dict(os.environ)
        client = str(self.work_dir / "client")
        env.update(SNMP_PERSISTENT_DIR=client, SNMPCONFPATH=client, MIBS="", MIBDIRS=client)
        return env

    @classmethod
    def start(cls, timeout: float = 20.0) -> SnmpPeer:
        """Create the namespace, write the config, start ``snmpd -f`` and wait until it answers.

        Args:
            timeout: seconds until a GET for sysDescr.0 with the right community answers.

        Raises:
            TestbedError: snmpd exited or did not answer (the message has its log).
        """
        return start_peer("snmp", cls, lambda peer: peer._start(timeout))

    def _start(self, timeout: float) -> None:
        d = self.work_dir
        for sub in ("persist", "client"):
            (d / sub).mkdir(exist_ok=True)
        conf = d / "snmpd.conf"
        subnet = f"{self.address.rsplit('.', 1)[0]}.0/24"
        conf.write_text(
            f"agentAddress udp:{self.address}:{self.port}\n"
            f"rocommunity {self.community} {subnet}\n"
            f"sysDescr {self.sys_descr}\n"
            "sysName snmp1.pqtest.test\n"
            "sysLocation portqry test bed\n"
            "sysContact nobody@pqtest.test\n"
            "master no\n"
            f"agentXSocket {d / 'agentx'}\n"
        )
        with self.log_path.open("w") as log:
            self._proc = self.ns.popen(
                ["env", f"SNMP_PERSISTENT_DIR={d / 'persist'}", f"SNMPCONFPATH={d}", "MIBS=",
                 "snmpd", "-f", "-Lo", "-C", "-c", str(conf), "-I", "-smux,mteTrigger,mteTriggerConf",
                 "-p", str(d / "snmpd.pid")],
                stdout=log,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise TestbedError(f"snmpd exited with {self._proc.returncode}:\n{log_tail(self.log_path)}")
            bound = self.ns.run(["ss", "-Hlun", f"sport = :{self.port}"], check=False).stdout.strip()
            if bound and self.get(self.SYS_DESCR_OID, timeout_s=1) is not None:
                return
            time.sleep(0.1)
        raise TestbedError(f"snmpd did not answer within {timeout:.0f} s:\n{log_tail(self.log_path)}")

    def get(self, oid: str, *, community: str | None = None, timeout_s: int = 1) -> str | None:
        """``snmpget -v2c`` one OID from the host namespace (no retries).

        Args:
            oid: numeric OID, e.g. ``1.3.6.1.2.1.1.1.0``.
            community: defaults to :attr:`community`.
            timeout_s: snmpget's timeout in whole seconds.

        Returns:
            The value as printed by ``snmpget -Oqv``, or ``None`` on "Timeout: No Response".

        Raises:
            TestbedError: snmpget failed for another reason.
        """
        proc = run(
            ["snmpget", "-v2c", "-c", community or self.community, "-t", str(timeout_s), "-r", "0",
             "-Oqv", "-On", f"udp:{self.address}:{self.port}", oid],
            check=False, timeout=timeout_s + 10, env=self.client_env(),
        )  # fmt: skip
        if proc.returncode == 0:
            return proc.stdout.strip().strip('"')
        if "Timeout" in proc.stderr or "Timeout" in proc.stdout:
            return None
        raise TestbedError(f"snmpget failed (exit {proc.returncode}): {proc.stderr.strip()}")

    def close(self) -> None:
        """Stop snmpd, delete the namespace and the work dir. Safe to call twice."""
        self._proc = None  # a process of the namespace: its teardown stops it
        close_peer(self.ns, self.work_dir)

"""The DNS peer: ``dnsmasq`` in a namespace of its own, authoritative for ``peer.test``, never forwarding.

``www.peer.test`` has an A record (the peer's own address, ``198.18.N.2``); any name outside the zone
gets REFUSED (``--no-resolv``: no upstream at all). Queries are logged to ``dnsmasq.log`` in
``$TMPDIR/pq-<pid>-dns-XXXX``.

Check by hand while a session runs::

    ip netns exec pq-<pid>-<N>-dns ss -Hlun            # udp 198.18.N.2:53
    dig @198.18.N.2 www.peer.test +norec               # aa flag, 198.18.N.2
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.testbed.commands import TestbedError, log_tail
from tests.testbed.netns import Namespace
from tests.testbed.start import close_peer, start_peer


@dataclass
class DnsPeer:
    """dnsmasq in its own namespace, authoritative for :attr:`zone`, never forwarding.

    Attributes:
        ns: the namespace.
        work_dir: pid file and log.
        zone: the authoritative zone, ``peer.test``.
        name: a name with an A record, ``www.peer.test``.
        port: UDP and TCP port, 53.
        timings: seconds per start-up step (``namespace``, ``start``).
    """

    ns: Namespace
    work_dir: Path
    zone: str = "peer.test"
    name: str = "www.peer.test"
    port: int = 53
    timings: dict[str, float] = field(default_factory=dict)
    _proc: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        """The server's address, ``198.18.N.2``."""
        return self.ns.address

    @property
    def a_record(self) -> str:
        """The address :attr:`name` resolves to (the peer's own address)."""
        return self.ns.address

    @property
    def log_path(self) -> Path:
        """dnsmasq's log (queries included)."""
        return self.work_dir / "dnsmasq.log"

    @classmethod
    def start(cls, timeout: float = 20.0) -> DnsPeer:
        """Create the namespace, start ``dnsmasq -k`` and wait until it answers authoritatively.

        Args:
            timeout: seconds until an A query for :attr:`name` gets an answer.

        Raises:
            TestbedError: dnsmasq exited or did not answer (the message has its log).
        """
        return start_peer("dns", cls, lambda peer: peer._start(timeout))

    def _start(self, timeout: float) -> None:
        import dns.exception
        import dns.flags
        import dns.message
        import dns.query

        cmd = [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--no-poll", "--bind-interfaces", f"--listen-address={self.address}", f"--port={self.port}",
            f"--auth-server=ns1.{self.zone},{self.address}", f"--auth-zone={self.zone}",
            f"--host-record={self.name},{self.a_record}", f"--host-record=ns1.{self.zone},{self.address}",
            f"--pid-file={self.work_dir / 'dnsmasq.pid'}", f"--log-facility={self.log_path}", "--log-queries",
            "--user=root", "--group=root",
        ]  # fmt: skip
        self._proc = self.ns.popen(cmd)
        query = dns.message.make_query(self.name, "A")
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                out = self._proc.stdout.read() if self._proc.stdout else ""
                raise TestbedError(f"dnsmasq exited with {self._proc.returncode}: {out}\n{log_tail(self.log_path)}")
            if not self.ns.run(["ss", "-Hlun", f"sport = :{self.port}"], check=False).stdout.strip():
                time.sleep(0.05)
                continue
            try:
                reply = dns.query.udp(query, self.address, port=self.port, timeout=1.0)
                if reply.answer and reply.flags & dns.flags.AA:
                    return
                last = reply.to_text()
            except (dns.exception.DNSException, OSError) as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TestbedError(f"dnsmasq did not answer within {timeout:.0f} s: {last}\n{log_tail(self.log_path)}")

    def close(self) -> None:
        """Stop dnsmasq, delete the namespace and the work dir. Safe to call twice."""
        self._proc = None  # a process of the namespace: its teardown stops it
        close_peer(self.ns, self.work_dir)

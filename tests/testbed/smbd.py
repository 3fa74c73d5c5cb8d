"""The plain file server: Samba's ``smbd`` as a standalone server with signing disabled, in a namespace of its own.

A Samba AD DC keeps SMB2 signing required whatever it is told, so the "signing not required" side of the
SMB posture check needs a server that is not a DC: ``server role = standalone server``, ``server signing =
disabled``, on ``tcp:198.18.N.2:445`` only (no NetBIOS, no port 139), one share ``[pq]`` of an empty
directory.  smbd runs in the foreground as a child of the session, with its config, state, lock, cache and
private directories and its log in ``$TMPDIR/pq-<pid>-smbd-XXXX``: it never reads or writes ``/etc/samba``.

Check by hand while a session runs::

    ip netns exec pq-<pid>-<N>-smbd ss -Hltn                                    # 198.18.N.2:445
    smbclient -L //198.18.N.2 -N -d 3 2>&1 | grep -i signing
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.testbed.commands import TestbedError, log_tail, wait_tcp
from tests.testbed.netns import Namespace
from tests.testbed.start import close_peer, start_peer


@dataclass
class SmbdPeer:
    """``smbd`` (standalone server, ``server signing = disabled``) in its own namespace on ``198.18.N.2:445``.

    Attributes:
        ns: the namespace.
        work_dir: config, state directories and log.
        port: TCP port, 445.
        timings: seconds per start-up step (``namespace``, ``start``).
    """

    ns: Namespace
    work_dir: Path
    port: int = 445
    timings: dict[str, float] = field(default_factory=dict)
    _proc: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        """The server's address, ``198.18.N.2``."""
        return self.ns.address

    @property
    def conf(self) -> Path:
        """smbd's ``smb.conf``."""
        return self.work_dir / "smb.conf"

    @property
    def log_path(self) -> Path:
        """smbd's log."""
        return self.work_dir / "log" / "smbd.log"

    @classmethod
    def start(cls, timeout: float = 30.0) -> SmbdPeer:
        """Create the namespace, write the config, start ``smbd --foreground`` and wait until 445 accepts.

        Raises:
            TestbedError: smbd exited or did not listen in time (the message has its log).
        """
        return start_peer("smbd", cls, lambda peer: peer._start(timeout))

    def _start(self, timeout: float) -> None:
        d = self.work_dir
        dirs = {name: d / name for name in ("state", "lock", "cache", "private", "pid", "ncalrpc", "log", "share")}
        for path in dirs.values():
            path.mkdir(exist_ok=True)
        self.conf.write_text(
            "[global]\n"
            "server role = standalone server\n"
            "server signing = disabled\n"
            f"interfaces = {self.address}/24\n"
            "bind interfaces only = yes\n"
            f"smb ports = {self.port}\n"
            "disable netbios = yes\n"
            "workgroup = PQSMBD\n"
            "netbios name = SMBD1\n"
            f"state directory = {dirs['state']}\n"
            f"lock directory = {dirs['lock']}\n"
            f"cache directory = {dirs['cache']}\n"
            f"private dir = {dirs['private']}\n"
            f"pid directory = {dirs['pid']}\n"
            f"ncalrpc dir = {dirs['ncalrpc']}\n"
            f"log file = {self.log_path}\n"
            "max log size = 0\n"
            "log level = 1\n"
            "load printers = no\n"
            "printcap name = /dev/null\n"
            "disable spoolss = yes\n"
            "map to guest = never\n"
            f"[pq]\npath = {dirs['share']}\nread only = yes\n"
        )
        # a session of its own (setsid; smbd's own would fail in the foreground): smbd TERMs its process group on exit
        with (dirs["log"] / "smbd-stdout.log").open("w") as out:
            self._proc = self.ns.popen(
                ["setsid", "smbd", "--foreground", "--no-process-group", "-s", str(self.conf)], stdout=out
            )
        try:
            wait_tcp(self.address, self.port, timeout, alive=[self._proc.pid])
        except TestbedError as exc:
            raise TestbedError(f"{exc}\n{log_tail(self.log_path)}") from exc

    def close(self) -> None:
        """Stop smbd, delete the namespace and the work dir. Safe to call twice."""
        self._proc = None  # a process of the namespace: its teardown stops it
        close_peer(self.ns, self.work_dir)

"""Run ``portqry`` in-process for the CLI tests, and the DNS server those tests resolve names through.

:func:`run` calls :func:`exporter.cli.main` with string streams (the ``portqry`` script on PATH may be another
checkout's).  :func:`dns_server` is :func:`tests.dnsserver.dns_server` with the names the tests use.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from exporter.cli import main
from tests.dnsserver import dns_server as serve_dns

#: Fast UDP: a short wait and no pacing between datagrams.
FAST = ["--timeout", "0.3", "--udp-pacing", "0"]


@dataclass
class Run:
    """One ``main()`` run: exit code, stdout, stderr, wall seconds."""

    code: int
    out: str
    err: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def run(*argv: str, stdin: str = "") -> Run:
    """``portqry ARGV`` in-process, ``stdin`` as its input."""
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    code = main(list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue(), time.monotonic() - start)


#: Names our DNS server knows (A/AAAA), and the reverse name of 127.0.0.1.
DNS_TABLE = {"host.portqry.test": "127.0.0.1", "host6.portqry.test": "::1"}
PTR_TABLE = {"1.0.0.127.in-addr.arpa": "host.portqry.test"}


@contextmanager
def dns_server() -> Iterator[tuple[str, int, list[str]]]:
    """The tests' DNS server (:mod:`tests.dnsserver`) with :data:`DNS_TABLE` and :data:`PTR_TABLE`."""
    with serve_dns(DNS_TABLE, ptr=PTR_TABLE) as server:
        yield server


def ipv6_loopback() -> bool:
    """Whether ``::1`` can be bound here."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True

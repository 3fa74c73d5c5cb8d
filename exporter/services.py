"""Port -> service name, as PortQry prints it in ``TCP port 389 (ldap service)``.

Order of lookup: our own table of the ports PortQry and the Windows services file name (Debian's
``/etc/services`` lacks e.g. ``135/udp epmap``), then the system services file, then
``unknown service``.  The catalog (``exporter.catalog``) may override the label per target.
"""

from __future__ import annotations

import socket
from functools import lru_cache

UNKNOWN_SERVICE = "unknown service"

#: (protocol, port) -> name, after the Windows ``%SystemRoot%\\System32\\drivers\\etc\\services`` file.
WINDOWS_SERVICES: dict[tuple[str, int], str] = {
    ("tcp", 21): "ftp",
    ("tcp", 25): "smtp",
    ("tcp", 42): "nameserver",
    ("udp", 42): "nameserver",
    ("tcp", 53): "domain",
    ("udp", 53): "domain",
    ("udp", 67): "bootps",
    ("udp", 69): "tftp",
    ("tcp", 80): "http",
    ("tcp", 88): "kerberos",
    ("udp", 88): "kerberos",
    ("tcp", 110): "pop3",
    ("udp", 123): "ntp",
    ("tcp", 135): "epmap",
    ("udp", 135): "epmap",
    ("udp", 137): "netbios-ns",
    ("udp", 138): "netbios-dgm",
    ("tcp", 139): "netbios-ssn",
    ("tcp", 143): "imap",
    ("udp", 161): "snmp",
    ("udp", 162): "snmptrap",
    ("tcp", 389): "ldap",
    ("udp", 389): "ldap",
    ("tcp", 443): "https",
    ("tcp", 445): "microsoft-ds",
    ("udp", 445): "microsoft-ds",
    ("tcp", 464): "kpasswd",
    ("udp", 464): "kpasswd",
    ("udp", 500): "isakmp",
    ("tcp", 593): "http-rpc-epmap",
    ("tcp", 636): "ldaps",
    ("tcp", 1433): "ms-sql-s",
    ("udp", 1434): "ms-sql-m",
    ("udp", 1701): "l2tp",
    ("tcp", 1745): "remote-winsock",
    ("udp", 1745): "remote-winsock",
    ("tcp", 3268): "msft-gc",
    ("tcp", 3269): "msft-gc-ssl",
    ("tcp", 3389): "ms-wbt-server",
    ("udp", 4500): "ipsec-msft",
    ("tcp", 5722): "dfsr",
    ("tcp", 5985): "wsman",
    ("tcp", 5986): "wsmans",
    ("tcp", 9389): "adws",
}


@lru_cache(maxsize=4096)
def service_name(protocol: str, port: int) -> str:
    """The service name for a port, PortQry style.

    Args:
        protocol: ``"tcp"`` or ``"udp"``.
        port: 1-65535.

    Returns:
        e.g. ``"ldap"``, ``"epmap"``; ``"unknown service"`` when no table names it.
    """
    name = WINDOWS_SERVICES.get((protocol, port))
    if name:
        return name
    try:
        return socket.getservbyport(port, protocol)
    except OSError:
        return UNKNOWN_SERVICE

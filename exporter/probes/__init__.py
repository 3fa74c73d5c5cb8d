"""Probes: the TCP/UDP state probes (:mod:`.sockets`) and one module per protocol-aware probe.

Each protocol module has one ``async def probe(ctx: ProbeContext) -> ProtocolOutcome`` (see
:mod:`.context`); :data:`PROBES` maps a binding name to it, and :data:`DEFAULT_BINDINGS` binds the
well-known ports PortQry speaks to.  Whoever builds a :class:`~exporter.model.PortSpec` applies the
defaults through :func:`port_spec`.

All protocol modules are imported here, eagerly: they share impacket, pyasn1 and dnspython, which the LDAP
probe needs on every domain controller anyway (measured: importing every probe costs about 0.1 s and
15 MB more than the engine alone).
"""

from __future__ import annotations

import functools

from exporter.model import PortSpec, Protocol
from exporter.probes import dns, kerberos, ldap, mssql, netbios, rpc, smb, snmp, tls
from exporter.probes.context import ProbeContext, ProtocolOutcome, ProtocolProbe

__all__ = [
    "DEFAULT_BINDINGS",
    "POSTURE_BINDINGS",
    "PROBES",
    "ProbeContext",
    "ProtocolOutcome",
    "ProtocolProbe",
    "port_spec",
]

#: Binding name -> protocol-aware probe.  ``ldap`` and ``ldaps`` share a module; the probe reads ``ctx.binding``.
PROBES: dict[str, ProtocolProbe] = {
    "dns": dns.probe,
    "kerberos": kerberos.probe,
    "ldap": ldap.probe,
    "ldaps": ldap.probe,
    "mssql": mssql.probe,
    "netbios": netbios.probe,
    "rpc": rpc.probe,
    "smb": smb.probe,
    "snmp": snmp.probe,
    "tls": tls.probe,
}

#: (protocol, port) -> binding name, for the well-known ports PortQry speaks to (KB 832919).
DEFAULT_BINDINGS: dict[tuple[str, int], str] = {
    ("tcp", 53): "dns",
    ("udp", 53): "dns",
    ("tcp", 88): "kerberos",
    ("udp", 88): "kerberos",
    ("tcp", 135): "rpc",
    ("udp", 135): "rpc",
    ("udp", 137): "netbios",
    ("udp", 161): "snmp",
    ("tcp", 389): "ldap",
    ("udp", 389): "ldap",
    ("tcp", 445): "smb",
    ("tcp", 636): "ldaps",
    ("udp", 1434): "mssql",
    ("tcp", 3268): "ldap",
    ("tcp", 3269): "ldaps",
}

#: Bindings that are security-posture checks: a plan with ``posture_checks`` off drops them (the port then gets
#: the plain state probe).  The ``ldap`` probe's posture step on tcp/389 reads ``ProbeOptions.posture_checks``
#: instead (its rootDSE search still runs).
POSTURE_BINDINGS: frozenset[str] = frozenset({"smb"})


def port_spec(protocol: Protocol, port: int, service: str = "", binding: str | None = None) -> PortSpec:
    """A :class:`~exporter.model.PortSpec` with ``binding``, or the port's default binding when ``None``.

    Specs are immutable and shared: 1,000 targets with the same 100 ports hold 100 specs, not 100,000.

    Args:
        protocol: ``"tcp"`` or ``"udp"``.
        port: 1-65535.
        service: the ``service`` label (``""``: looked up).
        binding: a key of :data:`PROBES`, ``""`` for none, ``None`` for :data:`DEFAULT_BINDINGS`.
    """
    if binding is None:
        binding = DEFAULT_BINDINGS.get((protocol, port), "")
    return _shared(protocol, port, service, binding)


_shared = functools.lru_cache(maxsize=1 << 17)(PortSpec)

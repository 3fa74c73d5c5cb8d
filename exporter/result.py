"""The probe result: one immutable record per (target, protocol, port) and probe round."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from exporter.model import Detail, Protocol
from exporter.states import PortState, Reason

__all__ = ["NO_DETAILS", "ProbeResult", "Protocol"]

#: The details of a result without protocol findings: one shared empty mapping, not a dict per port.
NO_DETAILS: Mapping[str, Detail] = MappingProxyType({})


def _no_details() -> Mapping[str, Detail]:
    return NO_DETAILS


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe of one port found.

    Attributes:
        target: the configured target name (``dc1``).
        host: the configured host (name or address literal).
        address: the address actually probed (IPv4 or IPv6 literal); ``""`` when the name did not resolve.
        protocol: ``"tcp"`` or ``"udp"``.
        port: 1-65535.
        service: service label: the catalog's application protocol, our port table's name
            (``epmap``), the system services file's name, or ``unknown service``.
        state: the port state.
        reason: why (a closed set).
        duration_seconds: wall time of the whole probe, all tries and the protocol follow-up, in seconds.
        tries: TCP: connection attempts of the state probe; UDP: datagrams sent to the port, the state
            probe's and the protocol-aware probe's (whose query is the first datagram unless
            ``udp_unformatted_first``).
        timestamp: when the probe finished, Unix time in seconds.
        details: protocol-aware findings keyed by binding (``"ldap"``, ``"tls"``, ``"rpc"``...), each one of
            the :data:`~exporter.model.Detail` dataclasses.
        error: a one-line human description of a failure (resolver error, decode error...), or ``""``.
        initial_state: when a protocol-aware follow-up ran, the state the first step saw (PortQry prints it
            before the protocol block, e.g. UDP "LISTENING or FILTERED"); else ``None``.
        error_detail: the library's own text behind ``error`` (impacket's, pyasn1's ...): the daemon logs it
            at debug level; the CLI, ``--json`` and the metrics never show it.  For a ``local-error`` result,
            the errno name (``EMFILE``), the label of ``portqry_exporter_local_errors_total``.  ``""`` when none.
    """

    target: str
    host: str
    address: str
    protocol: Protocol
    port: int
    service: str
    state: PortState
    reason: Reason
    duration_seconds: float
    tries: int
    timestamp: float
    details: Mapping[str, Detail] = field(default_factory=_no_details)
    error: str = ""
    initial_state: PortState | None = None
    error_detail: str = ""

    @property
    def key(self) -> tuple[str, str, str, int]:
        """The store key ``(target, address, protocol, port)``."""
        return (self.target, self.address, self.protocol, self.port)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the ``portqry --json`` line); dataclass details are expanded."""
        out: dict[str, Any] = {
            "target": self.target,
            "host": self.host,
            "address": self.address,
            "protocol": self.protocol,
            "port": self.port,
            "service": self.service,
            "state": str(self.state),
            "reason": str(self.reason),
            "duration_seconds": round(self.duration_seconds, 6),
            "tries": self.tries,
            "timestamp": self.timestamp,
        }
        if self.error:
            out["error"] = self.error
        if self.initial_state is not None:
            out["initial_state"] = str(self.initial_state)
        if self.details:
            out["details"] = {k: _jsonable(v) for k, v in self.details.items()}
        return out


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)

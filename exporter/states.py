"""Port states and reasons: the one place for PortQry's state semantics.

PortQry (KB 310099 / 832919) reports a port as LISTENING, NOT LISTENING or FILTERED, and a UDP
port that stays silent to an unformatted datagram as "LISTENING or FILTERED" until a
protocol-aware query settles it.  nmap's equivalents are open, closed, filtered and open|filtered.

Evidence -> state (see README "Port states"):

=========================  ============================  ===========================
evidence                   TCP                           UDP
=========================  ============================  ===========================
handshake / any reply      LISTENING (syn-ack)           LISTENING (reply)
RST                        NOT LISTENING (refused)       -
ICMP port unreachable      NOT LISTENING                 NOT LISTENING
other ICMP unreachable     FILTERED                      FILTERED
silence after all tries    FILTERED (timeout)            LISTENING or FILTERED (no-reply)
protocol reply             LISTENING (protocol-reply)    LISTENING (protocol-reply)
no protocol reply          LISTENING (protocol-no-reply) FILTERED (protocol-no-reply)
=========================  ============================  ===========================

``protocol-no-reply`` is the same evidence on both transports, the protocol-aware query got no reply, and the
transport decides the state: over UDP silence proves nothing about the port (FILTERED, as PortQry), over TCP
the completed handshake (and TLS handshake, for LDAPS) proves a listener that does not answer its protocol
(a hung LDAP service): LISTENING, not ``syn-ack``.  A partial reply is ``protocol-error``.

A protocol-aware query ends in one :class:`Finding`; :func:`protocol_verdict` is the one table that turns
it into the port's final state and reason.
"""

from __future__ import annotations

import errno
from enum import StrEnum


class PortState(StrEnum):
    """A port's state; the value is the exporter's label word (``portqry_port_state``)."""

    LISTENING = "listening"
    NOT_LISTENING = "not_listening"
    FILTERED = "filtered"
    LISTENING_OR_FILTERED = "listening_or_filtered"

    @property
    def portqry_text(self) -> str:
        """PortQry's own words, e.g. ``LISTENING or FILTERED``."""
        return _PORTQRY_TEXT[self]

    @property
    def exit_code(self) -> int:
        """PortQry's ``-q`` errorlevel: 0 LISTENING, 1 NOT LISTENING, 2 FILTERED / LISTENING or FILTERED."""
        return _EXIT_CODE[self]


_PORTQRY_TEXT = {
    PortState.LISTENING: "LISTENING",
    PortState.NOT_LISTENING: "NOT LISTENING",
    PortState.FILTERED: "FILTERED",
    PortState.LISTENING_OR_FILTERED: "LISTENING or FILTERED",
}
_EXIT_CODE = {
    PortState.LISTENING: 0,
    PortState.NOT_LISTENING: 1,
    PortState.FILTERED: 2,
    PortState.LISTENING_OR_FILTERED: 2,
}


class Reason(StrEnum):
    """Why a probe reached its state: a closed set, exported as the ``reason`` label."""

    SYN_ACK = "syn-ack"  # TCP handshake completed
    REFUSED = "refused"  # TCP RST (connect() cannot tell it from an ICMP port unreachable without the error queue)
    TIMEOUT = "timeout"  # TCP: no answer to any try
    NO_REPLY = "no-reply"  # UDP: no datagram and no ICMP to the unformatted datagram
    REPLY = "reply"  # UDP: a datagram came back
    ICMP_PORT_UNREACHABLE = "icmp-port-unreachable"
    ICMP_HOST_UNREACHABLE = "icmp-host-unreachable"
    ICMP_NET_UNREACHABLE = "icmp-net-unreachable"
    ICMP_ADMIN_PROHIBITED = "icmp-admin-prohibited"
    ICMP_UNREACHABLE = "icmp-unreachable"  # any other destination-unreachable code
    PROTOCOL_REPLY = "protocol-reply"  # a protocol-aware query got a parsed reply
    PROTOCOL_ERROR = "protocol-error"  # something answered, but not with a valid reply of the protocol
    PROTOCOL_REFUSED = "protocol-refused"  # the server answered with a fault / reject / bind_nak
    PROTOCOL_NO_REPLY = "protocol-no-reply"  # the protocol-aware query got no reply: UDP FILTERED, TCP LISTENING
    RESOLVE_FAILED = "resolve-failed"
    NO_ROUTE = "no-route"  # connect()/send() found no route here to the address, and no ICMP came back
    LOCAL_PROHIBITED = "local-prohibited"  # a netfilter rule on this host refused the connect or send (EPERM)
    LOCAL_ERROR = "local-error"  # our side failed (no descriptor, no buffer, socket() refused): not a port state


#: ICMP (type 3) destination-unreachable codes -> (state, reason); RFC 792, RFC 1812 section 5.2.7.1.
ICMP4_UNREACH: dict[int, tuple[PortState, Reason]] = {
    0: (PortState.FILTERED, Reason.ICMP_NET_UNREACHABLE),
    1: (PortState.FILTERED, Reason.ICMP_HOST_UNREACHABLE),
    3: (PortState.NOT_LISTENING, Reason.ICMP_PORT_UNREACHABLE),
    9: (PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
    10: (PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
    13: (PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
}
#: ICMPv6 (type 1) destination-unreachable codes; RFC 4443 section 3.1.
ICMP6_UNREACH: dict[int, tuple[PortState, Reason]] = {
    0: (PortState.FILTERED, Reason.ICMP_NET_UNREACHABLE),
    1: (PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
    3: (PortState.FILTERED, Reason.ICMP_HOST_UNREACHABLE),
    4: (PortState.NOT_LISTENING, Reason.ICMP_PORT_UNREACHABLE),
    5: (PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
    6: (PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
}


def classify_icmp(family: int, icmp_type: int, icmp_code: int) -> tuple[PortState, Reason]:
    """Map an ICMP error to a port state.

    Args:
        family: ``socket.AF_INET`` or ``socket.AF_INET6`` (the family of the probed address).
        icmp_type: ICMP type (3 for IPv4 destination unreachable, 1 for ICMPv6).
        icmp_code: the unreachable code.

    Returns:
        ``(state, reason)``; an unknown unreachable code is FILTERED/icmp-unreachable (nmap does the same).
    """
    import socket

    if family == socket.AF_INET6:
        if icmp_type == 1:
            return ICMP6_UNREACH.get(icmp_code, (PortState.FILTERED, Reason.ICMP_UNREACHABLE))
    elif icmp_type == 3:
        return ICMP4_UNREACH.get(icmp_code, (PortState.FILTERED, Reason.ICMP_UNREACHABLE))
    return (PortState.FILTERED, Reason.ICMP_UNREACHABLE)


#: errno of a failed connect()/send() without ICMP evidence in the error queue -> (state, reason).
ERRNO_EVIDENCE: dict[int, tuple[PortState, Reason]] = {
    errno.ECONNREFUSED: (PortState.NOT_LISTENING, Reason.REFUSED),
    errno.EHOSTUNREACH: (PortState.FILTERED, Reason.ICMP_HOST_UNREACHABLE),
    errno.ENETUNREACH: (PortState.FILTERED, Reason.NO_ROUTE),  # without ICMP evidence: no route here
    errno.EACCES: (PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
    errno.EPERM: (PortState.FILTERED, Reason.LOCAL_PROHIBITED),
}


def classify_errno(code: int) -> tuple[PortState, Reason]:
    """Map the errno of a failed connect or send to a port state.

    Any other errno (``EMFILE``, ``ENOBUFS``, ``EADDRNOTAVAIL`` ...) is ``local-error``: this host failed, which
    says nothing about the port; the daemon does not publish it (the port keeps its last result).
    """
    return ERRNO_EVIDENCE.get(code, (PortState.FILTERED, Reason.LOCAL_ERROR))


class Finding(StrEnum):
    """How a protocol-aware query ended; :func:`protocol_verdict` gives the state it means."""

    PARSED = "parsed"  # a reply of the protocol came back and was parsed
    REFUSED = "refused"  # the server answered with a fault, reject, bind_nak or error result
    GARBLED = "garbled"  # something answered, but not a valid reply of the protocol (or the TLS handshake failed)
    SILENT = "silent"  # UDP: the query got no accepted reply (the query's own evidence: silence or ICMP)
    STALLED = "stalled"  # TCP: connected (and TLS), then the peer closed or stayed silent without replying
    UNREACHED = "unreached"  # the query could not reach the port again (connect failed or timed out)


def protocol_verdict(finding: Finding, state: PortState, reason: Reason) -> tuple[PortState, Reason]:
    """PortQry's rule for the state after a protocol-aware query (KB 310099, "UDP port ... LISTENING").

    Args:
        finding: how the query ended.
        state: the evidence the finding rests on: for :attr:`Finding.SILENT` the query's own evidence (silence
            is ``LISTENING_OR_FILTERED``/``no-reply``, or an ICMP state); otherwise the state probe's.
        reason: that evidence's reason.

    Returns:
        ``(state, reason)``: a parsed, refused or garbled reply is LISTENING (``protocol-reply``,
        ``protocol-refused``, ``protocol-error``); silence to a UDP query is FILTERED/``protocol-no-reply`` and
        an ICMP error keeps its own state; a stalled TCP exchange (the handshake completed, the query got no
        reply) is LISTENING/``protocol-no-reply``; an unreached port keeps the state probe's state and reason.
    """
    if finding is Finding.PARSED:
        return PortState.LISTENING, Reason.PROTOCOL_REPLY
    if finding is Finding.REFUSED:
        return PortState.LISTENING, Reason.PROTOCOL_REFUSED
    if finding is Finding.GARBLED:
        return PortState.LISTENING, Reason.PROTOCOL_ERROR
    if finding is Finding.SILENT:
        if state in (PortState.LISTENING_OR_FILTERED, PortState.LISTENING):
            return PortState.FILTERED, Reason.PROTOCOL_NO_REPLY
        return state, reason
    if finding is Finding.STALLED:
        return PortState.LISTENING, Reason.PROTOCOL_NO_REPLY
    return state, reason

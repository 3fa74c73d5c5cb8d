"""The state semantics table: ICMP codes, PortQry words and exit codes."""

import socket

import pytest

from exporter.states import Finding, PortState, Reason, classify_icmp, protocol_verdict


@pytest.mark.parametrize(
    ("family", "icmp_type", "code", "state", "reason"),
    [
        (socket.AF_INET, 3, 3, PortState.NOT_LISTENING, Reason.ICMP_PORT_UNREACHABLE),
        (socket.AF_INET, 3, 1, PortState.FILTERED, Reason.ICMP_HOST_UNREACHABLE),
        (socket.AF_INET, 3, 0, PortState.FILTERED, Reason.ICMP_NET_UNREACHABLE),
        (socket.AF_INET, 3, 13, PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
        (socket.AF_INET, 3, 10, PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
        (socket.AF_INET, 3, 2, PortState.FILTERED, Reason.ICMP_UNREACHABLE),
        (socket.AF_INET, 11, 0, PortState.FILTERED, Reason.ICMP_UNREACHABLE),
        (socket.AF_INET6, 1, 4, PortState.NOT_LISTENING, Reason.ICMP_PORT_UNREACHABLE),
        (socket.AF_INET6, 1, 1, PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
        (socket.AF_INET6, 1, 3, PortState.FILTERED, Reason.ICMP_HOST_UNREACHABLE),
        (socket.AF_INET6, 3, 3, PortState.FILTERED, Reason.ICMP_UNREACHABLE),
    ],
)
def test_icmp_classification(family: int, icmp_type: int, code: int, state: PortState, reason: Reason) -> None:
    assert classify_icmp(family, icmp_type, code) == (state, reason)


def test_portqry_words_and_exit_codes() -> None:
    assert [s.portqry_text for s in PortState] == [
        "LISTENING",
        "NOT LISTENING",
        "FILTERED",
        "LISTENING or FILTERED",
    ]
    assert [s.exit_code for s in PortState] == [0, 1, 2, 2]
    assert [s.value for s in PortState] == ["listening", "not_listening", "filtered", "listening_or_filtered"]


@pytest.mark.parametrize(
    ("finding", "evidence", "verdict"),
    [
        (
            Finding.PARSED,
            (PortState.LISTENING_OR_FILTERED, Reason.NO_REPLY),
            (PortState.LISTENING, Reason.PROTOCOL_REPLY),
        ),
        (Finding.REFUSED, (PortState.LISTENING, Reason.SYN_ACK), (PortState.LISTENING, Reason.PROTOCOL_REFUSED)),
        (Finding.GARBLED, (PortState.LISTENING, Reason.SYN_ACK), (PortState.LISTENING, Reason.PROTOCOL_ERROR)),
        # PortQry: a UDP port silent to its protocol query is FILTERED; an ICMP answer keeps its own state
        (
            Finding.SILENT,
            (PortState.LISTENING_OR_FILTERED, Reason.NO_REPLY),
            (PortState.FILTERED, Reason.PROTOCOL_NO_REPLY),
        ),
        (
            Finding.SILENT,
            (PortState.NOT_LISTENING, Reason.ICMP_PORT_UNREACHABLE),
            (PortState.NOT_LISTENING, Reason.ICMP_PORT_UNREACHABLE),
        ),
        (
            Finding.SILENT,
            (PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
            (PortState.FILTERED, Reason.ICMP_ADMIN_PROHIBITED),
        ),
        (Finding.STALLED, (PortState.LISTENING, Reason.SYN_ACK), (PortState.LISTENING, Reason.PROTOCOL_NO_REPLY)),
        (Finding.UNREACHED, (PortState.FILTERED, Reason.TIMEOUT), (PortState.FILTERED, Reason.TIMEOUT)),
    ],
)
def test_protocol_verdict(
    finding: Finding, evidence: tuple[PortState, Reason], verdict: tuple[PortState, Reason]
) -> None:
    assert protocol_verdict(finding, *evidence) == verdict


def test_every_finding_has_a_verdict() -> None:
    for finding in Finding:
        state, reason = protocol_verdict(finding, PortState.LISTENING, Reason.SYN_ACK)
        assert isinstance(state, PortState) and isinstance(reason, Reason)

"""Can the test bed run here? Root, ``ip netns``, iptables inside a namespace, and the peers' tools.

:func:`require_netns` is what tests and fixtures call: it skips with the reason outside CI and fails
under ``CI=true``. :func:`netns_unavailable_reason` is the same check without pytest (``bench/``,
``tests/capture_samba.py``).

Check by hand (as root): ``ip netns add pq-x && ip netns exec pq-x iptables -S INPUT; ip netns del pq-x``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from tests.testbed.commands import PREFIX, TestbedError, run


def is_ci() -> bool:
    """Whether ``CI`` is set to true (then a test bed that cannot run fails instead of skipping)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def netns_unavailable_reason(extra_tools: Sequence[str] = ()) -> str | None:
    """Say why the test bed cannot run here, or ``None`` when it can.

    Args:
        extra_tools: executables needed besides ip, iptables, unshare, samba and samba-tool.

    Returns:
        A human-readable reason, or ``None``.
    """
    if os.geteuid() != 0:
        return "test bed needs root (network namespaces, iptables)"
    tools = ["ip", "iptables", "iptables-restore", "unshare", "samba", "samba-tool", *extra_tools]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"test bed needs these executables: {', '.join(missing)} (Debian: samba samba-ad-dc iptables ...)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        proc = run(["ip", "netns", "add", probe], check=False, timeout=10)
    except TestbedError as exc:
        return f"'ip netns add' hangs: {exc}"
    if proc.returncode != 0:
        return f"'ip netns add' is not possible here: {proc.stderr.strip()}"
    try:
        check = run(["ip", "netns", "exec", probe, "iptables", "-S", "INPUT"], check=False, timeout=10)
    finally:
        run(["ip", "netns", "del", probe], check=False, timeout=10)
    if check.returncode != 0:
        return f"iptables does not work inside a namespace: {check.stderr.strip()}"
    return None


_REASON_CACHE: dict[tuple[str, ...], str | None] = {}


def require_netns(*extra_tools: str) -> None:
    """Skip (or fail, when ``CI=true``) unless the test bed can run.

    Needs root, a working ``ip netns add``, iptables inside a namespace, and samba.

    Args:
        *extra_tools: more executables the caller needs (e.g. ``"snmpd"``).

    Raises:
        pytest.skip.Exception: outside CI when something is missing.
        pytest.fail.Exception: in CI (``CI=true``) when something is missing.
    """
    import pytest

    key = tuple(extra_tools)
    if key not in _REASON_CACHE:
        _REASON_CACHE[key] = netns_unavailable_reason(extra_tools)
    reason = _REASON_CACHE[key]
    if reason is None:
        return
    if is_ci():
        pytest.fail(f"CI=true but the test bed cannot run: {reason}", pytrace=False)
    pytest.skip(reason)

"""Leftovers of killed sessions: namespaces, veth links, blackhole routes and temp dirs whose owner pid is gone.

Every name the test bed creates carries the creating process's pid (``pq-<pid>-<n>-<tag>``,
``pq<pid>h<n>``, ``$TMPDIR/pq-<pid>-*``; a blackhole route ``198.18.N.0/24`` has the pid as its
metric), so a session removes only what a dead process left behind
and parallel sessions leave each other alone. :meth:`Namespace.create <tests.testbed.netns.Namespace.create>`
calls :func:`cleanup_leftovers` once per session.

Check by hand: ``ip netns list | grep ^pq-``, ``ip -o link show | grep ' pq[0-9]'``,
``ip -4 route show type blackhole``, ``ls -d $TMPDIR/pq-*``; a pid that ``ps -p`` does not know marks a leftover.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Final

from tests.testbed.commands import kill_ns_processes, pid_alive, run

_NS_RE: Final = re.compile(r"^pq-(\d+)-")
_VETH_RE: Final = re.compile(r"^pq(\d+)[hn]\d+")
_TMP_RE: Final = re.compile(r"^pq-(\d+)-")
_BLACKHOLE_RE: Final = re.compile(r"^blackhole (198\.18\.\d+\.0/24)\b.*\bmetric (\d+)")


def cleanup_leftovers() -> list[str]:
    """Remove namespaces, veth links, blackhole routes and temp dirs of earlier runs whose pid is gone.

    Only names with our prefix and a pid that no longer exists are touched, so parallel sessions
    leave each other alone.

    Returns:
        Names of what was removed.
    """
    removed: list[str] = []
    listing = run(["ip", "netns", "list"], check=False, timeout=10).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NS_RE.match(name)
        if match and not pid_alive(int(match.group(1))):
            kill_ns_processes(name, timeout=5.0)
            run(["ip", "netns", "del", name], check=False, timeout=10)
            removed.append(name)
    links = run(["ip", "-o", "link", "show"], check=False, timeout=10).stdout
    for line in links.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        ifname = parts[1].strip().split("@")[0]
        match = _VETH_RE.match(ifname)
        if match and not pid_alive(int(match.group(1))):
            run(["ip", "link", "del", ifname], check=False, timeout=10)
            removed.append(ifname)
    routes = run(["ip", "-4", "route", "show", "type", "blackhole"], check=False, timeout=10).stdout
    for line in routes.splitlines():
        match = _BLACKHOLE_RE.match(line.strip())
        if match and not pid_alive(int(match.group(2))):
            prefix, metric = match.groups()
            run(["ip", "-4", "route", "del", "blackhole", prefix, "metric", metric], check=False, timeout=10)
            removed.append(f"blackhole {prefix}")
    tmp = Path(tempfile.gettempdir())
    for entry in tmp.iterdir():
        match = _TMP_RE.match(entry.name)
        if match and entry.is_dir() and not pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
    return removed

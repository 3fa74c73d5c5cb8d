"""The listener helper: one Python process inside a namespace that listens on TCP and echoes on UDP.

:meth:`Namespace.start_listeners <tests.testbed.netns.Namespace.start_listeners>` runs it with
``python -c LISTENER_SCRIPT '{"addr": ..., "tcp": [...], "udp": [...]}'``. It accepts and closes every TCP
connection, sends every UDP datagram back unchanged, prints ``READY`` once every socket is bound, and
exits when its stdin closes (the test session went away), so it never outlives the session.

Check by hand while it runs: ``ip netns exec pq-<pid>-<n>-<tag> ss -Hltnu``.
"""

from __future__ import annotations

import textwrap
from typing import Final

LISTENER_SCRIPT: Final = textwrap.dedent(
    """
    import json, resource, selectors, socket, sys
    cfg = json.loads(sys.argv[1])
    need = len(cfg["tcp"]) + len(cfg["udp"]) + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    sel = selectors.DefaultSelector()
    for port in cfg["tcp"]:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((cfg["addr"], port)); s.listen(512); s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "tcp")
    for port in cfg["udp"]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((cfg["addr"], port)); s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "udp")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print("READY", flush=True)
    while True:
        for key, _ in sel.select(timeout=5.0):
            if key.data == "stdin":
                if not sys.stdin.readline():
                    sys.exit(0)  # parent went away: never outlive the test session
                continue
            s = key.fileobj
            try:
                if key.data == "tcp":
                    conn, _ = s.accept(); conn.close()
                else:
                    data, peer = s.recvfrom(65535); s.sendto(data, peer)
            except (BlockingIOError, ConnectionError):
                pass
    """
)
"""Listens on TCP ports (accept, close) and echoes UDP datagrams; exits when stdin closes."""

"""The test suite of portqry-exporter, a package: import its parts as ``tests.X``.

``tests.testbed`` (network namespaces and real peers), ``tests.helpers`` (captures, the pcap reader,
fuzz settings, promtool, ``--config.check``), ``tests.peers`` and ``tests.dnsserver`` (loopback peers),
``tests.daemon``, ``tests.alerting`` and ``tests.dashboards``. Nothing here edits ``sys.path``: pytest
puts the repository root on it (``prepend`` import mode, the first directory above ``tests/`` without
an ``__init__.py``), and ``python -m bench.X`` / ``python -m tests.capture_samba`` run from the root.
"""

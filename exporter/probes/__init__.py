"""Probes: the TCP/UDP state probes and one module per protocol-aware probe."""

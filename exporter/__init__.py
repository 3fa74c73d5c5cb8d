"""portqry-exporter: PortQry's port states and protocol-aware probes as a Prometheus exporter."""

__version__ = "0.1.0"

"""portqry-exporter: PortQry's port states and protocol-aware probes as a Prometheus exporter."""

__version__ = "0.1.0"

#: The distributions ``--version`` names: the protocol codecs first, then the exporter's own stack.
KEY_LIBRARIES = (
    "impacket",
    "pyasn1",
    "dnspython",
    "pydantic",
    "pydantic-settings",
    "prometheus-client",
    "aiohttp",
    "structlog",
    "psutil",
)


def version_text(program: str) -> str:
    """What ``--version`` prints (``portqry`` and ``portqry-exporter``): ours, Python's and the key libraries'.

    Three lines, e.g. ``portqry-exporter 0.1.0`` / ``Python 3.11.7 (CPython, Linux)`` /
    ``impacket 0.12.0, pyasn1 0.6.1, ...``; a library that is not installed is ``NAME not installed``.
    """
    import platform
    from importlib import metadata

    def version_of(name: str) -> str:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            return f"{name} not installed"

    python = f"Python {platform.python_version()} ({platform.python_implementation()}, {platform.system()})"
    return f"{program} {__version__}\n{python}\n{', '.join(version_of(n) for n in KEY_LIBRARIES)}\n"

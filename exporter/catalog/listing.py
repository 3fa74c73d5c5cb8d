"""The catalog as text: ``portqry --list-services`` and ``portqry --list-profiles``.

Check by hand: ``python -c "from exporter.catalog import format_service_list; print(format_service_list())"``.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.catalog.loader import load_catalog
from exporter.catalog.model import Catalog, CatalogRow


def _specs(rows: Iterable[CatalogRow]) -> str:
    """``tcp/389, udp/500 (optional), tcp/49152-65535 (dynamic RPC), icmp (not probed)``; no duplicates."""
    seen: dict[str, None] = {}
    for row in rows:
        spec = row.spec
        if row.dynamic_rpc:
            spec += " (dynamic RPC)"
        elif row.first is None or row.is_range:
            spec += " (not probed)"
        if row.optional:
            spec += " (optional)"
        seen.setdefault(spec, None)
    return ", ".join(seen)


def format_service_list(catalog: Catalog | None = None) -> str:
    """Text for ``portqry --list-services``: one service per line with its ports, article order.

    Each line is ``<display name> [<system service names>]: <ports>``; the bracket is left out when the
    article gives no system service name. Ports read ``tcp/389``, ``tcp+udp/1745``, ``tcp/49152-65535
    (dynamic RPC)``, ``icmp (not probed)``, with `` (optional)`` after optional rows. Example line::

        Kerberos Key Distribution Center [kdc]: tcp/88, udp/88, udp/464, tcp/464, udp/389

    Args:
        catalog: the catalog; :func:`load_catalog` when ``None``.

    Returns:
        The lines joined with ``\\n``, with a trailing newline (60 lines: 59 sections and BranchCache).
    """
    catalog = catalog or load_catalog()
    lines = []
    for service in catalog.services:
        system = f" [{', '.join(service.system_names)}]" if service.system_names else ""
        lines.append(f"{service.name}{system}: {_specs(service.rows)}")
    return "\n".join(lines) + "\n"


def format_profile_list(catalog: Catalog | None = None) -> str:
    """Text for a profile listing: one profile per line, ``<name>: <ports> -- <description>``.

    Args:
        catalog: the catalog; :func:`load_catalog` when ``None``.

    Returns:
        The lines joined with ``\\n``, with a trailing newline.
    """
    catalog = catalog or load_catalog()
    return "".join(f"{p.name}: {_specs(e.row for e in p.entries)} -- {p.description}\n" for p in catalog.profiles)

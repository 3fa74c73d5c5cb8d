"""The Windows service catalog: every service and port of KB 832017, usable by name.

Source: Microsoft, "Service overview and network port requirements for Windows" (KB 832017, ms.date
09/08/2020).  The data is the hand-checked file ``exporter/data/catalog.toml``; the package only loads and
validates it (it never reads the article).

Profiles (:meth:`Catalog.profile`) are named groups built from the catalog: ``domain-controller``,
``member-to-dc``, ``dns-server``, ``file-server``, ``exchange``, ``sql-server`` and PortQry 2.0's interactive
shortcuts (``dns ftp imap ipsec isa ldap l2tp mail pop3 rpc smtp snmp sql tftp``).  The data file says why each
holds what it holds (:attr:`Profile.why`).

Modules: :mod:`~exporter.catalog.model` (the dataclasses, lookups and :meth:`Catalog.expand`),
:mod:`~exporter.catalog.loader` (TOML through pydantic models: :func:`load_catalog`, :func:`parse_catalog`),
:mod:`~exporter.catalog.listing` (``--list-services``/``--list-profiles`` text).

Check by hand::

    python -c "from exporter.catalog import format_service_list; print(format_service_list())"
    python -c "from exporter.catalog import load_catalog as l; print(l().expand([], ['domain-controller']))"
"""

from __future__ import annotations

from exporter.catalog.listing import format_profile_list, format_service_list
from exporter.catalog.loader import load_catalog, parse_catalog
from exporter.catalog.model import (
    EPM_PORT,
    NON_PORT_TRANSPORTS,
    TRANSPORTS,
    Catalog,
    CatalogDataError,
    CatalogLookupError,
    CatalogPort,
    CatalogRow,
    DependencyEntry,
    Erratum,
    Expansion,
    PortSummaryRow,
    Profile,
    ProfileEntry,
    Protocol,
    Service,
    Transport,
    Unprobed,
    UnprobedReason,
)

__all__ = [
    "EPM_PORT",
    "NON_PORT_TRANSPORTS",
    "TRANSPORTS",
    "Catalog",
    "CatalogDataError",
    "CatalogLookupError",
    "CatalogPort",
    "CatalogRow",
    "DependencyEntry",
    "Erratum",
    "Expansion",
    "PortSummaryRow",
    "Profile",
    "ProfileEntry",
    "Protocol",
    "Service",
    "Transport",
    "Unprobed",
    "UnprobedReason",
    "format_profile_list",
    "format_service_list",
    "load_catalog",
    "parse_catalog",
]

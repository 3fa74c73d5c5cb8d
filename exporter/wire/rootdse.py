"""The rootDSE of an LDAP server, as PortQry prints it (RFC 4512 5.1; MS-ADTS 3.1.1.3.2).

Read from the SearchResultEntry with objectName ``""`` that :func:`exporter.wire.ldap.decode_search_response`
returns for an :func:`~exporter.wire.ldap.encode_root_dse_search`.  Values are UTF-8 strings; the typed
ones (currentTime, integers, Booleans) are checked and raise :class:`~exporter.errors.DecodeError` when
malformed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from exporter.errors import DecodeError, ProtocolError
from exporter.wire.ber import parse_generalized_time
from exporter.wire.ldap import SearchEntry, SearchResult, utf8

__all__ = ["RootDSE", "parse_root_dse"]


def _single(attrs: Mapping[str, tuple[str, ...]], name: str) -> str | None:
    values = attrs.get(name.casefold())
    return values[0] if values else None


def _int(attrs: Mapping[str, tuple[str, ...]], name: str) -> int | None:
    value = _single(attrs, name)
    if value is None:
        return None
    if not re.fullmatch(r"-?\d{1,20}", value.strip()):
        raise DecodeError(f"rootDSE {name} is not an integer: {value[:40]!r}")
    return int(value)


def _bool(attrs: Mapping[str, tuple[str, ...]], name: str) -> bool | None:
    value = _single(attrs, name)
    if value is None:
        return None
    upper = value.strip().upper()
    if upper not in ("TRUE", "FALSE"):  # RFC 4517 3.3.3
        raise DecodeError(f"rootDSE {name} is not a Boolean: {value[:40]!r}")
    return upper == "TRUE"


@dataclass(frozen=True, slots=True)
class RootDSE:
    """The rootDSE of an LDAP server, as PortQry prints it (RFC 4512 5.1; MS-ADTS 3.1.1.3.2).

    Every field but ``attributes`` is ``None`` (or ``()``) when the server did not send the
    attribute; OpenLDAP, for one, sends none of the AD-specific ones.

    Attributes:
        attributes: every attribute as received: name (server's spelling) -> string values.
        current_time: ``currentTime`` (PortQry's ``currentdate``), aware UTC.
        subschema_subentry: ``subschemaSubentry`` DN.
        ds_service_name: ``dsServiceName``, the DC's NTDS Settings DN.
        naming_contexts: ``namingContexts`` DNs.
        default_naming_context: ``defaultNamingContext``, the domain DN.
        schema_naming_context: ``schemaNamingContext``.
        configuration_naming_context: ``configurationNamingContext``.
        root_domain_naming_context: ``rootDomainNamingContext``, the forest root DN.
        supported_control: ``supportedControl`` OIDs.
        supported_ldap_version: ``supportedLDAPVersion`` (e.g. ``(3, 2)``).
        supported_ldap_policies: ``supportedLDAPPolicies`` names.
        highest_committed_usn: ``highestCommittedUSN``.
        supported_sasl_mechanisms: ``supportedSASLMechanisms``.
        dns_host_name: ``dnsHostName``, the DC's FQDN.
        ldap_service_name: ``ldapServiceName`` (``domain:host$@REALM``).
        server_name: ``serverName``, the DC's server object DN.
        supported_capabilities: ``supportedCapabilities`` OIDs.
        is_synchronized: ``isSynchronized``.
        is_global_catalog_ready: ``isGlobalCatalogReady``.
        domain_functionality: ``domainFunctionality`` (MS-ADTS 6.1.4.4: 7 = 2016).
        forest_functionality: ``forestFunctionality``.
        domain_controller_functionality: ``domainControllerFunctionality``.
    """

    attributes: Mapping[str, tuple[str, ...]] = field(hash=False)
    current_time: datetime | None
    subschema_subentry: str | None
    ds_service_name: str | None
    naming_contexts: tuple[str, ...]
    default_naming_context: str | None
    schema_naming_context: str | None
    configuration_naming_context: str | None
    root_domain_naming_context: str | None
    supported_control: tuple[str, ...]
    supported_ldap_version: tuple[int, ...]
    supported_ldap_policies: tuple[str, ...]
    highest_committed_usn: int | None
    supported_sasl_mechanisms: tuple[str, ...]
    dns_host_name: str | None
    ldap_service_name: str | None
    server_name: str | None
    supported_capabilities: tuple[str, ...]
    is_synchronized: bool | None
    is_global_catalog_ready: bool | None
    domain_functionality: int | None
    forest_functionality: int | None
    domain_controller_functionality: int | None

    def get(self, name: str) -> tuple[str, ...]:
        """All values of ``name`` (case-insensitive), or ``()``."""
        key = name.casefold()
        for attr, values in self.attributes.items():
            if attr.casefold() == key:
                return values
        return ()

    @classmethod
    def from_entry(cls, entry: SearchEntry) -> RootDSE:
        """Build from the rootDSE's SearchResultEntry; values are decoded as UTF-8.

        Raises:
            DecodeError: a value is not UTF-8, or a typed attribute (time, integer, Boolean)
                is malformed. The raw entry stays available for a LISTENING verdict.
        """
        raw_lists: dict[str, list[str]] = {}
        folded_lists: dict[str, list[str]] = {}
        for attr, values in entry.attributes:
            texts = [utf8(v, f"rootDSE {attr}") for v in values]
            raw_lists.setdefault(attr, []).extend(texts)
            folded_lists.setdefault(attr.casefold(), []).extend(texts)
        raw = {attr: tuple(texts) for attr, texts in raw_lists.items()}
        folded = {attr: tuple(texts) for attr, texts in folded_lists.items()}

        def many(name: str) -> tuple[str, ...]:
            return folded.get(name.casefold(), ())

        current = _single(folded, "currentTime")
        versions = []
        for v in many("supportedLDAPVersion"):
            if not re.fullmatch(r"\d{1,3}", v.strip()):
                raise DecodeError(f"rootDSE supportedLDAPVersion is not an integer: {v[:40]!r}")
            versions.append(int(v))
        return cls(
            attributes=MappingProxyType(raw),
            current_time=None if current is None else parse_generalized_time(current),
            subschema_subentry=_single(folded, "subschemaSubentry"),
            ds_service_name=_single(folded, "dsServiceName"),
            naming_contexts=many("namingContexts"),
            default_naming_context=_single(folded, "defaultNamingContext"),
            schema_naming_context=_single(folded, "schemaNamingContext"),
            configuration_naming_context=_single(folded, "configurationNamingContext"),
            root_domain_naming_context=_single(folded, "rootDomainNamingContext"),
            supported_control=many("supportedControl"),
            supported_ldap_version=tuple(versions),
            supported_ldap_policies=many("supportedLDAPPolicies"),
            highest_committed_usn=_int(folded, "highestCommittedUSN"),
            supported_sasl_mechanisms=many("supportedSASLMechanisms"),
            dns_host_name=_single(folded, "dnsHostName"),
            ldap_service_name=_single(folded, "ldapServiceName"),
            server_name=_single(folded, "serverName"),
            supported_capabilities=many("supportedCapabilities"),
            is_synchronized=_bool(folded, "isSynchronized"),
            is_global_catalog_ready=_bool(folded, "isGlobalCatalogReady"),
            domain_functionality=_int(folded, "domainFunctionality"),
            forest_functionality=_int(folded, "forestFunctionality"),
            domain_controller_functionality=_int(folded, "domainControllerFunctionality"),
        )


def parse_root_dse(result: SearchResult) -> RootDSE:
    """The rootDSE from a search reply: its entry with objectName ``""``.

    Raises:
        ProtocolError: the server refused the search (non-zero resultCode, e.g. after a
            Notice of Disconnection) or sent no rootDSE entry; the port still answered.
        DecodeError: no SearchResultDone, or see :meth:`RootDSE.from_entry`.
    """
    if result.result_code is None:
        raise DecodeError("search reply has no SearchResultDone")
    if result.result_code != 0:
        raise ProtocolError(
            f"LDAP search refused: {result.result_name} ({result.result_code}) {result.diagnostic_message}"
        )
    for entry in result.entries:
        if entry.object_name == "":
            return RootDSE.from_entry(entry)
    raise ProtocolError("LDAP search reply has no rootDSE entry")

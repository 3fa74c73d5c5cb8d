"""Server-side encoders for the wire codecs: what a test peer sends back (never sent by the probes).

Each builds a reply with the same library types the decoder reads it with (impacket's ldapasn1 and
krb5 ASN.1, pyasn1-modules' SNMP) or by hand for our own formats (EPM NDR stubs and towers,
connectionless RPC fragments, NBSTAT, Netlogon, MC-SQLR).
"""

from __future__ import annotations

from collections.abc import Sequence

from impacket.ldap import ldapasn1

from exporter.wire.ldap import encode_message

# --------------------------------------------------------------------------- LDAP


def encode_search_response(
    message_id: int,
    entries: Sequence[tuple[str, Sequence[tuple[str, Sequence[bytes]]]]],
    result_code: int = 0,
    diagnostic_message: str = "",
) -> bytes:
    """Encode SearchResultEntry messages followed by a SearchResultDone (RFC 4511 4.5.2).

    Args:
        message_id: the request's message ID.
        entries: ``[(object_name, [(attribute, [value_bytes, ...]), ...]), ...]``.
        result_code: SearchResultDone resultCode (RFC 4511 4.1.9).
        diagnostic_message: SearchResultDone diagnosticMessage.

    Returns:
        The concatenated LDAPMessages (one datagram, or a TCP stream).

    Raises:
        ValueError: ``message_id`` out of range.
    """
    out = []
    for object_name, attributes in entries:
        entry = ldapasn1.SearchResultEntry()
        entry["objectName"] = object_name
        attrs = entry["attributes"]
        for i, (attr_type, values) in enumerate(attributes):
            partial = ldapasn1.PartialAttribute()
            partial["type"] = attr_type
            partial["vals"].setComponents(*values)
            attrs[i] = partial
        out.append(encode_message(message_id, "searchResEntry", entry))
    done = ldapasn1.SearchResultDone()
    done["resultCode"] = result_code
    done["matchedDN"] = ""
    done["diagnosticMessage"] = diagnostic_message
    out.append(encode_message(message_id, "searchResDone", done))
    return b"".join(out)

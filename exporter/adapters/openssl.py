"""OpenSSL's chain verification in memory (``X509_verify_cert`` through pyOpenSSL): the only pyOpenSSL import.

The TLS probe observes without trusting; this is its second step, run on the chain the server already sent, with
no packet of its own: build a path from the leaf through the sent intermediates to a trusted CA (the system
store, or a CA file), check every signature, validity period and CA constraint (RFC 5280 6.1), as an
OpenSSL-based client (OpenLDAP, SSSD, Python's ``ssl``) does.  The host name and the server-authentication
purpose are checked apart (:func:`exporter.wire.x509.check_certificates`).

Why not ``cryptography.x509.verification``: its Web PKI (CA/Browser Forum) policy refuses Samba's own
certificates outright (a negative serial number, no subjectAltName), which every OpenSSL client accepts.

Check by hand::

    openssl s_client -connect dc1.example.test:636 -showcerts </dev/null > chain.pem
    openssl verify -CAfile ca.pem -untrusted chain.pem chain.pem
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from OpenSSL import crypto

#: Intermediates passed to the verification at most (the rest of a longer sent chain is ignored).
MAX_INTERMEDIATES = 10
#: The ``store`` word of a verification against the system's default CA store.
SYSTEM_STORE = "system"


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of a chain verification.

    Attributes:
        verified: the leaf chains to a trusted CA with every signature, date and CA constraint right.
        error: OpenSSL's reason when not (``self-signed certificate``, ``certificate has expired`` ...), with
            the depth of the certificate it concerns (0 = the leaf); ``""`` when verified.
        store: what was trusted: the CA file's path, or :data:`SYSTEM_STORE`.
    """

    verified: bool
    error: str
    store: str


def verify_chain(chain: Sequence[bytes], ca_file: str = "") -> Verification:
    """Verify ``chain[0]`` with ``chain[1:]`` as untrusted intermediates (RFC 5280 6.1, OpenSSL's defaults).

    Args:
        chain: DER certificates as the server sent them, leaf first.
        ca_file: a PEM file of trusted CAs; ``""`` = the system store (:func:`ssl.get_default_verify_paths`).

    Returns:
        The verification; an unreadable certificate or CA file is ``verified=False`` with the reason.
    """
    store_name = ca_file or SYSTEM_STORE
    if not chain:
        return Verification(False, "no certificate", store_name)
    try:
        store = _store(ca_file, _mtime(ca_file))
    except (OSError, crypto.Error) as exc:
        return Verification(False, f"CA file {ca_file}: {_text(exc)}", store_name)
    try:
        leaf = crypto.load_certificate(crypto.FILETYPE_ASN1, chain[0])
        untrusted = [crypto.load_certificate(crypto.FILETYPE_ASN1, der) for der in chain[1 : 1 + MAX_INTERMEDIATES]]
    except crypto.Error as exc:
        return Verification(False, f"certificate: {_text(exc)}", store_name)
    try:
        crypto.X509StoreContext(store, leaf, untrusted).verify_certificate()
    except crypto.X509StoreContextError as exc:
        depth = exc.errors[1] if len(exc.errors) > 1 else None
        where = f" (depth {depth})" if isinstance(depth, int) else ""
        return Verification(False, f"{exc}{where}", store_name)
    return Verification(True, "", store_name)


def _mtime(path: str) -> float:
    return os.stat(path).st_mtime if path else 0.0


@functools.lru_cache(maxsize=16)
def _store(ca_file: str, _mtime: float) -> crypto.X509Store:
    """The trusted store of ``ca_file`` (or the system's), cached until the file changes (``_mtime``).

    Raises:
        OSError: the file cannot be read.  crypto.Error: no certificate in it.
    """
    store = crypto.X509Store()
    if ca_file:
        store.load_locations(ca_file)
        return store
    paths = ssl.get_default_verify_paths()
    if paths.cafile or paths.capath:
        store.load_locations(paths.cafile, paths.capath)
    return store


def _text(exc: BaseException) -> str:
    """Plain words: an OSError's strerror, a ``crypto.Error``'s OpenSSL reasons (its args are (lib, func, reason))."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    reasons = [e[2] for e in (exc.args[0] if exc.args and isinstance(exc.args[0], list) else []) if len(e) == 3]
    return "; ".join(str(r) for r in reasons if r) or str(exc) or type(exc).__name__

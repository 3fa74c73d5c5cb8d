"""The web config (``--web.config.file``): TLS, mutual TLS, basic auth and response headers.

The file is Prometheus' exporter-toolkit format (``docs/web-configuration.md`` there), so a ``web.yml`` written
for node_exporter works here::

    tls_server_config:
      cert_file: server.crt            # relative paths are relative to this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12               # the default; TLS10 ... TLS13
    http_server_config:
      headers:
        X-Content-Type-Options: nosniff
    basic_auth_users:
      prometheus: $2y$10$...           # htpasswd -nBC 10 "" | tr -d ':\\n'

Validated at start and on every reload (one-line :class:`~exporter.errors.ConfigError`; a bad file on reload
keeps the last good one).  What Python's :mod:`ssl` cannot do is refused with a one-line error rather than
ignored: ``client_auth_type`` ``RequestClientCert`` and ``RequireAnyClientCert`` (Python verifies every client
certificate it receives), more than one ``curve_preferences`` entry, ``rate_limit``.  ``http2`` is accepted and
has no effect (aiohttp speaks HTTP/1.1).

Reload: ``basic_auth_users``, the headers and ``client_allowed_sans`` apply to the next request.  New
certificate, key or client CA files apply to the next TLS connection: the context the listener was bound with
has an SNI callback (OpenSSL calls it for every ClientHello, with or without a server name) that hands the
connection the newest context.  OpenSSL keeps the verify mode, protocol versions and ciphers of the bound
context on a swapped connection, so a change of ``client_auth_type``, ``min_version``/``max_version``,
``cipher_suites``, ``prefer_server_cipher_suites``, ``curve_preferences`` or of TLS on/off keeps the whole
running TLS section until a restart, and the reload answer says so.

Basic auth: every path needs it when ``basic_auth_users`` is set (exporter-toolkit exempts nothing); a wrong
or missing password gets 401 with ``WWW-Authenticate: Basic``.  A verified (user, hash, password) triple is
cached, keyed by an HMAC with a per-process random key, so a scrape does not pay bcrypt each time; failures
are not cached (a flood of wrong passwords cannot evict the good entries), and bcrypt runs in a worker thread
one at a time, a single computation shared by concurrent requests with the same credentials.  An unknown user
is checked against a fixed hash, so timing does not tell which users exist.

Check by hand: ``curl --cacert ca.crt -u prometheus:secret https://127.0.0.1:9727/metrics``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from exporter.config import read_config_file
from exporter.errors import ConfigError
from exporter.logs import get_logger
from exporter.webauth import BasicAuthChecker

log = get_logger(component="web")

CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode | None] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    # exporter-toolkit's unverified modes: Python's ssl verifies every certificate a client sends
    "RequestClientCert": None,
    "RequireAnyClientCert": None,
    "RequireClientCert": None,
}
TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
#: Go's ``tls.CipherSuites()`` (the ones exporter-toolkit accepts) -> OpenSSL names; ``""``: a TLS 1.3 suite,
#: which neither Go nor OpenSSL lets a config choose (accepted, no effect).
CIPHER_SUITES: Mapping[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_AES_128_GCM_SHA256": "",
    "TLS_AES_256_GCM_SHA384": "",
    "TLS_CHACHA20_POLY1305_SHA256": "",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
CURVES: Mapping[str, str] = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
#: The headers ``http_server_config.headers`` may set and their allowed values (empty: any), as exporter-toolkit.
EXTRA_HEADERS: Mapping[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_BCRYPT_HASH = re.compile(r"^\$2[abxy]?\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$")
#: bcrypt of "fakepassword" (exporter-toolkit's): what an unknown user's password is checked against.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TLSServerConfig(_Strict):
    """``tls_server_config``: exporter-toolkit's keys and defaults."""

    cert: str = ""
    key: str = ""
    client_ca: str = ""
    cert_file: str = ""
    key_file: str = ""
    client_auth_type: str = ""
    client_ca_file: str = ""
    client_allowed_sans: list[str] | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: list[str] = []
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] = []

    @field_validator("client_auth_type")
    @classmethod
    def _auth_type(cls, value: str) -> str:
        if value and value not in CLIENT_AUTH_TYPES:
            raise ValueError(f"{value!r} is not one of {', '.join(CLIENT_AUTH_TYPES)}")
        if value and CLIENT_AUTH_TYPES[value] is None:
            raise ValueError(
                f"{value!r} is not supported: Python's ssl verifies every client certificate it receives; "
                "use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            )
        return value

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value not in TLS_VERSIONS:
            raise ValueError(f"unknown TLS version {value!r} (one of {', '.join(TLS_VERSIONS)})")
        return value

    @field_validator("cipher_suites")
    @classmethod
    def _ciphers(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in CIPHER_SUITES:
                raise ValueError(f"unknown cipher {name!r} (Go's tls.CipherSuites() names)")
        return value

    @field_validator("curve_preferences")
    @classmethod
    def _curves(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in CURVES:
                raise ValueError(f"unknown curve {name!r} (one of {', '.join(CURVES)})")
        if len(value) > 1:
            raise ValueError("Python's ssl sets one curve: give one")
        return value

    @property
    def enabled(self) -> bool:
        """Any TLS key set (exporter-toolkit's ``IsEnabled``); an empty section means plain HTTP."""
        return bool(
            self.cert_file
            or self.cert
            or self.key_file
            or self.key
            or self.client_ca_file
            or self.client_ca
            or self.client_auth_type
        )

    def policy(self) -> tuple[object, ...]:
        """What a swapped context cannot change on a connection (OpenSSL copies it at ``SSL_new``)."""
        return (
            self.client_auth_type or "NoClientCert",
            self.min_version,
            self.max_version,
            tuple(self.cipher_suites),
            self.prefer_server_cipher_suites,
            tuple(self.curve_preferences),
        )


class HTTPServerConfig(_Strict):
    """``http_server_config``."""

    http2: bool = True
    headers: dict[str, str] = {}

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, content in value.items():
            if name not in EXTRA_HEADERS:
                raise ValueError(f"HTTP header {name!r} can not be configured (one of {', '.join(EXTRA_HEADERS)})")
            allowed = EXTRA_HEADERS[name]
            if allowed and content not in allowed:
                raise ValueError(f"invalid value for {name}: expected one of {', '.join(allowed)}, got {content!r}")
        return value


class WebConfigFile(_Strict):
    """The whole file."""

    tls_server_config: TLSServerConfig = TLSServerConfig()
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    basic_auth_users: dict[str, str] = {}

    @field_validator("tls_server_config", "http_server_config", "basic_auth_users", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("basic_auth_users")
    @classmethod
    def _users(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            if not _BCRYPT_HASH.match(hashed):
                raise ValueError(f"user {user!r}: not a bcrypt hash ($2y$10$..., as htpasswd -nBC 10 makes)")
        return value


@dataclass(frozen=True)
class WebConfig:
    """A validated web config and the TLS context built from it (``None``: plain HTTP)."""

    path: str
    file: WebConfigFile
    context: ssl.SSLContext | None

    @property
    def tls(self) -> TLSServerConfig | None:
        """The TLS section when TLS is on."""
        return self.file.tls_server_config if self.context is not None else None

    @property
    def users(self) -> Mapping[str, str]:
        """``basic_auth_users``: user -> bcrypt hash."""
        return self.file.basic_auth_users

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers added to every response (blank values are unset, as exporter-toolkit)."""
        return {k: v for k, v in self.file.http_server_config.headers.items() if v}


EMPTY = WebConfig("", WebConfigFile(), None)
"""No ``--web.config.file``: plain HTTP, no auth, no extra headers."""


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate a web config file and build its TLS context (reading the certificate and key).

    Raises:
        ConfigError: unreadable file, bad YAML, unknown key, bad value, unreadable or mismatched certificate
            and key; one line naming file, key, problem.
    """
    import yaml

    name, text = read_config_file(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(name, "", "not valid YAML: " + " ".join(str(exc).split())[:300]) from None
    except RecursionError:
        raise ConfigError(name, "", "not valid YAML: nested too deeply") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(name, "", f"expected a mapping at the top level, got {type(raw).__name__}")
    if "rate_limit" in raw:
        raise ConfigError(name, "rate_limit", "not supported here (use a reverse proxy)")
    try:
        parsed = WebConfigFile.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        problem = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            problem = "unknown key"
        if len(errors) > 1:
            problem += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        raise ConfigError(name, key, problem) from None
    tls = parsed.tls_server_config
    context = _context(name, tls, Path(name).parent) if tls.enabled else None
    return WebConfig(name, parsed, context)


def _context(name: str, tls: TLSServerConfig, base: Path) -> ssl.SSLContext:
    """The server context for ``tls``; files relative to ``base`` (the web config's directory)."""
    where = "tls_server_config"
    for inline, file_key in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
        if getattr(tls, inline) and getattr(tls, file_key):
            raise ConfigError(name, f"{where}.{file_key}", f"give {inline} or {file_key}, not both")
    if not (tls.cert_file or tls.cert):
        raise ConfigError(name, where, "missing one of cert or cert_file")
    if not (tls.key_file or tls.key):
        raise ConfigError(name, where, "missing one of key or key_file")
    mode = CLIENT_AUTH_TYPES[tls.client_auth_type or "NoClientCert"]
    has_ca = bool(tls.client_ca_file or tls.client_ca)
    if has_ca and mode == ssl.CERT_NONE:
        raise ConfigError(name, f"{where}.client_auth_type", "client CAs are configured without a client auth policy")
    if mode != ssl.CERT_NONE and not has_ca:
        raise ConfigError(name, f"{where}.client_ca_file", f"{tls.client_auth_type} needs client_ca_file")
    if tls.client_allowed_sans is not None and mode == ssl.CERT_NONE:
        raise ConfigError(name, f"{where}.client_allowed_sans", "needs a client_auth_type that verifies certificates")
    if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
        raise ConfigError(name, f"{where}.min_version", f"{tls.min_version} is above max_version {tls.max_version}")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    ctx.set_alpn_protocols(["http/1.1"])
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    openssl_names = [CIPHER_SUITES[c] for c in tls.cipher_suites if CIPHER_SUITES[c]]
    if openssl_names:
        try:
            ctx.set_ciphers(":".join(openssl_names))
        except ssl.SSLError as exc:
            raise ConfigError(name, f"{where}.cipher_suites", f"OpenSSL refuses them: {exc.reason}") from None
    if tls.curve_preferences:
        ctx.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    with _pem_files(tls, base) as (cert_path, key_path):
        for key, path in (("cert_file", cert_path), ("key_file", key_path)):
            if not os.path.isfile(path):
                raise ConfigError(name, f"{where}.{key}", f"cannot read {path}: file not found")
        try:
            ctx.load_cert_chain(cert_path, key_path, password=_no_password)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
            raise ConfigError(name, f"{where}.cert_file", f"cannot load the certificate and key: {reason}") from None
    ctx.verify_mode = mode if mode is not None else ssl.CERT_REQUIRED  # None: refused by the validator
    if has_ca:
        try:
            if tls.client_ca_file:
                ca_path = base / tls.client_ca_file
                if not ca_path.is_file():
                    raise ConfigError(name, f"{where}.client_ca_file", f"cannot read {ca_path}: file not found")
                ctx.load_verify_locations(cafile=str(ca_path))
            else:
                ctx.load_verify_locations(cadata=tls.client_ca)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
            raise ConfigError(name, f"{where}.client_ca_file", f"cannot load the client CAs: {reason}") from None
    return ctx


def _no_password() -> bytes:
    return b""  # an encrypted key fails to load instead of prompting on the terminal


@contextlib.contextmanager
def _pem_files(tls: TLSServerConfig, base: Path) -> Iterator[tuple[str, str]]:
    """The certificate and key as file paths: ``load_cert_chain`` reads files, so inline PEM goes to a 0700 dir."""
    if tls.cert_file and tls.key_file:
        yield str(base / tls.cert_file), str(base / tls.key_file)
        return
    with tempfile.TemporaryDirectory(prefix="portqry-web-") as tmp:
        cert_path = str(base / tls.cert_file) if tls.cert_file else os.path.join(tmp, "cert.pem")
        key_path = str(base / tls.key_file) if tls.key_file else os.path.join(tmp, "key.pem")
        for inline, path in ((tls.cert, cert_path), (tls.key, key_path)):
            if inline:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(inline)
        yield cert_path, key_path


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address (``request.remote``) is loopback: 127.0.0.0/8, ``::1``, ``::ffff:127.x``."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _sans(peer: Mapping[str, Any]) -> list[str]:
    out = []
    for kind, value in peer.get("subjectAltName", ()):
        out.append(_normalized(value.strip()) if kind == "IP Address" else value)
    return out


def _normalized(san: str) -> str:
    try:
        return str(ipaddress.ip_address(san))
    except ValueError:
        return san


class WebState:
    """The running web config: what the middleware reads per request and the SNI callback per connection.

    Args:
        config: the validated config at start (:data:`EMPTY` without ``--web.config.file``).
    """

    def __init__(self, config: WebConfig = EMPTY) -> None:
        self.config = config
        self.auth = BasicAuthChecker()
        self.reload_successful = True
        self.reload_success_timestamp = time.time()
        self._bound: WebConfig = config  # the TLS section the listener was bound with
        self._live_tls: WebConfig = config  # the TLS section new connections get

    @property
    def path(self) -> str:
        """The web config file (``""``: none)."""
        return self.config.path

    @property
    def scheme(self) -> str:
        """``https`` when the listener serves TLS."""
        return "https" if self._bound.context is not None else "http"

    def listen_context(self) -> ssl.SSLContext | None:
        """The context to bind the listener with (its SNI callback hands new connections the newest one)."""
        ctx = self._bound.context
        if ctx is not None:
            ctx.sni_callback = self._sni
        return ctx

    def _sni(self, ssl_object: ssl.SSLObject, _server_name: str | None, bound: ssl.SSLContext) -> None:
        live = self._live_tls.context
        if live is not None and live is not bound:
            ssl_object.context = live

    def reload(self) -> tuple[bool, str]:
        """Re-read the web config; a bad one keeps the last good.  Returns ``(ok, message)``."""
        if not self.config.path:
            return True, ""
        try:
            new = load_web_config(self.config.path)
        except ConfigError as exc:
            self.reload_successful = False
            log.error("web config reload refused, keeping the last good web config", error=str(exc))
            return False, f"web config refused, keeping the last good one: {exc}"
        self.config = new
        self.reload_successful = True
        self.reload_success_timestamp = time.time()
        bound = self._bound.tls
        if (new.tls is None) != (bound is None):
            note = "web config reloaded; TLS on/off takes effect at restart"
        elif new.tls is not None and bound is not None and new.tls.policy() != bound.policy():
            note = (
                "web config reloaded; client_auth_type, min_version, max_version, cipher_suites, "
                "prefer_server_cipher_suites and curve_preferences changes take effect at restart "
                "(the running TLS settings and certificate stay)"
            )
        else:
            self._live_tls = new
            note = "web config reloaded"
        (log.warning if note != "web config reloaded" else log.info)(note, path=new.path)
        return True, note

    def on_prepare(self) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
        """An ``on_response_prepare`` hook: the configured headers on every response (errors included)."""

        async def add_headers(_request: web.Request, response: web.StreamResponse) -> None:
            for name, value in self.config.headers.items():
                response.headers[name] = value

        return add_headers

    def middleware(self) -> Any:
        """The aiohttp middleware: client certificate SANs, then basic auth, on every path."""

        @web.middleware
        async def guard(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            tls = self._live_tls.tls
            if tls is not None and tls.client_allowed_sans is not None and not self._sans_allowed(request, tls):
                return web.Response(status=403, text="Forbidden: client certificate SAN not allowed\n")
            users = self.config.users
            if users and not await self.auth.check(users, request.headers.get("Authorization")):
                return web.Response(status=401, text="Unauthorized\n", headers={"WWW-Authenticate": "Basic"})
            return await handler(request)

        return guard

    @staticmethod
    def _sans_allowed(request: web.Request, tls: TLSServerConfig) -> bool:
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        if not peer:
            return False
        allowed = {_normalized(s) for s in tls.client_allowed_sans or ()}
        return any(s in allowed for s in _sans(peer))


class WebConfigCollector(Collector):
    """``portqry_exporter_web_config_last_reload_successful`` and its timestamp."""

    def __init__(self, state: WebState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        """Two gauges from the :class:`WebState`."""
        yield GaugeMetricFamily(
            "portqry_exporter_web_config_last_reload_successful",
            "1 when the last load or reload of the web config (--web.config.file) succeeded; 1 without one.",
            value=1.0 if self.state.reload_successful else 0.0,
        )
        yield GaugeMetricFamily(
            "portqry_exporter_web_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful web config load or reload.",
            value=self.state.reload_success_timestamp,
        )

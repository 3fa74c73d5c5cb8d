"""The web config file (exporter-toolkit's format): validation, the TLS context, the basic auth checker."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import pytest

from exporter.errors import ConfigError
from exporter.webauth import BasicAuthChecker
from exporter.webconfig import is_loopback as loopback
from exporter.webconfig import load_web_config
from tests.webtls import PKI, bcrypt_hash, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_full_file_loads_with_exporter_toolkits_keys(tmp_path: Path, pki: PKI) -> None:
    hashed = bcrypt_hash("secret")
    cfg = load_web_config(
        write(
            tmp_path / "web.yml",
            f"""
tls_server_config:
  cert_file: {pki.server.cert}
  key_file: {pki.server.key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki.ca.cert}
  min_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  curve_preferences: [CurveP256]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Content-Security-Policy: ""
basic_auth_users:
  prometheus: '{hashed}'
""",
        )
    )
    assert cfg.context is not None
    assert cfg.context.verify_mode == ssl.CERT_REQUIRED
    assert cfg.context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert cfg.context.maximum_version == ssl.TLSVersion.TLSv1_3
    tls12 = {c["name"] for c in cfg.context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256"}
    assert cfg.users == {"prometheus": hashed}
    assert cfg.headers == {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"}  # blank: unset


def test_defaults_relative_paths_and_empty_files(tmp_path: Path, pki: PKI) -> None:
    (tmp_path / "tls").mkdir()
    for leaf, name in ((pki.server.cert, "s.crt"), (pki.server.key, "s.key")):
        (tmp_path / "tls" / name).write_bytes(leaf.read_bytes())
    cfg = load_web_config(
        write(tmp_path / "web.yml", "tls_server_config:\n  cert_file: tls/s.crt\n  key_file: tls/s.key\n")
    )
    assert cfg.context is not None  # paths relative to the file's directory, as exporter-toolkit's SetDirectory
    assert cfg.context.verify_mode == ssl.CERT_NONE
    assert cfg.context.minimum_version == ssl.TLSVersion.TLSv1_2  # the default: TLS12
    assert cfg.context.options & ssl.OP_CIPHER_SERVER_PREFERENCE  # prefer_server_cipher_suites: true
    for text in ("", "# nothing\n", "tls_server_config:\nbasic_auth_users:\n", "tls_server_config: {}\n"):
        empty = load_web_config(write(tmp_path / "e.yml", text))
        assert empty.context is None and not empty.users and not empty.headers


def test_inline_pem_is_accepted(tmp_path: Path, pki: PKI) -> None:
    def block(path: Path) -> str:
        return "|\n" + "".join("    " + line + "\n" for line in path.read_text().splitlines())

    cfg = load_web_config(
        write(
            tmp_path / "web.yml",
            f"tls_server_config:\n  cert: {block(pki.server.cert)}  key: {block(pki.server.key)}"
            f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca: {block(pki.ca.cert)}",
        )
    )
    assert cfg.context is not None and cfg.context.verify_mode == ssl.CERT_OPTIONAL


BAD = [
    ("tls_server_config:\n  certfile: x\n", "tls_server_config.certfile: unknown key"),
    ("basic_auth_users:\n  alice: plain\n", "basic_auth_users: user 'alice': not a bcrypt hash"),
    ("basic_auth_users: [alice]\n", "basic_auth_users: Input should be a valid dictionary"),
    ("http_server_config:\n  headers:\n    Content-Type: foo\n", "HTTP header 'Content-Type' can not be configured"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: foo\n", "invalid value for X-Frame-Options"),
    ("rate_limit:\n  interval: 1s\n  burst: 1\n", "rate_limit: not supported here"),
    ("tls_server_config: [\n", "not valid YAML"),
    ("- a\n", "expected a mapping at the top level"),
    ("tls_server_config:\n  client_auth_type: Foo\n", "'Foo' is not one of NoClientCert"),
    ("tls_server_config:\n  client_auth_type: RequireAnyClientCert\n", "'RequireAnyClientCert' is not supported"),
    ("tls_server_config:\n  min_version: TLS14\n", "tls_server_config.min_version: unknown TLS version 'TLS14'"),
    ("tls_server_config:\n  cipher_suites: [RC4]\n", "unknown cipher 'RC4'"),
    ("tls_server_config:\n  curve_preferences: [X25519, CurveP256]\n", "Python's ssl sets one curve"),
    ("tls_server_config:\n  key_file: {key}\n", "tls_server_config: missing one of cert or cert_file"),
    ("tls_server_config:\n  cert_file: {cert}\n", "tls_server_config: missing one of key or key_file"),
    ("tls_server_config:\n  cert_file: nope.crt\n  key_file: {key}\n", "cert_file: cannot read"),
    ("tls_server_config:\n  cert_file: {ca}\n  key_file: {key}\n", "cannot load the certificate and key"),
    (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {ca}\n",
        "client CAs are configured without a client auth policy",
    ),
    (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: RequireAndVerifyClientCert\n",
        "tls_server_config.client_ca_file: RequireAndVerifyClientCert needs client_ca_file",
    ),
    (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS13\n  max_version: TLS12\n",
        "TLS13 is above max_version TLS12",
    ),
    (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_allowed_sans: [a]\n",
        "client_allowed_sans: needs a client_auth_type that verifies certificates",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[b[1][:40] for b in BAD])
def test_bad_files_are_refused_in_one_line(tmp_path: Path, pki: PKI, text: str, expected: str) -> None:
    path = write(tmp_path / "web.yml", text.format(cert=pki.server.cert, key=pki.server.key, ca=pki.ca.cert))
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"web\.yml: file not found$"):
        load_web_config(tmp_path / "web.yml")


async def test_basic_auth_pays_bcrypt_once_for_the_right_password() -> None:
    users = {"prometheus": bcrypt_hash("secret"), "other": bcrypt_hash("x" * 72)}
    checker = BasicAuthChecker()
    assert await checker.check(users, basic("prometheus", "secret"))
    assert checker.bcrypt_calls == 1
    for _ in range(20):
        assert await checker.check(users, basic("prometheus", "secret"))
    assert checker.bcrypt_calls == 1  # verified credentials are cached

    # wrong passwords and unknown users are never cached, and an unknown user still costs one bcrypt
    assert not await checker.check(users, basic("prometheus", "wrong"))
    assert not await checker.check(users, basic("prometheus", "wrong"))
    assert not await checker.check(users, basic("nobody", "secret"))
    assert checker.bcrypt_calls == 4
    # no header, another scheme, bad base64: refused before bcrypt
    for header in (None, "", "Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()):
        assert not await checker.check(users, header)
    assert checker.bcrypt_calls == 4
    # a changed hash (a reload) is checked again; a password past bcrypt's 72 bytes is truncated, as htpasswd
    users["prometheus"] = bcrypt_hash("new")
    assert not await checker.check(users, basic("prometheus", "secret"))
    assert await checker.check(users, basic("prometheus", "new"))
    assert await checker.check(users, basic("other", "x" * 72 + "ignored"))


async def test_concurrent_first_requests_share_one_bcrypt() -> None:
    users = {"prometheus": bcrypt_hash("secret", cost=8)}
    checker = BasicAuthChecker()
    results = await asyncio.gather(*(checker.check(users, basic("prometheus", "secret")) for _ in range(50)))
    assert all(results)
    assert checker.bcrypt_calls == 1


async def test_the_cache_is_bounded() -> None:
    users = {f"u{i}": bcrypt_hash(f"p{i}") for i in range(5)}
    checker = BasicAuthChecker(cache_size=3)
    for i in range(5):
        assert await checker.check(users, basic(f"u{i}", f"p{i}"))
    assert len(checker._verified) == 3
    calls = checker.bcrypt_calls
    assert await checker.check(users, basic("u4", "p4"))
    assert await checker.check(users, basic("u0", "p0"))  # evicted: paid again
    assert checker.bcrypt_calls == calls + 1


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("198.18.7.2", False),
        ("::ffff:198.18.7.2", False),
        ("192.0.2.1", False),
        ("", False),
        (None, False),
        ("not-an-address", False),
    ],
)
def test_loopback_clients(remote: str | None, expected: bool) -> None:
    assert loopback(remote) is expected

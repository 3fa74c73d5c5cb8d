"""The daemon's HTTP surface with a web config, against real clients: curl, Python's ssl, a real Prometheus.

TLS, mutual TLS (a client certificate required and checked against the CA), basic auth (right, wrong, missing
password), the configured headers on every response, HEAD and 405, reload of the web config (a new certificate
for new connections, a bad file keeps the last good one), and the lifecycle guard from a namespace address.
Certificates come from ``openssl`` in the test's temporary directory; everything listens on 127.0.0.1 except
the lifecycle test's daemon, which listens on its own namespace link (198.18.N.1).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests import testbed
from tests.alerting import run_prometheus, wait_until
from tests.daemon import ROOT, RunningDaemon, run_daemon
from tests.webtls import PKI, Leaf, bcrypt_hash, curl, make_leaf, make_pki, served_certificate_cn

PASSWORD = "s3cret pass"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def exporter_config(path: Path) -> Path:
    path.write_text(
        """
[exporter]
udp_pacing_seconds = 0.0
[defaults]
interval_seconds = 1.0
timeout_seconds = 0.3
jitter_ratio = 0.0
[[targets]]
name = "lo"
host = "127.0.0.1"
ports = ["tcp/1"]
"""
    )
    return path


def web_yml(
    path: Path,
    server: Leaf,
    *,
    users: dict[str, str] | None = None,
    client_auth: str = "",
    ca: Path | None = None,
    extra_tls: str = "",
    headers: bool = True,
) -> Path:
    text = f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n"
    if client_auth:
        text += f"  client_auth_type: {client_auth}\n  client_ca_file: {ca}\n"
    text += extra_tls
    if headers:
        text += "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
    if users:
        text += "basic_auth_users:\n" + "".join(f"  {u}: '{h}'\n" for u, h in users.items())
    path.write_text(text)
    return path


@contextmanager
def daemon_with(tmp_path: Path, web: Path, *args: str) -> Iterator[RunningDaemon]:
    with run_daemon(exporter_config(tmp_path / "c.toml"), args=["--web.config.file", str(web), *args]) as d:
        yield d


def web_metric(d: RunningDaemon, pki: PKI, user: str) -> float:
    r = curl(
        d.url + "/metrics",
        cacert=pki.ca.cert,
        user=user,
        extra=["--cert", str(pki.client.cert), "--key", str(pki.client.key)],
    )
    for line in r.body.splitlines():
        if line.startswith("portqry_exporter_web_config_last_reload_successful "):
            return float(line.split()[1])
    raise AssertionError(f"no web config metric: {r}")


def test_tls_and_basic_auth_with_curl(tmp_path: Path, pki: PKI) -> None:
    web = web_yml(tmp_path / "web.yml", pki.server, users={"prometheus": bcrypt_hash(PASSWORD)})
    with daemon_with(tmp_path, web) as d:
        assert d.url.startswith("https://127.0.0.1:")
        right = f"prometheus:{PASSWORD}"
        ok = curl(d.url + "/metrics", cacert=pki.ca.cert, user=right)
        assert ok.status == 200, ok
        assert "portqry_port_state" in ok.body
        assert "portqry_exporter_web_config_last_reload_successful 1.0" in ok.body
        assert ok.headers["x-frame-options"] == "deny" and ok.headers["x-content-type-options"] == "nosniff"

        # wrong password, missing password, unknown user, no credentials: 401 with the challenge, on any path
        for user in ("prometheus:wrong", "prometheus:", "nobody:" + PASSWORD, None):
            for path in ("/metrics", "/-/healthy", "/", "/sd", "/no-such-path"):
                r = curl(d.url + path, cacert=pki.ca.cert, user=user)
                assert r.status == 401, (user, path, r)
                assert r.headers["www-authenticate"] == "Basic"
                assert r.headers["x-frame-options"] == "deny"  # headers on errors too
                assert "portqry" not in r.body
        r = curl(d.url + "/-/reload", cacert=pki.ca.cert, method="POST")
        assert r.status == 401  # auth before the lifecycle guard, even from loopback

        # the certificate is verified by curl against the test CA; plain HTTP on the TLS port gets nothing
        assert curl(d.url + "/metrics", user=right).rc == 60  # unknown CA
        plain = curl(d.url.replace("https://", "http://") + "/metrics", user=right)
        assert plain.status != 200

        # HEAD where GET works, 405 for other methods (with Allow), 404 for unknown paths
        head = curl(d.url + "/metrics", cacert=pki.ca.cert, user=right, head=True)
        assert head.status == 200 and head.body == ""
        for method, path, allow in (("DELETE", "/metrics", "GET,HEAD"), ("GET", "/-/reload", "POST,PUT")):
            r = curl(d.url + path, cacert=pki.ca.cert, user=right, method=method)
            assert r.status == 405, (method, path, r)
            assert set(r.headers["allow"].split(",")) == set(allow.split(","))
        assert curl(d.url + "/no-such-path", cacert=pki.ca.cert, user=right).status == 404

        # lifecycle from loopback, authenticated: POST and PUT
        for method in ("POST", "PUT"):
            r = curl(d.url + "/-/reload", cacert=pki.ca.cert, user=right, method=method)
            assert r.status == 200, r
            assert r.body == "config reloaded\nweb config reloaded\n"


def test_mtls_requires_a_client_certificate_the_ca_signed(tmp_path: Path, pki: PKI) -> None:
    web = web_yml(tmp_path / "web.yml", pki.server, client_auth="RequireAndVerifyClientCert", ca=pki.ca.cert)
    with daemon_with(tmp_path, web) as d:
        good = curl(d.url + "/metrics", cacert=pki.ca.cert, cert=pki.client)
        assert good.status == 200 and "portqry_port_state" in good.body
        for cert in (None, pki.rogue_client):
            # TLS 1.3: the server checks the client's certificate after the client finished, then closes
            # without a response (curl 52/56); TLS 1.2: the handshake itself fails (curl 35)
            r = curl(d.url + "/metrics", cacert=pki.ca.cert, cert=cert)
            assert r.rc in (52, 56) and r.status == 0, r
            r12 = curl(d.url + "/metrics", cacert=pki.ca.cert, cert=cert, extra=["--tls-max", "1.2"])
            assert r12.rc == 35 and "SSL_connect" in r12.stderr, r12


def test_verify_client_cert_if_given_and_allowed_sans(tmp_path: Path, pki: PKI) -> None:
    web = web_yml(
        tmp_path / "web.yml", pki.server, client_auth="VerifyClientCertIfGiven", ca=pki.ca.cert, headers=False
    )
    with daemon_with(tmp_path, web) as d:
        assert curl(d.url + "/-/healthy", cacert=pki.ca.cert).status == 200
        assert curl(d.url + "/-/healthy", cacert=pki.ca.cert, cert=pki.client).status == 200
        assert curl(d.url + "/-/healthy", cacert=pki.ca.cert, cert=pki.rogue_client).rc != 0
    other = make_leaf(tmp_path, pki.ca, "other-client", sans=("DNS:other.test",), client=True)
    web = web_yml(
        tmp_path / "web2.yml",
        pki.server,
        client_auth="RequireAndVerifyClientCert",
        ca=pki.ca.cert,
        extra_tls="  client_allowed_sans: [prometheus.test]\n",
    )
    with daemon_with(tmp_path, web) as d:
        assert curl(d.url + "/-/healthy", cacert=pki.ca.cert, cert=pki.client).status == 200
        r = curl(d.url + "/-/healthy", cacert=pki.ca.cert, cert=other)
        assert r.status == 403 and "SAN" in r.body


def test_min_version_and_cipher_suites_are_honoured(tmp_path: Path, pki: PKI) -> None:
    web = web_yml(tmp_path / "web.yml", pki.server, extra_tls="  min_version: TLS13\n", headers=False)
    with daemon_with(tmp_path, web) as d:
        assert curl(d.url + "/-/healthy", cacert=pki.ca.cert).status == 200
        assert curl(d.url + "/-/healthy", cacert=pki.ca.cert, extra=["--tls-max", "1.2"]).rc != 0
    web = web_yml(
        tmp_path / "web2.yml",
        pki.server,
        extra_tls="  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n",
        headers=False,
    )
    with daemon_with(tmp_path, web) as d:
        ok = curl(d.url + "/-/healthy", cacert=pki.ca.cert, extra=["--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"])
        assert ok.status == 200
        refused = curl(d.url + "/-/healthy", cacert=pki.ca.cert, extra=["--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384"])
        assert refused.rc != 0
        assert curl(d.url + "/-/healthy", cacert=pki.ca.cert, extra=["--tlsv1.3"]).rc != 0  # max_version TLS12


def test_reload_rereads_the_web_config_and_a_bad_one_keeps_the_last_good(tmp_path: Path, pki: PKI) -> None:
    second = make_leaf(tmp_path, pki.ca, "server-renewed")
    web = tmp_path / "web.yml"
    users = {"prometheus": bcrypt_hash(PASSWORD)}
    web_yml(web, pki.server, users=users, client_auth="RequireAndVerifyClientCert", ca=pki.ca.cert)
    right = f"prometheus:{PASSWORD}"
    with daemon_with(tmp_path, web) as d:
        host, port = urlsplit(d.url).hostname or "", urlsplit(d.url).port or 0

        def reload() -> tuple[int, str]:
            r = curl(d.url + "/-/reload", cacert=pki.ca.cert, cert=pki.client, user=right, method="POST")
            return r.status, r.body

        def cn() -> str:
            return _cn_with_client_cert(host, port, pki)

        assert cn() == "server"
        # a renewed certificate: new connections get it at once, the open keep-alive one is not cut
        web_yml(web, second, users=users, client_auth="RequireAndVerifyClientCert", ca=pki.ca.cert)
        assert reload() == (200, "config reloaded\nweb config reloaded\n")
        assert cn() == "server-renewed"
        assert web_metric(d, pki, right) == 1

        # a bad file: 500 with the one-line error, the metric 0, the last good config (cert, users) serving
        web.write_text("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n")
        status, body = reload()
        assert status == 500
        assert "web config refused, keeping the last good one" in body and "/nonexistent.crt" in body
        assert body.count("\n") == 2  # one line for the config, one for the web config
        assert web_metric(d, pki, right) == 0
        assert cn() == "server-renewed"
        assert curl(d.url + "/metrics", cacert=pki.ca.cert, cert=pki.client).status == 401

        # SIGHUP re-reads it too: a new password takes effect for the next request, the metric is back to 1
        web_yml(
            web,
            second,
            users={"prometheus": bcrypt_hash("new")},
            client_auth="RequireAndVerifyClientCert",
            ca=pki.ca.cert,
        )
        d.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: (
                curl(d.url + "/-/healthy", cacert=pki.ca.cert, cert=pki.client, user="prometheus:new").status == 200
            ),
            10,
            "the new password",
        )
        assert curl(d.url + "/-/healthy", cacert=pki.ca.cert, cert=pki.client, user=right).status == 401
        assert web_metric(d, pki, "prometheus:new") == 1

        # a policy change (client_auth_type) is valid but waits for a restart: the running TLS stays
        web_yml(web, pki.server, users={"prometheus": bcrypt_hash("new")})
        r = curl(d.url + "/-/reload", cacert=pki.ca.cert, cert=pki.client, user="prometheus:new", method="POST")
        assert r.status == 200 and "take effect at restart" in r.body, r
        assert curl(d.url + "/-/healthy", cacert=pki.ca.cert, user="prometheus:new").rc != 0  # still mTLS
        assert cn() == "server-renewed"


def _cn_with_client_cert(host: str, port: int, pki: PKI) -> str:
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(pki.client.cert), str(pki.client.key))
    with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        peer: Any = tls.getpeercert()
    return str(dict(item[0] for item in peer["subject"])["commonName"])


def test_tls_certificate_without_client_auth_is_swapped_on_reload(tmp_path: Path, pki: PKI) -> None:
    second = make_leaf(tmp_path, pki.ca, "server-b")
    web = web_yml(tmp_path / "web.yml", pki.server, headers=False)
    with daemon_with(tmp_path, web) as d:
        port = urlsplit(d.url).port or 0
        assert served_certificate_cn("127.0.0.1", port, pki.ca.cert) == "server"
        web_yml(web, second, headers=False)
        assert curl(d.url + "/-/reload", cacert=pki.ca.cert, method="POST").status == 200
        assert served_certificate_cn("127.0.0.1", port, pki.ca.cert) == "server-b"


def test_bad_web_config_at_start_exits_with_one_line(tmp_path: Path, pki: PKI) -> None:
    cfg = exporter_config(tmp_path / "c.toml")
    bad = tmp_path / "web.yml"
    bad.write_text("tls_server_config:\n  cert_file: x.crt\n  key_file: x.key\n  client_auth_type: Sometimes\n")
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--config", str(cfg), "--web.config.file", str(bad)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"portqry-exporter: web config error: {bad}: tls_server_config.client_auth_type: ")
    good = web_yml(tmp_path / "good.yml", pki.server, users={"a": bcrypt_hash("b")})
    check = subprocess.run(
        [sys.executable, "-m", "exporter", "--config", str(cfg), "--web.config.file", str(good), "--config.check"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
    assert f"{good}: OK (https, 1 basic auth users)" in check.stdout


def test_prometheus_scrapes_through_tls_client_certificate_and_basic_auth(tmp_path: Path, pki: PKI) -> None:
    web = web_yml(
        tmp_path / "web.yml",
        pki.server,
        users={"prometheus": bcrypt_hash(PASSWORD)},
        client_auth="RequireAndVerifyClientCert",
        ca=pki.ca.cert,
    )
    with daemon_with(tmp_path, web) as d:
        target = urlsplit(d.url).netloc

        def job(name: str, password: str, cert: Leaf | None) -> dict[str, Any]:
            tls: dict[str, Any] = {"ca_file": str(pki.ca.cert)}
            if cert is not None:
                tls |= {"cert_file": str(cert.cert), "key_file": str(cert.key)}
            return {
                "job_name": name,
                "scheme": "https",
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "tls_config": tls,
                "basic_auth": {"username": "prometheus", "password": password},
                "static_configs": [{"targets": [target]}],
            }

        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                job("portqry", PASSWORD, pki.client),
                job("wrong-password", "wrong", pki.client),
                job("no-client-cert", PASSWORD, None),
                job("rogue-client-cert", PASSWORD, pki.rogue_client),
            ],
        }
        with run_prometheus(tmp_path / "prom", config) as prom:

            def health() -> dict[str, tuple[str, str]] | None:
                seen = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in prom.targets()}
                return seen if len(seen) == 4 and all(h != "unknown" for h, _ in seen.values()) else None

            seen = wait_until(health, 60, "every job scraped once")
            assert seen["portqry"] == ("up", ""), seen
            assert seen["wrong-password"][0] == "down" and "401" in seen["wrong-password"][1], seen
            for name in ("no-client-cert", "rogue-client-cert"):
                assert seen[name][0] == "down" and ("EOF" in seen[name][1] or "tls" in seen[name][1]), seen
            rows = wait_until(lambda: prom.query('portqry_port_state{job="portqry"}'), 30, "port states stored")
            assert {r["metric"]["port"] for r in rows} == {"1"}
            up = prom.query('up{job="portqry"}')
            assert up[0]["value"][1] == "1"


@pytest.mark.testbed
def test_reload_from_a_namespace_needs_enable_lifecycle(tmp_path: Path) -> None:
    testbed.require_netns("curl")
    ns = testbed.Namespace.create("life")
    try:
        listen = f"{ns.host_address}:0"
        cfg = exporter_config(tmp_path / "c.toml")
        with run_daemon(cfg, args=["--web.listen-address", listen]) as d:
            assert d.url.startswith(f"http://{ns.host_address}:")
            from_ns = curl(d.url + "/-/reload", method="POST", prefix=ns.exec_argv([]))
            assert from_ns.status == 403, from_ns
            assert "--web.enable-lifecycle" in from_ns.body
            assert curl(d.url + "/-/reload", method="PUT", prefix=ns.exec_argv([])).status == 403
            # GET paths stay open to the namespace; from 127.0.0.1 the same POST is allowed
            assert curl(d.url + "/-/healthy", prefix=ns.exec_argv([])).status == 200
            local = curl(d.url + "/-/reload", method="POST", extra=["--interface", "127.0.0.1"])
            assert local.status == 200, local
        with run_daemon(cfg, args=["--web.listen-address", listen, "--web.enable-lifecycle"]) as d:
            r = curl(d.url + "/-/reload", method="POST", prefix=ns.exec_argv([]))
            assert r.status == 200 and r.body == "config reloaded\n", r
    finally:
        ns.teardown()

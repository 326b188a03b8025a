"""The generated configurations served by a real nginx, with local key files (the benchmark's baseline).

The same templates carry HSM keys in tests/nginx/test_nginx_hsm.py; here they prove the TLS settings and
the mutual-TLS sidecar wiring on their own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hsmcert import generated
from hsmcert import nginx as lib
from hsmcert.errors import HsmcertError, VerificationError
from tests.fixtures.nginx import LocalPki, NginxFactory, curl, free_port, unix_http_app

pytestmark = pytest.mark.e2e
REF = "managedhsm:local-hsm:tls-key"


def written_server(tmp_path: Path, pki: LocalPki, port: int) -> lib.Site:
    """A server site on 127.0.0.1:port with the local server key, its files written."""
    site = lib.validate(
        lib.Site(REF, pki.server_cert, "localhost", tmp_path / "out", listen=f"127.0.0.1:{port}",
                 local_key=pki.server_key)
    )  # fmt: skip
    generated.write_all(lib.generate(site))
    return site


def written_sidecars(
    tmp_path: Path, pki: LocalPki, port: int, app_sock: Path, client_sock: Path, protocol: str
) -> tuple[lib.Site, lib.Site]:
    """Server and client sidecars with local keys, mutual TLS on 127.0.0.1:port, their files written."""
    server = lib.validate(
        lib.Site(REF, pki.server_cert, "localhost", tmp_path / "server", mode="server-sidecar",
                 listen=f"127.0.0.1:{port}", upstream=str(app_sock), ca=pki.ca, app_protocol=protocol,  # type: ignore[arg-type]
                 local_key=pki.server_key)
    )  # fmt: skip
    client = lib.validate(
        lib.Site(REF, pki.client_cert, "localhost", tmp_path / "client", mode="client-sidecar",
                 listen=str(client_sock), upstream=f"127.0.0.1:{port}", ca=pki.ca, app_protocol=protocol,  # type: ignore[arg-type]
                 local_key=pki.client_key)
    )  # fmt: skip
    generated.write_all(lib.generate(server) + lib.generate(client))
    return server, client


@pytest.mark.parametrize("tls", ["--tlsv1.2", "--tlsv1.3"])
def test_server_answers_over_tls12_and_tls13(
    tmp_path: Path, local_pki: LocalPki, nginx_factory: NginxFactory, tls: str
) -> None:
    port = free_port()
    site = written_server(tmp_path, local_pki, port)
    nginx_factory([site.site_conf], ports=[port])
    max_tls = "1.2" if tls == "--tlsv1.2" else "1.3"
    result = curl(f"https://localhost:{port}/", tls, "--tls-max", max_tls, ca=local_pki.ca)
    assert result.returncode == 0, result.stderr
    assert f"TLSv{max_tls}" in result.stdout


def test_sidecars_carry_a_request_over_mutual_tls(
    tmp_path: Path, local_pki: LocalPki, nginx_factory: NginxFactory
) -> None:
    port = free_port()
    app_sock, client_sock = tmp_path / "app.sock", tmp_path / "client.sock"
    server, client = written_sidecars(tmp_path, local_pki, port, app_sock, client_sock, "http")
    with unix_http_app(app_sock) as seen:
        nginx_factory([server.site_conf, client.site_conf], ports=[port])
        result = curl("http://app/hello", "--unix-socket", str(client_sock))
        assert result.returncode == 0, result.stderr
        headers = json.loads(result.stdout)
        assert headers["path"] == "/hello"
        assert headers["x-client-verify"] == "SUCCESS"
        assert "CN=sidecar-client" in headers["x-client-subject"]

        # Without a client certificate the server sidecar turns the caller away.
        direct = curl(f"https://localhost:{port}/", ca=local_pki.ca)
        assert "400 No required SSL certificate was sent" in direct.stdout
        assert len(seen) == 1


def test_reload_only_after_a_passing_test(
    tmp_path: Path, local_pki: LocalPki, nginx_factory: NginxFactory
) -> None:
    port = free_port()
    site = written_server(tmp_path, local_pki, port)
    running = nginx_factory([site.site_conf], ports=[port], openssl_cnf=site.openssl_cnf)
    master = running.master_pid()

    result = lib.reload(site, conf=running.conf)
    assert result.included
    assert running.master_pid() == master
    assert curl(f"https://localhost:{port}/", ca=local_pki.ca).returncode == 0

    # A configuration nginx rejects is never reloaded: the old one keeps serving.
    site.site_conf.write_text(site.site_conf.read_text().replace("ssl_session_timeout 1d;", "ssl_bogus on;"))
    with pytest.raises(VerificationError, match="ssl_bogus"):
        lib.reload(site, conf=running.conf)
    assert curl(f"https://localhost:{port}/", ca=local_pki.ca).returncode == 0


def test_reload_needs_a_running_nginx(
    tmp_path: Path, local_pki: LocalPki, nginx_factory: NginxFactory
) -> None:
    port = free_port()
    site = written_server(tmp_path, local_pki, port)
    running = nginx_factory([site.site_conf], ports=[port])
    running.stop()
    with pytest.raises(HsmcertError, match="nginx is not running") as caught:
        lib.reload(site, conf=running.conf)
    assert "OPENSSL_CONF=" in str(caught.value.remedy)


def test_grpc_sidecars_carry_http2_over_mutual_tls(
    tmp_path: Path, local_pki: LocalPki, nginx_factory: NginxFactory
) -> None:
    """grpc mode: HTTP/2 cleartext in and out, mutual TLS between; an h2c app stands in for a gRPC server."""
    port = free_port()
    app_sock, client_sock = tmp_path / "app.sock", tmp_path / "client.sock"
    app_conf = tmp_path / "app.conf"
    app_conf.write_text(
        f"server {{ listen unix:{app_sock} http2; location / {{ default_type text/plain;\n"
        f'  return 200 "h2 app: $server_protocol $http_x_client_verify $http_x_client_subject\\n"; }} }}\n'
    )
    server, client = written_sidecars(tmp_path, local_pki, port, app_sock, client_sock, "grpc")
    nginx_factory([app_conf, server.site_conf, client.site_conf], ports=[port])
    result = curl(
        "http://app/helloworld.Greeter/SayHello", "--http2-prior-knowledge", "--unix-socket", str(client_sock)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("h2 app: HTTP/2.0 SUCCESS CN=sidecar-client"), result.stdout

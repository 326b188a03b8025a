"""Keyless TLS with a Key Vault certificate object: nginx serves the merged certificate, and the handshake is
signed by the certificate's own key in the vault through its ``vault:`` key reference (provider, agent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.nginx import NginxFactory, curl, free_port
from tests.nginx.test_nginx_hsm import hsmcert

from .conftest import VAULT, issue_for, ok, unique

pytestmark = pytest.mark.e2e


def test_nginx_serves_a_merged_kv_certificate_signing_with_its_vault_key(
    cli: Any,
    emulator: Any,
    agent: Any,
    native: Any,
    nginx_factory: NginxFactory,
    hsm_ca: dict[str, Any],
    tmp_path: Path,
) -> None:
    name = unique("tls")
    ok(
        cli(
            "kv-cert", "create", "--vault", VAULT, name, "--subj", "/CN=localhost", "--san", "DNS:localhost",
            "--kty", "EC-HSM", "--issuer", "Unknown",
        )
    )  # fmt: skip
    csr = tmp_path / "tls.csr"
    ok(cli("kv-cert", "pending", "--vault", VAULT, name, "-o", str(csr)))
    merged = json.loads(
        ok(
            cli(
                "--output", "json", "kv-cert", "merge", "--vault", VAULT, name,
                "--chain", str(issue_for(csr, hsm_ca, tmp_path / "chain.pem")),
            )
        ).out
    )  # fmt: skip
    cert = tmp_path / "tls.pem"
    ok(cli("kv-cert", "download", "--vault", VAULT, name, "-o", str(cert)))

    port, out = free_port(), tmp_path / "site"
    main_conf = tmp_path / "main.conf"
    main_conf.write_text("user root;\n")  # the test's nginx runs its workers as root
    rendered = hsmcert(
        "nginx", "--key", merged["key"], "--cert", str(cert), "--server-name", "localhost", "-o", str(out),
        "--listen", f"127.0.0.1:{port}", "--socket", str(agent.socket), "--check", "--nginx-conf", str(main_conf),
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    nginx_factory([out / "localhost.conf"], ports=[port], openssl_cnf=out / "openssl.cnf")

    before = [e for e in emulator.audit() if e.get("key") == name and e.get("operation") == "sign"]
    served = curl(f"https://localhost:{port}/", "--tlsv1.3", ca=Path(hsm_ca["cert"]))
    assert served.returncode == 0, served.stderr
    after = [e for e in emulator.audit() if e.get("key") == name and e.get("operation") == "sign"]
    assert len(after) == len(before) + 1  # the handshake was signed by the certificate's key in the vault
    assert after[-1]["version"] == merged["version"]

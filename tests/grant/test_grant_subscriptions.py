"""Which subscription grant searches, when none is named: the Azure CLI's default account, or the only one the
caller sees; several is a usage error listing them.

The emulator's Resource Manager serves one subscription, so the case of several is played by a small HTTPS
server that answers ``GET /subscriptions`` as Resource Manager does (and nothing else: hsmcert must stop there).
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hsmcert.azure.discovery import cli_default_subscription, resolve_subscription
from tests.fixtures.x509_local import self_signed

pytestmark = pytest.mark.process

SUBS = ["11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"]


class Subscriptions:
    """An HTTPS server listing ``SUBS`` at GET /subscriptions; it records every path asked."""

    def __init__(self, directory: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self_signed(
            key,
            "arm test",
            extensions=[
                (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
                (x509.BasicConstraints(ca=True, path_length=None), True),
            ],
        )
        self.ca = directory / "arm.pem"
        self.ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path = directory / "arm.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.requested: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requested.append(self.path)
                if self.path.split("?", 1)[0] == "/subscriptions":
                    body: dict[str, Any] = {
                        "value": [
                            {"subscriptionId": s, "displayName": f"team {i}", "state": "Enabled"}
                            for i, s in enumerate(SUBS)
                        ]
                    }
                    status = 200
                else:
                    status, body = 404, {"error": {"code": "NotFound", "message": "not here"}}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return None

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca, key_path)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def subscriptions(tmp_path: Path) -> Iterator[Subscriptions]:
    server = Subscriptions(tmp_path)
    yield server
    server.server.shutdown()
    server.server.server_close()


def _env(tmp_path: Path, server: Subscriptions) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HSMCERT_", "AZURE_", "IDENTITY_", "MSI_"))
    }
    env.update(
        HSMCERT_ARM_URL=server.url,
        REQUESTS_CA_BUNDLE=str(server.ca),
        HSMCERT_ACCESS_TOKEN="not-checked-by-this-server",
        AZURE_CONFIG_DIR=str(tmp_path / "az"),
        HSMCERT_CONFIG=str(tmp_path / "config.toml"),
    )
    return env


def test_several_subscriptions_are_listed_with_the_flag_that_picks_one(
    tmp_path: Path, subscriptions: Subscriptions
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hsmcert", "grant", "--vm", "myvm", "--hsm", "contoso", "--credential", "env-token"],
        capture_output=True, text=True, check=False, timeout=120, env=_env(tmp_path, subscriptions),
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: The caller sees 2 subscriptions: ")
    assert all(s in out.stderr for s in SUBS) and "--subscription ID" in out.stderr
    assert [p.split("?")[0] for p in subscriptions.requested] == ["/subscriptions"]


def _profile(directory: Path, default: str | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    entries = [{"id": s, "name": f"team {i}", "isDefault": s == default} for i, s in enumerate(SUBS)]
    # the Azure CLI writes its profile with a byte order mark
    (directory / "azureProfile.json").write_text("\ufeff" + json.dumps({"subscriptions": entries}), "utf-8")


def test_the_azure_cli_default_account_is_used_without_a_request(tmp_path: Path) -> None:
    _profile(tmp_path / "az", SUBS[1])
    environ = {"AZURE_CONFIG_DIR": str(tmp_path / "az")}
    assert cli_default_subscription(environ) == SUBS[1]
    assert resolve_subscription(None, None, environ) == (SUBS[1], "the Azure CLI's default account")
    # AZURE_SUBSCRIPTION_ID and --subscription come first
    assert resolve_subscription(None, None, {**environ, "AZURE_SUBSCRIPTION_ID": SUBS[0]})[0] == SUBS[0]
    assert resolve_subscription(None, SUBS[0], environ) == (SUBS[0], "--subscription")
    # HOME/.azure when AZURE_CONFIG_DIR is not set; no default: none
    _profile(tmp_path / "home" / ".azure", None)
    assert cli_default_subscription({"HOME": str(tmp_path / "home")}) is None


def test_grant_uses_the_cli_default_against_azure(tmp_path: Path, subscriptions: Subscriptions) -> None:
    """The default account's subscription is searched: the only request is the machine search in it."""
    _profile(tmp_path / "az", SUBS[1])
    out = subprocess.run(
        [sys.executable, "-m", "hsmcert", "grant", "--vm", "myvm", "--hsm", "contoso", "--credential", "env-token"],
        capture_output=True, text=True, check=False, timeout=120, env=_env(tmp_path, subscriptions),
    )  # fmt: skip
    assert out.returncode == 3, out.stderr
    assert f"in subscription {SUBS[1]} (subscription from the Azure CLI's default account)" in out.stderr
    assert all(p.startswith(f"/subscriptions/{SUBS[1]}/providers/") for p in subscriptions.requested)

"""ACME Renewal Information: when the CA publishes a renewal window, renewal follows it.

pebble 2.4 (Debian 12) has no ARI, so a loopback stand-in serves a directory with ``renewalInfo`` and a
window for one certificate, as RFC 9773 says; a server without it (and one that is down) gives None, and
the lifetime rule applies.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from hsmcert.acme.client import ari_renewal_time
from tests.fixtures.nginx import free_port

NOW = dt.datetime.now(dt.timezone.utc)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def leaf_and_id() -> tuple[bytes, str]:
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ari.example.test")])
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    serial = 0xF1E2D3C4B5A697  # high bit set: DER prepends a zero byte
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=89))
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    assert aki.key_identifier is not None
    # RFC 9773 4.1: base64url(AKI keyIdentifier) "." base64url(serial as a DER INTEGER's content)
    serial_der = b"\x00" + serial.to_bytes(7, "big")
    return cert.public_bytes(Encoding.PEM), f"{b64(aki.key_identifier)}.{b64(serial_der)}"


class StandIn(BaseHTTPRequestHandler):
    windows: dict[str, dict[str, str]] = {}
    ari = True

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/dir":
            body: dict[str, Any] = {
                "newNonce": f"{base}/nonce",
                "newAccount": f"{base}/acct",
                "newOrder": f"{base}/order",
            }
            if self.ari:
                body["renewalInfo"] = f"{base}/ari"
        elif self.path.startswith("/ari/") and self.path[5:] in self.windows:
            body = {"suggestedWindow": self.windows[self.path[5:]]}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "21600")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def ca_server() -> Iterator[tuple[str, type[StandIn]]]:
    handler = type("Handler", (StandIn,), {"windows": {}, "ari": True})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dir", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_suggested_window_decides(ca_server: tuple[str, type[StandIn]]) -> None:
    url, handler = ca_server
    pem, cert_id = leaf_and_id()
    start, end = NOW - dt.timedelta(hours=2), NOW - dt.timedelta(hours=1)
    handler.windows[cert_id] = {"start": start.isoformat(), "end": end.isoformat()}
    when = ari_renewal_time(url, pem)
    assert when is not None and start <= when <= end  # in the past: due now, long before 2/3 of its lifetime


def test_no_ari_no_answer(ca_server: tuple[str, type[StandIn]]) -> None:
    url, handler = ca_server
    pem, _ = leaf_and_id()
    assert ari_renewal_time(url, pem) is None  # a window for another certificate only: 404
    handler.ari = False
    assert ari_renewal_time(url, pem) is None
    assert ari_renewal_time(f"http://127.0.0.1:{free_port()}/dir", pem) is None  # nobody listens

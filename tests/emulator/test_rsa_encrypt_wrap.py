"""RSA encrypt and wrapkey done by the emulator itself (the SDK's CryptographyClient would do these public-key
operations locally, so the requests go through KeyClient.send_request): the ciphertext is real RSA-OAEP /
RSA-OAEP-256 / PKCS#1 v1.5 that the imported key's private half decrypts locally."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from azure.core.rest import HttpRequest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.emulator.conftest import unique
from tests.fixtures.x509_local import rsa_import_jwk


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def imported(key_client: Any) -> tuple[Any, rsa.RSAPrivateKey]:
    private = rsa.generate_private_key(65537, 2048)
    jwk = rsa_import_jwk(private, ["encrypt", "decrypt", "wrapKey", "unwrapKey"])
    return key_client.import_key(unique("rsa-enc"), jwk, hardware_protected=True), private


def _padding(alg: str) -> padding.AsymmetricPadding:
    if alg == "RSA1_5":
        return padding.PKCS1v15()
    digest = hashes.SHA256() if alg == "RSA-OAEP-256" else hashes.SHA1()
    return padding.OAEP(padding.MGF1(digest), digest, None)


@pytest.mark.parametrize("operation", ["encrypt", "wrapkey"])
@pytest.mark.parametrize("alg", ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"])
def test_the_emulators_ciphertext_decrypts_with_the_private_key(
    key_client: Any, imported: tuple[Any, rsa.RSAPrivateKey], operation: str, alg: str
) -> None:
    key, private = imported
    secret = os.urandom(32)
    request = HttpRequest(
        "POST",
        f"{key.id}/{operation}",
        params={"api-version": "7.5"},
        json={"alg": alg, "value": _b64u(secret)},
    )
    response = key_client.send_request(request)
    assert response.status_code == 200, response.text()
    answer = response.json()
    assert answer["kid"] == key.id
    ciphertext = _unb64u(answer["value"])
    assert len(ciphertext) == 256 and ciphertext != secret
    assert private.decrypt(ciphertext, _padding(alg)) == secret

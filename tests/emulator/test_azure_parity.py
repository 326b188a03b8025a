"""Requests Azure accepts, as the clients that send them do: versionless operations over raw HTTPS (curl, as
Microsoft's C engine and providers send them), plain key types and chosen public exponents on a Managed HSM,
AES-CBC of any length, versions of a missing key, immutable release policies (sync and async SDKs)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyReleasePolicy, KeyType
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from tests.emulator.conftest import unique

POLICY = json.dumps({"version": "1.0.0", "anyOf": [{"authority": "https://attest.example", "allOf": []}]})


@asynccontextmanager
async def _async_client(kind: type[Any], *args: Any, ca: Any) -> AsyncIterator[Any]:
    """An async SDK client ``kind(*args, credential)`` of the administrator (managed identity)."""
    from azure.identity.aio import ManagedIdentityCredential

    async with (
        ManagedIdentityCredential() as credential,
        kind(*args, credential, connection_verify=str(ca)) as client,
    ):
        yield client


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _curl_post(emulator: Any, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST JSON with curl (no api-version), trusting the emulator's CA; the status and the JSON answer."""
    result = subprocess.run(
        [
            "curl", "-sS", "--max-time", "30", "--cacert", str(emulator.ca),
            "-H", f"Authorization: Bearer {emulator.token()}", "-H", "Content-Type: application/json",
            "--data-binary", json.dumps(body), "-w", "\n%{http_code}", url,
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    text, status = result.stdout.rsplit("\n", 1)
    return int(status), json.loads(text)


def test_versionless_sign_decrypt_and_unwrap_over_raw_https(emulator: Any, key_client: Any) -> None:
    ec_key = key_client.create_ec_key(unique("raw"), curve="P-256", hardware_protected=True)
    digest = bytes(range(32))
    url = f"{key_client.vault_url}/keys/{ec_key.name}"
    status, answer = _curl_post(emulator, f"{url}/sign", {"alg": "ES256", "value": _b64u(digest)})
    assert status == 200 and answer["kid"] == ec_key.id
    signature = _unb64u(answer["value"])
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(ec_key.key.x, "big"), int.from_bytes(ec_key.key.y, "big"), ec.SECP256R1()
    ).public_key()
    der = utils.encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))

    name = unique("raw")
    key_client.create_rsa_key(name, size=2048, hardware_protected=True)
    latest = key_client.rotate_key(name)  # the latest of two versions answers
    rsa_public = rsa.RSAPublicNumbers(
        int.from_bytes(latest.key.e, "big"), int.from_bytes(latest.key.n, "big")
    ).public_key()
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    for operation in ("decrypt", "unwrapkey", "UnwrapKey"):
        sealed = rsa_public.encrypt(b"secret " + operation.encode(), oaep)
        body = {"alg": "RSA-OAEP-256", "value": _b64u(sealed)}
        status, answer = _curl_post(emulator, f"{key_client.vault_url}/keys/{name}/{operation}", body)
        assert status == 200 and answer["kid"] == latest.id, (operation, answer)
        assert _unb64u(answer["value"]) == b"secret " + operation.encode()
    status, answer = _curl_post(emulator, f"{key_client.vault_url}/keys/{unique('none')}/sign", {})
    assert (status, answer["error"]["code"]) == (404, "KeyNotFound")


def test_managed_hsm_makes_hsm_keys_of_plain_key_types(key_client: Any) -> None:
    made = {
        kty: key_client.create_key(unique("plain"), kty) for kty in (KeyType.rsa, KeyType.ec, KeyType.oct)
    }
    assert {kty: key.key_type for kty, key in made.items()} == {
        KeyType.rsa: "RSA-HSM",
        KeyType.ec: "EC-HSM",
        KeyType.oct: "oct-HSM",
    }


async def test_managed_hsm_makes_hsm_keys_of_plain_key_types_async(emulator: Any, hsm_url: str) -> None:
    from azure.keyvault.keys.aio import KeyClient

    async with _async_client(KeyClient, hsm_url, ca=emulator.ca) as keys:
        rsa_key = await keys.create_rsa_key(unique("plain"), size=2048)
        oct_key = await keys.create_oct_key(unique("plain"), size=128)
    assert (rsa_key.key_type, oct_key.key_type) == ("RSA-HSM", "oct-HSM")


@pytest.mark.parametrize("exponent", [3, 17, 65537])
def test_managed_hsm_rsa_key_with_a_chosen_public_exponent(
    key_client: Any, crypto: Any, exponent: int
) -> None:
    key = key_client.create_rsa_key(
        unique("exp"), size=2048, hardware_protected=True, public_exponent=exponent
    )
    assert int.from_bytes(key.key.e, "big") == exponent
    assert int.from_bytes(key_client.rotate_key(key.name).key.e, "big") == exponent  # a new version keeps it
    public = rsa.RSAPublicNumbers(exponent, int.from_bytes(key.key.n, "big")).public_key()
    digest = bytes(32)
    signature = crypto(key).sign("RS256", digest).signature
    public.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    with pytest.raises(HttpResponseError) as info:
        key_client.create_rsa_key(unique("exp"), hardware_protected=True, public_exponent=exponent + 1)
    assert info.value.status_code == 400


async def test_managed_hsm_rsa_key_with_a_chosen_public_exponent_async(emulator: Any, hsm_url: str) -> None:
    from azure.keyvault.keys.aio import KeyClient

    async with _async_client(KeyClient, hsm_url, ca=emulator.ca) as keys:
        key = await keys.create_rsa_key(unique("exp"), size=2048, public_exponent=17)
    assert key.key.e == bytes([17])


@pytest.mark.parametrize("size", [128, 192, 256])
def test_aes_cbc_without_padding_completes_the_last_block(key_client: Any, crypto: Any, size: int) -> None:
    client = crypto(key_client.create_oct_key(unique("cbc"), size=size, hardware_protected=True))
    iv = os.urandom(16)
    for plaintext in (b"twenty bytes of text", b"x", os.urandom(33)):
        result = client.encrypt(f"A{size}CBC", plaintext, iv=iv)
        assert len(result.ciphertext) == -(-len(plaintext) // 16) * 16
        assert client.decrypt(f"A{size}CBC", result.ciphertext, iv=iv).plaintext.startswith(plaintext)


async def test_aes_cbc_without_padding_completes_the_last_block_async(emulator: Any, key_client: Any) -> None:
    from azure.keyvault.keys.crypto.aio import CryptographyClient

    key = key_client.create_oct_key(unique("cbc"), size=256, hardware_protected=True)
    iv = os.urandom(16)
    async with _async_client(CryptographyClient, key, ca=emulator.ca) as client:
        result = await client.encrypt("A256CBC", b"seventeen bytes!!", iv=iv)
        plain = await client.decrypt("A256CBC", result.ciphertext, iv=iv)
    assert plain.plaintext.startswith(b"seventeen bytes!!") and len(plain.plaintext) == 32


def test_versions_of_a_missing_key_in_a_vault_is_an_empty_list(vault_key_client: Any) -> None:
    assert list(vault_key_client.list_properties_of_key_versions(unique("never"))) == []


async def test_versions_of_a_missing_key_in_a_vault_is_an_empty_list_async(
    emulator: Any, vault_url: str
) -> None:
    from azure.keyvault.keys.aio import KeyClient

    async with _async_client(KeyClient, vault_url, ca=emulator.ca) as keys:
        assert [p async for p in keys.list_properties_of_key_versions(unique("never"))] == []


def test_an_immutable_release_policy_cannot_be_changed(key_client: Any) -> None:
    fixed = KeyReleasePolicy(POLICY.encode(), immutable=True)
    name = unique("rel")
    key = key_client.create_rsa_key(
        name, size=2048, hardware_protected=True, exportable=True, release_policy=fixed
    )
    assert key.properties.release_policy.immutable is True
    with pytest.raises(HttpResponseError) as info:
        key_client.update_key_properties(name, release_policy=KeyReleasePolicy(POLICY.encode()))
    assert info.value.status_code == 400 and "immutable" in info.value.error.message
    assert key_client.update_key_properties(name, tags={"still": "editable"}).properties.tags == {
        "still": "editable"
    }
    mutable = unique("rel")
    key_client.create_rsa_key(
        mutable,
        size=2048,
        hardware_protected=True,
        exportable=True,
        release_policy=KeyReleasePolicy(POLICY.encode()),
    )
    changed = key_client.update_key_properties(mutable, release_policy=fixed)
    assert changed.properties.release_policy.immutable is True


async def test_an_immutable_release_policy_cannot_be_changed_async(emulator: Any, hsm_url: str) -> None:
    from azure.keyvault.keys.aio import KeyClient

    name = unique("rel")
    async with _async_client(KeyClient, hsm_url, ca=emulator.ca) as keys:
        await keys.create_ec_key(
            name, exportable=True, release_policy=KeyReleasePolicy(POLICY.encode(), immutable=True)
        )
        with pytest.raises(HttpResponseError) as info:
            await keys.update_key_properties(name, release_policy=KeyReleasePolicy(b"{}"))
    assert info.value.status_code == 400

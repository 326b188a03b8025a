"""Key attestation through azure-keyvault-keys' get_key_attestation (sync and async): the attestation fields
the SDK reads, signed statements that the returned certificate verifies, Managed HSM only."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from tests.emulator.conftest import unique


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _verified_claims(statement: bytes, certificate_pem: bytes) -> dict[str, Any]:
    """The claims of a compact ES256 JWS, after checking its signature with the certificate's key."""
    header, payload, signature = statement.decode().split(".")
    raw = _unb64u(signature)
    der = utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = x509.load_pem_x509_certificate(certificate_pem).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    claims: dict[str, Any] = json.loads(_unb64u(payload))
    return claims


def test_key_attestation_of_each_version_verifies(key_client: Any) -> None:
    name = unique("att")
    first = key_client.create_ec_key(name, curve="P-256", hardware_protected=True)
    latest = key_client.rotate_key(name)
    for version, expected in ((first.properties.version, first), (None, latest)):
        key = key_client.get_key_attestation(name, version)
        attestation = key.properties.attestation
        assert key.id == expected.id and attestation.version
        assert attestation.certificate_pem_file.startswith(b"-----BEGIN CERTIFICATE-----")
        for part, blob in (
            ("private", attestation.private_key_attestation),
            ("public", attestation.public_key_attestation),
        ):
            claims = _verified_claims(blob, attestation.certificate_pem_file)
            assert (claims["kid"], claims["attested"]) == (expected.id, part)
            assert _unb64u(claims["key"]["x"]) == expected.key.x
    aes = key_client.create_oct_key(unique("att"), size=256, hardware_protected=True)
    attested = key_client.get_key_attestation(aes.name).properties.attestation
    assert attested.private_key_attestation and attested.public_key_attestation is None


def test_key_attestation_is_for_managed_hsm_keys_only(key_client: Any, vault_key_client: Any) -> None:
    name = unique("att")
    vault_key_client.create_ec_key(name, curve="P-256")
    with pytest.raises(HttpResponseError) as info:
        vault_key_client.get_key_attestation(name)
    assert info.value.status_code == 404
    with pytest.raises(HttpResponseError) as info:
        key_client.get_key_attestation(unique("missing"))
    assert info.value.status_code == 404


async def test_key_attestation_through_the_async_client(emulator: Any, hsm_url: str) -> None:
    from azure.identity.aio import ManagedIdentityCredential
    from azure.keyvault.keys.aio import KeyClient

    async with (
        ManagedIdentityCredential() as credential,
        KeyClient(hsm_url, credential, connection_verify=str(emulator.ca)) as keys,
    ):
        key = await keys.create_rsa_key(unique("att"), size=2048)
        attested = await keys.get_key_attestation(key.name, key.properties.version)
    attestation = attested.properties.attestation
    claims = _verified_claims(attestation.public_key_attestation, attestation.certificate_pem_file)
    assert claims["kid"] == key.id and _unb64u(claims["key"]["n"]) == key.key.n

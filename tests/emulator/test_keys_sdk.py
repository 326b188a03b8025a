"""The keys API through the unchanged azure-keyvault-keys SDK (sync), checked with pyca/cryptography."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from tests.emulator.conftest import unique

HASHES = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}


def _public(key: Any) -> Any:
    """The pyca public key of an SDK KeyVaultKey, built only from the JWK the emulator returned."""
    jwk = key.key
    if jwk.kty.startswith("RSA"):
        return rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")).public_key()
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}[jwk.crv]
    x, y = int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big")
    return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])
def test_rsa_signatures_verify_with_the_returned_public_key(key_client: Any, crypto: Any, alg: str) -> None:
    key = key_client.create_rsa_key(unique("rsa"), size=2048, hardware_protected=True)
    assert key.key_type == "RSA-HSM" and "sign" in key.key_operations
    hash_alg = HASHES[alg[2:]]
    digest = hashlib.new(hash_alg.name, b"hello").digest()
    result = crypto(key).sign(alg, digest)
    assert result.key_id == key.id
    pad = (
        padding.PSS(padding.MGF1(hash_alg), hash_alg.digest_size)
        if alg.startswith("PS")
        else padding.PKCS1v15()
    )
    _public(key).verify(result.signature, digest, pad, utils.Prehashed(hash_alg))
    assert crypto(key).verify(alg, digest, result.signature).is_valid


@pytest.mark.parametrize(
    ("curve", "alg", "size"), [("P-256", "ES256", 32), ("P-384", "ES384", 48), ("P-521", "ES512", 66)]
)
def test_ecdsa_signatures_are_raw_r_s_and_verify(
    key_client: Any, crypto: Any, curve: str, alg: str, size: int
) -> None:
    key = key_client.create_ec_key(unique("ec"), curve=curve, hardware_protected=True)
    assert len(key.key.x) == len(key.key.y) == size
    hash_alg = HASHES[alg[2:]]
    digest = hashlib.new(hash_alg.name, b"hello").digest()
    # an unversioned key id: the SDK posts to /keys/{name}//sign
    client = crypto(key.id.rsplit("/", 1)[0])
    signature = client.sign(alg, digest).signature
    assert len(signature) == 2 * size
    der = utils.encode_dss_signature(
        int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
    )
    _public(key).verify(der, digest, ec.ECDSA(utils.Prehashed(hash_alg)))


def test_get_latest_and_by_version(key_client: Any) -> None:
    name = unique()
    first = key_client.create_ec_key(name, curve="P-256", hardware_protected=True)
    second = key_client.create_ec_key(name, curve="P-256", hardware_protected=True)
    assert first.properties.version != second.properties.version
    assert key_client.get_key(name).properties.version == second.properties.version
    old = key_client.get_key(name, version=first.properties.version)
    assert old.key.x == first.key.x and old.id == first.id


@pytest.mark.parametrize("alg", ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"])
def test_ciphertext_made_locally_decrypts_in_the_emulator(key_client: Any, crypto: Any, alg: str) -> None:
    key = key_client.create_rsa_key(unique("rsa"), size=2048, hardware_protected=True)
    public = _public(key)
    if alg == "RSA1_5":
        ciphertext = public.encrypt(b"session key", padding.PKCS1v15())
    else:
        h = hashes.SHA256() if alg == "RSA-OAEP-256" else hashes.SHA1()
        ciphertext = public.encrypt(b"session key", padding.OAEP(padding.MGF1(h), h, None))
    assert crypto(key).decrypt(alg, ciphertext).plaintext == b"session key"


def test_no_private_material_in_responses(key_client: Any) -> None:
    key = key_client.create_rsa_key(unique("rsa"), size=2048, hardware_protected=True)
    assert key.key.d is None and key.key.p is None and key.key.q is None


def test_every_operation_is_audited(emulator: Any, key_client: Any, crypto: Any) -> None:
    name = unique("audit")
    key = key_client.create_ec_key(name, curve="P-256", hardware_protected=True)
    crypto(key).sign("ES256", bytes(32))
    entries = [e for e in emulator.audit() if e.get("key") == name]
    assert [e["operation"] for e in entries] == ["create", "sign"]
    sign = entries[-1]
    assert sign["version"] == key.properties.version and sign["result"] == "ok"
    assert sign["principal"] == emulator.principal_id("admin") and sign["service"] == "local-hsm"
    assert {"time", "principal", "service", "key", "version", "operation", "result"} <= set(sign)


def test_requests_without_a_valid_token_get_the_challenge(emulator: Any, hsm_url: str) -> None:
    import json
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=str(emulator.ca))
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        request = urllib.request.Request(f"{hsm_url}/keys?api-version=7.5", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, context=context)
        assert info.value.code == 401
        port = hsm_url.rsplit(":", 1)[1]
        assert f'resource="https://0.0.1:{port}"' in info.value.headers["WWW-Authenticate"]
        assert json.loads(info.value.read())["error"]["code"] == "Unauthorized"


def test_token_claims_name_the_principal(emulator: Any) -> None:
    from hsmcert.azure.credentials import decode_claims

    claims = decode_claims(emulator.token("alice"))
    assert claims["oid"] == emulator.principal_id("alice") != emulator.principal_id("admin")
    assert {"tid", "appid", "exp"} <= set(claims)


def test_the_server_certificate_covers_localhost_and_127_0_0_1(emulator: Any) -> None:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((emulator.data_dir / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    ca = x509.load_pem_x509_certificate(emulator.ca.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert serialization.Encoding.PEM  # the CA file is PEM

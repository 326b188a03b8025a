"""The rest of the keys API through the sync SDK: import, list/versions with paging, update, delete/recover/purge,
backup/restore, rotate, AES (wrap vectors, GCM, CBC), random bytes, key types per service, state enforcement."""

from __future__ import annotations

import datetime
import os
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import JsonWebKey, KeyClient
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.emulator.conftest import unique
from tests.fixtures.x509_local import rsa_import_jwk


def _b(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text.replace(" ", ""))


def _oct(key_client: KeyClient, k: bytes, ops: list[str] | None = None) -> Any:
    jwk = JsonWebKey(kty="oct-HSM", k=k, key_ops=ops or ["encrypt", "decrypt", "wrapKey", "unwrapKey"])
    return key_client.import_key(unique("aes"), jwk, hardware_protected=True)


# RFC 3394 section 4 and RFC 5649 section 6 test vectors: (KEK, key data, wrapped).
RFC3394 = [
    (
        "000102030405060708090A0B0C0D0E0F",
        "00112233445566778899AABBCCDDEEFF",
        "1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5",
    ),
    (
        "000102030405060708090A0B0C0D0E0F1011121314151617",
        "00112233445566778899AABBCCDDEEFF0001020304050607",
        "031D33264E15D33268F24EC260743EDCE1C6C7DDEE725A936BA814915C6762D2",
    ),
    (
        "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
        "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
        "28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21",
    ),
]
RFC5649 = [
    (
        "5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8",
        "c37b7e6492584340 bed1220780894115 5068f738",
        "138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a",
    ),
    (
        "5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8",
        "466f7250617369",
        "afbeb0f07dfbf541 9200f2ccb50bb24f",
    ),
]


@pytest.mark.parametrize(("kek", "data", "wrapped"), RFC3394)
def test_aes_key_wrap_matches_rfc3394(
    key_client: Any, crypto: Any, kek: str, data: str, wrapped: str
) -> None:
    key = _oct(key_client, _b(kek))
    client = crypto(key)
    alg = f"A{len(_b(kek)) * 8}KW"
    for algorithm in (alg, "CKM_AES_KEY_WRAP"):
        result = client.wrap_key(algorithm, _b(data))
        assert result.encrypted_key == _b(wrapped)
        assert client.unwrap_key(algorithm, result.encrypted_key).key == _b(data)


@pytest.mark.parametrize(("kek", "data", "wrapped"), RFC5649)
def test_aes_key_wrap_with_padding_matches_rfc5649(
    key_client: Any, crypto: Any, kek: str, data: str, wrapped: str
) -> None:
    client = crypto(_oct(key_client, _b(kek)))
    assert client.wrap_key("CKM_AES_KEY_WRAP_PAD", _b(data)).encrypted_key == _b(wrapped)
    assert client.unwrap_key("CKM_AES_KEY_WRAP_PAD", _b(wrapped)).key == _b(data)


def test_aes_unwrap_of_tampered_data_is_400(key_client: Any, crypto: Any) -> None:
    kek, _data, wrapped = RFC3394[0]
    client = crypto(_oct(key_client, _b(kek)))
    bad = bytearray(_b(wrapped))
    bad[3] ^= 1
    with pytest.raises(HttpResponseError) as info:
        client.unwrap_key("A128KW", bytes(bad))
    assert info.value.status_code == 400


@pytest.mark.parametrize("size", [128, 192, 256])
def test_aes_gcm_round_trips_and_matches_local_aes(key_client: Any, crypto: Any, size: int) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    k = os.urandom(size // 8)
    client = crypto(_oct(key_client, k))
    alg = f"A{size}GCM"
    result = client.encrypt(alg, b"attack at dawn", additional_authenticated_data=b"hdr")
    assert len(result.iv) == 12 and len(result.tag) == 16
    assert AESGCM(k).decrypt(result.iv, result.ciphertext + result.tag, b"hdr") == b"attack at dawn"
    plain = client.decrypt(
        alg,
        result.ciphertext,
        iv=result.iv,
        authentication_tag=result.tag,
        additional_authenticated_data=b"hdr",
    )
    assert plain.plaintext == b"attack at dawn"
    with pytest.raises(HttpResponseError) as info:
        client.decrypt(alg, result.ciphertext, iv=result.iv, authentication_tag=result.tag)
    assert info.value.status_code == 400  # the aad is part of the tag


def test_aes_cbc_with_padding_matches_local_aes(key_client: Any, crypto: Any) -> None:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    k, iv = os.urandom(32), os.urandom(16)
    client = crypto(_oct(key_client, k))
    result = client.encrypt("A256CBCPAD", b"seventeen bytes!!", iv=iv)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(k), modes.CBC(iv)).encryptor()
    assert (
        result.ciphertext
        == enc.update(padder.update(b"seventeen bytes!!") + padder.finalize()) + enc.finalize()
    )
    assert client.decrypt("A256CBCPAD", result.ciphertext, iv=iv).plaintext == b"seventeen bytes!!"
    block = client.encrypt("A256CBC", bytes(32), iv=iv)
    assert client.decrypt("A256CBC", block.ciphertext, iv=iv).plaintext == bytes(32)


def test_aes_algorithm_must_match_the_key_size(key_client: Any, crypto: Any) -> None:
    client = crypto(_oct(key_client, os.urandom(16)))
    with pytest.raises(HttpResponseError) as info:
        client.wrap_key("A256KW", bytes(16))
    assert info.value.status_code == 400 and info.value.error.code == "BadParameter"


def test_rsa_wrap_unwrap_in_the_emulator(key_client: Any, crypto: Any) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key = key_client.create_rsa_key(unique("rsa"), size=2048, hardware_protected=True)
    public = rsa.RSAPublicNumbers(
        int.from_bytes(key.key.e, "big"), int.from_bytes(key.key.n, "big")
    ).public_key()
    wrapped = public.encrypt(b"k" * 32, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    assert crypto(key).unwrap_key("RSA-OAEP-256", wrapped).key == b"k" * 32


def test_oct_keys_only_on_managed_hsm_and_hsm_types_only(key_client: Any, vault_key_client: Any) -> None:
    key = key_client.create_oct_key(unique("aes"), size=256, hardware_protected=True)
    assert key.key_type == "oct-HSM" and key.key.k is None
    with pytest.raises(HttpResponseError) as info:
        vault_key_client.create_oct_key(unique("aes"), size=256, hardware_protected=True)
    assert info.value.status_code == 400
    plain = key_client.create_rsa_key(unique("rsa"), size=2048)  # every key of a Managed HSM is an HSM key
    assert plain.key_type == "RSA-HSM"
    soft = vault_key_client.create_ec_key(unique("ec"), curve="P-256K")
    assert soft.key_type == "EC" and soft.key.crv == "P-256K"


def test_unsupported_sizes_and_curves(key_client: Any) -> None:
    with pytest.raises(HttpResponseError) as info:
        key_client.create_rsa_key(unique(), size=1024, hardware_protected=True)
    assert info.value.status_code == 400
    with pytest.raises(HttpResponseError) as info:
        key_client.create_ec_key(unique(), curve="P-192", hardware_protected=True)
    assert info.value.error.code == "KeyCurveNotSupported"


def test_import_rsa_and_ec_then_sign_with_them(key_client: Any, crypto: Any) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    private = rsa.generate_private_key(65537, 2048)
    n = private.private_numbers()
    jwk = rsa_import_jwk(private)
    imported = key_client.import_key(unique("imp"), jwk, hardware_protected=True)
    assert imported.key_type == "RSA-HSM" and imported.key.d is None
    assert int.from_bytes(imported.key.n, "big") == n.public_numbers.n
    signature = crypto(imported).sign("PS256", bytes(32)).signature
    private.public_key().verify(
        signature, bytes(32), padding.PSS(padding.MGF1(hashes.SHA256()), 32), utils.Prehashed(hashes.SHA256())
    )

    ec_private = ec.generate_private_key(ec.SECP384R1())
    numbers = ec_private.private_numbers()
    ec_jwk = JsonWebKey(
        kty="EC",
        crv="P-384",
        x=numbers.public_numbers.x.to_bytes(48, "big"),
        y=numbers.public_numbers.y.to_bytes(48, "big"),
        d=numbers.private_value.to_bytes(48, "big"),
    )
    ec_key = key_client.import_key(unique("imp"), ec_jwk, hardware_protected=True)
    assert ec_key.key.d is None and ec_key.key.x == ec_jwk.x


def test_import_without_private_parts_is_400(key_client: Any) -> None:
    private = rsa.generate_private_key(65537, 2048)
    pub = private.public_key().public_numbers()
    jwk = JsonWebKey(kty="RSA", n=pub.n.to_bytes(256, "big"), e=pub.e.to_bytes(3, "big"))
    with pytest.raises(HttpResponseError) as info:
        key_client.import_key(unique(), jwk, hardware_protected=True)
    assert info.value.status_code == 400 and "private" in info.value.error.message


def test_list_and_versions_page_through_next_links(key_client: Any) -> None:
    name = unique("many")
    versions = {
        key_client.create_ec_key(name, curve="P-256", hardware_protected=True).properties.version
        for _ in range(27)
    }
    listed = {p.version for p in key_client.list_properties_of_key_versions(name)}
    assert listed == versions  # 27 versions: two pages of at most 25
    pages = list(key_client.list_properties_of_key_versions(name).by_page())
    assert len(pages) == 2
    names = [p.name for p in key_client.list_properties_of_keys()]
    assert name in names and len(names) == len(set(names))


def test_update_properties_tags_and_key_ops(key_client: Any, crypto: Any) -> None:
    name = unique()
    key = key_client.create_ec_key(name, curve="P-256", hardware_protected=True, tags={"a": "1"})
    updated = key_client.update_key_properties(name, key_operations=["verify"], tags={"b": "2"})
    assert updated.key_operations == ["verify"] and updated.properties.tags == {"b": "2"}
    assert updated.properties.version == key.properties.version
    with pytest.raises(HttpResponseError) as info:
        crypto(key).sign("ES256", bytes(32))
    assert info.value.status_code == 403 and "key_ops" in info.value.error.message


def test_disabled_not_yet_valid_and_expired_keys_refuse_operations(key_client: Any, crypto: Any) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    cases = {
        "disabled": {"enabled": False},
        "not yet valid": {"not_before": now + datetime.timedelta(days=1)},
        "expired": {"expires_on": now - datetime.timedelta(days=1)},
    }
    for words, change in cases.items():
        name = unique()
        key = key_client.create_ec_key(name, curve="P-256", hardware_protected=True)
        client = crypto(key)
        client.sign("ES256", bytes(32))  # usable before the change
        key_client.update_key_properties(name, **change)
        with pytest.raises(HttpResponseError) as info:
            client.sign("ES256", bytes(32))
        assert info.value.status_code == 403 and words in info.value.error.message, words


def test_delete_recover_purge(key_client: Any) -> None:
    name = unique("del")
    key = key_client.create_ec_key(name, curve="P-256", hardware_protected=True)
    deleted = key_client.begin_delete_key(name).result()
    assert deleted.recovery_id.endswith(f"/deletedkeys/{name}") and deleted.deleted_date is not None
    with pytest.raises(ResourceNotFoundError):
        key_client.get_key(name)
    assert name in [k.name for k in key_client.list_deleted_keys()]
    with pytest.raises(ResourceExistsError) as info:
        key_client.create_ec_key(name, curve="P-256", hardware_protected=True)
    assert "ObjectIsDeletedButRecoverable" in str(info.value)
    recovered = key_client.begin_recover_deleted_key(name).result()
    assert recovered.id == key.id
    key_client.begin_delete_key(name).result()
    key_client.purge_deleted_key(name)
    with pytest.raises(ResourceNotFoundError):
        key_client.get_deleted_key(name)
    assert key_client.create_ec_key(name, curve="P-256", hardware_protected=True).id != key.id


def test_backup_restore(key_client: Any, crypto: Any) -> None:
    name = unique("bak")
    key = key_client.create_rsa_key(name, size=2048, hardware_protected=True)
    blob = key_client.backup_key(name)
    assert b"PRIVATE" not in blob
    with pytest.raises(ResourceExistsError):
        key_client.restore_key_backup(blob)
    key_client.begin_delete_key(name).result()
    key_client.purge_deleted_key(name)
    restored = key_client.restore_key_backup(blob)
    assert restored.id == key.id and restored.key.n == key.key.n
    assert (
        crypto(restored)
        .verify("RS256", bytes(32), crypto(restored).sign("RS256", bytes(32)).signature)
        .is_valid
    )


def test_rotate_makes_a_new_version_with_the_same_shape(key_client: Any) -> None:
    name = unique("rot")
    key = key_client.create_ec_key(name, curve="P-384", hardware_protected=True, tags={"label": "x"})
    rotated = key_client.rotate_key(name)
    assert rotated.properties.version != key.properties.version
    assert rotated.key.crv == "P-384" and rotated.properties.tags == {"label": "x"}
    assert key_client.get_key(name).properties.version == rotated.properties.version
    policy = key_client.get_key_rotation_policy(name)
    assert policy.lifetime_actions


def test_random_bytes(key_client: Any) -> None:
    first, second = key_client.get_random_bytes(32), key_client.get_random_bytes(32)
    assert len(first) == 32 and first != second
    with pytest.raises(HttpResponseError) as info:
        key_client.get_random_bytes(129)
    assert info.value.status_code == 400


def test_missing_key_is_404_key_not_found(key_client: Any) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        key_client.get_key(unique("missing"))
    assert info.value.error.code == "KeyNotFound"


def test_wrong_key_type_for_the_algorithm_is_400(key_client: Any, crypto: Any) -> None:
    key = key_client.create_ec_key(unique(), curve="P-256", hardware_protected=True)
    for alg in ("RS256", "ES384"):
        with pytest.raises(HttpResponseError) as info:
            crypto(key).sign(alg, bytes(32 if alg == "RS256" else 48))
        assert info.value.status_code == 400

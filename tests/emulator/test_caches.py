"""What the emulator caches for speed (private key objects, verified tokens, RBAC answers) never outlives a change:
a key rotated, deleted, purged and re-created, a role definition narrowed, or a token expired is honoured by the
very next request, after the old state has already been used (and so cached)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.administration import (
    KeyVaultAccessControlClient,
    KeyVaultDataAction,
    KeyVaultPermission,
    KeyVaultRoleScope,
)
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from hsmcert.emulator import auth
from tests.emulator.conftest import Token, unique

DIGEST = hashlib.sha256(b"cache").digest()


def _public(key: Any) -> rsa.RSAPublicKey:
    n, e = (int.from_bytes(v, "big") for v in (key.key.n, key.key.e))
    return rsa.RSAPublicNumbers(e, n).public_key()


def _signed_by(key: Any, signature: bytes) -> bool:
    try:
        _public(key).verify(signature, DIGEST, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def test_signing_follows_rotation_and_a_purged_then_recreated_key(key_client: Any, crypto: Any) -> None:
    name = unique("cache")
    first = key_client.create_rsa_key(name, size=2048, hardware_protected=True)
    assert _signed_by(first, crypto(first).sign("RS256", DIGEST).signature)

    second = key_client.rotate_key(name)
    signature = crypto(second).sign("RS256", DIGEST).signature
    assert _signed_by(second, signature) and not _signed_by(first, signature)
    assert _signed_by(first, crypto(first).sign("RS256", DIGEST).signature)  # old versions still sign

    key_client.begin_delete_key(name).result()
    with pytest.raises(ResourceNotFoundError):
        crypto(second).sign("RS256", DIGEST)
    key_client.purge_deleted_key(name)
    third = key_client.create_rsa_key(name, size=2048, hardware_protected=True)
    signature = crypto(third).sign("RS256", DIGEST).signature
    assert _signed_by(third, signature) and not _signed_by(second, signature)
    for gone in (first, second):
        with pytest.raises(ResourceNotFoundError):
            crypto(gone).sign("RS256", DIGEST)


def test_disabling_a_key_in_use_refuses_its_next_sign(key_client: Any, crypto: Any) -> None:
    key = key_client.create_rsa_key(unique("cache"), size=2048, hardware_protected=True)
    client = crypto(key)
    for _ in range(3):
        client.sign("RS256", DIGEST)
    key_client.update_key_properties(key.name, enabled=False)
    with pytest.raises(HttpResponseError) as info:
        client.sign("RS256", DIGEST)
    assert info.value.status_code == 403
    key_client.update_key_properties(key.name, enabled=True)
    assert _signed_by(key, client.sign("RS256", DIGEST).signature)


def test_narrowing_a_custom_role_takes_effect_at_once(
    emulator: Any, key_client: Any, crypto: Any, credential: Any
) -> None:
    access = KeyVaultAccessControlClient(key_client.vault_url, credential, connection_verify=str(emulator.ca))
    key = key_client.create_ec_key(unique("cache"), curve="P-256", hardware_protected=True)
    role_name = unique("signer")
    signer_actions = [KeyVaultDataAction.READ_HSM_KEY, KeyVaultDataAction.SIGN_HSM_KEY]
    definition = access.set_role_definition(
        KeyVaultRoleScope.GLOBAL,
        role_name=role_name,
        permissions=[KeyVaultPermission(data_actions=signer_actions)],
    )
    principal = unique("app")
    access.create_role_assignment(
        KeyVaultRoleScope.KEYS, str(definition.id), emulator.principal_id(principal)
    )
    client = crypto(key, Token(emulator.token(principal)))
    assert client.sign("ES256", DIGEST).signature

    access.set_role_definition(
        KeyVaultRoleScope.GLOBAL,
        role_name=role_name,
        name=definition.name,
        permissions=[KeyVaultPermission(data_actions=[KeyVaultDataAction.READ_HSM_KEY])],
    )
    with pytest.raises(HttpResponseError) as info:
        client.sign("ES256", DIGEST)
    assert info.value.status_code == 403 and "ForbiddenByRbac" in str(info.value)


def test_a_cached_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = bytes(32)
    verifier = auth.TokenVerifier(secret)
    token = auth.issue(secret, "alice")
    caller = verifier.verify(token)
    assert caller.name == "alice"
    assert verifier.verify(token) == caller  # now from the cache
    with pytest.raises(auth.InvalidToken, match="signature"):
        verifier.verify(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    later = caller.expires + auth.CLOCK_SKEW + 1
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(auth.InvalidToken, match="expired"):
        verifier.verify(token)

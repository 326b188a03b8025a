"""Managed HSM local RBAC through azure-keyvault-administration's KeyVaultAccessControlClient."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.administration import (
    KeyVaultAccessControlClient,
    KeyVaultDataAction,
    KeyVaultPermission,
    KeyVaultRoleScope,
)

from hsmcert.azure import roles
from tests.emulator.conftest import Token, unique

CRYPTO_USER = roles.role_by_slug("crypto-user")
assert CRYPTO_USER is not None


@pytest.fixture(scope="module")
def access(emulator: Any, hsm_url: str, credential: Any) -> KeyVaultAccessControlClient:
    return KeyVaultAccessControlClient(hsm_url, credential, connection_verify=str(emulator.ca))


def _forbidden(call: Any) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as info:
        call()
    assert info.value.status_code == 403
    assert info.value.error.code == "Forbidden"
    assert "ForbiddenByRbac" in str(info.value)
    return info.value


def test_builtin_roles_are_listed_with_their_real_ids(access: KeyVaultAccessControlClient) -> None:
    listed = {d.name: d for d in access.list_role_definitions(KeyVaultRoleScope.GLOBAL)}
    for role in roles.BUILTIN_ROLES:
        assert listed[role.id].role_name == role.name
        assert set(listed[role.id].permissions[0].data_actions) == set(role.data_actions)


def test_the_administrator_holds_admin_officer_and_user(
    emulator: Any, access: KeyVaultAccessControlClient
) -> None:
    admin = emulator.principal_id("admin")
    held = {
        str(a.properties.role_definition_id).rsplit("/", 1)[-1]
        for a in access.list_role_assignments(KeyVaultRoleScope.GLOBAL)
        if a.properties.principal_id == admin and a.properties.scope == "/"
    }
    assert held == {
        r.id for r in roles.BUILTIN_ROLES if r.slug in ("administrator", "crypto-officer", "crypto-user")
    }


def test_crypto_user_on_one_key_signs_with_it_only_and_removal_is_immediate(
    emulator: Any, key_client: Any, crypto: Any, access: KeyVaultAccessControlClient
) -> None:
    k1 = key_client.create_ec_key(unique("k1"), curve="P-256", hardware_protected=True)
    k2 = key_client.create_ec_key(unique("k2"), curve="P-256", hardware_protected=True)
    principal = unique("app")
    stranger = Token(emulator.token(principal))
    error = _forbidden(lambda: crypto(k1, stranger).sign("ES256", bytes(32)))
    assert "keys/sign/action" in error.error.message

    assignment = access.create_role_assignment(
        f"/keys/{k1.name}", CRYPTO_USER.definition_id, emulator.principal_id(principal)
    )
    assert assignment.properties.scope == f"/keys/{k1.name}"
    assert crypto(k1, stranger).sign("ES256", bytes(32)).signature
    _forbidden(lambda: crypto(k2, stranger).sign("ES256", bytes(32)))

    access.delete_role_assignment(f"/keys/{k1.name}", assignment.name)
    _forbidden(lambda: crypto(k1, stranger).sign("ES256", bytes(32)))
    denied = [e for e in emulator.audit() if e.get("key") == k1.name and e.get("result") == "denied"]
    assert denied and denied[-1]["principal"] == emulator.principal_id(principal)


def test_a_custom_read_only_role_at_keys(
    emulator: Any, key_client: Any, crypto: Any, access: KeyVaultAccessControlClient
) -> None:
    key = key_client.create_ec_key(unique(), curve="P-256", hardware_protected=True)
    definition = access.set_role_definition(
        KeyVaultRoleScope.GLOBAL,
        role_name=unique("reader"),
        permissions=[KeyVaultPermission(data_actions=[KeyVaultDataAction.READ_HSM_KEY])],
    )
    assert definition.role_type == "CustomRole"
    principal = unique("reader")
    access.create_role_assignment(KeyVaultRoleScope.KEYS, definition.id, emulator.principal_id(principal))
    from azure.keyvault.keys import KeyClient

    reader = KeyClient(
        key_client.vault_url, Token(emulator.token(principal)), connection_verify=str(emulator.ca)
    )
    assert reader.get_key(key.name).id == key.id
    _forbidden(lambda: crypto(key, Token(emulator.token(principal))).sign("ES256", bytes(32)))
    _forbidden(lambda: reader.create_ec_key(unique(), curve="P-256", hardware_protected=True))
    fetched = access.get_role_definition(KeyVaultRoleScope.GLOBAL, definition.name)
    assert fetched.role_name == definition.role_name


def test_role_management_needs_a_role_too(emulator: Any, hsm_url: str) -> None:
    outsider = KeyVaultAccessControlClient(
        hsm_url, Token(emulator.token(unique("x"))), connection_verify=str(emulator.ca)
    )
    _forbidden(lambda: list(outsider.list_role_assignments(KeyVaultRoleScope.GLOBAL)))
    _forbidden(
        lambda: outsider.create_role_assignment(
            KeyVaultRoleScope.GLOBAL, CRYPTO_USER.definition_id, emulator.principal_id("x")
        )
    )


def test_unknown_assignment_and_builtin_role_changes(access: KeyVaultAccessControlClient) -> None:
    with pytest.raises(ResourceNotFoundError):
        access.get_role_assignment(KeyVaultRoleScope.GLOBAL, str(uuid.uuid4()))
    with pytest.raises(HttpResponseError) as info:
        access.delete_role_definition(KeyVaultRoleScope.GLOBAL, CRYPTO_USER.id)
    assert info.value.status_code == 403


def test_a_vault_has_no_local_rbac(emulator: Any, vault_url: str, credential: Any) -> None:
    client = KeyVaultAccessControlClient(vault_url, credential, connection_verify=str(emulator.ca))
    with pytest.raises(HttpResponseError) as info:
        list(client.list_role_definitions(KeyVaultRoleScope.GLOBAL))
    assert info.value.status_code == 404

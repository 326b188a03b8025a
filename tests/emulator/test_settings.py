"""Managed HSM account settings through azure-keyvault-administration's KeyVaultSettingsClient (sync and
async): list, get, update, and only administrators may read or change them."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.administration import KeyVaultAccessControlClient, KeyVaultSetting, KeyVaultSettingsClient

from hsmcert.azure import roles
from tests.emulator.conftest import Token, unique

ARM = "AllowKeyManagementOperationsThroughARM"


def _role(slug: str) -> str:
    role = roles.role_by_slug(slug)
    assert role is not None
    return role.definition_id


def test_settings_are_listed_read_and_updated_by_an_administrator(
    emulator: Any, hsm_url: str, credential: Any
) -> None:
    client = KeyVaultSettingsClient(hsm_url, credential, connection_verify=str(emulator.ca))
    listed = {s.name: s for s in client.list_settings()}
    assert listed[ARM].setting_type == "boolean" and listed[ARM].value in ("true", "false")
    try:
        updated = client.update_setting(KeyVaultSetting(name=ARM, value=True))
        assert updated.getboolean() is True and client.get_setting(ARM).getboolean() is True
        assert client.get_setting(ARM.lower()).name == ARM
    finally:
        client.update_setting(KeyVaultSetting(name=ARM, value=False))
    assert client.get_setting(ARM).getboolean() is False
    with pytest.raises(HttpResponseError) as info:
        client.update_setting(KeyVaultSetting(name=ARM, value="maybe"))
    assert info.value.status_code == 400
    with pytest.raises(HttpResponseError) as info:
        client.get_setting("NoSuchSetting")
    assert info.value.status_code == 404
    assert any(e.get("operation") == "setting-update" and e.get("setting") == ARM for e in emulator.audit())


def test_only_administrators_read_or_change_settings(emulator: Any, hsm_url: str, credential: Any) -> None:
    ca = str(emulator.ca)
    access = KeyVaultAccessControlClient(hsm_url, credential, connection_verify=ca)
    user, admin = unique("user"), unique("admin")
    access.create_role_assignment("/", _role("crypto-user"), emulator.principal_id(user))
    access.create_role_assignment("/", _role("crypto-officer"), emulator.principal_id(user))
    access.create_role_assignment("/", _role("administrator"), emulator.principal_id(admin))
    refused = KeyVaultSettingsClient(hsm_url, Token(emulator.token(user)), connection_verify=ca)
    for call in (
        lambda: list(refused.list_settings()),
        lambda: refused.get_setting(ARM),
        lambda: refused.update_setting(KeyVaultSetting(name=ARM, value=True)),
    ):
        with pytest.raises(HttpResponseError) as info:
            call()
        assert info.value.status_code == 403 and "ForbiddenByRbac" in str(info.value)
        assert "settings/" in info.value.error.message
    allowed = KeyVaultSettingsClient(hsm_url, Token(emulator.token(admin)), connection_verify=ca)
    assert allowed.update_setting(KeyVaultSetting(name=ARM, value=False)).getboolean() is False
    assert ARM in {s.name for s in allowed.list_settings()}


async def test_settings_through_the_async_client(emulator: Any, hsm_url: str) -> None:
    from azure.identity.aio import ManagedIdentityCredential
    from azure.keyvault.administration.aio import KeyVaultSettingsClient as AsyncSettingsClient

    async with (
        ManagedIdentityCredential() as credential,
        AsyncSettingsClient(hsm_url, credential, connection_verify=str(emulator.ca)) as client,
    ):
        assert ARM in [s.name async for s in client.list_settings()]
        updated = await client.update_setting(KeyVaultSetting(name=ARM, value=False))
        assert updated.getboolean() is False
        assert (await client.get_setting(ARM)).setting_type == "boolean"

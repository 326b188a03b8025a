"""Who may use a vault, decided through Resource Manager in an emulator of the test's own: access policies
(add, replace, remove) on a vault in access-policy mode, the simulated propagation delay of new role
assignments (Resource Manager and Managed HSM local RBAC), and what survives a restart."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from tests.emulator.conftest import Token, unique
from tests.emulator.test_arm import ARM, COMPUTE, CRYPTO_USER, KV, Arm, add_vm
from tests.fixtures.emulator import EmulatorHandle, start_emulator

pytestmark = pytest.mark.process
VAULT_AUD = "https://vault.azure.net"


@pytest.fixture
def own(tmp_path: Path) -> Iterator[EmulatorHandle]:
    handle = start_emulator(tmp_path / "emu")
    try:
        yield handle
    finally:
        handle.stop()


def admin_arm(emulator: EmulatorHandle) -> Arm:
    """Resource Manager as the administrator of this emulator (not the session's)."""
    return Arm(emulator, Token(emulator.token("admin", ARM)))


def _keys(emulator: EmulatorHandle, principal: str, vault: str = "local-vault") -> Any:
    from azure.keyvault.keys import KeyClient

    token = Token(emulator.token(principal, VAULT_AUD))
    return KeyClient(emulator.url("vault", vault), token, connection_verify=str(emulator.ca))


def _sign(emulator: EmulatorHandle, principal: str, key_id: str) -> bytes:
    from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm

    token = Token(emulator.token(principal, VAULT_AUD))
    crypto = CryptographyClient(key_id, token, connection_verify=str(emulator.ca))
    return bytes(crypto.sign(SignatureAlgorithm.es256, b"\x02" * 32).signature)


def _refused(call: Any) -> str:
    with pytest.raises(HttpResponseError) as info:
        call()
    assert info.value.status_code == 403, info.value
    return str(info.value)


def test_access_policies_of_a_vault_in_access_policy_mode(own: EmulatorHandle) -> None:
    from hsmcert.emulator import control

    control.start(own.data_dir, arm={"vault_access_policies": True})
    own.url("vault", "legacy")  # made now: access policies
    arm = admin_arm(own)
    sub = arm.get("/subscriptions?api-version=2022-12-01")["value"][0]["subscriptionId"]
    vault_id = (
        f"/subscriptions/{sub}/resourceGroups/hsmcert-emulator/providers/Microsoft.KeyVault/vaults/legacy"
    )
    vault = arm.get(f"{vault_id}?{KV}")["properties"]
    assert vault["enableRbacAuthorization"] is False
    assert [p["objectId"] for p in vault["accessPolicies"]] == [own.principal_id("admin")]
    assert arm.get(f"{vault_id.replace('legacy', 'local-vault')}?{KV}")["properties"][
        "enableRbacAuthorization"
    ]

    key = _keys(own, "admin", "legacy").create_ec_key(unique("ap"), curve="P-256")
    vm = add_vm(own, "app")
    principal = vm["principalId"]
    assert "AccessDenied" in _refused(lambda: _keys(own, principal, "legacy").get_key(key.name))

    def policy(operation: str, permissions: list[str]) -> dict[str, Any]:
        body = {
            "properties": {
                "accessPolicies": [
                    {
                        "tenantId": vault["tenantId"],
                        "objectId": principal,
                        "permissions": {"keys": permissions},
                    }
                ]
            }
        }
        status, answer = arm.call("PUT", f"{vault_id}/accessPolicies/{operation}?{KV}", body)
        assert status == 200, answer
        return dict(answer)

    assert policy("add", ["get", "sign"])["properties"]["accessPolicies"][0]["permissions"]["keys"] == [
        "get",
        "sign",
    ]
    assert _keys(own, principal, "legacy").get_key(key.name).id == key.id
    assert _sign(own, principal, str(key.id))
    assert "keys create" in _refused(
        lambda: _keys(own, principal, "legacy").create_ec_key("x", curve="P-256")
    )
    policy("remove", ["sign"])
    _refused(lambda: _sign(own, principal, str(key.id)))
    assert _keys(own, principal, "legacy").get_key(key.name)
    policy("replace", ["sign"])
    _refused(lambda: _keys(own, principal, "legacy").get_key(key.name))
    policy("remove", ["sign"])
    assert [p["objectId"] for p in arm.get(f"{vault_id}?{KV}")["properties"]["accessPolicies"]] == [
        own.principal_id("admin")
    ]
    status, bad = arm.call(
        "PUT",
        f"{vault_id}/accessPolicies/add?{KV}",
        {"properties": {"accessPolicies": [{"objectId": principal, "permissions": {"keys": ["fly"]}}]}},
    )
    assert status == 400 and "'fly' is not a valid keys permission" in bad["error"]["message"]
    # a role assignment does nothing in access-policy mode; switching the vault to RBAC makes it count
    arm.assign(f"{vault_id}", CRYPTO_USER, principal)
    _refused(lambda: _sign(own, principal, str(key.id)))
    status, _ = arm.call("PATCH", f"{vault_id}?{KV}", {"properties": {"enableRbacAuthorization": True}})
    assert status == 200
    assert _sign(own, principal, str(key.id))


def test_new_role_assignments_take_effect_after_the_propagation_delay(own: EmulatorHandle) -> None:
    from azure.keyvault.administration import KeyVaultAccessControlClient, KeyVaultRoleScope

    from hsmcert.emulator import control

    delay = 8
    control.start(own.data_dir, arm={"propagation_delay": delay})
    arm = admin_arm(own)
    sub = arm.get("/subscriptions?api-version=2022-12-01")["value"][0]["subscriptionId"]
    key = _keys(own, "admin").create_ec_key(unique("late"), curve="P-256")
    principal = str(uuid.uuid4())
    vault_id = f"/subscriptions/{sub}/resourceGroups/hsmcert-emulator/providers/Microsoft.KeyVault/vaults/local-vault"
    arm.assign(f"{vault_id}", CRYPTO_USER, principal)
    # the Managed HSM's local RBAC too
    from azure.keyvault.keys import KeyClient

    hsm_principal = str(uuid.uuid4())
    access = KeyVaultAccessControlClient(
        own.url("managedhsm"), Token(own.token()), connection_verify=str(own.ca)
    )
    crypto_user = "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/21dbd100-6940-42c2-9190-5d6cb909625b"
    access.create_role_assignment(KeyVaultRoleScope.GLOBAL, crypto_user, hsm_principal)
    made = time.monotonic()
    hsm_keys = KeyClient(
        own.url("managedhsm"), Token(own.token(hsm_principal)), connection_verify=str(own.ca)
    )

    _refused(lambda: _sign(own, principal, str(key.id)))
    _refused(lambda: list(hsm_keys.list_properties_of_keys()))
    assert time.monotonic() - made < delay, "the machine was too slow to see the delay"
    deadline = made + delay + 60
    while True:
        try:
            _sign(own, principal, str(key.id))
            list(hsm_keys.list_properties_of_keys())
            break
        except HttpResponseError:
            assert time.monotonic() < deadline, "the assignments never took effect"
            time.sleep(0.5)
    assert time.monotonic() - made >= delay - 1


def test_machines_and_assignments_survive_a_restart(own: EmulatorHandle) -> None:
    arm = admin_arm(own)
    sub = arm.get("/subscriptions?api-version=2022-12-01")["value"][0]["subscriptionId"]
    vm = add_vm(own, "keeper", group="rg-keep", user_assigned=["kept"])
    key = _keys(own, "admin").create_ec_key(unique("kept"), curve="P-256")
    vault_id = f"/subscriptions/{sub}/resourceGroups/hsmcert-emulator/providers/Microsoft.KeyVault/vaults/local-vault"
    arm.assign(f"{vault_id}/keys/{key.name}", CRYPTO_USER, vm["principalId"])
    url = own.env["HSMCERT_ARM_URL"]
    own.stop()
    own.start()
    assert own.env["HSMCERT_ARM_URL"] == url
    again = admin_arm(own).get(f"{vm['id']}?{COMPUTE}")
    assert again["identity"]["principalId"] == vm["principalId"]
    assert (
        next(iter(again["identity"]["userAssignedIdentities"].values()))["principalId"]
        == (vm["userAssigned"][0]["principalId"])
    )
    assert _sign(own, vm["principalId"], str(key.id))


def test_the_subscription_of_a_new_data_directory(tmp_path: Path) -> None:
    from hsmcert.emulator import control
    from hsmcert.errors import UnreachableError, UsageError

    chosen = "11111111-2222-3333-4444-555555555555"
    running = control.start(tmp_path / "emu", arm={"subscription": chosen}, exit_with=os.getpid())
    try:
        handle = EmulatorHandle(tmp_path / "emu")
        handle.env = running.env()
        subscriptions = admin_arm(handle).get("/subscriptions?api-version=2022-12-01")["value"]
        assert [s["subscriptionId"] for s in subscriptions] == [chosen]
        with pytest.raises(UsageError, match="runs with the subscription"):
            control.start(tmp_path / "emu", arm={"subscription": str(uuid.uuid4())})
        control.stop(tmp_path / "emu")
        with pytest.raises(UnreachableError, match="cannot change"):
            control.start(tmp_path / "emu", arm={"subscription": str(uuid.uuid4())}, exit_with=os.getpid())
    finally:
        control.stop(tmp_path / "emu")

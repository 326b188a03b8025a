"""Access to Key Vault keys through Azure Resource Manager: Azure RBAC role assignments, or access policies.

A vault decides with ``properties.enableRbacAuthorization``: true, Azure RBAC (a role assignment at the vault,
``/subscriptions/S/resourceGroups/G/providers/Microsoft.KeyVault/vaults/V``, or at one key, ``.../keys/K``);
false, the vault's access policies (an entry for the object id with key permissions ``get`` and ``sign``).
hsmcert reads the vault and does what it uses. ``--granular`` on an RBAC vault creates (once per subscription,
with a name derived from the subscription, so creating it again is harmless) the custom role
``hsmcert Key Vault Signer`` with the data actions ``keys/read`` and ``keys/sign/action``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hsmcert.azure import roles
from hsmcert.azure.arm import AUTHORIZATION_API, KEYVAULT_API, id_segments
from hsmcert.errors import HsmcertError, NotFoundError

if TYPE_CHECKING:
    from hsmcert.azure.arm import Arm

_NAMESPACE = uuid.UUID("6a3b3f0e-51a6-4b0e-9a5e-8d1c2f4e7a10")
_ASSIGNMENTS = ["providers", "Microsoft.Authorization", "roleAssignments"]


@dataclass(frozen=True)
class Vault:
    """A vault as Resource Manager describes it."""

    name: str
    id: str
    tenant_id: str
    rbac: bool
    access_policies: tuple[dict[str, Any], ...]

    @property
    def subscription(self) -> str:
        return id_segments(self.id)[1]

    def scope(self, key: str | None) -> str:
        """The ARM scope of the vault, or of one of its keys."""
        return f"{self.id}/keys/{key}" if key else self.id


def find_vault(arm: Arm, subscription: str, name: str) -> Vault:
    """The vault ``name`` of the subscription (vault names are unique in Azure)."""
    segments = ["subscriptions", subscription, "providers", "Microsoft.KeyVault", "vaults"]
    for item in arm.list(segments, KEYVAULT_API, what=f"vaults of subscription {subscription}"):
        if str(item.get("name", "")).lower() == name.lower():
            body = arm.get(id_segments(str(item["id"])), KEYVAULT_API, what=f"vault {name}")
            return _vault(body)
    raise NotFoundError(
        f"No Key Vault named {name!r} in subscription {subscription}, at {arm.base}.",
        "Check the name and --subscription (az keyvault show -n NAME --query id shows where it is).",
    )


def _vault(body: dict[str, Any]) -> Vault:
    props = body.get("properties") or {}
    return Vault(
        str(body.get("name")),
        str(body.get("id")),
        str(props.get("tenantId") or ""),
        bool(props.get("enableRbacAuthorization")),
        tuple(p for p in props.get("accessPolicies") or [] if isinstance(p, dict)),
    )


def signer_role_id(subscription: str) -> str:
    """The resource id of the ``hsmcert Key Vault Signer`` custom role of ``subscription``."""
    name = uuid.uuid5(_NAMESPACE, f"{subscription.lower()}/{roles.VAULT_SIGNER_ROLE_NAME}")
    return f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{name}"


def signer_role_definition(subscription: str) -> dict[str, Any]:
    return {
        "properties": {
            "roleName": roles.VAULT_SIGNER_ROLE_NAME,
            "description": roles.SIGNER_ROLE_DESCRIPTION,
            "type": "CustomRole",
            "permissions": [
                {
                    "actions": [],
                    "notActions": [],
                    "dataActions": list(roles.VAULT_SIGNER_ACTIONS),
                    "notDataActions": [],
                }
            ],
            "assignableScopes": [f"/subscriptions/{subscription}"],
        }
    }


def ensure_signer_role(arm: Arm, subscription: str) -> tuple[str, bool]:
    """The custom role's id, and whether it was created now."""
    role_id = signer_role_id(subscription)
    if (
        arm.find(id_segments(role_id), AUTHORIZATION_API, what="the hsmcert Key Vault Signer role")
        is not None
    ):
        return role_id, False
    arm.request(
        "PUT",
        id_segments(role_id),
        AUTHORIZATION_API,
        body=signer_role_definition(subscription),
        what=f"role definition {roles.VAULT_SIGNER_ROLE_NAME}",
    )
    return role_id, True


def assignments(arm: Arm, scope: str, principal: str | None = None) -> list[dict[str, Any]]:
    """The role assignments that apply at ``scope`` (at, above and below it), of ``principal`` if given."""
    query = {"$filter": f"principalId eq '{principal}'"} if principal else None
    return list(
        arm.list(
            [*id_segments(scope), *_ASSIGNMENTS],
            AUTHORIZATION_API,
            query=query,
            what=f"role assignments of {scope}",
        )
    )


def _same_id(a: str, b: str) -> bool:
    return a.rstrip("/").rsplit("/", 1)[-1].lower() == b.rstrip("/").rsplit("/", 1)[-1].lower()


def assign(arm: Arm, scope: str, role_definition_id: str, principal: str) -> bool:
    """Assign the role to the principal at ``scope`` unless that exact assignment exists; True if made now."""
    for existing in assignments(arm, scope, principal):
        props = existing.get("properties") or {}
        if (
            str(props.get("scope", "")).lower() == scope.lower()
            and str(props.get("principalId", "")).lower() == principal.lower()
            and _same_id(str(props.get("roleDefinitionId", "")), role_definition_id)
        ):
            return False
    name = uuid.uuid5(_NAMESPACE, f"{scope.lower()}|{role_definition_id.lower()}|{principal.lower()}")
    arm.request(
        "PUT",
        [*id_segments(scope), *_ASSIGNMENTS, str(name)],
        AUTHORIZATION_API,
        body={
            "properties": {
                "roleDefinitionId": role_definition_id,
                "principalId": principal,
                "principalType": "ServicePrincipal",
            }
        },
        what=f"a role assignment at {scope}",
    )
    return True


def unassign(arm: Arm, scope: str, principal: str, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Delete the principal's role assignments at ``scope`` and below it; the ones deleted (or, in a dry run,
    that would be)."""
    gone = []
    for existing in assignments(arm, scope, principal):
        props = existing.get("properties") or {}
        at = str(props.get("scope", ""))
        if str(props.get("principalId", "")).lower() != principal.lower():
            continue
        if not (at.lower() == scope.lower() or at.lower().startswith(scope.lower() + "/")):
            continue  # inherited from above: not made for this vault or key
        if not dry_run:
            arm.request(
                "DELETE",
                id_segments(str(existing["id"])),
                AUTHORIZATION_API,
                what=f"a role assignment at {at}",
            )
        gone.append(existing)
    return gone


def role_names(arm: Arm, definition_ids: list[str]) -> dict[str, str]:
    """Role definition id -> role name (the built-in ones without a request)."""
    known = {role.id: role.name for role in roles.VAULT_ROLES}
    names: dict[str, str] = {}
    for definition in definition_ids:
        short = definition.rstrip("/").rsplit("/", 1)[-1].lower()
        if short in known:
            names[definition] = known[short]
            continue
        try:
            body = arm.get(id_segments(definition), AUTHORIZATION_API, what="a role definition")
            names[definition] = str((body.get("properties") or {}).get("roleName") or short)
        except HsmcertError:
            names[definition] = short
    return names


def _policy(vault: Vault, principal: str) -> dict[str, Any]:
    return {
        "properties": {
            "accessPolicies": [
                {
                    "tenantId": vault.tenant_id,
                    "objectId": principal,
                    "permissions": {"keys": list(roles.ACCESS_POLICY_KEY_PERMISSIONS)},
                }
            ]
        }
    }


def policy_of(vault: Vault, principal: str) -> set[str]:
    """The key permissions the vault's access policies give ``principal`` (lower case)."""
    permissions: set[str] = set()
    for entry in vault.access_policies:
        if str(entry.get("objectId", "")).lower() == principal.lower():
            permissions |= {str(p).lower() for p in (entry.get("permissions") or {}).get("keys") or []}
    return permissions


def _update_policy(arm: Arm, vault: Vault, principal: str, operation: str) -> None:
    """``PUT .../accessPolicies/{add|remove}`` with the principal's get and sign on keys."""
    segments = [*id_segments(vault.id), "accessPolicies", operation]
    what = f"the access policies of {vault.name}"
    arm.request("PUT", segments, KEYVAULT_API, body=_policy(vault, principal), what=what)


def add_policy(arm: Arm, vault: Vault, principal: str) -> bool:
    """Give ``principal`` get and sign on the vault's keys (access-policy mode); True if it lacked one."""
    if set(roles.ACCESS_POLICY_KEY_PERMISSIONS) <= policy_of(vault, principal):
        return False
    _update_policy(arm, vault, principal, "add")
    return True


def remove_policy(arm: Arm, vault: Vault, principal: str, *, dry_run: bool = False) -> bool:
    """Take get and sign on the vault's keys away from ``principal``; True if it had one of them."""
    if not set(roles.ACCESS_POLICY_KEY_PERMISSIONS) & policy_of(vault, principal):
        return False
    if not dry_run:
        _update_policy(arm, vault, principal, "remove")
    return True


__all__ = [
    "Vault",
    "add_policy",
    "assign",
    "assignments",
    "ensure_signer_role",
    "find_vault",
    "remove_policy",
    "role_names",
    "signer_role_id",
    "unassign",
]

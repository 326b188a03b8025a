"""The emulator's vaults and Managed HSMs as Resource Manager resources (Microsoft.KeyVault/vaults and
managedHSMs, in the resource group :data:`~hsmcert.emulator.arm.SERVICE_GROUP`), vault access policies,
and who may use a vault's data plane.

A vault uses Azure RBAC (``properties.enableRbacAuthorization``, the default) or access policies (a vault
made while the emulator runs with ``--vault-access-policies``, or switched with a ``PATCH``). With RBAC, the
data action of each operation (:data:`VAULT_DATA_ACTIONS`) is checked
against the role assignments in effect at the vault, or at the key (``.../vaults/{v}/keys/{k}``); with
access policies, the caller's policy must hold the operation's permission (``get``, ``sign``...). Refusals
are the 403s Azure answers (inner code ``ForbiddenByRbac`` or ``AccessDenied``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from hsmcert.emulator import auth
from hsmcert.emulator.api import ApiError, Request, Response
from hsmcert.emulator.arm import LOCATION, SERVICE_GROUP, arm_error, check_group, resource_id, value_list

if TYPE_CHECKING:
    from hsmcert.emulator.process import Emulator
    from hsmcert.emulator.service import Service

TYPES = {"vault": "vaults", "managedhsm": "managedHSMs"}
_VAULT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]")
KEY_PERMISSIONS = (
    "all",
    "backup",
    "create",
    "decrypt",
    "delete",
    "encrypt",
    "get",
    "getrotationpolicy",
    "import",
    "list",
    "purge",
    "recover",
    "release",
    "restore",
    "rotate",
    "setrotationpolicy",
    "sign",
    "unwrapKey",
    "update",
    "verify",
    "wrapKey",
)
CERTIFICATE_PERMISSIONS = (
    "all",
    "backup",
    "create",
    "delete",
    "deleteissuers",
    "get",
    "getissuers",
    "import",
    "list",
    "listissuers",
    "managecontacts",
    "manageissuers",
    "purge",
    "recover",
    "restore",
    "setissuers",
    "update",
)
SECRET_PERMISSIONS = ("all", "backup", "delete", "get", "list", "purge", "recover", "restore", "set")
_PERMISSIONS = {
    "keys": KEY_PERMISSIONS,
    "certificates": CERTIFICATE_PERMISSIONS,
    "secrets": SECRET_PERMISSIONS,
}

VAULT_DATA_ACTIONS: dict[str, str] = {
    **{op: "keys/read" for op in ("get", "list", "versions")},
    "update": "keys/update/action",
    "create": "keys/create/action",
    "import": "keys/import/action",
    "delete": "keys/delete",
    "backup": "keys/backup/action",
    "restore": "keys/restore/action",
    "rotate": "keys/rotate/action",
    "rotationpolicy-get": "keyrotationpolicies/read",
    "rotationpolicy-set": "keyrotationpolicies/write",
    **{op: f"keys/{op}/action" for op in ("sign", "verify", "encrypt", "decrypt")},
    "wrapkey": "keys/wrap/action",
    "unwrapkey": "keys/unwrap/action",
    "deleted-list": "deletedKeys/read",
    "deleted-get": "deletedKeys/read",
    "recover": "deletedKeys/recover/action",
    "purge": "deletedKeys/delete",
    "rng": "rng/action",
    **{
        f"certificate-{op}": "certificates/read"
        for op in ("list", "get", "versions", "policy", "pending", "deleted-list", "deleted-get")
    },
    "certificate-update": "certificates/update/action",
    "certificate-pending-cancel": "certificates/update/action",
    "certificate-delete": "certificates/delete",
    "certificate-pending-delete": "certificates/delete",
    "certificate-create": "certificates/create/action",
    "certificate-import": "certificates/import/action",
    "certificate-merge": "certificates/create/action",
    "certificate-purge": "certificates/purge/action",
    "certificate-recover": "certificates/recover/action",
}
"""A vault data-plane operation (as :mod:`hsmcert.emulator.routes` names it) -> its data action (after
``Microsoft.KeyVault/vaults/``)."""

POLICY_PERMISSIONS: dict[str, tuple[str, str]] = {
    "get": ("keys", "get"),
    "list": ("keys", "list"),
    "versions": ("keys", "list"),
    "update": ("keys", "update"),
    "create": ("keys", "create"),
    "import": ("keys", "import"),
    "delete": ("keys", "delete"),
    "backup": ("keys", "backup"),
    "restore": ("keys", "restore"),
    "rotate": ("keys", "rotate"),
    "rotationpolicy-get": ("keys", "getrotationpolicy"),
    "rotationpolicy-set": ("keys", "setrotationpolicy"),
    "sign": ("keys", "sign"),
    "verify": ("keys", "verify"),
    "encrypt": ("keys", "encrypt"),
    "decrypt": ("keys", "decrypt"),
    "wrapkey": ("keys", "wrapKey"),
    "unwrapkey": ("keys", "unwrapKey"),
    "deleted-list": ("keys", "list"),
    "deleted-get": ("keys", "get"),
    "recover": ("keys", "recover"),
    "purge": ("keys", "purge"),
    "rng": ("keys", "get"),
    **{
        f"certificate-{op}": ("certificates", perm)
        for op, perm in (
            ("list", "list"),
            ("get", "get"),
            ("versions", "list"),
            ("policy", "get"),
            ("pending", "get"),
            ("deleted-list", "list"),
            ("deleted-get", "get"),
            ("update", "update"),
            ("pending-cancel", "update"),
            ("delete", "delete"),
            ("pending-delete", "delete"),
            ("create", "create"),
            ("import", "import"),
            ("merge", "create"),
            ("purge", "purge"),
            ("recover", "recover"),
        )
    },
}
"""A vault data-plane operation -> the access-policy permission it needs (category, permission)."""


def service_id(emulator: Emulator, kind: str, name: str) -> str:
    return resource_id(emulator.arm.subscription, SERVICE_GROUP, "Microsoft.KeyVault", TYPES[kind], name)


def full_policy(principal: str) -> dict[str, Any]:
    return {
        "tenantId": auth.TENANT_ID,
        "objectId": principal,
        "permissions": {
            "keys": [p for p in KEY_PERMISSIONS if p != "all"],
            "secrets": [p for p in SECRET_PERMISSIONS if p != "all"],
            "certificates": [p for p in CERTIFICATE_PERMISSIONS if p != "all"],
        },
    }


def settings(emulator: Emulator, name: str) -> dict[str, Any]:
    """A vault's Resource Manager settings (RBAC mode when none were recorded)."""
    found = emulator.arm.vaults.get(name)
    if found is None:
        return {"enableRbacAuthorization": True, "accessPolicies": []}
    return found


def new_vault(emulator: Emulator, name: str, access_policies: bool) -> None:
    """Record the settings of a vault made now: Azure RBAC, or access policies (the administrator's full)."""
    record = {
        "enableRbacAuthorization": not access_policies,
        "accessPolicies": [full_policy(emulator.admin)] if access_policies else [],
    }
    _save(emulator, name, record)


def _save(emulator: Emulator, name: str, record: dict[str, Any]) -> None:
    with emulator.arm.lock:
        emulator.arm.vaults[name] = record
    emulator.arm.put("armvault", name, record)


def check_scope(emulator: Emulator, scope: str) -> None:
    """A scope that names a vault or Managed HSM must name one of the emulator's (404 else)."""
    parts = scope.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    if (
        len(parts) >= 8
        and lowered[4:6] == ["providers", "microsoft.keyvault"]
        and lowered[6] in ("vaults", "managedhsms")
    ):
        kind = "vault" if lowered[6] == "vaults" else "managedhsm"
        _service(emulator, kind, parts[3], parts[7])


def _service(emulator: Emulator, kind: str, group: str, name: str) -> Service:
    found = emulator.services.get((kind, name)) if group.lower() == SERVICE_GROUP else None
    if found is None:
        raise arm_error(
            404,
            "ResourceNotFound",
            f"The Resource 'Microsoft.KeyVault/{TYPES[kind]}/{name[:64]}' under resource group '{group[:90]}' was "
            "not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )
    return found


# --- the data plane: may the caller do this? -----------------------------------------------------------------


def authorize(emulator: Emulator, service: Service, req: Request, operation: str) -> None:
    """Refuse (403, as Azure does) a vault operation the caller's roles or access policy do not allow."""
    vault = settings(emulator, service.name)
    vault_id = service_id(emulator, "vault", service.name)
    name = req.params.get("name")
    if vault["enableRbacAuthorization"]:
        action = "Microsoft.KeyVault/vaults/" + VAULT_DATA_ACTIONS.get(operation, "keys/read")
        collection = "certificates" if operation.startswith("certificate") else "keys"
        scope = f"{vault_id}/{collection}/{name}" if name else vault_id
        if emulator.arm_roles.allowed(req.principal, action, scope, data=True):
            return
        raise ApiError(
            403,
            "Forbidden",
            "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments "
            "or role definitions were changed recently, please observe propagation time.\r\n"
            f"Caller: appid={req.principal};oid={req.principal};iss=https://sts.windows.net/{auth.TENANT_ID}/\r\n"
            f"Action: '{action}'\r\nResource: '{scope.lower()}'\r\nAssignment: (not found)\r\n"
            f"DenyAssignmentId: null\r\nDecisionReason: null \r\nVault: {service.name};location={LOCATION}\r\n",
            "ForbiddenByRbac",
        )
    category, permission = POLICY_PERMISSIONS.get(operation, ("keys", "get"))
    for policy in vault["accessPolicies"]:
        if policy.get("objectId", "").lower() != req.principal.lower():
            continue
        held = [p.lower() for p in (policy.get("permissions") or {}).get(category) or []]
        if permission.lower() in held or "all" in held:
            return
    raise ApiError(
        403,
        "Forbidden",
        f"The user, group or application 'appid={req.principal};oid={req.principal};"
        f"iss=https://sts.windows.net/{auth.TENANT_ID}/' does not have {category} {permission} permission on key "
        f"vault '{service.name};location={LOCATION}'. For help resolving this issue, please see "
        "https://go.microsoft.com/fwlink/?linkid=2125287",
        "AccessDenied",
    )


# --- the Resource Manager representation ---------------------------------------------------------------------


def vault_json(emulator: Emulator, service: Service) -> dict[str, Any]:
    vault = settings(emulator, service.name)
    return {
        "id": service_id(emulator, "vault", service.name),
        "name": service.name,
        "type": "Microsoft.KeyVault/vaults",
        "location": LOCATION,
        "tags": {},
        "properties": {
            "sku": {"family": "A", "name": "premium"},
            "tenantId": auth.TENANT_ID,
            "accessPolicies": vault["accessPolicies"],
            "enabledForDeployment": False,
            "enabledForDiskEncryption": False,
            "enabledForTemplateDeployment": False,
            "enableSoftDelete": True,
            "softDeleteRetentionInDays": service.recoverable_days,
            "enableRbacAuthorization": vault["enableRbacAuthorization"],
            "vaultUri": f"https://127.0.0.1:{service.port}/",
            "provisioningState": "Succeeded",
            "publicNetworkAccess": "Enabled",
        },
    }


def hsm_json(emulator: Emulator, service: Service) -> dict[str, Any]:
    return {
        "id": service_id(emulator, "managedhsm", service.name),
        "name": service.name,
        "type": "Microsoft.KeyVault/managedHSMs",
        "location": LOCATION,
        "tags": {},
        "sku": {"family": "B", "name": "Standard_B1"},
        "properties": {
            "tenantId": auth.TENANT_ID,
            "initialAdminObjectIds": [emulator.admin],
            "hsmUri": f"https://127.0.0.1:{service.port}/",
            "enableSoftDelete": True,
            "softDeleteRetentionInDays": service.recoverable_days,
            "enablePurgeProtection": False,
            "provisioningState": "Succeeded",
            "statusMessage": "The Managed HSM is provisioned and ready to use.",
            "publicNetworkAccess": "Enabled",
            "securityDomainProperties": {
                "activationStatus": "Active",
                "activationStatusMessage": "Your HSM has been activated and can be used for cryptographic operations.",
            },
        },
    }


def _render(emulator: Emulator, service: Service) -> dict[str, Any]:
    return vault_json(emulator, service) if service.kind == "vault" else hsm_json(emulator, service)


def service_scope(req: Request, kind: str) -> str:
    return resource_id(
        req.params["subscription"], req.params["group"], "Microsoft.KeyVault", TYPES[kind], req.params["name"]
    )


# --- handlers ----------------------------------------------------------------------------------------------


def list_services(emulator: Emulator, req: Request, kind: str) -> Response:
    """The vaults (or Managed HSMs) of the subscription or of a resource group that the caller may read."""
    group = check_group(req.params["group"]) if req.params.get("group") else None
    items = [
        _render(emulator, service)
        for (k, name), service in sorted(list(emulator.services.items()))
        if k == kind
        and (group is None or group.lower() == SERVICE_GROUP)
        and emulator.arm_roles.allowed(
            req.principal, f"Microsoft.KeyVault/{TYPES[kind]}/read", service_id(emulator, kind, name)
        )
    ]
    return Response(200, value_list(items))


def get_service(emulator: Emulator, req: Request, kind: str) -> Response:
    service = _service(emulator, kind, req.params["group"], req.params["name"])
    return Response(200, _render(emulator, service))


def update_vault(emulator: Emulator, req: Request) -> Response:
    """``PATCH`` (or ``PUT``) of a vault: ``enableRbacAuthorization`` and ``accessPolicies``; a ``PUT`` of a
    new name in :data:`SERVICE_GROUP` makes a vault (what ``az keyvault create`` sends)."""
    props = req.json().get("properties") or {}
    if not isinstance(props, dict):
        raise arm_error(400, "BadRequest", "The 'properties' must be an object.")
    name, group = req.params["name"], req.params["group"]
    if req.method == "PUT" and emulator.services.get(("vault", name)) is None:
        return _create_vault(emulator, group, name, props)
    service = _service(emulator, "vault", group, name)
    record = dict(settings(emulator, service.name))
    record.update(_vault_settings(props))
    _save(emulator, service.name, record)
    return Response(200, vault_json(emulator, service))


def _vault_settings(props: dict[str, Any]) -> dict[str, Any]:
    """The settings a vault's ``properties`` change (checked)."""
    changed: dict[str, Any] = {}
    if "enableRbacAuthorization" in props:
        if not isinstance(props["enableRbacAuthorization"], bool):
            raise arm_error(400, "BadRequest", "'enableRbacAuthorization' must be true or false.")
        changed["enableRbacAuthorization"] = props["enableRbacAuthorization"]
    if "accessPolicies" in props:
        changed["accessPolicies"] = _policies(props["accessPolicies"])
    return changed


def _create_vault(emulator: Emulator, group: str, name: str, props: dict[str, Any]) -> Response:
    if group.lower() != SERVICE_GROUP:
        raise arm_error(
            400,
            "InvalidResourceGroup",
            f"The emulator's vaults are in the resource group {SERVICE_GROUP}; '{group[:90]}' holds none.",
        )
    if not _VAULT_NAME.fullmatch(name) or "--" in name:
        raise arm_error(
            400,
            "VaultNameNotValid",
            f"The vault name '{name[:40]}' is invalid: use 3-24 letters, digits and single dashes, starting "
            "with a letter and ending with a letter or digit.",
        )
    if str(props.get("tenantId", "")).lower() != auth.TENANT_ID:
        raise arm_error(
            400, "BadRequest", f"properties.tenantId must be the emulator's tenant, {auth.TENANT_ID}."
        )
    record = {"enableRbacAuthorization": False, "accessPolicies": [], **_vault_settings(props)}
    service = emulator.service("vault", name)
    _save(emulator, name, record)
    return Response(201, vault_json(emulator, service))


def _policies(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > 1024:
        raise arm_error(400, "BadRequest", "'accessPolicies' must be a list of at most 1024 policies.")
    clean = []
    for policy in value:
        if not isinstance(policy, dict):
            raise arm_error(400, "BadRequest", "Each access policy must be an object.")
        object_id, tenant = policy.get("objectId"), policy.get("tenantId")
        if not isinstance(object_id, str) or not object_id or len(object_id) > 64:
            raise arm_error(400, "BadRequest", "An access policy needs the objectId of its principal.")
        if tenant is not None and (not isinstance(tenant, str) or tenant.lower() != auth.TENANT_ID):
            raise arm_error(
                400,
                "BadRequest",
                f"An access policy's tenantId must be the emulator's tenant, {auth.TENANT_ID}.",
            )
        permissions = policy.get("permissions")
        if not isinstance(permissions, dict):
            raise arm_error(400, "BadRequest", "An access policy needs 'permissions'.")
        kept: dict[str, list[str]] = {}
        for category, allowed in _PERMISSIONS.items():
            given = permissions.get(category) or []
            if not isinstance(given, list) or not all(isinstance(p, str) for p in given):
                raise arm_error(400, "BadRequest", f"The '{category}' permissions must be a list of strings.")
            known = {p.lower(): p for p in allowed}
            for permission in given:
                if permission.lower() not in known:
                    raise arm_error(
                        400,
                        "BadRequest",
                        f"'{permission[:40]}' is not a valid {category} permission; "
                        f"use {', '.join(allowed)}.",
                    )
            kept[category] = [known[p.lower()] for p in dict.fromkeys(given)]
        entry: dict[str, Any] = {
            "tenantId": auth.TENANT_ID,
            "objectId": object_id.lower(),
            "permissions": kept,
        }
        if isinstance(policy.get("applicationId"), str):
            entry["applicationId"] = policy["applicationId"]
        clean.append(entry)
    return clean


def update_access_policy(emulator: Emulator, req: Request) -> Response:
    """``PUT .../vaults/{v}/accessPolicies/{add|replace|remove}``: merge, replace or take away the
    permissions of each given principal's policy."""
    service = _service(emulator, "vault", req.params["group"], req.params["name"])
    operation = req.params["operation"].lower()
    if operation not in ("add", "replace", "remove"):
        raise arm_error(
            400,
            "BadRequest",
            f"The operation kind '{operation[:20]}' is invalid: use add, replace or remove.",
        )
    props = req.json().get("properties")
    if not isinstance(props, dict):
        raise arm_error(400, "BadRequest", "The 'properties' with 'accessPolicies' are required.")
    given = _policies(props.get("accessPolicies"))
    record = dict(settings(emulator, service.name))
    policies = [
        dict(p, permissions={k: list(v) for k, v in p["permissions"].items()})
        for p in record["accessPolicies"]
    ]
    for policy in given:
        mine = next((p for p in policies if p["objectId"].lower() == policy["objectId"]), None)
        if mine is None:
            if operation != "remove":
                policies.append(policy)
            continue
        for category, permissions in policy["permissions"].items():
            current = mine["permissions"].get(category, [])
            if operation == "add":
                mine["permissions"][category] = list(dict.fromkeys([*current, *permissions]))
            elif operation == "replace":
                mine["permissions"][category] = permissions
            else:
                lowered = {p.lower() for p in permissions}
                mine["permissions"][category] = [p for p in current if p.lower() not in lowered]
        if operation == "remove" and not any(mine["permissions"].values()):
            policies.remove(mine)
    record["accessPolicies"] = policies
    _save(emulator, service.name, record)
    emulator.audit.record(
        operation=f"arm-accesspolicy-{operation}",
        principal=req.principal,
        result="ok",
        status=200,
        service=service.name,
    )
    answer = {
        "id": f"{service_id(emulator, 'vault', service.name)}/accessPolicies/{operation}",
        "name": operation,
        "type": "Microsoft.KeyVault/vaults/accessPolicies",
        "location": LOCATION,
        "properties": {"accessPolicies": given},
    }
    return Response(200, answer)

"""Azure RBAC through Resource Manager (Microsoft.Authorization): role definitions (Azure's built-in roles
that matter here, with their real ids, plus custom roles) and role assignments at any scope of the
subscription, and their enforcement: on Resource Manager's own operations (``actions``) and on the data plane
of the vaults that use Azure RBAC (``dataActions``), including the simulated propagation delay.
"""

from __future__ import annotations

import fnmatch
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hsmcert.emulator import arm_keyvault
from hsmcert.emulator.api import Request, Response
from hsmcert.emulator.arm import (
    MAX_ASSIGNMENTS,
    Arm,
    arm_error,
    caller_denied,
    covers,
    is_guid,
    same_id,
    value_list,
)

if TYPE_CHECKING:
    from hsmcert.emulator.process import Emulator

PROVIDER = "Microsoft.Authorization"
_KV = "Microsoft.KeyVault/vaults/"


@dataclass(frozen=True)
class BuiltIn:
    name: str
    id: str
    description: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()


_KV_READ_ACTIONS = (
    "Microsoft.Authorization/*/read",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.KeyVault/vaults/*/read",
    "Microsoft.KeyVault/operations/read",
)

BUILTIN_ROLES: tuple[BuiltIn, ...] = (
    BuiltIn(
        "Owner",
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
        ("*",),
    ),
    BuiltIn(
        "Contributor",
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC.",
        ("*",),
        (
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
        ),
    ),
    BuiltIn(
        "Reader",
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "View all resources, but does not allow you to make any changes.",
        ("*/read",),
    ),
    BuiltIn(
        "User Access Administrator",
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "Lets you manage user access to Azure resources.",
        ("*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"),
    ),
    BuiltIn(
        "Virtual Machine Contributor",
        "9980e02c-c2be-4d73-94e8-173b1dc7cf3c",
        "Create and manage virtual machines.",
        (
            "Microsoft.Authorization/*/read",
            "Microsoft.Compute/virtualMachines/*",
            "Microsoft.Compute/virtualMachineScaleSets/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ),
    ),
    BuiltIn(
        "Managed Identity Operator",
        "f1a07417-d97a-45cb-824c-7a7467783830",
        "Read and Assign User Assigned Identity",
        (
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "Microsoft.Authorization/*/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ),
    ),
    BuiltIn(
        "Key Vault Administrator",
        "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        "Perform all data plane operations on a key vault and all objects in it, including certificates, "
        "keys, and secrets. Cannot manage key vault resources or manage role assignments. Only works for key "
        "vaults that use the 'Azure role-based access control' permission model.",
        _KV_READ_ACTIONS,
        data_actions=("Microsoft.KeyVault/vaults/*",),
    ),
    BuiltIn(
        "Key Vault Contributor",
        "f25e0fa2-a7c8-4377-a976-54943a77a395",
        "Manage key vaults, but does not allow you to assign roles in Azure RBAC, and does not allow you to "
        "access secrets, keys, or certificates.",
        (
            "Microsoft.Authorization/*/read",
            "Microsoft.KeyVault/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ),
        (
            "Microsoft.KeyVault/locations/deletedVaults/purge/action",
            "Microsoft.KeyVault/hsmPools/*",
            "Microsoft.KeyVault/managedHsms/*",
        ),
    ),
    BuiltIn(
        "Key Vault Crypto Officer",
        "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
        "Perform any action on the keys of a key vault, except manage permissions. Only works for key vaults "
        "that use the 'Azure role-based access control' permission model.",
        _KV_READ_ACTIONS,
        data_actions=(f"{_KV}keys/*", f"{_KV}keyrotationpolicies/*"),
    ),
    BuiltIn(
        "Key Vault Crypto User",
        "12338af0-0e69-4776-bea7-57ae8d297424",
        "Perform cryptographic operations using keys. Only works for key vaults that use the 'Azure "
        "role-based access control' permission model.",
        data_actions=tuple(
            f"{_KV}keys/{action}"
            for action in (
                "read",
                "update/action",
                "backup/action",
                "encrypt/action",
                "decrypt/action",
                "wrap/action",
                "unwrap/action",
                "sign/action",
                "verify/action",
            )
        ),
    ),
    BuiltIn(
        "Key Vault Crypto Service Encryption User",
        "e147488a-f6f5-4113-8e2d-b22465e65bf6",
        "Read metadata of keys and perform wrap/unwrap operations. Only works for key vaults that use the "
        "'Azure role-based access control' permission model.",
        (
            "Microsoft.EventGrid/eventSubscriptions/write",
            "Microsoft.EventGrid/eventSubscriptions/read",
            "Microsoft.EventGrid/eventSubscriptions/delete",
        ),
        data_actions=(f"{_KV}keys/read", f"{_KV}keys/wrap/action", f"{_KV}keys/unwrap/action"),
    ),
    BuiltIn(
        "Key Vault Reader",
        "21090545-7ca7-4776-b22c-e363652d74d2",
        "Read metadata of key vaults and its certificates, keys, and secrets. Cannot read sensitive values "
        "such as secret contents or key material. Only works for key vaults that use the 'Azure role-based "
        "access control' permission model.",
        _KV_READ_ACTIONS,
        data_actions=(f"{_KV}*/read", f"{_KV}secrets/readMetadata/action"),
    ),
    BuiltIn(
        "Key Vault Certificates Officer",
        "a4417e6f-fecd-4de8-b567-7b0420556985",
        "Perform any action on the certificates of a key vault, except manage permissions. Only works for "
        "key vaults that use the 'Azure role-based access control' permission model.",
        _KV_READ_ACTIONS,
        data_actions=(f"{_KV}certificatecas/*", f"{_KV}certificates/*", f"{_KV}certificatecontacts/write"),
    ),
    BuiltIn(
        "Key Vault Data Access Administrator",
        "8b54135c-b56d-4d72-a534-26097cfdc8d8",
        "Manage access to Azure Key Vault by adding or removing role assignments for the Key Vault "
        "Administrator, Key Vault Certificates Officer, Key Vault Crypto Officer, Key Vault Crypto Service "
        "Encryption User, Key Vault Crypto User, Key Vault Reader, Key Vault Secrets Officer, or Key Vault "
        "Secrets User roles.",
        (
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "Microsoft.Authorization/*/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.KeyVault/vaults/*/read",
        ),
    ),
)
BUILTIN_BY_ID = {role.id: role for role in BUILTIN_ROLES}
ADMIN_ROLES = ("Owner", "Key Vault Administrator")
"""What the emulator's administrator holds at the subscription (so a fresh emulator is usable)."""


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _matches(action: str, patterns: list[str]) -> bool:
    lowered = action.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


def _grants(definition: dict[str, Any], action: str, data: bool) -> bool:
    allow, deny = ("dataActions", "notDataActions") if data else ("actions", "notActions")
    for perm in definition["properties"]["permissions"]:
        if _matches(action, perm.get(allow, [])) and not _matches(action, perm.get(deny, [])):
            return True
    return False


class ArmRoles:
    """Role definitions and assignments of the subscription, and the checks that read them."""

    def __init__(self, arm: Arm) -> None:
        self.arm = arm
        self._cache: dict[tuple[str, str, str, bool], bool] = {}
        self._cache_until = 0.0
        self._lock = threading.Lock()

    # --- definitions ------------------------------------------------------------------------------------

    def definition_id(self, guid: str) -> str:
        return f"{self.arm.subscription_id}/providers/{PROVIDER}/roleDefinitions/{guid}"

    def builtin(self, role: BuiltIn) -> dict[str, Any]:
        return {
            "id": self.definition_id(role.id),
            "name": role.id,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {
                "roleName": role.name,
                "type": "BuiltInRole",
                "description": role.description,
                "assignableScopes": ["/"],
                "permissions": [
                    {
                        "actions": list(role.actions),
                        "notActions": list(role.not_actions),
                        "dataActions": list(role.data_actions),
                        "notDataActions": [],
                    }
                ],
                "createdOn": "2015-02-02T21:55:09.8806423Z",
                "updatedOn": "2021-11-11T20:13:47.8628684Z",
                "createdBy": None,
                "updatedBy": None,
            },
        }

    def definition(self, guid: str) -> dict[str, Any] | None:
        role = BUILTIN_BY_ID.get(guid.lower())
        if role is not None:
            return self.builtin(role)
        return self.arm.definitions.get(guid.lower())

    def all_definitions(self) -> list[dict[str, Any]]:
        return [*(self.builtin(role) for role in BUILTIN_ROLES), *self.arm.definitions.values()]

    # --- assignments ------------------------------------------------------------------------------------

    def bootstrap(self, admin: str) -> None:
        """Give the administrator Owner and Key Vault Administrator at the subscription (once)."""
        for role in BUILTIN_ROLES:
            if role.name in ADMIN_ROLES:
                name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"hsmcert-emulator/{admin}/{role.id}"))
                if name not in self.arm.assignments:
                    self.assign(self.arm.subscription_id, role.id, admin, name, "ServicePrincipal", delay=0)

    def assign(
        self,
        scope: str,
        definition: str,
        principal: str,
        name: str,
        principal_type: str,
        delay: float | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        now = time.time()
        wait = self.arm.propagation_delay if delay is None else delay
        assignment = {
            "id": f"{scope}/providers/{PROVIDER}/roleAssignments/{name}",
            "name": name,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": {
                "roleDefinitionId": self.definition_id(definition),
                "principalId": principal,
                "principalType": principal_type,
                "scope": scope,
                "condition": None,
                "conditionVersion": None,
                "createdOn": _stamp(now),
                "updatedOn": _stamp(now),
                "createdBy": None,
                "updatedBy": None,
                "delegatedManagedIdentityResourceId": None,
                "description": description,
            },
            "effective": now + wait,
        }
        with self.arm.lock:
            self.arm.assignments[name] = assignment
            self.changed()
        self.arm.put("armassign", name, assignment)
        return assignment

    def remove(self, name: str) -> dict[str, Any] | None:
        with self.arm.lock:
            found = self.arm.assignments.pop(name, None)
            self.changed()
        if found is not None:
            self.arm.delete("armassign", name)
        return found

    def changed(self) -> None:
        with self._lock:
            self._cache.clear()
            self._cache_until = min(
                (a["effective"] for a in self.arm.assignments.values() if a["effective"] > time.time()),
                default=float("inf"),
            )

    # --- checks -----------------------------------------------------------------------------------------

    def allowed(self, principal: str, action: str, scope: str, data: bool = False) -> bool:
        """Whether ``principal`` may do ``action`` (a data action with ``data``) at ``scope``, by the role
        assignments in effect now."""
        now = time.time()
        key = (principal, action.lower(), scope.lower(), data)
        with self._lock:
            if now >= self._cache_until:
                self._cache.clear()
                self._cache_until = float("inf")
                pending = [a["effective"] for a in self.arm.assignments.values() if a["effective"] > now]
                if pending:
                    self._cache_until = min(pending)
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        result = False
        with self.arm.lock:
            for assignment in self.arm.assignments.values():
                props = assignment["properties"]
                if props["principalId"] != principal or assignment["effective"] > now:
                    continue
                if not covers(props["scope"], scope):
                    continue
                definition = self.definition(props["roleDefinitionId"].rsplit("/", 1)[-1])
                if definition is not None and _grants(definition, action, data):
                    result = True
                    break
        with self._lock:
            self._cache[key] = result
        return result

    def require(self, req: Request, action: str, scope: str) -> None:
        if not self.allowed(req.principal, action, scope):
            raise caller_denied(req, action, scope)

    def has_any_role(self, principal: str, scope: str) -> bool:
        """Whether ``principal`` holds a role in effect at ``scope`` or below it (what makes a subscription
        visible)."""
        now = time.time()
        return any(
            a["properties"]["principalId"] == principal
            and a["effective"] <= now
            and (covers(scope, a["properties"]["scope"]) or covers(a["properties"]["scope"], scope))
            for a in list(self.arm.assignments.values())
        )


# --- request parsing ----------------------------------------------------------------------------------------


def request_scope(emulator: Emulator, req: Request) -> str:
    """The scope a role request addresses (the path before ``/providers/Microsoft.Authorization``): the
    subscription or a resource group or resource in it (``/`` for the tenant's role definitions)."""
    scope = req.params.get("scope", "").rstrip("/")
    if not scope:
        return "/"
    parts = scope.split("/")
    if len(parts) < 3 or parts[1].lower() != "subscriptions":
        raise arm_error(400, "InvalidScope", f"The scope '{scope[:200]}' is not valid for this request.")
    emulator.arm.check_subscription(parts[2])
    # the subscription's id as the emulator writes it; the rest as given
    return "/".join(["", "subscriptions", emulator.arm.subscription, *parts[3:]])


def _guid(value: str, what: str) -> str:
    if not is_guid(value):
        raise arm_error(400, f"Invalid{what}Id", f"The {what.lower()} id '{value[:60]}' is not a valid GUID.")
    return value.lower()


def _filter(text: str, name: str) -> str | None:
    """The value of ``name eq 'v'`` (or ``assignedTo('v')``) in an OData $filter (what clients send)."""
    match = re.search(rf"{name}\s+eq\s+'([^']*)'", text, re.IGNORECASE)
    if match is None and name == "principalId":
        match = re.search(r"assignedTo\('([^']*)'\)", text, re.IGNORECASE)
    return match.group(1) if match else None


def public(assignment: dict[str, Any]) -> dict[str, Any]:
    """An assignment as Resource Manager shows it (without the emulator's ``effective`` time)."""
    return {k: v for k, v in assignment.items() if k != "effective"}


# --- handlers: role definitions ------------------------------------------------------------------------------


def list_definitions(emulator: Emulator, req: Request) -> Response:
    scope = request_scope(emulator, req)
    roles = emulator.arm_roles
    items = roles.all_definitions()
    wanted = _filter(req.query.get("$filter", ""), "roleName")
    if wanted is not None:
        items = [d for d in items if d["properties"]["roleName"].lower() == wanted.lower()]
    if "type eq 'CustomRole'" in req.query.get("$filter", ""):
        items = [d for d in items if d["properties"]["type"] == "CustomRole"]
    if scope != "/":
        items = [
            d
            for d in items
            if any(
                s == "/" or covers(s, scope) or covers(scope, s) for s in d["properties"]["assignableScopes"]
            )
        ]
    return Response(200, value_list(items))


def get_definition(emulator: Emulator, req: Request) -> Response:
    request_scope(emulator, req)
    ident = _guid(req.params["ident"], "RoleDefinition")
    found = emulator.arm_roles.definition(ident)
    if found is None:
        raise arm_error(
            404,
            "RoleDefinitionDoesNotExist",
            f"The specified role definition with ID '{ident}' does not exist.",
        )
    return Response(200, found)


def set_definition(emulator: Emulator, req: Request) -> Response:
    scope = request_scope(emulator, req)
    arm = emulator.arm
    ident = _guid(req.params["ident"], "RoleDefinition")
    if ident in BUILTIN_BY_ID:
        raise arm_error(403, "RoleDefinitionUpdateForbidden", "Built-in role definitions cannot be changed.")
    props = req.json().get("properties")
    if not isinstance(props, dict):
        raise arm_error(
            400, "InvalidRoleDefinitionParameter", "The 'properties' of a role definition are required."
        )
    name = props.get("roleName")
    if not isinstance(name, str) or not name.strip() or len(name) > 512:
        raise arm_error(400, "InvalidRoleDefinitionParameter", "A role definition needs a roleName.")
    for other in emulator.arm_roles.all_definitions():
        if other["name"] != ident and other["properties"]["roleName"].lower() == name.lower():
            raise arm_error(
                409,
                "RoleDefinitionWithSameNameExists",
                f"A custom role with the same name '{name[:80]}' already exists in this directory.",
            )
    permissions = props.get("permissions")
    if not isinstance(permissions, list) or not permissions:
        raise arm_error(400, "InvalidRoleDefinitionParameter", "A role definition needs a permissions list.")
    clean = []
    for perm in permissions:
        if not isinstance(perm, dict):
            raise arm_error(400, "InvalidRoleDefinitionParameter", "Each permission must be an object.")
        entry = {}
        for field in ("actions", "notActions", "dataActions", "notDataActions"):
            values = perm.get(field) or []
            if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
                raise arm_error(
                    400,
                    "InvalidRoleDefinitionParameter",
                    f"The '{field}' of a permission must be a list of strings.",
                )
            entry[field] = values
        clean.append(entry)
    scopes = props.get("assignableScopes") or [scope]
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise arm_error(
            400, "InvalidRoleDefinitionParameter", "The 'assignableScopes' must be a list of scopes."
        )
    for assignable in scopes:
        if not covers(arm.subscription_id, assignable):
            raise arm_error(
                403,
                "LinkedAuthorizationFailed",
                f"The assignable scope '{assignable[:200]}' is not in the emulator's subscription.",
            )
    now = _stamp(time.time())
    previous = arm.definitions.get(ident)
    definition = {
        "id": emulator.arm_roles.definition_id(ident),
        "name": ident,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": name,
            "type": "CustomRole",
            "description": str(props.get("description") or ""),
            "assignableScopes": scopes,
            "permissions": clean,
            "createdOn": previous["properties"]["createdOn"] if previous else now,
            "updatedOn": now,
            "createdBy": req.principal,
            "updatedBy": req.principal,
        },
    }
    with arm.lock:
        arm.definitions[ident] = definition
        emulator.arm_roles.changed()
    arm.put("armroledef", ident, definition)
    return Response(201, definition)


def delete_definition(emulator: Emulator, req: Request) -> Response:
    request_scope(emulator, req)
    arm = emulator.arm
    ident = _guid(req.params["ident"], "RoleDefinition")
    if ident in BUILTIN_BY_ID:
        raise arm_error(403, "RoleDefinitionUpdateForbidden", "Built-in role definitions cannot be deleted.")
    in_use = [a for a in arm.assignments.values() if a["properties"]["roleDefinitionId"].endswith(ident)]
    if in_use:
        raise arm_error(
            409,
            "RoleDefinitionHasAssignments",
            "There are existing role assignments referencing this role definition. Delete them first.",
        )
    with arm.lock:
        found = arm.definitions.pop(ident, None)
        emulator.arm_roles.changed()
    if found is None:
        return Response(204)
    arm.delete("armroledef", ident)
    return Response(200, found)


# --- handlers: role assignments ------------------------------------------------------------------------------


def list_assignments(emulator: Emulator, req: Request) -> Response:
    """At, above and below the scope (``$filter=atScope()``: at and above), optionally of one principal."""
    scope = request_scope(emulator, req)
    if scope == "/":
        raise arm_error(400, "InvalidScope", "List role assignments at a subscription or below it.")
    emulator.arm_roles.require(req, "Microsoft.Authorization/roleAssignments/read", scope)
    text = req.query.get("$filter", "")
    at_scope = "atscope()" in text.lower().replace(" ", "")
    principal = _filter(text, "principalId")
    items = []
    for assignment in list(emulator.arm.assignments.values()):
        where = assignment["properties"]["scope"]
        if not (covers(where, scope) or (not at_scope and covers(scope, where))):
            continue
        if principal is not None and assignment["properties"]["principalId"].lower() != principal.lower():
            continue
        items.append(public(assignment))
    return Response(200, value_list(items))


def _not_found(ident: str) -> Any:
    return arm_error(404, "RoleAssignmentNotFound", f"The role assignment '{ident[:60]}' is not found.")


def get_assignment(emulator: Emulator, req: Request) -> Response:
    scope = request_scope(emulator, req)
    emulator.arm_roles.require(req, "Microsoft.Authorization/roleAssignments/read", scope)
    found = emulator.arm.assignments.get(req.params["ident"].lower())
    if found is None or not same_id(found["properties"]["scope"], scope):
        raise _not_found(req.params["ident"])
    return Response(200, public(found))


def create_assignment(emulator: Emulator, req: Request) -> Response:
    scope = request_scope(emulator, req)
    if scope == "/":
        raise arm_error(400, "InvalidScope", "Role assignments are made at a subscription or below it.")
    arm, roles = emulator.arm, emulator.arm_roles
    ident = _guid(req.params["ident"], "RoleAssignment")
    body = req.json()
    props = body.get("properties")
    if not isinstance(props, dict):
        raise arm_error(
            400, "InvalidRoleAssignmentParameter", "The 'properties' of a role assignment are required."
        )
    definition_ref = props.get("roleDefinitionId")
    principal = props.get("principalId")
    if not isinstance(definition_ref, str) or not isinstance(principal, str):
        raise arm_error(
            400,
            "InvalidRoleAssignmentParameter",
            "A role assignment needs a roleDefinitionId and a principalId.",
        )
    principal = _guid(principal, "Principal")
    definition = definition_ref.rstrip("/").rsplit("/", 1)[-1]
    if not is_guid(definition) or "/roledefinitions/" not in definition_ref.lower():
        raise arm_error(
            400, "InvalidRoleDefinitionId", f"The role definition ID '{definition_ref[:120]}' is not valid."
        )
    definition = definition.lower()
    found = roles.definition(definition)
    if found is None:
        raise arm_error(
            400,
            "RoleDefinitionDoesNotExist",
            f"The specified role definition with ID '{definition}' does not exist.",
        )
    principal_type = props.get("principalType") or "ServicePrincipal"
    if principal_type not in ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device"):
        raise arm_error(
            400, "InvalidPrincipalType", f"The principal type '{str(principal_type)[:40]}' is not valid."
        )
    arm_keyvault.check_scope(emulator, scope)
    roles.require(req, "Microsoft.Authorization/roleAssignments/write", scope)
    with arm.lock:
        existing = arm.assignments.get(ident)
        for other in arm.assignments.values():
            p = other["properties"]
            if (
                p["principalId"] == principal
                and p["roleDefinitionId"].rsplit("/", 1)[-1] == definition
                and same_id(p["scope"], scope)
            ):
                if other["name"] == ident:
                    return Response(201, public(other))
                raise arm_error(409, "RoleAssignmentExists", "The role assignment already exists.")
        if existing is not None:
            raise arm_error(
                400,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )
        if len(arm.assignments) >= MAX_ASSIGNMENTS:
            raise arm_error(400, "RoleAssignmentLimitExceeded", "No more role assignments can be created.")
        description = props.get("description")
        created = roles.assign(
            scope,
            definition,
            principal,
            ident,
            str(principal_type),
            description=description if isinstance(description, str) else None,
        )
    return Response(201, public(created))


def delete_assignment(emulator: Emulator, req: Request) -> Response:
    scope = request_scope(emulator, req)
    roles = emulator.arm_roles
    ident = req.params["ident"].lower()
    roles.require(req, "Microsoft.Authorization/roleAssignments/delete", scope)
    found = emulator.arm.assignments.get(ident)
    if found is None or not same_id(found["properties"]["scope"], scope):
        return Response(204)
    roles.remove(ident)
    return Response(200, public(found))

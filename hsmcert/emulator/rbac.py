"""Managed HSM local RBAC: role definitions (built-in and custom), role assignments, enforcement.

The built-in roles come from :mod:`hsmcert.azure.roles` (one table for the whole project). Scopes are ``/``,
``/keys`` and ``/keys/<name>``; an assignment covers its scope and everything below it.
"""

from __future__ import annotations

import fnmatch
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hsmcert.azure import roles
from hsmcert.emulator.api import ApiError, Request, Response, bad, paged

if TYPE_CHECKING:
    from hsmcert.emulator.service import Service

DEFINITION_PREFIX = "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/"
ADMIN_ROLES = ("administrator", "crypto-officer", "crypto-user")
MAX_CUSTOM_ROLES = 50
MAX_HSM_ASSIGNMENTS = 50
MAX_KEY_ASSIGNMENTS = 10


def builtin_definition(role: roles.Role) -> dict[str, Any]:
    return {
        "id": role.definition_id,
        "name": role.id,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": role.name,
            "description": "",
            "type": "AKVBuiltInRole",
            "permissions": [
                {
                    "actions": [],
                    "notActions": [],
                    "dataActions": list(role.data_actions),
                    "notDataActions": [],
                }
            ],
            "assignableScopes": ["/"],
        },
    }


BUILTIN = {role.id: builtin_definition(role) for role in roles.BUILTIN_ROLES}


def normalize_scope(scope: str) -> str:
    scope = "/" + scope.strip("/")
    if scope == "/" or scope == "/keys" or (scope.startswith("/keys/") and scope.count("/") == 2):
        return scope
    raise bad(f"The scope '{scope[:140]}' is invalid; use /, /keys or /keys/<name>.", "InvalidScope")


def covers(assigned: str, target: str) -> bool:
    return assigned == "/" or target == assigned or target.startswith(assigned + "/")


def _definition_uuid(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise bad("The 'roleDefinitionId' field is required.")
    ident = value.rsplit("/", 1)[-1]
    try:
        return str(uuid.UUID(ident))
    except ValueError:
        raise bad(f"The role definition id '{value[:120]}' is invalid.") from None


class Rbac:
    """The role definitions and assignments of one Managed HSM."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.custom: dict[str, dict[str, Any]] = {}
        self.assignments: dict[str, dict[str, Any]] = {}
        self._cache: dict[tuple[str, str, str], bool] = {}
        self.delay: Callable[[], float] = lambda: 0.0
        """Seconds before a new assignment takes effect (the emulator's simulated propagation delay)."""
        self.pending: dict[str, float] = {}
        """Assignments not in effect yet: name -> when they take effect (kept in memory only)."""
        self.lock = threading.RLock()

    # --- persistence ------------------------------------------------------------------------------------

    def load(self, kind: str, ident: str, data: dict[str, Any]) -> None:
        (self.custom if kind == "roledef" else self.assignments)[ident] = data

    def bootstrap(self, admin: str) -> None:
        """Make ``admin`` Administrator, Crypto Officer and Crypto User at ``/`` (a fresh HSM is usable)."""
        for slug in ADMIN_ROLES:
            role = roles.role_by_slug(slug)
            assert role is not None
            self.assign("/", role.id, admin, str(uuid.uuid5(uuid.NAMESPACE_URL, f"{admin}/{role.id}")))

    def assign(
        self, scope: str, definition: str, principal: str, name: str, propagate: bool = False
    ) -> dict[str, Any]:
        """Record an assignment; with ``propagate`` it takes effect after :attr:`delay`."""
        prefix = "" if scope == "/" else scope
        assignment = {
            "id": f"{prefix}/providers/Microsoft.Authorization/roleAssignments/{name}",
            "name": name,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": {
                "scope": scope,
                "roleDefinitionId": DEFINITION_PREFIX + definition,
                "principalId": principal,
            },
        }
        delay = self.delay() if propagate else 0.0
        with self.lock:
            self.assignments[name] = assignment
            if delay > 0:
                self.pending[name] = time.monotonic() + delay
            self.changed()
        self.service.store.put(self.service.name, "roleassign", name, assignment)
        return assignment

    def changed(self) -> None:
        """Forget the answers of :meth:`allowed` (call under :attr:`lock` after every change)."""
        self._cache.clear()

    # --- enforcement ------------------------------------------------------------------------------------

    def definition(self, ident: str) -> dict[str, Any] | None:
        return BUILTIN.get(ident) or self.custom.get(ident)

    def allowed(self, principal: str, action: str, scope: str) -> bool:
        key = (principal, action, scope)
        if self.pending:
            now = time.monotonic()
            with self.lock:
                for name, when in list(self.pending.items()):
                    if when <= now:
                        del self.pending[name]
                        self.changed()
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        result = False
        with self.lock:
            for assignment in self.assignments.values():
                props = assignment["properties"]
                if props["principalId"] != principal or not covers(props["scope"], scope):
                    continue
                if assignment["name"] in self.pending:
                    continue
                definition = self.definition(props["roleDefinitionId"].rsplit("/", 1)[-1])
                if definition is not None and _grants(definition, action):
                    result = True
                    break
            self._cache[key] = result
        return result

    def require(self, req: Request, action: str, scope: str) -> None:
        full = roles.PREFIX + action
        if self.allowed(req.principal, full, scope):
            return
        raise ApiError(
            403,
            "Forbidden",
            "Caller is not authorized to perform action on resource.\r\n"
            "If role assignments were recently changed, please wait several minutes for role assignments to "
            f"become effective.\r\nCaller: appid={req.principal};oid={req.principal};"
            f"iss=https://sts.windows.net/\r\nAction: '{full}'\r\nResource: '{scope}'\r\n"
            "Assignment: (not found)\r\nVault: " + self.service.name,
            "ForbiddenByRbac",
        )


# --- handlers: each answers one route of :mod:`hsmcert.emulator.routes`, which checked the caller's role --


def request_scope(req: Request) -> str:
    """The scope a role request addresses (the path before ``/providers``): ``/``, ``/keys`` or ``/keys/<name>``."""
    return normalize_scope(req.params.get("scope", ""))


def list_definitions(service: Service, req: Request) -> Response:
    items = [*BUILTIN.values(), *service.rbac.custom.values()]
    wanted = _filter_value(req.query.get("$filter", ""), "roleName")
    if wanted is not None:
        items = [d for d in items if d["properties"]["roleName"] == wanted]
    path = "/providers/Microsoft.Authorization/roleDefinitions"
    return Response(200, paged(items, req, path), audit={})


def get_definition(service: Service, req: Request) -> Response:
    ident = _uuid(req.params["ident"], "role definition")
    found = service.rbac.definition(ident)
    if found is None:
        raise ApiError(404, "RoleDefinitionNotFound", f"The role definition {ident} does not exist.")
    return Response(200, found, audit={"role_definition": ident})


def set_definition(service: Service, req: Request) -> Response:
    rbac = service.rbac
    ident = _uuid(req.params["ident"], "role definition")
    if ident in BUILTIN:
        raise ApiError(403, "Forbidden", "A built-in role definition cannot be changed.", "BuiltInRole")
    definition = _parse_definition(req, ident)
    if ident not in rbac.custom and len(rbac.custom) >= MAX_CUSTOM_ROLES:
        raise ApiError(400, "RoleDefinitionLimitExceeded", "At most 50 custom roles can be defined.")
    with rbac.lock:
        rbac.custom[ident] = definition
        rbac.changed()
    service.store.put(service.name, "roledef", ident, definition)
    # Azure answers a PUT of a role definition 201, update or not (the SDK accepts only 201)
    return Response(201, definition, audit={"role_definition": ident})


def delete_definition(service: Service, req: Request) -> Response:
    rbac = service.rbac
    ident = _uuid(req.params["ident"], "role definition")
    if ident in BUILTIN:
        raise ApiError(403, "Forbidden", "A built-in role definition cannot be deleted.", "BuiltInRole")
    with rbac.lock:
        found = rbac.custom.pop(ident, None)
        rbac.changed()
    if found is None:
        raise ApiError(404, "RoleDefinitionNotFound", f"The role definition {ident} does not exist.")
    service.store.delete(service.name, "roledef", ident)
    return Response(200, found, audit={"role_definition": ident})


def _parse_definition(req: Request, ident: str) -> dict[str, Any]:
    props = req.json().get("properties")
    if not isinstance(props, dict):
        raise bad("The 'properties' field must be an object.")
    name = props.get("roleName") or ident
    permissions = props.get("permissions") or []
    if not isinstance(name, str) or not isinstance(permissions, list):
        raise bad("A role definition needs a roleName and a permissions list.")
    clean = []
    for perm in permissions:
        if not isinstance(perm, dict):
            raise bad("Each permission must be an object.")
        entry = {}
        for field in ("actions", "notActions", "dataActions", "notDataActions"):
            values = perm.get(field) or []
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise bad(f"The '{field}' of a permission must be a list of strings.")
            entry[field] = values
        clean.append(entry)
    scopes = props.get("assignableScopes") or ["/"]
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise bad("The 'assignableScopes' field must be a list of scopes.")
    return {
        "id": DEFINITION_PREFIX + ident,
        "name": ident,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": name,
            "description": str(props.get("description") or ""),
            "type": "CustomRole",
            "permissions": clean,
            "assignableScopes": [normalize_scope(s) for s in scopes],
        },
    }


def list_assignments(service: Service, req: Request) -> Response:
    scope = request_scope(req)
    items = [
        a
        for a in service.rbac.assignments.values()
        if covers(a["properties"]["scope"], scope) or covers(scope, a["properties"]["scope"])
    ]
    principal = _filter_value(req.query.get("$filter", ""), "principalId")
    if principal is not None:
        items = [a for a in items if a["properties"]["principalId"] == principal]
    prefix = "" if scope == "/" else scope
    path = f"{prefix}/providers/Microsoft.Authorization/roleAssignments"
    return Response(200, paged(items, req, path), audit={"scope": scope})


def _assignment_not_found(ident: str) -> ApiError:
    return ApiError(404, "RoleAssignmentNotFound", f"The role assignment {ident[:60]} does not exist.")


def get_assignment(service: Service, req: Request) -> Response:
    ident = req.params["ident"]
    found = service.rbac.assignments.get(ident)
    if found is None:
        raise _assignment_not_found(ident)
    return Response(200, found, audit={"role_assignment": ident})


def create_assignment(service: Service, req: Request) -> Response:
    rbac = service.rbac
    scope = request_scope(req)
    ident = _uuid(req.params["ident"], "role assignment")
    props = req.json().get("properties")
    if not isinstance(props, dict):
        raise bad("The 'properties' field must be an object.")
    definition = _definition_uuid(props.get("roleDefinitionId"))
    principal = props.get("principalId")
    if not isinstance(principal, str) or not principal:
        raise bad("The 'principalId' field is required.")
    if rbac.definition(definition) is None:
        raise ApiError(400, "RoleDefinitionNotFound", f"The role definition {definition} does not exist.")
    if ident in rbac.assignments:
        raise ApiError(409, "RoleAssignmentExists", f"The role assignment {ident} already exists.")
    same_scope = [a for a in rbac.assignments.values() if a["properties"]["scope"] == scope]
    limit = MAX_HSM_ASSIGNMENTS if scope in ("/", "/keys") else MAX_KEY_ASSIGNMENTS
    if len(same_scope) >= limit:
        raise ApiError(400, "RoleAssignmentLimitExceeded", f"At most {limit} role assignments at {scope}.")
    created = rbac.assign(scope, definition, principal, ident, propagate=True)
    return Response(201, created, audit={"role_assignment": ident, "scope": scope})


def delete_assignment(service: Service, req: Request) -> Response:
    rbac = service.rbac
    ident = req.params["ident"]
    with rbac.lock:
        found = rbac.assignments.pop(ident, None)
        rbac.pending.pop(ident, None)
        rbac.changed()
    if found is None:
        raise _assignment_not_found(ident)
    service.store.delete(service.name, "roleassign", ident)
    return Response(200, found, audit={"role_assignment": ident})


def _grants(definition: dict[str, Any], action: str) -> bool:
    for perm in definition["properties"]["permissions"]:
        if any(fnmatch.fnmatchcase(action, a) for a in perm.get("dataActions", [])) and not any(
            fnmatch.fnmatchcase(action, a) for a in perm.get("notDataActions", [])
        ):
            return True
    return False


def _uuid(ident: str, what: str) -> str:
    try:
        return str(uuid.UUID(ident))
    except ValueError:
        raise bad(f"The {what} name '{ident[:60]}' must be a GUID.") from None


def _filter_value(text: str, name: str) -> str | None:
    """The value of ``name eq 'v'`` in an OData $filter (the subset the SDKs send)."""
    import re

    match = re.search(rf"{name}\s+eq\s+'([^']*)'", text)
    return match.group(1) if match else None

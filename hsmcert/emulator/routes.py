"""Every route of the emulator in one place: a table of (method, path pattern, operation, handler) per
resource, one :class:`Router` that matches a request against a list of tables, and :func:`dispatch`, the one
place where a Managed HSM checks the caller's role for the route's operation.

Patterns: a literal segment matches case-insensitively (``/keys`` = ``/KEYS``); ``{name}`` matches one
non-empty segment, ``{name?}`` one segment that may be empty (``/keys/k//sign`` signs with the latest
version), and a leading ``{scope*}`` any number of segments (``/keys/k/providers/...`` has the scope
``/keys/k``). One trailing slash is ignored. The first pattern that matches the path and has a route for the method decides (so
``POST /keys/k/sign`` signs with the latest version while ``GET /keys/k/sign`` asks for a version "sign"); a
path that patterns match only with other methods is 405, a path no pattern matches is 404, both in the
answering endpoint's error shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from hsmcert.azure import roles
from hsmcert.emulator import (
    arm,
    arm_authorization,
    arm_compute,
    arm_keyvault,
    arm_resources,
    attestation,
    certificates,
    controlplane,
    imds,
    keys,
    login,
    rbac,
    settings,
)
from hsmcert.emulator.api import ApiError, Handler, Request, Response
from hsmcert.emulator.service import Service

if TYPE_CHECKING:
    from hsmcert.emulator.process import Emulator


def _key_scope(req: Request) -> str:
    return roles.key_scope(req.params.get("name"))


@dataclass(frozen=True)
class Route:
    method: str
    """GET, PUT, ... or ``*`` for any."""
    pattern: str
    operation: str
    """The name in the audit log, and (on a Managed HSM) the key of the data action checked."""
    handler: Handler
    action: str | None = None
    """The Managed HSM data action (after ``Microsoft.KeyVault/managedHsm/``); None: the operation's in
    :data:`hsmcert.azure.roles.OPERATION_ACTIONS`."""
    scope: Callable[[Request], str] = field(default=_key_scope)
    """The RBAC scope the request addresses: by default ``/keys/<name>``, or ``/keys`` without a name."""


def _compile(pattern: str) -> re.Pattern[str]:
    parts = []
    segments = pattern.split("/")
    for segment in segments[1:] if pattern.startswith("/") else segments:
        if segment == "{scope*}":
            parts.append("(?P<scope>(?:/[^/]+)*?)")
        elif segment.startswith("{") and segment.endswith("?}"):
            parts.append(f"/(?P<{segment[1:-2]}>[^/]*)")
        elif segment.startswith("{"):
            parts.append(f"/(?P<{segment[1:-1]}>[^/]+)")
        else:
            parts.append(f"/(?i:{re.escape(segment)})")
    return re.compile("".join(parts))


class NoRoute(Exception):
    """No route for a request: ``status`` 404 (no such path) or 405 (not with this method)."""

    def __init__(self, status: int, method: str, path: str) -> None:
        super().__init__(f"{method} {path}")
        self.status = status
        if status == 405:
            self.message = f"The method {method} is not allowed for {path[:200]}."
        else:
            self.message = f"The route {method} {path[:200]} does not exist."

    def api_error(self) -> ApiError:
        return ApiError(self.status, "MethodNotAllowed" if self.status == 405 else "NotFound", self.message)


class Router:
    """Finds the route of a request in tables of routes (earlier patterns first)."""

    def __init__(self, *tables: Sequence[Route]) -> None:
        patterns: list[tuple[re.Pattern[str], list[Route]]] = []
        by_pattern: dict[str, list[Route]] = {}
        shapes: list[tuple[str, int] | None] = []
        for route in (route for table in tables for route in table):
            if route.pattern not in by_pattern:
                by_pattern[route.pattern] = []
                patterns.append((_compile(route.pattern), by_pattern[route.pattern]))
                segments = route.pattern.split("/")
                head = segments[1] if len(segments) > 1 else ""
                literal = route.pattern.startswith("/") and not head.startswith("{")
                shapes.append((head.lower(), len(segments)) if literal else None)
            by_pattern[route.pattern].append(route)
        # The patterns that can match a path, by its first segment and segment count (in table order): a
        # pattern that starts with a literal is tried only on paths of its shape, the others on every path.
        self._generic = [pair for pair, shape in zip(patterns, shapes, strict=True) if shape is None]
        self._by_shape = {
            shape: [pair for pair, other in zip(patterns, shapes, strict=True) if other in (shape, None)]
            for shape in shapes
            if shape is not None
        }

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route of ``method path`` and its path parameters; NoRoute when there is none."""
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        segments = path.split("/", 2)
        shape = (segments[1].lower() if len(segments) > 1 else "", path.count("/") + 1)
        status = 404
        for regex, routes in self._by_shape.get(shape, self._generic):
            found = regex.fullmatch(path)
            if found is None:
                continue
            for route in routes:
                if route.method in (method, "*"):
                    return route, found.groupdict()
            status = 405
        raise NoRoute(status, method, path)


# --- the data plane ---------------------------------------------------------------------------------------

CRYPTO_OPERATIONS = {
    "sign": keys.sign,
    "verify": keys.verify,
    "encrypt": keys.encrypt,
    "decrypt": keys.decrypt,
    "wrapkey": keys.wrap_key,
    "unwrapkey": keys.unwrap_key,
}

# fmt: off
KEYS = (
    Route("GET", "/keys", "list", keys.list_keys),
    Route("POST", "/keys/restore", "restore", keys.restore),
    Route("PUT", "/keys/{name}", "import", keys.import_key),
    Route("DELETE", "/keys/{name}", "delete", keys.delete),
    Route("GET", "/keys/{name}", "get", keys.get),
    Route("PATCH", "/keys/{name}", "update", keys.update),
    Route("POST", "/keys/{name}/create", "create", keys.create),
    Route("GET", "/keys/{name}/versions", "versions", keys.versions),
    Route("POST", "/keys/{name}/backup", "backup", keys.backup),
    Route("POST", "/keys/{name}/rotate", "rotate", keys.rotate),
    Route("GET", "/keys/{name}/rotationpolicy", "rotationpolicy-get", keys.get_rotation_policy, "keys/read/action"),
    Route("PUT", "/keys/{name}/rotationpolicy", "rotationpolicy-set", keys.set_rotation_policy, "keys/write/action"),
    Route("GET", "/keys/{name}/{version?}", "get", keys.get),
    Route("PATCH", "/keys/{name}/{version?}", "update", keys.update),
    *(Route("POST", f"/keys/{{name}}/{{version?}}/{op}", op, run) for op, run in CRYPTO_OPERATIONS.items()),
    # Without a version (and without api-version), as Microsoft's C engine and providers send it: the latest.
    *(Route("POST", f"/keys/{{name}}/{op}", op, run) for op, run in CRYPTO_OPERATIONS.items()),
)

ATTESTATION = (
    Route("GET", "/keys/{name}/{version?}/attestation", "attestation", attestation.get_attestation, "keys/read/action"),
)

DELETED_KEYS = (
    Route("GET", "/deletedkeys", "deleted-list", keys.list_deleted, "keys/deletedKeys/read/action"),
    Route("GET", "/deletedkeys/{name}", "deleted-get", keys.get_deleted),
    Route("DELETE", "/deletedkeys/{name}", "purge", keys.purge),
    Route("POST", "/deletedkeys/{name}/recover", "recover", keys.recover),
)

RANDOM = (Route("POST", "/rng", "rng", keys.random_bytes, scope=lambda req: "/"),)

SETTINGS = tuple(
    Route(method, pattern, operation, handler, action, scope=lambda req: "/")
    for method, pattern, operation, handler, action in (
        ("GET", "/settings", "settings-list", settings.list_settings, "settings/read/action"),
        ("GET", "/settings/{setting}", "setting-get", settings.get_setting, "settings/read/action"),
        ("PATCH", "/settings/{setting}", "setting-update", settings.update_setting, "settings/write/action"),
    )
)

_DEFINITIONS = "{scope*}/providers/Microsoft.Authorization/roleDefinitions"
_ASSIGNMENTS = "{scope*}/providers/Microsoft.Authorization/roleAssignments"
RBAC = tuple(
    Route(method, pattern, operation, handler, action, rbac.request_scope)
    for method, pattern, operation, handler, action in (
        ("GET", _DEFINITIONS, "roledefinition-list", rbac.list_definitions, "roleDefinitions/read/action"),
        ("GET", _DEFINITIONS + "/{ident}", "roledefinition-get", rbac.get_definition, "roleDefinitions/read/action"),
        ("PUT", _DEFINITIONS + "/{ident}", "roledefinition-set", rbac.set_definition, "roleDefinitions/write/action"),
        ("DELETE", _DEFINITIONS + "/{ident}", "roledefinition-delete", rbac.delete_definition, "roleDefinitions/delete/action"),
        ("GET", _ASSIGNMENTS, "roleassignment-list", rbac.list_assignments, "roleAssignments/read/action"),
        ("GET", _ASSIGNMENTS + "/{ident}", "roleassignment-get", rbac.get_assignment, "roleAssignments/read/action"),
        ("PUT", _ASSIGNMENTS + "/{ident}", "roleassignment-create", rbac.create_assignment, "roleAssignments/write/action"),
        ("DELETE", _ASSIGNMENTS + "/{ident}", "roleassignment-delete", rbac.delete_assignment, "roleAssignments/delete/action"),
    )
)
# fmt: on

CERTIFICATES = (
    Route("GET", "/certificates", "certificate-list", certificates.list_certificates),
    Route("GET", "/deletedcertificates", "certificate-deleted-list", certificates.list_deleted),
    Route("GET", "/deletedcertificates/{name}", "certificate-deleted-get", certificates.get_deleted),
    Route("DELETE", "/deletedcertificates/{name}", "certificate-purge", certificates.purge),
    Route("POST", "/deletedcertificates/{name}/recover", "certificate-recover", certificates.recover),
    Route("GET", "/certificates/{name}", "certificate-get", certificates.get),
    Route("PATCH", "/certificates/{name}", "certificate-update", certificates.update),
    Route("DELETE", "/certificates/{name}", "certificate-delete", certificates.delete),
    Route("POST", "/certificates/{name}/create", "certificate-create", certificates.create),
    Route("POST", "/certificates/{name}/import", "certificate-import", certificates.import_certificate),
    Route("GET", "/certificates/{name}/versions", "certificate-versions", certificates.versions),
    Route("GET", "/certificates/{name}/policy", "certificate-policy", certificates.get_policy),
    Route("GET", "/certificates/{name}/pending", "certificate-pending", certificates.get_pending),
    Route("PATCH", "/certificates/{name}/pending", "certificate-pending-cancel", certificates.cancel_pending),
    Route(
        "DELETE", "/certificates/{name}/pending", "certificate-pending-delete", certificates.delete_pending
    ),
    Route("POST", "/certificates/{name}/pending/merge", "certificate-merge", certificates.merge),
    Route("GET", "/certificates/{name}/{version}", "certificate-get", certificates.get),
    Route("PATCH", "/certificates/{name}/{version}", "certificate-update", certificates.update),
)

ROUTERS = {
    "managedhsm": Router(KEYS, ATTESTATION, DELETED_KEYS, RANDOM, RBAC, SETTINGS),
    "vault": Router(KEYS, DELETED_KEYS, RANDOM, CERTIFICATES),
}
"""The routes of each kind of service: Managed HSM key attestation, local RBAC and settings, Key Vault
certificates."""


def find(service: Service, req: Request) -> Route:
    """The route of a data-plane request, its path parameters set on ``req``; ApiError 404/405 else."""
    try:
        route, req.params = ROUTERS[service.kind].match(req.method, req.path)
    except NoRoute as missing:
        raise missing.api_error() from None
    return route


def dispatch(service: Service, req: Request) -> Response:
    """Answer a data-plane request: find its route, check the caller's role on a Managed HSM (or its roles
    or access policy on a vault), run it."""
    route = find(service, req)
    if service.kind == "managedhsm":
        action = route.action or roles.OPERATION_ACTIONS[route.operation]
        service.rbac.require(req, action, route.scope(req))
    elif service.guard is not None:
        service.guard(req, route.operation)
    response = route.handler(service, req)
    if response.audit is not None:
        response.audit.setdefault("operation", route.operation)
    return response


# --- the login and control endpoints (their handlers take the emulator) ------------------------------------

LOGIN = (
    Route(
        "GET", "/{tenant}/v2.0/.well-known/openid-configuration", "openid-configuration", login.configuration
    ),
    Route("POST", "/{tenant}/oauth2/v2.0/token", "token", login.token),
)

CONTROL = (
    Route("*", "/msi/token", "msi-token", controlplane.msi_token),
    Route("*", "/control/status", "status", controlplane.status),
    Route("POST", "/control/services", "services", controlplane.add_service),
    Route("PUT", "/control/faults", "faults", controlplane.set_faults),
    Route("PUT", "/control/tokens", "tokens", controlplane.set_tokens),
    Route("PUT", "/control/arm", "arm", controlplane.set_arm),
    Route("GET", "/control/vms", "vm-list", controlplane.list_machines),
    Route("POST", "/control/vms", "vm-add", controlplane.add_machine),
    Route("POST", "/control/vms/remove", "vm-remove", controlplane.remove_machine),
    Route("POST", "/control/stop", "stop", controlplane.stop),
)

IMDS = (
    Route("GET", "/metadata/instance", "imds-instance", imds.instance),
    Route("GET", "/metadata/instance/compute", "imds-compute", imds.instance_compute),
    Route("GET", "/metadata/identity/oauth2/token", "imds-token", imds.token),
)

LOGIN_ROUTER = Router(LOGIN)
IMDS_ROUTER = Router(IMDS)
CONTROL_ROUTER = Router(CONTROL)


# --- Resource Manager (its handlers take the emulator) ------------------------------------------------------


@dataclass(frozen=True)
class ArmRoute(Route):
    """A Resource Manager route: its resource provider (which api-versions it answers) and, when ``action``
    is set, the permission the caller needs at ``scope(req)`` (list routes leave ``action`` None and show
    what the caller may read)."""

    provider: str = "subscriptions"


def _arm_routes() -> tuple[ArmRoute, ...]:
    sub = "/subscriptions/{subscription}"
    group = sub + "/resourceGroups/{group}"
    found: list[ArmRoute] = [
        ArmRoute("GET", "/subscriptions", "arm-subscriptions", arm.list_subscriptions),
        ArmRoute("GET", sub, "arm-subscription", arm.get_subscription),
    ]
    for spec in arm_compute.KINDS.values():
        kind = spec.provider.split(".", 1)[1].lower()
        one = f"{group}/providers/{spec.resource_type}/{{name}}"
        scope = partial(arm_compute.machine_scope, spec=spec)
        lister = partial(arm_compute.list_machines, spec=spec)
        found += [
            ArmRoute(
                "GET",
                f"{where}/providers/{spec.resource_type}",
                f"arm-{spec.kind}-list",
                lister,
                provider=kind,
            )
            for where in (sub, group)
        ]
        found += [
            ArmRoute(
                method,
                one,
                f"arm-{spec.kind}-{operation}",
                partial(handler, spec=spec),
                f"{spec.resource_type}/{action}",
                scope,
                provider=kind,
            )
            for method, operation, handler, action in (
                ("GET", "get", arm_compute.get_machine, "read"),
                ("PATCH", "update", arm_compute.update_machine, "write"),
                ("PUT", "update", arm_compute.update_machine, "write"),
            )
        ]
    found += [
        ArmRoute(
            "GET", f"{sub}/resourcegroups", "arm-group-list", arm_resources.list_groups, provider="resources"
        ),
        ArmRoute(
            "GET",
            group,
            "arm-group-get",
            arm_resources.get_group,
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            arm_resources.group_scope,
            provider="resources",
        ),
        *(
            ArmRoute(
                "GET",
                f"{where}/resources",
                "arm-resource-list",
                arm_resources.list_resources,
                provider="resources",
            )
            for where in (sub, group)
        ),
    ]
    identities = "providers/Microsoft.ManagedIdentity/userAssignedIdentities"
    found += [
        ArmRoute(
            "GET",
            f"{sub}/{identities}",
            "arm-identity-list",
            arm_compute.list_identities,
            provider="managedidentity",
        ),
        ArmRoute(
            "GET",
            f"{group}/{identities}",
            "arm-identity-list",
            arm_compute.list_identities,
            provider="managedidentity",
        ),
        ArmRoute(
            "GET",
            f"{group}/{identities}/{{name}}",
            "arm-identity-get",
            arm_compute.get_identity,
            "Microsoft.ManagedIdentity/userAssignedIdentities/read",
            arm_compute.identity_scope,
            provider="managedidentity",
        ),
    ]
    for kind, kind_type in arm_keyvault.TYPES.items():
        lister = partial(arm_keyvault.list_services, kind=kind)
        found += [
            ArmRoute(
                "GET",
                f"{where}/providers/Microsoft.KeyVault/{kind_type}",
                f"arm-{kind}-list",
                lister,
                provider="keyvault",
            )
            for where in (sub, group)
        ]
        found.append(
            ArmRoute(
                "GET",
                f"{group}/providers/Microsoft.KeyVault/{kind_type}/{{name}}",
                f"arm-{kind}-get",
                partial(arm_keyvault.get_service, kind=kind),
                f"Microsoft.KeyVault/{kind_type}/read",
                partial(arm_keyvault.service_scope, kind=kind),
                provider="keyvault",
            )
        )
    vault = f"{group}/providers/Microsoft.KeyVault/vaults/{{name}}"
    vault_scope = partial(arm_keyvault.service_scope, kind="vault")
    found += [
        *(
            ArmRoute(
                method,
                vault,
                "arm-vault-update",
                arm_keyvault.update_vault,
                "Microsoft.KeyVault/vaults/write",
                vault_scope,
                provider="keyvault",
            )
            for method in ("PATCH", "PUT")
        ),
        ArmRoute(
            "PUT",
            vault + "/accessPolicies/{operation}",
            "arm-vault-accesspolicy",
            arm_keyvault.update_access_policy,
            "Microsoft.KeyVault/vaults/accessPolicies/write",
            vault_scope,
            provider="keyvault",
        ),
    ]
    definitions = "{scope*}/providers/Microsoft.Authorization/roleDefinitions"
    assignments = "{scope*}/providers/Microsoft.Authorization/roleAssignments"
    found += [
        ArmRoute(method, pattern, operation, handler, provider="authorization")
        for method, pattern, operation, handler in (
            ("GET", definitions, "arm-roledefinition-list", arm_authorization.list_definitions),
            ("GET", definitions + "/{ident}", "arm-roledefinition-get", arm_authorization.get_definition),
            ("PUT", definitions + "/{ident}", "arm-roledefinition-set", arm_authorization.set_definition),
            (
                "DELETE",
                definitions + "/{ident}",
                "arm-roledefinition-delete",
                arm_authorization.delete_definition,
            ),
            ("GET", assignments, "arm-roleassignment-list", arm_authorization.list_assignments),
            ("GET", assignments + "/{ident}", "arm-roleassignment-get", arm_authorization.get_assignment),
            (
                "PUT",
                assignments + "/{ident}",
                "arm-roleassignment-create",
                arm_authorization.create_assignment,
            ),
            (
                "DELETE",
                assignments + "/{ident}",
                "arm-roleassignment-delete",
                arm_authorization.delete_assignment,
            ),
        )
    ]
    return tuple(found)


ARM = _arm_routes()
ARM_ROUTER = Router(ARM)


def dispatch_arm(emulator: Emulator, req: Request) -> Response:
    """Answer a Resource Manager request: its route, api-version, subscription, the caller's permission."""
    try:
        route, req.params = ARM_ROUTER.match(req.method, req.path)
    except NoRoute as missing:
        raise arm.arm_error(
            missing.status,
            "NoRegisteredProviderFound" if missing.status == 404 else "MethodNotAllowed",
            missing.message + " The emulator serves a subset of Azure Resource Manager (docs/emulator.md).",
        ) from None
    assert isinstance(route, ArmRoute)
    arm.check_api_version(req, route.provider)
    if req.params.get("subscription"):
        emulator.arm.check_subscription(req.params["subscription"])
    if req.body.strip():
        try:
            req.json()
        except ApiError as exc:
            raise arm.arm_error(
                400,
                "InvalidRequestContent",
                f"The request content was invalid and could not be deserialized: {exc.message}",
            ) from None
    if route.action is not None:
        emulator.arm_roles.require(req, route.action, route.scope(req))
    return route.handler(emulator, req)

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

from hsmcert.azure import roles
from hsmcert.emulator import attestation, certificates, controlplane, keys, login, rbac, settings
from hsmcert.emulator.api import ApiError, Handler, Request, Response
from hsmcert.emulator.service import Service


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
    """Answer a data-plane request: find its route, check the caller's role on a Managed HSM, run it."""
    route = find(service, req)
    if service.kind == "managedhsm":
        action = route.action or roles.OPERATION_ACTIONS[route.operation]
        service.rbac.require(req, action, route.scope(req))
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
    Route("POST", "/control/stop", "stop", controlplane.stop),
)

LOGIN_ROUTER = Router(LOGIN)
CONTROL_ROUTER = Router(CONTROL)

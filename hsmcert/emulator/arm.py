"""The emulator's Azure Resource Manager subset: its state, what every Resource Manager request shares
(api-version, resource ids, errors in ARM's shape, the caller's control-plane permission), and subscriptions.

One subscription (:data:`DEFAULT_SUBSCRIPTION`, or the one ``emulator start --subscription`` gives a new data
directory) in the emulator's tenant holds:

- the emulator's vaults and Managed HSMs, in the resource group :data:`SERVICE_GROUP`
  (:mod:`.arm_keyvault`);
- virtual machines, scale sets and Arc machines with their managed identities, and user-assigned identities
  (:mod:`.arm_compute`; made by ``hsmcert emulator vm add``);
- role definitions and role assignments (:mod:`.arm_authorization`), which decide what a principal may do
  through Resource Manager and in a vault that uses Azure RBAC.

The handlers of each module answer one route of :data:`hsmcert.emulator.routes.ARM`; they take the emulator.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from hsmcert.emulator import auth
from hsmcert.emulator.api import ApiError, Request, Response

if TYPE_CHECKING:
    from hsmcert.emulator.process import Emulator
    from hsmcert.emulator.store import Store

DEFAULT_SUBSCRIPTION = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://hsmcert.invalid/emulator/subscription"))
SERVICE_GROUP = "hsmcert-emulator"
"""The resource group of the emulator's vaults and Managed HSMs (and of machines added without --group)."""
LOCATION = "westeurope"
AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")
"""The audiences Resource Manager accepts (each with or without a trailing slash)."""
MAX_MACHINES = 500
MAX_ASSIGNMENTS = 4000
"""Azure's limit of role assignments per subscription."""

API_VERSIONS: dict[str, tuple[str, ...]] = {
    "subscriptions": ("2016-06-01", "2019-06-01", "2019-11-01", "2020-01-01", "2021-01-01", "2022-12-01"),
    "resources": (
        "2019-10-01",
        "2020-06-01",
        "2021-04-01",
        "2022-09-01",
        "2023-07-01",
        "2024-03-01",
        "2024-11-01",
    ),
    "compute": (
        "2021-03-01",
        "2021-04-01",
        "2021-07-01",
        "2021-11-01",
        "2022-03-01",
        "2022-08-01",
        "2022-11-01",
        "2023-03-01",
        "2023-07-01",
        "2023-09-01",
        "2024-03-01",
        "2024-07-01",
        "2024-11-01",
    ),
    "hybridcompute": (
        "2022-03-10",
        "2022-11-10",
        "2022-12-27",
        "2023-10-03-preview",
        "2024-03-31-preview",
        "2024-05-20-preview",
        "2024-07-10",
    ),
    "managedidentity": (
        "2018-11-30",
        "2021-09-30-preview",
        "2022-01-31-preview",
        "2023-01-31",
        "2023-07-31-preview",
        "2024-11-30",
    ),
    "keyvault": ("2019-09-01", "2021-10-01", "2022-07-01", "2023-02-01", "2023-07-01", "2024-11-01"),
    "authorization": (
        "2015-07-01",
        "2018-01-01-preview",
        "2018-09-01-preview",
        "2020-04-01-preview",
        "2020-08-01-preview",
        "2020-10-01-preview",
        "2022-04-01",
        "2022-05-01-preview",
    ),
}
"""The api-versions each resource provider answers (Azure's published versions of these APIs)."""

_GUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_GROUP = re.compile(r"[-\w.()]{0,89}[-\w()]")
_RESOURCE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9_])?")


def arm_error(status: int, code: str, message: str) -> ApiError:
    """An error in Resource Manager's shape: ``{"error": {"code", "message"}}``."""
    return ApiError(status, code, message)


def check_api_version(req: Request, provider: str) -> str:
    """The request's api-version, one that ``provider`` answers (ARM's 400 error else)."""
    given = req.query.get("api-version")
    if not given:
        raise arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    versions = API_VERSIONS[provider]
    if given not in versions:
        raise arm_error(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{given[:40]}' is invalid. The supported versions are '{','.join(versions)}'.",
        )
    return given


def check_group(name: str) -> str:
    name = unquote(name)
    if not _GROUP.fullmatch(name):
        raise arm_error(
            400,
            "InvalidResourceGroupName",
            f"Resource group name '{name[:90]}' is invalid: use 1-90 letters, digits, '_', '-', '.', '(' "
            "and ')', not ending in '.'.",
        )
    return name


def check_resource_name(name: str, what: str = "resource") -> str:
    name = unquote(name)
    if not _RESOURCE.fullmatch(name):
        raise arm_error(
            400,
            "InvalidResourceName",
            f"The {what} name '{name[:80]}' is invalid: use 1-64 letters, digits, '.', '-' and '_', "
            "starting with a letter or digit, not ending in '.' or '-'.",
        )
    return name


MAX_DELAY = 3600.0


def check_subscription_id(value: str) -> str:
    """A subscription id as Azure writes them: a GUID (UsageError else)."""
    from hsmcert.errors import UsageError

    if not is_guid(value):
        raise UsageError(f"--subscription {value[:60]!r} is not a subscription id (a GUID).", None)
    return value.lower()


def check_delay(seconds: float) -> float:
    """A role-assignment propagation delay: 0 to an hour (UsageError else)."""
    from hsmcert.errors import UsageError

    if not 0 <= seconds <= MAX_DELAY or seconds != seconds:
        raise UsageError(f"The propagation delay must be from 0 to 3600 seconds; {seconds:g} is not.", None)
    return float(seconds)


def is_guid(value: str) -> bool:
    return bool(_GUID.fullmatch(value))


def resource_id(subscription: str, group: str, provider: str, kind: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{provider}/{kind}/{name}"


def same_id(one: str, other: str) -> bool:
    """Resource ids compare without regard to case (as Resource Manager does)."""
    return one.rstrip("/").lower() == other.rstrip("/").lower()


def covers(scope: str, target: str) -> bool:
    """Whether an assignment at ``scope`` covers ``target`` (the same scope or one below it)."""
    scope, target = scope.rstrip("/").lower(), target.rstrip("/").lower()
    return scope == "" or target == scope or target.startswith(scope + "/")


def value_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A Resource Manager list: every item in ``value`` (the emulator's lists fit in one page)."""
    return {"value": items}


class Arm:
    """The Resource Manager state of one emulator: subscription, machines, identities, roles, vault settings."""

    def __init__(self, store: Store, subscription: str = DEFAULT_SUBSCRIPTION) -> None:
        self.store = store
        self.subscription = subscription
        self.machines: dict[str, dict[str, Any]] = {}
        """Lower-case resource id -> a VM, scale set or Arc machine (see :mod:`.arm_compute`)."""
        self.identities: dict[str, dict[str, Any]] = {}
        """Lower-case resource id -> a user-assigned identity."""
        self.assignments: dict[str, dict[str, Any]] = {}
        """Assignment name (a GUID) -> its Resource Manager representation, plus ``effective`` (epoch)."""
        self.definitions: dict[str, dict[str, Any]] = {}
        """Custom role definitions by GUID."""
        self.vaults: dict[str, dict[str, Any]] = {}
        """Vault name -> its Resource Manager settings (``enableRbacAuthorization``, ``accessPolicies``)."""
        self.propagation_delay = 0.0
        """Seconds before a new role assignment takes effect (Azure's propagation, simulated)."""
        self.self_machine: str | None = None
        """The lower-case resource id of the machine the instance metadata service describes."""
        self.lock = threading.RLock()

    # --- persistence ------------------------------------------------------------------------------------

    KINDS = ("armconfig", "armmachine", "armidentity", "armassign", "armroledef", "armvault")

    def load(self, kind: str, ident: str, data: Any) -> None:
        if kind == "armconfig":
            if ident == "subscription":
                self.subscription = str(data)
            elif ident == "self":
                self.self_machine = str(data) if data else None
            elif ident == "propagation":
                self.propagation_delay = float(data)
            return
        table = {
            "armmachine": self.machines,
            "armidentity": self.identities,
            "armassign": self.assignments,
            "armroledef": self.definitions,
            "armvault": self.vaults,
        }[kind]
        table[ident] = data

    def put(self, kind: str, ident: str, data: Any) -> None:
        self.store.put("", kind, ident, data)

    def delete(self, kind: str, ident: str) -> None:
        self.store.delete("", kind, ident)

    def set_config(self, name: str, value: Any) -> None:
        self.put("armconfig", name, value)

    @property
    def subscription_id(self) -> str:
        return f"/subscriptions/{self.subscription}"

    def check_subscription(self, given: str) -> None:
        if given.lower() != self.subscription.lower():
            raise arm_error(
                404, "SubscriptionNotFound", f"The subscription '{given[:60]}' could not be found."
            )

    def group_id(self, group: str) -> str:
        return f"{self.subscription_id}/resourceGroups/{group}"

    def new_principal(self) -> str:
        return str(uuid.uuid4())


def caller_denied(req: Request, action: str, scope: str) -> ApiError:
    """Resource Manager's 403 for a caller without ``action`` at ``scope``."""
    return arm_error(
        403,
        "AuthorizationFailed",
        f"The client '{req.principal}' with object id '{req.principal}' does not have authorization to "
        f"perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently "
        "granted, please refresh your credentials.",
    )


# --- handlers: subscriptions ------------------------------------------------------------------------------


def _subscription(emulator: Emulator) -> dict[str, Any]:
    arm = emulator.arm
    return {
        "id": arm.subscription_id,
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": arm.subscription,
        "tenantId": auth.TENANT_ID,
        "displayName": "hsmcert emulator",
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    }


def list_subscriptions(emulator: Emulator, req: Request) -> Response:
    """The subscription, when the caller holds any role in it (Azure lists only those)."""
    check_api_version(req, "subscriptions")
    visible = emulator.arm_roles.has_any_role(req.principal, emulator.arm.subscription_id)
    items = [_subscription(emulator)] if visible else []
    return Response(200, {"value": items, "count": {"type": "Total", "value": len(items)}})


def get_subscription(emulator: Emulator, req: Request) -> Response:
    check_api_version(req, "subscriptions")
    emulator.arm.check_subscription(req.params["subscription"])
    if not emulator.arm_roles.has_any_role(req.principal, emulator.arm.subscription_id):
        raise arm_error(
            404,
            "SubscriptionNotFound",
            f"The subscription '{req.params['subscription'][:60]}' could not be found.",
        )
    return Response(200, _subscription(emulator))

"""Give an identity (a VM's managed identity, a service principal) exactly the access it needs to HSM keys.

Managed HSM keeps its own role assignments (local RBAC); hsmcert makes them through
azure-keyvault-administration. Two modes:

- permissive: the built-in role (Managed HSM Crypto User by default) at ``/keys/<key>``, or ``/keys``;
- granular: a custom role "hsmcert Key Signer" with only ``keys/read/action`` and ``keys/sign/action``,
  created once per HSM and assigned at ``/keys/<key>``: the identity can read that key's public part and
  sign with it, nothing else.

:func:`plan_grant` computes what to do, :func:`az_commands` prints it as Azure CLI commands (``--dry-run``),
:func:`apply_grant` does it and skips what already exists.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hsmcert import syntax
from hsmcert.azure import roles
from hsmcert.errors import HsmcertError, NotFoundError, PermissionDeniedError, UnreachableError, UsageError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

ARM_URL = "https://management.azure.com"
_VM_API = "2024-07-01"
_ARC_API = "2024-07-10"

# Azure's naming rules for the resources a grant names (Microsoft.Resources, .Compute, .HybridCompute).
_RESOURCE_GROUP = re.compile(r"[-\w.()]{0,89}[-\w()]")
_VM = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9_])?")
_ARC = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,52}[A-Za-z0-9_-])?")
_NAME_RULES = {
    "vm": (
        _VM,
        "--vm",
        "1-64 letters, digits, '.', '-' and '_', starting with a letter or digit, not ending in '.' or '-'",
    ),
    "arc": (
        _ARC,
        "--arc",
        "1-54 letters, digits, '.', '-' and '_', starting with a letter or digit, not ending in '.'",
    ),
}


def _check_name(pattern: re.Pattern[str], value: str, option: str, rule: str) -> str:
    if not pattern.fullmatch(value) or not value.isprintable():
        raise UsageError(f"{option} {value[:80]!r} is not a valid Azure name.", f"Azure allows {rule}.")
    return value


def check_guid(value: str, what: str, remedy: str) -> str:
    """A GUID exactly as Azure writes it (8-4-4-4-12 hexadecimal digits; no braces, no ``urn:uuid:``)."""
    if not re.fullmatch(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", value):
        raise UsageError(f"{value[:80]!r} is not {what} (a GUID).", remedy)
    return value


def check_subscription(value: str) -> str:
    return check_guid(
        value, "a subscription id", "Give the subscription's GUID (az account show --query id -o tsv)."
    )


def check_resource_group(value: str) -> str:
    return _check_name(
        _RESOURCE_GROUP,
        value,
        "--resource-group",
        "1-90 letters, digits, '_', '-', '.', '(' and ')', not ending in '.'",
    )


def arm_request_url(base: str, segments: list[str], api_version: str) -> str:
    """A Resource Manager URL: each path segment percent-encoded, then the one ``api-version``.

    >>> arm_request_url("https://arm", ["subscriptions", "s", "resourceGroups", "a/../b?x#"], "1")
    'https://arm/subscriptions/s/resourceGroups/a%2F..%2Fb%3Fx%23?api-version=1'
    """
    path = "/".join(syntax.url_segment(segment) for segment in segments)
    return f"{base.rstrip('/')}/{path}?api-version={syntax.url_segment(api_version)}"


@dataclass(frozen=True)
class Machine:
    """A machine whose system-assigned identity should get access; every name is checked on creation."""

    kind: str  # "vm" (Microsoft.Compute) or "arc" (Microsoft.HybridCompute)
    name: str
    resource_group: str
    subscription: str

    def __post_init__(self) -> None:
        if self.kind not in _NAME_RULES:
            raise UsageError(f"Unknown machine kind {self.kind!r}.", "Use vm or arc.")
        pattern, option, rule = _NAME_RULES[self.kind]
        _check_name(pattern, self.name, option, rule)
        check_resource_group(self.resource_group)
        check_subscription(self.subscription)

    @property
    def segments(self) -> list[str]:
        """The resource id's path segments, unencoded."""
        provider, kind = (
            ("Microsoft.Compute", "virtualMachines")
            if self.kind == "vm"
            else ("Microsoft.HybridCompute", "machines")
        )
        return [
            "subscriptions", self.subscription, "resourceGroups", self.resource_group,
            "providers", provider, kind, self.name,
        ]  # fmt: skip

    @property
    def resource_id(self) -> str:
        return "/" + "/".join(self.segments)

    def az_principal_query(self) -> str:
        if self.kind == "vm":
            cmd = ["az", "vm", "show", "-g", self.resource_group, "-n", self.name]
        else:
            cmd = ["az", "connectedmachine", "show", "-g", self.resource_group, "-n", self.name]
        cmd += ["--subscription", self.subscription, "--query", "identity.principalId", "-o", "tsv"]
        return shlex.join(cmd)


@dataclass(frozen=True)
class Assignment:
    scope: str
    role_name: str
    role_id: str | None  # None: the custom role, whose id is known once it exists


@dataclass
class GrantPlan:
    hsm: str
    principal_id: str | None  # None in a dry run for a machine that was not looked up
    machine: Machine | None
    assignments: list[Assignment]
    custom_role: bool = False
    done: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "hsm": self.hsm,
            "principal_id": self.principal_id,
            "machine": self.machine.resource_id if self.machine else None,
            "custom_role": roles.SIGNER_ROLE_NAME if self.custom_role else None,
            "assignments": [{"scope": a.scope, "role": a.role_name} for a in self.assignments],
            "done": self.done,
        }


def plan_grant(
    hsm: str,
    *,
    principal_id: str | None,
    machine: Machine | None = None,
    key: str | None = None,
    scope: str | None = None,
    role: str = "crypto-user",
    granular: bool = False,
) -> GrantPlan:
    """Work out the role assignments that give the identity access (no network).

    Every name is checked here: the HSM name becomes a host name, the key name part of a scope in a URL.
    """
    from hsmcert.keyref import check_key_name, check_service_name

    check_service_name(hsm)
    if key is not None:
        check_key_name(key)
    if principal_id is not None:
        check_guid(principal_id, "an object id", "Give the identity's object id, e.g. from az ad sp show.")
    if key and scope:
        raise UsageError("--key and --scope both name a scope; give one.")
    if scope is not None and scope not in ("/", "/keys"):
        if not scope.startswith("/keys/"):
            raise UsageError(f"{scope[:80]!r} is not a Managed HSM scope.", "Use /, /keys or /keys/<name>.")
        check_key_name(scope.removeprefix("/keys/"))
    target = scope or roles.key_scope(key)
    if granular:
        if not key:
            raise UsageError("--granular needs --key: the custom role is assigned for one key.")
        return GrantPlan(hsm, principal_id, machine, [Assignment(target, roles.SIGNER_ROLE_NAME, None)], True)
    found = roles.role_by_slug(role)
    if found is None:
        slugs = ", ".join(r.slug for r in roles.BUILTIN_ROLES)
        raise UsageError(f"Unknown role {role!r}.", f"Use one of: {slugs} (or the Azure role name).")
    return GrantPlan(hsm, principal_id, machine, [Assignment(target, found.name, found.id)])


def az_commands(plan: GrantPlan) -> list[str]:
    """The Azure CLI commands that do what :func:`apply_grant` would do."""
    commands: list[str] = []
    if plan.principal_id:
        assignee = shlex.quote(plan.principal_id)
    elif plan.machine:
        assignee = f'"$({plan.machine.az_principal_query()})"'
    else:
        raise UsageError("Name the identity: --principal OBJECT_ID or --vm NAME.")
    if plan.custom_role:
        definition = {
            "roleName": roles.SIGNER_ROLE_NAME,
            "description": roles.SIGNER_ROLE_DESCRIPTION,
            "actions": [],
            "dataActions": list(roles.SIGNER_ROLE_ACTIONS),
        }
        commands.append(
            shlex.join(
                [
                    "az", "keyvault", "role", "definition", "create", "--hsm-name", plan.hsm,
                    "--role-definition", json.dumps(definition, separators=(",", ":")),
                ]
            )
        )  # fmt: skip
    for a in plan.assignments:
        commands.append(
            f"az keyvault role assignment create --hsm-name {shlex.quote(plan.hsm)} --role {shlex.quote(a.role_name)}"
            f" --scope {shlex.quote(a.scope)} --assignee-object-id {assignee} --assignee-principal-type ServicePrincipal"
        )
    return commands


def machine_principal_id(machine: Machine, credential: TokenCredential, arm_url: str | None = None) -> str:
    """Look up the object id of a machine's system-assigned identity through Azure Resource Manager
    (``arm_url``, default the public cloud's; a :class:`~hsmcert.session.Session` passes ``HSMCERT_ARM_URL``)."""
    from azure.core import PipelineClient
    from azure.core.exceptions import AzureError, HttpResponseError
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
    from azure.core.rest import HttpRequest

    base = (arm_url or ARM_URL).rstrip("/")
    api = _VM_API if machine.kind == "vm" else _ARC_API
    policy = BearerTokenCredentialPolicy(credential, f"{ARM_URL}/.default")
    client: PipelineClient[Any, Any] = PipelineClient(base_url=base, policies=[RetryPolicy(), policy])
    try:
        response = client.send_request(HttpRequest("GET", arm_request_url(base, machine.segments, api)))
        if response.status_code == 404:
            raise NotFoundError(
                f"{machine.kind} {machine.name!r} not found in resource group {machine.resource_group}.",
                "Check the machine's name, -g and --subscription (az resource list -n NAME shows where it is).",
            )
        response.raise_for_status()
        body = response.json()
    except HttpResponseError as exc:
        if exc.status_code in (401, 403):
            raise PermissionDeniedError(
                f"Azure Resource Manager refused the look-up of {machine.name} ({exc.status_code}).",
                f"Reading the machine needs the Reader role on {machine.resource_id}, or pass the "
                f"identity's object id with --principal ({machine.az_principal_query()} prints it).",
            ) from exc
        raise HsmcertError(
            f"Azure Resource Manager could not look up {machine.name}: {exc.message}",
            f"Try again, or pass the identity's object id with --principal ({machine.az_principal_query()}).",
        ) from exc
    except AzureError as exc:
        raise UnreachableError(
            f"Cannot reach Azure Resource Manager at {base}: {exc}",
            "Check the network (and HSMCERT_ARM_URL if set), or pass the identity's object id with --principal.",
        ) from exc
    principal = (body.get("identity") or {}).get("principalId")
    if not principal:
        enable = (
            f"Enable it: az vm identity assign -g {machine.resource_group} -n {machine.name}"
            if machine.kind == "vm"
            else "An Arc-enabled server gets its identity when it connects: run azcmagent connect on it."
        )
        raise HsmcertError(f"{machine.name} has no system-assigned managed identity.", enable)
    return str(principal)


def apply_grant(plan: GrantPlan, client: Any) -> GrantPlan:
    """Create the custom role (once) and the role assignments, skipping those that already exist.

    ``client`` is an ``azure.keyvault.administration.KeyVaultAccessControlClient`` for the HSM.
    """
    from azure.keyvault.administration import KeyVaultDataAction, KeyVaultPermission, KeyVaultRoleScope

    if plan.principal_id is None:
        raise UsageError("The identity's object id is unknown.")
    custom_id: str | None = None
    if plan.custom_role:
        for definition in client.list_role_definitions(KeyVaultRoleScope.GLOBAL):
            if definition.role_name == roles.SIGNER_ROLE_NAME:
                custom_id = definition.id
                break
        if custom_id is None:
            created = client.set_role_definition(
                KeyVaultRoleScope.GLOBAL,
                role_name=roles.SIGNER_ROLE_NAME,
                description=roles.SIGNER_ROLE_DESCRIPTION,
                permissions=[
                    KeyVaultPermission(
                        data_actions=[KeyVaultDataAction(a) for a in roles.SIGNER_ROLE_ACTIONS]
                    )
                ],
            )
            custom_id = created.id
            plan.done.append({"action": "created role", "role": roles.SIGNER_ROLE_NAME})
    for a in plan.assignments:
        definition_id = custom_id if a.role_id is None else roles.role_by_slug(a.role_id).definition_id  # type: ignore[union-attr]
        existing = [
            x
            for x in client.list_role_assignments(a.scope)
            if x.properties.principal_id == plan.principal_id
            and x.properties.scope == a.scope
            and str(x.properties.role_definition_id)
            .lower()
            .endswith(str(definition_id).rsplit("/", 1)[-1].lower())
        ]
        if existing:
            plan.done.append({"action": "already assigned", "scope": a.scope, "role": a.role_name})
            continue
        client.create_role_assignment(a.scope, definition_id, plan.principal_id)
        plan.done.append({"action": "assigned", "scope": a.scope, "role": a.role_name})
    return plan

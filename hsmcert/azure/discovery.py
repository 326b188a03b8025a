"""Finding what ``hsmcert grant --vm myvm`` needs: the subscription, the machine, its managed identity.

- Subscription: ``--subscription``, else ``AZURE_SUBSCRIPTION_ID``, else the Azure CLI's default account
  (``isDefault`` in ``azureProfile.json`` under ``AZURE_CONFIG_DIR`` or ``~/.azure``; not read when hsmcert
  works against the emulator, whose subscriptions are not Azure's), else the only subscription the caller can
  see. Several: a :class:`~hsmcert.errors.UsageError` listing them (exit 2).
- Machine: a VM, a scale set or an Arc machine of that name, searched across the subscription (or in ``-g``).
  Two or more: a UsageError listing them and the flag that picks one; none: a NotFoundError (exit 3) naming
  where hsmcert looked. ``--vm self``: the instance metadata service of the machine hsmcert runs on
  (``HSMCERT_IMDS_URL`` instead of ``http://169.254.169.254``).
- Identity: the system-assigned one, or the user-assigned one ``--identity NAME`` picks; a machine without one
  gets the exact command that enables it (or ``--enable-identity`` enables it through Resource Manager).

Every name is checked against Azure's rules before any request (:class:`Machine` checks on creation).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsmcert.azure.arm import ARC_API, COMPUTE_API, SUBSCRIPTIONS_API, id_segments
from hsmcert.errors import EXIT_NO_IDENTITY, HsmcertError, NotFoundError, UsageError

if TYPE_CHECKING:
    from hsmcert.azure.arm import Arm


# Azure's naming rules for the resources a grant names (Microsoft.Resources, .Compute, .HybridCompute,
# .ManagedIdentity).
_RESOURCE_GROUP = re.compile(r"[-\w.()]{0,89}[-\w()]")
_VM = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9_])?")
_ARC = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,52}[A-Za-z0-9_-])?")
_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,127}")


@dataclass(frozen=True)
class Kind:
    """A kind of machine: its option, provider, resource type, api-version and the words for it."""

    option: str
    provider: str
    type: str
    api: str
    label: str
    pattern: re.Pattern[str]
    rule: str
    az: tuple[str, ...]


KINDS: dict[str, Kind] = {
    "vm": Kind(
        "--vm", "Microsoft.Compute", "virtualMachines", COMPUTE_API, "VM", _VM,
        "1-64 letters, digits, '.', '-' and '_', starting with a letter or digit, not ending in '.' or '-'",
        ("az", "vm"),
    ),
    "vmss": Kind(
        "--vmss", "Microsoft.Compute", "virtualMachineScaleSets", COMPUTE_API, "scale set", _VM,
        "1-64 letters, digits, '.', '-' and '_', starting with a letter or digit, not ending in '.' or '-'",
        ("az", "vmss"),
    ),
    "arc": Kind(
        "--arc", "Microsoft.HybridCompute", "machines", ARC_API, "Arc machine", _ARC,
        "1-54 letters, digits, '.', '-' and '_', starting with a letter or digit, not ending in '.'",
        ("az", "connectedmachine"),
    ),
}  # fmt: skip


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


def check_machine_name(kind: str, value: str) -> str:
    found = KINDS.get(kind)
    if found is None:
        raise UsageError(f"Unknown machine kind {kind!r}.", "Use vm, vmss or arc.")
    return _check_name(found.pattern, value, found.option, found.rule)


def check_identity_name(value: str) -> str:
    return _check_name(
        _IDENTITY, value, "--identity", "3-128 letters, digits, '-' and '_', starting with a letter or digit"
    )


@dataclass(frozen=True)
class Machine:
    """A machine whose managed identity should get access; every name is checked on creation."""

    kind: str  # a key of KINDS: "vm", "vmss" (Microsoft.Compute) or "arc" (Microsoft.HybridCompute)
    name: str
    resource_group: str
    subscription: str

    def __post_init__(self) -> None:
        check_machine_name(self.kind, self.name)
        check_resource_group(self.resource_group)
        check_subscription(self.subscription)

    @property
    def spec(self) -> Kind:
        return KINDS[self.kind]

    @property
    def segments(self) -> list[str]:
        """The resource id's path segments, unencoded."""
        spec = self.spec
        return [
            "subscriptions", self.subscription, "resourceGroups", self.resource_group,
            "providers", spec.provider, spec.type, self.name,
        ]  # fmt: skip

    @property
    def resource_id(self) -> str:
        return "/" + "/".join(self.segments)

    def az_principal_query(self, identity: str | None = None) -> str:
        """The ``az`` command printing the object id of the machine's identity (``identity``: a
        user-assigned one by name)."""
        return principal_query(self.kind, self.name, self.resource_group, self.subscription, identity)

    def az_enable_identity(self, identity: str | None = None) -> str:
        """The ``az`` command that gives the machine a system-assigned (or the named user-assigned) identity."""
        if self.kind == "arc":
            return "azcmagent connect (on the machine; an Arc machine gets its identity when it connects)"
        command = [*self.spec.az, "identity", "assign", "-g", self.resource_group, "-n", self.name]
        if identity:
            command += ["--identities", identity]
        return shlex.join([*command, "--subscription", self.subscription])


def principal_query(
    kind: str, name: str, group: str | None, subscription: str | None, identity: str | None = None
) -> str:
    """The ``az`` command that prints the object id of a machine's identity; without ``group`` it finds the
    machine by name across the subscription (what ``--dry-run`` prints, since it looks nothing up)."""
    spec = KINDS[kind]
    sub = f" --subscription {shlex.quote(subscription)}" if subscription else ""
    # names are checked Azure names (letters, digits, . _ -): safe inside double quotes
    if identity:  # a user-assigned identity is a resource of its own (its group may be another)
        return f"az identity list{sub} --query \"[?name=='{identity}'].principalId | [0]\" -o tsv"
    query = "--query identity.principalId -o tsv"
    if group:
        return f"{shlex.join([*spec.az, 'show', '-g', group, '-n', name])}{sub} {query}"
    ids = f"{shlex.join([*spec.az, 'list'])}{sub} --query \"[?name=='{name}'].id\" -o tsv"
    return f'{shlex.join([*spec.az, "show", "--ids"])} "$({ids})" {query}'


@dataclass(frozen=True)
class Identity:
    """A managed identity: its object id, and which one of the machine's it is."""

    principal_id: str
    kind: str  # "system" or "user"
    resource_id: str | None = None  # a user-assigned identity's resource id
    client_id: str | None = None

    @property
    def name(self) -> str:
        return self.resource_id.rsplit("/", 1)[-1] if self.resource_id else "system-assigned"

    def to_json(self) -> dict[str, Any]:
        return {
            "principal_id": self.principal_id,
            "type": f"{self.kind}-assigned",
            "resource_id": self.resource_id,
            "client_id": self.client_id,
        }


@dataclass
class Found:
    """A machine found through Resource Manager, with the ARM resource as it was read."""

    machine: Machine
    resource: dict[str, Any] = field(repr=False)


# -- subscription -----------------------------------------------------------------------------------


def cli_default_subscription(environ: Mapping[str, str]) -> str | None:
    """The Azure CLI's default subscription (``isDefault`` in ``azureProfile.json``), if there is one."""
    home = environ.get("AZURE_CONFIG_DIR") or str(Path(environ.get("HOME") or Path.home()) / ".azure")
    try:
        profile = json.loads((Path(home) / "azureProfile.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    for entry in profile.get("subscriptions") or [] if isinstance(profile, dict) else []:
        if isinstance(entry, dict) and entry.get("isDefault") and isinstance(entry.get("id"), str):
            return str(entry["id"])
    return None


def resolve_subscription(
    arm: Arm | None, given: str | None, environ: Mapping[str, str], *, read_cli_profile: bool = True
) -> tuple[str, str]:
    """The subscription to search and where it came from (flag, environment, azure-cli, only-visible).

    ``arm`` None: no network (a dry run); the subscription is then only what is given or configured.
    """
    if given:
        return check_subscription(given), "--subscription"
    from_env = environ.get("AZURE_SUBSCRIPTION_ID")
    if from_env:
        return check_guid(
            from_env, "a subscription id (AZURE_SUBSCRIPTION_ID)", "Fix or unset AZURE_SUBSCRIPTION_ID."
        ), "AZURE_SUBSCRIPTION_ID"
    if read_cli_profile:
        default = cli_default_subscription(environ)
        if default:
            return check_guid(
                default, "a subscription id (the Azure CLI's default)", "Run az account set -s SUBSCRIPTION."
            ), "the Azure CLI's default account"
    if arm is None:
        raise UsageError("No subscription is known without asking Resource Manager.")
    visible = [
        s for s in arm.list(["subscriptions"], SUBSCRIPTIONS_API, what="subscriptions")
        if str(s.get("state") or "Enabled") == "Enabled"
    ]  # fmt: skip
    if not visible:
        raise NotFoundError(
            f"The caller sees no enabled subscription in Azure Resource Manager at {arm.base}.",
            "Sign in with an identity that has a role in the subscription, or give --subscription.",
        )
    if len(visible) > 1:
        listed = "; ".join(f"{s.get('subscriptionId')} ({s.get('displayName', '')})" for s in visible[:20])
        raise UsageError(
            f"The caller sees {len(visible)} subscriptions: {listed}.",
            "Pick one with --subscription ID (or AZURE_SUBSCRIPTION_ID, or az account set -s ID).",
        )
    return check_subscription(str(visible[0].get("subscriptionId"))), "the only subscription visible"


# -- machines ---------------------------------------------------------------------------------------

_UNSERVED = ("MissingSubscriptionRegistration", "NoRegisteredProviderFound", "InvalidResourceType")


def find_machines(arm: Arm, subscription: str, name: str, kinds: list[str], group: str | None) -> list[Found]:
    """The machines named ``name`` (case-insensitive, as Azure compares names) of ``kinds``, in ``group`` or
    anywhere in the subscription."""
    from hsmcert.errors import ServiceError

    found: list[Found] = []
    for kind in kinds:
        spec = KINDS[kind]
        if group is not None:
            machine = Machine(kind, name, group, subscription)
            resource = arm.find(machine.segments, spec.api, what=f"{spec.label} {name}")
            if resource is not None:
                found.append(Found(_from_resource(kind, resource, machine), resource))
                return found  # one GET is enough when the group is named
            continue
        segments = ["subscriptions", subscription, "providers", spec.provider, spec.type]
        try:
            for resource in arm.list(
                segments, spec.api, what=f"{spec.label}s of subscription {subscription}"
            ):
                if str(resource.get("name", "")).lower() == name.lower():
                    found.append(Found(_from_resource(kind, resource, None), resource))
        except NotFoundError:
            continue
        except ServiceError as exc:
            if exc.code in _UNSERVED:
                continue
            raise
    return found


def _from_resource(kind: str, resource: dict[str, Any], known: Machine | None) -> Machine:
    if known is not None:
        return known
    parts = id_segments(str(resource.get("id", "")))
    lowered = [p.lower() for p in parts]
    try:
        group = parts[lowered.index("resourcegroups") + 1]
        subscription = parts[lowered.index("subscriptions") + 1]
    except (ValueError, IndexError):
        raise HsmcertError(
            f"Azure Resource Manager returned a {KINDS[kind].label} without a usable id: {resource.get('id')!r}."
        ) from None
    return Machine(kind, str(resource.get("name")), group, subscription)


def locate_machine(
    arm: Arm, subscription: str, name: str, kinds: list[str], group: str | None, where: str
) -> Found:
    """The one machine named ``name``; ambiguity is a UsageError (exit 2) listing the candidates, none a
    NotFoundError (exit 3) naming where hsmcert looked (``where``: how the subscription was chosen)."""
    found = find_machines(arm, subscription, name, kinds, group)
    names = [KINDS[k].label for k in kinds]
    labels = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    if not found:
        scope = (
            f"resource group {group} of subscription {subscription}"
            if group
            else f"subscription {subscription}"
        )
        raise NotFoundError(
            f"No {labels} named {name!r} in {scope} ({where}), at {arm.base}.",
            "Check the name, or give -g GROUP and --subscription ID (az resource list -n NAME shows where it is).",
        )
    if len(found) > 1:
        listed = "; ".join(f.machine.resource_id for f in found[:20])
        pick = ["-g GROUP"]
        if len({f.machine.kind for f in found}) > 1:
            pick += sorted({KINDS[f.machine.kind].option + " NAME" for f in found})
        raise UsageError(
            f"{len(found)} machines are named {name!r}: {listed}.", f"Pick one with {' or '.join(pick)}."
        )
    return found[0]


def identity_of(found: Found, identity: str | None, *, enable: Callable[[], Found] | None = None) -> Identity:
    """The machine's system-assigned identity, or the user-assigned one named ``identity``.

    A machine without that identity is a :class:`~hsmcert.errors.HsmcertError` (exit
    :data:`EXIT_NO_IDENTITY`) whose remedy is the ``az`` command that gives it one, unless ``enable`` (the
    ``--enable-identity`` look-up) can give it.
    """
    machine, body = found.machine, found.resource.get("identity") or {}
    if identity is not None:
        users = body.get("userAssignedIdentities") or {}
        for resource_id, entry in users.items():
            if str(resource_id).rstrip("/").rsplit("/", 1)[-1].lower() == identity.lower():
                entry = entry or {}
                if entry.get("principalId"):
                    return Identity(
                        str(entry["principalId"]), "user", str(resource_id), entry.get("clientId")
                    )
        names = ", ".join(sorted(str(r).rsplit("/", 1)[-1] for r in users)) or "none"
        raise HsmcertError(
            f"{machine.spec.label} {machine.name} has no user-assigned identity {identity!r} (it has: {names}).",
            f"Assign it: {machine.az_enable_identity(identity)}",
            exit_code=EXIT_NO_IDENTITY,
        )
    principal = body.get("principalId")
    if principal:
        return Identity(str(principal), "system")
    if enable is not None and machine.kind != "arc":
        return identity_of(enable(), None)
    users = sorted(str(r).rsplit("/", 1)[-1] for r in body.get("userAssignedIdentities") or {})
    also = (
        f" It has user-assigned identities ({', '.join(users)}): pick one with --identity NAME."
        if users
        else ""
    )
    raise HsmcertError(
        f"{machine.spec.label} {machine.name} has no system-assigned managed identity.{also}",
        f"Enable it: {machine.az_enable_identity()}"
        + ("" if machine.kind == "arc" else "  (or add --enable-identity to let hsmcert do it)"),
        exit_code=EXIT_NO_IDENTITY,
    )


def enable_system_identity(arm: Arm, found: Found) -> Found:
    """Give the machine a system-assigned identity through Resource Manager (PATCH, keeping its
    user-assigned identities) and read it back."""
    machine = found.machine
    current = found.resource.get("identity") or {}
    users = current.get("userAssignedIdentities") or {}
    identity: dict[str, Any] = {"type": "SystemAssigned, UserAssigned" if users else "SystemAssigned"}
    if users:
        identity["userAssignedIdentities"] = {resource_id: {} for resource_id in users}
    what = f"{machine.spec.label} {machine.name}"
    arm.request("PATCH", machine.segments, machine.spec.api, body={"identity": identity}, what=what)
    return Found(machine, arm.get(machine.segments, machine.spec.api, what=what))


__all__ = [
    "KINDS",
    "Found",
    "Identity",
    "Machine",
    "check_guid",
    "check_resource_group",
    "check_subscription",
    "identity_of",
    "locate_machine",
    "resolve_subscription",
]

"""Machines and managed identities through Resource Manager: virtual machines and scale sets
(Microsoft.Compute), Arc-enabled machines (Microsoft.HybridCompute) and user-assigned identities
(Microsoft.ManagedIdentity).

Machines are made by ``hsmcert emulator vm add`` (:func:`add_machine`, through the control endpoint); each
system-assigned and each user-assigned identity has its own principal (a random object id, and for a
user-assigned identity a client id too) that can get emulator tokens. Through Resource Manager a machine is
read, listed, and its identity changed (``PATCH``/``PUT`` of ``identity``, what ``az vm identity assign``
does), when the caller may.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hsmcert.emulator import auth
from hsmcert.emulator.api import Request, Response
from hsmcert.emulator.arm import (
    LOCATION,
    MAX_MACHINES,
    SERVICE_GROUP,
    arm_error,
    check_group,
    check_resource_name,
    resource_id,
    same_id,
    value_list,
)

if TYPE_CHECKING:
    from hsmcert.emulator.process import Emulator


@dataclass(frozen=True)
class MachineKind:
    kind: str
    """hsmcert's name: vm, vmss, arc."""
    provider: str
    type: str
    what: str
    """How messages name it."""

    @property
    def resource_type(self) -> str:
        return f"{self.provider}/{self.type}"


KINDS = {
    "vm": MachineKind("vm", "Microsoft.Compute", "virtualMachines", "virtual machine"),
    "vmss": MachineKind("vmss", "Microsoft.Compute", "virtualMachineScaleSets", "virtual machine scale set"),
    "arc": MachineKind("arc", "Microsoft.HybridCompute", "machines", "Arc-enabled machine"),
}
IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
_IDENTITY_TYPES = {
    "none": "None",
    "systemassigned": "SystemAssigned",
    "userassigned": "UserAssigned",
    "systemassigned,userassigned": "SystemAssigned, UserAssigned",
}


# --- the state: machines and identities ----------------------------------------------------------------------


def _identity_id(emulator: Emulator, given: str, group: str) -> tuple[str, str]:
    """The resource id and group of a user-assigned identity given by name (in ``group``) or resource id."""
    if given.startswith("/"):
        parts = given.strip("/").split("/")
        if (
            len(parts) != 8
            or parts[0].lower() != "subscriptions"
            or parts[2].lower() != "resourcegroups"
            or parts[4].lower() != "providers"
            or "/".join(parts[5:7]).lower() != IDENTITY_TYPE.lower()
        ):
            raise arm_error(
                400, "InvalidIdentityId", f"'{given[:200]}' is not a user-assigned identity's id."
            )
        emulator.arm.check_subscription(parts[1])
        group, name = check_group(parts[3]), check_resource_name(parts[7], "identity")
    else:
        name = check_resource_name(given, "identity")
    return resource_id(
        emulator.arm.subscription, group, "Microsoft.ManagedIdentity", "userAssignedIdentities", name
    ), group


def ensure_identity(emulator: Emulator, given: str, group: str, create: bool = True) -> dict[str, Any]:
    """The user-assigned identity ``given`` (a name in ``group`` or a resource id); made when new and
    ``create``."""
    arm = emulator.arm
    ident, group = _identity_id(emulator, given, group)
    with arm.lock:
        found = arm.identities.get(ident.lower())
        if found is not None:
            return found
        if not create:
            raise arm_error(
                404,
                "ResourceNotFound",
                f"The Resource '{IDENTITY_TYPE}/{ident.rsplit('/', 1)[-1]}' "
                f"under resource group '{group}' was not found.",
            )
        record = {
            "id": ident,
            "name": ident.rsplit("/", 1)[-1],
            "group": group,
            "principalId": arm.new_principal(),
            "clientId": str(uuid.uuid4()),
        }
        arm.identities[ident.lower()] = record
        arm.put("armidentity", ident.lower(), record)
        return record


def identity_json(emulator: Emulator, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record["id"],
        "name": record["name"],
        "type": IDENTITY_TYPE,
        "location": LOCATION,
        "tags": {},
        "properties": {
            "tenantId": auth.TENANT_ID,
            "principalId": record["principalId"],
            "clientId": record["clientId"],
        },
    }


def _set_identity(emulator: Emulator, machine: dict[str, Any], system: bool, user_ids: list[str]) -> None:
    """Give ``machine`` a system-assigned identity (kept if it has one) and these user-assigned ones."""
    old = machine.get("identity") or {}
    if not system and not user_ids:
        machine["identity"] = None
        return
    identity: dict[str, Any] = {
        "type": "SystemAssigned, UserAssigned"
        if system and user_ids
        else ("SystemAssigned" if system else "UserAssigned")
    }
    if system:
        identity["principalId"] = old.get("principalId") or emulator.arm.new_principal()
        identity["tenantId"] = auth.TENANT_ID
    if user_ids:
        identity["userAssignedIdentities"] = {ident: {} for ident in user_ids}
    machine["identity"] = identity


def add_machine(
    emulator: Emulator,
    kind: str,
    name: str,
    group: str | None,
    user_assigned: list[str],
    system: bool,
) -> dict[str, Any]:
    """Make a VM, scale set or Arc machine (400 when it exists or a value is invalid)."""
    arm = emulator.arm
    if kind not in KINDS:
        raise arm_error(
            400, "InvalidMachineKind", f"Unknown machine kind {kind[:20]!r}: use vm, vmss or arc."
        )
    spec = KINDS[kind]
    group = check_group(group or SERVICE_GROUP)
    name = check_resource_name(name, spec.what)
    if kind == "arc" and user_assigned:
        raise arm_error(
            400, "InvalidIdentityType", "Arc-enabled machines have a system-assigned identity only."
        )
    ident = resource_id(arm.subscription, group, spec.provider, spec.type, name)
    with arm.lock:
        if ident.lower() in arm.machines:
            raise arm_error(
                409, "Conflict", f"The {spec.what} {name} already exists in resource group {group}."
            )
        if len(arm.machines) >= MAX_MACHINES:
            raise arm_error(400, "QuotaExceeded", f"The emulator holds at most {MAX_MACHINES} machines.")
        identities = [ensure_identity(emulator, given, group)["id"] for given in user_assigned]
        machine: dict[str, Any] = {
            "kind": kind,
            "id": ident,
            "name": name,
            "group": group,
            "vmId": str(uuid.uuid4()),
            "created": int(time.time()),
            "identity": None,
        }
        _set_identity(emulator, machine, system, identities)
        save_machine(emulator, machine)
    return machine


def save_machine(emulator: Emulator, machine: dict[str, Any]) -> None:
    emulator.arm.machines[machine["id"].lower()] = machine
    emulator.arm.put("armmachine", machine["id"].lower(), machine)


def find_machines(emulator: Emulator, kind: str | None, name: str, group: str | None) -> list[dict[str, Any]]:
    return [
        m
        for m in list(emulator.arm.machines.values())
        if (kind is None or m["kind"] == kind)
        and m["name"].lower() == name.lower()
        and (group is None or m["group"].lower() == group.lower())
    ]


def remove_machine(emulator: Emulator, kind: str | None, name: str, group: str | None) -> dict[str, Any]:
    """Remove the one machine of that name (and group); 404 when none, 409 when several match."""
    arm = emulator.arm
    with arm.lock:
        found = find_machines(emulator, kind, name, group)
        if not found:
            raise arm_error(
                404,
                "ResourceNotFound",
                f"No machine {name[:64]} found" + (f" in resource group {group}." if group else "."),
            )
        if len(found) > 1:
            where = ", ".join(sorted(f"{m['group']}/{m['name']} ({m['kind']})" for m in found))
            raise arm_error(
                409, "AmbiguousName", f"Several machines are named {name}: {where}; give --group."
            )
        machine = found[0]
        del arm.machines[machine["id"].lower()]
        arm.delete("armmachine", machine["id"].lower())
        if arm.self_machine == machine["id"].lower():
            arm.self_machine = None
            arm.set_config("self", None)
    return machine


def set_self(emulator: Emulator, which: Any) -> None:
    """Make the machine ``which`` (``{"kind", "name", "group"}``; None: none) the one the instance metadata
    service describes."""
    arm = emulator.arm
    if which is None:
        arm.self_machine = None
    else:
        if not isinstance(which, dict) or not isinstance(which.get("name"), str):
            raise arm_error(400, "BadParameter", 'self must name a machine: {"name", "group", "kind"}.')
        group, kind = which.get("group"), which.get("kind")
        found = find_machines(
            emulator,
            kind if isinstance(kind, str) else None,
            which["name"],
            group if isinstance(group, str) else None,
        )
        if len(found) != 1:
            raise arm_error(
                404 if not found else 409,
                "ResourceNotFound" if not found else "AmbiguousName",
                f"{len(found)} machines match {which['name'][:64]}; name one machine.",
            )
        arm.self_machine = found[0]["id"].lower()
    arm.set_config("self", arm.self_machine)


def principal_of(emulator: Emulator, client_or_object_id: str) -> str | None:
    """The object id of the user-assigned identity whose client id (or object id) this is, if any."""
    wanted = client_or_object_id.lower()
    for record in list(emulator.arm.identities.values()):
        if wanted in (record["clientId"], record["principalId"]):
            return str(record["principalId"])
    return None


def machine_summary(emulator: Emulator, machine: dict[str, Any]) -> dict[str, Any]:
    """What ``hsmcert emulator vm add/list`` show of a machine."""
    identity = machine.get("identity") or {}
    users = []
    for ident in identity.get("userAssignedIdentities") or {}:
        record = emulator.arm.identities.get(ident.lower())
        if record is not None:
            users.append(
                {
                    "id": record["id"],
                    "name": record["name"],
                    "principalId": record["principalId"],
                    "clientId": record["clientId"],
                }
            )
    return {
        "kind": machine["kind"],
        "name": machine["name"],
        "resourceGroup": machine["group"],
        "id": machine["id"],
        "vmId": machine["vmId"],
        "principalId": identity.get("principalId"),
        "userAssigned": users,
        "self": emulator.arm.self_machine == machine["id"].lower(),
    }


# --- the Resource Manager representation -----------------------------------------------------------------------


def machine_json(emulator: Emulator, machine: dict[str, Any]) -> dict[str, Any]:
    spec = KINDS[machine["kind"]]
    answer: dict[str, Any] = {
        "name": machine["name"],
        "id": machine["id"],
        "type": spec.resource_type,
        "location": LOCATION,
        "tags": {},
    }
    identity = machine.get("identity")
    if identity:
        shown = dict(identity)
        if "userAssignedIdentities" in identity:
            shown["userAssignedIdentities"] = {}
            for ident in identity["userAssignedIdentities"]:
                record = emulator.arm.identities.get(ident.lower())
                if record is not None:
                    shown["userAssignedIdentities"][record["id"]] = {
                        "principalId": record["principalId"],
                        "clientId": record["clientId"],
                    }
        answer["identity"] = shown
    created = time.strftime("%Y-%m-%dT%H:%M:%S.0000000+00:00", time.gmtime(machine.get("created", 0)))
    if machine["kind"] == "vm":
        answer["properties"] = {
            "vmId": machine["vmId"],
            "hardwareProfile": {"vmSize": "Standard_B2s"},
            "osProfile": {"computerName": machine["name"][:15], "adminUsername": "azureuser"},
            "storageProfile": {"osDisk": {"osType": "Linux", "name": f"{machine['name']}_OsDisk"}},
            "provisioningState": "Succeeded",
            "timeCreated": created,
        }
    elif machine["kind"] == "vmss":
        answer["sku"] = {"name": "Standard_B2s", "tier": "Standard", "capacity": 2}
        answer["properties"] = {
            "uniqueId": machine["vmId"],
            "orchestrationMode": "Uniform",
            "provisioningState": "Succeeded",
            "timeCreated": created,
        }
    else:
        answer["kind"] = None
        answer["properties"] = {
            "vmId": machine["vmId"],
            "status": "Connected",
            "osName": "linux",
            "osType": "linux",
            "agentVersion": "1.45.02878.1747",
            "provisioningState": "Succeeded",
            "lastStatusChange": created,
        }
    return answer


def _visible(emulator: Emulator, req: Request, record_id: str, resource_type: str) -> bool:
    return emulator.arm_roles.allowed(req.principal, f"{resource_type}/read", record_id)


def _machine(emulator: Emulator, req: Request, spec: MachineKind) -> dict[str, Any]:
    group, name = check_group(req.params["group"]), check_resource_name(req.params["name"], spec.what)
    ident = resource_id(emulator.arm.subscription, group, spec.provider, spec.type, name)
    found = emulator.arm.machines.get(ident.lower())
    if found is None:
        raise arm_error(
            404,
            "ResourceNotFound",
            f"The Resource '{spec.resource_type}/{name}' under resource group '{group}' was not found. For "
            "more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )
    return found


def machine_scope(req: Request, spec: MachineKind) -> str:
    """The resource id a machine route addresses (as given: the check compares without case)."""
    return resource_id(
        req.params["subscription"], req.params["group"], spec.provider, spec.type, req.params["name"]
    )


# --- handlers ----------------------------------------------------------------------------------------------


def list_machines(emulator: Emulator, req: Request, spec: MachineKind) -> Response:
    """Machines of one type in the subscription, or in one resource group: those the caller may read."""
    group = check_group(req.params["group"]) if req.params.get("group") else None
    items = [
        machine_json(emulator, m)
        for m in sorted(
            list(emulator.arm.machines.values()), key=lambda m: (m["group"].lower(), m["name"].lower())
        )
        if m["kind"] == spec.kind
        and (group is None or m["group"].lower() == group.lower())
        and _visible(emulator, req, m["id"], spec.resource_type)
    ]
    return Response(200, value_list(items))


def get_machine(emulator: Emulator, req: Request, spec: MachineKind) -> Response:
    return Response(200, machine_json(emulator, _machine(emulator, req, spec)))


def update_machine(emulator: Emulator, req: Request, spec: MachineKind) -> Response:
    """``PATCH`` or ``PUT`` of an existing machine: its ``identity`` changes (other properties are the
    emulator's own and stay)."""
    machine = _machine(emulator, req, spec)
    body = req.json()
    if "identity" not in body:
        return Response(200, machine_json(emulator, machine))
    identity = body["identity"]
    if identity is None:
        identity = {"type": "None"}
    if not isinstance(identity, dict):
        raise arm_error(400, "InvalidParameter", "The 'identity' must be an object.")
    given_type = identity.get("type")
    if not isinstance(given_type, str) or given_type.replace(" ", "").lower() not in _IDENTITY_TYPES:
        raise arm_error(
            400,
            "InvalidIdentityType",
            f"The identity type '{str(given_type)[:40]}' is invalid: use SystemAssigned, UserAssigned, "
            "'SystemAssigned, UserAssigned' or None.",
        )
    kind = _IDENTITY_TYPES[given_type.replace(" ", "").lower()]
    system = kind.startswith("SystemAssigned")
    users_given = identity.get("userAssignedIdentities") or {}
    if not isinstance(users_given, dict):
        raise arm_error(400, "InvalidParameter", "The 'userAssignedIdentities' must be an object.")
    if "UserAssigned" in kind and not users_given and req.method == "PUT":
        raise arm_error(400, "InvalidParameter", "A UserAssigned identity needs userAssignedIdentities.")
    if machine["kind"] == "arc" and kind not in ("SystemAssigned",):
        raise arm_error(
            400, "InvalidIdentityType", "Arc-enabled machines have a system-assigned identity only."
        )
    current = list(((machine.get("identity") or {}).get("userAssignedIdentities") or {}).keys())
    users: list[str] = [] if req.method == "PUT" or "UserAssigned" not in kind else list(current)
    for given, value in users_given.items():
        record = ensure_identity(emulator, given, machine["group"], create=False)
        if value is None:  # PATCH with null removes one
            users = [u for u in users if not same_id(u, record["id"])]
            continue
        if not any(same_id(u, record["id"]) for u in users):
            emulator.arm_roles.require(req, f"{IDENTITY_TYPE}/assign/action", record["id"])
            users.append(record["id"])
    if "UserAssigned" not in kind:
        users = []
    with emulator.arm.lock:
        _set_identity(emulator, machine, system, users)
        save_machine(emulator, machine)
    emulator.audit.record(
        operation="arm-identity",
        principal=req.principal,
        result="ok",
        status=200,
        resource=machine["id"],
        identity=(machine.get("identity") or {}).get("type", "None"),
    )
    return Response(200, machine_json(emulator, machine))


def list_identities(emulator: Emulator, req: Request) -> Response:
    group = check_group(req.params["group"]) if req.params.get("group") else None
    items = [
        identity_json(emulator, record)
        for record in list(emulator.arm.identities.values())
        if (group is None or record["group"].lower() == group.lower())
        and _visible(emulator, req, record["id"], IDENTITY_TYPE)
    ]
    return Response(200, value_list(items))


def get_identity(emulator: Emulator, req: Request) -> Response:
    group = check_group(req.params["group"])
    record = ensure_identity(emulator, req.params["name"], group, create=False)
    return Response(200, identity_json(emulator, record))


def identity_scope(req: Request) -> str:
    return resource_id(
        req.params["subscription"],
        req.params["group"],
        "Microsoft.ManagedIdentity",
        "userAssignedIdentities",
        req.params["name"],
    )

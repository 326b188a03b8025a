"""Microsoft.Resources: the subscription's resource groups and its generic resource list (what ``az group
show`` and ``az resource list -n NAME`` read).

A resource group exists when something is in it: :data:`~hsmcert.emulator.arm.SERVICE_GROUP` (the vaults and
Managed HSMs) and every group a machine or user-assigned identity was made in.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from hsmcert.emulator import arm_compute, arm_keyvault
from hsmcert.emulator.api import Request, Response
from hsmcert.emulator.arm import LOCATION, SERVICE_GROUP, arm_error, check_group, value_list

if TYPE_CHECKING:
    from hsmcert.emulator.process import Emulator

_FILTER = re.compile(r"(resourceType|name|resourceGroup)\s+eq\s+'([^']*)'", re.IGNORECASE)


def groups(emulator: Emulator) -> dict[str, str]:
    """Lower-case name -> name of every resource group that holds something."""
    found = {SERVICE_GROUP: SERVICE_GROUP}
    for record in [*emulator.arm.machines.values(), *emulator.arm.identities.values()]:
        found.setdefault(record["group"].lower(), record["group"])
    return found


def group_json(emulator: Emulator, name: str) -> dict[str, Any]:
    return {
        "id": emulator.arm.group_id(name),
        "name": name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": LOCATION,
        "properties": {"provisioningState": "Succeeded"},
    }


def resources(emulator: Emulator) -> list[dict[str, Any]]:
    """Every resource of the subscription in the generic shape (id, name, type, location, identity)."""
    items: list[dict[str, Any]] = []
    for machine in list(emulator.arm.machines.values()):
        full = arm_compute.machine_json(emulator, machine)
        items.append({k: full[k] for k in ("id", "name", "type", "location", "identity") if k in full})
    items += [
        {k: v for k, v in arm_compute.identity_json(emulator, record).items() if k != "properties"}
        for record in list(emulator.arm.identities.values())
    ]
    for (kind, name), _service in sorted(list(emulator.services.items())):
        items.append(
            {
                "id": arm_keyvault.service_id(emulator, kind, name),
                "name": name,
                "type": f"Microsoft.KeyVault/{arm_keyvault.TYPES[kind]}",
                "location": LOCATION,
            }
        )
    return items


def _readable(emulator: Emulator, req: Request, item: dict[str, Any]) -> bool:
    return emulator.arm_roles.allowed(req.principal, f"{item['type']}/read", item["id"])


# --- handlers ----------------------------------------------------------------------------------------------


def list_groups(emulator: Emulator, req: Request) -> Response:
    items = [
        group_json(emulator, name)
        for name in sorted(groups(emulator).values(), key=str.lower)
        if emulator.arm_roles.allowed(
            req.principal,
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            emulator.arm.group_id(name),
        )
    ]
    return Response(200, value_list(items))


def get_group(emulator: Emulator, req: Request) -> Response:
    name = check_group(req.params["group"])
    found = groups(emulator).get(name.lower())
    if found is None:
        raise arm_error(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
    return Response(200, group_json(emulator, found))


def group_scope(req: Request) -> str:
    return f"/subscriptions/{req.params['subscription']}/resourceGroups/{req.params['group']}"


def list_resources(emulator: Emulator, req: Request) -> Response:
    """``$filter`` with ``resourceType eq '...'``, ``name eq '...'`` (joined by ``and``) narrows the list."""
    wanted = {key.lower(): value.lower() for key, value in _FILTER.findall(req.query.get("$filter", ""))}
    group = check_group(req.params["group"]).lower() if req.params.get("group") else None
    items = []
    for item in resources(emulator):
        parts = item["id"].split("/")
        if group is not None and parts[4].lower() != group:
            continue
        if "resourcetype" in wanted and item["type"].lower() != wanted["resourcetype"]:
            continue
        if "name" in wanted and item["name"].lower() != wanted["name"]:
            continue
        if _readable(emulator, req, item):
            items.append(item)
    return Response(200, value_list(items))

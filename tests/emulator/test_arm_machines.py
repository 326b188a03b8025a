"""Machines of the emulator's Resource Manager: ``hsmcert emulator vm add|list|remove``, enabling an identity
through Resource Manager (what ``az vm identity assign`` sends), scale sets and Arc machines, the tokens of
their identities (managed-identity endpoint, instance metadata service) and ``--vm self``'s metadata."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import requests

from tests.emulator.conftest import unique
from tests.emulator.test_arm import AUTHZ, COMPUTE, Arm, add_vm, as_principal
from tests.hsm.conftest import run_cli

HYBRID = "api-version=2024-07-10"


def claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return result


@pytest.fixture(scope="module")
def arm(emulator: Any) -> Arm:
    return Arm(emulator)


def test_vm_add_list_and_remove_from_the_command_line(emulator: Any) -> None:
    name = unique("web")
    first = run_cli(
        "--output", "json", "emulator", "vm", "add", name, "-g", "rg-a", "--user-assigned", "shared"
    )
    assert first.code == 0, first.err
    made = json.loads(first.out)
    assert made["principalId"] and made["userAssigned"][0]["name"] == "shared"
    assert run_cli("emulator", "vm", "add", name, "-g", "rg-b", "--no-identity").code == 0
    text = run_cli("emulator", "vm", "list")
    assert f"VM {name} (resource group rg-a)" in text.out and made["principalId"] in text.out
    assert "(no system-assigned identity)" in text.out

    again = run_cli("emulator", "vm", "add", name, "-g", "rg-a")
    assert again.code == 2 and "already exists" in again.err and "Traceback" not in again.err
    ambiguous = run_cli("emulator", "vm", "remove", name)
    assert ambiguous.code == 2 and "rg-a" in ambiguous.err and "rg-b" in ambiguous.err
    assert run_cli("emulator", "vm", "remove", name, "-g", "rg-b").code == 0
    gone = run_cli("emulator", "vm", "remove", name, "-g", "rg-b")
    assert gone.code == 3 and f"No machine {name} found in resource group rg-b" in gone.err
    listed = json.loads(run_cli("--output", "json", "emulator", "vm", "list").out)["machines"]
    assert [m["resourceGroup"] for m in listed if m["name"] == name] == ["rg-a"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bad/name"], "is invalid"),
        (["ok", "-g", "bad group"], "Resource group name"),
        (["ok", "--scale-set", "--arc"], "exclude each other"),
        (["ok", "--arc", "--user-assigned", "u"], "system-assigned identity only"),
        (["ok", "--user-assigned", "/subscriptions/x/whatever"], "not a user-assigned identity's id"),
    ],
)
def test_vm_add_refuses_bad_input_in_one_line(emulator: Any, args: list[str], says: str) -> None:
    result = run_cli("emulator", "vm", "add", *args)
    assert result.code == 2 and says in result.err, result.err
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) <= 2


def test_enabling_an_identity_through_resource_manager(emulator: Any, arm: Arm) -> None:
    vm = add_vm(emulator, unique("bare"), identity=False)
    assert "identity" not in arm.get(f"{vm['id']}?{COMPUTE}")
    # a Reader may look but not change it
    reader = str(uuid.uuid4())
    status, _ = arm.call(
        "PUT",
        f"{vm['id']}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?{AUTHZ}",
        {
            "properties": {
                "roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/"
                "acdd72a7-3385-48ef-bd42-f606fba81ae7",
                "principalId": reader,
            }
        },
    )
    assert status == 201
    status, refused = as_principal(emulator, reader).call(
        "PATCH", f"{vm['id']}?{COMPUTE}", {"identity": {"type": "SystemAssigned"}}
    )
    assert status == 403 and "virtualMachines/write" in refused["error"]["message"]

    status, enabled = arm.call("PATCH", f"{vm['id']}?{COMPUTE}", {"identity": {"type": "SystemAssigned"}})
    assert status == 200 and enabled["identity"]["type"] == "SystemAssigned"
    principal = enabled["identity"]["principalId"]
    assert uuid.UUID(principal)
    # the same again keeps the principal; a user-assigned one is added next to it
    uai = add_vm(emulator, unique("holder"), user_assigned=[unique("uai")])["userAssigned"][0]
    status, both = arm.call(
        "PATCH",
        f"{vm['id']}?{COMPUTE}",
        {"identity": {"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {uai["id"]: {}}}},
    )
    assert status == 200 and both["identity"]["principalId"] == principal
    assert both["identity"]["userAssignedIdentities"][uai["id"]]["clientId"] == uai["clientId"]
    status, bad = arm.call("PATCH", f"{vm['id']}?{COMPUTE}", {"identity": {"type": "Everything"}})
    assert status == 400 and bad["error"]["code"] == "InvalidIdentityType"
    status, none = arm.call("PATCH", f"{vm['id']}?{COMPUTE}", {"identity": {"type": "None"}})
    assert status == 200 and "identity" not in none


def test_scale_sets_and_arc_machines(emulator: Any, arm: Arm) -> None:
    scale_set = add_vm(emulator, unique("ss"), kind="vmss", group="rg-scale")
    arc = add_vm(emulator, unique("edge"), kind="arc", group="rg-edge")
    sub = scale_set["id"].split("/")[2]
    got = arm.get(f"{scale_set['id']}?{COMPUTE}")
    assert got["type"] == "Microsoft.Compute/virtualMachineScaleSets"
    assert got["identity"]["principalId"] == scale_set["principalId"]
    listed = arm.get(f"/subscriptions/{sub}/providers/Microsoft.Compute/virtualMachineScaleSets?{COMPUTE}")
    assert scale_set["id"] in [s["id"] for s in listed["value"]]
    machine = arm.get(f"{arc['id']}?{HYBRID}")
    assert machine["type"] == "Microsoft.HybridCompute/machines"
    assert machine["identity"] == {
        "type": "SystemAssigned",
        "principalId": arc["principalId"],
        "tenantId": machine["identity"]["tenantId"],
    }
    in_group = arm.get(
        f"/subscriptions/{sub}/resourceGroups/rg-edge/providers/Microsoft.HybridCompute/machines?{HYBRID}"
    )
    assert [m["name"] for m in in_group["value"]] == [arc["name"]]
    # a VM path does not find an Arc machine, and the Compute api-version is not HybridCompute's
    status, _ = arm.call("GET", f"{arc['id']}?{COMPUTE}")
    assert status == 400


def test_a_user_assigned_identity_gets_its_own_token(emulator: Any, arm: Arm) -> None:
    from azure.identity import ManagedIdentityCredential

    vm = add_vm(emulator, unique("vm"), user_assigned=[unique("uai")])
    (uai,) = vm["userAssigned"]
    token = ManagedIdentityCredential(client_id=uai["clientId"]).get_token("https://vault.azure.net/.default")
    assert claims(token.token)["oid"] == uai["principalId"] != vm["principalId"]
    resource = arm.get(f"{uai['id']}?api-version=2023-01-31")
    assert resource["properties"]["clientId"] == uai["clientId"]
    assert resource["properties"]["principalId"] == uai["principalId"]


def test_instance_metadata_of_the_machine_the_emulator_plays(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = emulator.env["HSMCERT_IMDS_URL"]
    result = run_cli("--output", "json", "emulator", "vm", "add", unique("me"), "-g", "rg-self", "--self")
    assert result.code == 0, result.err
    me = json.loads(result.out)
    answer = requests.get(
        f"{url}/metadata/instance/compute?api-version=2021-02-01", headers={"Metadata": "true"}, timeout=30
    )
    compute = answer.json()
    assert answer.status_code == 200
    assert (compute["subscriptionId"], compute["resourceGroupName"], compute["name"], compute["vmId"]) == (
        me["id"].split("/")[2],
        "rg-self",
        me["name"],
        me["vmId"],
    )
    assert compute["resourceId"] == me["id"]
    refused = requests.get(f"{url}/metadata/instance/compute?api-version=2021-02-01", timeout=30)
    assert refused.status_code == 400 and "metadata header" in refused.json()["error"]
    unknown = requests.get(
        f"{url}/metadata/instance/compute?api-version=1999-01-01", headers={"Metadata": "true"}, timeout=30
    )
    assert unknown.status_code == 400 and "newest-versions" in unknown.json()

    # azure-identity's IMDS credential, pointed at the emulator, is the machine's identity
    from azure.identity import ManagedIdentityCredential

    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", url)
    token = ManagedIdentityCredential().get_token("https://vault.azure.net/.default")
    assert claims(token.token)["oid"] == me["principalId"]


def test_instance_metadata_answers_json_only(emulator: Any) -> None:
    run_cli("emulator", "vm", "add", unique("me"), "--self")
    answer = requests.get(
        f"{emulator.env['HSMCERT_IMDS_URL']}/metadata/instance/compute/name?api-version=2021-02-01&format=text",
        headers={"Metadata": "true"},
        timeout=30,
    )
    assert answer.status_code == 404 and answer.json() == {"error": "Not found"}

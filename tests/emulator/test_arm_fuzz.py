"""Bad input never makes the emulator's Resource Manager fail: hypothesis drives its handlers in process with
paths made of Resource Manager's words, every method, api-versions, OData filters and hostile JSON bodies, as
the administrator and as a principal without roles. Every answer is a 2xx or a 4xx in ARM's error shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsmcert.emulator import arm_compute, routes
from hsmcert.emulator.api import ApiError, Request
from hsmcert.emulator.process import Emulator

GUID = "12338af0-0e69-4776-bea7-57ae8d297424"
WORDS = [
    "subscriptions",
    "resourceGroups",
    "resourcegroups",
    "resources",
    "providers",
    "Microsoft.Compute",
    "virtualMachines",
    "virtualMachineScaleSets",
    "Microsoft.HybridCompute",
    "machines",
    "Microsoft.KeyVault",
    "vaults",
    "managedHSMs",
    "accessPolicies",
    "add",
    "replace",
    "remove",
    "keys",
    "Microsoft.Authorization",
    "roleAssignments",
    "roleDefinitions",
    "Microsoft.ManagedIdentity",
    "userAssignedIdentities",
    "hsmcert-emulator",
    "local-vault",
    "local-hsm",
    "g1",
    "vm1",
    "u1",
    GUID,
    "",
    "%2F",
    "..",
    "a%00b",
    "x" * 300,
    "(",
    "\u202e",
]
API_VERSIONS = [
    "2022-12-01",
    "2024-07-01",
    "2024-07-10",
    "2023-07-01",
    "2022-04-01",
    "2023-01-31",
    "2021-04-01",
    "x",
]
FILTERS = [
    "",
    "principalId eq 'x'",
    "atScope()",
    "roleName eq 'Owner'",
    "name eq 'vm1'",
    "assignedTo('')",
    "'",
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.sampled_from([GUID, "SystemAssigned"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "properties",
                    "identity",
                    "type",
                    "userAssignedIdentities",
                    "roleDefinitionId",
                    "principalId",
                    "accessPolicies",
                    "permissions",
                    "keys",
                    "objectId",
                    "tenantId",
                    "roleName",
                    "assignableScopes",
                    "enableRbacAuthorization",
                    "principalType",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.just(b""),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
    st.just(b"[" * 100 + b"]" * 100),
)


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """An emulator object of this module's own, driven in process (its ports are not used)."""
    emulator = Emulator(Path(tmp_path_factory.mktemp("armfuzz")))
    emulator.start()
    try:
        arm_compute.add_machine(emulator, "vm", "vm1", "g1", ["u1"], True)
        arm_compute.add_machine(emulator, "arc", "vm1", "g1", [], True)
        yield emulator
    finally:
        emulator.shutdown()


def _call(
    emulator: Emulator, method: str, path: str, query: dict[str, str], body: bytes, principal: str
) -> None:
    req = Request(method, path, query, body, "https://127.0.0.1:1", principal, principal)
    try:
        response = routes.dispatch_arm(emulator, req)
    except ApiError as exc:
        assert 400 <= exc.status < 500, (exc.status, exc.code, exc.message)
        assert exc.code and exc.message
        return
    assert response.status < 400
    json.dumps(response.body)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "POST"]),
    words=st.lists(st.sampled_from(WORDS), min_size=0, max_size=12),
    version=st.sampled_from(API_VERSIONS),
    odata=st.sampled_from(FILTERS),
    body=bodies,
    stranger=st.booleans(),
)
def test_resource_manager_answers_4xx_not_500(
    own: Emulator, method: str, words: list[str], version: str, odata: str, body: bytes, stranger: bool
) -> None:
    if len(words) > 1 and words[0] == "subscriptions":
        words[1] = own.arm.subscription  # reach past the subscription check most of the time
    query = {"api-version": version, **({"$filter": odata} if odata else {})}
    principal = "0000aaaa-0000-0000-0000-000000000000" if stranger else own.admin
    _call(own, method, "/" + "/".join(words), query, body, principal)


def test_the_fuzzed_emulator_still_serves(own: Emulator) -> None:
    req = Request(
        "GET", "/subscriptions", {"api-version": "2022-12-01"}, b"", "https://x", own.admin, "admin"
    )
    answer: Any = routes.dispatch_arm(own, req).body
    assert [s["subscriptionId"] for s in answer["value"]] == [own.arm.subscription]


BODY_ROUTES = [
    (
        "PATCH",
        "/subscriptions/{sub}/resourceGroups/g1/providers/Microsoft.Compute/virtualMachines/vm1",
        "2024-07-01",
    ),
    (
        "PUT",
        "/subscriptions/{sub}/resourceGroups/g1/providers/Microsoft.Compute/virtualMachines/vm1",
        "2024-07-01",
    ),
    (
        "PATCH",
        "/subscriptions/{sub}/resourceGroups/g1/providers/Microsoft.HybridCompute/machines/vm1",
        "2024-07-10",
    ),
    (
        "PATCH",
        "/subscriptions/{sub}/resourceGroups/hsmcert-emulator/providers/Microsoft.KeyVault/vaults/local-vault",
        "2023-07-01",
    ),
    (
        "PUT",
        "/subscriptions/{sub}/resourceGroups/hsmcert-emulator/providers/Microsoft.KeyVault/vaults/local-vault/"
        "accessPolicies/add",
        "2023-07-01",
    ),
    (
        "PUT",
        "/subscriptions/{sub}/resourceGroups/hsmcert-emulator/providers/Microsoft.KeyVault/vaults/local-vault/"
        "accessPolicies/remove",
        "2023-07-01",
    ),
    (
        "PUT",
        "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
        + "1" * 8
        + "-1111-1111-1111-"
        + "1" * 12,
        "2022-04-01",
    ),
    (
        "PUT",
        "/subscriptions/{sub}/resourceGroups/hsmcert-emulator/providers/Microsoft.KeyVault/vaults/local-vault/"
        "providers/Microsoft.Authorization/roleAssignments/" + "2" * 8 + "-2222-2222-2222-" + "2" * 12,
        "2022-04-01",
    ),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(BODY_ROUTES), body=bodies)
def test_every_body_a_resource_manager_route_reads_is_checked(
    own: Emulator, route: tuple[str, str, str], body: bytes
) -> None:
    method, path, version = route
    _call(own, method, path.replace("{sub}", own.arm.subscription), {"api-version": version}, body, own.admin)

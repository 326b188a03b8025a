"""The emulator's Resource Manager subset, through azure-core's pipeline (the transport, retry and bearer-token
policies the Azure SDKs use) with the managed-identity credential, against Azure's paths and api-versions:
subscriptions, machines with their identities, vaults and Managed HSMs, role definitions and assignments at
vault scopes, and their enforcement on the vault's data plane."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from tests.emulator.conftest import Token, unique

ARM = "https://management.azure.com"
COMPUTE = "api-version=2024-07-01"
AUTHZ = "api-version=2022-04-01"
KV = "api-version=2023-07-01"
CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"


class Arm:
    """Resource Manager requests as one principal (default: the managed-identity endpoint's administrator)."""

    def __init__(self, emulator: Any, credential: Any = None) -> None:
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy

        self.emulator = emulator
        self.url = emulator.env["HSMCERT_ARM_URL"]
        if credential is None:
            from azure.identity import ManagedIdentityCredential

            credential = ManagedIdentityCredential()
        policies = [RetryPolicy(retry_total=0), BearerTokenCredentialPolicy(credential, f"{ARM}/.default")]
        self.client: Any = PipelineClient(base_url=self.url, policies=policies)

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        from azure.core.rest import HttpRequest

        content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": "application/json"} if content is not None else {}
        request = HttpRequest(method, self.url + path, content=content, headers=headers)
        response = self.client.send_request(request, connection_verify=str(self.emulator.ca))
        text = response.text()
        return response.status_code, json.loads(text) if text else None

    def assign(self, scope: str, role: str, principal: str) -> dict[str, Any]:
        """Give ``principal`` the role (a GUID) at ``scope``; the new assignment."""
        status, answer = self.call(
            "PUT",
            f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?{AUTHZ}",
            {
                "properties": {
                    "roleDefinitionId": f"/providers/Microsoft.Authorization/roleDefinitions/{role}",
                    "principalId": principal,
                }
            },
        )
        assert status == 201, answer
        return dict(answer)

    def get(self, path: str) -> Any:
        status, answer = self.call("GET", path)
        assert status == 200, answer
        return answer


@pytest.fixture(scope="module")
def arm(emulator: Any) -> Arm:
    return Arm(emulator)


@pytest.fixture(scope="module")
def sub(arm: Arm) -> str:
    return str(arm.get("/subscriptions?api-version=2022-12-01")["value"][0]["subscriptionId"])


def as_principal(emulator: Any, object_id: str) -> Arm:
    return Arm(emulator, Token(emulator.token(object_id, ARM)))


def add_vm(emulator: Any, name: str, **options: Any) -> dict[str, Any]:
    from hsmcert.emulator.control import machines

    answer: dict[str, Any] = machines(emulator.data_dir, "POST", {"name": name, **options})
    return answer


def test_one_subscription_in_the_emulators_tenant(emulator: Any, arm: Arm) -> None:
    from hsmcert.emulator.auth import TENANT_ID

    subscriptions = arm.get("/subscriptions?api-version=2022-12-01")["value"]
    assert [s["tenantId"] for s in subscriptions] == [TENANT_ID] and subscriptions[0]["state"] == "Enabled"
    one = arm.get(f"/subscriptions/{subscriptions[0]['subscriptionId']}?api-version=2022-12-01")
    assert one["id"] == f"/subscriptions/{subscriptions[0]['subscriptionId']}"
    # a principal without any role sees no subscription
    nobody = as_principal(emulator, str(uuid.uuid4()))
    assert nobody.get("/subscriptions?api-version=2022-12-01")["value"] == []


def test_vms_of_the_same_name_in_two_groups_and_their_identities(emulator: Any, arm: Arm, sub: str) -> None:
    name = unique("vm")
    first = add_vm(emulator, name, group="rg-one", user_assigned=[unique("uai")])
    second = add_vm(emulator, name, group="rg-two", identity=False)
    listed = arm.get(f"/subscriptions/{sub}/providers/Microsoft.Compute/virtualMachines?{COMPUTE}")["value"]
    mine = {vm["id"]: vm for vm in listed if vm["name"] == name}
    assert set(mine) == {first["id"], second["id"]}
    assert "identity" not in mine[second["id"]]
    vm = arm.get(f"{first['id']}?{COMPUTE}")
    identity = vm["identity"]
    assert identity["type"] == "SystemAssigned, UserAssigned"
    assert identity["principalId"] == first["principalId"] and identity["tenantId"]
    (user,) = first["userAssigned"]
    assert identity["userAssignedIdentities"] == {
        user["id"]: {"principalId": user["principalId"], "clientId": user["clientId"]}
    }
    assert vm["properties"]["vmId"] == first["vmId"] and vm["type"] == "Microsoft.Compute/virtualMachines"
    in_group = arm.get(
        f"/subscriptions/{sub}/resourceGroups/rg-two/providers/Microsoft.Compute/virtualMachines?{COMPUTE}"
    )
    assert [vm["id"] for vm in in_group["value"] if vm["name"] == name] == [second["id"]]


def test_vaults_and_managed_hsms_are_resources(emulator: Any, arm: Arm, sub: str) -> None:
    vaults = arm.get(f"/subscriptions/{sub}/providers/Microsoft.KeyVault/vaults?{KV}")["value"]
    vault = next(v for v in vaults if v["name"] == "local-vault")
    assert vault["properties"]["vaultUri"] == emulator.url("vault") + "/"
    assert vault["properties"]["enableRbacAuthorization"] is True
    assert vault["properties"]["accessPolicies"] == []
    hsm = arm.get(f"{vault['id'].rsplit('/', 2)[0]}/managedHSMs/local-hsm?{KV}")
    assert hsm["properties"]["hsmUri"] == emulator.url("managedhsm") + "/"


def test_a_role_assignment_at_a_key_lets_a_vms_identity_sign_with_that_key_only(
    emulator: Any, arm: Arm, sub: str
) -> None:
    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm

    admin_keys = KeyClient(
        emulator.url("vault"),
        Token(emulator.token(audience="https://vault.azure.net")),
        connection_verify=str(emulator.ca),
    )
    key, other = unique("arm"), unique("arm")
    created = admin_keys.create_ec_key(key, curve="P-256")
    admin_keys.create_ec_key(other, curve="P-256")
    vm = add_vm(emulator, unique("vm"))
    token = Token(emulator.token(vm["principalId"], "https://vault.azure.net"))
    vm_keys = KeyClient(emulator.url("vault"), token, connection_verify=str(emulator.ca))
    digest = b"\x01" * 32

    def sign() -> Any:
        crypto = CryptographyClient(created.id, token, connection_verify=str(emulator.ca))
        return crypto.sign(SignatureAlgorithm.es256, digest)

    with pytest.raises(HttpResponseError) as refused:
        sign()
    assert refused.value.status_code == 403 and "ForbiddenByRbac" in str(refused.value)

    vault_id = f"/subscriptions/{sub}/resourceGroups/hsmcert-emulator/providers/Microsoft.KeyVault/vaults/local-vault"
    scope = f"{vault_id}/keys/{key}"
    name = str(uuid.uuid4())
    definitions = arm.get(
        f"{vault_id}/providers/Microsoft.Authorization/roleDefinitions?$filter=roleName eq 'Key Vault Crypto User'&{AUTHZ}"
    )["value"]
    assert [d["name"] for d in definitions] == [CRYPTO_USER]
    status, assignment = arm.call(
        "PUT",
        f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?{AUTHZ}",
        {
            "properties": {
                "roleDefinitionId": definitions[0]["id"],
                "principalId": vm["principalId"],
                "principalType": "ServicePrincipal",
            }
        },
    )
    assert status == 201, assignment
    assert assignment["properties"]["scope"] == scope and assignment["name"] == name

    assert sign().signature and vm_keys.get_key(key).name == key
    with pytest.raises(HttpResponseError) as elsewhere:
        vm_keys.get_key(other)
    assert elsewhere.value.status_code == 403

    listed = arm.get(
        f"{vault_id}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId eq '{vm['principalId']}'&{AUTHZ}"
    )["value"]
    assert [a["name"] for a in listed] == [name]
    # the same assignment again under another name: Azure's 409
    status, again = arm.call(
        "PUT",
        f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?{AUTHZ}",
        {"properties": {"roleDefinitionId": definitions[0]["id"], "principalId": vm["principalId"]}},
    )
    assert status == 409 and again["error"]["code"] == "RoleAssignmentExists"

    status, _ = arm.call(
        "DELETE", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?{AUTHZ}"
    )
    assert status == 200
    status, _ = arm.call(
        "DELETE", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?{AUTHZ}"
    )
    assert status == 204
    with pytest.raises(HttpResponseError) as revoked:
        sign()
    assert revoked.value.status_code == 403


def test_a_custom_read_and_sign_role_at_the_vault(emulator: Any, arm: Arm, sub: str) -> None:
    from azure.keyvault.keys import KeyClient

    vault_id = f"/subscriptions/{sub}/resourceGroups/hsmcert-emulator/providers/Microsoft.KeyVault/vaults/local-vault"
    role = str(uuid.uuid4())
    status, definition = arm.call(
        "PUT",
        f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}?{AUTHZ}",
        {
            "properties": {
                "roleName": unique("signer"),
                "type": "CustomRole",
                "assignableScopes": [f"/subscriptions/{sub}"],
                "permissions": [
                    {
                        "dataActions": [
                            "Microsoft.KeyVault/vaults/keys/read",
                            "Microsoft.KeyVault/vaults/keys/sign/action",
                        ]
                    }
                ],
            }
        },
    )
    assert status == 201 and definition["properties"]["type"] == "CustomRole", definition
    principal = str(uuid.uuid4())
    status, _ = arm.call(
        "PUT",
        f"{vault_id}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?{AUTHZ}",
        {"properties": {"roleDefinitionId": definition["id"], "principalId": principal}},
    )
    assert status == 201
    client = KeyClient(
        emulator.url("vault"),
        Token(emulator.token(principal, "https://vault.azure.net")),
        connection_verify=str(emulator.ca),
    )
    assert list(client.list_properties_of_keys()) is not None
    with pytest.raises(HttpResponseError) as refused:
        client.create_ec_key(unique("no"), curve="P-256")
    assert refused.value.status_code == 403


def test_resource_manager_needs_its_own_audience_and_a_role(emulator: Any, sub: str, arm: Arm) -> None:
    vm = add_vm(emulator, unique("vm"))
    wrong = Arm(emulator, Token(emulator.token("admin", "https://vault.azure.net")))
    status, answer = wrong.call("GET", f"{vm['id']}?{COMPUTE}")
    assert status == 401 and answer["error"]["code"] == "InvalidAuthenticationTokenAudience"
    stranger_id = str(uuid.uuid4())
    stranger = as_principal(emulator, stranger_id)
    status, answer = stranger.call("GET", f"{vm['id']}?{COMPUTE}")
    assert status == 403 and answer["error"]["code"] == "AuthorizationFailed"
    assert "Microsoft.Compute/virtualMachines/read" in answer["error"]["message"]
    # a Reader at the resource group may read it, and may not assign roles
    status, _ = arm.call(
        "PUT",
        f"/subscriptions/{sub}/resourceGroups/{vm['resourceGroup']}/providers/Microsoft.Authorization/"
        f"roleAssignments/{uuid.uuid4()}?{AUTHZ}",
        {
            "properties": {
                "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
                "acdd72a7-3385-48ef-bd42-f606fba81ae7",
                "principalId": stranger_id,
            }
        },
    )
    assert status == 201
    assert stranger.get(f"{vm['id']}?{COMPUTE}")["name"] == vm["name"]
    status, answer = stranger.call(
        "PUT",
        f"{vm['id']}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?{AUTHZ}",
        {
            "properties": {
                "roleDefinitionId": f"/providers/Microsoft.Authorization/roleDefinitions/{CRYPTO_USER}",
                "principalId": str(uuid.uuid4()),
            }
        },
    )
    assert status == 403 and answer["error"]["code"] == "AuthorizationFailed"


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "code"),
    [
        ("GET", "/subscriptions", None, 400, "MissingApiVersionParameter"),
        ("GET", "/subscriptions?api-version=1999-01-01", None, 400, "InvalidApiVersionParameter"),
        (
            "GET",
            "/subscriptions/{sub}/providers/Microsoft.Nope/things?api-version=2022-04-01",
            None,
            404,
            "NoRegisteredProviderFound",
        ),
        (
            "GET",
            "/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.Compute/virtualMachines?"
            + COMPUTE,
            None,
            404,
            "SubscriptionNotFound",
        ),
        (
            "PUT",
            "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/"
            f"{uuid.uuid4()}?{AUTHZ}",
            b"{not json",
            400,
            "InvalidRequestContent",
        ),
        (
            "PUT",
            "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/not-a-guid?" + AUTHZ,
            b"{}",
            400,
            "InvalidRoleAssignmentId",
        ),
        (
            "PUT",
            "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/"
            f"{uuid.uuid4()}?{AUTHZ}",
            b'{"properties": {"roleDefinitionId": 5, "principalId": []}}',
            400,
            "InvalidRoleAssignmentParameter",
        ),
        (
            "GET",
            "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/a%2F..?"
            + COMPUTE,
            None,
            400,
            "InvalidResourceName",
        ),
        (
            "PATCH",
            "/subscriptions/{sub}/resourceGroups/hsmcert-emulator/providers/Microsoft.Compute/"
            "virtualMachines/none?" + COMPUTE,
            b"[]",
            400,
            "InvalidRequestContent",
        ),
        (
            "PATCH",
            "/subscriptions/{sub}/resourceGroups/hsmcert-emulator/providers/Microsoft.Compute/"
            "virtualMachines/none?" + COMPUTE,
            b'{"identity": {"type": "SystemAssigned"}}',
            404,
            "ResourceNotFound",
        ),
    ],
)
def test_bad_requests_get_resource_managers_error_shape(
    arm: Arm, sub: str, method: str, path: str, raw: bytes | None, status: int, code: str
) -> None:
    got, answer = arm.call(method, path.replace("{sub}", sub), raw=raw)
    assert got == status and answer["error"]["code"] == code, answer
    assert set(answer["error"]) == {"code", "message"}


def test_machines_are_made_by_vm_add_not_through_resource_manager(arm: Arm, sub: str) -> None:
    path = f"/subscriptions/{sub}/resourceGroups/rg-new/providers/Microsoft.Compute/virtualMachines/{unique('vm')}"
    status, answer = arm.call("PUT", f"{path}?{COMPUTE}", {"location": "westeurope", "properties": {}})
    assert status == 404 and answer["error"]["code"] == "ResourceNotFound"


def test_lists_come_in_one_page(emulator: Any, arm: Arm, sub: str) -> None:
    for _ in range(3):
        add_vm(emulator, unique("many"), group="rg-many")
    listed = arm.get(
        f"/subscriptions/{sub}/resourceGroups/rg-many/providers/Microsoft.Compute/virtualMachines?{COMPUTE}"
    )
    assert len(listed["value"]) >= 3 and "nextLink" not in listed


def test_resource_groups_and_the_generic_resource_list(emulator: Any, arm: Arm, sub: str) -> None:
    name = unique("findme")
    vm = add_vm(emulator, name, group="rg-found")
    groups = [
        g["name"] for g in arm.get(f"/subscriptions/{sub}/resourcegroups?api-version=2021-04-01")["value"]
    ]
    assert {"hsmcert-emulator", "rg-found"} <= set(groups)
    assert (
        arm.get(f"/subscriptions/{sub}/resourceGroups/rg-found?api-version=2021-04-01")["name"] == "rg-found"
    )
    status, missing = arm.call(
        "GET", f"/subscriptions/{sub}/resourceGroups/{unique('rg')}?api-version=2021-04-01"
    )
    assert status == 404 and missing["error"]["code"] == "ResourceGroupNotFound"
    found = arm.get(f"/subscriptions/{sub}/resources?$filter=name eq '{name}'&api-version=2021-04-01")[
        "value"
    ]
    assert [(r["id"], r["type"]) for r in found] == [(vm["id"], "Microsoft.Compute/virtualMachines")]
    assert found[0]["identity"]["principalId"] == vm["principalId"]
    vaults = arm.get(
        f"/subscriptions/{sub}/resources?$filter=resourceType eq 'Microsoft.KeyVault/vaults'&api-version=2021-04-01"
    )["value"]
    assert "local-vault" in [v["name"] for v in vaults]


def test_faults_reach_resource_manager(emulator: Any, arm: Arm) -> None:
    emulator.set_faults(throttle=1.0, retry_after=0, services=["arm"])
    try:
        status, answer = arm.call("GET", "/subscriptions?api-version=2022-12-01")
        assert status == 429, answer
        from azure.keyvault.keys import KeyClient

        client = KeyClient(
            emulator.url("vault"),
            Token(emulator.token(audience="https://vault.azure.net")),
            connection_verify=str(emulator.ca),
        )
        assert list(client.list_properties_of_keys()) is not None  # other services answer
    finally:
        emulator.set_faults()
    assert arm.call("GET", "/subscriptions?api-version=2022-12-01")[0] == 200


def test_a_vault_made_through_resource_manager(emulator: Any, arm: Arm, sub: str) -> None:
    from hsmcert.emulator.auth import TENANT_ID

    name = f"made{uuid.uuid4().hex[:10]}"
    vault_id = (
        f"/subscriptions/{sub}/resourceGroups/hsmcert-emulator/providers/Microsoft.KeyVault/vaults/{name}"
    )
    vm = add_vm(emulator, unique("vm"))
    admin = emulator.principal_id("admin")
    body = {
        "location": "westeurope",
        "properties": {
            "tenantId": TENANT_ID,
            "sku": {"family": "A", "name": "standard"},
            "enableRbacAuthorization": False,
            "accessPolicies": [
                {"tenantId": TENANT_ID, "objectId": admin, "permissions": {"keys": ["all"]}},
                {
                    "tenantId": TENANT_ID,
                    "objectId": vm["principalId"],
                    "permissions": {"keys": ["get", "sign"]},
                },
            ],
        },
    }
    status, made = arm.call("PUT", f"{vault_id}?{KV}", body)
    assert status == 201, made
    assert made["properties"]["vaultUri"] == emulator.url("vault", name) + "/"
    assert made["properties"]["enableRbacAuthorization"] is False
    from azure.keyvault.keys import KeyClient

    def client(principal: str) -> Any:
        return KeyClient(
            emulator.url("vault", name),
            Token(emulator.token(principal, "https://vault.azure.net")),
            connection_verify=str(emulator.ca),
        )

    key = client("admin").create_ec_key("k", curve="P-256")
    assert client(vm["principalId"]).get_key("k").id == key.id
    with pytest.raises(HttpResponseError) as refused:
        client(str(uuid.uuid4())).get_key("k")
    assert refused.value.status_code == 403 and "AccessDenied" in str(refused.value)
    status, again = arm.call("PUT", f"{vault_id}?{KV}", {"properties": {"enableRbacAuthorization": True}})
    assert status == 200 and again["properties"]["enableRbacAuthorization"] is True


@pytest.mark.parametrize(
    ("group", "name", "tenant", "code"),
    [
        ("rg-other", "goodname1", True, "InvalidResourceGroup"),
        ("hsmcert-emulator", "a--b", True, "VaultNameNotValid"),
        ("hsmcert-emulator", "9starts", True, "VaultNameNotValid"),
        ("hsmcert-emulator", "goodname2", False, "BadRequest"),
    ],
)
def test_a_vault_resource_manager_cannot_make(
    arm: Arm, sub: str, group: str, name: str, tenant: bool, code: str
) -> None:
    from hsmcert.emulator.auth import TENANT_ID

    path = f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.KeyVault/vaults/{name}?{KV}"
    status, answer = arm.call(
        "PUT", path, {"properties": {"tenantId": TENANT_ID if tenant else str(uuid.uuid4())}}
    )
    assert status == 400 and answer["error"]["code"] == code, answer

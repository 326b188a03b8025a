"""The instance metadata service (IMDS) of the machine the emulator plays "self" for (``hsmcert emulator vm
add NAME --self``): what a program on an Azure VM reads from ``http://169.254.169.254``, on plain HTTP at
``HSMCERT_IMDS_URL``.

- ``GET /metadata/instance?api-version=...`` and ``/metadata/instance/compute``: the machine's
  ``subscriptionId``, ``resourceGroupName``, ``name``, ``vmId``, ``resourceId``... (JSON only);
- ``GET /metadata/identity/oauth2/token?api-version=...&resource=...``: a token of the machine's managed
  identity (its system-assigned one, or the user-assigned one ``client_id``/``object_id``/``msi_res_id``
  names), as azure-identity's ``ManagedIdentityCredential`` asks for it (``AZURE_POD_IDENTITY_AUTHORITY_HOST``
  points it here).

Each request needs the header ``Metadata: true``; errors have IMDS's shape (``{"error": "..."}`` for the
instance, ``{"error", "error_description"}`` for tokens).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from hsmcert.emulator import auth
from hsmcert.emulator.api import ApiError, Request, Response
from hsmcert.emulator.arm import LOCATION

if TYPE_CHECKING:
    from hsmcert.emulator.process import Emulator

INSTANCE_VERSIONS = (
    "2017-03-01",
    "2017-04-02",
    "2017-08-01",
    "2017-10-01",
    "2017-12-01",
    "2018-02-01",
    "2018-04-02",
    "2018-10-01",
    "2019-02-01",
    "2019-03-11",
    "2019-04-30",
    "2019-06-01",
    "2019-06-04",
    "2019-08-01",
    "2019-08-15",
    "2019-11-01",
    "2020-06-01",
    "2020-07-15",
    "2020-09-01",
    "2020-10-01",
    "2020-12-01",
    "2021-01-01",
    "2021-02-01",
    "2021-03-01",
    "2021-05-01",
    "2021-10-01",
    "2021-11-01",
    "2021-11-15",
    "2021-12-13",
    "2023-07-01",
    "2023-11-15",
    "2024-03-15",
)
TOKEN_VERSIONS = ("2018-02-01", "2019-08-01", "2019-11-01", "2020-06-01", "2021-02-01")


class ImdsError(ApiError):
    """An answer in IMDS's error shape."""

    def __init__(
        self, status: int, error: str, description: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(status, error, description or error)
        self.shape: dict[str, Any] = {"error": error, **(extra or {})}
        if description is not None:
            self.shape["error_description"] = description

    def body(self) -> dict[str, Any]:
        return self.shape


def check(req: Request, headers: dict[str, str], versions: tuple[str, ...]) -> None:
    """The ``Metadata: true`` header and a known api-version (IMDS's 400 else)."""
    if headers.get("metadata", "").lower() != "true":
        raise ImdsError(400, "Bad request. Required metadata header not specified")
    if req.query.get("api-version") not in versions:
        raise ImdsError(
            400,
            "Bad request. api-version is invalid or was not specified in the request. For more information "
            "refer to aka.ms/azureimds",
            extra={"newest-versions": list(reversed(versions[-3:]))},
        )


def _self_machine(emulator: Emulator) -> dict[str, Any]:
    machine = emulator.arm.machines.get(emulator.arm.self_machine or "")
    if machine is None:
        raise ImdsError(
            404,
            "Not found: the emulator plays no machine; make one with hsmcert emulator vm add NAME --self",
        )
    return machine


def compute(emulator: Emulator, machine: dict[str, Any]) -> dict[str, Any]:
    kind = machine["kind"]
    name, resource, scale_set = machine["name"], machine["id"], ""
    if kind == "vmss":  # the first instance of the scale set
        name, resource, scale_set = (
            f"{machine['name']}_0",
            f"{machine['id']}/virtualMachines/0",
            machine["name"],
        )
    return {
        "azEnvironment": "AzurePublicCloud",
        "location": LOCATION,
        "name": name,
        "offer": "",
        "osType": "Linux",
        "provider": "Microsoft.HybridCompute" if kind == "arc" else "Microsoft.Compute",
        "resourceGroupName": machine["group"],
        "resourceId": resource,
        "subscriptionId": emulator.arm.subscription,
        "tags": "",
        "tagsList": [],
        "vmId": machine["vmId"],
        "vmScaleSetName": scale_set,
        "vmSize": "Standard_B2s",
        "zone": "",
    }


# --- handlers: each answers one route of :data:`hsmcert.emulator.routes.IMDS` -------------------------------


def instance(emulator: Emulator, req: Request) -> Response:
    machine = _self_machine(emulator)
    return Response(200, {"compute": compute(emulator, machine), "network": {"interface": []}})


def instance_compute(emulator: Emulator, req: Request) -> Response:
    return Response(200, compute(emulator, _self_machine(emulator)))


def token(emulator: Emulator, req: Request) -> Response:
    resource = req.query.get("resource")
    if not resource:
        raise ImdsError(400, "invalid_request", "Required query variable 'resource' is missing")
    machine = _self_machine(emulator)
    identity = machine.get("identity") or {}
    users = [
        record
        for ident in identity.get("userAssignedIdentities") or {}
        if (record := emulator.arm.identities.get(ident.lower())) is not None
    ]
    wanted = {k: req.query[k].lower() for k in ("client_id", "object_id", "msi_res_id") if req.query.get(k)}
    if wanted:
        principal = next(
            (
                u["principalId"]
                for u in users
                if wanted.get("client_id") == u["clientId"]
                or wanted.get("object_id") == u["principalId"]
                or wanted.get("msi_res_id") == u["id"].lower()
            ),
            None,
        )
        if principal is None and wanted.get("object_id") == identity.get("principalId"):
            principal = identity["principalId"]
    else:
        principal = identity.get("principalId") or (users[0]["principalId"] if len(users) == 1 else None)
    if principal is None:
        raise ImdsError(400, "invalid_request", "Identity not found")
    lifetime = emulator.token_lifetime
    now = int(time.time())
    client_id = next((u["clientId"] for u in users if u["principalId"] == principal), principal)
    emulator.audit.record(
        operation="imds-token", principal=principal, result="ok", status=200, audience=resource
    )
    return Response(
        200,
        {
            "access_token": auth.issue(emulator.token_secret, principal, resource, lifetime),
            "client_id": client_id,
            "expires_in": str(lifetime),
            "expires_on": str(now + lifetime),
            "ext_expires_in": str(lifetime),
            "not_before": str(now),
            "resource": resource,
            "token_type": "Bearer",
        },
    )

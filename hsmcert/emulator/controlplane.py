"""The control endpoint's operations (plain HTTP on 127.0.0.1, guarded by the secret in ``identity.secret``):
managed-identity tokens (``/msi/token``, App-Service style), status, new services, faults, stop.

:mod:`hsmcert.emulator.control` is the other side: how other processes start, find and call the emulator.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from hsmcert.emulator import arm, arm_compute, auth
from hsmcert.emulator.api import ApiError, Request, Response
from hsmcert.emulator.faults import parse_faults

if TYPE_CHECKING:
    from hsmcert.emulator.process import Emulator


def msi_token(emulator: Emulator, req: Request) -> Response:
    """A token of the administrator, or of the identity ``client_id`` / ``object_id`` / ``principal_id``
    names (a user-assigned identity's client id is its principal's)."""
    resource = req.query.get("resource", "https://managedhsm.azure.net")
    principal = (
        req.query.get("client_id")
        or req.query.get("object_id")
        or req.query.get("principal_id")
        or auth.ADMIN
    )
    principal = arm_compute.principal_of(emulator, principal) or principal
    lifetime = emulator.token_lifetime
    answer = {
        "access_token": auth.issue(emulator.token_secret, principal, resource, lifetime),
        "expires_on": int(time.time()) + lifetime,
        "resource": resource,
        "token_type": "Bearer",
        "client_id": auth.principal_id(principal),
    }
    return Response(200, answer)


def status(emulator: Emulator, req: Request) -> Response:
    answer: dict[str, Any] = {
        "pid": os.getpid(),
        "data_dir": str(emulator.data_dir),
        "control_port": emulator.control_port,
        "login_port": emulator.login_port,
        "login_url": f"https://127.0.0.1:{emulator.login_port}",
        "services": [
            {"kind": s.kind, "name": s.name, "url": f"https://127.0.0.1:{s.port}", "keys": len(s.keys)}
            for s in emulator.services.values()
        ],
        "faults": emulator.faults.to_dict(),
        "token_lifetime": emulator.token_lifetime,
        "arm": arm_settings(emulator),
    }
    return Response(200, answer)


def set_tokens(emulator: Emulator, req: Request) -> Response:
    """``{"lifetime": seconds}``: the lifetime of the tokens issued from now on (1 s to 30 days)."""
    lifetime = req.json().get("lifetime")
    if not isinstance(lifetime, int) or isinstance(lifetime, bool):
        raise ApiError(400, "BadParameter", "lifetime must be a whole number of seconds.")
    emulator.token_lifetime = auth.check_lifetime(lifetime, "lifetime")
    emulator.audit.record(operation="tokens", principal=None, result="ok", lifetime=lifetime)
    return Response(200, {"lifetime": lifetime})


def add_service(emulator: Emulator, req: Request) -> Response:
    body = req.json()
    service = emulator.service(str(body.get("kind")), str(body.get("name")))
    return Response(200, {"kind": service.kind, "name": service.name, "port": service.port})


def set_faults(emulator: Emulator, req: Request) -> Response:
    emulator.faults = parse_faults(req.json())
    emulator.audit.record(operation="faults", principal=None, result="ok", faults=emulator.faults.to_dict())
    return Response(200, emulator.faults.to_dict())


def set_arm(emulator: Emulator, req: Request) -> Response:
    """Resource Manager settings: ``propagation_delay`` (seconds before a new role assignment takes
    effect), ``vault_access_policies`` (vaults made from now on use access policies), ``self`` (the machine
    the instance metadata service describes: ``{"kind", "name", "group"}``, or null)."""
    body = req.json()
    unknown = set(body) - {"propagation_delay", "vault_access_policies", "self"}
    if unknown:
        raise ApiError(400, "BadParameter", f"Unknown setting {sorted(unknown)[0][:40]!r}.")
    if "propagation_delay" in body:
        delay = body["propagation_delay"]
        if not isinstance(delay, int | float) or isinstance(delay, bool):
            raise ApiError(400, "BadParameter", "propagation_delay must be a number of seconds.")
        emulator.arm.propagation_delay = arm.check_delay(float(delay))
        emulator.arm.set_config("propagation", emulator.arm.propagation_delay)
    if "vault_access_policies" in body:
        if not isinstance(body["vault_access_policies"], bool):
            raise ApiError(400, "BadParameter", "vault_access_policies must be true or false.")
        emulator.options.vault_access_policies = body["vault_access_policies"]
    if "self" in body:
        arm_compute.set_self(emulator, body["self"])
    emulator.audit.record(operation="arm-settings", principal=None, result="ok", **body)
    return Response(200, arm_settings(emulator))


def arm_settings(emulator: Emulator) -> dict[str, Any]:
    return {
        "url": f"https://127.0.0.1:{emulator.arm_port}",
        "subscription": emulator.arm.subscription,
        "propagation_delay": emulator.arm.propagation_delay,
        "vault_access_policies": emulator.options.vault_access_policies,
        "self": (emulator.arm.machines.get(emulator.arm.self_machine or "") or {}).get("id"),
        "imds_url": f"http://127.0.0.1:{emulator.imds_port}",
    }


def list_machines(emulator: Emulator, req: Request) -> Response:
    machines = sorted(
        list(emulator.arm.machines.values()), key=lambda m: (m["name"].lower(), m["group"].lower())
    )
    return Response(200, {"machines": [arm_compute.machine_summary(emulator, m) for m in machines]})


def _text(body: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ApiError(400, "BadParameter", f"{name} must be a non-empty string.")
    return value


def add_machine(emulator: Emulator, req: Request) -> Response:
    body = req.json()
    kind = _text(body, "kind") or "vm"
    name = _text(body, "name", required=True)
    assert name is not None
    users = body.get("user_assigned") or []
    if not isinstance(users, list) or not all(isinstance(u, str) and u for u in users) or len(users) > 20:
        raise ApiError(
            400, "BadParameter", "user_assigned must be a list of at most 20 identity names or ids."
        )
    identity = body.get("identity", True)
    if not isinstance(identity, bool):
        raise ApiError(400, "BadParameter", "identity must be true or false.")
    machine = arm_compute.add_machine(emulator, kind, name, _text(body, "group"), users, identity)
    if body.get("self"):
        arm_compute.set_self(emulator, {"kind": kind, "name": name, "group": machine["group"]})
    emulator.audit.record(operation="vm-add", principal=None, result="ok", resource=machine["id"])
    return Response(200, arm_compute.machine_summary(emulator, machine))


def remove_machine(emulator: Emulator, req: Request) -> Response:
    body = req.json()
    name = _text(body, "name", required=True)
    assert name is not None
    machine = arm_compute.remove_machine(emulator, _text(body, "kind"), name, _text(body, "group"))
    emulator.audit.record(operation="vm-remove", principal=None, result="ok", resource=machine["id"])
    return Response(200, {"removed": machine["id"]})


def stop(emulator: Emulator, req: Request) -> Response:
    # A moment later, so that this answer is written before the servers close.
    threading.Timer(0.1, emulator.stopping.set).start()
    return Response(200, {"stopping": True})

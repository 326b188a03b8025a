"""The control endpoint's operations (plain HTTP on 127.0.0.1, guarded by the secret in ``identity.secret``):
managed-identity tokens (``/msi/token``, App-Service style), status, new services, faults, stop.

:mod:`hsmcert.emulator.control` is the other side: how other processes start, find and call the emulator.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from hsmcert.emulator import auth
from hsmcert.emulator.api import ApiError, Request, Response
from hsmcert.emulator.faults import parse_faults

if TYPE_CHECKING:
    from hsmcert.emulator.process import Emulator


def msi_token(emulator: Emulator, req: Request) -> Response:
    """A token of the administrator, or of the identity ``client_id`` / ``object_id`` / ``principal_id`` names."""
    resource = req.query.get("resource", "https://managedhsm.azure.net")
    principal = (
        req.query.get("client_id")
        or req.query.get("object_id")
        or req.query.get("principal_id")
        or auth.ADMIN
    )
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


def stop(emulator: Emulator, req: Request) -> Response:
    # A moment later, so that this answer is written before the servers close.
    threading.Timer(0.1, emulator.stopping.set).start()
    return Response(200, {"stopping": True})

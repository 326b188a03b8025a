"""Managed HSM account settings (``/settings``): a fixed set of named values, read and written by
administrators (the built-in Managed HSM Administrator role's ``settings`` data actions), kept in the store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hsmcert.emulator.api import ApiError, Request, Response, bad

if TYPE_CHECKING:
    from hsmcert.emulator.service import Service

DEFAULTS = {"AllowKeyManagementOperationsThroughARM": ("boolean", "false")}
"""Every setting a Managed HSM has: name -> (type, value of a new HSM)."""


def _known(name: str) -> str:
    """The setting's own spelling (names compare case-insensitively); 404 for one the HSM does not have."""
    for known in DEFAULTS:
        if known.lower() == name.lower():
            return known
    raise ApiError(404, "NotFound", f"The setting '{name[:100]}' does not exist.")


def _setting(service: Service, name: str) -> dict[str, str]:
    kind, default = DEFAULTS[name]
    return {"name": name, "value": service.settings.get(name, default), "type": kind}


def list_settings(service: Service, req: Request) -> Response:
    return Response(200, {"settings": [_setting(service, name) for name in DEFAULTS]}, audit={})


def get_setting(service: Service, req: Request) -> Response:
    name = _known(req.params["setting"])
    return Response(200, _setting(service, name), audit={"setting": name})


def update_setting(service: Service, req: Request) -> Response:
    name = _known(req.params["setting"])
    value: Any = req.json().get("value")
    if not isinstance(value, str) or value.lower() not in ("true", "false"):
        raise bad(f"The setting {name} takes the value 'true' or 'false'.")
    service.set_setting(name, value.lower())
    return Response(200, _setting(service, name), audit={"setting": name})

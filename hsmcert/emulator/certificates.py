"""Key Vault certificates (vault services only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hsmcert.emulator.api import ApiError, Request

if TYPE_CHECKING:
    from hsmcert.emulator.service import Service


class Certificates:
    def __init__(self, service: Service) -> None:
        self.service = service

    def route(self, req: Request, segs: list[str]) -> tuple[str | None, str | None, Any]:
        raise ApiError(404, "NotFound", f"The route {req.method} {req.path[:200]} does not exist.")

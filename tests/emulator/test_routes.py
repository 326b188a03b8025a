"""The route tables: every Managed HSM route checks the caller's role for its own operation before it runs,
unknown paths are 404 and other methods 405, and every route answers through the real dispatcher."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsmcert.azure import roles
from hsmcert.emulator import routes
from hsmcert.emulator.api import ApiError, Request
from hsmcert.emulator.process import Emulator


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = Emulator(Path(tmp_path_factory.mktemp("routes")))
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.shutdown()


def _path(pattern: str) -> str:
    """A concrete path of a pattern: a key ``k``, a version, a fresh GUID, the scope ``/keys``."""
    path = pattern.replace("{scope*}", "/keys").replace("{version?}", "0" * 32).replace("{version}", "0" * 32)
    return re.sub(r"\{[a-z]+\}", lambda m: "k" if m.group(0) == "{name}" else str(uuid.uuid4()), path)


def _request(emulator: Emulator, method: str, path: str, principal: str) -> Request:
    return Request(method, path, {"api-version": "7.5"}, b"{}", "https://127.0.0.1", principal, principal)


HSM_ROUTES = [
    *routes.KEYS,
    *routes.ATTESTATION,
    *routes.DELETED_KEYS,
    *routes.RANDOM,
    *routes.RBAC,
    *routes.SETTINGS,
]


@pytest.mark.parametrize("route", HSM_ROUTES, ids=lambda r: f"{r.method} {r.pattern}")
def test_every_hsm_route_checks_the_role_of_its_operation_first(own: Emulator, route: routes.Route) -> None:
    service = own.service("managedhsm", "routes")
    stranger = str(uuid.uuid5(uuid.NAMESPACE_URL, "no roles"))
    with pytest.raises(ApiError) as refused:
        routes.dispatch(service, _request(own, route.method, _path(route.pattern), stranger))
    action = roles.PREFIX + (route.action or roles.OPERATION_ACTIONS[route.operation])
    assert (refused.value.status, refused.value.inner) == (403, "ForbiddenByRbac")
    assert f"Action: '{action}'" in refused.value.message


@pytest.mark.parametrize("kind", ["managedhsm", "vault"])
def test_every_route_is_reached_by_its_method_and_others_are_405(own: Emulator, kind: str) -> None:
    service = own.service(kind, "routes")
    table = HSM_ROUTES if kind == "managedhsm" else [*routes.KEYS, *routes.DELETED_KEYS, *routes.CERTIFICATES]
    for route in table:
        path = _path(route.pattern)
        found = routes.find(service, _request(own, route.method, path, own.admin))
        assert found.pattern == route.pattern, (route, found)
        with pytest.raises(ApiError) as wrong:
            routes.find(service, _request(own, "TRACE", path + "/", own.admin))
        assert (wrong.value.status, wrong.value.code) == (405, "MethodNotAllowed")
    for path in ("/", "/nothing", "/keys/k/v/sign/more", "/providers/Microsoft.Authorization/x"):
        with pytest.raises(ApiError) as missing:
            routes.find(service, _request(own, "GET", path, own.admin))
        assert (missing.value.status, missing.value.code) == (404, "NotFound")


def test_literals_match_case_insensitively_and_names_keep_their_case(own: Emulator) -> None:
    service = own.service("managedhsm", "routes")
    req = _request(own, "POST", "/KEYS/MixedCase/Create", own.admin)
    assert routes.find(service, req).operation == "create" and req.params == {"name": "MixedCase"}

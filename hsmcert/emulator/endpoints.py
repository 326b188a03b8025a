"""What each of the emulator's ports answers, around its routes (:mod:`hsmcert.emulator.routes`):

- a service's data plane: faults on purpose, the bearer token (or the 401 challenge the Azure SDKs
  answer), :func:`~hsmcert.emulator.routes.dispatch`, and one audit line per operation;
- the login endpoint: the emulator's tenant only, refusals in Entra's shape;
- the control endpoint: the managed-identity secret for ``/msi/token``, the control secret for the rest.

Each ``*_endpoint`` function returns the ``answer`` function of one :class:`~hsmcert.emulator.http11.Server`.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from hsmcert.emulator import auth, login, routes
from hsmcert.emulator.api import ApiError, Request, Response
from hsmcert.emulator.http11 import Answer, Incoming
from hsmcert.errors import HsmcertError

if TYPE_CHECKING:
    from hsmcert.emulator.process import Emulator
    from hsmcert.emulator.service import Service

_HOST_RE = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}$")


def challenge_resource(host: str, kind: str) -> str:
    """The resource a 401 challenge names, so that the SDK's ``verify_challenge_resource`` check passes.

    The SDK wants the request host to end with ``"." + resource host``: for ``127.0.0.1:8443`` that is
    ``0.0.1:8443``, for ``hsm.localhost:8443`` it is ``localhost:8443``. A bare ``localhost`` cannot pass
    (clients then need ``verify_challenge_resource=False``): answer Azure's own audience.

    >>> challenge_resource("127.0.0.1:8443", "managedhsm")
    'https://0.0.1:8443'
    >>> challenge_resource("hsm.localhost:9000", "vault")
    'https://localhost:9000'
    >>> challenge_resource("localhost:9000", "vault")
    'https://vault.azure.net'
    """
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if "." in hostname and not hostname.startswith("["):
        return "https://" + host.split(".", 1)[1]
    return "https://managedhsm.azure.net" if kind == "managedhsm" else "https://vault.azure.net"


# --- a service's data plane ------------------------------------------------------------------------------


def service_endpoint(emulator: Emulator, service: Service) -> Answer:
    def answer(incoming: Incoming) -> Response:
        faulty = _fault(emulator, service.name)
        if faulty is not None:
            return faulty
        host = incoming.headers.get("host", "")
        if not _HOST_RE.match(host):
            host = f"127.0.0.1:{service.port}"
        authorization = incoming.headers.get("authorization", "")
        if authorization[:7].lower() != "bearer ":
            return _challenge(
                host, service.kind, authorization, "AKV10000: Request is missing a Bearer or PoP token."
            )
        resource = challenge_resource(host, service.kind)
        try:
            caller = emulator.verifier.verify(
                authorization[7:].strip(),
                lambda aud: auth.audience_accepted(aud, service.kind, resource),
            )
        except auth.InvalidToken as refused:
            return _challenge(host, service.kind, authorization, str(refused))
        req = _request(incoming, host, caller)
        try:
            response = routes.dispatch(service, req)
        except ApiError as exc:
            response = Response(exc.status, exc.body(), exc.headers, audit=_failure_audit(service, req))
            if response.audit is not None:
                response.audit["code"] = exc.code
        except HsmcertError as exc:
            response = Response(400, ApiError(400, "BadParameter", exc.message).body())
        if response.audit is not None:
            status = response.status
            emulator.audit.record(
                principal=caller.object_id,
                principal_name=caller.name,
                service=service.name,
                kind=service.kind,
                **{"key": None, "version": None, **response.audit},
                result="ok" if status < 400 else ("denied" if status in (401, 403) else "error"),
                status=status,
            )
        return response

    return answer


def _request(incoming: Incoming, host: str, caller: auth.Caller) -> Request:
    """The request of an authenticated caller, as the handlers see it."""
    return Request(
        incoming.method,
        incoming.path,
        incoming.query,
        incoming.body,
        f"https://{host}",
        caller.object_id,
        caller.name,
    )


def _fault(emulator: Emulator, name: str) -> Response | None:
    """The answer a fault on purpose gives instead of the real one (None: no fault this time); ``name``: the
    service's, or ``arm`` for Resource Manager."""
    faults = emulator.faults
    if not faults.active() or not faults.applies_to(name):
        return None
    if faults.latency_ms:
        time.sleep(faults.latency_ms / 1000)
    fault = faults.decide()
    if fault == "drop":
        return Response(drop=True)
    if fault == "throttle":
        error = ApiError(429, "Throttled", "Rate limit exceeded (fault injected by the emulator).")
        return Response(429, error.body(), {"Retry-After": str(faults.retry_after)})
    if fault is not None:
        error = ApiError(503, "ServiceUnavailable", "Service unavailable (fault injected by the emulator).")
        return Response(503, error.body())
    return None


def _challenge(host: str, kind: str, authorization: str, message: str) -> Response:
    """The 401 Azure answers a request without a valid token: the challenge the SDKs read, and why."""
    challenge = f'Bearer authorization="https://login.microsoftonline.com/", resource="{challenge_resource(host, kind)}"'
    if authorization:
        challenge += ', error="invalid_token"'
    error = ApiError(401, "Unauthorized", message)
    return Response(401, error.body(), {"WWW-Authenticate": challenge})


def _failure_audit(service: Service, req: Request) -> dict[str, Any] | None:
    """What a refused or failed request records: its operation and key when the route is known."""
    try:
        route = routes.find(service, req)
    except ApiError:
        return None
    entry: dict[str, Any] = {"operation": route.operation, "key": req.params.get("name")}
    if route.operation in routes.CRYPTO_OPERATIONS and req.params.get("version"):
        entry["version"] = req.params["version"]
    return entry


# --- the login endpoint ----------------------------------------------------------------------------------


def login_endpoint(emulator: Emulator) -> Answer:
    def answer(incoming: Incoming) -> Response:
        base_url = f"https://127.0.0.1:{emulator.login_port}"
        req = Request(incoming.method, incoming.path, incoming.query, incoming.body, base_url)
        try:
            login.check_tenant(incoming.path.split("/")[1])
            try:
                route, req.params = routes.LOGIN_ROUTER.match(incoming.method, incoming.path)
            except routes.NoRoute as missing:
                raise login.LoginError(missing.status, "invalid_request", 900561, missing.message) from None
            return route.handler(emulator, req)
        except login.LoginError as exc:
            return Response(exc.status, exc.body())

    return answer


# --- Resource Manager -------------------------------------------------------------------------------------


def arm_endpoint(emulator: Emulator) -> Answer:
    """Resource Manager: a bearer token for https://management.azure.com, then
    :func:`~hsmcert.emulator.routes.dispatch_arm`; errors in ARM's shape; writes in the audit log."""

    def answer(incoming: Incoming) -> Response:
        from hsmcert.emulator.arm import AUDIENCES

        faulty = _fault(emulator, "arm")
        if faulty is not None:
            return faulty
        authorization = incoming.headers.get("authorization", "")
        if authorization[:7].lower() != "bearer ":
            return _arm_refusal(
                "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        try:
            caller = emulator.verifier.verify(authorization[7:].strip())
        except auth.InvalidToken as refused:
            code = "ExpiredAuthenticationToken" if "expired" in str(refused) else "InvalidAuthenticationToken"
            return _arm_refusal(code, str(refused).split(": ", 1)[-1])
        if caller.audience.rstrip("/") not in AUDIENCES:
            return _arm_refusal(
                "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource '{caller.audience[:200]}'. "
                "It should exactly match with one of the allowed audiences "
                + ",".join(f"'{a}/','{a}'" for a in AUDIENCES)
                + ".",
            )
        host = incoming.headers.get("host", "")
        if not _HOST_RE.match(host):
            host = f"127.0.0.1:{emulator.arm_port}"
        req = _request(incoming, host, caller)
        try:
            response = routes.dispatch_arm(emulator, req)
        except ApiError as exc:
            response = Response(
                exc.status, {"error": {"code": exc.code, "message": exc.message}}, exc.headers
            )
        except HsmcertError as exc:
            response = Response(400, {"error": {"code": "BadRequest", "message": exc.message}})
        if incoming.method != "GET" or response.status in (401, 403):
            emulator.audit.record(
                operation="arm",
                method=incoming.method,
                path=incoming.path[:300],
                principal=caller.object_id,
                principal_name=caller.name,
                result="ok" if response.status < 400 else ("denied" if response.status == 403 else "error"),
                status=response.status,
            )
        return response

    return answer


def _arm_refusal(code: str, message: str) -> Response:
    challenge = (
        'Bearer authorization_uri="https://login.microsoftonline.com/", error="invalid_token", '
        f'error_description="{message[:200].replace(chr(34), chr(39))}"'
    )
    return Response(401, {"error": {"code": code, "message": message}}, {"WWW-Authenticate": challenge})


# --- the instance metadata service ------------------------------------------------------------------------


def imds_endpoint(emulator: Emulator) -> Answer:
    """The instance metadata service of the machine the emulator plays (:mod:`hsmcert.emulator.imds`)."""

    def answer(incoming: Incoming) -> Response:
        from hsmcert.emulator import imds

        base_url = f"http://127.0.0.1:{emulator.imds_port}"
        req = Request(incoming.method, incoming.path, incoming.query, incoming.body, base_url)
        try:
            try:
                route, req.params = routes.IMDS_ROUTER.match(incoming.method, incoming.path)
            except routes.NoRoute as missing:
                raise imds.ImdsError(
                    missing.status, "Not found" if missing.status == 404 else "Bad request"
                ) from None
            versions = imds.TOKEN_VERSIONS if route.operation == "imds-token" else imds.INSTANCE_VERSIONS
            imds.check(req, incoming.headers, versions)
            return route.handler(emulator, req)
        except imds.ImdsError as exc:
            return Response(exc.status, exc.body())

    return answer


# --- the control endpoint --------------------------------------------------------------------------------


def control_endpoint(emulator: Emulator) -> Answer:
    def answer(incoming: Incoming) -> Response:
        base_url = f"http://127.0.0.1:{emulator.control_port}"
        req = Request(incoming.method, incoming.path, incoming.query, incoming.body, base_url)
        try:
            route, req.params = routes.CONTROL_ROUTER.match(incoming.method, incoming.path)
        except routes.NoRoute as missing:
            error = missing.api_error()
            return Response(error.status, error.body())
        if route.operation == "msi-token":
            if incoming.headers.get("x-identity-header") != emulator.identity_secret:
                return Response(
                    401, {"error": "invalid_request", "error_description": "Wrong X-IDENTITY-HEADER."}
                )
        elif incoming.headers.get("x-hsmcert-control") != emulator.identity_secret:
            return Response(
                401, {"error": {"code": "Unauthorized", "message": "Wrong or missing control secret."}}
            )
        try:
            return route.handler(emulator, req)
        except ApiError as exc:
            return Response(exc.status, exc.body())
        except HsmcertError as exc:
            return Response(400, ApiError(400, "BadParameter", exc.message).body())

    return answer

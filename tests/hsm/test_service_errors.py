"""Errors carry facts: azure-core exceptions are translated once (hsmcert.azure.errors) into hsmcert errors
whose status, service error code, Retry-After and transience the agent and the CLI decide on."""

from __future__ import annotations

import json
import ssl
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
import requests
import urllib3
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import HttpRequest, RequestsTransportResponse

from hsmcert.azure.errors import translate_azure_errors
from hsmcert.errors import (
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_PERMISSION,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    HsmcertError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
    TlsTrustError,
    UnreachableError,
    UsageError,
)

from .conftest import unique

URL = "https://contoso.managedhsm.azure.net"


def _response(status: int, code: str | None = None, headers: dict[str, str] | None = None) -> Any:
    """An azure-core transport response built from a requests response, as the SDK's transport makes it."""
    raw = requests.Response()
    raw.status_code = status
    raw.reason = "reason"
    raw.headers.update({"Content-Type": "application/json", **(headers or {})})
    body = {"error": {"code": code, "message": f"{code} said the service."}} if code else {}
    raw._content = json.dumps(body).encode()
    return RequestsTransportResponse(HttpRequest("POST", f"{URL}/keys/k/sign"), raw)


def _http(cls: type[HttpResponseError], status: int, code: str | None = None, **headers: str) -> Any:
    return cls(response=_response(status, code, headers))


def _untrusted() -> ServiceRequestError:
    """What the SDK's requests transport raises for an endpoint whose certificate does not verify."""
    cause = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1010)"
    )
    cause.verify_message = "self-signed certificate"
    cause.reason = "CERTIFICATE_VERIFY_FAILED"
    pool = urllib3.exceptions.MaxRetryError(None, "/keys/k", reason=urllib3.exceptions.SSLError(cause))  # type: ignore[arg-type]
    error = requests.exceptions.SSLError(pool)
    return ServiceRequestError(error, error=error)


def _refused() -> ServiceRequestError:
    cause = ConnectionRefusedError(111, "Connection refused")
    pool = urllib3.exceptions.MaxRetryError(
        None,  # type: ignore[arg-type]
        "/keys/k",
        reason=urllib3.exceptions.NewConnectionError(
            None, "Failed to establish a new connection: [Errno 111] Connection refused"
        ),  # type: ignore[arg-type]
    )
    pool.__cause__ = cause
    error = requests.exceptions.ConnectionError(pool)
    return ServiceRequestError(error, error=error)


def _later() -> str:
    """Retry-After as an HTTP date two minutes from now (when the case runs, not when it is collected)."""
    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=120), usegmt=True)


# (what the SDK raised, the hsmcert error, exit code, transient, status, code, retry_after)
CASES: list[tuple[str, Any, type[HsmcertError], int, bool, int | None, str | None, Any]] = [
    ("429 Retry-After 7", lambda: _http(HttpResponseError, 429, "Throttled", **{"Retry-After": "7"}),
     ServiceError, EXIT_UNREACHABLE, True, 429, "Throttled", 7.0),
    ("503 retry-after-ms", lambda: _http(HttpResponseError, 503, "ServiceUnavailable", **{"retry-after-ms": "1500"}),
     ServiceError, EXIT_UNREACHABLE, True, 503, "ServiceUnavailable", 1.5),
    ("429 Retry-After as a date", lambda: _http(HttpResponseError, 429, None, **{"Retry-After": _later()}),
     ServiceError, EXIT_UNREACHABLE, True, 429, "", "about 120"),
    ("500 without headers", lambda: _http(HttpResponseError, 500, "InternalError"),
     ServiceError, EXIT_UNREACHABLE, True, 500, "InternalError", None),
    ("502 bad Retry-After", lambda: _http(HttpResponseError, 502, None, **{"Retry-After": "soon"}),
     ServiceError, EXIT_UNREACHABLE, True, 502, "", None),
    ("409 conflict", lambda: _http(HttpResponseError, 409, "Conflict"),
     ServiceError, EXIT_FAILURE, False, 409, "Conflict", None),
    ("400 bad parameter", lambda: _http(HttpResponseError, 400, "BadParameter"),
     UsageError, EXIT_USAGE, False, None, None, None),
    ("404 key not found", lambda: _http(ResourceNotFoundError, 404, "KeyNotFound"),
     NotFoundError, EXIT_NOT_FOUND, False, None, None, None),
    ("403 RBAC", lambda: _http(HttpResponseError, 403, "Forbidden"),
     PermissionDeniedError, EXIT_PERMISSION, False, None, None, None),
    ("no token", lambda: ClientAuthenticationError("No credential could get a token."),
     PermissionDeniedError, EXIT_PERMISSION, False, None, None, None),
    ("untrusted certificate", _untrusted, TlsTrustError, EXIT_UNREACHABLE, False, None, None, None),
    ("connection refused", _refused, UnreachableError, EXIT_UNREACHABLE, True, None, None, None),
    ("connection dropped", lambda: ServiceResponseError("Connection aborted.", error=ConnectionResetError(104, "reset")),
     UnreachableError, EXIT_UNREACHABLE, True, None, None, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("raised", "kind", "exit_code", "transient", "status", "code", "retry_after"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_azure_exceptions_become_errors_with_facts(
    raised: Any,
    kind: type[HsmcertError],
    exit_code: int,
    transient: bool,
    status: int | None,
    code: str | None,
    retry_after: Any,
) -> None:
    with pytest.raises(HsmcertError) as caught, translate_azure_errors("managedhsm:contoso:k", "sign", URL):
        raise raised()
    error = caught.value
    assert type(error) is kind, error
    assert error.exit_code == exit_code
    assert error.transient is transient
    assert error.message and "\n" not in error.message
    if isinstance(error, ServiceError):
        assert (error.status, error.code) == (status, code)
        if retry_after == "about 120":
            assert error.retry_after is not None and 60 < error.retry_after <= 120
        else:
            assert error.retry_after == retry_after


def test_an_untrusted_certificate_names_the_cause_and_the_remedy() -> None:
    with pytest.raises(TlsTrustError) as caught, translate_azure_errors("managedhsm:contoso:k", "get", URL):
        raise _untrusted()
    assert caught.value.message == (
        f"The TLS certificate of managedhsm:contoso at {URL} is not trusted: "
        "certificate verify failed (self-signed certificate)."
    )
    assert "--ca-bundle" in (caught.value.remedy or "")


def test_an_untrusted_emulator_is_a_tls_trust_error(emulator: Any, rsa_ref: str) -> None:
    """The real chain of exceptions: the emulator's certificate checked against the public CAs."""
    import certifi

    from hsmcert.session import Session

    url = emulator.url("managedhsm", "local-hsm")
    with pytest.raises(TlsTrustError, match="is not trusted: certificate verify failed") as caught:
        Session(endpoint=url, ca_bundle=certifi.where()).open_key(rsa_ref, refresh=True)
    assert caught.value.transient is False


def test_throttling_after_the_retries_exits_5(emulator: Any, cli: Any) -> None:
    name = unique("throttled")
    emulator.url("managedhsm", name)
    emulator.set_faults(throttle=1.0, retry_after=0, services=[name])
    try:
        result = cli("key", "list", "--hsm", name)
    finally:
        emulator.set_faults()
    assert result.code == EXIT_UNREACHABLE, result
    assert "throttling requests (429)" in result.err

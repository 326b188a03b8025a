"""Azure SDK exceptions turned into hsmcert errors, once, with a remedy.

:func:`translate_azure_errors` wraps every call into the SDK: a 403 names the missing role, its scope and
the command that grants it; a 404 the missing key; an unreachable or untrusted endpoint the way to fix it.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import re
import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hsmcert.azure import roles
from hsmcert.errors import (
    HsmcertError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
    TlsTrustError,
    UnreachableError,
    UsageError,
)
from hsmcert.keyref import KeyRef, parse_keyref

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


def _target(target: KeyRef | str) -> tuple[str, str, str | None]:
    """(kind, service, key or None) of a reference, or of ``kind:service`` text."""
    if isinstance(target, KeyRef):
        return target.kind, target.service, target.key
    try:
        ref = parse_keyref(target)
        return ref.kind, ref.service, ref.key
    except UsageError:
        kind, _, rest = target.partition(":")
        service, _, key = rest.partition(":")
        return kind or "managedhsm", service or target, key or None


def _service_error_code(exc: Any) -> str:
    """The error code and inner code Key Vault put in the body ("Forbidden/ForbiddenByRbac")."""
    codes: list[str] = []
    error = getattr(exc, "error", None)
    while error is not None and len(codes) < 4:
        code = getattr(error, "code", None)
        if code:
            codes.append(str(code))
        error = getattr(error, "innererror", None) or getattr(error, "inner_error", None)
        if isinstance(error, dict):
            if error.get("code"):
                codes.append(str(error["code"]))
            break
    return "/".join(codes)


def _service_message(exc: Any) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    text = str(message).strip()
    # azure-core prefixes "(Code) message" and appends "Code: ..." lines: keep the first sentence.
    first = text.splitlines()[0] if text else ""
    if first.startswith("(") and ") " in first:
        first = first.split(") ", 1)[1]
    return first.rstrip(".")


def permission_remedy(
    kind: str, service: str, key: str | None, operation: str, credential: TokenCredential | None = None
) -> str:
    """The role, scope and command that would let the caller do ``operation`` on ``key``."""
    principal = _principal_hint(credential)
    if operation == "role management":
        role = roles.role_by_slug("policy-administrator") or roles.BUILTIN_ROLES[0]
        return (
            f"Role management needs the {role.name!r} role at scope '/'; ask an administrator of "
            f"{service} to assign it: az keyvault role assignment create --hsm-name {service} "
            f"--role {role.name!r} --scope / --assignee-object-id {principal}"
        )
    if kind == "vault" and operation.startswith("certificates/"):
        return (
            "A vault decides with Azure RBAC or an access policy, as it is set: assign 'Key Vault Certificate "
            f"User' (read) or 'Key Vault Certificates Officer' (create, merge, renew) on the vault {service} to "
            f"{principal} (az role assignment create), or give it the certificate permissions get, list, create "
            f"and update (az keyvault set-policy --name {service} --certificate-permissions ...)."
        )
    if kind == "vault":
        role = roles.role_for_operation(operation)
        target = f"--key vault:{service}:{key}" if key else f"--vault {service}"
        return (
            "A vault decides with Azure RBAC or an access policy, as it is set. Grant it (hsmcert does what the "
            f"vault uses): hsmcert grant --principal {principal} {target} --role {role.slug}"
        )
    role = roles.role_for_operation(operation)
    scope = roles.key_scope(key)
    action = roles.PREFIX + roles.OPERATION_ACTIONS.get(operation, "keys/read/action")
    key_opt = f"--key {key}" if key else "--scope /keys"
    return (
        f"The caller needs {action}, which the role {role.name!r} gives at scope {scope}. Grant it: "
        f"hsmcert grant --hsm {service} --principal {principal} {key_opt} --role {role.slug}"
    )


def _principal_hint(credential: TokenCredential | None = None) -> str:
    """The object id of the refused caller: from its credential's last token, else the latest token."""
    from hsmcert.azure.credentials import last_object_id

    claims = getattr(credential, "claims", None)
    oid = claims.get("oid") if isinstance(claims, dict) else None
    return str(oid or last_object_id() or "<object id from hsmcert whoami>")


@contextlib.contextmanager
def translate_azure_errors(
    target: KeyRef | str, operation: str, url: str | None = None, credential: TokenCredential | None = None
) -> Iterator[None]:
    """Turn azure-core exceptions raised inside the block into hsmcert errors with a remedy.

    ``target`` is a key reference (or ``kind:service`` text), ``operation`` the REST operation name
    (``get``, ``sign``, ``create``, ... as in :data:`hsmcert.azure.roles.OPERATION_ACTIONS`) or
    ``"role management"``; ``url`` the endpoint, for unreachable errors; ``credential`` the one used, so
    that a 403 remedy names its object id.
    """
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    kind, service, key = _target(target)
    where = f"{kind}:{service}"
    what = f"the key {key} in {where}" if key else where
    try:
        yield
    except HsmcertError:
        raise
    except ResourceNotFoundError as exc:
        code = _service_error_code(exc)
        if key and ("KeyNotFound" in code or "key" in _service_message(exc).lower() or not code):
            raise NotFoundError(
                f"There is no key {key} in {where}" + (f" ({_service_message(exc)})." if code else "."),
                f"List the keys with: hsmcert key list --{'hsm' if kind == 'managedhsm' else 'vault'} {service}",
            ) from exc
        raise NotFoundError(f"{where}: {_service_message(exc)}.") from exc
    except ClientAuthenticationError as exc:
        # A 401 from the service, or no credential could get a token.
        from hsmcert.azure.credentials import AUTH_REMEDY

        status = getattr(exc, "status_code", None)
        if status == 403:
            raise _forbidden(exc, kind, service, key, operation, what, credential) from exc
        raise PermissionDeniedError(
            f"Not signed in to {where}: {_service_message(exc)}.", AUTH_REMEDY
        ) from exc
    except HttpResponseError as exc:
        status = exc.status_code
        if status == 403:
            raise _forbidden(exc, kind, service, key, operation, what, credential) from exc
        if status == 401:
            from hsmcert.azure.credentials import AUTH_REMEDY

            raise PermissionDeniedError(
                f"{where} did not accept the token: {_service_message(exc)}.", AUTH_REMEDY
            ) from exc
        facts: dict[str, Any] = {
            "status": status,
            "code": _service_error_code(exc),
            "retry_after": retry_after(exc),
        }
        if status == 429:
            raise ServiceError(
                f"{where} is throttling requests (429) and the retries ran out.",
                "Wait and retry; spread the load or use the agent, which pools and paces requests.",
                **facts,
            ) from exc
        if status == 409:
            raise ServiceError(
                f"{what}: {_service_message(exc)}.",
                "A deleted key with this name may exist: recover or purge it, or choose another name.",
                **facts,
            ) from exc
        if status is not None and 400 <= status < 500 and status != 408:
            raise UsageError(f"{where} refused {operation} on {what}: {_service_message(exc)}.") from exc
        raise ServiceError(
            f"{where} failed {operation} on {what} (HTTP {status}): {_service_message(exc)}.",
            "Retry later; if it persists, check the service health.",
            **facts,
        ) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        untrusted = _certificate_failure(exc)
        if untrusted is not None:
            detail = untrusted.verify_message or untrusted.reason or "certificate verify failed"
            raise TlsTrustError(
                f"The TLS certificate of {where}"
                + (f" at {url}" if url else "")
                + f" is not trusted: certificate verify failed ({detail}).",
                "Give the CA of that endpoint with --ca-bundle or HSMCERT_CA_BUNDLE (the emulator's: "
                "$HSMCERT_EMULATOR_CA).",
            ) from exc
        raise UnreachableError(
            f"Cannot reach {where}" + (f" at {url}" if url else "") + f": {_network_reason(exc)}.",
            "Check the network, the endpoint (hsmcert doctor) and, for the emulator, that it runs: "
            'eval "$(hsmcert emulator start)"',
        ) from exc


def retry_after(exc: BaseException) -> float | None:
    """The seconds an HTTP error response asked to wait (``retry-after-ms``, ``x-ms-retry-after-ms`` or
    ``Retry-After`` in seconds or as an HTTP date), or None."""
    return retry_after_header(getattr(getattr(exc, "response", None), "headers", None))


def retry_after_header(headers: Any) -> float | None:
    """The seconds a response's headers (a case-insensitive mapping, or None) ask to wait; see :func:`retry_after`."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        seconds: float | None
        try:
            seconds = float(value) / scale
        except ValueError:
            seconds = _http_date_delay(str(value))
        if seconds is not None and math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _http_date_delay(value: str) -> float | None:
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


def _certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind a transport error (azure-core wraps requests, which wraps
    urllib3, which wraps ssl), or None when the failure was something else."""
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 32:
        found = pending.pop()
        if not isinstance(found, BaseException) or id(found) in seen:
            continue
        seen.add(id(found))
        if isinstance(found, ssl.SSLCertVerificationError):
            return found
        pending.extend((found.__cause__, found.__context__, getattr(found, "inner_exception", None)))
        pending.append(getattr(found, "reason", None))  # urllib3's MaxRetryError
        pending.extend(found.args)
    return None


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def _network_reason(exc: BaseException) -> str:
    """A short cause ("Connection refused", "timed out") from a requests/urllib3 error."""
    text = str(exc)
    found = _ERRNO.search(text)
    if found:
        return found.group(1).strip().rstrip(".")
    if "timed out" in text.lower():
        return "timed out"
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def _forbidden(
    exc: Any,
    kind: str,
    service: str,
    key: str | None,
    operation: str,
    what: str,
    credential: TokenCredential | None = None,
) -> HsmcertError:
    message = _service_message(exc)
    lowered = message.lower()
    code = _service_error_code(exc)
    what = what[:1].upper() + what[1:]
    if "disabled" in lowered or "KeyDisabled" in code:
        return PermissionDeniedError(f"{what} is disabled.", enable_remedy(kind, service, key))
    if "expired" in lowered or "not yet valid" in lowered or "KeyExpired" in code or "KeyNotYetValid" in code:
        return PermissionDeniedError(
            f"{what} is outside its validity period ({message}).",
            "Use a valid key version or change its dates: az keyvault key set-attributes "
            f"--{'hsm-name' if kind == 'managedhsm' else 'vault-name'} {service} --name {key} --expires ...",
        )
    if "OperationNotAllowed" in code or ("not allowed" in lowered and "key_ops" in lowered):
        return PermissionDeniedError(
            f"{what} does not allow {operation}: {message}.",
            "The key's permitted operations (key_ops) exclude it; create a key for this purpose.",
        )
    return PermissionDeniedError(
        f"{service} refused {operation} on {what[:1].lower() + what[1:]}: permission denied (403{', ' + code if code else ''}).",
        permission_remedy(kind, service, key, operation, credential),
    )


def enable_remedy(kind: str, service: str, key: str | None) -> str:
    flag = "--hsm-name" if kind == "managedhsm" else "--vault-name"
    return f"Enable it if it should be used: az keyvault key set-attributes {flag} {service} --name {key} --enabled true"


__all__ = [
    "enable_remedy",
    "permission_remedy",
    "retry_after",
    "retry_after_header",
    "translate_azure_errors",
]

"""A small Azure Resource Manager client: JSON over HTTPS with a bearer token, as ARM's REST API documents it.

hsmcert asks Resource Manager only what ``grant`` needs (subscriptions, machines and their identities, vaults,
role assignments and definitions, access policies). Every URL is built from percent-encoded path segments and
one ``api-version`` (:func:`arm_url`), so no name can walk to another resource or change the API version.
Failures are hsmcert errors: 401/403 :class:`~hsmcert.errors.PermissionDeniedError`, 404
:class:`~hsmcert.errors.NotFoundError`, no answer :class:`~hsmcert.errors.UnreachableError`, any other
answer :class:`~hsmcert.errors.ServiceError` with ARM's error code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from hsmcert import syntax
from hsmcert.errors import (
    HsmcertError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
    TlsTrustError,
    UnreachableError,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from hsmcert.azure.clients import TransportOptions

AZURE_ARM_URL = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
"""The token audience of Resource Manager (the emulator's Resource Manager accepts the same)."""

# The api-versions hsmcert speaks, per resource provider (as Azure's REST reference lists them).
SUBSCRIPTIONS_API = "2022-12-01"
COMPUTE_API = "2024-07-01"
ARC_API = "2024-07-10"
KEYVAULT_API = "2023-07-01"
AUTHORIZATION_API = "2022-04-01"
MAX_PAGES = 100
"""Pages of a list followed at most (``nextLink``), so a service that never stops cannot keep hsmcert busy."""


def arm_url(base: str, segments: Sequence[str], api_version: str, query: dict[str, str] | None = None) -> str:
    """A Resource Manager URL: each path segment percent-encoded, then ``api-version`` and ``query``.

    >>> arm_url("https://arm", ["subscriptions", "s", "resourceGroups", "a/../b?x#"], "1")
    'https://arm/subscriptions/s/resourceGroups/a%2F..%2Fb%3Fx%23?api-version=1'
    >>> arm_url("https://arm", ["x"], "1", {"$filter": "principalId eq 'p'"})
    "https://arm/x?api-version=1&$filter=principalId%20eq%20'p'"
    """
    path = "/".join(syntax.url_segment(segment) for segment in segments)
    url = f"{base.rstrip('/')}/{path}?api-version={syntax.url_segment(api_version)}"
    for name, value in (query or {}).items():
        url += f"&{name}={quote(value, safe=chr(39))}"
    return url


def id_segments(resource_id: str) -> list[str]:
    """The path segments of a resource id (``/subscriptions/s/...``), unencoded."""
    return [part for part in resource_id.split("/") if part]


@dataclass(frozen=True)
class ArmEndpoint:
    """Where Resource Manager is (``url``) and the CA bundle to trust for it (None: the default)."""

    url: str = AZURE_ARM_URL
    ca_bundle: str | None = None
    source: str = "default"


class Arm:
    """Resource Manager for one credential: ``get``/``put``/``patch``/``delete`` of resource ids, ``list``
    following ``nextLink``. Built by :meth:`hsmcert.session.Session.arm`."""

    def __init__(
        self, endpoint: ArmEndpoint, credential: TokenCredential, options: TransportOptions | None = None
    ) -> None:
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import BearerTokenCredentialPolicy
        from azure.core.pipeline.transport import RequestsTransport

        from hsmcert.azure.clients import TransportOptions, _retry_policy

        options = options or TransportOptions()
        self.endpoint = endpoint
        self.base = endpoint.url.rstrip("/")
        self._transport = RequestsTransport(
            connection_verify=endpoint.ca_bundle or True,
            connection_timeout=options.connection_timeout,
            read_timeout=options.read_timeout,
        )
        self._client: Any = PipelineClient(
            base_url=self.base,
            transport=self._transport,
            policies=[_retry_policy(options.retry), BearerTokenCredentialPolicy(credential, ARM_SCOPE)],
        )

    def close(self) -> None:
        self._transport.close()

    def url(self, segments: Sequence[str], api_version: str, query: dict[str, str] | None = None) -> str:
        return arm_url(self.base, segments, api_version, query)

    def request(
        self,
        method: str,
        segments: Sequence[str],
        api_version: str,
        *,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
        what: str = "",
    ) -> dict[str, Any] | None:
        """One request; the JSON answer (None for 204 or an empty body). ``what`` names the resource in
        errors (default: its path). A 404 is a NotFoundError."""
        return self._send(method, self.url(segments, api_version, query), body, what or "/".join(segments))

    def get(self, segments: Sequence[str], api_version: str, *, what: str = "") -> dict[str, Any]:
        return self.request("GET", segments, api_version, what=what) or {}

    def find(self, segments: Sequence[str], api_version: str, *, what: str = "") -> dict[str, Any] | None:
        """GET, or None when the resource does not exist."""
        try:
            return self.get(segments, api_version, what=what)
        except NotFoundError:
            return None

    def list(
        self,
        segments: Sequence[str],
        api_version: str,
        *,
        query: dict[str, str] | None = None,
        what: str = "",
    ) -> Iterator[dict[str, Any]]:
        """Every item of a list (``value``), page after page."""
        url: str | None = self.url(segments, api_version, query)
        label = what or "/".join(segments)
        for _ in range(MAX_PAGES):
            if url is None:
                return
            page = self._send("GET", url, None, label) or {}
            yield from (item for item in page.get("value") or [] if isinstance(item, dict))
            following = page.get("nextLink")
            url = str(following) if following and str(following).startswith(self.base + "/") else None

    def _send(self, method: str, url: str, body: dict[str, Any] | None, what: str) -> dict[str, Any] | None:
        from azure.core.exceptions import AzureError, ClientAuthenticationError, ServiceRequestError
        from azure.core.rest import HttpRequest

        request = HttpRequest(method, url, json=body)
        try:
            response = self._client.send_request(request)
        except ClientAuthenticationError as exc:
            from hsmcert.azure.credentials import AUTH_REMEDY

            raise PermissionDeniedError(
                f"No token for Azure Resource Manager: {_first_line(exc)}.", AUTH_REMEDY
            ) from exc
        except ServiceRequestError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise TlsTrustError(
                    f"The TLS certificate of Azure Resource Manager at {self.base} is not trusted.",
                    "Give its CA with REQUESTS_CA_BUNDLE (the emulator's: $HSMCERT_EMULATOR_CA).",
                ) from exc
            raise self._unreachable(exc) from exc
        except AzureError as exc:
            raise self._unreachable(exc) from exc
        status = response.status_code
        try:
            answer = response.json() if response.content else None
        except ValueError:
            answer = None
        if status < 300:
            return answer if isinstance(answer, dict) else None
        error = (answer or {}).get("error") if isinstance(answer, dict) else None
        code = str((error or {}).get("code") or "")
        message = str((error or {}).get("message") or response.reason or "").strip().rstrip(".")
        said = f"{code}: {message}" if code else message or f"HTTP {status}"
        if status == 404:
            raise NotFoundError(f"Azure Resource Manager has no {what} ({said}).")
        if status in (401, 403):
            raise PermissionDeniedError(
                f"Azure Resource Manager refused {method} on {what} ({status}, {said}).",
                "The caller needs a role on that scope that allows it (Reader to look up, "
                "User Access Administrator or Owner to assign roles); hsmcert whoami names the caller.",
            )
        raise ServiceError(
            f"Azure Resource Manager failed {method} on {what} (HTTP {status}, {said}).",
            "Retry later." if status >= 500 or status == 429 else None,
            status=status,
            code=code,
        )

    def _unreachable(self, exc: BaseException) -> HsmcertError:
        return UnreachableError(
            f"Cannot reach Azure Resource Manager at {self.base}: {_first_line(exc)}.",
            "Check the network (and HSMCERT_ARM_URL if set); --dry-run prints the az commands instead.",
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200].rstrip(".") if text else type(exc).__name__


__all__ = ["ARM_SCOPE", "AZURE_ARM_URL", "Arm", "ArmEndpoint", "arm_url", "id_segments"]

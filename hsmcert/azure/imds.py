"""The Azure instance metadata service (IMDS) of the machine hsmcert runs on: what the machine is, and tokens
of its managed identity.

``http://169.254.169.254`` on an Azure VM; ``HSMCERT_IMDS_URL`` names another address (the emulator's). The
service is link-local: requests never go through a proxy, and each carries the ``Metadata: true`` header.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from hsmcert.errors import HsmcertError, PermissionDeniedError, UnreachableError, UsageError

IMDS_URL = "http://169.254.169.254"
INSTANCE_API = "2021-02-01"
IDENTITY_API = "2018-02-01"
_TIMEOUT = 5.0


def _base(environ: Mapping[str, str]) -> str:
    base = (environ.get("HSMCERT_IMDS_URL") or IMDS_URL).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"HSMCERT_IMDS_URL {base[:80]!r} is not an http:// or https:// URL.")
    return base


def _get(url: str, what: str) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Metadata": "true"})  # noqa: S310 - http(s) only (_base)
    try:
        with opener.open(request, timeout=_TIMEOUT) as response:
            body = json.loads(response.read(1 << 20))
    except urllib.error.HTTPError as exc:
        detail = exc.read(4096).decode(errors="replace").strip()[:200]
        raise PermissionDeniedError(
            f"The instance metadata service refused {what} ({exc.code}: {detail}).",
            "Check that the machine has that managed identity (az vm identity show).",
        ) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UnreachableError(
            f"No instance metadata service answered at {url.split('/metadata', 1)[0]} ({exc}).",
            "Run it on the Azure machine itself, or name the machine: --vm NAME "
            "(HSMCERT_IMDS_URL sets another address).",
        ) from exc
    if not isinstance(body, dict):
        raise HsmcertError(f"The instance metadata service answered {what} with something not an object.")
    return body


def this_machine(environ: Mapping[str, str]) -> tuple[str, str, str, str]:
    """(kind ``vm`` or ``vmss``, name, resource group, subscription) of the machine hsmcert runs on."""
    from hsmcert.azure.discovery import Machine

    compute = _get(
        f"{_base(environ)}/metadata/instance/compute?api-version={INSTANCE_API}&format=json", "--vm self"
    )
    subscription = str(compute.get("subscriptionId") or "")
    group = str(compute.get("resourceGroupName") or "")
    scale_set = str(compute.get("vmScaleSetName") or "")
    name = scale_set or str(compute.get("name") or "")
    kind = "vmss" if scale_set else "vm"
    Machine(kind, name, group, subscription)  # every name is checked before it goes into a URL
    return kind, name, group, subscription


class ImdsCredential:
    """A token credential of this machine's managed identity (a user-assigned one by ``client_id``),
    straight from the instance metadata service; tokens are kept per scope until five minutes before expiry."""

    def __init__(self, environ: Mapping[str, str], client_id: str | None = None) -> None:
        self._base = _base(environ)
        self._client_id = client_id
        self._tokens: dict[str, Any] = {}

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        resource = scopes[0].removesuffix("/.default") if scopes else ""
        kept = self._tokens.get(resource)
        if kept is not None and kept.expires_on - 300 > time.time():
            return kept
        query = {"api-version": IDENTITY_API, "resource": resource}
        if self._client_id:
            query["client_id"] = self._client_id
        body = _get(f"{self._base}/metadata/identity/oauth2/token?{urlencode(query)}", "a token")
        token = AccessToken(str(body.get("access_token", "")), int(float(body.get("expires_on") or 0)))
        self._tokens[resource] = token
        return token

    def close(self) -> None:
        self._tokens.clear()


__all__ = ["IMDS_URL", "ImdsCredential", "this_machine"]

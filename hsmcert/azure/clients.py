"""The Azure SDK clients of one (endpoint, CA bundle, credential), shared within a process.

The clients of one (endpoint, CA bundle, credential) share one transport (one HTTPS connection pool) and
one credential (one token cache). By default that is the SDK's own transport and pipeline, with hsmcert's
timeouts and retries; :func:`configure_service_clients` tunes the clients built afterwards, and lets a
long-running process (the agent) put a :class:`Pipeline` of its own in place of the SDK's. The clients
of the :data:`MAX_SERVICES` most recently used endpoints are kept.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hsmcert.lru import LruDict

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from hsmcert.config import Endpoint


class Pipeline(Protocol):
    """A transport and policies to use instead of the SDK's default ones."""

    def transport(self, url: str, ca_bundle: str | None) -> Any:
        """The azure-core ``HttpTransport`` shared by every client of ``url``."""

    def policies(self, credential: TokenCredential) -> list[Any]:
        """The complete policy list of one client (authentication and retries included)."""

    def release(self, url: str) -> None:
        """Forget what is kept for ``url`` beyond its transport (its clients were dropped)."""


@dataclass
class ServiceClients:
    """The SDK clients of one (endpoint, CA bundle, credential), sharing one HTTPS connection pool."""

    url: str
    ca_bundle: str | None
    credential: TokenCredential = field(repr=False)  # its token cache stays out of reprs and tracebacks
    transport: Any
    key_client: Any
    pipeline: Pipeline | None = field(default=None, repr=False)

    def client_kwargs(self) -> dict[str, Any]:
        """Keywords for any other azure-keyvault client of this endpoint: the shared transport and retries."""
        return {"transport": self.transport, **_RETRY}

    def keys_kwargs(self) -> dict[str, Any]:
        """Keywords for another azure-keyvault-keys client (a CryptographyClient) of this endpoint."""
        if self.pipeline is not None:
            return {"transport": self.transport, "policies": self.pipeline.policies(self.credential)}
        return self.client_kwargs()


_RETRY: dict[str, Any] = {"retry_total": 4, "retry_backoff_factor": 0.4, "retry_backoff_max": 8}
_TIMEOUTS: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 60}
_PIPELINE: list[Pipeline | None] = [None]
MAX_SERVICES = 64
"""Endpoints whose clients are kept; the least recently used beyond that are dropped (with their connection
pool), so requests for ever new service names cannot grow a long-running process (the agent)."""


def _dropped(key: tuple[str, str | None, int], service: ServiceClients) -> None:
    if service.pipeline is not None:
        service.pipeline.release(service.url)


_services: LruDict[tuple[str, str | None, int], ServiceClients] = LruDict(MAX_SERVICES, _dropped)
_services_lock = threading.Lock()


def configure_service_clients(
    *, pipeline: Pipeline | None = None, timeouts: dict[str, Any] | None = None, **retry: Any
) -> None:
    """Tune the SDK clients built after this call (used by the agent).

    ``pipeline``: a transport and policies to use instead of the SDK's; ``timeouts``: the transport's
    ``connection_timeout`` and ``read_timeout`` (seconds, per HTTP request); ``retry``: azure-core
    RetryPolicy keywords (``retry_total``, ``retry_status``, ``timeout``, ...).
    """
    with _services_lock:
        if pipeline is not None:
            _PIPELINE[0] = pipeline
        _TIMEOUTS.update(timeouts or {})
        _RETRY.update(retry)


def _default_transport(ca_bundle: str | None) -> Any:
    """The SDK's default transport (requests), verifying against ``ca_bundle`` (else requests' CAs)."""
    from azure.core.pipeline.transport import RequestsTransport

    return RequestsTransport(connection_verify=ca_bundle or True, **_TIMEOUTS)


def service_clients(endpoint: Endpoint, credential: TokenCredential | str | None = None) -> ServiceClients:
    """The shared clients for ``endpoint`` (built on first use).

    ``credential``: None (``get_credential()``), a credential name, or any azure-core token credential.
    """
    from hsmcert.azure.credentials import get_credential

    if credential is None or isinstance(credential, str):
        credential = get_credential(credential)
    key = (endpoint.url, endpoint.ca_bundle, id(credential))
    with _services_lock:
        found = _services.get(key)
        if found is not None:
            return found
        from azure.keyvault.keys import KeyClient

        pipeline = _PIPELINE[0]
        if pipeline is None:
            transport = _default_transport(endpoint.ca_bundle)
            kwargs: dict[str, Any] = {"transport": transport, **_RETRY}
        else:
            transport = pipeline.transport(endpoint.url, endpoint.ca_bundle)
            kwargs = {"transport": transport, "policies": pipeline.policies(credential)}
        key_client = KeyClient(endpoint.url, credential, **kwargs)
        service = ServiceClients(
            endpoint.url, endpoint.ca_bundle, credential, transport, key_client, pipeline
        )
        _services[key] = service
        return service


__all__ = ["Pipeline", "ServiceClients", "configure_service_clients", "service_clients"]

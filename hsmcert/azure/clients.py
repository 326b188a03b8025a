"""The Azure SDK clients of one (endpoint, CA bundle, credential), shared within a process.

The clients, their HTTPS connection pool and the token cache are shared per (endpoint, CA bundle,
credential); :func:`configure_service_clients` tunes the pipeline of the clients built afterwards.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hsmcert.azure.challenges import seed_challenge
from hsmcert.azure.transport import PooledTransport

if TYPE_CHECKING:
    from hsmcert.config import Endpoint


@dataclass
class ServiceClients:
    """The SDK clients of one (endpoint, CA bundle, credential), sharing one HTTPS connection pool."""

    url: str
    ca_bundle: str | None
    credential: Any = field(repr=False)  # its token cache stays out of reprs and tracebacks
    transport: Any
    key_client: Any

    def client_kwargs(self) -> dict[str, Any]:
        """Keywords for any other azure-keyvault client of this endpoint: the shared transport and retries."""
        return {"transport": self.transport, **_RETRY}

    def lean_kwargs(self) -> dict[str, Any]:
        """Keywords for a keys client with hsmcert's short pipeline (see :func:`_policies`)."""
        return {"transport": self.transport, "policies": _policies(self.credential)}


_RETRY: dict[str, Any] = {"retry_total": 4, "retry_backoff_factor": 0.4, "retry_backoff_max": 8}
_POOL: dict[str, Any] = {"pool_maxsize": 32, "pool_block": False}
_TIMEOUTS: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 60}
_services: dict[tuple[str, str | None, int], ServiceClients] = {}
_services_lock = threading.Lock()


def configure_service_clients(
    *, pool: dict[str, Any] | None = None, timeouts: dict[str, Any] | None = None, **retry: Any
) -> None:
    """Tune the SDK pipeline of the clients built after this call (used by the agent).

    ``pool``: ``pool_maxsize`` (connections kept per endpoint) and ``pool_block`` (True: callers wait for a
    free connection instead of opening more); ``timeouts``: the transport's ``connection_timeout`` and
    ``read_timeout`` (seconds, per HTTP request); ``retry``: azure-core RetryPolicy keywords
    (``retry_total``, ``retry_status``, ``timeout``, ...).
    """
    with _services_lock:
        _POOL.update(pool or {})
        _TIMEOUTS.update(timeouts or {})
        _RETRY.update(retry)


def _policies(credential: Any) -> list[Any]:
    """The pipeline of hsmcert's key clients: the SDK's own policies minus the ones that cost time on every
    request and do nothing here.

    Kept: request id, user agent, JSON decoding, retries (429/5xx with Retry-After, within ``timeout``) and the
    Key Vault challenge authentication (token cache, refresh before expiry). Left out: the proxy and
    redirect policies (the transport resolves proxies once; Key Vault does not redirect), custom hooks, and
    the network-trace policy (it would log the bearer token), and HTTP logging and distributed tracing,
    which are added back when the ``azure`` logger is enabled at INFO or a tracing implementation is
    configured when the clients are built.
    """
    import logging

    from azure.core.pipeline import policies
    from azure.core.settings import settings
    from azure.keyvault.keys._shared import ChallengeAuthPolicy

    chain: list[Any] = [
        policies.RequestIdPolicy(),
        policies.UserAgentPolicy(sdk_moniker="hsmcert"),
        policies.ContentDecodePolicy(),
        policies.RetryPolicy(**_RETRY),
        ChallengeAuthPolicy(credential),
    ]
    if settings.tracing_implementation() is not None:
        chain.append(policies.DistributedTracingPolicy())
    if logging.getLogger("azure").isEnabledFor(logging.INFO):
        # HttpLoggingPolicy redacts the Authorization header; the network-trace policy would log the bearer
        # token in the clear, so it is never added.
        chain.append(policies.HttpLoggingPolicy())
    return chain


def service_clients(endpoint: Endpoint, credential: Any = None) -> ServiceClients:
    """The shared clients for ``endpoint`` (built on first use)."""
    from hsmcert.azure.credentials import get_credential

    if credential is None or isinstance(credential, str):
        credential = get_credential(credential)
    key = (endpoint.url, endpoint.ca_bundle, id(credential))
    with _services_lock:
        found = _services.get(key)
        if found is not None:
            return found
        from azure.keyvault.keys import KeyClient

        transport = PooledTransport(endpoint.url, ca_bundle=endpoint.ca_bundle, **_TIMEOUTS, **_POOL)
        key_client = KeyClient(endpoint.url, credential, transport=transport, policies=_policies(credential))
        service = ServiceClients(endpoint.url, endpoint.ca_bundle, credential, transport, key_client)
        _services[key] = service
        seed_challenge(endpoint.url)
        return service


__all__ = ["ServiceClients", "configure_service_clients", "service_clients"]

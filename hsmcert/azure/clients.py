"""The Azure SDK clients of one endpoint and credential, sharing one transport (one HTTPS connection pool).

A :class:`~hsmcert.session.Session` builds one :class:`ServiceClients` per endpoint with its
:class:`TransportOptions`, and keeps those of the :data:`MAX_SERVICES` endpoints it used last; nothing here
is shared between sessions. By default the clients use the SDK's own transport and pipeline, with hsmcert's
timeouts and retries; a long-running process (the agent) gives a :class:`Pipeline` of its own instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hsmcert.azure.errors import translate_azure_errors
from hsmcert.azure.keycache import CachePolicy, KeyCache

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from hsmcert.config import Endpoint
    from hsmcert.keyref import KeyRef


class Pipeline(Protocol):
    """A transport and policies to use instead of the SDK's default ones."""

    def transport(self, url: str, ca_bundle: str | None, cache: CachePolicy) -> Any:
        """The azure-core ``HttpTransport`` shared by every client of ``url`` (``cache``: the session's
        public-key cache policy, for whatever the pipeline keeps on disk with the public keys)."""

    def policies(self, credential: TokenCredential) -> list[Any]:
        """The complete policy list of one client (authentication and retries included)."""

    def release(self, url: str) -> None:
        """Forget what is kept for ``url`` beyond its transport (its clients were dropped)."""


MAX_SERVICES = 64
"""Endpoints whose clients a session keeps; the least recently used beyond that are dropped (with their
connection pool), so requests for ever new service names cannot grow a long-running process (the agent)."""


@dataclass(frozen=True)
class TransportOptions:
    """How a session's SDK clients talk HTTP: ``connection_timeout``/``read_timeout`` (seconds, per request),
    ``retry`` (azure-core ``RetryPolicy`` keywords: ``retry_total``, ``timeout``, ...) and ``pipeline`` (a
    transport and policies of the caller's, e.g. the agent's pooled one; None: the SDK's own)."""

    connection_timeout: float = 10.0
    read_timeout: float = 60.0
    retry: Mapping[str, Any] = field(
        default_factory=lambda: {
            "retry_total": 4,
            "retry_status": 4,  # azure-core's default of 3 would end a 429/503 streak one attempt early
            "retry_backoff_factor": 0.4,
            "retry_backoff_max": 8,
        }
    )
    pipeline: Pipeline | None = None


@dataclass
class ServiceClients:
    """The SDK clients of one (endpoint, CA bundle, credential), sharing one HTTPS connection pool, and the
    public-key cache of the session that built them."""

    url: str
    ca_bundle: str | None
    credential: TokenCredential = field(repr=False)  # its token cache stays out of reprs and tracebacks
    transport: Any
    key_client: Any
    options: TransportOptions = field(default_factory=TransportOptions)
    cache: KeyCache = field(default_factory=KeyCache, repr=False)
    closed: bool = field(default=False, init=False)
    """Whether :meth:`close` was called: the connection pool is closed and a new request fails."""

    @classmethod
    def build(
        cls, endpoint: Endpoint, credential: TokenCredential, options: TransportOptions, cache: KeyCache
    ) -> ServiceClients:
        """New clients of ``endpoint`` with ``options``; nothing is sent yet."""
        from azure.keyvault.keys import KeyClient

        pipeline = options.pipeline
        if pipeline is None:
            from azure.core.pipeline.transport import RequestsTransport

            transport = RequestsTransport(
                connection_verify=endpoint.ca_bundle or True,
                connection_timeout=options.connection_timeout,
                read_timeout=options.read_timeout,
            )
            kwargs: dict[str, Any] = {"transport": transport, "retry_policy": _retry_policy(options.retry)}
        else:
            transport = pipeline.transport(endpoint.url, endpoint.ca_bundle, cache.policy)
            kwargs = {"transport": transport, "policies": pipeline.policies(credential)}
        key_client = KeyClient(endpoint.url, credential, **kwargs)
        return cls(endpoint.url, endpoint.ca_bundle, credential, transport, key_client, options, cache)

    @property
    def pipeline(self) -> Pipeline | None:
        return self.options.pipeline

    def client_kwargs(self) -> dict[str, Any]:
        """Keywords for any other azure-keyvault client of this endpoint: the shared transport and retries."""
        return {"transport": self.transport, **self.options.retry}

    def keys_kwargs(self) -> dict[str, Any]:
        """Keywords for another azure-keyvault-keys client (a CryptographyClient) of this endpoint."""
        if self.pipeline is not None:
            return {"transport": self.transport, "policies": self.pipeline.policies(self.credential)}
        return self.client_kwargs()

    @contextlib.contextmanager
    def translating(self, target: KeyRef | str, operation: str) -> Iterator[None]:
        """:func:`~hsmcert.azure.errors.translate_azure_errors` for this endpoint and credential."""
        with translate_azure_errors(target, operation, self.url, self.credential):
            yield

    def close(self) -> None:
        """Close the connection pool (and let the pipeline forget the endpoint)."""
        self.closed = True
        if self.pipeline is not None:
            self.pipeline.release(self.url)
        with contextlib.suppress(Exception):
            self.transport.close()


def _retry_policy(settings: Mapping[str, Any]) -> Any:
    """azure-core's RetryPolicy with ``settings``, telling :mod:`hsmcert.progress` before each wait."""
    from azure.core.pipeline.policies import RetryPolicy

    from hsmcert import progress

    class NotingRetryPolicy(RetryPolicy[Any, Any]):
        def sleep(self, settings: Any, transport: Any, response: Any = None) -> None:
            if response is not None:
                delay = self.get_retry_after(response) or self.get_backoff_time(settings)
                status = response.http_response.status_code
                progress.note(f"the service answered {status}; retrying in {delay:.1f} s")
            else:
                progress.note(f"no answer; retrying in {self.get_backoff_time(settings):.1f} s")
            super().sleep(settings, transport, response)

    return NotingRetryPolicy(**settings)


__all__ = ["MAX_SERVICES", "Pipeline", "ServiceClients", "TransportOptions"]

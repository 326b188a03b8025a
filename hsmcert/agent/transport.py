"""The agent's HTTP transport: azure-core requests over one urllib3 connection pool per endpoint.

:class:`PooledPipeline` is the pipeline of the agent's session
(:func:`hsmcert.agent.backend.agent_transport`): a :class:`PooledTransport` per endpoint (bounded, optionally blocking pool; connect and read timeouts) and a
short pipeline. The CLI and library keep the SDKs' default transport; the private SDK internals this needs
are in :mod:`hsmcert.agent.sdkcompat`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hsmcert.agent import sdkcompat
from hsmcert.errors import UsageError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from hsmcert.azure.keycache import CachePolicy


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY`` with CIDR ranges), as
    requests reads it, resolved once per endpoint; a proxy given without a scheme is taken as http://."""
    from requests.utils import get_environ_proxies

    proxies = get_environ_proxies(url)
    proxy = proxies.get("https") or proxies.get("all")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``url``, the default port filled in."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def proxy_manager(proxy: str, options: dict[str, Any]) -> Any:
    """A urllib3 ProxyManager for ``proxy``, with its user and password (if any) sent as Basic auth."""
    from urllib.parse import unquote, urlsplit

    import urllib3

    parts = urlsplit(proxy)
    headers = None
    if parts.username:
        login = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers = urllib3.make_headers(proxy_basic_auth=login)
    try:
        return urllib3.ProxyManager(proxy, proxy_headers=headers, **options)
    except urllib3.exceptions.ProxySchemeUnknown as exc:
        raise UsageError(
            f"The proxy {parts.scheme}://{parts.hostname} from HTTPS_PROXY is not supported.",
            "Use an http:// or https:// proxy, or exclude the HSM with NO_PROXY.",
        ) from exc


def default_ca_bundle() -> str | None:
    """What requests would trust: ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, else certifi's bundle."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        import certifi

        return str(certifi.where())
    except ImportError:  # pragma: no cover - requests depends on certifi
        return None


class PooledTransport:
    """An azure-core ``HttpTransport`` over one urllib3 connection pool per endpoint.

    The SDK's default transport goes through requests, which costs about 0.3 ms of CPU per request on top
    of urllib3 (environment proxy and netrc lookups, hooks, cookie handling; measured in
    ``bench/provider.py``'s notes). This transport hands the request azure-core built straight to urllib3:
    kept-alive connections (TCP_NODELAY), at most ``pool_maxsize`` of them, ``pool_block`` to make callers
    wait for a free one, a connect and a read timeout on every request (azure-core's RetryPolicy lowers
    the connect timeout to what is left of its ``timeout``), certificate verification against ``ca_bundle``. The
    environment's proxy is resolved once, when the endpoint's clients are built.
    """

    def __init__(self, url: str, *, ca_bundle: str | None, connection_timeout: float, read_timeout: float,
                 pool_maxsize: int, pool_block: bool, cache: CachePolicy) -> None:  # fmt: skip
        import urllib3
        from azure.core.configuration import ConnectionConfiguration

        self.connection_config = ConnectionConfiguration(
            connection_timeout=connection_timeout, read_timeout=read_timeout
        )
        options: dict[str, Any] = {
            "maxsize": pool_maxsize,
            "block": pool_block,
            "cert_reqs": "CERT_REQUIRED",
        }
        trusted = ca_bundle or default_ca_bundle()
        if trusted and os.path.isdir(trusted):
            options["ca_cert_dir"] = trusted  # a c_rehash'ed directory, as requests accepts
        else:
            options["ca_certs"] = trusted
        proxy = environment_proxy(url)
        manager = proxy_manager(proxy, options) if proxy else urllib3.PoolManager(**options)
        self.pool = manager.connection_from_url(url)
        self._origin = _origin(url)
        self._manager = manager
        self._pool_wait = float(connection_timeout) + float(read_timeout)
        self._url = url
        self.url = url
        self.hot_path: Any = None
        """The :class:`~hsmcert.agent.hotpath.HotPath` of this endpoint (built by the backend on first use)."""
        self._cache = cache
        self._challenge_saved = False
        self._busy = 0  # requests in progress (waiting for a connection included)
        self._closing = False
        self._state = threading.Lock()

    def __enter__(self) -> PooledTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        """Clients share the transport: closing one client keeps the pool."""

    def open(self) -> None:
        pass

    def close(self) -> None:
        """Close the pool and its connections once no request is in progress (at once when none is): the
        session dropped the endpoint (or was closed). Shared by every client of the endpoint, so only the
        session's :class:`~hsmcert.azure.clients.ServiceClients` closes it; a request sent after that fails
        as a request error."""
        with self._state:
            self._closing = True
            idle = self._busy == 0
        if idle:
            self._shut()

    def _shut(self) -> None:
        self._manager.clear()
        self.pool.close()

    def sleep(self, duration: float) -> None:
        """What azure-core's RetryPolicy calls between attempts."""
        time.sleep(duration)

    def send(self, request: Any, **kwargs: Any) -> Any:
        from azure.core.exceptions import ServiceRequestError

        connect = kwargs.get("connection_timeout") or self.connection_config.timeout
        read = kwargs.get("read_timeout") or self.connection_config.read_timeout
        body = request.content if hasattr(request, "content") else request.data
        if isinstance(body, str):
            body = body.encode("utf-8")
        # origin-form target (also through a proxy: HTTPS goes through a CONNECT tunnel)
        url = request.url
        if _origin(url) != self._origin:  # this pool's connections go to one host only
            raise ServiceRequestError(f"{url.split('?', 1)[0]} is not on {self._origin}.")
        slash = url.find("/", url.find("://") + 3)
        target = url[slash:] if slash >= 0 else "/"
        with self.in_use():
            raw = self._urlopen(request, target, body, connect, read)
        response = sdkcompat.read_response(request, raw)
        if response.status_code < 400 and not self._challenge_saved:
            # the first success: the challenge the SDK elicited for this endpoint is known; remember it
            sdkcompat.save_challenge(self._url, self._cache)
            self._challenge_saved = True
        return response

    def _urlopen(self, request: Any, target: str, body: Any, connect: float, read: float) -> Any:
        import urllib3
        from azure.core.exceptions import (
            ServiceRequestError,
            ServiceRequestTimeoutError,
            ServiceResponseError,
            ServiceResponseTimeoutError,
        )
        from urllib3 import exceptions as u3

        try:
            return self.pool.urlopen(
                request.method,
                target,
                body=body,
                headers=dict(request.headers),
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=urllib3.Timeout(connect=connect, read=read),
                pool_timeout=min(self._pool_wait, connect + read),  # type: ignore[arg-type]
                preload_content=True,
            )
        except (
            u3.NewConnectionError,
            u3.EmptyPoolError,
            u3.ClosedPoolError,
            u3.ProxyError,
            u3.SSLError,
        ) as exc:
            raise ServiceRequestError(exc, error=exc) from exc
        except u3.ConnectTimeoutError as exc:
            raise ServiceRequestTimeoutError(exc, error=exc) from exc
        except u3.ReadTimeoutError as exc:
            raise ServiceResponseTimeoutError(exc, error=exc) from exc
        except (u3.ProtocolError, u3.HTTPError, OSError) as exc:
            raise ServiceResponseError(exc, error=exc) from exc

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Count a request in progress (waiting for a connection included): :meth:`close` shuts the pool
        only once none is."""
        with self._state:
            self._busy += 1
        try:
            yield
        finally:
            with self._state:
                self._busy -= 1
                last = self._closing and self._busy == 0
            if last:
                self._shut()

    @property
    def authenticated(self) -> bool:
        """Whether a request through the SDK has succeeded here: the service's challenge is known and
        checked, so a token can be put on a request made outside the SDK's pipeline."""
        return self._challenge_saved

    def borrow(self, timeout: float) -> Any:
        """One of the pool's connections (urllib3's, connected or not yet) for a request written outside
        urllib3 (:mod:`hsmcert.agent.hotpath`), within the pool's limit: waits up to ``timeout`` seconds for
        a free one (urllib3's EmptyPoolError then; ClosedPoolError once the pool is closed). Every
        connection borrowed goes back with :meth:`give_back`."""
        return self.pool._get_conn(timeout=timeout)

    def connect(self, conn: Any, timeout: float) -> None:
        """Open a borrowed connection that is not open (``conn.sock`` is None) as urllib3 does for its own
        requests: through the proxy's CONNECT tunnel when the environment names one, else directly; TLS
        verified against the pool's CAs. urllib3's errors as it raises them."""
        conn.timeout = timeout
        if self.pool.proxy is not None:
            self.pool._prepare_proxy(conn)  # the tunnel to the HSM, then TLS inside it
        else:
            conn.connect()

    def give_back(self, conn: Any, *, reusable: bool) -> None:
        """Return a borrowed connection; one that is not ``reusable`` (an answer not read to its end, an
        error, ``Connection: close``) is closed first, and the pool opens a new one when it needs it."""
        if not reusable:
            conn.close()
        self.pool._put_conn(conn)


class PooledPipeline:
    """The agent's SDK pipeline: a :class:`PooledTransport` per endpoint and a short list of policies.

    ``pool_maxsize``/``pool_block``: connections kept per endpoint, and whether callers wait for a free one;
    ``connection_timeout``/``read_timeout``: per HTTP request; ``retry``: azure-core RetryPolicy keywords.
    """

    def __init__(self, *, pool_maxsize: int, pool_block: bool, connection_timeout: float, read_timeout: float,
                 retry: dict[str, Any]) -> None:  # fmt: skip
        self.pool_maxsize, self.pool_block = pool_maxsize, pool_block
        self.connection_timeout, self.read_timeout = connection_timeout, read_timeout
        self.retry = dict(retry)

    def transport(self, url: str, ca_bundle: str | None, cache: CachePolicy) -> PooledTransport:
        """The transport of ``url``; ``cache``: the session's cache policy (where challenges are remembered)."""
        sdkcompat.seed_challenge(url, cache)
        return PooledTransport(
            url,
            ca_bundle=ca_bundle,
            cache=cache,
            connection_timeout=self.connection_timeout,
            read_timeout=self.read_timeout,
            pool_maxsize=self.pool_maxsize,
            pool_block=self.pool_block,
        )

    def release(self, url: str) -> None:
        """The clients of ``url`` were dropped: forget its challenge in memory too."""
        sdkcompat.forget_challenge(url)

    def policies(self, credential: TokenCredential) -> list[Any]:
        """The SDK's own policies minus the ones that cost time on every request and do nothing here.

        Kept: request id, user agent, JSON decoding, retries (429/5xx with Retry-After, within ``timeout``)
        and the Key Vault challenge authentication (token cache, refresh before expiry). Left out: the proxy
        and redirect policies (the transport resolves proxies once; Key Vault does not redirect), custom
        hooks, the network-trace policy (it would log the bearer token), and HTTP logging and distributed
        tracing, which are added back when the ``azure`` logger is enabled at INFO or a tracing
        implementation is configured when the clients are built.
        """
        import logging

        from azure.core.pipeline import policies
        from azure.core.settings import settings

        chain: list[Any] = [
            policies.RequestIdPolicy(),
            policies.UserAgentPolicy(sdk_moniker="hsmcert"),
            policies.ContentDecodePolicy(),
            policies.RetryPolicy(**self.retry),
            sdkcompat.challenge_auth_policy(credential),
        ]
        if settings.tracing_implementation() is not None:
            chain.append(policies.DistributedTracingPolicy())
        if logging.getLogger("azure").isEnabledFor(logging.INFO):
            # HttpLoggingPolicy redacts the Authorization header; the network-trace policy would log the
            # bearer token in the clear, so it is never added.
            chain.append(policies.HttpLoggingPolicy())
        return chain


__all__ = ["PooledPipeline", "PooledTransport", "environment_proxy", "proxy_manager"]

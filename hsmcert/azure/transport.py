"""An azure-core HTTP transport over one urllib3 connection pool per endpoint."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from hsmcert.errors import UsageError


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


def _default_ca_bundle() -> str | None:
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
                 pool_maxsize: int, pool_block: bool) -> None:  # fmt: skip
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
        trusted = ca_bundle or _default_ca_bundle()
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

    def __enter__(self) -> PooledTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        """Clients share the transport: closing one client keeps the pool."""

    def open(self) -> None:
        pass

    def close(self) -> None:
        """Shared by every client of the endpoint: the pool lives as long as the process."""

    def sleep(self, duration: float) -> None:
        """What azure-core's RetryPolicy calls between attempts."""
        time.sleep(duration)

    def send(self, request: Any, **kwargs: Any) -> Any:
        import urllib3
        from azure.core.exceptions import (
            ServiceRequestError,
            ServiceRequestTimeoutError,
            ServiceResponseError,
            ServiceResponseTimeoutError,
        )
        from urllib3 import exceptions as u3

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
        try:
            raw = self.pool.urlopen(
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
        return _response(request, raw)


def _response_type() -> Any:
    """The azure-core rest response class of :class:`PooledTransport` (made once, on first use)."""
    global _response_class
    if _response_class is not None:
        return _response_class
    from azure.core.rest._http_response_impl import HttpResponseImpl

    class _Response(HttpResponseImpl):  # type: ignore[misc]
        """A response whose body urllib3 has already read completely."""

        def read(self) -> bytes:
            return self._content or b""

        def iter_bytes(self, **kwargs: Any) -> Iterator[bytes]:
            yield self._content or b""

        def iter_raw(self, **kwargs: Any) -> Iterator[bytes]:
            yield self._content or b""

        def close(self) -> None:
            self._is_closed = True

    _response_class = _Response
    return _Response


def _response(request: Any, raw: Any) -> Any:
    """An azure-core rest response holding a urllib3 response that has been read completely."""
    response = _response_type()(
        request=request,
        internal_response=raw,
        status_code=raw.status,
        reason=raw.reason or "",
        headers=raw.headers,
        content_type=raw.headers.get("Content-Type"),
        stream_download_generator=None,
    )
    response._content = raw.data
    response._is_stream_consumed = True
    response._is_closed = True
    return response


_response_class: Any = None


__all__ = ["PooledTransport", "environment_proxy", "proxy_manager"]

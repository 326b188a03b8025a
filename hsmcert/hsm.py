"""Talk to one key in a Managed HSM or Key Vault: fetch its public part once, sign digests, decrypt.

:func:`open_key` returns an :class:`HsmKey` whose version is pinned: every operation goes to the version
that was current when the key was opened, so all signatures of one certificate come from one key.
Each signature is verified locally with the public key before it is returned.

Connections: the Azure SDK clients, their HTTPS connection pool and the token cache are shared per
(endpoint, CA bundle, credential) within a process.

Public-key cache (why one CSR costs two requests, the public key and the sign, and one when cached):

- in memory, per process: a pinned version's public key forever, "the latest version" of a key for
  ``HSMCERT_KEY_CACHE_TTL`` seconds (default 300); :func:`forget` drops a key (rotate and create call it);
- on disk, for pinned versions only (a version's public key never changes): one JSON file per
  (endpoint, key, version) in ``$HSMCERT_CACHE_DIR`` or ``<user cache dir>/hsmcert/public-keys``.
  Only public keys are stored. ``HSMCERT_KEY_CACHE=off`` disables both caches.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsmcert import jwa, roles
from hsmcert.errors import (
    HsmcertError,
    NotFoundError,
    PermissionDeniedError,
    UnreachableError,
    UsageError,
    VerificationError,
)
from hsmcert.keyref import KeyRef, parse_keyref

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    from hsmcert.config import Endpoint


# ---------------------------------------------------------------------------------------------------------
# Error translation


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
    kind: str, service: str, key: str | None, operation: str, credential: Any = None
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
    if kind == "vault":
        return (
            "Key Vault uses Azure RBAC: assign 'Key Vault Crypto User' (sign, decrypt) or 'Key Vault Crypto "
            f"Officer' (create, rotate) on the vault {service} to {principal} with az role assignment create."
        )
    role = roles.role_for_operation(operation)
    scope = roles.key_scope(key)
    action = roles.PREFIX + roles.OPERATION_ACTIONS.get(operation, "keys/read/action")
    key_opt = f"--key {key}" if key else "--scope /keys"
    return (
        f"The caller needs {action}, which the role {role.name!r} gives at scope {scope}. Grant it: "
        f"hsmcert grant --hsm {service} --principal {principal} {key_opt} --role {role.slug}"
    )


def _principal_hint(credential: Any = None) -> str:
    """The object id of the refused caller: from its credential's last token, else the latest token."""
    from hsmcert.credentials import last_object_id

    claims = getattr(credential, "claims", None)
    oid = claims.get("oid") if isinstance(claims, dict) else None
    return str(oid or last_object_id() or "<object id from hsmcert whoami>")


@contextlib.contextmanager
def translate_azure_errors(
    target: KeyRef | str, operation: str, url: str | None = None, credential: Any = None
) -> Iterator[None]:
    """Turn azure-core exceptions raised inside the block into hsmcert errors with a remedy.

    ``target`` is a key reference (or ``kind:service`` text), ``operation`` the REST operation name
    (``get``, ``sign``, ``create``, ... as in :data:`hsmcert.roles.OPERATION_ACTIONS`) or
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
        if url:
            _save_challenge(url)
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
        from hsmcert.credentials import AUTH_REMEDY

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
            from hsmcert.credentials import AUTH_REMEDY

            raise PermissionDeniedError(
                f"{where} did not accept the token: {_service_message(exc)}.", AUTH_REMEDY
            ) from exc
        if status == 429:
            raise HsmcertError(
                f"{where} is throttling requests (429) and the retries ran out.",
                "Wait and retry; spread the load or use the agent, which pools and paces requests.",
            ) from exc
        if status == 409:
            raise HsmcertError(
                f"{what}: {_service_message(exc)}.",
                "A deleted key with this name may exist: recover or purge it, or choose another name.",
            ) from exc
        if status is not None and 400 <= status < 500:
            raise UsageError(f"{where} refused {operation} on {what}: {_service_message(exc)}.") from exc
        raise HsmcertError(
            f"{where} failed {operation} on {what} (HTTP {status}): {_service_message(exc)}.",
            "Retry later; if it persists, check the service health.",
        ) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        reason = _network_reason(exc)
        if "certificate" in reason.lower():
            raise UnreachableError(
                f"The TLS certificate of {where}"
                + (f" at {url}" if url else "")
                + f" is not trusted: {reason}.",
                "Give the CA of that endpoint with --ca-bundle or HSMCERT_CA_BUNDLE (the emulator's: "
                "$HSMCERT_EMULATOR_CA).",
            ) from exc
        raise UnreachableError(
            f"Cannot reach {where}" + (f" at {url}" if url else "") + f": {reason}.",
            "Check the network, the endpoint (hsmcert doctor) and, for the emulator, that it runs: "
            'eval "$(hsmcert emulator start)"',
        ) from exc


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def _network_reason(exc: BaseException) -> str:
    """A short cause ("Connection refused", "certificate verify failed ...") from a requests/urllib3 error."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        found = re.search(r"certificate verify failed: ([^(')\]]+)", text)
        return "certificate verify failed" + (f" ({found.group(1).strip()})" if found else "")
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
    exc: Any, kind: str, service: str, key: str | None, operation: str, what: str, credential: Any = None
) -> HsmcertError:
    message = _service_message(exc)
    lowered = message.lower()
    code = _service_error_code(exc)
    what = what[:1].upper() + what[1:]
    if "disabled" in lowered or "KeyDisabled" in code:
        return PermissionDeniedError(f"{what} is disabled.", _enable_remedy(kind, service, key))
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


def _enable_remedy(kind: str, service: str, key: str | None) -> str:
    flag = "--hsm-name" if kind == "managedhsm" else "--vault-name"
    return f"Enable it if it should be used: az keyvault key set-attributes {flag} {service} --name {key} --enabled true"


# ---------------------------------------------------------------------------------------------------------
# Shared SDK clients


@dataclass
class _Service:
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
_services: dict[tuple[str, str | None, int], _Service] = {}
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


def _environment_proxy(url: str) -> str | None:
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


def _proxy_manager(proxy: str, options: dict[str, Any]) -> Any:
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


class _PooledTransport:
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
        proxy = _environment_proxy(url)
        manager = _proxy_manager(proxy, options) if proxy else urllib3.PoolManager(**options)
        self.pool = manager.connection_from_url(url)
        self._origin = _origin(url)
        self._manager = manager
        self._pool_wait = float(connection_timeout) + float(read_timeout)

    def __enter__(self) -> _PooledTransport:
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
    """The azure-core rest response class of :class:`_PooledTransport` (made once, on first use)."""
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


def service_clients(endpoint: Endpoint, credential: Any = None) -> _Service:
    """The shared clients for ``endpoint`` (built on first use)."""
    from hsmcert.credentials import get_credential

    if credential is None or isinstance(credential, str):
        credential = get_credential(credential)
    key = (endpoint.url, endpoint.ca_bundle, id(credential))
    with _services_lock:
        found = _services.get(key)
        if found is not None:
            return found
        from azure.keyvault.keys import KeyClient

        transport = _PooledTransport(endpoint.url, ca_bundle=endpoint.ca_bundle, **_TIMEOUTS, **_POOL)
        key_client = KeyClient(endpoint.url, credential, transport=transport, policies=_policies(credential))
        service = _Service(endpoint.url, endpoint.ca_bundle, credential, transport, key_client)
        _services[key] = service
        _seed_challenge(endpoint.url)
        return service


# The service's 401 challenge (which authority and audience to get a token for) is remembered on disk with
# the public keys, so that a new process does not spend a request on eliciting it again. The SDK still
# checks the challenge's resource against the URL before it sends a token, and a stale challenge is
# answered by a fresh 401 that the SDK handles as usual.


def _challenge_file() -> Path:
    return cache_dir() / "challenges.json"


def _seed_challenge(url: str) -> None:
    if not _cache_enabled():
        return
    try:
        from azure.keyvault.keys._shared import http_challenge_cache
        from azure.keyvault.keys._shared.http_challenge import HttpChallenge

        if http_challenge_cache.get_challenge_for_url(url) is not None:
            return
        header = json.loads(_challenge_file().read_text()).get(url)
        if isinstance(header, str):
            http_challenge_cache.set_challenge_for_url(url, HttpChallenge(url, header))
    except Exception:  # noqa: S110 - an optimisation only: without it the SDK elicits the challenge
        pass


_saved_challenges: set[str] = set()


def _save_challenge(url: str) -> None:
    """Persist the challenge of ``url`` once per process, after the first request that succeeded."""
    if url in _saved_challenges or not _cache_enabled():
        return
    try:
        from azure.keyvault.keys._shared import http_challenge_cache

        challenge = http_challenge_cache.get_challenge_for_url(url)
        if challenge is None:
            return
        wanted = ("authorization", "authorization_uri", "resource", "scope")
        params = {k: v for k, v in challenge._parameters.items() if k in wanted}
        header = "Bearer " + ", ".join(f'{k}="{v}"' for k, v in params.items())
        path = _challenge_file()
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        if not isinstance(known, dict) or known.get(url) == header:
            _saved_challenges.add(url)
            return
        known[url] = header
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(path)
        _saved_challenges.add(url)
    except Exception:  # noqa: S110 - see _seed_challenge
        pass


# ---------------------------------------------------------------------------------------------------------
# Public keys and their cache


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return _unb64u(value)
    raise HsmcertError("The key bundle is missing a public key field.")


def base_kty(kty: Any) -> str:
    """A JWK key type without the "-HSM" of hardware-protected keys: RSA-HSM -> RSA."""
    return str(kty or "").removesuffix("-HSM")


def public_key_from_jwk(jwk: dict[str, Any]) -> RSAPublicKey | EllipticCurvePublicKey:
    """A cryptography public key from a JWK (fields as bytes or base64url text)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    kty = base_kty(jwk.get("kty"))
    if kty == "RSA":
        n = int.from_bytes(_to_bytes(jwk["n"]), "big")
        e = int.from_bytes(_to_bytes(jwk["e"]), "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if kty == "EC":
        curve = jwa.ec_curve(str(jwk.get("crv")))
        x = int.from_bytes(_to_bytes(jwk["x"]), "big")
        y = int.from_bytes(_to_bytes(jwk["y"]), "big")
        return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    raise UsageError(
        f"The key is of type {jwk.get('kty')}; only RSA and EC keys can sign.",
        "Use an RSA or EC key (hsmcert key create --kty RSA|EC).",
    )


@dataclass(frozen=True)
class KeyInfo:
    """What the service said about one key version (public parts and properties only)."""

    kid: str
    jwk: dict[str, Any]
    """kty, crv, key_ops and the public fields n, e, x, y as base64url text."""
    enabled: bool | None = None
    not_before: int | None = None
    expires_on: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    created: int | None = None
    updated: int | None = None
    managed: bool | None = None

    @property
    def version(self) -> str:
        return self.kid.rstrip("/").rsplit("/", 1)[-1]

    @property
    def kty(self) -> str:
        """RSA, EC or oct (the "-HSM" of hardware-protected types left out)."""
        return base_kty(self.jwk.get("kty"))

    @classmethod
    def from_sdk(cls, key: Any) -> KeyInfo:
        jwk: dict[str, Any] = {"kty": str(getattr(key.key_type, "value", key.key_type))}
        material = key.key
        for name in ("n", "e", "x", "y"):
            value = getattr(material, name, None)
            if value:
                jwk[name] = _b64u(value)
        if material.crv:
            jwk["crv"] = str(getattr(material.crv, "value", material.crv))
        jwk["key_ops"] = [str(getattr(op, "value", op)) for op in (key.key_operations or [])]
        props = key.properties

        def ts(value: Any) -> int | None:
            if value is None:
                return None
            if not isinstance(value, datetime.datetime):  # the SDK keeps a value it cannot convert
                raise HsmcertError(
                    f"The HSM answered an invalid timestamp {str(value)[:40]} for the key {key.id}.",
                    "Correct the key's attributes (not before, expires) with the Azure tools.",
                )
            return int(value.timestamp())

        return cls(
            kid=str(key.id),
            jwk=jwk,
            enabled=props.enabled,
            not_before=ts(props.not_before),
            expires_on=ts(props.expires_on),
            tags=dict(props.tags or {}),
            created=ts(props.created_on),
            updated=ts(props.updated_on),
            managed=props.managed,
        )


_memory: dict[tuple[str, str, str], tuple[float, KeyInfo]] = {}
_memory_lock = threading.Lock()


def _cache_enabled() -> bool:
    return os.environ.get("HSMCERT_KEY_CACHE", "on").lower() not in ("off", "0", "false", "no")


def _ttl() -> float:
    try:
        return float(os.environ.get("HSMCERT_KEY_CACHE_TTL", "300"))
    except ValueError:
        return 300.0


def cache_dir() -> Path:
    """Where public keys are cached on disk; OSError when the user has none."""
    explicit = os.environ.get("HSMCERT_CACHE_DIR")
    if explicit:
        return Path(explicit) / "public-keys"
    from platformdirs import user_cache_dir

    path = Path(user_cache_dir("hsmcert")) / "public-keys"
    if not path.is_absolute():
        # A service user without a home (systemd DynamicUser) gets "~/...": the callers, which all treat
        # the disk cache as optional, then keep public keys in memory only.
        raise OSError("no cache directory for this user")
    return path


def _disk_path(url: str, ref: KeyRef) -> Path:
    digest = hashlib.sha256(f"{url}|{ref.kind}|{ref.service}|{ref.key}|{ref.version}".encode()).hexdigest()
    return cache_dir() / f"{digest[:40]}.json"


def _cache_get(url: str, ref: KeyRef) -> KeyInfo | None:
    if not _cache_enabled():
        return None
    mkey = (url, ref.key, ref.version or "")
    with _memory_lock:
        entry = _memory.get(mkey)
    if entry is not None and (ref.version or time.monotonic() - entry[0] < _ttl()):
        return entry[1]
    if ref.version:
        try:
            data = json.loads(_disk_path(url, ref).read_text())
            info = KeyInfo(data["kid"], data["jwk"], tags=data.get("tags", {}))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if info.version != ref.version:
            return None
        with _memory_lock:
            _memory[mkey] = (time.monotonic(), info)
        return info
    return None


def _cache_put(url: str, ref: KeyRef, info: KeyInfo) -> None:
    if not _cache_enabled():
        return
    now = time.monotonic()
    pinned = ref.with_version(info.version)
    with _memory_lock:
        _memory[(url, ref.key, ref.version or "")] = (now, info)
        _memory[(url, ref.key, info.version)] = (now, info)
    path = _disk_path(url, pinned)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"kid": info.kid, "jwk": info.jwk}))
        tmp.replace(path)
    except OSError:
        pass  # the cache is an optimisation; a read-only home must not break signing


def remember(url: str, ref: KeyRef, info: KeyInfo) -> None:
    """Cache a key version the caller just created or rotated as the key's latest version."""
    forget(ref)
    if info.kty in ("RSA", "EC"):
        _cache_put(url, ref, info)


def forget(ref: KeyRef | str) -> None:
    """Drop a key's "latest version" from the in-process cache (after create or rotate)."""
    ref = parse_keyref(ref) if isinstance(ref, str) else ref
    with _memory_lock:
        for mkey in [k for k in _memory if k[1] == ref.key and k[2] in ("", ref.version or "")]:
            del _memory[mkey]


# ---------------------------------------------------------------------------------------------------------
# The key


def _check_usable(info: KeyInfo, ref: KeyRef) -> None:
    what = f"The key {ref}"
    if info.enabled is False:
        raise PermissionDeniedError(f"{what} is disabled.", _enable_remedy(ref.kind, ref.service, ref.key))
    now = time.time()
    if info.expires_on is not None and info.expires_on <= now:
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(info.expires_on))
        raise PermissionDeniedError(
            f"{what} expired on {stamp}.",
            "Rotate it (hsmcert key rotate) or use another key; an expired key cannot sign.",
        )
    if info.not_before is not None and info.not_before > now:
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(info.not_before))
        raise PermissionDeniedError(f"{what} is not valid before {stamp}.", "Wait, or use another key.")


class HsmKey:
    """One pinned version of an RSA or EC key in a Managed HSM or Key Vault.

    Built by :func:`open_key`. ``sign_digest`` and ``decrypt`` go to the HSM; everything public is local.
    """

    def __init__(self, ref: KeyRef, info: KeyInfo, service: _Service) -> None:
        self.ref = ref.with_version(info.version)
        self.info = info
        self.kid = info.kid
        self.kty: str = info.kty
        self.curve: str | None = info.jwk.get("crv")
        self.public_key = public_key_from_jwk(info.jwk)
        self._service = service
        self._crypto: Any = None
        self._crypto_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HsmKey({str(self.ref)!r}, kty={self.kty!r})"

    @property
    def endpoint_url(self) -> str:
        return self._service.url

    @property
    def key_size(self) -> int:
        return int(self.public_key.key_size)

    @property
    def spki_der(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self.public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    def default_algorithm(self) -> str:
        """RS256 for RSA; the ES algorithm that matches the curve for EC."""
        return jwa.default_algorithm(self.kty, self.curve)

    def check_algorithm(self, alg: str) -> jwa.Algorithm:
        """The :class:`~hsmcert.jwa.Algorithm` for ``alg``, refused clearly when the key cannot use it."""
        return jwa.check_algorithm(alg, self.kty, self.curve, key=str(self.ref))

    def _crypto_client(self) -> Any:
        with self._crypto_lock:
            if self._crypto is None:
                from azure.keyvault.keys import KeyVaultKey
                from azure.keyvault.keys.crypto import CryptographyClient

                jwk = {k: (_unb64u(v) if k in ("n", "e", "x", "y") else v) for k, v in self.info.jwk.items()}
                jwk["kid"] = self.kid
                self._crypto = CryptographyClient(
                    KeyVaultKey(self.kid, jwk=jwk), self._service.credential, **self._service.lean_kwargs()
                )
            return self._crypto

    def sign_digest(self, alg: str, digest: bytes) -> bytes:
        """Sign ``digest`` in the HSM with ``alg`` (JWA name) and return a locally verified signature.

        RSA: the PKCS#1 v1.5 or PSS signature (PSS salt = digest length); ``digest`` is as long as the
        algorithm's hash. EC: a DER ECDSA signature; ``digest`` may be of any hash of 20 to 64 bytes (the
        ECDSA digest rule of :mod:`hsmcert.jwa`), and the signature verifies against it.
        Raises :class:`~hsmcert.errors.VerificationError` when the returned signature does not verify.
        """
        algorithm = self.check_algorithm(alg)
        digest = jwa.digest_to_sign(algorithm, digest)
        with translate_azure_errors(self.ref, "sign", self._service.url, self._service.credential):
            result = self._crypto_client().sign(algorithm.name, digest)
        signature = bytes(result.signature)
        if self.kty == "EC":
            signature = jwa.raw_to_der(signature, jwa.CURVE_BYTES[str(self.curve)])
        self.verify_digest(algorithm.name, digest, signature)
        return signature

    def verify_digest(self, alg: str, digest: bytes, signature: bytes) -> None:
        """Check a signature (DER for EC) over ``digest`` locally; raise VerificationError if wrong."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        algorithm = self.check_algorithm(alg)
        digest = jwa.digest_to_sign(algorithm, digest)
        hash_alg = jwa.hash_for(algorithm.hash)
        try:
            if isinstance(self.public_key, rsa.RSAPublicKey):
                pad: padding.AsymmetricPadding = (
                    padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
                    if algorithm.pss
                    else padding.PKCS1v15()
                )
                self.public_key.verify(signature, digest, pad, Prehashed(hash_alg))
            else:
                self.public_key.verify(signature, digest, ec.ECDSA(Prehashed(hash_alg)))
        except (InvalidSignature, ValueError) as exc:
            raise VerificationError(
                f"The {algorithm.name} signature returned by {self.ref} does not verify with its public key.",
                "Nothing was written. The HSM (or emulator) returned a wrong signature; retry, and report it "
                "if it persists.",
            ) from exc

    def decrypt(self, alg: str, ciphertext: bytes) -> bytes:
        """Decrypt ``ciphertext`` in the HSM (RSA-OAEP, RSA-OAEP-256 or RSA1_5)."""
        if self.kty != "RSA":
            raise UsageError(f"{self.ref} is an {self.kty} key; only RSA keys decrypt.")
        name = alg.upper()
        if name not in jwa.DECRYPT_ALGORITHMS:
            raise UsageError(
                f"Unsupported decryption algorithm {alg!r}.",
                f"Use one of: {', '.join(jwa.DECRYPT_ALGORITHMS)}.",
            )
        if len(ciphertext) != (self.key_size + 7) // 8:
            raise UsageError(
                f"The ciphertext is {len(ciphertext)} bytes; a {self.key_size}-bit key needs {(self.key_size + 7) // 8}."
            )
        with translate_azure_errors(self.ref, "decrypt", self._service.url, self._service.credential):
            result = self._crypto_client().decrypt(name, ciphertext)
        return bytes(result.plaintext)


def fetch_key_info(ref: KeyRef, service: _Service) -> KeyInfo:
    """GET the key (the latest version, or ``ref.version``) from the service; no cache."""
    with translate_azure_errors(ref, "get", service.url, service.credential):
        key = service.key_client.get_key(ref.key, version=ref.version)
    return KeyInfo.from_sdk(key)


def open_key(
    ref: KeyRef | str,
    *,
    endpoint: str | None = None,
    ca_bundle: str | None = None,
    credential: Any = None,
    refresh: bool = False,
) -> HsmKey:
    """Fetch the public key of ``ref`` (or take it from the cache) and pin its version.

    ``credential``: None (``get_credential()``), a credential name, or any azure-core token credential.
    ``refresh``: ask the service even when the public key is cached (checks access, enabled, expiry).
    """
    from hsmcert.config import resolve_endpoint

    if isinstance(ref, str):
        ref = parse_keyref(ref)
    resolved = resolve_endpoint(ref, endpoint=endpoint, ca_bundle=ca_bundle)
    service = service_clients(resolved, credential)
    info = None if refresh else _cache_get(resolved.url, ref)
    if info is None:
        info = fetch_key_info(ref, service)
        _check_usable(info, ref)
        if info.kty not in ("RSA", "EC"):
            raise UsageError(
                f"{ref} is a {info.jwk.get('kty')} key; only RSA and EC keys sign.",
                "Use an RSA or EC key (hsmcert key create --kty RSA|EC).",
            )
        _cache_put(resolved.url, ref, info)
    return HsmKey(ref, info, service)


__all__ = [
    "HsmKey",
    "KeyInfo",
    "forget",
    "open_key",
    "public_key_from_jwk",
    "service_clients",
    "translate_azure_errors",
]

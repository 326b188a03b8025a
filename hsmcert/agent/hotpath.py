"""The agent's signing hot path: one sign request written once per key version and algorithm, sent on a
kept-alive connection of the endpoint's pool, its answer parsed by httptools and json.

Every signature the agent makes would otherwise go through azure-keyvault-keys and azure-core's pipeline
(request building and serialization, policies, urllib3 and http.client's header parsing with the email
package, response deserialization): several times the CPU of the request itself. Here, per signature:

- the request line and fixed headers (URL of the key version's ``sign`` operation, api-version, user agent,
  content type) are prepared once per key version and algorithm, with the pyca verifier of the key;
- the ``Authorization`` header comes from the SDK's own challenge policy (token cache, refresh five minutes
  before expiry, the challenge's resource checked against the URL), asked again only when the token is due
  for refresh; the path is taken only once a request through the SDK has succeeded on the endpoint, so the
  challenge is known;
- the connection is borrowed from the endpoint's urllib3 pool (:meth:`PooledTransport.borrow`): the same
  connections, TLS verification, proxy tunnel and limit (``--pool-size``) as the SDK's requests;
- the answer is parsed by httptools (status, headers, body) and the body by json; the signature is checked
  with the public key before it is returned, as on every path.

What is not a plain success is not handled here: 408, 429 and 5xx become a transient
:class:`~hsmcert.errors.ServiceError` with the ``Retry-After`` the service asked for, and a timeout or a
dropped connection an :class:`~hsmcert.errors.UnreachableError`, both retried by the backend within its
deadline; any other answer (401, 403, 404, ...) and a connection that cannot be opened send the request
again through the SDK, whose error mapping says what went wrong (``sign`` returns None for that).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hsmcert import jwa
from hsmcert.agent import sdkcompat
from hsmcert.azure.errors import retry_after_header
from hsmcert.azure.keyinfo import b64u, unb64u
from hsmcert.errors import ServiceError, UnreachableError
from hsmcert.lru import LruDict

if TYPE_CHECKING:
    from collections.abc import Callable

    from azure.core.credentials import TokenCredential

    from hsmcert.agent.transport import PooledTransport
    from hsmcert.azure.hsm import HsmKey

MAX_PREPARED = 4096
"""Prepared requests (key version and algorithm) kept per endpoint; the least recently used go first."""
RECEIVE = 65536


class _Answer:
    """What httptools reports of one response (its callback protocol)."""

    __slots__ = ("body", "complete", "headers", "keep_alive", "parser")

    def __init__(self) -> None:
        import httptools

        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.complete = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        # llhttp's keep-alive flag is only defined until the message completes
        self.keep_alive = self.parser.should_keep_alive()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))  # decoded only for an answer that is not a success

    def header_map(self) -> dict[str, str]:
        return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in self.headers}

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


class _Prepared:
    """The sign request of one key version and algorithm, and how to check its answer."""

    __slots__ = ("algorithm", "check", "curve_bytes", "head", "ref")

    def __init__(self, key: HsmKey, algorithm: jwa.Algorithm, target: str, fixed: str) -> None:
        self.algorithm = algorithm
        self.ref = str(key.ref)
        self.head = f"POST {target} HTTP/1.1\r\n{fixed}".encode("latin-1")
        self.check: Callable[[bytes, bytes], None] = key.verifier(algorithm)
        self.curve_bytes = jwa.CURVE_BYTES[str(key.curve)] if key.kty == "EC" else 0


class _Dropped(Exception):
    """The connection ended before the whole answer came."""


class HotPath:
    """Signs on one endpoint (one :class:`~hsmcert.agent.transport.PooledTransport`) outside the SDK's
    pipeline. Thread-safe; built by the backend once per transport."""

    def __init__(self, transport: PooledTransport, credential: TokenCredential, api_version: str) -> None:
        import logging

        from azure.core.pipeline.policies import UserAgentPolicy

        self._transport = transport
        self.enabled = not logging.getLogger("azure").isEnabledFor(logging.INFO)
        """False when the ``azure`` loggers log requests (``--verbose``): every request then goes through the
        SDK's pipeline, whose HTTP logging policy shows it (the Authorization header redacted)."""
        self._url = transport.url
        self._policy = sdkcompat.challenge_auth_policy(credential)
        self._api_version = api_version
        parts = urlsplit(self._url)
        self._origin = (parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or 443)
        self._fixed = (
            f"Host: {parts.netloc}\r\nAccept: application/json\r\nContent-Type: application/json\r\n"
            f"User-Agent: {UserAgentPolicy(sdk_moniker='hsmcert').user_agent}\r\n"
        )
        self._prepared: LruDict[tuple[str, str], _Prepared] = LruDict(MAX_PREPARED)
        self._lock = threading.Lock()
        self._token_lock = threading.Lock()
        self._authorization: tuple[bytes, float] | None = None

    # -- what is prepared once --------------------------------------------------------------------------

    def _prepare(self, key: HsmKey, algorithm: jwa.Algorithm) -> _Prepared | None:
        """The prepared request for ``key`` and ``algorithm``; None when the key's id is not on this endpoint."""
        cache_key = (key.kid, algorithm.name)
        with self._lock:
            found = self._prepared.get(cache_key)
        if found is not None:
            return found
        parts = urlsplit(key.kid)
        origin = (parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or 443)
        if origin != self._origin or not parts.path.startswith("/keys/"):
            return None
        target = f"{parts.path.rstrip('/')}/sign?api-version={self._api_version}"
        made = _Prepared(key, algorithm, target, self._fixed)
        with self._lock:
            self._prepared[cache_key] = made
        return made

    def _token(self) -> bytes | None:
        """``Authorization: ...\\r\\n`` from the SDK's challenge policy, asked again when due for refresh."""
        held = self._authorization
        if held is not None and time.time() < held[1]:
            return held[0]
        with self._token_lock:
            held = self._authorization
            if held is not None and time.time() < held[1]:
                return held[0]
            try:
                got = sdkcompat.bearer_token(self._policy, self._url)
            except Exception:  # the credential failed, or the challenge does not fit the URL: the SDK's
                return None  # request for this signature meets the same failure and reports it clearly
            if got is None:
                return None
            header = f"Authorization: {got[0]}\r\n".encode("latin-1")
            self._authorization = (header, got[1])
            return header

    def forget_token(self) -> None:
        """The service refused the token: the next signature asks the policy again."""
        self._authorization = None

    # -- one signature ----------------------------------------------------------------------------------

    def sign(self, key: HsmKey, algorithm: jwa.Algorithm, digest: bytes, end: float) -> bytes | None:
        """The locally verified signature (DER for ECDSA) of ``digest`` (as the HSM signs it:
        :func:`hsmcert.jwa.digest_to_sign`) by ``key``, the request made within ``end`` (a
        ``time.monotonic()`` deadline). None: send it through the SDK instead (not authenticated on this
        endpoint yet, an answer other than 200/408/429/5xx, a connection that could not be opened).
        Raises ServiceError (transient) or UnreachableError for the backend to retry."""
        if not (self.enabled and self._transport.authenticated):
            return None
        prepared = self._prepare(key, algorithm)
        authorization = self._token() if prepared is not None else None
        if prepared is None or authorization is None:
            return None
        body = json.dumps({"alg": algorithm.name, "value": b64u(digest)}).encode()
        request = b"".join(
            (
                prepared.head,
                authorization,
                b"x-ms-client-request-id: ",
                str(uuid.uuid4()).encode(),
                b"\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )
        with self._transport.in_use():
            answer = self._exchange(request, prepared.ref, end)
        if answer is None:
            return None
        status, parsed, content = answer
        if status != 200:
            if status in ServiceError.TRANSIENT_STATUS:
                raise ServiceError(
                    f"The HSM answered {status} to a signature with {prepared.ref}.",
                    status=status,
                    retry_after=retry_after_header(parsed.header_map()),
                )
            if status == 401:
                self.forget_token()
            return None  # the SDK sends it again and maps the error
        try:
            raw = unb64u(json.loads(content)["value"])
        except (ValueError, KeyError, TypeError):
            return None  # an answer the SDK makes sense of (or reports) better
        signature = jwa.raw_to_der(raw, prepared.curve_bytes) if prepared.curve_bytes else raw
        prepared.check(digest, signature)
        return signature

    def _exchange(self, request: bytes, ref: str, end: float) -> tuple[int, _Answer, bytes] | None:
        """Send ``request`` on a pooled connection and read the answer (status, headers, body); None when no
        connection could be opened. A kept-alive connection the service had closed is replaced once."""
        from urllib3 import exceptions as u3

        config = self._transport.connection_config
        for attempt in (1, 2):
            left = end - time.monotonic()
            if left <= 0:
                raise UnreachableError(f"No time was left to ask the HSM to sign with {ref}.")
            try:
                conn = self._transport.borrow(min(left, config.timeout + config.read_timeout))
            except u3.EmptyPoolError:
                raise UnreachableError(
                    f"No connection to the HSM became free in time to sign with {ref}."
                ) from None
            except u3.ClosedPoolError:
                raise UnreachableError(
                    f"The connections to the HSM were closed while signing with {ref}."
                ) from None
            reusable = False
            try:
                fresh = conn.sock is None
                if fresh:
                    try:
                        self._transport.connect(conn, min(config.timeout, left))
                    except (TimeoutError, u3.ConnectTimeoutError):
                        raise UnreachableError(
                            f"Connecting to the HSM timed out while signing with {ref}."
                        ) from None
                    except (OSError, u3.HTTPError):
                        return None  # the SDK's request reports why (TLS trust, refused, proxy ...)
                sock = conn.sock
                sock.settimeout(min(config.read_timeout, max(0.001, end - time.monotonic())))
                try:
                    answer, reusable = _send_and_read(sock, request)
                except TimeoutError:
                    raise UnreachableError(f"The HSM did not answer in time to sign with {ref}.") from None
                except (_Dropped, OSError) as exc:
                    if attempt == 1 and not fresh:
                        continue  # a kept-alive connection the service had closed: once more on a new one
                    raise UnreachableError(
                        f"The connection to the HSM broke while signing with {ref}: {exc}."
                    ) from None
                return answer
            finally:
                self._transport.give_back(conn, reusable=reusable)
        raise AssertionError("unreachable")  # pragma: no cover


def _send_and_read(sock: Any, request: bytes) -> tuple[tuple[int, _Answer, bytes], bool]:
    """Write ``request``, read one whole answer; (status, headers, body) and whether the connection may be
    used again."""
    import httptools

    sock.sendall(request)
    answer = _Answer()
    parser = answer.parser
    while not answer.complete:
        data = sock.recv(RECEIVE)
        if not data:
            raise _Dropped("the service closed it")
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise _Dropped(f"an answer that is not HTTP ({exc})") from None
    return (parser.get_status_code(), answer, bytes(answer.body)), answer.keep_alive


__all__ = ["HotPath"]

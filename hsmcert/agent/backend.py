"""What the agent does with a request: keys opened through its :class:`~hsmcert.session.Session`, with the
agent's policies.

The session keeps one SDK client set per endpoint (one HTTPS connection pool, one token cache that
refreshes before expiry) and caches public keys. The agent adds:

- its own transport (:mod:`hsmcert.agent.transport`): azure-core requests handed straight to urllib3, with a
  short pipeline;

- a bounded, blocking connection pool (``pool_size``): concurrent callers wait for a connection rather
  than open new ones, so the HSM never sees more TLS connections than the pool size;
- a deadline per operation (``deadline`` seconds): the SDK retries 429/5xx honouring ``Retry-After``
  within it, and the agent retries what the SDK will not retry for a POST (a 429 without ``Retry-After``,
  a dropped connection) with jittered exponential backoff, again honouring ``Retry-After``, until the
  deadline; every HTTP request has a connect timeout (10 s) and a read timeout (60 s), both capped at the
  deadline;
- a cache of opened keys per pinned version (one crypto client each), so a signature is one request;
- the per-uid allow-list;
- the mapping of hsmcert errors to protocol status codes.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from hsmcert import jwa
from hsmcert.agent.protocol import Status
from hsmcert.errors import (
    HsmcertError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
    UnreachableError,
    UsageError,
)
from hsmcert.keyref import KeyRef, parse_keyref
from hsmcert.lru import LruDict

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from hsmcert.agent.hotpath import HotPath
    from hsmcert.azure.clients import ServiceClients, TransportOptions
    from hsmcert.azure.hsm import HsmKey
    from hsmcert.session import Session

T = TypeVar("T")

DEFAULT_POOL_SIZE = 4
MAX_KEYS = 1024
"""Opened keys the agent keeps (pinned versions, and "latest" lookups); the least recently used go first."""
MAX_REFERENCES = 4096
"""Parsed reference texts the agent remembers."""
DEFAULT_DEADLINE = 30.0


class UnsupportedError(HsmcertError):
    """The operation or algorithm does not suit this key (status UNSUPPORTED)."""


class DeniedError(PermissionDeniedError):
    """The agent's allow-list refused the caller."""


def status_for(exc: BaseException) -> Status:
    """The protocol status that reports ``exc``."""
    if isinstance(exc, UnsupportedError | jwa.AlgorithmMismatchError):
        return Status.UNSUPPORTED
    if isinstance(exc, UsageError):
        return Status.BAD_REQUEST
    if isinstance(exc, NotFoundError):
        return Status.NOT_FOUND
    if isinstance(exc, PermissionDeniedError):
        return Status.DENIED
    if isinstance(exc, UnreachableError) or (isinstance(exc, HsmcertError) and exc.transient):
        return Status.UNAVAILABLE
    return Status.INTERNAL


@dataclass
class AllowList:
    """Which keys each uid may use. Empty: every caller that can reach the socket may use every key."""

    rules: dict[int, set[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> AllowList:
        """From ``UID:KEYREF`` or ``USER:KEYREF`` (``*`` for all keys) specifications."""
        import pwd

        rules: dict[int, set[str]] = {}
        for spec in specs:
            who, sep, key = spec.partition(":")
            if not sep or not who or not key:
                raise UsageError(
                    f"The allow rule {spec!r} is not UID:KEYREF.",
                    "Example: --allow 33:managedhsm:myhsm:tls-key",
                )
            if who.isdigit():
                uid = int(who)
            else:
                try:
                    uid = pwd.getpwnam(who).pw_uid
                except KeyError:
                    raise UsageError(f"The allow rule {spec!r} names an unknown user {who!r}.") from None
            rules.setdefault(uid, set()).add("*" if key == "*" else _unversioned(parse_keyref(key)))
        return cls(rules)

    def check(self, uid: int | None, ref: KeyRef) -> None:
        if not self.rules:
            return
        allowed = self.rules.get(uid, set()) if uid is not None else set()
        if "*" in allowed or _unversioned(ref) in allowed:
            return
        raise DeniedError(
            f"The agent's allow-list does not let uid {uid} use {_unversioned(ref)}.",
            "Add --allow UID:KEYREF to the agent's command line.",
        )


def agent_transport(
    pool_size: int = DEFAULT_POOL_SIZE, deadline: float = DEFAULT_DEADLINE
) -> TransportOptions:
    """The agent's transport: its pooled pipeline (:mod:`hsmcert.agent.transport`) with at most ``pool_size``
    connections per endpoint (callers wait for one), timeouts within the ``deadline``, and the SDK retrying
    429/5xx within it."""
    from hsmcert.agent.transport import PooledPipeline
    from hsmcert.azure.clients import TransportOptions

    retry: dict[str, Any] = {
        "retry_total": 10,
        "retry_status": 10,
        "retry_connect": 3,
        "retry_backoff_factor": 0.2,
        "retry_backoff_max": 2,
        "timeout": deadline,
    }
    timeouts = {"connection_timeout": min(10.0, deadline), "read_timeout": min(60.0, deadline)}
    pipeline = PooledPipeline(pool_maxsize=pool_size, pool_block=True, retry=retry, **timeouts)
    return TransportOptions(**timeouts, retry=retry, pipeline=pipeline)


def _unversioned(ref: KeyRef) -> str:
    return str(ref.with_version(None))


class Backend:
    """Opens keys and runs operations on them for the agent's connections (thread-safe)."""

    def __init__(
        self,
        session: Session | None = None,
        *,
        endpoint: str | None = None,
        ca_bundle: str | None = None,
        credential: TokenCredential | str | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        deadline: float = DEFAULT_DEADLINE,
        allow: AllowList | None = None,
    ) -> None:
        """``session``: the Session to open keys through; without one, a Session of ``endpoint``,
        ``ca_bundle`` and ``credential`` with the agent's transport (:func:`agent_transport`)."""
        if session is None:
            from hsmcert.session import Session

            session = Session(
                endpoint=endpoint,
                ca_bundle=ca_bundle,
                credential=credential,
                transport=agent_transport(pool_size, deadline),
            )
        self.session = session
        self.deadline = deadline
        self.allow = allow or AllowList()
        # Bounded, least recently used dropped first: requests for ever new names cannot grow the agent.
        self._keys: LruDict[str, HsmKey] = LruDict(MAX_KEYS)
        self._latest: LruDict[str, tuple[float, HsmKey]] = LruDict(MAX_KEYS)
        policy = session.key_cache.policy
        self._latest_ttl = policy.ttl if policy.enabled else 0.0
        self._parsed: LruDict[tuple[str, str | None], KeyRef] = LruDict(MAX_REFERENCES)
        self._lock = threading.Lock()
        session.on_drop(self._forget_service)

    def _forget_service(self, service: ServiceClients) -> None:
        """The session dropped (and closed) the clients of an endpoint: its opened keys go with them, and
        the next request for one opens it again through new clients."""
        with self._lock:
            for text in [t for t, key in self._keys.items() if key.service is service]:
                del self._keys[text]
            for text in [t for t, (_, key) in self._latest.items() if key.service is service]:
                del self._latest[text]

    # -- keys -------------------------------------------------------------------------------------------

    def parse(self, text: str, version: str | None = None) -> KeyRef:
        """The reference a request names (parsed once per distinct text and version, then remembered)."""
        with self._lock:
            cached = self._parsed.get((text, version))
        if cached is not None:
            return cached
        ref = self._parse(text, version)
        with self._lock:
            self._parsed[(text, version)] = ref
        return ref

    def _parse(self, text: str, version: str | None) -> KeyRef:
        ref = parse_keyref(text)
        if version:
            if ref.version and ref.version != version:
                raise UsageError(f"The reference {text} names version {ref.version}, the request {version}.")
            ref = ref.with_version(version)
        return ref

    def key(self, ref: KeyRef) -> HsmKey:
        """The opened key (pinned): from the agent's cache, else through the session.

        A pinned version stays cached; "the latest version" of a key is looked up again after
        the session's cache TTL (``HSMCERT_KEY_CACHE_TTL``, 300 s; ``HSMCERT_KEY_CACHE=off``: always).
        """
        text = str(ref)
        now = time.monotonic()
        with self._lock:
            pinned = self._keys.get(text) if ref.version else None
            if pinned is not None:
                return pinned
            latest = self._latest.get(text)
            if latest is not None and now - latest[0] < self._latest_ttl:
                return latest[1]
        opened = self._call(lambda: self.session.open_key(ref))
        with self._lock:
            key = self._keys.get(str(opened.ref)) or opened
            self._keys[str(opened.ref)] = key
            if not ref.version:
                self._latest[text] = (now, key)
            return key

    def _live(self, key: HsmKey) -> HsmKey:
        """``key``, or the same version opened again when the session has dropped (and closed) the clients
        it was opened through (since the caller looked it up, or while it was being opened): an attempt
        after that goes through new ones."""
        text = str(key.ref)
        if not key.service.closed:
            return key
        with self._lock:
            cached = self._keys.get(text)
            if cached is not None and not cached.service.closed:
                return cached
        opened = self.session.open_key(key.ref)  # the session's public-key cache: no request, usually
        with self._lock:
            self._keys[text] = opened
        return opened

    # -- operations -------------------------------------------------------------------------------------

    def pubkey(self, uid: int | None, ref: KeyRef) -> HsmKey:
        self.allow.check(uid, ref)
        return self.key(ref)

    def sign(self, uid: int | None, ref: KeyRef, alg: str, digest: bytes) -> tuple[HsmKey, bytes]:
        self.allow.check(uid, ref)
        key = self.key(ref)
        algorithm = key.check_algorithm(alg)
        # An ECDSA digest of another size than the algorithm's is brought to it by the ECDSA digest rule
        # (hsmcert.jwa), so the signature verifies against the hash the client used.
        signed = jwa.digest_to_sign(algorithm, digest)
        end = time.monotonic() + self.deadline
        return key, self._call(lambda: self._sign_once(key, algorithm, digest, signed, end))

    def _sign_once(
        self, key: HsmKey, algorithm: jwa.Algorithm, digest: bytes, signed: bytes, end: float
    ) -> bytes:
        """One attempt: through the hot path (:mod:`hsmcert.agent.hotpath`) when it can, else the SDK."""
        live = self._live(key)
        hot = self._hot_path(live)
        if hot is not None:
            signature = hot.sign(live, algorithm, signed, end)
            if signature is not None:
                return signature
        return live.sign_digest(algorithm.name, digest)

    def _hot_path(self, key: HsmKey) -> HotPath | None:
        """The hot path of the endpoint ``key`` was opened through (None: not the agent's transport)."""
        from hsmcert.agent.transport import PooledTransport

        transport = key.service.transport
        if not isinstance(transport, PooledTransport):
            return None
        hot: HotPath | None = transport.hot_path
        if hot is None:
            from hsmcert.agent.hotpath import HotPath

            with self._lock:
                if transport.hot_path is None:
                    service = key.service
                    transport.hot_path = HotPath(
                        transport, service.credential, service.key_client.api_version
                    )
                hot = transport.hot_path
        return hot

    def decrypt(self, uid: int | None, ref: KeyRef, alg: str, ciphertext: bytes) -> tuple[HsmKey, bytes]:
        self.allow.check(uid, ref)
        key = self.key(ref)
        if key.kty != "RSA":
            raise UnsupportedError(f"{key.ref} is an {key.kty} key; only RSA keys decrypt.")
        return key, self._call(lambda: self._live(key).decrypt(alg, ciphertext))

    # -- retries ----------------------------------------------------------------------------------------

    def _call(self, action: Callable[[], T]) -> T:
        """Run ``action``, retrying transient failures (429, 5xx, unreachable) until the deadline."""
        end = time.monotonic() + self.deadline
        delay = 0.05
        while True:
            try:
                return action()
            except HsmcertError as exc:
                if not exc.transient:
                    raise
                wait = exc.retry_after if isinstance(exc, ServiceError) else None
                wait = delay * (0.5 + random.random()) if wait is None else wait
                if time.monotonic() + wait >= end:
                    raise UnreachableError(
                        f"The HSM did not answer successfully within the agent's {self.deadline:g} s deadline: "
                        f"{exc.message}",
                        exc.remedy,
                    ) from exc
                time.sleep(wait)
                delay = min(delay * 2, 2.0)


__all__ = ["AllowList", "Backend", "DeniedError", "UnsupportedError", "agent_transport", "status_for"]

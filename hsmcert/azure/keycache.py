"""The public-key cache (why one CSR costs two requests, the public key and the sign, and one when cached).

- in memory, per :class:`KeyCache` (each Session has one): a pinned version's public key forever, "the
  latest version" of a key for ``ttl`` seconds (``HSMCERT_KEY_CACHE_TTL``, default 300); :meth:`KeyCache.forget`
  drops a key (rotate and create call it);
- on disk, for pinned versions only (a version's public key never changes): one JSON file per
  (endpoint, key, version) in ``$HSMCERT_CACHE_DIR`` or ``<user cache dir>/hsmcert/public-keys`` (where the
  agent also remembers the services' authentication challenges). Only public keys are stored.

``HSMCERT_KEY_CACHE=off`` disables both caches. :class:`CachePolicy` holds these settings: read from the
environment once, when a Session is built (or by whoever builds it), and passed down to everything that
caches (the Session's :class:`KeyCache`, the agent's remembered challenges); nothing here reads the
environment at a later call.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hsmcert.azure.keyinfo import KeyInfo
from hsmcert.errors import HsmcertError, UsageError
from hsmcert.keyref import KeyRef, parse_keyref
from hsmcert.lru import LruDict
from hsmcert.output_files import write_output

MEMORY_ENTRIES = 4096
"""Public keys kept in memory per cache (the least recently used beyond that are dropped)."""


@dataclass(frozen=True)
class CachePolicy:
    """Whether public keys are cached, how long "the latest version" stays, and where the disk cache is
    (None: ``<user cache dir>/hsmcert/public-keys``)."""

    enabled: bool = True
    ttl: float = 300.0
    directory: Path | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> CachePolicy:
        """From ``HSMCERT_KEY_CACHE``, ``HSMCERT_KEY_CACHE_TTL`` and ``HSMCERT_CACHE_DIR``.

        A TTL that is not a finite number of seconds, 0 or more, is refused (:class:`UsageError`).
        """
        env = os.environ if environ is None else environ
        enabled = env.get("HSMCERT_KEY_CACHE", "on").lower() not in ("off", "0", "false", "no")
        text = env.get("HSMCERT_KEY_CACHE_TTL", "").strip() or "300"
        try:
            ttl = float(text)
        except ValueError:
            ttl = math.nan
        if not math.isfinite(ttl) or ttl < 0:
            raise UsageError(
                f"HSMCERT_KEY_CACHE_TTL={text!r} is not a number of seconds (0 or more).",
                "Set it to how long the latest version of a key stays cached, e.g. HSMCERT_KEY_CACHE_TTL=300, "
                "or turn the cache off with HSMCERT_KEY_CACHE=off.",
            )
        explicit = env.get("HSMCERT_CACHE_DIR")
        return cls(enabled, ttl, Path(explicit) / "public-keys" if explicit else None)

    def disk_dir(self) -> Path:
        """Where public keys are cached on disk; OSError when the user has none."""
        if self.directory is not None:
            return self.directory
        from platformdirs import user_cache_dir

        path = Path(user_cache_dir("hsmcert")) / "public-keys"
        if not path.is_absolute():
            # A service user without a home (systemd DynamicUser) gets "~/...": the callers, which all treat
            # the disk cache as optional, then keep public keys in memory only.
            raise OSError("no cache directory for this user")
        return path


class KeyCache:
    """Public keys by (endpoint, key, version), in memory and (pinned versions) on disk, as ``policy`` says
    (default: :class:`CachePolicy`'s defaults); thread-safe."""

    def __init__(self, policy: CachePolicy | None = None) -> None:
        self.policy = policy or CachePolicy()
        self._memory: LruDict[tuple[str, str, str], tuple[float, KeyInfo]] = LruDict(MEMORY_ENTRIES)
        self._lock = threading.Lock()

    def _disk_path(self, policy: CachePolicy, url: str, ref: KeyRef) -> Path:
        text = f"{url}|{ref.kind}|{ref.service}|{ref.key}|{ref.version}"
        return policy.disk_dir() / f"{hashlib.sha256(text.encode()).hexdigest()[:40]}.json"

    def get(self, url: str, ref: KeyRef) -> KeyInfo | None:
        policy = self.policy
        if not policy.enabled:
            return None
        mkey = (url, ref.key, ref.version or "")
        with self._lock:
            entry = self._memory.get(mkey)
        if entry is not None and (ref.version or time.monotonic() - entry[0] < policy.ttl):
            return entry[1]
        if ref.version:
            try:
                data = json.loads(self._disk_path(policy, url, ref).read_text())
                info = KeyInfo(data["kid"], data["jwk"], tags=data.get("tags", {}))
            except (OSError, ValueError, KeyError, TypeError):
                return None
            if info.version != ref.version:
                return None
            with self._lock:
                self._memory[mkey] = (time.monotonic(), info)
            return info
        return None

    def put(self, url: str, ref: KeyRef, info: KeyInfo) -> None:
        policy = self.policy
        if not policy.enabled:
            return
        now = time.monotonic()
        with self._lock:
            self._memory[(url, ref.key, ref.version or "")] = (now, info)
            self._memory[(url, ref.key, info.version)] = (now, info)
        try:
            path = self._disk_path(policy, url, ref.with_version(info.version))
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            data = json.dumps({"kid": info.kid, "jwk": info.jwk}).encode()
            write_output(path, data, force=True, mode=0o600)  # never through a planted link
        except (OSError, HsmcertError):
            pass  # the cache is an optimisation; a read-only home must not break signing

    def remember(self, url: str, ref: KeyRef, info: KeyInfo) -> None:
        """Cache a key version the caller just created or rotated as the key's latest version."""
        self.forget(ref)
        if info.kty in ("RSA", "EC"):
            self.put(url, ref, info)

    def forget(self, ref: KeyRef | str) -> None:
        """Drop a key's "latest version" from memory (after create or rotate)."""
        ref = parse_keyref(ref) if isinstance(ref, str) else ref
        with self._lock:
            for mkey in [k for k in self._memory if k[1] == ref.key and k[2] in ("", ref.version or "")]:
                del self._memory[mkey]


_shared: LruDict[CachePolicy, KeyCache] = LruDict(8)
_shared_lock = threading.Lock()


def shared(policy: CachePolicy) -> KeyCache:
    """The process-wide cache of ``policy`` (what the default sessions of code that makes no Session share,
    so that :func:`forget` reaches them)."""
    with _shared_lock:
        found = _shared.get(policy)
        if found is None:
            found = _shared[policy] = KeyCache(policy)
        return found


def forget(ref: KeyRef | str) -> None:
    """Drop a key's "latest version" from the process-wide caches."""
    with _shared_lock:
        caches = list(_shared.values())
    for cache in caches:
        cache.forget(ref)


def cache_dir(policy: CachePolicy) -> Path:
    """The disk cache's directory of ``policy``; OSError when the user has none."""
    return policy.disk_dir()


__all__ = ["MEMORY_ENTRIES", "CachePolicy", "KeyCache", "cache_dir", "forget", "shared"]

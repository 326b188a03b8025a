"""The public-key cache (why one CSR costs two requests, the public key and the sign, and one when cached).

- in memory, per process: a pinned version's public key forever, "the latest version" of a key for
  ``HSMCERT_KEY_CACHE_TTL`` seconds (default 300); :func:`forget` drops a key (rotate and create call it);
- on disk, for pinned versions only (a version's public key never changes): one JSON file per
  (endpoint, key, version) in ``$HSMCERT_CACHE_DIR`` or ``<user cache dir>/hsmcert/public-keys``.
  Only public keys are stored. ``HSMCERT_KEY_CACHE=off`` disables both caches.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

from hsmcert.azure.keyinfo import KeyInfo
from hsmcert.keyref import KeyRef, parse_keyref
from hsmcert.lru import LruDict

MEMORY_ENTRIES = 4096
"""Public keys kept in memory (the least recently used beyond that are dropped)."""
_memory: LruDict[tuple[str, str, str], tuple[float, KeyInfo]] = LruDict(MEMORY_ENTRIES)
_memory_lock = threading.Lock()


def cache_enabled() -> bool:
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


def cache_get(url: str, ref: KeyRef) -> KeyInfo | None:
    if not cache_enabled():
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


def cache_put(url: str, ref: KeyRef, info: KeyInfo) -> None:
    if not cache_enabled():
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
        cache_put(url, ref, info)


def forget(ref: KeyRef | str) -> None:
    """Drop a key's "latest version" from the in-process cache (after create or rotate)."""
    ref = parse_keyref(ref) if isinstance(ref, str) else ref
    with _memory_lock:
        for mkey in [k for k in _memory if k[1] == ref.key and k[2] in ("", ref.version or "")]:
            del _memory[mkey]


__all__ = ["cache_dir", "cache_enabled", "cache_get", "cache_put", "forget", "remember"]

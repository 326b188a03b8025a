"""The service's authentication challenges, remembered on disk with the public keys."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hsmcert.azure.keycache import cache_dir, cache_enabled

# The service's 401 challenge (which authority and audience to get a token for) is remembered on disk with
# the public keys, so that a new process does not spend a request on eliciting it again. The SDK still
# checks the challenge's resource against the URL before it sends a token, and a stale challenge is
# answered by a fresh 401 that the SDK handles as usual.


def _challenge_file() -> Path:
    return cache_dir() / "challenges.json"


def seed_challenge(url: str) -> None:
    if not cache_enabled():
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


def save_challenge(url: str) -> None:
    """Persist the challenge of ``url`` once per process, after the first request that succeeded."""
    if url in _saved_challenges or not cache_enabled():
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
    except Exception:  # noqa: S110 - see seed_challenge
        pass


__all__ = ["save_challenge", "seed_challenge"]

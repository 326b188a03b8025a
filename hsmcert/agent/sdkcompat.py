"""Every use of the Azure SDKs' private internals, for the agent's pooled transport, in one place.

The agent hands azure-core's requests straight to urllib3 (:mod:`hsmcert.agent.transport`) and runs a short
pipeline; for that it needs three things the SDKs do not make public:

- ``azure.core.rest._http_response_impl.HttpResponseImpl``: the base of the response its transport returns;
- ``azure.keyvault.keys._shared.ChallengeAuthPolicy``: Key Vault's challenge authentication, for a pipeline
  built by hand;
- ``azure.keyvault.keys._shared.http_challenge_cache``: the service's 401 challenge, remembered on disk so
  that a restarted agent does not spend a request on eliciting it again.

Nothing else in hsmcert imports them (tests/agent/test_sdkcompat.py checks both). When an SDK release moves
one, this module is the only one to change; the CLI and the library use the SDKs' public API only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsmcert.azure.keycache import cache_dir

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from hsmcert.azure.keycache import CachePolicy


def challenge_auth_policy(credential: TokenCredential) -> Any:
    """Key Vault's challenge-based bearer-token policy (token cache, refresh before expiry)."""
    from azure.keyvault.keys._shared import ChallengeAuthPolicy

    return ChallengeAuthPolicy(credential)


def bearer_token(policy: Any, url: str) -> tuple[str, float] | None:
    """The ``Authorization`` value the SDK's challenge policy (:func:`challenge_auth_policy`) puts on a
    request to ``url`` (its token cache, refresh and challenge checks), and until when (``time.time()``)
    it may be reused without asking the policy again: the token's ``refresh_on``, else five minutes before
    it expires, as the policy itself decides. None while the service's challenge is not known yet."""
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.rest import HttpRequest
    from azure.keyvault.keys._shared import http_challenge_cache

    if http_challenge_cache.get_challenge_for_url(url) is None:
        return None
    request = PipelineRequest(HttpRequest("POST", url), PipelineContext(None))
    policy.on_request(request)
    header = request.http_request.headers.get("Authorization")
    token = policy._token
    if not header or token is None:
        return None
    reuse_until = getattr(token, "refresh_on", None) or token.expires_on - 300
    return header, float(min(reuse_until, token.expires_on - 300))


_response_class: Any = None


def _response_type() -> Any:
    """The azure-core rest response class of the pooled transport (made once, on first use)."""
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


def read_response(request: Any, raw: Any) -> Any:
    """An azure-core rest response holding ``raw``, a urllib3 response that has been read completely."""
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


# The service's 401 challenge (which authority and audience to get a token for) is remembered on disk with
# the public keys, so that a new process does not spend a request on eliciting it again. The SDK still
# checks the challenge's resource against the URL before it sends a token, and a stale challenge is
# answered by a fresh 401 that the SDK handles as usual. Where, and whether, is the cache policy of the
# session whose clients ask (read when it was built).


def _challenge_file(policy: CachePolicy) -> Path:
    return cache_dir(policy) / "challenges.json"


def seed_challenge(url: str, policy: CachePolicy) -> None:
    """Give the SDK the challenge of ``url`` remembered on disk, if any (before its first request)."""
    if not policy.enabled:
        return
    try:
        from azure.keyvault.keys._shared import http_challenge_cache
        from azure.keyvault.keys._shared.http_challenge import HttpChallenge

        if http_challenge_cache.get_challenge_for_url(url) is not None:
            return
        header = json.loads(_challenge_file(policy).read_text()).get(url)
        if isinstance(header, str):
            http_challenge_cache.set_challenge_for_url(url, HttpChallenge(url, header))
    except Exception:  # noqa: S110 - an optimisation only: without it the SDK elicits the challenge
        pass


_saved_challenges: set[str] = set()


def forget_challenge(url: str) -> None:
    """Drop what this process remembers of ``url``'s challenge (in memory; the file on disk stays)."""
    _saved_challenges.discard(url)
    try:
        from azure.keyvault.keys._shared import http_challenge_cache

        http_challenge_cache.remove_challenge_for_url(url)
    except Exception:  # noqa: S110 - see seed_challenge
        pass


def save_challenge(url: str, policy: CachePolicy) -> None:
    """Persist the challenge of ``url`` once per process, after the first request that succeeded."""
    if url in _saved_challenges or not policy.enabled:
        return
    try:
        from azure.keyvault.keys._shared import http_challenge_cache

        challenge = http_challenge_cache.get_challenge_for_url(url)
        if challenge is None:
            return
        wanted = ("authorization", "authorization_uri", "resource", "scope")
        params = {k: v for k, v in challenge._parameters.items() if k in wanted}
        header = "Bearer " + ", ".join(f'{k}="{v}"' for k, v in params.items())
        path = _challenge_file(policy)
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        if not isinstance(known, dict) or known.get(url) == header:
            _saved_challenges.add(url)
            return
        known[url] = header
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        from hsmcert.output_files import write_output

        write_output(path, json.dumps(known).encode(), force=True, mode=0o600)  # never through a link
        _saved_challenges.add(url)
    except Exception:  # noqa: S110 - see seed_challenge
        pass


__all__ = [
    "bearer_token",
    "challenge_auth_policy",
    "forget_challenge",
    "read_response",
    "save_challenge",
    "seed_challenge",
]

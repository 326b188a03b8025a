"""What an access token says about itself, decoded without verifying it (for display and diagnosis only).

The HSM verifies tokens; hsmcert only reads the claims that say who a token is for and how long it lasts,
so that ``whoami`` and ``doctor`` can call a garbage or expired token what it is instead of sending it.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from hsmcert.timestamps import rfc3339


def _segment(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def token_problem(token: str, now: float | None = None) -> str | None:
    """Why ``token`` cannot be a usable access token now, as the end of a sentence; None when it may be.

    >>> token_problem("garbage")
    'is not a JWT (a JWT is three base64url parts separated by dots; it has 1)'
    >>> import base64, json
    >>> def jwt(claims):
    ...     part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    ...     return f"{part({'alg': 'RS256'})}.{part(claims)}.sig"
    >>> token_problem(jwt({"exp": 1796109303}), now=1796112903)
    'expired at 2026-12-01T07:15:03Z (60 minutes ago)'
    >>> token_problem(jwt({"exp": 1796109303}), now=1796109000) is None
    True
    """
    now = time.time() if now is None else now
    parts = token.strip().split(".")
    if len(parts) != 3:
        return f"is not a JWT (a JWT is three base64url parts separated by dots; it has {len(parts)})"
    try:
        header, claims = _segment(parts[0]), _segment(parts[1])
    except (ValueError, UnicodeDecodeError):
        return "is not a JWT (its header and claims are not base64url-encoded JSON)"
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return "is not a JWT (its header and claims are not JSON objects)"
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp <= now:
        return f"expired at {rfc3339(exp)} ({_ago(now - exp)} ago)"
    if isinstance(nbf, (int, float)) and not isinstance(nbf, bool) and nbf > now + 300:
        return f"is not valid before {rfc3339(nbf)}"
    return None


def expiry(token: str) -> int | None:
    """The token's ``exp`` claim, or None when it has none (never an invented one)."""
    try:
        exp = _segment(token.strip().split(".")[1]).get("exp")
    except (ValueError, UnicodeDecodeError, IndexError, AttributeError):
        return None
    return int(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)} seconds"
    if seconds < 7200:
        return f"{int(seconds // 60)} minutes"
    if seconds < 172800:
        return f"{int(seconds // 3600)} hours"
    return f"{int(seconds // 86400)} days"

"""What an access token says about itself, decoded without verifying it (for display and diagnosis only).

The HSM verifies tokens; hsmcert only reads the claims that say who a token is for and how long it lasts,
so that ``whoami`` and ``doctor`` can call a garbage or expired token what it is instead of sending it.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from hsmcert.timestamps import rfc3339


def _segment(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


LAST_TIME = 253402300799
"""The last second a token time may name (9999-12-31T23:59:59Z); later ones cannot be shown or compared."""


class UnusableTime(ValueError):
    """A time claim that is present but is not a number of seconds from 1970 to 9999."""


def time_claim(claims: Mapping[str, Any], name: str) -> int | None:
    """The ``exp`` or ``nbf`` claim ``name`` in whole seconds since the epoch; None when it is absent.

    Raises :class:`UnusableTime` when the claim is there but is not a finite number from 0 to
    :data:`LAST_TIME` (a string, a boolean, NaN, Infinity, 1e300).

    >>> time_claim({"exp": 1796109303.5}, "exp"), time_claim({}, "nbf")
    (1796109303, None)
    >>> time_claim({"exp": float("nan")}, "exp")
    Traceback (most recent call last):
    ...
    hsmcert.tokens.UnusableTime: has no usable exp claim (it must be seconds since 1970, up to year 9999)
    """
    value = claims.get(name)
    if value is None:
        return None
    usable = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= LAST_TIME
    )
    if not usable:
        raise UnusableTime(f"has no usable {name} claim (it must be seconds since 1970, up to year 9999)")
    return int(value)


def claims_of(token: str) -> dict[str, Any]:
    """The claims of a JWT (not verified: for display and diagnosis only); empty when it has none.

    >>> claims_of("e30.eyJvaWQiOiAieCJ9.sig")
    {'oid': 'x'}
    >>> claims_of("not a jwt")
    {}
    """
    parts = token.strip().split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = _segment(parts[1])
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def text_claim(claims: Mapping[str, Any], *names: str) -> str | None:
    """The first of the claims ``names`` that is a non-empty string (a list or object is never shown).

    >>> text_claim({"tid": ["t"], "appid": "a"}, "tid"), text_claim({"azp": "a"}, "appid", "azp")
    (None, 'a')
    """
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


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
    try:
        exp, nbf = time_claim(claims, "exp"), time_claim(claims, "nbf")
    except UnusableTime as exc:
        return str(exc)
    if exp is not None and exp <= now:
        return f"expired at {rfc3339(exp)} ({_ago(now - exp)} ago)"
    if nbf is not None and nbf > now + 300:
        return f"is not valid before {rfc3339(nbf)}"
    return None


def expiry(token: str) -> int | None:
    """The token's ``exp`` claim, or None when it has none or an unusable one (never an invented one)."""
    try:
        return time_claim(claims_of(token), "exp")
    except UnusableTime:
        return None


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)} seconds"
    if seconds < 7200:
        return f"{int(seconds // 60)} minutes"
    if seconds < 172800:
        return f"{int(seconds // 3600)} hours"
    return f"{int(seconds // 86400)} days"

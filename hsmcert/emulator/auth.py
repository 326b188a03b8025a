"""Tokens the emulator issues and accepts: HS256 JWTs carrying the principal's object id.

Principals are named (``admin``, ``alice``); a name maps to a stable object id (a UUID derived from the name),
and a name that already is a UUID is its own object id. The signing secret lives in the data directory (0600),
so ``hsmcert emulator token`` can issue a token without asking the running emulator.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from hsmcert.emulator.api import loads_json

ADMIN = "admin"
TENANT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://hsmcert.invalid/emulator/tenant"))
_PRINCIPALS = uuid.uuid5(uuid.NAMESPACE_URL, "https://hsmcert.invalid/emulator/principals")
TOKEN_LIFETIME = 24 * 3600


def principal_id(name: str) -> str:
    """The object id of a principal name (a UUID stays itself).

    >>> principal_id("admin") == principal_id("admin") != principal_id("alice")
    True
    >>> principal_id("21DBD100-6940-42C2-9190-5D6CB909625B")
    '21dbd100-6940-42c2-9190-5d6cb909625b'
    """
    try:
        return str(uuid.UUID(name))
    except ValueError:
        return str(uuid.uuid5(_PRINCIPALS, name))


def check_principal(name: str) -> str:
    """A principal name or object id a user gave: 1 to 256 printable characters (UsageError else).

    >>> check_principal("ci-runner")
    'ci-runner'
    >>> check_principal("")
    Traceback (most recent call last):
    hsmcert.errors.UsageError: The principal name '' is invalid.
    """
    from hsmcert.errors import UsageError

    if not 0 < len(name) <= 256 or not name.isprintable():  # a lone surrogate is not printable
        raise UsageError(
            f"The principal name {name[:60]!r} is invalid.",
            "Give a name such as alice or ci-runner (1 to 256 printable characters), or an object id.",
        )
    return name


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jwt(key: bytes, claims: dict[str, Any]) -> str:
    """An HS256 JWT of ``claims`` signed with ``key``."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def read_jwt(key: bytes, token: str) -> dict[str, Any]:
    """The claims of an HS256 JWT signed with ``key``; a ValueError saying why it is not one.

    >>> read_jwt(b"k", sign_jwt(b"k", {"sub": "x"}))
    {'sub': 'x'}
    >>> read_jwt(b"other", sign_jwt(b"k", {"sub": "x"}))
    Traceback (most recent call last):
    ValueError: the signature is invalid
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("the token is not a JWT")
    try:
        header = loads_json(_unb64(parts[0]))
        signature = _unb64(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the token is not a JWT") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise ValueError("the token is not signed by the emulator (HS256 expected)")
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise ValueError("the signature is invalid")
    try:
        claims = loads_json(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the token is not a JWT") from None
    if not isinstance(claims, dict):
        raise ValueError("the token is not a JWT")
    return claims


def issue(secret: bytes, principal: str = ADMIN, audience: str = "https://managedhsm.azure.net") -> str:
    """A signed token for ``principal`` (a name or an object id), valid for a day."""
    now = int(time.time())
    oid = principal_id(principal)
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{TENANT_ID}/",
        "iat": now,
        "nbf": now - 60,
        "exp": now + TOKEN_LIFETIME,
        "oid": oid,
        "sub": oid,
        "tid": TENANT_ID,
        "appid": oid,
        "name": principal,
        "idtyp": "app",
    }
    return sign_jwt(secret, claims)


@dataclass(frozen=True)
class Caller:
    object_id: str
    name: str
    expires: int


class TokenVerifier:
    """Checks bearer tokens (signature, expiry) with a small cache of tokens already seen."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._cache: dict[str, Caller] = {}

    def verify(self, token: str) -> Caller | None:
        cached = self._cache.get(token)
        now = time.time()
        if cached is not None:
            return cached if cached.expires > now else None
        try:
            claims = read_jwt(self._secret, token)
        except ValueError:
            return None
        if not isinstance(claims.get("oid"), str):
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now:
            return None
        caller = Caller(claims["oid"], str(claims.get("name", claims["oid"])), exp)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[token] = caller
        return caller

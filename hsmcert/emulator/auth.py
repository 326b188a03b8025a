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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode()
    return f"{header}.{body}.{_b64(hmac.new(secret, signing_input, hashlib.sha256).digest())}"


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
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = hmac.new(self._secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(expected, _unb64(parts[2])):
                return None
            claims: Any = json.loads(_unb64(parts[1]))
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("oid"), str):
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now:
            return None
        caller = Caller(claims["oid"], str(claims.get("name", claims["oid"])), exp)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[token] = caller
        return caller

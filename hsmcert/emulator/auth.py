"""Tokens the emulator issues and accepts: HS256 JWTs carrying the principal's object id.

Principals are named (``admin``, ``alice``); a name maps to a stable object id (a UUID derived from the name),
and a name that already is a UUID is its own object id. The signing secret lives in the data directory (0600),
so ``hsmcert emulator token`` can issue a token without asking the running emulator.

A service accepts a token (:meth:`TokenVerifier.verify`) when it is signed with that key, its ``tid`` is the
emulator's tenant, its ``aud`` names the service (:func:`audience_accepted`), and now is within ``nbf``..``exp``
give or take :data:`CLOCK_SKEW`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hsmcert.emulator.api import loads_json

ADMIN = "admin"
TENANT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://hsmcert.invalid/emulator/tenant"))
_PRINCIPALS = uuid.uuid5(uuid.NAMESPACE_URL, "https://hsmcert.invalid/emulator/principals")
TOKEN_LIFETIME = 24 * 3600
MAX_LIFETIME = 30 * 24 * 3600
# How far a token's nbf and exp may be off the emulator's clock. Azure allows five minutes; the emulator one,
# so that an expired token can be rehearsed without a long wait.
CLOCK_SKEW = 60
# The audience Azure's services accept, each with or without one trailing slash.
AUDIENCES = {"managedhsm": "https://managedhsm.azure.net", "vault": "https://vault.azure.net"}
_DURATION_RE = re.compile(r"^([+-]?)(\d{1,9})([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, what: str, signed: bool = False) -> int:
    """Seconds of a duration such as ``30s``, ``10m``, ``2h``, ``1d`` (a bare number is seconds; with
    ``signed``, ``-2h`` is two hours ago). UsageError naming ``what`` for anything else.

    >>> parse_duration("10m", "--lifetime"), parse_duration("-2h", "--valid-in", signed=True)
    (600, -7200)
    >>> parse_duration("-2h", "--lifetime")
    Traceback (most recent call last):
    hsmcert.errors.UsageError: --lifetime '-2h' is not a duration.
    """
    from hsmcert.errors import UsageError

    match = _DURATION_RE.match(text.strip())
    if match is None or (match.group(1) and not signed):
        raise UsageError(
            f"{what} {text[:40]!r} is not a duration.",
            "Give a number and a unit: 30s, 10m, 2h or 1d" + (" (-2h: two hours ago)." if signed else "."),
        )
    seconds = int(match.group(2)) * _UNITS[match.group(3)]
    return -seconds if match.group(1) == "-" else seconds


def check_lifetime(seconds: int, what: str = "--lifetime") -> int:
    """A token lifetime from 1 second to 30 days (UsageError else)."""
    from hsmcert.errors import UsageError

    if not 0 < seconds <= MAX_LIFETIME:
        raise UsageError(f"{what} must be from 1 second to 30 days; {seconds} s is not.", None)
    return seconds


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


def issue(
    secret: bytes,
    principal: str = ADMIN,
    audience: str = "https://managedhsm.azure.net",
    lifetime: int = TOKEN_LIFETIME,
    valid_in: int = 0,
) -> str:
    """A signed token for ``principal`` (a name or an object id), valid from ``valid_in`` seconds from now
    (negative: in the past) for ``lifetime`` seconds."""
    now = int(time.time())
    oid = principal_id(principal)
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{TENANT_ID}/",
        "iat": now,
        "nbf": now + valid_in,
        "exp": now + valid_in + lifetime,
        "oid": oid,
        "sub": oid,
        "tid": TENANT_ID,
        "appid": oid,
        "name": principal,
        "idtyp": "app",
    }
    return sign_jwt(secret, claims)


def audience_accepted(audience: str, kind: str, challenge: str) -> bool:
    """Whether a service of ``kind`` accepts a token for ``audience``: Azure's audience of that kind, or the
    resource the service's 401 challenge names for this request (``challenge``, e.g. ``https://0.0.1:8443``
    for ``127.0.0.1:8443``: the audience the Azure SDKs ask for); each with or without one trailing slash.

    >>> audience_accepted("https://managedhsm.azure.net/", "managedhsm", "https://0.0.1:8443")
    True
    >>> audience_accepted("https://vault.azure.net", "managedhsm", "https://0.0.1:8443")
    False
    >>> audience_accepted("https://0.0.1:8443/", "vault", "https://0.0.1:8443")
    True
    >>> audience_accepted("https://0.0.1:9000", "vault", "https://0.0.1:8443")
    False
    """
    wanted = audience[:-1] if audience.endswith("/") else audience
    return wanted in (AUDIENCES.get(kind), challenge)


class InvalidToken(Exception):
    """Why a bearer token is refused: the message the 401 carries, after Key Vault's error code."""

    def __init__(self, message: str, code: str = "AKV10000") -> None:
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True)
class Caller:
    object_id: str
    name: str
    audience: str
    not_before: int
    expires: int


def _caller(claims: dict[str, Any]) -> Caller:
    oid, aud, nbf, exp = (claims.get(name) for name in ("oid", "aud", "nbf", "exp"))
    if not isinstance(oid, str) or not isinstance(aud, str):
        raise InvalidToken("The token has no oid or aud claim.")
    if claims.get("tid") != TENANT_ID:
        raise InvalidToken(f"The token is from another tenant; the emulator's tenant is {TENANT_ID}.")
    if not isinstance(exp, int) or (nbf is not None and not isinstance(nbf, int)):
        raise InvalidToken("The token's nbf and exp must be whole seconds.")
    return Caller(oid, str(claims.get("name", oid)), aud, nbf or 0, exp)


class TokenVerifier:
    """Checks bearer tokens: signature and tenant once (a small cache of tokens already seen), audience and
    validity time on every request."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._cache: dict[str, Caller] = {}

    def verify(self, token: str, accepts: Callable[[str], bool] = lambda aud: True) -> Caller:
        """The caller of ``token`` if ``accepts`` its audience and it is valid now; InvalidToken else."""
        caller = self._cache.get(token)
        if caller is None:
            try:
                claims = read_jwt(self._secret, token)
            except ValueError as exc:
                raise InvalidToken(f"The token is invalid: {exc}.") from None
            caller = _caller(claims)
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[token] = caller
        if not accepts(caller.audience):
            raise InvalidToken(f"Invalid audience {caller.audience[:200]!r} for this service.", "AKV10022")
        now = time.time()
        if caller.expires + CLOCK_SKEW <= now:
            raise InvalidToken(f"The token expired at {_stamp(caller.expires)}.")
        if caller.not_before - CLOCK_SKEW > now:
            raise InvalidToken(f"The token is not valid before {_stamp(caller.not_before)}.")
        return caller


def _stamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(0, min(seconds, 253402300799))))

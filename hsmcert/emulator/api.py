"""What every handler of the emulator shares: the request, Azure-shaped errors, base64url, validation."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NAME_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
VERSION_RE = re.compile(r"^[0-9a-fA-F]{32}$")
_B64U_RE = re.compile(r"[A-Za-z0-9_-]*")
MAX_BODY = 1 << 20
PAGE_SIZE = 25
MAX_JSON_DEPTH = 32
"""Deeper JSON is refused: no Key Vault document nests more than a few levels."""
MAX_TIMESTAMP = 253402300799
"""9999-12-31T23:59:59Z, the last second Azure's dates hold (attributes ``nbf``, ``exp``)."""


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[][{}]')
"""A JSON string (skipped whole, escapes included) or one bracket."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_json(data: bytes | str) -> Any:
    """Parse JSON as Azure does: no NaN or Infinity, at most :data:`MAX_JSON_DEPTH` levels; ValueError else.

    >>> loads_json(b'{"a": [1, {"b": null}]}')
    {'a': [1, {'b': None}]}
    >>> loads_json(r'["\\ud83d\\ude00"]') == ["\\U0001f600"]
    True
    >>> loads_json(r'{"tag": "\\ud800"}')
    Traceback (most recent call last):
    ValueError: the JSON holds a lone UTF-16 surrogate (\\uD800-\\uDFFF)
    >>> loads_json("[" * 5000 + "]" * 5000)
    Traceback (most recent call last):
    ValueError: the JSON nests deeper than 32 levels
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        _check_depth(text)
    value = json.loads(text, parse_constant=_no_constant)
    if _SURROGATE_ESCAPE.search(text):  # a \\uD800-\\uDFFF escape: only a whole pair is a character
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the JSON holds a lone UTF-16 surrogate (\\uD800-\\uDFFF)") from None
    return value


def _check_depth(text: str) -> None:
    """Count the nesting before the recursive parser sees it (ValueError when it is too deep)."""
    depth = 0
    for token in _JSON_TOKENS.finditer(text):
        char = token.group()
        if char in ("[", "{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
        elif char in ("]", "}"):
            depth -= 1


class ApiError(Exception):
    """An answer in Azure's error shape: ``{"error": {"code", "message", "innererror"?}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        inner: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return {"error": error}


def bad(message: str, code: str = "BadParameter") -> ApiError:
    return ApiError(400, code, message)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    base_url: str
    principal: str = ""
    principal_name: str = ""
    params: dict[str, str] = field(default_factory=dict)
    """The path parameters of the route (``name``, ``version``, ``scope``...)."""
    _json: Any = field(default=None, repr=False)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (400 when it is not one)."""
        if self._json is None:
            if not self.body.strip():
                self._json = {}
            else:
                try:
                    self._json = loads_json(self.body)
                except ValueError as exc:
                    raise bad(f"The request body is not valid JSON: {str(exc)[:80]}.") from None
            if not isinstance(self._json, dict):
                raise bad("The request body must be a JSON object.")
        result: dict[str, Any] = self._json
        return result


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    audit: dict[str, Any] | None = None
    """What the audit log records for this answer (operation, key, version); None: nothing."""
    drop: bool = False
    """Close the connection without an answer (a fault on purpose)."""


Handler = Callable[[Any, Request], Response]
"""Every route's handler: ``(service or emulator, request) -> response`` (see :mod:`hsmcert.emulator.routes`)."""


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(value: Any, what: str) -> bytes:
    """Decode base64url (padding optional; standard alphabet tolerated as the service does)."""
    if not isinstance(value, str):
        raise bad(f"The '{what}' field must be a base64url string.")
    text = value.strip().rstrip("=").replace("+", "-").replace("/", "_")
    if not _B64U_RE.fullmatch(text) or len(text) % 4 == 1:
        raise bad(f"The '{what}' field is not valid base64url.")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise bad(f"The '{what}' field is not valid base64url.") from None


def unb64(value: Any, what: str) -> bytes:
    """Decode standard base64 (certificates, CSRs)."""
    if not isinstance(value, str):
        raise bad(f"The '{what}' field must be a base64 string.")
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        try:
            return unb64u(value, what)
        except ApiError:
            raise bad(f"The '{what}' field is not valid base64.") from None


def field_of(body: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise bad(f"The '{name}' field is required.")
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise bad(f"The '{name}' field has the wrong type.")
    if not isinstance(value, kind):
        raise bad(f"The '{name}' field has the wrong type.")
    return value


def check_name(name: str, what: str = "key") -> str:
    if not NAME_RE.match(name):
        raise bad(f"The {what} name '{name[:130]}' is invalid: use 1-127 letters, digits and dashes.")
    return name


def paged(items: list[Any], req: Request, path: str) -> dict[str, Any]:
    """One page of ``items`` (``$skiptoken`` is the offset), with an absolute ``nextLink``."""
    try:
        start = max(int(req.query.get("$skiptoken", "0")), 0)
    except ValueError:
        raise bad("The $skiptoken parameter is invalid.") from None
    try:
        size = min(max(int(req.query.get("maxresults", str(PAGE_SIZE))), 1), PAGE_SIZE)
    except ValueError:
        raise bad("The maxresults parameter is invalid.") from None
    page = items[start : start + size]
    next_link = None
    if start + size < len(items):
        api = req.query.get("api-version", "7.5")
        next_link = f"{req.base_url}{path}?api-version={api}&$skiptoken={start + size}&maxresults={size}"
    return {"value": page, "nextLink": next_link}

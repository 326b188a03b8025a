"""Key references: every spelling hsmcert accepts for "this key in that HSM or vault".

>>> ref = parse_keyref("managedhsm:contoso:tls-key?version=0123456789abcdef0123456789abcdef")
>>> ref.kind, ref.service, ref.key, ref.version
('managedhsm', 'contoso', 'tls-key', '0123456789abcdef0123456789abcdef')
>>> str(parse_keyref("azurekms:name=tls-key;vault=contoso"))
'vault:contoso:tls-key'

Accepted spellings (scheme and service kind are case-insensitive):

- ``managedhsm:<hsm>:<key>[?version=<v>]``
- ``vault:<vault>:<key>[?version=<v>]``
- ``akv:vault=<name>,name=<key>[,version=<v>][,type=managedhsm|vault]`` (type defaults to managedhsm)
- ``engine:e_akv:<managedHsm|vault>:<name>:<key>``
- ``azurekms:name=<key>;vault=<vault>[;version=<v>]`` (always Key Vault)
- ``azurekms://<vault>.vault.azure.net/<key>[/<version>]`` (cosign's spelling; a ``managedhsm.azure.net``
  host names a Managed HSM)
- ``https://<hsm>.managedhsm.azure.net/keys/<key>[/<version>]`` and ``https://<vault>.vault.azure.net/...``

The C provider never parses references: it hands the string to the agent, which calls :func:`parse_keyref`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from hsmcert.errors import UsageError

Kind = Literal["managedhsm", "vault"]

ACCEPTED_FORMS = (
    "managedhsm:<hsm>:<key>[?version=<v>]",
    "vault:<vault>:<key>[?version=<v>]",
    "akv:vault=<name>,name=<key>[,version=<v>][,type=managedhsm|vault]",
    "engine:e_akv:<managedHsm|vault>:<name>:<key>",
    "azurekms:name=<key>;vault=<vault>[;version=<v>]",
    "azurekms://<vault>.vault.azure.net/<key>[/<version>]",
    "https://<hsm>.managedhsm.azure.net/keys/<key>[/<version>]",
    "https://<vault>.vault.azure.net/keys/<key>[/<version>]",
)

# DNS suffixes of Azure's public and sovereign clouds.
_HOST_SUFFIXES: dict[str, Kind] = {
    "managedhsm.azure.net": "managedhsm",
    "managedhsm.azure.cn": "managedhsm",
    "managedhsm.usgovcloudapi.net": "managedhsm",
    "vault.azure.net": "vault",
    "vault.azure.cn": "vault",
    "vault.usgovcloudapi.net": "vault",
}

_SERVICE_RE = re.compile(r"^[a-zA-Z](?:-?[a-zA-Z0-9])*$")  # no leading/trailing/double hyphen
_KEY_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_VERSION_RE = re.compile(r"^[0-9a-fA-F]{32}$")
_KIND_ALIASES: dict[str, Kind] = {
    "managedhsm": "managedhsm",
    "mhsm": "managedhsm",
    "vault": "vault",
    "keyvault": "vault",
}

_REMEDY = "Accepted forms: " + "; ".join(ACCEPTED_FORMS) + "."


@dataclass(frozen=True)
class KeyRef:
    """One key (and optionally one version of it) in a Managed HSM or a Key Vault."""

    kind: Kind
    service: str
    """The Managed HSM or Key Vault name (lower case), as in ``<service>.managedhsm.azure.net``."""
    key: str
    version: str | None = None
    host_suffix: str | None = None
    """Set when the reference was a URL in a cloud other than Azure public; ``None`` means the default."""

    def __str__(self) -> str:
        text = f"{self.kind}:{self.service}:{self.key}"
        return f"{text}?version={self.version}" if self.version else text

    def with_version(self, version: str | None) -> KeyRef:
        return KeyRef(self.kind, self.service, self.key, version, self.host_suffix)

    @property
    def azure_url(self) -> str:
        """The service's URL in Azure (``https://<service>.managedhsm.azure.net``)."""
        suffix = self.host_suffix or (
            "managedhsm.azure.net" if self.kind == "managedhsm" else "vault.azure.net"
        )
        return f"https://{self.service}.{suffix}"


def _service_problem(service: str) -> str | None:
    if not service:
        return "the HSM or vault name is empty"
    if not (3 <= len(service) <= 24) or not _SERVICE_RE.fullmatch(service):
        return (
            f"{service[:40]!r} is not a valid HSM or vault name (3-24 letters, digits and single hyphens, "
            "starting with a letter)"
        )
    return None


def check_service_name(service: str) -> str:
    """``service`` if it is a valid Managed HSM or Key Vault name, else a UsageError saying why.

    Names given outside a key reference (``--hsm``, ``--vault``) go through this before they become part
    of a URL that a token is sent to.

    >>> check_service_name("contoso")
    'contoso'
    >>> check_service_name("evil.example/x")
    Traceback (most recent call last):
    hsmcert.errors.UsageError: 'evil.example/x' is not a valid HSM or vault name (3-24 letters, digits and single hyphens, starting with a letter).
    """
    problem = _service_problem(service)
    if problem:
        raise UsageError(f"{problem[0].upper()}{problem[1:]}.", "Give the name alone, as in Azure: contoso.")
    return service


def check_key_name(key: str) -> str:
    """``key`` if it is a valid key name (1-127 letters, digits and hyphens), else a UsageError.

    >>> check_key_name("tls-key")
    'tls-key'
    """
    if not _KEY_RE.fullmatch(key):
        raise UsageError(
            f"{key[:80]!r} is not a valid key name (1-127 letters, digits and hyphens).",
            "Give the key's name alone, as in Azure: tls-key.",
        )
    return key


def _bad(what: str) -> UsageError:
    return UsageError(f"Invalid key reference: {what}.", _REMEDY)


def _check(kind: str, service: str, key: str, version: str | None) -> KeyRef:
    kind_l = kind.lower()
    if kind_l not in _KIND_ALIASES:
        raise _bad(f"unknown service kind {kind!r} (expected managedhsm or vault)")
    problem = _service_problem(service)
    if problem:
        raise _bad(problem)
    if not key:
        raise _bad("the key name is empty")
    if not _KEY_RE.fullmatch(key):
        raise _bad(f"{key!r} is not a valid key name (1-127 letters, digits and hyphens)")
    if version is not None:
        if not _VERSION_RE.fullmatch(version):
            raise _bad(f"{version!r} is not a valid key version (32 hexadecimal characters)")
        version = version.lower()
    return KeyRef(_KIND_ALIASES[kind_l], service.lower(), key, version)


def _split_query(rest: str) -> tuple[str, str | None]:
    """Split ``body?version=v`` into the body and the version."""
    if "?" not in rest:
        return rest, None
    body, query = rest.split("?", 1)
    if not query.lower().startswith("version="):
        raise _bad(f"unknown query {query!r} (only ?version=<v> is accepted)")
    value = query[len("version=") :]
    if not value:
        raise _bad("?version= is empty")
    return body, value


def _attributes(text: str, sep: str, allowed: tuple[str, ...], form: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for part in text.split(sep):
        if "=" not in part:
            raise _bad(f"{part!r} in the {form} reference is not a name=value pair")
        name, value = part.split("=", 1)
        name = name.strip().lower()
        if name not in allowed:
            raise _bad(f"unknown attribute {name!r} in the {form} reference (accepted: {', '.join(allowed)})")
        if name in attrs:
            raise _bad(f"attribute {name!r} is given twice")
        attrs[name] = value.strip()
    return attrs


def _parse_url(text: str) -> KeyRef:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise _bad(f"{text!r} is not a valid URL") from exc
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() != "https":
        raise _bad("key identifier URLs must use https")
    if port not in (None, 443) or parts.query or parts.fragment or parts.username:
        raise _bad("a key identifier URL has no port, query, fragment or user name")
    service, _, suffix = host.partition(".")
    if suffix not in _HOST_SUFFIXES:
        raise _bad(
            f"{host!r} is not a Managed HSM or Key Vault host (*.managedhsm.azure.net, *.vault.azure.net)"
        )
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) not in (2, 3) or segments[0] != "keys":
        raise _bad("the URL path must be /keys/<key> or /keys/<key>/<version>")
    version = segments[2] if len(segments) == 3 else None
    ref = _check(_HOST_SUFFIXES[suffix], service, segments[1], version)
    default = "managedhsm.azure.net" if ref.kind == "managedhsm" else "vault.azure.net"
    return ref if suffix == default else KeyRef(ref.kind, ref.service, ref.key, ref.version, suffix)


def parse_keyref(text: str) -> KeyRef:
    """Parse any accepted spelling into a :class:`KeyRef`.

    Raises :class:`~hsmcert.errors.UsageError` naming the part that is wrong; never anything else.
    """
    if not isinstance(text, str):
        raise _bad("a key reference must be text")
    text = text.strip()
    if not text:
        raise _bad("the reference is empty")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise _bad("the reference contains spaces or control characters")
    if len(text) > 1024:
        raise _bad("the reference is longer than 1024 characters")
    scheme, sep, rest = text.partition(":")
    if not sep:
        raise _bad(f"{text!r} has no scheme (such as managedhsm:)")
    scheme = scheme.lower()

    if scheme in ("managedhsm", "vault"):
        body, version = _split_query(rest)
        fields = body.split(":")
        if len(fields) != 2:
            raise _bad(f"expected {scheme}:<name>:<key>, got {len(fields)} field(s) after the scheme")
        return _check(scheme, fields[0], fields[1], version)

    if scheme == "akv":
        attrs = _attributes(rest, ",", ("vault", "name", "version", "type"), "akv:")
        for needed in ("vault", "name"):
            if needed not in attrs:
                raise _bad(f"the akv: reference has no {needed}=")
        return _check(attrs.get("type", "managedhsm"), attrs["vault"], attrs["name"], attrs.get("version"))

    if scheme == "azurekms" and rest.startswith("//"):
        # cosign: azurekms://NAME.vault.azure.net/KEY[/VERSION], the key identifier URL without /keys
        host, _, path = rest[2:].partition("/")
        if not host or not path:
            raise _bad("expected azurekms://<vault>.vault.azure.net/<key>")
        return _parse_url(f"https://{host}/keys/{path}")

    if scheme == "azurekms":
        body, version = _split_query(rest)
        attrs = _attributes(body, ";", ("name", "vault", "version"), "azurekms:")
        for needed in ("vault", "name"):
            if needed not in attrs:
                raise _bad(f"the azurekms: reference has no {needed}=")
        if version is not None and "version" in attrs:
            raise _bad("the version is given twice")
        return _check("vault", attrs["vault"], attrs["name"], version or attrs.get("version"))

    if scheme == "engine":
        fields = rest.split(":")
        if len(fields) != 4 or fields[0].lower() != "e_akv":
            raise _bad("expected engine:e_akv:<managedHsm|vault>:<name>:<key>")
        return _check(fields[1], fields[2], fields[3], None)

    if scheme in ("https", "http"):
        return _parse_url(text)

    raise _bad(f"unknown scheme {scheme!r}")

"""Subject alternative names: ``DNS:``, ``IP:``, ``email:`` and ``URI:`` entries.

Entries are given comma-separated (``DNS:a.example,IP:10.0.0.1``), in several ``--san`` options, or both.
A comma splits only where the next entry starts with a type, so a URI may contain commas.

>>> [str(n.value) for n in parse_sans(["DNS:www.example.com,IP:192.0.2.1", "URI:https://example.com/a,b"])]
['www.example.com', '192.0.2.1', 'https://example.com/a,b']
>>> format_san(parse_sans("email:ops@example.com")[0])
'email:ops@example.com'
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hsmcert.errors import UsageError

if TYPE_CHECKING:
    from cryptography import x509

_FORMS = "Use DNS:host.example.com, IP:192.0.2.1 or IP:2001:db8::1, email:user@example.com, URI:https://..."
_SPLIT = re.compile(r",\s*(?=(?:dns|ip|email|uri)\s*:|\s*$)", re.IGNORECASE)
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_dns_name(name: str, *, wildcard: bool = True, what: str = "DNS name") -> str:
    """``name`` in ASCII (IDNA for non-ASCII labels), or a UsageError saying which label is wrong."""
    text = name.strip().rstrip(".")
    if not text:
        raise UsageError(f"The {what} is empty.", _FORMS)
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            raise UsageError(f"The {what} {name!r} is not a valid internationalised name.", _FORMS) from None
    labels = text.split(".")
    for i, label in enumerate(labels):
        if label == "*" and i == 0 and wildcard and len(labels) > 2:
            continue
        if not _LABEL.match(label):
            raise UsageError(
                f"The {what} {name!r} has an invalid label {label!r}.",
                "Labels are 1-63 letters, digits or hyphens, not starting or ending with a hyphen; "
                "a wildcard is allowed only as the whole first label (*.example.com).",
            )
    if len(text) > 253:
        raise UsageError(f"The {what} {name!r} is longer than 253 characters.", _FORMS)
    return text


def parse_san(entry: str) -> x509.GeneralName:
    """One ``TYPE:value`` entry as a cryptography GeneralName."""
    from cryptography import x509

    kind, sep, value = entry.strip().partition(":")
    kind = kind.strip().lower()
    value = value.strip()
    if not sep or kind not in ("dns", "ip", "email", "uri"):
        raise UsageError(f"The SAN {entry.strip()!r} does not start with DNS:, IP:, email: or URI:.", _FORMS)
    if not value:
        raise UsageError(f"The SAN {entry.strip()!r} has no value.", _FORMS)
    if kind == "dns":
        return x509.DNSName(check_dns_name(value))
    if kind == "ip":
        try:
            return x509.IPAddress(ipaddress.ip_address(value.strip("[]")))
        except ValueError:
            raise UsageError(f"The SAN IP:{value} is not an IPv4 or IPv6 address.", _FORMS) from None
    if kind == "email":
        local, at, domain = value.rpartition("@")
        if not at or not local or not local.isascii() or any(c in local for c in " <>,;"):
            raise UsageError(f"The SAN email:{value} is not an address like user@example.com.", _FORMS)
        return x509.RFC822Name(f"{local}@{check_dns_name(domain, wildcard=False, what='email domain')}")
    parts = urlsplit(value)
    if not parts.scheme or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme) or not value.isascii():
        raise UsageError(
            f"The SAN URI:{value} is not an absolute ASCII URI (scheme:...).",
            "For example URI:https://a.b/c.",
        )
    if parts.hostname and not _is_ip(parts.hostname):
        check_dns_name(parts.hostname, wildcard=False, what="URI host")
    return x509.UniformResourceIdentifier(value)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_sans(values: str | Iterable[str] | None) -> list[x509.GeneralName]:
    """Every entry of one or more comma-separated SAN lists, duplicates removed, order kept."""
    if values is None:
        return []
    texts = [values] if isinstance(values, str) else list(values)
    names: list[x509.GeneralName] = []
    for text in texts:
        for entry in _SPLIT.split(text):
            if not entry.strip():
                raise UsageError(f"The SAN list {text!r} has an empty entry.", _FORMS)
            name = parse_san(entry)
            if name not in names:
                names.append(name)
    return names


def format_san(name: x509.GeneralName) -> str:
    """``TYPE:value`` as hsmcert and OpenSSL spell it."""
    from cryptography import x509

    prefix = {
        x509.DNSName: "DNS",
        x509.IPAddress: "IP",
        x509.RFC822Name: "email",
        x509.UniformResourceIdentifier: "URI",
    }.get(type(name))
    if prefix is None:
        return f"{type(name).__name__}:{name.value}"
    return f"{prefix}:{name.value}"

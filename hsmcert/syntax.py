"""Validators and quoting for every value hsmcert writes into a configuration file or a URL.

A value a user passes must never become syntax where it lands: a newline starting a new systemd directive,
a ``;`` ending an nginx directive, a ``#`` cutting an openssl.cnf value, a ``/../`` or ``?`` changing a URL.
Each format has a validator (what the value may be) and a quoting function (how it is written), and the
template environments (:mod:`hsmcert.templates`) apply the quoting to every value by default.

>>> nginx_string('/etc/ssl/my cert;.pem')
'"/etc/ssl/my cert;.pem"'
>>> systemd_word("/srv/a b/openssl.cnf")
'"/srv/a b/openssl.cnf"'
>>> systemd_word("/run/hsmcert/agent.sock")
'/run/hsmcert/agent.sock'
>>> openssl_cnf_value("/run/a#b.sock")
'"/run/a#b.sock"'
>>> host_port("127.0.0.1:8443")
('127.0.0.1', 8443)
>>> url_segment("rg web/../x")
'rg%20web%2F..%2Fx'
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

from hsmcert.errors import UsageError

UNIX_PATH_MAX = 107
"""The longest path a Unix socket can have (``sun_path`` is 108 bytes with its terminating NUL)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0080-\u009f\u2028\u2029]")
_DNS_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*\.?")
_SERVER_NAME = re.compile(rf"(?:\*\.|\.)?{_DNS_LABEL}(?:\.{_DNS_LABEL})*(?:\.\*)?|_")
_ACCOUNT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_DIRECTIVE = re.compile(r"[a-z][a-z0-9_]*")
_URL_PATH = re.compile(r"(?:/(?:[A-Za-z0-9._~!&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*")
_ENCODED_CONTROL = re.compile(r"%(?:[01][0-9A-Fa-f]|7[Ff])")
_PLAIN = re.compile(r"[A-Za-z0-9_./:@+=,-]+")
"""Text that no format here treats as syntax: written without quotes where quotes are optional."""
UPSTREAM_SCHEMES = ("http", "https", "grpc", "grpcs")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def has_control(value: str) -> bool:
    """Whether ``value`` holds a control character (newline, NUL, escape, line separators, ...)."""
    return _CONTROL.search(value) is not None


def absolute_path(value: str | os.PathLike[str], what: str, *, socket: bool = False) -> str:
    """``value`` as a normalised absolute path (relative paths are taken from the current directory).

    Refused: an empty path and control characters. ``socket`` also refuses a path too long for a Unix socket.
    """
    text = os.fspath(value)
    if not text or has_control(text):
        raise UsageError(
            f"{what} {_shown(text)} is not a usable path: it is empty or holds a control character.",
            "Give an absolute path without newlines or other control characters.",
        )
    path = os.path.abspath(text)
    if socket and len(path.encode("utf-8", "surrogateescape")) > UNIX_PATH_MAX:
        raise UsageError(
            f"{what} {_shown(path)} is longer than the {UNIX_PATH_MAX} bytes a Unix socket path may have.",
            "Choose a shorter path, e.g. under /run.",
        )
    return path


def account_name(value: str, what: str) -> str:
    """A user or group name in the POSIX portable character set (or a numeric id), at most 32 characters."""
    if not _ACCOUNT.fullmatch(value):
        raise UsageError(
            f"{what} {_shown(value)} is not a user or group name.",
            "Use letters, digits, '_', '.' and '-' (not first), at most 32 characters, e.g. www-data.",
        )
    return value


def dns_name(value: str, what: str) -> str:
    if len(value) > 253 or not _DNS_NAME.fullmatch(value):
        raise UsageError(
            f"{what} {_shown(value)} is not a host name.", "Give a DNS name such as api.internal."
        )
    return value


def server_names(value: str, what: str = "The server name") -> list[str]:
    """nginx ``server_name`` values: DNS names, ``*.`` or ``.`` prefixed, ``.*`` suffixed, or ``_``."""
    names = value.split(" ")
    if not value or any(len(n) > 253 or not _SERVER_NAME.fullmatch(n) for n in names):
        raise UsageError(
            f"{what} {_shown(value)} is not a host name.",
            "Give a DNS name such as www.example.com (several separated by spaces; *.example.com allowed).",
        )
    return names


def host(value: str, what: str) -> str:
    """A host: an IPv4 address, an IPv6 address in brackets, or a DNS name."""
    if value.startswith("[") and value.endswith("]"):
        try:
            ipaddress.IPv6Address(value[1:-1])
        except ValueError:
            raise UsageError(f"{what} {_shown(value)} is not an IPv6 address.") from None
        return value
    return dns_name(value, what)


def port(value: str, what: str) -> int:
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 65535:
        raise UsageError(f"{what}: {_shown(value)} is not a port (1 to 65535).")
    return int(value)


def host_port(value: str, what: str = "The address", *, port_required: bool = True) -> tuple[str, int | None]:
    """``host:port`` (``[v6]:port``); the port may be left out when ``port_required`` is false."""
    match = re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]*)(?::([^:]*))?", value)
    if match is None or not match.group(1) or (port_required and match.group(2) is None):
        raise UsageError(
            f"{what} {_shown(value)} is not host:port.", "For example 127.0.0.1:8443 or api.internal:443."
        )
    given = match.group(2)
    return host(match.group(1), what), None if given is None else port(given, what)


def upstream_url(value: str, what: str = "--upstream", schemes: Sequence[str] = UPSTREAM_SCHEMES) -> str:
    """A URL with one of ``schemes``, a host, an optional port and an optional path; nothing else."""
    hint = f"Give {'/'.join(schemes)}://HOST[:PORT][/PATH], e.g. http://127.0.0.1:8080."
    scheme, _, rest = value.partition("://")
    if scheme not in schemes or has_control(value) or not value.isascii():
        raise UsageError(f"{what} {_shown(value)} is not a {' or '.join(schemes)} URL.", hint)
    parts = urlsplit(value)
    if parts.query or parts.fragment or "?" in rest or "#" in rest or "@" in parts.netloc:
        raise UsageError(f"{what} {_shown(value)} may not have a query, fragment or user name.", hint)
    host_port(parts.netloc, what, port_required=False)
    path = parts.path
    if not _URL_PATH.fullmatch(path) or _ENCODED_CONTROL.search(path) or re.search(r"(^|/)\.\.?(/|$)", path):
        raise UsageError(f"{what} {_shown(value)} has a path that is not a plain URL path.", hint)
    if scheme.startswith("grpc") and path not in ("", "/"):
        raise UsageError(f"{what} {_shown(value)}: a gRPC upstream has no path.", hint)
    return value


def url_segment(value: str) -> str:
    """``value`` percent-encoded as one URL path segment (``/``, ``?``, ``#``, ``%`` included)."""
    return quote(value, safe="")


# nginx ---------------------------------------------------------------------------------------------------


def nginx_string(value: object) -> str:
    """One nginx argument, double-quoted: ``;``, ``{``, ``}``, ``#`` and spaces are inert inside.

    nginx has no escape for ``$`` (it starts a variable in many directives), and a quoted string may span
    lines, so both are refused, as is every control character.
    """
    text = str(value)
    if has_control(text) or "$" in text:
        raise UsageError(
            f"The value {_shown(text)} cannot be written into an nginx configuration.",
            "Remove the control characters and '$' from it.",
        )
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_directive(value: str) -> str:
    """A directive name (or prefix, e.g. ``grpc_ssl``) chosen by hsmcert, written as it is."""
    if not _DIRECTIVE.fullmatch(value):
        raise UsageError(f"{_shown(value)} is not an nginx directive name.")
    return value


# systemd -------------------------------------------------------------------------------------------------


def _systemd_checked(text: str) -> str:
    if has_control(text):
        raise UsageError(
            f"The value {_shown(text)} cannot be written into a systemd unit: it holds a control character.",
            "Remove newlines and other control characters from it.",
        )
    return text


def systemd_word(value: object, *, exec_line: bool = False) -> str:
    """One word of a systemd setting that splits words (``Environment=``, ``ExecStart=``).

    Plain words are written as they are; others are double-quoted with ``\\`` and ``"`` escaped. ``%``
    (specifiers) is always doubled, and on an ``Exec`` line ``$`` (variable expansion) too.
    """
    text = _systemd_checked(str(value))
    if _PLAIN.fullmatch(text):
        return text
    quoted = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if exec_line:
        quoted = quoted.replace("$", "$$")
    return f'"{quoted}"'


def systemd_command(argv: Sequence[object]) -> str:
    """An ``ExecStart=`` command line: an absolute program, then each argument one word, whatever it holds.

    The program must be an absolute path, so that it never starts with one of systemd's prefixes (``-``,
    ``@``, ``+``, ``!``, ``:``), which change how the command runs.
    """
    if not argv or not str(argv[0]).startswith("/"):
        raise UsageError(f"The program {_shown(str(argv[0]) if argv else '')} is not an absolute path.")
    return " ".join(systemd_word(arg, exec_line=True) for arg in argv)


def systemd_path(value: object) -> str:
    """A path for a setting that takes the whole rest of the line (``ListenStream=``): ``%`` doubled.

    Leading or trailing blanks (systemd strips them) and a final backslash (it continues the line) are
    refused.
    """
    text = _systemd_checked(str(value))
    if not text.startswith("/") or text != text.strip() or text.endswith("\\"):
        raise UsageError(
            f"The path {_shown(text)} cannot be written into a systemd unit.",
            "Give an absolute path that does not end with a blank or a backslash.",
        )
    return text.replace("%", "%%")


_CALENDAR = re.compile(r"[A-Za-z0-9*:,./~ -]{1,100}")
_TIMESPAN = re.compile(r"(?:\d+ ?(?:us|ms|s|sec|m|min|h|hr|d|w|M|y)? ?){1,6}")


def systemd_calendar(value: str) -> str:
    """An ``OnCalendar=`` value (``daily``, ``Mon *-*-* 03:00``): written as it is, so only the characters
    of systemd's calendar syntax are accepted."""
    text = value.strip()
    if not _CALENDAR.fullmatch(text):
        raise UsageError(
            f"{_shown(value)} is not a systemd calendar event.",
            "For example daily, weekly, or '*-*-* 03:00' (see systemd.time(7)).",
        )
    return text


def systemd_timespan(value: str) -> str:
    """A time span (``RandomizedDelaySec=``): ``1h``, ``30min``, ``1h 30min``, ``3600``."""
    text = value.strip()
    if not text or not _TIMESPAN.fullmatch(text):
        raise UsageError(f"{_shown(value)} is not a systemd time span.", "For example 1h, 30min or 3600.")
    return text


def systemd_name(value: str) -> str:
    """A user or group name for ``SocketGroup=`` and the like."""
    return account_name(value, "The group")


# openssl.cnf ---------------------------------------------------------------------------------------------


def openssl_cnf_value(value: object) -> str:
    """A value for an openssl.cnf ``name = value`` line: plain text as it is, anything else double-quoted.

    Inside quotes OpenSSL's parser only treats a backslash as an escape and ends at the closing quote, so
    ``#`` (a comment), ``$`` (a variable), quotes and blanks are inert there.
    """
    text = str(value)
    if has_control(text) or not text:
        raise UsageError(
            f"The value {_shown(text)} cannot be written into an openssl.cnf.",
            "Give it without newlines or other control characters.",
        )
    if _PLAIN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = [
    "UNIX_PATH_MAX",
    "UPSTREAM_SCHEMES",
    "absolute_path",
    "account_name",
    "dns_name",
    "has_control",
    "host",
    "host_port",
    "nginx_directive",
    "nginx_string",
    "openssl_cnf_value",
    "port",
    "server_names",
    "systemd_calendar",
    "systemd_command",
    "systemd_name",
    "systemd_path",
    "systemd_timespan",
    "systemd_word",
    "upstream_url",
    "url_segment",
]

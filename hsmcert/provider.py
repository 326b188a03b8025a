"""The hsmcert OpenSSL 3 provider (``native/``): where it is, how to build it, how to load it.

The provider is loaded per service through ``OPENSSL_CONF`` (never system-wide): :func:`openssl_cnf`
writes a configuration that activates the default provider first and then hsmcert, pointed at an
agent socket. Programs that read only PEM key files use :func:`pem_ref`, a PEM file wrapping the
key reference.

>>> print(pem_ref("managedhsm:local-hsm:tls").decode().splitlines()[0])
-----BEGIN HSMCERT KEY REFERENCE-----
>>> "socket = /run/a.sock" in openssl_cnf("/run/a.sock", module="/x/hsmcert.so")
True
>>> 'socket = "/run/a #b.sock"' in openssl_cnf("/run/a #b.sock", module="/x/hsmcert.so")
True
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from hsmcert import syntax
from hsmcert.errors import HsmcertError, NotFoundError, UsageError
from hsmcert.package_data import CHECKOUT, shipped_dir

PEM_LABEL = "HSMCERT KEY REFERENCE"
DESCRIPTION = "hsmcert key reference v1"
MODULE_NAME = "hsmcert.so"
DEFAULT_TIMEOUT_MS = 10000
MAX_TIMEOUT_MS = 3600000
"""The longest wait for the agent the provider accepts (one hour; native/src/provider.c refuses more)."""


def check_timeout_ms(timeout_ms: int, option: str = "--timeout-ms") -> int:
    """``timeout_ms`` when the provider accepts it (1 to :data:`MAX_TIMEOUT_MS`), else a UsageError.

    >>> check_timeout_ms(3600000)
    3600000
    >>> check_timeout_ms(3600001)
    Traceback (most recent call last):
    ...
    hsmcert.errors.UsageError: --timeout-ms 3600001 is not a whole number of milliseconds from 1 to 3600000 (one hour).
    """
    if not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
        raise UsageError(
            f"{option} {timeout_ms} is not a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS} (one hour)."
        )
    return timeout_ms


def native_sources() -> Path:
    """The provider's sources: ``native/`` of a checkout, else the copy shipped in the wheel."""
    return shipped_dir("native")


def cache_dir() -> Path:
    """The per-user directory where :func:`build` puts the module (``platformdirs`` cache dir)."""
    explicit = os.environ.get("HSMCERT_PROVIDER_DIR")
    if explicit:
        return Path(explicit)
    import platformdirs

    return Path(platformdirs.user_cache_dir("hsmcert")) / "provider"


def provider_path(*, asan: bool = False) -> Path:
    """The built module: the checkout's ``native/build`` first, then the user cache of :func:`build`.

    Raises NotFoundError-like :class:`HsmcertError` with the build command when neither exists.
    """
    candidates = []
    if CHECKOUT is not None:
        candidates.append(CHECKOUT / "native" / "build" / ("asan" if asan else "") / MODULE_NAME)
    if not asan:
        candidates.append(cache_dir() / MODULE_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise NotFoundError(
        "The hsmcert OpenSSL provider is not built.",
        "Build it with `hsmcert provider build` (or `make native` in a checkout).",
    )


def build(*, target: Path | None = None, cc: str | None = None) -> Path:
    """Compile the provider from its sources into ``target`` (default: :func:`cache_dir`).

    Needs a C compiler, ``make`` and the OpenSSL 3 headers (Debian: ``gcc make libssl-dev``).
    """
    sources = native_sources()
    if not (sources / "Makefile").is_file():
        raise HsmcertError(
            f"The provider sources are missing from {sources}.", "Reinstall hsmcert from its wheel."
        )
    for tool in ("make", cc or os.environ.get("CC", "cc")):
        if shutil.which(tool) is None:
            raise HsmcertError(
                f"Building the provider needs `{tool}`, which is not installed.",
                "Install a C toolchain and the OpenSSL headers (Debian: apt install gcc make libssl-dev).",
            )
    destination = target or cache_dir()
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hsmcert-build-") as tmp:
        work = Path(tmp) / "native"
        shutil.copytree(sources, work, ignore=shutil.ignore_patterns("build"))
        command = ["make", "-C", str(work)]
        if cc:
            command.append(f"CC={cc}")
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise HsmcertError(
                f"Building the provider failed: {tail}",
                "Install the OpenSSL 3 headers (Debian: apt install libssl-dev) and retry.",
            )
        from hsmcert.output_files import write_output

        final = destination / MODULE_NAME
        write_output(final, (work / "build" / MODULE_NAME).read_bytes(), force=True, mode=0o755)
    return final


def openssl_cnf(
    socket_path: str | os.PathLike[str],
    *,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    include_default: bool = True,
    module: str | os.PathLike[str] | None = None,
) -> str:
    """An openssl.cnf that activates the default provider first, then hsmcert on ``socket_path``.

    Only providers are configured: the system openssl.cnf is not included, so a program given this file
    in ``OPENSSL_CONF`` otherwise keeps OpenSSL's built-in defaults. ``include_default=False`` leaves the
    default provider out (for a program that activates it itself). ``module`` defaults to
    :func:`provider_path`; ``timeout_ms`` bounds each operation's wait for the agent.
    """
    check_timeout_ms(timeout_ms)
    path = syntax.absolute_path(module if module is not None else provider_path(), "The provider module")
    socket_text = syntax.absolute_path(socket_path, "The agent socket", socket=True)
    lines = [
        "# Generated by hsmcert: loads the hsmcert provider for the program given this file in OPENSSL_CONF.",
        "openssl_conf = openssl_init",
        "",
        "[openssl_init]",
        "providers = provider_sect",
        "",
        "[provider_sect]",
    ]
    if include_default:
        lines.append("default = default_sect")
    lines += [
        "hsmcert = hsmcert_sect",
        "",
    ]
    if include_default:
        lines += ["[default_sect]", "activate = 1", ""]
    lines += [
        "[hsmcert_sect]",
        f"module = {syntax.openssl_cnf_value(path)}",
        f"socket = {syntax.openssl_cnf_value(socket_text)}",
        f"timeout_ms = {timeout_ms}",
        "activate = 1",
        "",
    ]
    return "\n".join(lines)


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return bytes([0x81, n])
    if n < 0x10000:
        return bytes([0x82, n >> 8, n & 0xFF])
    raise UsageError("The key reference is too long.")


def _der(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(value)) + value


def pem_ref(ref: object) -> bytes:
    """The PEM file that wraps a key reference (label ``HSMCERT KEY REFERENCE``).

    Its body is DER ``SEQUENCE { UTF8String "hsmcert key reference v1", UTF8String reference }``.
    The reference is checked with :func:`hsmcert.keyref.parse_keyref` and written canonically.
    """
    from hsmcert.keyref import parse_keyref

    canonical = str(parse_keyref(str(ref)))
    body = _der(0x30, _der(0x0C, DESCRIPTION.encode()) + _der(0x0C, canonical.encode("utf-8")))
    b64 = base64.b64encode(body).decode("ascii")
    lines = [f"-----BEGIN {PEM_LABEL}-----"]
    lines += [b64[i : i + 64] for i in range(0, len(b64), 64)]
    lines.append(f"-----END {PEM_LABEL}-----")
    return ("\n".join(lines) + "\n").encode("ascii")


def _der_item(der: bytes, i: int) -> tuple[int, bytes, int]:
    """(tag, value, index after it) of the DER item at ``i``; ValueError when it is cut short."""
    if i + 2 > len(der):
        raise ValueError("truncated")
    tag, length, i = der[i], der[i + 1], i + 2
    if length & 0x80:
        octets = length & 0x7F
        length, i = int.from_bytes(der[i : i + octets], "big"), i + octets
    if i + length > len(der):
        raise ValueError("truncated")
    return tag, der[i : i + length], i + length


def ref_of_pem(data: bytes) -> str | None:
    """The key reference a :func:`pem_ref` file holds, or None when ``data`` is not one.

    >>> ref_of_pem(pem_ref("managedhsm:local-hsm:tls?version=" + "ab" * 16))
    'managedhsm:local-hsm:tls?version=abababababababababababababababab'
    >>> ref_of_pem(b"-----BEGIN PRIVATE KEY-----") is None
    True
    """
    begin, end = f"-----BEGIN {PEM_LABEL}-----".encode(), f"-----END {PEM_LABEL}-----".encode()
    start, stop = data.find(begin), data.find(end)
    if start < 0 or stop < start:
        return None
    try:
        der = base64.b64decode(b"".join(data[start + len(begin) : stop].split()), validate=True)
        tag, body, _ = _der_item(der, 0)
        values = []
        i = 0
        while i < len(body):
            item_tag, value, i = _der_item(body, i)
            values.append((item_tag, value.decode("utf-8")))
    except ValueError:
        return None
    if tag != 0x30 or len(values) != 2 or values[0] != (0x0C, DESCRIPTION) or values[1][0] != 0x0C:
        return None
    return values[1][1]


__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "MAX_TIMEOUT_MS",
    "PEM_LABEL",
    "build",
    "cache_dir",
    "check_timeout_ms",
    "native_sources",
    "openssl_cnf",
    "pem_ref",
    "provider_path",
    "ref_of_pem",
]

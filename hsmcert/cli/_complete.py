"""Shell completion of option values: key types, curves, algorithms, profiles, credentials, key references.

Attached by option name to every command in one place (:func:`attach`). Key references are completed from
the configured HSM or vault (``managedhsm:NAME:`` then TAB lists its keys); that lookup is bounded by
:data:`KEY_LOOKUP_SECONDS` and says nothing when it fails: completion never prints an error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

KEY_LOOKUP_SECONDS = 3.0


def _kty() -> list[str]:
    return ["RSA", "EC", "oct"]


def _curves() -> list[str]:
    from hsmcert.jwa import CURVES

    return list(CURVES)


def _algorithms() -> list[str]:
    from hsmcert.jwa import ALGORITHMS

    return sorted(ALGORITHMS)


def _profiles() -> list[str]:
    from hsmcert.pki.profiles import PROFILES

    return sorted(PROFILES)


def _credentials() -> list[str]:
    from hsmcert.azure.credentials import AUTO, CREDENTIAL_NAMES

    return [AUTO, *CREDENTIAL_NAMES]


def _services(kind: str) -> list[str]:
    """Service names the configuration knows without asking anyone (the emulator's, the config file's)."""
    from hsmcert.config import EndpointResolver, emulator_config

    resolver = EndpointResolver()
    names = [
        key.split(":", 1)[1] for key in resolver.config.get("endpoints", {}) if key.startswith(f"{kind}:")
    ]
    data_dir = resolver.emulator_dir()
    published = emulator_config(data_dir) if data_dir is not None else None
    for key in (published or {}).get("endpoints", {}):
        if key.startswith(f"{kind}:"):
            names.append(key.split(":", 1)[1])
    return sorted(set(names))


def _hsms() -> list[str]:
    return _services("managedhsm")


def _vaults() -> list[str]:
    return _services("vault")


def _key_names(kind: str, service: str) -> list[str]:
    """The keys of one service, or nothing if they do not come within :data:`KEY_LOOKUP_SECONDS`."""
    import logging

    logging.getLogger("azure").setLevel(logging.CRITICAL + 1)  # completion never shows an error
    found: list[str] = []

    def look() -> None:
        from hsmcert.session import Session

        try:
            with Session() as session:
                found.extend(k.name for k in session.keys.list(kind, service))  # type: ignore[arg-type]
        except Exception:  # completion never shows an error
            found.clear()

    worker = threading.Thread(target=look, daemon=True)
    worker.start()
    worker.join(KEY_LOOKUP_SECONDS)
    return [] if worker.is_alive() else found


def key_references(incomplete: str) -> list[str]:
    """``managedhsm:`` / ``vault:``, then the known services, then (from the service) its keys."""
    parts = incomplete.split(":")
    if len(parts) < 2:
        return ["managedhsm:", "vault:"]
    kind = parts[0].lower()
    if kind not in ("managedhsm", "vault"):
        return []
    if len(parts) == 2:
        return [f"{parts[0]}:{name}:" for name in _services(kind)]
    return [f"{parts[0]}:{parts[1]}:{name}" for name in _key_names(kind, parts[1])]


_BY_OPTION: dict[str, Callable[[], list[str]]] = {
    "--kty": _kty,
    "--curve": _curves,
    "--alg": _algorithms,
    "--profile": _profiles,
    "--credential": _credentials,
    "--hsm": _hsms,
    "--vault": _vaults,
}
_REFERENCES = {"--key", "--ca-key"}
_KEY_NAME_COMMANDS = {"grant", "revoke"}  # their --key is a key's name, not a reference


def _completer(values: Callable[[], list[str]] | None) -> Callable[[Any, Any, str], list[str]]:
    def complete(ctx: Any, param: Any, incomplete: str) -> list[str]:
        try:
            options = values() if values is not None else key_references(incomplete)
        except Exception:  # completion never shows an error
            return []
        return [v for v in options if v.lower().startswith(incomplete.lower())]

    return complete


def attach(command: Any) -> None:
    """Give the options of ``command`` and its subcommands their value completion."""
    for param in command.params:
        names = set(getattr(param, "opts", ()))
        if names & _REFERENCES and command.name not in _KEY_NAME_COMMANDS:
            param._custom_shell_complete = _completer(None)
        for name in names & set(_BY_OPTION):
            param._custom_shell_complete = _completer(_BY_OPTION[name])
    for sub in (getattr(command, "commands", None) or {}).values():
        attach(sub)

"""Where a key reference's service lives, and which CA to trust for it.

The same reference works against Azure and against the local emulator. Resolution, first match wins:

1. explicit arguments (the CLI's ``--endpoint URL`` and ``--ca-bundle FILE``);
2. the environment: ``HSMCERT_ENDPOINT`` (+ ``HSMCERT_CA_BUNDLE``) sends every reference to one URL;
   ``HSMCERT_EMULATOR=<data dir>`` sends every reference to the emulator running from that directory
   (``eval "$(hsmcert emulator start)"`` sets it), by the endpoints it publishes there (see below);
3. the config file (``$HSMCERT_CONFIG`` or ``<user config dir>/hsmcert/config.toml``)::

       [emulator]
       data_dir = "/home/me/.local/share/hsmcert/emulator"   # like HSMCERT_EMULATOR

       [endpoints."managedhsm:contoso"]                       # one service, by kind and name
       url = "https://hsm.example.internal"
       ca_bundle = "/etc/ssl/private-ca.pem"

4. Azure: ``https://<name>.managedhsm.azure.net`` or ``https://<name>.vault.azure.net``.

A running emulator publishes plain configuration in its data directory, ``endpoints.toml``: the
``[endpoints]`` tables above for each Managed HSM and vault it serves, and ``[login]`` (``url``,
``ca_bundle``) for its Entra-ID-compatible login endpoint. hsmcert reads that file; it never calls the
emulator to resolve a name, so resolving has no side effect (a name the emulator does not serve is
refused; ``hsmcert emulator start --hsm NAME`` adds one).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsmcert.errors import NotFoundError, UnreachableError, UsageError
from hsmcert.keyref import KeyRef, Kind, check_service_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


EMULATOR_ENDPOINTS = "endpoints.toml"
"""The file in an emulator's data directory where the running emulator publishes its endpoints."""


@dataclass(frozen=True)
class Endpoint:
    """The base URL of one Managed HSM or Key Vault, and the CA bundle to trust (None: REQUESTS_CA_BUNDLE,
    else certifi's bundle, as requests does)."""

    url: str
    ca_bundle: str | None = None
    source: str = "default"
    """Where the answer came from: flag, environment, emulator, config or default (shown by doctor)."""


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$HSMCERT_CONFIG``, else ``<user config dir>/hsmcert/config.toml``."""
    explicit = (os.environ if environ is None else environ).get("HSMCERT_CONFIG")
    if explicit:
        return Path(explicit)
    from platformdirs import user_config_dir

    return Path(user_config_dir("hsmcert")) / "config.toml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The parsed config file, or an empty mapping when there is none."""
    path = path or config_path()
    try:
        with path.open("rb") as fh:
            config = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"Cannot read the config file {path}: {exc}.", "Fix or remove the file.") from exc
    _check_shape(config, path)
    return config


def _check_shape(config: dict[str, Any], path: Path) -> None:
    """The tables and values hsmcert reads have the types it expects (a UsageError naming the entry)."""

    def bad(entry: str, expected: str) -> UsageError:
        return UsageError(
            f"In the config file {path}, {entry} must be {expected}.", "Fix or remove the file."
        )

    emulator = config.get("emulator", {})
    if not isinstance(emulator, dict):
        raise bad("[emulator]", "a table")
    if not isinstance(emulator.get("data_dir", ""), str):
        raise bad("emulator.data_dir", "a string")
    login = config.get("login", {})
    if not isinstance(login, dict):
        raise bad("[login]", "a table")
    for field in ("url", "ca_bundle"):
        if not isinstance(login.get(field, ""), str):
            raise bad(f"login.{field}", "a string")
    endpoints = config.get("endpoints", {})
    if not isinstance(endpoints, dict):
        raise bad("[endpoints]", "a table of tables")
    for name, section in endpoints.items():
        if not isinstance(section, dict):
            raise bad(f'endpoints."{name}"', "a table with url and ca_bundle")
        for field in ("url", "ca_bundle"):
            if not isinstance(section.get(field, ""), str):
                raise bad(f'endpoints."{name}".{field}', "a string")


def default_emulator_dir() -> Path:
    """The emulator's data directory when none is named: ``~/.local/share/hsmcert/emulator``."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("hsmcert")) / "emulator"


def emulator_start_command(data_dir: Path, *options: str) -> str:
    """The shell line that starts (or finds) the emulator of ``data_dir`` and exports its variables."""
    import shlex

    argv = ["--data", str(data_dir), *options]
    return f'eval "$(hsmcert emulator start {shlex.join(argv)})"'


def emulator_config(data_dir: Path) -> dict[str, Any] | None:
    """What the emulator running from ``data_dir`` publishes (``endpoints``, ``login``), or None when
    no emulator runs there (it removes the file when it stops)."""
    path = Path(data_dir) / EMULATOR_ENDPOINTS
    if not path.is_file():
        return None
    return load_config(path)


def emulator_login(data_dir: Path) -> tuple[str, str] | None:
    """The login endpoint (URL, CA bundle) of the emulator running from ``data_dir``, if one runs."""
    published = emulator_config(data_dir)
    login = (published or {}).get("login", {})
    if not login.get("url"):
        return None
    return str(login["url"]), str(login.get("ca_bundle") or Path(data_dir) / "ca.pem")


class EndpointResolver:
    """Finds the endpoint of each Managed HSM and Key Vault (see the module docs for the order).

    Built once from explicit values (the CLI's ``--endpoint`` / ``--ca-bundle``) and the environment, which
    it reads when it is built; the config file is read once, when a resolution first needs it. Resolving
    reads the endpoints a configured emulator publishes and has no other effect.

    >>> resolver = EndpointResolver(environ={})
    >>> resolver.service("managedhsm", "contoso").url
    'https://contoso.managedhsm.azure.net'
    >>> EndpointResolver(endpoint="https://hsm.internal/", environ={}).service("vault", "kv1")
    Endpoint(url='https://hsm.internal', ca_bundle=None, source='flag')
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        ca_bundle: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.ca_bundle = ca_bundle or None
        self.env_endpoint = (env.get("HSMCERT_ENDPOINT") or "").rstrip("/") or None
        self.env_ca_bundle = env.get("HSMCERT_CA_BUNDLE") or None
        self.env_emulator = Path(env["HSMCERT_EMULATOR"]) if env.get("HSMCERT_EMULATOR") else None
        self.config_path = config_path(env)
        self._config: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EndpointResolver(endpoint={self.endpoint!r}, config={str(self.config_path)!r})"

    @property
    def config(self) -> dict[str, Any]:
        """The config file's contents (read on first use; an empty mapping when there is none)."""
        with self._lock:
            if self._config is None:
                self._config = load_config(self.config_path)
            return self._config

    def emulator_dir(self) -> Path | None:
        """The data directory of the emulator references go to, if one is configured."""
        if self.env_emulator is not None:
            return self.env_emulator
        data_dir = self.config.get("emulator", {}).get("data_dir")
        return Path(data_dir) if data_dir else None

    def resolve(self, ref: KeyRef) -> Endpoint:
        """The endpoint of the service ``ref`` names."""
        return self.service(ref.kind, ref.service, azure_url=ref.azure_url)

    def service(self, kind: Kind, name: str, *, azure_url: str | None = None) -> Endpoint:
        """The endpoint of one Managed HSM or Key Vault by kind and name."""
        check_service_name(name)
        if self.endpoint:
            return Endpoint(self.endpoint, self.ca_bundle, "flag")
        if self.env_endpoint:
            return Endpoint(self.env_endpoint, self.ca_bundle or self.env_ca_bundle, "environment")
        if self.env_emulator is not None:
            return _emulator_endpoint(self.env_emulator, kind, name)
        section = self.config.get("endpoints", {}).get(f"{kind}:{name}")
        if section:
            if "url" not in section:
                raise UsageError(f'The config entry endpoints."{kind}:{name}" has no url.')
            url = str(section["url"]).rstrip("/")
            return Endpoint(url, self.ca_bundle or section.get("ca_bundle"), "config")
        data_dir = self.emulator_dir()
        if data_dir is not None:
            return _emulator_endpoint(data_dir, kind, name)
        if azure_url is None:
            azure_url = KeyRef(kind, name, "-").azure_url
        return Endpoint(azure_url, self.ca_bundle, "default")


def _emulator_endpoint(data_dir: Path, kind: Kind, service: str) -> Endpoint:
    published = emulator_config(data_dir)
    if published is None:
        raise UnreachableError(
            f"No emulator runs from {data_dir}.", f"Start it: {emulator_start_command(data_dir)}"
        )
    section = published.get("endpoints", {}).get(f"{kind}:{service}")
    if not section or not section.get("url"):
        what = "Managed HSM" if kind == "managedhsm" else "Key Vault"
        option = "--hsm" if kind == "managedhsm" else "--vault"
        served = ", ".join(sorted(published.get("endpoints", {}))) or "none"
        raise NotFoundError(
            f"The emulator of {data_dir} has no {what} named {service!r} (it serves: {served}).",
            f"Add it: {emulator_start_command(data_dir, option, service)}",
        )
    ca = section.get("ca_bundle") or str(Path(data_dir) / "ca.pem")
    return Endpoint(str(section["url"]).rstrip("/"), str(ca), "emulator")

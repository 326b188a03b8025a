"""Where a key reference's service lives, and which CA to trust for it.

The same reference works against Azure and against the local emulator. Resolution, first match wins:

1. explicit arguments (the CLI's ``--endpoint URL`` and ``--ca-bundle FILE``);
2. the environment: ``HSMCERT_ENDPOINT`` (+ ``HSMCERT_CA_BUNDLE``) sends every reference to one URL;
   ``HSMCERT_EMULATOR=<data dir>`` sends every reference to the emulator running from that directory
   (``eval "$(hsmcert emulator start)"`` sets it);
3. the config file (``$HSMCERT_CONFIG`` or ``<user config dir>/hsmcert/config.toml``)::

       [emulator]
       data_dir = "/home/me/.local/share/hsmcert/emulator"   # like HSMCERT_EMULATOR

       [endpoints."managedhsm:contoso"]                       # one service, by kind and name
       url = "https://hsm.example.internal"
       ca_bundle = "/etc/ssl/private-ca.pem"

4. Azure: ``https://<name>.managedhsm.azure.net`` or ``https://<name>.vault.azure.net``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsmcert.errors import UsageError
from hsmcert.keyref import KeyRef, Kind, check_service_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Endpoint:
    """The base URL of one Managed HSM or Key Vault, and the CA bundle to trust (None: REQUESTS_CA_BUNDLE,
    else certifi's bundle, as requests does)."""

    url: str
    ca_bundle: str | None = None
    source: str = "default"
    """Where the answer came from: flag, environment, emulator, config or default (shown by doctor)."""

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for an Azure SDK client of this endpoint."""
        return {"connection_verify": self.ca_bundle} if self.ca_bundle else {}


def config_path() -> Path:
    explicit = os.environ.get("HSMCERT_CONFIG")
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
    endpoints = config.get("endpoints", {})
    if not isinstance(endpoints, dict):
        raise bad("[endpoints]", "a table of tables")
    for name, section in endpoints.items():
        if not isinstance(section, dict):
            raise bad(f'endpoints."{name}"', "a table with url and ca_bundle")
        for field in ("url", "ca_bundle"):
            if not isinstance(section.get(field, ""), str):
                raise bad(f'endpoints."{name}".{field}', "a string")


def emulator_dir(config: dict[str, Any] | None = None) -> Path | None:
    """The data directory of the emulator that references should go to, if one is configured."""
    env = os.environ.get("HSMCERT_EMULATOR")
    if env:
        return Path(env)
    if config is None:
        config = load_config()
    data_dir = config.get("emulator", {}).get("data_dir")
    return Path(data_dir) if data_dir else None


def resolve_endpoint(ref: KeyRef, *, endpoint: str | None = None, ca_bundle: str | None = None) -> Endpoint:
    """Find the service URL and CA bundle for ``ref`` (see the module docs for the order)."""
    return resolve_service(
        ref.kind, ref.service, endpoint=endpoint, ca_bundle=ca_bundle, azure_url=ref.azure_url
    )


def resolve_service(
    kind: Kind,
    service: str,
    *,
    endpoint: str | None = None,
    ca_bundle: str | None = None,
    azure_url: str | None = None,
) -> Endpoint:
    """Find the URL and CA bundle of one Managed HSM or Key Vault by kind and name."""
    check_service_name(service)
    if endpoint:
        return Endpoint(endpoint.rstrip("/"), ca_bundle, "flag")
    env_url = os.environ.get("HSMCERT_ENDPOINT")
    if env_url:
        return Endpoint(
            env_url.rstrip("/"), ca_bundle or os.environ.get("HSMCERT_CA_BUNDLE") or None, "environment"
        )
    if os.environ.get("HSMCERT_EMULATOR"):
        return _emulator_endpoint(Path(os.environ["HSMCERT_EMULATOR"]), kind, service)
    config = load_config()
    section = config.get("endpoints", {}).get(f"{kind}:{service}")
    if section:
        if "url" not in section:
            raise UsageError(f'The config entry endpoints."{kind}:{service}" has no url.')
        return Endpoint(str(section["url"]).rstrip("/"), ca_bundle or section.get("ca_bundle"), "config")
    data_dir = emulator_dir(config)
    if data_dir is not None:
        return _emulator_endpoint(data_dir, kind, service)
    if azure_url is None:
        azure_url = KeyRef(kind, service, "-").azure_url
    return Endpoint(azure_url, ca_bundle, "default")


def _emulator_endpoint(data_dir: Path, kind: Kind, service: str) -> Endpoint:
    from hsmcert.emulator.control import service_endpoint

    url, ca = service_endpoint(data_dir, kind, service)
    return Endpoint(url, str(ca), "emulator")

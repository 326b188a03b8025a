"""Where ACME accounts live: one directory per ACME server under hsmcert's config directory.

``<config dir>/acme/<server>/account.json`` records the account (server directory URL, account URL, contact,
which key signs for it, the CA bundle that server's TLS is checked with); ``account-key.pem`` (0600, in a
0700 directory) is the default local key. ``<server>`` is the directory URL's host, port and path
(``acme-v02.api.letsencrypt.org-directory``).

>>> server_slug("https://acme-v02.api.letsencrypt.org/directory")
'acme-v02.api.letsencrypt.org-directory'
>>> server_slug("https://127.0.0.1:14000/dir")
'127.0.0.1_14000-dir'
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hsmcert.errors import NotFoundError, UsageError

ACCOUNT_FILE = "account.json"
KEY_FILE = "account-key.pem"


def check_directory_url(url: str) -> str:
    """An ACME directory URL: https (http only for loopback test servers)."""
    parts = urlsplit(url)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if (parts.scheme != "https" and not (parts.scheme == "http" and loopback)) or not parts.hostname:
        raise UsageError(
            f"--directory {url!r} is not an https URL.",
            "Give the ACME server's directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory.",
        )
    return url


def server_slug(url: str) -> str:
    parts = urlsplit(url)
    host = str(parts.hostname) + (f"_{parts.port}" if parts.port else "")
    path = re.sub(r"[^A-Za-z0-9.-]+", "-", parts.path).strip("-")
    return f"{host}-{path}" if path else host


def accounts_root() -> Path:
    from hsmcert.config import config_path

    return config_path().parent / "acme"


@dataclass
class Account:
    """One registered ACME account (``account.json``)."""

    directory: str
    uri: str
    key: str
    """``file`` (``account-key.pem`` next to this file), a key file path, or an HSM key reference."""
    contact: list[str] = field(default_factory=list)
    server_ca: str | None = None
    """The CA bundle the server's TLS certificate is checked with (None: the system's)."""

    @staticmethod
    def folder(directory: str) -> Path:
        return accounts_root() / server_slug(directory)

    @property
    def path(self) -> Path:
        return self.folder(self.directory) / ACCOUNT_FILE

    @property
    def key_file(self) -> Path:
        return self.folder(self.directory) / KEY_FILE

    def save(self) -> None:
        from hsmcert.output_files import write_output

        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
        write_output(self.path, text.encode(), force=True, mode=0o600)

    @classmethod
    def load(cls, directory: str) -> Account:
        path = cls.folder(directory) / ACCOUNT_FILE
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotFoundError(
                f"No ACME account is registered with {directory}.",
                f"Register one first: hsmcert acme register --directory {directory} --agree-tos",
            ) from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"Cannot read {path}: {exc}.", "Fix the file, or move it away.") from exc
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


__all__ = ["ACCOUNT_FILE", "KEY_FILE", "Account", "accounts_root", "check_directory_url", "server_slug"]

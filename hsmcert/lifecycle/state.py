"""The managed-certificate state: ``certificates.toml`` in hsmcert's config directory.

One table per certificate hsmcert manages, named by the certificate's name. The file is meant to be read
and edited by people; hsmcert rewrites it atomically (:func:`hsmcert.output_files.write_output`) whenever
it registers, renews or forgets a certificate, so comments added by hand do not survive a rewrite::

    [certificates.www]
    key = "managedhsm:contoso:web?version=0f5c..."   # the HSM key, its version pinned
    cert = "/etc/ssl/www.pem"                         # the leaf alone
    fullchain = "/etc/ssl/www-fullchain.pem"          # leaf + chain (optional)
    chain = "/etc/ssl/www-chain.pem"                  # the chain alone (optional)
    profile = "tls-server"
    subject = "/O=Contoso/CN=www.example.com"         # OpenSSL form
    sans = ["DNS:www.example.com"]
    days = 90                                          # validity of each new certificate
    renew_before = "33%"                               # optional: "30d" or a percentage of the lifetime
    deploy_hooks = ["systemctl reload myapp"]          # optional: run after each renewal

    [certificates.www.issuer]                          # who signs: kind + that kind's parameters
    kind = "hsmcert-ca"
    ca_key = "managedhsm:contoso:issuing-ca"
    ca_cert = "/etc/ssl/issuing-ca.pem"

    [certificates.www.nginx]                           # optional: the hsmcert nginx site that serves it
    server_name = "www.example.com"
    out_dir = "/etc/hsmcert/nginx"
    ...

At least one of ``cert`` and ``fullchain`` is set. Where the file is: next to the config file
(``$HSMCERT_CONFIG``'s directory, else ``~/.config/hsmcert/``), as :func:`state_path` says.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsmcert.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from cryptography import x509

    from hsmcert.pki.profiles import Profile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

STATE_FILE = "certificates.toml"
HEADER = (
    "# Certificates managed by hsmcert (see docs/lifecycle.md). You may edit this file; hsmcert rewrites it\n"
    "# atomically when it registers, renews or forgets a certificate (comments are not kept).\n"
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_FILES = ("cert", "fullchain", "chain")


def state_path(environ: Mapping[str, str] | None = None) -> Path:
    """``certificates.toml`` in the directory of the config file (:func:`hsmcert.config.config_path`)."""
    from hsmcert.config import config_path

    return config_path(environ).parent / STATE_FILE


def check_name(name: str) -> str:
    """A certificate's name: letters, digits, ``.``, ``_`` and ``-``, not first, at most 128 characters.

    >>> check_name("www.example.com")
    'www.example.com'
    """
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"{name[:80]!r} is not a usable certificate name.",
            "Use letters, digits, '.', '_' and '-' (not first), e.g. www.example.com.",
        )
    return name


@contextlib.contextmanager
def state_path_lock(path: Path | None = None) -> Iterator[Path]:
    """Hold ``certificates.toml.lock`` (an advisory lock) for a run that renews, so that a second run at
    the same time (the timer and a person) is refused instead of renewing the same certificates twice.
    Read the state once the lock is held."""
    import fcntl

    from hsmcert.errors import UnreachableError

    path = Path(path) if path is not None else state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UnreachableError(
                f"Another hsmcert renew is running on {path}.", "Try again when it has finished."
            ) from None
        try:
            yield path
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class ManagedCert:
    """One certificate hsmcert manages (one ``[certificates.NAME]`` table)."""

    name: str
    key: str
    """The HSM key reference, with the version the certificate's public key belongs to."""
    issuer: dict[str, Any]
    """``kind`` and that kind's parameters (see :mod:`hsmcert.lifecycle.issuers`)."""
    subject: str
    """OpenSSL form (``/O=Org/CN=name``); empty for a certificate with SANs only."""
    cert: str | None = None
    fullchain: str | None = None
    chain: str | None = None
    profile: str = "tls-server"
    sans: list[str] = field(default_factory=list)
    days: int = 90
    alg: str | None = None
    renew_before: str | None = None
    deploy_hooks: list[str] = field(default_factory=list)
    nginx: dict[str, Any] | None = None
    """The ``hsmcert nginx`` site that serves this certificate (the arguments it was generated with)."""

    @property
    def issuer_kind(self) -> str:
        return str(self.issuer.get("kind", ""))

    @property
    def issuer_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.issuer.items() if k != "kind"}

    @property
    def served_file(self) -> str:
        """The file that holds the leaf: ``cert`` if set, else ``fullchain``."""
        return str(self.cert or self.fullchain)

    def files(self) -> dict[str, str]:
        """The files this certificate is written to: role (cert, fullchain, chain) -> path."""
        return {role: str(getattr(self, role)) for role in _FILES if getattr(self, role)}

    def subject_name(self) -> x509.Name:
        """The subject as a :class:`~cryptography.x509.Name` (empty for a SAN-only certificate)."""
        from cryptography import x509

        from hsmcert.pki.subject import parse_subject

        return parse_subject(self.subject) if self.subject else x509.Name([])

    def san_names(self) -> list[x509.GeneralName]:
        from hsmcert.pki.san import parse_sans

        return parse_sans(self.sans)

    def profile_spec(self) -> Profile:
        from hsmcert.pki.profiles import get_profile

        return get_profile(self.profile)

    def with_key(self, key: str) -> ManagedCert:
        return replace(self, key=key)

    def to_toml(self) -> dict[str, Any]:
        """The ``[certificates.NAME]`` table (None and empty optional values left out)."""
        table: dict[str, Any] = {"key": self.key}
        for role, path in self.files().items():
            table[role] = path
        table.update(profile=self.profile, subject=self.subject, sans=list(self.sans), days=self.days)
        for name in ("alg", "renew_before"):
            if getattr(self, name):
                table[name] = getattr(self, name)
        if self.deploy_hooks:
            table["deploy_hooks"] = list(self.deploy_hooks)
        table["issuer"] = dict(self.issuer)
        if self.nginx:
            table["nginx"] = dict(self.nginx)
        return table

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **self.to_toml()}

    @classmethod
    def from_toml(cls, name: str, table: Mapping[str, Any], source: str = STATE_FILE) -> ManagedCert:
        """Read one table, refusing (one sentence naming the entry) what hsmcert cannot use."""
        where = f"In {source}, certificates.{name}"

        def bad(entry: str, expected: str) -> UsageError:
            return UsageError(
                f"{where}.{entry} must be {expected}.", f"Fix {source}, then run the command again."
            )

        check_name(name)
        if not isinstance(table, Mapping):
            raise UsageError(f"{where} must be a table.", f"Fix {source}.")
        strings = ("key", "subject", "profile", "alg", "renew_before", *_FILES)
        for entry in strings:
            if entry in table and not isinstance(table[entry], str):
                raise bad(entry, "a string")
        if not table.get("key"):
            raise bad("key", "a key reference")
        for entry in ("sans", "deploy_hooks"):
            value = table.get(entry, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad(entry, "a list of strings")
        days = table.get("days", 90)
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36500:
            raise bad("days", "a number of days from 1 to 36500")
        issuer = table.get("issuer")
        if not isinstance(issuer, Mapping) or not isinstance(issuer.get("kind"), str):
            raise bad("issuer", 'a table with kind = "self-signed", "hsmcert-ca", ...')
        nginx = table.get("nginx")
        if nginx is not None and not isinstance(nginx, Mapping):
            raise bad("nginx", "a table")
        if not (table.get("cert") or table.get("fullchain")):
            raise bad("cert", "the certificate's path (or set fullchain)")
        return cls(
            name=name,
            key=table["key"],
            issuer=dict(issuer),
            subject=table.get("subject", ""),
            cert=table.get("cert"),
            fullchain=table.get("fullchain"),
            chain=table.get("chain"),
            profile=table.get("profile", "tls-server"),
            sans=list(table.get("sans", [])),
            days=days,
            alg=table.get("alg"),
            renew_before=table.get("renew_before"),
            deploy_hooks=list(table.get("deploy_hooks", [])),
            nginx=dict(nginx) if nginx is not None else None,
        )


class Store:
    """The managed certificates of one ``certificates.toml`` (read when built; :meth:`save` writes it)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else state_path()
        self._certs: dict[str, ManagedCert] = {}
        self._load()

    def _load(self) -> None:
        try:
            with self.path.open("rb") as fh:
                document = tomllib.load(fh)
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"Cannot read {self.path}: {exc}.", "Fix the file, or move it away.") from exc
        tables = document.get("certificates", {})
        if not isinstance(tables, dict):
            raise UsageError(f"In {self.path}, [certificates] must be a table of tables.", "Fix the file.")
        for name, table in tables.items():
            self._certs[name] = ManagedCert.from_toml(name, table, str(self.path))

    def __iter__(self) -> Iterator[ManagedCert]:
        return iter(sorted(self._certs.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._certs)

    def __contains__(self, name: object) -> bool:
        return name in self._certs

    def get(self, name: str) -> ManagedCert:
        found = self._certs.get(name)
        if found is None:
            known = ", ".join(sorted(self._certs)) or "none"
            raise NotFoundError(
                f"No managed certificate is named {name!r} (managed: {known}).",
                "See hsmcert cert list; register one with --manage NAME or hsmcert cert adopt.",
            )
        return found

    def by_file(self, path: str | Path) -> ManagedCert | None:
        """The managed certificate written to ``path`` (as cert, fullchain or chain), if any."""
        wanted = Path(path).absolute()
        for cert in self:
            if any(Path(p).absolute() == wanted for p in cert.files().values()):
                return cert
        return None

    def find(self, name_or_file: str) -> ManagedCert:
        """A certificate by name, else by the path of one of its files."""
        if name_or_file in self._certs:
            return self._certs[name_or_file]
        found = self.by_file(name_or_file)
        if found is None:
            return self.get(name_or_file)
        return found

    def put(self, cert: ManagedCert) -> None:
        """Add or replace a certificate (then :meth:`save`); its files may not belong to another one."""
        check_name(cert.name)
        for path in cert.files().values():
            owner = self.by_file(path)
            if owner is not None and owner.name != cert.name:
                raise UsageError(
                    f"{path} is already managed as {owner.name!r}.",
                    f"Choose other files, or forget the other one first: hsmcert cert forget {owner.name}",
                )
        self._certs[cert.name] = cert

    def remove(self, name: str) -> ManagedCert:
        found = self.get(name)
        del self._certs[name]
        return found

    def render(self) -> str:
        import tomli_w

        document = {"certificates": {c.name: c.to_toml() for c in self}}
        return HEADER + "\n" + tomli_w.dumps(document)

    def save(self) -> None:
        """Write the file atomically (its directory is created when missing)."""
        from hsmcert.output_files import write_output

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_output(self.path, self.render().encode(), force=True, mode=0o644)


__all__ = ["STATE_FILE", "ManagedCert", "Store", "check_name", "state_path", "state_path_lock"]

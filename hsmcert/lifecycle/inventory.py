"""What certificates there are and when they expire: managed ones, files and directories, nginx sites.

:func:`inventory` gathers :class:`Entry` items from three places, each certificate file once:

1. the managed certificates (:mod:`hsmcert.lifecycle.state`), with their key and issuer;
2. files and directories named by the caller (a directory is searched, recursively, for ``*.pem``,
   ``*.crt``, ``*.cer`` and ``*.der`` files that hold a certificate);
3. the sites ``hsmcert nginx`` generated (in the given directories, and in those of managed certificates):
   each managed site include names its certificate and its key (a key reference file or a ``store:`` URI).

With a session, each HSM key is asked once (bypassing the public-key cache) whether the certificate's
public key is still its current version.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hsmcert.errors import HsmcertError, UsageError
from hsmcert.lifecycle.expiry import Policy, State, days_left, parse_before, state_of
from hsmcert.timestamps import rfc3339

if TYPE_CHECKING:
    from cryptography import x509

    from hsmcert.lifecycle.state import ManagedCert, Store
    from hsmcert.session import Session

Source = Literal["managed", "file", "nginx"]
CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der")
_NGINX_CERT = re.compile(r'^\s*(?:ssl|proxy_ssl|grpc_ssl)_certificate\s+"((?:\\.|[^"\\])*)"\s*;', re.M)
_NGINX_KEY = re.compile(r'^\s*(?:ssl|proxy_ssl|grpc_ssl)_certificate_key\s+"((?:\\.|[^"\\])*)"\s*;', re.M)


@dataclass
class Entry:
    """One certificate file and what is known about it."""

    path: str
    source: Source
    cert: x509.Certificate | None = None
    name: str | None = None
    key: str | None = None
    issuer_kind: str | None = None
    key_current: bool | None = None
    nginx_site: str | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    policy: Policy = field(default_factory=Policy)

    def state(self, now: dt.datetime) -> State | None:
        if self.cert is None:
            return None
        return state_of(
            self.cert.not_valid_before_utc,
            self.cert.not_valid_after_utc,
            now=now,
            policy=self.policy,
            key_current=self.key_current,
        )

    def to_json(self, now: dt.datetime) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "source": self.source,
            "name": self.name,
            "key": self.key,
            "key_current": self.key_current,
            "issuer_kind": self.issuer_kind,
            "nginx_site": self.nginx_site,
            "notes": self.notes,
            "error": self.error,
            "state": self.state(now) or "unreadable",
        }
        if self.cert is not None:
            from hsmcert.pki.inspect import describe

            described = describe(self.cert)
            not_after = self.cert.not_valid_after_utc
            data.update(
                subject=described["subject"],
                subject_openssl=described["subject_openssl"],
                sans=described["extensions"].get("subject_alt_names", []),
                issuer=described["issuer"],
                serial=described["serial"],
                not_before=described["not_before"],
                not_after=described["not_after"],
                days_left=days_left(not_after, now),
                renew_at=rfc3339(self.policy.renew_at(self.cert.not_valid_before_utc, not_after).timestamp()),
                spki_sha256=described["public_key"]["spki_sha256"],
            )
        return data


def read_leaf(path: str | Path) -> x509.Certificate:
    """The first certificate of a PEM or DER file (the leaf of a full chain)."""
    from hsmcert.pki.io import load_certificates

    return load_certificates(path)[0]


def _entry(path: Path, source: Source, **fields: Any) -> Entry:
    entry = Entry(str(path), source, **fields)
    try:
        entry.cert = read_leaf(path)
    except HsmcertError as exc:
        entry.error = exc.message
    return entry


def managed_entry(cert: ManagedCert) -> Entry:
    return _entry(
        Path(cert.served_file),
        "managed",
        name=cert.name,
        key=cert.key,
        issuer_kind=cert.issuer_kind,
        policy=parse_before(cert.renew_before),
        nginx_site=str(cert.nginx.get("site_conf")) if cert.nginx and cert.nginx.get("site_conf") else None,
    )


def _holds_certificate(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    return b"-----BEGIN CERTIFICATE-----" in head or (path.suffix in (".der", ".cer") and head[:1] == b"\x30")


def file_paths(paths: Iterable[str | Path]) -> list[Path]:
    """The certificate files among ``paths``: files as given, directories searched recursively."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in CERT_SUFFIXES and p.is_file() and _holds_certificate(p)
            )
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(
                f"{path} does not exist.", "Give certificate files or directories that hold them."
            )
    return found


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def key_of_directive(value: str) -> str | None:
    """The key reference an nginx ``ssl_certificate_key`` value stands for (a ``store:`` URI, or a key
    reference PEM file), or None for a key file."""
    if value.startswith("store:"):
        return value.removeprefix("store:")
    from hsmcert.provider import ref_of_pem

    try:
        return ref_of_pem(Path(value).read_bytes())
    except OSError:
        return None


def nginx_entries(directories: Iterable[str | Path]) -> list[Entry]:
    """The certificates of the site includes hsmcert generated in ``directories``."""
    from hsmcert.generated import state_of

    entries: list[Entry] = []
    for directory in directories:
        for conf in sorted(Path(directory).glob("*.conf")):
            try:
                text = conf.read_text(errors="replace")
            except OSError:
                continue
            if state_of(text) == "foreign":
                continue
            keys = [key_of_directive(_unquote(k)) for k in _NGINX_KEY.findall(text)]
            for index, cert in enumerate(_NGINX_CERT.findall(text)):
                key = keys[index] if index < len(keys) else None
                entries.append(_entry(Path(_unquote(cert)), "nginx", key=key, nginx_site=str(conf)))
    return entries


def check_keys(entries: Sequence[Entry], session: Session) -> None:
    """Set each entry's ``key_current``: is its public key its HSM key's current version? (One request per
    key; a key that cannot be asked gets a note instead.)"""
    from hsmcert.keyref import parse_keyref
    from hsmcert.pki.signing import spki_der

    current: dict[str, bytes | HsmcertError] = {}
    for entry in entries:
        if entry.key is None or entry.cert is None:
            continue
        base = str(parse_keyref(entry.key).with_version(None))
        if base not in current:
            try:
                current[base] = session.open_key(base, refresh=True).spki_der
            except HsmcertError as exc:
                current[base] = exc
        found = current[base]
        if isinstance(found, HsmcertError):
            entry.notes.append(f"key not checked: {found.message}")
        else:
            entry.key_current = spki_der(entry.cert.public_key()) == found


def inventory(
    store: Store | None,
    paths: Sequence[str | Path] = (),
    nginx_dirs: Sequence[str | Path] = (),
    *,
    session: Session | None = None,
    policy: Policy | None = None,
) -> list[Entry]:
    """Every certificate of the three sources (module docstring), each file once (a managed one first)."""
    entries: list[Entry] = [managed_entry(c) for c in store] if store is not None else []
    sites = {str(Path(d).absolute()) for d in nginx_dirs}
    for cert in store or []:
        if cert.nginx and cert.nginx.get("out_dir"):
            sites.add(str(Path(cert.nginx["out_dir"]).absolute()))
    entries += [_entry(p, "file") for p in file_paths(paths)]
    entries += nginx_entries(sorted(sites))
    seen: dict[str, Entry] = {}
    for entry in entries:
        where = str(Path(entry.path).absolute())
        kept = seen.setdefault(where, entry)
        if kept is not entry:
            kept.nginx_site = kept.nginx_site or entry.nginx_site
            kept.key = kept.key or entry.key
    unique = list(seen.values())
    if policy is not None:  # asked for: it replaces each certificate's own
        for entry in unique:
            entry.policy = policy
    if session is not None:
        check_keys(unique, session)
    return unique


__all__ = ["Entry", "check_keys", "file_paths", "inventory", "key_of_directive", "managed_entry", "read_leaf"]

"""Issuers: who signs a managed certificate when hsmcert renews it, one plug-in per kind.

The registry maps an issuer kind (the ``kind`` of a record's ``[certificates.NAME.issuer]`` table) to an
object with this interface (:class:`Issuer`)::

    class MyIssuer:
        kind = "my-kind"                      # the name in certificates.toml
        lint_severity = "WARNING"             # optional: pkilint findings at this level or worse fail

        def check(self, params: dict[str, Any]) -> dict[str, Any]:
            '''The issuer table's parameters (without "kind"), checked and normalised (absolute paths,
            ...); a UsageError naming the bad one. Called when a certificate is registered.'''

        def issue(self, record: ManagedCert, session: Session, key: HsmPrivateKey) -> Issued:
            '''A new certificate for ``key``'s public key with the record's subject, SANs, profile,
            days and alg (``record.issuer_params`` holds this kind's parameters), and its chain.'''

        # optional: when the issuer suggests renewing (ACME Renewal Information), or None
        def renewal_time(self, record: ManagedCert, leaf: x509.Certificate, session: Session) -> datetime | None: ...

    register(MyIssuer())

``key`` is the HSM key the certificate is for, opened through ``session`` with its version pinned (a
pyca/cryptography private key whose ``sign`` runs in the HSM; ``key.ref`` is its reference). ``session``
(:class:`hsmcert.session.Session`) opens any other key the issuer needs (a CA key) and reaches the
services. :class:`Issued` is the new leaf and its chain (issuer first; no self-signed root needed), plus
``signer``, the certificate whose key signed the leaf when that is not the chain's first (a root left
out), and ``key``, the leaf's key reference when the issuer made that key version itself (a Key Vault
certificate object). Expected failures are :class:`hsmcert.errors.HsmcertError`.

The renewal engine (:mod:`hsmcert.lifecycle.renewal`), not the issuer, checks every new certificate
before anything is written: its public key is the HSM key's (``Issued.key``'s when set), its signature
verifies with :attr:`Issued.issuer_certificate`'s public key, and pkilint finds nothing at
``lint_severity`` or worse.

A kind is registered by its own module in this package (``hsmcert/lifecycle/issuers/<module>.py`` calling
:func:`register` when imported): :func:`get` and :func:`kinds` import every module here first, so adding
an issuer is adding one file. Kinds shipped: ``self-signed`` (:mod:`.selfsigned`), ``hsmcert-ca``
(:mod:`.hsmcert_ca`, a CA key in the HSM and its certificate) and ``kv-cert`` (:mod:`.kvcert`, a Key
Vault certificate object).
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hsmcert.errors import UsageError

if TYPE_CHECKING:
    from cryptography import x509

    from hsmcert.lifecycle.state import ManagedCert
    from hsmcert.session import Session
    from hsmcert.signer import HsmPrivateKey


@dataclass
class Issued:
    """What an issuer returns: the new leaf, its chain (issuer first) and notes for the user.

    ``signer``: the certificate of the key that signed the leaf, when it is not ``chain[0]`` (a root CA
    that the chain leaves out); None means ``chain[0]``, or the leaf itself when the chain is empty."""

    leaf: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signer: x509.Certificate | None = None

    key: str | None = None
    """The leaf's key reference (version pinned) when the issuer made that key version itself (a Key Vault
    certificate object makes one per version); None: the key it was given."""

    @property
    def issuer_certificate(self) -> x509.Certificate:
        """The certificate whose public key must verify the leaf's signature."""
        return self.signer or (self.chain[0] if self.chain else self.leaf)


class Issuer(Protocol):
    """One issuer kind (see the module docstring)."""

    kind: str

    def check(self, params: dict[str, Any]) -> dict[str, Any]: ...

    def issue(self, record: ManagedCert, session: Session, key: HsmPrivateKey) -> Issued: ...


_registry: dict[str, Issuer] = {}
_lock = threading.Lock()
_discovered: list[bool] = []


def register(issuer: Issuer) -> Issuer:
    """Make ``issuer`` the one of its kind (a module registers its issuer when it is imported)."""
    with _lock:
        _registry[issuer.kind] = issuer
    return issuer


def _discover() -> None:
    with _lock:
        if _discovered:
            return
        _discovered.append(True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def kinds() -> list[str]:
    """Every registered issuer kind, sorted."""
    _discover()
    return sorted(_registry)


def get(kind: str) -> Issuer:
    """The issuer of ``kind``, or a UsageError listing the kinds."""
    _discover()
    found = _registry.get(kind)
    if found is None:
        raise UsageError(f"Unknown issuer kind {kind!r}.", f"Use one of: {', '.join(kinds())}.")
    return found


def lint_severity(issuer: Issuer) -> str:
    """The pkilint level at which the issuer's certificates are refused (default WARNING)."""
    return str(getattr(issuer, "lint_severity", "WARNING"))


__all__ = ["Issued", "Issuer", "get", "kinds", "lint_severity", "register"]

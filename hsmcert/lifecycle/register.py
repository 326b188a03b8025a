"""Registering a certificate for management: from what ``selfsign``/``issue``/``nginx`` wrote, or by adopting
an existing file (``hsmcert cert adopt``), always after checking that it carries the HSM key's public key.

The record takes the certificate's own subject, SANs and lifetime; the profile is the one it was made with,
or for an adopted certificate the one its extensions match (serverAuth: tls-server, clientAuth: tls-client,
codeSigning: code-signing, a CA: root-ca or intermediate-ca).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsmcert.errors import UsageError, VerificationError
from hsmcert.lifecycle.state import ManagedCert, Store, check_name

if TYPE_CHECKING:
    from cryptography import x509

    from hsmcert.session import Session


def guess_profile(cert: x509.Certificate) -> str:
    """The hsmcert profile whose extensions ``cert`` carries (tls-server when none says otherwise)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "root-ca" if cert.issuer == cert.subject else "intermediate-ca"
    except x509.ExtensionNotFound:
        pass
    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = set()
    for oid, profile in (
        (ExtendedKeyUsageOID.SERVER_AUTH, "tls-server"),
        (ExtendedKeyUsageOID.CLIENT_AUTH, "tls-client"),
        (ExtendedKeyUsageOID.CODE_SIGNING, "code-signing"),
    ):
        if oid in usages:
            return profile
    return "tls-server"


def _sans(cert: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    from cryptography import x509

    from hsmcert.pki.san import format_san

    try:
        return [
            format_san(n) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ]
    except x509.ExtensionNotFound:
        return []


def _days(cert: x509.Certificate) -> int:
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return max(1, min(36500, round(lifetime.total_seconds() / 86400)))


def is_self_signed(cert: x509.Certificate) -> bool:
    from hsmcert.pki.signing import signature_is_valid

    return cert.issuer == cert.subject and signature_is_valid(cert.public_key(), cert)


def record_for(
    name: str,
    cert: x509.Certificate,
    *,
    key: str,
    issuer: Mapping[str, Any],
    files: Mapping[str, str | Path | None],
    profile: str | None = None,
    alg: str | None = None,
    deploy_hooks: Sequence[str] = (),
    renew_before: str | None = None,
    nginx: dict[str, Any] | None = None,
) -> ManagedCert:
    """The record of ``cert`` (its subject, SANs and lifetime) with the issuer checked by its kind."""
    from hsmcert.lifecycle import issuers
    from hsmcert.lifecycle.expiry import parse_before
    from hsmcert.pki.profiles import get_profile
    from hsmcert.pki.subject import openssl_form

    check_name(name)
    kind = str(issuer.get("kind", ""))
    params = issuers.get(kind).check({k: v for k, v in issuer.items() if k != "kind"})
    paths = {role: str(Path(p).absolute()) for role, p in files.items() if p}
    if not (paths.get("cert") or paths.get("fullchain")):
        raise UsageError("A managed certificate needs a file: the certificate or the full chain.")
    parse_before(renew_before)
    return ManagedCert(
        name=name,
        key=key,
        issuer={"kind": kind, **params},
        subject=openssl_form(cert.subject) if len(cert.subject) else "",
        cert=paths.get("cert"),
        fullchain=paths.get("fullchain"),
        chain=paths.get("chain"),
        profile=get_profile(profile).name if profile else guess_profile(cert),
        sans=_sans(cert),
        days=_days(cert),
        alg=alg,
        renew_before=renew_before,
        deploy_hooks=list(deploy_hooks),
        nginx=nginx,
    )


def record_for_csr(
    name: str,
    csr: x509.CertificateSigningRequest,
    *,
    key: str,
    csr_path: str | Path,
    cert_path: str | Path,
    profile: str | None = None,
    alg: str | None = None,
) -> ManagedCert:
    """The record of a certificate an outside CA will sign from ``csr`` (the ``manual`` issuer): its
    certificate is expected in ``cert_path``; renewals write new CSRs to ``csr_path``."""
    from hsmcert.lifecycle import issuers
    from hsmcert.pki.profiles import get_profile
    from hsmcert.pki.subject import openssl_form

    check_name(name)
    params = issuers.get("manual").check({"csr": str(csr_path)})
    return ManagedCert(
        name=name,
        key=key,
        issuer={"kind": "manual", **params},
        subject=openssl_form(csr.subject) if len(csr.subject) else "",
        cert=str(Path(cert_path).absolute()),
        profile=get_profile(profile).name if profile else "tls-server",
        sans=_sans(csr),
        alg=alg,
    )


def key_for(cert: x509.Certificate | x509.CertificateSigningRequest, ref: str, session: Session) -> str:
    """``ref`` with the version pinned whose public key ``cert`` carries (VerificationError, exit 6, when
    the key given, or its current version when none is given, has another public key)."""
    from hsmcert.pki.signing import same_public_key, spki_sha256

    key = session.open_key(ref, refresh=True)
    if not same_public_key(cert.public_key(), key.public_key):
        raise VerificationError(
            f"The certificate's public key (SPKI sha256 {spki_sha256(cert.public_key())[:16]}...) is not the one "
            f"of {key.ref}.",
            "Give the key the certificate was made for, with ?version=V when it is not the current version.",
        )
    return str(key.ref)


def register(store: Store, record: ManagedCert, *, replace: bool = False) -> ManagedCert:
    """Add ``record`` to ``store`` and save it; an existing name is replaced only with ``replace``."""
    from hsmcert.errors import AlreadyExistsError

    if record.name in store and not replace:
        raise AlreadyExistsError(
            f"A managed certificate is already named {record.name!r}.",
            "Choose another name, or pass --force to replace its record.",
        )
    store.put(record)
    store.save()
    return record


__all__ = ["guess_profile", "is_self_signed", "key_for", "record_for", "record_for_csr", "register"]

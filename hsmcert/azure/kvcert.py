"""Key Vault certificate objects: a policy, a non-exportable key of the vault, and the certificate versions.

A certificate object in a vault pairs a policy (subject, SANs, key type, validity, issuer) with a key of the
same name: each version of the certificate has a key version of the same id, made and kept inside the
vault. With the issuer ``Self`` the vault signs the certificate itself; with ``Unknown`` it keeps a pending
operation holding a CSR signed by the new key, and the certificate is complete when a chain issued for that
CSR (by an hsmcert CA key or any CA) is merged. Renewing makes a new version from the same policy.

Everything goes through azure-keyvault-certificates with the clients, credential and transport of a
:class:`~hsmcert.session.Session`, and every service error becomes an hsmcert error
(:func:`~hsmcert.azure.errors.translate_azure_errors`). Since the certificate's key is a vault key,
``vault:<vault>:<name>?version=<v>`` signs with it like any other key reference.

>>> policy = CertPolicy.build("/CN=www.example.test", ["DNS:www.example.test"], kty="EC", issuer="unknown")
>>> policy.kty, policy.curve, policy.issuer, policy.sans
('EC-HSM', 'P-256', 'Unknown', ('DNS:www.example.test',))
>>> policy.subject
'CN=www.example.test'
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hsmcert.errors import (
    AlreadyExistsError,
    NotFoundError,
    ServiceError,
    UsageError,
    VerificationError,
)
from hsmcert.keyref import KeyRef

if TYPE_CHECKING:
    from cryptography import x509

    from hsmcert.azure.clients import ServiceClients
    from hsmcert.session import Session

ISSUERS = ("Self", "Unknown")
RSA_SIZES = (2048, 3072, 4096)
CURVES = ("P-256", "P-384", "P-521", "P-256K")
PROFILES = ("tls-server", "tls-client", "code-signing")
_EKU_OIDS = {
    "SERVER_AUTH": "1.3.6.1.5.5.7.3.1",
    "CLIENT_AUTH": "1.3.6.1.5.5.7.3.2",
    "CODE_SIGNING": "1.3.6.1.5.5.7.3.3",
}
_SAN_LISTS = (
    ("DNS", "san_dns_names"),
    ("IP", "san_ip_addresses"),
    ("email", "san_emails"),
    ("URI", "san_uris"),
)


def _text(value: Any) -> str:
    """An SDK enum's value (``KeyType.ec_hsm`` -> ``EC-HSM``), or the text itself."""
    return str(getattr(value, "value", value))


def _utc(when: dt.datetime | None) -> dt.datetime | None:
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _epoch(when: dt.datetime | None) -> int | None:
    when = _utc(when)
    return int(when.timestamp()) if when else None


@dataclass(frozen=True)
class CertPolicy:
    """What a certificate object's versions are made from (the part of Key Vault's policy hsmcert sets)."""

    subject: str
    """RFC 4514 (``CN=www.example.test,O=Example``), as Key Vault keeps it."""
    sans: tuple[str, ...] = ()
    """``DNS:``, ``IP:``, ``email:`` and ``URI:`` entries."""
    kty: str = "RSA-HSM"
    size: int | None = 3072
    curve: str | None = None
    validity_months: int = 12
    issuer: str = "Self"
    key_usage: tuple[str, ...] = ("digitalSignature", "keyEncipherment")
    ekus: tuple[str, ...] = (_EKU_OIDS["SERVER_AUTH"],)
    exportable: bool = False
    reuse_key: bool = False

    @classmethod
    def build(
        cls,
        subject: str,
        sans: Sequence[str] | None = None,
        *,
        kty: str = "RSA-HSM",
        size: int | None = None,
        curve: str | None = None,
        validity_months: int = 12,
        issuer: str = "Self",
        profile: str = "tls-server",
    ) -> CertPolicy:
        """A policy from command-line spellings (``/CN=a`` or ``CN=a``, ``DNS:a,IP:192.0.2.1``, ``RSA`` or
        ``RSA-HSM``, ``self``...), checked; the key is always non-exportable and HSM-protected."""
        from hsmcert.pki.profiles import get_profile
        from hsmcert.pki.san import format_san, parse_sans
        from hsmcert.pki.subject import parse_subject

        name = parse_subject(subject) if subject.strip() else None
        general = parse_sans(list(sans or []))
        if name is None and not general:
            raise UsageError("A Key Vault certificate needs a subject (--subj) or at least one --san.")
        base = kty.strip().upper().removesuffix("-HSM")
        if base not in ("RSA", "EC"):
            raise UsageError(f"Unknown key type {kty!r} for a certificate.", "Use RSA-HSM or EC-HSM.")
        if base == "RSA":
            if curve:
                raise UsageError("--curve is for EC-HSM keys; RSA-HSM keys take --size.")
            size = size or 3072
            if size not in RSA_SIZES:
                raise UsageError(f"RSA keys are {', '.join(map(str, RSA_SIZES))} bits, not {size}.")
        else:
            if size:
                raise UsageError("--size is for RSA-HSM keys; EC-HSM keys take --curve.")
            curve = (curve or "P-256").upper()
            if curve not in CURVES:
                raise UsageError(f"Unknown curve {curve!r}.", f"Use one of: {', '.join(CURVES)}.")
        if not 1 <= validity_months <= 1200:
            raise UsageError(f"The validity is 1 to 1200 months, not {validity_months}.")
        found = {i.lower(): i for i in ISSUERS}.get(issuer.strip().lower())
        if found is None:
            raise UsageError(
                f"Unknown issuer {issuer!r}.",
                "Use Self (the vault signs) or Unknown (a CSR to have signed, then kv-cert merge).",
            )
        if profile not in PROFILES:
            raise UsageError(
                f"Unknown profile {profile!r} for a certificate.", f"Use one of: {', '.join(PROFILES)}."
            )
        prof = get_profile(profile)
        usage = ["digitalSignature"] + (
            ["keyEncipherment"] if profile == "tls-server" and base == "RSA" else []
        )
        return cls(
            subject=name.rfc4514_string() if name is not None else "",
            sans=tuple(format_san(n) for n in general),
            kty=f"{base}-HSM",
            size=size if base == "RSA" else None,
            curve=curve if base == "EC" else None,
            validity_months=validity_months,
            issuer=found,
            key_usage=tuple(usage),
            ekus=tuple(_EKU_OIDS[e] for e in prof.eku),
        )

    @classmethod
    def from_sdk(cls, policy: Any) -> CertPolicy:
        """The policy azure-keyvault-certificates returned."""
        sans: list[str] = []
        for prefix, attr in _SAN_LISTS:
            sans += [f"{prefix}:{value}" for value in getattr(policy, attr, None) or []]
        kty = _text(policy.key_type or "RSA")
        return cls(
            subject=str(policy.subject or ""),
            sans=tuple(sans),
            kty=kty,
            size=policy.key_size,
            curve=_text(policy.key_curve_name) if policy.key_curve_name else None,
            validity_months=int(policy.validity_in_months or 12),
            issuer=_text(policy.issuer_name or "Unknown"),
            key_usage=tuple(_text(u) for u in policy.key_usage or ()),
            ekus=tuple(policy.enhanced_key_usage or ()),
            exportable=bool(policy.exportable),
            reuse_key=bool(policy.reuse_key),
        )

    def to_sdk(self) -> Any:
        """This policy as azure-keyvault-certificates' CertificatePolicy."""
        from azure.keyvault.certificates import CertificatePolicy

        lists: dict[str, list[str]] = {attr: [] for _, attr in _SAN_LISTS}
        prefixes = {prefix.lower(): attr for prefix, attr in _SAN_LISTS}
        for entry in self.sans:
            prefix, _, value = entry.partition(":")
            lists[prefixes[prefix.lower()]].append(value)
        return CertificatePolicy(
            issuer_name=self.issuer,
            subject=self.subject or None,
            exportable=self.exportable,
            key_type=self.kty,
            key_size=self.size,
            key_curve_name=self.curve,
            reuse_key=self.reuse_key,
            key_usage=list(self.key_usage) or None,
            enhanced_key_usage=list(self.ekus) or None,
            validity_in_months=self.validity_months,
            **{attr: values or None for attr, values in lists.items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "sans": list(self.sans),
            "kty": self.kty,
            "size": self.size,
            "curve": self.curve,
            "validity_months": self.validity_months,
            "issuer": self.issuer,
            "key_usage": list(self.key_usage),
            "ekus": list(self.ekus),
            "exportable": self.exportable,
            "reuse_key": self.reuse_key,
        }


@dataclass(frozen=True)
class KvCertificate:
    """One version of a certificate object (the latest unless a version was asked for)."""

    vault: str
    name: str
    version: str | None
    enabled: bool | None
    not_before: dt.datetime | None
    expires_on: dt.datetime | None
    created: dt.datetime | None
    updated: dt.datetime | None
    cer: bytes | None = field(default=None, repr=False)
    """The certificate (DER); None while a version waits for its merge, and in listings."""
    thumbprint: str | None = None
    """SHA-1 of the DER certificate, hex (Key Vault's x5t)."""
    policy: CertPolicy | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def key_ref(self) -> KeyRef:
        """The certificate's key (this version's) as a key reference: sign with it through the keys API."""
        return KeyRef("vault", self.vault, self.name, self.version)

    def certificate(self) -> x509.Certificate | None:
        from cryptography import x509

        return x509.load_der_x509_certificate(self.cer) if self.cer else None

    def encoded(self, *, der: bool = False) -> bytes:
        """The certificate as PEM (or DER); a NotFoundError while the version waits for its merge."""
        from cryptography.hazmat.primitives.serialization import Encoding

        cert = self.certificate()
        if cert is None:
            raise NotFoundError(
                f"The certificate {self.name} in vault:{self.vault} has no issued certificate yet (it waits "
                "for a merge).",
                f"Get its CSR with: hsmcert kv-cert pending --vault {self.vault} {self.name}",
            )
        return cert.public_bytes(Encoding.DER if der else Encoding.PEM)

    def days_left(self, now: dt.datetime | None = None) -> int | None:
        if self.expires_on is None:
            return None
        now = now or dt.datetime.now(dt.timezone.utc)
        return int((self.expires_on - now).total_seconds() // 86400)

    def state(self, now: dt.datetime | None = None) -> str:
        """``pending`` (no certificate yet), ``disabled``, ``expired`` or ``ok``."""
        if self.expires_on is None:
            return "pending"
        if self.enabled is False:
            return "disabled"
        now = now or dt.datetime.now(dt.timezone.utc)
        return "expired" if self.expires_on <= now else "ok"

    def to_json(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """The facts of this version; times in seconds since the epoch."""
        data: dict[str, Any] = {
            "vault": self.vault,
            "name": self.name,
            "version": self.version,
            "key": str(self.key_ref),
            "enabled": self.enabled,
            "state": self.state(now),
            "not_before": _epoch(self.not_before),
            "expires_on": _epoch(self.expires_on),
            "days_left": self.days_left(now),
            "created": _epoch(self.created),
            "updated": _epoch(self.updated),
            "thumbprint_sha1": self.thumbprint,
            "tags": dict(self.tags),
        }
        if self.policy is not None:
            data["policy"] = self.policy.to_json()
        cert = self.certificate()
        if cert is not None:
            from hsmcert.pki.inspect import describe

            facts = describe(cert)
            data["subject"] = facts.get("subject")
            data["issuer"] = facts.get("issuer")
            data["sans"] = facts["extensions"].get("subject_alt_names", [])
            data["serial"] = facts.get("serial")
        return data

    @classmethod
    def from_sdk(cls, vault: str, cert: Any, policy: CertPolicy | None = None) -> KvCertificate:
        """A KeyVaultCertificate, or the CertificateProperties of a listing."""
        props = getattr(cert, "properties", cert)
        cer = getattr(cert, "cer", None)
        thumb = props.x509_thumbprint
        return cls(
            vault=vault,
            name=str(props.name),
            version=props.version,
            enabled=props.enabled,
            not_before=_utc(props.not_before),
            expires_on=_utc(props.expires_on),
            created=_utc(props.created_on),
            updated=_utc(props.updated_on),
            cer=bytes(cer) if cer else None,
            thumbprint=bytes(thumb).hex() if thumb else (hashlib.sha1(cer).hexdigest() if cer else None),  # noqa: S324 - x5t
            policy=policy,
            tags=dict(props.tags or {}),
        )


@dataclass(frozen=True)
class PendingOperation:
    """A certificate version waiting for its chain: the CSR to have signed, then merge."""

    vault: str
    name: str
    status: str
    """``inProgress`` (waiting for a merge), ``completed``, ``cancelled`` or ``failed``."""
    issuer: str
    csr_der: bytes = field(repr=False)
    status_details: str | None = None
    error: str | None = None

    @property
    def waiting(self) -> bool:
        return self.status.lower() == "inprogress"

    def require_waiting(self) -> PendingOperation:
        """This operation if it waits for a merge, else a NotFoundError (exit 3) saying how to start one."""
        if not self.waiting:
            raise NotFoundError(
                f"The certificate {self.name} in vault:{self.vault} has no pending operation "
                f"(its last operation is {self.status}).",
                f"Start one with: hsmcert kv-cert renew --vault {self.vault} {self.name} (issuer Unknown).",
            )
        return self

    def csr(self) -> x509.CertificateSigningRequest:
        from cryptography import x509

        return x509.load_der_x509_csr(self.csr_der)

    def csr_pem(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding

        return self.csr().public_bytes(Encoding.PEM)

    def to_json(self) -> dict[str, Any]:
        return {
            "vault": self.vault,
            "name": self.name,
            "status": self.status,
            "issuer": self.issuer,
            "status_details": self.status_details,
            "error": self.error,
            "csr_pem": self.csr_pem().decode() if self.csr_der else None,
        }

    @classmethod
    def from_sdk(cls, vault: str, name: str, op: Any) -> PendingOperation:
        error = getattr(op, "error", None)
        return cls(
            vault=vault,
            name=name,
            status=str(op.status or ""),
            issuer=str(op.issuer_name or ""),
            csr_der=bytes(op.csr or b""),
            status_details=op.status_details or None,
            error=getattr(error, "message", None) or (str(error) if error else None),
        )


class VaultCertificates:
    """The certificate objects of one vault, through a session (``VaultCertificates(session, "contoso")``)."""

    def __init__(self, session: Session, vault: str) -> None:
        from hsmcert.keyref import check_service_name

        check_service_name(vault)
        self.session = session
        self.vault = vault.lower()

    # -- plumbing -------------------------------------------------------------------------------------

    def _service(self) -> ServiceClients:
        return self.session.clients(self.session.service_endpoint("vault", self.vault))

    @contextlib.contextmanager
    def _client(self, name: str | None, operation: str) -> Iterator[Any]:
        """The SDK's CertificateClient of this vault (the session's transport), with its errors translated."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
        from azure.keyvault.certificates import CertificateClient

        service = self._service()
        client = CertificateClient(service.url, service.credential, **service.keys_kwargs())
        where = f"vault:{self.vault}"
        # not closed: closing a client closes the transport it shares with the session's other clients
        with service.translating(where, operation):
            try:
                yield client
            except ResourceNotFoundError as exc:
                raise _not_found(exc, where, name) from exc
            except HttpResponseError as exc:
                if exc.status_code == 409 and name is not None:
                    raise _conflict(exc, where, name) from exc
                raise

    # -- reads ----------------------------------------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> KvCertificate:
        """The latest version (or ``version``) of ``name``, with its certificate and policy."""
        _check_name(name)
        with self._client(name, "certificates/get") as client:
            cert = client.get_certificate_version(name, version) if version else client.get_certificate(name)
        policy = cert.policy if getattr(cert, "policy", None) is not None else None
        return KvCertificate.from_sdk(self.vault, cert, CertPolicy.from_sdk(policy) if policy else None)

    def policy(self, name: str) -> CertPolicy:
        _check_name(name)
        with self._client(name, "certificates/get") as client:
            return CertPolicy.from_sdk(client.get_certificate_policy(name))

    def versions(self, name: str) -> list[KvCertificate]:
        """The versions of ``name``, oldest first."""
        _check_name(name)
        with self._client(name, "certificates/list") as client:
            found = [
                KvCertificate.from_sdk(self.vault, p)
                for p in client.list_properties_of_certificate_versions(name)
            ]
        return sorted(found, key=lambda c: c.created or dt.datetime.min.replace(tzinfo=dt.timezone.utc))

    def pending(self, name: str) -> PendingOperation:
        """The certificate's latest operation (its CSR): a NotFoundError when it never had one."""
        _check_name(name)
        with self._client(name, "certificates/get") as client:
            return PendingOperation.from_sdk(self.vault, name, client.get_certificate_operation(name))

    # -- writes ---------------------------------------------------------------------------------------

    def create(
        self, name: str, policy: CertPolicy, *, tags: dict[str, str] | None = None
    ) -> KvCertificate | PendingOperation:
        """A new certificate object: complete at once with the issuer Self, else its pending operation.

        Refuses (exit 7) a name that is taken; ``renew`` makes a new version of an existing one."""
        _check_name(name)
        try:
            self.get(name)
        except NotFoundError:
            pass
        else:
            raise AlreadyExistsError(
                f"The certificate {name} already exists in vault:{self.vault}.",
                f"Make a new version with: hsmcert kv-cert renew --vault {self.vault} {name}; or choose another name.",
            )
        return self._begin(name, policy.to_sdk(), tags)

    def renew(self, name: str) -> KvCertificate | PendingOperation:
        """A new version of ``name`` from its policy (a new key version unless the policy reuses the key):
        complete at once with the issuer Self, else a pending operation to merge."""
        _check_name(name)
        with self._client(name, "certificates/get") as client:
            policy = client.get_certificate_policy(name)
        return self._begin(name, policy, None)

    def _begin(self, name: str, policy: Any, tags: dict[str, str] | None) -> KvCertificate | PendingOperation:
        from azure.keyvault.certificates import CertificateOperation, KeyVaultCertificate

        with self._client(name, "certificates/create") as client:
            poller = client.begin_create_certificate(name, policy, tags=tags or None)
            result = poller.result()
            if isinstance(result, KeyVaultCertificate):
                return KvCertificate.from_sdk(self.vault, result, CertPolicy.from_sdk(result.policy))
            if isinstance(result, CertificateOperation):
                op = PendingOperation.from_sdk(self.vault, name, result)
                if op.status.lower() == "failed":
                    raise ServiceError(
                        f"vault:{self.vault} could not make the certificate {name}: {op.error or op.status_details}."
                    )
                return op
            raise ServiceError(f"vault:{self.vault} gave no answer for the certificate {name}.")

    def merge(self, name: str, chain: Sequence[x509.Certificate]) -> KvCertificate:
        """Complete the pending version of ``name`` with ``chain`` (the leaf first, then its issuers).

        Checked first: there is a pending operation, the leaf carries the pending CSR's public key
        (VerificationError, exit 6, otherwise) and each certificate is signed by the next one."""
        from cryptography.hazmat.primitives.serialization import Encoding

        from hsmcert.pki.signing import same_public_key, signature_is_valid

        if not chain:
            raise UsageError("The chain file holds no certificate.")
        op = self.pending(name).require_waiting()
        leaf = chain[0]
        if not same_public_key(leaf.public_key(), op.csr().public_key()):
            raise VerificationError(
                f"The chain's first certificate ({leaf.subject.rfc4514_string() or 'no subject'}) does not carry "
                f"the public key of the pending certificate {name}: it was not issued for its CSR.",
                f"Issue a certificate for the CSR of: hsmcert kv-cert pending --vault {self.vault} {name}",
            )
        for child, parent in itertools.pairwise(chain):
            if child.issuer != parent.subject or not signature_is_valid(parent.public_key(), child):
                raise VerificationError(
                    f"The chain is broken: {child.subject.rfc4514_string()} is not signed by "
                    f"{parent.subject.rfc4514_string()}, the next certificate of the file.",
                    "Put the leaf first, then each issuer in order.",
                )
        with self._client(name, "certificates/import") as client:
            merged = client.merge_certificate(name, [c.public_bytes(Encoding.DER) for c in chain])
        return KvCertificate.from_sdk(
            self.vault, merged, CertPolicy.from_sdk(merged.policy) if merged.policy else None
        )

    def cancel(self, name: str) -> PendingOperation:
        """Cancel and forget the pending operation of ``name`` (the version it made stays disabled)."""
        _check_name(name)
        with self._client(name, "certificates/update") as client:
            op = client.get_certificate_operation(name)
            if str(op.status).lower() == "inprogress":
                op = client.cancel_certificate_operation(name)
            client.delete_certificate_operation(name)
        return PendingOperation.from_sdk(self.vault, name, op)

    def list(self) -> list[KvCertificate]:
        """Every certificate object of the vault (its latest version's dates), sorted by name."""
        with self._client(None, "certificates/list") as client:
            found = [KvCertificate.from_sdk(self.vault, p) for p in client.list_properties_of_certificates()]
        return sorted(found, key=lambda c: c.name)


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[0-9a-zA-Z-]{1,127}", name):
        raise UsageError(
            f"Invalid certificate name {name!r}.",
            "A Key Vault certificate name is 1-127 letters, digits or hyphens.",
        )


def _not_found(exc: Any, where: str, name: str | None) -> NotFoundError:
    from hsmcert.azure.errors import _service_error_code

    code = _service_error_code(exc)
    listing = f"List them with: hsmcert kv-cert list --vault {where.split(':', 1)[1]}"
    if name and "Pending" in code:
        return NotFoundError(
            f"The certificate {name} in {where} has no pending operation.",
            f"Start one with: hsmcert kv-cert create/renew --vault {where.split(':', 1)[1]} {name} (issuer Unknown).",
        )
    if name:
        return NotFoundError(f"There is no certificate {name} in {where}.", listing)
    return NotFoundError(f"{where} was not found.", listing)


def _conflict(exc: Any, where: str, name: str) -> ServiceError:
    from hsmcert.azure.errors import _service_error_code, _service_message

    code = _service_error_code(exc)
    vault = where.split(":", 1)[1]
    if "Deleted" in code or "deleted" in _service_message(exc).lower():
        remedy = f"A deleted certificate {name} is kept for recovery: recover or purge it (az keyvault certificate recover/purge --vault-name {vault} --name {name}), or choose another name."
    else:
        remedy = f"Merge the pending version (hsmcert kv-cert merge --vault {vault} {name} --chain FILE) or cancel it (hsmcert kv-cert cancel --vault {vault} {name})."
    return ServiceError(
        f"{where} refused the certificate {name}: {_service_message(exc)}.", remedy, status=409, code=code
    )


__all__ = ["CertPolicy", "KvCertificate", "PendingOperation", "VaultCertificates"]

"""Certificate signing requests signed by any private key (in the HSM or local)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hsmcert.pki.profiles import Profile
from hsmcert.pki.signing import require_signature, sign_kwargs

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes


@dataclass
class Signed:
    """A new CSR or certificate with what was decided while making it."""

    obj: Any  # x509.CertificateSigningRequest | x509.Certificate
    algorithm: str
    notes: list[str] = field(default_factory=list)


def sans_with_cn(
    subject: x509.Name, sans: Sequence[x509.GeneralName], profile: Profile | None
) -> tuple[list[x509.GeneralName], list[str]]:
    """SANs, with the CN added as a DNS name for a TLS server that has none (clients look only at SANs)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from hsmcert.errors import UsageError
    from hsmcert.pki.san import check_dns_name

    names = list(sans)
    if profile is None or not profile.needs_san or names:
        return names, []
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:
        try:
            dns = check_dns_name(str(cns[0].value))
        except UsageError:
            dns = ""
        if dns and ("." in dns or dns == "localhost"):
            return [x509.DNSName(dns)], [f"added the common name as DNS:{dns} (a TLS server needs a SAN)"]
    raise UsageError(
        f"A {profile.name} certificate needs a subject alternative name.",
        "Add --san DNS:host.example.com (or IP:...), or use a host name as the CN.",
    )


def build_csr(
    key: CertificateIssuerPrivateKeyTypes,
    subject: x509.Name,
    *,
    sans: Sequence[x509.GeneralName] = (),
    profile: Profile | None = None,
    alg: str | None = None,
) -> Signed:
    """A CSR for ``subject`` signed by ``key``; the profile's extensions are requested too.

    The CSR's signature is checked with the key's public key before it is returned.
    """
    from cryptography import x509

    names, notes = sans_with_cn(subject, sans, profile)
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if profile is not None:
        for ext, critical in profile.extensions(key.public_key()):
            builder = builder.add_extension(ext, critical=critical)
    name, kwargs = sign_kwargs(key, alg)
    csr = builder.sign(key, **kwargs)
    require_signature(key.public_key(), csr, "CSR")
    return Signed(csr, name, notes)

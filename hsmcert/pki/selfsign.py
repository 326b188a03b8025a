"""Self-signed certificates (a root CA, or a stand-alone server, client or signing certificate)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hsmcert.pki.certificate import BACKDATE, check_days, make_certificate, now
from hsmcert.pki.csr import Signed, sans_with_cn
from hsmcert.pki.profiles import Profile

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes


def build_selfsigned(
    key: CertificateIssuerPrivateKeyTypes,
    subject: x509.Name,
    *,
    profile: Profile,
    sans: Sequence[x509.GeneralName] = (),
    days: int = 365,
    path_length: int | None = None,
    alg: str | None = None,
) -> Signed:
    """A certificate for ``key``'s public key, issued and signed by ``key`` itself."""
    check_days(days)
    names, notes = sans_with_cn(subject, sans, profile)
    start = now()
    signed = make_certificate(
        signing_key=key,
        issuer=subject,
        issuer_public_key=key.public_key(),
        issuer_ski=None,
        subject=subject,
        subject_public_key=key.public_key(),
        sans=names,
        profile=profile,
        not_before=start - BACKDATE,
        not_after=start + dt.timedelta(days=days),
        path_length=path_length,
        alg=alg,
        what="self-signed certificate",
    )
    signed.notes[:0] = notes
    return signed

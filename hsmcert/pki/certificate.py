"""The one certificate builder behind ``selfsign`` and ``issue``."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hsmcert.errors import UsageError
from hsmcert.pki.csr import Signed
from hsmcert.pki.profiles import Profile
from hsmcert.pki.signing import require_signature, sign_kwargs

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

SERIAL_BITS = 159
BACKDATE = dt.timedelta(minutes=5)  # tolerate clocks a little behind ours


def random_serial() -> int:
    """A positive random serial of at most 159 bits (20 DER octets at most, as RFC 5280 requires).

    >>> 0 < random_serial() < 2**159
    True
    """
    while True:
        serial = secrets.randbits(SERIAL_BITS)
        if serial:
            return serial


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def check_days(days: int) -> None:
    if days < 1 or days > 36500:
        raise UsageError(f"--days {days} is out of range.", "Give a number of days from 1 to 36500.")


def make_certificate(
    *,
    signing_key: CertificateIssuerPrivateKeyTypes,
    issuer: x509.Name,
    issuer_public_key: Any,
    issuer_ski: bytes | None,
    subject: x509.Name,
    subject_public_key: Any,
    sans: Sequence[x509.GeneralName],
    profile: Profile,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None = None,
    alg: str | None = None,
    what: str = "certificate",
) -> Signed:
    """Build, sign and check a certificate (signature verified with ``issuer_public_key`` before return)."""
    from cryptography import x509

    ski = x509.SubjectKeyIdentifier.from_public_key(subject_public_key)
    if issuer_ski is not None:
        aki = x509.AuthorityKeyIdentifier(issuer_ski, None, None)
    else:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_public_key)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
    )
    for ext, critical in profile.extensions(subject_public_key, path_length=path_length):
        builder = builder.add_extension(ext, critical=critical)
    if sans:
        # RFC 5280: the SAN is critical when the subject is empty.
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=len(subject) == 0)
    name, kwargs = sign_kwargs(signing_key, alg)
    cert = builder.sign(signing_key, **kwargs)
    require_signature(issuer_public_key, cert, what)
    return Signed(cert, name)

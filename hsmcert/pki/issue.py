"""An HSM-held CA signs a CSR.

The rules, in order:

1. The CSR's own signature must verify (whoever asked holds the private key).
2. The CA certificate must be a CA (basicConstraints CA:TRUE, keyCertSign when key usage is present), valid
   now, and its public key must be the CA key's.
3. Only the subject (or ``--subj`` instead) and the subject alternative names are copied from the CSR; key
   usage, extended key usage and basic constraints come from the profile, whatever the CSR asks for. Other
   requested extensions are ignored and reported.
4. The serial is 159 random bits; the subject key identifier is made from the CSR's key and the authority
   key identifier is the CA's subject key identifier.
5. The validity ends no later than the CA certificate's.
6. An intermediate CA gets a path length below the issuing CA's (0 unless asked); a CA with path length 0
   cannot issue CA certificates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hsmcert.errors import UsageError, VerificationError
from hsmcert.pki.certificate import BACKDATE, check_days, make_certificate, now
from hsmcert.pki.csr import Signed, sans_with_cn
from hsmcert.pki.profiles import Profile
from hsmcert.pki.signing import same_public_key, signature_is_valid

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes


def check_ca(ca_key: CertificateIssuerPrivateKeyTypes, ca_cert: x509.Certificate, *, at: dt.datetime) -> None:
    """Refuse a CA certificate that cannot issue with this key now."""
    from cryptography import x509

    try:
        bc = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise UsageError(
            "The CA certificate is not a CA certificate (no basicConstraints CA:TRUE).",
            "Use a certificate made with --profile root-ca or intermediate-ca.",
        )
    try:
        ku = ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_cert_sign:
            raise UsageError("The CA certificate's key usage does not allow keyCertSign.")
    except x509.ExtensionNotFound:
        pass
    if not same_public_key(ca_key.public_key(), ca_cert.public_key()):
        raise UsageError(
            "The CA key does not match the CA certificate (different public keys).",
            "Pass the certificate of the key given with --ca-key (check the key name and version).",
        )
    if at > ca_cert.not_valid_after_utc:
        raise UsageError(
            f"The CA certificate expired on {ca_cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}.",
            "Renew the CA certificate first.",
        )
    if at < ca_cert.not_valid_before_utc - BACKDATE:
        raise UsageError(f"The CA certificate is not valid before {ca_cert.not_valid_before_utc:%Y-%m-%d}.")


def _ca_path_length(ca_cert: x509.Certificate) -> int | None:
    from cryptography import x509

    return ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length


def _issuer_ski(ca_cert: x509.Certificate) -> bytes | None:
    from cryptography import x509

    try:
        return ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def issue_certificate(
    ca_key: CertificateIssuerPrivateKeyTypes,
    ca_cert: x509.Certificate,
    csr: x509.CertificateSigningRequest,
    *,
    profile: Profile,
    days: int = 365,
    subject: x509.Name | None = None,
    sans: Sequence[x509.GeneralName] | None = None,
    path_length: int | None = None,
    alg: str | None = None,
) -> Signed:
    """Issue a certificate for ``csr`` signed by ``ca_key`` (see the module's rules)."""
    from cryptography import x509

    check_days(days)
    if not signature_is_valid(csr.public_key(), csr):
        raise VerificationError(
            "The CSR's signature does not verify: it was altered or not made with its key.",
            "Ask the requester for a new CSR.",
        )
    start = now()
    check_ca(ca_key, ca_cert, at=start)
    notes: list[str] = []

    requested = {ext.oid: ext for ext in csr.extensions}
    csr_sans: list[x509.GeneralName] = []
    san_ext = requested.pop(x509.SubjectAlternativeName.oid, None)
    if san_ext is not None:
        csr_sans = list(san_ext.value)
    ignored = [getattr(ext.oid, "_name", ext.oid.dotted_string) for ext in requested.values()]
    if ignored:
        notes.append(f"ignored the CSR's requested {', '.join(ignored)} (the {profile.name} profile decides)")
    final_subject = subject if subject is not None else csr.subject
    names, cn_notes = sans_with_cn(final_subject, csr_sans if sans is None else sans, profile)
    notes.extend(cn_notes)
    if len(final_subject) == 0 and not names:
        raise UsageError("The certificate would have neither a subject nor a SAN.", "Pass --subj or --san.")

    if profile.ca:
        ca_len = _ca_path_length(ca_cert)
        if ca_len == 0:
            raise UsageError(
                "The CA certificate has path length 0, so it cannot issue CA certificates.",
                "Issue the intermediate from the root CA, or use a leaf profile (tls-server, tls-client, ...).",
            )
        wanted = profile.path_length if path_length is None else path_length
        if ca_len is not None and (wanted is None or wanted >= ca_len):
            if path_length is not None:
                raise UsageError(
                    f"--path-length {path_length} must be below the CA's path length {ca_len}.",
                    f"Use --path-length {ca_len - 1} or less.",
                )
            wanted = ca_len - 1
        path_length = wanted

    not_after = start + dt.timedelta(days=days)
    if not_after > ca_cert.not_valid_after_utc:
        not_after = ca_cert.not_valid_after_utc
        notes.append(f"validity capped at the CA certificate's end, {not_after:%Y-%m-%d %H:%M:%SZ}")
    not_before = max(start - BACKDATE, ca_cert.not_valid_before_utc)

    signed = make_certificate(
        signing_key=ca_key,
        issuer=ca_cert.subject,
        issuer_public_key=ca_cert.public_key(),
        issuer_ski=_issuer_ski(ca_cert),
        subject=final_subject,
        subject_public_key=csr.public_key(),
        sans=names,
        profile=profile,
        not_before=not_before,
        not_after=not_after,
        path_length=path_length,
        alg=alg,
    )
    signed.notes[:0] = notes
    return signed

"""Checking a certificate (or CSR) against a key, a CA file or a CSR.

Each check is a :class:`Check` (name, ok, detail); :func:`verify` runs those the caller asked for and
returns them all, so a user sees every problem at once. Chain checks use cryptography's RFC 5280 path
validation with extension policies that accept every profile hsmcert issues (not only TLS servers).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from hsmcert.errors import UsageError
from hsmcert.pki.signing import same_public_key, signature_is_valid


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _validity(cert: Any, at: dt.datetime) -> Check:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    ok = start <= at <= end
    detail = f"{start:%Y-%m-%d %H:%M:%SZ} to {end:%Y-%m-%d %H:%M:%SZ}"
    if at < start:
        detail = f"not valid before {start:%Y-%m-%d %H:%M:%SZ}"
    elif at > end:
        detail = f"expired on {end:%Y-%m-%d %H:%M:%SZ}"
    return Check("validity", ok, detail)


def _chain(cert: Any, cas: list[Any], untrusted: list[Any], at: dt.datetime) -> Check:
    from cryptography.x509 import verification as v

    roots = [c for c in cas if c.issuer == c.subject]
    intermediates = [c for c in cas if c.issuer != c.subject] + list(untrusted)
    if not roots:
        return Check("chain", False, "the CA file holds no self-signed root certificate")
    policy = v.ExtensionPolicy.permit_all()
    try:
        verifier = (
            v.PolicyBuilder()
            .store(v.Store(roots))
            .time(at)
            .extension_policies(ca_policy=v.ExtensionPolicy.webpki_defaults_ca(), ee_policy=policy)
            .build_client_verifier()
        )
        if cert in roots:
            return Check("chain", True, "the certificate is itself a trusted root")
        chain = verifier.verify(cert, intermediates).chain
    except v.VerificationError as exc:
        return Check("chain", False, str(exc))
    names = " <- ".join(c.subject.rfc4514_string() for c in reversed(chain))
    return Check("chain", True, names)


def verify(
    obj: Any,
    *,
    public_key: Any = None,
    key_label: str = "the key",
    ca_certs: list[Any] | None = None,
    untrusted: list[Any] | None = None,
    csr: Any = None,
    at: dt.datetime | None = None,
) -> list[Check]:
    """Run the checks that apply; a CSR or a self-signed certificate always gets its own signature checked."""
    from cryptography import x509

    when = at or dt.datetime.now(dt.timezone.utc)
    checks: list[Check] = []
    is_csr = isinstance(obj, x509.CertificateSigningRequest)
    if is_csr:
        ok = signature_is_valid(obj.public_key(), obj)
        checks.append(Check("self-signature", ok, "valid" if ok else "the CSR's signature does not verify"))
    else:
        self_signed = obj.issuer == obj.subject
        if not self_signed and ca_certs is None and public_key is None and csr is None:
            raise UsageError(
                "This certificate is not self-signed, so there is nothing to check its signature against.",
                "Pass --ca with its CA certificate(s) (and --untrusted intermediates).",
            )
        checks.append(_validity(obj, when))
        if self_signed and not ca_certs:
            ok = signature_is_valid(obj.public_key(), obj)
            checks.append(Check("self-signature", ok, "valid" if ok else "the signature does not verify"))

    if public_key is not None:
        ok = same_public_key(public_key, obj.public_key())
        checks.append(
            Check(
                "key", ok, f"matches {key_label}" if ok else f"the public key is not the one of {key_label}"
            )
        )
    if csr is not None:
        ok = same_public_key(csr.public_key(), obj.public_key())
        checks.append(
            Check("csr-key", ok, "same public key as the CSR" if ok else "not the CSR's public key")
        )
        same = csr.subject == obj.subject
        checks.append(
            Check(
                "csr-subject",
                same,
                "same subject as the CSR" if same else f"the CSR asked for {csr.subject.rfc4514_string()}",
            )
        )
    if ca_certs is not None:
        if is_csr:
            raise UsageError("A CSR is not signed by a CA.", "Pass a certificate, or drop --ca.")
        checks.append(_chain(obj, ca_certs, untrusted or [], when))
    elif not is_csr and obj.issuer != obj.subject:
        # --key and --csr compare public keys only: without the issuer the signature is unchecked, and a
        # certificate whose signature was never checked does not pass.
        checks.append(
            Check("signature", False, "not checked: pass --ca with the issuer's certificate to check it")
        )
    return checks

"""The ``hsmcert-ca`` issuer: a CA key held in the HSM and its certificate sign the new certificate.

Parameters: ``ca_key`` (the CA key's reference), ``ca_cert`` (the CA certificate's file) and, optionally,
``ca_chain`` (a file with the certificates above the CA, up to but without the root). The new certificate
is issued by the rules of ``hsmcert issue`` (:mod:`hsmcert.pki.issue`): the HSM key first signs a CSR
(proof of possession), then the CA key signs the certificate. The chain is the CA certificate, unless it
is self-signed (a root is not sent), followed by ``ca_chain``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsmcert.errors import UsageError
from hsmcert.lifecycle.issuers import Issued, register

if TYPE_CHECKING:
    from cryptography import x509

    from hsmcert.lifecycle.state import ManagedCert
    from hsmcert.session import Session
    from hsmcert.signer import HsmPrivateKey

_HINT = 'Give ca_key = "managedhsm:HSM:KEY" and ca_cert = "/path/ca.pem" (ca_chain optional).'


def _self_signed(cert: x509.Certificate) -> bool:
    from hsmcert.pki.signing import signature_is_valid

    return cert.issuer == cert.subject and signature_is_valid(cert.public_key(), cert)


class HsmcertCa:
    kind = "hsmcert-ca"

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        from hsmcert.keyref import parse_keyref

        unknown = set(params) - {"ca_key", "ca_cert", "ca_chain"}
        if unknown:
            raise UsageError(f"The hsmcert-ca issuer has no parameter {', '.join(sorted(unknown))}.", _HINT)
        if not isinstance(params.get("ca_key"), str) or not isinstance(params.get("ca_cert"), str):
            raise UsageError("The hsmcert-ca issuer needs ca_key and ca_cert.", _HINT)
        checked: dict[str, Any] = {"ca_key": str(parse_keyref(params["ca_key"]))}
        for name in ("ca_cert", "ca_chain"):
            if params.get(name) is not None:
                if not isinstance(params[name], str):
                    raise UsageError(f"The hsmcert-ca issuer's {name} must be a path.", _HINT)
                checked[name] = str(Path(params[name]).absolute())
        return checked

    def issue(self, record: ManagedCert, session: Session, key: HsmPrivateKey) -> Issued:
        from hsmcert.pki.csr import build_csr
        from hsmcert.pki.io import load_certificates
        from hsmcert.pki.issue import issue_certificate

        params = self.check(record.issuer_params)
        ca_cert = load_certificates(params["ca_cert"], "CA certificate")[0]
        extra = load_certificates(params["ca_chain"], "CA chain") if params.get("ca_chain") else []
        request = build_csr(key, record.subject_name(), sans=record.san_names())
        ca_key = session.private_key(params["ca_key"])
        signed = issue_certificate(
            ca_key,
            ca_cert,
            request.obj,
            profile=record.profile_spec(),
            days=record.days,
            subject=record.subject_name(),
            sans=record.san_names(),
            alg=record.alg,
        )
        chain = [c for c in [ca_cert, *extra] if not _self_signed(c)]
        return Issued(signed.obj, chain, signed.notes, signer=ca_cert)


register(HsmcertCa())

"""The ``kv-cert`` issuer: a Key Vault certificate object makes each new certificate, as a new version.

Parameters: ``vault`` (the vault's name) and, optionally, ``certificate`` (the certificate object's name;
by default the name of the record's key, which is the object's key: ``vault:<vault>:<name>``). Renewing
makes a new version of the object from its own policy (:meth:`hsmcert.azure.kvcert.VaultCertificates.renew`),
so its subject, SANs, key type and validity are those of the vault's policy. With the issuer ``Self`` the
vault signs it at once. With ``Unknown`` the new version's CSR is signed by a CA key held in the HSM, given
as for the ``hsmcert-ca`` issuer (``ca_key``, ``ca_cert``, optional ``ca_chain``), and the chain is merged
(the chain returned leaves the root out; when the root signed the leaf itself it is the ``signer``);
without a CA the pending version is cancelled and the renewal fails, saying so.

Each version has a key version of its own: the new certificate's key is the version Key Vault made, and
:attr:`~hsmcert.lifecycle.issuers.Issued.key` names it, so that the record follows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsmcert.errors import UsageError
from hsmcert.lifecycle.issuers import Issued, register

if TYPE_CHECKING:
    from cryptography import x509

    from hsmcert.azure.kvcert import KvCertificate, PendingOperation, VaultCertificates
    from hsmcert.lifecycle.state import ManagedCert
    from hsmcert.session import Session
    from hsmcert.signer import HsmPrivateKey

_PARAMS = ("vault", "certificate", "ca_key", "ca_cert", "ca_chain")
_HINT = (
    'Give vault = "NAME" (and certificate = "NAME" when it is not the key\'s name); for a policy with the '
    'issuer Unknown also ca_key = "managedhsm:HSM:KEY" and ca_cert = "/path/ca.pem".'
)


class KvCert:
    kind = "kv-cert"

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        from hsmcert.keyref import check_service_name, parse_keyref

        unknown = set(params) - set(_PARAMS)
        if unknown:
            raise UsageError(f"The kv-cert issuer has no parameter {', '.join(sorted(unknown))}.", _HINT)
        if any(value is not None and not isinstance(value, str) for value in params.values()):
            raise UsageError("The kv-cert issuer's parameters are text.", _HINT)
        if not params.get("vault"):
            raise UsageError("The kv-cert issuer needs the vault's name (vault).", _HINT)
        checked: dict[str, Any] = {"vault": check_service_name(params["vault"].lower())}
        if params.get("certificate"):
            checked["certificate"] = params["certificate"]
        if bool(params.get("ca_key")) != bool(params.get("ca_cert")):
            raise UsageError("The kv-cert issuer takes ca_key and ca_cert together.", _HINT)
        if params.get("ca_key"):
            checked["ca_key"] = str(parse_keyref(params["ca_key"]))
        for name in ("ca_cert", "ca_chain"):
            if params.get(name):
                checked[name] = str(Path(params[name]).absolute())
        return checked

    def issue(self, record: ManagedCert, session: Session, key: HsmPrivateKey) -> Issued:
        from hsmcert.azure.kvcert import KvCertificate, VaultCertificates
        from hsmcert.keyref import parse_keyref

        params = self.check(record.issuer_params)
        certs = VaultCertificates(session, params["vault"])
        name = params.get("certificate") or parse_keyref(record.key).key
        made = certs.renew(name)
        chain: list[x509.Certificate] = []
        signer = None
        if not isinstance(made, KvCertificate):
            made, chain, signer = self._merge(certs, made, record, session, params)
        leaf = made.certificate()
        if leaf is None:  # pragma: no cover - a completed version always has its certificate
            raise UsageError(f"vault:{certs.vault} returned no certificate for {name}.")
        notes = [f"made version {made.version} of vault:{certs.vault}:{name}"]
        return Issued(leaf, chain, notes, signer=signer, key=str(made.key_ref))

    def _merge(
        self,
        certs: VaultCertificates,
        op: PendingOperation,
        record: ManagedCert,
        session: Session,
        params: dict[str, Any],
    ) -> tuple[KvCertificate, list[x509.Certificate], x509.Certificate | None]:
        """Sign the pending version's CSR with the HSM CA of ``params`` and merge the chain: the merged version,
        the chain above the leaf without the root, and the root when it signed the leaf itself."""
        from hsmcert.pki.io import load_certificates
        from hsmcert.pki.issue import issue_certificate
        from hsmcert.pki.signing import signature_is_valid

        def self_signed(cert: x509.Certificate) -> bool:
            return cert.issuer == cert.subject and signature_is_valid(cert.public_key(), cert)

        if not params.get("ca_key"):
            certs.cancel(op.name)
            raise UsageError(
                f"The policy of vault:{certs.vault}:{op.name} has the issuer {op.issuer}: the new version waits "
                "for a chain, and this record names no CA to sign it (the pending version was cancelled).",
                _HINT,
            )
        ca_cert = load_certificates(params["ca_cert"], "CA certificate")[0]
        extra = load_certificates(params["ca_chain"], "CA chain") if params.get("ca_chain") else []
        signed = issue_certificate(
            session.private_key(params["ca_key"]),
            ca_cert,
            op.csr(),
            profile=record.profile_spec(),
            days=record.days,
            alg=record.alg,
        )
        above = [c for c in [ca_cert, *extra] if not self_signed(c)]
        root = [ca_cert] if self_signed(ca_cert) else []
        merged = certs.merge(op.name, [signed.obj, *above, *root])
        return merged, above, ca_cert if root and not above else None


register(KvCert())

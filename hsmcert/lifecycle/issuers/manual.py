"""The ``manual`` issuer: a CA outside hsmcert signs, by hand (``hsmcert csr --manage``).

Parameters: ``csr``, the file to write a new CSR to. A renewal cannot finish here: it writes a fresh CSR
for the record's subject, SANs and profile, signed by the HSM key, and fails with a sentence saying where
it is and where the CA's certificate goes (the record's file). Once the certificate is in place, ``cert
list`` shows it and the next renewal is due when it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from hsmcert.errors import HsmcertError, UsageError
from hsmcert.lifecycle.issuers import register

if TYPE_CHECKING:
    from hsmcert.lifecycle.state import ManagedCert
    from hsmcert.session import Session
    from hsmcert.signer import HsmPrivateKey


class Manual:
    kind = "manual"

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        if set(params) != {"csr"} or not isinstance(params["csr"], str) or not params["csr"]:
            raise UsageError("The manual issuer takes one parameter, csr: the file to write new CSRs to.")
        return {"csr": str(Path(params["csr"]).absolute())}

    def issue(self, record: ManagedCert, session: Session, key: HsmPrivateKey) -> NoReturn:
        from hsmcert.output_files import write_output
        from hsmcert.pki.csr import build_csr
        from hsmcert.pki.io import encode

        path = self.check(record.issuer_params)["csr"]
        signed = build_csr(
            key, record.subject_name(), sans=record.san_names(), profile=record.profile_spec(), alg=record.alg
        )
        write_output(path, encode(signed.obj), force=True)
        raise HsmcertError(
            f"{record.name} is signed by a CA outside hsmcert: a new CSR (key {key.ref}) is in {path}.",
            f"Have the CA sign it and put the certificate in {record.served_file}.",
        )


register(Manual())

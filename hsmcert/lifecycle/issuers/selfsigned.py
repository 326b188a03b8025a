"""The ``self-signed`` issuer: the HSM key signs its own certificate (no parameters)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hsmcert.errors import UsageError
from hsmcert.lifecycle.issuers import Issued, register

if TYPE_CHECKING:
    from hsmcert.lifecycle.state import ManagedCert
    from hsmcert.session import Session
    from hsmcert.signer import HsmPrivateKey


class SelfSigned:
    kind = "self-signed"

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        if params:
            raise UsageError(
                f"The self-signed issuer takes no parameters (got {', '.join(sorted(params))}).",
                "Remove them from the issuer table.",
            )
        return {}

    def issue(self, record: ManagedCert, session: Session, key: HsmPrivateKey) -> Issued:
        from hsmcert.pki.selfsign import build_selfsigned

        signed = build_selfsigned(
            key,
            record.subject_name(),
            profile=record.profile_spec(),
            sans=record.san_names(),
            days=record.days,
            alg=record.alg,
        )
        return Issued(signed.obj, [], signed.notes)


register(SelfSigned())

"""The ``acme`` issuer: an ACME CA (RFC 8555) certifies the HSM key again, proving the names as before.

Parameters (written by ``hsmcert acme issue``): ``directory`` (the server's directory URL, whose account
is recorded by ``hsmcert acme register``) and the challenge method, one of ``webroot``, ``nginx``,
``standalone`` (a port) or ``dns_hook_present`` (with ``dns_hook_cleanup`` and
``dns_propagation_seconds``). The names are the record's DNS SANs; the CSR is signed in the HSM by the key
version the renewal chose. The CA decides the certificate's content and answers for it (pebble, for one,
puts keyEncipherment on EC certificates), so only a certificate pkilint cannot read (FATAL) is refused; the
renewal still checks that it certifies the HSM key and that its signature verifies with the chain. Where the
CA publishes ACME Renewal Information, :meth:`Acme.renewal_time` lets ``hsmcert renew`` renew when the CA
suggests (before the lifetime rule would, e.g. ahead of a mass revocation).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from hsmcert.errors import UsageError
from hsmcert.lifecycle.issuers import Issued, register

if TYPE_CHECKING:
    from cryptography import x509

    from hsmcert.lifecycle.state import ManagedCert
    from hsmcert.session import Session
    from hsmcert.signer import HsmPrivateKey

_HINT = (
    'Give directory = "https://..." and one of webroot = "/var/www/html", nginx = "/etc/hsmcert/nginx", '
    'standalone = 80 or dns_hook_present = "CMD" (as hsmcert acme issue writes them).'
)


class Acme:
    kind = "acme"
    lint_severity = "FATAL"

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        from hsmcert.acme.account import check_directory_url
        from hsmcert.acme.flow import Method

        unknown = set(params) - {"directory", *Method.__dataclass_fields__}
        if unknown:
            raise UsageError(f"The acme issuer has no parameter {', '.join(sorted(unknown))}.", _HINT)
        if not isinstance(params.get("directory"), str):
            raise UsageError("The acme issuer needs the ACME server's directory URL (directory).", _HINT)
        try:
            method = Method.from_params(params)
        except TypeError as exc:
            raise UsageError(f"The acme issuer's challenge parameters are wrong: {exc}.", _HINT) from exc
        return {"directory": check_directory_url(params["directory"]), **method.params()}

    def issue(self, record: ManagedCert, session: Session, key: HsmPrivateKey) -> Issued:
        from hsmcert.acme import flow

        params = self.check(record.issuer_params)
        names = [san.split(":", 1)[1] for san in record.sans if san.upper().startswith("DNS:")]
        if not names:
            raise UsageError(f"{record.name} has no DNS names to order (sans).", 'Add sans = ["DNS:name"].')
        client, account = flow.connect(params["directory"], session)
        issued = flow.order(client, key, names, flow.Method.from_params(params))
        notes = [f"ordered from {params['directory']} with the account {account.uri}"]
        if issued.reused:
            notes.append(f"authorizations reused: {', '.join(issued.reused)}")
        return Issued(issued.leaf, issued.chain, notes)

    def renewal_time(
        self, record: ManagedCert, leaf: x509.Certificate, session: Session
    ) -> dt.datetime | None:
        """When the CA suggests renewing ``leaf`` (ACME Renewal Information), or None where it offers none."""
        from cryptography.hazmat.primitives.serialization import Encoding

        from hsmcert.acme.account import Account
        from hsmcert.acme.client import ari_renewal_time
        from hsmcert.errors import HsmcertError

        directory = str(record.issuer_params.get("directory", ""))
        try:
            server_ca = Account.load(directory).server_ca
        except HsmcertError:
            return None
        return ari_renewal_time(directory, leaf.public_bytes(Encoding.PEM), server_ca=server_ca)


register(Acme())

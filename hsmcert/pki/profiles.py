"""Certificate profiles: the key usage, extended key usage and basic constraints of each kind of certificate.

=================  ==========================================  ===============  ======================
profile            key usage (critical)                         extended usage   basic constraints
=================  ==========================================  ===============  ======================
tls-server         digitalSignature (+ keyEncipherment, RSA)    serverAuth       CA:FALSE (critical)
tls-client         digitalSignature                             clientAuth       CA:FALSE (critical)
code-signing       digitalSignature                             codeSigning      CA:FALSE (critical)
root-ca            keyCertSign, cRLSign, digitalSignature       -                CA:TRUE (critical)
intermediate-ca    keyCertSign, cRLSign, digitalSignature       -                CA:TRUE, pathlen 0
=================  ==========================================  ===============  ======================

>>> sorted(PROFILES)
['code-signing', 'intermediate-ca', 'root-ca', 'tls-client', 'tls-server']
>>> get_profile("intermediate-ca").path_length
0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hsmcert.errors import UsageError

if TYPE_CHECKING:
    from cryptography import x509


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    ca: bool
    eku: tuple[str, ...] = ()  # ExtendedKeyUsageOID attribute names
    path_length: int | None = None  # default for CA profiles; None = unlimited
    needs_san: bool = False

    def key_usage(self, public_key: Any) -> x509.KeyUsage:
        """The KeyUsage of this profile for a certificate of ``public_key``."""
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import rsa

        flags = dict.fromkeys(
            (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        flags["digital_signature"] = True
        if self.ca:
            flags["key_cert_sign"] = flags["crl_sign"] = True
        elif self.name == "tls-server" and isinstance(public_key, rsa.RSAPublicKey):
            flags["key_encipherment"] = True
        return x509.KeyUsage(**flags)

    def extended_key_usage(self) -> x509.ExtendedKeyUsage | None:
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        if not self.eku:
            return None
        return x509.ExtendedKeyUsage([getattr(ExtendedKeyUsageOID, name) for name in self.eku])

    def basic_constraints(self, path_length: int | None = None) -> x509.BasicConstraints:
        from cryptography import x509

        if not self.ca:
            return x509.BasicConstraints(ca=False, path_length=None)
        return x509.BasicConstraints(
            ca=True, path_length=self.path_length if path_length is None else path_length
        )

    def extensions(
        self, public_key: Any, *, path_length: int | None = None
    ) -> list[tuple[x509.ExtensionType, bool]]:
        """(extension, critical) pairs this profile puts in a certificate or requests in a CSR."""
        out: list[tuple[x509.ExtensionType, bool]] = [
            (self.basic_constraints(path_length), True),
            (self.key_usage(public_key), True),
        ]
        eku = self.extended_key_usage()
        if eku is not None:
            out.append((eku, False))
        return out


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("tls-server", "TLS server (serverAuth)", ca=False, eku=("SERVER_AUTH",), needs_san=True),
        Profile("tls-client", "TLS client (clientAuth)", ca=False, eku=("CLIENT_AUTH",)),
        Profile("code-signing", "code and artifact signing (codeSigning)", ca=False, eku=("CODE_SIGNING",)),
        Profile("root-ca", "self-signed root certification authority", ca=True),
        Profile("intermediate-ca", "intermediate CA (path length 0 unless given)", ca=True, path_length=0),
    )
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (case-insensitive), or a UsageError listing the profiles."""
    found = PROFILES.get(name.strip().lower())
    if found is None:
        raise UsageError(f"Unknown profile {name!r}.", f"Use one of: {', '.join(PROFILES)}.")
    return found

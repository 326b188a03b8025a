"""What the ``hsmcert acme`` commands and the ``acme`` issuer of ``hsmcert renew`` do, as library calls.

:func:`register` creates (or finds) the account of a key with an ACME server and records it
(:mod:`hsmcert.acme.account`); :func:`connect` opens a registered account; :func:`order` makes the CSR in
the HSM, orders the certificate with the chosen challenge method and checks that what came back certifies
the HSM key; :func:`responder_factory` turns the method's options (:class:`Method`) into responders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsmcert.acme.account import Account, check_directory_url
from hsmcert.acme.keys import (
    LOCAL,
    AccountKey,
    create_key_file,
    file_account_key,
    hsm_account_key,
    is_hsm_reference,
)
from hsmcert.errors import HsmcertError, UsageError, VerificationError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from hsmcert.acme.challenges import Responder
    from hsmcert.acme.client import AcmeClient, Issued
    from hsmcert.session import Session
    from hsmcert.signer import HsmPrivateKey


def open_account_key(spec: str, directory: str, session: Session, *, create: bool = False) -> AccountKey:
    """``file`` (the account directory's key file, made when ``create``), a key file path, or an HSM key."""
    if is_hsm_reference(spec):
        return hsm_account_key(spec, session)
    if spec == LOCAL:
        path = Account.folder(directory) / "account-key.pem"
        if create and not path.exists():
            create_key_file(path)
        return file_account_key(path)
    return file_account_key(Path(spec).absolute(), str(Path(spec).absolute()))


def register(
    directory: str,
    session: Session,
    *,
    account_key: str = LOCAL,
    contact: Sequence[str] = (),
    agree_tos: bool = False,
    eab_kid: str | None = None,
    eab_hmac_key: str | None = None,
    server_ca: str | None = None,
) -> tuple[Account, bool]:
    """Register ``account_key`` with the server (or find its account); record it. True when new."""
    from hsmcert.acme.client import AcmeClient

    check_directory_url(directory)
    server_ca = _server_ca(server_ca)
    key = open_account_key(account_key, directory, session, create=True)
    client = AcmeClient(directory, key, server_ca=server_ca)
    regr, created = client.register(contact, agree_tos=agree_tos, eab_kid=eab_kid, eab_hmac_key=eab_hmac_key)
    if not regr.uri:
        raise HsmcertError(
            f"The ACME server {directory} registered the account but did not say where it is (no Location).",
            "The server does not follow RFC 8555; ask its operator.",
        )
    account = Account(
        directory=directory, uri=str(regr.uri), key=key.source, contact=list(contact), server_ca=server_ca
    )
    account.save()
    return account, created


def _server_ca(path: str | None) -> str | None:
    if path is None:
        return None
    found = Path(path).absolute()
    if not found.is_file():
        raise UsageError(
            f"--server-ca {path}: no such file.", "Give the PEM bundle of the ACME server's TLS CA."
        )
    return str(found)


def connect(directory: str, session: Session, *, server_ca: str | None = None) -> tuple[AcmeClient, Account]:
    """The registered account of ``directory``, ready to order (its key opened, HSM or file)."""
    from hsmcert.acme.client import AcmeClient

    account = Account.load(check_directory_url(directory))
    key = open_account_key(account.key, directory, session)
    client = AcmeClient(directory, key, server_ca=_server_ca(server_ca) or account.server_ca)
    client.load_account(account)
    return client, account


def certificate_key_client(
    directory: str, session: Session, key: str, *, server_ca: str | None = None
) -> AcmeClient:
    """A client that signs with a certificate's own HSM key and no account: it can revoke that certificate
    (RFC 8555 7.6) even when the account is lost."""
    from hsmcert.acme.client import AcmeClient

    check_directory_url(directory)
    if server_ca is None:
        try:
            server_ca = Account.load(directory).server_ca
        except HsmcertError:
            server_ca = None
    return AcmeClient(directory, hsm_account_key(key, session), server_ca=_server_ca(server_ca))


def rollover(directory: str, session: Session, new_key: str) -> Account:
    """Give the account of ``directory`` a new key (``file``: a fresh key file replaces the old one)."""
    import os

    client, account = connect(directory, session)
    if new_key == LOCAL:
        staged = account.key_file.with_name("account-key.pem.new")
        staged.unlink(missing_ok=True)
        create_key_file(staged)
        key = file_account_key(staged)
    else:
        key = open_account_key(new_key, directory, session)
    if key.thumbprint() == client.key.thumbprint():
        raise UsageError("The new account key is the current one.", "Name another key.")
    client.rollover(key)
    if new_key == LOCAL:
        os.replace(staged, account.key_file)
        key = file_account_key(account.key_file)
    account.key = key.source
    account.save()
    return account


@dataclass(frozen=True)
class Method:
    """How names are proven: one of webroot, nginx, standalone (HTTP-01) or DNS hooks (DNS-01)."""

    webroot: str | None = None
    nginx: str | None = None
    standalone: int | None = None
    dns_hook_present: str | None = None
    dns_hook_cleanup: str | None = None
    dns_propagation_seconds: float = 60.0

    def check(self) -> Method:
        chosen = [
            n for n in ("webroot", "nginx", "standalone", "dns_hook_present") if getattr(self, n) is not None
        ]
        if len(chosen) != 1:
            raise UsageError(
                "Choose one challenge method: --webroot DIR, --nginx OUT_DIR, --standalone PORT or "
                "--dns-hook-present CMD."
                + (f" (got {', '.join('--' + c.replace('_', '-') for c in chosen)})" if chosen else ""),
                "See hsmcert acme issue --help.",
            )
        if self.dns_hook_cleanup is not None and self.dns_hook_present is None:
            raise UsageError("--dns-hook-cleanup goes with --dns-hook-present.")
        if self.standalone is not None and not 0 < self.standalone < 65536:
            raise UsageError(
                f"--standalone {self.standalone} is not a port.", "Give a port from 1 to 65535, e.g. 80."
            )
        if self.webroot is not None:
            return Method(**{**asdict(self), "webroot": str(Path(self.webroot).absolute())})
        if self.nginx is not None:
            return Method(**{**asdict(self), "nginx": str(Path(self.nginx).absolute())})
        return self

    def params(self) -> dict[str, Any]:
        """The options to record for renewals (None left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Method:
        known = {k: params[k] for k in cls.__dataclass_fields__ if k in params}
        return cls(**known).check()


def responder_factory(method: Method) -> Callable[[str], Responder]:
    """One responder for the whole order (created at the first authorization that needs one)."""
    from hsmcert.acme import challenges

    made: list[Responder] = []

    def responder(identifier: str) -> Responder:
        if not made:
            if method.webroot is not None:
                made.append(challenges.Webroot(Path(method.webroot)))
            elif method.nginx is not None:
                made.append(challenges.nginx_site(Path(method.nginx)))
            elif method.standalone is not None:
                made.append(challenges.Standalone(method.standalone))
            else:
                assert method.dns_hook_present is not None
                made.append(
                    challenges.DnsHooks(
                        method.dns_hook_present, method.dns_hook_cleanup, method.dns_propagation_seconds
                    )
                )
        if identifier.startswith("*.") and made[0].challenge_type != "dns-01":
            raise UsageError(
                f"{identifier} is a wildcard name: only DNS-01 proves it.", "Use --dns-hook-present."
            )
        return made[0]

    return responder


def check_names(names: Sequence[str]) -> list[str]:
    """DNS names to order: at least one, no duplicates (lowercase; a leading ``*.`` for wildcards)."""
    from hsmcert.pki.san import parse_sans

    if not names:
        raise UsageError(
            "Name at least one domain with -d NAME.", "For example -d www.example.com -d example.com."
        )
    wanted: list[str] = []
    for name in names:
        lowered = name.strip().lower().rstrip(".")
        parse_sans([f"DNS:{lowered}"])  # refuses what is not a DNS name
        if lowered not in wanted:
            wanted.append(lowered)
    return wanted


def build_csr_pem(key: HsmPrivateKey, names: Sequence[str]) -> bytes:
    """A CSR for ``names`` signed in the HSM (subject CN = the first name when it fits, SANs = all)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    from hsmcert.pki.csr import build_csr

    first = names[0]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)] if len(first) <= 64 else [])
    signed = build_csr(key, subject, sans=[x509.DNSName(n) for n in names])
    return bytes(signed.obj.public_bytes(serialization.Encoding.PEM))


def order(
    client: AcmeClient,
    key: HsmPrivateKey,
    names: Sequence[str],
    method: Method,
    *,
    timeout: float | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Issued:
    """Order a certificate for ``names`` and the HSM key ``key``; check it certifies that key."""
    from cryptography.hazmat.primitives import serialization

    from hsmcert.acme.client import DEFAULT_TIMEOUT

    wanted = check_names(names)
    method = method.check()
    csr_pem = build_csr_pem(key, wanted)
    issued = client.issue(
        csr_pem, responder_factory(method), timeout=timeout or DEFAULT_TIMEOUT, progress=progress
    )
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if issued.leaf.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise VerificationError(
            "The ACME server returned a certificate for another public key than the HSM key's.",
            "Nothing was written.",
        )
    return issued


__all__ = [
    "Method",
    "build_csr_pem",
    "certificate_key_client",
    "check_names",
    "connect",
    "open_account_key",
    "order",
    "register",
    "responder_factory",
    "rollover",
]

"""ACME account keys: a local key file, or an HSM key whose JWS signatures happen in the HSM.

:func:`open_account_key` turns ``--account-key`` into an :class:`AccountKey` (a josepy JWK and the JWS
algorithm that goes with it). A local key is an EC P-256 key in a 0600 PEM file; an HSM key
(``managedhsm:H:acme``) goes through :class:`HsmJWKRSA` / :class:`HsmJWKEC`: josepy's own JWK classes over
hsmcert's pyca adapter (:mod:`hsmcert.signer`), so josepy signs each JWS with ``key.sign()``, which sends only
the digest to the HSM and verifies the signature with the public key before it is used. Those JWKs
serialise their public half only (RFC 7638 thumbprints, key authorisations, the ``jwk`` header).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.b64 import b64encode
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from hsmcert.errors import HsmcertError, NotFoundError, UsageError
from hsmcert.keyref import parse_keyref

if TYPE_CHECKING:
    from hsmcert.session import Session

LOCAL = "file"
"""The ``--account-key`` value for the default: a key file in the account's directory."""

_EC_ALGS = {"secp256r1": ES256, "secp384r1": ES384, "secp521r1": ES512}


class HsmJWKRSA(JWKRSA):
    """An RSA JWK whose private half is an HSM key; only the public half is ever serialised."""

    __slots__ = ("key",)  # josepy's immutable map takes its fields from each class's own slots

    def public_key(self) -> JWKRSA:
        return JWKRSA(key=self.key.public_key())

    def fields_to_partial_json(self) -> dict[str, Any]:
        fields: dict[str, Any] = self.public_key().fields_to_partial_json()
        return fields


class HsmJWKEC(JWKEC):
    """An EC JWK whose private half is an HSM key; only the public half is ever serialised."""

    __slots__ = ("key",)

    def public_key(self) -> JWKEC:
        return JWKEC(key=self.key.public_key())

    def fields_to_partial_json(self) -> dict[str, Any]:
        fields: dict[str, Any] = self.public_key().fields_to_partial_json()
        return fields


@dataclass(frozen=True)
class AccountKey:
    """The key that signs an account's requests: its JWK, JWS algorithm and where it lives."""

    jwk: JWK
    alg: JWASignature
    source: str
    """``file`` (the account directory's key file), a key file path, or an HSM key reference."""

    @property
    def in_hsm(self) -> bool:
        return isinstance(self.jwk, (HsmJWKRSA, HsmJWKEC))

    def thumbprint(self) -> str:
        return b64encode(self.jwk.thumbprint()).decode()


def _alg_for(private_key: Any, what: str) -> JWASignature:
    if isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size < 2048:
            raise UsageError(
                f"{what} is a {private_key.key_size}-bit RSA key; ACME CAs want 2048 bits or more."
            )
        return RS256
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        alg = _EC_ALGS.get(private_key.curve.name)
        if alg is None:
            raise UsageError(
                f"{what} is on {private_key.curve.name}; ACME accounts use P-256, P-384 or P-521."
            )
        return alg
    raise UsageError(f"{what} is neither an RSA nor an EC key.", "Use an RSA or EC key.")


def hsm_account_key(ref: str, session: Session) -> AccountKey:
    """The HSM key ``ref`` as an account key (its version pinned; JWS signatures made in the HSM)."""
    private_key = session.private_key(ref)
    alg = _alg_for(private_key, str(private_key.ref))
    jwk: JWK = (
        HsmJWKRSA(key=private_key)
        if isinstance(private_key, rsa.RSAPrivateKey)
        else HsmJWKEC(key=private_key)
    )
    return AccountKey(jwk, alg, str(parse_keyref(ref).with_version(None)))


def create_key_file(path: Path) -> None:
    """A new EC P-256 key in ``path`` (0600; the directory is created 0700); never over an existing file."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise HsmcertError(f"{path} exists already.", "Use it, or move it away first.") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def file_account_key(path: Path, source: str = LOCAL) -> AccountKey:
    """The key in the PEM file ``path`` (refused when others may read it)."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(
            f"The account key file {path} does not exist.", "Register first: hsmcert acme register."
        ) from None
    except OSError as exc:
        raise HsmcertError(f"Cannot read {path}: {exc.strerror}.", "Check its permissions.") from exc
    if mode & 0o077:
        raise HsmcertError(
            f"The account key file {path} may be read by others (mode {mode & 0o777:o}).", f"chmod 600 {path}"
        )
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"{path} does not hold an unencrypted PEM private key.", "Give a PEM key file."
        ) from exc
    alg = _alg_for(private_key, str(path))
    return AccountKey(JWK.load(data), alg, source)


def is_hsm_reference(value: str) -> bool:
    """Whether ``--account-key`` names an HSM key (rather than ``file`` or a key file path)."""
    if value == LOCAL or value.startswith(("/", "./", "../")):
        return False
    try:
        parse_keyref(value)
    except HsmcertError:
        return False
    return True


__all__ = [
    "LOCAL",
    "AccountKey",
    "HsmJWKEC",
    "HsmJWKRSA",
    "create_key_file",
    "file_account_key",
    "hsm_account_key",
    "is_hsm_reference",
]

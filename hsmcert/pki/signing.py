"""What CSRs and certificates share: the signature algorithm of a key, and checking what came back.

Any pyca/cryptography private key works: an HSM-backed one from :func:`hsmcert.signer.load_private_key` or
an ordinary local key (tests, offline use). Algorithms are named as in JWA (RS256, PS384, ES256, ...).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from hsmcert.errors import UsageError, VerificationError
from hsmcert.jwa import Algorithm, check_algorithm, curve_of, default_algorithm, hash_for

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes


def key_shape(public_key: Any) -> tuple[str, str | None, int]:
    """(kty, JWA curve name or None, size in bits) of a public key; anything else is a UsageError."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", None, public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "EC", curve_of(public_key.curve), public_key.curve.key_size
    raise UsageError(f"hsmcert signs with RSA and EC keys, not {type(public_key).__name__}.")


def resolve_algorithm(key: CertificateIssuerPrivateKeyTypes, alg: str | None = None) -> Algorithm:
    """The JWA algorithm to sign with: ``alg`` checked against the key, or the key's default."""
    kty, curve, _ = key_shape(key.public_key())
    ref = getattr(key, "ref", None)  # an HSM-backed key names itself by its reference
    return check_algorithm(alg or default_algorithm(kty, curve), kty, curve, key=str(ref or "this key"))


def sign_kwargs(key: CertificateIssuerPrivateKeyTypes, alg: str | None = None) -> tuple[str, dict[str, Any]]:
    """(JWA name, keyword arguments for cryptography's ``builder.sign(key, **kwargs)``)."""
    from cryptography.hazmat.primitives.asymmetric import padding

    algorithm = resolve_algorithm(key, alg)
    hash_alg = hash_for(algorithm.hash)
    kwargs: dict[str, Any] = {"algorithm": hash_alg}
    if algorithm.kty == "RSA":
        kwargs["rsa_padding"] = (
            padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=padding.PSS.DIGEST_LENGTH)
            if algorithm.pss
            else padding.PKCS1v15()
        )
    return algorithm.name, kwargs


def signature_is_valid(public_key: Any, obj: Any) -> bool:
    """Whether ``obj`` (a certificate or CSR) carries a valid signature by ``public_key``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    tbs = obj.tbs_certrequest_bytes if hasattr(obj, "tbs_certrequest_bytes") else obj.tbs_certificate_bytes
    params = obj.signature_algorithm_parameters
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(obj.signature, tbs, params, obj.signature_hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(obj.signature, tbs, params)
        else:
            return False
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def require_signature(public_key: Any, obj: Any, what: str) -> None:
    """Raise VerificationError unless ``obj`` verifies with ``public_key`` (nothing unchecked is written)."""
    if not signature_is_valid(public_key, obj):
        raise VerificationError(
            f"The signature on the new {what} does not verify with the signing key's public key; nothing was written.",
            "The HSM or the key adapter returned a wrong signature: check the key version and the algorithm, "
            "and run with --verbose.",
        )


def spki_der(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def same_public_key(a: Any, b: Any) -> bool:
    return spki_der(a) == spki_der(b)


def spki_sha256(public_key: Any) -> str:
    return hashlib.sha256(spki_der(public_key)).hexdigest()

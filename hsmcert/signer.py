"""pyca/cryptography private keys whose private half stays in the HSM.

:func:`load_private_key` returns an :class:`HsmRSAPrivateKey` or :class:`HsmECPrivateKey`: real subclasses of
``rsa.RSAPrivateKey`` / ``ec.EllipticCurvePrivateKey`` that cryptography's own builders (CSR, certificate,
CRL, PKCS#7/CMS, OCSP) accept. ``sign()`` hashes locally, sends only the digest to the HSM (through
:class:`hsmcert.azure.hsm.HsmKey`), turns Azure's raw ``r||s`` into DER and verifies the signature with the public
key before returning it, because cryptography embeds whatever ``sign()`` returns without checking it.

What Key Vault cannot do is refused with a clear :class:`~hsmcert.errors.UsageError` rather than producing a
signature that does not match its AlgorithmIdentifier: RSA with SHA-1 or SHA-3, PSS with a salt other than
the digest length, an MGF1 hash other than the signing hash, deterministic (RFC 6979) ECDSA. ECDSA takes any
hash of 20 to 64 bytes: the digest is sent to the HSM under the ECDSA digest rule of :mod:`hsmcert.jwa`
(a SHA-384 digest with a P-256 key keeps its leftmost 32 bytes, as ECDSA itself does).

>>> from cryptography.hazmat.primitives import hashes
>>> algorithm_for("RSA", None, pss=True, hash_name=hashes.SHA384().name)
'PS384'
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover
    from typing_extensions import Self

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as _padding
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils

from hsmcert.azure.hsm import HsmKey
from hsmcert.errors import HsmcertError, UsageError
from hsmcert.jwa import algorithm_for
from hsmcert.keyref import KeyRef

if TYPE_CHECKING:
    from hsmcert.session import Session


def _hash_of(algorithm: Any) -> hashes.HashAlgorithm:
    """The hash a ``sign()`` call asks for (from a hash or a Prehashed)."""
    if isinstance(algorithm, asym_utils.NoDigestInfo):
        raise UsageError("Signing without a DigestInfo is not supported by Key Vault.")
    if isinstance(algorithm, asym_utils.Prehashed):
        return algorithm._algorithm  # type: ignore[no-any-return]
    if not isinstance(algorithm, hashes.HashAlgorithm):
        raise UsageError(f"Unsupported hash {algorithm!r}.", "Use SHA-256, SHA-384 or SHA-512.")
    return algorithm


def _digest(data: bytes, algorithm: Any) -> bytes:
    """The digest to send: ``data`` hashed locally, or ``data`` itself when it is Prehashed."""
    hash_alg = _hash_of(algorithm)
    if isinstance(algorithm, asym_utils.Prehashed):
        if len(data) != hash_alg.digest_size:
            raise UsageError(
                f"A prehashed {hash_alg.name.upper()} digest is {hash_alg.digest_size} bytes, not {len(data)}."
            )
        return data
    h = hashes.Hash(hash_alg)
    h.update(data)
    return h.finalize()


def _no_export(key: HsmKey) -> NoReturn:
    raise HsmcertError(
        f"The private key of {key.ref} stays in the HSM and cannot be exported.",
        "Use the public key (hsmcert key show --key ...) or sign through hsmcert.",
    )


class _HsmBacked:
    """What both adapters share: the HsmKey behind them, no export, copies that are the same key."""

    _kty = ""

    def __init__(self, key: HsmKey) -> None:
        if key.kty != self._kty:
            raise UsageError(f"{key.ref} is an {key.kty} key, not an {self._kty} key.")
        self.hsm_key = key
        self._public = key.public_key

    @property
    def ref(self) -> KeyRef:
        return self.hsm_key.ref

    def private_numbers(self) -> NoReturn:
        _no_export(self.hsm_key)

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> NoReturn:
        _no_export(self.hsm_key)

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[Any, Any]) -> Self:
        return self


class HsmRSAPrivateKey(_HsmBacked, rsa.RSAPrivateKey):
    """An RSA private key held in the HSM (PKCS#1 v1.5 and PSS signatures, OAEP/PKCS#1 decryption)."""

    _kty = "RSA"

    def __repr__(self) -> str:
        return f"<HsmRSAPrivateKey {self.ref} {self.key_size} bits>"

    @property
    def key_size(self) -> int:
        return self.hsm_key.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        assert isinstance(self._public, rsa.RSAPublicKey)
        return self._public

    def sign(
        self,
        data: bytes,
        padding: _padding.AsymmetricPadding,
        algorithm: asym_utils.Prehashed | hashes.HashAlgorithm | asym_utils.NoDigestInfo,
    ) -> bytes:
        alg = self.signature_algorithm(padding, _hash_of(algorithm))
        return self.hsm_key.sign_digest(alg, _digest(data, algorithm))

    def signature_algorithm(self, pad: _padding.AsymmetricPadding, hash_alg: hashes.HashAlgorithm) -> str:
        """The JWA algorithm for a padding and hash, refusing what Key Vault cannot produce."""
        p = _padding

        if isinstance(pad, p.PKCS1v15):
            return algorithm_for("RSA", None, pss=False, hash_name=hash_alg.name)
        if isinstance(pad, p.PSS):
            mgf = pad.mgf
            if not isinstance(mgf, p.MGF1) or mgf._algorithm.name != hash_alg.name:
                raise UsageError(
                    "Key Vault signs PSS only with MGF1 over the signing hash.",
                    f"Use padding.PSS(mgf=padding.MGF1({type(hash_alg).__name__}()), "
                    "salt_length=padding.PSS.DIGEST_LENGTH).",
                )
            salt = pad._salt_length
            if not (isinstance(salt, p._DigestLength) or salt == hash_alg.digest_size):
                shown = {p._MaxLength: "MAX_LENGTH", p._Auto: "AUTO"}.get(type(salt), str(salt))
                raise UsageError(
                    f"Key Vault signs PSS only with a salt as long as the digest ({hash_alg.digest_size} "
                    f"bytes), not {shown}.",
                    "Use salt_length=padding.PSS.DIGEST_LENGTH.",
                )
            return algorithm_for("RSA", None, pss=True, hash_name=hash_alg.name)
        raise UsageError(f"Key Vault cannot sign with {type(pad).__name__} padding.", "Use PKCS1v15 or PSS.")

    def decrypt(self, ciphertext: bytes, padding: _padding.AsymmetricPadding) -> bytes:
        p = _padding

        if isinstance(padding, p.PKCS1v15):
            return self.hsm_key.decrypt("RSA1_5", ciphertext)
        if isinstance(padding, p.OAEP):
            if padding._label:
                raise UsageError("Key Vault does not support an OAEP label.")
            pair = (padding.algorithm.name, padding.mgf._algorithm.name)
            if pair == ("sha1", "sha1"):
                return self.hsm_key.decrypt("RSA-OAEP", ciphertext)
            if pair == ("sha256", "sha256"):
                return self.hsm_key.decrypt("RSA-OAEP-256", ciphertext)
            raise UsageError(
                f"Key Vault decrypts OAEP with SHA-1 or SHA-256 (and the same MGF1 hash), not {pair}."
            )
        raise UsageError(f"Key Vault cannot decrypt with {type(padding).__name__} padding.")


class HsmECPrivateKey(_HsmBacked, ec.EllipticCurvePrivateKey):
    """An EC private key held in the HSM (ECDSA with the hash of its curve; DER signatures)."""

    _kty = "EC"

    def __repr__(self) -> str:
        return f"<HsmECPrivateKey {self.ref} {self.hsm_key.curve}>"

    @property
    def curve(self) -> ec.EllipticCurve:
        return self.public_key().curve

    @property
    def key_size(self) -> int:
        return self.curve.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        assert isinstance(self._public, ec.EllipticCurvePublicKey)
        return self._public

    def sign(
        self, data: bytes | bytearray | memoryview, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
    ) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UsageError(f"Key Vault signs with ECDSA only, not {type(signature_algorithm).__name__}.")
        if getattr(signature_algorithm, "deterministic_signing", False):
            raise UsageError(
                "Key Vault cannot make deterministic (RFC 6979) ECDSA signatures.",
                "Use ec.ECDSA(hash) without deterministic_signing.",
            )
        hash_alg = _hash_of(signature_algorithm.algorithm)
        alg = algorithm_for("EC", self.hsm_key.curve, pss=False, hash_name=hash_alg.name)
        return self.hsm_key.sign_digest(alg, _digest(bytes(data), signature_algorithm.algorithm))

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise UsageError("Key Vault keys do not do ECDH key agreement.")


HsmPrivateKey = HsmRSAPrivateKey | HsmECPrivateKey


def private_key_for(key: HsmKey) -> HsmRSAPrivateKey | HsmECPrivateKey:
    """Wrap an opened :class:`~hsmcert.azure.hsm.HsmKey` as a cryptography private key."""
    return HsmRSAPrivateKey(key) if key.kty == "RSA" else HsmECPrivateKey(key)


def load_private_key(
    ref: KeyRef | str, *, session: Session | None = None
) -> HsmRSAPrivateKey | HsmECPrivateKey:
    """Open ``ref`` (one GET, or none when cached; the version is pinned) as a cryptography private key,
    through ``session`` (default: :func:`hsmcert.session.default_session`)."""
    if session is None:
        from hsmcert.session import default_session

        session = default_session()
    return private_key_for(session.open_key(ref))


__all__ = [
    "HsmECPrivateKey",
    "HsmPrivateKey",
    "HsmRSAPrivateKey",
    "algorithm_for",
    "load_private_key",
    "private_key_for",
]

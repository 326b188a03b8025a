"""The algorithm vocabulary: JWA names, curves, digest sizes, defaults and which algorithm fits which key.

Every part of hsmcert that names a signature algorithm or a curve (the HSM key, the cryptography adapter,
the PKI builders, the agent and its protocol) takes it from here, and asks :func:`check_algorithm` whether
an algorithm fits a key, so a refusal reads the same everywhere.

>>> ALGORITHMS["PS384"]
Algorithm(name='PS384', kty='RSA', hash='SHA384', pss=True, curve=None)
>>> default_algorithm("EC", "P-384")
'ES384'

The ECDSA digest rule. Key Vault signs with ECDSA only a digest as long as its algorithm's hash (ES256 and
ES256K: 32 bytes, ES384: 48, ES512: 64). ECDSA itself takes any hash: it keeps the leftmost bits of the
digest up to the bit length of the curve's order. So a digest of another length is brought to the size the
HSM takes the way ECDSA treats it: a longer one keeps its leftmost bytes, a shorter one is left-padded with
zero bytes (the same integer). The HSM's signature then verifies against the original hash (TLS 1.2 may
ask for SHA-384 with a P-256 key; an old peer for SHA-1). :func:`ecdsa_digest` applies it.

>>> ecdsa_digest("ES256", bytes(range(48))).hex()[:8], len(ecdsa_digest("ES256", bytes(range(48))))
('00010203', 32)
>>> ecdsa_digest("ES256", b"\\x01" * 20)[:13].hex()
'00000000000000000000000001'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from hsmcert.errors import UsageError, VerificationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurve
    from cryptography.hazmat.primitives.hashes import HashAlgorithm


class Algorithm(NamedTuple):
    """A JWA signature algorithm as Key Vault names it."""

    name: str
    kty: str
    hash: str
    pss: bool
    curve: str | None

    @property
    def digest_size(self) -> int:
        """The length in bytes of the digest the HSM signs with this algorithm."""
        return DIGEST_SIZES[self.hash]


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("RS256", "RSA", "SHA256", False, None),
        Algorithm("RS384", "RSA", "SHA384", False, None),
        Algorithm("RS512", "RSA", "SHA512", False, None),
        Algorithm("PS256", "RSA", "SHA256", True, None),
        Algorithm("PS384", "RSA", "SHA384", True, None),
        Algorithm("PS512", "RSA", "SHA512", True, None),
        Algorithm("ES256", "EC", "SHA256", False, "P-256"),
        Algorithm("ES384", "EC", "SHA384", False, "P-384"),
        Algorithm("ES512", "EC", "SHA512", False, "P-521"),
        Algorithm("ES256K", "EC", "SHA256", False, "P-256K"),
    )
}
"""Every signature algorithm Key Vault and Managed HSM offer, by JWA name."""

DIGEST_SIZES = {"SHA256": 32, "SHA384": 48, "SHA512": 64}
"""JWA hash name -> digest length in bytes."""

CURVE_BYTES = {"P-256": 32, "P-384": 48, "P-521": 66, "P-256K": 32}
"""JWA curve name -> the length of a coordinate (and of r and s in a raw signature)."""

CURVES = tuple(CURVE_BYTES)
"""The curves Key Vault keys are on, the default first."""

_OPENSSL_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521", "secp256k1": "P-256K"}

ECDSA_DIGEST_SIZES = range(20, 65)
"""Digest lengths the ECDSA digest rule accepts: SHA-1 (20 bytes) up to SHA-512 (64 bytes)."""

DECRYPT_ALGORITHMS = ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5")
"""RSA decryption algorithms, by JWA name."""

_HASHES = {"sha256": "SHA256", "sha384": "SHA384", "sha512": "SHA512"}


class AlgorithmMismatchError(UsageError):
    """A known algorithm that does not fit the key (an RSA algorithm for an EC key, another curve's ES)."""


def default_algorithm(kty: str, curve: str | None = None) -> str:
    """RS256 for RSA; the ES algorithm of the curve for EC."""
    if kty == "RSA":
        return "RS256"
    for alg in ALGORITHMS.values():
        if alg.kty == kty and alg.curve == curve:
            return alg.name
    raise UsageError(f"A {kty} key{f' on {curve}' if curve else ''} has no signature algorithm.")


def check_algorithm(alg: str, kty: str, curve: str | None = None, *, key: str = "this key") -> Algorithm:
    """The :class:`Algorithm` named ``alg`` when it fits a ``kty`` key on ``curve``; otherwise a UsageError
    (:class:`AlgorithmMismatchError` when the name is known but the key is of another type or curve).

    ``key`` names the key in the message (a reference, or "this key").
    """
    found = ALGORITHMS.get(alg.upper())
    if found is None:
        raise UsageError(
            f"Unknown or unsupported signature algorithm {alg!r}.", f"Use one of: {', '.join(ALGORITHMS)}."
        )
    if found.kty != kty:
        raise AlgorithmMismatchError(
            f"{found.name} needs an {found.kty} key; {key} is an {kty} key.",
            f"Use {default_algorithm(kty, curve)} (or another {kty} algorithm) with this key.",
        )
    if found.curve is not None and found.curve != curve:
        raise AlgorithmMismatchError(
            f"{found.name} needs a {found.curve} key; {key} is on {curve}.",
            f"Use {default_algorithm(kty, curve)} with this key.",
        )
    return found


def algorithm_for(kty: str, curve: str | None, *, pss: bool, hash_name: str) -> str:
    """The JWA algorithm that signs a ``hash_name`` digest (a cryptography hash name) with a key.

    RSA: RS or PS with that very hash (SHA-256, SHA-384, SHA-512). EC: the curve's algorithm, for any hash
    of 20 to 64 bytes (see the ECDSA digest rule above).
    """
    if kty == "EC":
        size = _hash_size(hash_name)
        if size is None or size not in ECDSA_DIGEST_SIZES:
            raise UsageError(
                f"Key Vault does not sign {hash_name.upper()} digests with ECDSA.",
                "Use SHA-256, SHA-384 or SHA-512.",
            )
        return default_algorithm(kty, curve)
    name = _HASHES.get(hash_name.lower())
    if name is None:
        if hash_name.lower() in ("sha1", "md5", "sha224"):
            raise UsageError(
                f"{hash_name.upper()} is too weak and Key Vault does not sign with it.",
                "Use SHA-256, SHA-384 or SHA-512.",
            )
        raise UsageError(
            f"Key Vault cannot sign {hash_name.upper()} digests.", "Use SHA-256, SHA-384 or SHA-512."
        )
    for alg in ALGORITHMS.values():
        if alg.kty == kty and alg.hash == name and alg.pss == pss:
            return alg.name
    raise UsageError(f"No Key Vault algorithm for a {kty} key with {name}.")


def _hash_size(hash_name: str) -> int | None:
    import hashlib

    try:
        return hashlib.new(hash_name.lower().replace("-", "_")).digest_size
    except ValueError:
        return None


def ecdsa_digest(alg: str | Algorithm, digest: bytes) -> bytes:
    """``digest`` brought to the size the HSM signs with ECDSA algorithm ``alg`` (the ECDSA digest rule).

    A digest of the algorithm's size is returned as it is; a longer one keeps its leftmost bytes, a shorter
    one is left-padded with zero bytes. A digest outside 20..64 bytes is a UsageError.
    """
    algorithm = alg if isinstance(alg, Algorithm) else ALGORITHMS[alg]
    want = algorithm.digest_size
    if len(digest) == want:
        return digest
    if len(digest) not in ECDSA_DIGEST_SIZES:
        raise UsageError(
            f"{algorithm.name} signs a digest of {ECDSA_DIGEST_SIZES.start} to {ECDSA_DIGEST_SIZES.stop - 1} "
            f"bytes, not {len(digest)} bytes."
        )
    if len(digest) > want:
        return digest[:want]
    return bytes(want - len(digest)) + digest


def digest_to_sign(alg: str | Algorithm, digest: bytes) -> bytes:
    """What the HSM signs for ``digest`` with ``alg``: for ECDSA the digest under the ECDSA digest rule,
    for RSA the digest itself, which must be as long as the algorithm's hash (else a UsageError)."""
    algorithm = alg if isinstance(alg, Algorithm) else ALGORITHMS[alg]
    if algorithm.kty == "EC":
        return ecdsa_digest(algorithm, digest)
    if len(digest) != algorithm.digest_size:
        raise UsageError(
            f"{algorithm.name} signs a {algorithm.hash} digest of {algorithm.digest_size} bytes, "
            f"not {len(digest)} bytes."
        )
    return digest


def digest_size_ok(alg: str, size: int) -> bool:
    """Whether a digest of ``size`` bytes may be sent for ``alg`` (a known JWA signature algorithm)."""
    algorithm = ALGORITHMS[alg]
    if algorithm.kty == "EC":
        return size in ECDSA_DIGEST_SIZES
    return size == algorithm.digest_size


def hash_for(name: str) -> HashAlgorithm:
    """The cryptography hash object of a JWA hash name (SHA256, SHA384, SHA512)."""
    from cryptography.hazmat.primitives import hashes

    return {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}[name]


def curve_of(curve: EllipticCurve) -> str:
    """The JWA name of a cryptography curve (P-256, ...); its OpenSSL name when JWA has none."""
    return _OPENSSL_CURVES.get(curve.name, curve.name)


def ec_curve(name: str) -> EllipticCurve:
    """The cryptography curve of a JWA curve name; a UsageError for a curve Key Vault has not."""
    from cryptography.hazmat.primitives.asymmetric import ec

    curves: dict[str, type[EllipticCurve]] = {
        "P-256": ec.SECP256R1,
        "P-384": ec.SECP384R1,
        "P-521": ec.SECP521R1,
        "P-256K": ec.SECP256K1,
    }
    if name not in curves:
        raise UsageError(f"The curve {name} is not supported.", f"Use one of: {', '.join(CURVES)}.")
    return curves[name]()


def raw_to_der(raw: bytes, curve_bytes: int) -> bytes:
    """Azure's ECDSA ``r||s`` (each half padded to the curve size) as a DER ``Ecdsa-Sig-Value``."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if len(raw) != 2 * curve_bytes:
        raise VerificationError(
            f"The HSM returned an ECDSA signature of {len(raw)} bytes; expected {2 * curve_bytes} (r||s).",
            "The service or emulator misbehaved; nothing was written.",
        )
    r = int.from_bytes(raw[:curve_bytes], "big")
    s = int.from_bytes(raw[curve_bytes:], "big")
    return encode_dss_signature(r, s)


__all__ = [
    "ALGORITHMS",
    "CURVES",
    "CURVE_BYTES",
    "DECRYPT_ALGORITHMS",
    "DIGEST_SIZES",
    "ECDSA_DIGEST_SIZES",
    "Algorithm",
    "AlgorithmMismatchError",
    "algorithm_for",
    "check_algorithm",
    "curve_of",
    "default_algorithm",
    "digest_size_ok",
    "digest_to_sign",
    "ec_curve",
    "ecdsa_digest",
    "hash_for",
    "raw_to_der",
]

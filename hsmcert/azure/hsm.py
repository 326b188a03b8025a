"""Talk to one key in a Managed HSM or Key Vault: fetch its public part once, sign digests, decrypt.

:func:`open_key` returns an :class:`HsmKey` whose version is pinned: every operation goes to the version
that was current when the key was opened, so all signatures of one certificate come from one key.
Each signature is verified locally with the public key before it is returned. Public keys come from the
session's cache (:mod:`hsmcert.azure.keycache`) when they can; the SDK clients of each endpoint belong to
the session too (:mod:`hsmcert.azure.clients`). Open keys through :class:`hsmcert.session.Session`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from hsmcert import jwa
from hsmcert.azure.clients import ServiceClients
from hsmcert.azure.errors import enable_remedy
from hsmcert.azure.keyinfo import KeyInfo, public_key_from_jwk, unb64u
from hsmcert.errors import PermissionDeniedError, UsageError, VerificationError
from hsmcert.keyref import KeyRef, parse_keyref
from hsmcert.timestamps import rfc3339


def check_usable(info: KeyInfo, ref: KeyRef) -> None:
    what = f"The key {ref}"
    if info.enabled is False:
        raise PermissionDeniedError(f"{what} is disabled.", enable_remedy(ref.kind, ref.service, ref.key))
    now = time.time()
    if info.expires_on is not None and info.expires_on <= now:
        stamp = rfc3339(info.expires_on)
        raise PermissionDeniedError(
            f"{what} expired on {stamp}.",
            "Rotate it (hsmcert key rotate) or use another key; an expired key cannot sign.",
        )
    if info.not_before is not None and info.not_before > now:
        stamp = rfc3339(info.not_before)
        raise PermissionDeniedError(f"{what} is not valid before {stamp}.", "Wait, or use another key.")


class HsmKey:
    """One pinned version of an RSA or EC key in a Managed HSM or Key Vault.

    Built by :func:`open_key`. ``sign_digest`` and ``decrypt`` go to the HSM; everything public is local.
    """

    def __init__(self, ref: KeyRef, info: KeyInfo, service: ServiceClients) -> None:
        self.ref = ref.with_version(info.version)
        self.info = info
        self.kid = info.kid
        self.kty: str = info.kty
        self.curve: str | None = info.jwk.get("crv")
        self.public_key = public_key_from_jwk(info.jwk)
        self._service = service
        self._crypto: Any = None
        self._crypto_lock = threading.Lock()
        self._verifiers: dict[str, Callable[[bytes, bytes], None]] = {}

    def __repr__(self) -> str:
        return f"HsmKey({str(self.ref)!r}, kty={self.kty!r})"

    @property
    def service(self) -> ServiceClients:
        """The clients of the endpoint the key was opened through (its operations go there)."""
        return self._service

    @property
    def key_size(self) -> int:
        return int(self.public_key.key_size)

    @property
    def spki_der(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self.public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    def default_algorithm(self) -> str:
        """RS256 for RSA; the ES algorithm that matches the curve for EC."""
        return jwa.default_algorithm(self.kty, self.curve)

    def check_algorithm(self, alg: str) -> jwa.Algorithm:
        """The :class:`~hsmcert.jwa.Algorithm` for ``alg``, refused clearly when the key cannot use it."""
        return jwa.check_algorithm(alg, self.kty, self.curve, key=str(self.ref))

    def _crypto_client(self) -> Any:
        with self._crypto_lock:
            if self._crypto is None:
                from azure.keyvault.keys import KeyVaultKey
                from azure.keyvault.keys.crypto import CryptographyClient

                jwk = {k: (unb64u(v) if k in ("n", "e", "x", "y") else v) for k, v in self.info.jwk.items()}
                jwk["kid"] = self.kid
                self._crypto = CryptographyClient(
                    KeyVaultKey(self.kid, jwk=jwk), self._service.credential, **self._service.keys_kwargs()
                )
            return self._crypto

    def sign_digest(self, alg: str, digest: bytes) -> bytes:
        """Sign ``digest`` in the HSM with ``alg`` (JWA name) and return a locally verified signature.

        RSA: the PKCS#1 v1.5 or PSS signature (PSS salt = digest length); ``digest`` is as long as the
        algorithm's hash. EC: a DER ECDSA signature; ``digest`` may be of any hash of 20 to 64 bytes (the
        ECDSA digest rule of :mod:`hsmcert.jwa`), and the signature verifies against it.
        Raises :class:`~hsmcert.errors.VerificationError` when the returned signature does not verify.
        """
        algorithm = self.check_algorithm(alg)
        digest = jwa.digest_to_sign(algorithm, digest)
        with self._service.translating(self.ref, "sign"):
            result = self._crypto_client().sign(algorithm.name, digest)
        signature = bytes(result.signature)
        if self.kty == "EC":
            signature = jwa.raw_to_der(signature, jwa.CURVE_BYTES[str(self.curve)])
        self.verifier(algorithm)(digest, signature)
        return signature

    def verify_digest(self, alg: str, digest: bytes, signature: bytes) -> None:
        """Check a signature (DER for EC) over ``digest`` locally; raise VerificationError if wrong."""
        algorithm = self.check_algorithm(alg)
        self.verifier(algorithm)(jwa.digest_to_sign(algorithm, digest), signature)

    def verifier(self, algorithm: jwa.Algorithm) -> Callable[[bytes, bytes], None]:
        """``check(digest, signature)`` for ``algorithm`` (checked against this key), whose padding and hash
        objects are built once per key version and algorithm; ``digest`` is what the HSM signed
        (:func:`hsmcert.jwa.digest_to_sign`). Raises VerificationError when the signature is wrong."""
        found = self._verifiers.get(algorithm.name)
        if found is None:
            found = self._verifiers[algorithm.name] = self._make_verifier(algorithm)
        return found

    def _make_verifier(self, algorithm: jwa.Algorithm) -> Callable[[bytes, bytes], None]:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        hash_alg = jwa.hash_for(algorithm.hash)
        public_key = self.public_key
        ref = self.ref

        if isinstance(public_key, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = (
                padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
                if algorithm.pss
                else padding.PKCS1v15()
            )
            prehashed = Prehashed(hash_alg)

            def verify(digest: bytes, signature: bytes) -> None:
                public_key.verify(signature, digest, pad, prehashed)
        else:
            ecdsa = ec.ECDSA(Prehashed(hash_alg))

            def verify(digest: bytes, signature: bytes) -> None:
                public_key.verify(signature, digest, ecdsa)

        def check(digest: bytes, signature: bytes) -> None:
            try:
                verify(digest, signature)
            except (InvalidSignature, ValueError) as exc:
                raise VerificationError(
                    f"The {algorithm.name} signature returned by {ref} does not verify with its public key.",
                    "Nothing was written. The HSM (or emulator) returned a wrong signature; retry, and report "
                    "it if it persists.",
                ) from exc

        return check

    def decrypt(self, alg: str, ciphertext: bytes) -> bytes:
        """Decrypt ``ciphertext`` in the HSM (RSA-OAEP, RSA-OAEP-256 or RSA1_5)."""
        if self.kty != "RSA":
            raise UsageError(f"{self.ref} is an {self.kty} key; only RSA keys decrypt.")
        name = alg.upper()
        if name not in jwa.DECRYPT_ALGORITHMS:
            raise UsageError(
                f"Unsupported decryption algorithm {alg!r}.",
                f"Use one of: {', '.join(jwa.DECRYPT_ALGORITHMS)}.",
            )
        if len(ciphertext) != (self.key_size + 7) // 8:
            raise UsageError(
                f"The ciphertext is {len(ciphertext)} bytes; a {self.key_size}-bit key needs {(self.key_size + 7) // 8}."
            )
        with self._service.translating(self.ref, "decrypt"):
            result = self._crypto_client().decrypt(name, ciphertext)
        return bytes(result.plaintext)


def fetch_key_info(ref: KeyRef, service: ServiceClients) -> KeyInfo:
    """GET the key (the latest version, or ``ref.version``) from the service; no cache."""
    with service.translating(ref, "get"):
        key = service.key_client.get_key(ref.key, version=ref.version)
    return KeyInfo.from_sdk(key)


def open_key(ref: KeyRef | str, service: ServiceClients, *, refresh: bool = False) -> HsmKey:
    """Fetch the public key of ``ref`` from ``service`` (the clients of its endpoint; see
    :meth:`hsmcert.session.Session.open_key`), or take it from the cache, and pin its version.

    ``refresh``: ask the service even when the public key is cached (checks access, enabled, expiry).
    """
    if isinstance(ref, str):
        ref = parse_keyref(ref)
    info = None if refresh else service.cache.get(service.url, ref)
    if info is None:
        info = fetch_key_info(ref, service)
        check_usable(info, ref)
        if info.kty not in ("RSA", "EC"):
            raise UsageError(
                f"{ref} is a {info.jwk.get('kty')} key; only RSA and EC keys sign.",
                "Use an RSA or EC key (hsmcert key create --kty RSA|EC).",
            )
        service.cache.put(service.url, ref, info)
    return HsmKey(ref, info, service)


__all__ = ["HsmKey", "fetch_key_info", "open_key"]

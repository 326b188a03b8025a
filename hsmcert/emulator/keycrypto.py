"""The cryptography of the emulator's keys: generation, JWK import, sign / verify, encrypt / decrypt and
wrap / unwrap with the algorithms Key Vault and Managed HSM name, and the public JWK of a private key.

Every function takes the request body (already JSON) and a :class:`~hsmcert.emulator.keys.KeyVersion`; a
request that does not fit the key or the algorithm is a 400 in Azure's shape.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from hsmcert import jwa
from hsmcert.emulator.api import ApiError, b64u, bad, field_of, unb64u

if TYPE_CHECKING:
    from hsmcert.emulator.keys import KeyVersion
    from hsmcert.emulator.service import Service

RSA_SIZES = (2048, 3072, 4096)
CURVES = jwa.CURVE_BYTES
OCT_SIZES = (128, 192, 256)
MAX_EXPONENT = 2**32 - 1
RSA_EXPONENT_ATTEMPTS = 32
SIGN_ALGS = {a.name: (a.kty, a.hash) for a in jwa.ALGORITHMS.values()}
EC_ALG_CURVE = {a.name: a.curve for a in jwa.ALGORITHMS.values() if a.curve}
RSA_CIPHERS = ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5")
AES_CIPHERS = tuple(f"A{n}{mode}" for n in OCT_SIZES for mode in ("GCM", "CBC", "CBCPAD"))
AES_WRAPS = (*(f"A{n}KW" for n in OCT_SIZES), "CKM_AES_KEY_WRAP", "CKM_AES_KEY_WRAP_PAD")


def _hash(name: str) -> Any:
    from cryptography.hazmat.primitives import hashes

    return {
        "SHA1": hashes.SHA1(),  # noqa: S303 - RSA-OAEP is defined with SHA-1
        "SHA256": hashes.SHA256(),
        "SHA384": hashes.SHA384(),
        "SHA512": hashes.SHA512(),
    }[name]


def _int_bytes(value: int, size: int | None = None) -> bytes:
    return value.to_bytes(size or max((value.bit_length() + 7) // 8, 1), "big")


def private_der(private: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def public_jwk(private: Any) -> dict[str, str]:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(private, rsa.RSAPrivateKey):
        numbers = private.public_key().public_numbers()
        return {"n": b64u(_int_bytes(numbers.n)), "e": b64u(_int_bytes(numbers.e))}
    if isinstance(private, ec.EllipticCurvePrivateKey):
        crv = jwa.curve_of(private.curve)
        size = CURVES[crv]
        pub = private.public_key().public_numbers()
        return {"crv": crv, "x": b64u(_int_bytes(pub.x, size)), "y": b64u(_int_bytes(pub.y, size))}
    return {}


# --- key generation and import --------------------------------------------------------------------------


def generate(kty: str, body: dict[str, Any]) -> tuple[Any, int | None]:
    """A fresh private key (object, or AES bytes) for a create request; returns it with its size."""
    base = kty.replace("-HSM", "")
    if base == "RSA":
        size = field_of(body, "key_size", int) or 2048
        if size not in RSA_SIZES:
            raise bad(f"The RSA key size {size} is not supported; use 2048, 3072 or 4096.")
        exponent = field_of(body, "public_exponent", int) or 65537
        if not (3 <= exponent <= MAX_EXPONENT and exponent % 2):
            raise bad(
                f"The public exponent {str(exponent)[:20]} is not an odd number from 3 to {MAX_EXPONENT}."
            )
        return _rsa_with_exponent(exponent, size), size
    if base == "EC":
        from cryptography.hazmat.primitives.asymmetric import ec

        crv = field_of(body, "crv", str) or "P-256"
        if crv not in CURVES:
            raise ApiError(400, "KeyCurveNotSupported", f"The curve '{crv[:20]}' is not supported.")
        return ec.generate_private_key(jwa.ec_curve(crv)), None
    size = field_of(body, "key_size", int) or 256
    if size not in OCT_SIZES:
        raise bad(f"The AES key size {size} is not supported; use 128, 192 or 256.")
    return os.urandom(size // 8), size


def _rsa_with_exponent(exponent: int, size: int) -> Any:
    """A new RSA key whose public exponent is ``exponent`` (any odd number, as a Managed HSM makes them).

    pyca generates keys with 3 or 65537 only; for another exponent, the primes of fresh keys are taken until
    both p-1 and q-1 are coprime with it (for most exponents the first pair already is).
    """
    from math import gcd, lcm

    from cryptography.hazmat.primitives.asymmetric import rsa

    if exponent in (3, 65537):
        return rsa.generate_private_key(exponent, size)
    for _ in range(RSA_EXPONENT_ATTEMPTS):
        numbers = rsa.generate_private_key(65537, size).private_numbers()
        p, q = numbers.p, numbers.q
        if gcd(exponent, (p - 1) * (q - 1)) != 1:
            continue
        d = pow(exponent, -1, lcm(p - 1, q - 1))
        public = rsa.RSAPublicNumbers(exponent, p * q)
        crt = (rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q))
        return rsa.RSAPrivateNumbers(p, q, d, *crt, public).private_key()
    raise bad(f"No RSA key with the public exponent {exponent} was found; use another exponent.")


def import_jwk(jwk: dict[str, Any]) -> tuple[str, Any, int | None]:
    """The base key type, private key and size of an imported JWK (400 when it is not a whole private key)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    kty = jwk.get("kty")
    if not isinstance(kty, str):
        raise bad("The imported key has no 'kty'.")
    base = kty.replace("-HSM", "")

    def num(name: str) -> int:
        if name not in jwk:
            raise bad(f"The imported key lacks its private part '{name}'.")
        raw = unb64u(jwk[name], name)
        if len(raw) > max(RSA_SIZES) // 8:
            raise bad(f"The '{name}' of the imported key is longer than a key this service holds.")
        return int.from_bytes(raw, "big")

    try:
        if base == "RSA":
            n, e, d, p, q = num("n"), num("e"), num("d"), num("p"), num("q")
            if n.bit_length() not in RSA_SIZES:
                raise bad(f"The RSA key size {n.bit_length()} is not supported; use 2048, 3072 or 4096.")
            dp = num("dp") if "dp" in jwk else rsa.rsa_crt_dmp1(d, p)
            dq = num("dq") if "dq" in jwk else rsa.rsa_crt_dmq1(d, q)
            qi = num("qi") if "qi" in jwk else rsa.rsa_crt_iqmp(p, q)
            key = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n)).private_key()
            if key.key_size not in RSA_SIZES:
                raise bad(f"The RSA key size {key.key_size} is not supported; use 2048, 3072 or 4096.")
            return "RSA", key, key.key_size
        if base == "EC":
            crv = jwk.get("crv")
            if not isinstance(crv, str) or crv not in CURVES:
                raise ApiError(400, "KeyCurveNotSupported", f"The curve '{str(crv)[:20]}' is not supported.")
            pub = ec.EllipticCurvePublicNumbers(num("x"), num("y"), jwa.ec_curve(crv))
            return "EC", ec.EllipticCurvePrivateNumbers(num("d"), pub).private_key(), None
        if base == "oct":
            k = unb64u(jwk.get("k"), "k")
            if len(k) * 8 not in OCT_SIZES:
                raise bad("An AES key must be 128, 192 or 256 bits.")
            return "oct", k, len(k) * 8
    except ValueError as exc:
        raise bad(f"The imported key is not valid: {str(exc)[:120]}") from None
    raise bad(f"The key type '{kty[:40]}' is not supported.")


# --- cryptographic operations ---------------------------------------------------------------------------


def _alg(body: dict[str, Any], allowed: tuple[str, ...] | dict[str, Any]) -> str:
    alg = body.get("alg")
    if not isinstance(alg, str):
        raise bad("The 'alg' field is required.")
    if alg not in allowed:
        raise bad(f"The algorithm '{alg[:40]}' is not supported for this operation.")
    return alg


def _rsa_sign_padding(alg: str, hash_alg: Any) -> Any:
    from cryptography.hazmat.primitives.asymmetric import padding

    if alg.startswith("PS"):
        return padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
    return padding.PKCS1v15()


def _check_sign_args(kv: KeyVersion, alg: str, digest: bytes) -> Any:
    family, hash_name = SIGN_ALGS[alg]
    if kv.base_kty != family:
        raise bad(f"The algorithm {alg} cannot be used with a {kv.kty} key.")
    if family == "EC" and kv.public.get("crv") != EC_ALG_CURVE[alg]:
        raise bad(f"The algorithm {alg} does not match the key's curve {kv.public.get('crv')}.")
    hash_alg = _hash(hash_name)
    if len(digest) != hash_alg.digest_size:
        raise bad(f"The digest length {len(digest)} does not match {alg} ({hash_alg.digest_size} bytes).")
    return hash_alg


def sign(service: Service, kv: KeyVersion, body: dict[str, Any]) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    alg = _alg(body, SIGN_ALGS)
    digest = unb64u(body.get("value"), "value")
    hash_alg = _check_sign_args(kv, alg, digest)
    private = kv.private(service)
    if kv.base_kty == "RSA":
        return bytes(private.sign(digest, _rsa_sign_padding(alg, hash_alg), utils.Prehashed(hash_alg)))
    der = private.sign(digest, ec.ECDSA(utils.Prehashed(hash_alg)))
    r, s = utils.decode_dss_signature(der)
    size = CURVES[kv.public["crv"]]
    return _int_bytes(r, size) + _int_bytes(s, size)


def verify(service: Service, kv: KeyVersion, body: dict[str, Any]) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    alg = _alg(body, SIGN_ALGS)
    digest = unb64u(body.get("digest"), "digest")
    signature = unb64u(body.get("value"), "value")
    hash_alg = _check_sign_args(kv, alg, digest)
    public = kv.private(service).public_key()
    try:
        if kv.base_kty == "RSA":
            public.verify(signature, digest, _rsa_sign_padding(alg, hash_alg), utils.Prehashed(hash_alg))
        else:
            size = CURVES[kv.public["crv"]]
            if len(signature) != 2 * size:
                return False
            der = utils.encode_dss_signature(
                int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            )
            public.verify(der, digest, ec.ECDSA(utils.Prehashed(hash_alg)))
    except InvalidSignature:
        return False
    return True


def _oaep(alg: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import padding

    if alg == "RSA1_5":
        return padding.PKCS1v15()
    hash_alg = _hash("SHA256" if alg == "RSA-OAEP-256" else "SHA1")
    return padding.OAEP(mgf=padding.MGF1(hash_alg), algorithm=hash_alg, label=None)


def _aes_size_check(kv: KeyVersion, alg: str) -> None:
    if kv.base_kty != "oct":
        raise bad(f"The algorithm {alg} needs an AES (oct-HSM) key, not a {kv.kty} key.")
    if alg.startswith("A") and alg[1:4].isdigit() and int(alg[1:4]) != kv.size:
        raise bad(f"The algorithm {alg} does not match the key size ({kv.size} bits).")


def encrypt(service: Service, kv: KeyVersion, body: dict[str, Any]) -> dict[str, str]:
    alg = _alg(body, (*RSA_CIPHERS, *AES_CIPHERS))
    plaintext = unb64u(body.get("value"), "value")
    if alg in RSA_CIPHERS:
        if kv.base_kty != "RSA":
            raise bad(f"The algorithm {alg} needs an RSA key, not a {kv.kty} key.")
        try:
            return {"value": b64u(kv.private(service).public_key().encrypt(plaintext, _oaep(alg)))}
        except ValueError:
            raise bad("The plaintext is too long for this key and algorithm.") from None
    _aes_size_check(kv, alg)
    key = kv.private(service)
    if alg.endswith("GCM"):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aad = unb64u(body["aad"], "aad") if body.get("aad") is not None else None
        iv = os.urandom(12)
        sealed = AESGCM(key).encrypt(iv, plaintext, aad)
        result = {"value": b64u(sealed[:-16]), "iv": b64u(iv), "tag": b64u(sealed[-16:])}
        if aad is not None:
            result["aad"] = b64u(aad)
        return result
    iv = _cbc_iv(body)
    return {"value": b64u(_cbc(key, iv, plaintext, alg.endswith("PAD"), encrypt=True)), "iv": b64u(iv)}


def decrypt(service: Service, kv: KeyVersion, body: dict[str, Any]) -> bytes:
    alg = _alg(body, (*RSA_CIPHERS, *AES_CIPHERS))
    ciphertext = unb64u(body.get("value"), "value")
    if alg in RSA_CIPHERS:
        if kv.base_kty != "RSA":
            raise bad(f"The algorithm {alg} needs an RSA key, not a {kv.kty} key.")
        try:
            return bytes(kv.private(service).decrypt(ciphertext, _oaep(alg)))
        except ValueError:
            raise bad("The ciphertext could not be decrypted with this key and algorithm.") from None
    _aes_size_check(kv, alg)
    key = kv.private(service)
    if alg.endswith("GCM"):
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        iv = unb64u(body.get("iv"), "iv")
        tag = unb64u(body.get("tag"), "tag")
        aad = unb64u(body["aad"], "aad") if body.get("aad") is not None else None
        if len(iv) != 12 or len(tag) != 16:
            raise bad("AES-GCM needs a 12-byte iv and a 16-byte tag.")
        try:
            return bytes(AESGCM(key).decrypt(iv, ciphertext + tag, aad))
        except InvalidTag:
            raise bad("The AES-GCM tag does not match: the data or the aad was altered.") from None
    return _cbc(key, _cbc_iv(body), ciphertext, alg.endswith("PAD"), encrypt=False)


def _cbc_iv(body: dict[str, Any]) -> bytes:
    iv = unb64u(body.get("iv"), "iv")
    if len(iv) != 16:
        raise bad("AES-CBC needs a 16-byte iv.")
    return iv


def _cbc(key: bytes, iv: bytes, data: bytes, pad: bool, *, encrypt: bool) -> bytes:
    from cryptography.hazmat.primitives import padding as sym_padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    if encrypt:
        if pad:
            padder = sym_padding.PKCS7(128).padder()
            data = padder.update(data) + padder.finalize()
        elif len(data) % 16:
            data += bytes(-len(data) % 16)  # the service completes the last block; decryption returns it
        enc = cipher.encryptor()
        return bytes(enc.update(data) + enc.finalize())
    if len(data) % 16 or not data:
        raise bad("The AES-CBC ciphertext must be a non-empty multiple of 16 bytes.")
    dec = cipher.decryptor()
    out = dec.update(data) + dec.finalize()
    if pad:
        unpadder = sym_padding.PKCS7(128).unpadder()
        try:
            out = unpadder.update(out) + unpadder.finalize()
        except ValueError:
            raise bad("The AES-CBC padding is invalid.") from None
    return bytes(out)


def wrap(service: Service, kv: KeyVersion, body: dict[str, Any]) -> bytes:
    alg = _alg(body, (*RSA_CIPHERS, *AES_WRAPS))
    if alg in RSA_CIPHERS:
        return unb64u(encrypt(service, kv, body)["value"], "value")
    from cryptography.hazmat.primitives import keywrap

    _aes_size_check(kv, alg)
    value = unb64u(body.get("value"), "value")
    key = kv.private(service)
    if alg == "CKM_AES_KEY_WRAP_PAD":
        if not value:
            raise bad("There is nothing to wrap.")
        return bytes(keywrap.aes_key_wrap_with_padding(key, value))
    if len(value) < 16 or len(value) % 8:
        raise bad(f"{alg} wraps a key of at least 16 bytes, a multiple of 8.")
    return bytes(keywrap.aes_key_wrap(key, value))


def unwrap(service: Service, kv: KeyVersion, body: dict[str, Any]) -> bytes:
    alg = _alg(body, (*RSA_CIPHERS, *AES_WRAPS))
    if alg in RSA_CIPHERS:
        return decrypt(service, kv, body)
    from cryptography.hazmat.primitives import keywrap

    _aes_size_check(kv, alg)
    value = unb64u(body.get("value"), "value")
    key = kv.private(service)
    try:
        if alg == "CKM_AES_KEY_WRAP_PAD":
            return bytes(keywrap.aes_key_unwrap_with_padding(key, value))
        return bytes(keywrap.aes_key_unwrap(key, value))
    except (keywrap.InvalidUnwrap, ValueError):
        raise bad("The wrapped key could not be unwrapped (integrity check failed).") from None

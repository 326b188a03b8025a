"""The keys API of the emulator: key versions, their private material, and every key operation.

Private material lives only in :class:`KeyVersion` (decrypted lazily from the store and cached in memory)
and is never put into a response.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hsmcert.emulator.api import (
    MAX_TIMESTAMP,
    ApiError,
    Request,
    Response,
    b64u,
    bad,
    check_name,
    field_of,
    paged,
    unb64u,
)

if TYPE_CHECKING:
    from hsmcert.emulator.service import Service

RSA_SIZES = (2048, 3072, 4096)
CURVES = {"P-256": 32, "P-384": 48, "P-521": 66, "P-256K": 32}
OCT_SIZES = (128, 192, 256)
ALL_OPS = ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export")
DEFAULT_OPS = {
    "RSA": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
    "EC": ["sign", "verify"],
    "oct": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
}
# Operation (URL verb) -> the key_ops entry that permits it.
OP_PERMISSION = {
    "sign": "sign",
    "verify": "verify",
    "encrypt": "encrypt",
    "decrypt": "decrypt",
    "wrapkey": "wrapKey",
    "unwrapkey": "unwrapKey",
}
SIGN_ALGS = {
    "RS256": ("RSA", "SHA256"),
    "RS384": ("RSA", "SHA384"),
    "RS512": ("RSA", "SHA512"),
    "PS256": ("RSA", "SHA256"),
    "PS384": ("RSA", "SHA384"),
    "PS512": ("RSA", "SHA512"),
    "ES256": ("EC", "SHA256"),
    "ES384": ("EC", "SHA384"),
    "ES512": ("EC", "SHA512"),
    "ES256K": ("EC", "SHA256"),
}
EC_ALG_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "ES256K": "P-256K"}
RSA_CIPHERS = ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5")
AES_CIPHERS = tuple(f"A{n}{mode}" for n in OCT_SIZES for mode in ("GCM", "CBC", "CBCPAD"))
AES_WRAPS = (*(f"A{n}KW" for n in OCT_SIZES), "CKM_AES_KEY_WRAP", "CKM_AES_KEY_WRAP_PAD")


def _curve(crv: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return {
        "P-256": ec.SECP256R1(),
        "P-384": ec.SECP384R1(),
        "P-521": ec.SECP521R1(),
        "P-256K": ec.SECP256K1(),
    }[crv]


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


def new_version() -> str:
    return secrets.token_hex(16)


@dataclass
class KeyVersion:
    name: str
    version: str
    kty: str
    """As Azure names it: RSA, RSA-HSM, EC, EC-HSM, oct-HSM."""
    key_ops: list[str]
    public: dict[str, str]
    """The public JWK members (n, e | crv, x, y); empty for oct keys."""
    created: int
    updated: int
    enabled: bool = True
    nbf: int | None = None
    exp: int | None = None
    exportable: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    size: int | None = None
    release_policy: dict[str, Any] | None = None
    sealed: bytes | None = field(default=None, repr=False)
    _private: Any = field(default=None, repr=False)

    @property
    def base_kty(self) -> str:
        return self.kty.replace("-HSM", "")

    def meta(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "kty": self.kty,
            "key_ops": self.key_ops,
            "public": self.public,
            "created": self.created,
            "updated": self.updated,
            "enabled": self.enabled,
            "nbf": self.nbf,
            "exp": self.exp,
            "exportable": self.exportable,
            "tags": self.tags,
            "size": self.size,
            "release_policy": self.release_policy,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any], sealed: bytes | None) -> KeyVersion:
        return cls(**meta, sealed=sealed)

    def attributes(self, service: Service) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "enabled": self.enabled,
            "created": self.created,
            "updated": self.updated,
            "recoveryLevel": service.recovery_level,
            "recoverableDays": service.recoverable_days,
            "exportable": self.exportable,
        }
        if self.nbf is not None:
            attrs["nbf"] = self.nbf
        if self.exp is not None:
            attrs["exp"] = self.exp
        return attrs

    def kid(self, base_url: str) -> str:
        return f"{base_url}/keys/{self.name}/{self.version}"

    def bundle(self, service: Service, base_url: str) -> dict[str, Any]:
        key: dict[str, Any] = {"kid": self.kid(base_url), "kty": self.kty, "key_ops": list(self.key_ops)}
        key.update(self.public)
        result: dict[str, Any] = {"key": key, "attributes": self.attributes(service)}
        if self.tags:
            result["tags"] = dict(self.tags)
        if self.release_policy is not None:
            result["release_policy"] = self.release_policy
        return result

    def item(self, service: Service, base_url: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            "kid": self.kid(base_url),
            "attributes": self.attributes(service),
        }
        if self.tags:
            result["tags"] = dict(self.tags)
        return result

    # --- private material -------------------------------------------------------------------------------

    def private(self, service: Service) -> Any:
        """The private key object (RSA/EC) or the AES key bytes, decrypted once and cached."""
        if self._private is None:
            from cryptography.hazmat.primitives import serialization

            assert self.sealed is not None
            raw = service.store.unseal(service.name, "key", f"{self.name}/{self.version}", self.sealed)
            self._private = raw if self.base_kty == "oct" else serialization.load_der_private_key(raw, None)
        return self._private

    def check_usable(self, operation: str, now: float | None = None) -> None:
        """Refuse an operation the key's state or key_ops do not allow (403, as Azure does)."""
        if not self.enabled:
            raise ApiError(
                403, "Forbidden", f"Operation {operation} is not allowed on a disabled key.", "KeyDisabled"
            )
        permission = OP_PERMISSION.get(operation)
        if permission is None:
            return
        now = time.time() if now is None else now
        if self.nbf is not None and now < self.nbf:
            raise ApiError(
                403,
                "Forbidden",
                f"Operation {operation} is not allowed: the key is not yet valid.",
                "KeyNotYetValid",
            )
        if self.exp is not None and now >= self.exp:
            raise ApiError(
                403, "Forbidden", f"Operation {operation} is not allowed: the key has expired.", "KeyExpired"
            )
        if permission not in self.key_ops:
            raise ApiError(
                403,
                "Forbidden",
                f"Operation {operation} is not allowed by the key's key_ops.",
                "OperationNotAllowed",
            )


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
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521", "secp256k1": "P-256K"}[
            private.curve.name
        ]
        size = CURVES[crv]
        pub = private.public_key().public_numbers()
        return {"crv": crv, "x": b64u(_int_bytes(pub.x, size)), "y": b64u(_int_bytes(pub.y, size))}
    return {}


# --- request parsing ------------------------------------------------------------------------------------


def parse_kty(service: Service, kty: Any) -> str:
    if not isinstance(kty, str) or kty.replace("-HSM", "") not in ("RSA", "EC", "oct"):
        raise bad(
            f"The key type '{str(kty)[:40]}' is not supported; use RSA, RSA-HSM, EC, EC-HSM or oct-HSM."
        )
    if service.kind == "managedhsm":
        if not kty.endswith("-HSM"):
            raise bad(f"Managed HSM accepts only HSM key types ({kty}-HSM, not {kty}).", "BadParameter")
    elif kty.startswith("oct"):
        raise bad("AES (oct-HSM) keys are supported by Managed HSM only.", "BadParameter")
    return kty


def parse_key_ops(body: dict[str, Any], default: list[str]) -> list[str]:
    ops = body.get("key_ops")
    if ops is None:
        return list(default)
    if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
        raise bad("The 'key_ops' field must be a list of strings.")
    for op in ops:
        if op not in ALL_OPS:
            raise bad(f"The key operation '{op[:40]}' is unknown.")
    return list(dict.fromkeys(ops))


def parse_tags(body: dict[str, Any]) -> dict[str, str] | None:
    tags = body.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise bad("The 'tags' field must be an object of strings.")
    if len(tags) > 15:
        raise bad("A key has at most 15 tags.")
    if any(len(name) > 512 or len(value) > 256 for name, value in tags.items()):
        raise bad("A tag name has at most 512 characters and a tag value at most 256.")
    return dict(tags)


def parse_attributes(body: dict[str, Any]) -> dict[str, Any]:
    attrs = body.get("attributes")
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise bad("The 'attributes' field must be an object.")
    result: dict[str, Any] = {}
    for name, kind in (("enabled", bool), ("exportable", bool), ("nbf", int), ("exp", int)):
        if name in attrs:
            value = field_of(attrs, name, kind)
            if kind is int and value is not None and not 0 <= value <= MAX_TIMESTAMP:
                raise bad(
                    f"The '{name}' attribute {str(value)[:30]} is not a date: use seconds since 1970 up to "
                    f"{MAX_TIMESTAMP} (9999-12-31)."
                )
            result[name] = value
    return result


def apply_attributes(kv: KeyVersion, attrs: dict[str, Any]) -> None:
    for name in ("enabled", "nbf", "exp", "exportable"):
        if name in attrs:
            setattr(kv, name, attrs[name])


# --- key generation and import --------------------------------------------------------------------------


def generate(kty: str, body: dict[str, Any]) -> tuple[Any, int | None]:
    """A fresh private key (object, or AES bytes) for a create request; returns it with its size."""
    base = kty.replace("-HSM", "")
    if base == "RSA":
        from cryptography.hazmat.primitives.asymmetric import rsa

        size = field_of(body, "key_size", int) or 2048
        if size not in RSA_SIZES:
            raise bad(f"The RSA key size {size} is not supported; use 2048, 3072 or 4096.")
        exponent = field_of(body, "public_exponent", int) or 65537
        if exponent not in (3, 65537):
            raise bad(f"The public exponent {exponent} is not supported; use 65537.")
        return rsa.generate_private_key(exponent, size), size
    if base == "EC":
        from cryptography.hazmat.primitives.asymmetric import ec

        crv = field_of(body, "crv", str) or "P-256"
        if crv not in CURVES:
            raise ApiError(400, "KeyCurveNotSupported", f"The curve '{crv[:20]}' is not supported.")
        return ec.generate_private_key(_curve(crv)), None
    size = field_of(body, "key_size", int) or 256
    if size not in OCT_SIZES:
        raise bad(f"The AES key size {size} is not supported; use 128, 192 or 256.")
    return os.urandom(size // 8), size


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
            pub = ec.EllipticCurvePublicNumbers(num("x"), num("y"), _curve(crv))
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
            raise bad("AES-CBC without padding needs a multiple of 16 bytes.")
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


# --- handlers -------------------------------------------------------------------------------------------


def handle_create(service: Service, req: Request, name: str) -> Response:
    check_name(name)
    body = req.json()
    kty = parse_kty(service, body.get("kty"))
    private, size = generate(kty, body)
    return _store_new(service, req, name, kty, private, size, body, "create")


def handle_import(service: Service, req: Request, name: str) -> Response:
    check_name(name)
    body = req.json()
    jwk = body.get("key")
    if not isinstance(jwk, dict):
        raise bad("The 'key' field must be a JSON Web Key.")
    base, private, size = import_jwk(jwk)
    hsm = (
        field_of(body, "Hsm", bool)
        or str(jwk.get("kty", "")).endswith("-HSM")
        or service.kind == "managedhsm"
    )
    kty = f"{base}-HSM" if hsm or base == "oct" else base
    parse_kty(service, kty)
    ops = jwk.get("key_ops")
    merged = dict(body)
    if ops is not None and "key_ops" not in merged:
        merged["key_ops"] = ops
    return _store_new(service, req, name, kty, private, size, merged, "import", replace=True)


def _store_new(
    service: Service,
    req: Request,
    name: str,
    kty: str,
    private: Any,
    size: int | None,
    body: dict[str, Any],
    operation: str,
    replace: bool = False,
) -> Response:
    base = kty.replace("-HSM", "")
    ops = parse_key_ops(body, DEFAULT_OPS[base])
    tags = parse_tags(body) or {}
    attrs = parse_attributes(body)
    release = body.get("release_policy")
    if release is not None and not isinstance(release, dict):
        raise bad("The 'release_policy' field must be an object.")
    now = int(time.time())
    kv = KeyVersion(name, new_version(), kty, ops, public_jwk(private), now, now, tags=tags, size=size)
    kv.release_policy = release
    apply_attributes(kv, attrs)
    if kv.exportable and release is None:
        raise bad("An exportable key needs a release policy.")
    secret = private if base == "oct" else private_der(private)
    kv._private = private
    service.add_version(kv, secret)
    return Response(200, kv.bundle(service, req.base_url), audit={"key": name, "version": kv.version})


def handle_get(service: Service, req: Request, name: str, version: str) -> Response:
    kv = service.version(name, version)
    if not kv.enabled:
        kv.check_usable("get")
    return Response(200, kv.bundle(service, req.base_url), audit={"key": name, "version": kv.version})


def handle_update(service: Service, req: Request, name: str, version: str) -> Response:
    kv = service.version(name, version)
    body = req.json()
    attrs = parse_attributes(body)
    tags = parse_tags(body)
    ops = parse_key_ops(body, kv.key_ops) if "key_ops" in body else None
    if "exportable" in attrs and attrs["exportable"] != kv.exportable:
        raise bad("The exportable attribute cannot be changed.")
    apply_attributes(kv, attrs)
    if tags is not None:
        kv.tags = tags
    if ops is not None:
        kv.key_ops = ops
    if isinstance(body.get("release_policy"), dict):
        kv.release_policy = body["release_policy"]
    kv.updated = int(time.time())
    service.save_version(kv)
    return Response(200, kv.bundle(service, req.base_url), audit={"key": name, "version": kv.version})


def handle_crypto(service: Service, req: Request, name: str, version: str, operation: str) -> Response:
    kv = service.version(name, version)
    kv.check_usable(operation)
    body = req.json()
    audit: dict[str, Any] = {"key": name, "version": kv.version}
    alg = body.get("alg")
    if isinstance(alg, str):
        audit["alg"] = alg[:40]
    kid = kv.kid(req.base_url)
    result: dict[str, Any]
    if operation == "sign":
        result = {"kid": kid, "value": b64u(sign(service, kv, body))}
    elif operation == "verify":
        result = {"value": verify(service, kv, body)}
    elif operation == "encrypt":
        result = {"kid": kid, **encrypt(service, kv, body)}
    elif operation == "decrypt":
        result = {"kid": kid, "value": b64u(decrypt(service, kv, body))}
    elif operation == "wrapkey":
        result = {"kid": kid, "value": b64u(wrap(service, kv, body))}
    else:
        result = {"kid": kid, "value": b64u(unwrap(service, kv, body))}
    return Response(200, result, audit=audit)


def handle_list(service: Service, req: Request) -> Response:
    items = []
    for entry in service.keys.values():
        latest = entry[-1]
        item = latest.item(service, req.base_url)
        item["kid"] = f"{req.base_url}/keys/{latest.name}"
        items.append(item)
    return Response(200, paged(items, req, "/keys"), audit={})


def handle_versions(service: Service, req: Request, name: str) -> Response:
    entry = service.entry(name)
    items = [kv.item(service, req.base_url) for kv in entry]
    return Response(200, paged(items, req, f"/keys/{name}/versions"), audit={"key": name})


def handle_rotate(service: Service, req: Request, name: str) -> Response:
    latest = service.entry(name)[-1]
    body: dict[str, Any] = (
        {"key_size": latest.size} if latest.base_kty != "EC" else {"crv": latest.public["crv"]}
    )
    private, size = generate(latest.kty, body)
    now = int(time.time())
    kv = KeyVersion(name, new_version(), latest.kty, list(latest.key_ops), public_jwk(private), now, now)
    kv.tags, kv.size, kv.exportable = dict(latest.tags), size, latest.exportable
    kv.release_policy = latest.release_policy
    policy = service.rotation_policies.get(name) or {}
    expiry = (policy.get("attributes") or {}).get("expiryTime")
    if isinstance(expiry, str):
        seconds = _iso_duration_seconds(expiry)
        if seconds:
            kv.exp = min(now + seconds, MAX_TIMESTAMP)
    kv._private = private
    service.add_version(kv, private if latest.base_kty == "oct" else private_der(private))
    return Response(200, kv.bundle(service, req.base_url), audit={"key": name, "version": kv.version})


def _iso_duration_seconds(text: str) -> int | None:
    import re

    match = re.fullmatch(r"P(?:([0-9]{1,6})Y)?(?:([0-9]{1,6})M)?(?:([0-9]{1,7})D)?", text)
    if not match:
        return None
    years, months, days = (int(g or 0) for g in match.groups())
    return ((years * 365) + (months * 30) + days) * 86400


def handle_rotation_policy(service: Service, req: Request, name: str) -> Response:
    service.entry(name)
    now = int(time.time())
    current = service.rotation_policies.get(name) or {
        "lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}],
        "attributes": {},
    }
    if req.method == "PUT":
        body = req.json()
        actions = body.get("lifetimeActions", [])
        attrs = body.get("attributes") or {}
        if (
            not isinstance(actions, list)
            or not all(isinstance(action, dict) for action in actions)
            or not isinstance(attrs, dict)
        ):
            raise bad("The rotation policy must have a lifetimeActions list and an attributes object.")
        expiry = attrs.get("expiryTime")
        seconds = _iso_duration_seconds(expiry) if isinstance(expiry, str) else None
        if expiry is not None and (seconds is None or now + seconds > MAX_TIMESTAMP):
            raise bad(
                "The expiryTime must be an ISO 8601 duration such as P90D, ending before the year 9999."
            )
        created = (current.get("attributes") or {}).get("created", now)
        current = {"lifetimeActions": actions, "attributes": {**attrs, "created": created, "updated": now}}
        service.set_rotation_policy(name, current)
    result = {"id": f"{req.base_url}/keys/{name}/rotationpolicy", **current}
    return Response(200, result, audit={"key": name})

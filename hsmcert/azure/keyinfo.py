"""What the service says about a key version: its public key (as a JWK) and properties."""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hsmcert import jwa
from hsmcert.errors import HsmcertError, UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return unb64u(value)
    raise HsmcertError("The key bundle is missing a public key field.")


def base_kty(kty: Any) -> str:
    """A JWK key type without the "-HSM" of hardware-protected keys: RSA-HSM -> RSA."""
    return str(kty or "").removesuffix("-HSM")


def public_key_from_jwk(jwk: dict[str, Any]) -> RSAPublicKey | EllipticCurvePublicKey:
    """A cryptography public key from a JWK (fields as bytes or base64url text)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    kty = base_kty(jwk.get("kty"))
    if kty == "RSA":
        n = int.from_bytes(_to_bytes(jwk["n"]), "big")
        e = int.from_bytes(_to_bytes(jwk["e"]), "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if kty == "EC":
        curve = jwa.ec_curve(str(jwk.get("crv")))
        x = int.from_bytes(_to_bytes(jwk["x"]), "big")
        y = int.from_bytes(_to_bytes(jwk["y"]), "big")
        return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    raise UsageError(
        f"The key is of type {jwk.get('kty')}; only RSA and EC keys can sign.",
        "Use an RSA or EC key (hsmcert key create --kty RSA|EC).",
    )


@dataclass(frozen=True)
class KeyInfo:
    """What the service said about one key version (public parts and properties only)."""

    kid: str
    jwk: dict[str, Any]
    """kty, crv, key_ops and the public fields n, e, x, y as base64url text."""
    enabled: bool | None = None
    not_before: int | None = None
    expires_on: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    created: int | None = None
    updated: int | None = None
    managed: bool | None = None

    @property
    def version(self) -> str:
        return self.kid.rstrip("/").rsplit("/", 1)[-1]

    @property
    def kty(self) -> str:
        """RSA, EC or oct (the "-HSM" of hardware-protected types left out)."""
        return base_kty(self.jwk.get("kty"))

    @classmethod
    def from_sdk(cls, key: Any) -> KeyInfo:
        jwk: dict[str, Any] = {"kty": str(getattr(key.key_type, "value", key.key_type))}
        material = key.key
        for name in ("n", "e", "x", "y"):
            value = getattr(material, name, None)
            if value:
                jwk[name] = b64u(value)
        if material.crv:
            jwk["crv"] = str(getattr(material.crv, "value", material.crv))
        jwk["key_ops"] = [str(getattr(op, "value", op)) for op in (key.key_operations or [])]
        props = key.properties

        def ts(value: Any) -> int | None:
            if value is None:
                return None
            if not isinstance(value, datetime.datetime):  # the SDK keeps a value it cannot convert
                raise HsmcertError(
                    f"The HSM answered an invalid timestamp {str(value)[:40]} for the key {key.id}.",
                    "Correct the key's attributes (not before, expires) with the Azure tools.",
                )
            return int(value.timestamp())

        return cls(
            kid=str(key.id),
            jwk=jwk,
            enabled=props.enabled,
            not_before=ts(props.not_before),
            expires_on=ts(props.expires_on),
            tags=dict(props.tags or {}),
            created=ts(props.created_on),
            updated=ts(props.updated_on),
            managed=props.managed,
        )


__all__ = ["KeyInfo", "b64u", "base_kty", "public_key_from_jwk", "unb64u"]

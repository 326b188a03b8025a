"""Create, list, show and rotate keys in a Managed HSM or Key Vault.

Keys are created non-exportable and HSM-protected (``RSA-HSM``, ``EC-HSM``, ``oct-HSM``). A ``label``
is stored as the tags that Azure's PKCS#11 TLS offload library reads for ``CKA_LABEL`` (it keeps
PKCS#11 attributes as tags named ``p11_pri_<attribute>`` for the private key and ``p11_pub_<attribute>``
for the public key), so keys made by hsmcert can be found by that library by label:

>>> label_tags("tlsKey")
{'p11_pri_CKA_LABEL': 'tlsKey', 'p11_pub_CKA_LABEL': 'tlsKey'}
>>> parse_tags(["env=prod", "team=web"])
{'env': 'prod', 'team': 'web'}
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from hsmcert.azure.clients import ServiceClients
from hsmcert.azure.hsm import fetch_key_info
from hsmcert.azure.keyinfo import KeyInfo, public_key_from_jwk
from hsmcert.errors import AlreadyExistsError, NotFoundError, UsageError
from hsmcert.jwa import CURVES
from hsmcert.keyref import KeyRef, Kind, parse_keyref

LABEL_TAGS = ("p11_pri_CKA_LABEL", "p11_pub_CKA_LABEL")
RSA_SIZES = (2048, 3072, 4096)
OCT_SIZES = (128, 192, 256)
DEFAULT_OPS = {
    "RSA": ["sign", "verify", "decrypt", "encrypt"],
    "EC": ["sign", "verify"],
    "oct": ["wrapKey", "unwrapKey", "encrypt", "decrypt"],
}
ALL_OPS = ("sign", "verify", "encrypt", "decrypt", "wrapKey", "unwrapKey", "import", "export")
_TAG_NAME = re.compile(r"^[^=]{1,512}$")


def label_tags(label: str) -> dict[str, str]:
    """The tags that carry a PKCS#11 ``CKA_LABEL`` for the private and the public key."""
    if not label or len(label) > 256:
        raise UsageError("A label is 1-256 characters.")
    return {name: label for name in LABEL_TAGS}


def parse_tags(items: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` as a dict; a bad item is a usage error."""
    tags: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not _TAG_NAME.match(name):
            raise UsageError(f"Invalid tag {item!r}.", "Write tags as name=value.")
        if name in tags:
            raise UsageError(f"The tag {name!r} is given twice.")
        tags[name] = value
    if len(tags) > 15:
        raise UsageError("Key Vault allows at most 15 tags on a key.")
    return tags


def label_of(tags: dict[str, str]) -> str | None:
    for name in LABEL_TAGS:
        if tags.get(name):
            return tags[name]
    return None


@dataclass(frozen=True)
class KeyDetails:
    """A key version as ``key show`` and ``key create`` report it (public information only)."""

    ref: KeyRef
    info: KeyInfo

    def to_json(self) -> dict[str, Any]:
        jwk = self.info.jwk
        kty = self.info.kty
        data: dict[str, Any] = {
            "ref": str(self.ref.with_version(self.info.version)),
            "name": self.ref.key,
            "service": f"{self.ref.kind}:{self.ref.service}",
            "version": self.info.version,
            "kid": self.info.kid,
            "kty": kty,
            "key_type": jwk.get("kty"),
            "size": None,
            "curve": jwk.get("crv"),
            "key_ops": jwk.get("key_ops", []),
            "enabled": self.info.enabled,
            "not_before": self.info.not_before,
            "expires_on": self.info.expires_on,
            "created": self.info.created,
            "updated": self.info.updated,
            "tags": self.info.tags,
            "label": label_of(self.info.tags),
            "public_key_pem": None,
            "spki_sha256": None,
        }
        if kty in ("RSA", "EC"):
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

            public = public_key_from_jwk(jwk)
            data["size"] = public.key_size
            data["public_key_pem"] = public.public_bytes(
                Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
            ).decode()
            der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            data["spki_sha256"] = hashlib.sha256(der).hexdigest()
        return data


def _ref(ref: KeyRef | str) -> KeyRef:
    return parse_keyref(ref) if isinstance(ref, str) else ref


def _kty(kty: str, kind: Kind) -> str:
    base = {"rsa": "RSA", "ec": "EC", "oct": "oct"}.get(kty.lower().replace("-hsm", ""))
    if base is None:
        raise UsageError(f"Unknown key type {kty!r}.", "Use RSA, EC or oct.")
    if base == "oct" and kind != "managedhsm":
        raise UsageError("AES (oct) keys exist only in Managed HSM.", "Create an RSA or EC key in a vault.")
    return base


def create_key(
    ref: KeyRef | str,
    kty: str,
    service: ServiceClients,
    *,
    size: int | None = None,
    curve: str | None = None,
    label: str | None = None,
    tags: dict[str, str] | None = None,
    ops: list[str] | None = None,
) -> KeyDetails:
    """Create a new non-exportable HSM key; refuse if a key with that name exists (rotate it instead)."""
    ref = _ref(ref)
    if ref.version:
        raise UsageError("A new key has no version yet; leave ?version= out of the reference.")
    base = _kty(kty, ref.kind)
    if base == "RSA":
        size = size or 3072
        if size not in RSA_SIZES:
            raise UsageError(f"RSA keys are {', '.join(map(str, RSA_SIZES))} bits, not {size}.")
        if curve:
            raise UsageError("--curve is for EC keys; RSA keys take --size.")
    elif base == "EC":
        curve = (curve or "P-256").upper()
        if curve not in CURVES:
            raise UsageError(f"Unknown curve {curve!r}.", f"Use one of: {', '.join(CURVES)}.")
        if size:
            raise UsageError("--size is for RSA and oct keys; EC keys take --curve.")
    else:
        size = size or 256
        if size not in OCT_SIZES:
            raise UsageError(f"AES keys are {', '.join(map(str, OCT_SIZES))} bits, not {size}.")
        if curve:
            raise UsageError("--curve is for EC keys.")
    all_tags = dict(tags or {})
    if label:
        clash = [t for t in LABEL_TAGS if t in all_tags and all_tags[t] != label]
        if clash:
            raise UsageError(f"--label and --tag {clash[0]}= disagree.")
        all_tags.update(label_tags(label))
    if len(all_tags) > 15:
        raise UsageError("Key Vault allows at most 15 tags on a key (the label takes two).")
    key_ops = ops or DEFAULT_OPS[base]
    bad = [op for op in key_ops if op not in ALL_OPS]
    if bad:
        raise UsageError(f"Unknown key operation {bad[0]!r}.", f"Use some of: {', '.join(ALL_OPS)}.")

    try:
        fetch_key_info(ref, service)
    except NotFoundError:
        pass
    else:
        raise AlreadyExistsError(
            f"The key {ref} already exists.",
            f"Make a new version with: hsmcert key rotate --key {ref}; or choose another name.",
        )
    kwargs: dict[str, Any] = {"key_operations": key_ops, "tags": all_tags or None, "exportable": False}
    if base == "EC":
        kwargs["curve"] = curve
    else:
        kwargs["size"] = size
    with service.translating(ref, "create"):
        key = service.key_client.create_key(ref.key, f"{base}-HSM", **kwargs)
    info = KeyInfo.from_sdk(key)
    service.cache.remember(service.url, ref, info)
    return KeyDetails(ref, info)


def show_key(ref: KeyRef | str, service: ServiceClients) -> KeyDetails:
    """The key (the given version, or the latest) with its public key and properties."""
    ref = _ref(ref)
    return KeyDetails(ref, fetch_key_info(ref, service))


def rotate_key(ref: KeyRef | str, service: ServiceClients) -> KeyDetails:
    """Make a new version of the key (same type, size, operations and tags); the old versions remain."""
    ref = _ref(ref)
    if ref.version:
        raise UsageError("Rotation makes a new version of the key; leave ?version= out of the reference.")
    with service.translating(ref, "rotate"):
        key = service.key_client.rotate_key(ref.key)
    info = KeyInfo.from_sdk(key)
    service.cache.remember(service.url, ref, info)
    return KeyDetails(ref, info)


@dataclass(frozen=True)
class KeySummary:
    """One key in a listing (the list API carries no key material)."""

    name: str
    ref: str
    kid: str
    enabled: bool | None
    created: int | None
    updated: int | None
    tags: dict[str, str]
    managed: bool | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ref": self.ref,
            "kid": self.kid,
            "enabled": self.enabled,
            "created": self.created,
            "updated": self.updated,
            "tags": self.tags,
            "label": label_of(self.tags),
            "managed": self.managed,
        }


def list_keys(
    kind: Kind, name: str, service: ServiceClients, *, label: str | None = None
) -> list[KeySummary]:
    """The keys of a Managed HSM or vault (optionally only those with a PKCS#11 label), sorted by name."""
    found: list[KeySummary] = []
    with service.translating(f"{kind}:{name}", "list"):
        for props in service.key_client.list_properties_of_keys():
            tags = dict(props.tags or {})
            if label is not None and label_of(tags) != label:
                continue
            found.append(
                KeySummary(
                    name=str(props.name),
                    ref=f"{kind}:{name.lower()}:{props.name}",
                    kid=str(props.id),
                    enabled=props.enabled,
                    created=int(props.created_on.timestamp()) if props.created_on else None,
                    updated=int(props.updated_on.timestamp()) if props.updated_on else None,
                    tags=tags,
                    managed=props.managed,
                )
            )
    return sorted(found, key=lambda k: k.name)


__all__ = [
    "LABEL_TAGS",
    "KeyDetails",
    "KeySummary",
    "create_key",
    "label_tags",
    "list_keys",
    "parse_tags",
    "rotate_key",
    "show_key",
]

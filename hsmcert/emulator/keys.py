"""The keys API of the emulator: key versions and their private material, request parsing, and the handler
of every keys route (create, import, get, update, list, versions, rotate, rotation policy, the six
cryptographic operations, delete / recover / purge, backup / restore, random bytes).

Private material lives only in :class:`KeyVersion` (decrypted lazily from the store and cached in memory)
and is never put into a response. The cryptography itself is in :mod:`hsmcert.emulator.keycrypto`.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hsmcert.emulator import keycrypto
from hsmcert.emulator.api import (
    MAX_TIMESTAMP,
    VERSION_RE,
    ApiError,
    Handler,
    Request,
    Response,
    b64u,
    bad,
    check_name,
    field_of,
    paged,
    unb64u,
)
from hsmcert.emulator.keycrypto import generate, import_jwk, private_der, public_jwk

if TYPE_CHECKING:
    from hsmcert.emulator.service import Service

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


# --- request parsing ------------------------------------------------------------------------------------


def parse_kty(service: Service, kty: Any) -> str:
    if not isinstance(kty, str) or kty.replace("-HSM", "") not in ("RSA", "EC", "oct"):
        raise bad(
            f"The key type '{str(kty)[:40]}' is not supported; use RSA, RSA-HSM, EC, EC-HSM or oct-HSM."
        )
    if service.kind == "managedhsm":
        # Every key of a Managed HSM is an HSM key: RSA, EC and oct ask for RSA-HSM, EC-HSM and oct-HSM.
        return kty if kty.endswith("-HSM") else f"{kty}-HSM"
    if kty.startswith("oct"):
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


# --- handlers: each answers one route of :mod:`hsmcert.emulator.routes` ------------------------------------


def create(service: Service, req: Request) -> Response:
    name = check_name(req.params["name"])
    body = req.json()
    kty = parse_kty(service, body.get("kty"))
    private, size = generate(kty, body)
    return _store_new(service, req, name, kty, private, size, body)


def import_key(service: Service, req: Request) -> Response:
    name = check_name(req.params["name"])
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
    return _store_new(service, req, name, kty, private, size, merged)


def _store_new(
    service: Service,
    req: Request,
    name: str,
    kty: str,
    private: Any,
    size: int | None,
    body: dict[str, Any],
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


def addressed_version(req: Request) -> str:
    """The version a get or update names ("" for the latest); 404 for what cannot be a version."""
    version = req.params.get("version", "")
    if version and not VERSION_RE.match(version):
        raise ApiError(
            404,
            "KeyNotFound",
            f"A key with (name/id) {req.params['name'][:130]}/{version[:40]} was not found.",
        )
    return version


def get(service: Service, req: Request) -> Response:
    name = req.params["name"]
    kv = service.version(name, addressed_version(req))
    if not kv.enabled:
        kv.check_usable("get")
    return Response(200, kv.bundle(service, req.base_url), audit={"key": name, "version": kv.version})


def update(service: Service, req: Request) -> Response:
    name = req.params["name"]
    kv = service.version(name, addressed_version(req))
    body = req.json()
    attrs = parse_attributes(body)
    tags = parse_tags(body)
    ops = parse_key_ops(body, kv.key_ops) if "key_ops" in body else None
    if body.get("release_policy") is not None and (kv.release_policy or {}).get("immutable") is True:
        raise bad("The key's release policy is immutable: it cannot be changed.")
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


def _crypto(operation: str, run: Callable[[Service, KeyVersion, dict[str, Any]], Any]) -> Handler:
    """The handler of one cryptographic operation; ``run`` makes its result (bytes: the ``value``)."""

    def handler(service: Service, req: Request) -> Response:
        name = req.params["name"]
        kv = service.version(name, req.params.get("version", ""))
        kv.check_usable(operation)
        body = req.json()
        audit: dict[str, Any] = {"key": name, "version": kv.version}
        alg = body.get("alg")
        if isinstance(alg, str):
            audit["alg"] = alg[:40]
        result = run(service, kv, body)
        if operation == "verify":
            return Response(200, {"value": result}, audit=audit)
        answer = {"value": b64u(result)} if isinstance(result, bytes) else result
        return Response(200, {"kid": kv.kid(req.base_url), **answer}, audit=audit)

    return handler


sign = _crypto("sign", keycrypto.sign)
verify = _crypto("verify", keycrypto.verify)
encrypt = _crypto("encrypt", keycrypto.encrypt)
decrypt = _crypto("decrypt", keycrypto.decrypt)
wrap_key = _crypto("wrapkey", keycrypto.wrap)
unwrap_key = _crypto("unwrapkey", keycrypto.unwrap)


def list_keys(service: Service, req: Request) -> Response:
    items = []
    for entry in service.keys.values():
        latest = entry[-1]
        item = latest.item(service, req.base_url)
        item["kid"] = f"{req.base_url}/keys/{latest.name}"
        items.append(item)
    return Response(200, paged(items, req, "/keys"), audit={})


def versions(service: Service, req: Request) -> Response:
    name = req.params["name"]
    # A vault lists no versions of a key it does not hold: 200 and an empty list, as Azure answers.
    found = service.keys.get(name) if service.kind == "vault" else service.entry(name)
    items = [kv.item(service, req.base_url) for kv in found or ()]
    return Response(200, paged(items, req, f"/keys/{name}/versions"), audit={"key": name})


def rotate(service: Service, req: Request) -> Response:
    name = req.params["name"]
    latest = service.entry(name)[-1]
    body: dict[str, Any] = (
        {"key_size": latest.size} if latest.base_kty != "EC" else {"crv": latest.public["crv"]}
    )
    if latest.base_kty == "RSA":  # a new version keeps the key's public exponent
        body["public_exponent"] = int.from_bytes(unb64u(latest.public["e"], "e"), "big")
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


def _rotation_policy(service: Service, name: str) -> dict[str, Any]:
    service.entry(name)
    return service.rotation_policies.get(name) or {
        "lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}],
        "attributes": {},
    }


def get_rotation_policy(service: Service, req: Request) -> Response:
    name = req.params["name"]
    result = {"id": f"{req.base_url}/keys/{name}/rotationpolicy", **_rotation_policy(service, name)}
    return Response(200, result, audit={"key": name})


def set_rotation_policy(service: Service, req: Request) -> Response:
    name = req.params["name"]
    current = _rotation_policy(service, name)
    now = int(time.time())
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
        raise bad("The expiryTime must be an ISO 8601 duration such as P90D, ending before the year 9999.")
    created = (current.get("attributes") or {}).get("created", now)
    policy = {"lifetimeActions": actions, "attributes": {**attrs, "created": created, "updated": now}}
    service.set_rotation_policy(name, policy)
    result = {"id": f"{req.base_url}/keys/{name}/rotationpolicy", **policy}
    return Response(200, result, audit={"key": name})


def delete(service: Service, req: Request) -> Response:
    name = req.params["name"]
    service.delete_key(name)
    return Response(200, service.deleted_bundle(name, req.base_url), audit={"key": name})


def get_deleted(service: Service, req: Request) -> Response:
    name = req.params["name"]
    service.require_deleted(name)
    return Response(200, service.deleted_bundle(name, req.base_url), audit={"key": name})


def list_deleted(service: Service, req: Request) -> Response:
    items = []
    for name in service.deleted:
        bundle = service.deleted_bundle(name, req.base_url)
        item = {k: v for k, v in bundle.items() if k != "key"}
        item["kid"] = f"{req.base_url}/keys/{name}"
        items.append(item)
    return Response(200, paged(items, req, "/deletedkeys"), audit={})


def recover(service: Service, req: Request) -> Response:
    name = req.params["name"]
    latest = service.recover_key(name)
    return Response(200, latest.bundle(service, req.base_url), audit={"key": name, "version": latest.version})


def purge(service: Service, req: Request) -> Response:
    name = req.params["name"]
    service.purge_key(name)
    return Response(204, None, audit={"key": name})


def backup(service: Service, req: Request) -> Response:
    name = req.params["name"]
    return Response(200, {"value": b64u(service.backup_blob(name))}, audit={"key": name})


def restore(service: Service, req: Request) -> Response:
    latest = service.restore_blob(unb64u(req.json().get("value"), "value"))
    return Response(
        200,
        latest.bundle(service, req.base_url),
        audit={"key": latest.name, "version": latest.version},
    )


def random_bytes(service: Service, req: Request) -> Response:
    count = field_of(req.json(), "count", int, required=True)
    if not 1 <= count <= 128:
        raise bad("The count must be between 1 and 128.")
    return Response(200, {"value": b64u(os.urandom(count))}, audit={"count": count})

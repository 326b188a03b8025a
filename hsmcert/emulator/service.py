"""One emulated Managed HSM or Key Vault: the state of its keys (and deleted keys), RBAC, certificates, and
its persistence; the handlers that answer requests about it are in :mod:`.keys`, :mod:`.rbac`,
:mod:`.certificates`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hsmcert.emulator.api import ApiError, Request, b64u, bad, unb64u
from hsmcert.emulator.keys import KeyVersion
from hsmcert.emulator.rbac import Rbac
from hsmcert.emulator.store import Store

if TYPE_CHECKING:
    from hsmcert.emulator.certificates import Certificates

RECOVERABLE_DAYS = 90
BACKUP_MAGIC = b"HSMCERT-BACKUP1"


class Service:
    def __init__(self, store: Store, kind: str, name: str, port: int) -> None:
        self.store = store
        self.kind = kind
        self.name = name
        self.port = port
        self.keys: dict[str, list[KeyVersion]] = {}
        self.deleted: dict[str, dict[str, Any]] = {}
        self.deleted_versions: dict[str, list[KeyVersion]] = {}
        self.rotation_policies: dict[str, dict[str, Any]] = {}
        self.settings: dict[str, str] = {}
        """A Managed HSM's account settings that differ from their defaults (:mod:`.settings`)."""
        self.rbac = Rbac(self)
        self.certificates: Certificates | None = None
        """A vault's certificates (None on a Managed HSM)."""
        self.guard: Callable[[Request, str], None] | None = None
        """A vault's access check ``(request, operation)``: raises the 403 of a caller without the role or
        access policy (:func:`hsmcert.emulator.arm_keyvault.authorize`); None: any valid token."""
        self.lock = threading.RLock()
        self.recovery_level = (
            "CustomizedRecoverable+Purgeable" if kind == "managedhsm" else "Recoverable+Purgeable"
        )
        self.recoverable_days = RECOVERABLE_DAYS

    # --- loading ----------------------------------------------------------------------------------------

    def load_object(self, kind: str, ident: str, data: Any, sealed: bytes | None) -> None:
        if kind == "key":
            kv = KeyVersion.from_meta(data, sealed)
            self.keys.setdefault(kv.name, []).append(kv)
        elif kind == "deletedkey":
            self.deleted[ident] = data
        elif kind == "rotationpolicy":
            self.rotation_policies[ident] = data
        elif kind == "setting":
            self.settings[ident] = data
        elif kind in ("roledef", "roleassign"):
            self.rbac.load(kind, ident, data)
        elif kind in ("certificate", "certop", "deletedcert") and self.certificates is not None:
            self.certificates.load(kind, ident, data)

    def finish_loading(self) -> None:
        for name in list(self.deleted):
            versions = self.keys.pop(name, None)
            if versions:
                self.deleted_versions[name] = versions
            else:
                del self.deleted[name]
        if self.certificates is not None:
            self.certificates.finish_loading()

    # --- keys -------------------------------------------------------------------------------------------

    def entry(self, name: str) -> list[KeyVersion]:
        versions = self.keys.get(name)
        if not versions:
            raise ApiError(
                404, "KeyNotFound", f"A key with (name/id) {name[:130]} was not found in this key vault."
            )
        return versions

    def version(self, name: str, version: str) -> KeyVersion:
        versions = self.entry(name)
        if not version:
            return versions[-1]
        for kv in versions:
            if kv.version == version.lower():
                return kv
        raise ApiError(
            404,
            "KeyNotFound",
            f"A key with (name/id) {name[:130]}/{version[:40]} was not found in this key vault.",
        )

    def add_version(self, kv: KeyVersion, secret: bytes) -> None:
        with self.lock:
            if kv.name in self.deleted:
                raise ApiError(
                    409,
                    "Conflict",
                    f"Key {kv.name} is currently in a deleted but recoverable state, and its name cannot be "
                    "reused; in this state, the key can only be recovered or purged.",
                    "ObjectIsDeletedButRecoverable",
                )
            versions = self.keys.setdefault(kv.name, [])
            if len(versions) >= 100 and self.kind == "managedhsm":
                raise ApiError(400, "BadParameter", "A key has at most 100 versions.")
            kv.sealed = self.store.put(self.name, "key", f"{kv.name}/{kv.version}", kv.meta(), secret)
            versions.append(kv)

    def save_version(self, kv: KeyVersion) -> None:
        self.store.put(self.name, "key", f"{kv.name}/{kv.version}", kv.meta())

    def set_rotation_policy(self, name: str, policy: dict[str, Any]) -> None:
        self.rotation_policies[name] = policy
        self.store.put(self.name, "rotationpolicy", name, policy)

    def set_setting(self, name: str, value: str) -> None:
        self.settings[name] = value
        self.store.put(self.name, "setting", name, value)

    def deleted_bundle(self, name: str, base_url: str) -> dict[str, Any]:
        info = self.deleted[name]
        bundle = self.deleted_versions[name][-1].bundle(self, base_url)
        bundle.update(
            {
                "recoveryId": f"{base_url}/deletedkeys/{name}",
                "deletedDate": info["deletedDate"],
                "scheduledPurgeDate": info["scheduledPurgeDate"],
            }
        )
        return bundle

    def delete_key(self, name: str) -> None:
        """Move every version of ``name`` to the deleted keys (recoverable until purged)."""
        with self.lock:
            versions = self.entry(name)
            now = int(time.time())
            info = {"deletedDate": now, "scheduledPurgeDate": now + self.recoverable_days * 86400}
            self.store.put(self.name, "deletedkey", name, info)
            self.deleted[name] = info
            self.deleted_versions[name] = versions
            del self.keys[name]

    def require_deleted(self, name: str) -> None:
        if name not in self.deleted:
            raise ApiError(404, "KeyNotFound", f"Deleted Key not found: {name[:130]}")

    def recover_key(self, name: str) -> KeyVersion:
        """Bring a deleted key back; returns its latest version."""
        with self.lock:
            self.require_deleted(name)
            if name in self.keys:
                raise ApiError(409, "Conflict", f"A key named {name} exists already.")
            self.keys[name] = self.deleted_versions.pop(name)
            del self.deleted[name]
            self.store.delete(self.name, "deletedkey", name)
        return self.keys[name][-1]

    def purge_key(self, name: str) -> None:
        with self.lock:
            self.require_deleted(name)
            for kv in self.deleted_versions.pop(name):
                self.store.delete(self.name, "key", f"{name}/{kv.version}")
            del self.deleted[name]
            self.store.delete(self.name, "deletedkey", name)
            self.rotation_policies.pop(name, None)
            self.store.delete(self.name, "rotationpolicy", name)

    # --- backup / restore: an opaque blob sealed with the master key, for this kind of service -------------

    def backup_blob(self, name: str) -> bytes:
        versions = self.entry(name)
        payload = {
            "name": name,
            "versions": [
                {
                    "meta": kv.meta(),
                    "secret": b64u(self.store.unseal(self.name, "key", f"{name}/{kv.version}", kv.sealed))
                    if kv.sealed
                    else None,
                }
                for kv in versions
            ],
            "rotation_policy": self.rotation_policies.get(name),
        }
        return BACKUP_MAGIC + self.store.seal("", "backup", self.kind, json.dumps(payload).encode())

    def restore_blob(self, raw: bytes) -> KeyVersion:
        """Restore a key from :meth:`backup_blob`'s blob; returns its latest version."""
        if not raw.startswith(BACKUP_MAGIC):
            raise bad("The backup blob is not a key backup of this emulator.", "BadParameter")
        try:
            payload = json.loads(self.store.unseal("", "backup", self.kind, raw[len(BACKUP_MAGIC) :]))
        except Exception:
            raise bad("The backup blob is corrupt or belongs to another emulator or service kind.") from None
        name = payload["name"]
        with self.lock:
            if name in self.keys or name in self.deleted:
                raise ApiError(
                    409, "Conflict", f"A key named {name} exists already; delete and purge it first."
                )
            for item in payload["versions"]:
                kv = KeyVersion.from_meta(item["meta"], None)
                secret = unb64u(item["secret"], "secret")
                self.add_version(kv, secret)
            if payload.get("rotation_policy"):
                self.set_rotation_policy(name, payload["rotation_policy"])
        return self.keys[name][-1]

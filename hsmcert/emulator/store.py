"""Persistence: one SQLite database of JSON objects, private material sealed with AES-256-GCM.

Every object is a row ``(service, kind, id, data, sealed)``: ``data`` is public JSON (attributes, public
JWK, role assignments...), ``sealed`` the private material encrypted under the master key kept in the
separate file ``master.key`` (0600), with the row's identity as associated data. The emulator keeps the
whole state in memory and writes through on every change; the sign path writes nothing here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hsmcert.emulator.files import private_secret

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    service TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    sealed BLOB,
    PRIMARY KEY (service, kind, id)
)
"""


class Store:
    def __init__(self, data_dir: Path) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(private_secret(data_dir / "master.key"))
        self.path = data_dir / "emulator.db"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        os.chmod(self.path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM objects").fetchone()
        self._seq = int(row[0])

    def _aad(self, service: str, kind: str, ident: str) -> bytes:
        return f"{service}\x00{kind}\x00{ident}".encode()

    def seal(self, service: str, kind: str, ident: str, secret: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, secret, self._aad(service, kind, ident))

    def unseal(self, service: str, kind: str, ident: str, sealed: bytes) -> bytes:
        return self._aead.decrypt(sealed[:12], sealed[12:], self._aad(service, kind, ident))

    def put(
        self, service: str, kind: str, ident: str, data: Any, secret: bytes | None = None
    ) -> bytes | None:
        """Insert or replace one object; ``secret`` (when given) is sealed (and returned), else the old stays."""
        text = json.dumps(data, sort_keys=True)
        with self._lock:
            self._seq += 1
            if secret is None:
                self._db.execute(
                    "INSERT INTO objects (service, kind, id, seq, data) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (service, kind, id) DO UPDATE SET data = excluded.data",
                    (service, kind, ident, self._seq, text),
                )
                return None
            sealed = self.seal(service, kind, ident, secret)
            self._db.execute(
                "INSERT OR REPLACE INTO objects (service, kind, id, seq, data, sealed) VALUES (?, ?, ?, ?, ?, ?)",
                (service, kind, ident, self._seq, text, sealed),
            )
            return sealed

    def delete(self, service: str, kind: str, ident: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM objects WHERE service = ? AND kind = ? AND id = ?", (service, kind, ident)
            )

    def load(self, kind: str) -> Iterator[tuple[str, str, Any, bytes | None]]:
        """Every object of ``kind`` in insertion order: (service, id, data, sealed)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT service, id, data, sealed FROM objects WHERE kind = ? ORDER BY seq", (kind,)
            ).fetchall()
        for service, ident, data, sealed in rows:
            yield service, ident, json.loads(data), sealed

    def close(self) -> None:
        with self._lock:
            self._db.close()

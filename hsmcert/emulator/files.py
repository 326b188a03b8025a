"""Small file helpers of the emulator: private (0600) files, atomic JSON."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only (created 0600, replaced atomically)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def private_secret(path: Path, size: int = 32) -> bytes:
    """The random secret kept in ``path`` (0600), made on first use."""
    try:
        data = path.read_bytes()
        if len(data) == size:
            return data
    except FileNotFoundError:
        pass
    data = secrets.token_bytes(size)
    write_private(path, data)
    return data


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` at once: a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, value: Any, private: bool = False) -> None:
    data = (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
    if private:
        write_private(path, data)
        return
    write_atomic(path, data)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None

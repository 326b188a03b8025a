"""The emulator's audit log: ``<data dir>/audit.jsonl``, one JSON object per operation."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from hsmcert.clock import utc_timestamp


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh = path.open("a", encoding="utf-8", buffering=1)

    def record(self, **fields: Any) -> None:
        entry: dict[str, Any] = {"time": utc_timestamp()}
        entry.update(fields)
        line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            self._fh.write(line)

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def read_audit(path: Path) -> list[dict[str, Any]]:
    """The parsed audit log (a line being written at this moment is skipped)."""
    entries = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries

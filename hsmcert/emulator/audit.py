"""The emulator's audit log: ``<data dir>/audit.jsonl``, one JSON object per operation.

Written by :mod:`hsmcert.audit` (values cut and escaped, the file created mode 0600 and never opened
through a symbolic link); each line is on disk before the answer is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hsmcert.audit import AuditWriter, read_audit


class AuditLog:
    """Appends one line per operation: ``time`` first, then the fields :meth:`record` is given."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = AuditWriter(path, mode=0o600)

    def record(self, **fields: Any) -> None:
        self._writer.write(fields)

    def close(self) -> None:
        self._writer.close()


__all__ = ["AuditLog", "read_audit"]

"""The agent's audit log: one JSON object per line, one line per operation.

Fields: ``time`` (UTC, ISO 8601 with milliseconds), ``uid`` and ``pid`` of the caller (``SO_PEERCRED``),
``client`` (the name a client gave in HELLO, else null), ``op`` (hello, pubkey, sign, decrypt),
``key`` (the reference as asked, canonical when it parsed), ``version`` (the key version used, when known),
``alg``, ``result`` (ok, bad_request, not_found, denied, unavailable, unsupported, internal),
``duration_ms``, and ``error`` (the one-line reason) when the result is not ok. Digests, ciphertexts,
plaintexts, signatures and tokens are never logged.

>>> import io, json
>>> out = io.StringIO()
>>> AuditLog(out).write(uid=0, pid=1, op="sign", key="managedhsm:h:k", result="ok", duration_ms=1.5)
>>> sorted(json.loads(out.getvalue()))
['alg', 'client', 'duration_ms', 'key', 'op', 'pid', 'result', 'time', 'uid', 'version']
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from hsmcert.clock import utc_timestamp


class AuditLog:
    """Append audit lines to a file (opened ``O_APPEND``, mode 0640) or to a text stream (default stderr)."""

    def __init__(self, target: Path | str | TextIO | None = None) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._stream: TextIO | None = None
        if target is None:
            self._stream = sys.stderr
        elif isinstance(target, (str, Path)):
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        else:
            self._stream = target
        self.path = Path(target) if isinstance(target, (str, Path)) else None

    def write(
        self,
        *,
        uid: int | None,
        pid: int | None,
        op: str,
        result: str,
        duration_ms: float,
        key: str | None = None,
        version: str | None = None,
        alg: str | None = None,
        client: str | None = None,
        error: str | None = None,
    ) -> None:
        record: dict[str, Any] = {
            "time": utc_timestamp(),
            "uid": uid,
            "pid": pid,
            "client": client,
            "op": op,
            "key": key,
            "version": version,
            "alg": alg,
            "result": result,
            "duration_ms": round(duration_ms, 3),
        }
        if error:
            record["error"] = error
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
        with self._lock:
            if self._fd is not None:
                os.write(self._fd, line.encode("utf-8"))
            elif self._stream is not None:
                self._stream.write(line)
                self._stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_audit(path: Path | str) -> list[dict[str, Any]]:
    """The records of an audit file (for tests and ``jq``-less inspection)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


__all__ = ["AuditLog", "read_audit"]

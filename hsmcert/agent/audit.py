"""The agent's audit log: one JSON object per line, one line per operation (written by :mod:`hsmcert.audit`).

Fields: ``time`` (UTC, ISO 8601 with milliseconds), ``uid`` and ``pid`` of the caller (``SO_PEERCRED``),
``client`` (the name a client gave in HELLO, else null), ``op`` (hello, pubkey, sign, decrypt, invalid),
``key`` (the reference as asked, canonical when it parsed), ``version`` (the key version used, when known),
``alg``, ``result`` (ok, bad_request, not_found, denied, unavailable, unsupported, internal),
``duration_ms``, and ``error`` (the one-line reason) when the result is not ok. Digests, ciphertexts,
plaintexts, signatures and tokens are never logged. What a client sent is cut and escaped as
:mod:`hsmcert.audit` describes; the file is created mode 0640 and never opened through a symbolic link.

>>> import io, json
>>> out = io.StringIO()
>>> AuditLog(out).write(uid=0, pid=1, op="sign", key="managedhsm:h:k", result="ok", duration_ms=1.5)
>>> sorted(json.loads(out.getvalue()))
['alg', 'client', 'duration_ms', 'key', 'op', 'pid', 'result', 'time', 'uid', 'version']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from hsmcert.audit import AuditWriter, read_audit


class AuditLog:
    """Append audit lines to a file (``O_APPEND | O_NOFOLLOW``, mode 0640) or a text stream (default stderr)."""

    def __init__(self, target: Path | str | TextIO | None = None) -> None:
        self._writer = AuditWriter(target, mode=0o640)
        self.path = self._writer.path

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
        self._writer.write(record)

    def close(self) -> None:
        self._writer.close()


__all__ = ["AuditLog", "read_audit"]

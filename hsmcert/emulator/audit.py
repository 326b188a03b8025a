"""The emulator's audit log: ``<data dir>/audit.jsonl``, one JSON object per operation."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from hsmcert.clock import utc_timestamp

_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


class AuditLog:
    """Appends one line per operation; each line is written (not only buffered) before the answer is sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh = path.open("a", encoding="utf-8", buffering=1)
        self._second: tuple[int, str] = (-1, "")

    def _time(self) -> str:
        """``utc_timestamp()`` from one clock reading, the date and time of day formatted once per second."""
        second, millis = divmod(int(time.time() * 1000), 1000)
        cached = self._second
        if cached[0] != second:
            cached = (second, utc_timestamp(second)[:-5])  # "YYYY-MM-DDTHH:MM:SS"
            self._second = cached
        return f"{cached[1]}.{millis:03d}Z"

    def record(self, **fields: Any) -> None:
        entry: dict[str, Any] = {"time": self._time()}
        entry.update(fields)
        line = _ENCODER.encode(entry) + "\n"
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

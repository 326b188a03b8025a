"""Audit logs: one JSON object per line, written by the agent and by the emulator, read back by both.

Each record is one line that prints as what it holds, whatever a client sent:

- every string value is cut to :data:`MAX_TEXT` characters (:data:`MAX_ERROR` for ``error``), and a cut
  value ends with ``[cut: N more characters]``;
- a backslash becomes ``\\\\``, a newline ``\\n`` (tab ``\\t``, return ``\\r``), and every other
  character that is not printable (controls, Unicode format characters such as the bidirectional
  overrides U+202A..U+202E and isolates U+2066..U+2069, zero-width characters, line and paragraph
  separators, spaces other than U+0020, unassigned code points) becomes its escape (``\\x1b``,
  ``\\u202e``, ``\\U000e0001``), so a value cannot reorder, hide or break a line;
- a log file is opened ``O_APPEND | O_NOFOLLOW`` (a symbolic link at its path is refused) and created
  with the mode the log asks for; each line is written with one ``write`` call.

>>> import io, json
>>> out = io.StringIO()
>>> AuditWriter(out).write({"key": "a\\u202eb\\nc" + "k" * 300})
>>> record = json.loads(out.getvalue())
>>> record["key"][:12], record["key"][-30:]
('a\\\\u202eb\\\\nck', 'kkkkk[cut: 55 more characters]')
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from hsmcert.errors import UsageError
from hsmcert.timestamps import utc_timestamp

MAX_TEXT = 256
"""Characters kept of a string value (key references, client names, versions, ...)."""
MAX_ERROR = 1024
"""Characters kept of the ``error`` value (which may quote what the client sent)."""


_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def clean(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` with non-printable characters escaped, cut to about ``limit`` characters.

    >>> clean("managedhsm:h:k")
    'managedhsm:h:k'
    >>> clean("x\\x1b[31my\\u2066")
    'x\\\\x1b[31my\\\\u2066'
    >>> clean("abcdef", 3)
    'abc[cut: 3 more characters]'
    """
    if len(text) <= limit and text.isprintable() and "\\" not in text:
        return text
    pieces: list[str] = []
    size = 0
    for index, char in enumerate(text):
        piece = _escape_char(char)
        if size + len(piece) > limit:
            pieces.append(f"[cut: {len(text) - index} more characters]")
            break
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)


def _clean_value(name: str, value: Any) -> Any:
    if isinstance(value, str):
        return clean(value, MAX_ERROR if name == "error" else MAX_TEXT)
    if isinstance(value, Mapping):
        return {clean(str(k)): _clean_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_value(name, v) for v in value]
    return value


def open_log(path: Path | str, mode: int) -> int:
    """Open (or create with ``mode``) an audit file for appending, never through a symbolic link."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(
                f"The audit log {path} is a symbolic link; hsmcert does not write through links.",
                "Give the real file's path, or remove the link.",
            ) from None
        raise UsageError(f"Cannot open the audit log {path}: {exc.strerror or exc}.") from None
    if stat.S_ISDIR(os.fstat(fd).st_mode):  # pragma: no cover - O_WRONLY already refuses a directory
        os.close(fd)
        raise UsageError(f"The audit log {path} is a directory.")
    os.set_blocking(fd, True)  # O_NONBLOCK only kept a FIFO without a reader from hanging the open
    return fd


class AuditWriter:
    """Appends records (each stamped with ``time`` first) to a file, or to a text stream (default stderr).

    A file is opened with :func:`open_log` and created with ``mode`` (0640 for the agent, 0600 for the
    emulator). Thread-safe; every line is complete on disk before :meth:`write` returns.
    """

    def __init__(self, target: Path | str | TextIO | None = None, *, mode: int = 0o640) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._stream: TextIO | None = None
        self.path: Path | None = None
        if target is None:
            self._stream = sys.stderr
        elif isinstance(target, str | Path):
            self.path = Path(target)
            self._fd = open_log(self.path, mode)
        else:
            self._stream = target
        self._second: tuple[int, str] = (-1, "")

    def _time(self) -> str:
        """``utc_timestamp()`` from one clock reading, the date and time of day formatted once per second."""
        second, millis = divmod(int(time.time() * 1000), 1000)
        cached = self._second
        if cached[0] != second:
            cached = (second, utc_timestamp(second)[:-5])  # "YYYY-MM-DDTHH:MM:SS"
            self._second = cached
        return f"{cached[1]}.{millis:03d}Z"

    def write(self, fields: Mapping[str, Any]) -> None:
        record: dict[str, Any] = {"time": self._time()}
        for name, value in fields.items():
            record[name] = _clean_value(name, value)
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"
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
    """The records of an audit file; a line being written at this moment (or not JSON) is skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    records = []
    for line in text.split("\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


__all__ = ["MAX_ERROR", "MAX_TEXT", "AuditWriter", "clean", "open_log", "read_audit"]

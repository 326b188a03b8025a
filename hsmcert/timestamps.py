"""Timestamps as hsmcert writes them: audit-log and log lines (milliseconds) and every time it shows (RFC 3339).

Both are RFC 3339 in UTC with ``T`` and ``Z``; one regular expression matches every time hsmcert prints.
"""

from __future__ import annotations

import logging
import time
from typing import TextIO


def utc_timestamp(now: float | None = None) -> str:
    """``now`` (default: the current time) as UTC ISO 8601 with milliseconds, from one clock reading.

    >>> utc_timestamp(1796109303.0456)
    '2026-12-01T07:15:03.045Z'
    """
    if now is None:
        now = time.time()
    millis = int(now * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000)) + f".{millis % 1000:03d}Z"


def rfc3339(when: float) -> str:
    """A time (seconds since the epoch) as hsmcert shows and prints every time: RFC 3339, UTC, ``Z``.

    >>> rfc3339(1796109303.9)
    '2026-12-01T07:15:03Z'
    """
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(when)))


class LogFormatter(logging.Formatter):
    """A logging formatter that writes ``%(asctime)s`` as :func:`utc_timestamp` (RFC 3339, UTC, milliseconds).

    >>> record = logging.makeLogRecord({"msg": "serving", "created": 1796109303.0456})
    >>> LogFormatter("%(asctime)s %(message)s").format(record)
    '2026-12-01T07:15:03.045Z serving'
    """

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_timestamp(record.created)


def log_to(stream: TextIO | None, level: int, fmt: str) -> None:
    """Send the root logger's records at ``level`` and above to ``stream`` (default: stderr) as ``fmt``,
    with :class:`LogFormatter` times (what a process of hsmcert's that logs sets up once, at its start)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])

"""Timestamps as hsmcert writes them: audit-log lines (milliseconds) and every time it shows (RFC 3339)."""

from __future__ import annotations

import time


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

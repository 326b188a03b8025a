"""When a certificate is due for renewal, and the state hsmcert reports for it.

A certificate is **due** when the renewal point has passed. By default that point is two thirds of the
way through its lifetime (a 90-day certificate is due 30 days before it expires); ``--before 30d`` (also
``12h``, ``2w``) moves it to a fixed time before expiry, ``--before 25%`` to that share of the lifetime
before expiry. The state is, from worst to best:

- ``expired``: now is past not-after;
- ``key-rotated``: the certificate holds an older version of its HSM key than the key's current one;
- ``renew-due``: the renewal point has passed;
- ``ok``.

Every computation takes ``now`` explicitly (the commands pass the current time), so tests control the clock.

>>> import datetime as dt
>>> start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
>>> end = start + dt.timedelta(days=90)
>>> policy = parse_before(None)
>>> policy.renew_at(start, end).date().isoformat()
'2026-03-02'
>>> parse_before("30d").renew_at(start, end).date().isoformat()
'2026-03-02'
>>> parse_before("10%").renew_at(start, end).isoformat()
'2026-03-23T00:00:00+00:00'
>>> state_of(start, end, now=start + dt.timedelta(days=70), policy=policy)
'renew-due'
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

from hsmcert.errors import UsageError

State = Literal["ok", "renew-due", "expired", "key-rotated"]
STATES: tuple[State, ...] = ("ok", "renew-due", "key-rotated", "expired")
DUE_STATES = frozenset({"renew-due", "key-rotated", "expired"})
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_BEFORE = re.compile(r"(?:(\d+(?:\.\d+)?)%|(\d+)([smhdw]))")
_HINT = "Give a time before expiry such as 30d, 12h or 2w, or a share of the lifetime such as 33%."


@dataclass(frozen=True)
class Policy:
    """The renewal point: ``fraction`` of the lifetime before expiry, or ``seconds`` before expiry."""

    fraction: float | None = 1 / 3
    seconds: int | None = None
    text: str = "2/3 of the lifetime"

    def renew_at(self, not_before: dt.datetime, not_after: dt.datetime) -> dt.datetime:
        if self.seconds is not None:
            return not_after - dt.timedelta(seconds=self.seconds)
        lifetime = not_after - not_before
        return not_after - lifetime * float(self.fraction or 0)


def parse_before(text: str | None) -> Policy:
    """``--before``: ``30d`` / ``12h`` / ``2w`` / ``90m`` / ``3600s``, or ``N%`` of the lifetime; None is the default."""
    if text is None or not text.strip():
        return Policy()
    value = text.strip().lower()
    match = _BEFORE.fullmatch(value)
    if match is None:
        raise UsageError(f"--before {text!r} is not a duration or a percentage.", _HINT)
    if match.group(1) is not None:
        percent = float(match.group(1))
        if not 0 < percent < 100:
            raise UsageError(f"--before {text!r}: a percentage is between 0 and 100 (exclusive).", _HINT)
        return Policy(fraction=percent / 100, text=f"{match.group(1)}% of the lifetime before expiry")
    seconds = int(match.group(2)) * _UNITS[match.group(3)]
    if seconds <= 0:
        raise UsageError(f"--before {text!r} must be more than zero.", _HINT)
    return Policy(fraction=None, seconds=seconds, text=f"{match.group(2)}{match.group(3)} before expiry")


def state_of(
    not_before: dt.datetime,
    not_after: dt.datetime,
    *,
    now: dt.datetime,
    policy: Policy,
    key_current: bool | None = None,
) -> State:
    """The state of a certificate valid from ``not_before`` to ``not_after`` at ``now``.

    ``key_current``: whether its public key is its HSM key's current version (None: unknown, not checked).
    """
    if now >= not_after:
        return "expired"
    if key_current is False:
        return "key-rotated"
    if now >= policy.renew_at(not_before, not_after):
        return "renew-due"
    return "ok"


def days_left(not_after: dt.datetime, now: dt.datetime) -> int:
    """Whole days until expiry (negative once expired).

    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    >>> days_left(t + dt.timedelta(days=3, hours=5), t), days_left(t - dt.timedelta(hours=1), t)
    (3, -1)
    """
    return (not_after - now) // dt.timedelta(days=1)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


__all__ = ["DUE_STATES", "STATES", "Policy", "State", "days_left", "now", "parse_before", "state_of"]

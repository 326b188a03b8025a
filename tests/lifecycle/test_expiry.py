"""Expiry states and the renewal point, computed with a controlled clock."""

from __future__ import annotations

import datetime as dt

import pytest

from hsmcert.errors import UsageError
from hsmcert.lifecycle.expiry import days_left, parse_before, state_of

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
END = START + dt.timedelta(days=90)


def at(days: float) -> dt.datetime:
    return START + dt.timedelta(days=days)


@pytest.mark.parametrize(
    ("before", "day", "expected"),
    [
        (None, 59, "ok"),  # two thirds of 90 days: due from day 60
        (None, 60, "renew-due"),
        (None, 89.9, "renew-due"),
        (None, 90, "expired"),
        ("30d", 59.9, "ok"),
        ("30d", 60, "renew-due"),
        ("10%", 80.9, "ok"),
        ("10%", 81, "renew-due"),
        ("12h", 89.4, "ok"),
        ("12h", 89.5, "renew-due"),
        ("2w", 76, "renew-due"),
        ("100d", 0, "renew-due"),
    ],
)
def test_the_renewal_point(before: str | None, day: float, expected: str) -> None:
    assert state_of(START, END, now=at(day), policy=parse_before(before)) == expected


def test_a_rotated_key_is_reported_before_the_time_states_but_after_expiry() -> None:
    policy = parse_before(None)
    assert state_of(START, END, now=at(1), policy=policy, key_current=False) == "key-rotated"
    assert state_of(START, END, now=at(70), policy=policy, key_current=False) == "key-rotated"
    assert state_of(START, END, now=at(91), policy=policy, key_current=False) == "expired"
    assert state_of(START, END, now=at(1), policy=policy, key_current=None) == "ok"


@pytest.mark.parametrize("text", ["30", "d", "0d", "100%", "0%", "-5d", "30 days", "1y"])
def test_bad_before_values(text: str) -> None:
    with pytest.raises(UsageError, match="--before"):
        parse_before(text)


def test_days_left() -> None:
    assert days_left(END, at(0)) == 90
    assert days_left(END, at(89.5)) == 0
    assert days_left(END, at(92)) == -2

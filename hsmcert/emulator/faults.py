"""Faults on purpose: rates of 429 (with Retry-After) and 503, added latency, dropped connections."""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from hsmcert.errors import UsageError

SERVICE_NAME = re.compile(r"[0-9a-zA-Z][0-9a-zA-Z-]{0,62}")
"""The name of a Managed HSM or vault of the emulator."""
LIMITS = {
    "throttle": (0.0, 1.0, ""),
    "unavailable": (0.0, 1.0, ""),
    "drop": (0.0, 1.0, ""),
    "latency_ms": (0.0, 60_000.0, " ms"),
    "retry_after": (0.0, 3600.0, " s"),
}
"""The range of each number (latency at most a minute: longer makes every client time out)."""


@dataclass
class Faults:
    throttle: float = 0.0
    """Share of requests answered 429 Throttled with Retry-After."""
    unavailable: float = 0.0
    """Share of requests answered 503 ServiceUnavailable."""
    drop: float = 0.0
    """Share of requests whose connection is closed without an answer."""
    latency_ms: float = 0.0
    """Added to every request."""
    retry_after: int = 1
    services: list[str] = field(default_factory=list)
    """Only these services (names); empty: all."""

    def active(self) -> bool:
        return bool(self.throttle or self.unavailable or self.drop or self.latency_ms)

    def applies_to(self, service: str) -> bool:
        return not self.services or service in self.services

    def decide(self) -> str | None:
        """The fault for one request: "throttle", "unavailable", "drop" or None."""
        roll = random.random()
        for name, rate in (
            ("throttle", self.throttle),
            ("unavailable", self.unavailable),
            ("drop", self.drop),
        ):
            if roll < rate:
                return name
            roll -= rate
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_faults(values: dict[str, Any]) -> Faults:
    """Faults from a mapping (the control endpoint, the CLI); unknown names or bad rates are a UsageError."""
    aliases = {
        "rate_429": "throttle",
        "rate_503": "unavailable",
        "rate_drop": "drop",
        "latency": "latency_ms",
    }
    known = set(Faults.__dataclass_fields__)
    result = Faults()
    for raw_name, value in values.items():
        name = aliases.get(raw_name, raw_name)
        if name not in known:
            raise UsageError(
                f"Unknown fault {str(raw_name)[:40]!r}.", f"Use one of: {', '.join(sorted(known))}."
            )
        if name == "services":
            if isinstance(value, str):
                value = [v for v in value.split(",") if v]
            if not isinstance(value, list) or not all(
                isinstance(v, str) and SERVICE_NAME.fullmatch(v) for v in value
            ):
                raise UsageError(
                    "The services of a fault must be a list of service names.",
                    "A name has 1 to 63 letters, digits and dashes, starting with a letter or digit.",
                )
            result.services = list(value)
            continue
        if isinstance(value, bool):
            raise UsageError(f"The fault {raw_name} needs a number, not {value!r}.")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise UsageError(f"The fault {raw_name} needs a number, not {str(value)[:40]!r}.") from None
        low, high, unit = LIMITS[name]
        if not low <= number <= high:  # also false for NaN
            raise UsageError(
                f"The fault {raw_name}={str(value)[:40]} is not between {low:g} and {high:g}{unit}.",
                f"Give {name} a number from {low:g} to {high:g}.",
            )
        setattr(result, name, int(number) if name == "retry_after" else number + 0.0)  # no -0.0
    if result.throttle + result.unavailable + result.drop > 1.0:
        raise UsageError("The fault rates add up to more than 1.")
    return result

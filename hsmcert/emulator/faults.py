"""Faults on purpose: rates of 429 (with Retry-After) and 503, added latency, dropped connections."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from hsmcert.errors import UsageError


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
            raise UsageError(f"Unknown fault {raw_name!r}.", f"Use one of: {', '.join(sorted(known))}.")
        if name == "services":
            if isinstance(value, str):
                value = [v for v in value.split(",") if v]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError("The services of a fault must be a list of names.")
            result.services = list(value)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"The fault {raw_name} needs a number, not {value!r}.") from None
        if name in ("throttle", "unavailable", "drop") and not 0.0 <= number <= 1.0:
            raise UsageError(f"The fault rate {raw_name}={value} is not between 0 and 1.")
        if number < 0:
            raise UsageError(f"The fault {raw_name} cannot be negative.")
        setattr(result, name, int(number) if name == "retry_after" else number)
    if result.throttle + result.unavailable + result.drop > 1.0:
        raise UsageError("The fault rates add up to more than 1.")
    return result

"""Injected faults: what a flaky network and a flaky RunAPI do to a client, on demand and seeded.

Request faults replace (or delay) the answer to one API request; `fail` decides, once per task at
creation, that the task will fail. Every draw comes from one seeded generator, so a test that
sends the same requests in the same order sees the same faults.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

# Exclusive request faults, in the order their rates are stacked on one uniform draw.
REQUEST_KINDS: Final[tuple[str, ...]] = ("500", "503", "429", "reset", "drop", "garbage", "html")
KINDS: Final[tuple[str, ...]] = (*REQUEST_KINDS, "fail", "slow")


class FaultSpecError(ValueError):
    """A faults spec that cannot be parsed; the message says what is wrong and what is allowed."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    rates: Mapping[str, float] = field(default_factory=dict)
    slow_seconds: float = 0.0
    slow_rate: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.rates) or (self.slow_seconds > 0 and self.slow_rate > 0)

    def to_dict(self) -> dict[str, float]:
        out: dict[str, float] = dict(self.rates)
        if self.slow_seconds > 0 and self.slow_rate > 0:
            out["slow"] = self.slow_seconds
            out["slow_rate"] = self.slow_rate
        return out


def parse(spec: str | Mapping[str, Any] | None) -> FaultSpec:
    """Read `"500=0.05,reset=0.02,slow=2@0.1"` or `{"500": 0.05, "slow": 2, "slow_rate": 0.1}`."""
    if spec is None:
        return FaultSpec()
    if isinstance(spec, str):
        return _parse_text(spec)
    return _parse_mapping(spec)


def _parse_text(text: str) -> FaultSpec:
    items: dict[str, Any] = {}
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise FaultSpecError(f"fault {part!r} needs a value, e.g. {name}=0.05.")
        value = value.strip()
        if name == "slow" and "@" in value:
            seconds, _, rate = value.partition("@")
            items["slow"] = seconds
            items["slow_rate"] = rate
        else:
            items[name] = value
    return _parse_mapping(items)


def _parse_mapping(items: Mapping[str, Any]) -> FaultSpec:
    rates: dict[str, float] = {}
    slow_seconds = 0.0
    slow_rate: float | None = None
    for name, value in items.items():
        number = _number(name, value)
        if name == "slow":
            if number < 0:
                raise FaultSpecError(f"slow={value} must be zero or more seconds.")
            slow_seconds = number
        elif name == "slow_rate":
            slow_rate = _rate(name, number)
        elif name in REQUEST_KINDS or name == "fail":
            rate = _rate(name, number)
            if rate > 0:
                rates[name] = rate
        else:
            raise FaultSpecError(f"unknown fault {name!r}; use one of: {', '.join(KINDS)}.")
    total = sum(rates.get(kind, 0.0) for kind in REQUEST_KINDS)
    if total > 1.0 + 1e-9:
        raise FaultSpecError(f"request fault rates add up to {total:g}; they must not exceed 1.")
    return FaultSpec(rates, slow_seconds, 1.0 if slow_rate is None else slow_rate)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise FaultSpecError(f"{name}={value} must be a number.")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise FaultSpecError(f"{name}={value} must be a number.") from exc


def _rate(name: str, number: float) -> float:
    if not 0.0 <= number <= 1.0:
        raise FaultSpecError(f"{name}={number:g} must be a rate between 0 and 1.")
    return number


class FaultDice:
    """Seeded draws: one per request for the exclusive faults, one more when `slow` is on."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def request_fault(self, spec: FaultSpec) -> str | None:
        if not spec.rates:
            return None
        draw = self._rng.random()
        edge = 0.0
        for kind in REQUEST_KINDS:
            edge += spec.rates.get(kind, 0.0)
            if draw < edge:
                return kind
        return None

    def slow_delay(self, spec: FaultSpec) -> float:
        if spec.slow_seconds <= 0 or spec.slow_rate <= 0:
            return 0.0
        if spec.slow_rate >= 1.0 or self._rng.random() < spec.slow_rate:
            return spec.slow_seconds
        return 0.0

    def task_fails(self, spec: FaultSpec) -> bool:
        rate = spec.rates.get("fail", 0.0)
        return rate > 0 and self._rng.random() < rate
